//! The origin: the table of announced broadcasts by path, the thing a relay
//! serves from.
//!
//! Publishers (local producers or remote sessions) attach to a path with
//! [`Origin::publish`]. Consumers never see a publisher's broadcast directly:
//! each path has one origin-owned broadcast whose tracks are piped from the
//! current best publisher: lowest route cost, then fewest hops, then a
//! deterministic hash of the path and hop list (so every relay of a cluster
//! picks the same route and never flaps), then the most recent. That gives three
//! properties a relay needs:
//! - one upstream subscription per track, however many viewers;
//! - when the publisher changes (failover, reconnect), live tracks are re-bound
//!   to the new one and viewers keep reading the same track;
//! - when the last publisher vanishes abruptly the path stays announced for
//!   `linger`, so a reconnecting publisher resumes without viewers noticing.
//!
//! The origin spawns one task per path and one per live track on the current
//! tokio runtime; they end with the path or track.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use moq_proto::{Hops, Path};
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};

use super::{
    broadcast::{BroadcastConsumer, BroadcastProducer},
    cache::Cache,
    group::{GroupConsumer, Splicer},
    track::{TrackConsumer, TrackProducer},
};
use crate::Error;

#[derive(Debug, Clone)]
struct Source {
    id: u64,
    broadcast: BroadcastConsumer,
    hops: Hops,
    cost: u64,
    /// Deterministic tie-break between routes of equal cost and length.
    rank: u64,
}

/// FNV-1a over the path and the hop ids: stable across processes and
/// machines, unlike the standard library's randomly keyed hasher.
fn rank(path: &Path, hops: &Hops) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(path.as_str().as_bytes());
    for id in hops.ids() {
        feed(&id.to_be_bytes());
    }
    hash
}

#[derive(Debug)]
struct Entry {
    relay: BroadcastConsumer,
    sources: Vec<Source>,
    /// The source tracks are currently piped from; `None` while lingering.
    active: watch::Sender<Option<Source>>,
    /// Bumped whenever the path is (re)announced, so lingering timers can tell
    /// whether they are stale.
    generation: u64,
}

impl Entry {
    fn best(&self) -> Option<Source> {
        self.sources
            .iter()
            .min_by_key(|s| (s.cost, s.hops.len(), s.rank, std::cmp::Reverse(s.id)))
            .cloned()
    }
}

/// The origin's broadcasts by path, and who watches for announcements.
#[derive(Debug, Default)]
struct PathTable {
    entries: BTreeMap<Path, Entry>,
    watchers: Vec<Weak<Watcher>>,
    next_id: u64,
}

/// What the clones of an [`Origin`] share.
#[derive(Debug)]
struct OriginState {
    paths: Mutex<PathTable>,
    cache: Cache,
    linger: Duration,
}

impl OriginState {
    fn lock(&self) -> MutexGuard<'_, PathTable> {
        self.paths.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The broadcast table. Cheap to clone; clones share the table.
#[derive(Debug, Clone)]
pub struct Origin {
    shared: Arc<OriginState>,
}

impl Default for Origin {
    fn default() -> Self {
        Self::new(Cache::default(), Duration::ZERO)
    }
}

impl Origin {
    /// An empty origin whose tracks share `cache`, keeping abruptly orphaned
    /// paths announced for `linger`.
    pub fn new(cache: Cache, linger: Duration) -> Self {
        Self {
            shared: Arc::new(OriginState {
                paths: Mutex::default(),
                cache,
                linger,
            }),
        }
    }

    /// The cache every track of this origin uses.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// Attach a publisher's broadcast at `path`. The path is announced while
    /// any publication for it lives. Call [`Publication::finish`] for a clean
    /// end (unannounced at once); dropping it counts as abrupt (lingers).
    pub fn publish(&self, path: Path, broadcast: BroadcastConsumer, hops: Hops) -> Publication {
        self.publish_route(path, broadcast, hops, 0)
    }

    /// [`publish`](Self::publish) with a route cost: when several publishers
    /// offer the same path, the cheapest route is used (then the shortest).
    pub fn publish_route(
        &self,
        path: Path,
        broadcast: BroadcastConsumer,
        hops: Hops,
        cost: u64,
    ) -> Publication {
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        let rank = rank(&path, &hops);
        let source = Source {
            id,
            broadcast,
            hops,
            cost,
            rank,
        };
        match state.entries.get_mut(&path) {
            Some(entry) => {
                entry.sources.push(source);
                entry.generation = entry.generation.wrapping_add(1);
                let best = entry.best();
                let changed = entry.active.send_if_modified(|a| {
                    let same = a.as_ref().map(|s| s.id) == best.as_ref().map(|s| s.id);
                    *a = best.clone();
                    !same
                });
                if changed && let Some(best) = best {
                    let relay = entry.relay.clone();
                    notify(&mut state, &path, Some((relay, best.route())));
                }
            }
            None => {
                let relay = BroadcastProducer::dynamic(self.shared.cache.clone());
                let relay_consumer = relay.consume();
                let (active, active_rx) = watch::channel(Some(source.clone()));
                tokio::spawn(route(relay, active_rx));
                state.entries.insert(
                    path.clone(),
                    Entry {
                        relay: relay_consumer.clone(),
                        sources: vec![source.clone()],
                        active,
                        generation: 0,
                    },
                );
                notify(&mut state, &path, Some((relay_consumer, source.route())));
            }
        }
        Publication {
            origin: Arc::downgrade(&self.shared),
            path,
            id,
            graceful: false,
        }
    }

