//! QUIC knobs: `[server.quic]`, `[client.quic]` and the shared top-level `[quic]` (0.17 spelling).
//!
//! The three tables take the same keys; each gets its own struct only because clap needs a
//! distinct flag prefix (`--server-quic-*`, `--client-quic-*`, `--quic-*`) per table.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::value::{HumanDuration, parse_duration};

/// QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CongestionControl {
    /// Loss-based (CUBIC). Also accepted as `cubic`.
    #[serde(alias = "cubic")]
    #[value(alias = "cubic")]
    Loss,
    /// Delay-based (BBR, capped once loss comes from a full queue), the default as in the
    /// reference relay. Also accepted as `bbr`.
    #[serde(alias = "bbr")]
    #[value(alias = "bbr")]
    Delay,
}

/// Relay links open a stream per group and per subscription, so stacks' usual default
/// (100-1024 concurrent streams) starves them; the ecosystem's relay uses this value.
pub const DEFAULT_MAX_STREAMS: u64 = 10_000;

/// Default idle timeout when `idle_timeout` is unset.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default keep-alive interval when `keep_alive` is unset.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5);

macro_rules! quic_table {
    (
        $(#[$meta:meta])*
        $name:ident, $flag:literal, $env:literal,
        { $($extra:tt)* }
    ) => {
        $(#[$meta])*
        #[serde_with::serde_as]
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Maximum concurrent streams the peer may open (default 10000 on relay links).
            #[arg(
                id = concat!($flag, "-max-streams"),
                long = concat!($flag, "-max-streams"),
                env = concat!($env, "_MAX_STREAMS"),
                value_name = "COUNT"
            )]
            pub max_streams: Option<u64>,

            /// Close a connection after this long without traffic (default 30s).
            #[arg(
                id = concat!($flag, "-idle-timeout"),
                long = concat!($flag, "-idle-timeout"),
                env = concat!($env, "_IDLE_TIMEOUT"),
                value_name = "DURATION",
                value_parser = parse_duration
            )]
            #[serde_as(as = "Option<HumanDuration>")]
            pub idle_timeout: Option<Duration>,

            /// Send a keep-alive after this long without traffic (default 5s).
            #[arg(
                id = concat!($flag, "-keep-alive"),
                long = concat!($flag, "-keep-alive"),
                env = concat!($env, "_KEEP_ALIVE"),
                value_name = "DURATION",
                value_parser = parse_duration
            )]
            #[serde_as(as = "Option<HumanDuration>")]
            pub keep_alive: Option<Duration>,

            /// Congestion controller: loss (CUBIC) or delay (BBR).
            #[arg(
                id = concat!($flag, "-congestion-control"),
                long = concat!($flag, "-congestion-control"),
                env = concat!($env, "_CONGESTION_CONTROL"),
                value_name = "ALGORITHM"
            )]
            pub congestion_control: Option<CongestionControl>,

            $($extra)*
        }

        impl $name {
            /// The settings of this table, for merging with the others.
            pub fn settings(&self) -> QuicSettings {
                QuicSettings {
                    max_streams: self.max_streams,
                    idle_timeout: self.idle_timeout,
                    keep_alive: self.keep_alive,
                    congestion_control: self.congestion_control,
                }
            }
        }
    };
}

/// The keys of one QUIC table, merged across `[server.quic]` / `[client.quic]` and `[quic]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicSettings {
    /// Streams the peer may open per direction.
    pub max_streams: Option<u64>,
    /// Idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Keep-alive interval.
    pub keep_alive: Option<Duration>,
    /// Congestion controller.
    pub congestion_control: Option<CongestionControl>,
}

impl QuicSettings {
    /// Each setting from `self`, else from `fallback`.
    pub fn or(self, fallback: Self) -> Self {
        Self {
            max_streams: self.max_streams.or(fallback.max_streams),
            idle_timeout: self.idle_timeout.or(fallback.idle_timeout),
            keep_alive: self.keep_alive.or(fallback.keep_alive),
            congestion_control: self.congestion_control.or(fallback.congestion_control),
        }
    }

    /// `base` with these settings applied.
    pub fn apply(self, mut base: moq_native::quic::Config) -> moq_native::quic::Config {
        if let Some(n) = self.max_streams {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            base.max_bidi_streams = n;
            base.max_uni_streams = n;
        }
        if let Some(idle) = self.idle_timeout {
            base.idle_timeout = idle;
        }
        if let Some(keep_alive) = self.keep_alive {
            base.keep_alive = Some(keep_alive);
        }
        if let Some(cc) = self.congestion_control {
            base.congestion = match cc {
                CongestionControl::Loss => moq_native::quic::Congestion::Cubic,
                CongestionControl::Delay => moq_native::quic::Congestion::Bbr,
            };
        }
        base
    }
}

/// The most streams a peer may be granted per direction.
pub const MAX_STREAMS_LIMIT: u64 = 1 << 20;

quic_table!(
    /// `[server.quic]`: QUIC settings for accepted connections.
    ServerQuic, "server-quic", "MOQ_SERVER_QUIC", {}
);

quic_table!(
    /// `[client.quic]`: QUIC settings for connections the relay dials (cluster peers).
    ClientQuic, "client-quic", "MOQ_CLIENT_QUIC", {}
);

quic_table!(
    /// `[quic]`: per-connection QUIC settings shared by both directions (0.17 spelling).
    /// `[server.quic]` / `[client.quic]` values win over these.
    Quic, "quic", "MOQ_QUIC", {}
);
