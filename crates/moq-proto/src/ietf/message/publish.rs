//! PUBLISH (0x1D) and PUBLISH_OK (0x1E, draft-14 … -18): a publisher-initiated
//! subscription. PUBLISH_ERROR is a [`super::RequestError`] in draft-14;
//! later drafts answer with REQUEST_ERROR (and, from draft-19, REQUEST_OK).
//!
//! PUBLISH:
//! - draft-14: `request_id ns name track_alias group_order:u8
//!   content_exists:u8 [largest] forward:u8 params`.
//! - draft-15+: `request_id [required_delta (17)] ns name track_alias params
//!   [properties (16+)]`, with LARGEST_OBJECT (0x09), FORWARD (0x10) and
//!   GROUP_ORDER (0x22) lifted into fields.
//!
//! PUBLISH_OK:
//! - draft-14: `request_id forward:u8 priority:u8 group_order:u8 filter
//!   params`.
//! - draft-15 … -18: `[request_id (≤16)] params`, with FORWARD,
//!   SUBSCRIBER_PRIORITY, GROUP_ORDER and the filter lifted.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Filter, GroupOrder, Namespace, Parameters, TrackProperties, Value, Version,
        coding::{Body, Location, get_bool, get_string, get_u8, get_varint, put_string, put_varint},
        params::{FILTER, FORWARD, GROUP_ORDER, LARGEST_OBJECT, SUBSCRIBER_PRIORITY},
    },
    limits::MAX_NAME_BYTES,
};

use super::{
    request::{get_required, get_response_id, put_required, put_response_id},
    subscribe::{get_properties, put_properties},
};

/// PUBLISH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    /// The publisher's Request ID.
    pub request_id: u64,
    /// Required Request ID Delta (draft-17 only).
    pub required_request_id_delta: u64,
    /// Track namespace.
    pub namespace: Namespace,
    /// Track name.
    pub name: String,
    /// The alias data streams will carry.
    pub track_alias: u64,
    /// The publisher's group order (draft-14 field, required; parameter 0x22).
    pub group_order: Option<GroupOrder>,
    /// The largest location published, if any (draft-14 Content Exists +
    /// Largest Location; LARGEST_OBJECT later).
    pub largest: Option<Location>,
    /// Whether objects flow before PUBLISH_OK (draft-14 field, required;
    /// parameter 0x10, absent = 1).
    pub forward: Option<bool>,
    /// Every other parameter.
    pub params: Parameters,
    /// Track Properties (draft-16+).
    pub properties: TrackProperties,
}

const PUBLISH_LIFTED: [u64; 3] = [LARGEST_OBJECT, FORWARD, GROUP_ORDER];

impl Body for Publish {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_varint(body, version)?;
        let required_request_id_delta = get_required(body, version)?;
        let namespace = Namespace::decode_from(body, version)?;
        let name = get_string(body, version, "track name", MAX_NAME_BYTES)?;
        let track_alias = get_varint(body, version)?;
        if !version.has_parameterized_requests() {
            let group_order = Some(GroupOrder::decode_byte(body)?);
            let largest = match get_bool(body, "content exists")? {
                true => Some(Location::decode_from(body, version)?),
                false => None,
            };
            let forward = Some(get_bool(body, "forward")?);
            return Ok(Self {
                request_id,
                required_request_id_delta,
                namespace,
                name,
                track_alias,
                group_order,
                largest,
                forward,
                params: Parameters::decode_from(body, version)?,
                properties: TrackProperties::new(),
            });
        }
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            required_request_id_delta,
            namespace,
            name,
            track_alias,
            group_order: params.take_order(GROUP_ORDER),
            largest: params.take_location(LARGEST_OBJECT),
            forward: params.take_bool(FORWARD),
            params,
            properties: get_properties(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        put_required(buf, self.required_request_id_delta, version)?;
        self.namespace.encode_to(buf, version)?;
        put_string(buf, &self.name, version, "track name", MAX_NAME_BYTES)?;
        put_varint(buf, self.track_alias, version, "track alias")?;
        if !version.has_parameterized_requests() {
            let (Some(order), Some(forward)) = (self.group_order, self.forward) else {
                return Err(EncodeError::Invalid {
                    what: "PUBLISH",
                    reason: "draft-14 needs a group order and forward",
                });
            };
            buf.push(order.code());
            buf.push(u8::from(self.largest.is_some()));
            if let Some(largest) = self.largest {
                largest.encode_to(buf, version)?;
            }
            buf.push(u8::from(forward));
            self.params.encode_to(buf, version)?;
            return put_properties(buf, &self.properties, version);
        }
        self.params.check_lifted(&PUBLISH_LIFTED, "PUBLISH")?;
        self.params
            .merged([
                (LARGEST_OBJECT, self.largest.map(Value::Location)),
                (FORWARD, self.forward.map(Value::Bool)),
                (GROUP_ORDER, self.group_order.map(Value::Order)),
            ])
            .encode_to(buf, version)?;
        put_properties(buf, &self.properties, version)
    }
}

/// PUBLISH_OK (draft-14 … -18).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOk {
    /// The PUBLISH answered (draft-14 … -16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// Forward state (draft-14 field, required; parameter 0x10).
    pub forward: Option<bool>,
    /// Subscriber priority (draft-14 field, required; parameter 0x20).
    pub priority: Option<u8>,
    /// Group order (draft-14 field, required; parameter 0x22).
    pub group_order: Option<GroupOrder>,
    /// Filter (draft-14 field, required; parameter 0x21).
    pub filter: Option<Filter>,
    /// Every other parameter.
    pub params: Parameters,
}

const PUBLISH_OK_LIFTED: [u64; 4] = [FORWARD, SUBSCRIBER_PRIORITY, FILTER, GROUP_ORDER];

impl Body for PublishOk {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_response_id(body, version)?;
        if !version.has_parameterized_requests() {
            return Ok(Self {
                request_id,
                forward: Some(get_bool(body, "forward")?),
                priority: Some(get_u8(body)?),
                group_order: Some(GroupOrder::decode_byte(body)?),
                filter: Some(Filter::decode_tagged(body, version)?),
                params: Parameters::decode_from(body, version)?,
            });
        }
        let mut params = Parameters::decode_from(body, version)?;
        Ok(Self {
            request_id,
            forward: params.take_bool(FORWARD),
            priority: params.take_u8(SUBSCRIBER_PRIORITY),
            group_order: params.take_order(GROUP_ORDER),
            filter: params.take_filter(FILTER),
            params,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_response_id(buf, self.request_id, version)?;
        if !version.has_parameterized_requests() {
            let (Some(forward), Some(priority), Some(order), Some(filter)) =
                (self.forward, self.priority, self.group_order, self.filter)
            else {
                return Err(EncodeError::Invalid {
                    what: "PUBLISH_OK",
                    reason: "draft-14 needs forward, priority, group order and filter",
                });
            };
            buf.push(u8::from(forward));
            buf.push(priority);
            buf.push(order.code());
            filter.encode_tagged(buf, version)?;
            return self.params.encode_to(buf, version);
        }
        self.params.check_lifted(&PUBLISH_OK_LIFTED, "PUBLISH_OK")?;
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
