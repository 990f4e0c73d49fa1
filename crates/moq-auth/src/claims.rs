//! Token claims (`root`, `put`, `get`, `publish`, `subscribe`, `exp`, `iat`, `nbf`,
//! `cluster`) and what they allow at the path a client dialled.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moq_core::{pattern::Pattern, session::Permissions};
use moq_proto::Path;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// How strictly token times are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validation {
    /// Grace after `exp` before a token counts as expired. Default 0: a
    /// token is expired from its `exp` second on (RFC 7519 §4.1.4).
    pub leeway: Duration,
    /// How far in the future `nbf` or `iat` may be, for issuers whose clock
    /// runs ahead of ours. Default 60 s.
    pub skew: Duration,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            leeway: Duration::ZERO,
            skew: Duration::from_secs(60),
        }
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A token's claim set.
///
/// `put` and `get` are path prefixes relative to `root`; an empty prefix
/// (`""`) means everything under the root, an empty list means nothing.
/// Prefixes are segment-aware: `foo` covers `foo/bar`, never `foobar`.
///
/// `publish` and `subscribe` are the newer spelling (moq-auth 0.2, relay 0.15+):
/// [`Pattern`]s relative to `root`, exact as written (`foo` is one broadcast,
/// `foo/**` a subtree, `**` everything). One token uses one spelling; mixing them is
/// refused, as the ecosystem refuses it.
///
/// `cluster: true` (older `moq-token sign --cluster`) marks the holder as another
/// relay of the cluster: the relay gives it a cluster peer's quota.
///
/// On the wire `put`/`get` may be a string or a list of strings; they are
/// written as lists and left out when empty. Reading refuses unknown claims
/// (an unknown claim may be a restriction we would otherwise ignore), except
/// the bookkeeping claims `iss`, `sub` and `jti`, which are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ClaimsIn")]
pub struct Claims {
    /// The path `put` and `get` are relative to (`""` = the relay root).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    /// Prefixes the holder may publish under.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub put: Vec<String>,
    /// Prefixes the holder may subscribe to and discover.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub get: Vec<String>,
    /// Patterns the holder may publish (the newer spelling of `put`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::service::write_patterns"
    )]
    pub publish: Vec<Pattern>,
    /// Patterns the holder may subscribe to (the newer spelling of `get`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::service::write_patterns"
    )]
    pub subscribe: Vec<Pattern>,
    /// Expiry, Unix seconds. Enforced at verification (the relay also ends
    /// the session then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Issue time, Unix seconds. Refused when well in the future.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not valid before, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The holder is a relay of the cluster.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

/// The wire form, strict about what it accepts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsIn {
    #[serde(default)]
    root: String,
    #[serde(default, deserialize_with = "one_or_many")]
    put: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many")]
    get: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::service::read_some_patterns")]
    publish: Option<Vec<Pattern>>,
    #[serde(default, deserialize_with = "crate::service::read_some_patterns")]
    subscribe: Option<Vec<Pattern>>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    cluster: bool,
    #[serde(default, rename = "iss")]
    _iss: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "sub")]
    _sub: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "jti")]
    _jti: Option<serde::de::IgnoredAny>,
}

impl TryFrom<ClaimsIn> for Claims {
    type Error = String;

    fn try_from(c: ClaimsIn) -> Result<Self, String> {
        let legacy = c.put.is_some() || c.get.is_some();
        if legacy && (c.publish.is_some() || c.subscribe.is_some()) {
            return Err("mixes the legacy put/get claims with publish/subscribe; use one spelling".into());
        }
        Ok(Self {
            root: c.root,
            put: c.put.unwrap_or_default(),
            get: c.get.unwrap_or_default(),
            publish: c.publish.unwrap_or_default(),
            subscribe: c.subscribe.unwrap_or_default(),
            exp: c.exp,
            iat: c.iat,
            nbf: c.nbf,
            cluster: c.cluster,
        })
    }
}

/// A string or a list of strings, present; `null` is refused.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    one_or_many_vec(deserializer).map(Some)
}

/// A string or a list of strings; `null` is refused.
fn one_or_many_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a string or a list of strings")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn paths(what: &str, raw: &[String]) -> Result<Vec<Path>> {
    raw.iter()
        .map(|p| Path::new(p).map_err(|e| Error::BadPath(format!("{what} '{p}': {e}"))))
        .collect()
}

