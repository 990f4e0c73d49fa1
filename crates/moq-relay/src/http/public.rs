//! The public HTTP endpoints, on TCP at the QUIC listener's address:
//! `GET /certificate.sha256`, `/health`, `/announced[/prefix]`,
//! `/fetch/<broadcast>/<track>[?group=N]`. Every one that reads media obeys `?jwt=`
//! and the public prefixes exactly as a session would; with `[auth] url` each request is
//! a one-shot session of its own for the auth server (transport `http`, the path it
//! reads as the dialled path), reported `end` when it is answered.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{FromRef, Path as UrlPath, Query, RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use futures::StreamExt;
use moq_core::session::Permissions;
use moq_proto::Path;
use tokio::sync::Semaphore;

use super::websocket::{self, Upgrades};
use crate::{
    auth_service::{Facts, Lease, Service},
    gate::Gate,
    lifecycle::Lifecycle,
    media::Media,
    metrics::Refusals,
};

/// How long `/fetch` waits for a broadcast to be announced and a group to arrive.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a group still being written may pause before `/fetch` returns what it has.
const FRAME_PAUSE: Duration = Duration::from_millis(500);

/// `/fetch` requests served at once (each may hold a subscription for up to a minute).
pub const MAX_FETCHES: usize = 256;

/// `/fetch` requests one source (an IPv4 address or an IPv6 /64) may have in progress.
pub const MAX_FETCHES_PER_SOURCE: u32 = 16;

/// `/fetch` requests in progress per source.
#[derive(Debug, Default)]
pub struct FetchSources(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>);

impl FetchSources {
    /// Take a slot for `ip`'s source, if it has one left.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceSlot> {
        let source = crate::admission::source(ip);
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(source).or_default();
        if *n >= MAX_FETCHES_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            source,
        })
    }
}

/// A source's `/fetch` slot, given back when dropped.
struct SourceSlot {
    sources: Arc<FetchSources>,
    source: std::net::IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.source);
            }
        }
    }
}

/// What the public endpoints read.
#[derive(Debug, Clone)]
pub struct PublicState {
    /// The broadcasts served.
    pub media: Media,
    /// Who may read what.
    pub gate: Arc<Gate>,
    /// The auth server (`[auth] url`), which then decides instead of the gate.
    pub service: Option<Arc<Service>>,
    /// Owns the `end` reports sent to the auth server.
    pub lifecycle: Lifecycle,
    /// Authentication failures are counted with the sessions'.
    pub refusals: Refusals,
    /// SHA-256 fingerprints of the served certificates, hex.
    pub fingerprints: Arc<Vec<String>>,
    /// `/fetch` requests in progress are bounded by these permits.
    pub fetches: Arc<Semaphore>,
    /// ... and per source.
    pub fetch_sources: Arc<FetchSources>,
    /// The WebSocket fallback, if enabled.
    pub upgrades: Option<Upgrades>,
}

impl FromRef<PublicState> for Option<Upgrades> {
    fn from_ref(state: &PublicState) -> Self {
        state.upgrades.clone()
    }
}

/// The public router. Any other path answers a WebSocket upgrade (the qmux fallback),
/// or 404.
pub fn router(state: PublicState) -> Router {
    Router::new()
        .route("/certificate.sha256", get(certificate))
        .route("/health", get(|| async { "ok\n" }))
        .route("/announced", get(announced_root))
        .route("/announced/{*prefix}", get(announced))
        .route("/fetch/{*path}", get(fetch))
        .route("/", any(websocket::upgrade))
        .fallback(websocket::upgrade)
        .with_state(state)
        // Browsers on any origin fetch /certificate.sha256 and the other endpoints.
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET]),
        )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}

