//! The dialling side: relay-to-relay links, the CLI, and tests.
//!
//! | URL | transport | certificate check | version from |
//! |---|---|---|---|
//! | `https://host:port/path?query` | WebTransport | roots, or pinned fingerprints | `WT-Protocol` |
//! | `http://host:port/path` | WebTransport | fingerprint fetched from `GET http://host:port/certificate.sha256` (development only) | `WT-Protocol` |
//! | `moqt://host:port/path`, `moql://…` | raw QUIC | roots, or pinned fingerprints | ALPN |
//! | `wss://host:port/path?query` | qmux over WebSocket over TLS (TCP) | roots, or pinned fingerprints | `Sec-WebSocket-Protocol` |
//! | `ws://host:port/path?query` | qmux over WebSocket (TCP, no TLS) | none | `Sec-WebSocket-Protocol` |
//!
//! `https://` and `http://` fall back to `wss://` and `ws://` on the same host, port and
//! path when WebTransport has not connected within [`WebSocketConfig::delay`] (or has
//! failed without an answer from the server), as `@moq/net` does; whichever connects
//! first wins and the other is dropped.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{StreamExt, stream::FuturesUnordered};
use rustls::{client::danger::ServerCertVerifier, crypto::CryptoProvider};
use url::Url;
use web_transport_quinn::proto::ConnectRequest;

use crate::{Connection, Error, Protocol, Session, Transport, alpn_list, canonical, qmux, quic, tls};

/// How long to wait before dialling the next resolved address while earlier attempts
/// are still running (Happy Eyeballs, RFC 8305 §5 recommends 250 ms).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// TLS alert `no_application_protocol` (RFC 8446 §6.2) as a QUIC crypto error code
/// (RFC 9001 §4.8: 0x100 + alert): the server shares none of our ALPNs.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// How the client checks the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// Extra CA certificates (PEM files) to trust, on top of the system store.
    pub roots: Vec<PathBuf>,
    /// Trust the platform's root store (default true).
    pub system_roots: bool,
    /// Hex SHA-256 of acceptable server certificates. If not empty, exactly these
    /// certificates are accepted and CA validation is skipped.
    pub fingerprints: Vec<String>,
    /// Accept any certificate. Development only: anyone on the path can impersonate the
    /// server. A warning is logged when the client is created.
    pub insecure: bool,
    /// A client certificate chain (PEM) to present, for mTLS to relays that admit
    /// peers by certificate (`[server.tls] root`). Needs `key`.
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
}

impl Default for ClientTls {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            system_roots: true,
            fingerprints: Vec::new(),
            insecure: false,
            cert: None,
            key: None,
        }
    }
}

/// The WebSocket fallback for `https://` and `http://` URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketConfig {
    /// Try a WebSocket when WebTransport is slow (default true).
    pub enabled: bool,
    /// WebTransport's head start before the WebSocket attempt begins (default 500 ms,
    /// `@moq/net`'s); the WebSocket starts at once if WebTransport fails sooner.
    pub delay: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            delay: Duration::from_millis(500),
        }
    }
}

/// Client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Local UDP address (default `[::]:0`, dual-stack, so IPv4 and IPv6 servers both work).
    pub bind: SocketAddr,
    /// Certificate checking (QUIC and `wss://` alike).
    pub tls: ClientTls,
    /// Protocol versions to offer; empty means every moq-lite one (moq-transport drafts
    /// only when listed). Offered in preference order: moq-lite newest first, then
    /// moq-transport newest first.
    pub versions: Vec<Protocol>,
    /// QUIC limits for every connection.
    pub quic: quic::Config,
    /// When `https://` / `http://` URLs fall back to a WebSocket.
    pub websocket: WebSocketConfig,
    /// Limits of qmux (WebSocket) sessions.
    pub qmux: qmux::Config,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            tls: ClientTls::default(),
            versions: Vec::new(),
            quic: quic::Config::default(),
            websocket: WebSocketConfig::default(),
            qmux: qmux::Config::default(),
        }
    }
}

/// An established session and what was negotiated for it.
#[derive(Debug)]
pub struct Connected {
    /// The session: raw QUIC or WebTransport, or qmux over a WebSocket.
    pub session: Connection,
    /// The protocol version both sides agreed on (moq-lite or moq-transport).
    pub version: Protocol,
    /// How the session is carried.
    pub transport: Transport,
}

