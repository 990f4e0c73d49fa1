//! The relay: a QUIC/WebTransport listener and an HTTP listener in front of
//! one shared origin, with a gate that decides what each session may do.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use moq_core::{
    Origin,
    model::cache::{Cache, CacheConfig},
    session::{self, Permissions},
    stats::Stats,
};
use moq_native::{Transport, adapter::MoqSession, server};
use moq_proto::Path;
use tokio::sync::watch;
use tracing::Instrument;

use moq_auth::{Claims, KeySet, Public};

use crate::{
    config::Config,
    internal,
    metrics::{Metrics, SessionLabels},
    web,
};

/// How long a raw-QUIC client has to send its SETUP (which carries its path).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A live session, for `/sessions` and QUIC statistics.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Connection id (as in the log span).
    pub id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    /// The session root.
    pub path: String,
    /// Negotiated version.
    pub version: String,
    /// `quic` or `webtransport`.
    pub transport: String,
    /// When it was accepted.
    pub since: std::time::Instant,
    /// The QUIC connection, for its statistics.
    pub connection: moq_native::quinn::Connection,
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// The broadcast table.
    pub origin: Origin,
    /// Anonymous access.
    pub public: Public,
    /// Token verification keys, if tokens are accepted.
    pub keys: Option<KeySet>,
    /// Abuse protection.
    pub limits: Limits,
    /// New-connection budget per source address.
    rate: Mutex<HashMap<IpAddr, Bucket>>,
    /// This relay's hop id (0 = none).
    pub hop: u64,
    /// This relay's public URL, if configured.
    pub node: Option<String>,
    /// Links to other relays and the cluster directory.
    pub cluster: crate::cluster::ClusterState,
    /// Upstream subscriptions held now, across every session and link.
    pub upstream: Arc<std::sync::atomic::AtomicUsize>,
    /// Media counters, shared by every session.
    pub stats: Arc<Stats>,
    /// Every metric.
    pub metrics: Metrics,
    /// Turns true when draining: sessions are told to go away.
    pub draining: watch::Sender<bool>,
    sessions: Mutex<HashMap<u64, SessionInfo>>,
}

impl Shared {
    /// The sessions open now.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.lock_sessions().values().cloned().collect()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SessionInfo>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the relay should receive traffic, and why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        if *self.draining.borrow() {
            return Err("draining");
        }
        if self.metrics.ready.get() != 1 {
            return Err("starting");
        }
        if !self.cluster.connected() {
            return Err("no cluster link");
        }
        // A full relay refuses new sessions: take it out of rotation until some leave.
        if self.lock_sessions().len() >= self.limits.max_sessions as usize {
            return Err("full");
        }
        Ok(())
    }
}

/// Removes a session from the registry and the active gauge when it ends.
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
    labels: SessionLabels,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.lock_sessions().remove(&self.id);
        self.shared
            .metrics
            .sessions_active
            .get_or_create(&self.labels)
            .dec();
    }
}

/// A bound relay, ready to [`run`](Relay::run).
pub struct Relay {
    /// The configuration it was built from.
    pub config: Config,
    /// State shared with every session.
    pub shared: Arc<Shared>,
    /// The QUIC + WebTransport listener.
    pub quic: Arc<server::Server>,
    /// The HTTP listener (certificate fingerprint, announced, fetch, health).
    pub web: Option<web::Web>,
    /// The internal ops listener (metrics, health, readiness).
    pub internal: Option<internal::Internal>,
}

/// Controls a running relay: drain it, reload its certificates.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    quic: Arc<server::Server>,
}

