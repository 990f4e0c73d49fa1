//! Control messages: `[type][length:u16][payload]` on the control stream
//! (draft-14 … -16) or on a request stream / the SETUP stream (draft-17+).
//!
//! [`Message`] decodes any of them for a draft. A type the draft does not
//! define (or one it defines for a different purpose) comes back as
//! [`Message::Unknown`] with its payload, framed correctly, so a session can
//! answer "not supported" or close as its draft requires instead of losing
//! its place in the stream.
//!
//! Type numbers by draft (— = not defined):
//!
//! | type | 14 | 15 | 16 | 17 | 18+ |
//! |---|---|---|---|---|---|
//! | 0x02 | SUBSCRIBE_UPDATE | SUBSCRIBE_UPDATE | REQUEST_UPDATE | REQUEST_UPDATE | REQUEST_UPDATE |
//! | 0x03 | SUBSCRIBE | = | = | = | = |
//! | 0x04 | SUBSCRIBE_OK | = | = | = | = |
//! | 0x05 | SUBSCRIBE_ERROR | REQUEST_ERROR | = | = | = |
//! | 0x06 | PUBLISH_NAMESPACE | = | = | = | = |
//! | 0x07 | PUBLISH_NAMESPACE_OK | REQUEST_OK | = | = | = |
//! | 0x08 | PUBLISH_NAMESPACE_ERROR | — | NAMESPACE | = | = |
//! | 0x09 | PUBLISH_NAMESPACE_DONE | = | = | — | — |
//! | 0x0A | UNSUBSCRIBE | = | = | — | — |
//! | 0x0B | PUBLISH_DONE | = | = | = | = |
//! | 0x0C | PUBLISH_NAMESPACE_CANCEL | = | = | — | — |
//! | 0x0D | TRACK_STATUS | = | = | = | = |
//! | 0x0E | TRACK_STATUS_OK | — | NAMESPACE_DONE | = | = |
//! | 0x0F | TRACK_STATUS_ERROR | — | — | PUBLISH_BLOCKED | = (PUBLISH_SKIPPED from 19) |
//! | 0x10 | GOAWAY | = | = | = | = |
//! | 0x11 | SUBSCRIBE_NAMESPACE | = | = | = | — |
//! | 0x12 / 0x13 | SUBSCRIBE_NAMESPACE_OK / _ERROR | — | — | — | — |
//! | 0x14 | UNSUBSCRIBE_NAMESPACE | = | — | — | — |
//! | 0x15 | MAX_REQUEST_ID | = | = | — | — |
//! | 0x16 | FETCH | = | = | = | = |
//! | 0x17 | FETCH_CANCEL | = | = | — | — |
//! | 0x18 | FETCH_OK | = | = | = | = |
//! | 0x19 | FETCH_ERROR | — | — | — | — |
//! | 0x1A | REQUESTS_BLOCKED | = | = | — | — |
//! | 0x1D | PUBLISH | = | = | = | = |
//! | 0x1E | PUBLISH_OK | = | = | = | = (18 only) |
//! | 0x1F | PUBLISH_ERROR | — | — | — | — |
//! | 0x20 / 0x21 | CLIENT_SETUP / SERVER_SETUP | = | = | — | — |
//! | 0x2F00 | — | — | — | SETUP | = |
//! | 0x50 / 0x51 | — | — | — | — | SUBSCRIBE_NAMESPACE / SUBSCRIBE_TRACKS |

mod fetch;
mod goaway;
mod namespace;
mod publish;
mod request;
mod subscribe;

use bytes::{Buf, BufMut, Bytes};

pub use fetch::{Fetch, FetchKind, FetchOk};
pub use goaway::GoAway;
pub use namespace::{
    NamespaceActive, NamespaceDone, PublishBlocked, PublishNamespace, PublishNamespaceCancel,
    PublishNamespaceDone, RequestTarget, SubscribeNamespace, UnsubscribeNamespace,
};
pub use publish::{Publish, PublishOk};
pub use request::{RequestError, RequestId, RequestOk, codes};
pub use subscribe::{PublishDone, RequestUpdate, Subscribe, SubscribeOk};

use super::{
    ClientSetup, ServerSetup, Setup, Version,
    coding::{Body, Decode, Encode, decode_exact, decode_frame, put_frame},
};
use crate::{DecodeError, EncodeError};

