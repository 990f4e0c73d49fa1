//! `[cache]`: how much memory groups may hold (for late joiners, FETCH, and the deliveries
//! in flight), and how long a group other than a track's latest stays.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::value::{HumanDuration, MemoryLimit, format_bytes, parse_duration};

/// The share of memory the cache may hold when `capacity` is unset: enough for minutes of
/// hundreds of HD tracks on a small host, while leaving the rest to sessions, QUIC
/// buffers and the allocator's slack.
pub const DEFAULT_CACHE_SHARE: f64 = 0.25;

/// The default budget is never below this, so a tiny container still caches a few
/// groups of each track.
pub const MIN_CACHE_CAPACITY: u64 = 64 << 20;

/// `[cache]`.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Cache {
    /// Bytes all groups may hold in memory ("8GiB", "512MB", or "75%" of memory); default
    /// 25% of memory (the container's limit where there is one), at least 64 MiB.
    #[arg(
        id = "cache-capacity",
        long = "cache-capacity",
        env = "MOQ_CACHE_CAPACITY",
        value_name = "SIZE"
    )]
    pub capacity: Option<MemoryLimit>,

    /// Memory to leave to everything else ("2GiB" or "10%"): the cache holds at most
    /// the memory less this, checked once at start-up.
    #[arg(
        id = "cache-headroom",
        long = "cache-headroom",
        env = "MOQ_CACHE_HEADROOM",
        value_name = "SIZE"
    )]
    pub headroom: Option<MemoryLimit>,

    /// Longest a group other than a track's latest stays cached, e.g. "30s".
    #[arg(
        id = "cache-duration",
        long = "cache-duration",
        env = "MOQ_CACHE_DURATION",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub duration: Option<Duration>,
}

/// The cache's byte budget with `total` bytes of memory (the container's limit, or the
/// host's): `capacity` (default [`DEFAULT_CACHE_SHARE`] of `total`, at least
/// [`MIN_CACHE_CAPACITY`]), and at most `total` less `headroom`. An error says why no
/// budget is left.
pub fn cache_budget(
    capacity: Option<MemoryLimit>,
    headroom: Option<MemoryLimit>,
    total: u64,
) -> Result<u64, String> {
    let capacity = match capacity {
        Some(capacity) => capacity.resolve(total),
        None => ((total as f64 * DEFAULT_CACHE_SHARE) as u64).max(MIN_CACHE_CAPACITY),
    };
    let Some(headroom) = headroom else {
        return Ok(capacity);
    };
    let keep = headroom.resolve(total);
    match total.checked_sub(keep) {
        Some(left) if left > 0 => Ok(capacity.min(left)),
        _ => Err(format!(
            "cache.headroom is {headroom} but the relay has {} of memory: nothing is left for the cache; \
             lower cache.headroom (or remove it and set cache.capacity)",
            format_bytes(total)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_default_budget_is_a_quarter_of_memory_and_at_least_64_mib() {
        assert_eq!(cache_budget(None, None, 16 * GIB), Ok(4 * GIB));
        assert_eq!(cache_budget(None, None, 128 << 20), Ok(64 << 20));
    }

    #[test]
    fn headroom_caps_the_budget_or_refuses_it() {
        let size = |s: &str| Some(s.parse::<MemoryLimit>().unwrap());
        // 16 GiB less 14 GiB of headroom leaves 2 GiB: below the 4 GiB default.
        assert_eq!(cache_budget(None, size("14GiB"), 16 * GIB), Ok(2 * GIB));
        assert_eq!(cache_budget(size("1GiB"), size("10%"), 16 * GIB), Ok(GIB));
        assert_eq!(
            cache_budget(size("50%"), size("75%"), 16 * GIB),
            Ok(4 * GIB),
            "a share of memory on both sides"
        );
        let err = cache_budget(None, size("16GiB"), 16 * GIB).unwrap_err();
        assert!(err.contains("nothing is left for the cache"), "{err}");
        assert!(cache_budget(None, size("20GiB"), 16 * GIB).is_err());
    }
}