impl Handle {
    /// Stop accepting, tell every session to go away (GOAWAY), and wait up to
    /// `timeout` for them to leave. Returns how many were still open.
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.shared.metrics.ready.set(0);
        self.quic.stop_accepting();
        self.shared.draining.send_replace(true);
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.shared.lock_sessions().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = self.shared.lock_sessions().len();
        self.quic.close();
        left
    }

    /// Re-read the certificate and key files (keeping the old ones if the new are bad).
    pub fn reload_certificates(&self) -> anyhow::Result<()> {
        self.quic.reload_certificates()?;
        record_expiry(&self.shared, &self.quic);
        Ok(())
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Export the certificate's expiry and warn when it is close.
fn record_expiry(shared: &Shared, quic: &server::Server) {
    let Some(expiry) = quic.certificate_expiry() else {
        return;
    };
    let unix = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    shared.metrics.cert_expiry.set(unix as i64);
    let left = expiry
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    if left < Duration::from_secs(7 * 86_400) {
        tracing::warn!(
            days = left.as_secs() / 86_400,
            "TLS certificate expires within 7 days"
        );
    }
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

impl Relay {
    /// Bind the listeners described by `config`.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let bind = config
            .server
            .quic_bind()
            .context("no QUIC listen address: set [server] listen (e.g. \"[::]:443\")")?;
        let bind = *bind
            .resolve()
            .with_context(|| format!("cannot resolve listen address {}:{}", bind.host, bind.port))?
            .first()
            .context("listen address resolved to nothing")?;
        let tls = &config.server.tls;
        let quic = server::Server::bind(server::Config {
            bind,
            tls: server::TlsConfig {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                generate: tls.generate.clone(),
                root: tls.root.clone(),
            },
            versions: config.server.version.clone(),
            ..Default::default()
        })
        .context("cannot start the QUIC listener")?;

        let cache = Cache::new(CacheConfig {
            capacity: config.cache.capacity.map(|c| c.resolve(total_memory())),
            duration: config.cache.duration,
        });
        let linger = config.cluster.linger.unwrap_or(Duration::from_secs(5));
        let stats = Arc::new(Stats::default());
        let origin = Origin::new(cache.clone(), linger);
        let upstream = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let metrics = Metrics::new(
            stats.clone(),
            cache.stats().clone(),
            origin.clone(),
            upstream.clone(),
        );
        // Every relay has a hop id, so announcements can never loop back to it.
        let hop = config.cluster.id.unwrap_or_else(crate::cluster::random_id);
        let shared = Arc::new(Shared {
            origin,
            public: public(&config)?,
            keys: keys(&config)?,
            limits: Limits::from_config(&config),
            rate: Mutex::default(),
            hop,
            node: config.cluster.node.clone(),
            cluster: crate::cluster::ClusterState::default(),
            upstream,
            stats,
            metrics,
            draining: watch::channel(false).0,
            sessions: Mutex::default(),
        });
        let quic = Arc::new(quic);
        record_expiry(&shared, &quic);

        let web = match &config.web.http.listen {
            Some(listen) => {
                let addr = *listen
                    .resolve()
                    .with_context(|| {
                        format!("cannot resolve [web.http] listen {}:{}", listen.host, listen.port)
                    })?
                    .first()
                    .context("[web.http] listen resolved to nothing")?;
                // Port 0 follows the QUIC port, so one ephemeral port serves both.
                let addr = match addr.port() {
                    0 if bind.port() == 0 => SocketAddr::new(addr.ip(), quic.local_addr()?.port()),
                    _ => addr,
                };
                Some(web::Web::bind(addr, shared.clone(), quic.fingerprints()).await?)
            }
            None => None,
        };
        let internal = match &config.internal.listen {
            Some(listen) => {
                let addr = *listen
                    .resolve()
                    .with_context(|| {
                        format!("cannot resolve [internal] listen {}:{}", listen.host, listen.port)
                    })?
                    .first()
                    .context("[internal] listen resolved to nothing")?;
                Some(internal::Internal::bind(addr, shared.clone()).await?)
            }
            None => None,
        };
        shared.metrics.ready.set(1);
        Ok(Self {
            config,
            shared,
            quic,
            web,
            internal,
        })
    }

    /// A handle to drain the relay or reload its certificates while it runs.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
            quic: self.quic.clone(),
        }
    }

    /// The internal listener's address, if there is one.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal.as_ref().and_then(|i| i.local_addr().ok())
    }

    /// The QUIC listener's address.
    pub fn quic_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.quic.local_addr()?)
    }

    /// The HTTP listener's address, if there is one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|w| w.local_addr().ok())
    }

    /// Serve until the listener closes.
    pub async fn run(self) -> anyhow::Result<()> {
        let watcher = tokio::spawn(watch_certificates(self.handle()));
        let sampler = tokio::spawn(sample_quic(self.shared.clone()));
        let web = self.web.map(|web| tokio::spawn(web.run()));
        let internal = self.internal.map(|i| tokio::spawn(i.run()));
        // A root relay may have no link nor root of its own: its `node` alone
        // says it takes part (it keeps the directory and lists itself in it).
        let clustered = self.config.cluster.is_enabled() || self.config.cluster.node.is_some();
        let cluster = match clustered {
            true => {
                let client = moq_native::client::Client::new(crate::cluster::client_config(&self.config))
                    .context("cannot start the cluster client")?;
                tracing::info!(
                    id = self.shared.hop,
                    links = self.config.cluster.peers().len(),
                    roots = self.config.cluster.roots().len(),
                    "cluster enabled"
                );
                let cluster =
                    crate::cluster::Cluster::new(self.shared.clone(), client, self.config.cluster.clone());
                Some(tokio::spawn(cluster.run()))
            }
            false => None,
        };
        let mut next_id = 0u64;
        while let Some(incoming) = self.quic.accept().await {
            next_id += 1;
            let span = tracing::info_span!(
                "conn",
                id = next_id,
                peer = %incoming.remote_addr(),
                path = tracing::field::Empty,
                version = tracing::field::Empty,
            );
            tokio::spawn(serve(self.shared.clone(), incoming, next_id).instrument(span));
        }
        for task in [web, internal].into_iter().flatten() {
            task.abort();
        }
        if let Some(cluster) = cluster {
            cluster.abort();
        }
        sampler.abort();
        watcher.abort();
        Ok(())
    }
}

