//! The relay server: binds the QUIC listener and the HTTP listeners in front of one
//! media plane, spawns every task under the [lifecycle](crate::lifecycle), and drains.
//!
//! [`Relay`] has public fields so tests and embedders can reach each part; [`Handle`]
//! controls a running relay (drain, certificate reload).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use moq_core::model::cache::{Cache, CacheConfig};
use moq_native::server;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry as Metrics,
};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::{
    admission::{Admission, Policy},
    cluster::{self, Cluster, DirectoryHook},
    config::{self, Address, Config},
    gate::Gate,
    http,
    lifecycle::Lifecycle,
    media::{self, Media},
    metrics::{self, Refusals},
    registry::Registry,
    session::{Hook, Sessions},
};

/// How often QUIC connection statistics are sampled.
pub const QUIC_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How often certificate and key files are checked for changes.
const CERTIFICATE_POLL: Duration = Duration::from_secs(10);

/// How long shutdown waits for connection closes to reach peers.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// A bound relay, ready to [`run`](Relay::run).
pub struct Relay {
    /// The configuration it was built from.
    pub config: Config,
    /// Client sessions: the gate, limits and media they use.
    pub sessions: Arc<Sessions>,
    /// Links, nodes and the directory.
    pub cluster: Arc<Cluster>,
    /// Every metric.
    pub metrics: metrics::Metrics,
    /// The QUIC + WebTransport listener.
    pub quic: Arc<server::Server>,
    /// The public HTTP listener (certificate fingerprint, announced, fetch, health, WebSocket).
    pub public: Option<TcpListener>,
    /// The public HTTPS listener (`[web.https]`): the same endpoints over TLS.
    pub https: Option<(TcpListener, moq_native::tls::TcpTls)>,
    /// The internal ops listener (metrics, health, readiness).
    pub admin: Option<TcpListener>,
    /// The ACME HTTP-01 listener (`[server.tls.acme] http_listen`, TCP 80): challenge
    /// responses, and a redirect to HTTPS for everything else.
    pub acme_http: Option<TcpListener>,
    quic_metrics: QuicMetrics,
    tls_metrics: TlsMetrics,
}

/// Controls a running relay: drain it, reload its certificates.
#[derive(Clone)]
pub struct Handle {
    sessions: Arc<Sessions>,
    quic: Arc<server::Server>,
    /// HTTPS certificates of their own (`[web.https] cert/key`), reloaded with the QUIC ones.
    https_tls: Option<moq_native::tls::TcpTls>,
    tls_metrics: TlsMetrics,
}

impl Handle {
    /// Stop accepting, tell every session to go away (GOAWAY), wait up to `timeout` for
    /// them to leave, then close what is left, stop every task and wait (bounded) for the
    /// endpoint to deliver its closes. Returns how many sessions were still open.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let lifecycle = &self.sessions.lifecycle;
        // New connection attempts are refused from now on (see `Sessions::serve_quic`):
        // a refusal tells a client at once to try elsewhere, where silence would leave it
        // waiting for its handshake timeout.
        lifecycle.drain();
        let registry = &self.sessions.registry;
        let _ = tokio::time::timeout(timeout, registry.emptied()).await;
        let left = registry.len();
        self.shutdown().await;
        left
    }

    /// Close every connection, stop every task, and wait (bounded) until the closes
    /// have been sent.
    pub async fn shutdown(&self) {
        let lifecycle = &self.sessions.lifecycle;
        lifecycle.drain();
        self.quic.close();
        if !lifecycle.shutdown(CLOSE_FLUSH).await {
            tracing::debug!(tasks = lifecycle.tasks(), "tasks still running at shutdown");
        }
        let _ = tokio::time::timeout(CLOSE_FLUSH, self.quic.wait_idle()).await;
    }

    /// Re-read the certificate and key files (keeping the old ones if the new are bad).
    pub fn reload_certificates(&self) -> anyhow::Result<()> {
        let reloaded = self
            .quic
            .reload_certificates()
            .map_err(anyhow::Error::from)
            .and_then(|()| match &self.https_tls {
                Some(tls) => Ok(tls.reload()?),
                None => Ok(()),
            });
        if reloaded.is_err() {
            self.tls_metrics.reload_failures.inc();
        }
        warn_if_expiring(&self.quic);
        reloaded
    }

    /// Re-read `[auth] key` / `key_dir` (keeping the old keys if the new are bad) and end
    /// every live session whose token they no longer verify. Returns how many ended.
    pub fn reload_keys(&self) -> anyhow::Result<usize> {
        self.sessions.gate.reload()?;
        Ok(self.sessions.revalidate())
    }

    /// The client sessions' state.
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }
}

