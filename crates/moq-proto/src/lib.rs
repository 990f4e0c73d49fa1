//! `moq-proto`: a sans-IO codec for the moq-lite wire protocol, versions
//! lite-01 through lite-06, and for IETF moq-transport drafts 14 to 22
//! ([`ietf`]), as spoken by the moq-dev ecosystem, plus the in-band legacy
//! SETUP that picks lite-01/02 or draft-14 when no ALPN did ([`legacy`]).
//!
//! It turns bytes into typed messages and back. It has no sockets, no clock and
//! no runtime, and it must never panic or allocate without bound on any input:
//! every length is checked against [`limits`] before anything is buffered.
//!
//! Decoding: [`Decode::decode`] reads from any [`bytes::Buf`]. It returns
//! [`DecodeError::Short`] when more bytes are needed and another variant when
//! the input is malformed. [`decode_slice`] decodes without consuming on
//! failure and reports how many bytes a message used.
//!
//! Facts come from `draft-lcurley-moq-lite` and from the `moq-net` 0.3.18
//! implementation the ecosystem's tools run; where they differ, the wire wins.
#![cfg_attr(
    not(test),
    deny(
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unreachable
    )
)]

pub mod coding;
mod error;
mod hops;
pub mod ietf;
pub mod legacy;
pub mod limits;
pub mod message;
mod path;
mod protocol;
mod stream;
mod version;

pub use coding::{Decode, Encode, decode_slice};
pub use error::{DecodeError, EncodeError};
pub use hops::{Hops, HopsError};
pub use message::*;
pub use path::{Path, PathError};
pub use protocol::{Protocol, UnknownProtocol};
pub use stream::{ControlStream, DataStream};
pub use version::{ALPN_IN_BAND, UnknownVersion, Version};
