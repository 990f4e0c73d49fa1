//! ACME (RFC 8555): a certificate that obtains and renews itself, served by the QUIC
//! listener and every TCP listener sharing its certificates (HTTPS, WSS).
//!
//! The protocol is [instant-acme]'s; this module is the lifecycle around it:
//!
//! - **Start** ([`Acme`] is made by [`crate::server::Server::bind`]): a valid certificate
//!   for every configured domain in the [cache](Config::cache) is served at once and
//!   nothing is ordered. Without one, handshakes fail (there is nothing to present) until
//!   the first order completes; the caller reports itself not ready meanwhile.
//! - **Run** ([`Acme::run`], driven by the caller): order when there is no certificate,
//!   renew at two thirds of its lifetime (earlier if the CA's renewal information says
//!   so), retry failures with a growing, jittered wait ([`schedule`]). A failure never
//!   takes the served certificate away: it is replaced only by a newer one.
//! - **Challenges**: TLS-ALPN-01 is answered by the shared certificate resolver to a
//!   ClientHello offering only `acme-tls/1` (so on the TCP listeners built with
//!   [`crate::server::Server::tcp_tls`]); HTTP-01 responses are looked up with
//!   [`Acme::http01`] by whatever serves `/.well-known/acme-challenge/` on port 80.
//! - **Swap**: a new certificate goes into the resolver; new handshakes use it, and
//!   established connections keep theirs, so no session is dropped.
//!
//! Each relay manages its own account and certificate; several relays serving one name
//! each hold their own (see the operator's guide for the CA rate limits that implies).
//!
//! [instant-acme]: https://docs.rs/instant-acme

mod cache;
mod https;
pub mod schedule;

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    path::PathBuf,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, pem::PemObject};
use tokio::sync::watch;

pub use cache::probe as probe_cache;

use crate::tls::{Cert, Certs};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = instant_acme::LetsEncrypt::Production.url();

/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = instant_acme::LetsEncrypt::Staging.url();

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ALPN_ACME_TLS: &[u8] = b"acme-tls/1";

/// The first wait after a failed attempt when the configuration sets none.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(120);

/// How long one HTTPS exchange with the CA may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the CA may take to validate the challenges, and then to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(120);

/// How often renewal information is asked for at most, whatever the CA's Retry-After.
const ARI_MIN_RECHECK: Duration = Duration::from_secs(60 * 60);

/// Renewal information support: not asked yet, answered, refused.
const ARI_UNKNOWN: u8 = 0;
const ARI_YES: u8 = 1;
const ARI_NO: u8 = 2;

/// How often renewal information is asked for at least.
const ARI_MAX_RECHECK: Duration = Duration::from_secs(24 * 60 * 60);

/// How the CA is to check that we control the domains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737): the CA connects to TCP port 443 offering ALPN
    /// `acme-tls/1` and expects a certificate proving the key authorization.
    #[default]
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 §8.3): the CA fetches
    /// `http://<domain>/.well-known/acme-challenge/<token>` on TCP port 80.
    Http01,
}

impl Challenge {
    /// The name ACME gives it: `tls-alpn-01` or `http-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Http01 => "http-01",
        }
    }

    fn acme_type(self) -> ChallengeType {
        match self {
            Self::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Self::Http01 => ChallengeType::Http01,
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// External account binding (RFC 8555 §7.3.4), which commercial CAs (ZeroSSL, Google
/// Trust Services, ...) require to tie the ACME account to an account with them.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalAccount {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The HMAC key the CA gave, base64url (padding optional). Never logged.
    pub hmac_key: String,
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccount")
            .field("kid", &self.kid)
            .field("hmac_key", &"(redacted)")
            .finish()
    }
}

impl ExternalAccount {
    /// The HMAC key's bytes.
    pub fn key(&self) -> Result<Vec<u8>, Error> {
        let trimmed = self.hmac_key.trim().trim_end_matches('=');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                Error::Config(
                    "the external account HMAC key is not base64url, as the CA gives it".to_string(),
                )
            })
    }
}

