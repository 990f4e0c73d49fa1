//! FETCH (0x16) and FETCH_OK (0x18). FETCH_CANCEL (0x17, draft-14 … -16) is
//! a bare Request ID and FETCH_ERROR (0x19, draft-14) a
//! [`super::RequestError`].
//!
//! FETCH:
//! - draft-14: `request_id priority:u8 group_order:u8 fetch_type {…} params`.
//! - draft-15 … -19: `request_id [required_delta (17)] fetch_type {…}
//!   params` with priority (0x20) and group order (0x22) as parameters.
//!   Fetch types: 0x1 standalone `ns name start end`, 0x2 relative joining
//!   `joining_request_id group_offset`, 0x3 absolute joining
//!   `joining_request_id group`.
//! - draft-20+: `request_id ns name params`; the range is a LOCATION_FILTER
//!   (0x21) and the joining forms are gone.
//!
//! FETCH_OK:
//! - draft-14: `request_id group_order:u8 end_of_track:u8 end params`.
//! - draft-15+: `[request_id (≤16)] end_of_track:u8 end params
//!   [properties (16+)]`.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Filter, GroupOrder, Namespace, Parameters, TrackProperties, Value, Version,
        coding::{Body, Location, get_bool, get_string, get_u8, get_varint, put_string, put_varint},
        params::{FILTER, GROUP_ORDER, SUBSCRIBER_PRIORITY},
    },
    limits::MAX_NAME_BYTES,
};

use super::{
    request::{get_required, get_response_id, put_required, put_response_id},
    subscribe::{get_properties, put_properties},
};

/// What a FETCH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchKind {
    /// A range of a named track (type 0x1, draft-14 … -19).
    Standalone {
        /// Track namespace.
        namespace: Namespace,
        /// Track name.
        name: String,
        /// First location.
        start: Location,
        /// End location (an Object ID of 0 means the whole end group in
        /// draft-14; later drafts make it the last object plus one).
        end: Location,
    },
    /// The groups before a subscription's start (type 0x2, draft-14 … -19).
    RelativeJoining {
        /// The SUBSCRIBE being joined.
        joining_request_id: u64,
        /// How many groups before the subscription's first group.
        offset: u64,
    },
    /// From an absolute group up to a subscription's start (type 0x3).
    AbsoluteJoining {
        /// The SUBSCRIBE being joined.
        joining_request_id: u64,
        /// The first group.
        group: u64,
    },
    /// A named track, with the range in [`Fetch::filter`] (draft-20+).
    Track {
        /// Track namespace.
        namespace: Namespace,
        /// Track name.
        name: String,
    },
}

impl Default for FetchKind {
    fn default() -> Self {
        Self::Track {
            namespace: Namespace::empty(),
            name: String::new(),
        }
    }
}

/// FETCH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// The subscriber's Request ID.
    pub request_id: u64,
    /// Required Request ID Delta (draft-17 only).
    pub required_request_id_delta: u64,
    /// Subscriber priority (draft-14 field, required; parameter 0x20).
    pub priority: Option<u8>,
    /// Group order (draft-14 field, required; parameter 0x22).
    pub group_order: Option<GroupOrder>,
    /// What is fetched.
    pub kind: FetchKind,
    /// The range of a [`FetchKind::Track`] fetch (draft-20+; absent = the
    /// whole track up to the largest object).
    pub filter: Option<Filter>,
    /// Every other parameter.
    pub params: Parameters,
}

const STANDALONE: u64 = 0x1;
const RELATIVE_JOINING: u64 = 0x2;
const ABSOLUTE_JOINING: u64 = 0x3;

impl FetchKind {
    fn decode_typed(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(match get_varint(body, version)? {
            STANDALONE => Self::Standalone {
                namespace: Namespace::decode_from(body, version)?,
                name: get_string(body, version, "track name", MAX_NAME_BYTES)?,
                start: Location::decode_from(body, version)?,
                end: Location::decode_from(body, version)?,
            },
            RELATIVE_JOINING => Self::RelativeJoining {
                joining_request_id: get_varint(body, version)?,
                offset: get_varint(body, version)?,
            },
            ABSOLUTE_JOINING => Self::AbsoluteJoining {
                joining_request_id: get_varint(body, version)?,
                group: get_varint(body, version)?,
            },
            value => {
                return Err(DecodeError::UnknownType {
                    what: "fetch type",
                    value,
                });
            }
        })
    }

    fn encode_typed(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match self {
            Self::Standalone {
                namespace,
                name,
                start,
                end,
            } => {
                put_varint(buf, STANDALONE, version, "fetch type")?;
                namespace.encode_to(buf, version)?;
                put_string(buf, name, version, "track name", MAX_NAME_BYTES)?;
                start.encode_to(buf, version)?;
                end.encode_to(buf, version)
            }
            Self::RelativeJoining {
                joining_request_id,
                offset,
            } => {
                put_varint(buf, RELATIVE_JOINING, version, "fetch type")?;
                put_varint(buf, *joining_request_id, version, "joining request id")?;
                put_varint(buf, *offset, version, "joining start")
            }
            Self::AbsoluteJoining {
                joining_request_id,
                group,
            } => {
                put_varint(buf, ABSOLUTE_JOINING, version, "fetch type")?;
                put_varint(buf, *joining_request_id, version, "joining request id")?;
                put_varint(buf, *group, version, "joining start")
            }
            Self::Track { .. } => Err(EncodeError::NotInDraft {
                what: "a FETCH without a fetch type",
                version,
            }),
        }
    }
}

