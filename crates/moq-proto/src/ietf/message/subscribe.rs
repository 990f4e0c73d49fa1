//! SUBSCRIBE (0x03) and TRACK_STATUS (0x0D, the same layout), SUBSCRIBE_OK
//! (0x04) and draft-14's TRACK_STATUS_OK (0x0E, the same layout),
//! SUBSCRIBE_UPDATE / REQUEST_UPDATE (0x02), and PUBLISH_DONE (0x0B, called
//! SUBSCRIBE_DONE before draft-14).
//!
//! SUBSCRIBE:
//! - draft-14: `request_id ns name priority:u8 group_order:u8 forward:u8
//!   filter params`.
//! - draft-15+: `request_id [required_delta (17)] ns name params`, with
//!   priority (0x20), group order (0x22), forward (0x10) and the filter
//!   (0x21) as parameters. They are lifted into the struct's own fields here,
//!   so a session reads them the same way in every draft.
//!
//! SUBSCRIBE_OK:
//! - draft-14: `request_id track_alias expires group_order:u8
//!   content_exists:u8 [largest] params`.
//! - draft-15+: `[request_id (≤16)] track_alias params [properties (16+)]`
//!   with EXPIRES (0x08), LARGEST_OBJECT (0x09) and GROUP_ORDER (0x22) lifted.
//!
//! SUBSCRIBE_UPDATE / REQUEST_UPDATE:
//! - draft-14: `request_id subscription_id start end_group priority:u8
//!   forward:u8 params`.
//! - draft-15, -16: `request_id existing_request_id params`.
//! - draft-17: `request_id required_delta params`; draft-18+: `request_id
//!   params` (the stream names the request being updated).
//!
//! PUBLISH_DONE: `[request_id (≤16)] status stream_count reason`.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Filter, GroupOrder, Namespace, Parameters, TrackProperties, Value, Version,
        coding::{Body, Location, get_bool, get_string, get_u8, get_varint, put_string, put_varint},
        params::{EXPIRES, FILTER, FORWARD, GROUP_ORDER, LARGEST_OBJECT, SUBSCRIBER_PRIORITY},
    },
    limits::{MAX_NAME_BYTES, MAX_REASON_BYTES},
};

use super::request::{get_required, get_response_id, put_required, put_response_id};

fn missing(what: &'static str, reason: &'static str) -> EncodeError {
    EncodeError::Invalid { what, reason }
}

/// SUBSCRIBE, and TRACK_STATUS which shares its layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// The subscriber's Request ID.
    pub request_id: u64,
    /// Required Request ID Delta (draft-17 only; 0 elsewhere).
    pub required_request_id_delta: u64,
    /// Track namespace.
    pub namespace: Namespace,
    /// Track name.
    pub name: String,
    /// Subscriber priority, lower first (a field in draft-14, where it is
    /// required; parameter 0x20 later).
    pub priority: Option<u8>,
    /// Requested group order (draft-14 field, required; parameter 0x22).
    pub group_order: Option<GroupOrder>,
    /// Forward state (draft-14 field, required; parameter 0x10, absent = 1).
    pub forward: Option<bool>,
    /// The filter (draft-14 field, required; parameter 0x21, absent = the
    /// draft's default).
    pub filter: Option<Filter>,
    /// Every other parameter (authorization tokens, delivery timeout, …).
    pub params: Parameters,
}

const SUBSCRIBE_LIFTED: [u64; 4] = [FORWARD, SUBSCRIBER_PRIORITY, FILTER, GROUP_ORDER];

impl Body for Subscribe {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_varint(body, version)?;
        let required_request_id_delta = get_required(body, version)?;
        let namespace = Namespace::decode_from(body, version)?;
        let name = crate::ietf::coding::get_string(body, version, "track name", MAX_NAME_BYTES)?;
        if !version.has_parameterized_requests() {
            let priority = get_u8(body)?;
            let group_order = GroupOrder::decode_byte(body)?;
            let forward = get_bool(body, "forward")?;
            let filter = Filter::decode_tagged(body, version)?;
            return Ok(Self {
                request_id,
                required_request_id_delta,
                namespace,
                name,
                priority: Some(priority),
                group_order: Some(group_order),
                forward: Some(forward),
                filter: Some(filter),
                params: Parameters::decode_from(body, version)?,
            });
        }
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            required_request_id_delta,
            namespace,
            name,
            priority: params.take_u8(SUBSCRIBER_PRIORITY),
            group_order: params.take_order(GROUP_ORDER),
            forward: params.take_bool(FORWARD),
            filter: params.take_filter(FILTER),
            params,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        put_required(buf, self.required_request_id_delta, version)?;
        self.namespace.encode_to(buf, version)?;
        put_string(buf, &self.name, version, "track name", MAX_NAME_BYTES)?;
        if !version.has_parameterized_requests() {
            let (Some(priority), Some(order), Some(forward), Some(filter)) =
                (self.priority, self.group_order, self.forward, self.filter)
            else {
                return Err(missing(
                    "SUBSCRIBE",
                    "draft-14 needs priority, group order, forward and filter",
                ));
            };
            buf.push(priority);
            buf.push(order.code());
            buf.push(u8::from(forward));
            filter.encode_tagged(buf, version)?;
            return self.params.encode_to(buf, version);
        }
        self.params.check_lifted(&SUBSCRIBE_LIFTED, "SUBSCRIBE")?;
        self.params
            .merged([
                (FORWARD, self.forward.map(Value::Bool)),
                (SUBSCRIBER_PRIORITY, self.priority.map(Value::U8)),
                (FILTER, self.filter.map(Value::Filter)),
                (GROUP_ORDER, self.group_order.map(Value::Order)),
            ])
            .encode_to(buf, version)
    }
}