/// What to certify, with which CA, and where to keep the account and the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The DNS names to certify (one certificate covers them all). Wildcards are not
    /// supported: they need DNS-01.
    pub domains: Vec<String>,
    /// Contact URIs for the account (`mailto:ops@example.com`), for the CA's notices.
    pub contact: Vec<String>,
    /// The directory URL ([`LETS_ENCRYPT`] by default).
    pub directory: String,
    /// CA certificates (PEM files) to trust for the directory's own HTTPS, on top of the
    /// system roots: for a private CA, or pebble in tests.
    pub directory_roots: Vec<PathBuf>,
    /// The directory keeping the account key and the certificate (created mode 0700).
    pub cache: PathBuf,
    /// How the CA validates the domains.
    pub challenge: Challenge,
    /// External account binding, if the CA requires it.
    pub external_account: Option<ExternalAccount>,
    /// The first wait after a failure; it doubles with every failure in a row, up to
    /// an hour.
    pub retry: Duration,
}

impl Config {
    /// Certify `domains` with Let's Encrypt over TLS-ALPN-01, caching in `cache`.
    pub fn new(domains: Vec<String>, cache: PathBuf) -> Self {
        Self {
            domains,
            contact: Vec::new(),
            directory: LETS_ENCRYPT.to_string(),
            directory_roots: Vec::new(),
            cache,
            challenge: Challenge::default(),
            external_account: None,
            retry: DEFAULT_RETRY,
        }
    }
}

/// Why obtaining a certificate failed. Each says what happened in words for the log;
/// [`Error::reason`] gives a short label for metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache directory or a file in it could not be used.
    #[error("ACME cache {}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The CA could not be reached (refused, timed out, TLS failed).
    #[error("the CA is unreachable while {what}: {detail}")]
    Unreachable {
        /// What we were doing.
        what: &'static str,
        /// What failed.
        detail: String,
    },
    /// The CA says we are over one of its rate limits.
    #[error("the CA is rate limiting us ({what}): {detail}")]
    RateLimited {
        /// What we were doing.
        what: &'static str,
        /// The CA's explanation, usually with the time to retry after.
        detail: String,
    },
    /// The CA could not validate a domain with the challenge.
    #[error("{challenge} challenge for {domain} failed: {detail}")]
    Challenge {
        /// The domain.
        domain: String,
        /// The challenge.
        challenge: Challenge,
        /// What the CA reported (for example that it could not connect to port 443).
        detail: String,
    },
    /// The CA answered with an error (an unknown account, a refused name, ...).
    #[error("the CA refused while {what}: {detail}")]
    Refused {
        /// What we were doing.
        what: &'static str,
        /// The ACME problem type (`urn:ietf:params:acme:error:...`), if any.
        kind: Option<String>,
        /// The CA's explanation.
        detail: String,
    },
    /// Anything else in the exchange with the CA (a malformed answer, no issuance in time).
    #[error("ACME exchange failed while {what}: {detail}")]
    Protocol {
        /// What we were doing.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The issued (or cached) certificate cannot be served.
    #[error("unusable certificate: {0}")]
    Certificate(String),
    /// A setting cannot work (a malformed EAB key, a key that cannot be generated).
    #[error("ACME configuration: {0}")]
    Config(String),
}

