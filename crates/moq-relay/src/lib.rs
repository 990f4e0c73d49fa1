//! `moq-relay`: a Media over QUIC relay: configuration ([`config`]), the
//! listeners and session gate ([`relay`]), and the public HTTP endpoints ([`web`]).
//!
//! This crate must never log a token or a key, nor start anything while loading its config.

pub mod cluster;
pub mod config;
pub mod internal;
pub mod metrics;
pub mod relay;
pub mod systemd;
pub mod web;

pub use relay::{Handle, Relay};
