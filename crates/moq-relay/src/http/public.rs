//! The public HTTP endpoints, on TCP at the QUIC listener's address:
//! `GET /certificate.sha256`, `/health`, `/announced[/prefix]`,
//! `/fetch/<broadcast>/<track>[?group=N]`. Every one that reads media obeys `?jwt=`
//! and the public prefixes exactly as a session would.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Path as UrlPath, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::BytesMut;
use moq_core::{GroupConsumer, session::Permissions};
use moq_proto::Path;

use crate::{gate::Gate, media::Media, metrics::Refusals};

/// How long `/fetch` waits for a broadcast to be announced and a group to arrive.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a group still being written may pause before `/fetch` returns what it has.
const FRAME_PAUSE: Duration = Duration::from_millis(500);

/// What the public endpoints read.
#[derive(Debug, Clone)]
pub struct PublicState {
    /// The broadcasts served.
    pub media: Media,
    /// Who may read what.
    pub gate: Arc<Gate>,
    /// Authentication failures are counted with the sessions'.
    pub refusals: Refusals,
    /// SHA-256 fingerprints of the served certificates, hex.
    pub fingerprints: Arc<Vec<String>>,
}

/// The public router.
pub fn router(state: PublicState) -> Router {
    Router::new()
        .route("/certificate.sha256", get(certificate))
        .route("/health", get(|| async { "ok\n" }))
        .route("/announced", get(announced_root))
        .route("/announced/{*prefix}", get(announced))
        .route("/fetch/{*path}", get(fetch))
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

/// What the request may read: its `?jwt=` token (if any) plus the public prefixes,
/// as absolute paths. Failures are counted like session authentication failures.
fn permissions(state: &PublicState, jwt: Option<&str>) -> Result<Permissions, Box<Response>> {
    let jwt = jwt.filter(|t| !t.is_empty());
    match state.gate.authorize(&Path::empty(), jwt) {
        Ok((permissions, _)) => Ok(permissions),
        Err(err) => {
            tracing::warn!(reason = err.reason(), "HTTP authentication failed");
            state.refusals.auth_failed(err.reason());
            Err(Box::new(error(StatusCode::UNAUTHORIZED, err.to_string())))
        }
    }
}

async fn announced_root(state: State<PublicState>, query: Query<TokenQuery>) -> Response {
    list(state, "", query)
}

async fn announced(
    state: State<PublicState>,
    UrlPath(prefix): UrlPath<String>,
    query: Query<TokenQuery>,
) -> Response {
    list(state, &prefix, query)
}

fn list(State(state): State<PublicState>, prefix: &str, Query(query): Query<TokenQuery>) -> Response {
    let Ok(prefix) = Path::new(prefix) else {
        return error(StatusCode::BAD_REQUEST, "bad prefix");
    };
    let permissions = match permissions(&state, query.jwt.as_deref()) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    // One path per line, relative to the prefix (as the reference relay lists them).
    let mut body = String::new();
    for path in state.media.origin.paths() {
        if !permissions.can_subscribe(&path) {
            continue;
        }
        if let Some(suffix) = path.strip_prefix(&prefix) {
            body.push_str(suffix);
            body.push('\n');
        }
    }
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

#[derive(serde::Deserialize)]
struct FetchQuery {
    group: Option<u64>,
    jwt: Option<String>,
}

async fn fetch(
    State(state): State<PublicState>,
    UrlPath(path): UrlPath<String>,
    Query(query): Query<FetchQuery>,
) -> Response {
    let Some((broadcast, track)) = path.trim_end_matches('/').rsplit_once('/') else {
        return error(StatusCode::BAD_REQUEST, "expected /fetch/<broadcast>/<track>");
    };
    let Ok(broadcast) = Path::new(broadcast) else {
        return error(StatusCode::BAD_REQUEST, "bad broadcast path");
    };
    let permissions = match permissions(&state, query.jwt.as_deref()) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    if !permissions.can_subscribe(&broadcast) {
        state.refusals.auth_failed("no_access");
        return error(
            StatusCode::UNAUTHORIZED,
            format!("not allowed to read '{broadcast}'"),
        );
    }
    let Some(consumer) = state.media.origin.wait_for(&broadcast, FETCH_TIMEOUT).await else {
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
    let wanted = query.group;
    let find = async {
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
    };
    let Ok(Some(group)) = tokio::time::timeout(FETCH_TIMEOUT, find).await else {
        return error(StatusCode::NOT_FOUND, "group not available");
    };
    match tokio::time::timeout(FETCH_TIMEOUT, read_group(group)).await {
        Ok(Ok(Some(body))) => ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response(),
        Ok(Ok(None)) | Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "group did not complete in time"),
        Ok(Err(err)) => error(StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

/// A finished group whole; a group still being written as far as it got once frames
/// stop arriving for a moment; `None` if its first frame never came.
async fn read_group(mut group: GroupConsumer) -> Result<Option<bytes::Bytes>, moq_core::Error> {
    let mut body = BytesMut::new();
    let mut frames = 0usize;
    loop {
        let wait = if frames == 0 { FETCH_TIMEOUT } else { FRAME_PAUSE };
        match tokio::time::timeout(wait, group.next_frame()).await {
            Ok(Ok(Some(frame))) => {
                body.extend_from_slice(&frame.payload);
                frames += 1;
            }
            Ok(Ok(None)) => break,
            Err(_) if frames == 0 => return Ok(None),
            Err(_) => break,
            Ok(Err(err)) => return Err(err),
        }
    }
    Ok(Some(body.freeze()))
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
            refusals: Refusals::default(),
            fingerprints: Arc::new(vec!["ab".repeat(32)]),
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
