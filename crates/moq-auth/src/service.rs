//! The external auth-server contract, as the moq-dev relay (0.15+) speaks it with
//! `moq auth serve`: the relay POSTs one JSON [`Request`] per session event (`connect`,
//! `revalidate`, `end`) to the server's URL; a 2xx answer to `connect` or `revalidate`
//! carries a [`Grant`], 401 or 403 refuses, anything else is an outage.
//!
//! Nothing here does networking: these are the JSON shapes, the checks a relay applies
//! to a grant ([`Grant::check`]), and the reference server's decision ([`Policy`]), so
//! the relay and `moq auth serve` agree on one definition.
//!
//! Request (`end` adds `reason`, `duration` in seconds and `bytes`):
//!
//! ```json
//! {"id":"00ff…","event":"connect","node":"relay-1","transport":"quic",
//!  "remote":"203.0.113.9:4433","local":"[::1]:443","server_name":"relay.example",
//!  "alpn":"moq-lite-05","path":"/demo/room","query":"jwt=…","role":"publisher",
//!  "tls":{"name":"edge0","fingerprint":"ab…","expires":4102444800,"issuer":"CN=cluster"}}
//! ```
//!
//! Grant (every field optional; patterns relative to the root):
//!
//! ```json
//! {"publish":["alice/**"],"subscribe":["**"],"root":"pid/room","expires":4102444800,
//!  "revalidate":60,"tier":"gold","peer":true}
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use moq_core::{pattern::Pattern, session::Permissions};
use moq_proto::Path;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{KeySet, claims::rebase_patterns};

/// Write patterns as their text.
pub(crate) fn write_patterns<S: Serializer>(patterns: &[Pattern], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(patterns.iter().map(Pattern::as_str))
}

/// Read a list of pattern texts, refusing any that is not a pattern.
pub(crate) fn read_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            text.parse::<Pattern>()
                .map_err(|err| serde::de::Error::custom(format!("pattern '{text}': {err}")))
        })
        .collect()
}

/// [`read_patterns`] for a field that must not be `null` when present.
pub(crate) fn read_some_patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Pattern>>, D::Error> {
    read_patterns(d).map(Some)
}

/// Which lifecycle moment a [`Request`] reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A session asks to be admitted.
    Connect,
    /// A live session's grant is checked again (on its cadence, or when an operator asks).
    Revalidate,
    /// The session closed.
    End {
        /// Why: `expired`, `refused`, `invalid`, `dropped`, or the relay's own words.
        reason: String,
        /// How long it was admitted, in seconds.
        duration: f64,
        /// What it moved.
        bytes: Bytes,
    },
}

/// Byte totals of a session, from the relay's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    /// Bytes the relay sent to the peer.
    pub sent: u64,
    /// Bytes the relay received from the peer.
    pub received: u64,
}

/// How a session reached the relay (WebTransport is `quic`, as the ecosystem reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Raw QUIC or WebTransport over HTTP/3.
    Quic,
    /// An iroh connection.
    Iroh,
    /// qmux over a WebSocket.
    #[serde(rename = "websocket")]
    WebSocket,
    /// qmux over plain TCP.
    Tcp,
    /// qmux over a Unix socket.
    Unix,
    /// A one-shot HTTP request (`/fetch`, `/announced`).
    Http,
    /// A transport this build does not know (read only).
    #[serde(other)]
    Other,
}

impl Transport {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Iroh => "iroh",
            Self::WebSocket => "websocket",
            Self::Tcp => "tcp",
            Self::Unix => "unix",
            Self::Http => "http",
            Self::Other => "other",
        }
    }
}

/// The single direction a client declared in its SETUP (absent: both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The client publishes.
    Publisher,
    /// The client subscribes.
    Subscriber,
}

/// A verified client certificate, as facts for the server to decide on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The first DNS name, else the common name, else the fingerprint.
    pub name: String,
    /// SHA-256 of the leaf certificate, lowercase hex.
    pub fingerprint: String,
    /// `notAfter`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// The issuer's distinguished name.
    #[serde(default)]
    pub issuer: String,
}

/// A moq-transport SETUP authorization token, unparsed (type and base64url bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupToken {
    /// The token type (0: a JWT).
    pub kind: u64,
    /// The token bytes, base64url without padding.
    pub value: String,
}

