//! The relay's one Prometheus registry. Each concern registers its own metrics into it
//! at start-up (sessions in [`crate::registry`], links in [`crate::cluster`], QUIC and TLS
//! in [`crate::server`]); this module holds what several concerns share: refusal
//! counters, the media and process collectors, and the text rendering.
//!
//! Media counters are updated where the bytes move (`moq_core::stats`) and only read here,
//! at scrape time.

use std::sync::{Arc, Mutex};

use moq_core::{
    model::cache::CacheStats,
    stats::{Limit, Stats},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::MetricType,
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
    },
    registry::Registry,
};

use crate::media::Media;

/// Reasons every refusal counter starts with at zero, so the first burst shows in `rate()`.
pub const AUTH_REASONS: [&str; 8] = [
    "no_access",
    "token_required",
    "bad_signature",
    "expired",
    "malformed",
    "unknown_kid",
    "wrong_root",
    "cluster_anonymous",
];

/// Labels of refusal and failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A short, stable reason (`no_token`, `bad_signature`, ...).
    pub reason: String,
}

/// Labels of the session-limit refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The registry being filled at start-up; frozen into [`Metrics`] once every concern
/// has registered.
#[derive(Debug, Default)]
pub struct Builder {
    registry: Registry,
}

impl Builder {
    /// A registry with the build information.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("moq_relay_build_info", "Build information", build);
        registry.register_collector(Box::new(Process));
        Self { registry }
    }

    /// The registry, for a concern to register its metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Export the media plane's counters (read at scrape time).
    pub fn media(&mut self, media: &Media) {
        let cache = media.origin.cache();
        self.registry.register_collector(Box::new(MediaCollector {
            stats: media.stats.clone(),
            cache: cache.stats().clone(),
            budget: cache.config().capacity,
            media: media.clone(),
        }));
    }

    /// Export the served certificate's expiry and, with ACME, the certificate manager's
    /// state (read at scrape time, so a renewal shows at once).
    pub fn tls(&mut self, quic: Arc<moq_native::server::Server>) {
        self.registry.register_collector(Box::new(TlsCollector { quic }));
    }

    /// Freeze the registry.
    pub fn finish(self) -> Metrics {
        Metrics {
            registry: Arc::new(Mutex::new(self.registry)),
        }
    }
}

/// The frozen registry, rendered on every scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Refusal log lines per second across the relay (with a burst of twice that); the rest
/// are counted in `moq_relay_log_suppressed_total`, so a flood cannot fill the logs.
pub const REFUSAL_LOG_RATE: u32 = 20;

/// Refused connections and failed authentications, shared by every listener, and the
/// budget of log lines about them.
#[derive(Debug, Clone)]
pub struct Refusals {
    refused: Family<ReasonLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    suppressed: Counter,
    retries: Counter,
    budget: Arc<governor::DefaultDirectRateLimiter>,
}

impl Default for Refusals {
    fn default() -> Self {
        let rate = std::num::NonZeroU32::new(REFUSAL_LOG_RATE).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = rate.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1));
        Self {
            refused: Family::default(),
            auth_failures: Family::default(),
            suppressed: Counter::default(),
            retries: Counter::default(),
            budget: Arc::new(governor::RateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            )),
        }
    }
}

impl Refusals {
    /// Register both counters, each reason of [`AUTH_REASONS`] present at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let this = Self::default();
        for reason in AUTH_REASONS {
            this.auth_failures.get_or_create(&labels(reason)).inc_by(0);
        }
        this.refused.get_or_create(&labels("unauthorized")).inc_by(0);
        registry.register(
            "moq_relay_sessions_refused",
            "Connections refused, by reason",
            this.refused.clone(),
        );
        registry.register(
            "moq_relay_auth_failures",
            "Authentication failures, by reason",
            this.auth_failures.clone(),
        );
        registry.register(
            "moq_relay_log_suppressed",
            "Refusal log lines left out under a flood (the refusals are still counted)",
            this.suppressed.clone(),
        );
        registry.register(
            "moq_relay_quic_retries",
            "Connection attempts answered with a QUIC Retry (an unvalidated source past its rate must prove its address)",
            this.retries.clone(),
        );
        this
    }

    /// The refused-connections counter family (for tests that read it directly).
    pub fn refused_family(&self) -> Family<ReasonLabels, Counter> {
        self.refused.clone()
    }

    /// Whether a refusal may be logged now; when not, the line is counted as suppressed.
    pub fn may_log(&self) -> bool {
        let allowed = self.budget.check().is_ok();
        if !allowed {
            self.suppressed.inc();
        }
        allowed
    }

    /// Count a connection attempt answered with a QUIC Retry.
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// Count a refused connection.
    pub fn refused(&self, reason: &str) {
        self.refused.get_or_create(&labels(reason)).inc();
    }

    /// Count an authentication failure (and the refusal it causes).
    pub fn auth_failed(&self, reason: &str) {
        self.auth_failures.get_or_create(&labels(reason)).inc();
        self.refused("unauthorized");
    }
}

