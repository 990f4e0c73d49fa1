//! The ACME HTTP-01 listener (`[server.tls.acme] http_listen`, TCP 80): the CA fetches
//! `/.well-known/acme-challenge/<token>` here (RFC 8555 §8.3); every other request is
//! redirected to HTTPS, so port 80 is useful to people too.
//!
//! The redirect names only the configured domains: a request with another `Host` goes
//! to the first domain, so the listener cannot be used to bounce visitors elsewhere.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use moq_native::acme::Acme;

/// What the HTTP-01 handlers read.
#[derive(Debug, Clone)]
struct AcmeState {
    acme: Acme,
    /// The HTTPS port redirects point at (omitted from the URL when 443).
    https_port: u16,
}

/// The HTTP-01 router: challenge responses from `acme`, redirects to `https_port`.
pub fn router(acme: Acme, https_port: u16) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(AcmeState { acme, https_port })
}

async fn challenge(State(state): State<AcmeState>, Path(token): Path<String>) -> Response {
    match state.acme.http01(&token) {
        Some(key_authorization) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_authorization,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such ACME challenge\n").into_response(),
    }
}

async fn redirect(State(state): State<AcmeState>, headers: HeaderMap, uri: Uri) -> Response {
    let domains = &state.acme.config().domains;
    let asked = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| {
        h.rsplit_once(':')
            .map_or(h, |(host, _)| host)
            .to_ascii_lowercase()
    });
    let host = asked
        .filter(|h| domains.iter().any(|d| d.eq_ignore_ascii_case(h)))
        .or_else(|| domains.first().cloned())
        .unwrap_or_default();
    let port = match state.https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response()
}
