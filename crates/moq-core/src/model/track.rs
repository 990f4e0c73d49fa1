//! A track: a sequence of groups, one of which is the latest. The producer
//! keeps a small cache of recent groups; consumers start at the latest group
//! and receive each newer group once.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use super::{
    cache::{Cache, Candidate, Class},
    group::{GroupConsumer, GroupProducer},
};
use crate::{Error, Result};

/// A track's fixed properties (moq-lite TRACK_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackInfo {
    /// Publisher priority; higher is sent first.
    pub priority: u8,
    /// How long non-latest groups stay useful (and cached).
    pub max_latency: Duration,
    /// Units per second of frame timestamps.
    pub timescale: u64,
}

impl Default for TrackInfo {
    fn default() -> Self {
        Self {
            priority: 0,
            max_latency: Duration::from_secs(5),
            timescale: 1_000_000,
        }
    }
}

#[derive(Debug)]
struct Cached {
    sequence: u64,
    arrival: u64,
    created: Instant,
    group: GroupConsumer,
}

#[derive(Debug, Default)]
pub(crate) struct TrackState {
    groups: VecDeque<Cached>,
    /// Groups that aged out of the cache while still being written: out of sight of
    /// consumers, but within reach of the byte budget until they end.
    detached: Vec<Cached>,
    next_arrival: u64,
    latest: Option<u64>,
    info: Option<TrackInfo>,
    end: Option<Result<()>>,
}

impl TrackState {
    fn latest_cached(&self) -> Option<&Cached> {
        self.groups.iter().max_by_key(|c| c.sequence)
    }
}

#[derive(Debug)]
pub(crate) struct TrackShared {
    name: String,
    state: watch::Sender<TrackState>,
    cache: Cache,
    /// The group the consumer that asked for this track wants to start at (see
    /// [`TrackProducer::start`]).
    start: Option<u64>,
}

/// Writes groups into a track. Dropping it without [`finish`](Self::finish)
/// ends the track with [`Error::Cancelled`].
#[derive(Debug)]
pub struct TrackProducer {
    shared: Arc<TrackShared>,
}

impl TrackProducer {
    /// A new track with no info yet (set it with [`set_info`](Self::set_info)).
    pub fn new(name: impl Into<String>, cache: Cache) -> Self {
        Self::requested(name, cache, None)
    }

    /// A track a consumer asked for, wanting to start at group `start` if it said.
    pub(crate) fn requested(name: impl Into<String>, cache: Cache, start: Option<u64>) -> Self {
        let (tx, _) = watch::channel(TrackState::default());
        let shared = Arc::new(TrackShared {
            name: name.into(),
            state: tx,
            cache,
            start,
        });
        shared.cache.register(&shared);
        Self { shared }
    }

    /// A new track with its info already known.
    pub fn with_info(name: impl Into<String>, info: TrackInfo, cache: Cache) -> Self {
        let track = Self::new(name, cache);
        track.set_info(info);
        track
    }

    pub(crate) fn shared(&self) -> &Arc<TrackShared> {
        &self.shared
    }

    /// The track name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Set the track's properties (once known from the publisher).
    pub fn set_info(&self, info: TrackInfo) {
        self.shared.state.send_modify(|s| s.info = Some(info));
    }

    /// The track's properties, if known.
    pub fn info(&self) -> Option<TrackInfo> {
        self.shared.state.borrow().info
    }

    /// The group the consumer that requested this track asked to start at (through
    /// [`BroadcastConsumer::subscribe_from`](super::BroadcastConsumer::subscribe_from)),
    /// so whoever fills it can ask its own source for the same: a viewer resuming after a
    /// reconnect gets the groups it missed, from every relay on the way that still has them.
    pub fn start(&self) -> Option<u64> {
        self.shared.start
    }

    /// Where to resume this track from another source: the latest group again if it did
    /// not end cleanly here (the new source may deliver it whole), else the one after
    /// it; with no group yet, where it was asked to start.
    pub fn resume_from(&self) -> Option<u64> {
        let s = self.shared.state.borrow();
        match s.latest {
            Some(latest) => match get_group(&s, latest) {
                Some(group) if group.is_done() && !group.is_aborted() => latest.checked_add(1),
                _ => Some(latest),
            },
            None => self.shared.start,
        }
    }

    /// A consumer starting at the latest group.
    pub fn consume(&self) -> TrackConsumer {
        TrackConsumer::new(&self.shared)
    }

