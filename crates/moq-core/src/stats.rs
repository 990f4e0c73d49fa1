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
    /// Announcements from peers that were refused (over the quota, or outside what the
    /// peer may publish).
    pub announcements_refused: AtomicU64,
}

impl Stats {
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
