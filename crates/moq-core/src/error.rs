//! Errors of the media model and the session drivers, with their wire codes.

use moq_proto::DecodeError;

/// Why a broadcast, track, group, subscription or session ended badly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The other side (or our own side) cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// The broadcast or track does not exist.
    #[error("not found")]
    NotFound,
    /// The peer is not allowed to do this.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The peer sent something malformed or out of order.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's bytes could not be decoded.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The QUIC connection or stream failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The peer reset a stream with this code.
    #[error("stream reset by peer with code {0}")]
    Reset(u32),
    /// A group with this sequence already exists in the track.
    #[error("duplicate group {0}")]
    Duplicate(u64),
    /// The subscriber fell too far behind and was skipped ahead.
    #[error("too far behind")]
    TooFarBehind,
    /// Something took too long.
    #[error("timeout")]
    Timeout,
    /// The session or relay is shutting down.
    #[error("going away")]
    GoingAway,
    /// A limit (streams, subscriptions, sizes) was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(&'static str),
    /// No version both sides speak (the in-band SETUP offered none we allow,
    /// or the server chose one we did not offer).
    #[error("no common version: {0}")]
    Version(String),
    /// A group grew past the bytes or frames a group may hold.
    #[error("group too large")]
    GroupTooLarge,
    /// The group was dropped under memory pressure (the cache's byte budget).
    #[error("evicted under memory pressure")]
    Evicted,
    /// A stream the peer opened did not deliver its type and first message in time.
    #[error("no request within the stream header timeout")]
    RequestTimeout,
    /// The peer closed the session with this application code and reason (a refusal
    /// says why here: `unauthorized: token expired`).
    #[error("closed by the peer with code {code:#x}: {reason}")]
    Closed {
        /// The moq-lite session error code (0 for a clean close, 0x2 unauthorized, ...).
        code: u32,
        /// The peer's reason, as it sent it.
        reason: String,
    },
}

impl Error {
    /// The code to reset a stream with (moq-lite stream error registry, as the
    /// ecosystem's `moq-net` assigns it: 0x30 NO_CAPACITY, 0x31 CONTROL_TIMEOUT,
    /// 0x32 GROUP_TOO_LARGE, 0x33 NOT_FOUND, 0x35 EVICTED).
    pub fn stream_code(&self) -> u32 {
        match self {
            Self::Cancelled => 0x1,
            Self::Timeout => 0x2,
            Self::Transport(_) | Self::Closed { .. } => 0x3,
            Self::GoingAway => 0x4,
            Self::TooFarBehind => 0x5,
            Self::Protocol(_) | Self::Decode(_) | Self::Duplicate(_) => 0x12,
            Self::NotFound => 0x33,
            Self::Unauthorized(_) => 0x40 + 0x2,
            Self::Reset(code) => *code,
            Self::Limit(_) => 0x30,
            // A session-level failure, flattened as the stream registry does.
            Self::Version(_) => 0x3,
            Self::RequestTimeout => 0x31,
            Self::GroupTooLarge => 0x32,
            Self::Evicted => 0x35,
        }
    }

    /// The code to close a session with (moq-lite session error registry).
    pub fn session_code(&self) -> u32 {
        match self {
            Self::Cancelled | Self::GoingAway => 0x0,
            Self::Unauthorized(_) => 0x2,
            Self::Protocol(_) | Self::Decode(_) | Self::Duplicate(_) => 0x3,
            Self::Timeout | Self::RequestTimeout => 0x11,
            Self::Version(_) => 0x15,
            Self::Closed { code, .. } => *code,
            _ => 0x1,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