/// Every control message type, independent of its number in a given draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// CLIENT_SETUP (draft-14 … -16).
    ClientSetup,
    /// SERVER_SETUP (draft-14 … -16).
    ServerSetup,
    /// SETUP (draft-17+).
    Setup,
    /// GOAWAY.
    GoAway,
    /// MAX_REQUEST_ID (draft-14 … -16).
    MaxRequestId,
    /// REQUESTS_BLOCKED (draft-14 … -16).
    RequestsBlocked,
    /// REQUEST_OK (draft-15+).
    RequestOk,
    /// REQUEST_ERROR (draft-15+).
    RequestError,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBSCRIBE_OK.
    SubscribeOk,
    /// SUBSCRIBE_ERROR (draft-14).
    SubscribeError,
    /// SUBSCRIBE_UPDATE / REQUEST_UPDATE.
    RequestUpdate,
    /// UNSUBSCRIBE (draft-14 … -16).
    Unsubscribe,
    /// PUBLISH_DONE.
    PublishDone,
    /// PUBLISH.
    Publish,
    /// PUBLISH_OK (draft-14 … -18).
    PublishOk,
    /// PUBLISH_ERROR (draft-14).
    PublishError,
    /// FETCH.
    Fetch,
    /// FETCH_OK.
    FetchOk,
    /// FETCH_ERROR (draft-14).
    FetchError,
    /// FETCH_CANCEL (draft-14 … -16).
    FetchCancel,
    /// TRACK_STATUS.
    TrackStatus,
    /// TRACK_STATUS_OK (draft-14).
    TrackStatusOk,
    /// TRACK_STATUS_ERROR (draft-14).
    TrackStatusError,
    /// PUBLISH_NAMESPACE.
    PublishNamespace,
    /// PUBLISH_NAMESPACE_OK (draft-14).
    PublishNamespaceOk,
    /// PUBLISH_NAMESPACE_ERROR (draft-14).
    PublishNamespaceError,
    /// PUBLISH_NAMESPACE_DONE (draft-14 … -16).
    PublishNamespaceDone,
    /// PUBLISH_NAMESPACE_CANCEL (draft-14 … -16).
    PublishNamespaceCancel,
    /// NAMESPACE (draft-16+).
    Namespace,
    /// NAMESPACE_DONE (draft-16+).
    NamespaceDone,
    /// SUBSCRIBE_NAMESPACE.
    SubscribeNamespace,
    /// SUBSCRIBE_NAMESPACE_OK (draft-14).
    SubscribeNamespaceOk,
    /// SUBSCRIBE_NAMESPACE_ERROR (draft-14).
    SubscribeNamespaceError,
    /// UNSUBSCRIBE_NAMESPACE (draft-14, -15).
    UnsubscribeNamespace,
    /// SUBSCRIBE_TRACKS (draft-18+).
    SubscribeTracks,
    /// PUBLISH_BLOCKED / PUBLISH_SKIPPED (draft-17+).
    PublishBlocked,
}

impl MessageType {
    /// Every message type.
    pub const ALL: [MessageType; 37] = [
        Self::ClientSetup,
        Self::ServerSetup,
        Self::Setup,
        Self::GoAway,
        Self::MaxRequestId,
        Self::RequestsBlocked,
        Self::RequestOk,
        Self::RequestError,
        Self::Subscribe,
        Self::SubscribeOk,
        Self::SubscribeError,
        Self::RequestUpdate,
        Self::Unsubscribe,
        Self::PublishDone,
        Self::Publish,
        Self::PublishOk,
        Self::PublishError,
        Self::Fetch,
        Self::FetchOk,
        Self::FetchError,
        Self::FetchCancel,
        Self::TrackStatus,
        Self::TrackStatusOk,
        Self::TrackStatusError,
        Self::PublishNamespace,
        Self::PublishNamespaceOk,
        Self::PublishNamespaceError,
        Self::PublishNamespaceDone,
        Self::PublishNamespaceCancel,
        Self::Namespace,
        Self::NamespaceDone,
        Self::SubscribeNamespace,
        Self::SubscribeNamespaceOk,
        Self::SubscribeNamespaceError,
        Self::UnsubscribeNamespace,
        Self::SubscribeTracks,
        Self::PublishBlocked,
    ];

