//! A broadcast: a set of named tracks from one publisher.
//!
//! A broadcast is static (the producer creates every track up front) or
//! dynamic (tracks are requested by name when a consumer first asks, which is
//! how a relay learns to subscribe upstream). Either way there is one track
//! producer per name: however many consumers ask, they share it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::{mpsc, watch};

use super::{
    cache::Cache,
    track::{TrackConsumer, TrackProducer, TrackShared},
};
use crate::{Error, Result};

/// A broadcast's tracks by name, and where requests for unknown ones go.
#[derive(Debug, Default)]
struct TrackTable {
    tracks: HashMap<String, Arc<TrackShared>>,
    requests: Option<mpsc::UnboundedSender<TrackProducer>>,
}

/// What a broadcast's producer and consumers share.
#[derive(Debug)]
struct BroadcastState {
    tracks: Mutex<TrackTable>,
    cache: Cache,
    /// `Some` once the broadcast ended.
    closed: watch::Sender<Option<Result<()>>>,
}

impl BroadcastState {
    fn lock(&self) -> MutexGuard<'_, TrackTable> {
        // A poisoned lock means a panic elsewhere; the map itself is still consistent.
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Owns a broadcast: creates tracks, answers track requests, ends it.
/// Dropping it ends the broadcast with [`Error::Cancelled`].
#[derive(Debug)]
pub struct BroadcastProducer {
    shared: Arc<BroadcastState>,
    requests: Option<mpsc::UnboundedReceiver<TrackProducer>>,
}

impl BroadcastProducer {
    /// A static broadcast: consumers may only read tracks created with
    /// [`create_track`](Self::create_track).
    pub fn new(cache: Cache) -> Self {
        let (closed, _) = watch::channel(None);
        Self {
            shared: Arc::new(BroadcastState {
                tracks: Mutex::default(),
                cache,
                closed,
            }),
            requests: None,
        }
    }

    /// A dynamic broadcast: unknown tracks are requested through
    /// [`requested_track`](Self::requested_track).
    pub fn dynamic(cache: Cache) -> Self {
        let mut this = Self::new(cache);
        let (tx, rx) = mpsc::unbounded_channel();
        this.shared.lock().requests = Some(tx);
        this.requests = Some(rx);
        this
    }

    /// A consumer handle for this broadcast.
    pub fn consume(&self) -> BroadcastConsumer {
        BroadcastConsumer {
            shared: self.shared.clone(),
            closed: self.shared.closed.subscribe(),
        }
    }

    /// Create (or replace) a track.
    pub fn create_track(&self, track: TrackProducer) -> TrackProducer {
        self.shared
            .lock()
            .tracks
            .insert(track.name().to_string(), track.shared().clone());
        track
    }

    /// The next track a consumer asked for that did not exist yet. The caller
    /// fills it (or aborts it with [`Error::NotFound`]). `None` once the
    /// broadcast is static or closed.
    pub async fn requested_track(&mut self) -> Option<TrackProducer> {
        self.requests.as_mut()?.recv().await
    }

    /// Forget a track (once it ended or nobody reads it), so the next request
    /// creates a fresh one. Only removes this exact track.
    pub fn remove_track(&self, track: &TrackProducer) {
        let mut state = self.shared.lock();
        if state
            .tracks
            .get(track.name())
            .is_some_and(|t| Arc::ptr_eq(t, track.shared()))
        {
            state.tracks.remove(track.name());
        }
    }

    /// The cache tracks of this broadcast use.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// End the broadcast.
    pub fn close(&self, result: Result<()>) {
        self.shared.closed.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(result);
            true
        });
        let mut state = self.shared.lock();
        state.requests = None;
        state.tracks.clear();
    }
}

impl Drop for BroadcastProducer {
    fn drop(&mut self) {
        self.close(Err(Error::Cancelled));
    }
}

/// Reads a broadcast: subscribes to tracks by name. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BroadcastConsumer {
    shared: Arc<BroadcastState>,
    closed: watch::Receiver<Option<Result<()>>>,
}

impl PartialEq for BroadcastConsumer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for BroadcastConsumer {}

impl BroadcastConsumer {
    /// Subscribe to a track, starting at its latest group. Every subscriber of
    /// the same name shares one track (and so one upstream subscription).
    pub fn subscribe(&self, name: &str) -> Result<TrackConsumer> {
        self.subscribe_from(name, None)
    }