/// Everything the relay knows about a session, sent with every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// 128-bit random hex, the same for every event of one session.
    pub id: String,
    /// The event, with what an `end` carries.
    #[serde(flatten)]
    pub event: Event,
    /// The operator's name for the relay.
    pub node: String,
    /// How the session arrived.
    pub transport: Transport,
    /// The peer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// The relay's address the session arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    /// The TLS server name (SNI) or HTTP host the client addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The negotiated protocol (the moq-lite ALPN, or the WebSocket subprotocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// The path as dialled, with its leading `/`.
    pub path: String,
    /// The raw query string, without `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A moq-transport SETUP token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SetupToken>,
    /// The direction the client declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The verified client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Peer>,
}

impl Request {
    /// A `connect` with a fresh random id; the caller fills in the rest.
    pub fn connect(node: impl Into<String>, transport: Transport, path: impl Into<String>) -> Self {
        Self {
            id: new_id(),
            event: Event::Connect,
            node: node.into(),
            transport,
            remote: None,
            local: None,
            server_name: None,
            alpn: None,
            path: path.into(),
            query: None,
            token: None,
            role: None,
            tls: None,
        }
    }

    /// The JWT the request presents: its `jwt` query parameter (the last non-empty one,
    /// as the reference server reads it) or a type-0 SETUP token. `Err` when the two
    /// differ, or the SETUP token is of another type.
    pub fn jwt(&self) -> Result<Option<String>, String> {
        let query = self.query.as_deref().and_then(url_jwt);
        let setup = match &self.token {
            None => None,
            Some(token) if token.kind == 0 => Some(
                base64url(&token.value)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or("the SETUP token is not base64url-encoded UTF-8")?,
            ),
            Some(token) => {
                return Err(format!(
                    "SETUP token type {:#x} is not supported; only type 0 (a JWT) is",
                    token.kind
                ));
            }
        };
        match (query, setup) {
            (Some(a), Some(b)) if a != b => {
                Err("a SETUP token and a different `jwt` query were presented".into())
            }
            (Some(a), _) | (None, Some(a)) => Ok(Some(a)),
            (None, None) => Ok(None),
        }
    }
}

/// The last non-empty `jwt=` of a query, percent-decoded.
fn url_jwt(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("jwt="))
        .rfind(|jwt| !jwt.is_empty())
        .map(percent_decode)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes.get(i.saturating_add(1)..i.saturating_add(3)).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b, hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i = i.saturating_add(3);
            }
            (b'+', _) => {
                out.push(b' ');
                i = i.saturating_add(1);
            }
            _ => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// 128 random bits as lowercase hex.
pub fn new_id() -> String {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a session may do, as the auth server answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grant {
    /// Patterns the session may publish, relative to the root.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "write_patterns",
        deserialize_with = "read_patterns"
    )]
    pub publish: Vec<Pattern>,
    /// Patterns the session may subscribe to, relative to the root.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "write_patterns",
        deserialize_with = "read_patterns"
    )]
    pub subscribe: Vec<Pattern>,
    /// The session root, replacing the dialled path (an alias). Absent: the dialled path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Read-only subtrees from elsewhere. Not supported by this relay: a grant with
    /// mounts is refused rather than half honoured.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mounts: BTreeMap<String, String>,
    /// When the session closes, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// How long until the relay asks again, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revalidate: Option<u64>,
    /// A label for the relay's statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The session is another relay of the cluster.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub peer: bool,
}

/// Why a relay cannot use a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// It grants nothing: a refusal.
    #[error("the grant allows nothing")]
    Nothing,
    /// It asks to be revalidated without saying when it expires.
    #[error("the grant asks to be revalidated but has no expiry")]
    UnboundedRevalidate,
    /// It asks to be revalidated every 0 seconds.
    #[error("the grant's revalidation interval is 0")]
    ZeroRevalidate,
    /// It has already expired.
    #[error("the grant has already expired")]
    Expired,
    /// It names mounts, which this relay does not support.
    #[error("the grant has mounts, which this relay does not support")]
    Mounts,
    /// Its root is not a valid path.
    #[error("the grant's root is not a valid path: {0}")]
    BadRoot(String),
}

impl GrantError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Nothing => "nothing",
            Self::UnboundedRevalidate => "unbounded_revalidate",
            Self::ZeroRevalidate => "zero_revalidate",
            Self::Expired => "expired",
            Self::Mounts => "mounts",
            Self::BadRoot(_) => "bad_root",
        }
    }
}

impl Grant {
    /// A grant of these patterns and nothing else.
    pub fn new(publish: Vec<Pattern>, subscribe: Vec<Pattern>) -> Self {
        Self {
            publish,
            subscribe,
            ..Self::default()
        }
    }