impl Body for Fetch {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_varint(body, version)?;
        let required_request_id_delta = get_required(body, version)?;
        if !version.has_parameterized_requests() {
            return Ok(Self {
                request_id,
                required_request_id_delta,
                priority: Some(get_u8(body)?),
                group_order: Some(GroupOrder::decode_byte(body)?),
                kind: FetchKind::decode_typed(body, version)?,
                filter: None,
                params: Parameters::decode_from(body, version)?,
            });
        }
        let kind = match version.has_filtered_fetch() {
            true => FetchKind::Track {
                namespace: Namespace::decode_from(body, version)?,
                name: get_string(body, version, "track name", MAX_NAME_BYTES)?,
            },
            false => FetchKind::decode_typed(body, version)?,
        };
        let mut params = Parameters::decode_from(body, version)?;
        let filter = match version.has_filtered_fetch() {
            true => params.take_filter(FILTER),
            false => None,
        };
        Ok(Self {
            request_id,
            required_request_id_delta,
            priority: params.take_u8(SUBSCRIBER_PRIORITY),
            group_order: params.take_order(GROUP_ORDER),
            kind,
            filter,
            params,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        put_required(buf, self.required_request_id_delta, version)?;
        if !version.has_parameterized_requests() {
            let (Some(priority), Some(order), None) = (self.priority, self.group_order, self.filter) else {
                return Err(EncodeError::Invalid {
                    what: "FETCH",
                    reason: "draft-14 needs a priority and group order, and has no filter",
                });
            };
            buf.push(priority);
            buf.push(order.code());
            self.kind.encode_typed(buf, version)?;
            return self.params.encode_to(buf, version);
        }
        match (&self.kind, version.has_filtered_fetch()) {
            (FetchKind::Track { namespace, name }, true) => {
                namespace.encode_to(buf, version)?;
                put_string(buf, name, version, "track name", MAX_NAME_BYTES)?;
            }
            (_, true) => {
                return Err(EncodeError::NotInDraft {
                    what: "a standalone or joining FETCH (use a track and a filter)",
                    version,
                });
            }
            (kind, false) => kind.encode_typed(buf, version)?,
        }
        if self.filter.is_some() && !version.has_filtered_fetch() {
            return Err(EncodeError::NotInDraft {
                what: "a FETCH filter",
                version,
            });
        }
        self.params
            .check_lifted(&[SUBSCRIBER_PRIORITY, GROUP_ORDER, FILTER], "FETCH")?;
        self.params
            .merged([
                (SUBSCRIBER_PRIORITY, self.priority.map(Value::U8)),
                (FILTER, self.filter.map(Value::Filter)),
                (GROUP_ORDER, self.group_order.map(Value::Order)),
            ])
            .encode_to(buf, version)
    }
}

/// FETCH_OK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOk {
    /// The FETCH answered (draft-14 … -16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// The order objects will arrive in (draft-14 field, required; GROUP_ORDER
    /// parameter accepted later).
    pub group_order: Option<GroupOrder>,
    /// Whether the range reaches the end of the track.
    pub end_of_track: bool,
    /// Where the response ends.
    pub end: Location,
    /// Every other parameter.
    pub params: Parameters,
    /// Track Properties (draft-16+).
    pub properties: TrackProperties,
}

impl Body for FetchOk {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_response_id(body, version)?;
        if !version.has_parameterized_requests() {
            return Ok(Self {
                request_id,
                group_order: Some(GroupOrder::decode_byte(body)?),
                end_of_track: get_bool(body, "end of track")?,
                end: Location::decode_from(body, version)?,
                params: Parameters::decode_from(body, version)?,
                properties: TrackProperties::new(),
            });
        }
        let end_of_track = get_bool(body, "end of track")?;
        let end = Location::decode_from(body, version)?;
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            group_order: params.take_order(GROUP_ORDER),
            end_of_track,
            end,
            params,
            properties: get_properties(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_response_id(buf, self.request_id, version)?;
        if !version.has_parameterized_requests() {
            let Some(order) = self.group_order else {
                return Err(EncodeError::Invalid {
                    what: "FETCH_OK",
                    reason: "draft-14 needs a group order",
                });
            };
            buf.push(order.code());
            buf.push(u8::from(self.end_of_track));
            self.end.encode_to(buf, version)?;
            self.params.encode_to(buf, version)?;
            return put_properties(buf, &self.properties, version);
        }
        buf.push(u8::from(self.end_of_track));
        self.end.encode_to(buf, version)?;
        self.params.check_lifted(&[GROUP_ORDER], "FETCH_OK")?;
        self.params
            .merged([(GROUP_ORDER, self.group_order.map(Value::Order))])
            .encode_to(buf, version)?;
        put_properties(buf, &self.properties, version)
    }
}