fn labels(reason: &str) -> ReasonLabels {
    ReasonLabels {
        reason: reason.to_string(),
    }
}

/// Media counters from the session drivers, the cache and the origin.
#[derive(Debug)]
struct MediaCollector {
    stats: Arc<Stats>,
    cache: Arc<CacheStats>,
    /// The cache's byte budget, if it has one.
    budget: Option<u64>,
    media: Media,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

pub(crate) fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl MediaCollector {
    /// The media counters: name, help, value.
    fn counters(&self) -> [(&'static str, &'static str, u64); 11] {
        let s = &self.stats;
        let get = Stats::get;
        [
            (
                "moq_relay_announcements_forbidden",
                "Broadcasts sessions announced where they may not publish (e.g. anonymous publishing into a subscribe-only prefix); refused, never relayed",
                get(&s.announcements_forbidden),
            ),
            (
                "moq_relay_bytes_received",
                "Frame payload bytes received",
                get(&s.bytes_received),
            ),
            (
                "moq_relay_bytes_sent",
                "Frame payload bytes sent",
                get(&s.bytes_sent),
            ),
            (
                "moq_relay_frames_received",
                "Frames received",
                get(&s.frames_received),
            ),
            ("moq_relay_frames_sent", "Frames sent", get(&s.frames_sent)),
            (
                "moq_relay_groups_received",
                "Groups received",
                get(&s.groups_received),
            ),
            ("moq_relay_groups_sent", "Groups sent", get(&s.groups_sent)),
            (
                "moq_relay_subscriptions",
                "Subscriptions served",
                get(&s.subscriptions_total),
            ),
            (
                "moq_relay_cache_evicted_bytes",
                "Payload bytes evicted from the cache",
                self.cache.evicted_bytes(),
            ),
            (
                "moq_relay_cache_evicted_groups",
                "Groups evicted from the cache",
                self.cache.evicted_groups(),
            ),
            (
                "moq_relay_cache_aborted_groups",
                "Groups ended while still being written, to keep the cache's byte budget (EVICTED)",
                self.cache.aborted_groups(),
            ),
        ]
    }

    /// `moq_relay_limit_refusals`, one sample per [`Limit`].
    fn encode_limit_refusals(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let mut refusals = e.encode_descriptor(
            "moq_relay_limit_refusals",
            "Streams, groups and announcements refused because a session reached a [limits] limit, by limit",
            None,
            MetricType::Counter,
        )?;
        for limit in Limit::ALL {
            let value = ConstCounter::new(s.refused(limit));
            value.encode(refusals.encode_family(&LimitLabels { limit: limit.name() })?)?;
        }
        Ok(())
    }

    /// The media gauges: name, help, value.
    fn gauges(&self) -> [(&'static str, &'static str, i64); 5] {
        let s = &self.stats;
        [
            (
                "moq_relay_subscriptions_active",
                "Subscriptions served now",
                s.subscriptions_active.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "moq_relay_upstream_subscriptions_active",
                "Subscriptions this relay holds on publishers and peer relays (one per track in use)",
                self.media.upstream_subscriptions() as i64,
            ),
            (
                "moq_relay_broadcasts_active",
                "Broadcasts announced now",
                self.media.origin.paths().len() as i64,
            ),
            (
                "moq_relay_cache_bytes",
                "Bytes groups hold in memory (payload, per-frame overhead, frames arriving), the cache's and in flight",
                self.cache.bytes() as i64,
            ),
            (
                "moq_relay_cache_budget_bytes",
                "The byte budget of the cache (0: unbounded)",
                self.budget.unwrap_or(0) as i64,
            ),
        ]
    }
}

impl Collector for MediaCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in self.counters() {
            counter(&mut e, name, help, value)?;
        }
        self.encode_limit_refusals(&mut e)?;
        for (name, help, value) in self.gauges() {
            gauge(&mut e, name, help, value)?;
        }
        Ok(())
    }
}

