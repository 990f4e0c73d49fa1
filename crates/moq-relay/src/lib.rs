//! `moq-relay`: a Media over QUIC relay.
//!
//! Modules, top to bottom; imports only point down this list:
//!
//! ```text
//!   server      Relay: binds listeners, owns every task, drains, reloads certificates
//!     │
//!   http        public.rs (certificate, announced, fetch) and admin.rs (metrics, health, ready, nodes, sessions)
//!     │
//!   cluster     links to other relays, the root directory, and its session hook (directory sessions)
//!     │
//!   session     one connection: admit → handshake → authenticate → configure → run
//!     │
//!   gate · auth_service · admission · registry · media · lifecycle
//!     │   gate: what a session may do, from its target, token or client certificate (pure)
//!     │   auth_service: the same question put to an external auth server ([auth] url), and
//!     │     the lease that re-checks a live session's grant
//!     │   admission: per-address rate limits and session counts, refused before the handshake
//!     │   registry: the live sessions, each removed by an RAII guard
//!     │   media: the origin, cache, media counters and hop id that sessions and links share
//!     │   lifecycle: the task tracker, the drain signal and the shutdown token
//!   metrics     the one Prometheus registry; each concern registers its own metrics
//!     │
//!   config      the TOML file, flags and env vars (no I/O beyond reading the file)
//! ```
//!
//! A transport (raw QUIC, WebTransport, and later WebSocket) is one handshake step in
//! `session`; everything after it is shared.
//!
//! This crate must never log a token or a key, nor start anything while loading its config.

pub mod admission;
pub mod auth_service;
pub mod check;
pub mod cluster;
pub mod config;
pub mod gate;
pub mod http;
pub mod lifecycle;
pub mod media;
pub mod metrics;
pub mod preflight;
pub mod redact;
pub mod registry;
pub mod server;
pub mod session;
pub mod systemd;

pub use server::{Handle, Relay};
