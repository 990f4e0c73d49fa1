//! `[log]`: log level and format. `RUST_LOG` (handled by the logging setup) overrides `level`.

use clap::Args;
use serde::Deserialize;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// Level or filter: "info" (default), "debug", "info,moq_relay=trace"; RUST_LOG wins.
    #[arg(
        id = "log-level",
        long = "log-level",
        env = "MOQ_LOG_LEVEL",
        value_name = "LEVEL"
    )]
    pub level: Option<String>,

    /// Log format: human (default) or json.
    #[arg(
        id = "log-format",
        long = "log-format",
        env = "MOQ_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub format: Option<LogFormat>,
}

/// The plain level names a filter without `=` or `,` must be one of.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