    /// Start a new group, its bytes charged to the track's cache. Fails if the sequence
    /// was already used (while cached).
    pub fn create_group(&self, sequence: u64) -> Result<GroupProducer> {
        let (producer, consumer) = GroupProducer::charged(sequence, &self.shared.cache);
        self.insert_group(consumer)?;
        Ok(producer)
    }

    /// Add a group produced elsewhere (shared, not copied): how a relay
    /// forwards an upstream group into its own track.
    pub fn insert_group(&self, group: GroupConsumer) -> Result<()> {
        let sequence = group.sequence();
        let cache = &self.shared.cache;
        let mut result = Ok(());
        self.shared.state.send_if_modified(|s| {
            if s.end.is_some() {
                result = Err(Error::Cancelled);
                return false;
            }
            if let Some(at) = s.groups.iter().position(|c| c.sequence == sequence) {
                // A group cut off with its route (failover) is replaced by the
                // same group from the new route, so viewers get it whole; a
                // live or complete one is a duplicate.
                if s.groups.get(at).is_some_and(|c| !c.group.is_aborted()) {
                    result = Err(Error::Duplicate(sequence));
                    return false;
                }
                s.groups.remove(at);
            }
            let arrival = s.next_arrival;
            s.next_arrival = s.next_arrival.saturating_add(1);
            s.latest = Some(s.latest.map_or(sequence, |l| l.max(sequence)));
            s.groups.push_back(Cached {
                sequence,
                arrival,
                created: Instant::now(),
                group,
            });
            evict(s, cache, Instant::now());
            true
        });
        result
    }

    /// The cached group with this sequence, for FETCH.
    pub fn get_group(&self, sequence: u64) -> Option<GroupConsumer> {
        get_group(&self.shared.state.borrow(), sequence)
    }

    /// The latest group's sequence, if any group exists.
    pub fn latest(&self) -> Option<u64> {
        self.shared.state.borrow().latest
    }

    /// Resolves once a group numbered `sequence` or later exists, or the track ended.
    pub(crate) async fn reached(&self, sequence: u64) {
        let mut state = self.shared.state.subscribe();
        let _ = state
            .wait_for(|s| s.end.is_some() || s.latest.is_some_and(|l| l >= sequence))
            .await;
    }

    /// End the track cleanly.
    pub fn finish(self) {
        self.end(Ok(()));
    }

    /// End the track with an error.
    pub fn abort(self, err: Error) {
        self.end(Err(err));
    }

    /// End the track (through a shared reference, for tasks that share the producer).
    pub fn close(&self, result: Result<()>) {
        self.end(result);
    }

    fn end(&self, result: Result<()>) {
        self.shared.state.send_if_modified(|s| {
            if s.end.is_some() {
                return false;
            }
            s.end = Some(result);
            true
        });
    }

    /// Whether the track has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.state.borrow().end.is_some()
    }

    /// Resolves once no consumer is left.
    pub async fn unused(&self) {
        self.shared.state.closed().await
    }

    /// Number of live consumers.
    pub fn consumers(&self) -> usize {
        self.shared.state.receiver_count()
    }
}

impl Drop for TrackProducer {
    fn drop(&mut self) {
        self.end(Err(Error::Cancelled));
    }
}

impl TrackShared {
    pub(crate) fn consume(self: &Arc<Self>) -> Option<TrackConsumer> {
        match self.state.borrow().end {
            Some(_) => None,
            None => Some(TrackConsumer::new(self)),
        }
    }
}

fn get_group(s: &TrackState, sequence: u64) -> Option<GroupConsumer> {
    s.groups
        .iter()
        .find(|c| c.sequence == sequence)
        .map(|c| c.group.clone())
}

impl TrackShared {
    /// Evict the groups that are too old (see [`Cache::sweep`]).
    pub(crate) fn evict_aged(&self, now: Instant) {
        // Removing groups gives consumers nothing new to see: no wake-up.
        self.state.send_if_modified(|s| {
            evict(s, &self.cache, now);
            false
        });
    }

    /// The groups this track holds, for the cache's byte budget.
    pub(crate) fn candidates(&self, out: &mut Vec<Candidate>) {
        let s = self.state.borrow();
        for cached in &s.groups {
            let latest = Some(cached.sequence) == s.latest;
            let class = match (latest, cached.group.is_done()) {
                (false, true) => Class::OldDone,
                (true, true) => Class::LatestDone,
                (false, false) => Class::OldGrowing,
                (true, false) => Class::LatestGrowing,
            };
            out.push(candidate(cached, class));
        }
        for cached in &s.detached {
            out.push(candidate(cached, Class::OldGrowing));
        }
    }