impl Error {
    /// Every [`Error::reason`], for metrics that start each at zero.
    pub const REASONS: [&'static str; 8] = [
        "cache",
        "ca_unreachable",
        "rate_limited",
        "challenge_failed",
        "refused",
        "protocol",
        "bad_certificate",
        "config",
    ];

    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Cache { .. } => "cache",
            Self::Unreachable { .. } => "ca_unreachable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Challenge { .. } => "challenge_failed",
            Self::Refused { .. } => "refused",
            Self::Protocol { .. } => "protocol",
            Self::Certificate(_) => "bad_certificate",
            Self::Config(_) => "config",
        }
    }

    /// Classify an error of the ACME client; `what` says what we were doing.
    fn from_acme(what: &'static str, err: instant_acme::Error) -> Self {
        match err {
            instant_acme::Error::Api(problem) => {
                let kind = problem.r#type.clone();
                let detail = problem.detail.clone().unwrap_or_else(|| problem.to_string());
                if kind.as_deref().is_some_and(|k| k.ends_with(":rateLimited")) {
                    Self::RateLimited { what, detail }
                } else {
                    Self::Refused { what, kind, detail }
                }
            }
            instant_acme::Error::Other(err) => match err.downcast::<https::Unreachable>() {
                Ok(unreachable) => Self::Unreachable {
                    what,
                    detail: unreachable.to_string(),
                },
                Err(err) => Self::Protocol {
                    what,
                    detail: err.to_string(),
                },
            },
            instant_acme::Error::Timeout(_) => Self::Protocol {
                what,
                detail: "the CA did not finish in time".to_string(),
            },
            err => Self::Protocol {
                what,
                detail: err.to_string(),
            },
        }
    }

    /// Whether the CA no longer knows the cached account (it was deactivated, or the CA
    /// lost its state): a new account is the cure.
    fn account_gone(&self) -> bool {
        matches!(self, Self::Refused { kind: Some(kind), .. } if kind.ends_with(":accountDoesNotExist"))
    }
}

/// The certificate being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The leaf's SHA-256, lowercase hex.
    pub fingerprint: String,
    /// Its `notBefore`.
    pub not_before: SystemTime,
    /// Its `notAfter`.
    pub not_after: SystemTime,
    /// When it is to be renewed (before any renewal information moves it).
    pub renew_at: SystemTime,
}

/// What the certificate manager is doing, for readiness, metrics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The certificate served, if there is one.
    pub certificate: Option<Issued>,
    /// When the next order (or renewal) is planned.
    pub next_attempt: Option<SystemTime>,
    /// Why the last attempt failed, if it did (cleared by a success).
    pub last_error: Option<String>,
    /// [`Error::reason`] of the last failure, if the last attempt failed.
    pub last_reason: Option<&'static str>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Orders started since start-up (a restart with a valid cached certificate starts none).
    pub attempts: u64,
    /// Certificates obtained since start-up.
    pub issued: u64,
    /// Failed attempts since start-up, by [`Error::reason`].
    pub failures: BTreeMap<&'static str, u64>,
}

/// The certificate manager: a cheap handle (clones share it).
#[derive(Clone)]
pub struct Acme {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    certs: Arc<Certs>,
    cache: cache::Cache,
    http: https::Https,
    status: watch::Sender<Status>,
    /// HTTP-01: token → key authorization, while a validation is pending.
    tokens: RwLock<HashMap<String, String>>,
    /// The account, once loaded or created.
    account: tokio::sync::Mutex<Option<Account>>,
    /// Whether the CA answers renewal information: [`ARI_UNKNOWN`] until asked, then
    /// [`ARI_YES`] or [`ARI_NO`].
    ari: AtomicU8,
}

