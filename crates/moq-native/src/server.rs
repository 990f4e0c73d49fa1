//! The QUIC / WebTransport listener: one UDP port, moq-lite and moq-transport ALPNs plus
//! `moql` and `h3`.
//!
//! Lifecycle: [`Server::bind`] → loop on [`Server::accept`] (fast: it only hands out
//! connection attempts) → per connection, usually in its own task,
//! [`Incoming::accept`] (QUIC handshake, then the WebTransport CONNECT if the ALPN is
//! `h3`) → inspect the [`Request`] (version, URL) → [`Request::ok`] or
//! [`Request::reject`].
//!
//! In-band negotiation (moq-lite-01/02): a WebTransport client that offered no
//! version we allow (Firefox offers none) or a raw QUIC client with the shared
//! ALPN `moql` has [`Request::version`] `None`. [`Request::ok`] refuses it as
//! before; a caller that opts in calls [`Request::ok_unnegotiated`] instead and
//! then runs `moq_core::session::accept_in_band` with
//! [`Request::in_band_versions`].

use std::{
    net::{Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use url::Url;
use web_transport_quinn::proto::ConnectResponse;

use moq_proto::ALPN_IN_BAND;

use crate::{Error, Protocol, Session, Transport, Version, acme, alpn_list, canonical, quic, tls};

/// The HTTP/3 ALPN that selects WebTransport.
const ALPN_H3: &[u8] = b"h3";

/// HTTP/3 connection close code meaning "no error" (RFC 9114 §8.1).
const H3_NO_ERROR: u32 = 0x100;

/// TLS certificate sources for the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain files (leaf first), one per served certificate.
    pub cert: Vec<PathBuf>,
    /// PEM private key files, paired with `cert` by position.
    pub key: Vec<PathBuf>,
    /// Host names for a generated self-signed development certificate (ECDSA P-256,
    /// valid under 14 days, so browsers can pin it with `serverCertificateHashes`).
    /// `localhost` also covers `127.0.0.1` and `::1`. Never use this in production.
    pub generate: Vec<String>,
    /// CA certificates (PEM files) for client certificates (mTLS). Empty: no client
    /// certificates are asked for. Clients without one are still accepted.
    pub root: Vec<PathBuf>,
    /// A certificate from an ACME CA, served first and renewed by [`acme::Acme::run`]
    /// (see [`Server::acme`]). It may be the only source: until the first one arrives
    /// handshakes fail.
    pub acme: Option<acme::Config>,
}

/// Server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UDP address to listen on (default `[::]:4443`, dual-stack).
    pub bind: SocketAddr,
    /// Certificates to serve.
    pub tls: TlsConfig,
    /// Protocol versions to accept (moq-lite and moq-transport); empty means all of
    /// them. lite-01/02 (in-band) are allowed when listed, or when the list is empty;
    /// `moql` is in the ALPN list only then.
    pub versions: Vec<Protocol>,
    /// QUIC limits for every accepted connection.
    pub quic: quic::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 4443),
            tls: TlsConfig::default(),
            versions: Vec::new(),
            quic: quic::Config::default(),
        }
    }
}

/// A listening QUIC endpoint that accepts raw QUIC and WebTransport moq sessions.
///
/// Dropping it closes the endpoint abruptly; call [`Server::close`] first to tell
/// peers.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    versions: Arc<[Protocol]>,
    in_band: Arc<[Version]>,
    certs: Arc<tls::Certs>,
    /// Client CAs for mTLS, for the TCP listener's TLS too.
    roots: Vec<PathBuf>,
    handshake_timeout: Duration,
    acme: Option<acme::Acme>,
}

