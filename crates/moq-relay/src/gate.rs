//! The gate: what a session may do, decided from the target it dialled (`/path?jwt=...`),
//! its token, and its client certificate. Pure: no sockets, no clock beyond token
//! expiry, no knowledge of the cluster. Every transport asks the same question here.

use std::{
    fmt,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use moq_auth::{Claims, KeySet, Public};
use moq_core::session::Permissions;
use moq_native::server::ClientCertificate;
use moq_proto::Path;
use percent_encoding::percent_decode_str;

use crate::config;

/// Why a session or request is refused: the reason counted and logged, and what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Short, stable reason for metrics (`bad_path`, `bad_signature`, ...).
    pub reason: &'static str,
    /// What was wrong, for the log and the peer. Never contains a token.
    pub detail: String,
    /// HTTP status for transports that have one (WebTransport, HTTP).
    pub status: u16,
    /// moq-lite session close code for the others.
    pub code: u32,
    /// Authentication failures are logged and counted apart from other refusals.
    pub kind: RefusalKind,
}

/// What kind of refusal it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The credentials (or their absence) do not allow it.
    Auth,
    /// The request itself is malformed or over a limit.
    Request,
}

impl Refusal {
    /// A refusal for a failed authentication.
    pub fn auth(err: &moq_auth::Error) -> Self {
        Self::unauthorized(err.reason(), err.to_string())
    }

    /// An authentication refusal for `reason`.
    pub fn unauthorized(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            status: 401,
            code: 0x2,
            kind: RefusalKind::Auth,
        }
    }

    /// A refusal for a request that is not authentication's fault.
    pub fn request(reason: &'static str, detail: impl Into<String>, status: u16, code: u32) -> Self {
        Self {
            reason,
            detail: detail.into(),
            status,
            code,
            kind: RefusalKind::Request,
        }
    }

    /// The close reason sent to a peer without HTTP.
    pub fn close_reason(&self) -> String {
        match self.kind {
            RefusalKind::Auth => format!("unauthorized: {}", self.detail),
            RefusalKind::Request => format!("refused: {}", self.detail),
        }
    }
}

/// A dialled target: the session root and the token from its query, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL path, percent-decoded and normalised: the session root.
    pub root: Path,
    /// The `jwt` query parameter, if present and not empty.
    pub token: Option<String>,
}

impl Target {
    /// Parse `path?query`. A malformed escape, non-UTF-8 path or invalid path is refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        if has_bad_escape(path) {
            return Err(format!("bad percent escape in '{path}'"));
        }
        let decoded = percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| format!("path '{path}' is not UTF-8"))?;
        let root = Path::new(&decoded).map_err(|e| format!("bad path '{decoded}': {e}"))?;
        Ok(Self {
            root,
            token: token_from_query(query),
        })
    }
}

/// `percent-encoding` passes a malformed escape through unchanged; we refuse it.
fn has_bad_escape(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// The `jwt` query parameter, if present and not empty.
pub fn token_from_query(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, v)| k == "jwt" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// A token held in memory; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl Token {
    /// The token text, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What a session may do, and until when.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The session root: broadcast paths on the wire are relative to it.
    pub root: Path,
    /// Publish and subscribe prefixes, relative to the root.
    pub permissions: Permissions,
    /// The verified token, if one was given.
    pub claims: Option<Claims>,
    /// The token itself, kept to re-check the session when keys change.
    pub token: Option<Token>,
    /// Whether a client certificate authenticated the session.
    pub client_certificate: bool,
    /// Whether the session is another relay of the cluster (a client certificate, a
    /// token with `cluster: true`, or an auth server's `peer` grant): it gets a peer's quota.
    pub peer: bool,
    /// When the token or certificate stops being valid.
    pub expires: Option<SystemTime>,
}

impl Grant {
    /// No token, no certificate and no peer grant: the public prefixes only.
    pub fn is_anonymous(&self) -> bool {
        self.claims.is_none() && !self.client_certificate && !self.peer
    }

    /// Time left until the grant expires, from `now`.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires.map(|at| at.duration_since(now).unwrap_or_default())
    }
}

/// Where the verification keys come from, so they can be read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `[auth] key`: one JWK file.
    File(std::path::PathBuf),
    /// `[auth] key_dir`: `{kid}.jwk` files.
    Dir(std::path::PathBuf),
}

impl KeySource {
    fn load(&self) -> anyhow::Result<KeySet> {
        match self {
            Self::File(file) => {
                let key = moq_auth::Key::from_file(file)
                    .with_context(|| format!("[auth] key {}", file.display()))?;
                Ok(KeySet::single(key)?)
            }
            Self::Dir(dir) => Ok(KeySet::dir(dir)?),
        }
    }

    /// The file or directory to watch for changes.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::File(path) | Self::Dir(path) => path,
        }
    }
}