/// Sample RTT, congestion window and losses of live connections.
async fn sample_quic(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(crate::metrics::QUIC_SAMPLE_INTERVAL);
    let mut lost_seen: HashMap<u64, u64> = HashMap::new();
    loop {
        ticker.tick().await;
        let sessions = shared.sessions();
        let mut cwnd = 0u64;
        let mut live = HashMap::new();
        for session in &sessions {
            let stats = session.connection.stats();
            shared.metrics.quic_rtt.observe(stats.path.rtt.as_secs_f64());
            cwnd += stats.path.cwnd;
            let lost = stats.path.lost_packets;
            let before = lost_seen.get(&session.id).copied().unwrap_or(0);
            shared.metrics.quic_lost.inc_by(lost.saturating_sub(before));
            live.insert(session.id, lost);
        }
        lost_seen = live;
        shared.metrics.quic_cwnd.set(cwnd as i64);
    }
}

/// Reload the certificate when its files change (polled: no inotify needed).
async fn watch_certificates(handle: Handle) {
    let files = handle.quic.certificate_files();
    if files.is_empty() {
        return;
    }
    let stamp = |files: &[std::path::PathBuf]| -> Vec<Option<std::time::SystemTime>> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    };
    let mut last = stamp(&files);
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    loop {
        ticker.tick().await;
        let now = stamp(&files);
        if now != last {
            last = now;
            match handle.reload_certificates() {
                Ok(()) => tracing::info!("certificate files changed; reloaded"),
                Err(err) => {
                    tracing::warn!(%err, "certificate files changed but could not be loaded; keeping the old ones")
                }
            }
        }
    }
}

/// Resolved `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// New connections per second per source address (also the burst).
    pub connections_per_second_per_ip: u32,
    /// Concurrent sessions per source address.
    pub sessions_per_ip: u32,
    /// Concurrent sessions in total.
    pub max_sessions: u32,
    /// Per-session limits handed to the session driver.
    pub session: session::Limits,
}

