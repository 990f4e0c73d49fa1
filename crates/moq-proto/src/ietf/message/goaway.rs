//! GOAWAY (0x10): the sender is draining; reconnect (to the URI, if any).
//!
//! Wire: `uri` in draft-14 … -16; `uri timeout` from draft-17; draft-18 may
//! append the last Request ID processed (required on the control stream by
//! the text, optional in practice; draft-19 removed it again). A client must
//! send an empty URI. URIs are at most 8192 bytes in every draft.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Version,
        coding::{Body, get_string, get_varint, put_string, put_varint},
    },
    limits::MAX_URI_BYTES,
};

/// GOAWAY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoAway {
    /// Where to reconnect; empty means "the same place".
    pub uri: String,
    /// Milliseconds before the sender closes the session (draft-17+; 0 =
    /// unspecified, and must be 0 before draft-17).
    pub timeout: u64,
    /// The last Request ID the sender processed (draft-18 only).
    pub request_id: Option<u64>,
}

impl Body for GoAway {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let uri = get_string(body, version, "goaway uri", MAX_URI_BYTES)?;
        let timeout = match version.has_goaway_timeout() {
            true => get_varint(body, version)?,
            false => 0,
        };
        let request_id = match version.has_goaway_request_id() && !body.is_empty() {
            true => Some(get_varint(body, version)?),
            false => None,
        };
        Ok(Self {
            uri,
            timeout,
            request_id,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if self.timeout != 0 && !version.has_goaway_timeout() {
            return Err(EncodeError::NotInDraft {
                what: "a GOAWAY timeout",
                version,
            });
        }
        if self.request_id.is_some() && !version.has_goaway_request_id() {
            return Err(EncodeError::NotInDraft {
                what: "a GOAWAY request id",
                version,
            });
        }
        put_string(buf, &self.uri, version, "goaway uri", MAX_URI_BYTES)?;
        if version.has_goaway_timeout() {
            put_varint(buf, self.timeout, version, "goaway timeout")?;
        }
        if let Some(id) = self.request_id {
            put_varint(buf, id, version, "request id")?;
        }
        Ok(())
    }
}