impl Connected {
    /// What SETUP's path must carry for the session dialled at `url`: raw QUIC
    /// has no URL, so its path and query (a `?jwt=` token) travel in SETUP
    /// (lite-05+); WebTransport and WebSocket carry them in their URL already.
    pub fn setup_path(&self, url: &Url) -> Option<String> {
        if self.transport != Transport::Quic {
            return None;
        }
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        Some(path)
    }
}

/// A client certificate chain and its key, for mTLS.
pub(crate) type Identity = (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
);

/// How a certificate was checked, to word errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Roots,
    Pinned,
    Fetched,
    Insecure,
}

/// A QUIC endpoint that dials moq servers. One client can hold many connections.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    provider: Arc<CryptoProvider>,
    versions: Arc<[Protocol]>,
    /// `None` when verification by roots was asked for but no root is available.
    verifier: Option<Arc<dyn ServerCertVerifier>>,
    check: Check,
    transport: Arc<quinn::TransportConfig>,
    handshake_timeout: Duration,
    /// The client certificate chain and key, for mTLS.
    identity: Option<Arc<Identity>>,
    websocket: WebSocketConfig,
    qmux: qmux::Config,
    /// The qmux sessions dialled, so [`Client::close`] can close them like quinn closes
    /// its connections. Ended ones are pruned on each dial.
    sockets: Mutex<Vec<qmux::Closer>>,
}

impl Client {
    /// Load the trust anchors and bind the UDP socket. Must be called inside a tokio runtime.
    pub fn new(config: Config) -> Result<Self, Error> {
        let provider = tls::provider();
        let versions: Arc<[Protocol]> = crate::client_versions(&config.versions).into();
        if versions.is_empty() {
            return Err(Error::QuicConfig("no moq version to offer".to_string()));
        }

        let (verifier, check): (Option<Arc<dyn ServerCertVerifier>>, Check) = if config.tls.insecure {
            tracing::warn!(
                "TLS certificate verification is disabled: anyone on the network path can impersonate the server"
            );
            (Some(Arc::new(tls::NoVerifier(provider.clone()))), Check::Insecure)
        } else if !config.tls.fingerprints.is_empty() {
            let pins = config
                .tls
                .fingerprints
                .iter()
                .map(|fp| tls::parse_fingerprint(fp))
                .collect::<Result<Vec<_>, _>>()?;
            (
                Some(Arc::new(tls::FingerprintVerifier::new(provider.clone(), pins))),
                Check::Pinned,
            )
        } else {
            (roots_verifier(&config.tls, &provider)?, Check::Roots)
        };

        let identity = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => Some(Arc::new((
                tls::read_certs(cert, "client certificate")?,
                tls::read_key(key)?,
            ))),
            (None, None) => None,
            _ => {
                return Err(Error::Tls(
                    "a client certificate needs both a certificate and a key file".to_string(),
                ));
            }
        };

        let endpoint = quic::bind(config.bind, None)?;

        Ok(Self {
            endpoint,
            provider,
            versions,
            verifier,
            check,
            transport: config.quic.transport()?,
            handshake_timeout: config.quic.handshake_timeout,
            identity,
            websocket: config.websocket,
            qmux: config.qmux,
            sockets: Mutex::new(Vec::new()),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.endpoint.local_addr()?)
    }

    /// The protocol versions this client offers, in preference order.
    pub fn versions(&self) -> &[Protocol] {
        &self.versions
    }

    /// Dial `url` and establish a moq session; see the module documentation for the
    /// schemes. Every resolved address is tried (staggered by 250 ms) and the first
    /// completed handshake wins.
    pub async fn connect(&self, url: &Url) -> Result<Connected, Error> {
        let target = Target::parse(url)?;
        match Scheme::of(url)? {
            scheme @ (Scheme::Https | Scheme::Http) if self.websocket.enabled => {
                let webtransport = self.webtransport_url(url, scheme, &target);
                let websocket = async {
                    let fallback = match scheme {
                        Scheme::Https => Scheme::Wss,
                        _ => Scheme::Ws,
                    };
                    let ws = with_scheme(url, fallback.as_str())?;
                    self.websocket(&ws, &Target::parse(&ws)?).await
                };
                self.race_websocket(webtransport, websocket).await
            }
            scheme @ (Scheme::Https | Scheme::Http) => self.webtransport_url(url, scheme, &target).await,
            Scheme::Quic => {
                let verifier = self.verifier(&target)?;
                self.quic(&target, verifier).await
            }
            Scheme::Ws | Scheme::Wss => self.websocket(url, &target).await,
        }
    }