/// The first address `address` resolves to; `what` names the setting for errors.
fn resolve(address: &Address, what: &str) -> anyhow::Result<SocketAddr> {
    address
        .resolve()
        .with_context(|| format!("cannot resolve {what} {}:{}", address.host, address.port))?
        .first()
        .copied()
        .with_context(|| format!("{what} resolved to nothing"))
}

fn bind_quic(config: &Config) -> anyhow::Result<server::Server> {
    let bind = config
        .server
        .quic_bind()
        .context("no QUIC listen address: set [server] listen (e.g. \"[::]:443\")")?;
    let tls = &config.server.tls;
    server::Server::bind(server::Config {
        bind: resolve(&bind, "[server] listen")?,
        tls: server::TlsConfig {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            generate: tls.generate.clone(),
            root: tls.root.clone(),
            acme: tls.acme.native(),
        },
        versions: config.server.version.clone(),
        quic: config.server_quic().apply(Default::default()),
    })
    .context("cannot start the QUIC listener")
}

/// TLS for `[web.https]`: its own certificate files, or else the QUIC listener's
/// certificate (one resolver: reloading one reloads both).
fn https_tls(config: &Config, quic: &server::Server) -> anyhow::Result<moq_native::tls::TcpTls> {
    let https = &config.web.https;
    let tls = match https.cert.is_empty() {
        true => quic.tcp_tls(),
        false => moq_native::tls::TcpTls::load(&server::TlsConfig {
            cert: https.cert.clone(),
            key: https.key.clone(),
            generate: Vec::new(),
            root: https.root.clone(),
            acme: None,
        }),
    };
    tls.context("cannot load the [web.https] certificate")
}

/// The media plane `[cache]` and `[cluster]` describe. The cache's byte budget comes from
/// the memory this relay may use (the container's limit, else the host's); a headroom that
/// leaves nothing for it is refused here, at start-up.
fn media(config: &Config) -> anyhow::Result<Media> {
    let total = media::total_memory();
    let capacity = config::cache_budget(config.cache.capacity, config.cache.headroom, total)
        .map_err(anyhow::Error::msg)?;
    tracing::info!(
        budget = %config::format_bytes(capacity),
        memory = %config::format_bytes(total),
        "cache budget"
    );
    let cache = Cache::new(CacheConfig {
        capacity: Some(capacity),
        duration: config.cache.duration,
    });
    let linger = config.cluster.linger.unwrap_or(config::DEFAULT_LINGER);
    // Every relay has a hop id, so announcements can never loop back to it.
    let hop = config.cluster.id.unwrap_or_else(cluster::random_id);
    Ok(Media::new(cache, linger, hop))
}

