//! Admission: who may start a handshake at all. A per-source rate limit (a token bucket
//! per address, via `governor`) and session counts (per source and in total), checked
//! before any handshake work so a flood costs almost nothing.
//!
//! A session is counted from the moment it is admitted, not once its handshake or SETUP
//! completes, so a peer cannot open unlimited half-finished handshakes. IPv6 sources are
//! grouped by their /64: one host usually owns a whole /64 and could otherwise rotate
//! through it.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config;

/// How often idle addresses are forgotten by the rate limiter.
const FORGET_EVERY: Duration = Duration::from_secs(10);

/// How long a source that outran its unvalidated rate must answer Retry.
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Sources tracked as suspect at once; past this, every unvalidated attempt gets Retry.
const MAX_SUSPECTS: usize = 65_536;

/// Sources under Retry, and whether everyone is.
#[derive(Debug, Default)]
struct Suspects {
    since: HashMap<IpAddr, Instant>,
    everyone_until: Option<Instant>,
}

/// Resolved `[limits]` on admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// New connections per second per source (also the burst).
    pub connections_per_second_per_ip: u32,
    /// Concurrent sessions per source.
    pub sessions_per_ip: u32,
    /// Concurrent sessions in total.
    pub max_sessions: u32,
}

impl Policy {
    /// The policy `[limits]` describes, with defaults for what it leaves out.
    pub fn from_config(limits: &config::Limits) -> Self {
        Self {
            connections_per_second_per_ip: limits
                .connections_per_second_per_ip
                .unwrap_or(config::DEFAULT_CONNECTIONS_PER_SECOND_PER_IP),
            sessions_per_ip: limits.sessions_per_ip.unwrap_or(config::DEFAULT_SESSIONS_PER_IP),
            max_sessions: limits.max_sessions.unwrap_or(config::DEFAULT_MAX_SESSIONS),
        }
    }
}

/// Why admission said no; each is a stable metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The source opened connections faster than its rate.
    RateLimit,
    /// The relay holds its maximum number of sessions.
    MaxSessions,
    /// The source holds its maximum number of sessions.
    SessionsPerIp,
}

impl Denied {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::RateLimit => "rate_limit",
            Self::MaxSessions => "max_sessions",
            Self::SessionsPerIp => "sessions_per_ip",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<IpAddr, u32>,
}

/// The admission state shared by every listener.
#[derive(Debug)]
pub struct Admission {
    policy: Policy,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Attempts from addresses nobody has validated yet, at the same rate: a source past it
    /// is asked for a QUIC Retry instead of being charged to `limiter`.
    unvalidated: DefaultKeyedRateLimiter<IpAddr>,
    /// Sources that outran `unvalidated` recently: every unvalidated attempt from them is
    /// asked for a Retry until they have been quiet for [`SUSPECT_FOR`].
    suspects: Mutex<Suspects>,
    counts: Mutex<Counts>,
    forgotten: Mutex<Instant>,
}

