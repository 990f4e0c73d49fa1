//! Key files (JSON and base64url forms, permissions) and key sets (single
//! key, key directory rotation with an injected clock).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine,
    engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD},
};
use moq_auth::{Algorithm, Claims, Key, KeyId, KeySet, ManualClock, Scope};

fn claims() -> Claims {
    Claims {
        root: "r".into(),
        put: vec!["room".into()],
        ..Claims::default()
    }
}

fn kid(s: &str) -> Option<KeyId> {
    Some(KeyId::new(s).unwrap())
}

const FAST: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[test]
fn json_and_base64url_forms() {
    let dir = tempfile::tempdir().unwrap();
    for alg in FAST {
        let key = Key::generate(alg, kid("k")).unwrap();
        let json = key.to_json();
        let forms = [
            ("json", json.clone()),
            ("json with whitespace", format!("\n  {json}\n")),
            ("base64url", key.to_base64url()),
            ("base64url with newline", format!("{}\n", key.to_base64url())),
            ("base64url padded", URL_SAFE.encode(&json)),
        ];
        for (form, text) in forms {
            let path = dir.path().join(format!("{alg}-{form}.jwk"));
            std::fs::write(&path, &text).unwrap();
            let loaded = Key::from_file(&path).unwrap_or_else(|e| panic!("{alg} {form}: {e}"));
            assert_eq!(loaded.to_json(), json, "{alg} {form}");
            let token = loaded.sign(&claims()).unwrap();
            assert_eq!(key.verify(&token).unwrap(), claims(), "{alg} {form}");
        }
        // The file format written is base64url(JSON) without padding.
        let path = dir.path().join(format!("{alg}.jwk"));
        key.write_file(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(!written.contains('=') && !written.contains('{'));
        assert_eq!(URL_SAFE_NO_PAD.decode(&written).unwrap(), json.as_bytes());
    }
}

#[test]
fn garbage_key_files_are_refused() {
    for text in [
        "",
        "not a key",
        "{",
        "e30",
        "[]",
        r#"{"kty":"oct","alg":"HS256"}"#,
    ] {
        let err = text.parse::<Key>().unwrap_err();
        assert_eq!(err.reason(), "bad_key", "{text:?}: {err}");
    }
    let err = Key::from_file("/nonexistent/k.jwk").unwrap_err();
    assert_eq!(err.reason(), "key_file");
}

#[cfg(unix)]
#[test]
fn private_keys_are_written_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for alg in FAST {
        let key = Key::generate(alg, None).unwrap();
        let path = dir.path().join(format!("{alg}.jwk"));
        // An existing world-readable file must not keep its mode.
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        key.write_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600, "{alg}");
        if !alg.is_symmetric() {
            let public = dir.path().join(format!("{alg}.pub.jwk"));
            key.to_public().unwrap().write_file(&public).unwrap();
            assert_eq!(mode(&public), 0o644, "{alg}");
        }
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains("tmp")),
        "{names:?}"
    );
}

#[test]
fn single_key_set() {
    let key = Key::generate(Algorithm::HS256, kid("main")).unwrap();
    let set = KeySet::single(key.clone()).unwrap();
    assert!(set.verify(&key.sign(&claims()).unwrap()).is_ok());
    // Tokens need no kid when the key has none.
    let anonymous = key.clone().with_kid(None);
    assert!(set.verify(&anonymous.sign(&claims()).unwrap()).is_ok());
    let bare = KeySet::single(anonymous.clone()).unwrap();
    assert!(bare.verify(&key.sign(&claims()).unwrap()).is_ok());
    // A different kid is refused.
    let other = key.with_kid(kid("other"));
    assert_eq!(
        set.verify(&other.sign(&claims()).unwrap()).unwrap_err().reason(),
        "unknown_kid"
    );
}

#[test]
fn key_set_clock_decides_expiry() {
    let key = Key::generate(Algorithm::EdDSA, None).unwrap();
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000)));
    let set = KeySet::single(key.clone()).unwrap().with_clock(clock.clone());
    let token = key
        .sign(&Claims {
            exp: Some(1_100),
            iat: Some(1_000),
            ..claims()
        })
        .unwrap();
    assert!(set.verify(&token).is_ok());
    clock.advance(Duration::from_secs(100));
    assert_eq!(set.verify(&token).unwrap_err().reason(), "expired");
}

