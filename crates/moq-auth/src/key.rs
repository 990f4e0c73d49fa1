//! JWK keys (RFC 7517, RFC 7518 §6, RFC 8037 §2): parse, validate, generate,
//! export, and sign or verify tokens with them.

use std::{fmt, io::Write, path::Path as FsPath, str::FromStr, time::SystemTime};

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::URL_SAFE_NO_PAD},
};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_core::{OsRng, RngCore as _};
use rsa::{
    BigUint,
    pkcs1::EncodeRsaPrivateKey as _,
    traits::{PrivateKeyParts as _, PublicKeyParts as _},
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{Algorithm, Claims, Error, Result, Scope, Validation, jws};

/// Base64url as JWK and JWS write it: URL-safe alphabet, no padding.
pub(crate) const B64: GeneralPurpose = URL_SAFE_NO_PAD;

/// Base64url for reading key files and JWK fields: padding tolerated, since
/// hand-made keys sometimes carry it. Tokens are read strictly with [`B64`].
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Shortest HMAC secret accepted, in bytes (the ecosystem's minimum).
pub const MIN_SECRET_BYTES: usize = 32;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Size of RSA keys made by [`Key::generate`], in bits.
pub const RSA_GENERATE_BITS: usize = 2048;

/// A key id (`kid`): 1 to 128 characters of `[A-Za-z0-9_-]`.
///
/// The restriction makes it safe to use as a file name in a key directory:
/// no `/`, no `.`, so no path tricks.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Longest key id accepted.
    pub const MAX_LEN: usize = 128;

    /// Validate `id`.
    pub fn new(id: &str) -> Result<Self> {
        let valid = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::BadKid)
        }
    }

    /// A random 16-hex-digit id.
    pub fn random() -> Result<Self> {
        let mut bytes = [0u8; 8];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for KeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Secret bytes, wiped on drop.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Validated key material; private halves are optional except for HMAC.
#[derive(Clone)]
enum Material {
    Oct(Secret),
    P256 {
        public: p256::PublicKey,
        secret: Option<p256::SecretKey>,
    },
    P384 {
        public: p384::PublicKey,
        secret: Option<p384::SecretKey>,
    },
    Rsa {
        public: rsa::RsaPublicKey,
        secret: Option<Box<rsa::RsaPrivateKey>>,
    },
    Ed25519 {
        public: ed25519_dalek::VerifyingKey,
        secret: Option<Box<ed25519_dalek::SigningKey>>,
    },
}

impl Material {
    fn has_private(&self) -> bool {
        match self {
            Self::Oct(_) => true,
            Self::P256 { secret, .. } => secret.is_some(),
            Self::P384 { secret, .. } => secret.is_some(),
            Self::Rsa { secret, .. } => secret.is_some(),
            Self::Ed25519 { secret, .. } => secret.is_some(),
        }
    }

    fn without_private(&self) -> Self {
        match self {
            Self::Oct(s) => Self::Oct(s.clone()),
            Self::P256 { public, .. } => Self::P256 {
                public: *public,
                secret: None,
            },
            Self::P384 { public, .. } => Self::P384 {
                public: *public,
                secret: None,
            },
            Self::Rsa { public, .. } => Self::Rsa {
                public: public.clone(),
                secret: None,
            },
            Self::Ed25519 { public, .. } => Self::Ed25519 {
                public: *public,
                secret: None,
            },
        }
    }
}

/// Reading key material out of a JWK, one key type per function.
impl Material {
    fn from_jwk(alg: Algorithm, jwk: &Jwk) -> Result<Self> {
        match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Self::hmac(jwk),
            Algorithm::ES256 => Self::p256(jwk),
            Algorithm::ES384 => Self::p384(jwk),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Self::rsa(jwk),
            Algorithm::EdDSA => Self::ed25519(jwk),
        }
    }

    fn hmac(jwk: &Jwk) -> Result<Self> {
        let secret = Secret(field("k", &jwk.k)?);
        if secret.0.len() < MIN_SECRET_BYTES {
            return Err(Error::BadKey(format!(
                "HMAC secret 'k' is {} bytes; at least {MIN_SECRET_BYTES} are required",
                secret.0.len()
            )));
        }
        Ok(Self::Oct(secret))
    }

    fn p256(jwk: &Jwk) -> Result<Self> {
        curve(jwk, "P-256")?;
        let point = [vec![4], sized("x", &jwk.x, 32)?, sized("y", &jwk.y, 32)?].concat();
        let public = p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| Error::BadKey("'x'/'y' is not a point on P-256".into()))?;
        let secret = match &jwk.d {
            None => None,
            Some(_) => {
                let d = Secret(sized("d", &jwk.d, 32)?);
                let secret = p256::SecretKey::from_slice(&d.0)
                    .map_err(|_| Error::BadKey("'d' is not a P-256 private key".into()))?;
                if secret.public_key() != public {
                    return Err(Error::BadKey("'d' does not match 'x'/'y'".into()));
                }
                Some(secret)
            }
        };
        Ok(Self::P256 { public, secret })
    }

    fn p384(jwk: &Jwk) -> Result<Self> {
        curve(jwk, "P-384")?;
        let point = [vec![4], sized("x", &jwk.x, 48)?, sized("y", &jwk.y, 48)?].concat();
        let public = p384::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| Error::BadKey("'x'/'y' is not a point on P-384".into()))?;
        let secret = match &jwk.d {
            None => None,
            Some(_) => {
                let d = Secret(sized("d", &jwk.d, 48)?);
                let secret = p384::SecretKey::from_slice(&d.0)
                    .map_err(|_| Error::BadKey("'d' is not a P-384 private key".into()))?;
                if secret.public_key() != public {
                    return Err(Error::BadKey("'d' does not match 'x'/'y'".into()));
                }
                Some(secret)
            }
        };
        Ok(Self::P384 { public, secret })
    }

    fn rsa(jwk: &Jwk) -> Result<Self> {
        let (n, e) = (big(&field("n", &jwk.n)?), big(&field("e", &jwk.e)?));
        let public =
            rsa::RsaPublicKey::new(n.clone(), e.clone()).map_err(|e| bad("RSA public key")(e.to_string()))?;
        if public.n().bits() < MIN_RSA_BITS {
            return Err(Error::BadKey(format!(
                "RSA modulus is {} bits; at least {MIN_RSA_BITS} are required",
                public.n().bits()
            )));
        }
        let secret = match &jwk.d {
            None => None,
            Some(_) => Some(Box::new(rsa_private(jwk, n, e)?)),
        };
        Ok(Self::Rsa { public, secret })
    }

    fn ed25519(jwk: &Jwk) -> Result<Self> {
        curve(jwk, "Ed25519")?;
        let x: [u8; 32] = sized("x", &jwk.x, 32)?
            .try_into()
            .map_err(|_| Error::BadKey("'x' must be 32 bytes".into()))?;
        let public = ed25519_dalek::VerifyingKey::from_bytes(&x)
            .map_err(|_| Error::BadKey("'x' is not an Ed25519 public key".into()))?;
        let secret = match &jwk.d {
            None => None,
            Some(_) => {
                let d = Secret(sized("d", &jwk.d, 32)?);
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&d.0);
                let secret = ed25519_dalek::SigningKey::from_bytes(&seed);
                seed.zeroize();
                if secret.verifying_key() != public {
                    return Err(Error::BadKey("'d' does not match 'x'".into()));
                }
                Some(Box::new(secret))
            }
        };
        Ok(Self::Ed25519 { public, secret })
    }
}