    /// The grant of `permissions` (prefixes as subtrees, then patterns).
    pub fn from_permissions(permissions: &Permissions) -> Self {
        let publish = permissions
            .publish
            .iter()
            .map(Pattern::subtree)
            .chain(permissions.publish_patterns.iter().cloned())
            .collect();
        let subscribe = permissions
            .subscribe
            .iter()
            .map(Pattern::subtree)
            .chain(permissions.subscribe_patterns.iter().cloned())
            .collect();
        Self::new(publish, subscribe)
    }

    /// The permissions it gives, relative to its root.
    pub fn permissions(&self) -> Permissions {
        Permissions::from_patterns(self.publish.clone(), self.subscribe.clone())
    }

    /// When it expires: `None` for never (absent, or past what the clock can hold).
    pub fn expires_at(&self) -> Option<SystemTime> {
        let secs = self.expires?;
        match u64::try_from(secs) {
            Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
            Err(_) => Some(UNIX_EPOCH),
        }
    }

    /// How often to revalidate.
    pub fn cadence(&self) -> Option<Duration> {
        self.revalidate.map(Duration::from_secs)
    }

    /// The session root: the grant's alias, else `dialled`.
    pub fn root(&self, dialled: &Path) -> Result<Path, GrantError> {
        match &self.root {
            Some(root) => Path::new(root).map_err(|err| GrantError::BadRoot(err.to_string())),
            None => Ok(dialled.clone()),
        }
    }

    /// Refuse a grant a relay cannot honour: one that allows nothing, asks to be
    /// revalidated without a bound or at no interval, has expired by `now`, or has mounts.
    pub fn check(&self, now: SystemTime) -> Result<(), GrantError> {
        if self.publish.is_empty() && self.subscribe.is_empty() {
            return Err(GrantError::Nothing);
        }
        if self.revalidate.is_some() && self.expires.is_none() {
            return Err(GrantError::UnboundedRevalidate);
        }
        if self.revalidate == Some(0) {
            return Err(GrantError::ZeroRevalidate);
        }
        if self.expires_at().is_some_and(|at| at <= now) {
            return Err(GrantError::Expired);
        }
        if !self.mounts.is_empty() {
            return Err(GrantError::Mounts);
        }
        if let Some(root) = &self.root {
            Path::new(root).map_err(|err| GrantError::BadRoot(err.to_string()))?;
        }
        Ok(())
    }
}

/// The reference server's decision, in the order it applies: a JWT (query or SETUP
/// token), else a verified client certificate (the mTLS rules), else the anonymous
/// rules. A bad token never falls through to the anonymous rules. Rules are rooted at
/// `/`, like a token with an empty root, and authorized at the dialled path.
#[derive(Debug, Default)]
pub struct Policy {
    /// The keys tokens are verified with; `None` refuses every token.
    pub keys: Option<KeySet>,
    /// What anonymous sessions may publish and subscribe to.
    pub public: (Vec<Pattern>, Vec<Pattern>),
    /// What sessions with a verified client certificate may publish and subscribe to.
    pub mtls: (Vec<Pattern>, Vec<Pattern>),
    /// The tier stamped on every grant.
    pub tier: Option<String>,
    /// How often the relay re-checks each grant (needs `expires`).
    pub revalidate: Option<Duration>,
    /// How long a grant with no bound of its own lasts.
    pub expires: Option<Duration>,
}

/// Why [`Policy::decide`] refused, sent as the 403 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A token, but no keys to verify it.
    #[error("no keys are configured, so a token cannot be verified")]
    NoKeys,
    /// The token did not verify, or names another root.
    #[error("the token is not accepted: {0}")]
    Token(String),
    /// The path is outside everything the rules grant.
    #[error("nothing is granted at '{0}'")]
    NoAccess(String),
    /// A certificate, but nothing granted to certificates.
    #[error("a certificate was presented but nothing is granted to certificates")]
    NoMtlsGrant,
    /// No credentials and nothing public.
    #[error("anonymous access is not granted")]
    NoPublicGrant,
    /// Both a JWT and a client certificate.
    #[error("both a JWT and a client certificate were presented; present one")]
    TokenAndCertificate,
    /// The request is malformed (bad path, two different tokens).
    #[error("{0}")]
    BadRequest(String),
}

