//! The relay's delay-based congestion controller: quinn's BBR with a bound on what may be
//! in flight once the path shows loss from a full queue.
//!
//! quinn's BBR (a port of BBR v1) does not react to loss at all. That is what a media
//! relay wants on a lossy Wi-Fi or mobile link, where CUBIC halves its window on every
//! random loss and falls behind live (1% loss at 80 ms RTT cost CUBIC a fifth of a 2 Mbit/s
//! stream), but it overfills a shallow bottleneck: sending 6 Mbit/s into a 4 Mbit/s link
//! with a 100 ms queue, it lost a third of its packets to the queue and fell 12 s behind.
//! [`LossBound`] adds what BBR v2/v3 add for this (an `inflight_hi`), telling the two kinds
//! of loss apart the way a queue does: it measures windows of at least a round trip and
//! [`MIN_PACKETS`] packets; a window that lost more than [`LOSS_THRESHOLD`] of its packets
//! while the sender was not application-limited **and** while the round trip stood at more
//! than [`QUEUE_INFLATION`] times its minimum (a queue filling up) caps the window at
//! [`BETA`] times what was delivered per round trip in it. Windows with little loss then
//! raise the cap by one packet each for [`PROBE_WINDOWS`] windows (probing gently, as
//! Reno does, so a queue that just overflowed is not overfilled again at once), then by
//! [`RELAX`] each until it no longer binds, and it is dropped.
//!
//! Random loss on a link whose queue is empty leaves the round trip at its minimum, so it
//! never caps: BBR carries on at the path's rate. Measured with `bench/badlink`
//! (`bench/README.md`).

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, Instant},
};

use quinn::congestion::{Bbr, BbrConfig, Controller, ControllerFactory, ControllerMetrics};

/// Loss fraction of a measurement window above which the window is capped (if the
/// round trip shows a queue, see [`QUEUE_INFLATION`]).
pub const LOSS_THRESHOLD: f64 = 0.05;

/// How far above its minimum the (smoothed) round trip must stand in a lossy window for
/// the loss to count as a queue overflowing rather than a lossy link. A bottleneck queue of
/// 100 ms on an 80 ms path more than doubles it; 20 ms of jitter and the peer's ack delay
/// add under half.
pub const QUEUE_INFLATION: f64 = 1.6;

/// Clean windows after a cut during which the cap grows by one packet per window.
pub const PROBE_WINDOWS: u32 = 20;

/// The fewest packets a measurement window spans (with at least one round trip), so that
/// a few random losses in a short window do not read as congestion.
pub const MIN_PACKETS: u64 = 40;

/// The cap, as a multiple of the bytes delivered per round trip in the lossy window.
pub const BETA: f64 = 1.25;

/// Growth of the cap per window with loss under half the threshold, after
/// [`PROBE_WINDOWS`] of them.
pub const RELAX: f64 = 1.25;

/// The smallest cap, in packets: a path must keep a few packets in flight to measure at all.
const MIN_WINDOW_PACKETS: u64 = 4;

/// Builds [`BoundedBbr`] controllers.
#[derive(Debug, Default)]
pub struct BoundedBbrConfig {
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for BoundedBbrConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(BoundedBbr {
            bbr: Box::new(Bbr::new(self.bbr.clone(), current_mtu)),
            bound: LossBound::new(now, current_mtu.into()),
        })
    }
}

/// quinn's BBR, its window capped by a [`LossBound`].
#[derive(Debug)]
struct BoundedBbr {
    bbr: Box<Bbr>,
    bound: LossBound,
}