    /// The broadcast announced at `path`, if any.
    pub fn consume(&self, path: &Path) -> Option<BroadcastConsumer> {
        self.shared.lock().entries.get(path).map(|e| e.relay.clone())
    }

    /// The paths currently announced.
    pub fn paths(&self) -> Vec<Path> {
        self.shared.lock().entries.keys().cloned().collect()
    }

    /// Wait up to `timeout` for `path` to be announced.
    pub async fn wait_for(&self, path: &Path, timeout: Duration) -> Option<BroadcastConsumer> {
        let mut announced = self.announced(path.clone());
        let wait = async {
            while let Some(event) = announced.next().await {
                if event.suffix.is_empty()
                    && let Some(b) = event.broadcast
                {
                    return Some(b);
                }
            }
            None
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Follow the broadcasts announced under `prefix` (segment-aware): first
    /// the ones active now, then every change.
    pub fn announced(&self, prefix: Path) -> Announced {
        let watcher = Arc::new(Watcher {
            prefix: prefix.clone(),
            pending: Mutex::default(),
            notify: Notify::new(),
        });
        let mut state = self.shared.lock();
        state.watchers.retain(|w| w.strong_count() > 0);
        let initial: Vec<_> = state
            .entries
            .iter()
            .filter(|(path, _)| path.has_prefix(&prefix))
            .filter_map(|(path, e)| {
                let route = e.active.borrow().as_ref().map(Source::route)?;
                Some((path.clone(), Some((e.relay.clone(), route))))
            })
            .collect();
        let count = initial.len();
        {
            let mut pending = watcher.lock();
            for (path, change) in initial {
                pending.changes.insert(path, change);
            }
        }
        state.watchers.push(Arc::downgrade(&watcher));
        Announced {
            watcher,
            seen: HashSet::new(),
            initial: count,
            _origin: self.shared.clone(),
        }
    }
}

impl Source {
    fn route(&self) -> (Hops, u64) {
        (self.hops.clone(), self.cost)
    }
}

/// What watchers learn about a path: its broadcast and the active route, or
/// `None` once it is gone.
type Change = Option<(BroadcastConsumer, (Hops, u64))>;

fn notify(state: &mut PathTable, path: &Path, change: Change) {
    state.watchers.retain(|w| {
        let Some(watcher) = w.upgrade() else {
            return false;
        };
        if path.has_prefix(&watcher.prefix) {
            watcher.lock().changes.insert(path.clone(), change.clone());
            watcher.notify.notify_one();
        }
        true
    });
}

/// Keeps a publisher attached to a path. See [`Origin::publish`].
#[derive(Debug)]
pub struct Publication {
    origin: Weak<OriginState>,
    path: Path,
    id: u64,
    graceful: bool,
}

impl Publication {
    /// The announced path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Detach cleanly: if this was the last publisher, the path is unannounced now.
    pub fn finish(mut self) {
        self.graceful = true;
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        let Some(shared) = self.origin.upgrade() else {
            return;
        };
        let mut state = shared.lock();
        let Some(entry) = state.entries.get_mut(&self.path) else {
            return;
        };
        entry.sources.retain(|s| s.id != self.id);
        let best = entry.best();
        if best.is_some() || (!self.graceful && !shared.linger.is_zero()) {
            let lingering = best.is_none();
            let generation = entry.generation;
            let changed = entry.active.send_if_modified(|a| {
                let same = a.as_ref().map(|s| s.id) == best.as_ref().map(|s| s.id);
                *a = best.clone();
                !same
            });
            let relay = entry.relay.clone();
            if changed && let Some(best) = best {
                notify(&mut state, &self.path, Some((relay, best.route())));
            }
            if lingering {
                let origin = self.origin.clone();
                let path = self.path.clone();
                let linger = shared.linger;
                tokio::spawn(async move {
                    tokio::time::sleep(linger).await;
                    if let Some(shared) = origin.upgrade() {
                        let mut state = shared.lock();
                        let expired = state
                            .entries
                            .get(&path)
                            .is_some_and(|e| e.sources.is_empty() && e.generation == generation);
                        if expired {
                            remove(&mut state, &path);
                        }
                    }
                });
            }
            return;
        }
        remove(&mut state, &self.path);
    }
}

fn remove(state: &mut PathTable, path: &Path) {
    // Dropping the entry drops `active`, which ends the router and its pipes.
    if state.entries.remove(path).is_some() {
        notify(state, path, None);
    }
}

/// The per-path router: hands each requested track to a pipe task.
async fn route(mut relay: BroadcastProducer, active: watch::Receiver<Option<Source>>) {
    let mut closed = active.clone();
    let handle = relay.consume();
    loop {
        tokio::select! {
            request = relay.requested_track() => {
                let Some(track) = request else { break };
                tokio::spawn(pipe(track, active.clone(), handle.clone()));
            }
            result = closed.changed() => {
                if result.is_err() {
                    break;
                }
            }
        }
    }
    relay.close(Ok(()));
}

/// Fill a relay track from whichever source is active, re-binding when the
/// active source changes, until nobody reads the track or the path is gone.
async fn pipe(track: TrackProducer, mut active: watch::Receiver<Option<Source>>, relay: BroadcastConsumer) {
    // Outlives each binding: a group cut off by a dying route continues from the next
    // route's copy. Dropped with the pipe, so readers see the cut when nothing is left.
    let mut splices = Splices::default();
    loop {
        let source = active.borrow_and_update().clone();
        let Some(source) = source else {
            // Lingering: keep the track open until a publisher returns.
            tokio::select! {
                changed = active.changed() => if changed.is_err() { return track.finish() },
                _ = relay.retired(&track) => return,
            }
            continue;
        };
        // A re-bound track resumes where this one stands, so nothing between the old
        // source's last group and the new source's latest is skipped.
        let upstream = match source.broadcast.subscribe_from(track.name(), track.resume_from()) {
            Ok(upstream) => upstream,
            Err(err) => return track.abort(err),
        };
        let watching = active.clone();
        let forwarding = forward(&track, upstream, &source, &watching, &mut splices);
        tokio::pin!(forwarding);
        tokio::select! {
            result = &mut forwarding => match result {
                // The publisher ended the track.
                Ok(()) => return track.close(Ok(())),
                // The publisher went away, or its relay is draining: wait for the next
                // one (linger, failover). Our subscribers keep their track.
                Err(err) if source.broadcast.is_closed() || going_away(&err) => {
                    if active.borrow().as_ref().map(|s| s.id) == Some(source.id) {
                        tokio::select! {
                            changed = active.changed() => if changed.is_err() { return track.close(Ok(())) },
                            _ = relay.retired(&track) => return,
                        }
                    }
                }
                // The publisher refused the subscription: tell our subscribers, and
                // forget the track so a later request asks again.
                Err(err @ (Error::NotFound | Error::Unauthorized(_) | Error::Reset(_) | Error::Protocol(_))) => {
                    return track.close(Err(err));
                }
                // The source lives but its track went away under us (it was
                // being retired as we subscribed): subscribe again.
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(RESUBSCRIBE) => {}
                        changed = active.changed() => if changed.is_err() { return track.close(Ok(())) },
                        _ = relay.retired(&track) => return,
                    }
                }
            },
            changed = active.changed() => if changed.is_err() {
                // The path was unannounced. Its last groups may still be arriving (the
                // end of an announcement and the groups travel separately): forward them
                // until the publisher's track ends, for a while, then end ours.
                let _ = tokio::time::timeout(END_GRACE, &mut forwarding).await;
                return track.close(Ok(()));
            },
            _ = relay.retired(&track) => return,
        }
    }
}

/// How long the last groups of something that ended may still arrive. An end (of an
/// announcement, of a subscription) and the groups before it travel on different
/// streams, so the end often arrives first: a track of an unannounced path goes on
/// forwarding for this long, and a session lets the subscriptions of an ended broadcast,
/// or one whose end counted a group not yet here, run this long before it ends them.
pub(crate) const END_GRACE: Duration = Duration::from_secs(2);

/// Abort `task` (the subscriptions of a broadcast its peer ended) once [`END_GRACE`] has
/// passed, so the groups still on their way arrive; at once when no runtime runs (one
/// shutting down).
pub(crate) fn abort_after_grace(task: tokio::task::AbortHandle) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                tokio::time::sleep(END_GRACE).await;
                task.abort();
            });
        }
        Err(_) => task.abort(),
    }
}