impl Policy {
    /// Decide `request` at `now`.
    pub fn decide(&self, request: &Request, now: SystemTime) -> Result<Grant, Refusal> {
        let jwt = request.jwt().map_err(Refusal::BadRequest)?;
        let path = Path::new(&request.path).map_err(|err| Refusal::BadRequest(format!("bad path: {err}")))?;
        if jwt.is_some() && request.tls.is_some() {
            return Err(Refusal::TokenAndCertificate);
        }
        let (mut grant, bound) = if let Some(jwt) = jwt {
            let keys = self.keys.as_ref().ok_or(Refusal::NoKeys)?;
            let claims = keys.verify(&jwt).map_err(|err| Refusal::Token(err.to_string()))?;
            let permissions = claims
                .authorize(&path)
                .map_err(|err| Refusal::Token(err.to_string()))?;
            if permissions.publishes_nothing() && permissions.subscribes_nothing() {
                return Err(Refusal::NoAccess(path.to_string()));
            }
            let mut grant = Grant::from_permissions(&permissions);
            grant.peer = claims.cluster;
            let exp = claims.exp.and_then(|exp| i64::try_from(exp).ok());
            (grant, exp)
        } else if let Some(peer) = &request.tls {
            if self.mtls.0.is_empty() && self.mtls.1.is_empty() {
                return Err(Refusal::NoMtlsGrant);
            }
            (rules_at(&self.mtls, &path)?, peer.expires)
        } else {
            if self.public.0.is_empty() && self.public.1.is_empty() {
                return Err(Refusal::NoPublicGrant);
            }
            (rules_at(&self.public, &path)?, None)
        };
        grant.expires = bound.or_else(|| {
            let at = now.checked_add(self.expires?)?;
            i64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
        });
        grant.revalidate = self.revalidate.map(|d| d.as_secs().max(1));
        grant.tier = self.tier.clone();
        Ok(grant)
    }
}

