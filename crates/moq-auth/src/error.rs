//! The one error type of this crate.

use std::path::PathBuf;

use crate::Algorithm;

/// Why a key could not be loaded, a token could not be signed or verified, or a
/// session could not be authorised.
///
/// The `Display` text says what was wrong and, where it helps, what to do. It
/// never contains a token or key material; claim values (paths, times) and key
/// ids may appear. [`reason`](Error::reason) is a short stable string for
/// metrics labels and structured logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not a well-formed compact JWS (three base64url parts, a
    /// JSON header naming `alg`), or is too large.
    #[error("malformed token: {0}")]
    Malformed(&'static str),

    /// An `alg` (in a token header or given by a user) is not one this crate
    /// implements, including `none`.
    #[error(
        "algorithm '{0}' is not supported (use HS256, HS384, HS512, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512 or EdDSA)"
    )]
    UnsupportedAlgorithm(String),

    /// The header's `alg` is not the algorithm of the key that verifies it.
    #[error("token is signed with {token} but the key is {key}")]
    WrongAlgorithm {
        /// The token's `alg`.
        token: Algorithm,
        /// The key's `alg`.
        key: Algorithm,
    },

    /// The signature does not match the header and payload under this key:
    /// a different key signed it, or it was altered.
    #[error("token signature is not valid for this key")]
    BadSignature,

    /// The payload is not a valid claim set (unknown or mistyped claim, bad path).
    #[error("token claims are invalid: {0}")]
    BadClaims(String),

    /// The token grants more than the key's `scope` allows.
    #[error("token grants more than the key's scope allows")]
    ScopeExceeded,

    /// `exp` is not after the current time (RFC 7519 §4.1.4).
    #[error("token expired at {exp} (now {now}, unix seconds)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },

    /// `nbf` or `iat` is further in the future than the allowed clock skew.
    #[error("token is not valid until {at} (now {now}, unix seconds); check the issuer's clock")]
    NotYetValid {
        /// The token's `nbf` or `iat`.
        at: u64,
        /// The verifier's clock.
        now: u64,
    },

    /// The token grants neither publish (`put`) nor subscribe (`get`).
    #[error("token grants nothing: set at least one publish or subscribe prefix")]
    NoGrant,

    /// A key directory is in use and the token carries no `kid` header.
    #[error("token has no 'kid' header, which is required to pick a key from the key directory")]
    MissingKid,

    /// A key id is empty, too long, or has characters outside `[A-Za-z0-9_-]`.
    #[error("invalid key id: must be 1 to 128 characters of A-Z, a-z, 0-9, '-' or '_'")]
    BadKid,

    /// No key with this id is known.
    #[error("no key with id '{0}'")]
    UnknownKid(String),

    /// The key's `key_ops` does not permit the operation.
    #[error("key_ops of this key does not allow '{0}'")]
    KeyOp(&'static str),

    /// A JWK is invalid (bad JSON, missing or mismatched field, weak secret).
    #[error("invalid key: {0}")]
    BadKey(String),

    /// A key file could not be read or written.
    #[error("key file {}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The token's `root` and the dialled path do not overlap in either direction.
    #[error(
        "token root '{root}' does not cover the connection path '{path}' (nor is the path a parent of it)"
    )]
    WrongRoot {
        /// The token's `root`, normalised.
        root: String,
        /// The dialled path.
        path: String,
    },

    /// The session would be allowed nothing at this path.
    #[error("nothing is allowed at path '{0}': neither the token nor the public prefixes grant access here")]
    NoAccess(String),

    /// No token was presented and no public prefix covers the path.
    #[error("a token is required for path '{0}' (no public access there)")]
    TokenRequired(String),

    /// A path (root, grant or public prefix) is not a valid broadcast path.
    #[error("invalid path: {0}")]
    BadPath(String),

    /// The crypto backend failed unexpectedly.
    #[error("crypto failure: {0}")]
    Crypto(String),
}

impl Error {
    /// A short stable identifier for this kind of error, for metrics labels
    /// and logs. Never changes meaning once released.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnsupportedAlgorithm(_) => "bad_algorithm",
            Self::WrongAlgorithm { .. } => "wrong_algorithm",
            Self::BadSignature => "bad_signature",
            Self::BadClaims(_) => "bad_claims",
            Self::ScopeExceeded => "scope_exceeded",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::NoGrant => "no_grant",
            Self::MissingKid => "missing_kid",
            Self::BadKid => "bad_kid",
            Self::UnknownKid(_) => "unknown_kid",
            Self::KeyOp(_) => "key_op",
            Self::BadKey(_) => "bad_key",
            Self::KeyFile { .. } => "key_file",
            Self::WrongRoot { .. } => "wrong_root",
            Self::NoAccess(_) => "no_access",
            Self::TokenRequired(_) => "token_required",
            Self::BadPath(_) => "bad_path",
            Self::Crypto(_) => "crypto",
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
