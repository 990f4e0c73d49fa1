//! Namespace announcement and discovery.
//!
//! - PUBLISH_NAMESPACE (0x06, "ANNOUNCE"): `request_id [required_delta (17)]
//!   ns params`. Answered by PUBLISH_NAMESPACE_OK (draft-14, a bare Request
//!   ID) or REQUEST_OK, and PUBLISH_NAMESPACE_ERROR (draft-14) or
//!   REQUEST_ERROR.
//! - PUBLISH_NAMESPACE_DONE (0x09) and PUBLISH_NAMESPACE_CANCEL (0x0C,
//!   `… code reason`), draft-14 … -16: name the namespace (draft-14, -15) or
//!   the PUBLISH_NAMESPACE's Request ID (draft-16). Later drafts end the
//!   request stream instead.
//! - SUBSCRIBE_NAMESPACE (0x11 in draft-14 … -17, 0x50 from draft-18):
//!   `request_id [required_delta (17)] prefix [options (16, 17)] params`.
//!   SUBSCRIBE_TRACKS (0x51, draft-18+) has the same layout as 0x50.
//! - NAMESPACE (0x08) / NAMESPACE_DONE (0x0E), draft-16+, on the
//!   SUBSCRIBE_NAMESPACE stream: `suffix`. With the MoQ Cluster extension a
//!   NAMESPACE also carries parameters (HOP_PATH, ROUTE_COST).
//! - UNSUBSCRIBE_NAMESPACE (0x14), draft-14 and -15: the Request ID. Draft-14's
//!   text puts the namespace prefix there instead; both are accepted.
//! - PUBLISH_BLOCKED (0x0F, draft-17+; PUBLISH_SKIPPED from draft-19):
//!   `suffix name`.

use crate::{
    DecodeError, EncodeError,
    ietf::{
        Namespace, Parameters, Version,
        coding::{Body, get_string, get_varint, put_string, put_varint},
    },
    limits::{MAX_NAME_BYTES, MAX_REASON_BYTES},
};

use super::request::{get_required, put_required};

/// PUBLISH_NAMESPACE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishNamespace {
    /// The publisher's Request ID.
    pub request_id: u64,
    /// Required Request ID Delta (draft-17 only).
    pub required_request_id_delta: u64,
    /// The namespace offered.
    pub namespace: Namespace,
    /// Parameters (authorization token; HOP_PATH / ROUTE_COST with the MoQ
    /// Cluster extension).
    pub params: Parameters,
}

impl Body for PublishNamespace {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: get_varint(body, version)?,
            required_request_id_delta: get_required(body, version)?,
            namespace: Namespace::decode_from(body, version)?,
            params: Parameters::decode_from(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        put_required(buf, self.required_request_id_delta, version)?;
        self.namespace.encode_to(buf, version)?;
        self.params.encode_to(buf, version)
    }
}

/// What PUBLISH_NAMESPACE_DONE / _CANCEL and UNSUBSCRIBE_NAMESPACE refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// By namespace (PUBLISH_NAMESPACE_DONE/_CANCEL in draft-14, -15; the
    /// draft-14 text of UNSUBSCRIBE_NAMESPACE).
    Namespace(Namespace),
    /// By the original request's ID (draft-16 DONE/CANCEL; draft-15
    /// UNSUBSCRIBE_NAMESPACE, and the draft-14 one as moq-net sends it).
    Request(u64),
}

impl Default for RequestTarget {
    fn default() -> Self {
        Self::Request(0)
    }
}

impl RequestTarget {
    fn decode_done(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        match version.has_namespace_done_by_request() {
            true => Ok(Self::Request(get_varint(body, version)?)),
            false => Ok(Self::Namespace(Namespace::decode_from(body, version)?)),
        }
    }

    fn encode_done(
        &self,
        buf: &mut Vec<u8>,
        version: Version,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        match (self, version.has_namespace_done_by_request()) {
            (Self::Request(id), true) => put_varint(buf, *id, version, "request id"),
            (Self::Namespace(ns), false) => ns.encode_to(buf, version),
            _ => Err(EncodeError::NotInDraft { what, version }),
        }
    }
}

/// PUBLISH_NAMESPACE_DONE ("UNANNOUNCE"), draft-14 … -16.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishNamespaceDone {
    /// The namespace (draft-14, -15) or request (draft-16) withdrawn.
    pub target: RequestTarget,
}

impl Body for PublishNamespaceDone {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            target: RequestTarget::decode_done(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.target
            .encode_done(buf, version, "this PUBLISH_NAMESPACE_DONE target")
    }
}

/// PUBLISH_NAMESPACE_CANCEL, draft-14 … -16: the receiver no longer accepts
/// the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishNamespaceCancel {
    /// The namespace (draft-14, -15) or request (draft-16) cancelled.
    pub target: RequestTarget,
    /// Error code.
    pub code: u64,
    /// A human-readable reason, at most 1024 bytes.
    pub reason: String,
}

