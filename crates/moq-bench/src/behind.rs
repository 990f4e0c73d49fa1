//! How far behind live a viewer is, over time.
//!
//! **Definition.** At any instant `t`, a viewer's *behind-live* is `t − s(t)`, where `s(t)` is
//! the send time of the newest frame (by send time) the viewer has received at or before `t`
//! (before its first frame: the moment it subscribed). It is the age of the newest picture the
//! viewer could show. On a clean link it saws between the one-way latency and the latency plus
//! one frame period; a viewer that falls behind sees it grow at one second per second until a
//! newer frame arrives, and a relay that skips to newer groups pulls it back down.
//!
//! Over the measurement window (wall-clock `[w0, w1)`), per viewer:
//! - **time above**: how long behind-live exceeded the threshold (exact, not sampled),
//! - **longest stretch**: the longest continuous time above the threshold,
//! - **at end**: behind-live at `w1`,
//! - **distribution**: behind-live sampled every `step` on a fixed clock grid (time-weighted).
//!
//! Times are Unix microseconds, all read from the same clock as the frames' send times.

/// One viewer's behind-live accounting.
#[derive(Debug, Clone)]
pub(crate) struct Behind {
    window: (u64, u64),
    threshold: u64,
    step: u64,
    /// Send time of the newest frame received (or the subscribe time).
    newest: u64,
    /// Accounting is done up to here.
    last: u64,
    above: u64,
    run_start: Option<u64>,
    longest: u64,
    at_end: Option<u64>,
}

impl Behind {
    /// A viewer that subscribed at `start`; behind-live over `window`, above `threshold`,
    /// sampled every `step` (all µs).
    pub(crate) fn new(window: (u64, u64), threshold: u64, step: u64, start: u64) -> Self {
        Self {
            window,
            threshold,
            step: step.max(1),
            newest: start,
            last: start,
            above: 0,
            run_start: None,
            longest: 0,
            at_end: None,
        }
    }

    /// Account the time from the last event up to `until`, with the current newest frame.
    fn account(&mut self, until: u64, sample: &mut impl FnMut(u64)) {
        let (w0, w1) = self.window;
        let n = self.newest;
        if self.last <= w1 && w1 <= until && self.at_end.is_none() {
            self.at_end = Some(w1.saturating_sub(n));
        }
        let a = self.last.max(w0);
        let b = until.min(w1);
        if b > a {
            let mut x = a.div_ceil(self.step) * self.step;
            while x < b {
                sample(x.saturating_sub(n));
                x += self.step;
            }
            let from = a.max(n + self.threshold);
            if b > from {
                self.above += b - from;
                self.run_start.get_or_insert(from);
            }
        }
        self.last = self.last.max(until);
    }

    /// A frame sent at `sent` arrived at `now`; `sample` receives the grid samples passed.
    pub(crate) fn frame(&mut self, now: u64, sent: u64, sample: &mut impl FnMut(u64)) {
        self.account(now, sample);
        self.newest = self.newest.max(sent);
        if let Some(start) = self.run_start
            && now.saturating_sub(self.newest) <= self.threshold
        {
            let end = now.min(self.window.1);
            self.longest = self.longest.max(end.saturating_sub(start));
            self.run_start = None;
        }
    }

    /// Close the window (call once, after it ended).
    pub(crate) fn finish(&mut self, sample: &mut impl FnMut(u64)) {
        let w1 = self.window.1;
        self.account(w1, sample);
        if let Some(start) = self.run_start.take() {
            self.longest = self.longest.max(w1.saturating_sub(start));
        }
    }

    /// Microseconds above the threshold inside the window.
    pub(crate) fn above(&self) -> u64 {
        self.above
    }

    /// The longest continuous stretch above the threshold, µs.
    pub(crate) fn longest(&self) -> u64 {
        self.longest
    }