    /// WebTransport to an `https://` URL, or to an `http://` one by pinning the
    /// fingerprint served at `/certificate.sha256`.
    async fn webtransport_url(&self, url: &Url, scheme: Scheme, target: &Target) -> Result<Connected, Error> {
        if scheme == Scheme::Https {
            let verifier = self.verifier(target)?;
            return self.webtransport(url.clone(), target, verifier, self.check).await;
        }
        let pins = crate::http::fetch_fingerprints(url, target, self.handshake_timeout).await?;
        tracing::debug!(%url, "pinning the fetched certificate fingerprint (development mode)");
        let verifier = Arc::new(tls::FingerprintVerifier::new(self.provider.clone(), pins));
        let wt = with_scheme(url, Scheme::Https.as_str())?;
        self.webtransport(wt, target, verifier, Check::Fetched).await
    }

    /// WebTransport with a head start, then a WebSocket too; the first to connect wins.
    /// A WebTransport failure that came from the server (its certificate, its versions,
    /// a refusal) ends the race: the WebSocket would hear the same.
    async fn race_websocket(
        &self,
        webtransport: impl Future<Output = Result<Connected, Error>>,
        websocket: impl Future<Output = Result<Connected, Error>>,
    ) -> Result<Connected, Error> {
        let mut webtransport = pin!(webtransport);
        let mut websocket = pin!(websocket);
        let mut head_start = pin!(tokio::time::sleep(self.websocket.delay));
        let mut started = false;
        let mut wt_error: Option<Error> = None;
        let mut ws_error: Option<Error> = None;
        loop {
            tokio::select! {
                result = &mut webtransport, if wt_error.is_none() => match result {
                    Ok(connected) => return Ok(connected),
                    // The server answered and said no, or we cannot check any certificate:
                    // the WebSocket would end the same way.
                    Err(err) if decisive(&err) || matches!(err, Error::Rejected { .. } | Error::NoRoots { .. }) => {
                        return Err(err);
                    }
                    Err(err) => {
                        tracing::debug!(%err, "WebTransport failed; trying WebSocket");
                        started = true;
                        wt_error = Some(err);
                    }
                },
                () = &mut head_start, if !started => {
                    tracing::debug!(delay = ?self.websocket.delay, "WebTransport is slow; trying WebSocket too");
                    started = true;
                }
                result = &mut websocket, if started && ws_error.is_none() => match result {
                    Ok(connected) => {
                        tracing::info!(transport = %connected.transport, "connected over the WebSocket fallback");
                        return Ok(connected);
                    }
                    Err(err) => ws_error = Some(err),
                },
            }
            if wt_error.is_some()
                && ws_error.is_some()
                && let (Some(webtransport), Some(websocket)) = (wt_error.take(), ws_error.take())
            {
                return Err(match (webtransport, websocket) {
                    // An http:// URL whose fingerprint could not be fetched over TCP: the
                    // WebSocket found the same port closed, which adds nothing.
                    (err @ Error::FingerprintFetch { .. }, Error::TcpUnreachable { .. }) => err,
                    (webtransport, websocket) => Error::Fallback {
                        webtransport: Box::new(webtransport),
                        websocket: Box::new(websocket),
                    },
                });
            }
        }
    }

    /// qmux over a WebSocket to a `ws://` or `wss://` URL.
    async fn websocket(&self, url: &Url, target: &Target) -> Result<Connected, Error> {
        let dial = crate::websocket::Dial {
            versions: &self.versions,
            provider: &self.provider,
            verifier: self.verifier.clone(),
            check: self.check,
            identity: self.identity.as_deref(),
            timeout: self.handshake_timeout,
            attempt_delay: ATTEMPT_DELAY,
            config: &self.qmux,
        };
        let (session, version) = crate::websocket::connect(url, target, dial).await?;
        {
            let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
            sockets.retain(|s| !s.is_finished());
            sockets.push(session.closer());
        }
        tracing::debug!(%url, %version, wire = %session.wire(), "WebSocket session established");
        Ok(Connected {
            session: Connection::WebSocket(session),
            version,
            transport: Transport::WebSocket,
        })
    }

