//! moq-lite versions, their ALPN identifiers, and what each one carries.
//!
//! Each feature predicate names the version that introduced (or dropped) a
//! field, so message code reads `if version.has_x()` rather than comparing
//! version numbers. Facts follow the `moq-net` 0.3.18 implementation that the
//! ecosystem's tools run, which is authoritative where the draft text differs.
//!
//! Two families: lite-03 and newer are chosen by their own ALPN (or
//! WebTransport protocol) and are the ones offered by default
//! ([`Version::ALL`], [`Version::PREFERRED`]); lite-01 and lite-02 share the
//! ALPN `moql` (or no protocol at all) and are chosen in-band by the legacy
//! SETUP on the first bidirectional stream ([`Version::IN_BAND`],
//! [`crate::legacy`]). They are never offered in an ALPN list by default.

use std::{fmt, str::FromStr};

/// A moq-lite protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Version {
    /// moq-lite-01: negotiated in-band (ALPN `moql`); a Session stream carries
    /// SETUP then SESSION_INFO; ANNOUNCE_INIT opens every announce reply; no
    /// hops, no subscribe options; SUBSCRIBE_OK carries the priority.
    Lite01,
    /// moq-lite-02: as lite-01, but SUBSCRIBE_OK is empty.
    Lite02,
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

/// The ALPN shared by the in-band versions (lite-01/02): "moq-lite, version
/// chosen by SETUP". Never offered by default.
pub const ALPN_IN_BAND: &str = "moql";

impl Version {
    /// Every version chosen by its own ALPN, oldest first: what ALPN and
    /// WebTransport protocol lists are built from. The in-band versions are
    /// in [`Version::IN_BAND`].
    pub const ALL: [Version; 4] = [Self::Lite03, Self::Lite04, Self::Lite05, Self::Lite06];

    /// Preference order when offering or choosing an ALPN version: newest first.
    pub const PREFERRED: [Version; 4] = [Self::Lite06, Self::Lite05, Self::Lite04, Self::Lite03];

    /// The versions chosen in-band by the legacy SETUP (ALPN `moql`, or no
    /// protocol), in preference order: newest first.
    pub const IN_BAND: [Version; 2] = [Self::Lite02, Self::Lite01];

    /// Every version this crate encodes, oldest first.
    pub const EVERY: [Version; 6] = [
        Self::Lite01,
        Self::Lite02,
        Self::Lite03,
        Self::Lite04,
        Self::Lite05,
        Self::Lite06,
    ];

    /// The ALPN (and WebTransport protocol) identifier; [`ALPN_IN_BAND`] for
    /// lite-01/02, which share it.
    pub fn alpn(self) -> &'static str {
        match self {
            Self::Lite01 | Self::Lite02 => ALPN_IN_BAND,
            Self::Lite03 => "moq-lite-03",
            Self::Lite04 => "moq-lite-04",
            Self::Lite05 => "moq-lite-05",
            Self::Lite06 => "moq-lite-06",
        }
    }

    /// The version's name, as in logs, metrics and configuration: `moq-lite-02`.
    /// The same as [`Version::alpn`] from lite-03 on.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lite01 => "moq-lite-01",
            Self::Lite02 => "moq-lite-02",
            other => other.alpn(),
        }
    }

    /// The version an ALPN identifier selects, if it is one we speak. `moql`
    /// selects none: it means "negotiate in-band".
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.alpn().as_bytes() == alpn)
    }

    /// The 32-bit version code used where versions are exchanged in-band.
    pub fn code(self) -> u64 {
        match self {
            Self::Lite01 => 0xff0d_ad01,
            Self::Lite02 => 0xff0d_ad02,
            Self::Lite03 => 0xff0d_ad03,
            Self::Lite04 => 0xff0d_ad04,
            Self::Lite05 => 0xff0d_ad05,
            Self::Lite06 => 0xff0d_ad06,
        }
    }

    /// The version a code names, if we speak it.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::EVERY.into_iter().find(|v| v.code() == code)
    }

    /// Chosen in-band by the legacy SETUP (lite-01/02), whose bidirectional
    /// stream then stays open as the Session stream carrying SESSION_INFO.
    pub fn is_in_band(self) -> bool {
        self <= Self::Lite02
    }

    /// An announce reply opens with ANNOUNCE_INIT, the initial set of
    /// suffixes in one message (lite-01/02 only).
    pub fn has_announce_init(self) -> bool {
        self <= Self::Lite02
    }

    /// ANNOUNCE carries a hop list: a bare count on lite-03, the ids from
    /// lite-04 (lite-01/02 carry nothing).
    pub fn has_hops(self) -> bool {
        self >= Self::Lite03
    }

    /// SUBSCRIBE carries max latency and a group range, SUBSCRIBE_UPDATE and
    /// SUBSCRIBE_DROP exist, and subscribe responses are typed (lite-03+).
    /// lite-01/02 SUBSCRIBE stops after the priority, and the only answer is an
    /// untyped SUBSCRIBE_OK.
    pub fn has_subscribe_range(self) -> bool {
        self >= Self::Lite03
    }

    /// The Fetch stream exists (lite-03+).
    pub fn has_fetch(self) -> bool {
        self >= Self::Lite03
    }

    /// The Probe stream exists (lite-03+).
    pub fn has_probe(self) -> bool {
        self >= Self::Lite03
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
    /// `ordered` byte (lite-03 to lite-05; lite-01/02 never had it, lite-06
    /// removed it).
    pub fn has_ordered(self) -> bool {
        (Self::Lite03..=Self::Lite05).contains(&self)
    }

    /// SUBSCRIBE's start group is a raw floor (lite-06) rather than an
    /// optional value where 0 means "latest" (up to lite-05).
    pub fn has_raw_start_group(self) -> bool {
        self >= Self::Lite06
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The string did not name a supported moq-lite version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown version '{0}' (expected one of moq-lite-01, moq-lite-02, moq-lite-03, moq-lite-04, moq-lite-05, moq-lite-06)"
)]
pub struct UnknownVersion(pub String);

