//! A group: an append-only list of frames delivered in order on one stream.
//!
//! A group made by a track ([`TrackProducer::create_group`](super::TrackProducer::create_group))
//! charges what it holds to its track's [cache](super::cache): every frame's payload plus a
//! fixed overhead, and the announced size of a frame still arriving
//! ([`GroupProducer::reserve`]). The charge is released when the last reader and the
//! producer are gone, so the cache's byte count is what groups really hold in memory,
//! wherever they are held (caches, deliveries in flight, the producer).

use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio::sync::watch;

use super::cache::{Cache, Held};
use crate::{Error, Result};

/// One frame: an opaque payload and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Presentation timestamp in the track's timescale.
    pub timestamp: u64,
    /// The payload, shared by every consumer.
    pub payload: Bytes,
}

/// Bytes charged per frame on top of its payload: the `Frame` itself and the slack of
/// the vector that holds it, so a flood of empty frames is not free.
pub const FRAME_OVERHEAD: u64 = 64;

#[derive(Debug, Default)]
pub(crate) struct GroupState {
    frames: Vec<Frame>,
    bytes: usize,
    /// The announced size of a frame still arriving (charged, not readable yet).
    reserved: u64,
    end: Option<Result<()>>,
    held: Held,
}

/// What a group's producer shares with its consumers: the state and its wake-ups.
#[derive(Debug)]
pub(crate) struct GroupShared {
    state: watch::Sender<GroupState>,
}

impl GroupShared {
    /// End the group with `err` unless it already ended; whether this ended it.
    fn end(&self, result: Result<()>) -> bool {
        self.state.send_if_modified(|s| {
            if s.end.is_some() {
                return false;
            }
            s.end = Some(result);
            // Nothing more will arrive.
            s.held.release(std::mem::take(&mut s.reserved));
            true
        })
    }
}

/// Writes frames into a group. Dropping it without [`finish`](Self::finish)
/// aborts the group with [`Error::Cancelled`].
#[derive(Debug)]
pub struct GroupProducer {
    sequence: u64,
    shared: Arc<GroupShared>,
    /// The cache charged for this group, asked to make room when over its budget.
    cache: Option<Cache>,
}

impl GroupProducer {
    /// A new, empty group and a consumer that reads it from the start. It charges no
    /// cache (see [`TrackProducer::create_group`](super::TrackProducer::create_group)).
    pub fn new(sequence: u64) -> (Self, GroupConsumer) {
        Self::build(sequence, None)
    }

    /// A new group whose bytes are charged to `cache`.
    pub(crate) fn charged(sequence: u64, cache: &Cache) -> (Self, GroupConsumer) {
        Self::build(sequence, Some(cache.clone()))
    }

    fn build(sequence: u64, cache: Option<Cache>) -> (Self, GroupConsumer) {
        let state = GroupState {
            held: Held::new(cache.as_ref()),
            ..Default::default()
        };
        let (tx, rx) = watch::channel(state);
        let shared = Arc::new(GroupShared { state: tx });
        let consumer = GroupConsumer {
            sequence,
            state: rx,
            index: 0,
            shared: Arc::downgrade(&shared),
            splice: None,
        };
        (
            Self {
                sequence,
                shared,
                cache,
            },
            consumer,
        )
    }

    /// The group's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Append a frame. Ignored once the group ended (finished, aborted, or evicted
    /// under memory pressure: see [`closed`](Self::closed)).
    pub fn write(&mut self, frame: Frame) {
        let cost = (frame.payload.len() as u64).saturating_add(FRAME_OVERHEAD);
        let written = self.shared.state.send_if_modified(|s| {
            if s.end.is_some() {
                return false;
            }
            s.bytes = s.bytes.saturating_add(frame.payload.len());
            s.held.release(std::mem::take(&mut s.reserved));
            s.held.charge(cost);
            s.frames.push(frame);
            true
        });
        if written && let Some(cache) = &self.cache {
            cache.make_room();
        }
    }