    /// Close every connection and the socket.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"client closing");
        for socket in self.sockets.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            socket.close(0, "client closing");
        }
    }

    /// Close every connection and wait (up to `timeout`) until the peers have been
    /// told, so a process that exits right after does not leave sessions behind.
    pub async fn close_and_wait(&self, timeout: std::time::Duration) {
        self.close();
        let sockets: Vec<qmux::Closer> = self
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let wait = async {
            self.endpoint.wait_idle().await;
            for socket in sockets {
                socket.finished().await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }

    pub(crate) fn verifier(&self, target: &Target) -> Result<Arc<dyn ServerCertVerifier>, Error> {
        self.verifier.clone().ok_or_else(|| Error::NoRoots {
            host: target.host.clone(),
        })
    }

    pub(crate) fn quinn_config(
        &self,
        verifier: Arc<dyn ServerCertVerifier>,
        alpns: Vec<Vec<u8>>,
    ) -> Result<quinn::ClientConfig, Error> {
        let builder = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|err| Error::Tls(err.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut crypto = match &self.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.0.clone(), identity.1.clone_key())
                .map_err(|err| Error::Tls(format!("client certificate: {err}")))?,
            None => builder.with_no_client_auth(),
        };
        crypto.alpn_protocols = alpns;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|err| Error::Tls(err.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(self.transport.clone());
        Ok(config)
    }

    async fn quic(&self, target: &Target, verifier: Arc<dyn ServerCertVerifier>) -> Result<Connected, Error> {
        let alpns = self
            .versions
            .iter()
            .map(|v| v.alpn().as_bytes().to_vec())
            .collect();
        let config = self.quinn_config(verifier, alpns)?;
        let conn = self.handshake(target, config, self.check).await?;

        let alpn = conn
            .handshake_data()
            .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|data| data.protocol)
            .unwrap_or_default();
        let Some(version) = Protocol::from_alpn(&alpn).filter(|v| self.versions.contains(v)) else {
            conn.close(0u32.into(), b"unexpected ALPN");
            return Err(Error::Alpn {
                addr: canonical(conn.remote_address()),
                alpn: String::from_utf8_lossy(&alpn).into_owned(),
            });
        };

        tracing::debug!(server = %canonical(conn.remote_address()), %version, "raw QUIC session established");
        Ok(Connected {
            session: Connection::Quic(Session::raw(conn)),
            version,
            transport: Transport::Quic,
        })
    }

    async fn webtransport(
        &self,
        url: Url,
        target: &Target,
        verifier: Arc<dyn ServerCertVerifier>,
        check: Check,
    ) -> Result<Connected, Error> {
        let config = self.quinn_config(verifier, vec![b"h3".to_vec()])?;
        let conn = self.handshake(target, config, check).await?;
        let server = canonical(conn.remote_address());

        let request = ConnectRequest::new(url.clone())
            .with_protocols(self.versions.iter().map(|v| v.alpn().to_string()));

        let connect = web_transport_quinn::Session::connect(conn, request);
        let session = tokio::time::timeout(self.handshake_timeout, connect)
            .await
            .map_err(|_| Error::Timeout {
                addr: server,
                after: self.handshake_timeout,
            })?
            .map_err(|err| self.connect_error(&url, target, err))?;

        let chosen = session.protocol().map(str::to_string);
        let version = chosen
            .as_deref()
            .and_then(|p| Protocol::from_alpn(p.as_bytes()))
            .filter(|v| self.versions.contains(v));
        let Some(version) = version else {
            session.close(0, b"no common moq version");
            return Err(Error::NoServerVersion {
                server: target.to_string(),
                offered: alpn_list(&self.versions),
                detail: match chosen {
                    Some(p) => format!("it answered WT-Protocol: {p}"),
                    None => "it answered without WT-Protocol".to_string(),
                },
            });
        };

        tracing::debug!(%server, %url, %version, "WebTransport session established");
        Ok(Connected {
            session: Connection::Quic(session),
            version,
            transport: Transport::WebTransport,
        })
    }

    fn connect_error(&self, url: &Url, target: &Target, err: web_transport_quinn::ClientError) -> Error {
        use web_transport_quinn::{ClientError, ConnectError, proto};

        let status = match &err {
            ClientError::HttpError(ConnectError::ErrorStatus(status)) => Some(*status),
            ClientError::HttpError(ConnectError::ProtoError(proto::ConnectError::WrongStatus(Some(
                status,
            )))) => Some(*status),
            ClientError::HttpError(ConnectError::ProtocolMismatch(p)) => {
                return Error::NoServerVersion {
                    server: target.to_string(),
                    offered: alpn_list(&self.versions),
                    detail: format!("it answered WT-Protocol: {p}"),
                };
            }
            _ => None,
        };
        match status {
            // Our server answers 406 when it allows none of the versions we offered.
            Some(status) if status == http::StatusCode::NOT_ACCEPTABLE => Error::NoServerVersion {
                server: target.to_string(),
                offered: alpn_list(&self.versions),
                detail: "it answered 406 Not Acceptable".to_string(),
            },
            Some(status) => Error::Rejected {
                url: url.to_string(),
                status: status.as_u16(),
            },
            None => Error::WebTransportConnect {
                url: url.to_string(),
                source: err,
            },
        }
    }

    /// Dial every address of `target`, staggered, and keep the first completed handshake.
    async fn handshake(
        &self,
        target: &Target,
        config: quinn::ClientConfig,
        check: Check,
    ) -> Result<quinn::Connection, Error> {
        let mut addrs = target.resolve().await?;
        // An IPv4-only socket (no IPv6 on this host) cannot reach IPv6 addresses.
        if self.endpoint.local_addr().is_ok_and(|a| a.is_ipv4()) {
            addrs.retain(SocketAddr::is_ipv4);
        }
        self.race(target, &addrs, config, check).await
    }

    /// Dial `addrs` in order, each [`ATTEMPT_DELAY`] after the previous one, and keep the
    /// first completed handshake; the others are abandoned.
    pub(crate) async fn race(
        &self,
        target: &Target,
        addrs: &[SocketAddr],
        config: quinn::ClientConfig,
        check: Check,
    ) -> Result<quinn::Connection, Error> {
        let mut attempts = FuturesUnordered::new();
        for (i, addr) in addrs.iter().copied().enumerate() {
            let config = config.clone();
            let delay = ATTEMPT_DELAY.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            attempts.push(async move {
                tokio::time::sleep(delay).await;
                (addr, self.attempt(addr, target, config, check).await)
            });
        }

        let mut failures = Vec::new();
        while let Some((addr, result)) = attempts.next().await {
            match result {
                Ok(conn) => return Ok(conn),
                // We reached a server and it said no: another address will say the same.
                Err(err) if decisive(&err) => return Err(err),
                Err(err) => {
                    tracing::debug!(%addr, %err, "connection attempt failed");
                    failures.push(err.to_string());
                }
            }
        }

        Err(Error::Unreachable {
            target: target.to_string(),
            port: target.port,
            attempts: if failures.is_empty() {
                "no address".to_string()
            } else {
                failures.join("; ")
            },
        })
    }

    async fn attempt(
        &self,
        addr: SocketAddr,
        target: &Target,
        config: quinn::ClientConfig,
        check: Check,
    ) -> Result<quinn::Connection, Error> {
        let connecting = self
            .endpoint
            .connect_with(config, addr, &target.server_name)
            .map_err(|source| Error::Dial { addr, source })?;
        match tokio::time::timeout(self.handshake_timeout, connecting).await {
            Err(_) => Err(Error::Timeout {
                addr,
                after: self.handshake_timeout,
            }),
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(self.handshake_error(addr, target, check, err)),
        }
    }

    /// Turn a failed QUIC handshake into an error a person can act on.
    fn handshake_error(
        &self,
        addr: SocketAddr,
        target: &Target,
        check: Check,
        err: quinn::ConnectionError,
    ) -> Error {
        match &err {
            // Our verifier refused the certificate (RFC 9001 §4.8: 0x100 + TLS alert).
            quinn::ConnectionError::TransportError(e)
                if is_certificate_error(u64::from(e.code), &e.reason) =>
            {
                let detail = e
                    .reason
                    .trim_start_matches("invalid peer certificate: ")
                    .to_string();
                // Our fingerprint verifier puts the presented certificate's hash in the reason.
                let presented = match sha256_hex(&detail) {
                    Some(hash) => format!("the server presented {hash}"),
                    None => detail.clone(),
                };
                match check {
                    Check::Pinned => Error::FingerprintMismatch {
                        host: target.host.clone(),
                        detail: format!("{presented}; expected one of the configured fingerprints"),
                    },
                    Check::Fetched => Error::FingerprintMismatch {
                        host: target.host.clone(),
                        detail: format!("{presented}; expected the one served at /certificate.sha256"),
                    },
                    Check::Roots | Check::Insecure => Error::CertificateNotTrusted {
                        host: target.host.clone(),
                        detail,
                    },
                }
            }
            quinn::ConnectionError::ConnectionClosed(close)
                if u64::from(close.error_code) == NO_APPLICATION_PROTOCOL =>
            {
                Error::NoServerVersion {
                    server: target.to_string(),
                    offered: alpn_list(&self.versions),
                    detail: "its TLS handshake shares no ALPN with ours".to_string(),
                }
            }
            quinn::ConnectionError::TimedOut => Error::Timeout {
                addr,
                after: self.handshake_timeout,
            },
            _ => Error::Connection { addr, source: err },
        }
    }
}

