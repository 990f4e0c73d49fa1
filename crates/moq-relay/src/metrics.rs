//! The relay's metrics, in one registry, rendered as Prometheus text on the
//! internal listener. Counters of the media path live in `moq_core::stats`
//! (updated where the bytes move) and are read at scrape time.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use moq_core::{Origin, model::cache::CacheStats, stats::Stats};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

/// Labels of session metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// `quic` or `webtransport`.
    pub transport: String,
    /// The moq-lite version.
    pub version: String,
}

/// Labels of refusal and failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A short, stable reason (`no_token`, `bad_signature`, ...).
    pub reason: String,
}

/// Labels of the cluster link gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// `static`, `root` or `on-demand`.
    pub kind: String,
    /// `connecting`, `up` or `down`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Every metric the relay exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions open now.
    pub sessions_active: Family<SessionLabels, Gauge>,
    /// Sessions accepted, ever.
    pub sessions_total: Family<SessionLabels, Counter>,
    /// Connections refused, by reason.
    pub sessions_refused: Family<ReasonLabels, Counter>,
    /// Authentication failures, by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Smoothed RTT of live connections, sampled periodically.
    pub quic_rtt: Histogram,
    /// Sum of congestion windows of live connections.
    pub quic_cwnd: Gauge,
    /// Packets declared lost.
    pub quic_lost: Counter,
    /// Unix time at which the served certificate expires.
    pub cert_expiry: Gauge,
    /// 1 while the relay accepts sessions.
    pub ready: Gauge,
    /// Cluster links by kind and state.
    pub cluster_links: Family<LinkLabels, Gauge>,
}

