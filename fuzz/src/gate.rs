//! Harness for the relay's session gate (target `target`): dialled targets
//! (`path?query`) through [`Target::parse`] and [`Gate::decide`], and URLs through
//! [`moq_relay::redact::url`].

use std::sync::OnceLock;

use moq_auth::{Claims, Public};
use moq_native::server::ClientCertificate;
use moq_proto::Path;
use moq_relay::gate::{Gate, RefusalKind, Target};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::auth::{keys, split_ff};

/// Subscribe: `anon`, `demo/watch`; publish: `anon/live`.
fn public() -> Public {
    Public::from_prefixes(&["anon", "demo/watch"], &["anon/live"]).expect("fixed public prefixes")
}

/// The gate: the public prefixes above and the fixed HS256 key (fixed clock).
fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        // A key set cannot be cloned: build a second one over the same key and clock.
        let keys = keys();
        let set = moq_auth::KeySet::single(keys.hs256.clone())
            .expect("HS256 verifies")
            .with_clock(std::sync::Arc::new(
                moq_auth::ManualClock::new(crate::auth::now()),
            ));
        Gate::new(public(), Some(set))
    })
}

/// Everything but unreserved characters and `/` is escaped in a path.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Target `target`. The first byte picks the mode:
///
/// - `% 3 == 0`: the rest, as (lossy) UTF-8, is a dialled target;
/// - `1`: the rest is `path 0xff root 0xff put 0xff get 0xff query`; claims
///   with that root and `,`-separated grants are signed with the gate's key
///   and the target is `path?jwt=TOKEN&query` (`path?query&jwt=TOKEN` when bit
///   4 of the first byte is set). Claims the key refuses to sign give a target
///   without a token;
/// - `2`: the rest is a URL for [`moq_relay::redact::url`].
pub fn target(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(&String::from_utf8_lossy(rest)),
        1 => {
            let (path, rest) = split_ff(rest);
            let (root, rest) = split_ff(rest);
            let (put, rest) = split_ff(rest);
            let (get, query) = split_ff(rest);
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let grants = |b: &[u8]| -> Vec<String> {
                match b.is_empty() {
                    true => Vec::new(),
                    false => text(b).split(',').map(str::to_owned).collect(),
                }
            };
            let claims = Claims {
                put: grants(put),
                get: grants(get),
                exp: Some(crate::auth::NOW_UNIX + 3600),
                ..Claims::new(text(root))
            };
            let (path, query) = (text(path), text(query));
            let target = match keys().hs256.sign(&claims) {
                Ok(token) if mode & 0x10 == 0 => format!("{path}?jwt={token}&{query}"),
                Ok(token) => format!("{path}?{query}&jwt={token}"),
                Err(_) => format!("{path}?{query}"),
            };
            check(&target);
        }
        _ => redact(&String::from_utf8_lossy(rest)),
    }
}

