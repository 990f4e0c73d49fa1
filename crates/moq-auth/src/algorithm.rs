//! JWS algorithms (RFC 7518 §3, RFC 8037 §3.1) that keys and tokens may use.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A signing algorithm, named as in the JWS `alg` header.
///
/// The set matches the moq-dev ecosystem's (`jsonwebtoken` has no ES512), so a
/// key or token from its `moq-token` tool loads here and ours load there.
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// HMAC with SHA-256 (`kty: oct`).
    HS256,
    /// HMAC with SHA-384 (`kty: oct`).
    HS384,
    /// HMAC with SHA-512 (`kty: oct`).
    HS512,
    /// ECDSA on P-256 with SHA-256 (`kty: EC`, `crv: P-256`).
    ES256,
    /// ECDSA on P-384 with SHA-384 (`kty: EC`, `crv: P-384`).
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`kty: RSA`).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (`kty: RSA`).
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (`kty: RSA`).
    RS512,
    /// RSASSA-PSS with SHA-256 (`kty: RSA`).
    PS256,
    /// RSASSA-PSS with SHA-384 (`kty: RSA`).
    PS384,
    /// RSASSA-PSS with SHA-512 (`kty: RSA`).
    PS512,
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`).
    EdDSA,
}

impl Algorithm {
    /// Every supported algorithm, HMAC first.
    pub const ALL: [Algorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::ES256,
        Self::ES384,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::EdDSA,
    ];

    /// The JWS name, e.g. `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The JWK `kty` a key for this algorithm has.
    pub fn kty(self) -> &'static str {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => "oct",
            Self::ES256 | Self::ES384 => "EC",
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => "RSA",
            Self::EdDSA => "OKP",
        }
    }

    /// Whether keys for this algorithm are a shared secret (no public half).
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }

    /// The algorithm named exactly `name` (JWS names are case-sensitive,
    /// RFC 7515 §4.1.1), if supported.
    pub fn from_jws(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Self::HS256 => J::HS256,
            Self::HS384 => J::HS384,
            Self::HS512 => J::HS512,
            Self::ES256 => J::ES256,
            Self::ES384 => J::ES384,
            Self::RS256 => J::RS256,
            Self::RS384 => J::RS384,
            Self::RS512 => J::RS512,
            Self::PS256 => J::PS256,
            Self::PS384 => J::PS384,
            Self::PS512 => J::PS512,
            Self::EdDSA => J::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a name case-insensitively (`es256` works on a command line); a JWS
/// header is matched exactly with [`Algorithm::from_jws`] instead.
impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|a| a.as_str()).collect();
                Error::BadKey(format!(
                    "unknown algorithm '{s}' (expected one of {})",
                    names.join(", ")
                ))
            })
    }
}

impl Serialize for Algorithm {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_jws(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unsupported algorithm '{name}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_jws(alg.as_str()), Some(alg));
            assert_eq!(alg.as_str().to_lowercase().parse::<Algorithm>().unwrap(), alg);
        }
        assert_eq!(Algorithm::from_jws("none"), None);
        assert_eq!(Algorithm::from_jws("hs256"), None);
        assert_eq!(Algorithm::from_jws("ES512"), None);
        assert!("none".parse::<Algorithm>().is_err());
    }

    #[test]
    fn only_hmac_is_symmetric() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.is_symmetric(), alg.kty() == "oct", "{alg}");
        }
        let err = crate::Error::WrongAlgorithm {
            token: Algorithm::ES256,
            key: Algorithm::ES384,
        };
        assert_eq!(err.to_string(), "token is signed with ES256 but the key is ES384");
    }
}