/// Rules rooted at `/`, as seen from the dialled `path`.
fn rules_at(rules: &(Vec<Pattern>, Vec<Pattern>), path: &Path) -> Result<Grant, Refusal> {
    let root = Path::empty();
    let publish = rebase_patterns(&rules.0, &root, path).unwrap_or_default();
    let subscribe = rebase_patterns(&rules.1, &root, path).unwrap_or_default();
    if publish.is_empty() && subscribe.is_empty() {
        return Err(Refusal::NoAccess(path.to_string()));
    }
    Ok(Grant::new(publish, subscribe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, Claims, Key};

    fn patterns(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn request(path: &str) -> Request {
        let mut request = Request::connect("relay-1", Transport::Quic, path);
        request.id = "00ff".into();
        request
    }

    #[test]
    fn requests_are_flat_json() {
        let mut request = request("/demo/room");
        request.remote = Some("203.0.113.9:4433".parse().unwrap());
        request.query = Some("jwt=abc".into());
        request.role = Some(Role::Publisher);
        request.tls = Some(Peer {
            name: "edge0".into(),
            fingerprint: "ab".into(),
            expires: Some(4_102_444_800),
            issuer: "CN=cluster".into(),
        });
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"id":"00ff","event":"connect","node":"relay-1","transport":"quic","remote":"203.0.113.9:4433","path":"/demo/room","query":"jwt=abc","role":"publisher","tls":{"name":"edge0","fingerprint":"ab","expires":4102444800,"issuer":"CN=cluster"}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);

        request.event = Event::End {
            reason: "expired".into(),
            duration: 1.5,
            bytes: Bytes {
                sent: 10,
                received: 20,
            },
        };
        request.tls = None;
        request.role = None;
        request.transport = Transport::WebSocket;
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"id":"00ff","event":"end","reason":"expired","duration":1.5,"bytes":{"sent":10,"received":20},"node":"relay-1","transport":"websocket","remote":"203.0.113.9:4433","path":"/demo/room","query":"jwt=abc"}"#
        );
        // A transport from a newer relay still parses.
        let newer = r#"{"id":"1","event":"revalidate","node":"n","transport":"webtransport","path":"/"}"#;
        assert_eq!(
            serde_json::from_str::<Request>(newer).unwrap().transport,
            Transport::Other
        );
        assert_eq!(new_id().len(), 32);
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn grants_round_trip_and_are_checked() {
        let json = r#"{"publish":["alice/**"],"subscribe":["**"],"root":"pid/room","expires":4102444800,"revalidate":60,"tier":"gold","peer":true}"#;
        let grant: Grant = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&grant).unwrap(), json);
        let now = SystemTime::now();
        assert_eq!(grant.check(now), Ok(()));
        assert_eq!(grant.root(&Path::new("x").unwrap()).unwrap().as_str(), "pid/room");
        assert_eq!(grant.cadence(), Some(Duration::from_secs(60)));

        let bad = |json: &str| {
            serde_json::from_str::<Grant>(json)
                .unwrap()
                .check(now)
                .unwrap_err()
        };
        assert_eq!(bad(r#"{}"#), GrantError::Nothing);
        assert_eq!(
            bad(r#"{"publish":["**"],"revalidate":5}"#),
            GrantError::UnboundedRevalidate
        );
        assert_eq!(
            bad(r#"{"publish":["**"],"revalidate":0,"expires":4102444800}"#),
            GrantError::ZeroRevalidate
        );
        assert_eq!(bad(r#"{"publish":["**"],"expires":1}"#), GrantError::Expired);
        assert_eq!(bad(r#"{"publish":["**"],"expires":-5}"#), GrantError::Expired);
        assert_eq!(
            bad(r#"{"publish":["**"],"mounts":{"a":"b"}}"#),
            GrantError::Mounts
        );
        assert!(serde_json::from_str::<Grant>(r#"{"publish":["a//b"]}"#).is_err());
        assert!(serde_json::from_str::<Grant>(r#"{"publish":"**"}"#).is_err());
        // Fields a newer server adds are ignored; an expiry past the clock is never.
        let far: Grant =
            serde_json::from_str(r#"{"subscribe":["**"],"x":1,"expires":9223372036854775807}"#).unwrap();
        assert_eq!(far.check(now), Ok(()));
    }

    #[test]
    fn the_jwt_comes_from_the_query_or_the_setup_token() {
        let mut r = request("/a");
        r.query = Some("x=1&jwt=one&jwt=two&jwt=".into());
        assert_eq!(r.jwt().unwrap().as_deref(), Some("two"));
        r.token = Some(SetupToken {
            kind: 0,
            value: "dHdv".into(),
        });
        assert_eq!(r.jwt().unwrap().as_deref(), Some("two"));
        r.token = Some(SetupToken {
            kind: 0,
            value: "b3RoZXI".into(),
        });
        assert!(r.jwt().is_err());
        r.token = Some(SetupToken {
            kind: 1,
            value: "AA".into(),
        });
        assert!(r.jwt().unwrap_err().contains("type 0x1"));
    }

    #[test]
    fn the_policy_decides_like_the_reference_server() {
        let key = Key::generate(Algorithm::HS256, None).unwrap();
        let policy = Policy {
            keys: Some(KeySet::single(key.clone()).unwrap()),
            public: (patterns(&["anon/**"]), patterns(&["anon/**", "*/chat"])),
            revalidate: Some(Duration::from_secs(30)),
            expires: Some(Duration::from_secs(600)),
            tier: Some("gold".into()),
            ..Policy::default()
        };
        let now = SystemTime::now();
        // Anonymous, rooted at `/`.
        let grant = policy.decide(&request("/anon"), now).unwrap();
        assert_eq!(grant.publish, patterns(&["**"]));
        assert_eq!(grant.subscribe, patterns(&["**", "chat"]));
        assert_eq!(grant.revalidate, Some(30));
        assert!(grant.expires.is_some() && grant.check(now).is_ok());
        assert_eq!(grant.tier.as_deref(), Some("gold"));
        let top = policy.decide(&request("/"), now).unwrap();
        assert_eq!(top.subscribe, patterns(&["anon/**", "*/chat"]));
        assert!(matches!(
            policy.decide(&request("/private/room"), now),
            Err(Refusal::NoAccess(_))
        ));

        // A token is its own grant, and a bad one never falls through.
        let mut claims = Claims::new("room");
        claims.put = vec!["alice".into()];
        claims.get = vec![String::new()];
        claims.exp = Some(4_102_444_800);
        claims.cluster = true;
        let mut r = request("/room");
        r.query = Some(format!("jwt={}", key.sign(&claims).unwrap()));
        let grant = policy.decide(&r, now).unwrap();
        assert_eq!(grant.publish, patterns(&["alice/**"]));
        assert_eq!(grant.subscribe, patterns(&["**"]));
        assert_eq!(grant.expires, Some(4_102_444_800));
        assert!(grant.peer);
        let mut bad = request("/anon");
        bad.query = Some("jwt=not.a.token".into());
        assert!(matches!(policy.decide(&bad, now), Err(Refusal::Token(_))));
        r.tls = Some(Peer {
            name: "x".into(),
            fingerprint: "ab".into(),
            expires: None,
            issuer: String::new(),
        });
        assert_eq!(policy.decide(&r, now), Err(Refusal::TokenAndCertificate));

        // Certificates get only what the mTLS rules say.
        r.query = None;
        assert_eq!(policy.decide(&r, now), Err(Refusal::NoMtlsGrant));
        let none = Policy::default();
        assert_eq!(none.decide(&request("/anon"), now), Err(Refusal::NoPublicGrant));
    }
}
