//! The public HTTP listener on TCP, at the same address as QUIC:
//! `GET /certificate.sha256`, `/health`, `/announced[/prefix]`,
//! `/fetch/<broadcast>/<track>[?group=N]`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Path as UrlPath, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::BytesMut;
use moq_core::session::Permissions;
use moq_proto::Path;

use crate::relay::Shared;

/// How long `/fetch` waits for a broadcast to be announced and a group to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct WebState {
    shared: Arc<Shared>,
    fingerprints: Arc<Vec<String>>,
}

/// A bound HTTP listener.
pub struct Web {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Web {
    /// Bind the TCP listener.
    pub async fn bind(
        addr: SocketAddr,
        shared: Arc<Shared>,
        fingerprints: Vec<String>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for HTTP on {addr}: {e}"))?;
        let state = WebState {
            shared,
            fingerprints: Arc::new(fingerprints),
        };
        let router = Router::new()
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
            );
        Ok(Self { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until the task is dropped.
    pub async fn run(self) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router).await?;
        Ok(())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}

async fn certificate(State(state): State<WebState>) -> Response {
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
fn permissions(state: &WebState, jwt: Option<&str>) -> Result<Permissions, Box<Response>> {
    let jwt = jwt.filter(|t| !t.is_empty());
    match state.shared.authorize(&Path::empty(), jwt) {
        Ok((permissions, _)) => Ok(permissions),
        Err(err) => {
            tracing::warn!(reason = err.reason(), "HTTP authentication failed");
            state.shared.metrics.auth_failed(err.reason());
            Err(Box::new(error(StatusCode::UNAUTHORIZED, err.to_string())))
        }
    }
}

async fn announced_root(state: State<WebState>, query: Query<TokenQuery>) -> Response {
    list(state, "", query).await
}

async fn announced(
    state: State<WebState>,
    UrlPath(prefix): UrlPath<String>,
    query: Query<TokenQuery>,
) -> Response {
    list(state, &prefix, query).await
}

async fn list(State(state): State<WebState>, prefix: &str, Query(query): Query<TokenQuery>) -> Response {
    let Ok(prefix) = Path::new(prefix) else {
        return error(StatusCode::BAD_REQUEST, "bad prefix");
    };
    let permissions = match permissions(&state, query.jwt.as_deref()) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    // One path per line, relative to the prefix (as the reference relay lists them).
    let mut body = String::new();
    for path in state.shared.origin.paths() {
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
    State(state): State<WebState>,
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
        state.shared.metrics.auth_failed("no_access");
        return error(
            StatusCode::UNAUTHORIZED,
            format!("not allowed to read '{broadcast}'"),
        );
    }
    let Some(consumer) = state.shared.origin.wait_for(&broadcast, FETCH_TIMEOUT).await else {
        return error(
            StatusCode::NOT_FOUND,
            format!("broadcast '{broadcast}' not found"),
        );
    };
    let mut track = match consumer.subscribe(track) {
        Ok(track) => track,
        Err(err) => return error(StatusCode::NOT_FOUND, format!("track '{track}': {err}")),
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
    let Ok(Some(mut group)) = tokio::time::timeout(FETCH_TIMEOUT, find).await else {
        return error(StatusCode::NOT_FOUND, "group not available");
    };
    // A group still being written is returned as far as it got once frames stop
    // arriving for a moment; a finished group is returned whole.
    let read = async {
        let mut body = BytesMut::new();
        let mut frames = 0usize;
        loop {
            let wait = if frames == 0 {
                FETCH_TIMEOUT
            } else {
                Duration::from_millis(500)
            };
            match tokio::time::timeout(wait, group.next_frame()).await {
                Ok(Ok(Some(frame))) => {
                    body.extend_from_slice(&frame.payload);
                    frames += 1;
                }
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(err)) => return Err(err),
            }
        }
        Ok::<_, moq_core::Error>(body.freeze())
    };
    match tokio::time::timeout(FETCH_TIMEOUT, read).await {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response(),
        Ok(Err(err)) => error(StatusCode::BAD_GATEWAY, err.to_string()),
        Err(_) => error(StatusCode::GATEWAY_TIMEOUT, "group did not complete in time"),
    }
}