impl Version {
    /// A version by its name, in-band ones included: `moq-lite-02` as well as
    /// `moq-lite-05` (`moql` names none).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::EVERY.into_iter().find(|v| v.name() == name)
    }
}

impl FromStr for Version {
    type Err = UnknownVersion;

    /// A version by name, in-band ones included (`moq-lite-02`, `moq-lite-05`): what
    /// a configured version list may name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| UnknownVersion(s.to_string()))
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
            assert!(!v.is_in_band());
        }
        assert_eq!(Version::from_alpn(b"moq-lite-07-wip"), None);
        assert_eq!(Version::from_alpn(b"h3"), None);
        let err = "moq-lite-07".parse::<Version>().unwrap_err();
        assert!(err.to_string().contains("moq-lite-07"));
        // The in-band versions have names (a configuration may list them), not ALPNs.
        assert_eq!("moq-lite-02".parse::<Version>(), Ok(Version::Lite02));
        assert_eq!(Version::from_alpn(b"moq-lite-02"), None);
        assert_eq!(Version::from_name("moq-lite-07"), None);
    }

    #[test]
    fn in_band_versions_share_moql_and_are_never_in_alpn_lists() {
        for v in Version::IN_BAND {
            assert_eq!(v.alpn(), ALPN_IN_BAND);
            assert!(v.is_in_band());
            assert!(!Version::ALL.contains(&v) && !Version::PREFERRED.contains(&v));
            assert_eq!(Version::from_name(&v.to_string()), Some(v));
        }
        // `moql` names no single version: it means "negotiate in-band".
        assert_eq!(Version::from_alpn(b"moql"), None);
        assert_eq!(Version::from_name("moql"), None);
        assert_eq!(Version::Lite02.to_string(), "moq-lite-02");
        assert_eq!(Version::EVERY.len(), Version::ALL.len() + Version::IN_BAND.len());
    }

    #[test]
    fn codes() {
        assert_eq!(Version::Lite01.code(), 0xff0dad01);
        assert_eq!(Version::Lite02.code(), 0xff0dad02);
        assert_eq!(Version::Lite03.code(), 0xff0dad03);
        assert_eq!(Version::Lite06.code(), 0xff0dad06);
        for v in Version::EVERY {
            assert_eq!(Version::from_code(v.code()), Some(v));
        }
        assert_eq!(Version::from_code(0xff00_000e), None);
    }

    #[test]
    fn lite01_and_02_features() {
        for v in Version::IN_BAND {
            assert!(v.has_announce_init() && !v.has_hops() && !v.has_ordered());
            assert!(!v.has_subscribe_range() && !v.has_fetch() && !v.has_probe());
            assert!(!v.has_goaway() && !v.has_setup_stream() && !v.has_frame_timestamps());
            assert!(!v.has_exclude_hop() && !v.has_announce_ok() && !v.has_datagrams());
        }
        for v in Version::ALL {
            assert!(!v.has_announce_init() && v.has_hops());
            assert!(v.has_subscribe_range() && v.has_fetch() && v.has_probe());
        }
        assert!(Version::Lite03.has_ordered() && !Version::Lite06.has_ordered());
    }
}
