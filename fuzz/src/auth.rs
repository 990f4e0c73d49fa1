//! Harnesses for `moq-auth`: JWTs through [`KeySet::verify`] (target `token`)
//! and JWK key files through [`Key::from_str`] (target `jwk`).
//!
//! The keys are fixed, and so is the clock (2026-06-01), so an input behaves
//! the same on every run. They are test keys, published here on purpose: the
//! HMAC secret is 32 bytes of `moq-fuzz`, the P-256 scalar is the ASCII text
//! `moq-relay-fuzz-key-not-a-secret`.

use std::{
    str::FromStr,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::EncodingKey;
use moq_auth::{Claims, Key, KeySet, ManualClock, Validation};
use moq_proto::Path;

/// The HMAC secret, base64url: `moq-fuzz` four times.
const HS256_JWK: &str = r#"{"kty":"oct","alg":"HS256","k":"bW9xLWZ1enptb3EtZnV6em1vcS1mdXp6bW9xLWZ1eno"}"#;

/// The HMAC secret itself, for signing arbitrary payloads.
const HS256_SECRET: &[u8] = b"moq-fuzzmoq-fuzzmoq-fuzzmoq-fuzz";

/// A P-256 key (with `kid`, so the `kid` checks run too).
const ES256_JWK: &str = r#"{"kty":"EC","crv":"P-256","alg":"ES256","kid":"fuzz-es","x":"F-cAs6v0KstTwz9SSFyMAyOHocbV9tK8ISD7d9hWokk","y":"Fbr7-8phya6tQyFhMnOnHz_tD4go2wmD-N_Uma2TKSo","d":"AG1vcS1yZWxheS1mdXp6LWtleS1ub3QtYS1zZWNyZXQ"}"#;

/// The same P-256 private key as PKCS#8 DER (standard base64), for jsonwebtoken.
const ES256_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAG1vcS1yZWxheS1mdXp6LWtleS1ub3QtYS1zZWNyZXShRANCAAQX5wCzq/Qqy1PDP1JIXIwDI4ehxtX20rwhIPt32FaiSRW6+/vKYcmurUMhYTJzpx8/7Q+IKNsJg/jf1Jmtkykq";

/// The fixed "now" of every verification: 2026-06-01T00:00:00Z.
pub const NOW_UNIX: u64 = 1_780_272_000;

/// The fixed "now" as a [`SystemTime`].
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The keys every auth harness uses, built once per process.
pub struct Keys {
    /// The HS256 key (sign and verify).
    pub hs256: Key,
    /// The ES256 private key (sign and verify).
    pub es256: Key,
    /// Verifies with [`Keys::hs256`], on the fixed clock.
    pub hs256_set: KeySet,
    /// Verifies with the public half of [`Keys::es256`], on the fixed clock.
    pub es256_set: KeySet,
    hs256_encoding: EncodingKey,
    es256_encoding: EncodingKey,
}

/// The process-wide [`Keys`].
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // jsonwebtoken's signing entry point needs a provider; moq-auth installs the
        // same one, and a second install is refused harmlessly.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let clock = || Arc::new(ManualClock::new(now()));
        let hs256 = Key::from_str(HS256_JWK).expect("fixed HS256 key");
        let es256 = Key::from_str(ES256_JWK).expect("fixed ES256 key");
        let hs256_set = KeySet::single(hs256.clone())
            .expect("HS256 verifies")
            .with_clock(clock());
        let es256_set = KeySet::single(es256.to_public().expect("ES256 public half"))
            .expect("ES256 verifies")
            .with_clock(clock());
        let der = base64::engine::general_purpose::STANDARD
            .decode(ES256_PKCS8)
            .expect("fixed DER");
        Keys {
            hs256,
            es256,
            hs256_set,
            es256_set,
            hs256_encoding: EncodingKey::from_secret(HS256_SECRET),
            es256_encoding: EncodingKey::from_ec_der(&der),
        }
    })
}

/// `base64url(header).base64url(payload).signature`, signed with the fixed
/// HS256 or ES256 key whatever the header says.
pub fn sign_raw(header: &[u8], payload: &[u8], es256: bool) -> String {
    let keys = keys();
    let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let (key, alg) = match es256 {
        true => (&keys.es256_encoding, jsonwebtoken::Algorithm::ES256),
        false => (&keys.hs256_encoding, jsonwebtoken::Algorithm::HS256),
    };
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing with a fixed key");
    format!("{message}.{signature}")
}