    /// Behind-live at the end of the window, µs (once the window has been accounted past it).
    pub(crate) fn at_end(&self) -> Option<u64> {
        self.at_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    /// Frames sent every 33 ms, each arriving `latency(i)` later.
    fn feed(b: &mut Behind, frames: impl IntoIterator<Item = (u64, u64)>) -> Vec<u64> {
        let mut samples = Vec::new();
        for (sent, arrived) in frames {
            b.frame(arrived, sent, &mut |v| samples.push(v));
        }
        b.finish(&mut |v| samples.push(v));
        samples
    }

    #[test]
    fn a_viewer_keeping_up_is_never_behind() {
        // Window 1 s .. 11 s; frames every 33 ms with 40 ms latency.
        let mut b = Behind::new((1000 * MS, 11_000 * MS), 500 * MS, 10 * MS, 0);
        let frames = (0..400).map(|i| (i * 33 * MS, i * 33 * MS + 40 * MS));
        let samples = feed(&mut b, frames);
        assert_eq!(b.above(), 0);
        assert_eq!(b.longest(), 0);
        assert_eq!(samples.len(), 1000, "one sample per 10 ms of a 10 s window");
        assert!(
            samples.iter().all(|&s| (40 * MS..=73 * MS).contains(&s)),
            "{samples:?}"
        );
        let end = b.at_end().unwrap();
        assert!((40 * MS..=73 * MS).contains(&end), "{end}");
    }

    #[test]
    fn a_stall_counts_from_when_the_threshold_is_crossed() {
        // Frames every 100 ms with 50 ms latency, but nothing arrives between 3 s and 5 s;
        // the frames sent in the gap arrive at 5 s. Threshold 500 ms.
        let mut b = Behind::new((1000 * MS, 10_000 * MS), 500 * MS, 10 * MS, 0);
        let frames = (0..100).map(|i| {
            let sent = i * 100 * MS;
            let arrived = sent + 50 * MS;
            (
                sent,
                if (2_950 * MS..5_000 * MS).contains(&arrived) {
                    5_000 * MS
                } else {
                    arrived
                },
            )
        });
        feed(&mut b, frames);
        // Last fresh frame before the stall: sent 2.8 s (arrived 2.85 s); the viewer crosses
        // 500 ms behind at 3.3 s and catches up at 5 s: 1.7 s above.
        assert_eq!(b.above(), 1_700 * MS);
        assert_eq!(b.longest(), 1_700 * MS);
    }

    #[test]
    fn a_viewer_falling_behind_stays_behind_to_the_end() {
        // Every frame arrives later than the one before: latency grows 50 ms per second of
        // stream (the viewer gets 95% of real time). Threshold 500 ms is crossed at 10 s.
        let mut b = Behind::new((0, 20_000 * MS), 500 * MS, 10 * MS, 0);
        let frames = (0..1000).map(|i| {
            let sent = i * 20 * MS;
            (sent, sent + sent / 20)
        });
        let samples = feed(&mut b, frames);
        let end = b.at_end().unwrap();
        // At 20 s the newest frame received was sent at ~19.05 s.
        assert!((940 * MS..980 * MS).contains(&end), "{end}");
        // Above 500 ms from ~10 s to the end: one stretch of ~10 s.
        assert!((9_400 * MS..10_100 * MS).contains(&b.above()), "{}", b.above());
        // Near the crossing the sawtooth dips under the threshold at each arrival, so the last
        // stretch is a little shorter than the total.
        assert!(
            b.above() - b.longest() < 300 * MS,
            "{} vs {}",
            b.longest(),
            b.above()
        );
        assert!(samples.last().copied().unwrap() > 900 * MS);
    }

    #[test]
    fn time_outside_the_window_is_not_counted() {
        // Nothing from the subscription at 0 until 3.005 s, then a fresh frame every 100 ms
        // (15 ms latency). Window 2 s .. 4 s, threshold 500 ms: above from 2 s to 3.005 s only.
        let mut b = Behind::new((2_000 * MS, 4_000 * MS), 500 * MS, 10 * MS, 0);
        let frames = (0..30).map(|k| (2_990 * MS + k * 100 * MS, 3_005 * MS + k * 100 * MS));
        let samples = feed(&mut b, frames);
        assert_eq!(b.above(), 1_005 * MS);
        assert_eq!(b.longest(), 1_005 * MS);
        assert_eq!(samples.len(), 200);
        // At 4 s the newest frame received (at 3.905 s) was sent at 3.89 s.
        assert_eq!(b.at_end(), Some(110 * MS));
    }

    #[test]
    fn frames_out_of_order_do_not_move_it_backwards() {
        let mut b = Behind::new((0, 1_000 * MS), 100 * MS, 10 * MS, 0);
        b.frame(100 * MS, 90 * MS, &mut |_| {});
        // An older frame arriving later does not make the viewer fresher or staler.
        b.frame(150 * MS, 10 * MS, &mut |_| {});
        b.frame(160 * MS, 150 * MS, &mut |_| {});
        b.finish(&mut |_| {});
        // From 160 ms the newest is 150 ms old: above 100 ms from 250 ms to the end (1 s).
        assert_eq!(b.above(), 750 * MS);
    }
}