impl Admission {
    /// Admission under `policy`.
    pub fn new(policy: Policy) -> Arc<Self> {
        let rate = NonZeroU32::new(policy.connections_per_second_per_ip).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            policy,
            limiter: RateLimiter::keyed(Quota::per_second(rate)),
            unvalidated: RateLimiter::keyed(Quota::per_second(rate)),
            suspects: Mutex::default(),
            counts: Mutex::default(),
            forgotten: Mutex::new(Instant::now()),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Take a rate token and a session slot for `ip`; the slot is held until the ticket drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Denied> {
        let source = source(ip);
        self.forget_idle();
        if self.limiter.check_key(&source).is_err() {
            return Err(Denied::RateLimit);
        }
        let mut counts = self.counts();
        if counts.total >= self.policy.max_sessions as usize {
            return Err(Denied::MaxSessions);
        }
        let held = counts.per_source.entry(source).or_default();
        if *held >= self.policy.sessions_per_ip {
            return Err(Denied::SessionsPerIp);
        }
        *held += 1;
        counts.total += 1;
        Ok(Ticket {
            admission: self.clone(),
            source,
        })
    }

    /// Whether an attempt from `ip` whose address is not validated should first prove it
    /// with a QUIC Retry: true once that source sends unvalidated attempts faster than its
    /// rate. Then only validated attempts are charged to the source's rate limit, so a
    /// spoofer forging someone's address cannot spend that address's budget, while a quiet
    /// source pays no extra round trip.
    ///
    /// A source stays suspect for [`SUSPECT_FOR`] after its last excess attempt, so a flood
    /// cannot trickle through at the refill rate and keep spending the budget. More than
    /// [`MAX_SUSPECTS`] suspects at once (a flood from many forged sources) puts every
    /// unvalidated attempt under Retry for that long.
    pub fn needs_retry(&self, ip: IpAddr) -> bool {
        self.forget_idle();
        let source = source(ip);
        let now = Instant::now();
        let excess = self.unvalidated.check_key(&source).is_err();
        let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
        if excess {
            if suspects.since.len() < MAX_SUSPECTS || suspects.since.contains_key(&source) {
                suspects.since.insert(source, now);
            } else {
                suspects.everyone_until = Some(now + SUSPECT_FOR);
            }
            return true;
        }
        suspects.everyone_until.is_some_and(|until| now < until)
            || suspects
                .since
                .get(&source)
                .is_some_and(|last| now.duration_since(*last) < SUSPECT_FOR)
    }

    /// Sessions admitted and not yet ended.
    pub fn sessions(&self) -> usize {
        self.counts().total
    }

    /// Whether a new session would be refused for the total limit.
    pub fn full(&self) -> bool {
        self.sessions() >= self.policy.max_sessions as usize
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop rate-limiter state of sources that have been quiet (amortised: at most once
    /// per [`FORGET_EVERY`]).
    fn forget_idle(&self) {
        let mut last = self.forgotten.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= FORGET_EVERY {
            *last = Instant::now();
            self.limiter.retain_recent();
            self.unvalidated.retain_recent();
            let mut suspects = self.suspects.lock().unwrap_or_else(|e| e.into_inner());
            suspects.since.retain(|_, last| last.elapsed() < SUSPECT_FOR);
            if suspects
                .everyone_until
                .is_some_and(|until| Instant::now() >= until)
            {
                suspects.everyone_until = None;
            }
        }
    }
}

/// A held session slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(held) = counts.per_source.get_mut(&self.source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// The source a limit applies to: an IPv4 address, or the /64 of an IPv6 address.
pub fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate: u32, per_ip: u32, max: u32) -> Policy {
        Policy {
            connections_per_second_per_ip: rate,
            sessions_per_ip: per_ip,
            max_sessions: max,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_rate_limit_applies_per_source() {
        let admission = Admission::new(policy(3, 100, 100));
        let held: Vec<_> = (0..3).map(|_| admission.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(admission.admit(ip("10.0.0.1")).unwrap_err(), Denied::RateLimit);
        // Another source has its own bucket.
        assert!(admission.admit(ip("10.0.0.2")).is_ok());
        drop(held);
    }

    #[test]
    fn a_source_past_its_unvalidated_rate_must_retry_and_others_need_not() {
        let admission = Admission::new(policy(3, 100, 100));
        let flooded = ip("2001:db8::1");
        let answers: Vec<bool> = (0..6).map(|_| admission.needs_retry(flooded)).collect();
        assert_eq!(answers, [false, false, false, true, true, true]);
        // The same /64 is the same source; another source is not affected.
        assert!(admission.needs_retry(ip("2001:db8::2")));
        assert!(!admission.needs_retry(ip("10.0.0.1")));
        // Validated attempts are charged to the other bucket, which the flood left full.
        let held: Vec<_> = (0..3).map(|_| admission.admit(flooded).unwrap()).collect();
        drop(held);
    }

    #[test]
    fn past_the_suspect_table_every_unvalidated_attempt_must_retry() {
        let admission = Admission::new(policy(1, 100, 100));
        // Each source passes once, then is over its rate and becomes a suspect.
        for i in 0..MAX_SUSPECTS as u32 {
            let source = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(!admission.needs_retry(source));
            assert!(admission.needs_retry(source));
        }
        // The table is full: one more source over its rate puts everyone under Retry,
        // a source never seen before included.
        let one_more = ip("11.0.0.1");
        assert!(!admission.needs_retry(one_more));
        assert!(admission.needs_retry(one_more));
        assert!(admission.needs_retry(ip("12.0.0.1")));
    }

    #[test]
    fn session_slots_are_held_until_the_ticket_drops() {
        let admission = Admission::new(policy(1000, 2, 3));
        let a = admission.admit(ip("10.0.0.1")).unwrap();
        let b = admission.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Denied::SessionsPerIp
        );
        let c = admission.admit(ip("10.0.0.2")).unwrap();
        assert!(admission.full());
        assert_eq!(admission.admit(ip("10.0.0.3")).unwrap_err(), Denied::MaxSessions);
        drop(a);
        assert!(!admission.full());
        assert!(admission.admit(ip("10.0.0.1")).is_ok());
        assert_eq!(admission.sessions(), 2);
        drop((b, c));
        assert_eq!(admission.sessions(), 0);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_their_slash_64() {
        assert_eq!(source(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source(ip("2001:db8:1:2:ffff::9")), ip("2001:db8:1:2::"));
        assert_ne!(source(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        let admission = Admission::new(policy(1000, 1, 100));
        let _held = admission.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(
            admission.admit(ip("2001:db8::2")).unwrap_err(),
            Denied::SessionsPerIp,
            "another address of the same /64 shares the limit"
        );
    }

    #[test]
    fn a_zero_rate_still_admits_one_per_second() {
        let admission = Admission::new(policy(0, 10, 10));
        assert!(admission.admit(ip("10.0.0.1")).is_ok());
        assert_eq!(admission.admit(ip("10.0.0.1")).unwrap_err(), Denied::RateLimit);
    }
}