impl Limits {
    fn from_config(config: &Config) -> Self {
        use crate::config as c;
        let l = &config.limits;
        Self {
            connections_per_second_per_ip: l
                .connections_per_second_per_ip
                .unwrap_or(c::DEFAULT_CONNECTIONS_PER_SECOND_PER_IP),
            sessions_per_ip: l.sessions_per_ip.unwrap_or(c::DEFAULT_SESSIONS_PER_IP),
            max_sessions: l.max_sessions.unwrap_or(c::DEFAULT_MAX_SESSIONS),
            session: session::Limits {
                max_subscriptions: l
                    .subscriptions_per_session
                    .unwrap_or(c::DEFAULT_SUBSCRIPTIONS_PER_SESSION)
                    as usize,
                max_announcements: l
                    .announcements_per_session
                    .unwrap_or(c::DEFAULT_ANNOUNCEMENTS_PER_SESSION)
                    as usize,
                ..Default::default()
            },
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `rate`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: std::time::Instant,
}

impl Shared {
    /// Take one new-connection token for `ip`; false when it is over its rate.
    fn admit(&self, ip: IpAddr) -> bool {
        let rate = f64::from(self.limits.connections_per_second_per_ip.max(1));
        let now = std::time::Instant::now();
        let mut buckets = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle addresses now and then, so the table stays small.
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(10));
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Why a new session from `ip` may not open now, if it may not.
    fn session_limit(&self, ip: IpAddr) -> Option<&'static str> {
        let sessions = self.lock_sessions();
        if sessions.len() >= self.limits.max_sessions as usize {
            return Some("max_sessions");
        }
        let from_ip = sessions.values().filter(|s| s.peer.ip() == ip).count();
        (from_ip >= self.limits.sessions_per_ip as usize).then_some("sessions_per_ip")
    }

    /// Verify an optional token and combine it with the public prefixes into
    /// what a session rooted at `root` may do.
    pub fn authorize(
        &self,
        root: &Path,
        token: Option<&str>,
    ) -> Result<(Permissions, Option<Claims>), moq_auth::Error> {
        let claims = match token {
            Some(token) => match &self.keys {
                Some(keys) => Some(keys.verify(token)?),
                None => {
                    return Err(moq_auth::Error::TokenRequired(
                        "a token was given but this relay has no [auth] key or key_dir to verify it".into(),
                    ));
                }
            },
            None => None,
        };
        let permissions = moq_auth::authorize(claims.as_ref(), root, &self.public)?;
        Ok((permissions, claims))
    }
}

fn public(config: &Config) -> anyhow::Result<Public> {
    match &config.auth.public {
        Some(p) => Ok(Public::from_prefixes(&p.subscribe, &p.publish)?),
        None => Ok(Public::default()),
    }
}

fn keys(config: &Config) -> anyhow::Result<Option<KeySet>> {
    if let Some(file) = &config.auth.key {
        let key = moq_auth::Key::from_file(file).with_context(|| format!("[auth] key {}", file.display()))?;
        return Ok(Some(KeySet::single(key)?));
    }
    if let Some(dir) = &config.auth.key_dir {
        if dir.starts_with("http://") || dir.starts_with("https://") {
            anyhow::bail!(
                "[auth] key_dir as a URL is not supported: point it at a local directory of {{kid}}.jwk files"
            );
        }
        return Ok(Some(KeySet::dir(dir)?));
    }
    Ok(None)
}

/// The `jwt` query parameter, if present and not empty.
pub fn token_from_query(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "jwt" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// Split `path?query` into a normalised path and its token.
fn request_target(raw: &str) -> Result<(Path, Option<String>), String> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let path = percent_decode(path)?;
    let path = Path::new(&path).map_err(|e| format!("bad path '{path}': {e}"))?;
    Ok((path, token_from_query(query)))
}

/// Decode `%XX` escapes; a malformed escape or non-UTF-8 result is refused.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("path '{s}' is not UTF-8"))
}

/// Why a connection was refused: the reason counted and logged, and the codes sent.
struct Refusal {
    reason: &'static str,
    detail: String,
    status: u16,
    code: u32,
    auth: bool,
}

impl Refusal {
    fn auth(err: &moq_auth::Error) -> Self {
        Self {
            reason: err.reason(),
            detail: err.to_string(),
            status: 401,
            code: 0x2,
            auth: true,
        }
    }

    fn record(&self, shared: &Shared, peer: SocketAddr) {
        if self.auth {
            // Never the token itself: only where it came from and why it failed.
            tracing::warn!(%peer, reason = self.reason, detail = %self.detail, "authentication failed");
            shared.metrics.auth_failed(self.reason);
        } else {
            tracing::info!(%peer, reason = self.reason, detail = %self.detail, "refused");
            shared.metrics.refused(self.reason);
        }
    }
}