#[test]
fn key_dir_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let set = KeySet::dir(dir.path())
        .unwrap()
        .with_clock(clock.clone())
        .with_ttl(Duration::from_secs(10));

    // The relay holds public halves; the issuer keeps the private keys.
    let old = Key::generate(Algorithm::ES256, kid("old")).unwrap();
    old.to_public()
        .unwrap()
        .write_file(dir.path().join("old.jwk"))
        .unwrap();
    let old_token = old.sign(&claims()).unwrap();
    assert_eq!(set.verify(&old_token).unwrap(), claims());

    // A new key works once its file exists: no restart. A kid that was not in the
    // directory's last listing is refused without touching the disk, so the new file is
    // seen at the next listing, within LISTING_INTERVAL.
    let new = Key::generate(Algorithm::EdDSA, kid("new")).unwrap();
    let new_token = new.sign(&claims()).unwrap();
    assert_eq!(set.verify(&new_token).unwrap_err().reason(), "unknown_kid");
    new.to_public()
        .unwrap()
        .write_file(dir.path().join("new.jwk"))
        .unwrap();
    assert_eq!(
        set.verify(&new_token).unwrap_err().reason(),
        "unknown_kid",
        "not listed yet"
    );
    clock.advance(moq_auth::LISTING_INTERVAL);
    assert!(set.verify(&new_token).is_ok());

    // Deleting the old file revokes it at the next listing.
    std::fs::remove_file(dir.path().join("old.jwk")).unwrap();
    assert!(set.verify(&old_token).is_ok(), "listed a moment ago");
    clock.advance(moq_auth::LISTING_INTERVAL);
    assert_eq!(set.verify(&old_token).unwrap_err().reason(), "unknown_kid");
    assert!(set.verify(&new_token).is_ok());

    // Replacing a file's key takes effect after the TTL too.
    let replacement = Key::generate(Algorithm::EdDSA, kid("new")).unwrap();
    replacement
        .to_public()
        .unwrap()
        .write_file(dir.path().join("new.jwk"))
        .unwrap();
    assert!(set.verify(&new_token).is_ok(), "still cached");
    clock.advance(Duration::from_secs(10));
    assert_eq!(set.verify(&new_token).unwrap_err().reason(), "bad_signature");
    assert!(set.verify(&replacement.sign(&claims()).unwrap()).is_ok());

    // A clock stepping backwards forces a re-read rather than trusting the cache.
    std::fs::remove_file(dir.path().join("new.jwk")).unwrap();
    clock.advance(Duration::from_secs(0));
    clock.set(SystemTime::now() - Duration::from_secs(3600));
    assert_eq!(
        set.verify(&replacement.sign(&claims()).unwrap())
            .unwrap_err()
            .reason(),
        "unknown_kid"
    );
}

#[test]
fn key_dir_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let set = KeySet::dir(dir.path()).unwrap();
    let key = Key::generate(Algorithm::HS256, None).unwrap();

    // No kid: the directory cannot pick a key.
    assert_eq!(
        set.verify(&key.sign(&claims()).unwrap()).unwrap_err().reason(),
        "missing_kid"
    );

    // A file whose key names another kid is refused, not used.
    key.clone()
        .with_kid(kid("b"))
        .write_file(dir.path().join("a.jwk"))
        .unwrap();
    let token = key.clone().with_kid(kid("a")).sign(&claims()).unwrap();
    assert_eq!(set.verify(&token).unwrap_err().reason(), "bad_key");

    // A file without a kid takes its name's (set2: a fresh listing that sees c.jwk).
    key.write_file(dir.path().join("c.jwk")).unwrap();
    let set = KeySet::dir(dir.path()).unwrap();
    assert!(
        set.verify(&key.clone().with_kid(kid("c")).sign(&claims()).unwrap())
            .is_ok()
    );

    // A kid cannot name a path outside the directory.
    assert!(KeyId::new("../c").is_err());
    let outside = dir.path().join("sub");
    std::fs::create_dir(&outside).unwrap();
    let nested = KeySet::dir(&outside).unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"../c"}"#);
    let token = key.with_kid(kid("c")).sign(&claims()).unwrap();
    let forged = format!("{header}.{}", token.split_once('.').unwrap().1);
    assert_eq!(nested.verify(&forged).unwrap_err().reason(), "bad_kid");

    assert_eq!(
        KeySet::dir(dir.path().join("missing")).unwrap_err().reason(),
        "key_file"
    );
}

#[test]
fn key_scope_is_a_ceiling() {
    let scope = Scope {
        root: "demo".into(),
        put: vec!["room".into()],
        get: vec![String::new()],
    };
    let key = Key::generate(Algorithm::HS256, None)
        .unwrap()
        .with_scope(Some(scope.clone()));
    let reloaded: Key = key.to_base64url().parse().unwrap();
    assert_eq!(reloaded.scope(), Some(&scope));

    let within = Claims {
        root: "demo/room".into(),
        put: vec!["a".into()],
        get: vec!["".into()],
        ..Claims::default()
    };
    assert!(key.verify(&key.sign(&within).unwrap()).is_ok());
    let same_split_differently = Claims {
        root: String::new(),
        put: vec!["demo/room/a".into()],
        ..Claims::default()
    };
    assert!(key.sign(&same_split_differently).is_ok());
    for beyond in [
        Claims {
            root: "demo".into(),
            put: vec!["roomy".into()],
            ..Claims::default()
        },
        Claims {
            root: String::new(),
            put: vec!["".into()],
            ..Claims::default()
        },
        Claims {
            root: "other".into(),
            get: vec!["".into()],
            ..Claims::default()
        },
    ] {
        assert_eq!(
            key.sign(&beyond).unwrap_err().reason(),
            "scope_exceeded",
            "{beyond:?}"
        );
        // Signed by the same secret without the ceiling, the verifier still refuses it.
        let unscoped = key.clone().with_scope(None);
        let token = unscoped.sign(&beyond).unwrap();
        assert_eq!(key.verify(&token).unwrap_err().reason(), "scope_exceeded");
    }
}
