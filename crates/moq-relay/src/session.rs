//! One client connection, in five steps: **admit** (rate and session limits, before any
//! handshake work) → **handshake** (the transport's own: QUIC + TLS, then WebTransport's
//! CONNECT or raw QUIC's SETUP) → **authenticate** (the [gate](crate::gate)) →
//! **configure** (what the session driver may publish and consume; a [`Hook`] may claim
//! special paths) → **run** (until the peer leaves, the grant expires or the relay stops).
//!
//! Each transport is one handshake function that ends in an [`Accepted`] session; the
//! steps after it are shared, generic over the transport.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use moq_core::{
    ietf,
    session::{self, Permissions},
    transport::Session as _,
};
use moq_native::{Protocol, Transport, Version, adapter::MoqSession, quinn, server};
use moq_proto::message::Setup;

use crate::{
    admission::{Admission, Denied, Ticket},
    auth_service::{Change, Facts, Lease, Service},
    gate::{Gate, Grant, Refusal, RefusalKind, Target},
    lifecycle::Lifecycle,
    media::Media,
    metrics::Refusals,
    registry::{Registry, SessionInfo},
};

/// How long a client has to send its SETUP (which, on raw QUIC, carries its path).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A special kind of session, claimed by a higher layer by its grant (the cluster
/// directory claims sessions rooted at its reserved path).
pub trait Hook: Send + Sync + std::fmt::Debug {
    /// Configure a session this hook claims, or refuse it; `None` leaves it to the default.
    fn configure(&self, grant: &Grant, config: &mut session::Config) -> Option<Result<(), Refusal>>;
}

/// What every client session needs: narrow handles, nothing else.
#[derive(Debug)]
pub struct Sessions {
    /// The media plane sessions publish into and serve from.
    pub media: Media,
    /// Decides what each session may do.
    pub gate: Arc<Gate>,
    /// The external auth server (`[auth] url`), which then decides instead of the gate.
    pub service: Option<Arc<Service>>,
    /// Rate and session limits.
    pub admission: Arc<Admission>,
    /// Live sessions.
    pub registry: Arc<Registry>,
    /// Refusal counters.
    pub refusals: Refusals,
    /// The per-session quota handed to the driver.
    pub quota: session::Quota,
    /// The quota of sessions authenticated by a client certificate (relays of the cluster).
    pub peer_quota: session::Quota,
    /// Drain and shutdown signals.
    pub lifecycle: Lifecycle,
    /// Special paths claimed by higher layers.
    pub hooks: Vec<Arc<dyn Hook>>,
    /// The QUIC settings of the listener, so stream credit grows from where it started.
    pub quic: moq_native::quic::Config,
    /// The last connection id handed out (ids start at 1).
    pub ids: std::sync::atomic::AtomicU64,
}

/// A session whose handshake and authentication are done.
#[derive(Debug)]
pub struct Accepted<S: moq_core::transport::Session> {
    /// The session, ready for the driver.
    pub session: S,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Negotiated version.
    pub version: Protocol,
    /// How it is carried.
    pub transport: Transport,
    /// What it may do.
    pub grant: Grant,
    /// The peer's SETUP, when the handshake had to read it.
    pub peer_setup: Option<Setup>,
    /// The QUIC connection, for statistics.
    pub connection: Option<quinn::Connection>,
    /// The in-band negotiation (moq-lite-01/02), whose Session stream the driver keeps.
    pub in_band: Option<session::Negotiated<S>>,
    /// The auth server's hold on the grant, when one decided it.
    pub lease: Option<Lease>,
    /// The moq-transport client's SETUP, when the handshake read it (raw QUIC, where it
    /// carries the path and token); otherwise it is read when the session runs.
    pub ietf: Option<ietf::Established<S>>,
}

/// The auth server's name for how a session arrived (WebTransport is `quic` there).
pub fn service_transport(transport: Transport) -> moq_auth::service::Transport {
    match transport {
        Transport::Quic | Transport::WebTransport => moq_auth::service::Transport::Quic,
        Transport::WebSocket => moq_auth::service::Transport::WebSocket,
    }
}