/// Parse and decide one target; see [`target`] for what is checked.
fn check(raw: &str) {
    let gate = gate();
    let parsed = Target::parse(raw);
    let decision = gate.decide(raw, None);
    let with_certificate = gate.decide(raw, Some(ClientCertificate::default()));
    if crate::trace() {
        eprintln!("{raw:?}: {parsed:?} -> {decision:?}");
    }
    let target = match parsed {
        Ok(target) => target,
        Err(detail) => {
            let refusal = decision.expect_err("decide accepted a target that does not parse");
            assert_eq!(refusal.reason, "bad_path");
            assert_eq!(refusal.detail, detail);
            assert!(
                with_certificate.is_err(),
                "a certificate made an unparseable target acceptable"
            );
            return;
        }
    };

    // The root is normalised, and the target re-encoded parses to the same thing.
    assert_eq!(
        Path::new(target.root.as_str()).as_ref(),
        Ok(&target.root),
        "the root is not normalised"
    );
    let mut again = utf8_percent_encode(target.root.as_str(), PATH).to_string();
    if let Some(token) = &target.token {
        again.push_str("?jwt=");
        again.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
    }
    assert_eq!(
        Target::parse(&again).as_ref(),
        Ok(&target),
        "the target re-encoded as {again:?} parses differently"
    );

    let grant = with_certificate.expect("a client certificate is refused on a target that parses");
    assert_eq!(grant.root, target.root);
    assert!(grant.client_certificate && grant.claims.is_none());

    let path_part = raw.split_once('?').map_or(raw, |(p, _)| p);
    match decision {
        Ok(grant) => {
            assert_eq!(
                grant.root, target.root,
                "the grant's root is not the dialled path"
            );
            assert_eq!(grant.claims.is_some(), target.token.is_some());
            assert_eq!(
                grant.token.as_ref().map(|t| t.expose().to_owned()),
                target.token,
                "the grant does not keep the token it was given"
            );
            assert!(!grant.client_certificate);
            assert!(
                !grant.permissions.publish.is_empty() || !grant.permissions.subscribe.is_empty(),
                "a session was admitted with nothing allowed"
            );
            let public = public();
            let claims = grant.claims.as_ref();
            // Nothing beyond what the token and the public prefixes allow.
            for (relative, role) in grant
                .permissions
                .publish
                .iter()
                .map(|p| (p, Role::Publish))
                .chain(grant.permissions.subscribe.iter().map(|p| (p, Role::Subscribe)))
            {
                let Ok(absolute) = target.root.join(relative.as_str()) else {
                    continue;
                };
                let by_public = match role {
                    Role::Publish => public.can_publish(&absolute),
                    Role::Subscribe => public.can_subscribe(&absolute),
                };
                let by_token = claims.is_some_and(|c| {
                    let grants = match role {
                        Role::Publish => &c.put,
                        Role::Subscribe => &c.get,
                    };
                    grants.iter().any(|g| {
                        Path::new(&c.root)
                            .and_then(|root| root.join(g))
                            .is_ok_and(|allowed| absolute.has_prefix(&allowed))
                    })
                });
                assert!(
                    by_public || by_token,
                    "{role:?} at '{absolute}' granted to {raw:?}, beyond the token ({claims:?}) and the public prefixes"
                );
            }
            if let (Some(claims), Some(exp)) = (claims, grant.expires) {
                assert_eq!(claims.exp.map(|e| e > crate::auth::NOW_UNIX), Some(true));
                assert!(exp > crate::auth::now());
            }
        }
        Err(refusal) => {
            match refusal.kind {
                RefusalKind::Auth => assert_eq!((refusal.status, refusal.code), (401, 0x2)),
                RefusalKind::Request => assert!((400..600).contains(&refusal.status)),
            }
            if let Some(token) = &target.token
                && token.len() >= 16
                && !path_part.contains(token.as_str())
            {
                assert!(
                    !refusal.detail.contains(token.as_str()),
                    "a refusal quotes the token"
                );
                assert!(
                    !refusal.close_reason().contains(token.as_str()),
                    "a close reason quotes the token"
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Publish,
    Subscribe,
}

/// A URL's `jwt` value, as the relay reads it, never survives redaction: every
/// `jwt` pair of the redacted URL holds a placeholder, and the token is nowhere
/// outside the query (user info and fragment are dropped).
fn redact(raw: &str) {
    let redacted = moq_relay::redact::url(raw);
    let Ok(parsed) = url::Url::parse(raw) else {
        // Not a URL: nothing after `?` or `#` is kept.
        assert!(!redacted.contains(['?', '#']), "{raw:?} redacted to {redacted:?}");
        return;
    };
    let Some(token) = moq_relay::gate::token_from_query(parsed.query()) else {
        return;
    };
    let out = url::Url::parse(&redacted)
        .unwrap_or_else(|err| panic!("{raw:?} redacted to {redacted:?}, not a URL: {err}"));
    for (key, value) in out.query_pairs() {
        if key == "jwt" {
            assert_ne!(
                value,
                token.as_str(),
                "{raw:?} redacted to {redacted:?} keeps the token"
            );
        }
    }
    assert_eq!(
        moq_relay::gate::token_from_query(out.query())
            .as_deref()
            .filter(|t| *t == token),
        None,
        "{raw:?} redacted to {redacted:?}: the relay would still read the token"
    );
    // The token anywhere else, unless it was there before in a part that is kept.
    let mut kept = parsed.clone();
    kept.set_query(None);
    let _ = kept.set_username("");
    let _ = kept.set_password(None);
    kept.set_fragment(None);
    let mut stripped = out.clone();
    stripped.set_query(None);
    if token.len() >= 8 && !kept.as_str().contains(token.as_str()) {
        assert!(
            !stripped.as_str().contains(token.as_str()),
            "{raw:?} redacted to {redacted:?} shows the token outside the query"
        );
    }
}
