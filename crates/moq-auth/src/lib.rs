//! Authentication for Media over QUIC relays: JWK keys, JWT claims, and the
//! path permissions a verified token gives a session.
//!
//! Compatible with the moq-dev ecosystem's `moq-token`: keys are JWKs
//! (`kty` oct/EC/RSA/OKP; HS256/384/512, ES256/384, RS256/384/512,
//! PS256/384/512, EdDSA) stored as JSON or base64url(JSON); tokens are JWTs
//! with claims `root`, `put`, `get` (or `publish`/`subscribe` patterns), `exp`,
//! `iat`, `nbf`, `cluster`.
//!
//! - [`Key`]: load, generate, export ([`Key::to_public`] for relays), sign
//!   and verify.
//! - [`KeySet`]: one key, or a directory of `{kid}.jwk` files rotated
//!   without a restart.
//! - [`service`]: the external auth-server contract (the JSON a relay POSTs per
//!   session event and the grant it gets back) and the reference server's policy.
//! - [`Claims::authorize`] and [`authorize`]: the dialled URL path is the
//!   session root; the token's `root` and grants are re-expressed relative
//!   to it (narrowed when the path extends the root, prefixed when it is a
//!   parent), merged with [`Public`] prefixes, as
//!   [`moq_core::session::Permissions`].
//!
//! Every failure is an [`Error`] with a stable [`reason`](Error::reason).
//!
//! ```
//! use moq_auth::{Algorithm, Claims, Key, KeySet, Path, Public, authorize};
//!
//! // The issuer: a key and a token for publishing under `demo/room`.
//! let key = Key::generate(Algorithm::EdDSA, Some("k1".parse()?))?;
//! let claims = Claims { put: vec!["room".into()], ..Claims::new("demo") };
//! let token = key.sign(&claims)?;
//!
//! // The relay: the public half, a client dialling `/demo`.
//! let keys = KeySet::single(key.to_public()?)?;
//! let verified = keys.verify(&token)?;
//! let permissions = authorize(Some(&verified), &Path::new("demo")?, &Public::default())?;
//! assert!(permissions.can_publish(&Path::new("room/cam")?));
//! assert!(!permissions.can_publish(&Path::new("roomy")?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate must never log, print or put into an error message a token or
//! key material: errors and `Debug` output name claims, key ids and
//! algorithms only. It does no networking and needs no async runtime; the
//! only I/O is reading and writing key files.

mod algorithm;
mod claims;
mod error;
mod jws;
mod key;
mod public;
pub mod service;
mod set;

pub use algorithm::Algorithm;
pub use claims::{Claims, Scope, Validation, unix_seconds};
pub use error::{Error, Result};
pub use jws::{MAX_TOKEN_BYTES, unverified_expiry};
pub use key::{Key, KeyId, MIN_RSA_BITS, MIN_SECRET_BYTES, RSA_GENERATE_BITS};
pub use public::{Public, authorize};
pub use set::{Clock, DEFAULT_KEY_TTL, KeySet, LISTING_INTERVAL, ManualClock, SystemClock};

/// Re-exported for convenience: the permission and path types this crate produces.
pub use moq_core::{pattern::Pattern, session::Permissions};
pub use moq_proto::Path;