/// The client of the auth server `[auth] url` names, if any. Requests carry the node name
/// `[cluster] node` (empty without one), as the reference relay's do.
fn auth_service(
    config: &Config,
    metrics: &mut Metrics,
) -> anyhow::Result<Option<Arc<crate::auth_service::Service>>> {
    let Some(url) = &config.auth.url else {
        return Ok(None);
    };
    let settings = crate::auth_service::Settings {
        url: url.clone(),
        node: config.cluster.node.clone().unwrap_or_default(),
        timeout: config
            .auth
            .timeout
            .unwrap_or(crate::auth_service::DEFAULT_TIMEOUT),
        cache: config.auth.cache.unwrap_or(crate::auth_service::DEFAULT_CACHE),
        concurrency: config
            .auth
            .concurrency
            .unwrap_or(crate::auth_service::DEFAULT_CONCURRENCY),
    };
    crate::auth_service::Service::new(&settings, metrics)
        .map(Some)
        .map_err(|err| anyhow::anyhow!("[auth] url {}: {err}", crate::redact::url(url)))
}

/// The per-session quota handed to the session driver, from `[limits]`.
fn session_quota(limits: &config::Limits) -> moq_core::session::Quota {
    let count = |value: Option<u32>, default: u32| value.unwrap_or(default) as usize;
    moq_core::session::Quota {
        max_subscriptions: count(
            limits.subscriptions_per_session,
            config::DEFAULT_SUBSCRIPTIONS_PER_SESSION,
        ),
        max_announcements: count(
            limits.announcements_per_session,
            config::DEFAULT_ANNOUNCEMENTS_PER_SESSION,
        ),
        max_fetches: count(limits.fetches_per_session, config::DEFAULT_FETCHES_PER_SESSION),
        max_track_requests: count(
            limits.track_requests_per_session,
            config::DEFAULT_TRACK_REQUESTS_PER_SESSION,
        ),
        max_announce_requests: count(
            limits.announce_requests_per_session,
            config::DEFAULT_ANNOUNCE_REQUESTS_PER_SESSION,
        ),
        max_groups: count(limits.groups_per_session, config::DEFAULT_GROUPS_PER_SESSION),
        max_group_size: limits.group_size.unwrap_or(config::DEFAULT_GROUP_SIZE),
        max_group_frames: limits.group_frames.unwrap_or(config::DEFAULT_GROUP_FRAMES),
        max_pending_streams: count(
            limits.pending_streams_per_session,
            config::DEFAULT_PENDING_STREAMS_PER_SESSION,
        ),
        header_timeout: limits
            .stream_header_timeout
            .unwrap_or(config::DEFAULT_STREAM_HEADER_TIMEOUT),
        ..Default::default()
    }
}

/// The listeners besides QUIC's, each bound when its setting is there.
struct Listeners {
    public: Option<TcpListener>,
    https: Option<(TcpListener, moq_native::tls::TcpTls)>,
    admin: Option<TcpListener>,
    acme_http: Option<TcpListener>,
}

impl Listeners {
    /// Bind `[web.http]`, `[web.https]`, `[internal]` and `[server.tls.acme] http_listen`.
    async fn bind(config: &Config, quic: &server::Server) -> anyhow::Result<Self> {
        let public = match &config.web.http.listen {
            Some(listen) => {
                let mut addr = resolve(listen, "[web.http] listen")?;
                // Port 0 follows the QUIC port, so one ephemeral port serves both.
                if addr.port() == 0 {
                    addr.set_port(quic.local_addr()?.port());
                }
                Some(http::bind(addr, "HTTP").await?)
            }
            None => None,
        };
        let https = match &config.web.https.listen {
            Some(listen) => Some((
                http::bind(resolve(listen, "[web.https] listen")?, "HTTPS").await?,
                https_tls(config, quic)?,
            )),
            None => None,
        };
        let admin = match &config.internal.listen {
            Some(listen) => Some(http::bind(resolve(listen, "[internal] listen")?, "[internal]").await?),
            None => None,
        };
        let acme_http = match config.server.tls.acme.http_address() {
            Some(listen) => {
                Some(http::bind(resolve(&listen, "[server.tls.acme] http_listen")?, "ACME http-01").await?)
            }
            None => None,
        };
        Ok(Self {
            public,
            https,
            admin,
            acme_http,
        })
    }
}

