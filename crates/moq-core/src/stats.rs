//! Counters the session drivers update where the bytes move. Lock-free; a
//! metrics exporter reads them at scrape time.
//!
//! Every session of a relay shares one [`Stats`], so the per-frame counters of the
//! fan-out path are counted in a [`Batch`] owned by the task that writes the frames and
//! added to the shared ones every [`Batch::FRAMES`] frames and when that task is done:
//! one contended cache line per batch instead of two per frame per subscriber.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Media and subscription counters, shared by every session that is given them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frame payload bytes received from peers.
    pub bytes_received: AtomicU64,
    /// Frame payload bytes sent to peers.
    pub bytes_sent: AtomicU64,
    /// Frames received.
    pub frames_received: AtomicU64,
    /// Frames sent.
    pub frames_sent: AtomicU64,
    /// Groups received (streams or datagrams).
    pub groups_received: AtomicU64,
    /// Groups sent.
    pub groups_sent: AtomicU64,
    /// Subscriptions peers opened on us, ever.
    pub subscriptions_total: AtomicU64,
    /// Subscriptions peers hold on us now.
    pub subscriptions_active: AtomicI64,
    /// Broadcasts peers announced where they may not publish (an anonymous publisher in
    /// a subscribe-only prefix, ...): refused or ignored, never mirrored.
    pub announcements_forbidden: AtomicU64,
    /// Refusals by the limit that caused them (see [`Limit`]).
    refused: [AtomicU64; Limit::ALL.len()],
}

/// A limit a peer can run into. Each refusal is counted ([`Stats::refused`]); the stream
/// it concerns is reset (or stopped) with the error's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// A group's payload bytes (the group is ended with GROUP_TOO_LARGE).
    GroupSize,
    /// A group's frames (the group is ended with GROUP_TOO_LARGE).
    GroupFrames,
    /// Group streams one session may be sending us at once.
    Groups,
    /// Subscriptions one session may hold on us.
    Subscriptions,
    /// FETCH streams one session may have open at once.
    Fetches,
    /// TRACK (track info) streams one session may have open at once.
    TrackRequests,
    /// Announce streams (ANNOUNCE_REQUEST) one session may have open at once.
    AnnounceRequests,
    /// Broadcasts one session may announce to us.
    Announcements,
    /// Streams one session may have opened whose type and first message have not arrived.
    PendingStreams,
    /// Streams whose type and first message did not arrive within the header timeout.
    StreamTimeout,
}

impl Limit {
    /// Every limit, in counter order.
    pub const ALL: [Limit; 10] = [
        Limit::GroupSize,
        Limit::GroupFrames,
        Limit::Groups,
        Limit::Subscriptions,
        Limit::Fetches,
        Limit::TrackRequests,
        Limit::AnnounceRequests,
        Limit::Announcements,
        Limit::PendingStreams,
        Limit::StreamTimeout,
    ];

    /// A short stable name, for metric labels and logs (`group_size`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Limit::GroupSize => "group_size",
            Limit::GroupFrames => "group_frames",
            Limit::Groups => "groups_per_session",
            Limit::Subscriptions => "subscriptions_per_session",
            Limit::Fetches => "fetches_per_session",
            Limit::TrackRequests => "track_requests_per_session",
            Limit::AnnounceRequests => "announce_requests_per_session",
            Limit::Announcements => "announcements_per_session",
            Limit::PendingStreams => "pending_streams_per_session",
            Limit::StreamTimeout => "stream_header_timeout",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Limit::GroupSize => 0,
            Limit::GroupFrames => 1,
            Limit::Groups => 2,
            Limit::Subscriptions => 3,
            Limit::Fetches => 4,
            Limit::TrackRequests => 5,
            Limit::AnnounceRequests => 6,
            Limit::Announcements => 7,
            Limit::PendingStreams => 8,
            Limit::StreamTimeout => 9,
        }
    }
}