/// SUBSCRIBE_OK, and draft-14's TRACK_STATUS_OK which shares its layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOk {
    /// The SUBSCRIBE answered (draft-14 … -16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// The alias the publisher will use for this track on data streams.
    pub track_alias: u64,
    /// Milliseconds until the subscription expires (draft-14 field where 0
    /// means never and decodes as `None`; parameter 0x08 later).
    pub expires: Option<u64>,
    /// The publisher's group order (draft-14 field, required; parameter 0x22
    /// in draft-15).
    pub group_order: Option<GroupOrder>,
    /// The largest location published so far, if any (draft-14 field;
    /// LARGEST_OBJECT 0x09 later).
    pub largest: Option<Location>,
    /// Every other parameter.
    pub params: Parameters,
    /// Track Properties (draft-16+).
    pub properties: TrackProperties,
}

const SUBSCRIBE_OK_LIFTED: [u64; 3] = [EXPIRES, LARGEST_OBJECT, GROUP_ORDER];

fn get_content<B: bytes::Buf>(body: &mut B, version: Version) -> Result<Option<Location>, DecodeError> {
    match get_bool(body, "content exists")? {
        true => Ok(Some(Location::decode_from(body, version)?)),
        false => Ok(None),
    }
}

fn put_content(buf: &mut Vec<u8>, largest: Option<Location>, version: Version) -> Result<(), EncodeError> {
    buf.push(u8::from(largest.is_some()));
    match largest {
        Some(largest) => largest.encode_to(buf, version),
        None => Ok(()),
    }
}

pub(crate) fn get_properties(body: &mut &[u8], version: Version) -> Result<TrackProperties, DecodeError> {
    match version.has_track_properties() {
        true => TrackProperties::decode_to_end(body, version, "track properties"),
        false => Ok(TrackProperties::new()),
    }
}

pub(crate) fn put_properties(
    buf: &mut Vec<u8>,
    props: &TrackProperties,
    version: Version,
) -> Result<(), EncodeError> {
    match (version.has_track_properties(), props.is_empty()) {
        (true, _) => props.encode_to_end(buf, version, "track properties"),
        (false, true) => Ok(()),
        (false, false) => Err(EncodeError::NotInDraft {
            what: "track properties",
            version,
        }),
    }
}

impl Body for SubscribeOk {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_response_id(body, version)?;
        let track_alias = get_varint(body, version)?;
        if !version.has_parameterized_requests() {
            let expires = Some(get_varint(body, version)?).filter(|e| *e != 0);
            let group_order = Some(GroupOrder::decode_byte(body)?);
            let largest = get_content(body, version)?;
            return Ok(Self {
                request_id,
                track_alias,
                expires,
                group_order,
                largest,
                params: Parameters::decode_from(body, version)?,
                properties: TrackProperties::new(),
            });
        }
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            track_alias,
            expires: params.take_varint(EXPIRES),
            group_order: params.take_order(GROUP_ORDER),
            largest: params.take_location(LARGEST_OBJECT),
            params,
            properties: get_properties(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_response_id(buf, self.request_id, version)?;
        put_varint(buf, self.track_alias, version, "track alias")?;
        if !version.has_parameterized_requests() {
            let Some(order) = self.group_order else {
                return Err(missing("SUBSCRIBE_OK", "draft-14 needs a group order"));
            };
            put_varint(buf, self.expires.unwrap_or(0), version, "expires")?;
            buf.push(order.code());
            put_content(buf, self.largest, version)?;
            self.params.encode_to(buf, version)?;
            return put_properties(buf, &self.properties, version);
        }
        self.params.check_lifted(&SUBSCRIBE_OK_LIFTED, "SUBSCRIBE_OK")?;
        self.params
            .merged([
                (EXPIRES, self.expires.map(Value::Varint)),
                (LARGEST_OBJECT, self.largest.map(Value::Location)),
                (GROUP_ORDER, self.group_order.map(Value::Order)),
            ])
            .encode_to(buf, version)?;
        put_properties(buf, &self.properties, version)
    }
}

