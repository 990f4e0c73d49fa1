//! The impairment model of one direction of a link: pure arithmetic, no sockets, no clock.
//!
//! A packet entering a [`Link`] goes through three stages, in this order:
//!
//! 1. **loss**: dropped with probability `loss`;
//! 2. **bottleneck** (when `rate` is set): it waits behind the packets already queued and is then
//!    serialized at `rate` bits/s; if the bytes already waiting plus this packet exceed `queue`,
//!    it is dropped instead (tail drop, like a router's FIFO);
//! 3. **delay**: `delay`, plus an extra delay drawn uniformly from `[0, jitter]`, plus `hold` for
//!    the fraction `reorder` of packets.
//!
//! Per-packet jitter lets packets overtake each other, as `tc netem` does: a packet drawn a
//! short jitter leaves before an earlier packet drawn a long one. With `period` set, the jitter
//! is drawn once per period instead and packets stay in order (a packet never leaves before the
//! one ahead of it): the delay wanders between `delay` and `delay + jitter` in steps, like a
//! radio link whose scheduler or queue holds traffic back and then releases it in a burst.
//! Reordering (`reorder`, `hold`) still applies on top.
//!
//! Random draws come from a seeded generator, three per packet whatever the configuration, so a
//! given seed and packet sequence always give the same verdicts.

use std::{fmt, str::FromStr, time::Duration};

use tokio::time::Instant;

use crate::units::{self, UnitError};

/// The smallest bottleneck queue accepted: one full-size Ethernet frame.
pub const MIN_QUEUE: usize = 1500;

/// How one direction of a link treats packets. `Default` passes everything through untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Upper bound of the extra delay, drawn uniformly from `[0, jitter]`.
    pub jitter: Duration,
    /// Zero: jitter drawn per packet (packets overtake each other). Above zero: drawn once per
    /// period, packets kept in order.
    pub period: Duration,
    /// Probability (0 to 1) that a packet is dropped.
    pub loss: f64,
    /// Probability (0 to 1) that a packet is held back by `hold`, so later packets overtake it.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub hold: Duration,
    /// Bottleneck rate in bits per second; `None` is unlimited.
    pub rate: Option<u64>,
    /// Bytes that may wait for the bottleneck (ignored without `rate`).
    pub queue: usize,
}

impl Default for Impairment {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            period: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            hold: Duration::from_millis(20),
            rate: None,
            queue: 64 * 1024,
        }
    }
}

/// An impairment that cannot be used, or a spec string that cannot be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A probability outside 0..=1 (or not a number).
    #[error("{what} must be between 0% and 100%, got {value}")]
    Probability {
        /// Which setting.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// `rate=0` would never deliver anything.
    #[error("rate must be above 0 bit/s (leave it out for an unlimited link)")]
    ZeroRate,
    /// A queue too small to hold one full-size packet.
    #[error("queue must hold at least {MIN_QUEUE} bytes, got {0}")]
    QueueTooSmall(usize),
    /// A spec item without `=`.
    #[error("'{0}' is not key=value (e.g. delay=40ms,loss=1%)")]
    NotKeyValue(String),
    /// A spec key this model does not know.
    #[error("unknown key '{0}' (known: delay, jitter, period, loss, reorder, hold, rate, queue)")]
    UnknownKey(String),
    /// A value that does not parse.
    #[error("{key}: {source}")]
    Value {
        /// The key whose value was wrong.
        key: String,
        /// Why.
        source: UnitError,
    },
}

impl Impairment {
    /// Check the settings; [`Link::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (what, value) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::Probability { what, value });
            }
        }
        if self.rate == Some(0) {
            return Err(ConfigError::ZeroRate);
        }
        if self.rate.is_some() && self.queue < MIN_QUEUE {
            return Err(ConfigError::QueueTooSmall(self.queue));
        }
        Ok(())
    }

    /// True when the link changes nothing.
    pub fn is_clean(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss == 0.0
            && self.reorder == 0.0
            && self.rate.is_none()
    }
}