/// Resolve a request target (`path?query`) into the session root and what the
/// session may do, or why it is refused.
fn decide(shared: &Shared, target: &str, mtls: bool) -> Result<(Path, Permissions, Option<Claims>), Refusal> {
    let (root, token) = request_target(target).map_err(|detail| Refusal {
        reason: "bad_path",
        detail,
        status: 400,
        code: 0x3,
        auth: false,
    })?;
    // A client certificate chaining to [server.tls] root (verified in the TLS
    // handshake) stands in for a token: full access within the dialled path.
    if mtls {
        return Ok((root, Permissions::all(), None));
    }
    let (permissions, claims) = shared
        .authorize(&root, token.as_deref())
        .map_err(|e| Refusal::auth(&e))?;
    Ok((root, permissions, claims))
}

async fn serve(shared: Arc<Shared>, incoming: server::Incoming, id: u64) {
    let peer = incoming.remote_addr();
    // Refuse floods before spending a handshake on them.
    if !shared.admit(peer.ip()) {
        shared.metrics.refused("rate_limit");
        tracing::debug!(%peer, "refused: connection rate limit");
        incoming.refuse();
        return;
    }
    if let Some(reason) = shared.session_limit(peer.ip()) {
        shared.metrics.refused(reason);
        tracing::info!(%peer, reason, "refused: session limit");
        incoming.refuse();
        return;
    }
    let request = match incoming.accept().await {
        Ok(request) => request,
        Err(err) => {
            tracing::debug!(%err, "handshake failed");
            shared.metrics.refused("handshake");
            return;
        }
    };
    let Some(version) = request.version() else {
        tracing::info!(offered = ?request.protocols(), "refused: no common moq-lite version");
        shared.metrics.refused("version");
        let _ = request.reject(406).await;
        return;
    };
    let transport = request.transport();
    let connection = request.connection().clone();
    let mtls = request.client_certificate();
    tracing::Span::current().record("version", version.alpn());

    // WebTransport carries path and token in its URL: decide before answering.
    // Raw QUIC (lite-05+) carries them in the client's SETUP, read after accepting.
    let (session, root, permissions, claims, peer_setup) = match transport {
        Transport::WebTransport => {
            let url = request.url().cloned();
            let target = url.as_ref().map_or(String::new(), |u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            });
            let decided = decide(&shared, &target, mtls.is_some());
            match decided {
                Ok((root, permissions, claims)) => match request.ok().await {
                    Ok(session) => (
                        MoqSession::new(session, transport),
                        root,
                        permissions,
                        claims,
                        None,
                    ),
                    Err(err) => {
                        tracing::debug!(%err, "accept failed");
                        return;
                    }
                },
                Err(refusal) => {
                    refusal.record(&shared, peer);
                    let _ = request.reject(refusal.status).await;
                    return;
                }
            }
        }
        _ => {
            let session = match request.ok().await {
                Ok(session) => MoqSession::new(session, transport),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            };
            let (target, peer_setup) = if version.has_setup_stream() {
                match tokio::time::timeout(SETUP_TIMEOUT, session::read_setup(&session, version)).await {
                    Ok(Ok(setup)) => (setup.path.clone().unwrap_or_default(), Some(setup)),
                    Ok(Err(err)) => {
                        let refusal = Refusal {
                            reason: "bad_setup",
                            detail: err.to_string(),
                            status: 400,
                            code: err.session_code(),
                            auth: false,
                        };
                        refusal.record(&shared, peer);
                        moq_core::transport::Session::close(&session, refusal.code, &refusal.detail);
                        return;
                    }
                    Err(_) => {
                        shared.metrics.refused("setup_timeout");
                        tracing::info!(%peer, "refused: no SETUP within {SETUP_TIMEOUT:?}");
                        moq_core::transport::Session::close(&session, 0x11, "no SETUP");
                        return;
                    }
                }
            } else {
                // lite-03/04 over raw QUIC have no path: the session is rooted at "".
                (String::new(), None)
            };
            let decided = decide(&shared, &target, mtls.is_some());
            match decided {
                Ok((root, permissions, claims)) => (session, root, permissions, claims, peer_setup),
                Err(refusal) => {
                    refusal.record(&shared, peer);
                    let reason = format!(
                        "{}: {}",
                        if refusal.auth { "unauthorized" } else { "refused" },
                        refusal.detail
                    );
                    moq_core::transport::Session::close(&session, refusal.code, &reason);
                    return;
                }
            }
        }
    };

    tracing::Span::current().record("path", root.as_str());
    tracing::info!(
        %version,
        %transport,
        path = %root,
        token = claims.is_some(),
        mtls = mtls.is_some(),
        "session accepted"
    );
    let labels = SessionLabels {
        transport: transport.to_string(),
        version: version.alpn().to_string(),
    };
    shared.metrics.sessions_total.get_or_create(&labels).inc();
    shared.metrics.sessions_active.get_or_create(&labels).inc();
    shared.lock_sessions().insert(
        id,
        SessionInfo {
            id,
            peer,
            path: root.as_str().to_string(),
            version: version.alpn().to_string(),
            transport: transport.to_string(),
            since: std::time::Instant::now(),
            connection,
        },
    );
    let _registered = Registered {
        shared: &shared,
        id,
        labels,
    };

    let mut config = session::Config::new(version);
    let directory = root.as_str() == crate::cluster::DIRECTORY_PATH;
    if directory {
        // A relay registering with us: it exchanges directory entries (names,
        // never media) and must be allowed to both publish and subscribe there.
        // Directory entries make relays dial URLs with the cluster token, so
        // anonymous writers are refused wherever tokens are in use.
        let anonymous = claims.is_none() && mtls.is_none();
        if anonymous && shared.keys.is_some() {
            tracing::warn!(%peer, "cluster directory refused: no cluster token or client certificate");
            shared.metrics.auth_failed("cluster_anonymous");
            moq_core::transport::Session::close(&session, 0x2, "unauthorized: cluster directory");
            return;
        }
        if !(permissions.can_publish(&Path::empty()) && permissions.can_subscribe(&Path::empty())) {
            tracing::warn!(%peer, "cluster directory refused: the token does not cover publish and subscribe");
            shared.metrics.auth_failed("cluster_scope");
            moq_core::transport::Session::close(&session, 0x2, "unauthorized: cluster directory");
            return;
        }
        config.publish = Some(shared.cluster.directory.clone());
        config.consume = Some(shared.cluster.directory.clone());
        config.root = Path::empty();
        config.permissions = Permissions::all();
    } else {
        config.publish = (!permissions.subscribe.is_empty()).then(|| shared.origin.clone());
        config.consume = (!permissions.publish.is_empty()).then(|| shared.origin.clone());
        config.root = root;
        config.permissions = permissions;
        config.upstream = shared.upstream.clone();
    }
    config.hop = shared.hop;
    config.peer_setup = peer_setup;
    config.stats = shared.stats.clone();
    config.shutdown = Some(shared.draining.subscribe());
    // Relays of the cluster (directory sessions, peers with a cluster
    // certificate) carry every broadcast: they get link limits.
    config.limits = match directory || mtls.is_some() {
        true => crate::cluster::link_limits(&shared.limits.session),
        false => shared.limits.session.clone(),
    };

    // A token (or client certificate) is good for the whole session, until it expires.
    let cert_expiry = mtls.flatten().and_then(|t| u64::try_from(t).ok());
    let expires = claims.as_ref().and_then(|c| c.exp).or(cert_expiry).map(|exp| {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(exp);
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    let run = session::run(session.clone(), config);
    tokio::pin!(run);
    let result = match expires {
        Some(deadline) => tokio::select! {
            result = &mut run => result,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(%peer, "token or certificate expired; closing the session");
                shared.metrics.auth_failed("expired");
                moq_core::transport::Session::close(&session, 0x2, "unauthorized: token expired");
                return;
            }
        },
        None => run.await,
    };
    match result {
        Ok(()) => tracing::info!("session closed"),
        Err(err) => tracing::info!(%err, "session ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn request_targets() {
        assert_eq!(
            request_target("/anon/room?jwt=x").unwrap(),
            (p("anon/room"), Some("x".into()))
        );
        assert_eq!(request_target("/anon?jwt=").unwrap(), (p("anon"), None));
        assert_eq!(request_target("/a%2Fb").unwrap(), (p("a/b"), None));
        assert_eq!(
            request_target("/x?a=1&jwt=t%2Bk").unwrap(),
            (p("x"), Some("t+k".into()))
        );
        assert!(request_target("/a%zz").is_err());
        assert!(request_target("/a%ff").is_err());
    }
}
