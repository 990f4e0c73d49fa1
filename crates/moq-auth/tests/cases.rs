//! Table-driven allow/deny cases: signing and verification with every
//! algorithm, the attacks a verifier must refuse, and the path semantics of
//! a session root.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use moq_auth::{Algorithm, Claims, Error, Key, KeyId, Path, Permissions, Public, Validation, authorize};
use serde_json::{Value, json};

const NOW_SECS: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

/// One key per algorithm, plus an unrelated second one. RSA keys are slow to
/// make in a debug build, so two are made and shared by the six RSA algorithms.
struct Fx {
    keys: HashMap<Algorithm, Key>,
    others: HashMap<Algorithm, Key>,
}

fn with_alg(key: &Key, alg: Algorithm) -> Key {
    let json = key.to_json().replace(
        &format!("\"alg\":\"{}\"", key.algorithm()),
        &format!("\"alg\":\"{alg}\""),
    );
    Key::from_json(&json).unwrap()
}

fn fx() -> &'static Fx {
    static FX: OnceLock<Fx> = OnceLock::new();
    FX.get_or_init(|| {
        let make = || {
            let rsa = Key::generate(Algorithm::RS256, None).unwrap();
            Algorithm::ALL
                .into_iter()
                .map(|alg| {
                    let key = match alg.kty() {
                        "RSA" => with_alg(&rsa, alg),
                        _ => Key::generate(alg, None).unwrap(),
                    };
                    (alg, key)
                })
                .collect::<HashMap<_, _>>()
        };
        Fx {
            keys: make(),
            others: make(),
        }
    })
}

fn key(alg: Algorithm) -> &'static Key {
    &fx().keys[&alg]
}

fn other(alg: Algorithm) -> &'static Key {
    &fx().others[&alg]
}

fn claims(root: &str, put: &[&str], get: &[&str]) -> Claims {
    Claims {
        root: root.into(),
        put: put.iter().map(|s| s.to_string()).collect(),
        get: get.iter().map(|s| s.to_string()).collect(),
        iat: Some(NOW_SECS),
        exp: Some(NOW_SECS + 3600),
        ..Claims::default()
    }
}

fn room() -> Claims {
    claims("r", &["room"], &[""])
}

fn p(s: &str) -> Path {
    Path::new(s).unwrap()
}

fn verify(key: &Key, token: &str) -> Result<Claims, Error> {
    key.verify_at(token, now(), &Validation::default())
}

/// A token with arbitrary header and payload, signed by HMAC `secret` as
/// the header's `alg` says (what an attacker holding a secret could make).
fn forge_hmac(secret: &[u8], header: Value, payload: Value) -> String {
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    );
    let alg = match header["alg"].as_str().unwrap() {
        "HS384" => jsonwebtoken::Algorithm::HS384,
        "HS512" => jsonwebtoken::Algorithm::HS512,
        _ => jsonwebtoken::Algorithm::HS256,
    };
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
        alg,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// The HMAC secret inside an HS* key.
fn secret(key: &Key) -> Vec<u8> {
    let jwk: Value = serde_json::from_str(&key.to_json()).unwrap();
    B64.decode(jwk["k"].as_str().unwrap()).unwrap()
}

fn hs_secret() -> Vec<u8> {
    secret(key(Algorithm::HS256))
}

fn part(token: &str, i: usize) -> &str {
    token.split('.').nth(i).unwrap()
}

fn replace_part(token: &str, i: usize, with: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = with;
    parts.join(".")
}

type Outcome = (String, Result<Option<Permissions>, Error>);

fn verified(token: String, key: &Key) -> Outcome {
    let result = verify(key, &token).map(|_| None);
    (token, result)
}

fn round_trip(alg: Algorithm, c: Claims) -> Outcome {
    let token = key(alg).sign(&c).unwrap();
    let result = verify(key(alg), &token).map(|got| {
        assert_eq!(got, c);
        None
    });
    (token, result)
}

/// Sign, verify, then authorise at `dialled` with `public` merged in.
fn access(c: Option<Claims>, dialled: &str, public: &Public) -> Outcome {
    let k = key(Algorithm::HS256);
    let (token, verified) = match c {
        Some(c) => {
            let token = k.sign(&c).unwrap();
            let v = verify(k, &token).unwrap();
            (token, Some(v))
        }
        None => (String::new(), None),
    };
    let result = authorize(verified.as_ref(), &p(dialled), public).map(Some);
    (token, result)
}