async fn certificate(State(state): State<PublicState>) -> Response {
    match state.fingerprints.first() {
        Some(fp) => ([(header::CONTENT_TYPE, "text/plain")], fp.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no certificate"),
    }
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    jwt: Option<String>,
}

/// What one request may read.
struct Access {
    /// Where `permissions` are rooted: the relay root for the gate, the requested path
    /// (or the grant's alias for it) for the auth server.
    root: Path,
    permissions: Permissions,
    lease: Option<Lease>,
}

impl Access {
    /// Whether the absolute `path` may be read.
    fn can_subscribe(&self, path: &Path) -> bool {
        path.strip_prefix(&self.root)
            .and_then(|relative| Path::new(relative).ok())
            .is_some_and(|relative| self.permissions.can_subscribe(&relative))
    }

    /// Report the request's end to the auth server, if one admitted it.
    fn end(self, state: &PublicState, reason: &str) {
        if let Some(lease) = self.lease {
            state
                .lifecycle
                .spawn_graceful(lease.end(reason.to_string(), Default::default()));
        }
    }
}

/// What the request may read: its `?jwt=` token (if any) plus the public prefixes, or
/// what the auth server grants at `path`. Failures are counted like session
/// authentication failures.
async fn authorize(
    state: &PublicState,
    path: &Path,
    jwt: Option<&str>,
    query: Option<String>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Access, Box<Response>> {
    let refused = |reason: &'static str, status: StatusCode, detail: String| {
        if state.refusals.may_log() {
            tracing::warn!(reason, "HTTP authentication failed");
        }
        state.refusals.auth_failed(reason);
        Box::new(error(status, detail))
    };
    let Some(service) = &state.service else {
        let jwt = jwt.filter(|t| !t.is_empty());
        return match state.gate.authorize(&Path::empty(), jwt) {
            Ok((permissions, _)) => Ok(Access {
                root: Path::empty(),
                permissions,
                lease: None,
            }),
            Err(err) => Err(refused(err.reason(), StatusCode::UNAUTHORIZED, err.to_string())),
        };
    };
    let facts = Facts {
        transport: Some(moq_auth::service::Transport::Http),
        target: match &query {
            Some(query) => format!("/{path}?{query}"),
            None => format!("/{path}"),
        },
        remote: peer,
        ..Facts::default()
    };
    match service.connect(service.request(&facts), path.clone()).await {
        Ok(lease) => Ok(Access {
            root: lease.root().clone(),
            permissions: lease.grant().permissions(),
            lease: Some(lease),
        }),
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNAUTHORIZED);
            Err(refused(refusal.reason, status, refusal.detail))
        }
    }
}

async fn announced_root(
    state: State<PublicState>,
    peer: Option<axum::Extension<super::Peer>>,
    query: Query<TokenQuery>,
    raw: RawQuery,
) -> Response {
    list(state, peer, "", query, raw).await
}

async fn announced(
    state: State<PublicState>,
    peer: Option<axum::Extension<super::Peer>>,
    UrlPath(prefix): UrlPath<String>,
    query: Query<TokenQuery>,
    raw: RawQuery,
) -> Response {
    list(state, peer, &prefix, query, raw).await
}

