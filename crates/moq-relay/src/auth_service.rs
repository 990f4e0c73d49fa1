//! The external auth service (`[auth] url`): the moq-dev relay's auth-server contract
//! (see [`moq_auth::service`]), as a second source of decisions at the gate's point.
//!
//! Each session's `connect` is one JSON POST carrying its facts; a 2xx grant admits it
//! (publish and subscribe patterns, root, expiry, revalidation interval), 401/403
//! refuses it, and anything else, a timeout included, refuses it too: it fails closed.
//! A live session holds a [`Lease`]: before the grant expires it POSTs `revalidate` on
//! the grant's cadence (or when an operator asks, `POST /sessions/revalidate`), applies
//! a changed grant to the running session, and ends the session when the server
//! refuses, answers a grant the relay cannot honour, or the grant expires (a failed
//! re-check is retried with backoff until then: an outage is no reason to cut viewers
//! off early). The session's end is reported with an `end` POST.
//!
//! Two things keep a slow auth server from stalling admission: answers to `connect`
//! (grants and refusals, never outages) are reused for a short while for the same facts,
//! and at most `[auth] concurrency` requests are in flight; a session arriving when all
//! are taken is refused at once (`busy`) rather than queued. Every request is counted by
//! event and outcome in `moq_relay_auth_service_requests_total`.
//!
//! Only `http://` on a loopback address is spoken (as the reference relay allows it):
//! the server decides who may publish, so a remote one needs TLS, which is not built yet.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use moq_auth::service::{self as contract, Event, Grant, GrantError, Request};
use moq_core::session::Permissions;
use moq_proto::Path;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{net::TcpStream, sync::Notify, sync::Semaphore};

use crate::gate::{Refusal, RefusalKind};

/// How long the auth server has to answer, unless `[auth] timeout` says otherwise (the
/// reference relay's bound).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a `connect` answer is reused for the same facts, unless `[auth] cache` says.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(2);

/// Requests in flight at once, unless `[auth] concurrency` says.
pub const DEFAULT_CONCURRENCY: u32 = 64;

/// The most answers kept for reuse; past it, expired ones are dropped, then the oldest.
const MAX_CACHED: usize = 4096;

/// The largest answer read: a grant is a few hundred bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// The longest wait between failed re-checks.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Outcomes every `connect` counter starts with at zero, so the first burst shows in `rate()`.
const CONNECT_OUTCOMES: [&str; 9] = [
    "granted",
    "refused",
    "invalid",
    "bad_response",
    "error_status",
    "timeout",
    "unreachable",
    "busy",
    "cached",
];

/// Where the auth server listens: an `http://` URL on a loopback host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// `Host:` header value.
    authority: String,
    /// Request target: path and query.
    target: String,
}

impl Endpoint {
    /// Parse and check `[auth] url`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = url::Url::parse(raw).map_err(|err| format!("not a URL ({err})"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "https:// auth servers are not supported yet: run the auth server (or a \
                            TLS-terminating proxy to it) on a loopback http:// address"
                        .to_string(),
                );
            }
            other => {
                return Err(format!(
                    "scheme '{other}' is not supported: use http:// on a loopback address"
                ));
            }
        }
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        if !loopback {
            return Err(
                "plain http:// is accepted only on a loopback address (127.0.0.1, [::1], \
                        localhost): the auth server decides who may publish"
                    .to_string(),
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not supported".to_string());
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Self {
            host,
            port,
            authority,
            target,
        })
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, self.port)).await,
            Err(_) => {
                let mut last = None;
                for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => return Ok(stream),
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.unwrap_or_else(|| std::io::Error::other("the host resolved to nothing")))
            }
        }
    }
}

/// How the service is set up (from `[auth]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[auth] url`.
    pub url: String,
    /// This relay's name in every request (`[cluster] node`, else the host name).
    pub node: String,
    /// `[auth] timeout`.
    pub timeout: Duration,
    /// `[auth] cache`.
    pub cache: Duration,
    /// `[auth] concurrency`.
    pub concurrency: u32,
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    event: &'static str,
    outcome: &'static str,
}

/// What a session is, as the auth server is told.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// How it arrived.
    pub transport: Option<contract::Transport>,
    /// The dialled `path?query`.
    pub target: String,
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Our address it arrived on.
    pub local: Option<SocketAddr>,
    /// SNI, or the HTTP host.
    pub server_name: Option<String>,
    /// The negotiated moq-lite ALPN (or WebSocket subprotocol).
    pub alpn: Option<String>,
    /// The direction declared in SETUP.
    pub role: Option<contract::Role>,
    /// The verified client certificate.
    pub certificate: Option<moq_native::server::ClientCertificate>,
}