impl Claims {
    /// Claims with this root and no grants yet.
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Whether no claim grants anything.
    pub fn grants_nothing(&self) -> bool {
        self.put.is_empty() && self.get.is_empty() && self.publish.is_empty() && self.subscribe.is_empty()
    }

    /// The claims as pretty-printed JSON (for `moq token verify`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<Self> {
        serde_json::from_slice(payload).map_err(|e| {
            let mut msg = e.to_string();
            msg.truncate(200);
            Error::BadClaims(msg)
        })
    }

    /// Refuse claims that grant nothing or whose paths are invalid.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.grants_nothing() {
            return Err(Error::NoGrant);
        }
        self.parsed().map_err(|e| Error::BadClaims(e.to_string()))?;
        Ok(())
    }

    fn parsed(&self) -> Result<(Path, Vec<Path>, Vec<Path>)> {
        let root = Path::new(&self.root).map_err(|e| Error::BadPath(format!("root '{}': {e}", self.root)))?;
        Ok((root, paths("put", &self.put)?, paths("get", &self.get)?))
    }

    pub(crate) fn check_time(&self, now: SystemTime, validation: &Validation) -> Result<()> {
        let now = unix_seconds(now);
        if let Some(exp) = self.exp
            && now >= exp.saturating_add(validation.leeway.as_secs())
        {
            return Err(Error::Expired { exp, now });
        }
        let latest = now.saturating_add(validation.skew.as_secs());
        for at in [self.nbf, self.iat].into_iter().flatten() {
            if at > latest {
                return Err(Error::NotYetValid { at, now });
            }
        }
        Ok(())
    }

    /// What these claims allow a session whose root (the dialled URL path)
    /// is `path`, as prefixes relative to `path`.
    ///
    /// - `path` extends `root` (root `r`, path `r/room`): each grant is
    ///   narrowed to what lies under `room`; a grant covering `room` becomes
    ///   the whole session (`""`), one inside it keeps its remainder, others
    ///   are dropped.
    /// - `path` is a parent of `root` (root `r`, path ``): the missing part
    ///   (`r`) is prepended to every grant.
    /// - otherwise [`Error::WrongRoot`].
    ///
    /// The result may be empty (nothing allowed here); callers that need a
    /// refusal use [`authorize`](crate::authorize). Only authorisation:
    /// verify the token first.
    ///
    /// `publish`/`subscribe` patterns are re-expressed the same way (rebased below the
    /// root, or prefixed with the missing part); prefix-shaped ones join the prefixes.
    pub fn authorize(&self, path: &Path) -> Result<Permissions> {
        let (root, put, get) = self.parsed()?;
        let wrong_root = || Error::WrongRoot {
            root: root.to_string(),
            path: path.to_string(),
        };
        let (Some(publish), Some(subscribe)) = (rebase(&put, &root, path), rebase(&get, &root, path)) else {
            return Err(wrong_root());
        };
        let patterns = Permissions::from_patterns(
            rebase_patterns(&self.publish, &root, path).ok_or_else(wrong_root)?,
            rebase_patterns(&self.subscribe, &root, path).ok_or_else(wrong_root)?,
        );
        Ok(Permissions {
            publish: minimise([publish, patterns.publish].concat()),
            subscribe: minimise([subscribe, patterns.subscribe].concat()),
            publish_patterns: patterns.publish_patterns,
            subscribe_patterns: patterns.subscribe_patterns,
        })
    }
}

/// A key's ceiling (the JWK `scope` member, moq-token >= 0.7): the widest
/// grants a token signed or verified with that key may carry.
///
/// Grants on both sides are placed under their own root before comparing,
/// so `root: "demo"` + `put: ["room"]` equals `put: ["demo/room"]`. Roles
/// are independent: a publish-only scope refuses any `get`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// The path `put` and `get` are relative to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
    /// Publish prefixes the key may grant.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many_vec"
    )]
    pub put: Vec<String>,
    /// Subscribe prefixes the key may grant.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many_vec"
    )]
    pub get: Vec<String>,
}

