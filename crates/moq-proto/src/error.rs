//! Errors raised while decoding or encoding wire messages.

use crate::{Version, ietf};

/// Why a byte sequence could not be decoded.
///
/// [`DecodeError::Short`] is the only variant that means "wait for more bytes";
/// every other variant means the input is malformed and can never become valid,
/// so the caller should reset the stream or close the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ended before the value did. Retry from the same starting
    /// position once more bytes have arrived.
    #[error("need more bytes")]
    Short,

    /// A length field declared more bytes than this implementation accepts.
    #[error("{what}: length {size} exceeds the limit of {max} bytes")]
    TooLarge {
        /// The field or message whose length was too large.
        what: &'static str,
        /// The declared length in bytes.
        size: u64,
        /// The largest accepted length in bytes.
        max: u64,
    },

    /// A count field declared more entries than this implementation accepts.
    #[error("{what}: {count} entries exceeds the limit of {max}")]
    TooMany {
        /// The list whose count was too large.
        what: &'static str,
        /// The declared count.
        count: u64,
        /// The largest accepted count.
        max: u64,
    },

    /// A length-prefixed message ended before all of its fields were read.
    #[error("{what}: message body ended before all of its fields")]
    Truncated {
        /// The message that was cut short.
        what: &'static str,
    },

    /// A length-prefixed message had bytes left over after its last field.
    #[error("{what}: {extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// The message with trailing bytes.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },

    /// A field held a value outside its permitted range.
    #[error("{what}: invalid value {value}")]
    InvalidValue {
        /// The field holding the value.
        what: &'static str,
        /// The value received.
        value: u64,
    },

    /// A string field was not valid UTF-8.
    #[error("{what}: not valid UTF-8")]
    InvalidUtf8 {
        /// The string field.
        what: &'static str,
    },

    /// A type discriminator named no message or stream known in this version.
    #[error("{what}: unknown type {value}")]
    UnknownType {
        /// The kind of discriminator (stream type, response type, ...).
        what: &'static str,
        /// The value received.
        value: u64,
    },

    /// An entry that must be unique appeared twice.
    #[error("{what}: {id} appears more than once")]
    Duplicate {
        /// The list holding the duplicate.
        what: &'static str,
        /// The duplicated identifier.
        id: u64,
    },

    /// The message or stream does not exist in the negotiated version.
    #[error("{what} does not exist in {version}")]
    NotInVersion {
        /// The message or stream.
        what: &'static str,
        /// The negotiated version.
        version: Version,
    },

    /// The fields were individually valid but contradict each other.
    #[error("{what}: {reason}")]
    Invalid {
        /// The message.
        what: &'static str,
        /// What was inconsistent.
        reason: &'static str,
    },

    /// The message, stream or field does not exist in the negotiated
    /// moq-transport draft.
    #[error("{what} does not exist in {version}")]
    NotInDraft {
        /// The message, stream or field.
        what: &'static str,
        /// The negotiated draft.
        version: ietf::Version,
    },
}

impl DecodeError {
    /// Whether more input could make the decode succeed.
    pub fn is_short(&self) -> bool {
        matches!(self, Self::Short)
    }

    /// Inside a body whose length is already known, running out of bytes is
    /// malformed input rather than a reason to wait.
    pub(crate) fn within(self, what: &'static str) -> Self {
        match self {
            Self::Short => Self::Truncated { what },
            other => other,
        }
    }
}

/// Why a message could not be encoded.
///
/// Encoding never writes a partial message when it fails on a length-prefixed
/// message; for the unprefixed stream headers the output may hold a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// An integer does not fit in a QUIC variable-length integer (2^62 - 1).
    #[error("{what}: value {value} does not fit in a varint")]
    VarintRange {
        /// The field holding the value.
        what: &'static str,
        /// The value that did not fit.
        value: u128,
    },

    /// The encoded form would exceed the limit the receiver enforces.
    #[error("{what}: {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The field or message.
        what: &'static str,
        /// The size it would have had.
        size: u64,
        /// The receiver's limit.
        max: u64,
    },

    /// A list holds more entries than the receiver accepts.
    #[error("{what}: {count} entries exceeds the limit of {max}")]
    TooMany {
        /// The list.
        what: &'static str,
        /// Its length.
        count: u64,
        /// The receiver's limit.
        max: u64,
    },

    /// The message, or a field set to a non-default value, has no encoding in
    /// this version.
    #[error("{what} cannot be encoded in {version}")]
    NotInVersion {
        /// The message or field.
        what: &'static str,
        /// The target version.
        version: Version,
    },

    /// The fields contradict each other.
    #[error("{what}: {reason}")]
    Invalid {
        /// The message.
        what: &'static str,
        /// What was inconsistent.
        reason: &'static str,
    },

    /// The message, or a field set to a value other than "absent", has no
    /// encoding in the target moq-transport draft.
    #[error("{what} cannot be encoded in {version}")]
    NotInDraft {
        /// The message or field.
        what: &'static str,
        /// The target draft.
        version: ietf::Version,
    },
}