    /// The type number in `version`, or `None` when the draft lacks it.
    pub fn code(self, version: Version) -> Option<u64> {
        let v = version;
        let d14 = !v.has_request_ok();
        let legacy = v.has_control_stream_requests();
        let (code, exists) = match self {
            Self::ClientSetup => (0x20, !v.has_unified_setup()),
            Self::ServerSetup => (0x21, !v.has_unified_setup()),
            Self::Setup => (0x2F00, v.has_unified_setup()),
            Self::GoAway => (0x10, true),
            Self::MaxRequestId => (0x15, legacy),
            Self::RequestsBlocked => (0x1A, legacy),
            Self::RequestOk => (0x07, !d14),
            Self::RequestError => (0x05, !d14),
            Self::Subscribe => (0x03, true),
            Self::SubscribeOk => (0x04, true),
            Self::SubscribeError => (0x05, d14),
            Self::RequestUpdate => (0x02, true),
            Self::Unsubscribe => (0x0A, legacy),
            Self::PublishDone => (0x0B, true),
            Self::Publish => (0x1D, true),
            Self::PublishOk => (0x1E, v.has_publish_ok()),
            Self::PublishError => (0x1F, d14),
            Self::Fetch => (0x16, true),
            Self::FetchOk => (0x18, true),
            Self::FetchError => (0x19, d14),
            Self::FetchCancel => (0x17, legacy),
            Self::TrackStatus => (0x0D, true),
            Self::TrackStatusOk => (0x0E, d14),
            Self::TrackStatusError => (0x0F, d14),
            Self::PublishNamespace => (0x06, true),
            Self::PublishNamespaceOk => (0x07, d14),
            Self::PublishNamespaceError => (0x08, d14),
            Self::PublishNamespaceDone => (0x09, legacy),
            Self::PublishNamespaceCancel => (0x0C, legacy),
            Self::Namespace => (0x08, v.has_namespace_messages()),
            Self::NamespaceDone => (0x0E, v.has_namespace_messages()),
            Self::SubscribeNamespace => match v.has_subscribe_tracks() {
                true => (0x50, true),
                false => (0x11, true),
            },
            Self::SubscribeNamespaceOk => (0x12, d14),
            Self::SubscribeNamespaceError => (0x13, d14),
            Self::UnsubscribeNamespace => (0x14, v <= Version::Draft15),
            Self::SubscribeTracks => (0x51, v.has_subscribe_tracks()),
            Self::PublishBlocked => (0x0F, v >= Version::Draft17),
        };
        exists.then_some(code)
    }

    /// The message type a number names in `version`, if any.
    pub fn from_code(code: u64, version: Version) -> Option<Self> {
        // Small, and only consulted once per message: a scan keeps one table.
        Self::ALL.into_iter().find(|t| t.code(version) == Some(code))
    }