impl fmt::Debug for Acme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acme")
            .field("domains", &self.inner.config.domains)
            .field("directory", &self.inner.config.directory)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// Open the cache and serve the certificate found there, if it is valid for every
    /// domain. Makes no network request.
    pub(crate) fn new(config: Config, certs: Arc<Certs>) -> Result<Self, crate::Error> {
        if config.domains.is_empty() {
            return Err(Error::Config("no domains to certify".to_string()).into());
        }
        for domain in &config.domains {
            if !matches!(ServerName::try_from(domain.as_str()), Ok(ServerName::DnsName(_))) {
                return Err(Error::Config(format!("'{domain}' is not a DNS name")).into());
            }
        }
        if let Some(external) = &config.external_account {
            external.key()?;
        }
        let cache = cache::Cache::open(&config.cache)?;
        let http = https::Https::new(
            &config.directory_roots,
            certs.provider().clone(),
            EXCHANGE_TIMEOUT,
        )?;
        let acme = Self {
            inner: Arc::new(Inner {
                config,
                certs,
                cache,
                http,
                status: watch::Sender::new(Status::default()),
                tokens: RwLock::new(HashMap::new()),
                account: tokio::sync::Mutex::new(None),
                ari: AtomicU8::new(ARI_UNKNOWN),
            }),
        };
        let config = &acme.inner.config;
        let path = acme.certificate_path();
        match acme.load_cached() {
            Ok(Some(issued)) => tracing::info!(
                domains = ?config.domains,
                file = %path.display(),
                fingerprint = %issued.fingerprint,
                expires = %humantime(issued.not_after),
                renew_at = %humantime(issued.renew_at),
                "ACME: serving the cached certificate"
            ),
            Ok(None) => tracing::warn!(
                domains = ?config.domains,
                directory = %config.directory,
                challenge = %config.challenge,
                cache = %acme.inner.cache.dir().display(),
                "ACME: no valid certificate in the cache; ordering one. Until it arrives TLS handshakes \
                 fail and the relay reports itself not ready"
            ),
            Err(err) => tracing::warn!(
                %err,
                file = %path.display(),
                "ACME: the cached certificate is unusable; ordering a new one. Until it arrives TLS \
                 handshakes fail and the relay reports itself not ready"
            ),
        }
        Ok(acme)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// What the manager is doing now.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// Follow the status: the receiver wakes at every change (a certificate installed,
    /// an attempt failed, the next attempt planned).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// The HTTP-01 response for `token` (the body to serve at
    /// `/.well-known/acme-challenge/<token>`), while its validation is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.inner
            .tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// Where the certificate is cached.
    pub fn certificate_path(&self) -> PathBuf {
        let config = &self.inner.config;
        self.inner.cache.certificate(&config.directory, &config.domains)
    }

    /// Obtain and renew the certificate, forever. Cancel it by dropping the future (an
    /// order in flight is abandoned; the CA lets it expire).
    pub async fn run(self) {
        loop {
            let now = SystemTime::now();
            let mut due = self.status().next_attempt.unwrap_or(now);
            let mut wake = due;
            // Renewal information can bring the renewal forward; ask while waiting.
            if let Some(issued) = self.status().certificate
                && self.inner.ari.load(Ordering::Relaxed) != ARI_NO
                && due > now
            {
                match self.renewal_info(&issued).await {
                    Ok(Some((at, recheck))) => {
                        if at < due {
                            tracing::info!(renew_at = %humantime(at), "ACME: the CA's renewal information moves the renewal earlier");
                            due = at.max(now);
                            self.plan(due);
                        }
                        wake = due.min(now.checked_add(recheck).unwrap_or(due));
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::debug!(%err, "ACME: renewal information unavailable; keeping the planned time");
                        wake = due.min(now.checked_add(ARI_MIN_RECHECK).unwrap_or(due));
                    }
                }
            }
            sleep_until(wake).await;
            if SystemTime::now() < due {
                continue;
            }
            self.attempt().await;
        }
    }

    /// One order, with its outcome recorded and the next attempt planned.
    async fn attempt(&self) {
        self.inner
            .status
            .send_modify(|s| s.attempts = s.attempts.saturating_add(1));
        let renewing = self.status().certificate.is_some();
        tracing::info!(
            domains = ?self.inner.config.domains,
            directory = %self.inner.config.directory,
            challenge = %self.inner.config.challenge,
            renewing,
            "ACME: ordering a certificate"
        );
        let result = match self.order_once().await {
            Err(err) if err.account_gone() => {
                tracing::warn!(%err, "ACME: the CA no longer knows the cached account; creating a new one");
                self.forget_account().await;
                self.order_once().await
            }
            result => result,
        };
        match result {
            Ok(issued) => self.succeeded(&issued),
            Err(err) => self.failed(&err),
        }
    }

    /// Record an order that succeeded.
    fn succeeded(&self, issued: &Issued) {
        tracing::info!(
            domains = ?self.inner.config.domains,
            fingerprint = %issued.fingerprint,
            expires = %humantime(issued.not_after),
            renew_at = %humantime(issued.renew_at),
            "ACME: certificate obtained; new handshakes use it"
        );
        self.inner.status.send_modify(|s| {
            s.issued = s.issued.saturating_add(1);
            s.consecutive_failures = 0;
            s.last_error = None;
            s.last_reason = None;
            s.next_attempt = Some(issued.renew_at);
        });
    }

    /// Record an order that failed, say what it means for the clients and plan the retry.
    fn failed(&self, err: &Error) {
        let status = self.status();
        let failures = status.consecutive_failures.saturating_add(1);
        let rate_limited = matches!(err, Error::RateLimited { .. });
        let wait = schedule::retry_delay(
            self.inner.config.retry,
            failures,
            rate_limited,
            schedule::random(),
        );
        let next = SystemTime::now()
            .checked_add(wait)
            .unwrap_or_else(SystemTime::now);
        match &status.certificate {
            Some(issued) if issued.not_after <= SystemTime::now() => tracing::error!(
                %err,
                reason = err.reason(),
                failures,
                retry_in = ?wait,
                expired = %humantime(issued.not_after),
                "ACME: renewal failed and the served certificate has expired: clients refuse it"
            ),
            Some(issued) => tracing::warn!(
                %err,
                reason = err.reason(),
                failures,
                retry_in = ?wait,
                still_serving = %issued.fingerprint,
                expires = %humantime(issued.not_after),
                "ACME: renewal failed; still serving the current certificate"
            ),
            None => tracing::warn!(
                %err,
                reason = err.reason(),
                failures,
                retry_in = ?wait,
                "ACME: no certificate yet; TLS handshakes keep failing until an order succeeds"
            ),
        }
        self.inner.status.send_modify(|s| {
            s.consecutive_failures = failures;
            s.last_error = Some(err.to_string());
            s.last_reason = Some(err.reason());
            let count = s.failures.entry(err.reason()).or_default();
            *count = count.saturating_add(1);
            s.next_attempt = Some(next);
        });
    }

    fn plan(&self, at: SystemTime) {
        self.inner.status.send_modify(|s| s.next_attempt = Some(at));
    }

    /// The cached certificate, served if valid for every domain and not expired.
    fn load_cached(&self) -> Result<Option<Issued>, Error> {
        let path = self.certificate_path();
        let Some(bytes) = self.inner.cache.read(&path)? else {
            return Ok(None);
        };
        let (cert, not_before, not_after) = self.parse_bundle(&bytes)?;
        if not_after <= SystemTime::now() {
            return Err(Error::Certificate(format!(
                "it expired at {}",
                humantime(not_after)
            )));
        }
        Ok(Some(self.install(cert, not_before, not_after, false)))
    }

    /// Serve `cert`, plan its renewal, and publish it in the status.
    fn install(&self, cert: Cert, not_before: SystemTime, not_after: SystemTime, fresh: bool) -> Issued {
        let mut renew_at = schedule::renewal_time(not_before, not_after, schedule::random());
        if fresh {
            let earliest = SystemTime::now()
                .checked_add(schedule::MIN_RENEWAL_WAIT)
                .unwrap_or(renew_at);
            renew_at = renew_at.max(earliest);
        }
        let issued = Issued {
            fingerprint: cert.fingerprint().to_string(),
            not_before,
            not_after,
            renew_at,
        };
        self.inner.certs.set_managed(Arc::new(cert));
        self.inner.status.send_modify(|s| {
            s.certificate = Some(issued.clone());
            s.next_attempt = Some(renew_at);
        });
        issued
    }

    /// A PEM bundle (chain, then key) as a servable certificate with its validity,
    /// checked to cover every configured domain.
    fn parse_bundle(&self, bytes: &[u8]) -> Result<(Cert, SystemTime, SystemTime), Error> {
        let chain = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Error::Certificate(format!("PEM: {err}")))?;
        let key = PrivateKeyDer::from_pem_slice(bytes)
            .map_err(|err| Error::Certificate(format!("private key: {err}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| Error::Certificate("no certificate in the chain".to_string()))?;
        let (not_before, not_after) = validity(leaf)?;
        let cert = Cert::new(chain, key, self.inner.certs.provider())
            .map_err(|err| Error::Certificate(err.to_string()))?;
        for domain in &self.inner.config.domains {
            let name = ServerName::try_from(domain.as_str())
                .map_err(|err| Error::Config(format!("'{domain}': {err}")))?;
            if !cert.serves(&name) {
                return Err(Error::Certificate(format!("it does not cover {domain}")));
            }
        }
        Ok((cert, not_before, not_after))
    }

    /// The account: from memory, else from the cache, else newly created (and cached).
    async fn account(&self) -> Result<Account, Error> {
        let mut slot = self.inner.account.lock().await;
        if let Some(account) = &*slot {
            return Ok(account.clone());
        }
        let config = &self.inner.config;
        let path = self.inner.cache.account(&config.directory);
        let cached = match self.inner.cache.read(&path)? {
            Some(bytes) => match serde_json::from_slice::<AccountCredentials>(&bytes) {
                Ok(credentials) => Some(credentials),
                Err(err) => {
                    tracing::warn!(file = %path.display(), %err, "ACME: the cached account is unreadable; creating a new one");
                    None
                }
            },
            None => None,
        };
        let builder = Account::builder_with_http(Box::new(self.inner.http.clone()));
        let account = match cached {
            Some(credentials) => builder
                .from_credentials(credentials)
                .await
                .map_err(|err| Error::from_acme("loading the account", err))?,
            None => {
                let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
                let external = match &config.external_account {
                    Some(external) => Some(ExternalAccountKey::new(external.kid.clone(), &external.key()?)),
                    None => None,
                };
                let (account, credentials) = builder
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory.clone(),
                        external.as_ref(),
                    )
                    .await
                    .map_err(|err| Error::from_acme("creating the account", err))?;
                let json = serde_json::to_vec(&credentials).map_err(|err| Error::Protocol {
                    what: "saving the account",
                    detail: err.to_string(),
                })?;
                self.inner.cache.write(&path, &json)?;
                tracing::info!(account = %account.id(), directory = %config.directory, "ACME: account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    async fn forget_account(&self) {
        *self.inner.account.lock().await = None;
        let path = self.inner.cache.account(&self.inner.config.directory);
        if let Err(err) = self.inner.cache.remove(&path) {
            tracing::warn!(%err, "ACME: cannot remove the stale account file");
        }
    }

    /// The CA's suggested renewal time for `issued` and when to ask again, or `None` if
    /// the CA does not offer renewal information (then it is not asked again).
    async fn renewal_info(&self, issued: &Issued) -> Result<Option<(SystemTime, Duration)>, Error> {
        let Some(cert) = self.inner.certs.managed() else {
            return Ok(None);
        };
        if cert.fingerprint() != issued.fingerprint {
            return Ok(None);
        }
        let Some(leaf) = cert.chain().first() else {
            return Ok(None);
        };
        let Ok(id) = CertificateIdentifier::try_from(leaf) else {
            // No authority key identifier: renewal information cannot name it.
            return Ok(None);
        };
        // Asking needs the directory, which comes with the account; never create an
        // account just to ask (the next order will).
        let known = self.inner.account.lock().await.is_some()
            || self
                .inner
                .cache
                .read(&self.inner.cache.account(&self.inner.config.directory))?
                .is_some();
        if !known {
            return Err(Error::Protocol {
                what: "asking for renewal information",
                detail: "no account yet".to_string(),
            });
        }
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => {
                self.inner.ari.store(ARI_YES, Ordering::Relaxed);
                let window = info.suggested_window;
                let at = schedule::window_time(window.start.into(), window.end.into(), schedule::random());
                Ok(Some((at, retry_after.clamp(ARI_MIN_RECHECK, ARI_MAX_RECHECK))))
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.inner.ari.store(ARI_NO, Ordering::Relaxed);
                Ok(None)
            }
            Err(err) => Err(Error::from_acme("asking for renewal information", err)),
        }
    }

    /// One order from start to certificate, served and cached on success.
    async fn order_once(&self) -> Result<Issued, Error> {
        let account = self.account().await?;
        let config = &self.inner.config;
        let mut order = self.place_order(&account).await?;

        let mut responses = Responses {
            inner: &self.inner,
            domains: Vec::new(),
            tokens: Vec::new(),
        };
        self.answer_challenges(&mut order, &mut responses).await?;

        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(VALIDATION_TIMEOUT);
        match order.poll_ready(&retry).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => {
                return Err(why_invalid(&mut order, config.challenge).await);
            }
            Err(err) => return Err(Error::from_acme("waiting for the CA to validate", err)),
        }
        drop(responses);

        let bundle = finalize(&mut order, &config.domains, &retry).await?;
        let (cert, not_before, not_after) = self.parse_bundle(bundle.as_bytes())?;
        let issued = self.install(cert, not_before, not_after, true);
        // Serving it comes first; a cache that cannot be written only costs a new order
        // at the next start.
        if let Err(err) = self
            .inner
            .cache
            .write(&self.certificate_path(), bundle.as_bytes())
        {
            tracing::warn!(%err, "ACME: cannot cache the new certificate; a restart will order another");
        }
        Ok(issued)
    }

    /// Place the order for the configured domains. A renewal names the certificate it
    /// replaces when the CA speaks ARI (RFC 9773 §5): Let's Encrypt then exempts it from
    /// its rate limits.
    async fn place_order(&self, account: &Account) -> Result<Order, Error> {
        let config = &self.inner.config;
        let identifiers: Vec<Identifier> = config.domains.iter().cloned().map(Identifier::Dns).collect();
        let replaces = match self.inner.ari.load(Ordering::Relaxed) {
            ARI_YES => self
                .inner
                .certs
                .managed()
                .and_then(|cert| cert.chain().first().cloned())
                .and_then(|leaf| {
                    CertificateIdentifier::try_from(&leaf)
                        .ok()
                        .map(|id| id.into_owned())
                }),
            _ => None,
        };
        let order = match replaces {
            Some(replaces) => match account
                .new_order(&NewOrder::new(&identifiers).replaces(replaces))
                .await
            {
                Ok(order) => Ok(order),
                Err(err) => {
                    // Already replaced, or not a certificate the CA knows: order afresh.
                    tracing::debug!(%err, "ACME: the order naming the replaced certificate failed; ordering without");
                    account.new_order(&NewOrder::new(&identifiers)).await
                }
            },
            None => account.new_order(&NewOrder::new(&identifiers)).await,
        };
        order.map_err(|err| Error::from_acme("placing the order", err))
    }

    /// Answer the configured challenge of every pending authorization of `order`: install
    /// the response (kept in `responses` until the order ends), then tell the CA it is
    /// ready.
    async fn answer_challenges(&self, order: &mut Order, responses: &mut Responses<'_>) -> Result<(), Error> {
        let challenge = self.inner.config.challenge;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|err| Error::from_acme("reading an authorization", err))?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(Error::Challenge {
                        domain,
                        challenge,
                        detail: format!("the authorization is {status:?}"),
                    });
                }
            }
            let Some(mut handle) = authorization.challenge(challenge.acme_type()) else {
                return Err(Error::Challenge {
                    domain,
                    challenge,
                    detail: "the CA does not offer this challenge".to_string(),
                });
            };
            let key_authorization = handle.key_authorization();
            match challenge {
                Challenge::TlsAlpn01 => {
                    let key = challenge_key(&domain, key_authorization.digest().as_ref(), &self.inner.certs)?;
                    self.inner.certs.set_challenge(&domain, key);
                    responses.domains.push(domain.clone());
                }
                Challenge::Http01 => {
                    self.inner
                        .tokens
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(handle.token.clone(), key_authorization.as_str().to_string());
                    responses.tokens.push(handle.token.clone());
                }
            }
            handle
                .set_ready()
                .await
                .map_err(|err| Error::from_acme("accepting the challenge", err))?;
        }
        Ok(())
    }
}