impl Metrics {
    /// A registry with every metric, reading media counters from `stats`,
    /// cache counters from `cache` and the broadcast count from `origin`.
    pub fn new(
        stats: Arc<Stats>,
        cache: Arc<CacheStats>,
        origin: Origin,
        upstream: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        let mut registry = Registry::default();
        let sessions_active = Family::<SessionLabels, Gauge>::default();
        let sessions_total = Family::<SessionLabels, Counter>::default();
        let sessions_refused = Family::<ReasonLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let quic_rtt = Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0]);
        let quic_cwnd = Gauge::default();
        let quic_lost = Counter::default();
        let cert_expiry = Gauge::default();
        let ready = Gauge::default();
        let cluster_links = Family::<LinkLabels, Gauge>::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);

        let r = &mut registry;
        r.register("moq_relay_build_info", "Build information", build);
        r.register(
            "moq_relay_ready",
            "1 while the relay accepts sessions",
            ready.clone(),
        );
        r.register(
            "moq_relay_sessions_active",
            "Sessions open now",
            sessions_active.clone(),
        );
        r.register("moq_relay_sessions", "Sessions accepted", sessions_total.clone());
        r.register(
            "moq_relay_sessions_refused",
            "Connections refused, by reason",
            sessions_refused.clone(),
        );
        r.register(
            "moq_relay_auth_failures",
            "Authentication failures, by reason",
            auth_failures.clone(),
        );
        r.register(
            "moq_relay_quic_rtt_seconds",
            "Smoothed RTT of live connections",
            quic_rtt.clone(),
        );
        r.register(
            "moq_relay_quic_congestion_window_bytes",
            "Sum of congestion windows of live connections",
            quic_cwnd.clone(),
        );
        r.register(
            "moq_relay_quic_lost_packets",
            "Packets declared lost",
            quic_lost.clone(),
        );
        r.register(
            "moq_relay_tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the served certificate expires",
            cert_expiry.clone(),
        );
        r.register(
            "moq_relay_cluster_links",
            "Cluster links by kind and state",
            cluster_links.clone(),
        );
        r.register_collector(Box::new(Media {
            stats,
            cache,
            origin,
            upstream,
        }));
        r.register_collector(Box::new(Process));

        Self {
            registry,
            sessions_active,
            sessions_total,
            sessions_refused,
            auth_failures,
            quic_rtt,
            quic_cwnd,
            quic_lost,
            cert_expiry,
            ready,
            cluster_links,
        }
    }

    /// Recount the cluster link gauge from the links' current states.
    pub fn cluster_links_changed(&self, links: &[crate::cluster::LinkStatus]) {
        self.cluster_links.clear();
        for link in links {
            self.cluster_links
                .get_or_create(&LinkLabels {
                    kind: link.kind.as_str().to_string(),
                    state: link.state.to_string(),
                })
                .inc();
        }
    }

    /// Count a refused connection.
    pub fn refused(&self, reason: &str) {
        self.sessions_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count an authentication failure (and the refusal it causes).
    pub fn auth_failed(&self, reason: &str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        self.refused("unauthorized");
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Media counters from the session drivers, the cache and the origin.
#[derive(Debug)]
struct Media {
    stats: Arc<Stats>,
    cache: Arc<CacheStats>,
    origin: Origin,
    upstream: Arc<std::sync::atomic::AtomicUsize>,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for Media {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let get = Stats::get;
        counter(
            &mut e,
            "moq_relay_bytes_received",
            "Frame payload bytes received",
            get(&s.bytes_received),
        )?;
        counter(
            &mut e,
            "moq_relay_bytes_sent",
            "Frame payload bytes sent",
            get(&s.bytes_sent),
        )?;
        counter(
            &mut e,
            "moq_relay_frames_received",
            "Frames received",
            get(&s.frames_received),
        )?;
        counter(
            &mut e,
            "moq_relay_frames_sent",
            "Frames sent",
            get(&s.frames_sent),
        )?;
        counter(
            &mut e,
            "moq_relay_groups_received",
            "Groups received",
            get(&s.groups_received),
        )?;
        counter(
            &mut e,
            "moq_relay_groups_sent",
            "Groups sent",
            get(&s.groups_sent),
        )?;
        counter(
            &mut e,
            "moq_relay_subscriptions",
            "Subscriptions served",
            get(&s.subscriptions_total),
        )?;
        gauge(
            &mut e,
            "moq_relay_subscriptions_active",
            "Subscriptions served now",
            s.subscriptions_active.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "moq_relay_upstream_subscriptions_active",
            "Subscriptions this relay holds on publishers and peer relays (one per track in use)",
            self.upstream.load(Ordering::Relaxed) as i64,
        )?;
        gauge(
            &mut e,
            "moq_relay_broadcasts_active",
            "Broadcasts announced now",
            self.origin.paths().len() as i64,
        )?;
        gauge(
            &mut e,
            "moq_relay_cache_bytes",
            "Payload bytes held by the cache",
            self.cache.bytes() as i64,
        )?;
        counter(
            &mut e,
            "moq_relay_cache_evicted_bytes",
            "Payload bytes evicted from the cache",
            self.cache.evicted_bytes(),
        )?;
        counter(
            &mut e,
            "moq_relay_cache_evicted_groups",
            "Groups evicted from the cache",
            self.cache.evicted_groups(),
        )?;
        Ok(())
    }
}

/// Standard process metrics from /proc (Linux).
#[derive(Debug)]
struct Process;

impl Process {
    fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    fn resident_bytes() -> Option<i64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    fn open_fds() -> Option<i64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
    }

    fn max_fds() -> Option<i64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }
}

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = Self::cpu_seconds() {
            let metric = ConstCounter::new(cpu);
            metric.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Some(rss) = Self::resident_bytes() {
            gauge(&mut e, "process_resident_memory_bytes", "Resident memory", rss)?;
        }
        if let Some(fds) = Self::open_fds() {
            gauge(&mut e, "process_open_fds", "Open file descriptors", fds)?;
        }
        if let Some(max) = Self::max_fds() {
            gauge(&mut e, "process_max_fds", "Maximum open file descriptors", max)?;
        }
        Ok(())
    }
}

/// How often QUIC connection statistics are sampled.
pub const QUIC_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