    /// The message's name in `version` (the drafts renamed a few).
    pub fn name(self, version: Version) -> &'static str {
        match self {
            Self::ClientSetup => "CLIENT_SETUP",
            Self::ServerSetup => "SERVER_SETUP",
            Self::Setup => "SETUP",
            Self::GoAway => "GOAWAY",
            Self::MaxRequestId => "MAX_REQUEST_ID",
            Self::RequestsBlocked => "REQUESTS_BLOCKED",
            Self::RequestOk => "REQUEST_OK",
            Self::RequestError => "REQUEST_ERROR",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubscribeOk => "SUBSCRIBE_OK",
            Self::SubscribeError => "SUBSCRIBE_ERROR",
            Self::RequestUpdate if version <= Version::Draft15 => "SUBSCRIBE_UPDATE",
            Self::RequestUpdate => "REQUEST_UPDATE",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::PublishDone => "PUBLISH_DONE",
            Self::Publish => "PUBLISH",
            Self::PublishOk => "PUBLISH_OK",
            Self::PublishError => "PUBLISH_ERROR",
            Self::Fetch => "FETCH",
            Self::FetchOk => "FETCH_OK",
            Self::FetchError => "FETCH_ERROR",
            Self::FetchCancel => "FETCH_CANCEL",
            Self::TrackStatus => "TRACK_STATUS",
            Self::TrackStatusOk => "TRACK_STATUS_OK",
            Self::TrackStatusError => "TRACK_STATUS_ERROR",
            Self::PublishNamespace => "PUBLISH_NAMESPACE",
            Self::PublishNamespaceOk => "PUBLISH_NAMESPACE_OK",
            Self::PublishNamespaceError => "PUBLISH_NAMESPACE_ERROR",
            Self::PublishNamespaceDone => "PUBLISH_NAMESPACE_DONE",
            Self::PublishNamespaceCancel => "PUBLISH_NAMESPACE_CANCEL",
            Self::Namespace => "NAMESPACE",
            Self::NamespaceDone => "NAMESPACE_DONE",
            Self::SubscribeNamespace => "SUBSCRIBE_NAMESPACE",
            Self::SubscribeNamespaceOk => "SUBSCRIBE_NAMESPACE_OK",
            Self::SubscribeNamespaceError => "SUBSCRIBE_NAMESPACE_ERROR",
            Self::UnsubscribeNamespace => "UNSUBSCRIBE_NAMESPACE",
            Self::SubscribeTracks => "SUBSCRIBE_TRACKS",
            Self::PublishBlocked if version >= Version::Draft19 => "PUBLISH_SKIPPED",
            Self::PublishBlocked => "PUBLISH_BLOCKED",
        }
    }
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// CLIENT_SETUP (draft-14 … -16).
    ClientSetup(ClientSetup),
    /// SERVER_SETUP (draft-14 … -16).
    ServerSetup(ServerSetup),
    /// SETUP (draft-17+).
    Setup(Setup),
    /// GOAWAY.
    GoAway(GoAway),
    /// MAX_REQUEST_ID (draft-14 … -16): the peer may use request ids below this.
    MaxRequestId(RequestId),
    /// REQUESTS_BLOCKED (draft-14 … -16): the peer ran into this limit.
    RequestsBlocked(RequestId),
    /// REQUEST_OK (draft-15+).
    RequestOk(RequestOk),
    /// REQUEST_ERROR (draft-15+).
    RequestError(RequestError),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBSCRIBE_OK.
    SubscribeOk(SubscribeOk),
    /// SUBSCRIBE_ERROR (draft-14).
    SubscribeError(RequestError),
    /// SUBSCRIBE_UPDATE / REQUEST_UPDATE.
    RequestUpdate(RequestUpdate),
    /// UNSUBSCRIBE (draft-14 … -16).
    Unsubscribe(RequestId),
    /// PUBLISH_DONE.
    PublishDone(PublishDone),
    /// PUBLISH.
    Publish(Publish),
    /// PUBLISH_OK (draft-14 … -18).
    PublishOk(PublishOk),
    /// PUBLISH_ERROR (draft-14).
    PublishError(RequestError),
    /// FETCH.
    Fetch(Fetch),
    /// FETCH_OK.
    FetchOk(FetchOk),
    /// FETCH_ERROR (draft-14).
    FetchError(RequestError),
    /// FETCH_CANCEL (draft-14 … -16).
    FetchCancel(RequestId),
    /// TRACK_STATUS (the SUBSCRIBE layout).
    TrackStatus(Subscribe),
    /// TRACK_STATUS_OK (draft-14; the SUBSCRIBE_OK layout).
    TrackStatusOk(SubscribeOk),
    /// TRACK_STATUS_ERROR (draft-14).
    TrackStatusError(RequestError),
    /// PUBLISH_NAMESPACE.
    PublishNamespace(PublishNamespace),
    /// PUBLISH_NAMESPACE_OK (draft-14).
    PublishNamespaceOk(RequestId),
    /// PUBLISH_NAMESPACE_ERROR (draft-14).
    PublishNamespaceError(RequestError),
    /// PUBLISH_NAMESPACE_DONE (draft-14 … -16).
    PublishNamespaceDone(PublishNamespaceDone),
    /// PUBLISH_NAMESPACE_CANCEL (draft-14 … -16).
    PublishNamespaceCancel(PublishNamespaceCancel),
    /// NAMESPACE (draft-16+).
    Namespace(NamespaceActive),
    /// NAMESPACE_DONE (draft-16+).
    NamespaceDone(NamespaceDone),
    /// SUBSCRIBE_NAMESPACE.
    SubscribeNamespace(SubscribeNamespace),
    /// SUBSCRIBE_NAMESPACE_OK (draft-14).
    SubscribeNamespaceOk(RequestId),
    /// SUBSCRIBE_NAMESPACE_ERROR (draft-14).
    SubscribeNamespaceError(RequestError),
    /// UNSUBSCRIBE_NAMESPACE (draft-14, -15).
    UnsubscribeNamespace(UnsubscribeNamespace),
    /// SUBSCRIBE_TRACKS (draft-18+; the SUBSCRIBE_NAMESPACE layout).
    SubscribeTracks(SubscribeNamespace),
    /// PUBLISH_BLOCKED / PUBLISH_SKIPPED (draft-17+).
    PublishBlocked(PublishBlocked),
    /// A type this draft does not define, with its payload.
    Unknown {
        /// The type number.
        kind: u64,
        /// The payload (at most 65535 bytes).
        body: Bytes,
    },
}