impl Body for PublishNamespaceCancel {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            target: RequestTarget::decode_done(body, version)?,
            code: get_varint(body, version)?,
            reason: get_string(body, version, "reason phrase", MAX_REASON_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.target
            .encode_done(buf, version, "this PUBLISH_NAMESPACE_CANCEL target")?;
        put_varint(buf, self.code, version, "error code")?;
        put_string(buf, &self.reason, version, "reason phrase", MAX_REASON_BYTES)
    }
}

/// SUBSCRIBE_NAMESPACE, and SUBSCRIBE_TRACKS (draft-18+) which shares the
/// draft-18 layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeNamespace {
    /// The subscriber's Request ID.
    pub request_id: u64,
    /// Required Request ID Delta (draft-17 only).
    pub required_request_id_delta: u64,
    /// The namespace prefix of interest (empty = everything).
    pub prefix: Namespace,
    /// Subscribe Options (draft-16, -17: 0x1 namespaces, 0x2 tracks, 0x3
    /// both); 0 and not sent elsewhere.
    pub options: u64,
    /// Parameters (authorization token, HIDDEN, …).
    pub params: Parameters,
}

impl Body for SubscribeNamespace {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: get_varint(body, version)?,
            required_request_id_delta: get_required(body, version)?,
            prefix: Namespace::decode_from(body, version)?,
            options: match version.has_subscribe_options() {
                true => get_varint(body, version)?,
                false => 0,
            },
            params: Parameters::decode_from(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.request_id, version, "request id")?;
        put_required(buf, self.required_request_id_delta, version)?;
        self.prefix.encode_to(buf, version)?;
        match version.has_subscribe_options() {
            true => put_varint(buf, self.options, version, "subscribe options")?,
            false if self.options != 0 => {
                return Err(EncodeError::NotInDraft {
                    what: "Subscribe Options",
                    version,
                });
            }
            false => {}
        }
        self.params.encode_to(buf, version)
    }
}

/// NAMESPACE (draft-16+): a namespace under the subscribed prefix is active.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceActive {
    /// The namespace with the subscribed prefix removed.
    pub suffix: Namespace,
    /// Parameters, present only in the MoQ Cluster extension's extended form
    /// (draft-17+ sessions that negotiated it). `None` is the base form.
    pub params: Option<Parameters>,
}

impl Body for NamespaceActive {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let suffix = Namespace::decode_from(body, version)?;
        // The base form ends at the suffix; anything after it is the
        // extension's parameter list.
        let params = match body.is_empty() {
            true => None,
            false => Some(Parameters::decode_from(body, version)?),
        };
        Ok(Self { suffix, params })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.suffix.encode_to(buf, version)?;
        match &self.params {
            Some(params) => params.encode_to(buf, version),
            None => Ok(()),
        }
    }
}

/// A namespace suffix on its own: NAMESPACE_DONE (draft-16+).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceDone {
    /// The namespace with the subscribed prefix removed.
    pub suffix: Namespace,
}

impl Body for NamespaceDone {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            suffix: Namespace::decode_from(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.suffix.encode_to(buf, version)
    }
}

/// UNSUBSCRIBE_NAMESPACE (draft-14, -15).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeNamespace {
    /// The subscription ended: its Request ID, or (draft-14 text) its prefix.
    pub target: RequestTarget,
}

impl Body for UnsubscribeNamespace {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        // A body that is exactly one varint is a Request ID (draft-15, and
        // draft-14 as moq-net sends it); otherwise draft-14's namespace prefix.
        let mut id = *body;
        if let Ok(request) = get_varint(&mut id, version)
            && id.is_empty()
        {
            *body = id;
            return Ok(Self {
                target: RequestTarget::Request(request),
            });
        }
        match version.has_setup_versions() {
            true => Ok(Self {
                target: RequestTarget::Namespace(Namespace::decode_from(body, version)?),
            }),
            false => Ok(Self {
                target: RequestTarget::Request(get_varint(body, version)?),
            }),
        }
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match &self.target {
            RequestTarget::Request(id) => put_varint(buf, *id, version, "request id"),
            // A one-field-free prefix would read back as a Request ID.
            RequestTarget::Namespace(ns) if version.has_setup_versions() && !ns.fields.is_empty() => {
                ns.encode_to(buf, version)
            }
            RequestTarget::Namespace(_) => Err(EncodeError::NotInDraft {
                what: "UNSUBSCRIBE_NAMESPACE by an empty or post-draft-14 prefix",
                version,
            }),
        }
    }
}

/// PUBLISH_BLOCKED (draft-17, -18) / PUBLISH_SKIPPED (draft-19+): the
/// publisher will not PUBLISH this track to the namespace subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishBlocked {
    /// The track's namespace with the subscribed prefix removed.
    pub suffix: Namespace,
    /// The track name.
    pub name: String,
}

impl Body for PublishBlocked {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            suffix: Namespace::decode_from(body, version)?,
            name: get_string(body, version, "track name", MAX_NAME_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.suffix.encode_to(buf, version)?;
        put_string(buf, &self.name, version, "track name", MAX_NAME_BYTES)
    }
}
