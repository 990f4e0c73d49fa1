//! moq-transport drafts, their ALPN identifiers and version codes, and the
//! predicates message code uses to pick a layout.
//!
//! Each predicate names the draft that introduced (or dropped) a wire feature,
//! so message code reads `if version.has_x()` instead of comparing numbers.
//! Facts follow the draft texts (draft-ietf-moq-transport-14 … -19) and, for
//! drafts 20–22 and wherever the texts and the deployed peers disagree, the
//! `moq-net` 0.3.18 implementation the ecosystem's clients run.

use std::{fmt, str::FromStr};

/// An IETF moq-transport draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Version {
    /// draft-ietf-moq-transport-14: ALPN `moq-00`, version negotiated in
    /// CLIENT_SETUP / SERVER_SETUP on the bidirectional control stream.
    Draft14,
    /// draft-15: ALPN `moqt-15`, SETUP without a version list, REQUEST_OK and
    /// REQUEST_ERROR, subscription fields moved into parameters.
    Draft15,
    /// draft-16: delta-encoded parameter types, NAMESPACE messages on a
    /// SUBSCRIBE_NAMESPACE stream, REQUEST_UPDATE, Track Extensions.
    Draft16,
    /// draft-17: "leading ones" varints, unified SETUP (0x2F00) on a
    /// unidirectional stream, one bidirectional stream per request.
    Draft17,
    /// draft-18: SUBSCRIBE_NAMESPACE renumbered 0x50, SUBSCRIBE_TRACKS, the
    /// FIRST_OBJECT subgroup bit, Group ID deltas on fetch streams.
    Draft18,
    /// draft-19: Range Filters, GOAWAY without a Request ID.
    Draft19,
    /// draft-20: LOCATION_FILTER as a field list, FETCH names its track
    /// directly, FILL_PARAMETERS, INCLUDE_PROPERTIES.
    Draft20,
    /// draft-21: editorial; the wire is draft-20's.
    Draft21,
    /// draft-22: LOCATION_FILTER carries a type instead of a length.
    Draft22,
}

impl Version {
    /// Every supported draft, oldest first.
    pub const ALL: [Version; 9] = [
        Self::Draft14,
        Self::Draft15,
        Self::Draft16,
        Self::Draft17,
        Self::Draft18,
        Self::Draft19,
        Self::Draft20,
        Self::Draft21,
        Self::Draft22,
    ];

    /// Preference order when offering or choosing: newest first.
    pub const PREFERRED: [Version; 9] = [
        Self::Draft22,
        Self::Draft21,
        Self::Draft20,
        Self::Draft19,
        Self::Draft18,
        Self::Draft17,
        Self::Draft16,
        Self::Draft15,
        Self::Draft14,
    ];

