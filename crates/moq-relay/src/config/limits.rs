//! `[limits]`: abuse protection. Excess is refused early and cheaply, and counted.

use clap::Args;
use serde::Deserialize;

/// Default new connections per second from one IP address.
pub const DEFAULT_CONNECTIONS_PER_SECOND_PER_IP: u32 = 20;
/// Default concurrent sessions from one IP address.
pub const DEFAULT_SESSIONS_PER_IP: u32 = 200;
/// Default concurrent sessions in total.
pub const DEFAULT_MAX_SESSIONS: u32 = 20_000;
/// Default subscriptions one session may hold on the relay.
pub const DEFAULT_SUBSCRIPTIONS_PER_SESSION: u32 = 4096;
/// Default broadcasts one session may announce.
pub const DEFAULT_ANNOUNCEMENTS_PER_SESSION: u32 = 1024;

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// New connections per second from one IP address (burst of the same size; default 20).
    #[arg(
        id = "limits-connections-per-second-per-ip",
        long = "limits-connections-per-second-per-ip",
        env = "MOQ_LIMITS_CONNECTIONS_PER_SECOND_PER_IP",
        value_name = "N"
    )]
    pub connections_per_second_per_ip: Option<u32>,

    /// Concurrent sessions from one IP address (default 200).
    #[arg(
        id = "limits-sessions-per-ip",
        long = "limits-sessions-per-ip",
        env = "MOQ_LIMITS_SESSIONS_PER_IP",
        value_name = "N"
    )]
    pub sessions_per_ip: Option<u32>,

    /// Concurrent sessions in total (default 20000).
    #[arg(
        id = "limits-max-sessions",
        long = "limits-max-sessions",
        env = "MOQ_LIMITS_MAX_SESSIONS",
        value_name = "N"
    )]
    pub max_sessions: Option<u32>,

    /// Subscriptions one session may hold on the relay (default 4096).
    #[arg(
        id = "limits-subscriptions-per-session",
        long = "limits-subscriptions-per-session",
        env = "MOQ_LIMITS_SUBSCRIPTIONS_PER_SESSION",
        value_name = "N"
    )]
    pub subscriptions_per_session: Option<u32>,

    /// Broadcasts one session may announce (default 1024).
    #[arg(
        id = "limits-announcements-per-session",
        long = "limits-announcements-per-session",
        env = "MOQ_LIMITS_ANNOUNCEMENTS_PER_SESSION",
        value_name = "N"
    )]
    pub announcements_per_session: Option<u32>,
}
