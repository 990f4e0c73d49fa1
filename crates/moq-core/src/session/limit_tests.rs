//! Session tests that cross each limit of the [`Quota`](super::Quota) over the
//! in-memory transport, checking the refusal the peer sees, the counter, and that
//! another session lost nothing.
