//! QUIC knobs: `[server.quic]`, `[client.quic]` and the shared top-level `[quic]` (0.17 spelling).
//!
//! The three tables take the same keys; each gets its own struct only because clap needs a
//! distinct flag prefix (`--server-quic-*`, `--client-quic-*`, `--quic-*`) per table.

use std::{
    net::{SocketAddrV4, SocketAddrV6},
    path::PathBuf,
    time::Duration,
};

use clap::Args;
use serde::Deserialize;

use super::value::{de_with, parse_duration};

/// QUIC congestion controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CongestionControl {
    /// Loss-based (CUBIC). Also accepted as `cubic`.
    #[serde(alias = "cubic")]
    #[value(alias = "cubic")]
    Loss,
    /// Delay-based (BBR). Also accepted as `bbr`.
    #[serde(alias = "bbr")]
    #[value(alias = "bbr")]
    Delay,
}

/// QUIC implementation to run on (accepted for compatibility; the relay picks its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// quinn.
    Quinn,
    /// noq (the QUIC stack iroh runs on).
    Noq,
    /// quiche.
    Quiche,
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

            /// Use generic segmentation offload when the OS supports it.
            #[arg(
                id = concat!($flag, "-gso"),
                long = concat!($flag, "-gso"),
                env = concat!($env, "_GSO"),
                value_name = "BOOL",
                num_args = 0..=1,
                require_equals = true,
                default_missing_value = "true",
                value_parser = clap::builder::BoolishValueParser::new()
            )]
            pub gso: Option<bool>,

            /// Close a connection after this long without traffic (default 30s).
            #[arg(
                id = concat!($flag, "-idle-timeout"),
                long = concat!($flag, "-idle-timeout"),
                env = concat!($env, "_IDLE_TIMEOUT"),
                value_name = "DURATION",
                value_parser = parse_duration
            )]
            #[serde(deserialize_with = "de_with::duration")]
            pub idle_timeout: Option<Duration>,

            /// Send a keep-alive after this long without traffic (default 5s).
            #[arg(
                id = concat!($flag, "-keep-alive"),
                long = concat!($flag, "-keep-alive"),
                env = concat!($env, "_KEEP_ALIVE"),
                value_name = "DURATION",
                value_parser = parse_duration
            )]
            #[serde(deserialize_with = "de_with::duration")]
            pub keep_alive: Option<Duration>,

            /// Probe for a larger path MTU (off by default).
            #[arg(
                id = concat!($flag, "-mtu-discovery"),
                long = concat!($flag, "-mtu-discovery"),
                env = concat!($env, "_MTU_DISCOVERY"),
                value_name = "BOOL",
                num_args = 0..=1,
                require_equals = true,
                default_missing_value = "true",
                value_parser = clap::builder::BoolishValueParser::new()
            )]
            pub mtu_discovery: Option<bool>,

            /// Congestion controller: loss (CUBIC) or delay (BBR).
            #[arg(
                id = concat!($flag, "-congestion-control"),
                long = concat!($flag, "-congestion-control"),
                env = concat!($env, "_CONGESTION_CONTROL"),
                value_name = "ALGORITHM"
            )]
            pub congestion_control: Option<CongestionControl>,

            /// Directory to write one qlog file per connection into.
            #[arg(
                id = concat!($flag, "-qlog"),
                long = concat!($flag, "-qlog"),
                env = concat!($env, "_QLOG"),
                value_name = "DIR"
            )]
            pub qlog: Option<PathBuf>,

            $($extra)*
        }
    };
}

quic_table!(
    /// `[server.quic]`: QUIC settings for accepted connections.
    ServerQuic, "server-quic", "MOQ_SERVER_QUIC",
    {
        /// IPv4 address advertised as the QUIC preferred address.
        #[arg(
            id = "server-quic-preferred-v4",
            long = "server-quic-preferred-v4",
            env = "MOQ_SERVER_QUIC_PREFERRED_V4",
            value_name = "ADDR"
        )]
        pub preferred_v4: Option<SocketAddrV4>,

        /// IPv6 address advertised as the QUIC preferred address.
        #[arg(
            id = "server-quic-preferred-v6",
            long = "server-quic-preferred-v6",
            env = "MOQ_SERVER_QUIC_PREFERRED_V6",
            value_name = "ADDR"
        )]
        pub preferred_v6: Option<SocketAddrV6>,

        /// QUIC-LB server id encoded into connection ids (kept as written).
        #[arg(
            id = "server-quic-quic-lb-id",
            long = "server-quic-quic-lb-id",
            env = "MOQ_SERVER_QUIC_QUIC_LB_ID",
            value_name = "ID"
        )]
        #[serde(deserialize_with = "de_with::scalar_string")]
        pub quic_lb_id: Option<String>,

        /// QUIC-LB nonce setting (kept as written).
        #[arg(
            id = "server-quic-quic-lb-nonce",
            long = "server-quic-quic-lb-nonce",
            env = "MOQ_SERVER_QUIC_QUIC_LB_NONCE",
            value_name = "NONCE"
        )]
        #[serde(deserialize_with = "de_with::scalar_string")]
        pub quic_lb_nonce: Option<String>,
    }
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