impl Message {
    /// The message's type, or `None` for [`Message::Unknown`].
    pub fn message_type(&self) -> Option<MessageType> {
        use MessageType as T;
        Some(match self {
            Self::ClientSetup(_) => T::ClientSetup,
            Self::ServerSetup(_) => T::ServerSetup,
            Self::Setup(_) => T::Setup,
            Self::GoAway(_) => T::GoAway,
            Self::MaxRequestId(_) => T::MaxRequestId,
            Self::RequestsBlocked(_) => T::RequestsBlocked,
            Self::RequestOk(_) => T::RequestOk,
            Self::RequestError(_) => T::RequestError,
            Self::Subscribe(_) => T::Subscribe,
            Self::SubscribeOk(_) => T::SubscribeOk,
            Self::SubscribeError(_) => T::SubscribeError,
            Self::RequestUpdate(_) => T::RequestUpdate,
            Self::Unsubscribe(_) => T::Unsubscribe,
            Self::PublishDone(_) => T::PublishDone,
            Self::Publish(_) => T::Publish,
            Self::PublishOk(_) => T::PublishOk,
            Self::PublishError(_) => T::PublishError,
            Self::Fetch(_) => T::Fetch,
            Self::FetchOk(_) => T::FetchOk,
            Self::FetchError(_) => T::FetchError,
            Self::FetchCancel(_) => T::FetchCancel,
            Self::TrackStatus(_) => T::TrackStatus,
            Self::TrackStatusOk(_) => T::TrackStatusOk,
            Self::TrackStatusError(_) => T::TrackStatusError,
            Self::PublishNamespace(_) => T::PublishNamespace,
            Self::PublishNamespaceOk(_) => T::PublishNamespaceOk,
            Self::PublishNamespaceError(_) => T::PublishNamespaceError,
            Self::PublishNamespaceDone(_) => T::PublishNamespaceDone,
            Self::PublishNamespaceCancel(_) => T::PublishNamespaceCancel,
            Self::Namespace(_) => T::Namespace,
            Self::NamespaceDone(_) => T::NamespaceDone,
            Self::SubscribeNamespace(_) => T::SubscribeNamespace,
            Self::SubscribeNamespaceOk(_) => T::SubscribeNamespaceOk,
            Self::SubscribeNamespaceError(_) => T::SubscribeNamespaceError,
            Self::UnsubscribeNamespace(_) => T::UnsubscribeNamespace,
            Self::SubscribeTracks(_) => T::SubscribeTracks,
            Self::PublishBlocked(_) => T::PublishBlocked,
            Self::Unknown { .. } => return None,
        })
    }

    /// The Request ID a request message starts (SUBSCRIBE, PUBLISH, FETCH,
    /// TRACK_STATUS, PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE/_TRACKS,
    /// SUBSCRIBE_UPDATE/REQUEST_UPDATE), for request-id bookkeeping.
    pub fn new_request_id(&self) -> Option<u64> {
        Some(match self {
            Self::Subscribe(m) | Self::TrackStatus(m) => m.request_id,
            Self::Publish(m) => m.request_id,
            Self::Fetch(m) => m.request_id,
            Self::PublishNamespace(m) => m.request_id,
            Self::SubscribeNamespace(m) | Self::SubscribeTracks(m) => m.request_id,
            Self::RequestUpdate(m) => m.request_id,
            _ => return None,
        })
    }

