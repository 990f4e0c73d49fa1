//! A sans-IO codec for IETF moq-transport, drafts 14 to 22, in the shape the
//! deployed peers put on the wire.
//!
//! Like the moq-lite codec next door it turns bytes into typed values and
//! back and nothing else: no sockets, no clock, no session state. Every
//! length is checked against [`crate::limits`] before anything is buffered,
//! [`crate::DecodeError::Short`] means "wait for more bytes", and any other
//! error means the input can never become valid.
//!
//! # Drafts
//!
//! | draft | ALPN | version code | handshake |
//! |---|---|---|---|
//! | 14 | `moq-00` | 0xff00000e | CLIENT_SETUP (0x20) with a version list / SERVER_SETUP (0x21) on the first bidi stream |
//! | 15, 16 | `moqt-15`, `moqt-16` | 0xff00000f, 0xff000010 | the same messages without versions |
//! | 17 … 22 | `moqt-17` … `moqt-22` | 0xff000011 … 0xff000016 | SETUP (0x2F00) opening each side's uni control stream |
//!
//! Facts come from the draft texts (draft-ietf-moq-transport-14 … -19) and,
//! for drafts 20–22 and wherever a text and the ecosystem's peers disagree,
//! from `moq-net` 0.3.18, the implementation `moq` (moq-cli 0.14.10),
//! `moq-relay` 0.17.10 and, for its IETF drafts, `@moq/net` run. The one
//! place we keep to the text against it: the draft-14 … -16 AbsoluteRange
//! End Group is absolute (moq-net reads a delta there, but never sends one).
//!
//! # How the drafts differ
//!
//! - Integers: the QUIC varint up to draft-16, the "leading ones" varint from
//!   draft-17 (1–9 bytes, full 64-bit range; the 7-byte form is reserved in
//!   draft-17 only) — [`coding::get_varint`].
//! - Framing: every control message is `[type][length:u16][payload]`
//!   ([`Message`]). A type the draft lacks decodes as [`Message::Unknown`]
//!   with its payload, so the session decides between "not supported" and
//!   closing.
//! - Streams: draft-14 … -16 multiplex every request over the control stream
//!   (draft-16 gives SUBSCRIBE_NAMESPACE its own bidi stream); draft-17+ open
//!   one bidi stream per request, so responses lose their Request ID (the
//!   structs keep a `request_id` field, which is 0 and not sent there), and
//!   UNSUBSCRIBE, FETCH_CANCEL, PUBLISH_NAMESPACE_DONE/_CANCEL and
//!   MAX_REQUEST_ID / REQUESTS_BLOCKED give way to stream FIN, STOP_SENDING
//!   and resets. Draft-17 alone adds a Required Request ID Delta to requests.
//! - Replies: draft-14 has an `_OK` and `_ERROR` per request (all errors share
//!   [`RequestError`]); draft-15+ use REQUEST_OK / REQUEST_ERROR, with a Retry
//!   Interval from draft-16 and Track Properties on REQUEST_OK from draft-18.
//! - Parameters ([`Parameters`]): fixed fields in draft-14 SUBSCRIBE,
//!   SUBSCRIBE_OK, SUBSCRIBE_UPDATE, PUBLISH, PUBLISH_OK, FETCH and FETCH_OK
//!   became parameters in draft-15. Messages lift them back into fields
//!   (`priority`, `group_order`, `forward`, `filter`, `largest`, `expires`)
//!   so a session reads them the same way in every draft. Parameter types are
//!   absolute in draft-14/15 and deltas from draft-16; values are
//!   Key-Value-Pairs (unknown ones skipped) up to draft-16 and type-specific
//!   (unknown ones fatal) from draft-17.
//! - The subscription filter ([`Filter`]) has four encodings: inline tag
//!   (14), tag inside a parameter (15–19, End Group absolute through 16 and a
//!   delta from 17), a field list (20, 21) and a typed form (22).
//! - Namespace discovery: SUBSCRIBE_NAMESPACE is answered by forwarded
//!   PUBLISH_NAMESPACE messages up to draft-15 and by NAMESPACE /
//!   NAMESPACE_DONE on its own stream from draft-16; it is renumbered 0x50
//!   and joined by SUBSCRIBE_TRACKS (0x51) in draft-18.
//! - FETCH: standalone and joining types up to draft-19; from draft-20 a
//!   track plus LOCATION_FILTER.
//! - Data: [`SubgroupHeader`] types 0x10–0x1D, plus 0x30–0x3D without a
//!   priority (15+), plus the FIRST_OBJECT bit 0x40 (18+);
//!   [`SubgroupObject`]s; [`FetchHeader`] and [`FetchObject`] (every field in
//!   draft-14, Serialization Flags from 15, End of Range markers, group
//!   deltas from 18, statuses only in 14/15); [`ObjectDatagram`] (flags;
//!   DEFAULT_PRIORITY from 15). [`UniStream`] classifies a uni stream.
//! - Setup options ([`SetupOptions`]): counted Key-Value-Pairs up to draft-16,
//!   uncounted from draft-17; MAX_REQUEST_ID only up to draft-16.
//!
//! # Messages by draft
//!
//! See the type table in [`message`]. Every message listed there has a
//! struct here; the relay-facing set is SETUP (all three forms),
//! MAX_REQUEST_ID, REQUESTS_BLOCKED, PUBLISH_NAMESPACE + OK/ERROR +
//! DONE/CANCEL, SUBSCRIBE_NAMESPACE + OK/ERROR + UNSUBSCRIBE_NAMESPACE,
//! NAMESPACE/NAMESPACE_DONE, SUBSCRIBE + OK/ERROR + UPDATE + UNSUBSCRIBE,
//! PUBLISH_DONE, PUBLISH + OK/ERROR, FETCH + OK/ERROR/CANCEL, TRACK_STATUS +
//! replies, GOAWAY, REQUEST_OK/ERROR, SUBSCRIBE_TRACKS, PUBLISH_BLOCKED.
//!
//! The in-band legacy SETUP a peer without an ALPN sends (lite-01/02 or
//! draft-14) lives in [`crate::legacy`].

pub mod coding;
mod datagram;
mod fetch_stream;
mod filter;
mod kvp;
pub mod message;
mod namespace;
pub mod params;
pub mod properties;
pub mod setup;
mod stream;
mod subgroup;
mod version;

pub use coding::{Decode, Encode, Location, decode_slice};
pub use datagram::{DatagramBody, ObjectDatagram};
pub use fetch_stream::{EndOfRange, FETCH_HEADER, FetchHeader, FetchObject, FetchSubgroup};
pub use filter::{Filter, FilterEnd};
pub use kvp::{KeyValuePairs, KvValue};
pub use message::{
    Fetch, FetchKind, FetchOk, GoAway, Message, MessageType, NamespaceActive, NamespaceDone, Publish,
    PublishBlocked, PublishDone, PublishNamespace, PublishNamespaceCancel, PublishNamespaceDone, PublishOk,
    RequestError, RequestId, RequestOk, RequestTarget, RequestUpdate, Subscribe, SubscribeNamespace,
    SubscribeOk, UnsubscribeNamespace,
};
pub use namespace::Namespace;
pub use params::{GroupOrder, Parameters, Value};
pub use properties::TrackProperties;
pub use setup::{AuthToken, ClientSetup, ServerSetup, Setup, SetupOptions};
pub use stream::{PADDING_TYPE, SETUP_TYPE, UniStream};
pub use subgroup::{SubgroupHeader, SubgroupId, SubgroupObject, status};
pub use version::{UnknownDraft, Version};