/// The client sessions' handles: the gate and auth server `[auth]` describes, the limits
/// of `[limits]`, and the cluster directory's hook. Registers the auth server's metrics.
fn sessions(
    config: &Config,
    media: Media,
    cluster: Arc<Cluster>,
    lifecycle: Lifecycle,
    registry: Arc<Registry>,
    refusals: Refusals,
    builder: &mut metrics::Builder,
) -> anyhow::Result<Sessions> {
    let gate = Arc::new(Gate::from_config(&config.auth)?);
    let service = auth_service(config, builder.registry())?;
    let quota = session_quota(&config.limits);
    let peer_quota = cluster::link_quota(&quota);
    let hook = DirectoryHook::new(
        cluster,
        media.hop,
        gate.verifies_tokens() || service.is_some(),
        peer_quota.clone(),
    );
    Ok(Sessions {
        media,
        gate,
        service,
        admission: Admission::new(Policy::from_config(&config.limits)),
        registry,
        refusals,
        quota,
        peer_quota,
        lifecycle,
        hooks: vec![Arc::new(hook) as Arc<dyn Hook>],
        quic: config.server_quic().apply(Default::default()),
        ids: Default::default(),
    })
}

impl Relay {
    /// Bind the listeners described by `config`.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let quic = Arc::new(bind_quic(&config)?);
        let mut builder = metrics::Builder::new();
        let media = media(&config)?;
        builder.media(&media);
        let refusals = Refusals::register(builder.registry());
        let registry = Registry::new(builder.registry());
        let lifecycle = Lifecycle::new(builder.registry());
        let cluster = Cluster::new(config.cluster.node.clone(), builder.registry());
        let quic_metrics = QuicMetrics::register(builder.registry());
        builder.tls(quic.clone());
        let tls_metrics = TlsMetrics::register(builder.registry());
        warn_if_expiring(&quic);

        let sessions = Arc::new(sessions(
            &config,
            media,
            cluster.clone(),
            lifecycle,
            registry,
            refusals,
            &mut builder,
        )?);

