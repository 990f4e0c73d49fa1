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

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// A QUIC server with ACME for `relay.example.com` and `edge.example.com` whose CA
    /// cannot be reached, and nothing cached: its manager never has a certificate.
    pub(crate) fn unreachable_acme(dir: &std::path::Path) -> moq_native::server::Server {
        let mut acme = moq_native::acme::Config::new(
            vec!["relay.example.com".into(), "edge.example.com".into()],
            dir.to_path_buf(),
        );
        acme.directory = "https://127.0.0.1:1/dir".into();
        moq_native::server::Server::bind(moq_native::server::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: moq_native::server::TlsConfig {
                acme: Some(acme),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    }

    async fn get(router: &Router, uri: &str, host: &str) -> (StatusCode, Option<String>, String) {
        let request = axum::http::Request::get(uri)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, location, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn unknown_tokens_are_404_and_the_rest_redirects_to_a_certified_name() {
        let tmp = tempfile::tempdir().unwrap();
        let server = unreachable_acme(tmp.path());
        let acme = server.acme().unwrap().clone();
        let router = router(acme.clone(), 443);
        let (status, _, body) = get(&router, "/.well-known/acme-challenge/abc", "relay.example.com").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "no such ACME challenge\n")
        );
        assert_eq!(
            get(&router, "/anon/clock?x=1", "Edge.Example.com:80")
                .await
                .1
                .as_deref(),
            Some("https://edge.example.com/anon/clock?x=1")
        );
        // Another host never leaves the certified names.
        let (status, location, _) = get(&router, "/", "evil.example").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(location.as_deref(), Some("https://relay.example.com/"));
        // A non-default HTTPS port is kept.
        let router = super::router(acme, 8443);
        assert_eq!(
            get(&router, "/x", "relay.example.com").await.1.as_deref(),
            Some("https://relay.example.com:8443/x")
        );
    }
}