/// The access policy: anonymous prefixes and the keys that verify tokens. Keys can be
/// reloaded while sessions run ([`Gate::reload`]).
#[derive(Debug, Default)]
pub struct Gate {
    public: Public,
    source: Option<KeySource>,
    keys: RwLock<Option<Arc<KeySet>>>,
}

impl Gate {
    /// A gate from its parts (keys that cannot be reloaded).
    pub fn new(public: Public, keys: Option<KeySet>) -> Self {
        Self {
            public,
            source: None,
            keys: RwLock::new(keys.map(Arc::new)),
        }
    }

    /// The gate `[auth]` describes (reads the key file or checks the key directory).
    pub fn from_config(auth: &config::Auth) -> anyhow::Result<Self> {
        let public = match &auth.public {
            Some(p) => Public::from_prefixes(&p.subscribe, &p.publish)?,
            None => Public::default(),
        };
        let source = match (&auth.key, &auth.key_dir) {
            (Some(file), _) => Some(KeySource::File(file.clone())),
            (None, Some(dir)) if dir.starts_with("http://") || dir.starts_with("https://") => anyhow::bail!(
                "[auth] key_dir as a URL is not supported: point it at a local directory of {{kid}}.jwk files"
            ),
            (None, Some(dir)) => Some(KeySource::Dir(dir.into())),
            (None, None) => None,
        };
        let keys = source.as_ref().map(KeySource::load).transpose()?;
        Ok(Self {
            public,
            source,
            keys: RwLock::new(keys.map(Arc::new)),
        })
    }

    /// Where the keys come from, if they can be reloaded.
    pub fn key_source(&self) -> Option<&KeySource> {
        self.source.as_ref()
    }