/// The auth server's name for a SETUP role.
fn service_role(role: Option<moq_proto::Role>) -> Option<moq_auth::service::Role> {
    match role? {
        moq_proto::Role::Publisher => Some(moq_auth::service::Role::Publisher),
        moq_proto::Role::Subscriber => Some(moq_auth::service::Role::Subscriber),
    }
}

/// The counted reason for a session the auth server's lease ended.
fn lease_reason(reason: &str) -> &'static str {
    match reason {
        "expired" => "expired",
        "refused" => "service_refused",
        "root_changed" => "service_root_changed",
        "peer_changed" => "service_peer_changed",
        _ => "service_invalid",
    }
}

impl Sessions {
    /// Serve one QUIC connection attempt (raw QUIC or WebTransport) to its end.
    pub async fn serve_quic(self: Arc<Self>, incoming: server::Incoming, id: u64) {
        let peer = incoming.remote_addr();
        if self.lifecycle.is_draining() {
            self.refusals.refused("draining");
            return incoming.refuse();
        }
        if !incoming.validated() && self.admission.needs_retry(peer.ip()) {
            self.refusals.retried();
            incoming.retry();
            return;
        }
        let Some(ticket) = self.admit(peer) else {
            return incoming.refuse();
        };
        let Some(accepted) = self.handshake_quic(incoming).await else {
            return;
        };
        self.run(accepted, ticket, id).await;
    }

    /// Step 3: what the session may do, from the gate, or from the auth server when
    /// `[auth] url` is set (then with the lease that keeps the grant up to date).
    pub async fn decide(&self, facts: Facts) -> Result<(Grant, Option<Lease>), Refusal> {
        let Some(service) = &self.service else {
            let grant = self.gate.decide_async(facts.target, facts.certificate).await?;
            return Ok((grant, None));
        };
        let target =
            Target::parse(&facts.target).map_err(|detail| Refusal::request("bad_path", detail, 400, 0x3))?;
        let lease = service.connect(service.request(&facts), target.root).await?;
        let granted = lease.grant();
        let grant = Grant {
            root: lease.root().clone(),
            permissions: granted.permissions(),
            claims: None,
            token: None,
            client_certificate: facts.certificate.is_some(),
            peer: granted.peer,
            expires: granted.expires_at(),
        };
        Ok((grant, Some(lease)))
    }

    /// A new connection id, for the log span and `/sessions`.
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// Step 1: take a session slot, or count and log why not (`None`).
    pub fn admit(&self, peer: SocketAddr) -> Option<Ticket> {
        match self.admission.admit(peer.ip()) {
            Ok(ticket) => Some(ticket),
            Err(denied) => {
                self.refusals.refused(denied.reason());
                if self.refusals.may_log() {
                    tracing::info!(%peer, reason = denied.reason(), "refused: {}", match denied {
                        Denied::RateLimit => "connection rate limit",
                        _ => "session limit",
                    });
                }
                None
            }
        }
    }

    /// Step 2 for QUIC: the TLS handshake, the version, and the target (WebTransport's
    /// CONNECT URL, or raw QUIC's SETUP path), authenticated before the session is used.
    async fn handshake_quic(&self, incoming: server::Incoming) -> Option<Accepted<MoqSession>> {
        let request = match incoming.accept().await {
            Ok(request) => request,
            Err(err) => {
                tracing::debug!(%err, "handshake failed");
                self.refusals.refused("handshake");
                return None;
            }
        };
        let Some(version) = request.version() else {
            // No version from ALPN or WT-Protocol (Firefox's WebTransport offers none, raw
            // QUIC `moql`): negotiate it in-band, as moq-lite-01/02 do.
            if !request.in_band_versions().is_empty() {
                return self.accept_in_band(request).await;
            }
            tracing::info!(offered = ?request.protocols(), "refused: no common moq version");
            self.refusals.refused("version");
            let _ = request.reject(406).await;
            return None;
        };
        tracing::Span::current().record("version", version.name());
        match request.url().cloned() {
            Some(url) => self.accept_webtransport(request, version, &url).await,
            None => self.accept_raw_quic(request, version).await,
        }
    }

