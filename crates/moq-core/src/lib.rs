//! `moq-core`: the media model (broadcasts → tracks → groups → frames, the
//! origin table, the cache) and the moq-lite session drivers that move it over
//! any QUIC-like transport.
//!
//! It knows nothing about which QUIC library carries the streams (see
//! [`transport`]) and nothing about media codecs: payloads are opaque bytes,
//! shared between consumers and never copied per subscriber.

// Peers choose lengths, counts and offsets: index with `.get()` and do arithmetic that
// cannot overflow or panic (checked, saturating or wrapping as the case needs).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

mod error;
pub mod ietf;
pub mod model;
pub mod pattern;
pub mod stats;

pub use error::{Error, Result};
pub use model::*;
#[cfg(any(test, feature = "mem"))]
pub mod mem;
pub mod session;
pub mod transport;

#[cfg(test)]
mod testing;