impl Server {
    /// Load or generate the certificates and bind the UDP socket.
    ///
    /// Must be called inside a tokio runtime.
    pub fn bind(config: Config) -> Result<Self, Error> {
        let versions: Arc<[Protocol]> = crate::versions(&config.versions).into();
        let in_band: Arc<[Version]> = crate::in_band_versions(&config.versions).into();
        if versions.is_empty() && in_band.is_empty() {
            return Err(Error::QuicConfig("no moq version is allowed".to_string()));
        }

        let provider = tls::provider();
        let certs = Arc::new(tls::Certs::load(
            &config.tls.cert,
            &config.tls.key,
            &config.tls.generate,
            config.tls.acme.as_ref(),
            provider.clone(),
        )?);
        let acme = match config.tls.acme.clone() {
            Some(acme) => Some(acme::Acme::new(acme, certs.clone())?),
            None => None,
        };

        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| Error::Tls(err.to_string()))?;
        let builder = match config.tls.root.is_empty() {
            true => builder.with_no_client_auth(),
            false => {
                builder.with_client_cert_verifier(tls::client_verifier(&config.tls.root, provider.clone())?)
            }
        };
        let mut crypto = builder.with_cert_resolver(certs.clone());
        // The server picks the first of its own ALPNs that the client offers, so newest
        // first here means the newest common version wins on raw QUIC; `moql` (version
        // chosen in-band) only when nothing better is offered.
        crypto.alpn_protocols = versions
            .iter()
            .map(|v| v.alpn().as_bytes().to_vec())
            .chain((!in_band.is_empty()).then(|| ALPN_IN_BAND.as_bytes().to_vec()))
            .chain([ALPN_H3.to_vec()])
            .collect();

        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|err| Error::Tls(err.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(config.quic.transport()?);

        let endpoint = quic::bind(config.bind, Some(server))?;
        tracing::info!(
            addr = %endpoint.local_addr().map_or_else(|err| err.to_string(), |a| a.to_string()),
            versions = %alpn_list(&versions),
            in_band = %crate::name_list(&in_band),
            "listening for QUIC and WebTransport"
        );

        Ok(Self {
            endpoint,
            versions,
            in_band,
            certs,
            roots: config.tls.root.clone(),
            handshake_timeout: config.quic.handshake_timeout,
            acme,
        })
    }

    /// The certificate resolver (for tests of what it answers).
    #[cfg(test)]
    pub(crate) fn certs(&self) -> &Arc<tls::Certs> {
        &self.certs
    }

    /// The ACME certificate manager, when `tls.acme` is configured. Drive it with
    /// [`acme::Acme::run`]; it installs each certificate it obtains in this server's
    /// resolver (and so in every [`Server::tcp_tls`]).
    pub fn acme(&self) -> Option<&acme::Acme> {
        self.acme.as_ref()
    }

    /// The bound UDP address (with the real port if the configured one was 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Lowercase hex SHA-256 of each served leaf certificate, in configuration order
    /// (files first, then the generated one). The first is what `/certificate.sha256`
    /// serves.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.fingerprints()
    }

    /// The protocol versions this server accepts by ALPN or WebTransport protocol, in
    /// preference order (moq-lite newest first, then moq-transport newest first).
    pub fn versions(&self) -> &[Protocol] {
        &self.versions
    }

    /// The moq-lite versions this server may negotiate in-band (lite-02, lite-01),
    /// newest first; empty when the configuration leaves them out.
    pub fn in_band_versions(&self) -> &[Version] {
        &self.in_band
    }

    /// Re-read the certificate and key files (for example on SIGHUP). New handshakes use
    /// the new certificates; established sessions are untouched. On error the previous
    /// certificates stay in use.
    pub fn reload_certificates(&self) -> Result<(), Error> {
        self.certs.reload()
    }

    /// TLS for an HTTPS / WSS listener on TCP serving the same certificates (and
    /// client CAs) as this QUIC server. It shares the certificate resolver, so
    /// [`Server::reload_certificates`] and ACME renewals swap them there too; with
    /// TLS-ALPN-01 it also answers the CA's validation (ALPN `acme-tls/1`).
    pub fn tcp_tls(&self) -> Result<tls::TcpTls, Error> {
        tls::TcpTls::new(self.certs.clone(), self.roots.clone(), &tls::TcpTls::ALPN)
    }

    /// When the first of the served certificates expires (`notAfter`).
    pub fn certificate_expiry(&self) -> Option<std::time::SystemTime> {
        let secs = u64::try_from(self.certs.not_after()?).ok()?;
        std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    }

    /// The certificate and key files served, to watch for changes.
    pub fn certificate_files(&self) -> Vec<std::path::PathBuf> {
        self.certs.files()
    }

    /// Wait for the next connection attempt. Returns `None` once the server is closed.
    ///
    /// This returns before any handshake work: a connection that cannot even be started
    /// is logged at debug and skipped, never ending the loop. Run [`Incoming::accept`]
    /// in a task per connection so a slow peer does not hold up the others.
    pub async fn accept(&self) -> Option<Incoming> {
        let incoming = self.endpoint.accept().await?;
        let remote = canonical(incoming.remote_address());
        let port = self.endpoint.local_addr().ok().map(|addr| addr.port());
        let local = incoming
            .local_ip()
            .zip(port)
            .map(|(ip, port)| canonical(SocketAddr::new(ip, port)));
        Some(Incoming {
            incoming,
            remote,
            local,
            versions: self.versions.clone(),
            in_band: self.in_band.clone(),
            handshake_timeout: self.handshake_timeout,
        })
    }

    /// Close every connection with application code 0 and stop accepting.
    /// [`Server::accept`] then returns `None`.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"server closing");
    }

    /// Wait until every connection has finished closing (after [`Server::close`]).
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// A connection attempt whose handshake has not run yet.
#[derive(Debug)]
pub struct Incoming {
    incoming: quinn::Incoming,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    versions: Arc<[Protocol]>,
    in_band: Arc<[Version]>,
    handshake_timeout: Duration,
}