/// The RSA private key of a JWK whose `d` is present, checked against `n` and `e`.
fn rsa_private(jwk: &Jwk, n: BigUint, e: BigUint) -> Result<rsa::RsaPrivateKey> {
    let d = big(&Secret(field("d", &jwk.d)?).0);
    let primes = match (&jwk.p, &jwk.q) {
        (Some(_), Some(_)) => {
            vec![
                big(&Secret(field("p", &jwk.p)?).0),
                big(&Secret(field("q", &jwk.q)?).0),
            ]
        }
        // RFC 7518 §6.3.2 lets the CRT members be omitted; the primes are recovered.
        (None, None) => Vec::new(),
        _ => return Err(Error::BadKey("RSA key has only one of 'p' and 'q'".into())),
    };
    // from_components validates the key (d, primes and n agree).
    rsa::RsaPrivateKey::from_components(n, e, d, primes).map_err(|e| bad("RSA private key")(e.to_string()))
}

/// A JWK as it appears in a file: every field optional, validated by [`Key`].
///
/// Unknown members (`use`, `x5c`, ...) are ignored; `oth` is noticed so it
/// can be refused rather than silently ignored.
#[derive(Default, Serialize, Deserialize)]
struct Jwk {
    #[serde(skip_serializing_if = "Option::is_none")]
    kty: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_ops: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dq: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qi: Option<String>,
    #[serde(skip_serializing)]
    oth: Option<serde::de::IgnoredAny>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<Scope>,
}