    /// Charge the announced size of the next frame while its payload arrives, so bytes
    /// buffered for a frame count against the cache's budget before the frame exists.
    /// The next [`write`](Self::write) (or the end of the group) releases it.
    pub fn reserve(&mut self, bytes: u64) {
        // Readers have nothing new to see: no wake-up.
        self.shared.state.send_if_modified(|s| {
            if s.end.is_none() {
                s.held.release(std::mem::replace(&mut s.reserved, bytes));
                s.held.charge(bytes);
            }
            false
        });
        if let Some(cache) = &self.cache {
            cache.make_room();
        }
    }

    /// Total payload bytes written so far.
    pub fn bytes(&self) -> usize {
        self.shared.state.borrow().bytes
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> usize {
        self.shared.state.borrow().frames.len()
    }

    /// Mark the group complete.
    pub fn finish(self) {
        self.shared.end(Ok(()));
    }

    /// End the group with an error; consumers see it after the frames they
    /// have not read yet.
    pub fn abort(self, err: Error) {
        self.shared.end(Err(err));
    }

    /// Whether the group ended: finished, aborted, or evicted by its cache.
    pub fn is_closed(&self) -> bool {
        self.shared.state.borrow().end.is_some()
    }

    /// Resolves when the group ended, with how: a writer learns here that its cache
    /// evicted the group under memory pressure ([`Error::Evicted`]).
    pub async fn closed(&self) -> Result<()> {
        let mut rx = self.shared.state.subscribe();
        let state = rx.wait_for(|s| s.end.is_some()).await;
        match state {
            Ok(s) => s.end.clone().unwrap_or(Err(Error::Cancelled)),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Resolves when no consumer is left.
    pub async fn unused(&self) {
        self.shared.state.closed().await
    }
}

impl Drop for GroupProducer {
    fn drop(&mut self) {
        self.shared.end(Err(Error::Cancelled));
    }
}

/// Reads a group's frames in order. Cloning gives a new reader at frame 0.
#[derive(Debug)]
pub struct GroupConsumer {
    sequence: u64,
    state: watch::Receiver<GroupState>,
    index: usize,
    /// The producer's side, so the cache can end a group it evicts while it grows.
    shared: Weak<GroupShared>,
    /// For a group a relay took from a route that may die (see [`GroupConsumer::spliceable`]):
    /// the copy its readers continue from if it is cut off; `None` inside while undecided.
    splice: Option<watch::Receiver<Option<GroupConsumer>>>,
}

impl Clone for GroupConsumer {
    fn clone(&self) -> Self {
        Self {
            sequence: self.sequence,
            state: self.state.clone(),
            index: 0,
            shared: self.shared.clone(),
            splice: self.splice.clone(),
        }
    }
}

/// Decides where the readers of a cut-off group continue (see [`GroupConsumer::spliceable`]).
/// Dropping it undecided lets them see the error that cut the group.
#[derive(Debug)]
pub(crate) struct Splicer {
    sequence: u64,
    next: watch::Sender<Option<GroupConsumer>>,
}

impl Splicer {
    /// Readers that were cut off at frame `i` continue at frame `i` of `copy` (another
    /// route's copy of the same group): frames they already have are not repeated.
    pub(crate) fn continue_with(self, copy: GroupConsumer) {
        self.next.send_replace(Some(copy));
    }

    /// Readers end the group cleanly where they stand: no route has the rest of it, but
    /// the track goes on, so the viewer moves to the next group instead of seeing a reset.
    pub(crate) fn finish(self) {
        let (producer, rest) = GroupProducer::new(self.sequence);
        producer.finish();
        self.continue_with(rest);
    }
}

impl GroupConsumer {
    /// The group's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Skip the first `index` frames (for frame-level resume).
    pub fn skip_to(&mut self, index: usize) {
        self.index = index;
    }

    /// A reader of this group whose readers, should the group be cut off (end with an
    /// error), wait for the returned [`Splicer`] to name a copy to continue from instead
    /// of seeing the error. A relay wraps the groups it takes from a route this way, so a
    /// route dying under a group in flight is invisible downstream.
    pub(crate) fn spliceable(&self) -> (GroupConsumer, Splicer) {
        let (next, rx) = watch::channel(None);
        let mut reader = self.clone();
        reader.splice = Some(rx);
        (
            reader,
            Splicer {
                sequence: self.sequence,
                next,
            },
        )
    }

    /// Where a cut-off group stands: `None` if it did not end with an error, else the copy
    /// its readers continue from (`Some(Some(copy))`), or `Some(None)` if they see the
    /// error (no splicer, or it gave up). `Err(())` while a splicer is still deciding.
    fn cut(&self) -> Result<Option<Option<GroupConsumer>>, ()> {
        if !matches!(self.state.borrow().end, Some(Err(_))) {
            return Ok(None);
        }
        let Some(splice) = &self.splice else {
            return Ok(Some(None));
        };
        if let Some(copy) = splice.borrow().clone() {
            return Ok(Some(Some(copy)));
        }
        // The splicer dropped undecided: the error stands.
        if splice.has_changed().is_err() {
            return Ok(Some(None));
        }
        Err(())
    }

    /// The next frame; `Ok(None)` once the group finished.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            let err = match self.read_frame().await {
                Err(err) => err,
                other => return other,
            };
            let Some(mut splice) = self.splice.clone() else {
                return Err(err);
            };
            // Cut off: wait for the relay to name the copy to continue from.
            let copy = match splice.wait_for(Option::is_some).await {
                Ok(copy) => copy.clone(),
                Err(_) => None,
            };
            let Some(copy) = copy else { return Err(err) };
            // Same index: the frames already read are not read again.
            self.state = copy.state;
            self.shared = copy.shared;
            self.splice = copy.splice;
        }
    }

