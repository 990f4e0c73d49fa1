//! Cache policy shared by every track of a relay: how long non-latest groups
//! stay, and how many payload bytes all cached groups may hold together.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

/// Cache limits. The latest group of every track is always kept regardless.
#[derive(Debug, Clone, Default)]
pub struct CacheConfig {
    /// Target bytes of cached payload across all tracks (`None` = unbounded).
    pub capacity: Option<u64>,
    /// Ceiling on how long a non-latest group stays cached, on top of the
    /// track's own max latency.
    pub duration: Option<Duration>,
}

/// A cache policy plus the live byte count it is enforced against. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    config: Arc<CacheConfig>,
    stats: Arc<CacheStats>,
}

/// Live cache counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    bytes: AtomicI64,
    evicted_groups: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl CacheStats {
    /// Payload bytes currently held by caches (as last measured).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Groups evicted so far.
    pub fn evicted_groups(&self) -> u64 {
        self.evicted_groups.load(Ordering::Relaxed)
    }

    /// Payload bytes evicted so far.
    pub fn evicted_bytes(&self) -> u64 {
        self.evicted_bytes.load(Ordering::Relaxed)
    }
}

impl Cache {
    /// A cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            config: Arc::new(config),
            stats: Arc::default(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// How long a non-latest group of a track with `max_latency` may stay.
    pub(crate) fn max_age(&self, max_latency: Duration) -> Duration {
        match self.config.duration {
            Some(d) => d.min(max_latency),
            None => max_latency,
        }
    }

    /// Whether the byte budget is exceeded.
    pub(crate) fn over_budget(&self) -> bool {
        match self.config.capacity {
            Some(cap) => self.stats.bytes() > cap,
            None => false,
        }
    }

    /// Record a change in a track's cached bytes.
    pub(crate) fn adjust(&self, delta: i64) {
        if delta != 0 {
            self.stats.bytes.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub(crate) fn evicted(&self, bytes: u64) {
        self.stats.evicted_groups.fetch_add(1, Ordering::Relaxed);
        self.stats.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