/// Whether a handshake failure came from a server that answered (so trying its other
/// addresses is pointless).
fn decisive(err: &Error) -> bool {
    matches!(
        err,
        Error::CertificateNotTrusted { .. }
            | Error::FingerprintMismatch { .. }
            | Error::NoServerVersion { .. }
    )
}

/// The first run of exactly 64 hex digits in `text`.
fn sha256_hex(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() == 64)
}

/// A certificate rejection by our own verifier: rustls sends `bad_certificate` (42) …
/// `access_denied` (49) and says "invalid peer certificate".
fn is_certificate_error(code: u64, reason: &str) -> bool {
    (0x100 + 42..=0x100 + 49).contains(&code) || reason.starts_with("invalid peer certificate")
}

/// The verifier for CA validation: system roots (if enabled) plus the configured roots.
/// `None` if that leaves no root at all; connections that need it then fail with a clear
/// error, while `http://` URLs (which pin a fetched fingerprint) still work.
fn roots_verifier(
    config: &ClientTls,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ServerCertVerifier>>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    if config.system_roots {
        let native = rustls_native_certs::load_native_certs();
        for err in native.errors {
            tracing::warn!(%err, "cannot load a system root certificate");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
    }
    for path in &config.roots {
        for cert in tls::read_certs(path, "root certificate")? {
            roots.add(cert).map_err(|err| Error::Pem {
                what: "root certificate",
                path: path.clone(),
                detail: err.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        return Ok(None);
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|err| Error::Tls(err.to_string()))?;
    Ok(Some(verifier))
}

/// The URL schemes a client dials, each naming a transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `https://`: WebTransport with verified TLS.
    Https,
    /// `http://`: WebTransport to a development relay whose certificate fingerprint is
    /// fetched over TCP.
    Http,
    /// `moqt://` or `moql://`: raw QUIC.
    Quic,
    /// `wss://`: qmux over a WebSocket over TLS.
    Wss,
    /// `ws://`: qmux over a plain WebSocket.
    Ws,
}

impl Scheme {
    /// The scheme of `url`, or why we cannot dial it.
    pub(crate) fn of(url: &Url) -> Result<Self, Error> {
        match url.scheme() {
            "https" => Ok(Self::Https),
            "http" => Ok(Self::Http),
            "moqt" | "moql" => Ok(Self::Quic),
            "wss" => Ok(Self::Wss),
            "ws" => Ok(Self::Ws),
            other => Err(Error::Url {
                url: url.to_string(),
                detail: format!(
                    "unsupported scheme '{other}' (use https://, http:// for a development relay, \
                     moqt:// for raw QUIC, or wss:// / ws:// for WebSocket)"
                ),
            }),
        }
    }

    /// The scheme as written in a URL (`moqt` for raw QUIC).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
            Self::Quic => "moqt",
            Self::Wss => "wss",
            Self::Ws => "ws",
        }
    }
}

/// Where a URL points: host, port, and the TLS server name to present.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The host as written (without brackets for IPv6).
    pub(crate) host: String,
    /// Its IP address if the host is a literal.
    ip: Option<IpAddr>,
    /// The UDP (and, for `http://`, TCP) port; 443 (or 80 for `http://`) when absent.
    pub(crate) port: u16,
    /// The SNI name, or the IP literal for certificate IP SAN checks.
    server_name: String,
}