/// Split `data` at the first `0xff` byte (all of it and nothing when there is none).
pub fn split_ff(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// Target `token`. The first byte picks how the rest becomes a token:
///
/// - `% 4 == 0`: the rest, as (lossy) UTF-8, is the token;
/// - `1`: the rest is `header 0xff payload`, both raw JSON bytes, signed with
///   the HS256 key whatever the header says;
/// - `2`: the same, signed with the ES256 key;
/// - `3`: the rest is the payload alone, under a well-formed HS256 header
///   (with a `kid` when bit 2 of the first byte is set).
///
/// The token goes through both key sets (HS256, and ES256's public half) and
/// through [`Key::verify_at`] directly. Checked:
/// - the key set and the key agree (same claims, or the same failure reason);
/// - no error message contains the token;
/// - verified claims grant something, are not expired at the fixed clock, can
///   be authorised at the relay root, and survive a round trip: signed again
///   with [`Key::sign`], they verify to equal claims.
pub fn token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 4 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 | 2 => {
            let (header, payload) = split_ff(rest);
            sign_raw(header, payload, mode % 4 == 2)
        }
        _ => {
            let header: &[u8] = match mode & 4 {
                0 => br#"{"alg":"HS256","typ":"JWT"}"#,
                _ => br#"{"alg":"HS256","typ":"JWT","kid":"fuzz-hs"}"#,
            };
            sign_raw(header, rest, false)
        }
    };
    let keys = keys();
    for (set, key) in [(&keys.hs256_set, &keys.hs256), (&keys.es256_set, &keys.es256)] {
        let via_set = set.verify(&token);
        let via_key = key.verify_at(&token, now(), &Validation::default());
        if crate::trace() {
            eprintln!("{:?}: {via_set:?}", key.algorithm());
        }
        match (&via_set, &via_key) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the key set and the key verified different claims"),
            (Err(a), Err(b)) => assert_eq!(
                a.reason(),
                b.reason(),
                "the key set refused with {a}, the key with {b}"
            ),
            (a, b) => panic!("the key set says {a:?}, the key says {b:?}"),
        }
        match via_set {
            Ok(claims) => check_claims(key, set, &claims),
            Err(err) => {
                // Only a token shaped like a JWT is a secret worth hiding; a short or
                // dotless input can be a substring of the error's own fixed text
                // (`("not three '.'-separated parts` was one).
                if token.len() >= 16 && token.matches('.').count() >= 2 {
                    assert!(
                        !err.to_string().contains(&token),
                        "an error message quotes the token"
                    );
                    assert!(
                        !format!("{err:?}").contains(&token),
                        "an error's Debug quotes the token"
                    );
                }
            }
        }
    }
}

/// What must hold for claims that verified under `key` (held in `set`).
fn check_claims(key: &Key, set: &KeySet, claims: &Claims) {
    assert!(
        !claims.grants_nothing(),
        "verified claims that grant nothing: {claims:?}"
    );
    if let Some(exp) = claims.exp {
        assert!(exp > NOW_UNIX, "verified an expired token: {claims:?}");
    }
    claims
        .authorize(&Path::empty())
        .unwrap_or_else(|err| panic!("verified claims cannot be authorised at the root: {err} ({claims:?})"));
    let again = key
        .sign(claims)
        .unwrap_or_else(|err| panic!("verified claims cannot be signed again: {err} ({claims:?})"));
    let back = set
        .verify(&again)
        .unwrap_or_else(|err| panic!("re-signed claims do not verify: {err} ({claims:?})"));
    assert_eq!(&back, claims, "claims changed in a sign/verify round trip");
}

/// Target `jwk`: the input, as (lossy) UTF-8, through [`Key::from_str`] (raw JSON or
/// base64url JSON). For a key that loads:
/// - its exported JSON loads again to the same algorithm, `kid`, scope and
///   private-ness, and so does its public half (minus the private part);
/// - a key that can sign signs claims inside its own scope, and that token
///   verifies with the key and with its public half (when they may verify);
/// - `Debug` output never holds the private material (`d`, `k`).
pub fn jwk(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(key) = Key::from_str(&text) else {
        return;
    };
    let json = key.to_json();
    let again = Key::from_str(&json).unwrap_or_else(|err| panic!("exported key does not load: {err}"));
    assert_eq!(again.algorithm(), key.algorithm());
    assert_eq!(again.kid(), key.kid());
    assert_eq!(again.scope(), key.scope());
    assert_eq!(again.is_private(), key.is_private());
    assert_eq!(
        (again.can_sign(), again.can_verify()),
        (key.can_sign(), key.can_verify())
    );
    let base64 = Key::from_str(&key.to_base64url())
        .unwrap_or_else(|err| panic!("exported base64url key does not load: {err}"));
    assert_eq!(base64.to_json(), json, "JSON and base64url exports differ");

    let debug = format!("{key:?}");
    for secret in secret_members(&json) {
        if secret.len() >= 8 {
            assert!(
                !debug.contains(&secret),
                "Debug output shows private key material"
            );
        }
    }

    let public = match key.to_public() {
        Ok(public) => {
            assert!(!public.is_private(), "the public half holds private material");
            assert_eq!(public.algorithm(), key.algorithm());
            Some(public)
        }
        // An HMAC key has no public half.
        Err(_) => None,
    };
    if !key.can_sign() {
        return;
    }
    let claims = match key.scope() {
        Some(scope) => Claims {
            put: scope.put.clone(),
            get: scope.get.clone(),
            ..Claims::new(scope.root.clone())
        },
        None => Claims {
            put: vec!["room".into()],
            get: vec![String::new()],
            ..Claims::new("demo")
        },
    };
    let token = match key.sign(&claims) {
        Ok(token) => token,
        // A scope whose own paths are invalid signs nothing; any other refusal is a bug.
        Err(err) => {
            assert!(
                key.scope().is_some(),
                "a signing key without a scope refused plain claims: {err}"
            );
            return;
        }
    };
    if key.can_verify() {
        let verified = key
            .verify_at(&token, now(), &Validation::default())
            .unwrap_or_else(|err| panic!("a key does not verify its own token: {err}"));
        assert_eq!(verified, claims);
    }
    if let Some(public) = public.filter(Key::can_verify) {
        let verified = public
            .verify_at(&token, now(), &Validation::default())
            .unwrap_or_else(|err| panic!("the public half does not verify the key's token: {err}"));
        assert_eq!(verified, claims);
    }
}

/// The values of the private JWK members in `json` (as exported, so flat strings).
fn secret_members(json: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    ["d", "k", "p", "q", "dp", "dq", "qi"]
        .into_iter()
        .filter_map(|name| map.get(name)?.as_str().map(str::to_owned))
        .collect()
}