    /// The ALPN (and WebTransport protocol) identifier.
    pub fn alpn(self) -> &'static str {
        match self {
            Self::Draft14 => "moq-00",
            Self::Draft15 => "moqt-15",
            Self::Draft16 => "moqt-16",
            Self::Draft17 => "moqt-17",
            Self::Draft18 => "moqt-18",
            Self::Draft19 => "moqt-19",
            Self::Draft20 => "moqt-20",
            Self::Draft21 => "moqt-21",
            Self::Draft22 => "moqt-22",
        }
    }

    /// The draft for an ALPN identifier, if it is one we speak.
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.alpn().as_bytes() == alpn)
    }

    /// The version code exchanged in-band (0xff000000 + draft number).
    pub fn code(self) -> u64 {
        0xff00_0000 + u64::from(self.number())
    }

    /// The draft for a version code, if it is one we speak.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The draft number (14 … 22).
    pub fn number(self) -> u8 {
        match self {
            Self::Draft14 => 14,
            Self::Draft15 => 15,
            Self::Draft16 => 16,
            Self::Draft17 => 17,
            Self::Draft18 => 18,
            Self::Draft19 => 19,
            Self::Draft20 => 20,
            Self::Draft21 => 21,
            Self::Draft22 => 22,
        }
    }

    /// Integers use the "leading ones" varint of draft-17 §1.4.1 rather than
    /// the QUIC varint (RFC 9000 §16).
    pub fn leading_ones_varint(self) -> bool {
        self >= Self::Draft17
    }

    /// CLIENT_SETUP lists versions and SERVER_SETUP names one (draft-14 only;
    /// later drafts negotiate by ALPN).
    pub fn has_setup_versions(self) -> bool {
        self == Self::Draft14
    }

    /// SETUP is one message type (0x2F00) sent by each side on its own
    /// unidirectional control stream, with options read to the end of the
    /// message (draft-17+). Earlier drafts exchange CLIENT_SETUP (0x20) and
    /// SERVER_SETUP (0x21) on one bidirectional stream.
    pub fn has_unified_setup(self) -> bool {
        self >= Self::Draft17
    }

    /// Every request has its own bidirectional stream, and responses on it
    /// carry no Request ID (draft-17+). Earlier drafts multiplex everything
    /// over the control stream (draft-16 moved only SUBSCRIBE_NAMESPACE out).
    pub fn has_request_streams(self) -> bool {
        self >= Self::Draft17
    }

    /// Responses (…_OK, …_ERROR, PUBLISH_DONE) carry the Request ID they
    /// answer (draft-14 … -16).
    pub fn has_response_request_id(self) -> bool {
        self <= Self::Draft16
    }

    /// Request messages carry a Required Request ID Delta after the Request
    /// ID (draft-17 only; removed again in draft-18).
    pub fn has_required_request_id(self) -> bool {
        self == Self::Draft17
    }

    /// Parameter types after the first are deltas from the previous type
    /// (draft-16+); earlier drafts write absolute types.
    pub fn has_delta_parameters(self) -> bool {
        self >= Self::Draft16
    }

    /// Message parameters have per-type value encodings (a raw byte for
    /// uint8, two varints for a Location, …) and no Length, so an unknown
    /// parameter cannot be skipped (draft-17+). Earlier drafts use
    /// Key-Value-Pairs whose parity tells the framing.
    pub fn has_typed_parameters(self) -> bool {
        self >= Self::Draft17
    }

    /// MAX_REQUEST_ID, REQUESTS_BLOCKED, UNSUBSCRIBE, FETCH_CANCEL,
    /// PUBLISH_NAMESPACE_DONE and PUBLISH_NAMESPACE_CANCEL exist (draft-14 …
    /// -16); later drafts use stream FIN, STOP_SENDING and resets instead.
    pub fn has_control_stream_requests(self) -> bool {
        self <= Self::Draft16
    }

    /// Subscription fields (priority, order, forward, filter …) travel as
    /// message parameters instead of fixed fields (draft-15+).
    pub fn has_parameterized_requests(self) -> bool {
        self >= Self::Draft15
    }

    /// Generic REQUEST_OK / REQUEST_ERROR replace the per-request _OK and
    /// _ERROR messages (draft-15+).
    pub fn has_request_ok(self) -> bool {
        self >= Self::Draft15
    }

    /// REQUEST_ERROR carries a Retry Interval (draft-16+).
    pub fn has_retry_interval(self) -> bool {
        self >= Self::Draft16
    }

    /// SUBSCRIBE_OK, PUBLISH and FETCH_OK end with Track Properties
    /// ("Track Extensions" in draft-16). Draft-16+.
    pub fn has_track_properties(self) -> bool {
        self >= Self::Draft16
    }

    /// REQUEST_OK also ends with Track Properties (draft-18+, where it
    /// doubles as TRACK_STATUS_OK).
    pub fn has_request_ok_properties(self) -> bool {
        self >= Self::Draft18
    }

    /// NAMESPACE and NAMESPACE_DONE announce on a SUBSCRIBE_NAMESPACE stream
    /// (draft-16+). Earlier drafts forward PUBLISH_NAMESPACE instead.
    pub fn has_namespace_messages(self) -> bool {
        self >= Self::Draft16
    }

    /// SUBSCRIBE_NAMESPACE carries Subscribe Options (draft-16 and -17).
    pub fn has_subscribe_options(self) -> bool {
        matches!(self, Self::Draft16 | Self::Draft17)
    }

    /// SUBSCRIBE_NAMESPACE is type 0x50 and SUBSCRIBE_TRACKS (0x51) exists
    /// (draft-18+); earlier drafts use 0x11.
    pub fn has_subscribe_tracks(self) -> bool {
        self >= Self::Draft18
    }

    /// PUBLISH_NAMESPACE_DONE and _CANCEL name the Request ID instead of the
    /// namespace (draft-16).
    pub fn has_namespace_done_by_request(self) -> bool {
        self == Self::Draft16
    }

    /// GOAWAY carries a Timeout (draft-17+).
    pub fn has_goaway_timeout(self) -> bool {
        self >= Self::Draft17
    }

    /// GOAWAY may end with a Request ID (draft-18 only).
    pub fn has_goaway_request_id(self) -> bool {
        self == Self::Draft18
    }

    /// PUBLISH_OK exists (draft-14 … -18; draft-19 answers PUBLISH with
    /// REQUEST_OK).
    pub fn has_publish_ok(self) -> bool {
        self <= Self::Draft18
    }

    /// PUBLISH_BLOCKED (0x0F) exists on SUBSCRIBE_NAMESPACE streams
    /// (draft-17 and -18).
    pub fn has_publish_blocked(self) -> bool {
        matches!(self, Self::Draft17 | Self::Draft18)
    }

    /// Subgroup headers may omit the publisher priority (types 0x30–0x3D,
    /// draft-15+), and datagrams may too (the DEFAULT_PRIORITY bit).
    pub fn has_default_priority(self) -> bool {
        self >= Self::Draft15
    }

    /// Subgroup header types carry the FIRST_OBJECT bit 0x40 (draft-18+).
    pub fn has_first_object_bit(self) -> bool {
        self >= Self::Draft18
    }

    /// Fetch objects start with Serialization Flags and omit fields that
    /// repeat the previous object (draft-15+); draft-14 writes every field.
    pub fn has_serialization_flags(self) -> bool {
        self >= Self::Draft15
    }

    /// An empty fetch object carries an Object Status (draft-14 and -15).
    pub fn has_fetch_status(self) -> bool {
        self <= Self::Draft15
    }

    /// A fetch object's Group ID field is a delta from the previous object's
    /// group (draft-18+); earlier drafts write the absolute ID.
    pub fn has_fetch_group_delta(self) -> bool {
        self >= Self::Draft18
    }

    /// The subscription filter's end is a delta from its start group
    /// (draft-17+); draft-14 … -16 write the absolute End Group.
    pub fn has_filter_end_delta(self) -> bool {
        self >= Self::Draft17
    }

    /// LOCATION_FILTER is a field list whose length selects its meaning
    /// (draft-20 and -21).
    pub fn has_filter_fields(self) -> bool {
        matches!(self, Self::Draft20 | Self::Draft21)
    }

    /// LOCATION_FILTER starts with a Location Filter Type and has no Length
    /// (draft-22+).
    pub fn has_typed_filter(self) -> bool {
        self >= Self::Draft22
    }

    /// FETCH names its track up front with the range as a LOCATION_FILTER,
    /// and the joining forms are gone (draft-20+).
    pub fn has_filtered_fetch(self) -> bool {
        self >= Self::Draft20
    }

    /// The uni stream type 0x132B3E28 carries padding (draft-18+).
    pub fn has_padding_stream(self) -> bool {
        self >= Self::Draft18
    }

    /// The 7-byte leading-ones varint form (`1111110x`) is reserved and must
    /// be refused (draft-17 only; draft-18 made it valid).
    pub(crate) fn rejects_seven_byte_varint(self) -> bool {
        self == Self::Draft17
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "moq-transport-{}", self.number())
    }
}

