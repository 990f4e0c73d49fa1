//! Compact JWS framing (RFC 7515 §7.1); the signature maths is jsonwebtoken's.

use std::sync::Once;

use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::{Algorithm, Claims, Error, KeyId, Result, key::B64};

/// Longest token accepted, in bytes. Real tokens are a few hundred bytes;
/// this bounds the work an anonymous client can make us do.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Pin jsonwebtoken's crypto backend to the pure-Rust one we build it with,
/// so a feature enabled elsewhere in a dependency graph cannot leave it
/// without a default provider (which would panic).
fn provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Already installed (by us or the embedding program) is fine.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    b64: Option<serde::de::IgnoredAny>,
}

pub(crate) fn sign(
    alg: Algorithm,
    kid: Option<&KeyId>,
    claims: &Claims,
    key: &EncodingKey,
) -> Result<String> {
    provider();
    let header = HeaderOut {
        alg: alg.as_str(),
        typ: "JWT",
        kid: kid.map(KeyId::as_str),
    };
    let header = serde_json::to_vec(&header).map_err(|e| Error::Crypto(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| Error::Crypto(e.to_string()))?;
    let message = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg.jwt())
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let token = format!("{message}.{signature}");
    // Never hand out a token that every verifier (ours included) refuses as too large.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Malformed("longer than 8 KiB"));
    }
    Ok(token)
}

/// A token split and decoded, signature not yet checked.
pub(crate) struct Parsed<'a> {
    pub alg: Algorithm,
    pub kid: Option<KeyId>,
    /// `header.payload`, the signed bytes.
    message: &'a str,
    /// The base64url signature, already checked to decode.
    signature: &'a str,
    pub payload: Vec<u8>,
}

impl<'a> Parsed<'a> {
    pub(crate) fn parse(token: &'a str) -> Result<Self> {
        if token.is_empty() {
            return Err(Error::Malformed("empty"));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Error::Malformed("longer than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("not three '.'-separated parts"));
        };
        let header = B64
            .decode(header)
            .map_err(|_| Error::Malformed("header is not base64url"))?;
        let header: HeaderIn = serde_json::from_slice(&header)
            .map_err(|_| Error::Malformed("header is not a JSON object with a string 'alg'"))?;
        // RFC 7515 §4.1.11: a recipient MUST reject critical extensions it does not understand.
        if header.crit.is_some() || header.b64.is_some() {
            return Err(Error::Malformed(
                "header uses 'crit'/'b64' extensions, which are not supported",
            ));
        }
        let alg = Algorithm::from_jws(&header.alg).ok_or_else(|| {
            // The name is attacker-supplied: keep it short and printable for logs.
            let name: String = header
                .alg
                .chars()
                .filter(char::is_ascii_graphic)
                .take(16)
                .collect();
            Error::UnsupportedAlgorithm(name)
        })?;
        let kid = header.kid.as_deref().map(KeyId::new).transpose()?;
        let payload = B64
            .decode(payload)
            .map_err(|_| Error::Malformed("payload is not base64url"))?;
        B64.decode(signature)
            .map_err(|_| Error::Malformed("signature is not base64url"))?;
        let message = &token[..token.len() - signature.len() - 1];
        Ok(Self {
            alg,
            kid,
            message,
            signature,
            payload,
        })
    }

    /// Check the signature under `alg` (already matched to the key's).
    pub(crate) fn verify_signature(&self, alg: Algorithm, key: &DecodingKey) -> Result<()> {
        provider();
        match jsonwebtoken::crypto::verify(self.signature, self.message.as_bytes(), key, alg.jwt()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::BadSignature),
            Err(err) => Err(Error::Crypto(err.to_string())),
        }
    }
}

/// The `exp` claim of a token, read without verifying its signature: for the holder of
/// a token to see when it stops working (only the verifier can trust it). `None` when the
/// token is malformed or has no `exp`.
pub fn unverified_expiry(token: &str) -> Option<u64> {
    let parsed = Parsed::parse(token).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&parsed.payload).ok()?;
    claims.get("exp")?.as_u64()
}