    /// Read the keys again; on failure the old keys stay in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some(source) = &self.source else { return Ok(()) };
        let keys = source.load()?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        Ok(())
    }

    fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether tokens are in use (a key or key directory is configured).
    pub fn verifies_tokens(&self) -> bool {
        self.keys().is_some()
    }

    /// Verify an optional token and combine it with the public prefixes into what a
    /// session rooted at `root` may do.
    pub fn authorize(
        &self,
        root: &Path,
        token: Option<&str>,
    ) -> Result<(Permissions, Option<Claims>), moq_auth::Error> {
        let claims = match (token, self.keys()) {
            (Some(token), Some(keys)) => Some(keys.verify(token)?),
            (Some(_), None) => {
                return Err(moq_auth::Error::TokenRequired(
                    "a token was given but this relay has no [auth] key or key_dir to verify it".into(),
                ));
            }
            (None, _) => None,
        };
        let permissions = moq_auth::authorize(claims.as_ref(), root, &self.public)?;
        Ok((permissions, claims))
    }

    /// Decide a session: its raw target (`path?query`) and its client certificate.
    ///
    /// A client certificate chaining to `[server.tls] root` (verified in the TLS
    /// handshake) stands in for a token: full access within the dialled path, until the
    /// certificate's `notAfter`.
    pub fn decide(&self, target: &str, certificate: Option<ClientCertificate>) -> Result<Grant, Refusal> {
        let target =
            Target::parse(target).map_err(|detail| Refusal::request("bad_path", detail, 400, 0x3))?;
        if let Some(certificate) = certificate {
            return Ok(Grant {
                root: target.root,
                permissions: Permissions::all(),
                claims: None,
                token: None,
                client_certificate: true,
                peer: true,
                expires: certificate.not_after,
            });
        }
        let (permissions, claims) = self
            .authorize(&target.root, target.token.as_deref())
            .map_err(|e| Refusal::auth(&e))?;
        // An `exp` past what the clock can represent (up to 2^64-1) means "never".
        let expires = claims
            .as_ref()
            .and_then(|c| c.exp)
            .and_then(|exp| UNIX_EPOCH.checked_add(Duration::from_secs(exp)));
        Ok(Grant {
            root: target.root,
            permissions,
            token: claims.as_ref().and(target.token).map(|t| Token(t.into())),
            peer: claims.as_ref().is_some_and(|c| c.cluster),
            claims,
            client_certificate: false,
            expires,
        })
    }

    /// [`Gate::decide`] off the async workers when verifying may read key files.
    pub async fn decide_async(
        self: &Arc<Self>,
        target: String,
        certificate: Option<ClientCertificate>,
    ) -> Result<Grant, Refusal> {
        if !matches!(self.source, Some(KeySource::Dir(_))) {
            return self.decide(&target, certificate);
        }
        let gate = self.clone();
        tokio::task::spawn_blocking(move || gate.decide(&target, certificate))
            .await
            .unwrap_or_else(|err| Err(Refusal::request("internal", err.to_string(), 500, 0x1)))
    }

    /// Check a live session's token against the current keys: `Err` when the key that
    /// signed it is gone or no longer verifies it (or it now grants less).
    pub fn revalidate(&self, grant: &Grant) -> Result<(), Refusal> {
        let Some(token) = &grant.token else { return Ok(()) };
        let (permissions, _) = self
            .authorize(&grant.root, Some(token.expose()))
            .map_err(|e| Refusal::auth(&e))?;
        if permissions != grant.permissions {
            return Err(Refusal::unauthorized(
                "revoked",
                "the token now grants less than when the session began",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn targets() {
        let t = |raw| Target::parse(raw).map(|t| (t.root, t.token));
        assert_eq!(t("/anon/room?jwt=x").unwrap(), (p("anon/room"), Some("x".into())));
        assert_eq!(t("/anon?jwt=").unwrap(), (p("anon"), None));
        assert_eq!(t("/a%2Fb").unwrap(), (p("a/b"), None));
        assert_eq!(t("/x?a=1&jwt=t%2Bk").unwrap(), (p("x"), Some("t+k".into())));
        assert!(t("/a%zz").unwrap_err().contains("bad percent escape"));
        assert!(t("/a%2").unwrap_err().contains("bad percent escape"));
        assert!(t("/a%ff").unwrap_err().contains("not UTF-8"));
    }

    fn public(prefix: &str) -> Gate {
        Gate::new(Public::from_prefixes(&[prefix], &[prefix]).unwrap(), None)
    }

    #[test]
    fn anonymous_sessions_get_the_public_prefixes_only() {
        let gate = public("anon");
        let grant = gate.decide("/anon/room", None).unwrap();
        assert!(grant.is_anonymous());
        assert!(grant.permissions.can_subscribe(&p("clock")));
        assert_eq!(grant.expires, None);
        let refused = gate.decide("/private", None).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Auth);
        assert_eq!((refused.status, refused.code), (401, 0x2));
    }

    #[test]
    fn a_token_without_keys_is_refused_with_the_reason() {
        let refused = public("anon").decide("/anon?jwt=abc", None).unwrap_err();
        assert_eq!(refused.reason, "token_required");
        assert!(refused.detail.contains("no [auth] key"));
        assert!(!refused.detail.contains("abc"), "the token never appears");
    }

    #[test]
    fn a_bad_path_is_a_request_refusal() {
        let refused = public("").decide("/a%zz", None).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Request);
        assert_eq!(
            (refused.reason, refused.status, refused.code),
            ("bad_path", 400, 0x3)
        );
        assert!(refused.close_reason().starts_with("refused: "));
    }

    #[test]
    fn a_client_certificate_stands_in_for_a_token_until_it_expires() {
        let not_after = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let gate = Gate::default();
        let grant = gate
            .decide(
                "/cluster",
                Some(ClientCertificate {
                    not_after: Some(not_after),
                    ..ClientCertificate::default()
                }),
            )
            .unwrap();
        assert!(grant.client_certificate && !grant.is_anonymous());
        assert!(grant.permissions.can_publish(&p("anything")));
        assert_eq!(grant.expires, Some(not_after));
        assert_eq!(
            grant.remaining(not_after - Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            grant.remaining(not_after + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        // Without one, the same target is refused: nothing is public here.
        assert!(gate.decide("/cluster", None).is_err());
    }

    #[test]
    fn tokens_are_verified_and_expire() {
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        let gate = Gate::new(Public::default(), Some(KeySet::single(key.clone()).unwrap()));
        let mut claims = Claims::new("room");
        claims.get = vec![String::new()];
        claims.exp = Some(4_000_000_000);
        let token = key.sign(&claims).unwrap();
        let grant = gate.decide(&format!("/room?jwt={token}"), None).unwrap();
        assert!(grant.permissions.can_subscribe(&p("x")));
        assert!(!grant.permissions.can_publish(&p("x")));
        assert_eq!(
            grant.expires,
            Some(UNIX_EPOCH + Duration::from_secs(4_000_000_000))
        );
        let refused = gate.decide("/room?jwt=not.a.token", None).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Auth);
    }

    #[test]
    fn extreme_claims_never_panic() {
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        let gate = Gate::new(Public::default(), Some(KeySet::single(key.clone()).unwrap()));
        let mut claims = Claims::new("");
        claims.get = vec![String::new()];
        claims.exp = Some(u64::MAX);
        claims.iat = Some(u64::MAX);
        let grant = gate.decide(&format!("/?jwt={}", key.sign(&claims).unwrap()), None);
        // iat far in the future is refused; nothing panics either way.
        assert!(grant.is_err());
        claims.iat = Some(0);
        let grant = gate
            .decide(&format!("/?jwt={}", key.sign(&claims).unwrap()), None)
            .unwrap();
        assert_eq!(grant.expires, None, "an exp past the clock's range never expires");
        claims.nbf = Some(u64::MAX);
        assert!(
            gate.decide(&format!("/?jwt={}", key.sign(&claims).unwrap()), None)
                .is_err()
        );
    }
}