/// Whether a group ended with `err` because the way it came went away (the session or
/// the relay that delivered it died, drained or cancelled it), rather than for what it is.
fn route_lost(err: &Error) -> bool {
    let lost = [
        Error::Cancelled,
        Error::Timeout,
        Error::Transport(String::new()),
        Error::GoingAway,
    ];
    match err {
        Error::Cancelled | Error::Timeout | Error::Transport(_) | Error::GoingAway => true,
        Error::Reset(code) => lost.iter().any(|e| e.stream_code() == *code),
        _ => false,
    }
}

/// Whether `err` ended a subscription because the relay serving it is going away (a
/// drain): a route change, not the track's end.
fn going_away(err: &Error) -> bool {
    match err {
        Error::GoingAway => true,
        Error::Reset(code) => *code == Error::GoingAway.stream_code(),
        _ => false,
    }
}

/// Pause before subscribing again to a live source whose track ended under us.
const RESUBSCRIBE: Duration = Duration::from_millis(50);

/// How long the readers of a cut-off group wait for another route's copy once that route
/// delivers newer groups without it; then the group ends cleanly where they stand.
const SPLICE_GRACE: Duration = Duration::from_millis(500);

/// The route a guarded group came by, and the origin's choice of route.
#[derive(Debug)]
struct Route {
    id: u64,
    broadcast: BroadcastConsumer,
    active: watch::Receiver<Option<Source>>,
}