/// SUBSCRIBE_UPDATE (draft-14, -15), REQUEST_UPDATE (draft-16+).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestUpdate {
    /// This update's own Request ID.
    pub request_id: u64,
    /// The request being updated (draft-14 … -16; draft-17+ update the
    /// request whose stream carries them). 0 where absent.
    pub existing_request_id: u64,
    /// Required Request ID Delta (draft-17 only).
    pub required_request_id_delta: u64,
    /// New start location (draft-14 field, required there).
    pub start: Option<Location>,
    /// New end group plus one, 0 for open ended (draft-14 field, required).
    pub end_group: Option<u64>,
    /// New subscriber priority (draft-14 field, required; parameter 0x20).
    pub priority: Option<u8>,
    /// New forward state (draft-14 field, required; parameter 0x10).
    pub forward: Option<bool>,
    /// New filter (parameter 0x21, draft-15+).
    pub filter: Option<Filter>,
    /// Every other parameter.
    pub params: Parameters,
}

const UPDATE_LIFTED: [u64; 3] = [FORWARD, SUBSCRIBER_PRIORITY, FILTER];

impl Body for RequestUpdate {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_varint(body, version)?;
        let existing_request_id = match version.has_response_request_id() {
            true => get_varint(body, version)?,
            false => 0,
        };
        let required_request_id_delta = get_required(body, version)?;
        if !version.has_parameterized_requests() {
            return Ok(Self {
                request_id,
                existing_request_id,
                required_request_id_delta,
                start: Some(Location::decode_from(body, version)?),
                end_group: Some(get_varint(body, version)?),
                priority: Some(get_u8(body)?),
                forward: Some(get_bool(body, "forward")?),
                filter: None,
                params: Parameters::decode_from(body, version)?,
            });
        }
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            existing_request_id,
            required_request_id_delta,
            start: None,
            end_group: None,
            priority: params.take_u8(SUBSCRIBER_PRIORITY),
            forward: params.take_bool(FORWARD),
            filter: params.take_filter(FILTER),
            params,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        match version.has_response_request_id() {
            true => put_varint(buf, self.existing_request_id, version, "existing request id")?,
            false if self.existing_request_id != 0 => {
                return Err(EncodeError::NotInDraft {
                    what: "an Existing Request ID",
                    version,
                });
            }
            false => {}
        }
        put_required(buf, self.required_request_id_delta, version)?;
        if !version.has_parameterized_requests() {
            let (Some(start), Some(end_group), Some(priority), Some(forward), None) = (
                self.start,
                self.end_group,
                self.priority,
                self.forward,
                self.filter,
            ) else {
                return Err(missing(
                    "SUBSCRIBE_UPDATE",
                    "draft-14 needs start, end group, priority and forward, and has no filter",
                ));
            };
            start.encode_to(buf, version)?;
            put_varint(buf, end_group, version, "end group")?;
            buf.push(priority);
            buf.push(u8::from(forward));
            return self.params.encode_to(buf, version);
        }
        if self.start.is_some() || self.end_group.is_some() {
            return Err(EncodeError::NotInDraft {
                what: "REQUEST_UPDATE start and end fields (use the filter)",
                version,
            });
        }
        self.params.check_lifted(&UPDATE_LIFTED, "REQUEST_UPDATE")?;
        self.params
            .merged([
                (FORWARD, self.forward.map(Value::Bool)),
                (SUBSCRIBER_PRIORITY, self.priority.map(Value::U8)),
                (FILTER, self.filter.map(Value::Filter)),
            ])
            .encode_to(buf, version)
    }
}

/// PUBLISH_DONE (SUBSCRIBE_DONE): the publisher ended a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishDone {
    /// The subscription ended (draft-14 … -16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// Status code (0x2 TRACK_ENDED is a clean end in every draft).
    pub status: u64,
    /// How many data streams the publisher opened for the subscription.
    pub stream_count: u64,
    /// A human-readable reason, at most 1024 bytes.
    pub reason: String,
}

impl Body for PublishDone {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: get_response_id(body, version)?,
            status: get_varint(body, version)?,
            stream_count: get_varint(body, version)?,
            reason: get_string(body, version, "reason phrase", MAX_REASON_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_response_id(buf, self.request_id, version)?;
        put_varint(buf, self.status, version, "status")?;
        put_varint(buf, self.stream_count, version, "stream count")?;
        put_string(buf, &self.reason, version, "reason phrase", MAX_REASON_BYTES)
    }
}