/// Parses `delay=40ms,jitter=10ms,period=50ms,loss=1%,reorder=2%,hold=20ms,rate=4mbit,queue=64k`; every key
/// is optional, an empty string is a clean link. Probabilities take `1%` or `0.01`.
impl FromStr for Impairment {
    type Err = ConfigError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut out = Impairment::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::NotKeyValue(item.to_string()))?;
            let (key, value) = (key.trim(), value.trim());
            let wrap = |source| ConfigError::Value {
                key: key.to_string(),
                source,
            };
            match key {
                "delay" => out.delay = units::duration(value).map_err(wrap)?,
                "jitter" => out.jitter = units::duration(value).map_err(wrap)?,
                "period" => out.period = units::duration(value).map_err(wrap)?,
                "hold" => out.hold = units::duration(value).map_err(wrap)?,
                "loss" => out.loss = units::probability(value).map_err(wrap)?,
                "reorder" => out.reorder = units::probability(value).map_err(wrap)?,
                "rate" => out.rate = Some(units::bitrate(value).map_err(wrap)?),
                "queue" => out.queue = units::bytes(value).map_err(wrap)?,
                _ => return Err(ConfigError::UnknownKey(key.to_string())),
            }
        }
        out.validate()?;
        Ok(out)
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return f.write_str("clean");
        }
        let mut parts = Vec::new();
        if !self.delay.is_zero() {
            parts.push(format!("delay={:?}", self.delay));
        }
        if !self.jitter.is_zero() {
            parts.push(format!("jitter={:?}", self.jitter));
            if !self.period.is_zero() {
                parts.push(format!("period={:?}", self.period));
            }
        }
        if self.loss > 0.0 {
            parts.push(format!("loss={}%", self.loss * 100.0));
        }
        if self.reorder > 0.0 {
            parts.push(format!("reorder={}%,hold={:?}", self.reorder * 100.0, self.hold));
        }
        if let Some(rate) = self.rate {
            parts.push(format!("rate={rate}bit,queue={}", self.queue));
        }
        f.write_str(&parts.join(","))
    }
}

/// A small deterministic generator (SplitMix64): good enough for drop decisions, not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it at this instant.
    Deliver(Instant),
    /// Dropped by random loss.
    Lost,
    /// Dropped because the bottleneck queue was full.
    QueueFull,
}

/// One direction of an impaired link: feed it packets in arrival order, it says when (or
/// whether) each leaves.
#[derive(Debug, Clone)]
pub struct Link {
    imp: Impairment,
    rng: Rng,
    /// When the bottleneck finishes serializing the last admitted packet.
    busy_until: Option<Instant>,
    /// With a jitter period: the current jitter and until when it holds.
    jitter_now: Duration,
    jitter_until: Option<Instant>,
    /// With a jitter period: the departure of the last packet (before any reorder hold).
    last_out: Option<Instant>,
}

impl Link {
    /// A link with these settings and this random seed.
    pub fn new(imp: Impairment, seed: u64) -> Result<Self, ConfigError> {
        imp.validate()?;
        Ok(Self {
            imp,
            rng: Rng::new(seed),
            busy_until: None,
            jitter_now: Duration::ZERO,
            jitter_until: None,
            last_out: None,
        })
    }

    /// The settings.
    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// Bytes waiting for the bottleneck at `now` (0 without a rate limit).
    pub fn backlog(&self, now: Instant) -> usize {
        match (self.imp.rate, self.busy_until) {
            (Some(rate), Some(busy)) if busy > now => {
                ((busy - now).as_secs_f64() * rate as f64 / 8.0).round() as usize
            }
            _ => 0,
        }
    }