/// A relay track's groups in flight, each guarded so that a route dying under it is
/// invisible downstream: its readers wait, then continue from the next route's copy of
/// the same group at the frame where they stood (see [`GroupConsumer::spliceable`]).
#[derive(Debug)]
struct Splices {
    /// Where copies from other routes go, by the sequence of the group they stand in for.
    copies: Arc<Mutex<HashMap<u64, watch::Sender<Option<GroupConsumer>>>>>,
    /// The source of the newest group inserted, and its sequence.
    newest: watch::Sender<(u64, u64)>,
    guards: JoinSet<()>,
}

impl Default for Splices {
    fn default() -> Self {
        Self {
            copies: Arc::default(),
            newest: watch::channel((u64::MAX, 0)).0,
            guards: JoinSet::new(),
        }
    }
}

impl Splices {
    /// Hand `group` to the guard of a group with the same sequence still in flight or cut
    /// off; whether there was one (then `group` is not a new group of the track).
    fn offer(&self, group: &GroupConsumer) -> bool {
        let copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        match copies.get(&group.sequence()) {
            Some(slot) => {
                slot.send_if_modified(|copy| {
                    let first = copy.is_none();
                    copy.get_or_insert_with(|| group.clone());
                    first
                });
                true
            }
            None => false,
        }
    }

    /// Guard `group` (as taken from `source`, while `active` is the route in use) until
    /// it ends; `splicer` decides for the readers of the copy the track holds.
    fn guard(
        &mut self,
        group: GroupConsumer,
        splicer: Splicer,
        source: &Source,
        active: &watch::Receiver<Option<Source>>,
    ) {
        let route = Route {
            id: source.id,
            broadcast: source.broadcast.clone(),
            active: active.clone(),
        };
        let source = source.id;
        while self.guards.try_join_next().is_some() {}
        let sequence = group.sequence();
        let (slot, copy) = watch::channel(None);
        self.copies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sequence, slot);
        self.newest.send_if_modified(|newest| {
            let newer = newest.0 != source || sequence > newest.1;
            if newer {
                *newest = (source, sequence);
            }
            newer
        });
        let copies = self.copies.clone();
        let newest = self.newest.subscribe();
        self.guards.spawn(async move {
            guard(group, splicer, copy, newest, route).await;
            copies.lock().unwrap_or_else(|e| e.into_inner()).remove(&sequence);
        });
    }
}

/// Wait for `group` to end. Cut off with its route (see [`route_lost`]),
/// its readers continue from the first copy another route offers, or end cleanly once
/// another route delivers newer groups without one ([`SPLICE_GRACE`]).
async fn guard(
    group: GroupConsumer,
    splicer: Splicer,
    mut copy: watch::Receiver<Option<GroupConsumer>>,
    mut newest: watch::Receiver<(u64, u64)>,
    mut route: Route,
) {
    let sequence = group.sequence();
    let source = route.id;
    let outcome = tokio::select! {
        outcome = group.outcome() => outcome,
        () = superseded(&group, route.active.clone(), newest.clone(), source) => {
            // Replaced by a route that delivers newer groups while this one stands still:
            // a publisher or relay gone silent whose session has not timed out yet. Its
            // readers continue from another route's copy if one came, else the group ends
            // where they stand, so a viewer that reads groups in order moves on now.
            let offered = copy.borrow().clone();
            match offered {
                Some(copy) => splicer.continue_with(copy),
                None => splicer.finish(),
            }
            group.cut_off(Error::Cancelled);
            return;
        }
    };
    match outcome {
        Err(err) if route_lost(&err) => {}
        // Finished, or ended for what it is (too large, evicted, malformed): no copy
        // would differ, so its readers see how it ended.
        _ => return,
    }
    // A route that dies takes its broadcast with it (or is replaced) at once; one that
    // lives on cut this group itself, and its readers see that.
    let gone = async {
        tokio::select! {
            _ = route.broadcast.closed() => {}
            _ = route.active.wait_for(|a| a.as_ref().map(|s| s.id) != Some(source)) => {}
        }
    };
    if tokio::time::timeout(SPLICE_GRACE, gone).await.is_err() {
        return;
    }
    let offered = async {
        let offered = copy
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|copy| copy.clone());
        match offered {
            Some(copy) => copy,
            None => std::future::pending().await,
        }
    };
    let moved_on = async {
        if newest
            .wait_for(|&(from, newer)| from != source && newer > sequence)
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SPLICE_GRACE).await;
    };
    tokio::select! {
        biased;
        copy = offered => splicer.continue_with(copy),
        () = moved_on => splicer.finish(),
    }
}

/// Resolves once `group`'s route is no longer the active one, another route has delivered
/// a newer group, and `group` has had no new frame for [`SPLICE_GRACE`].
async fn superseded(
    group: &GroupConsumer,
    mut active: watch::Receiver<Option<Source>>,
    mut newest: watch::Receiver<(u64, u64)>,
    source: u64,
) {
    let sequence = group.sequence();
    let replaced = active
        .wait_for(|a| a.as_ref().map(|s| s.id) != Some(source))
        .await
        .is_ok()
        && newest
            .wait_for(|&(from, newer)| from != source && newer > sequence)
            .await
            .is_ok();
    if !replaced {
        return std::future::pending().await;
    }
    loop {
        let frames = group.frames();
        tokio::time::sleep(SPLICE_GRACE).await;
        if group.frames() == frames {
            return;
        }
    }
}