/// Finalize a ready order with a new P-256 key for `domains` and download the
/// certificate. Returns the bundle to serve and cache: the chain, then the key (PEM).
async fn finalize(order: &mut Order, domains: &[String], retry: &RetryPolicy) -> Result<String, Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|err| Error::Config(format!("generating a key: {err}")))?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())
        .map_err(|err| Error::Config(format!("the domains: {err}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|err| Error::Config(format!("the signing request: {err}")))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|err| Error::from_acme("finalizing the order", err))?;
    let chain = order
        .poll_certificate(retry)
        .await
        .map_err(|err| Error::from_acme("downloading the certificate", err))?;
    let mut bundle = chain.trim_end().to_string();
    bundle.push('\n');
    bundle.push_str(&key.serialize_pem());
    Ok(bundle)
}

/// Challenge responses installed for one order, removed when it ends however it ends.
struct Responses<'a> {
    inner: &'a Inner,
    domains: Vec<String>,
    tokens: Vec<String>,
}

impl Drop for Responses<'_> {
    fn drop(&mut self) {
        for domain in &self.domains {
            self.inner.certs.clear_challenge(domain);
        }
        let mut tokens = self.inner.tokens.write().unwrap_or_else(PoisonError::into_inner);
        for token in &self.tokens {
            tokens.remove(token);
        }
    }
}