        let Listeners {
            public,
            https,
            admin,
            acme_http,
        } = Listeners::bind(&config, &quic).await?;
        builder
            .registry()
            .register_collector(Box::new(http::admin::Readiness {
                lifecycle: sessions.lifecycle.clone(),
                cluster: cluster.clone(),
                admission: sessions.admission.clone(),
                acme: quic.acme().cloned(),
            }));
        // With ACME and nothing cached yet, readiness waits for the first certificate
        // (see `follow_acme`).
        if quic.acme().is_none_or(|acme| acme.status().certificate.is_some()) {
            sessions.lifecycle.set_ready();
        }
        Ok(Self {
            config,
            sessions,
            cluster,
            metrics: builder.finish(),
            quic,
            public,
            https,
            admin,
            acme_http,
            quic_metrics,
            tls_metrics,
        })
    }

    /// A handle to drain the relay or reload its certificates while it runs.
    pub fn handle(&self) -> Handle {
        Handle {
            sessions: self.sessions.clone(),
            quic: self.quic.clone(),
            https_tls: self
                .https
                .as_ref()
                .map(|(_, tls)| tls.clone())
                .filter(|_| !self.config.web.https.cert.is_empty()),
            tls_metrics: self.tls_metrics.clone(),
        }
    }

    /// The internal listener's address, if there is one.
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The QUIC listener's address.
    pub fn quic_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.quic.local_addr()?)
    }

    /// The HTTP listener's address, if there is one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.public.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HTTPS listener's address, if there is one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The ACME HTTP-01 listener's address, if there is one.
    pub fn acme_http_addr(&self) -> Option<SocketAddr> {
        self.acme_http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serve until the QUIC listener closes (after [`Handle::drain`] or
    /// [`Handle::shutdown`]); every task it started has ended when this returns.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let lifecycle = self.sessions.lifecycle.clone();
        let handle = self.handle();
        lifecycle.spawn(watch_files(handle.clone()));
        lifecycle.spawn(self.quic_metrics.clone().sample(self.sessions.registry.clone()));
        lifecycle.spawn(media::sweep(self.sessions.media.origin.cache().clone()));
        if let Some(acme) = self.quic.acme() {
            lifecycle.spawn(acme.clone().run());
            lifecycle.spawn(follow_acme(acme.clone(), lifecycle.clone(), self.quic.clone()));
        }
        self.spawn_http();
        self.spawn_cluster()?;
        while let Some(incoming) = self.quic.accept().await {
            let id = self.sessions.next_id();
            let span = tracing::info_span!(
                "conn",
                id,
                peer = %incoming.remote_addr(),
                path = tracing::field::Empty,
                version = tracing::field::Empty,
            );
            let sessions = self.sessions.clone();
            lifecycle.spawn_graceful(sessions.serve_quic(incoming, id).instrument(span));
        }
        handle.shutdown().await;
        Ok(())
    }

    fn spawn_http(&mut self) {
        let lifecycle = self.sessions.lifecycle.clone();
        let shutdown = lifecycle.shutdown_token().clone();
        let listener = |tcp, tls, router| http::Listener {
            tcp,
            tls,
            router,
            limits: http::Limits::default(),
            refusals: self.sessions.refusals.clone(),
        };
        let public = http::public::router(http::public::PublicState {
            media: self.sessions.media.clone(),
            gate: self.sessions.gate.clone(),
            service: self.sessions.service.clone(),
            lifecycle: self.sessions.lifecycle.clone(),
            refusals: self.sessions.refusals.clone(),
            fingerprints: Arc::new(self.quic.fingerprints()),
            fetches: Arc::new(tokio::sync::Semaphore::new(http::public::MAX_FETCHES)),
            fetch_sources: Arc::default(),
            upgrades: (self.config.web.ws != Some(false)).then(|| http::websocket::Upgrades {
                sessions: self.sessions.clone(),
                versions: self.config.server.version.clone().into(),
                qmux: Default::default(),
            }),
        });
        if let Some(tcp) = self.public.take() {
            lifecycle.spawn_graceful(http::serve(listener(tcp, None, public.clone()), shutdown.clone()));
        }
        if let Some((tcp, tls)) = self.https.take() {
            lifecycle.spawn_graceful(http::serve(listener(tcp, Some(tls), public), shutdown.clone()));
        }
        if let (Some(tcp), Some(acme)) = (self.acme_http.take(), self.quic.acme()) {
            let https_port = self
                .config
                .web
                .https
                .listen
                .as_ref()
                .map_or(443, |listen| listen.port);
            let router = http::acme::router(acme.clone(), https_port);
            lifecycle.spawn_graceful(http::serve(listener(tcp, None, router), shutdown.clone()));
        }
        if let Some(tcp) = self.admin.take() {
            let router = http::admin::router(http::admin::AdminState {
                metrics: self.metrics.clone(),
                registry: self.sessions.registry.clone(),
                admission: self.sessions.admission.clone(),
                media: self.sessions.media.clone(),
                cluster: self.cluster.clone(),
                lifecycle: lifecycle.clone(),
                acme: self.quic.acme().cloned(),
                sessions: Some(self.sessions.clone()),
            });
            lifecycle.spawn_graceful(http::serve(listener(tcp, None, router), shutdown));
        }
    }

    /// A root relay may have no link nor root of its own: its `node` alone says it
    /// takes part (it keeps the directory and lists itself in it).
    fn spawn_cluster(&self) -> anyhow::Result<()> {
        let config = &self.config.cluster;
        if !config.is_enabled() && config.node.is_none() {
            return Ok(());
        }
        let client = moq_native::client::Client::new(cluster::client_config(&self.config))
            .context("cannot start the cluster client")?;
        tracing::info!(
            id = self.sessions.media.hop,
            links = config.peers().len(),
            roots = config.roots().len(),
            "cluster enabled"
        );
        let context = cluster::Context {
            cluster: self.cluster.clone(),
            media: self.sessions.media.clone(),
            client: Arc::new(client),
            token_file: config.token.clone(),
            quota: self.sessions.peer_quota.clone(),
            lifecycle: self.sessions.lifecycle.clone(),
            allow: Arc::new(cluster::AllowList::from_config(config).map_err(anyhow::Error::msg)?),
        };
        self.sessions
            .lifecycle
            .spawn(cluster::run(context, config.clone()));
        Ok(())
    }
}

