//! The generic request plumbing: messages that carry only a Request ID
//! (MAX_REQUEST_ID, REQUESTS_BLOCKED, UNSUBSCRIBE, FETCH_CANCEL and the
//! draft-14 PUBLISH_NAMESPACE_OK / SUBSCRIBE_NAMESPACE_OK), REQUEST_OK
//! (draft-15+) and the error reply shared by REQUEST_ERROR (draft-15+) and
//! every draft-14 `…_ERROR`.
//!
//! Wire:
//! - RequestId: `request_id`.
//! - REQUEST_OK: `[request_id (≤16)] params [track properties (18+)]`.
//! - errors: `[request_id (≤16)] code [retry_interval (16+)] reason`.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Parameters, TrackProperties, Version,
        coding::{Body, get_string, get_varint, put_string, put_varint},
    },
    limits::MAX_REASON_BYTES,
};

/// A message whose whole body is one Request ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

impl Body for RequestId {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self(get_varint(body, version)?))
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.0, version, "request id")
    }
}

/// Read the Request ID a response carries in draft-14 … -16; later drafts
/// answer on the request's own stream and carry none (decoded as 0).
pub(crate) fn get_response_id(body: &mut &[u8], version: Version) -> Result<u64, DecodeError> {
    match version.has_response_request_id() {
        true => get_varint(body, version),
        false => Ok(0),
    }
}

/// Write the Request ID a response carries in draft-14 … -16 (ignored later).
pub(crate) fn put_response_id(
    buf: &mut Vec<u8>,
    request_id: u64,
    version: Version,
) -> Result<(), EncodeError> {
    match version.has_response_request_id() {
        true => put_varint(buf, request_id, version, "request id"),
        false => Ok(()),
    }
}

/// Read the Required Request ID Delta (draft-17 only; 0 elsewhere).
pub(crate) fn get_required(body: &mut &[u8], version: Version) -> Result<u64, DecodeError> {
    match version.has_required_request_id() {
        true => get_varint(body, version),
        false => Ok(0),
    }
}

/// Write the Required Request ID Delta in draft-17; elsewhere it must be 0.
pub(crate) fn put_required(buf: &mut Vec<u8>, delta: u64, version: Version) -> Result<(), EncodeError> {
    match (version.has_required_request_id(), delta) {
        (true, delta) => put_varint(buf, delta, version, "required request id delta"),
        (false, 0) => Ok(()),
        (false, _) => Err(EncodeError::NotInDraft {
            what: "a Required Request ID Delta",
            version,
        }),
    }
}

/// REQUEST_OK (0x07, draft-15+): a request succeeded. Also the draft-15+
/// reply to TRACK_STATUS (with the parameters a SUBSCRIBE_OK would carry,
/// and, from draft-18, its Track Properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOk {
    /// The request answered (draft-15/16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// Parameters.
    pub params: Parameters,
    /// Track Properties (draft-18+; must be empty before).
    pub properties: TrackProperties,
}

impl Body for RequestOk {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let request_id = get_response_id(body, version)?;
        let params = Parameters::decode_from(body, version)?;
        let properties = match version.has_request_ok_properties() {
            true => TrackProperties::decode_to_end(body, version, "track properties")?,
            false => TrackProperties::new(),
        };
        Ok(Self {
            request_id,
            params,
            properties,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !self.properties.is_empty() && !version.has_request_ok_properties() {
            return Err(EncodeError::NotInDraft {
                what: "REQUEST_OK track properties",
                version,
            });
        }
        put_response_id(buf, self.request_id, version)?;
        self.params.encode_to(buf, version)?;
        self.properties.encode_to_end(buf, version, "track properties")
    }
}

/// A request failed: REQUEST_ERROR (0x05, draft-15+), or in draft-14
/// SUBSCRIBE_ERROR, PUBLISH_ERROR, FETCH_ERROR, TRACK_STATUS_ERROR,
/// PUBLISH_NAMESPACE_ERROR and SUBSCRIBE_NAMESPACE_ERROR, which share the
/// layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestError {
    /// The request refused (draft-14 … -16; 0 and not sent from draft-17).
    pub request_id: u64,
    /// The error code (registry per draft).
    pub code: u64,
    /// How long to wait before retrying, in milliseconds (draft-16+; 0 means
    /// "do not retry" there, and must be 0 before).
    pub retry_interval: u64,
    /// A human-readable reason, at most 1024 bytes.
    pub reason: String,
}

impl Body for RequestError {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: get_response_id(body, version)?,
            code: get_varint(body, version)?,
            retry_interval: match version.has_retry_interval() {
                true => get_varint(body, version)?,
                false => 0,
            },
            reason: get_string(body, version, "reason phrase", MAX_REASON_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_response_id(buf, self.request_id, version)?;
        put_varint(buf, self.code, version, "error code")?;
        match version.has_retry_interval() {
            true => put_varint(buf, self.retry_interval, version, "retry interval")?,
            false if self.retry_interval != 0 => {
                return Err(EncodeError::NotInDraft {
                    what: "a retry interval",
                    version,
                });
            }
            false => {}
        }
        put_string(buf, &self.reason, version, "reason phrase", MAX_REASON_BYTES)
    }
}

/// The error codes every draft (14 … 22) numbers the same way; the rest of
/// each registry moved between drafts (DOES_NOT_EXIST is 0x4 in draft-14's
/// SUBSCRIBE_ERROR and 0x10 in draft-16's REQUEST_ERROR).
pub mod codes {
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u64 = 0x0;
    /// UNAUTHORIZED.
    pub const UNAUTHORIZED: u64 = 0x1;
    /// TIMEOUT.
    pub const TIMEOUT: u64 = 0x2;
    /// NOT_SUPPORTED: what a relay replies to a request it does not serve.
    pub const NOT_SUPPORTED: u64 = 0x3;
}