async fn list(
    State(state): State<PublicState>,
    peer: Option<axum::Extension<super::Peer>>,
    prefix: &str,
    Query(query): Query<TokenQuery>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(prefix) = Path::new(prefix) else {
        return error(StatusCode::BAD_REQUEST, "bad prefix");
    };
    let peer = peer.map(|axum::Extension(super::Peer(peer))| peer);
    let access = match authorize(&state, &prefix, query.jwt.as_deref(), raw, peer).await {
        Ok(access) => access,
        Err(response) => return *response,
    };
    // An alias the auth server granted lists the aliased broadcasts.
    let listed = match access.lease.is_some() {
        true => access.root.clone(),
        false => prefix,
    };
    // One path per line, relative to the prefix (as the reference relay lists them).
    let mut body = String::new();
    for path in state.media.origin.paths() {
        if !access.can_subscribe(&path) {
            continue;
        }
        if let Some(suffix) = path.strip_prefix(&listed) {
            body.push_str(suffix);
            body.push('\n');
        }
    }
    access.end(&state, "done");
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[derive(serde::Deserialize)]
struct FetchQuery {
    group: Option<u64>,
    jwt: Option<String>,
}

async fn fetch(
    State(state): State<PublicState>,
    peer: Option<axum::Extension<super::Peer>>,
    UrlPath(path): UrlPath<String>,
    Query(query): Query<FetchQuery>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some((broadcast, track)) = path.trim_end_matches('/').rsplit_once('/') else {
        return error(StatusCode::BAD_REQUEST, "expected /fetch/<broadcast>/<track>");
    };
    let Ok(broadcast) = Path::new(broadcast) else {
        return error(StatusCode::BAD_REQUEST, "bad broadcast path");
    };
    let remote = peer.as_ref().map(|axum::Extension(super::Peer(peer))| *peer);
    let access = match authorize(&state, &broadcast, query.jwt.as_deref(), raw, remote).await {
        Ok(access) => access,
        Err(response) => return *response,
    };
    // The auth server's grant is scoped to the broadcast, which it may alias.
    let broadcast = match access.lease.is_some() {
        true => access.root.clone(),
        false => broadcast,
    };
    let response = serve_fetch(&state, peer, &broadcast, track, query.group, &access).await;
    access.end(&state, response.status().as_str());
    response
}

async fn serve_fetch(
    state: &PublicState,
    peer: Option<axum::Extension<super::Peer>>,
    broadcast: &Path,
    track: &str,
    wanted: Option<u64>,
    access: &Access,
) -> Response {
    let hold = match admit_fetch(state, peer) {
        Ok(hold) => hold,
        Err(response) => return *response,
    };
    if !access.can_subscribe(broadcast) {
        state.refusals.auth_failed("no_access");
        return error(
            StatusCode::UNAUTHORIZED,
            format!("not allowed to read '{broadcast}'"),
        );
    }
    let Some(consumer) = state.media.origin.wait_for(broadcast, FETCH_TIMEOUT).await else {
        return error(
            StatusCode::NOT_FOUND,
            format!("broadcast '{broadcast}' not found"),
        );
    };
    let track_name = track;
    let mut track = match consumer.subscribe(track_name) {
        Ok(track) => track,
        Err(err) => return error(StatusCode::NOT_FOUND, format!("track '{track_name}': {err}")),
    };
    let Ok(Some(mut group)) = tokio::time::timeout(FETCH_TIMEOUT, find_group(&mut track, wanted)).await
    else {
        return error(StatusCode::NOT_FOUND, "group not available");
    };
    // The first frame decides the status; the rest is streamed as it comes, each
    // payload shared with every other reader (never copied per request).
    let first = match tokio::time::timeout(FETCH_TIMEOUT, group.next_frame()).await {
        Ok(Ok(Some(frame))) => frame.payload,
        Ok(Ok(None)) => bytes::Bytes::new(),
        Ok(Err(err)) => return error(StatusCode::BAD_GATEWAY, err.to_string()),
        Err(_) => return error(StatusCode::GATEWAY_TIMEOUT, "group did not complete in time"),
    };
    stream_group(first, group, hold)
}

/// A fetch's admission: a place among the fetches in progress and its source's slot,
/// both held until its body is done.
type FetchHold = (tokio::sync::OwnedSemaphorePermit, Option<SourceSlot>);

/// Admit a fetch: a slot for its source (429 when the source has none left), then a
/// place among the concurrent fetches (503 when all are taken).
fn admit_fetch(
    state: &PublicState,
    peer: Option<axum::Extension<super::Peer>>,
) -> Result<FetchHold, Box<Response>> {
    let slot = match peer {
        Some(axum::Extension(super::Peer(peer))) => match state.fetch_sources.take(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                state.refusals.refused("fetch_per_source");
                return Err(Box::new(error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many fetches from this address; retry shortly",
                )));
            }
        },
        None => None,
    };
    let Ok(permit) = state.fetches.clone().try_acquire_owned() else {
        state.refusals.refused("fetch_concurrency");
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many fetches in progress; retry shortly",
        )));
    };
    Ok((permit, slot))
}

