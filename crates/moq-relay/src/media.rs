//! The media plane that client sessions and cluster links share: one origin (the
//! broadcast table and its cache), the number of upstream subscriptions held, the media
//! counters, and this relay's hop id. Cheap to clone; every clone is the same plane.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use moq_core::{Origin, model::cache::Cache, session, stats::Stats};
use moq_proto::Version;

/// The shared media plane.
#[derive(Debug, Clone)]
pub struct Media {
    /// The broadcast table.
    pub origin: Origin,
    /// Upstream subscriptions held now, across every session and link.
    pub upstream: Arc<AtomicUsize>,
    /// Media counters, updated by the session drivers.
    pub stats: Arc<Stats>,
    /// This relay's hop id: announcements carrying it are loops and are dropped.
    pub hop: u64,
}

impl Media {
    /// An empty origin over `cache`; broadcasts linger `linger` after their publisher left.
    pub fn new(cache: Cache, linger: Duration, hop: u64) -> Self {
        Self {
            origin: Origin::new(cache, linger),
            upstream: Arc::default(),
            stats: Arc::default(),
            hop,
        }
    }

    /// Upstream subscriptions held now (one per track in use).
    pub fn upstream_subscriptions(&self) -> usize {
        self.upstream.load(Ordering::Relaxed)
    }

    /// A session configuration wired to this plane: our hop id, the shared counters and
    /// the upstream subscription count. The caller sets what it may publish and consume.
    pub fn session_config(&self, version: Version) -> session::Config {
        let mut config = session::Config::new(version);
        config.hop = self.hop;
        config.stats = self.stats.clone();
        config.upstream = self.upstream.clone();
        config
    }
}