/// QUIC connection statistics of live sessions, sampled periodically.
#[derive(Debug, Clone)]
struct QuicMetrics {
    rtt: Histogram,
    cwnd: Gauge,
    lost: Counter,
}

impl QuicMetrics {
    fn register(registry: &mut Metrics) -> Self {
        let this = Self {
            rtt: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0]),
            cwnd: Gauge::default(),
            lost: Counter::default(),
        };
        registry.register(
            "moq_relay_quic_rtt_seconds",
            "Smoothed RTT of live connections",
            this.rtt.clone(),
        );
        registry.register(
            "moq_relay_quic_congestion_window_bytes",
            "Sum of congestion windows of live connections",
            this.cwnd.clone(),
        );
        registry.register(
            "moq_relay_quic_lost_packets",
            "Packets declared lost",
            this.lost.clone(),
        );
        this
    }

    /// Sample RTT, congestion window and losses of live connections, forever.
    async fn sample(self, registry: Arc<Registry>) {
        let mut ticker = tokio::time::interval(QUIC_SAMPLE_INTERVAL);
        let mut lost_seen: HashMap<u64, u64> = HashMap::new();
        loop {
            ticker.tick().await;
            let mut cwnd = 0u64;
            let mut live = HashMap::new();
            for session in registry.list() {
                let Some(connection) = &session.connection else {
                    continue;
                };
                let stats = connection.stats();
                self.rtt.observe(stats.path.rtt.as_secs_f64());
                cwnd += stats.path.cwnd;
                let lost = stats.path.lost_packets;
                let before = lost_seen.get(&session.id).copied().unwrap_or(0);
                self.lost.inc_by(lost.saturating_sub(before));
                live.insert(session.id, lost);
            }
            lost_seen = live;
            self.cwnd.set(cwnd as i64);
        }
    }
}

/// Certificate reload failures (the expiry is read at scrape time by the TLS collector).
#[derive(Debug, Clone)]
struct TlsMetrics {
    reload_failures: Counter,
}

impl TlsMetrics {
    fn register(registry: &mut Metrics) -> Self {
        let reload_failures = Counter::default();
        registry.register(
            "moq_relay_tls_certificate_reload_failures",
            "Certificate reloads (SIGHUP or changed files) that failed; the old certificate stays in use",
            reload_failures.clone(),
        );
        Self { reload_failures }
    }
}

/// Warn when the served certificate expires within a week (the metrics carry the exact
/// time: `moq_relay_certificate_expiry_seconds`).
fn warn_if_expiring(quic: &server::Server) {
    let Some(expiry) = quic.certificate_expiry() else {
        return;
    };
    let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    if left < Duration::from_secs(7 * 86_400) {
        tracing::warn!(
            days = left.as_secs() / 86_400,
            "TLS certificate expires within 7 days"
        );
    }
}

/// Follow the ACME certificate manager: the relay becomes ready when its first
/// certificate is in place, and every new certificate is checked for a close expiry.
/// (The manager logs each order and failure itself.)
async fn follow_acme(acme: moq_native::acme::Acme, lifecycle: Lifecycle, quic: Arc<server::Server>) {
    let mut status = acme.subscribe();
    let mut served = status
        .borrow()
        .certificate
        .as_ref()
        .map(|c| c.fingerprint.clone());
    while status.changed().await.is_ok() {
        let now = status
            .borrow_and_update()
            .certificate
            .as_ref()
            .map(|c| c.fingerprint.clone());
        if now == served {
            continue;
        }
        served = now;
        if !lifecycle.is_ready() && !lifecycle.is_draining() {
            lifecycle.set_ready();
            tracing::info!("ACME certificate in place: serving and ready");
        }
        warn_if_expiring(&quic);
    }
}