/// The group a fetch asks for (`wanted`), else the next one to arrive; `None` once the
/// track has passed the wanted group or ended.
async fn find_group(
    track: &mut moq_core::TrackConsumer,
    wanted: Option<u64>,
) -> Option<moq_core::GroupConsumer> {
    loop {
        if let Some(seq) = wanted
            && let Some(group) = track.get_group(seq)
        {
            return Some(group);
        }
        match track.next_group().await {
            Ok(Some(group)) if wanted.is_none_or(|w| w == group.sequence()) => return Some(group),
            Ok(Some(group)) if wanted.is_some_and(|w| group.sequence() > w) => return None,
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// The fetch's 200 response: `first` (the group's first frame, already read), then the
/// group's other frames as they come, until they pause for [`FRAME_PAUSE`] or
/// [`FETCH_TIMEOUT`] has passed. `hold` is released when the body is done.
fn stream_group(first: bytes::Bytes, group: moq_core::GroupConsumer, hold: FetchHold) -> Response {
    let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
    let rest = futures::stream::unfold(Some(group), move |group| async move {
        let mut group = group?;
        // A group still being written ends the body once frames pause (or at the deadline).
        let wait = FRAME_PAUSE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, group.next_frame()).await {
            Ok(Ok(Some(frame))) => Some((Ok::<_, std::io::Error>(frame.payload), Some(group))),
            Ok(Err(err)) => Some((Err(std::io::Error::other(err.to_string())), None)),
            Ok(Ok(None)) | Err(_) => None,
        }
    });
    let body = futures::stream::once(async move { Ok(first) }).chain(rest);
    let body = body.map(move |chunk| {
        // The fetch slot is held until the body is done.
        let _ = &hold;
        chunk
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use moq_auth::Public;
    use moq_core::{BroadcastProducer, Frame, Publication, TrackInfo, TrackProducer, model::cache::Cache};
    use moq_proto::Hops;
    use tower::ServiceExt;

    use super::*;

    fn state(public: &str) -> PublicState {
        PublicState {
            media: Media::new(Cache::default(), Duration::ZERO, 1),
            gate: Arc::new(Gate::new(
                Public::from_prefixes(&[public], &[public]).unwrap(),
                None,
            )),
            service: None,
            lifecycle: Lifecycle::default(),
            refusals: Refusals::default(),
            fingerprints: Arc::new(vec!["ab".repeat(32)]),
            fetches: Arc::new(Semaphore::new(2)),
            fetch_sources: Arc::default(),
            upgrades: None,
        }
    }

    async fn get(state: &PublicState, uri: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Publish `path` with a track `t` holding one finished group of `frames`.
    fn publish(
        state: &PublicState,
        path: &str,
        frames: &[&str],
    ) -> (BroadcastProducer, TrackProducer, Publication) {
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "t",
            TrackInfo::default(),
            Cache::default(),
        ));
        let mut group = track.create_group(0).unwrap();
        for frame in frames {
            group.write(Frame {
                timestamp: 0,
                payload: bytes::Bytes::copy_from_slice(frame.as_bytes()),
            });
        }
        group.finish();
        let publication =
            state
                .media
                .origin
                .publish(Path::new(path).unwrap(), broadcast.consume(), Hops::new());
        (broadcast, track, publication)
    }

    #[tokio::test]
    async fn certificate_and_health() {
        let state = state("anon");
        assert_eq!(
            get(&state, "/certificate.sha256").await,
            (StatusCode::OK, "ab".repeat(32))
        );
        assert_eq!(get(&state, "/health").await, (StatusCode::OK, "ok\n".into()));
        assert_eq!(get(&state, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn announced_lists_only_what_the_caller_may_read() {
        let state = state("anon");
        let _a = publish(&state, "anon/a", &[]);
        let _b = publish(&state, "private/b", &[]);
        assert_eq!(
            get(&state, "/announced").await,
            (StatusCode::OK, "anon/a\n".into())
        );
        assert_eq!(
            get(&state, "/announced/anon").await,
            (StatusCode::OK, "a\n".into())
        );
        let (status, body) = get(&state, "/announced?jwt=abc").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("no [auth] key"), "{body}");
    }

    #[tokio::test]
    async fn fetch_status_matrix() {
        let state = state("anon");
        let _live = publish(&state, "anon/live", &["one", "two"]);
        assert_eq!(
            get(&state, "/fetch/anon/live/t").await,
            (StatusCode::OK, "onetwo".into())
        );
        assert_eq!(get(&state, "/fetch/anon/live/t?group=0").await.1, "onetwo");
        // 400: no track in the path.
        assert_eq!(get(&state, "/fetch/live").await.0, StatusCode::BAD_REQUEST);
        // 401: outside the public prefixes.
        let (status, body) = get(&state, "/fetch/private/x/t").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body.contains("not allowed to read 'private/x'"));
        // 404: the track is unknown.
        assert_eq!(
            get(&state, "/fetch/anon/live/nope").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn one_source_gets_a_bounded_share_of_fetches() {
        let mut state = state("anon");
        state.fetches = Arc::new(Semaphore::new(MAX_FETCHES));
        let from = |ip: &str| {
            let mut request = axum::http::Request::get("/fetch/anon/later/t")
                .body(Body::empty())
                .unwrap();
            let addr = std::net::SocketAddr::new(ip.parse().unwrap(), 1);
            request.extensions_mut().insert(super::super::Peer(addr));
            router(state.clone()).oneshot(request)
        };
        // One /64 holds its share; the next request from it is refused at once.
        let waiting: Vec<_> = (0..MAX_FETCHES_PER_SOURCE)
            .map(|i| tokio::spawn(from(&format!("2001:db8::{i:x}"))))
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while state.fetches.available_permits() > MAX_FETCHES - MAX_FETCHES_PER_SOURCE as usize {
            assert!(tokio::time::Instant::now() < deadline, "the fetches started");
            tokio::task::yield_now().await;
        }
        let refused = from("2001:db8::ffff").await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // Another source is not affected.
        let _live = publish(&state, "anon/later", &["x"]);
        assert_eq!(from("10.0.0.1").await.unwrap().status(), StatusCode::OK);
        for task in waiting {
            assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn fetches_beyond_the_concurrency_limit_are_refused_at_once() {
        let state = state("anon");
        // Two fetches wait for a broadcast that is not there (the state allows two).
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move { get(&state, "/fetch/anon/later/t").await })
            })
            .collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while state.fetches.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the fetches started");
            tokio::task::yield_now().await;
        }
        let (status, body) = get(&state, "/fetch/anon/later/t").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        // The refusal costs no subscription: the waiting fetches are unaffected.
        let _live = publish(&state, "anon/later", &["x"]);
        for task in waiting {
            assert_eq!(task.await.unwrap(), (StatusCode::OK, "x".to_string()));
        }
        assert_eq!(state.fetches.available_permits(), 2, "slots are given back");
    }

    #[tokio::test(start_paused = true)]
    async fn fetch_gives_up_after_its_timeout() {
        let state = state("anon");
        // 404 after waiting for a broadcast that never comes.
        let (status, body) = get(&state, "/fetch/anon/never/t").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("not found"));
        // 504: a group whose first frame never arrives.
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "t",
            TrackInfo::default(),
            Cache::default(),
        ));
        let _open = (track.create_group(0).unwrap(), &track);
        let _p =
            state
                .media
                .origin
                .publish(Path::new("anon/slow").unwrap(), broadcast.consume(), Hops::new());
        let (status, body) = get(&state, "/fetch/anon/slow/t").await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    }
}