    /// WebTransport carries path and token in its CONNECT URL: decide before answering.
    async fn accept_webtransport(
        &self,
        request: server::Request,
        version: Protocol,
        url: &url::Url,
    ) -> Option<Accepted<MoqSession>> {
        let peer = request.remote_addr();
        let transport = request.transport();
        let connection = request.connection().clone();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let facts = Facts {
            transport: Some(service_transport(transport)),
            target,
            remote: Some(peer),
            local: request.local_addr(),
            server_name: request.server_name().map(str::to_string),
            alpn: Some(version.alpn().to_string()),
            role: None,
            certificate: request.client_certificate(),
        };
        match self.decide(facts).await {
            Ok((grant, lease)) => match request.ok().await {
                Ok(session) => Some(Accepted {
                    session: MoqSession::with_config(session, transport, &self.quic),
                    peer,
                    version,
                    transport,
                    grant,
                    peer_setup: None,
                    connection: Some(connection),
                    in_band: None,
                    lease,
                    ietf: None,
                }),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    None
                }
            },
            Err(refusal) => {
                self.record(&refusal, peer);
                let _ = request.reject(refusal.status).await;
                None
            }
        }
    }

    /// Raw QUIC carries path and token in the client's SETUP (moq-lite-05+, and every
    /// moq-transport draft, where an AUTHORIZATION_TOKEN may carry the token too), read
    /// after accepting; lite-03/04 have no path: the session is rooted at "".
    async fn accept_raw_quic(
        &self,
        request: server::Request,
        version: Protocol,
    ) -> Option<Accepted<MoqSession>> {
        let peer = request.remote_addr();
        let transport = request.transport();
        let connection = request.connection().clone();
        let certificate = request.client_certificate();
        let local = request.local_addr();
        let server_name = request.server_name().map(str::to_string);
        let session = match request.ok().await {
            Ok(session) => MoqSession::with_config(session, transport, &self.quic),
            Err(err) => {
                tracing::debug!(%err, "accept failed");
                return None;
            }
        };
        let refuse = |refusal: Refusal| {
            session.close(refusal.code, &refusal.close_reason());
            None
        };
        let (target, peer_setup, established) = match version {
            Protocol::Lite(lite) => {
                let peer_setup = match self.read_setup(&session, lite, peer).await {
                    Ok(setup) => setup,
                    Err(refusal) => return refuse(refusal),
                };
                let target = peer_setup
                    .as_ref()
                    .and_then(|s| s.path.clone())
                    .unwrap_or_default();
                (target, peer_setup, None)
            }
            Protocol::Ietf(draft) => match ietf::accept(&session, draft, SETUP_TIMEOUT).await {
                Ok(established) => (ietf_target(established.peer(), draft), None, Some(established)),
                Err(err) => {
                    let refusal = setup_refusal(&err);
                    self.record(&refusal, peer);
                    return refuse(refusal);
                }
            },
        };
        let facts = Facts {
            transport: Some(service_transport(transport)),
            target,
            remote: Some(peer),
            local,
            server_name,
            alpn: Some(version.alpn().to_string()),
            role: service_role(peer_setup.as_ref().and_then(|s| s.role)),
            certificate,
        };
        match self.decide(facts).await {
            Ok((grant, lease)) => Some(Accepted {
                session,
                peer,
                version,
                transport,
                grant,
                peer_setup,
                connection: Some(connection),
                in_band: None,
                lease,
                ietf: established,
            }),
            Err(refusal) => {
                self.record(&refusal, peer);
                refuse(refusal)
            }
        }
    }

    /// A session with no version yet: accept it, read the client's legacy SETUP and
    /// answer with the version chosen (moq-lite-02/01), then authenticate its URL
    /// (WebTransport) or SETUP path (raw QUIC `moql`).
    async fn accept_in_band(&self, request: server::Request) -> Option<Accepted<MoqSession>> {
        let peer = request.remote_addr();
        let transport = request.transport();
        let connection = request.connection().clone();
        let certificate = request.client_certificate();
        let local = request.local_addr();
        let server_name = request.server_name().map(str::to_string);
        let url_target = request.url().map(|url| match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        });
        let allowed = request.in_band_versions().to_vec();
        let session = match request.ok_unnegotiated().await {
            Ok(session) => MoqSession::with_config(session, transport, &self.quic),
            Err(err) => {
                tracing::debug!(%err, "accept failed");
                return None;
            }
        };
        // On failure the session is closed with the matching code.
        let negotiated = match session::accept_in_band(&session, &allowed, SETUP_TIMEOUT).await {
            Ok(negotiated) => negotiated,
            Err(err) => {
                let refusal = Refusal::request("version", err.to_string(), 406, err.session_code());
                self.record(&refusal, peer);
                return None;
            }
        };
        let version = Protocol::Lite(negotiated.version());
        tracing::Span::current().record("version", version.name());
        let target = url_target
            .or_else(|| negotiated.parameters().path.clone())
            .unwrap_or_default();
        let facts = Facts {
            transport: Some(service_transport(transport)),
            target,
            remote: Some(peer),
            local,
            server_name,
            alpn: Some(version.alpn().to_string()),
            role: None,
            certificate,
        };
        match self.decide(facts).await {
            Ok((grant, lease)) => Some(Accepted {
                session,
                peer,
                version,
                transport,
                grant,
                peer_setup: None,
                connection: Some(connection),
                in_band: Some(negotiated),
                lease,
                ietf: None,
            }),
            Err(refusal) => {
                self.record(&refusal, peer);
                session.close(refusal.code, &refusal.close_reason());
                None
            }
        }
    }

    /// The raw-QUIC client's SETUP (lite-05+), within [`SETUP_TIMEOUT`].
    async fn read_setup(
        &self,
        session: &MoqSession,
        version: Version,
        peer: SocketAddr,
    ) -> Result<Option<Setup>, Refusal> {
        if !version.has_setup_stream() {
            return Ok(None);
        }
        let refusal = match tokio::time::timeout(SETUP_TIMEOUT, session::read_setup(session, version)).await {
            Ok(Ok(setup)) => return Ok(Some(setup)),
            Ok(Err(err)) => setup_refusal(&err),
            Err(_) => setup_refusal(&moq_core::Error::Timeout),
        };
        self.record(&refusal, peer);
        Err(refusal)
    }

    /// Count and log a refusal. Never the token itself: only where it came from and why.
    pub fn record(&self, refusal: &Refusal, peer: SocketAddr) {
        let log = self.refusals.may_log();
        match refusal.kind {
            RefusalKind::Auth => {
                if log {
                    tracing::warn!(%peer, reason = refusal.reason, detail = %refusal.detail, "authentication failed");
                }
                self.refusals.auth_failed(refusal.reason);
            }
            RefusalKind::Request => {
                if log {
                    tracing::info!(%peer, reason = refusal.reason, detail = %refusal.detail, "refused");
                }
                self.refusals.refused(refusal.reason);
            }
        }
    }

    /// Re-check every live session's token against the current keys; end those whose key
    /// is gone. Returns how many were ended.
    ///
    /// Sessions an auth server admitted are asked about again instead (in the
    /// background: the server's answer applies as on their cadence).
    pub fn revalidate(&self) -> usize {
        self.revalidate_matching(|_| true).ended
    }

    /// [`Sessions::revalidate`] for the live sessions `select` picks.
    pub fn revalidate_matching(&self, select: impl Fn(&SessionInfo) -> bool) -> Revalidated {
        let mut done = Revalidated::default();
        for session in self.registry.list().into_iter().filter(|s| select(s)) {
            done.ids.push(session.label());
            if let Some(nudge) = &session.nudge {
                nudge.notify_one();
                done.asked += 1;
                continue;
            }
            if let Err(refusal) = self.gate.revalidate(&session.grant) {
                tracing::info!(peer = %session.peer, id = session.id, reason = refusal.reason, detail = %refusal.detail, "session's token no longer valid");
                self.refusals.auth_failed("revoked");
                session.revoke.cancel();
                done.ended += 1;
            }
        }
        done
    }

    /// Step 4: what the session driver may publish and consume.
    pub fn configure(&self, grant: &Grant, version: Protocol) -> Result<session::Config, Refusal> {
        self.configure_claimed(grant, version).map(|(config, _)| config)
    }

    /// [`Sessions::configure`], and whether a hook claimed the session (its permissions
    /// are then the hook's, not the grant's).
    fn configure_claimed(
        &self,
        grant: &Grant,
        version: Protocol,
    ) -> Result<(session::Config, bool), Refusal> {
        let mut config = self.media.session_config(version);
        config.shutdown = Some(self.lifecycle.draining());
        for hook in &self.hooks {
            if let Some(result) = hook.configure(grant, &mut config) {
                return result.map(|()| (config, true));
            }
        }
        let permissions: &Permissions = &grant.permissions;
        config.publish = (!permissions.subscribes_nothing()).then(|| self.media.origin.clone());
        // Every session is asked for its broadcasts, even one that may publish nothing: a
        // publisher in a subscribe-only prefix is then refused (UNAUTHORIZED, logged,
        // counted in moq_relay_announcements_forbidden) instead of vanishing unnoticed.
        // Its broadcasts are never taken (moq-core checks every announcement).
        config.consume = Some(self.media.origin.clone());
        config.root = grant.root.clone();
        config.permissions = grant.permissions.clone();
        // Relays of the cluster (a cluster certificate, token or grant) carry every broadcast.
        config.quota = match grant.client_certificate || grant.peer {
            true => self.peer_quota.clone(),
            false => self.quota.clone(),
        };
        Ok((config, false))
    }

    /// Steps 4 and 5: register the session, configure it and drive it to its end.
    pub async fn run<S: moq_core::transport::Session>(&self, accepted: Accepted<S>, ticket: Ticket, id: u64) {
        let Accepted {
            session,
            peer,
            version,
            transport,
            grant,
            peer_setup,
            connection,
            in_band,
            lease,
            ietf: established,
        } = accepted;
        tracing::Span::current().record("path", grant.root.as_str());
        let (mut config, claimed) = match self.configure_claimed(&grant, version) {
            Ok(configured) => configured,
            Err(refusal) => {
                self.record(&refusal, peer);
                if let Some(lease) = lease {
                    self.report_end(lease, "refused".to_string(), connection.as_ref());
                }
                return session.close(refusal.code, &refusal.close_reason());
            }
        };
        config.peer_setup = peer_setup;
        // An auth server may change the grant while the session runs: the driver then
        // follows its permissions (a session a hook claimed keeps the hook's).
        let permissions = (lease.is_some() && !claimed).then(|| follow_permissions(&mut config));
        tracing::info!(
            %version,
            %transport,
            path = %grant.root,
            token = grant.claims.is_some(),
            mtls = grant.client_certificate,
            service = lease.as_ref().map(Lease::id),
            "session accepted"
        );
        let grant = Arc::new(grant);
        let revoke = tokio_util::sync::CancellationToken::new();
        let _registration = self.registry.register(SessionInfo {
            id,
            peer,
            root: grant.root.clone(),
            version,
            transport,
            since: std::time::Instant::now(),
            connection: connection.clone(),
            grant: grant.clone(),
            revoke: revoke.clone(),
            nudge: lease.as_ref().map(Lease::nudge),
            service_id: lease.as_ref().map(|lease| lease.id().to_string()),
        });
        let _ticket = ticket;
        let mut watch = Watch {
            lease,
            permissions,
            revoke,
        };
        let driver = self.drive(&session, peer, version, config, in_band, established);
        let ended = self.supervise(&session, peer, &grant, driver, &mut watch).await;
        if let Some(lease) = watch.lease {
            self.report_end(lease, ended, connection.as_ref());
        }
    }

    /// Step 5's driver: the session's protocol, until the peer leaves or it fails. A
    /// moq-transport session reached over WebTransport or WebSocket reads its SETUP first
    /// (refused and closed here when it is bad or late).
    async fn drive<S: moq_core::transport::Session>(
        &self,
        session: &S,
        peer: SocketAddr,
        version: Protocol,
        config: session::Config,
        in_band: Option<session::Negotiated<S>>,
        established: Option<ietf::Established<S>>,
    ) -> moq_core::Result<()> {
        match (version, in_band, established) {
            (_, Some(negotiated), _) => session::run_in_band(session.clone(), config, negotiated).await,
            (Protocol::Ietf(draft), None, established) => {
                let established = match established {
                    Some(established) => established,
                    // WebTransport and WebSocket: the URL said who it is; the SETUP
                    // comes now.
                    None => match ietf::accept(session, draft, SETUP_TIMEOUT).await {
                        Ok(established) => established,
                        Err(err) => {
                            let refusal = setup_refusal(&err);
                            self.record(&refusal, peer);
                            session.close(refusal.code, &refusal.close_reason());
                            return Err(err);
                        }
                    },
                };
                ietf::run(session.clone(), config, established).await
            }
            (Protocol::Lite(_), None, _) => session::run(session.clone(), config).await,
        }
    }

    /// Run `driver` until it ends or something ends the session first: the grant's expiry,
    /// the auth server's lease, a revocation or the relay's shutdown. Applies the lease's
    /// permission changes meanwhile. Returns why the session ended (for the auth server).
    async fn supervise<S: moq_core::transport::Session>(
        &self,
        session: &S,
        peer: SocketAddr,
        grant: &Grant,
        driver: impl Future<Output = moq_core::Result<()>>,
        watch: &mut Watch,
    ) -> String {
        // A token (or client certificate) is good for the whole session, until it expires;
        // an auth server's grant is followed by its lease instead.
        let leased = watch.lease.is_some();
        let expiry = async {
            match grant.remaining(std::time::SystemTime::now()) {
                Some(left) if !leased => tokio::time::sleep(left).await,
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(expiry, driver);
        loop {
            tokio::select! {
                result = &mut driver => {
                    match &result {
                        Ok(()) => tracing::info!("session closed"),
                        Err(err) => tracing::info!(%err, "session ended"),
                    }
                    break match result {
                        Ok(()) => "closed".to_string(),
                        Err(err) => err.to_string(),
                    };
                }
                () = &mut expiry => {
                    tracing::info!(%peer, "token or certificate expired; closing the session");
                    self.refusals.auth_failed("expired");
                    session.close(0x2, "unauthorized: token expired");
                    break "expired".to_string();
                }
                change = lease_changed(&mut watch.lease) => match change {
                    Change::Permissions(now) => {
                        tracing::info!(%peer, permissions = ?now, "the auth server changed the grant; applied");
                        if let Some(permissions) = &watch.permissions {
                            permissions.send_replace(now);
                        }
                    }
                    Change::End(reason, detail) => {
                        tracing::info!(%peer, reason, %detail, "the auth server's grant ended; closing the session");
                        self.refusals.auth_failed(lease_reason(reason));
                        session.close(0x2, &format!("unauthorized: {detail}"));
                        break reason.to_string();
                    }
                },
                () = watch.revoke.cancelled() => {
                    tracing::info!(%peer, "the key behind this session's token is gone; closing the session");
                    session.close(0x2, "unauthorized: token revoked");
                    break "revoked".to_string();
                }
                () = self.lifecycle.shutdown_token().cancelled() => {
                    session.close(0, "relay shutting down");
                    break "shutdown".to_string();
                }
            }
        }
    }

    /// Tell the auth server the session ended (in the background, bounded by its timeout).
    fn report_end(&self, lease: Lease, reason: String, connection: Option<&quinn::Connection>) {
        let bytes = connection
            .map(|c| {
                let stats = c.stats();
                moq_auth::service::Bytes {
                    sent: stats.udp_tx.bytes,
                    received: stats.udp_rx.bytes,
                }
            })
            .unwrap_or_default();
        self.lifecycle.spawn_graceful(lease.end(reason, bytes));
    }
}

/// What [`Sessions::revalidate_matching`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revalidated {
    /// Every session re-checked ([`SessionInfo::label`]).
    pub ids: Vec<String>,
    /// Sessions whose token the current keys no longer verify: ended.
    pub ended: usize,
    /// Sessions an auth server admitted: asked about again in the background.
    pub asked: usize,
}