impl Incoming {
    /// The peer's UDP address (not yet validated).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Complete the QUIC handshake and, for WebTransport, read the CONNECT request
    /// (without answering it), all within the handshake timeout.
    pub async fn accept(self) -> Result<Request, Error> {
        let addr = self.remote;
        let after = self.handshake_timeout;
        tokio::time::timeout(after, self.handshake())
            .await
            .map_err(|_| Error::Timeout { addr, after })?
    }

    /// Refuse the connection before any handshake work (QUIC CONNECTION_REFUSED):
    /// the cheap answer to a flood.
    pub fn refuse(self) {
        self.incoming.refuse();
    }

    /// Whether the peer has proven it receives packets at its source address (its
    /// Initial carried a token from our Retry or an earlier session).
    pub fn validated(&self) -> bool {
        self.incoming.remote_address_validated()
    }

    /// Answer with a QUIC Retry instead of starting the handshake: the peer must echo
    /// the token from its claimed address, so a spoofed source goes no further, at the
    /// cost of one round trip for a real one. Returns `false` (and refuses) when the
    /// attempt cannot be retried (it already carries a Retry token).
    pub fn retry(self) -> bool {
        if !self.incoming.may_retry() {
            self.incoming.refuse();
            return false;
        }
        self.incoming.retry().is_ok()
    }

    async fn handshake(self) -> Result<Request, Error> {
        let remote = self.remote;
        let local = self.local;
        let connecting = self
            .incoming
            .accept()
            .map_err(|source| Error::Connection { addr: remote, source })?;
        let conn = connecting
            .await
            .map_err(|source| Error::Connection { addr: remote, source })?;

        let (alpn, server_name) = handshake_data(&conn);
        let alpn = alpn.unwrap_or_default();

        if alpn == ALPN_H3 {
            let request = web_transport_quinn::Request::accept(conn.clone())
                .await
                .map_err(|source| Error::WebTransportAccept { addr: remote, source })?;

            // Our preference decides, not the client's order: the newest version we
            // allow that the client offered.
            let version = self
                .versions
                .iter()
                .copied()
                .find(|v| request.protocols.iter().any(|p| p == v.alpn()));
            if version.is_none() {
                tracing::debug!(
                    %remote,
                    offered = ?request.protocols,
                    allowed = %alpn_list(&self.versions),
                    in_band = %crate::name_list(&self.in_band),
                    "WebTransport client offered no moq version we allow"
                );
            }

            return Ok(Request {
                conn,
                remote,
                local,
                version,
                server_name,
                versions: self.versions,
                in_band: self.in_band,
                kind: Kind::WebTransport(Box::new(request)),
            });
        }

        // `moql`: the version is chosen in-band (only offered when some are allowed).
        if alpn == ALPN_IN_BAND.as_bytes() && !self.in_band.is_empty() {
            return Ok(Request {
                conn,
                remote,
                local,
                version: None,
                server_name,
                versions: self.versions,
                in_band: self.in_band,
                kind: Kind::Quic,
            });
        }

        // Anything else is one of our moq-lite ALPNs: TLS only lets through what we offered.
        match Protocol::from_alpn(&alpn).filter(|v| self.versions.contains(v)) {
            Some(version) => Ok(Request {
                conn,
                remote,
                local,
                version: Some(version),
                server_name,
                versions: self.versions,
                in_band: self.in_band,
                kind: Kind::Quic,
            }),
            None => {
                conn.close(0u32.into(), b"unexpected ALPN");
                Err(Error::Alpn {
                    addr: remote,
                    alpn: String::from_utf8_lossy(&alpn).into_owned(),
                })
            }
        }
    }
}

/// The negotiated ALPN and the SNI the client sent, if any.
fn handshake_data(conn: &quinn::Connection) -> (Option<Vec<u8>>, Option<String>) {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .map(|data| (data.protocol, data.server_name))
        .unwrap_or_default()
}

enum Kind {
    Quic,
    WebTransport(Box<web_transport_quinn::Request>),
}

