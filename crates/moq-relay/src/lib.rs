//! `moq-relay`: a Media over QUIC relay: configuration ([`config`]), the
//! listeners and session gate ([`relay`]), and the public HTTP endpoints ([`web`]).
//!
//! This crate must never log a token or a key, nor start anything while loading its config.

pub mod config;
pub mod relay;
pub mod web;

pub use relay::Relay;
