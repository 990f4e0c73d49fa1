//! The crate's error type: configuration, TLS material, binding, and connection setup.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Everything that can go wrong in this crate.
///
/// Messages are meant for a person: they name the file, address or URL involved and,
/// where there is one, what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server was given no certificate source at all.
    #[error(
        "no TLS certificate configured: set tls.cert and tls.key to PEM files, \
         or tls.generate = [\"localhost\"] for a development self-signed certificate"
    )]
    NoCertificate,

    /// `tls.cert` and `tls.key` are paired by position, so their lengths must match.
    #[error(
        "tls.cert lists {certs} file(s) but tls.key lists {keys}: give one key file per certificate file"
    )]
    CertKeyCount {
        /// Number of certificate files.
        certs: usize,
        /// Number of key files.
        keys: usize,
    },

    /// A file could not be read.
    #[error("cannot read {what} file {}: {source}", path.display())]
    ReadFile {
        /// What the file was supposed to hold ("certificate", "private key", "root certificate").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its PEM content was malformed or held nothing usable.
    #[error("{what} file {}: {detail}", path.display())]
    Pem {
        /// What the file was supposed to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },

    /// The private key does not belong to the certificate it is paired with.
    #[error("private key {} does not match certificate {}: {detail}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls reported.
        detail: String,
    },

    /// A development certificate could not be generated.
    #[error("cannot generate a self-signed certificate for {names:?}: {source}")]
    Generate {
        /// The requested hostnames.
        names: Vec<String>,
        /// What rcgen reported.
        #[source]
        source: rcgen::Error,
    },

    /// The TLS library refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),

    /// A QUIC transport setting is out of range.
    #[error("QUIC configuration: {0}")]
    QuicConfig(String),

    /// The UDP socket could not be bound.
    #[error("cannot bind UDP {addr}: {}", bind_reason(source))]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A socket operation failed after binding.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),

    /// A certificate fingerprint was not 32 bytes of hex.
    #[error("invalid certificate fingerprint '{value}': {detail} (expected 64 hex digits, a SHA-256)")]
    Fingerprint {
        /// The value given.
        value: String,
        /// What was wrong with it.
        detail: String,
    },

    /// The URL cannot be dialled.
    #[error("cannot connect to '{url}': {detail}")]
    Url {
        /// The URL given.
        url: String,
        /// What was wrong with it.
        detail: String,
    },

    /// The host name did not resolve.
    #[error("cannot resolve {host}: {detail}")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver reported.
        detail: String,
    },

    /// No address of the server answered the QUIC handshake.
    #[error(
        "no QUIC answer from {target} ({attempts}): is a relay running there, and is UDP port {port} reachable?"
    )]
    Unreachable {
        /// `host:port` as given.
        target: String,
        /// The UDP port.
        port: u16,
        /// Each address tried and what happened.
        attempts: String,
    },

    /// The QUIC handshake with one address did not finish in time.
    #[error("{addr}: no QUIC handshake within {after:?}")]
    Timeout {
        /// The address dialled, or the peer accepted.
        addr: SocketAddr,
        /// The limit that ran out.
        after: Duration,
    },

    /// The server's certificate is not signed by a root we trust.
    #[error(
        "certificate for {host} is not trusted ({detail}): pass --tls-root CA.pem, \
         --tls-fingerprint HEX, or use an http:// URL for a development relay"
    )]
    CertificateNotTrusted {
        /// The host name we dialled.
        host: String,
        /// What the verifier reported.
        detail: String,
    },

    /// The server's certificate is not one of the pinned fingerprints.
    #[error("certificate for {host} does not match the expected fingerprint ({detail})")]
    FingerprintMismatch {
        /// The host name we dialled.
        host: String,
        /// What the verifier reported, including the certificate's own fingerprint.
        detail: String,
    },

    /// We offered no trust anchors at all for a verified connection.
    #[error(
        "cannot verify the certificate of {host}: no trusted root certificates \
         (the system store is empty or disabled and no --tls-root was given); pass --tls-root CA.pem, \
         --tls-fingerprint HEX, or use an http:// URL for a development relay"
    )]
    NoRoots {
        /// The host name we dialled.
        host: String,
    },

    /// The server chose no moq-lite version from the ones we offered.
    #[error("server at {server} offered no moq-lite version we speak (we offered: {offered}; {detail})")]
    NoServerVersion {
        /// The server, as `host:port` or address.
        server: String,
        /// The versions we offered.
        offered: String,
        /// What the server did instead.
        detail: String,
    },

    /// The client offered no moq-lite version this server allows; the session was refused.
    #[error(
        "client {peer} offered no moq-lite version this server allows (offered: {offered}; allowed: {allowed})"
    )]
    NoClientVersion {
        /// The client's address.
        peer: SocketAddr,
        /// What it offered in `WT-Available-Protocols`.
        offered: String,
        /// What we allow.
        allowed: String,
    },

    /// The server answered the WebTransport CONNECT with an error status.
    #[error("server at {url} rejected the session: HTTP {status}")]
    Rejected {
        /// The URL dialled.
        url: String,
        /// The HTTP status.
        status: u16,
    },

    /// The `/certificate.sha256` lookup for an `http://` URL failed.
    #[error("GET {url} failed: {detail}")]
    FingerprintFetch {
        /// The fingerprint URL.
        url: String,
        /// What went wrong.
        detail: String,
    },

    /// The QUIC connection failed after it was started.
    #[error("{addr}: {source}")]
    Connection {
        /// The peer.
        addr: SocketAddr,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectionError,
    },

    /// quinn refused to start a connection (for example an IPv6 address on an IPv4 socket).
    #[error("{addr}: {source}")]
    Dial {
        /// The address dialled.
        addr: SocketAddr,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectError,
    },

    /// The peer negotiated an ALPN we did not offer.
    #[error("{addr}: unexpected ALPN {alpn:?}")]
    Alpn {
        /// The peer.
        addr: SocketAddr,
        /// The negotiated ALPN, lossily decoded.
        alpn: String,
    },

    /// The WebTransport (HTTP/3 CONNECT) handshake failed on the server side.
    #[error("{addr}: WebTransport handshake: {}", chain(source))]
    WebTransportAccept {
        /// The client.
        addr: SocketAddr,
        /// What web-transport-quinn reported.
        #[source]
        source: web_transport_quinn::ServerError,
    },

    /// The WebTransport (HTTP/3 CONNECT) handshake failed on the client side.
    #[error("{url}: WebTransport handshake: {}", chain(source))]
    WebTransportConnect {
        /// The URL dialled.
        url: String,
        /// What web-transport-quinn reported.
        #[source]
        source: web_transport_quinn::ClientError,
    },

    /// No address of the server accepted a TCP connection (WebSocket).
    #[error("no TCP answer from {target} ({attempts}): is a relay's HTTP listener on TCP port {port}?")]
    TcpUnreachable {
        /// `host:port` as given.
        target: String,
        /// The TCP port.
        port: u16,
        /// Each address tried and what happened.
        attempts: String,
    },

    /// The WebSocket (qmux) connection could not be set up.
    #[error("WebSocket to {url}: {detail}")]
    WebSocket {
        /// The URL dialled.
        url: String,
        /// What went wrong.
        detail: String,
    },

    /// Neither WebTransport nor the WebSocket fallback connected.
    #[error("{webtransport}; the WebSocket fallback failed too: {websocket}")]
    Fallback {
        /// Why WebTransport failed.
        webtransport: Box<Error>,
        /// Why the WebSocket failed.
        websocket: Box<Error>,
    },

    /// The ACME certificate manager could not start (its cache, its settings).
    #[error(transparent)]
    Acme(crate::acme::Error),

    /// [`crate::server::Request::reject`] was given something that is not an HTTP status.
    #[error("invalid HTTP status {0}: expected 100..=999")]
    Status(u16),
}

/// An error and its sources as one line: web-transport-quinn's own messages are terse
/// ("connection error") and keep the detail in the source.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = err.source();
    }
    text
}

/// What a failed bind means, in words an operator can act on.
fn bind_reason(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the port is already in use (another relay or program listens there; pick another port)"
                .to_string()
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{err} (ports below 1024 need CAP_NET_BIND_SERVICE or root)")
        }
        _ => err.to_string(),
    }
}
