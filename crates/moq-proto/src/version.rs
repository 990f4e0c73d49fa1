//! moq-lite versions, their ALPN identifiers, and what each one carries.
//!
//! Each feature predicate names the version that introduced (or dropped) a
//! field, so message code reads `if version.has_x()` rather than comparing
//! version numbers. Facts follow the `moq-net` 0.3.18 implementation that the
//! ecosystem's tools run, which is authoritative where the draft text differs.

use std::{fmt, str::FromStr};

/// A moq-lite protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Version {
    /// moq-lite-03: ALPN-negotiated, no SETUP exchange.
    Lite03,
    /// moq-lite-04: adds GOAWAY, PROBE RTT, full hop ids in ANNOUNCE.
    Lite04,
    /// moq-lite-05: adds the Setup and Track streams, ANNOUNCE_OK, datagrams,
    /// SUBSCRIBE_START/END and timestamped frames.
    Lite05,
    /// moq-lite-06: typed ANNOUNCE messages with announce ids and route cost,
    /// frame-level subscribe bounds, no more `ordered` byte.
    Lite06,
}

impl Version {
    /// Every supported version, oldest first.
    pub const ALL: [Version; 4] = [Self::Lite03, Self::Lite04, Self::Lite05, Self::Lite06];

    /// Preference order when offering or choosing a version: newest first.
    pub const PREFERRED: [Version; 4] = [Self::Lite06, Self::Lite05, Self::Lite04, Self::Lite03];

    /// The ALPN (and WebTransport protocol) identifier.
    pub fn alpn(self) -> &'static str {
        match self {
            Self::Lite03 => "moq-lite-03",
            Self::Lite04 => "moq-lite-04",
            Self::Lite05 => "moq-lite-05",
            Self::Lite06 => "moq-lite-06",
        }
    }

    /// The version for an ALPN identifier, if it is one we speak.
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.alpn().as_bytes() == alpn)
    }

    /// The 32-bit version code used where versions are exchanged in-band.
    pub fn code(self) -> u64 {
        match self {
            Self::Lite03 => 0xff0d_ad03,
            Self::Lite04 => 0xff0d_ad04,
            Self::Lite05 => 0xff0d_ad05,
            Self::Lite06 => 0xff0d_ad06,
        }
    }

    /// ANNOUNCE carries each hop's id rather than only the hop count (lite-04+).
    pub fn has_hop_ids(self) -> bool {
        self >= Self::Lite04
    }

    /// PROBE carries an RTT after the bitrate (lite-04+).
    pub fn has_probe_rtt(self) -> bool {
        self >= Self::Lite04
    }

    /// The Goaway stream exists (lite-04+).
    pub fn has_goaway(self) -> bool {
        self >= Self::Lite04
    }

    /// ANNOUNCE_REQUEST carries the subscriber's Exclude Hop (lite-04 and lite-05
    /// only; lite-06 moved that identity into SETUP).
    pub fn has_exclude_hop(self) -> bool {
        matches!(self, Self::Lite04 | Self::Lite05)
    }

    /// Each side opens a unidirectional Setup stream with one SETUP (lite-05+).
    pub fn has_setup_stream(self) -> bool {
        self >= Self::Lite05
    }

    /// Announce streams start with ANNOUNCE_OK (lite-05+).
    pub fn has_announce_ok(self) -> bool {
        self >= Self::Lite05
    }

    /// The Track stream, SUBSCRIBE_START/END, FETCH serving, and per-frame
    /// timestamps exist (lite-05+).
    pub fn has_track_stream(self) -> bool {
        self >= Self::Lite05
    }

    /// Frames carry a zigzag timestamp delta before their size (lite-05+).
    pub fn has_frame_timestamps(self) -> bool {
        self >= Self::Lite05
    }

    /// Single-frame groups may travel as QUIC datagrams (lite-05+).
    pub fn has_datagrams(self) -> bool {
        self >= Self::Lite05
    }

    /// A lite-05 ANNOUNCE may carry status 2 (restart).
    pub fn has_announce_restart_status(self) -> bool {
        self == Self::Lite05
    }

    /// ANNOUNCE messages are typed (START/END/RESTART) with implicit
    /// per-stream announce ids (lite-06+).
    pub fn has_announce_ids(self) -> bool {
        self >= Self::Lite06
    }

    /// Announcements carry a route cost (lite-06+).
    pub fn has_route_cost(self) -> bool {
        self >= Self::Lite06
    }

    /// SUBSCRIBE, SUBSCRIBE_UPDATE, FETCH and GROUP carry frame indices
    /// (lite-06+).
    pub fn has_frame_bounds(self) -> bool {
        self >= Self::Lite06
    }

    /// SUBSCRIBE, SUBSCRIBE_UPDATE, SUBSCRIBE_OK and TRACK_INFO carry the
    /// `ordered` byte (up to lite-05; lite-06 removed it).
    pub fn has_ordered(self) -> bool {
        self <= Self::Lite05
    }

    /// SUBSCRIBE's start group is a raw floor (lite-06) rather than an
    /// optional value where 0 means "latest" (up to lite-05).
    pub fn has_raw_start_group(self) -> bool {
        self >= Self::Lite06
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.alpn())
    }
}

/// The string did not name a supported moq-lite version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown version '{0}' (expected one of moq-lite-03, moq-lite-04, moq-lite-05, moq-lite-06)")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_alpn(s.as_bytes()).ok_or_else(|| UnknownVersion(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_round_trip() {
        for v in Version::ALL {
            assert_eq!(Version::from_alpn(v.alpn().as_bytes()), Some(v));
            assert_eq!(v.to_string().parse::<Version>(), Ok(v));
        }
        assert_eq!(Version::from_alpn(b"moq-lite-07-wip"), None);
        assert_eq!(Version::from_alpn(b"h3"), None);
        let err = "moq-lite-02".parse::<Version>().unwrap_err();
        assert!(err.to_string().contains("moq-lite-02"));
    }

    #[test]
    fn codes() {
        assert_eq!(Version::Lite03.code(), 0xff0dad03);
        assert_eq!(Version::Lite06.code(), 0xff0dad06);
    }
}
