//! Test-only crate: checks that the ecosystem's reference decoder (`moq-net`
//! 0.3.18 from crates.io) accepts every message our codec writes, moq-lite
//! and IETF moq-transport alike, and that we decode what its encoder writes.
//! The tests live in `tests/`; this library is intentionally empty.