    /// Drop the groups with these ids (see [`GroupConsumer::id`]).
    pub(crate) fn forget(&self, ids: &HashSet<usize>) {
        self.state.send_if_modified(|s| {
            s.groups.retain(|c| !ids.contains(&c.group.id()));
            s.detached.retain(|c| !ids.contains(&c.group.id()));
            false
        });
    }
}

fn candidate(cached: &Cached, class: Class) -> Candidate {
    Candidate {
        class,
        created: cached.created,
        held: cached.group.held(),
        group: cached.group.clone(),
    }
}

/// Drop non-latest groups older than the track's max age. One still being written
/// moves to `detached`, where the byte budget can still reach it.
fn evict(s: &mut TrackState, cache: &Cache, now: Instant) {
    s.detached.retain(|c| !c.group.is_done());
    let max_age = cache.max_age(s.info.unwrap_or_default().max_latency);
    let latest = s.latest;
    let too_old =
        |c: &Cached| Some(c.sequence) != latest && now.saturating_duration_since(c.created) > max_age;
    if !s.groups.iter().any(too_old) {
        return;
    }
    let (keep, old): (VecDeque<Cached>, VecDeque<Cached>) = std::mem::take(&mut s.groups)
        .into_iter()
        .partition(|c| !too_old(c));
    s.groups = keep;
    for cached in old {
        match cached.group.is_done() {
            true => cache.evicted(cached.group.held()),
            false => s.detached.push(cached),
        }
    }
}

/// Reads a track's groups: first the latest (or a requested start), then every
/// group that arrives after it, once each, in arrival order. Groups travel on
/// independent streams, so a group may arrive after a newer one; it is still
/// delivered, unless it is older than where this consumer started (a late
/// joiner never goes back before the group it joined at).
#[derive(Debug)]
pub struct TrackConsumer {
    name: String,
    state: watch::Receiver<TrackState>,
    cursor: u64,
    /// Groups below this sequence are before our starting point.
    floor: Option<u64>,
}

impl Clone for TrackConsumer {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            state: self.state.clone(),
            cursor: self.cursor,
            floor: self.floor,
        }
    }
}

impl TrackConsumer {
    fn new(shared: &Arc<TrackShared>) -> Self {
        let state = shared.state.subscribe();
        let (cursor, floor) = {
            let s = state.borrow();
            match s.latest_cached() {
                Some(latest) => (latest.arrival, Some(latest.sequence)),
                None => (s.next_arrival, None),
            }
        };
        Self {
            name: shared.name.clone(),
            state,
            cursor,
            floor,
        }
    }

    /// The track name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Start at the first cached group with sequence ≥ `sequence` instead of
    /// the latest (if it is still cached).
    pub fn start_at(&mut self, sequence: u64) {
        let first = {
            let s = self.state.borrow();
            s.groups
                .iter()
                .filter(|c| c.sequence >= sequence)
                .map(|c| c.arrival)
                .min()
        };
        if let Some(arrival) = first {
            self.cursor = arrival;
        }
        self.floor = Some(sequence);
    }

    /// The track's properties, waiting until the publisher states them.
    pub async fn info(&mut self) -> Result<TrackInfo> {
        let s = self
            .state
            .wait_for(|s| s.info.is_some() || s.end.is_some())
            .await
            .map_err(|_| Error::Cancelled)?;
        match (&s.info, &s.end) {
            (Some(info), _) => Ok(*info),
            (None, Some(Err(e))) => Err(e.clone()),
            (None, _) => Err(Error::Cancelled),
        }
    }

    /// The latest group's sequence, if any.
    pub fn latest(&self) -> Option<u64> {
        self.state.borrow().latest
    }

    /// The cached group with this sequence.
    pub fn get_group(&self, sequence: u64) -> Option<GroupConsumer> {
        get_group(&self.state.borrow(), sequence)
    }

    /// Every cached group, in arrival order (for a FETCH of a range).
    pub fn cached(&self) -> Vec<GroupConsumer> {
        self.state
            .borrow()
            .groups
            .iter()
            .map(|c| c.group.clone())
            .collect()
    }

