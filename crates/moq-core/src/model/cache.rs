//! Cache policy shared by every track of a relay, and the memory budget it enforces.
//!
//! Every group a track creates charges its bytes (payload, a per-frame overhead, and
//! the announced size of a frame still arriving) to the track's cache, and releases them
//! when the group is dropped everywhere. So [`CacheStats::bytes`] is what groups hold in
//! memory: in track caches, in deliveries still in flight, in producers still writing,
//! the latest group of every track included.
//!
//! Two things bound it:
//! - age: a non-latest group leaves its track's cache once older than the track's max
//!   latency (capped by [`CacheConfig::duration`]); checked when a group arrives on the
//!   track and by [`Cache::sweep`], so a quiet track is swept too;
//! - the byte budget ([`CacheConfig::capacity`]): a write that takes the total over it
//!   makes room at once, across every track, in this order: finished non-latest groups
//!   (oldest first), finished latest groups (oldest first), then groups still being
//!   written, non-latest oldest first and finally latest largest first. A group evicted
//!   while still being written is ended with [`Error::Evicted`](crate::Error::Evicted):
//!   its writer stops (a session stops the publisher's stream) and its readers keep the
//!   frames they have not read yet, then see the error. Readers already holding a
//!   finished group keep it whole: eviction only drops the cache's reference.
//!
//! Room is made down to 7/8 of the budget, at most once every [`RECLAIM_INTERVAL`], so a
//! writer at the edge does not sweep on every frame.

use std::{
    cmp::Ordering as CmpOrdering,
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{group::GroupConsumer, track::TrackShared};

/// The shortest time between two budget sweeps triggered by writes.
pub const RECLAIM_INTERVAL: Duration = Duration::from_millis(5);

/// How often an over-budget cache says so in the log, at most.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Cache limits. The latest group of every track is kept unless the byte budget
/// cannot be met otherwise.
#[derive(Debug, Clone, Default)]
pub struct CacheConfig {
    /// Bytes all groups of the cache's tracks may hold together (`None` = unbounded).
    pub capacity: Option<u64>,
    /// Ceiling on how long a non-latest group stays cached, on top of the
    /// track's own max latency.
    pub duration: Option<Duration>,
}

/// A cache policy plus the live byte count it is enforced against. Cheap to clone;
/// clones share everything.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    config: CacheConfig,
    stats: Arc<CacheStats>,
    tracks: Mutex<TrackList>,
    /// Held while making room; when it last happened and last was logged.
    reclaim: Mutex<Reclaim>,
}

#[derive(Debug, Default)]
struct TrackList {
    tracks: Vec<Weak<TrackShared>>,
    /// Forget dropped tracks once the list is this long.
    prune_at: usize,
}

#[derive(Debug, Default)]
struct Reclaim {
    last: Option<Instant>,
    logged: Option<Instant>,
}

/// Live cache counters.
#[derive(Debug, Default)]
pub struct CacheStats {
    bytes: AtomicU64,
    evicted_groups: AtomicU64,
    evicted_bytes: AtomicU64,
    aborted_groups: AtomicU64,
}

impl CacheStats {
    /// Bytes groups hold now (payload, per-frame overhead, frames still arriving).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Groups evicted so far (by age or by the byte budget).
    pub fn evicted_groups(&self) -> u64 {
        self.evicted_groups.load(Ordering::Relaxed)
    }

    /// Bytes the evicted groups held.
    pub fn evicted_bytes(&self) -> u64 {
        self.evicted_bytes.load(Ordering::Relaxed)
    }

    /// Groups ended while still being written, to keep the byte budget.
    pub fn aborted_groups(&self) -> u64 {
        self.aborted_groups.load(Ordering::Relaxed)
    }
}

/// Bytes one group holds against a cache's budget; released when dropped (when the
/// group's state goes, with its last reader).
#[derive(Debug, Default)]
pub(crate) struct Held {
    stats: Option<Arc<CacheStats>>,
    bytes: u64,
}

impl Held {
    /// Charges to `cache`, or to nothing.
    pub(crate) fn new(cache: Option<&Cache>) -> Self {
        Self {
            stats: cache.map(|c| c.inner.stats.clone()),
            bytes: 0,
        }
    }

    pub(crate) fn charge(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        if let Some(stats) = &self.stats {
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn release(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(stats) = &self.stats {
            stats.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release(self.bytes);
    }
}

/// How much it costs readers to lose a group, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// Finished and superseded: only late joiners and FETCH would miss it.
    OldDone,
    /// A track's latest group, finished: late joiners would start at the next one.
    LatestDone,
    /// Superseded but still being written: its writer is stopped.
    OldGrowing,
    /// A track's latest group, still being written: its writer is stopped.
    LatestGrowing,
}

/// One group a track holds, as the budget sweep sees it.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) class: Class,
    pub(crate) created: Instant,
    pub(crate) held: u64,
    pub(crate) group: GroupConsumer,
}

impl Candidate {
    /// Cheapest first; among groups still being written the largest goes first, since
    /// it is the one most likely to be the cause.
    fn order(a: &Self, b: &Self) -> CmpOrdering {
        a.class.cmp(&b.class).then_with(|| match a.class {
            Class::LatestGrowing => b.held.cmp(&a.held),
            _ => a.created.cmp(&b.created),
        })
    }
}

impl Cache {
    /// A cache with these limits.
    pub fn new(config: CacheConfig) -> Self {
        Self {
            inner: Arc::new(CacheInner {
                config,
                ..Default::default()
            }),
        }
    }

