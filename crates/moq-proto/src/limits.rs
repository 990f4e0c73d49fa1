//! Hard limits applied while decoding, so that no input can make the codec
//! allocate or buffer without bound. Encoders enforce the same limits so we
//! never send something our own decoder would refuse.

/// Largest body of a length-prefixed control message (everything except frame
/// payloads and datagrams), in bytes.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Largest SETUP message body, in bytes. SETUP carries the client's path and
/// query (and so a token), which is why it is not smaller than the others.
pub const MAX_SETUP_SIZE: usize = 64 * 1024;

/// Most SETUP parameters in one message.
pub const MAX_PARAMETERS: usize = 64;

/// Most segments in a broadcast path (moq-lite: paths have at most 32 parts).
pub const MAX_PATH_SEGMENTS: usize = 32;

/// Longest broadcast path, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Longest track name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 8 * 1024;

/// Longest GOAWAY URI, in bytes of UTF-8.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Most relay ids in an announcement's hop list.
pub const MAX_HOPS: usize = 32;

/// Largest frame payload, in bytes. A frame is buffered whole by a relay's
/// cache, so this also bounds memory per frame.
pub const MAX_FRAME_SIZE: u64 = 32 * 1024 * 1024;

/// Largest QUIC datagram body, in bytes (the QUIC maximum frame size).
pub const MAX_DATAGRAM_SIZE: usize = 65_535;

/// Most fields in a moq-transport namespace tuple (every draft caps it at 32).
pub const MAX_NAMESPACE_FIELDS: usize = 32;

/// Longest moq-transport reason phrase, in bytes (every draft caps it at 1024).
pub const MAX_REASON_BYTES: usize = 1024;

/// Largest Key-Value-Pair or parameter byte value, in bytes (2^16 - 1 in
/// every draft).
pub const MAX_KVP_VALUE: usize = 65_535;

/// Largest object properties (extensions) block on a data stream or
/// datagram, in bytes.
pub const MAX_OBJECT_PROPERTIES: usize = 64 * 1024;

/// Most versions a legacy CLIENT_SETUP may offer.
pub const MAX_SETUP_VERSIONS: usize = 64;

/// Most suffixes in one ANNOUNCE_INIT (lite-01/02). A sender with more
/// announces the rest as ANNOUNCE messages right after it.
pub const MAX_ANNOUNCE_INIT: usize = 1024;