/// Labels of the ACME order counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The certificate and ACME metrics.
#[derive(Debug)]
struct TlsCollector {
    quic: Arc<moq_native::server::Server>,
}

/// Seconds since the Unix epoch (negative before it).
fn unix_seconds(at: std::time::SystemTime) -> i64 {
    match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

impl Collector for TlsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(expiry) = self.quic.certificate_expiry() {
            let at = unix_seconds(expiry);
            gauge(
                &mut e,
                "moq_relay_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which the served certificate expires",
                at,
            )?;
            gauge(
                &mut e,
                "moq_relay_certificate_expiry_seconds",
                "Seconds until the served certificate expires (negative once it has)",
                at.saturating_sub(unix_seconds(std::time::SystemTime::now())),
            )?;
        }
        let Some(acme) = self.quic.acme() else {
            return Ok(());
        };
        let status = acme.status();
        let mut orders = e.encode_descriptor(
            "moq_relay_acme_orders",
            "ACME orders finished, by result: issued, or why they failed",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(status.issued).encode(orders.encode_family(&ResultLabels { result: "issued" })?)?;
        for reason in moq_native::acme::Error::REASONS {
            let value = status.failures.get(reason).copied().unwrap_or(0);
            ConstCounter::new(value).encode(orders.encode_family(&ResultLabels { result: reason })?)?;
        }
        gauge(
            &mut e,
            "moq_relay_acme_consecutive_failures",
            "ACME orders failed in a row (0 after a success)",
            i64::from(status.consecutive_failures),
        )?;
        if let Some(next) = status.next_attempt {
            gauge(
                &mut e,
                "moq_relay_acme_next_attempt_timestamp_seconds",
                "Unix time of the next planned ACME order (renewal or retry)",
                unix_seconds(next),
            )?;
        }
        Ok(())
    }
}

/// Standard process metrics (Linux), read through `procfs`.
#[derive(Debug)]
struct Process;

impl Collector for Process {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                cpu.metric_type(),
            )?)?;
            let rss = procfs::WithCurrentSystemInfo::get(stat.rss_bytes());
            gauge(
                &mut e,
                "process_resident_memory_bytes",
                "Resident memory",
                rss as i64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / ticks;
                let metric = ConstGauge::new(start);
                metric.encode(e.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch",
                    None,
                    metric.metric_type(),
                )?)?;
            }
        }
        if let Ok(fds) = me.fd_count() {
            gauge(&mut e, "process_open_fds", "Open file descriptors", fds as i64)?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut e,
                "process_max_fds",
                "Maximum open file descriptors",
                max as i64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_real_numbers() {
        let metrics = Builder::new().finish();
        let text = metrics.render();
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("rss exported");
        // A test process holds more than a megabyte and less than a terabyte.
        assert!(rss > 1e6 && rss < 1e12, "rss {rss}");
        assert!(text.contains("process_start_time_seconds"));
        assert!(text.contains("moq_relay_build_info"));
    }

    #[test]
    fn refusal_reasons_start_at_zero() {
        let mut builder = Builder::new();
        let refusals = Refusals::register(builder.registry());
        let metrics = builder.finish();
        let text = metrics.render();
        assert!(
            text.contains(r#"moq_relay_auth_failures_total{reason="bad_signature"} 0"#),
            "{text}"
        );
        refusals.auth_failed("bad_signature");
        let text = metrics.render();
        assert!(text.contains(r#"moq_relay_auth_failures_total{reason="bad_signature"} 1"#));
        assert!(text.contains(r#"moq_relay_sessions_refused_total{reason="unauthorized"} 1"#));
    }

    #[test]
    fn refusal_logs_are_budgeted_and_the_rest_counted() {
        let mut builder = Builder::new();
        let refusals = Refusals::register(builder.registry());
        let metrics = builder.finish();
        let logged = (0..1000).filter(|_| refusals.may_log()).count();
        let burst = 2 * REFUSAL_LOG_RATE as usize;
        assert!((burst..burst + 5).contains(&logged), "{logged} lines allowed");
        let suppressed = (1000 - logged).to_string();
        assert!(
            metrics
                .render()
                .contains(&format!("moq_relay_log_suppressed_total {suppressed}"))
        );
    }
}