/// What may change or end a running session besides its driver.
struct Watch {
    /// The auth server's hold on the grant, when one decided it.
    lease: Option<Lease>,
    /// Where the lease's permission changes go, when the driver follows them.
    permissions: Option<tokio::sync::watch::Sender<Permissions>>,
    /// Cancelled when the key behind the session's token is gone.
    revoke: tokio_util::sync::CancellationToken,
}

/// Let the driver follow permission changes: `config` gets the receiving end, the
/// returned sender feeds it.
fn follow_permissions(config: &mut session::Config) -> tokio::sync::watch::Sender<Permissions> {
    let (sender, receiver) = tokio::sync::watch::channel(config.permissions.clone());
    config.live_permissions = Some(receiver);
    sender
}

/// The next change to a session's grant, or never without an auth server's lease.
async fn lease_changed(lease: &mut Option<Lease>) -> Change {
    match lease {
        Some(lease) => lease.changed().await,
        None => std::future::pending().await,
    }
}

/// Why a client's SETUP was refused: malformed (400), late (408), or naming no version we
/// allow (406).
fn setup_refusal(err: &moq_core::Error) -> Refusal {
    match err {
        moq_core::Error::Timeout => Refusal::request(
            "setup_timeout",
            format!("no SETUP within {SETUP_TIMEOUT:?}"),
            408,
            0x11,
        ),
        moq_core::Error::Version(_) => Refusal::request("version", err.to_string(), 406, err.session_code()),
        err => Refusal::request("bad_setup", err.to_string(), 400, err.session_code()),
    }
}