    /// Decide the fate of a packet of `len` bytes that arrives at `now`. Arrivals must be passed
    /// in time order.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        let lost = self.rng.unit() < self.imp.loss;
        let draw = self.rng.unit();
        let periodic = !self.imp.period.is_zero();
        let jitter = if periodic {
            if self.jitter_until.is_none_or(|until| now >= until) {
                self.jitter_now = self.imp.jitter.mul_f64(draw);
                self.jitter_until = Some(now + self.imp.period);
            }
            self.jitter_now
        } else {
            self.imp.jitter.mul_f64(draw)
        };
        let held = self.rng.unit() < self.imp.reorder;
        if lost {
            return Verdict::Lost;
        }
        let mut at = now;
        if let Some(rate) = self.imp.rate {
            if self.backlog(now) + len > self.imp.queue {
                return Verdict::QueueFull;
            }
            let start = self.busy_until.map_or(now, |busy| busy.max(now));
            let serialize = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            at = start + serialize;
            self.busy_until = Some(at);
        }
        at += self.imp.delay + jitter;
        if periodic {
            // In order: never before the packet ahead of it.
            at = self.last_out.map_or(at, |last| at.max(last));
            self.last_out = Some(at);
        }
        if held {
            at += self.imp.hold;
        }
        Verdict::Deliver(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn clean_link_delivers_immediately() {
        let mut link = Link::new(Impairment::default(), 1).unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(link.admit(now, 1200), Verdict::Deliver(now));
        }
    }

    #[test]
    fn delay_and_jitter_bounds() {
        let imp = Impairment {
            delay: ms(40),
            jitter: ms(200),
            ..Default::default()
        };
        let mut link = Link::new(imp, 7).unwrap();
        let now = Instant::now();
        let mut min = Duration::MAX;
        let mut max = Duration::ZERO;
        let mut overtaken = 0;
        let mut last = now;
        for _ in 0..10_000 {
            let Verdict::Deliver(at) = link.admit(now, 100) else {
                panic!("nothing should be dropped")
            };
            let d = at - now;
            min = min.min(d);
            max = max.max(d);
            if at < last {
                overtaken += 1;
            }
            last = at;
        }
        assert!(min >= ms(40) && min < ms(45), "min {min:?}");
        assert!(max <= ms(240) && max > ms(235), "max {max:?}");
        // Independent jitter reorders about half of consecutive pairs.
        assert!((4000..6000).contains(&overtaken), "{overtaken}");
    }

    #[test]
    fn loss_rate_is_near_configured_and_seeded() {
        let imp: Impairment = "loss=5%".parse().unwrap();
        let run = |seed| {
            let mut link = Link::new(imp.clone(), seed).unwrap();
            let now = Instant::now();
            (0..100_000)
                .map(|_| link.admit(now, 10))
                .map(|v| v == Verdict::Lost)
                .collect::<Vec<_>>()
        };
        let a = run(42);
        let lost = a.iter().filter(|l| **l).count();
        assert!((4700..5300).contains(&lost), "{lost}");
        assert_eq!(a, run(42), "the same seed gives the same drops");
        assert_ne!(a, run(43), "another seed gives other drops");
    }

