//! `[limits]`: abuse protection. Excess is refused early and cheaply, and counted
//! (`moq_relay_sessions_refused_total{reason}` for connections and sessions,
//! `moq_relay_limit_refusals_total{limit}` for what a session may hold).

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::value::{HumanDuration, HumanSize, parse_bytes, parse_duration};

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
/// Default payload bytes one group may hold: the ecosystem's cap (and its largest frame);
/// a 2 s group of 100 Mbit/s video is 25 MB.
pub const DEFAULT_GROUP_SIZE: u64 = 32 << 20;
/// Default frames one group may hold: a minute of 1 kHz telemetry in one group fits,
/// and the per-frame bookkeeping of a full group stays near 6 MB.
pub const DEFAULT_GROUP_FRAMES: u64 = 100_000;
/// Default group streams one session may be sending at once: a publisher has about one
/// open group per track (two while they overlap).
pub const DEFAULT_GROUPS_PER_SESSION: u32 = 256;
/// Default FETCH streams one session may have open at once: a late joiner fetches a group
/// or two, and each FETCH of a group not there yet holds its slot for up to 5 s.
pub const DEFAULT_FETCHES_PER_SESSION: u32 = 64;
/// Default TRACK (track info) streams one session may have open at once: about one per
/// track being subscribed to.
pub const DEFAULT_TRACK_REQUESTS_PER_SESSION: u32 = 256;
/// Default announce streams (ANNOUNCE_REQUEST) one session may have open at once: a
/// client watches a few prefixes.
pub const DEFAULT_ANNOUNCE_REQUESTS_PER_SESSION: u32 = 64;
/// Default streams one session may have opened whose first message has not arrived:
/// normally a stream's header comes in its first packet, so few are ever pending.
pub const DEFAULT_PENDING_STREAMS_PER_SESSION: u32 = 256;
/// Default time a stream the peer opens has to deliver its type and first message.
pub const DEFAULT_STREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `[limits]`.
#[serde_with::serde_as]
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

    /// Payload bytes one group may hold, e.g. "32MiB" (default); past it the relay ends
    /// the group with GROUP_TOO_LARGE and subscribers keep the frames before it.
    #[arg(
        id = "limits-group-size",
        long = "limits-group-size",
        env = "MOQ_LIMITS_GROUP_SIZE",
        value_name = "SIZE",
        value_parser = parse_bytes
    )]
    #[serde_as(as = "Option<HumanSize>")]
    pub group_size: Option<u64>,

    /// Frames one group may hold (default 100000); past it the group is ended likewise.
    #[arg(
        id = "limits-group-frames",
        long = "limits-group-frames",
        env = "MOQ_LIMITS_GROUP_FRAMES",
        value_name = "N"
    )]
    pub group_frames: Option<u64>,

    /// Group streams one session may be sending the relay at once (default 256).
    #[arg(
        id = "limits-groups-per-session",
        long = "limits-groups-per-session",
        env = "MOQ_LIMITS_GROUPS_PER_SESSION",
        value_name = "N"
    )]
    pub groups_per_session: Option<u32>,

    /// FETCH requests one session may have open at once (default 64; 0 turns FETCH off).
    #[arg(
        id = "limits-fetches-per-session",
        long = "limits-fetches-per-session",
        env = "MOQ_LIMITS_FETCHES_PER_SESSION",
        value_name = "N"
    )]
    pub fetches_per_session: Option<u32>,

    /// TRACK (track info) requests one session may have open at once (default 256).
    #[arg(
        id = "limits-track-requests-per-session",
        long = "limits-track-requests-per-session",
        env = "MOQ_LIMITS_TRACK_REQUESTS_PER_SESSION",
        value_name = "N"
    )]
    pub track_requests_per_session: Option<u32>,

    /// Announce requests (ANNOUNCE_REQUEST streams) one session may have open at once
    /// (default 64).
    #[arg(
        id = "limits-announce-requests-per-session",
        long = "limits-announce-requests-per-session",
        env = "MOQ_LIMITS_ANNOUNCE_REQUESTS_PER_SESSION",
        value_name = "N"
    )]
    pub announce_requests_per_session: Option<u32>,

    /// Streams one session may have opened whose type and first message have not
    /// arrived yet (default 256); more are reset at once.
    #[arg(
        id = "limits-pending-streams-per-session",
        long = "limits-pending-streams-per-session",
        env = "MOQ_LIMITS_PENDING_STREAMS_PER_SESSION",
        value_name = "N"
    )]
    pub pending_streams_per_session: Option<u32>,

    /// How long a stream a peer opens may take to deliver its type and first message
    /// before it is stopped with CONTROL_TIMEOUT (default "10s").
    #[arg(
        id = "limits-stream-header-timeout",
        long = "limits-stream-header-timeout",
        env = "MOQ_LIMITS_STREAM_HEADER_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub stream_header_timeout: Option<Duration>,
}