    /// Take the frames that are already here after the ones read, without waiting: at most
    /// `max_frames`, and none after `max_bytes` of payload have been taken. A sender
    /// that fell behind writes them in one go; [`next_frame`](Self::next_frame) goes on
    /// after them.
    pub fn ready_frames(&mut self, max_frames: usize, max_bytes: usize, out: &mut Vec<Frame>) {
        let state = self.state.borrow();
        let mut bytes = 0usize;
        for frame in state.frames.iter().skip(self.index).take(max_frames) {
            if bytes >= max_bytes {
                break;
            }
            bytes = bytes.saturating_add(frame.payload.len());
            out.push(frame.clone());
            self.index = self.index.saturating_add(1);
        }
    }

    /// The next frame of this copy (without following a splice).
    async fn read_frame(&mut self) -> Result<Option<Frame>> {
        let index = self.index;
        let state = self
            .state
            .wait_for(|s| s.frames.len() > index || s.end.is_some())
            .await
            .map_err(|_| Error::Cancelled)?;
        if let Some(frame) = state.frames.get(index) {
            let frame = frame.clone();
            drop(state);
            self.index = self.index.saturating_add(1);
            return Ok(Some(frame));
        }
        match &state.end {
            Some(Ok(())) => Ok(None),
            Some(Err(err)) => Err(err.clone()),
            None => Ok(None),
        }
    }

