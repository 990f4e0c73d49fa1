//! When to renew, and how long to wait after a failure: pure functions of times and a
//! random fraction in `[0, 1)`, so they are tested without a clock.
//!
//! Renewal happens at two thirds of the certificate's lifetime (day 60 of a 90-day Let's
//! Encrypt certificate, leaving a month of retries), pulled earlier by up to a twentieth
//! of the lifetime at random so that relays which got their certificates together do not
//! all renew in the same second. A CA that publishes renewal information (ARI,
//! RFC 9773) can move the time earlier: a random time inside its suggested window.
//!
//! After a failure the wait starts at the configured `retry`, doubles with each failure
//! in a row up to an hour, and is stretched by up to 20% at random (never shortened). An answer saying we are rate limited
//! waits at least an hour. With the default two-minute start, five failed validations
//! take half an hour and the sixth comes an hour after the first, inside Let's Encrypt's
//! limit of five failed validations per name per hour.

use std::{
    hash::{BuildHasher, Hasher},
    time::{Duration, SystemTime},
};

/// The longest wait between attempts after failures.
pub const MAX_RETRY: Duration = Duration::from_secs(60 * 60);

/// The shortest wait after a CA says we are rate limited.
pub const RATE_LIMITED_RETRY: Duration = Duration::from_secs(60 * 60);

/// Never plan a renewal sooner than this after an issuance, whatever the lifetime: a CA
/// handing out certificates that live seconds must not make us hammer it.
pub const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(10);

/// The point of the lifetime at which a certificate is renewed: two thirds.
const RENEW_AT: f64 = 2.0 / 3.0;

/// The most the renewal point is pulled earlier at random, as a fraction of the lifetime.
const RENEW_JITTER: f64 = 1.0 / 20.0;

/// When to renew a certificate valid from `not_before` to `not_after`, with `random`
/// in `[0, 1)` choosing the jitter.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, random: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let fraction = RENEW_AT - RENEW_JITTER * random.clamp(0.0, 1.0);
    let offset = Duration::try_from_secs_f64(lifetime.as_secs_f64() * fraction).unwrap_or_default();
    not_before.checked_add(offset).unwrap_or(not_after)
}

/// A random time inside an ARI suggested window (RFC 9773 §4.2: clients pick uniformly
/// at random within it). A window that ends before it starts means its start.
pub fn window_time(start: SystemTime, end: SystemTime, random: f64) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    let offset =
        Duration::try_from_secs_f64(width.as_secs_f64() * random.clamp(0.0, 1.0)).unwrap_or_default();
    start.checked_add(offset).unwrap_or(start)
}

/// How long to wait after the `failures`-th failure in a row (1 for the first):
/// `initial` doubling per failure, at most [`MAX_RETRY`] (or `initial` if that is
/// longer), at least [`RATE_LIMITED_RETRY`] when the CA said we are rate limited,
/// then stretched by up to 20% by `random`.
pub fn retry_delay(initial: Duration, failures: u32, rate_limited: bool, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let mut base = initial
        .saturating_mul(1u32 << doublings)
        .min(MAX_RETRY.max(initial));
    if rate_limited {
        base = base.max(RATE_LIMITED_RETRY);
    }
    let spread = 1.0 + 0.2 * random.clamp(0.0, 1.0);
    Duration::try_from_secs_f64(base.as_secs_f64() * spread).unwrap_or(base)
}

/// A random fraction in `[0, 1)`, good enough to spread timers (not for keys): the
/// standard library seeds each `RandomState` from the operating system.
pub fn random() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    // 53 random bits make every f64 in [0, 1) with that spacing.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * 1000 + DAY * days as u32
    }

    #[test]
    fn a_90_day_certificate_renews_between_day_55_and_day_60() {
        let (from, to) = (at(0), at(90));
        assert_eq!(renewal_time(from, to, 0.0), at(60));
        let earliest = renewal_time(from, to, 0.999_999);
        assert!(earliest > at(55) && earliest < at(56), "{earliest:?}");
        // Out-of-range randomness is clamped, never panics.
        assert_eq!(renewal_time(from, to, -3.0), at(60));
        assert_eq!(renewal_time(from, to, f64::NAN), renewal_time(from, to, f64::NAN));
        // A certificate whose notAfter precedes its notBefore renews at once.
        assert_eq!(renewal_time(to, from, 0.5), to);
    }

    #[test]
    fn retries_double_up_to_an_hour_and_rate_limits_wait_an_hour() {
        let two = Duration::from_secs(120);
        let waits: Vec<u64> = (1..=8)
            .map(|n| retry_delay(two, n, false, 0.0).as_secs())
            .collect();
        assert_eq!(waits, [120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(retry_delay(two, 0, false, 0.0), two);
        assert_eq!(retry_delay(two, u32::MAX, false, 0.0), MAX_RETRY);
        // The spread only lengthens, by at most 20%.
        assert_eq!(retry_delay(two, 1, false, 0.5).as_secs(), 132);
        assert_eq!(retry_delay(two, 1, false, 1.0).as_secs(), 144);
        // Rate limited: at least an hour from the first failure.
        assert_eq!(retry_delay(two, 1, true, 0.0), RATE_LIMITED_RETRY);
        // A configured start above the cap is respected.
        let two_hours = Duration::from_secs(7200);
        assert_eq!(retry_delay(two_hours, 3, false, 0.0), two_hours);
    }

    #[test]
    fn five_failed_validations_fit_in_lets_encrypts_hourly_limit() {
        // Attempt times with the default start and the least spread (the worst case).
        let mut t = Duration::ZERO;
        let mut attempts = vec![t];
        for n in 1..=6 {
            t += retry_delay(Duration::from_secs(120), n, false, 0.0);
            attempts.push(t);
        }
        // At most five attempts in any hour-long window starting at an attempt.
        for start in &attempts {
            let within = attempts
                .iter()
                .filter(|a| **a >= *start && **a < *start + Duration::from_secs(3600))
                .count();
            assert!(
                within <= 5,
                "{within} attempts within an hour of {start:?}: {attempts:?}"
            );
        }
    }

    #[test]
    fn window_times_fall_inside_the_window() {
        assert_eq!(window_time(at(10), at(12), 0.0), at(10));
        assert_eq!(window_time(at(10), at(12), 0.5), at(11));
        assert_eq!(window_time(at(12), at(10), 0.5), at(12));
    }

    #[test]
    fn random_fractions_are_fractions_and_vary() {
        let values: Vec<f64> = (0..64).map(|_| random()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.windows(2).any(|w| w[0] != w[1]));
    }
}