/// A verified client certificate (mTLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// When the certificate stops being valid (`notAfter`), if it could be read.
    pub not_after: Option<std::time::SystemTime>,
    /// SHA-256 of the leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// The leaf's first DNS name, else its common name, if it could be read.
    pub name: Option<String>,
    /// The issuer's distinguished name, if it could be read.
    pub issuer: Option<String>,
}

/// A connection that completed its handshake and awaits our decision.
///
/// Dropping it without [`Request::ok`] or [`Request::reject`] closes the connection.
pub struct Request {
    conn: quinn::Connection,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    version: Option<Protocol>,
    server_name: Option<String>,
    versions: Arc<[Protocol]>,
    in_band: Arc<[Version]>,
    kind: Kind,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("transport", &self.transport())
            .field("remote", &self.remote)
            .field("version", &self.version)
            .field("url", &self.url().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Raw QUIC or WebTransport.
    pub fn transport(&self) -> Transport {
        match self.kind {
            Kind::Quic => Transport::Quic,
            Kind::WebTransport(_) => Transport::WebTransport,
        }
    }

    /// The negotiated protocol version (moq-lite or moq-transport).
    ///
    /// Raw QUIC: the ALPN, or `None` for `moql` (version chosen in-band).
    /// WebTransport: the newest version we allow among those the client offered in
    /// `WT-Available-Protocols`, or `None` if it offered none we know. With `None`,
    /// [`Request::ok`] refuses the session; [`Request::ok_unnegotiated`] accepts it
    /// for in-band negotiation.
    pub fn version(&self) -> Option<Protocol> {
        self.version
    }

    /// The versions the caller may negotiate in-band on this connection after
    /// [`Request::ok_unnegotiated`], newest first: the server's lite-02/lite-01 for
    /// WebTransport (which can always be answered without a protocol) and for raw
    /// QUIC with ALPN `moql`; empty for raw QUIC whose ALPN chose a version, or when
    /// the server allows no in-band version.
    pub fn in_band_versions(&self) -> &[Version] {
        match (&self.kind, self.version) {
            (Kind::Quic, Some(_)) => &[],
            _ => &self.in_band,
        }
    }

    /// The CONNECT URL (WebTransport only). Raw QUIC has none: its path arrives in the
    /// moq-lite SETUP message.
    pub fn url(&self) -> Option<&Url> {
        match &self.kind {
            Kind::Quic => None,
            Kind::WebTransport(request) => Some(&request.url),
        }
    }

    /// The subprotocols the client offered in `WT-Available-Protocols` (WebTransport
    /// only; empty for raw QUIC).
    pub fn protocols(&self) -> &[String] {
        match &self.kind {
            Kind::Quic => &[],
            Kind::WebTransport(request) => &request.protocols,
        }
    }

    /// The TLS server name (SNI) the client asked for; `None` when it dialled an IP address.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The peer's UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Our address the connection arrived on, when the socket reports it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The certificate the client presented, if any. rustls refuses the handshake when a
    /// presented certificate does not chain to the configured client CAs, so a certificate
    /// here is a verified one.
    pub fn client_certificate(&self) -> Option<ClientCertificate> {
        let identity = self.connection().peer_identity()?;
        let chain = identity
            .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
            .ok()?;
        let leaf = chain.first()?;
        let not_after = tls::not_after(leaf)
            .and_then(|secs| u64::try_from(secs).ok())
            .and_then(|secs| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
        let (name, issuer) = tls::names(leaf);
        Some(ClientCertificate {
            not_after,
            fingerprint: tls::fingerprint(leaf),
            name,
            issuer,
        })
    }

    /// The underlying QUIC connection, for statistics.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Accept the session.
    ///
    /// WebTransport: answers 200 with `WT-Protocol` set to the chosen version's ALPN. If
    /// the client offered no version we allow, answers 406 instead and returns
    /// [`Error::NoClientVersion`]. Raw QUIC: wraps the connection as a [`Session`];
    /// with ALPN `moql` (no version yet) it closes with code 0x15 (version) and returns
    /// [`Error::NoClientVersion`].
    pub async fn ok(self) -> Result<Session, Error> {
        let remote = self.remote;
        match (self.kind, self.version) {
            (Kind::Quic, Some(_)) => Ok(Session::raw(self.conn)),
            (Kind::WebTransport(request), Some(version)) => request
                .respond(ConnectResponse::OK.with_protocol(version.alpn()))
                .await
                .map_err(|source| Error::WebTransportAccept { addr: remote, source }),
            (kind, None) => refuse_unversioned(kind, self.conn, remote, &self.versions).await,
        }
    }

    /// Accept the session without choosing a version, so the caller negotiates it
    /// in-band (moq-lite-01/02 SETUP, `moq_core::session::accept_in_band`, among
    /// [`Request::in_band_versions`]).
    ///
    /// WebTransport: answers 200 without `WT-Protocol` (whatever the client offered),
    /// which is what makes a client like `@moq/net` fall back to the SETUP
    /// exchange. Raw QUIC with ALPN `moql`: wraps the connection. When
    /// [`Request::in_band_versions`] is empty (the server allows none, or a raw QUIC
    /// ALPN already chose a version) it refuses exactly as [`Request::ok`] does for
    /// a client without a common version (406, or close code 0x15) and returns
    /// [`Error::NoClientVersion`].
    pub async fn ok_unnegotiated(self) -> Result<Session, Error> {
        let remote = self.remote;
        if self.in_band_versions().is_empty() {
            return refuse_unversioned(self.kind, self.conn, remote, &self.versions).await;
        }
        match self.kind {
            Kind::Quic => Ok(Session::raw(self.conn)),
            Kind::WebTransport(request) => request
                .respond(ConnectResponse::OK)
                .await
                .map_err(|source| Error::WebTransportAccept { addr: remote, source }),
        }
    }

    /// Refuse the session.
    ///
    /// WebTransport: answers the CONNECT with `status` (401, 403, 404, ...), waits briefly
    /// for the response to be delivered, then closes the connection. Raw QUIC has no
    /// HTTP, so the connection is closed with the moq-lite session error code closest
    /// to `status` (see [`status_to_code`]) and the reason `"<status> <reason phrase>"`.
    pub async fn reject(self, status: u16) -> Result<(), Error> {
        let code = http::StatusCode::from_u16(status).map_err(|_| Error::Status(status))?;
        match self.kind {
            Kind::WebTransport(request) => reject_webtransport(*request, &self.conn, status).await,
            Kind::Quic => {
                let reason = format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or(""));
                self.conn
                    .close(status_to_code(status).into(), reason.trim_end().as_bytes());
                Ok(())
            }
        }
    }
}

/// Refuse a client we found no version for: 406 on WebTransport, close code 0x15 on
/// raw QUIC.
async fn refuse_unversioned(
    kind: Kind,
    conn: quinn::Connection,
    remote: SocketAddr,
    versions: &[Protocol],
) -> Result<Session, Error> {
    let offered = match kind {
        Kind::WebTransport(request) => {
            let offered = request.protocols.join(", ");
            reject_webtransport(*request, &conn, 406).await?;
            offered
        }
        Kind::Quic => {
            let alpn = handshake_data(&conn).0.unwrap_or_default();
            conn.close(status_to_code(406).into(), b"406 Not Acceptable");
            String::from_utf8_lossy(&alpn).into_owned()
        }
    };
    Err(Error::NoClientVersion {
        peer: remote,
        offered: if offered.is_empty() {
            "nothing".to_string()
        } else {
            offered
        },
        allowed: alpn_list(versions),
    })
}

/// Answer a CONNECT with an error status and close the connection once the peer has it.
async fn reject_webtransport(
    request: web_transport_quinn::Request,
    conn: &quinn::Connection,
    status: u16,
) -> Result<(), Error> {
    let remote = canonical(conn.remote_address());
    let status = http::StatusCode::from_u16(status).map_err(|_| Error::Status(status))?;
    request
        .reject(status)
        .await
        .map_err(|source| Error::WebTransportAccept { addr: remote, source })?;

    // Closing at once could discard the response before it is sent; a client that gets
    // it closes the connection itself, so wait for that, but not for long.
    let grace = conn
        .rtt()
        .saturating_mul(3)
        .clamp(Duration::from_millis(100), Duration::from_secs(2));
    let _ = tokio::time::timeout(grace, conn.closed()).await;
    conn.close(H3_NO_ERROR.into(), status.as_str().as_bytes());
    Ok(())
}

/// The moq-lite session close code used when rejecting a raw QUIC session with an HTTP
/// status: 401/403 → 0x2 unauthorized, 400 → 0x3 protocol violation, 406 → 0x15
/// version, 408/504 → 0x11 timeout, anything else → 0x1 internal. (Codes as in the
/// moq-lite draft and moq-net's `Error::to_code`.)
pub fn status_to_code(status: u16) -> u32 {
    match status {
        401 | 403 => 0x2,
        400 => 0x3,
        406 => 0x15,
        408 | 504 => 0x11,
        _ => 0x1,
    }
}