impl Controller for BoundedBbr {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.bbr.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        self.bound
            .on_ack(now, sent, bytes, app_limited, rtt.min(), rtt.get());
        self.bbr.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.bbr
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
        self.bound.relax_above(self.bbr.window());
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.bound.on_loss(lost_bytes);
        self.bbr
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.bound.mtu = new_mtu.into();
        self.bbr.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.bound.cap(self.bbr.window())
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.bbr.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            bbr: self.bbr.clone(),
            bound: self.bound.clone(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.bbr.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The loss-driven cap on a window (see the module docs). Sans-IO: fed the controller's
/// events, it answers what the window may be.
#[derive(Debug, Clone)]
pub struct LossBound {
    mtu: u64,
    /// When the current measurement window began: it ends with the first ack of a packet
    /// sent after this, once it spans enough packets.
    start: Instant,
    /// Bytes acknowledged and declared lost in the current window.
    acked: u64,
    lost: u64,
    /// Whether any ack in the window came while the sender was not application-limited.
    pressed: bool,
    /// The cap, if one binds.
    cap: Option<u64>,
    /// The largest smoothed RTT seen in the window.
    rtt: Duration,
    /// Windows in a row with little loss since the cap was last lowered.
    clean: u32,
}

impl LossBound {
    /// A bound with no cap yet, its first window starting `now`.
    pub fn new(now: Instant, mtu: u64) -> Self {
        Self {
            mtu: mtu.max(1),
            start: now,
            acked: 0,
            lost: 0,
            pressed: false,
            cap: None,
            clean: 0,
            rtt: Duration::ZERO,
        }
    }

    /// `bytes` sent at `sent` were acknowledged at `now`.
    pub fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        min_rtt: Duration,
        rtt: Duration,
    ) {
        self.acked = self.acked.saturating_add(bytes);
        self.rtt = self.rtt.max(rtt);
        self.pressed |= !app_limited;
        let packets = self
            .acked
            .saturating_add(self.lost)
            .checked_div(self.mtu)
            .unwrap_or(0);
        if sent > self.start && packets >= MIN_PACKETS {
            self.end_window(now, min_rtt);
        }
    }

    /// `bytes` were declared lost.
    pub fn on_loss(&mut self, bytes: u64) {
        self.lost = self.lost.saturating_add(bytes);
    }

    /// Drop the cap once the controller's own window is below it.
    pub fn relax_above(&mut self, window: u64) {
        if self.cap.is_some_and(|cap| cap > window.saturating_mul(2)) {
            self.cap = None;
        }
    }

    /// The window allowed, given the controller's own.
    pub fn cap(&self, window: u64) -> u64 {
        match self.cap {
            Some(cap) => window.min(cap),
            None => window,
        }
    }

    /// The cap in force, if any.
    pub fn current(&self) -> Option<u64> {
        self.cap
    }

    fn end_window(&mut self, now: Instant, min_rtt: Duration) {
        let total = self.acked.saturating_add(self.lost);
        let loss = self.lost as f64 / total.max(1) as f64;
        let elapsed = now.saturating_duration_since(self.start);
        let queued = self.rtt.as_secs_f64() > min_rtt.as_secs_f64() * QUEUE_INFLATION;
        if loss > LOSS_THRESHOLD && queued && self.pressed && !elapsed.is_zero() {
            // What the path delivered per round trip in this window.
            let per_rtt = self.acked as f64 * min_rtt.as_secs_f64() / elapsed.as_secs_f64();
            let floor = MIN_WINDOW_PACKETS.saturating_mul(self.mtu);
            let cap = ((per_rtt * BETA) as u64).max(floor);
            self.cap = Some(self.cap.map_or(cap, |old| old.min(cap)));
            self.clean = 0;
        } else if loss < LOSS_THRESHOLD / 2.0
            && let Some(cap) = self.cap
        {
            self.clean = self.clean.saturating_add(1);
            self.cap = Some(if self.clean <= PROBE_WINDOWS {
                cap.saturating_add(self.mtu)
            } else {
                ((cap as f64) * RELAX) as u64
            });
        }
        self.start = now;
        self.acked = 0;
        self.lost = 0;
        self.pressed = false;
        self.rtt = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u64 = 1200;
    const RTT: Duration = Duration::from_millis(80);

    /// Feed one round trip: `packets` sent at `at`, `lost` of them lost, the rest acked one
    /// RTT later, the smoothed RTT at `rtt`. Returns the time after it.
    fn round_at(
        bound: &mut LossBound,
        at: Instant,
        packets: u64,
        lost: u64,
        app_limited: bool,
        rtt: Duration,
    ) -> Instant {
        bound.on_loss(lost * MTU);
        let acked_at = at + RTT;
        for _ in 0..packets - lost {
            bound.on_ack(
                acked_at,
                at + Duration::from_micros(1),
                MTU,
                app_limited,
                RTT,
                rtt,
            );
        }
        acked_at
    }

    /// A round through a queue standing at 1.2 RTT (the path's RTT doubled).
    fn round(bound: &mut LossBound, at: Instant, packets: u64, lost: u64, app_limited: bool) -> Instant {
        round_at(bound, at, packets, lost, app_limited, RTT * 2)
    }

    #[test]
    fn heavy_loss_while_pressing_caps_the_window_near_what_was_delivered() {
        let mut now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        // 50 packets per round, 20 lost: 30 delivered per RTT.
        now = round(&mut bound, now, 50, 20, false);
        let cap = bound.current().expect("a cap after 40% loss");
        // The window ends once 40 packets are accounted for: 20 lost, 20 delivered.
        assert_eq!(cap, 25 * MTU, "1.25 x the 20 packets delivered in one RTT");
        assert_eq!(bound.cap(10_000_000), cap);
        assert_eq!(bound.cap(MTU), MTU, "a smaller controller window wins");
        // Clean rounds raise the cap until it stops binding.
        for _ in 0..100 {
            now = round(&mut bound, now, 50, 0, false);
            bound.relax_above(200 * MTU);
        }
        assert_eq!(
            bound.current(),
            None,
            "the cap is dropped once it no longer binds"
        );
    }

    #[test]
    fn loss_under_the_threshold_never_caps_even_with_a_queue() {
        let mut now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        // 1 of every 50 lost (2%), the queue standing: not a queue overflowing.
        for i in 0..200 {
            now = round(&mut bound, now, 50, 1, false);
            assert_eq!(bound.current(), None, "capped at round {i}");
        }
    }

    #[test]
    fn heavy_loss_without_a_queue_is_a_lossy_link_and_never_caps() {
        let mut now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        // 20% loss, but the round trip stays at its minimum (plus a little ack delay).
        for i in 0..50 {
            now = round_at(&mut bound, now, 50, 10, false, RTT * 5 / 4);
            assert_eq!(bound.current(), None, "capped at round {i}");
        }
        // The same loss with the round trip doubled is a queue overflowing.
        round(&mut bound, now, 50, 10, false);
        assert!(bound.current().is_some());
    }

    #[test]
    fn after_a_cut_the_cap_grows_a_packet_per_window_first() {
        let mut now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        now = round(&mut bound, now, 50, 20, false);
        let cut = bound.current().expect("capped");
        // 40-packet windows, so each clean 40-packet round is one window.
        for _ in 0..PROBE_WINDOWS {
            now = round(&mut bound, now, 40, 0, false);
        }
        assert_eq!(bound.current(), Some(cut + u64::from(PROBE_WINDOWS) * MTU));
        round(&mut bound, now, 40, 0, false);
        let grown = bound.current().expect("still capped");
        assert!(
            grown as f64 >= (cut + u64::from(PROBE_WINDOWS) * MTU) as f64 * 1.2,
            "then multiplicative"
        );
    }

    #[test]
    fn loss_while_application_limited_does_not_cap() {
        let mut now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        for _ in 0..10 {
            now = round(&mut bound, now, 50, 20, true);
        }
        assert_eq!(bound.current(), None);
    }

    #[test]
    fn short_windows_wait_for_enough_packets() {
        let now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        // 10 packets with 5 lost is not evidence enough on its own.
        let now = round(&mut bound, now, 10, 5, false);
        assert_eq!(bound.current(), None);
        // The window goes on until it spans MIN_PACKETS; 40 more with 10 lost: 15 of 50.
        round(&mut bound, now, 40, 10, false);
        assert!(bound.current().is_some(), "30% loss over 50 packets caps");
    }

    #[test]
    fn the_cap_never_falls_below_a_few_packets() {
        let now = Instant::now();
        let mut bound = LossBound::new(now, MTU);
        round(&mut bound, now, 45, 44, false);
        assert_eq!(bound.current(), Some(MIN_WINDOW_PACKETS * MTU));
    }

    #[test]
    fn the_controller_caps_bbr() {
        let now = Instant::now();
        let factory = Arc::new(BoundedBbrConfig::default());
        let controller = factory.build(now, 1200);
        let uncapped = controller.window();
        // The same controller once its bound has capped: the cap (4 packets, the floor)
        // is what it allows, well under BBR's own window; a copy keeps the cap.
        let mut bound = LossBound::new(now, MTU);
        round(&mut bound, now, 45, 44, false);
        let capped = BoundedBbr {
            bbr: Box::new(Bbr::new(Arc::new(BbrConfig::default()), 1200)),
            bound,
        };
        assert!(
            uncapped > MIN_WINDOW_PACKETS * MTU,
            "BBR starts above the cap: {uncapped}"
        );
        assert_eq!(capped.window(), MIN_WINDOW_PACKETS * MTU);
        assert_eq!(capped.metrics().congestion_window, MIN_WINDOW_PACKETS * MTU);
        assert_eq!(capped.clone_box().window(), MIN_WINDOW_PACKETS * MTU);
    }
}