/// Why an order did not become ready: the first challenge error the CA reports.
async fn why_invalid(order: &mut Order, challenge: Challenge) -> Error {
    let order_error = order.state().error.clone();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let domain = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if let Some(problem) = state
            .challenges
            .iter()
            .filter(|c| c.r#type == challenge.acme_type())
            .find_map(|c| c.error.as_ref())
        {
            return Error::Challenge {
                domain,
                challenge,
                detail: problem.detail.clone().unwrap_or_else(|| problem.to_string()),
            };
        }
    }
    match order_error {
        Some(problem) => Error::Challenge {
            domain: "the order".to_string(),
            challenge,
            detail: problem.detail.clone().unwrap_or_else(|| problem.to_string()),
        },
        None => Error::Challenge {
            domain: "the order".to_string(),
            challenge,
            detail: "the CA marked the order invalid without saying why".to_string(),
        },
    }
}

/// The TLS-ALPN-01 certificate for `domain` (RFC 8737 §3): self-signed, the domain as
/// its only name, and the critical acmeIdentifier extension holding the SHA-256 of the
/// key authorization.
fn challenge_key(domain: &str, digest: &[u8], certs: &Certs) -> Result<Arc<CertifiedKey>, Error> {
    if digest.len() != 32 {
        return Err(Error::Config(
            "the key authorization digest is not SHA-256".to_string(),
        ));
    }
    let fail = |err: rcgen::Error| Error::Config(format!("the TLS-ALPN-01 certificate for {domain}: {err}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let signer = certs
        .provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .map_err(|err| Error::Config(format!("the TLS-ALPN-01 key: {err}")))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

/// A certificate's `notBefore` and `notAfter`.
fn validity(der: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|err| Error::Certificate(format!("cannot parse the leaf: {err}")))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let validity = cert.validity();
    Ok((time(validity.not_before), time(validity.not_after)))
}

/// Sleep until the wall-clock time `at` (in steps of at most an hour, so a suspended
/// machine or a stepped clock is noticed).
async fn sleep_until(at: SystemTime) {
    loop {
        let Ok(left) = at.duration_since(SystemTime::now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_secs(3600))).await;
    }
}

/// A time for logs, RFC 3339 in UTC (to the second).
fn humantime(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs}s after the epoch"),
    }
}

impl From<Error> for crate::Error {
    fn from(err: Error) -> Self {
        Self::Acme(err)
    }
}

#[cfg(test)]
mod tests;
