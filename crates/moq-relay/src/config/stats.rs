//! `[stats]`: usage counters published as MoQ broadcasts (accepted and stored).

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::value::{de_with, parse_seconds_or_duration};

/// `[stats]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Stats {
    /// Publish stats broadcasts (default false).
    #[arg(
        id = "stats-enabled",
        long = "stats-enabled",
        env = "MOQ_STATS_ENABLED",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: Option<bool>,

    /// Path prefix for stats broadcasts (default ".stats").
    #[arg(
        id = "stats-prefix",
        long = "stats-prefix",
        env = "MOQ_STATS_PREFIX",
        value_name = "PATH"
    )]
    pub prefix: Option<String>,

    /// Publish interval: "1s", or a number of seconds (default 1).
    #[arg(
        id = "stats-interval",
        long = "stats-interval",
        env = "MOQ_STATS_INTERVAL",
        value_name = "DURATION",
        value_parser = parse_seconds_or_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub interval: Option<Duration>,

    /// This relay's name in stats paths, e.g. "sjc/1".
    #[arg(
        id = "stats-node",
        long = "stats-node",
        env = "MOQ_STATS_NODE",
        value_name = "NAME"
    )]
    pub node: Option<String>,

    /// Bucket counters by the first N path segments.
    #[arg(
        id = "stats-depth",
        long = "stats-depth",
        env = "MOQ_STATS_DEPTH",
        value_name = "N"
    )]
    pub depth: Option<usize>,
}