    /// Total payload bytes written so far.
    pub fn bytes(&self) -> usize {
        self.state.borrow().bytes
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> usize {
        self.state.borrow().frames.len()
    }

    /// Whether the group ended with an error (its producer aborted or went
    /// away), so a copy from another route may replace it. A cut-off group whose relay
    /// is still finding the rest, or found it, is not aborted (see [`Self::spliceable`]).
    pub fn is_aborted(&self) -> bool {
        match self.cut() {
            Ok(None) | Err(()) => false,
            Ok(Some(Some(copy))) => copy.is_aborted(),
            Ok(Some(None)) => true,
        }
    }

    /// Whether the group ended: finished, or aborted for good (a cut-off group whose
    /// relay is still finding the rest is not done; one continued is done with its copy).
    pub fn is_done(&self) -> bool {
        match self.cut() {
            Ok(None) => self.state.borrow().end.is_some(),
            Err(()) => false,
            Ok(Some(Some(copy))) => copy.is_done(),
            Ok(Some(None)) => true,
        }
    }

    /// Wait until this copy of the group ends (without following a splice); how it ended
    /// (a producer gone counts as cancelled).
    pub(crate) async fn outcome(&self) -> Result<()> {
        let mut state = self.state.clone();
        match state.wait_for(|s| s.end.is_some()).await {
            Ok(s) => s.end.clone().unwrap_or(Err(Error::Cancelled)),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Bytes the group holds against its cache's budget (payload, per-frame overhead and
    /// a frame still arriving).
    pub(crate) fn held(&self) -> u64 {
        self.state.borrow().held.bytes()
    }

    /// Identifies the group across clones (and the tracks that share it).
    pub(crate) fn id(&self) -> usize {
        self.shared.as_ptr() as usize
    }

    /// End a group that is still growing with `err`, from the reading side: a relay that
    /// gave up on the route delivering it. Whether it was still growing.
    pub(crate) fn cut_off(&self, err: Error) -> bool {
        self.shared.upgrade().is_some_and(|shared| shared.end(Err(err)))
    }

    /// End a group that is still growing with [`Error::Evicted`] (memory pressure): its
    /// producer stops, its readers see the error after the frames they have not read.
    /// Whether it was still growing.
    pub(crate) fn evict(&self) -> bool {
        self.cut_off(Error::Evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Frame {
        Frame {
            timestamp: n.into(),
            payload: Bytes::from(vec![n; 3]),
        }
    }

    #[tokio::test]
    async fn ready_frames_takes_what_is_here_within_its_bounds_without_waiting() {
        let (mut producer, mut consumer) = GroupProducer::new(0);
        for n in 0..10 {
            producer.write(frame(n));
        }
        assert_eq!(consumer.next_frame().await.unwrap().unwrap().timestamp, 0);
        let mut ready = Vec::new();
        // At most 4 frames...
        consumer.ready_frames(4, usize::MAX, &mut ready);
        assert_eq!(
            ready.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        // ...and none after 5 bytes are taken (3 per frame: two frames).
        ready.clear();
        consumer.ready_frames(64, 5, &mut ready);
        assert_eq!(ready.iter().map(|f| f.timestamp).collect::<Vec<_>>(), [5, 6]);
        // The rest, then nothing: it never waits, and reading goes on after them.
        ready.clear();
        consumer.ready_frames(64, usize::MAX, &mut ready);
        assert_eq!(ready.len(), 3);
        ready.clear();
        consumer.ready_frames(64, usize::MAX, &mut ready);
        assert!(ready.is_empty());
        producer.write(frame(10));
        producer.finish();
        assert_eq!(consumer.next_frame().await.unwrap().unwrap().timestamp, 10);
        assert!(consumer.next_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn readers_see_every_frame_in_order() {
        let (mut producer, mut a) = GroupProducer::new(7);
        producer.write(frame(1));
        let mut b = a.clone();
        producer.write(frame(2));
        producer.finish();
        for reader in [&mut a, &mut b] {
            assert_eq!(reader.next_frame().await.unwrap(), Some(frame(1)));
            assert_eq!(reader.next_frame().await.unwrap(), Some(frame(2)));
            assert_eq!(reader.next_frame().await.unwrap(), None);
        }
    }

    async fn soon<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(2), f)
            .await
            .unwrap()
    }

    /// A group cut off with its route: its readers wait, then continue from another
    /// route's copy at the frame where each stood; a reader cloned later reads it whole.
    #[tokio::test]
    async fn a_cut_off_group_continues_from_a_copy_where_each_reader_stood() {
        let (mut producer, upstream) = GroupProducer::new(3);
        let (mut reader, splicer) = upstream.spliceable();
        producer.write(frame(1));
        producer.write(frame(2));
        assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(1)));
        assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(2)));
        producer.abort(Error::Transport("route gone".into()));
        // Undecided: neither done nor aborted, and the reader waits.
        assert!(!reader.is_done() && !reader.is_aborted());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), reader.next_frame())
                .await
                .is_err()
        );
        let (mut copy, rest) = GroupProducer::new(3);
        for n in 1..=3 {
            copy.write(frame(n));
        }
        splicer.continue_with(rest);
        assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(3)));
        assert!(!reader.is_done(), "the copy still grows");
        copy.write(frame(4));
        copy.finish();
        assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(4)));
        assert_eq!(soon(reader.next_frame()).await.unwrap(), None);
        assert!(reader.is_done() && !reader.is_aborted());
        let mut late = reader.clone();
        let mut all = Vec::new();
        while let Some(f) = soon(late.next_frame()).await.unwrap() {
            all.push(f);
        }
        assert_eq!(all, (1..=4).map(frame).collect::<Vec<_>>());
    }

    /// With no copy to be had, a cut-off group ends cleanly where its readers stand
    /// (`finish`), or they see the error that cut it (the splicer dropped).
    #[tokio::test]
    async fn a_cut_off_group_ends_cleanly_or_with_its_error_when_no_copy_comes() {
        let (mut producer, upstream) = GroupProducer::new(4);
        let (mut finished, splicer) = upstream.spliceable();
        let (mut dropped, other) = upstream.spliceable();
        producer.write(frame(1));
        producer.abort(Error::Transport("route gone".into()));
        for reader in [&mut finished, &mut dropped] {
            assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(1)));
        }
        splicer.finish();
        assert_eq!(soon(finished.next_frame()).await.unwrap(), None);
        assert!(finished.is_done() && !finished.is_aborted());
        drop(other);
        assert_eq!(
            soon(dropped.next_frame()).await,
            Err(Error::Transport("route gone".into()))
        );
        assert!(dropped.is_done() && dropped.is_aborted());
        // A group that ends cleanly never waits on its splicer.
        let (mut producer, upstream) = GroupProducer::new(5);
        let (mut reader, _undecided) = upstream.spliceable();
        producer.write(frame(1));
        producer.finish();
        assert_eq!(soon(reader.next_frame()).await.unwrap(), Some(frame(1)));
        assert_eq!(soon(reader.next_frame()).await.unwrap(), None);
        assert!(reader.is_done());
    }

    #[tokio::test]
    async fn payload_is_shared_not_copied() {
        let (mut producer, mut a) = GroupProducer::new(0);
        let payload = Bytes::from_static(b"shared");
        producer.write(Frame {
            timestamp: 0,
            payload: payload.clone(),
        });
        let got = a.next_frame().await.unwrap().unwrap();
        assert_eq!(got.payload.as_ptr(), payload.as_ptr());
    }

    #[tokio::test]
    async fn a_charged_group_holds_its_bytes_until_the_last_reader_goes() {
        let cache = Cache::default();
        let (mut producer, reader) = GroupProducer::charged(0, &cache);
        producer.reserve(100);
        assert_eq!(cache.stats().bytes(), 100, "an announced frame is charged");
        producer.write(frame(1));
        assert_eq!(
            cache.stats().bytes(),
            3 + FRAME_OVERHEAD,
            "the reservation became the frame"
        );
        producer.reserve(50);
        producer.finish();
        assert_eq!(
            cache.stats().bytes(),
            3 + FRAME_OVERHEAD,
            "a frame that never came is released with the end"
        );
        let copy = reader.clone();
        drop(reader);
        assert_eq!(
            cache.stats().bytes(),
            3 + FRAME_OVERHEAD,
            "a reader still holds it"
        );
        drop(copy);
        assert_eq!(cache.stats().bytes(), 0);
    }

    #[tokio::test]
    async fn evicting_a_growing_group_stops_its_writer_and_readers_see_it() {
        let (mut producer, mut reader) = GroupProducer::new(0);
        producer.write(frame(1));
        assert!(reader.evict(), "it was growing");
        assert!(!reader.evict(), "only once");
        assert_eq!(producer.closed().await, Err(Error::Evicted));
        producer.write(frame(2));
        assert_eq!(reader.next_frame().await.unwrap(), Some(frame(1)));
        assert_eq!(reader.next_frame().await, Err(Error::Evicted));
        // A finished group is not evicted: it is complete.
        let (producer, reader) = GroupProducer::new(1);
        producer.finish();
        assert!(!reader.evict());
    }

    #[tokio::test]
    async fn dropped_producer_aborts() {
        let (mut producer, mut a) = GroupProducer::new(0);
        producer.write(frame(1));
        drop(producer);
        assert_eq!(a.next_frame().await.unwrap(), Some(frame(1)));
        assert_eq!(a.next_frame().await, Err(Error::Cancelled));
    }
}