impl Stats {
    /// Refusals so far because of `limit`.
    pub fn refused(&self, limit: Limit) -> u64 {
        self.refused
            .get(limit.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Count one refusal because of `limit`.
    pub(crate) fn refuse(&self, limit: Limit) {
        if let Some(counter) = self.refused.get(limit.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Frames and payload bytes counted locally, added to `sent` counters of a [`Stats`] in
/// batches. What it holds is flushed when dropped, so nothing is lost, only late: by at
/// most [`Batch::FRAMES`] − 1 frames of one group stream.
pub(crate) struct Batch<'a> {
    stats: &'a Stats,
    frames: u64,
    bytes: u64,
}

impl<'a> Batch<'a> {
    /// Frames counted locally before they are added to the shared counters.
    pub(crate) const FRAMES: u64 = 32;

    pub(crate) fn new(stats: &'a Stats) -> Self {
        Self {
            stats,
            frames: 0,
            bytes: 0,
        }
    }

    /// Count one frame of `bytes` payload bytes sent.
    pub(crate) fn sent(&mut self, bytes: u64) {
        self.frames = self.frames.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.frames >= Self::FRAMES {
            self.flush();
        }
    }

    /// Add what was counted to the shared counters.
    pub(crate) fn flush(&mut self) {
        if self.frames > 0 {
            Stats::add(&self.stats.frames_sent, std::mem::take(&mut self.frames));
            Stats::add(&self.stats.bytes_sent, std::mem::take(&mut self.bytes));
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Counts a subscription as active while it lives.
pub(crate) struct ActiveSubscription<'a>(&'a Stats);

impl<'a> ActiveSubscription<'a> {
    pub(crate) fn new(stats: &'a Stats) -> Self {
        Stats::add(&stats.subscriptions_total, 1);
        stats.subscriptions_active.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for ActiveSubscription<'_> {
    fn drop(&mut self) {
        self.0.subscriptions_active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_has_its_own_counter_and_name() {
        let stats = Stats::default();
        for (i, limit) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(limit.index(), i);
            stats.refuse(limit);
        }
        stats.refuse(Limit::GroupSize);
        assert_eq!(stats.refused(Limit::GroupSize), 2);
        assert_eq!(stats.refused(Limit::StreamTimeout), 1);
        let names: std::collections::HashSet<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Limit::ALL.len());
    }

    #[test]
    fn batches_add_up_and_flush_when_full_or_dropped() {
        let stats = Stats::default();
        let mut batch = Batch::new(&stats);
        for _ in 0..Batch::FRAMES - 1 {
            batch.sent(10);
        }
        assert_eq!(
            Stats::get(&stats.frames_sent),
            0,
            "not flushed before the batch is full"
        );
        batch.sent(10);
        assert_eq!(Stats::get(&stats.frames_sent), Batch::FRAMES);
        assert_eq!(Stats::get(&stats.bytes_sent), Batch::FRAMES * 10);
        batch.sent(7);
        drop(batch);
        assert_eq!(Stats::get(&stats.frames_sent), Batch::FRAMES + 1);
        assert_eq!(Stats::get(&stats.bytes_sent), Batch::FRAMES * 10 + 7);
    }
}

/// A live count of upstream subscriptions, optionally feeding a parent count: a relay
/// keeps one total and gives a link a child of it, so it can tell whether that one link
/// is in use while the total stays exact.
#[derive(Debug, Default)]
pub struct Upstream {
    count: std::sync::atomic::AtomicUsize,
    parent: Option<std::sync::Arc<Upstream>>,
}

impl Upstream {
    /// A count that also adds to `parent`.
    pub fn child(parent: &std::sync::Arc<Upstream>) -> Self {
        Self {
            count: Default::default(),
            parent: Some(parent.clone()),
        }
    }

    /// Subscriptions held now.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Count one more subscription (here and in the parents).
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.add();
        }
    }

    /// Count one subscription less (here and in the parents).
    pub fn remove(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.remove();
        }
    }
}