impl Drop for Jwk {
    fn drop(&mut self) {
        for secret in [
            &mut self.k,
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
        ]
        .into_iter()
        .flatten()
        {
            secret.zeroize();
        }
    }
}

impl Jwk {
    /// Refuse keys that parse but could never be used as we would use them.
    fn check_usable(&self) -> Result<()> {
        if let Some(scope) = &self.scope
            && scope.put.is_empty()
            && scope.get.is_empty()
        {
            return Err(Error::BadKey(
                "'scope' grants nothing, so the key could never be used".into(),
            ));
        }
        if self.oth.is_some() {
            return Err(Error::BadKey(
                "multi-prime RSA keys ('oth') are not supported".into(),
            ));
        }
        Ok(())
    }

    /// The `alg`, checked against `kty`.
    fn algorithm(&self) -> Result<Algorithm> {
        // RFC 7517 makes kty required; the ecosystem's early keys omitted it for HMAC.
        let kty = self.kty.as_deref().unwrap_or("oct");
        let name = self.alg.as_deref().ok_or_else(|| {
            Error::BadKey(
                "missing 'alg' (one of HS256, HS384, HS512, ES256, ES384, RS256, ..., EdDSA)".into(),
            )
        })?;
        let alg =
            Algorithm::from_jws(name).ok_or_else(|| Error::BadKey(format!("unsupported 'alg' '{name}'")))?;
        if alg.kty() != kty {
            return Err(Error::BadKey(format!(
                "'alg' {alg} needs 'kty' '{}', but the key has '{kty}'",
                alg.kty()
            )));
        }
        Ok(alg)
    }

    /// What `key_ops` allows; at least one of sign and verify.
    fn ops(&self) -> Result<Ops> {
        let ops = match &self.key_ops {
            None => Ops {
                sign: true,
                verify: true,
            },
            Some(list) => Ops {
                sign: list.iter().any(|op| op == "sign"),
                verify: list.iter().any(|op| op == "verify"),
            },
        };
        if !ops.sign && !ops.verify {
            return Err(Error::BadKey(
                "'key_ops' allows neither 'sign' nor 'verify'".into(),
            ));
        }
        Ok(ops)
    }
}

/// What `serde_json` found wrong, without quoting the input (it may be a secret).
fn json_problem(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Data => "has a member of the wrong type",
        Category::Eof => "ends early",
    };
    format!("JWK {what} (line {}, column {})", err.line(), err.column())
}

fn field(name: &'static str, value: &Option<String>) -> Result<Vec<u8>> {
    let value = value
        .as_deref()
        .ok_or_else(|| Error::BadKey(format!("missing '{name}'")))?;
    B64_LENIENT
        .decode(value)
        .map_err(|_| Error::BadKey(format!("'{name}' is not base64url")))
}