async fn forward(
    track: &TrackProducer,
    mut upstream: TrackConsumer,
    source: &Source,
    active: &watch::Receiver<Option<Source>>,
    splices: &mut Splices,
) -> Result<(), Error> {
    if track.info().is_none() {
        track.set_info(upstream.info().await?);
    }
    while let Some(group) = upstream.next_group().await? {
        // Another route's copy of a group in flight or cut off: it stands in for the
        // rest of that group if need be, and is not a new group.
        if splices.offer(&group) {
            continue;
        }
        let (reader, splicer) = group.spliceable();
        match track.insert_group(reader) {
            Ok(()) => splices.guard(group, splicer, source, active),
            // A re-bound publisher may repeat a sequence we still cache.
            Err(Error::Duplicate(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[derive(Debug)]
struct Watcher {
    prefix: Path,
    pending: Mutex<Pending>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    /// Coalesced: only the latest state of each path is kept, so a slow
    /// reader holds at most one entry per path.
    changes: BTreeMap<Path, Change>,
}

impl Watcher {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One change under a prefix.
#[derive(Debug, Clone)]
pub struct OriginEvent {
    /// The path relative to the watched prefix.
    pub suffix: Path,
    /// The broadcast, or `None` when it was unannounced.
    pub broadcast: Option<BroadcastConsumer>,
    /// Relays the broadcast crossed (on the active route).
    pub hops: Hops,
    /// The active route's cost (0 for a local publisher).
    pub cost: u64,
}

/// A stream of announcement changes under a prefix. See [`Origin::announced`].
#[derive(Debug)]
pub struct Announced {
    watcher: Arc<Watcher>,
    seen: HashSet<Path>,
    initial: usize,
    _origin: Arc<OriginState>,
}

impl Announced {
    /// How many broadcasts were active when watching started (they are the
    /// first events).
    pub fn initial(&self) -> usize {
        self.initial
    }

    /// The next change without waiting, if one is pending.
    pub fn try_next(&mut self) -> Option<OriginEvent> {
        loop {
            let (path, change) = self.watcher.lock().changes.pop_first()?;
            let suffix = match path.strip_prefix(&self.watcher.prefix).map(Path::new) {
                Some(Ok(suffix)) => suffix,
                _ => continue,
            };
            match change {
                Some((broadcast, (hops, cost))) => {
                    self.seen.insert(path);
                    return Some(OriginEvent {
                        suffix,
                        broadcast: Some(broadcast),
                        hops,
                        cost,
                    });
                }
                // Announced and gone before we looked: nothing to report.
                None if !self.seen.remove(&path) => continue,
                None => {
                    return Some(OriginEvent {
                        suffix,
                        broadcast: None,
                        hops: Hops::new(),
                        cost: 0,
                    });
                }
            }
        }
    }

    /// The next change. Never ends while the origin lives.
    pub async fn next(&mut self) -> Option<OriginEvent> {
        loop {
            let watcher = self.watcher.clone();
            let notified = watcher.notify.notified();
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::model::{Frame, GroupProducer, TrackInfo};

    fn path(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    fn publisher() -> (BroadcastProducer, TrackProducer) {
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "t",
            TrackInfo::default(),
            Cache::default(),
        ));
        (broadcast, track)
    }

    fn write(track: &TrackProducer, seq: u64) {
        let mut g = track.create_group(seq).unwrap();
        g.write(Frame {
            timestamp: seq,
            payload: Bytes::from(vec![seq as u8]),
        });
        g.finish();
    }

    async fn timeout<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(2), f).await.unwrap()
    }

    /// Wait (at most 2 s) until `track` has `n` readers: the origin's pipe subscribed.
    async fn read_by(track: &TrackProducer, n: usize) {
        timeout(async {
            while track.consumers() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    #[tokio::test]
    async fn announce_and_unannounce() {
        let origin = Origin::default();
        let mut announced = origin.announced(path("room"));
        let (broadcast, _track) = publisher();
        let publication = origin.publish(path("room/a"), broadcast.consume(), Hops::new());
        let _other = origin.publish(path("roomy/b"), broadcast.consume(), Hops::new());
        let event = timeout(announced.next()).await.unwrap();
        assert_eq!(event.suffix, path("a"));
        assert!(event.broadcast.is_some());
        publication.finish();
        let event = timeout(announced.next()).await.unwrap();
        assert_eq!((event.suffix, event.broadcast), (path("a"), None));
        assert!(announced.try_next().is_none(), "roomy/b is not under room");
    }

    #[tokio::test]
    async fn initial_set_comes_first() {
        let origin = Origin::default();
        let (broadcast, _track) = publisher();
        let _a = origin.publish(path("x/1"), broadcast.consume(), Hops::new());
        let _b = origin.publish(path("x/2"), broadcast.consume(), Hops::new());
        let mut announced = origin.announced(path(""));
        assert_eq!(announced.initial(), 2);
        assert!(announced.try_next().is_some());
        assert!(announced.try_next().is_some());
        assert!(announced.try_next().is_none());
    }

    #[tokio::test]
    async fn viewers_share_one_upstream_track() {
        let origin = Origin::default();
        let (broadcast, track) = publisher();
        let _p = origin.publish(path("b"), broadcast.consume(), Hops::new());
        let relay = origin.consume(&path("b")).unwrap();
        let mut viewers: Vec<_> = (0..5).map(|_| relay.subscribe("t").unwrap()).collect();
        write(&track, 0);
        for viewer in &mut viewers {
            let group = timeout(viewer.next_group()).await.unwrap().unwrap();
            assert_eq!(group.sequence(), 0);
        }
        // One consumer of the publisher's track: the origin's pipe.
        assert_eq!(track.consumers(), 1);
    }

    #[tokio::test]
    async fn reconnecting_publisher_is_seamless_within_linger() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let mut announced = origin.announced(path(""));
        let (broadcast, track) = publisher();
        let p1 = origin.publish(path("b"), broadcast.consume(), Hops::new());
        assert!(timeout(announced.next()).await.unwrap().broadcast.is_some());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        write(&track, 0);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 0);

        // The publisher vanishes abruptly, then comes back with a new broadcast.
        drop(p1);
        drop(track);
        drop(broadcast);
        let (broadcast, track) = publisher();
        let _p2 = origin.publish(path("b"), broadcast.consume(), Hops::new());
        // The viewer's track keeps going with the new publisher's groups.
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&track, 1);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 1);
        // Watchers never saw the path go away.
        while let Some(event) = announced.try_next() {
            assert!(event.broadcast.is_some());
        }
    }

    /// What keeps both publishers of [`replaced_mid_group`] and its viewer's track alive
    /// (with no reader left, the relay track and its guards go away).
    type Publishers = (
        Publication,
        Publication,
        BroadcastProducer,
        TrackProducer,
        BroadcastProducer,
        TrackProducer,
        TrackConsumer,
    );

    /// A viewer has read the one frame of group 0 that the first publisher of `b` wrote (the
    /// group stays open), then a second publisher of `b` takes over and moves on to group
    /// 1, which the viewer sees. Returns the viewer's group 0 and the first publisher's.
    async fn replaced_mid_group(origin: &Origin) -> (GroupConsumer, GroupProducer, Publishers) {
        let (broadcast, track) = publisher();
        let p1 = origin.publish(path("b"), broadcast.consume(), Hops::new());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        let mut first = track.create_group(0).unwrap();
        first.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(b"a"),
        });
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        assert!(timeout(group.next_frame()).await.unwrap().is_some());
        let (broadcast2, track2) = publisher();
        let p2 = origin.publish(path("b"), broadcast2.consume(), Hops::new());
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&track2, 1);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 1);
        (
            group,
            first,
            (p1, p2, broadcast, track, broadcast2, track2, viewer),
        )
    }

    #[tokio::test]
    async fn a_silent_publishers_group_in_flight_ends_once_a_new_publisher_moves_on() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        // The first publisher went silent without ending anything (its session has not
        // timed out): group 0 gets nothing more.
        let (mut group, _stalled, _publishers) = replaced_mid_group(&origin).await;
        // The silent group ends cleanly where the reader stood, within the grace.
        let started = std::time::Instant::now();
        assert_eq!(timeout(group.next_frame()).await.unwrap(), None);
        assert!(
            started.elapsed() < SPLICE_GRACE * 3,
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_live_route_that_keeps_delivering_is_not_cut_when_replaced() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let (mut group, mut live, _publishers) = replaced_mid_group(&origin).await;
        // The old group keeps getting frames faster than the grace: it is read to its end.
        for i in 1..8u8 {
            tokio::time::sleep(SPLICE_GRACE / 4).await;
            live.write(Frame {
                timestamp: i.into(),
                payload: Bytes::from(vec![i]),
            });
        }
        live.finish();
        let mut got = 1;
        while let Some(_frame) = timeout(group.next_frame()).await.unwrap() {
            got += 1;
        }
        assert_eq!(got, 8, "every frame of the live group");
    }

    #[tokio::test(start_paused = true)]
    async fn orphaned_path_is_unannounced_after_linger() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let (broadcast, _track) = publisher();
        let p = origin.publish(path("b"), broadcast.consume(), Hops::new());
        let mut announced = origin.announced(path(""));
        assert!(announced.next().await.unwrap().broadcast.is_some());
        drop(p);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(origin.consume(&path("b")).is_some());
        assert!(announced.try_next().is_none());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(origin.consume(&path("b")).is_none());
        assert!(announced.next().await.unwrap().broadcast.is_none());
    }

    #[tokio::test]
    async fn fewer_hops_win() {
        let origin = Origin::default();
        let (far, far_track) = publisher();
        let (near, near_track) = publisher();
        let _a = origin.publish(path("b"), far.consume(), Hops::from_ids(vec![1, 2]).unwrap());
        let _b = origin.publish(path("b"), near.consume(), Hops::from_ids(vec![3]).unwrap());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&far_track, 7);
        write(&near_track, 8);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 8);
    }

    #[tokio::test]
    async fn cheaper_route_beats_shorter_route() {
        let origin = Origin::default();
        let (short, short_track) = publisher();
        let (cheap, cheap_track) = publisher();
        let _a = origin.publish_route(path("b"), short.consume(), Hops::from_ids(vec![1]).unwrap(), 10);
        let _b = origin.publish_route(path("b"), cheap.consume(), Hops::from_ids(vec![2, 3]).unwrap(), 2);
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&short_track, 7);
        write(&cheap_track, 8);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 8);
        let event = origin.announced(path("")).try_next().unwrap();
        assert_eq!((event.hops.ids(), event.cost), (&[2u64, 3][..], 2));
    }

    /// Two relays that learn the same two equal routes in opposite orders
    /// must pick the same one, or a cluster flaps.
    #[tokio::test]
    async fn equal_routes_are_chosen_the_same_way_in_any_order() {
        let chosen = |first: Vec<u64>, second: Vec<u64>| {
            let origin = Origin::default();
            let (a, _ta) = publisher();
            let (b, _tb) = publisher();
            let _p1 = origin.publish_route(path("x/y"), a.consume(), Hops::from_ids(first).unwrap(), 1);
            let _p2 = origin.publish_route(path("x/y"), b.consume(), Hops::from_ids(second).unwrap(), 1);
            let event = origin.announced(path("")).try_next().unwrap();
            event.hops.ids().to_vec()
        };
        let one = chosen(vec![10, 11], vec![20, 21]);
        let two = chosen(vec![20, 21], vec![10, 11]);
        assert_eq!(one, two);
    }

    #[tokio::test]
    async fn failover_to_the_next_route_when_the_active_one_goes() {
        let origin = Origin::default();
        let (active, active_track) = publisher();
        let (standby, standby_track) = publisher();
        let p1 = origin.publish_route(path("b"), active.consume(), Hops::from_ids(vec![1]).unwrap(), 1);
        let _p2 = origin.publish_route(path("b"), standby.consume(), Hops::from_ids(vec![2]).unwrap(), 5);
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&active_track, 1);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 1);
        assert_eq!(
            standby_track.consumers(),
            0,
            "the standby is not read while the active route lives"
        );
        drop(p1);
        drop(active_track);
        drop(active);
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&standby_track, 2);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 2);
    }

    /// A track re-bound to another source (a reconnect, a failover) resumes after the
    /// last group it completed, not at the new source's latest: nothing in between is lost.
    #[tokio::test]
    async fn a_re_bound_track_resumes_after_its_last_complete_group() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let (first, first_track) = publisher();
        let p1 = origin.publish(path("b"), first.consume(), Hops::new());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&first_track, 1).await;
        for seq in [1, 2] {
            write(&first_track, seq);
            assert_eq!(
                timeout(viewer.next_group()).await.unwrap().unwrap().sequence(),
                seq
            );
        }
        // The first source goes; the next one already holds groups 2 to 4.
        drop(p1);
        drop(first_track);
        drop(first);
        let (next, next_track) = publisher();
        for seq in [2, 3, 4] {
            write(&next_track, seq);
        }
        let _p2 = origin.publish(path("b"), next.consume(), Hops::new());
        let got = [
            timeout(viewer.next_group()).await.unwrap().unwrap().sequence(),
            timeout(viewer.next_group()).await.unwrap().unwrap().sequence(),
        ];
        assert_eq!(got, [3, 4], "group 3 is not skipped");
    }

    /// Make before break: the new route becomes active while the old one still delivers a
    /// group; when the old copy is then cut off, its readers continue from the new route's
    /// copy where they stood, and the group is not delivered a second time.
    #[tokio::test]
    async fn a_group_cut_off_after_a_switch_is_replaced_by_the_new_routes_copy() {
        let origin = Origin::default();
        let (old, old_track) = publisher();
        let p1 = origin.publish_route(path("b"), old.consume(), Hops::from_ids(vec![1]).unwrap(), 5);
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&old_track, 1).await;
        let mut live = old_track.create_group(1).unwrap();
        live.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(b"a"),
        });
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, "a");

        // A cheaper route arrives with group 1 complete: it takes over at once.
        let (new, new_track) = publisher();
        let mut copy = new_track.create_group(1).unwrap();
        for text in ["a", "b"] {
            copy.write(Frame {
                timestamp: 0,
                payload: Bytes::from_static(text.as_bytes()),
            });
        }
        copy.finish();
        let _p2 = origin.publish_route(path("b"), new.consume(), Hops::from_ids(vec![2]).unwrap(), 1);
        read_by(&new_track, 1).await;
        // Then the old route closes, cutting its group 1 short.
        live.abort(Error::Cancelled);
        drop(p1);
        assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, "b");
        assert_eq!(timeout(group.next_frame()).await.unwrap(), None);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), viewer.next_group())
                .await
                .is_err(),
            "group 1 is not delivered twice"
        );
    }

    fn text(track_group: &mut crate::model::GroupProducer, text: &'static str) {
        track_group.write(Frame {
            timestamp: 0,
            payload: Bytes::from_static(text.as_bytes()),
        });
    }

    async fn rest(group: &mut GroupConsumer) -> Result<Vec<Bytes>, Error> {
        let mut frames = Vec::new();
        while let Some(frame) = timeout(group.next_frame()).await? {
            frames.push(frame.payload);
        }
        Ok(frames)
    }

    /// The route carrying a group dies mid-group (a relay killed): the viewer's group stays
    /// open, and continues from the next route's copy at the frame where it stood.
    #[tokio::test]
    async fn a_route_dying_mid_group_is_invisible_to_the_viewer() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let (old, old_track) = publisher();
        let (next, next_track) = publisher();
        let p1 = origin.publish_route(path("b"), old.consume(), Hops::from_ids(vec![1]).unwrap(), 1);
        let _p2 = origin.publish_route(path("b"), next.consume(), Hops::from_ids(vec![2]).unwrap(), 5);
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&old_track, 1).await;
        let mut live = old_track.create_group(7).unwrap();
        text(&mut live, "a");
        text(&mut live, "b");
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        for want in ["a", "b"] {
            assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, want);
        }
        // The old route dies under group 7; the next one holds it, further along.
        let mut copy = next_track.create_group(7).unwrap();
        for t in ["a", "b", "c"] {
            text(&mut copy, t);
        }
        live.abort(Error::Transport("idle timeout".into()));
        drop((p1, old_track, old));
        assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, "c");
        text(&mut copy, "d");
        copy.finish();
        assert_eq!(rest(&mut group).await.unwrap(), ["d"]);
        write(&next_track, 8);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 8);
    }

    /// The next route has no copy of the cut group (it starts later): the viewer's group
    /// ends cleanly where it stood, and the next group follows.
    #[tokio::test]
    async fn a_cut_group_no_route_has_ends_cleanly() {
        let origin = Origin::new(Cache::default(), Duration::from_secs(5));
        let (old, old_track) = publisher();
        let (next, next_track) = publisher();
        let p1 = origin.publish_route(path("b"), old.consume(), Hops::from_ids(vec![1]).unwrap(), 1);
        let _p2 = origin.publish_route(path("b"), next.consume(), Hops::from_ids(vec![2]).unwrap(), 5);
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&old_track, 1).await;
        let mut live = old_track.create_group(7).unwrap();
        text(&mut live, "a");
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        live.abort(Error::Transport("idle timeout".into()));
        drop((p1, old_track, old));
        read_by(&next_track, 1).await;
        write(&next_track, 8);
        assert_eq!(timeout(viewer.next_group()).await.unwrap().unwrap().sequence(), 8);
        assert_eq!(rest(&mut group).await.unwrap(), ["a"]);
    }

    /// A publisher that cuts a group itself on a live route (it gave up on it): the
    /// viewer sees that, after a short wait for the route to prove alive.
    #[tokio::test]
    async fn a_group_cancelled_on_a_live_route_is_cancelled_for_the_viewer() {
        let origin = Origin::default();
        let (broadcast, track) = publisher();
        let _p = origin.publish(path("b"), broadcast.consume(), Hops::new());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&track, 1).await;
        let mut live = track.create_group(7).unwrap();
        text(&mut live, "a");
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        live.abort(Error::Cancelled);
        assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, "a");
        assert_eq!(timeout(group.next_frame()).await, Err(Error::Cancelled));
        assert!(group.is_aborted());
    }

    /// No route returns within the linger: the broadcast is gone, and the viewer sees the
    /// group cut off.
    #[tokio::test]
    async fn a_cut_group_fails_when_the_broadcast_is_gone() {
        let origin = Origin::new(Cache::default(), Duration::from_millis(200));
        let (old, old_track) = publisher();
        let p1 = origin.publish(path("b"), old.consume(), Hops::new());
        let mut viewer = origin.consume(&path("b")).unwrap().subscribe("t").unwrap();
        read_by(&old_track, 1).await;
        let mut live = old_track.create_group(7).unwrap();
        text(&mut live, "a");
        let mut group = timeout(viewer.next_group()).await.unwrap().unwrap();
        live.abort(Error::Transport("idle timeout".into()));
        drop((p1, old_track, old));
        assert_eq!(timeout(group.next_frame()).await.unwrap().unwrap().payload, "a");
        assert_eq!(
            timeout(group.next_frame()).await,
            Err(Error::Transport("idle timeout".into()))
        );
    }

    /// A viewer leaving just as another arrives must not hand the newcomer a
    /// track that is being torn down (it would never receive anything).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_arriving_as_the_last_one_leaves_still_receives() {
        let origin = Origin::default();
        let (broadcast, track) = publisher();
        let _p = origin.publish(path("b"), broadcast.consume(), Hops::new());
        let relay = origin.consume(&path("b")).unwrap();
        for seq in 0..100u64 {
            let leaving = relay.subscribe("t").unwrap();
            if seq % 2 == 0 {
                tokio::task::yield_now().await;
            }
            drop(leaving);
            let mut arriving = relay.subscribe("t").unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            write(&track, seq);
            let group = timeout(arriving.next_group()).await.unwrap().unwrap();
            assert!(group.sequence() <= seq);
        }
    }
}
