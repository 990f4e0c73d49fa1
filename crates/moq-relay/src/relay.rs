//! The relay: a QUIC/WebTransport listener and an HTTP listener in front of
//! one shared origin, with a gate that decides what each session may do.

use std::{
    collections::HashMap,
    net::SocketAddr,
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

use crate::{
    config::Config,
    internal,
    metrics::{Metrics, SessionLabels},
    web,
};

/// How long a raw-QUIC client has to send its SETUP (which carries its path).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Anonymous access, as absolute path prefixes.
#[derive(Debug, Clone, Default)]
pub struct Public {
    /// Prefixes anyone may subscribe to.
    pub subscribe: Vec<Path>,
    /// Prefixes anyone may publish under.
    pub publish: Vec<Path>,
}

/// Turn a configured prefix (`""`, `anon`, or a 0.17-style glob `anon/**`) into a path.
fn prefix(raw: &str) -> anyhow::Result<Path> {
    let trimmed = raw.trim_end_matches("**").trim_end_matches('/');
    if trimmed.contains('*') {
        anyhow::bail!("public prefix '{raw}': only a trailing '/**' wildcard is supported");
    }
    Path::new(trimmed).with_context(|| format!("public prefix '{raw}'"))
}

impl Public {
    /// From the `[auth] public` setting.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let Some(public) = &config.auth.public else {
            return Ok(Self::default());
        };
        Ok(Self {
            subscribe: public
                .subscribe
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
            publish: public
                .publish
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// What an anonymous session rooted at `root` may do, relative to `root`.
    pub fn permissions(&self, root: &Path) -> Permissions {
        Permissions {
            publish: relative(&self.publish, root),
            subscribe: relative(&self.subscribe, root),
        }
    }

    /// Whether anyone may subscribe to this absolute path.
    pub fn can_subscribe(&self, path: &Path) -> bool {
        self.subscribe.iter().any(|p| path.has_prefix(p))
    }
}

/// Re-express absolute prefixes relative to `root`, dropping unrelated ones.
fn relative(prefixes: &[Path], root: &Path) -> Vec<Path> {
    let mut out = Vec::new();
    for prefix in prefixes {
        if root.has_prefix(prefix) {
            // The whole root is inside the prefix.
            return vec![Path::empty()];
        }
        if let Some(rest) = prefix.strip_prefix(root)
            && let Ok(rest) = Path::new(rest)
        {
            out.push(rest);
        }
    }
    out
}

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
    /// This relay's hop id (0 = none).
    pub hop: u64,
    /// This relay's public URL, if configured.
    pub node: Option<String>,
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
        let metrics = Metrics::new(stats.clone(), cache.stats().clone(), origin.clone());
        let shared = Arc::new(Shared {
            origin,
            public: Public::from_config(&config)?,
            hop: config.cluster.id.unwrap_or(0),
            node: config.cluster.node.clone(),
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

/// Split `path?query` into a normalised path.
fn request_path(raw: &str) -> Result<Path, String> {
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    let path = percent_decode(path)?;
    Path::new(&path).map_err(|e| format!("bad path '{raw}': {e}"))
}

/// Decode `%XX` escapes; a malformed escape or non-UTF-8 result is refused.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in '{s}'"))?;
                out.push(hex);
                i += 3;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).map_err(|_| format!("path '{s}' is not UTF-8"))
}

async fn serve(shared: Arc<Shared>, incoming: server::Incoming, id: u64) {
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
    let peer = request.remote_addr();
    tracing::Span::current().record("version", version.alpn());

    // WebTransport carries the path in its URL: decide before accepting.
    let (session, root, peer_setup) = match transport {
        Transport::WebTransport => {
            let raw = request.url().map(|u| u.path().to_string()).unwrap_or_default();
            let root = match request_path(&raw) {
                Ok(root) => root,
                Err(reason) => {
                    tracing::info!(%reason, "refused");
                    shared.metrics.refused("bad_path");
                    let _ = request.reject(400).await;
                    return;
                }
            };
            let permissions = shared.public.permissions(&root);
            if permissions.publish.is_empty() && permissions.subscribe.is_empty() {
                tracing::info!(path = %root, reason = "no token and the path is not public", "refused");
                shared.metrics.auth_failed("no_token");
                let _ = request.reject(401).await;
                return;
            }
            match request.ok().await {
                Ok(session) => (MoqSession(session), root, None),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            }
        }
        // Raw QUIC: lite-05+ sends the path in SETUP; older versions have no path.
        _ => {
            let session = match request.ok().await {
                Ok(session) => MoqSession(session),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            };
            if version.has_setup_stream() {
                let setup = match tokio::time::timeout(SETUP_TIMEOUT, session::read_setup(&session, version))
                    .await
                {
                    Ok(Ok(setup)) => setup,
                    Ok(Err(err)) => {
                        tracing::info!(%err, "refused: bad SETUP");
                        shared.metrics.refused("bad_setup");
                        moq_core::transport::Session::close(&session, err.session_code(), &err.to_string());
                        return;
                    }
                    Err(_) => {
                        tracing::info!("refused: no SETUP within {SETUP_TIMEOUT:?}");
                        shared.metrics.refused("setup_timeout");
                        moq_core::transport::Session::close(&session, 0x11, "no SETUP");
                        return;
                    }
                };
                let root = match request_path(setup.path.as_deref().unwrap_or("")) {
                    Ok(root) => root,
                    Err(reason) => {
                        shared.metrics.refused("bad_path");
                        moq_core::transport::Session::close(&session, 0x3, &reason);
                        return;
                    }
                };
                (session, root, Some(setup))
            } else {
                (session, Path::empty(), None)
            }
        }
    };

    let permissions = shared.public.permissions(&root);
    if permissions.publish.is_empty() && permissions.subscribe.is_empty() {
        tracing::info!(path = %root, reason = "no token and the path is not public", "refused");
        shared.metrics.auth_failed("no_token");
        moq_core::transport::Session::close(
            &session,
            0x2,
            "unauthorized: no token and the path is not public",
        );
        return;
    }
    tracing::Span::current().record("path", root.as_str());
    tracing::info!(%version, %transport, path = %root, "session accepted");
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
    config.publish = (!permissions.subscribe.is_empty()).then(|| shared.origin.clone());
    config.consume = (!permissions.publish.is_empty()).then(|| shared.origin.clone());
    config.root = root;
    config.permissions = permissions;
    config.hop = shared.hop;
    config.peer_setup = peer_setup;
    config.stats = shared.stats.clone();
    config.shutdown = Some(shared.draining.subscribe());
    match session::run(session, config).await {
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
    fn public_prefixes_are_relative_to_the_root() {
        let public = Public {
            subscribe: vec![p("anon"), p("demo/view")],
            publish: vec![p("anon")],
        };
        assert_eq!(public.permissions(&p("anon/room")).subscribe, vec![p("")]);
        assert_eq!(public.permissions(&p("demo")).subscribe, vec![p("view")]);
        assert_eq!(public.permissions(&p("")).publish, vec![p("anon")]);
        assert!(public.permissions(&p("secret")).subscribe.is_empty());
        assert!(public.permissions(&p("anonymous")).subscribe.is_empty());
    }

    #[test]
    fn globs_and_paths() {
        assert_eq!(prefix("anon/**").unwrap(), p("anon"));
        assert_eq!(prefix("**").unwrap(), p(""));
        assert!(prefix("a/*/b").is_err());
        assert_eq!(request_path("/anon/room?jwt=x").unwrap(), p("anon/room"));
        assert_eq!(request_path("/a%2Fb").unwrap(), p("a/b"));
        assert!(request_path("/a%zz").is_err());
        assert!(request_path("/a%ff").is_err());
    }
}