fn sized(name: &'static str, value: &Option<String>, len: usize) -> Result<Vec<u8>> {
    let bytes = field(name, value)?;
    if bytes.len() != len {
        return Err(Error::BadKey(format!(
            "'{name}' is {} bytes; this curve needs {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn curve(jwk: &Jwk, want: &'static str) -> Result<()> {
    match jwk.crv.as_deref() {
        Some(crv) if crv == want => Ok(()),
        Some(_) => Err(Error::BadKey(format!("'crv' must be '{want}' for this 'alg'"))),
        None => Err(Error::BadKey(format!("missing 'crv' (expected '{want}')"))),
    }
}

fn bad(what: &'static str) -> impl Fn(String) -> Error {
    move |detail| Error::BadKey(format!("{what}: {detail}"))
}

fn big(bytes: &[u8]) -> BigUint {
    BigUint::from_bytes_be(bytes)
}

/// Which operations `key_ops` allows (RFC 7517 §4.3); absent means both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ops {
    sign: bool,
    verify: bool,
}

/// A validated JWK that can sign and/or verify tokens.
///
/// Build one with [`Key::generate`], [`Key::from_str`] (raw JSON or
/// base64url(JSON), auto-detected) or [`Key::from_file`]. A private key (or
/// an HMAC secret) signs and verifies; a public key only verifies.
///
/// `Debug` shows the algorithm, id and whether private material is present,
/// never the material. [`to_json`](Key::to_json) and friends *do* write the
/// private material: treat their output as a secret.
#[derive(Clone)]
pub struct Key {
    alg: Algorithm,
    kid: Option<KeyId>,
    scope: Option<Scope>,
    ops: Ops,
    material: Material,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("scope", &self.scope)
            .field("private", &self.material.has_private())
            .field("sign", &self.can_sign())
            .field("verify", &self.can_verify())
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A new random key: HMAC secrets as long as the hash (32, 48 or 64
    /// bytes), RSA of [`RSA_GENERATE_BITS`], P-256, P-384 or Ed25519.
    /// `key_ops` is `["sign", "verify"]`.
    pub fn generate(alg: Algorithm, kid: Option<KeyId>) -> Result<Self> {
        let crypto = |e: String| Error::Crypto(e);
        let material = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let len = match alg {
                    Algorithm::HS256 => 32,
                    Algorithm::HS384 => 48,
                    _ => 64,
                };
                let mut secret = Secret(vec![0; len]);
                OsRng
                    .try_fill_bytes(&mut secret.0)
                    .map_err(|e| crypto(e.to_string()))?;
                Material::Oct(secret)
            }
            Algorithm::ES256 => {
                let secret = p256::SecretKey::random(&mut OsRng);
                Material::P256 {
                    public: secret.public_key(),
                    secret: Some(secret),
                }
            }
            Algorithm::ES384 => {
                let secret = p384::SecretKey::random(&mut OsRng);
                Material::P384 {
                    public: secret.public_key(),
                    secret: Some(secret),
                }
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let secret = rsa::RsaPrivateKey::new(&mut OsRng, RSA_GENERATE_BITS)
                    .map_err(|e| crypto(e.to_string()))?;
                Material::Rsa {
                    public: secret.to_public_key(),
                    secret: Some(Box::new(secret)),
                }
            }
            Algorithm::EdDSA => {
                let secret = ed25519_dalek::SigningKey::generate(&mut OsRng);
                Material::Ed25519 {
                    public: secret.verifying_key(),
                    secret: Some(Box::new(secret)),
                }
            }
        };
        Self::build(
            alg,
            kid,
            Ops {
                sign: true,
                verify: true,
            },
            material,
        )
    }

    /// Parse a JWK from JSON text.
    pub fn from_json(json: &str) -> Result<Self> {
        let jwk: Jwk = serde_json::from_str(json).map_err(|e| Error::BadKey(json_problem(&e)))?;
        Self::from_jwk(&jwk)
    }

    /// Read a key file: JSON or base64url(JSON), auto-detected.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Self> {
        let path = path.as_ref();
        let mut text = std::fs::read_to_string(path).map_err(|source| Error::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        let key = text.parse().map_err(|e| match e {
            Error::BadKey(msg) => Error::BadKey(format!("{}: {msg}", path.display())),
            other => other,
        });
        text.zeroize();
        key
    }

    fn from_jwk(jwk: &Jwk) -> Result<Self> {
        jwk.check_usable()?;
        let alg = jwk.algorithm()?;
        let ops = jwk.ops()?;
        let kid = jwk.kid.as_deref().map(KeyId::new).transpose()?;
        let material = Material::from_jwk(alg, jwk)?;
        let key = Self::build(alg, kid, ops, material)?;
        Ok(key.with_scope(jwk.scope.clone()))
    }

    fn build(alg: Algorithm, kid: Option<KeyId>, ops: Ops, material: Material) -> Result<Self> {
        let der = |e: String| Error::Crypto(format!("cannot encode the private key: {e}"));
        let (encoding, decoding) = match &material {
            Material::Oct(secret) => (
                Some(EncodingKey::from_secret(&secret.0)),
                DecodingKey::from_secret(&secret.0),
            ),
            Material::P256 { public, secret } => (
                secret
                    .as_ref()
                    .map(|s| s.to_pkcs8_der().map(|d| EncodingKey::from_ec_der(d.as_bytes())))
                    .transpose()
                    .map_err(|e| der(e.to_string()))?,
                DecodingKey::from_ec_der(public.to_encoded_point(false).as_bytes()),
            ),
            Material::P384 { public, secret } => (
                secret
                    .as_ref()
                    .map(|s| s.to_pkcs8_der().map(|d| EncodingKey::from_ec_der(d.as_bytes())))
                    .transpose()
                    .map_err(|e| der(e.to_string()))?,
                DecodingKey::from_ec_der(public.to_encoded_point(false).as_bytes()),
            ),
            Material::Rsa { public, secret } => (
                secret
                    .as_ref()
                    .map(|s| s.to_pkcs1_der().map(|d| EncodingKey::from_rsa_der(d.as_bytes())))
                    .transpose()
                    .map_err(|e| der(e.to_string()))?,
                DecodingKey::from_rsa_raw_components(&public.n().to_bytes_be(), &public.e().to_bytes_be()),
            ),
            Material::Ed25519 { public, secret } => (
                secret
                    .as_ref()
                    .map(|s| s.to_pkcs8_der().map(|d| EncodingKey::from_ed_der(d.as_bytes())))
                    .transpose()
                    .map_err(|e| der(e.to_string()))?,
                DecodingKey::from_ed_der(public.as_bytes()),
            ),
        };
        Ok(Self {
            alg,
            kid,
            scope: None,
            ops,
            encoding: encoding.filter(|_| ops.sign),
            decoding,
            material,
        })
    }

    /// The key's algorithm; tokens must use exactly this one.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key id, if the JWK has one.
    pub fn kid(&self) -> Option<&KeyId> {
        self.kid.as_ref()
    }

    /// The same key with a different id.
    pub fn with_kid(mut self, kid: Option<KeyId>) -> Self {
        self.kid = kid;
        self
    }

    /// The key's ceiling on what its tokens may grant, if it has one.
    pub fn scope(&self) -> Option<&Scope> {
        self.scope.as_ref()
    }

    /// The same key with a different ceiling (`None` removes it). A scope
    /// granting nothing is treated as absent.
    pub fn with_scope(mut self, scope: Option<Scope>) -> Self {
        self.scope = scope.filter(|s| !s.put.is_empty() || !s.get.is_empty());
        self
    }

    fn check_scope(&self, claims: &Claims) -> Result<()> {
        match &self.scope {
            Some(scope) if !scope.allows(claims) => Err(Error::ScopeExceeded),
            _ => Ok(()),
        }
    }

    /// Whether this key holds private material (always true for HMAC).
    pub fn is_private(&self) -> bool {
        self.material.has_private()
    }

    /// Whether [`sign`](Key::sign) can work: private material and `key_ops` allows it.
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// Whether `key_ops` allows verifying.
    pub fn can_verify(&self) -> bool {
        self.ops.verify
    }

    /// The public half, with `key_ops: ["verify"]`, for handing to relays.
    /// Fails for HMAC keys, which are a shared secret with no public half.
    pub fn to_public(&self) -> Result<Self> {
        if self.alg.is_symmetric() {
            return Err(Error::BadKey(format!(
                "{} keys are a shared secret and have no public half",
                self.alg
            )));
        }
        let public = Self::build(
            self.alg,
            self.kid.clone(),
            Ops {
                sign: false,
                verify: true,
            },
            self.material.without_private(),
        )?;
        Ok(public.with_scope(self.scope.clone()))
    }

    fn to_jwk(&self) -> Jwk {
        let b64 = |bytes: &[u8]| Some(B64.encode(bytes));
        let mut ops = Vec::new();
        if self.ops.sign && self.material.has_private() {
            ops.push("sign".to_owned());
        }
        if self.ops.verify {
            ops.push("verify".to_owned());
        }
        let mut jwk = Jwk::default();
        jwk.kty = Some(self.alg.kty().to_owned());
        jwk.alg = Some(self.alg.as_str().to_owned());
        jwk.kid = self.kid.as_ref().map(|k| k.0.clone());
        jwk.key_ops = Some(ops);
        jwk.scope = self.scope.clone();
        match &self.material {
            Material::Oct(secret) => jwk.k = b64(&secret.0),
            Material::P256 { public, secret } => {
                let point = public.to_encoded_point(false);
                jwk.crv = Some("P-256".into());
                jwk.x = point.x().and_then(|x| b64(x));
                jwk.y = point.y().and_then(|y| b64(y));
                jwk.d = secret.as_ref().and_then(|s| b64(&s.to_bytes()));
            }
            Material::P384 { public, secret } => {
                let point = public.to_encoded_point(false);
                jwk.crv = Some("P-384".into());
                jwk.x = point.x().and_then(|x| b64(x));
                jwk.y = point.y().and_then(|y| b64(y));
                jwk.d = secret.as_ref().and_then(|s| b64(&s.to_bytes()));
            }
            Material::Rsa { public, secret } => {
                jwk.n = b64(&public.n().to_bytes_be());
                jwk.e = b64(&public.e().to_bytes_be());
                if let Some(secret) = secret {
                    let uint = |v: Option<&BigUint>| v.and_then(|v| b64(&Secret(v.to_bytes_be()).0));
                    jwk.d = uint(Some(secret.d()));
                    jwk.p = uint(secret.primes().first());
                    jwk.q = uint(secret.primes().get(1));
                    jwk.dp = uint(secret.dp());
                    jwk.dq = uint(secret.dq());
                    jwk.qi = uint(secret.crt_coefficient().as_ref());
                }
            }
            Material::Ed25519 { public, secret } => {
                jwk.crv = Some("Ed25519".into());
                jwk.x = b64(public.as_bytes());
                jwk.d = secret
                    .as_ref()
                    .and_then(|s| b64(&Secret(s.to_bytes().to_vec()).0));
            }
        }
        jwk
    }

    /// The JWK as JSON, including any private material.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and options cannot fail.
        serde_json::to_string(&self.to_jwk()).unwrap_or_default()
    }

    /// The JWK as base64url(JSON) without padding, the ecosystem's key file
    /// format; includes any private material.
    pub fn to_base64url(&self) -> String {
        let mut json = self.to_json();
        let encoded = B64.encode(json.as_bytes());
        json.zeroize();
        encoded
    }

    /// Write the key to `path` as base64url(JSON), replacing any file there.
    ///
    /// A key with private material is written with mode 0600 (on Unix), a
    /// public key with 0644. The file is written beside its destination and
    /// renamed over it, so a reader never sees half a key and an existing
    /// file's looser permissions are not inherited.
    pub fn write_file(&self, path: impl AsRef<FsPath>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        let mode = if self.is_private() { 0o600 } else { 0o644 };
        let name = path.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file path",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);

        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let result = (|| {
            let mut file = options.open(&tmp)?;
            let mut text = self.to_base64url();
            let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
            text.zeroize();
            written?;
            // The umask may have narrowed the mode on creation; set it exactly.
            #[cfg(unix)]
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// Sign `claims` into a compact JWT (`typ: JWT`, with `kid` when the key has one).
    ///
    /// Refuses claims that grant nothing or hold invalid paths, and keys
    /// that cannot sign (public, or `key_ops` without `sign`).
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let encoding = self.encoding.as_ref().ok_or(Error::KeyOp("sign"))?;
        claims.validate()?;
        self.check_scope(claims)?;
        jws::sign(self.alg, self.kid.as_ref(), claims, encoding)
    }

    /// Verify `token` against the system clock with default [`Validation`].
    pub fn verify(&self, token: &str) -> Result<Claims> {
        self.verify_at(token, SystemTime::now(), &Validation::default())
    }

    /// Verify `token` as of `now`: well-formed, signed by this key with its
    /// algorithm, not expired or not yet valid, and granting something.
    ///
    /// A token naming a `kid` is refused when this key has a different one;
    /// a key without a `kid` accepts any.
    pub fn verify_at(&self, token: &str, now: SystemTime, validation: &Validation) -> Result<Claims> {
        let parsed = jws::Parsed::parse(token)?;
        if let (Some(want), Some(have)) = (&parsed.kid, &self.kid)
            && want != have
        {
            return Err(Error::UnknownKid(want.to_string()));
        }
        self.verify_parsed(&parsed, now, validation)
    }

    pub(crate) fn verify_parsed(
        &self,
        parsed: &jws::Parsed<'_>,
        now: SystemTime,
        validation: &Validation,
    ) -> Result<Claims> {
        if !self.ops.verify {
            return Err(Error::KeyOp("verify"));
        }
        // RFC 8725 §3.1: the key decides the algorithm, never the token.
        if parsed.alg != self.alg {
            return Err(Error::WrongAlgorithm {
                token: parsed.alg,
                key: self.alg,
            });
        }
        parsed.verify_signature(self.alg, &self.decoding)?;
        let claims = Claims::from_payload(&parsed.payload)?;
        claims.check_time(now, validation)?;
        claims.validate()?;
        self.check_scope(&claims)?;
        Ok(claims)
    }
}

/// Parses a key file's contents: raw JSON, or base64url(JSON) with or
/// without padding. Surrounding whitespace is ignored.
impl FromStr for Key {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.starts_with('{') {
            return Self::from_json(s);
        }
        let mut bytes = B64_LENIENT
            .decode(s)
            .map_err(|_| Error::BadKey("key is neither JSON nor base64url(JSON)".into()))?;
        let key = match std::str::from_utf8(&bytes) {
            Ok(json) => Self::from_json(json),
            Err(_) => Err(Error::BadKey(
                "base64url key does not decode to UTF-8 JSON".into(),
            )),
        };
        bytes.zeroize();
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_charset() {
        for ok in ["a", "key-2026_01", &"x".repeat(128)] {
            assert!(KeyId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            "a.jwk",
            "a b",
            "ключ",
            "a\0",
            &"x".repeat(129),
        ] {
            assert_eq!(KeyId::new(bad).unwrap_err().reason(), "bad_kid", "{bad:?}");
        }
        let random = KeyId::random().unwrap();
        assert_eq!(random.as_str().len(), 16);
    }

    #[test]
    fn missing_kty_means_oct() {
        let k = B64.encode([7u8; 32]);
        let key = Key::from_json(&format!(r#"{{"alg":"HS256","k":"{k}"}}"#)).unwrap();
        assert_eq!(key.algorithm(), Algorithm::HS256);
        assert!(key.can_sign() && key.can_verify());
    }

    #[test]
    fn short_secret_refused() {
        let k = B64.encode([7u8; 31]);
        let err = Key::from_json(&format!(r#"{{"kty":"oct","alg":"HS256","k":"{k}"}}"#)).unwrap_err();
        assert_eq!(err.reason(), "bad_key");
        assert!(err.to_string().contains("31 bytes"), "{err}");
        assert!(!err.to_string().contains(&k));
    }

    #[test]
    fn kty_must_match_alg() {
        let k = B64.encode([7u8; 32]);
        let err = Key::from_json(&format!(r#"{{"kty":"EC","alg":"HS256","k":"{k}"}}"#)).unwrap_err();
        assert!(err.to_string().contains("needs 'kty' 'oct'"), "{err}");
        let err = Key::from_json(&format!(r#"{{"kty":"oct","k":"{k}"}}"#)).unwrap_err();
        assert!(err.to_string().contains("missing 'alg'"), "{err}");
    }

    #[test]
    fn errors_do_not_quote_secrets() {
        // A type error in serde_json normally quotes the value.
        let err = Key::from_json(r#"{"alg":"HS256","k":["supersecretvalue"]}"#).unwrap_err();
        assert!(!err.to_string().contains("supersecret"), "{err}");
        let err = Key::from_json(r#"{"alg":"HS256","k":"supersecret!!"}"#).unwrap_err();
        assert!(!err.to_string().contains("supersecret"), "{err}");
    }

    #[test]
    fn debug_hides_material() {
        let key = Key::generate(Algorithm::HS256, None).unwrap();
        let json = key.to_json();
        let k = json.split("\"k\":\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(!format!("{key:?}").contains(k));
    }

    /// Found by the `jwk` fuzz target: a key signed claims into a token longer than
    /// every verifier accepts (8 KiB), and then refused its own token.
    #[test]
    fn a_token_too_large_to_verify_is_not_signed() {
        let key = Key::generate(Algorithm::HS256, None).unwrap();
        let claims = Claims {
            get: (0..1000).map(|i| format!("room-{i:04}")).collect(),
            ..Default::default()
        };
        let err = key.sign(&claims).unwrap_err();
        assert!(matches!(err, Error::Malformed("longer than 8 KiB")), "{err}");
        let small = Claims {
            get: vec!["room".into()],
            ..Default::default()
        };
        let token = key.sign(&small).unwrap();
        assert!(
            key.verify_at(&token, SystemTime::now(), &Validation::default())
                .is_ok()
        );
    }

    #[test]
    fn public_half_cannot_sign() {
        let key = Key::generate(Algorithm::ES256, KeyId::new("a").ok()).unwrap();
        let public = key.to_public().unwrap();
        assert!(!public.is_private() && !public.can_sign() && public.can_verify());
        assert!(!public.to_json().contains("\"d\""));
        assert!(public.to_json().contains(r#""key_ops":["verify"]"#));
        let again: Key = public.to_base64url().parse().unwrap();
        assert_eq!(again.to_json(), public.to_json());
        assert!(
            Key::generate(Algorithm::HS256, None)
                .unwrap()
                .to_public()
                .is_err()
        );
    }

    #[test]
    fn mismatched_private_half_refused() {
        let a = Key::generate(Algorithm::EdDSA, None).unwrap().to_json();
        let b = Key::generate(Algorithm::EdDSA, None).unwrap().to_json();
        let d_of = |j: &str| {
            j.split("\"d\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        };
        let mixed = a.replace(&d_of(&a), &d_of(&b));
        assert!(
            Key::from_json(&mixed)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
    }
}