/// The target a moq-transport client's SETUP names: its PATH (and query, where a
/// `?jwt=` token may ride), with an AUTHORIZATION_TOKEN sent by value as the token when
/// the path carries none.
pub fn ietf_target(options: &ietf::SetupOptions, version: ietf::Version) -> String {
    let mut target = options.path.clone().unwrap_or_default();
    let has_jwt = url::Url::parse("moqt://x")
        .ok()
        .and_then(|base| base.join(&target).ok())
        .is_some_and(|url| url.query_pairs().any(|(k, v)| k == "jwt" && !v.is_empty()));
    let token = options
        .authorization_token
        .as_ref()
        .and_then(|raw| moq_proto::ietf::AuthToken::decode(raw, version).ok())
        .and_then(|token| match token {
            moq_proto::ietf::AuthToken::UseValue { value, .. }
            | moq_proto::ietf::AuthToken::Register { value, .. } => String::from_utf8(value.to_vec()).ok(),
            _ => None,
        });
    if let Some(token) = token
        && !has_jwt
    {
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str("jwt=");
        target.push_str(&encoded);
    }
    target
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use moq_proto::ietf::{AuthToken, SetupOptions, Version};

    use super::*;

    fn token(value: &str) -> Option<Bytes> {
        let token = AuthToken::UseValue {
            kind: 0,
            value: Bytes::copy_from_slice(value.as_bytes()),
        };
        Some(token.to_bytes(Version::Draft16).unwrap())
    }

    #[test]
    fn a_setup_token_becomes_the_targets_jwt_unless_the_path_has_one() {
        let v = Version::Draft16;
        let options = |path: Option<&str>, authorization_token| SetupOptions {
            path: path.map(str::to_string),
            authorization_token,
            ..Default::default()
        };
        assert_eq!(ietf_target(&options(Some("/anon"), None), v), "/anon");
        assert_eq!(ietf_target(&options(None, None), v), "");
        assert_eq!(
            ietf_target(&options(Some("/room"), token("a+b")), v),
            "/room?jwt=a%2Bb"
        );
        assert_eq!(
            ietf_target(&options(Some("/room?x=1"), token("t")), v),
            "/room?x=1&jwt=t"
        );
        // The path's own token wins.
        assert_eq!(
            ietf_target(&options(Some("/room?jwt=url"), token("setup")), v),
            "/room?jwt=url"
        );
        // A token that is not a value (an alias) names nothing here.
        let alias = AuthToken::UseAlias { alias: 1 }.to_bytes(v).unwrap();
        assert_eq!(ietf_target(&options(Some("/room"), Some(alias)), v), "/room");
        // Nor does garbage.
        assert_eq!(
            ietf_target(&options(Some("/room"), Some(Bytes::from_static(&[0xff]))), v),
            "/room"
        );
    }
}