/// The string did not name a supported moq-transport draft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown moq-transport version '{0}' (expected moq-transport-14 … moq-transport-22, or an ALPN such as moqt-16)"
)]
pub struct UnknownDraft(pub String);

impl FromStr for Version {
    type Err = UnknownDraft;

    /// Accepts the names used by the ecosystem's `--connect-version` flags
    /// (`moq-transport-16`) and the ALPN identifiers (`moqt-16`, `moq-00`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.to_string() == s || v.alpn() == s)
            .ok_or_else(|| UnknownDraft(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpns_codes_and_names() {
        for v in Version::ALL {
            assert_eq!(Version::from_alpn(v.alpn().as_bytes()), Some(v));
            assert_eq!(Version::from_code(v.code()), Some(v));
            assert_eq!(v.to_string().parse::<Version>(), Ok(v));
            assert_eq!(v.alpn().parse::<Version>(), Ok(v));
        }
        assert_eq!(Version::Draft14.alpn(), "moq-00");
        assert_eq!(Version::Draft14.code(), 0xff00_000e);
        assert_eq!(Version::Draft16.code(), 0xff00_0010);
        assert_eq!(Version::Draft22.code(), 0xff00_0016);
        assert_eq!(Version::from_alpn(b"moq-lite-03"), None);
        assert_eq!(Version::from_code(0xff0d_ad02), None);
        let err = "moq-transport-13".parse::<Version>().unwrap_err();
        assert!(err.to_string().contains("moq-transport-13"));
    }

    #[test]
    fn preference_is_newest_first() {
        let mut sorted = Version::PREFERRED;
        sorted.reverse();
        assert_eq!(sorted, Version::ALL);
    }
}