    #[test]
    fn periodic_jitter_keeps_order_and_wanders() {
        let imp: Impairment = "delay=40ms,jitter=200ms,period=50ms".parse().unwrap();
        let mut link = Link::new(imp, 8).unwrap();
        let t0 = Instant::now();
        let mut last = t0;
        let mut delays = Vec::new();
        for i in 0..20_000u32 {
            // A packet every 0.5 ms for 10 s.
            let now = t0 + Duration::from_micros(500) * i;
            let Verdict::Deliver(at) = link.admit(now, 100) else {
                panic!("nothing should be dropped")
            };
            assert!(at >= last, "packet {i} overtook the one before it");
            last = at;
            delays.push((at - now).as_millis() as u64);
        }
        assert!(
            delays.iter().all(|d| (40..=240).contains(d)),
            "delay stays within delay + jitter"
        );
        // The delay wanders: both low and high values occur, and it is held within a period.
        assert!(delays.iter().any(|d| *d < 60) && delays.iter().any(|d| *d > 220));
        let changes = delays.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes > 100 && changes < 10_000, "{changes}");
    }

    #[test]
    fn reorder_holds_back_a_fraction() {
        let imp: Impairment = "delay=10ms,reorder=10%,hold=30ms".parse().unwrap();
        let mut link = Link::new(imp, 3).unwrap();
        let now = Instant::now();
        let held = (0..10_000)
            .filter(|_| link.admit(now, 10) == Verdict::Deliver(now + ms(40)))
            .count();
        assert!((900..1100).contains(&held), "{held}");
    }

    #[test]
    fn bottleneck_serializes_at_rate() {
        // 1 Mbit/s: a 1250-byte packet takes 10 ms.
        let imp: Impairment = "rate=1mbit,queue=100k".parse().unwrap();
        let mut link = Link::new(imp, 0).unwrap();
        let now = Instant::now();
        for i in 1..=10u32 {
            assert_eq!(link.admit(now, 1250), Verdict::Deliver(now + ms(10) * i));
        }
        assert_eq!(link.backlog(now), 12_500);
        assert_eq!(link.backlog(now + ms(50)), 6250);
        // After the queue drained, a packet again takes only its own serialization time.
        let later = now + ms(200);
        assert_eq!(link.admit(later, 1250), Verdict::Deliver(later + ms(10)));
    }

    #[test]
    fn full_queue_drops_the_tail() {
        let imp: Impairment = "rate=1mbit,queue=5000".parse().unwrap();
        let mut link = Link::new(imp, 0).unwrap();
        let now = Instant::now();
        let verdicts: Vec<_> = (0..6).map(|_| link.admit(now, 1250)).collect();
        assert!(verdicts[..4].iter().all(|v| matches!(v, Verdict::Deliver(_))));
        assert_eq!(verdicts[4], Verdict::QueueFull);
        assert_eq!(verdicts[5], Verdict::QueueFull);
        // Once 10 ms of it drained, one more packet fits.
        assert!(matches!(link.admit(now + ms(10), 1250), Verdict::Deliver(_)));
    }

    #[test]
    fn spec_round_trip() {
        let imp: Impairment =
            "delay=40ms, jitter=5ms,period=20ms,loss=1%,reorder=0.02,hold=15ms,rate=4mbit,queue=32k"
                .parse()
                .unwrap();
        assert_eq!(imp.delay, ms(40));
        assert_eq!(imp.jitter, ms(5));
        assert_eq!(imp.period, ms(20));
        assert!((imp.loss - 0.01).abs() < 1e-12);
        assert!((imp.reorder - 0.02).abs() < 1e-12);
        assert_eq!(imp.hold, ms(15));
        assert_eq!(imp.rate, Some(4_000_000));
        assert_eq!(imp.queue, 32 * 1024);
        assert_eq!(imp.to_string().parse::<Impairment>().unwrap(), imp);
        assert_eq!("".parse::<Impairment>().unwrap(), Impairment::default());
        assert_eq!(Impairment::default().to_string(), "clean");
    }

    #[test]
    fn spec_errors() {
        let err = |s: &str| s.parse::<Impairment>().unwrap_err();
        assert_eq!(err("delay"), ConfigError::NotKeyValue("delay".into()));
        assert_eq!(err("latency=4ms"), ConfigError::UnknownKey("latency".into()));
        assert!(matches!(
            err("loss=150%"),
            ConfigError::Probability { what: "loss", .. }
        ));
        assert!(matches!(
            err("reorder=-1%"),
            ConfigError::Value { .. } | ConfigError::Probability { .. }
        ));
        assert_eq!(err("rate=0"), ConfigError::ZeroRate);
        assert_eq!(err("rate=1mbit,queue=100"), ConfigError::QueueTooSmall(100));
        assert!(matches!(err("delay=soon"), ConfigError::Value { key, .. } if key == "delay"));
        assert!(matches!(err("rate=4xbit"), ConfigError::Value { key, .. } if key == "rate"));
        assert!(matches!(err("queue=lots"), ConfigError::Value { key, .. } if key == "queue"));
        // A direct struct with a NaN probability is refused too.
        let nan = Impairment {
            loss: f64::NAN,
            ..Default::default()
        };
        assert!(matches!(Link::new(nan, 0), Err(ConfigError::Probability { .. })));
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut rng = Rng::new(9);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| (9_500..10_500).contains(b)), "{buckets:?}");
    }
}