impl Scope {
    /// Whether every grant of `claims` lies under a grant of this scope, per role.
    pub fn allows(&self, claims: &Claims) -> bool {
        fn absolute(root: &str, prefix: &str) -> Option<Path> {
            Path::new(root).ok()?.join(prefix).ok()
        }
        let covers = |ceiling: &[String], requested: &[String]| {
            let ceiling: Vec<Path> = ceiling.iter().filter_map(|g| absolute(&self.root, g)).collect();
            requested
                .iter()
                .all(|r| absolute(&claims.root, r).is_some_and(|r| ceiling.iter().any(|c| r.has_prefix(c))))
        };
        // A pattern lies under a ceiling prefix when its literal head does: every path it
        // names starts with that head.
        let covers_patterns = |ceiling: &[String], requested: &[Pattern]| {
            let ceiling: Vec<Path> = ceiling.iter().filter_map(|g| absolute(&self.root, g)).collect();
            requested.iter().all(|r| {
                absolute(&claims.root, r.literal_head().as_str())
                    .is_some_and(|head| ceiling.iter().any(|c| head.has_prefix(c)))
            })
        };
        covers(&self.put, &claims.put)
            && covers(&self.get, &claims.get)
            && covers_patterns(&self.put, &claims.publish)
            && covers_patterns(&self.get, &claims.subscribe)
    }
}

/// Re-express `grants` (prefixes relative to `root`) relative to `session`,
/// or `None` when neither path contains the other.
pub(crate) fn rebase(grants: &[Path], root: &Path, session: &Path) -> Option<Vec<Path>> {
    if let Some(rest) = session.strip_prefix(root) {
        // session = root/rest: keep what lies at or under `rest`, relative to it.
        let rest = Path::new(rest).ok()?;
        let mut out = Vec::new();
        for grant in grants {
            if rest.has_prefix(grant) {
                out.push(Path::empty());
            } else if let Some(inside) = grant.strip_prefix(&rest)
                && let Ok(inside) = Path::new(inside)
            {
                out.push(inside);
            }
        }
        Some(minimise(out))
    } else if let Some(extra) = root.strip_prefix(session) {
        // root = session/extra: anchor each grant at `extra`. A grant too long
        // to join names no valid path, so dropping it loses nothing.
        let extra = Path::new(extra).ok()?;
        Some(minimise(
            grants
                .iter()
                .filter_map(|g| extra.join(g.as_str()).ok())
                .collect(),
        ))
    } else {
        None
    }
}

/// Re-express `patterns` (relative to `root`) relative to `session`, or `None` when
/// neither path contains the other.
pub(crate) fn rebase_patterns(patterns: &[Pattern], root: &Path, session: &Path) -> Option<Vec<Pattern>> {
    if let Some(rest) = session.strip_prefix(root) {
        let rest = Path::new(rest).ok()?;
        let mut out: Vec<Pattern> = Vec::new();
        for pattern in patterns.iter().flat_map(|p| p.rebase(&rest)) {
            if !out.contains(&pattern) {
                out.push(pattern);
            }
        }
        Some(out)
    } else if let Some(extra) = root.strip_prefix(session) {
        // A pattern too long to sit below `extra` names no valid path: dropping it loses nothing.
        let extra = Path::new(extra).ok()?;
        Some(patterns.iter().filter_map(|p| p.below(&extra)).collect())
    } else {
        None
    }
}