/// Modification times of `files`, to notice changes (polled: no inotify needed).
fn stamp(files: &[std::path::PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Reload the certificate when its files change, and the token keys when `[auth] key`
/// or the `key_dir` directory changes (a key file added, replaced or removed).
async fn watch_files(handle: Handle) {
    let certificates = handle.quic.certificate_files();
    let keys: Vec<_> = handle
        .sessions
        .gate
        .key_source()
        .map(|s| s.path().to_path_buf())
        .into_iter()
        .collect();
    if certificates.is_empty() && keys.is_empty() {
        return;
    }
    let (mut last_certificates, mut last_keys) = (stamp(&certificates), stamp(&keys));
    let mut ticker = tokio::time::interval(CERTIFICATE_POLL);
    loop {
        ticker.tick().await;
        let now = stamp(&certificates);
        if now != last_certificates {
            last_certificates = now;
            match handle.reload_certificates() {
                Ok(()) => tracing::info!("certificate files changed; reloaded"),
                Err(err) => {
                    tracing::warn!(%err, "certificate files changed but could not be loaded; keeping the old ones")
                }
            }
        }
        let now = stamp(&keys);
        if now != last_keys {
            last_keys = now;
            match handle.reload_keys() {
                Ok(ended) => tracing::info!(ended, "token keys changed; reloaded"),
                Err(err) => {
                    tracing::warn!(%err, "token keys changed but could not be loaded; keeping the old ones")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_per_session_limit_reaches_the_session_quota() {
        let limits = config::Limits {
            subscriptions_per_session: Some(1),
            announcements_per_session: Some(2),
            group_size: Some(3),
            group_frames: Some(4),
            groups_per_session: Some(5),
            fetches_per_session: Some(6),
            track_requests_per_session: Some(7),
            announce_requests_per_session: Some(8),
            pending_streams_per_session: Some(9),
            stream_header_timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let quota = session_quota(&limits);
        assert_eq!(
            (
                quota.max_subscriptions,
                quota.max_announcements,
                quota.max_group_size,
                quota.max_group_frames,
                quota.max_groups,
                quota.max_fetches,
                quota.max_track_requests,
                quota.max_announce_requests,
                quota.max_pending_streams,
                quota.header_timeout,
            ),
            (1, 2, 3, 4, 5, 6, 7, 8, 9, Duration::from_secs(10))
        );
        // Unset, each takes its documented default.
        let quota = session_quota(&config::Limits::default());
        assert_eq!(quota.max_group_size, config::DEFAULT_GROUP_SIZE);
        assert_eq!(quota.max_group_frames, config::DEFAULT_GROUP_FRAMES);
        assert_eq!(quota.max_groups, config::DEFAULT_GROUPS_PER_SESSION as usize);
        assert_eq!(quota.max_fetches, config::DEFAULT_FETCHES_PER_SESSION as usize);
        assert_eq!(
            quota.max_pending_streams,
            config::DEFAULT_PENDING_STREAMS_PER_SESSION as usize
        );
        assert_eq!(quota.header_timeout, config::DEFAULT_STREAM_HEADER_TIMEOUT);
    }

    #[test]
    fn the_cache_budget_comes_from_memory_and_headroom_can_refuse_it() {
        let mut config = Config::default();
        let budget = media(&config).unwrap().origin.cache().config().capacity;
        let total = media::total_memory();
        assert_eq!(budget, config::cache_budget(None, None, total).ok());
        config.cache.headroom = Some(config::MemoryLimit::Fraction(1.0));
        let err = media(&config).unwrap_err().to_string();
        assert!(err.contains("nothing is left for the cache"), "{err}");
    }
}