    /// The limits.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.inner.stats
    }

    /// How long a non-latest group of a track with `max_latency` may stay.
    pub(crate) fn max_age(&self, max_latency: Duration) -> Duration {
        match self.inner.config.duration {
            Some(d) => d.min(max_latency),
            None => max_latency,
        }
    }

    /// Whether the byte budget is exceeded.
    pub(crate) fn over_budget(&self) -> bool {
        match self.inner.config.capacity {
            Some(cap) => self.inner.stats.bytes() > cap,
            None => false,
        }
    }

    pub(crate) fn evicted(&self, bytes: u64) {
        let stats = &self.inner.stats;
        stats.evicted_groups.fetch_add(1, Ordering::Relaxed);
        stats.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Track `track` so sweeps reach it; forgotten once dropped.
    pub(crate) fn register(&self, track: &Arc<TrackShared>) {
        let mut list = lock(&self.inner.tracks);
        list.tracks.push(Arc::downgrade(track));
        if list.tracks.len() >= list.prune_at {
            list.tracks.retain(|t| t.strong_count() > 0);
            list.prune_at = list.tracks.len().saturating_mul(2).max(64);
        }
    }

    /// The tracks still alive.
    fn tracks(&self) -> Vec<Arc<TrackShared>> {
        let mut list = lock(&self.inner.tracks);
        let mut live = Vec::with_capacity(list.tracks.len());
        list.tracks.retain(|t| match t.upgrade() {
            Some(track) => {
                live.push(track);
                true
            }
            None => false,
        });
        live
    }

    /// Evict every track's groups that are too old, and make room if over the budget.
    /// A relay calls this periodically, so tracks that receive nothing are swept too.
    pub fn sweep(&self) {
        let now = Instant::now();
        let tracks = self.tracks();
        for track in &tracks {
            track.evict_aged(now);
        }
        if self.over_budget() {
            let mut state = lock(&self.inner.reclaim);
            state.last = Some(now);
            self.reclaim(&tracks, &mut state, now);
        }
    }

    /// Called after a write: if the budget is exceeded, make room (unless another
    /// writer is doing so, or did less than [`RECLAIM_INTERVAL`] ago).
    pub(crate) fn make_room(&self) {
        if !self.over_budget() {
            return;
        }
        let Ok(mut state) = self.inner.reclaim.try_lock() else {
            return;
        };
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < RECLAIM_INTERVAL)
        {
            return;
        }
        state.last = Some(now);
        let tracks = self.tracks();
        self.reclaim(&tracks, &mut state, now);
    }

    /// Evict groups, cheapest first, until what they hold brings the total down to 7/8
    /// of the budget.
    fn reclaim(&self, tracks: &[Arc<TrackShared>], state: &mut Reclaim, now: Instant) {
        let Some(capacity) = self.inner.config.capacity else {
            return;
        };
        let bytes = self.inner.stats.bytes();
        let target = bytes.saturating_sub(capacity.saturating_sub(capacity / 8));
        if bytes <= capacity || target == 0 {
            return;
        }
        let mut candidates = Vec::new();
        for track in tracks {
            track.candidates(&mut candidates);
        }
        candidates.sort_by(Candidate::order);
        let mut chosen = HashSet::new();
        let mut victims = Vec::new();
        let mut freed = 0u64;
        for candidate in candidates {
            if freed >= target {
                break;
            }
            if chosen.insert(candidate.group.id()) {
                freed = freed.saturating_add(candidate.held);
                victims.push(candidate);
            }
        }
        if victims.is_empty() {
            return;
        }
        for track in tracks {
            track.forget(&chosen);
        }
        let mut aborted = 0u64;
        for victim in &victims {
            if victim.group.evict() {
                aborted = aborted.saturating_add(1);
            }
            self.evicted(victim.held);
        }
        self.inner
            .stats
            .aborted_groups
            .fetch_add(aborted, Ordering::Relaxed);
        let quiet = state
            .logged
            .is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL);
        if aborted > 0 && !quiet {
            state.logged = Some(now);
            tracing::warn!(
                held = bytes,
                capacity,
                evicted = victims.len(),
                aborted,
                "cache over its byte budget: groups still being written were ended (more in the counters)"
            );
        } else {
            tracing::debug!(
                held = bytes,
                capacity,
                evicted = victims.len(),
                aborted,
                "cache over its byte budget"
            );
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; what it guards stays consistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
