//! `moq-native`: the transport layer under the relay. It turns UDP sockets and TLS
//! certificates into moq-lite sessions, and nothing more.
//!
//! What it does:
//! - [`server::Server`] binds one quinn endpoint on one UDP port whose ALPN list is the
//!   moq-lite versions we allow (newest first), then `moql`, then `h3`. A connection that
//!   negotiates a moq-lite ALPN is raw QUIC and the ALPN is the version; one that
//!   negotiates `h3` is WebTransport and the version comes from the
//!   `WT-Available-Protocols` / `WT-Protocol` CONNECT headers. Both end up as the same
//!   [`Session`] type. Without a version (`moql`, or WebTransport with no common
//!   protocol) a caller may accept with [`server::Request::ok_unnegotiated`] and choose
//!   moq-lite-01/02 in-band (`moq_core::session::accept_in_band`).
//! - [`qmux`]: moq over a WebSocket (TCP), for browsers without WebTransport and
//!   networks that block UDP: the QMux framing `@moq/net` speaks, the subprotocol
//!   negotiation a server's WebSocket upgrade needs, and adapters for tungstenite and
//!   (feature `axum`) axum sockets.
//! - [`adapter::MoqSession`] holds any of the three as one type for the moq-core
//!   session drivers; [`Connection`] is what a client hands over.
//! - [`client::Client`] dials `https://` (WebTransport), `http://` (WebTransport to a
//!   development relay whose certificate fingerprint is fetched from
//!   `/certificate.sha256` over TCP), `moqt://` / `moql://` (raw QUIC) and `ws://` /
//!   `wss://` (qmux) URLs, racing every resolved address so `localhost` works whichever
//!   family the relay listens on; `https://` and `http://` fall back to WebSocket when
//!   WebTransport has not connected within a delay, as `@moq/net` does.
//! - [`acme`]: certificates from an ACME CA (Let's Encrypt by default), obtained at
//!   start, renewed at two thirds of their lifetime and swapped into the same resolver
//!   without dropping a connection.
//! - [`tls`]: PEM certificate and key files, short-lived self-signed development
//!   certificates, SHA-256 fingerprints, certificate pinning, and the TLS for an
//!   HTTPS/WSS listener on TCP sharing the QUIC server's certificates.
//!
//! What it must never do:
//! - know about relays, broadcasts, tracks, tokens or permissions: the caller decides
//!   whether to [`server::Request::ok`] or [`server::Request::reject`] a session;
//! - parse moq-lite messages (that is `moq-proto`'s job) or spawn tasks behind the
//!   caller's back (the only background work is quinn's and web-transport-quinn's own,
//!   and one driver task per qmux session that lives exactly as long as the session);
//! - `unwrap` anything that came off the network, or end the accept loop because one
//!   peer misbehaved;
//! - log private keys, or silently accept an unverified certificate (`insecure` always
//!   logs a warning).
//!
//! Every endpoint must be created inside a tokio runtime: quinn drives its sockets there.

// Peers choose lengths, counts and offsets: index with `.get()` and do arithmetic that
// cannot overflow or panic (checked, saturating or wrapping as the case needs).
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::arithmetic_side_effects))]

mod error;
mod http;
mod websocket;

pub mod acme;
pub mod adapter;
pub mod client;
pub mod congestion;
pub mod qmux;
pub mod quic;
pub mod server;
pub mod tls;

#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr};

pub use adapter::Connection;
pub use error::Error;
pub use moq_proto::{Protocol, Version};
/// An established moq session over raw QUIC or WebTransport; see [`web_transport_quinn::Session`].
pub use web_transport_quinn::Session;

/// The QUIC implementation, re-exported so callers name the same version we link.
pub use quinn;
/// The WebTransport implementation, re-exported for its stream and error types.
pub use web_transport_quinn;

/// How a session is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Raw QUIC: the moq-lite version is the TLS ALPN (`moqt://` / `moql://` URLs).
    Quic,
    /// WebTransport over HTTP/3 (ALPN `h3`): the version is the `WT-Protocol` header.
    WebTransport,
    /// qmux over a WebSocket (TCP, `ws://` / `wss://`): the version is the
    /// `Sec-WebSocket-Protocol` subprotocol, see [`qmux::subprotocol`].
    WebSocket,
}

impl Transport {
    /// The name used in logs and metric labels: `quic`, `webtransport` or `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::WebTransport => "webtransport",
            Self::WebSocket => "websocket",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocols a server accepts by ALPN, WebTransport protocol or qmux subprotocol, in
/// preference order (moq-lite newest first, then moq-transport newest first): those of
/// `allowed` if it is not empty, otherwise all of them. The in-band lite-01/02 never
/// appear here (see [`in_band_versions`]).
///
/// Order in the configuration does not matter; duplicates are dropped.
pub(crate) fn versions(allowed: &[Protocol]) -> Vec<Protocol> {
    Protocol::PREFERRED
        .into_iter()
        .filter(|v| allowed.is_empty() || allowed.contains(v))
        .collect()
}

/// The protocols a client offers, in preference order: those of `allowed` if it is not
/// empty, otherwise every moq-lite ALPN version (moq-transport only when asked for, as
/// its caller must then run the moq-transport driver).
pub(crate) fn client_versions(allowed: &[Protocol]) -> Vec<Protocol> {
    Protocol::PREFERRED
        .into_iter()
        .filter(|v| match allowed.is_empty() {
            true => v.lite().is_some(),
            false => allowed.contains(v),
        })
        .collect()
}

/// The in-band versions (lite-02, lite-01) `allowed` permits: all of them when it is
/// empty, otherwise those it lists.
pub(crate) fn in_band_versions(allowed: &[Protocol]) -> Vec<Version> {
    Version::IN_BAND
        .into_iter()
        .filter(|v| allowed.is_empty() || allowed.contains(&Protocol::Lite(*v)))
        .collect()
}

/// A list of versions by name (`moq-lite-02`), for logs.
pub(crate) fn name_list<T: fmt::Display>(versions: &[T]) -> String {
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A list of protocols as their ALPN identifiers, for logs and error messages.
pub(crate) fn alpn_list(versions: &[Protocol]) -> String {
    versions.iter().map(|v| v.alpn()).collect::<Vec<_>>().join(", ")
}

/// A dual-stack socket reports IPv4 peers as IPv4-mapped IPv6 (`::ffff:a.b.c.d`); logs,
/// limits, allow-lists and error messages want the plain IPv4 address.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