/// One answer from the server, classified.
#[derive(Debug, Clone)]
enum Reply {
    Granted(Grant),
    Refused(String),
    Invalid(GrantError),
    /// No usable answer: the outcome label and what happened.
    Outage(&'static str, String),
}

impl Reply {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Granted(_) => "granted",
            Self::Refused(_) => "refused",
            Self::Invalid(_) => "invalid",
            Self::Outage(outcome, _) => outcome,
        }
    }
}

/// A reusable answer to a `connect`.
#[derive(Debug, Clone)]
enum Answer {
    Granted(Grant),
    Refused(String),
}

/// The client of one auth server, shared by every session.
#[derive(Debug)]
pub struct Service {
    endpoint: Endpoint,
    node: String,
    timeout: Duration,
    cache_for: Duration,
    permits: Arc<Semaphore>,
    cache: Mutex<HashMap<String, (Instant, Answer)>>,
    requests: Family<OutcomeLabels, Counter>,
    seconds: Histogram,
}

impl Service {
    /// A client of the server `settings.url`, its metrics registered in `metrics`.
    pub fn new(settings: &Settings, metrics: &mut Registry) -> Result<Arc<Self>, String> {
        let endpoint = Endpoint::parse(&settings.url)?;
        let requests = Family::<OutcomeLabels, Counter>::default();
        for outcome in CONNECT_OUTCOMES {
            let _ = requests.get_or_create(&OutcomeLabels {
                event: "connect",
                outcome,
            });
        }
        metrics.register(
            "moq_relay_auth_service_requests",
            "Requests to the auth server ([auth] url), by event and outcome",
            requests.clone(),
        );
        let seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        metrics.register(
            "moq_relay_auth_service_request_seconds",
            "Time the auth server took to answer",
            seconds.clone(),
        );
        Ok(Arc::new(Self {
            endpoint,
            node: settings.node.clone(),
            timeout: settings.timeout,
            cache_for: settings.cache,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1) as usize)),
            cache: Mutex::default(),
            requests,
            seconds,
        }))
    }

    fn count(&self, event: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels { event, outcome })
            .inc();
    }

    /// The `connect` request for a session with these facts.
    pub fn request(&self, facts: &Facts) -> Request {
        let (path, query) = match facts.target.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (facts.target.as_str(), None),
        };
        // A URL-less transport dials ""; the contract says what was dialled, with its `/`.
        let path = match path.starts_with('/') {
            true => path.to_string(),
            false => format!("/{path}"),
        };
        let mut request = Request::connect(
            self.node.clone(),
            facts.transport.unwrap_or(contract::Transport::Quic),
            path,
        );
        request.query = query.filter(|q| !q.is_empty());
        request.remote = facts.remote;
        request.local = facts.local;
        request.server_name = facts.server_name.clone();
        request.alpn = facts.alpn.clone();
        request.role = facts.role;
        request.tls = facts.certificate.as_ref().map(|cert| contract::Peer {
            name: cert.name.clone().unwrap_or_else(|| cert.fingerprint.clone()),
            fingerprint: cert.fingerprint.clone(),
            expires: cert
                .not_after
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok()),
            issuer: cert.issuer.clone().unwrap_or_default(),
        });
        request
    }

    /// Admit a session: ask the server (or reuse a recent answer for the same facts) and
    /// hand back the lease the session holds, or why it is refused.
    pub async fn connect(self: &Arc<Self>, request: Request, dialled: Path) -> Result<Lease, Refusal> {
        let key = cache_key(&request);
        let reply = match self.cached(&key) {
            Some(answer) => {
                self.count("connect", "cached");
                match answer {
                    Answer::Granted(grant) => Reply::Granted(grant),
                    Answer::Refused(detail) => Reply::Refused(detail),
                }
            }
            None => {
                let reply = self.ask(&request).await;
                self.count("connect", reply.outcome());
                match &reply {
                    Reply::Granted(grant) => self.remember(key, Answer::Granted(grant.clone())),
                    Reply::Refused(detail) => self.remember(key, Answer::Refused(detail.clone())),
                    _ => {}
                }
                reply
            }
        };
        let grant = match reply {
            Reply::Granted(grant) => grant,
            Reply::Refused(detail) => {
                return Err(Refusal::unauthorized(
                    "service_refused",
                    format!("the auth server refused the session: {detail}"),
                ));
            }
            Reply::Invalid(err) => return Err(unavailable("service_invalid", err.to_string())),
            Reply::Outage(outcome, detail) => return Err(unavailable(outage_reason(outcome), detail)),
        };
        let root = grant
            .root(&dialled)
            .map_err(|err| unavailable("service_invalid", err.to_string()))?;
        Ok(Lease::new(self.clone(), request, grant, dialled, root))
    }

    /// A fresh enough answer for these facts, if any.
    fn cached(&self, key: &str) -> Option<Answer> {
        if self.cache_for.is_zero() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, answer) = cache.get(key)?;
        if at.elapsed() >= self.cache_for {
            return None;
        }
        // A reused grant must still be one the relay can honour (it may have expired since).
        match answer {
            Answer::Granted(grant) if grant.check(SystemTime::now()).is_err() => None,
            answer => Some(answer.clone()),
        }
    }

    fn remember(&self, key: String, answer: Answer) {
        if self.cache_for.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.cache_for;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        if cache.len() >= MAX_CACHED
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(key, (Instant::now(), answer));
    }

    /// POST a `connect` or `revalidate` and classify the answer, within the timeout and a
    /// concurrency permit.
    async fn ask(&self, request: &Request) -> Reply {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return Reply::Outage(
                "busy",
                "too many requests to the auth server in flight ([auth] concurrency)".to_string(),
            );
        };
        let started = Instant::now();
        let answer = tokio::time::timeout(self.timeout, self.post(request)).await;
        self.seconds.observe(started.elapsed().as_secs_f64());
        let (status, body) = match answer {
            Err(_) => {
                return Reply::Outage(
                    "timeout",
                    format!("the auth server did not answer within {:?}", self.timeout),
                );
            }
            Ok(Err(outage)) => return outage,
            Ok(Ok(answer)) => answer,
        };
        match status {
            401 | 403 => Reply::Refused(printable(&body)),
            200..=299 => match serde_json::from_slice::<Grant>(&body) {
                Ok(grant) => match grant.check(SystemTime::now()) {
                    Ok(()) => Reply::Granted(grant),
                    // A grant of nothing is a refusal, as the reference relay reads it.
                    Err(GrantError::Nothing) => Reply::Refused("the grant allows nothing".to_string()),
                    Err(err) => Reply::Invalid(err),
                },
                Err(err) => Reply::Outage(
                    "bad_response",
                    format!("the auth server's answer is not a grant: {err}"),
                ),
            },
            status => Reply::Outage("error_status", format!("the auth server answered {status}")),
        }
    }

    /// One POST: the status and the body (at most [`MAX_RESPONSE`] bytes).
    async fn post(&self, request: &Request) -> Result<(u16, Bytes), Reply> {
        let body = serde_json::to_vec(request)
            .map_err(|err| Reply::Outage("error_status", format!("cannot encode the request: {err}")))?;
        let stream =
            self.endpoint.connect().await.map_err(|err| {
                Reply::Outage("unreachable", format!("cannot reach the auth server: {err}"))
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| {
                Reply::Outage(
                    "unreachable",
                    format!("HTTP handshake with the auth server: {err}"),
                )
            })?;
        let http_request = hyper::Request::post(self.endpoint.target.as_str())
            .header(hyper::header::HOST, self.endpoint.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("moq-relay/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| Reply::Outage("error_status", format!("cannot build the request: {err}")))?;
        let exchange = async move {
            let response = sender.send_request(http_request).await.map_err(|err| {
                Reply::Outage(
                    "unreachable",
                    format!("the auth server dropped the request: {err}"),
                )
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|err| {
                    Reply::Outage("bad_response", format!("reading the auth server's answer: {err}"))
                })?
                .to_bytes();
            Ok((status, body))
        };
        // The connection is driven here, not spawned: it ends with the exchange.
        tokio::select! {
            answer = exchange => answer,
            Err(err) = connection => Err(Reply::Outage("unreachable", format!("the auth server's connection failed: {err}"))),
        }
    }

    /// POST the session's `end`; its outcome is only counted and logged.
    async fn report_end(&self, request: Request) {
        let outcome = match self.permits.clone().try_acquire_owned() {
            Err(_) => "busy",
            Ok(_permit) => match tokio::time::timeout(self.timeout, self.post(&request)).await {
                Err(_) => "timeout",
                Ok(Err(reply)) => reply.outcome(),
                Ok(Ok((200..=299, _))) => "ok",
                Ok(Ok(_)) => "error_status",
            },
        };
        self.count("end", outcome);
        if outcome != "ok" {
            tracing::debug!(id = %request.id, outcome, "could not report the session's end to the auth server");
        }
    }
}

/// A refusal for an auth server that gave no usable answer: the session fails closed.
fn unavailable(reason: &'static str, detail: String) -> Refusal {
    Refusal {
        reason,
        detail: format!("the auth server gave no usable answer: {detail}"),
        status: 502,
        code: 0x2,
        kind: RefusalKind::Auth,
    }
}

fn outage_reason(outcome: &str) -> &'static str {
    match outcome {
        "timeout" => "service_timeout",
        "busy" => "service_busy",
        "unreachable" => "service_unreachable",
        "bad_response" => "service_bad_response",
        _ => "service_error",
    }
}

/// The facts an answer depends on: the request without its id, and the remote address
/// without its port (a reconnecting client gets a new port, not a new decision).
fn cache_key(request: &Request) -> String {
    let mut facts = request.clone();
    facts.id = String::new();
    if let Some(remote) = facts.remote.as_mut() {
        remote.set_port(0);
    }
    serde_json::to_string(&facts).unwrap_or_default()
}

/// An answer's text for a log line and a close reason: printable, at most 200 bytes.
fn printable(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut text = text.trim().to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    match text.is_empty() {
        true => "no reason given".to_string(),
        false => text,
    }
}

/// What happened to a live session's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The server answered a different grant: the session now has these permissions.
    Permissions(Permissions),
    /// The session must end: a short reason (`expired`, `refused`, `invalid`,
    /// `root_changed`, `peer_changed`) and what happened.
    End(&'static str, String),
}

/// A session's hold on its grant: re-checks it, and reports the session's end.
#[derive(Debug)]
pub struct Lease {
    service: Arc<Service>,
    request: Request,
    grant: Grant,
    dialled: Path,
    root: Path,
    started: Instant,
    nudge: Arc<Notify>,
    expires: Option<tokio::time::Instant>,
    next: Option<tokio::time::Instant>,
    failures: u32,
}

impl Lease {
    fn new(service: Arc<Service>, request: Request, grant: Grant, dialled: Path, root: Path) -> Self {
        let expires = deadline(grant.expires_at());
        let next = grant
            .cadence()
            .and_then(|cadence| tokio::time::Instant::now().checked_add(cadence));
        Self {
            service,
            request,
            grant,
            dialled,
            root,
            started: Instant::now(),
            nudge: Arc::default(),
            expires,
            next,
            failures: 0,
        }
    }

    /// The id every event of this session carries.
    pub fn id(&self) -> &str {
        &self.request.id
    }

    /// The grant in force.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The session root (the grant's alias, else the dialled path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Notified to re-check now (`POST /sessions/revalidate`); a burst is one re-check.
    pub fn nudge(&self) -> Arc<Notify> {
        self.nudge.clone()
    }

    /// Wait for the grant to change or end: re-checks on the grant's cadence and when
    /// nudged, and ends at the grant's expiry, even with a re-check in flight.
    pub async fn changed(&mut self) -> Change {
        loop {
            tokio::select! {
                () = sleep_until(self.expires) => return expired(),
                () = sleep_until(self.next) => {}
                () = self.nudge.notified() => {}
            }
            self.next = None;
            let mut request = self.request.clone();
            request.event = Event::Revalidate;
            let reply = tokio::select! {
                reply = self.service.ask(&request) => reply,
                () = sleep_until(self.expires) => return expired(),
            };
            self.service.count("revalidate", reply.outcome());
            match reply {
                Reply::Granted(grant) => {
                    self.failures = 0;
                    if let Some(change) = self.apply(grant) {
                        return change;
                    }
                }
                Reply::Refused(detail) => return Change::End("refused", detail),
                Reply::Invalid(err) => return Change::End("invalid", err.to_string()),
                Reply::Outage(_, detail) => {
                    // Evidence of nothing: the grant stands until it expires.
                    self.failures = self.failures.saturating_add(1);
                    let delay = backoff(self.failures, self.grant.cadence());
                    tracing::warn!(id = %self.request.id, %detail, ?delay, "auth revalidation failed; retrying");
                    self.next = tokio::time::Instant::now().checked_add(delay);
                }
            }
        }
    }

    /// Take a re-checked grant: `Some` when the session must learn of it.
    fn apply(&mut self, grant: Grant) -> Option<Change> {
        match grant.root(&self.dialled) {
            Ok(root) if root == self.root => {}
            Ok(_) => {
                return Some(Change::End(
                    "root_changed",
                    "the grant now names another root".into(),
                ));
            }
            Err(err) => return Some(Change::End("invalid", err.to_string())),
        }
        if grant.peer != self.grant.peer {
            return Some(Change::End(
                "peer_changed",
                "the grant now says otherwise about the session being a cluster peer".into(),
            ));
        }
        self.expires = deadline(grant.expires_at());
        self.next = grant
            .cadence()
            .and_then(|cadence| tokio::time::Instant::now().checked_add(cadence));
        let before = self.grant.permissions();
        let after = grant.permissions();
        self.grant = grant;
        (before != after).then_some(Change::Permissions(after))
    }

    /// Report the session's end (`reason`, what it moved); the returned future POSTs it.
    pub fn end(self, reason: String, bytes: contract::Bytes) -> impl Future<Output = ()> + Send + 'static {
        let mut request = self.request;
        request.event = Event::End {
            reason,
            duration: self.started.elapsed().as_secs_f64(),
            bytes,
        };
        let service = self.service;
        async move { service.report_end(request).await }
    }
}

fn expired() -> Change {
    Change::End("expired", "the grant expired".to_string())
}

/// A wall-clock expiry on tokio's clock: `None` for never (or past the clock's range).
fn deadline(at: Option<SystemTime>) -> Option<tokio::time::Instant> {
    let left = at?.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::Instant::now().checked_add(left)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Doubling from one second, at most the cadence and [`BACKOFF_MAX`].
fn backoff(failures: u32, cadence: Option<Duration>) -> Duration {
    let doubled = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    doubled.min(cadence.unwrap_or(BACKOFF_MAX)).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{Router, extract::State, response::IntoResponse, routing::post};

    use super::*;

    /// What the fake server answers: status, body, and how long it waits first.
    type Script = dyn Fn(&Request) -> (u16, String, Duration) + Send + Sync;

    /// The fake server's state: its log and its script.
    type FakeState = (Arc<Mutex<Vec<Request>>>, Arc<Script>);

    /// An auth server on loopback that logs every request and answers from a script.
    struct Fake {
        url: String,
        log: Arc<Mutex<Vec<Request>>>,
        _task: tokio::task::JoinHandle<()>,
    }

    impl Fake {
        async fn start(script: impl Fn(&Request) -> (u16, String, Duration) + Send + Sync + 'static) -> Self {
            let log: Arc<Mutex<Vec<Request>>> = Arc::default();
            let state: FakeState = (log.clone(), Arc::new(script));
            let app = Router::new()
                .route(
                    "/auth",
                    post(
                        |State((log, script)): State<FakeState>, body: axum::body::Bytes| async move {
                            let request: Request = serde_json::from_slice(&body).unwrap();
                            log.lock().unwrap().push(request.clone());
                            let (status, body, delay) = script(&request);
                            tokio::time::sleep(delay).await;
                            (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response()
                        },
                    ),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/auth", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self {
                url,
                log,
                _task: task,
            }
        }

        fn events(&self) -> Vec<Request> {
            self.log.lock().unwrap().clone()
        }

        fn service(&self, cache: Duration, concurrency: u32, timeout: Duration) -> (Arc<Service>, Registry) {
            let mut registry = Registry::default();
            let service = Service::new(
                &Settings {
                    url: self.url.clone(),
                    node: "relay-1".into(),
                    timeout,
                    cache,
                    concurrency,
                },
                &mut registry,
            )
            .unwrap();
            (service, registry)
        }
    }

    fn answer(status: u16, body: &str) -> (u16, String, Duration) {
        (status, body.to_string(), Duration::ZERO)
    }

    fn in_secs(secs: u64) -> i64 {
        (SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + secs) as i64
    }

    fn facts(target: &str) -> Facts {
        Facts {
            transport: Some(contract::Transport::Quic),
            target: target.to_string(),
            remote: Some("127.0.0.1:5000".parse().unwrap()),
            alpn: Some("moq-lite-05".into()),
            ..Facts::default()
        }
    }

    async fn admit(service: &Arc<Service>, target: &str) -> Result<Lease, Refusal> {
        let request = service.request(&facts(target));
        let dialled = crate::gate::Target::parse(target).unwrap().root;
        service.connect(request, dialled).await
    }

    fn counted(registry: &Registry, event: &str, outcome: &str) -> u64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let prefix =
            format!("moq_relay_auth_service_requests_total{{event=\"{event}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    const FAST: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_grant_admits_with_its_patterns_and_root() {
        let fake = Fake::start(|_| {
            answer(
                200,
                r#"{"publish":["cam"],"subscribe":["**","*/chat"],"root":"room/1","tier":"gold"}"#,
            )
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 4, FAST);
        let lease = admit(&service, "/slug?jwt=abc&x=1").await.unwrap();
        assert_eq!(lease.root().as_str(), "room/1");
        let permissions = lease.grant().permissions();
        let p = |s: &str| Path::new(s).unwrap();
        assert!(permissions.can_publish(&p("cam")) && !permissions.can_publish(&p("cam/x")));
        assert!(permissions.can_subscribe(&p("anything")));
        assert_eq!(counted(&registry, "connect", "granted"), 1);
        // The facts as sent: the path as dialled, the raw query, the node and transport.
        let sent = &fake.events()[0];
        assert_eq!(sent.event, Event::Connect);
        assert_eq!(sent.path, "/slug");
        assert_eq!(sent.query.as_deref(), Some("jwt=abc&x=1"));
        assert_eq!(sent.node, "relay-1");
        assert_eq!(sent.transport, contract::Transport::Quic);
        assert_eq!(sent.alpn.as_deref(), Some("moq-lite-05"));
        assert_eq!(sent.id.len(), 32);
        // A URL-less dial (raw QUIC lite-03/04) is reported as `/`.
        let _ = admit(&service, "").await.unwrap();
        assert_eq!(fake.events()[1].path, "/");
    }

    #[tokio::test]
    async fn refusals_and_outages_fail_closed_and_are_counted() {
        let fake = Fake::start(|request| match request.path.as_str() {
            "/403" => answer(403, "the token is not accepted: expired"),
            "/401" => answer(401, ""),
            "/500" => answer(500, "oops"),
            "/garbage" => answer(200, "not json"),
            "/nothing" => answer(200, "{}"),
            "/unbounded" => answer(200, r#"{"publish":["**"],"revalidate":5}"#),
            "/mounts" => answer(200, r#"{"publish":["**"],"mounts":{"a":"b"}}"#),
            "/slow" => (200, r#"{"publish":["**"]}"#.into(), Duration::from_secs(30)),
            _ => answer(200, r#"{"publish":["**"]}"#),
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 8, Duration::from_millis(300));
        for (path, reason, status) in [
            ("/403", "service_refused", 401),
            ("/401", "service_refused", 401),
            ("/nothing", "service_refused", 401),
            ("/500", "service_error", 502),
            ("/garbage", "service_bad_response", 502),
            ("/unbounded", "service_invalid", 502),
            ("/mounts", "service_invalid", 502),
            ("/slow", "service_timeout", 502),
        ] {
            let started = Instant::now();
            let refusal = admit(&service, path).await.unwrap_err();
            assert_eq!(
                (refusal.reason, refusal.status),
                (reason, status),
                "{path}: {}",
                refusal.detail
            );
            assert_eq!(refusal.kind, RefusalKind::Auth);
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} took {:?}",
                started.elapsed()
            );
        }
        let refusal = admit(&service, "/403").await.unwrap_err();
        assert!(
            refusal.detail.contains("expired"),
            "the server's reason is kept: {}",
            refusal.detail
        );
        assert_eq!(counted(&registry, "connect", "refused"), 4);
        assert_eq!(counted(&registry, "connect", "error_status"), 1);
        assert_eq!(counted(&registry, "connect", "bad_response"), 1);
        assert_eq!(counted(&registry, "connect", "invalid"), 2);
        assert_eq!(counted(&registry, "connect", "timeout"), 1);
        assert!(
            admit(&service, "/ok").await.is_ok(),
            "the same service admits a good answer"
        );

        // Nobody listening: unreachable.
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut registry = Registry::default();
        let gone = Service::new(
            &Settings {
                url: format!("http://127.0.0.1:{port}/"),
                node: String::new(),
                timeout: FAST,
                cache: Duration::ZERO,
                concurrency: 1,
            },
            &mut registry,
        )
        .unwrap();
        assert_eq!(
            admit(&gone, "/a").await.unwrap_err().reason,
            "service_unreachable"
        );
        assert_eq!(counted(&registry, "connect", "unreachable"), 1);
    }

    #[tokio::test]
    async fn answers_are_reused_briefly_for_the_same_facts_and_outages_never() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let fake = Fake::start(move |request| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            match request.path.as_str() {
                "/no" => answer(403, "no"),
                "/flaky" if n < 100 && request.query.as_deref() == Some("first") => answer(503, ""),
                _ => answer(200, r#"{"subscribe":["**"]}"#),
            }
        })
        .await;
        let (service, registry) = fake.service(Duration::from_secs(60), 4, FAST);
        admit(&service, "/a").await.unwrap();
        // Another port of the same address: the same decision.
        let mut other_port = facts("/a");
        other_port.remote = Some("127.0.0.1:6000".parse().unwrap());
        service
            .connect(service.request(&other_port), Path::new("a").unwrap())
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "answered from the cache");
        assert_eq!(counted(&registry, "connect", "cached"), 1);
        // Different facts ask again.
        admit(&service, "/b").await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Refusals are reused too.
        assert!(admit(&service, "/no").await.is_err());
        assert!(admit(&service, "/no").await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Outages are not.
        assert!(admit(&service, "/flaky?first").await.is_err());
        assert!(admit(&service, "/flaky?first").await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 5);

        // A cache of 0 asks every time.
        let (uncached, _) = fake.service(Duration::ZERO, 4, FAST);
        admit(&uncached, "/a").await.unwrap();
        admit(&uncached, "/a").await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }

    #[tokio::test]
    async fn a_full_concurrency_cap_refuses_at_once() {
        let fake = Fake::start(|request| match request.path.as_str() {
            "/slow" => (200, r#"{"publish":["**"]}"#.into(), Duration::from_secs(2)),
            _ => answer(200, r#"{"publish":["**"]}"#),
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 1, FAST);
        let slow = tokio::spawn({
            let service = service.clone();
            async move { admit(&service, "/slow").await.map(|_| ()) }
        });
        // Wait until the slow one is at the server (holding the only permit).
        let deadline = Instant::now() + FAST;
        while fake.events().is_empty() {
            assert!(Instant::now() < deadline, "the slow request never arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let refusal = admit(&service, "/fast").await.unwrap_err();
        assert_eq!(refusal.reason, "service_busy");
        assert_eq!(refusal.status, 502);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused without waiting"
        );
        assert_eq!(counted(&registry, "connect", "busy"), 1);
        slow.await.unwrap().unwrap();
        // With the permit back, the next one goes through.
        admit(&service, "/fast").await.unwrap();
    }

    #[tokio::test]
    async fn revalidation_narrows_the_grant_on_its_cadence() {
        let expires = in_secs(3600);
        let fake = Fake::start(move |request| match request.event {
            Event::Connect => answer(
                200,
                &format!(r#"{{"publish":["**"],"subscribe":["**"],"expires":{expires},"revalidate":1}}"#),
            ),
            _ => answer(
                200,
                &format!(r#"{{"subscribe":["**"],"expires":{expires},"revalidate":1}}"#),
            ),
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 4, FAST);
        let mut lease = admit(&service, "/room").await.unwrap();
        assert!(!lease.grant().permissions().publishes_nothing());
        let change = tokio::time::timeout(FAST, lease.changed())
            .await
            .expect("a re-check on the cadence");
        let Change::Permissions(now) = change else {
            panic!("{change:?}")
        };
        assert!(now.publishes_nothing() && !now.subscribes_nothing());
        let events = fake.events();
        assert_eq!(events[1].event, Event::Revalidate);
        assert_eq!(
            events[1].id, events[0].id,
            "every event of a session shares its id"
        );
        assert_eq!(counted(&registry, "revalidate", "granted"), 1);
        // The same grant again is no change: the lease keeps waiting.
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), lease.changed())
                .await
                .is_err()
        );
        assert!(fake.events().len() >= 3);
    }

    #[tokio::test]
    async fn a_nudge_rechecks_at_once_and_a_refusal_ends_the_session() {
        let expires = in_secs(3600);
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = refuse.clone();
        let fake = Fake::start(move |_| match refusing.load(Ordering::SeqCst) {
            true => answer(403, "revoked by the operator"),
            false => answer(
                200,
                &format!(r#"{{"publish":["**"],"expires":{expires},"revalidate":3600}}"#),
            ),
        })
        .await;
        let (service, _) = fake.service(Duration::ZERO, 4, FAST);
        let mut lease = admit(&service, "/room").await.unwrap();
        refuse.store(true, Ordering::SeqCst);
        lease.nudge().notify_one();
        let change = tokio::time::timeout(FAST, lease.changed())
            .await
            .expect("the nudge re-checks at once");
        assert_eq!(change, Change::End("refused", "revoked by the operator".into()));
    }

    #[tokio::test]
    async fn changed_roots_peers_and_invalid_grants_end_the_session() {
        let expires = in_secs(3600);
        let fake = Fake::start(move |request| {
            let base = format!(r#""publish":["**"],"expires":{expires},"revalidate":3600"#);
            match (request.event.clone(), request.path.as_str()) {
                (Event::Connect, _) => answer(200, &format!("{{{base}}}")),
                (_, "/root") => answer(200, &format!(r#"{{{base},"root":"elsewhere"}}"#)),
                (_, "/peer") => answer(200, &format!(r#"{{{base},"peer":true}}"#)),
                _ => answer(200, r#"{"publish":["**"],"expires":1}"#),
            }
        })
        .await;
        let (service, _) = fake.service(Duration::ZERO, 4, FAST);
        for (path, reason) in [
            ("/root", "root_changed"),
            ("/peer", "peer_changed"),
            ("/invalid", "invalid"),
        ] {
            let mut lease = admit(&service, path).await.unwrap();
            lease.nudge().notify_one();
            let change = tokio::time::timeout(FAST, lease.changed()).await.unwrap();
            assert!(
                matches!(change, Change::End(r, _) if r == reason),
                "{path}: {change:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_outage_keeps_the_grant_until_it_expires() {
        let expires = in_secs(3);
        let fake = Fake::start(move |request| match request.event {
            Event::Connect => answer(
                200,
                &format!(r#"{{"publish":["**"],"expires":{expires},"revalidate":1}}"#),
            ),
            _ => answer(503, "down"),
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 4, FAST);
        let mut lease = admit(&service, "/room").await.unwrap();
        let started = Instant::now();
        let change = tokio::time::timeout(Duration::from_secs(10), lease.changed())
            .await
            .unwrap();
        assert_eq!(change, expired());
        // `expires` is whole seconds: the grant ends within its last second, not at the first failure.
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "ended after {:?}",
            started.elapsed()
        );
        assert!(
            counted(&registry, "revalidate", "error_status") >= 1,
            "re-checks were tried"
        );
    }

    #[tokio::test]
    async fn the_end_is_reported_with_what_the_session_did() {
        let fake = Fake::start(|request| match request.event {
            Event::End { .. } => answer(204, ""),
            _ => answer(200, r#"{"subscribe":["**"]}"#),
        })
        .await;
        let (service, registry) = fake.service(Duration::ZERO, 4, FAST);
        let lease = admit(&service, "/room").await.unwrap();
        let id = lease.id().to_string();
        lease
            .end(
                "closed".into(),
                contract::Bytes {
                    sent: 7,
                    received: 11,
                },
            )
            .await;
        let end = fake.events().pop().unwrap();
        assert_eq!(end.id, id);
        let Event::End {
            reason,
            bytes,
            duration,
        } = end.event
        else {
            panic!("{:?}", end.event)
        };
        assert_eq!(reason, "closed");
        assert_eq!(
            bytes,
            contract::Bytes {
                sent: 7,
                received: 11
            }
        );
        assert!(duration >= 0.0);
        assert_eq!(counted(&registry, "end", "ok"), 1);
    }

    #[test]
    fn endpoints_are_loopback_http() {
        let ok = Endpoint::parse("http://127.0.0.1:4440").unwrap();
        assert_eq!(
            (ok.port, ok.target.as_str(), ok.authority.as_str()),
            (4440, "/", "127.0.0.1:4440")
        );
        assert_eq!(Endpoint::parse("http://[::1]:9/a?b=c").unwrap().target, "/a?b=c");
        assert_eq!(Endpoint::parse("http://localhost").unwrap().port, 80);
        for bad in [
            "http://10.0.0.1:4440",
            "http://auth.example/",
            "https://127.0.0.1/",
            "unix:///run/auth.sock",
            "http://u:p@127.0.0.1/",
            "not a url",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cache_key_ignores_the_id_and_the_port() {
        let mut a = Request::connect("n", contract::Transport::Quic, "/x");
        a.remote = Some("192.0.2.1:1000".parse().unwrap());
        let mut b = a.clone();
        b.id = "other".into();
        b.remote = Some("192.0.2.1:2000".parse().unwrap());
        assert_eq!(cache_key(&a), cache_key(&b));
        b.remote = Some("192.0.2.2:2000".parse().unwrap());
        assert_ne!(cache_key(&a), cache_key(&b));
    }

    #[test]
    fn backoff_doubles_within_the_cadence() {
        assert_eq!(backoff(1, None), Duration::from_secs(1));
        assert_eq!(backoff(3, None), Duration::from_secs(4));
        assert_eq!(backoff(3, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(backoff(40, None), BACKOFF_MAX);
        assert_eq!(printable(b"a\nb\x00c"), "a b c");
        assert_eq!(printable(b""), "no reason given");
        assert_eq!(printable("é".repeat(150).as_bytes()).len(), 200);
    }
}
