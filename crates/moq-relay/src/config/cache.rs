//! `[cache]`: how much group payload the relay keeps for late joiners and FETCH.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::value::{HumanDuration, MemoryLimit, parse_duration};

/// `[cache]`.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Cache {
    /// Target bytes of cached payload ("8GiB", "512MB", or "75%" of memory); unbounded if unset.
    #[arg(
        id = "cache-capacity",
        long = "cache-capacity",
        env = "MOQ_CACHE_CAPACITY",
        value_name = "SIZE"
    )]
    pub capacity: Option<MemoryLimit>,

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