    /// The error reply that refuses this request in `version`: draft-14's
    /// per-request `…_ERROR`, or REQUEST_ERROR from draft-15 (without a
    /// Request ID from draft-17, where it goes back on the request's stream).
    /// `None` for a message that is not a request, or a draft-14 request
    /// with no error reply (SUBSCRIBE_UPDATE).
    ///
    /// Error codes differ by draft; [`codes`] lists the ones that do not.
    pub fn error_reply(&self, version: Version, code: u64, reason: &str) -> Option<Message> {
        let request_id = self.new_request_id()?;
        let error = RequestError {
            request_id: if version.has_response_request_id() {
                request_id
            } else {
                0
            },
            code,
            retry_interval: 0,
            reason: reason.to_string(),
        };
        if version.has_request_ok() {
            return Some(Self::RequestError(error));
        }
        Some(match self {
            Self::Subscribe(_) => Self::SubscribeError(error),
            Self::TrackStatus(_) => Self::TrackStatusError(error),
            Self::Fetch(_) => Self::FetchError(error),
            Self::Publish(_) => Self::PublishError(error),
            Self::PublishNamespace(_) => Self::PublishNamespaceError(error),
            Self::SubscribeNamespace(_) => Self::SubscribeNamespaceError(error),
            _ => return None,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match self {
            Self::ClientSetup(m) => m.encode_body(buf, version),
            Self::ServerSetup(m) => m.encode_body(buf, version),
            Self::Setup(m) => m.encode_body(buf, version),
            Self::GoAway(m) => m.encode_body(buf, version),
            Self::MaxRequestId(m)
            | Self::RequestsBlocked(m)
            | Self::Unsubscribe(m)
            | Self::FetchCancel(m)
            | Self::PublishNamespaceOk(m)
            | Self::SubscribeNamespaceOk(m) => m.encode_body(buf, version),
            Self::RequestOk(m) => m.encode_body(buf, version),
            Self::RequestError(m)
            | Self::SubscribeError(m)
            | Self::PublishError(m)
            | Self::FetchError(m)
            | Self::TrackStatusError(m)
            | Self::PublishNamespaceError(m)
            | Self::SubscribeNamespaceError(m) => m.encode_body(buf, version),
            Self::Subscribe(m) | Self::TrackStatus(m) => m.encode_body(buf, version),
            Self::SubscribeOk(m) | Self::TrackStatusOk(m) => m.encode_body(buf, version),
            Self::RequestUpdate(m) => m.encode_body(buf, version),
            Self::PublishDone(m) => m.encode_body(buf, version),
            Self::Publish(m) => m.encode_body(buf, version),
            Self::PublishOk(m) => m.encode_body(buf, version),
            Self::Fetch(m) => m.encode_body(buf, version),
            Self::FetchOk(m) => m.encode_body(buf, version),
            Self::PublishNamespace(m) => m.encode_body(buf, version),
            Self::PublishNamespaceDone(m) => m.encode_body(buf, version),
            Self::PublishNamespaceCancel(m) => m.encode_body(buf, version),
            Self::Namespace(m) => m.encode_body(buf, version),
            Self::NamespaceDone(m) => m.encode_body(buf, version),
            Self::SubscribeNamespace(m) | Self::SubscribeTracks(m) => m.encode_body(buf, version),
            Self::UnsubscribeNamespace(m) => m.encode_body(buf, version),
            Self::PublishBlocked(m) => m.encode_body(buf, version),
            Self::Unknown { body, .. } => {
                buf.extend_from_slice(body);
                Ok(())
            }
        }
    }

    fn decode_body(kind: MessageType, body: &[u8], version: Version) -> Result<Self, DecodeError> {
        use MessageType as T;
        let what = kind.name(version);
        let v = version;
        Ok(match kind {
            T::ClientSetup => Self::ClientSetup(decode_exact(body, v, what)?),
            T::ServerSetup => Self::ServerSetup(decode_exact(body, v, what)?),
            T::Setup => Self::Setup(decode_exact(body, v, what)?),
            T::GoAway => Self::GoAway(decode_exact(body, v, what)?),
            T::MaxRequestId => Self::MaxRequestId(decode_exact(body, v, what)?),
            T::RequestsBlocked => Self::RequestsBlocked(decode_exact(body, v, what)?),
            T::RequestOk => Self::RequestOk(decode_exact(body, v, what)?),
            T::RequestError => Self::RequestError(decode_exact(body, v, what)?),
            T::Subscribe => Self::Subscribe(decode_exact(body, v, what)?),
            T::SubscribeOk => Self::SubscribeOk(decode_exact(body, v, what)?),
            T::SubscribeError => Self::SubscribeError(decode_exact(body, v, what)?),
            T::RequestUpdate => Self::RequestUpdate(decode_exact(body, v, what)?),
            T::Unsubscribe => Self::Unsubscribe(decode_exact(body, v, what)?),
            T::PublishDone => Self::PublishDone(decode_exact(body, v, what)?),
            T::Publish => Self::Publish(decode_exact(body, v, what)?),
            T::PublishOk => Self::PublishOk(decode_exact(body, v, what)?),
            T::PublishError => Self::PublishError(decode_exact(body, v, what)?),
            T::Fetch => Self::Fetch(decode_exact(body, v, what)?),
            T::FetchOk => Self::FetchOk(decode_exact(body, v, what)?),
            T::FetchError => Self::FetchError(decode_exact(body, v, what)?),
            T::FetchCancel => Self::FetchCancel(decode_exact(body, v, what)?),
            T::TrackStatus => Self::TrackStatus(decode_exact(body, v, what)?),
            T::TrackStatusOk => Self::TrackStatusOk(decode_exact(body, v, what)?),
            T::TrackStatusError => Self::TrackStatusError(decode_exact(body, v, what)?),
            T::PublishNamespace => Self::PublishNamespace(decode_exact(body, v, what)?),
            T::PublishNamespaceOk => Self::PublishNamespaceOk(decode_exact(body, v, what)?),
            T::PublishNamespaceError => Self::PublishNamespaceError(decode_exact(body, v, what)?),
            T::PublishNamespaceDone => Self::PublishNamespaceDone(decode_exact(body, v, what)?),
            T::PublishNamespaceCancel => Self::PublishNamespaceCancel(decode_exact(body, v, what)?),
            T::Namespace => Self::Namespace(decode_exact(body, v, what)?),
            T::NamespaceDone => Self::NamespaceDone(decode_exact(body, v, what)?),
            T::SubscribeNamespace => Self::SubscribeNamespace(decode_exact(body, v, what)?),
            T::SubscribeNamespaceOk => Self::SubscribeNamespaceOk(decode_exact(body, v, what)?),
            T::SubscribeNamespaceError => Self::SubscribeNamespaceError(decode_exact(body, v, what)?),
            T::UnsubscribeNamespace => Self::UnsubscribeNamespace(decode_exact(body, v, what)?),
            T::SubscribeTracks => Self::SubscribeTracks(decode_exact(body, v, what)?),
            T::PublishBlocked => Self::PublishBlocked(decode_exact(body, v, what)?),
        })
    }
}

impl Decode for Message {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        decode_frame(buf, version, |kind, body| {
            match MessageType::from_code(kind, version) {
                Some(t) => Self::decode_body(t, body, version),
                None => Ok(Self::Unknown {
                    kind,
                    body: Bytes::copy_from_slice(body),
                }),
            }
        })
    }
}

impl Encode for Message {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let (kind, what) = match (self, self.message_type()) {
            (Self::Unknown { kind, .. }, _) => {
                if MessageType::from_code(*kind, version).is_some() {
                    return Err(EncodeError::Invalid {
                        what: "unknown message",
                        reason: "the type is defined in this draft; use its variant",
                    });
                }
                (*kind, "unknown message")
            }
            (_, Some(t)) => {
                let what = t.name(version);
                let kind = t.code(version).ok_or(EncodeError::NotInDraft { what, version })?;
                (kind, what)
            }
            // Only Unknown has no type.
            (_, None) => {
                return Err(EncodeError::Invalid {
                    what: "message",
                    reason: "no message type",
                });
            }
        };
        let mut body = Vec::with_capacity(64);
        self.encode_body(&mut body, version)?;
        put_frame(buf, kind, &body, version, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_consistent() {
        for v in Version::ALL {
            let mut codes = Vec::new();
            for t in MessageType::ALL {
                if let Some(code) = t.code(v) {
                    assert!(!codes.contains(&code), "{v}: {code:#x} used twice");
                    codes.push(code);
                    assert_eq!(MessageType::from_code(code, v), Some(t));
                }
            }
        }
        // Numbers the drafts reuse for other messages.
        let d14 = Version::Draft14;
        let d16 = Version::Draft16;
        assert_eq!(
            MessageType::from_code(0x05, d14),
            Some(MessageType::SubscribeError)
        );
        assert_eq!(MessageType::from_code(0x05, d16), Some(MessageType::RequestError));
        assert_eq!(
            MessageType::from_code(0x0E, d14),
            Some(MessageType::TrackStatusOk)
        );
        assert_eq!(
            MessageType::from_code(0x0E, d16),
            Some(MessageType::NamespaceDone)
        );
        assert_eq!(MessageType::from_code(0x08, Version::Draft15), None);
        assert_eq!(MessageType::from_code(0x11, Version::Draft18), None);
        assert_eq!(
            MessageType::from_code(0x50, Version::Draft18),
            Some(MessageType::SubscribeNamespace)
        );
        assert_eq!(MessageType::from_code(0x15, Version::Draft17), None);
        assert_eq!(MessageType::from_code(0x1E, Version::Draft19), None);
    }

    #[test]
    fn error_replies_by_draft() {
        let sub = Message::Subscribe(Subscribe {
            request_id: 6,
            ..Default::default()
        });
        let reply = sub
            .error_reply(Version::Draft14, codes::NOT_SUPPORTED, "no")
            .unwrap();
        assert_eq!(reply.message_type(), Some(MessageType::SubscribeError));
        let Message::SubscribeError(err) = reply else {
            unreachable!()
        };
        assert_eq!((err.request_id, err.code, err.reason.as_str()), (6, 3, "no"));
        let reply = sub.error_reply(Version::Draft16, 3, "").unwrap();
        assert!(matches!(
            reply,
            Message::RequestError(RequestError { request_id: 6, .. })
        ));
        let reply = sub.error_reply(Version::Draft18, 3, "").unwrap();
        assert!(matches!(
            reply,
            Message::RequestError(RequestError { request_id: 0, .. })
        ));
        let ns = Message::SubscribeNamespace(SubscribeNamespace::default());
        assert_eq!(
            ns.error_reply(Version::Draft14, 3, "")
                .and_then(|m| m.message_type()),
            Some(MessageType::SubscribeNamespaceError)
        );
        // Not a request, or a draft-14 request without an error reply.
        assert!(
            Message::GoAway(GoAway::default())
                .error_reply(Version::Draft16, 3, "")
                .is_none()
        );
        let update = Message::RequestUpdate(RequestUpdate::default());
        assert!(update.error_reply(Version::Draft14, 3, "").is_none());
        assert!(update.error_reply(Version::Draft16, 3, "").is_some());
    }

    #[test]
    fn unknown_types_keep_their_payload() {
        // MAX_REQUEST_ID does not exist in draft-17: it stays framed.
        let wire = [0x15, 0x00, 0x01, 0x07, 0x03, 0x00, 0x00];
        let mut cursor = &wire[..];
        let msg = Message::decode(&mut cursor, Version::Draft17).unwrap();
        assert_eq!(
            msg,
            Message::Unknown {
                kind: 0x15,
                body: Bytes::from_static(&[7])
            }
        );
        assert_eq!(cursor, [0x03, 0x00, 0x00]);
        assert_eq!(msg.to_vec(Version::Draft17).unwrap(), wire[..4]);
        // But it cannot be sent as "unknown" where it is known.
        assert!(msg.to_vec(Version::Draft16).is_err());
        // A known message in a draft without it.
        let err = Message::MaxRequestId(RequestId(1))
            .to_vec(Version::Draft17)
            .unwrap_err();
        assert!(matches!(
            err,
            EncodeError::NotInDraft {
                what: "MAX_REQUEST_ID",
                ..
            }
        ));
    }
}