impl Target {
    pub(crate) fn parse(url: &Url) -> Result<Self, Error> {
        let bad = |detail: &str| Error::Url {
            url: url.to_string(),
            detail: detail.to_string(),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let (host, ip) = match url.host() {
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            // Non-special schemes (moqt://) leave IPv4 literals as opaque names.
            Some(url::Host::Domain(name)) => (name.to_string(), name.parse::<IpAddr>().ok()),
            None => return Err(bad("the URL has no host")),
        };
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        Ok(Self {
            server_name: host.clone(),
            host,
            ip,
            port,
        })
    }

    /// Every address of the host, IPv6 and IPv4 interleaved (RFC 8305 §4), IPv6 first.
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, Error> {
        if let Some(ip) = self.ip {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|err| Error::Resolve {
                host: self.host.clone(),
                detail: err.to_string(),
            })?
            .collect();

        let (v6, v4): (Vec<_>, Vec<_>) = resolved.into_iter().partition(SocketAddr::is_ipv6);
        let mut addrs = Vec::with_capacity(v6.len().saturating_add(v4.len()));
        let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
        loop {
            match (v6.next(), v4.next()) {
                (None, None) => break,
                (a, b) => addrs.extend(a.into_iter().chain(b)),
            }
        }
        addrs.dedup();
        if addrs.is_empty() {
            return Err(Error::Resolve {
                host: self.host.clone(),
                detail: "no addresses".to_string(),
            });
        }
        Ok(addrs)
    }
}

impl Target {
    /// The name to present in TLS (SNI), or the IP literal.
    pub(crate) fn server_name(&self) -> &str {
        &self.server_name
    }
}

/// `url` with another scheme, keeping an explicit port even when it is the new
/// scheme's default (QUIC and TCP ports are not HTTP's).
fn with_scheme(url: &Url, scheme: &str) -> Result<Url, Error> {
    let port = url.port_or_known_default();
    let mut out = url.clone();
    // `set_scheme` refuses to move between special and non-special schemes
    // (http -> moqt), never between http(s) and ws(s); rebuild from text otherwise.
    if out.set_scheme(scheme).is_err() {
        let rest = url
            .as_str()
            .split_once(':')
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        out = Url::parse(&format!("{scheme}:{rest}")).map_err(|err| Error::Url {
            url: url.to_string(),
            detail: format!("cannot turn it into a {scheme}:// URL: {err}"),
        })?;
    }
    if out.port_or_known_default() != port {
        let _ = out.set_port(port);
    }
    Ok(out)
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            Some(IpAddr::V6(_)) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_name_their_transport_and_round_trip() {
        let cases = [
            ("https", Scheme::Https),
            ("http", Scheme::Http),
            ("moqt", Scheme::Quic),
            ("moql", Scheme::Quic),
            ("wss", Scheme::Wss),
            ("ws", Scheme::Ws),
        ];
        for (written, scheme) in cases {
            let url = Url::parse(&format!("{written}://relay.example/")).unwrap();
            assert_eq!(Scheme::of(&url).unwrap(), scheme, "{written}");
            let again = Url::parse(&format!("{}://relay.example/", scheme.as_str())).unwrap();
            assert_eq!(Scheme::of(&again).unwrap(), scheme, "{written}");
        }
        let ftp = Url::parse("ftp://relay.example/").unwrap();
        assert!(matches!(Scheme::of(&ftp), Err(Error::Url { detail, .. }) if detail.contains("'ftp'")));
    }
}