/// Drop duplicates and prefixes already covered by another, keeping order.
pub(crate) fn minimise(prefixes: Vec<Path>) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        if out.iter().any(|kept| prefix.has_prefix(kept)) {
            continue;
        }
        out.retain(|kept| !kept.has_prefix(&prefix));
        out.push(prefix);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn string_or_list() {
        let c: Claims = serde_json::from_str(r#"{"root":"r","put":"a","get":["b","c"]}"#).unwrap();
        assert_eq!(c.put, ["a"]);
        assert_eq!(c.get, ["b", "c"]);
        let c: Claims = serde_json::from_str(r#"{"put":[],"get":""}"#).unwrap();
        assert!(c.put.is_empty());
        assert_eq!(c.get, [""]);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"get":[""]}"#);
    }

    #[test]
    fn strict_reading() {
        for bad in [
            r#"{"put":null}"#,
            r#"{"put":"a","cluster":1}"#,
            r#"{"put":"a","publish":["b/**"]}"#,
            r#"{"publish":["a//b"]}"#,
            r#"{"publish":null}"#,
            r#"{"put":"a","aud":"x"}"#,
            r#"{"put":"a","root":null}"#,
            r#"{"put":"a","exp":-1}"#,
            r#"{"put":"a","exp":1.5}"#,
            r#"{"put":"a","put":"b"}"#,
            r#"{"put":[1]}"#,
        ] {
            assert!(Claims::from_payload(bad.as_bytes()).is_err(), "{bad}");
        }
        let ok = r#"{"put":"a","iss":"me","sub":{"x":1},"jti":"1"}"#;
        assert_eq!(Claims::from_payload(ok.as_bytes()).unwrap().put, ["a"]);
    }

    #[test]
    fn pattern_claims_and_cluster() {
        let c = Claims::from_payload(
            br#"{"root":"room","publish":["alice"],"subscribe":["**","*/chat"],"nbf":1,"cluster":true}"#,
        )
        .unwrap();
        assert!(c.cluster && c.put.is_empty());
        assert_eq!(c.publish.len(), 1);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"root":"room","publish":["alice"],"subscribe":["**","*/chat"],"nbf":1,"cluster":true}"#
        );
        // Exact: `alice` is one broadcast, not a prefix.
        let at_room = c.authorize(&p("room")).unwrap();
        assert!(at_room.can_publish(&p("alice")) && !at_room.can_publish(&p("alice/x")));
        assert!(at_room.can_subscribe(&p("anything")));
        // Dialled deeper: rebased below the root.
        let at_alice = c.authorize(&p("room/alice")).unwrap();
        assert!(at_alice.can_publish(&p("")) && !at_alice.can_publish(&p("x")));
        // Dialled above the root: prefixed with it.
        let at_top = c.authorize(&p("")).unwrap();
        assert!(at_top.can_publish(&p("room/alice")) && !at_top.can_publish(&p("alice")));
        assert!(at_top.can_subscribe(&p("room/bob/chat")));
        assert!(c.authorize(&p("other")).is_err());
        assert!(!c.grants_nothing());
    }

    #[test]
    fn a_scope_bounds_pattern_claims_by_their_literal_head() {
        let scope = Scope {
            root: "demo".into(),
            put: vec!["room".into()],
            get: vec![],
        };
        let claims = |publish: &str| Claims {
            root: "demo".into(),
            publish: vec![publish.parse().unwrap()],
            ..Claims::default()
        };
        assert!(scope.allows(&claims("room/*/cam")));
        assert!(scope.allows(&claims("room")));
        assert!(!scope.allows(&claims("*/cam")));
        assert!(!scope.allows(&claims("roomy/**")));
    }

    #[test]
    fn minimise_keeps_widest() {
        assert_eq!(
            minimise(vec![p("a/b"), p("a"), p("ab"), p("a/c"), p("ab")]),
            [p("a"), p("ab")]
        );
        assert_eq!(minimise(vec![p("x"), p("")]), [p("")]);
    }

    #[test]
    fn rebase_directions() {
        let grants = [p("room")];
        assert_eq!(rebase(&grants, &p("r"), &p("r")), Some(vec![p("room")]));
        assert_eq!(rebase(&grants, &p("r"), &p("r/room/sub")), Some(vec![p("")]));
        assert_eq!(rebase(&grants, &p("r"), &p("r/other")), Some(vec![]));
        assert_eq!(rebase(&grants, &p("r"), &p("")), Some(vec![p("r/room")]));
        assert_eq!(rebase(&grants, &p("r"), &p("rr")), None);
        assert_eq!(rebase(&[p("a/b/c")], &p("r"), &p("r/a")), Some(vec![p("b/c")]));
    }

    #[test]
    fn times() {
        let v = Validation::default();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let c = Claims {
            exp: Some(100),
            ..Claims::default()
        };
        assert!(c.check_time(at(99), &v).is_ok());
        assert_eq!(c.check_time(at(100), &v).unwrap_err().reason(), "expired");
        let c = Claims {
            iat: Some(1060),
            nbf: Some(1000),
            ..Claims::default()
        };
        assert!(c.check_time(at(1000), &v).is_ok());
        assert_eq!(c.check_time(at(999), &v).unwrap_err().reason(), "not_yet_valid");
    }
}
