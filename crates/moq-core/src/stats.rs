//! Counters the session drivers update where the bytes move. Lock-free; a
//! metrics exporter reads them at scrape time.

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

/// Counts a subscription as active while it lives.
pub(crate) struct ActiveSubscription<'a>(&'a Stats);

impl<'a> ActiveSubscription<'a> {
    pub fn new(stats: &'a Stats) -> Self {
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