fn no_public() -> Public {
    Public::default()
}

fn public(subscribe: &[&str], publish: &[&str]) -> Public {
    Public::from_prefixes(subscribe, publish).unwrap()
}

enum Expect {
    Allow,
    Deny(&'static str),
    Grants(&'static [&'static str], &'static [&'static str]),
}
use Expect::*;

struct Case {
    name: String,
    expect: Expect,
    run: Box<dyn Fn() -> Outcome>,
}

fn case(name: impl Into<String>, expect: Expect, run: impl Fn() -> Outcome + 'static) -> Case {
    Case {
        name: name.into(),
        expect,
        run: Box::new(run),
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Every algorithm signs and verifies its own tokens, and refuses another key's.
    for alg in Algorithm::ALL {
        cases.push(case(format!("{alg} sign+verify"), Allow, move || {
            round_trip(alg, room())
        }));
        cases.push(case(
            format!("{alg} wrong key"),
            Deny("bad_signature"),
            move || verified(key(alg).sign(&room()).unwrap(), other(alg)),
        ));
    }
    for alg in [
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS384,
        Algorithm::EdDSA,
    ] {
        cases.push(case(format!("{alg} public half verifies"), Allow, move || {
            verified(key(alg).sign(&room()).unwrap(), &key(alg).to_public().unwrap())
        }));
    }

    // Key ids.
    cases.push(case("kid matches", Allow, || {
        let k = key(Algorithm::HS256).clone().with_kid(KeyId::new("a").ok());
        verified(k.sign(&room()).unwrap(), &k)
    }));
    cases.push(case("wrong kid", Deny("unknown_kid"), || {
        let signer = key(Algorithm::HS256).clone().with_kid(KeyId::new("b").ok());
        let verifier = key(Algorithm::HS256).clone().with_kid(KeyId::new("a").ok());
        verified(signer.sign(&room()).unwrap(), &verifier)
    }));
    cases.push(case("kid with path characters", Deny("bad_kid"), || {
        let header = json!({"alg": "HS256", "kid": "../a"});
        verified(
            forge_hmac(&hs_secret(), header, json!({"put": "a"})),
            key(Algorithm::HS256),
        )
    }));

    // Time.
    cases.push(case("expired", Deny("expired"), || {
        let c = Claims {
            exp: Some(NOW_SECS - 1),
            ..room()
        };
        verified(key(Algorithm::HS256).sign(&c).unwrap(), key(Algorithm::HS256))
    }));
    cases.push(case("expires this second", Deny("expired"), || {
        let c = Claims {
            exp: Some(NOW_SECS),
            ..room()
        };
        verified(key(Algorithm::HS256).sign(&c).unwrap(), key(Algorithm::HS256))
    }));
    cases.push(case("no exp at all", Allow, || {
        let c = Claims {
            exp: None,
            iat: None,
            ..room()
        };
        round_trip(Algorithm::HS256, c)
    }));
    cases.push(case("nbf beyond skew", Deny("not_yet_valid"), || {
        let c = Claims {
            nbf: Some(NOW_SECS + 61),
            ..room()
        };
        verified(key(Algorithm::HS256).sign(&c).unwrap(), key(Algorithm::HS256))
    }));
    cases.push(case("nbf within skew", Allow, || {
        let c = Claims {
            nbf: Some(NOW_SECS + 60),
            ..room()
        };
        round_trip(Algorithm::HS256, c)
    }));
    cases.push(case("iat beyond skew", Deny("not_yet_valid"), || {
        let c = Claims {
            iat: Some(NOW_SECS + 3600),
            ..room()
        };
        verified(key(Algorithm::ES256).sign(&c).unwrap(), key(Algorithm::ES256))
    }));

    // Tampering.
    cases.push(case("tampered signature", Deny("bad_signature"), || {
        let token = key(Algorithm::ES256).sign(&room()).unwrap();
        let sig = part(&token, 2);
        let flipped = format!("{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
        verified(replace_part(&token, 2, &flipped), key(Algorithm::ES256))
    }));
    cases.push(case("truncated signature", Deny("bad_signature"), || {
        let token = key(Algorithm::EdDSA).sign(&room()).unwrap();
        let mut sig = B64.decode(part(&token, 2)).unwrap();
        sig.truncate(sig.len() - 3);
        verified(replace_part(&token, 2, &B64.encode(sig)), key(Algorithm::EdDSA))
    }));
    cases.push(case(
        "tampered payload (root widened)",
        Deny("bad_signature"),
        || {
            let token = key(Algorithm::HS256).sign(&room()).unwrap();
            let payload = B64.encode(json!({"put": "", "get": ""}).to_string());
            verified(replace_part(&token, 1, &payload), key(Algorithm::HS256))
        },
    ));
    cases.push(case("tampered payload (RS256)", Deny("bad_signature"), || {
        let token = key(Algorithm::RS256).sign(&room()).unwrap();
        let payload = B64.encode(json!({"root": "r", "put": ["room", "admin"]}).to_string());
        verified(replace_part(&token, 1, &payload), key(Algorithm::RS256))
    }));
    cases.push(case("header alg swapped", Deny("wrong_algorithm"), || {
        let token = key(Algorithm::HS256).sign(&room()).unwrap();
        let header = B64.encode(json!({"alg": "HS512", "typ": "JWT"}).to_string());
        verified(replace_part(&token, 0, &header), key(Algorithm::HS256))
    }));

    // alg: none and other unsupported algorithms.
    for (name, header) in [
        ("alg none", json!({"alg": "none", "typ": "JWT"})),
        ("alg None", json!({"alg": "None"})),
        ("alg ES512", json!({"alg": "ES512"})),
    ] {
        cases.push(case(name, Deny("bad_algorithm"), move || {
            let token = format!(
                "{}.{}.",
                B64.encode(header.to_string()),
                B64.encode(json!({"put": ""}).to_string())
            );
            verified(token, key(Algorithm::HS256))
        }));
    }

    // Algorithm confusion: an HMAC token keyed with the public key's bytes.
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        cases.push(case(
            format!("HS256 token vs {alg} public key"),
            Deny("wrong_algorithm"),
            move || {
                let public = key(alg).to_public().unwrap();
                let token = forge_hmac(
                    public.to_json().as_bytes(),
                    json!({"alg": "HS256"}),
                    json!({"put": ""}),
                );
                verified(token, &public)
            },
        ));
    }
    cases.push(case("ES256 token vs ES384 key", Deny("wrong_algorithm"), || {
        verified(
            key(Algorithm::ES256).sign(&room()).unwrap(),
            key(Algorithm::ES384),
        )
    }));
    cases.push(case(
        "RS256 token vs PS256 key (same RSA key)",
        Deny("wrong_algorithm"),
        || {
            verified(
                key(Algorithm::RS256).sign(&room()).unwrap(),
                key(Algorithm::PS256),
            )
        },
    ));

    // Malformed.
    for (name, token) in [
        ("empty token", String::new()),
        ("signature in standard base64", {
            let token = key(Algorithm::HS256).sign(&room()).unwrap();
            let sig = part(&token, 2).replace('-', "+").replace('_', "/");
            replace_part(&token, 2, &format!("{sig}+"))
        }),
        ("padded signature", {
            let token = key(Algorithm::HS256).sign(&room()).unwrap();
            format!("{token}=")
        }),
        ("one part", "abc".to_owned()),
        ("two parts", "abc.def".to_owned()),
        ("four parts", "a.b.c.d".to_owned()),
        ("header not base64url", "!!!.e30.c2ln".to_owned()),
        ("header not JSON", format!("{}.e30.c2ln", B64.encode("nope"))),
        ("oversized", format!("{}.e30.c2ln", "A".repeat(9000))),
    ] {
        cases.push(case(name, Deny("malformed"), move || {
            verified(token.clone(), key(Algorithm::HS256))
        }));
    }
    cases.push(case("crit header", Deny("malformed"), || {
        let header = json!({"alg": "HS256", "crit": ["exp"]});
        verified(
            forge_hmac(&hs_secret(), header, json!({"put": "a"})),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("unknown claim (signed)", Deny("bad_claims"), || {
        let payload = json!({"put": "a", "scope": "all"});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256"}), payload),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("older moq-token cluster claim", Allow, || {
        let payload = json!({"put": "", "get": "", "cluster": true});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256"}), payload),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("publish/subscribe pattern claims", Allow, || {
        let payload = json!({"root": "r", "publish": ["alice/**"], "subscribe": ["**"], "nbf": 1});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256"}), payload),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("put mixed with publish", Deny("bad_claims"), || {
        let payload = json!({"put": "a", "publish": ["b/**"]});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256"}), payload),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("third-party HS256 token with string grants", Allow, || {
        let payload = json!({"root": "r", "put": "room", "iss": "elsewhere"});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256", "typ": "JWT"}), payload),
            key(Algorithm::HS256),
        )
    }));

    // Grants.
    cases.push(case("signed token granting nothing", Deny("no_grant"), || {
        let payload = json!({"root": "r", "put": [], "get": []});
        verified(
            forge_hmac(&hs_secret(), json!({"alg": "HS256"}), payload),
            key(Algorithm::HS256),
        )
    }));
    cases.push(case("signing a grant of nothing", Deny("no_grant"), || {
        (
            String::new(),
            key(Algorithm::HS256).sign(&claims("r", &[], &[])).map(|_| None),
        )
    }));
    cases.push(case("public key cannot sign", Deny("key_op"), || {
        let public = key(Algorithm::ES256).to_public().unwrap();
        (String::new(), public.sign(&room()).map(|_| None))
    }));

    // Path semantics of the session root (token root `r`, put `room`, get everything).
    let none = no_public;
    cases.push(case("dialled = root", Grants(&["room"], &[""]), move || {
        access(Some(room()), "r", &none())
    }));
    cases.push(case(
        "dialled extends into grant",
        Grants(&[""], &[""]),
        move || access(Some(room()), "r/room/sub", &none()),
    ));
    cases.push(case(
        "dialled extends beside grant",
        Grants(&[], &[""]),
        move || access(Some(room()), "r/other", &none()),
    ));
    cases.push(case(
        "dialled extends, nothing left",
        Deny("no_access"),
        move || access(Some(claims("r", &["room"], &[])), "r/other", &none()),
    ));
    cases.push(case(
        "dialled between root and grant",
        Grants(&["cam"], &[]),
        move || access(Some(claims("r", &["room/cam"], &[])), "r/room", &none()),
    ));
    cases.push(case(
        "dialled parent of root",
        Grants(&["r/room"], &["r"]),
        move || access(Some(room()), "", &none()),
    ));
    cases.push(case(
        "dialled grandparent of root",
        Grants(&["b/room"], &["b"]),
        move || access(Some(claims("a/b", &["room"], &[""])), "a", &none()),
    ));
    cases.push(case(
        "sibling root foobar vs foo",
        Deny("wrong_root"),
        move || access(Some(claims("foo", &[""], &[""])), "foobar", &none()),
    ));
    cases.push(case(
        "sibling grant foobar vs foo",
        Deny("no_access"),
        move || access(Some(claims("", &["foo"], &[])), "foobar", &none()),
    ));
    cases.push(case("unrelated root", Deny("wrong_root"), move || {
        access(Some(room()), "elsewhere", &none())
    }));
    cases.push(case(
        "double slashes normalised",
        Grants(&[""], &[""]),
        move || {
            access(
                Some(claims("/r//", &["//room/"], &[""])),
                "r//room///sub",
                &none(),
            )
        },
    ));
    cases.push(case(
        "dot-dot is a literal segment, not a parent",
        Grants(&[""], &[""]),
        move || {
            // `r/room/../admin` is a path *inside* r/room, never r/admin.
            access(Some(room()), "r/room/../admin", &none())
        },
    ));
    cases.push(case(
        "dot-dot after the root stays under it",
        Grants(&[], &[""]),
        move || {
            // Literally r/../x: inside r, so `get ""` covers it and `put room` does not.
            access(Some(room()), "r/../x", &none())
        },
    ));
    cases.push(case(
        "dot-dot before the root is unrelated",
        Deny("wrong_root"),
        move || access(Some(room()), "../r", &none()),
    ));
    cases.push(case(
        "dot-dot in a token root stays literal",
        Deny("wrong_root"),
        move || access(Some(claims("r/..", &[""], &[""])), "x", &none()),
    ));
    cases.push(case(
        "percent-encoded slash is one literal segment",
        Grants(&[], &[""]),
        move || access(Some(room()), "r/room%2Fsub", &none()),
    ));
    cases.push(case(
        "percent-encoded grant matches only literally",
        Grants(&[""], &[]),
        move || access(Some(claims("r", &["room%2Fsub"], &[])), "r/room%2Fsub", &none()),
    ));
    cases.push(case(
        "unicode dialled inside grant",
        Grants(&[""], &[]),
        move || {
            access(
                Some(claims("ルーム", &["カメラ"], &["ライブ"])),
                "ルーム/カメラ/1",
                &none(),
            )
        },
    ));
    cases.push(case(
        "unicode dialled at root",
        Grants(&["カメラ"], &["ライブ"]),
        move || {
            access(
                Some(claims("ルーム", &["カメラ"], &["ライブ"])),
                "ルーム",
                &none(),
            )
        },
    ));
    cases.push(case(
        "unicode prefix is segment-aware",
        Deny("no_access"),
        move || access(Some(claims("ルーム", &["カメラ"], &[])), "ルーム/カメ", &none()),
    ));
    cases.push(case("publish-only token", Grants(&["room"], &[]), move || {
        access(Some(claims("r", &["room"], &[])), "r", &none())
    }));
    cases.push(case("subscribe-only token", Grants(&[], &["live"]), move || {
        access(Some(claims("r", &[], &["live"])), "r", &none())
    }));

    // Public prefixes, with and without tokens.
    cases.push(case("no token, public covers", Grants(&[], &[""]), || {
        access(None, "anon/room", &public(&["anon"], &[]))
    }));
    cases.push(case(
        "no token, public below dialled",
        Grants(&["anon/live"], &["anon"]),
        || access(None, "", &public(&["anon/**"], &["anon/live"])),
    ));
    cases.push(case(
        "no token, public sibling only",
        Deny("token_required"),
        || access(None, "anonymous", &public(&["anon"], &["anon"])),
    ));
    cases.push(case("no token, no public", Deny("token_required"), || {
        access(None, "r", &no_public())
    }));
    cases.push(case(
        "token plus public merged",
        Grants(&["r/room"], &["r", "anon"]),
        || access(Some(room()), "", &public(&["anon"], &[])),
    ));
    cases.push(case(
        "token grants nothing here, public does",
        Grants(&[], &[""]),
        || {
            access(
                Some(claims("r", &["room"], &[])),
                "r/anon",
                &public(&["r/anon"], &[]),
            )
        },
    ));
    cases.push(case(
        "token for unrelated root despite public",
        Deny("wrong_root"),
        || access(Some(room()), "anon", &public(&["anon"], &["anon"])),
    ));
    cases.push(case(
        "public covering the token's grant dedups",
        Grants(&["room"], &[""]),
        || {
            access(
                Some(claims("r", &["room/a"], &[""])),
                "r",
                &public(&[], &["r/room"]),
            )
        },
    ));

    cases
}

#[test]
fn allow_deny_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (token, result) = (case.run)();
        if let Err(err) = &result {
            // Errors never carry the token (or any part of its signature).
            let shown = format!("{err} {err:?}");
            if !token.is_empty()
                && (shown.contains(&token)
                    || token
                        .split('.')
                        .nth(2)
                        .is_some_and(|s| s.len() > 8 && shown.contains(s)))
            {
                failures.push(format!("{}: error text contains the token: {shown}", case.name));
            }
        }
        let ok = match (&case.expect, &result) {
            (Allow, Ok(_)) => true,
            (Deny(reason), Err(err)) => err.reason() == *reason,
            (Grants(publish, subscribe), Ok(Some(perms))) => {
                perms.publish == publish.iter().map(|s| p(s)).collect::<Vec<_>>()
                    && perms.subscribe == subscribe.iter().map(|s| p(s)).collect::<Vec<_>>()
            }
            _ => false,
        };
        if !ok {
            let got = match &result {
                Ok(perms) => format!("Ok({perms:?})"),
                Err(err) => format!("Err({}: {err})", err.reason()),
            };
            failures.push(format!("{}: got {got}", case.name));
        }
    }
    println!("{} allow/deny cases, {} failed", cases.len(), failures.len());
    assert!(failures.is_empty(), "failed cases:\n{}", failures.join("\n"));
}