    /// Subscribe to a track starting at group `start` (the first cached group at or after
    /// it), or at the latest group with `None`. A track requested from a dynamic broadcast
    /// carries `start` to its producer ([`TrackProducer::start`]), which asks its own
    /// source for the same; a track that already exists serves what it has cached.
    pub fn subscribe_from(&self, name: &str, start: Option<u64>) -> Result<TrackConsumer> {
        if self.is_closed() {
            return Err(Error::NotFound);
        }
        let mut state = self.shared.lock();
        if let Some(mut consumer) = state.tracks.get(name).and_then(|t| t.consume()) {
            if let Some(start) = start {
                consumer.start_at(start);
            }
            return Ok(consumer);
        }
        let Some(requests) = state.requests.clone() else {
            return Err(Error::NotFound);
        };
        let track = TrackProducer::requested(name, self.shared.cache.clone(), start);
        let mut consumer = track.consume();
        if let Some(start) = start {
            consumer.start_at(start);
        }
        state.tracks.insert(name.to_string(), track.shared().clone());
        drop(state);
        if requests.send(track).is_err() {
            return Err(Error::NotFound);
        }
        Ok(consumer)
    }

    /// Forget `track` if nobody reads it, checked under the same lock that
    /// [`subscribe`](Self::subscribe) takes, so a new subscriber never gets a
    /// track whose producer is about to go away. False if someone came back.
    pub(crate) fn retire_unused(&self, track: &TrackProducer) -> bool {
        let mut state = self.shared.lock();
        if track.consumers() > 0 {
            return false;
        }
        if state
            .tracks
            .get(track.name())
            .is_some_and(|t| Arc::ptr_eq(t, track.shared()))
        {
            state.tracks.remove(track.name());
        }
        true
    }

    /// Resolves once nobody reads `track` and it has been taken out of this broadcast,
    /// so no new subscriber can be handed it while its producer goes away (one that came
    /// back in time keeps it serving). What a producer waits for before it stops feeding
    /// a track of a broadcast others may subscribe to at any moment.
    pub(crate) async fn retired(&self, track: &TrackProducer) {
        loop {
            track.unused().await;
            if self.retire_unused(track) {
                return;
            }
            // Someone subscribed again just now: keep serving.
            tokio::task::yield_now().await;
        }
    }

    /// Whether the broadcast has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Resolves when the broadcast ends, with how it ended.
    pub async fn closed(&self) -> Result<()> {
        let mut rx = self.closed.clone();
        let done = rx.wait_for(|c| c.is_some()).await;
        match done {
            Ok(c) => c.clone().unwrap_or(Ok(())),
            Err(_) => Err(Error::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::track::TrackInfo;

    #[tokio::test]
    async fn static_broadcast_serves_only_created_tracks() {
        let broadcast = BroadcastProducer::new(Cache::default());
        let _video = broadcast.create_track(TrackProducer::with_info(
            "video",
            TrackInfo::default(),
            Cache::default(),
        ));
        let consumer = broadcast.consume();
        assert!(consumer.subscribe("video").is_ok());
        assert_eq!(consumer.subscribe("audio").unwrap_err(), Error::NotFound);
    }

    #[tokio::test]
    async fn dynamic_broadcast_requests_each_track_once() {
        let mut broadcast = BroadcastProducer::dynamic(Cache::default());
        let consumer = broadcast.consume();
        let _a = consumer.subscribe("video").unwrap();
        let _b = consumer.subscribe("video").unwrap();
        let _c = consumer.subscribe("audio").unwrap();
        let first = broadcast.requested_track().await.unwrap();
        let second = broadcast.requested_track().await.unwrap();
        assert_eq!((first.name(), second.name()), ("video", "audio"));
        assert_eq!(first.consumers(), 2);
    }

    #[tokio::test]
    async fn closing_ends_consumers() {
        let broadcast = BroadcastProducer::new(Cache::default());
        let consumer = broadcast.consume();
        drop(broadcast);
        assert_eq!(consumer.closed().await, Err(Error::Cancelled));
        assert_eq!(consumer.subscribe("x").unwrap_err(), Error::NotFound);
    }
}