    /// The next group; `Ok(None)` when the track finished.
    pub async fn next_group(&mut self) -> Result<Option<GroupConsumer>> {
        loop {
            let cursor = self.cursor;
            let s = self
                .state
                .wait_for(|s| s.next_arrival > cursor || s.end.is_some())
                .await
                .map_err(|_| Error::Cancelled)?;
            let floor = self.floor;
            let next = s
                .groups
                .iter()
                .filter(|c| c.arrival >= cursor)
                .find(|c| floor.is_none_or(|f| c.sequence >= f))
                .map(|c| (c.arrival, c.group.clone()));
            if let Some((arrival, group)) = next {
                drop(s);
                self.cursor = arrival.saturating_add(1);
                return Ok(Some(group));
            }
            // Everything from the cursor on was already evicted.
            if s.next_arrival > cursor {
                self.cursor = s.next_arrival;
                continue;
            }
            return match &s.end {
                Some(Ok(())) => Ok(None),
                Some(Err(e)) => Err(e.clone()),
                None => continue,
            };
        }
    }

    /// Resolves when the track ends; returns how it ended.
    pub async fn closed(&mut self) -> Result<()> {
        let s = self
            .state
            .wait_for(|s| s.end.is_some())
            .await
            .map_err(|_| Error::Cancelled)?;
        s.end.clone().unwrap_or(Err(Error::Cancelled))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::model::{Frame, cache::CacheConfig};

    fn write_group(track: &TrackProducer, seq: u64, bytes: usize) {
        let mut g = track.create_group(seq).unwrap();
        g.write(Frame {
            timestamp: 0,
            payload: Bytes::from(vec![0; bytes]),
        });
        g.finish();
    }

    #[tokio::test]
    async fn a_group_cut_off_with_its_route_is_replaced_whole() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        let mut consumer = track.consume();
        let mut cut = track.create_group(5).unwrap();
        cut.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(b"first"),
        });
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 5);
        // A live group cannot be replaced...
        let (_, again) = GroupProducer::new(5);
        assert!(matches!(track.insert_group(again), Err(Error::Duplicate(5))));
        // ...but once its route dies, the same group from another route can.
        cut.abort(Error::Cancelled);
        let (mut whole, copy) = GroupProducer::new(5);
        track.insert_group(copy).unwrap();
        whole.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(b"first"),
        });
        whole.finish();
        let mut replayed = consumer.next_group().await.unwrap().unwrap();
        assert_eq!(replayed.sequence(), 5);
        assert_eq!(replayed.next_frame().await.unwrap().unwrap().payload, "first");
        assert!(replayed.next_frame().await.unwrap().is_none());
        // A complete group is never replaced.
        let (_, late) = GroupProducer::new(5);
        assert!(matches!(track.insert_group(late), Err(Error::Duplicate(5))));
    }

    #[tokio::test]
    async fn late_joiner_starts_at_latest() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        for seq in 0..3 {
            write_group(&track, seq, 10);
        }
        let mut consumer = track.consume();
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 2);
        write_group(&track, 3, 10);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 3);
        track.finish();
        assert!(consumer.next_group().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn late_joiner_never_goes_back_before_its_start() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        // Groups arrived out of order: 1, 2, 0.
        for seq in [1, 2, 0] {
            write_group(&track, seq, 1);
        }
        let mut consumer = track.consume();
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 2);
        write_group(&track, 3, 1);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 3);
    }

    #[tokio::test]
    async fn start_at_replays_cached() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        for seq in 0..3 {
            write_group(&track, seq, 10);
        }
        let mut consumer = track.consume();
        consumer.start_at(1);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 1);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 2);
    }

    #[tokio::test]
    async fn late_arrivals_are_delivered_once_in_arrival_order() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        let mut consumer = track.consume();
        write_group(&track, 5, 1);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 5);
        write_group(&track, 4, 1);
        write_group(&track, 6, 1);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 4);
        assert_eq!(consumer.next_group().await.unwrap().unwrap().sequence(), 6);
        track.finish();
        assert!(consumer.next_group().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicate_sequence_is_refused() {
        let track = TrackProducer::new("t", Cache::default());
        let _g = track.create_group(1).unwrap();
        assert_eq!(track.create_group(1).unwrap_err(), Error::Duplicate(1));
    }

    /// What one group of one `bytes`-byte frame holds against the budget.
    fn held(bytes: u64) -> u64 {
        bytes + crate::model::group::FRAME_OVERHEAD
    }

    /// Wait out the sweep interval, so the next write may sweep.
    fn after_interval() {
        std::thread::sleep(crate::model::cache::RECLAIM_INTERVAL + Duration::from_millis(1));
    }

    #[tokio::test]
    async fn byte_budget_evicts_old_groups_but_keeps_latest() {
        let cache = Cache::new(CacheConfig {
            capacity: Some(3 * held(100)),
            duration: None,
        });
        let track = TrackProducer::with_info("t", TrackInfo::default(), cache.clone());
        for seq in 0..10 {
            after_interval();
            write_group(&track, seq, 100);
        }
        assert!(
            cache.stats().bytes() <= 3 * held(100),
            "{}",
            cache.stats().bytes()
        );
        assert!(track.get_group(9).is_some());
        assert!(track.get_group(0).is_none());
        assert!(cache.stats().evicted_groups() >= 6);
        assert_eq!(
            cache.stats().aborted_groups(),
            0,
            "nothing was still being written"
        );
        drop(track);
        assert_eq!(cache.stats().bytes(), 0, "everything is released with the track");
    }

    #[tokio::test]
    async fn the_budget_is_kept_across_tracks_and_a_growing_latest_group_is_ended() {
        let cache = Cache::new(CacheConfig {
            capacity: Some(10_000),
            duration: None,
        });
        let quiet = TrackProducer::with_info("quiet", TrackInfo::default(), cache.clone());
        write_group(&quiet, 0, 1000);
        write_group(&quiet, 1, 1000);
        let mut reader = quiet.consume();
        let kept = reader.next_group().await.unwrap().unwrap();
        // A track whose only group never ends grows past the budget: no new group
        // arrives on it, yet it is held to the budget, largest first.
        let noisy = TrackProducer::with_info("noisy", TrackInfo::default(), cache.clone());
        let mut endless = noisy.create_group(0).unwrap();
        let mut viewer = noisy.consume().next_group().await.unwrap().unwrap();
        let mut written = 0;
        while !endless.is_closed() {
            after_interval();
            endless.write(Frame {
                timestamp: 0,
                payload: Bytes::from(vec![0; 1000]),
            });
            written += 1;
            assert!(written < 100, "never ended");
        }
        assert_eq!(endless.closed().await, Err(Error::Evicted));
        assert_eq!(cache.stats().aborted_groups(), 1);
        // First went the other track's superseded group; its latest (finished) one too,
        // since the budget could not be met otherwise; a reader holding it keeps it whole.
        assert!(quiet.get_group(0).is_none());
        let mut kept = kept;
        assert_eq!(kept.next_frame().await.unwrap().unwrap().payload.len(), 1000);
        assert!(kept.next_frame().await.unwrap().is_none());
        // The endless group's reader keeps what was written, then sees why it ended.
        let mut frames = 0;
        let end = loop {
            match viewer.next_frame().await {
                Ok(Some(_)) => frames += 1,
                other => break other,
            }
        };
        assert_eq!(end, Err(Error::Evicted));
        assert_eq!(frames, written);
        // Once its writer and reader are gone, only what a reader still holds is left.
        drop((endless, viewer));
        assert_eq!(cache.stats().bytes(), held(1000));
        drop(kept);
        assert_eq!(cache.stats().bytes(), 0);
    }

    #[tokio::test]
    async fn a_sweep_ages_out_groups_of_a_track_that_receives_nothing_new() {
        let cache = Cache::new(CacheConfig {
            capacity: None,
            duration: Some(Duration::from_millis(1)),
        });
        let track = TrackProducer::with_info("t", TrackInfo::default(), cache.clone());
        write_group(&track, 0, 10);
        write_group(&track, 1, 10);
        let mut growing = track.create_group(2).unwrap();
        growing.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(b"x"),
        });
        write_group(&track, 3, 10);
        std::thread::sleep(Duration::from_millis(5));
        cache.sweep();
        assert!(track.get_group(0).is_none() && track.get_group(1).is_none());
        assert!(track.get_group(2).is_none(), "out of the cache...");
        assert!(!growing.is_closed(), "...but not ended by age alone");
        assert!(track.get_group(3).is_some(), "the latest stays");
        assert_eq!(cache.stats().evicted_groups(), 2);
    }

    #[tokio::test]
    async fn age_limit_evicts() {
        let cache = Cache::new(CacheConfig {
            capacity: None,
            duration: Some(Duration::ZERO),
        });
        let track = TrackProducer::with_info("t", TrackInfo::default(), cache);
        write_group(&track, 0, 1);
        std::thread::sleep(Duration::from_millis(2));
        write_group(&track, 1, 1);
        assert!(track.get_group(0).is_none());
        assert!(track.get_group(1).is_some());
    }

    #[tokio::test]
    async fn unused_resolves_when_consumers_leave() {
        let track = TrackProducer::new("t", Cache::default());
        let consumer = track.consume();
        assert_eq!(track.consumers(), 1);
        drop(consumer);
        tokio::time::timeout(Duration::from_secs(1), track.unused())
            .await
            .unwrap();
    }
}
