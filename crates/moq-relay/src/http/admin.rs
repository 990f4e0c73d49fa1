//! The internal (ops) listener: `/metrics`, `/health`, `/ready`, `/nodes`, `/sessions`, and
//! `POST /sessions/revalidate`. Plain HTTP, off by default, meant for a private address.
//! Everything here only reads, except the re-check, which can only end sessions whose
//! credentials no longer hold (what a key reload or the auth server's cadence does anyway).

use std::sync::Arc;

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use moq_core::pattern::Pattern;
use moq_proto::Path;

use crate::{
    admission::Admission,
    cluster::{Cluster, PLACEHOLDER_COST},
    lifecycle::Lifecycle,
    media::Media,
    metrics::Metrics,
    registry::{Registry, SessionInfo},
    session::Sessions,
};

/// Read-only handles the ops endpoints look through.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The rendered registry.
    pub metrics: Metrics,
    /// Live sessions.
    pub registry: Arc<Registry>,
    /// Session counts, for "full".
    pub admission: Arc<Admission>,
    /// Routes and upstream subscriptions.
    pub media: Media,
    /// Links, nodes and the directory.
    pub cluster: Arc<Cluster>,
    /// Starting, serving or draining.
    pub lifecycle: Lifecycle,
    /// The ACME certificate manager, if the certificate comes from a CA.
    pub acme: Option<moq_native::acme::Acme>,
    /// The sessions, for `POST /sessions/revalidate` (405 without).
    pub sessions: Option<Arc<Sessions>>,
}

impl AdminState {
    /// Whether the relay should receive traffic, and why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        self.readiness().check().map_err(NotReady::as_str)
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            lifecycle: self.lifecycle.clone(),
            cluster: self.cluster.clone(),
            admission: self.admission.clone(),
            acme: self.acme.clone(),
        }
    }
}

/// Why the relay should not receive traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// Start-up is not finished.
    Starting,
    /// SIGTERM: sessions are being told to go away.
    Draining,
    /// Every configured link (static or root) is down, and no on-demand link is up.
    NoClusterLink,
    /// At `[limits] max_sessions`: new sessions would be refused.
    Full,
    /// ACME has not yet delivered the first certificate: every TLS handshake would fail.
    AwaitingCertificate,
}

impl NotReady {
    const ALL: [NotReady; 5] = [
        Self::Starting,
        Self::Draining,
        Self::NoClusterLink,
        Self::Full,
        Self::AwaitingCertificate,
    ];

    /// The reason as `/ready` says it and the metric labels it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Draining => "draining",
            Self::NoClusterLink => "no cluster link",
            Self::Full => "full",
            Self::AwaitingCertificate => "waiting for the ACME certificate",
        }
    }
}

/// What readiness is computed from: read-only handles.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Starting, serving or draining.
    pub lifecycle: Lifecycle,
    /// Links.
    pub cluster: Arc<Cluster>,
    /// Session counts.
    pub admission: Arc<Admission>,
    /// The ACME certificate manager, if the certificate comes from a CA.
    pub acme: Option<moq_native::acme::Acme>,
}

impl Readiness {
    /// Ready, or the first reason not to be.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.lifecycle.is_draining() {
            return Err(NotReady::Draining);
        }
        // Without a certificate every TLS handshake fails: nothing to route traffic to.
        if self
            .acme
            .as_ref()
            .is_some_and(|acme| acme.status().certificate.is_none())
        {
            return Err(NotReady::AwaitingCertificate);
        }
        if !self.lifecycle.is_ready() {
            return Err(NotReady::Starting);
        }
        if !self.cluster.connected() {
            return Err(NotReady::NoClusterLink);
        }
        // A full relay refuses new sessions: take it out of rotation until some leave.
        if self.admission.full() {
            return Err(NotReady::Full);
        }
        Ok(())
    }
}

/// `moq_relay_not_ready{reason}`: 1 for the reason `/ready` gives now, 0 for the others,
/// and `moq_relay_ready`: 1 exactly when `/ready` answers 200; both read at scrape time.
impl prometheus_client::collector::Collector for Readiness {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let now = self.check().err();
        let family = prometheus_client::metrics::family::Family::<
            crate::metrics::ReasonLabels,
            prometheus_client::metrics::gauge::Gauge,
        >::default();
        for reason in NotReady::ALL {
            let labels = crate::metrics::ReasonLabels {
                reason: reason.as_str().to_string(),
            };
            family.get_or_create(&labels).set(i64::from(now == Some(reason)));
        }
        let metric = encoder.encode_descriptor(
            "moq_relay_not_ready",
            "1 for the reason the relay is not ready now (see /ready), 0 for the others",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)?;
        crate::metrics::gauge(
            &mut encoder,
            "moq_relay_ready",
            "1 while the relay should receive traffic (what /ready says), 0 otherwise",
            i64::from(now.is_none()),
        )
    }
}

/// The ops router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/nodes", get(nodes))
        .route("/sessions", get(sessions))
        .route("/sessions/revalidate", post(revalidate))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

fn json(body: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The route chosen for every broadcast: where it comes from and at what cost.
fn routes(media: &Media) -> Vec<serde_json::Value> {
    let mut announced = media.origin.announced(Path::empty());
    let mut routes = Vec::new();
    for _ in 0..announced.initial() {
        let Some(event) = announced.try_next() else { break };
        let hops: Vec<String> = event.hops.ids().iter().map(|h| h.to_string()).collect();
        let via = match event.cost {
            0 if hops.is_empty() => "local",
            cost if cost >= PLACEHOLDER_COST => "directory",
            _ => "link",
        };
        routes.push(serde_json::json!({
            "path": event.suffix.as_str(),
            "hops": hops,
            "cost": event.cost,
            "via": via,
        }));
    }
    routes
}

/// What the directory says: which relay originates which broadcast.
fn origins(cluster: &Cluster) -> Vec<serde_json::Value> {
    let mut listed = cluster
        .directory
        .announced(Path::new("origin").unwrap_or_default());
    let mut origins = Vec::new();
    for _ in 0..listed.initial() {
        let Some(event) = listed.try_next() else { break };
        if let Some((node, path)) = event.suffix.as_str().split_once('/') {
            origins.push(serde_json::json!({ "path": path, "node": node }));
        }
    }
    origins
}

async fn nodes(State(state): State<AdminState>) -> Response {
    let cluster = &state.cluster;
    let known: Vec<_> = cluster
        .nodes()
        .into_iter()
        .map(|(id, url)| serde_json::json!({ "id": id.to_string(), "url": url }))
        .collect();
    json(serde_json::json!({
        "id": state.media.hop.to_string(),
        "origins": origins(cluster),
        "node": cluster.node,
        "links": cluster.links().iter().map(|l| l.to_json()).collect::<Vec<_>>(),
        "nodes": known,
        "routes": routes(&state.media),
        "upstream_subscriptions": state.media.upstream_subscriptions(),
        "broadcasts": state.media.origin.paths().iter().map(|p| p.as_str().to_string()).collect::<Vec<_>>(),
    }))
}

async fn sessions(State(state): State<AdminState>) -> Response {
    let list: Vec<_> = state
        .registry
        .list()
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "peer": s.peer.to_string(),
                "path": s.root.as_str(),
                "version": s.version.name(),
                "transport": s.transport.as_str(),
                "service_id": s.service_id,
                "seconds": s.since.elapsed().as_secs(),
                "rtt_ms": s.connection.as_ref().map(|c| c.rtt().as_millis() as u64),
            })
        })
        .collect();
    json(serde_json::Value::Array(list))
}

/// Which live sessions `POST /sessions/revalidate` re-checks: every given field must
/// match; none is every session.
#[derive(Debug, Default)]
struct Filter {
    /// The connection id or the auth server's session id.
    id: Option<String>,
    /// A pattern over the session root (`demo/**`).
    path: Option<Pattern>,
    /// The peer's address or network.
    remote: Option<ipnet::IpNet>,
}

impl Filter {
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut filter = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "id" => filter.id = Some(value.into_owned()),
                "path" => {
                    let path = value.trim_start_matches('/');
                    filter.path = Some(path.parse().map_err(|err| format!("path '{value}': {err}"))?);
                }
                "remote" => {
                    let net = match value.parse::<ipnet::IpNet>() {
                        Ok(net) => net,
                        Err(_) => value
                            .parse::<std::net::IpAddr>()
                            .map(ipnet::IpNet::from)
                            .map_err(|_| format!("remote '{value}' is not an address or network"))?,
                    };
                    filter.remote = Some(net);
                }
                other => return Err(format!("unknown filter '{other}' (use id, path or remote)")),
            }
        }
        Ok(filter)
    }

    fn matches(&self, session: &SessionInfo) -> bool {
        self.id
            .as_ref()
            .is_none_or(|id| *id == session.id.to_string() || session.service_id.as_ref() == Some(id))
            && self.path.as_ref().is_none_or(|path| path.matches(&session.root))
            && self
                .remote
                .is_none_or(|net| net.contains(&session.peer.ip().to_canonical()))
    }
}

/// Re-check the matching live sessions now: tokens against the keys as they are on disk
/// (reloaded first), sessions an auth server admitted by asking it again (in the
/// background). 202 with the ids when any matched, 200 with none.
async fn revalidate(State(state): State<AdminState>, RawQuery(query): RawQuery) -> Response {
    let Some(sessions) = state.sessions else {
        return (StatusCode::METHOD_NOT_ALLOWED, "no sessions to revalidate here\n").into_response();
    };
    let filter = match Filter::parse(query.as_deref()) {
        Ok(filter) => filter,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    };
    let gate = sessions.gate.clone();
    let reload = tokio::task::spawn_blocking(move || gate.reload()).await;
    if let Ok(Err(err)) = &reload {
        // The old keys stay in use; the check still runs against them.
        tracing::warn!(%err, "could not reload the keys before revalidating");
    }
    let done = sessions.revalidate_matching(|session| filter.matches(session));
    let status = match done.ids.is_empty() {
        true => StatusCode::OK,
        false => StatusCode::ACCEPTED,
    };
    let body = serde_json::json!({ "ids": done.ids, "ended": done.ended, "asked": done.asked });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use moq_core::model::cache::Cache;
    use tower::ServiceExt;

    use super::*;
    use crate::{admission::Policy, metrics::Builder};

    fn state(max_sessions: u32) -> AdminState {
        let mut builder = Builder::new();
        let registry = Registry::new(builder.registry());
        let cluster = Cluster::new(Some("https://relay.example/".into()), builder.registry());
        let lifecycle = Lifecycle::new(builder.registry());
        let admission = Admission::new(Policy {
            connections_per_second_per_ip: 100,
            sessions_per_ip: 100,
            max_sessions,
        });
        builder.registry().register_collector(Box::new(Readiness {
            lifecycle: lifecycle.clone(),
            cluster: cluster.clone(),
            admission: admission.clone(),
            acme: None,
        }));
        AdminState {
            metrics: builder.finish(),
            registry,
            admission,
            media: Media::new(Cache::default(), Duration::ZERO, 42),
            cluster,
            lifecycle,
            acme: None,
            sessions: None,
        }
    }

    async fn get(state: &AdminState, uri: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(uri).body(Body::empty()).unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_the_lifecycle_and_the_session_count() {
        let state = state(1);
        assert_eq!(
            get(&state, "/ready").await,
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n".into())
        );
        state.lifecycle.set_ready();
        assert_eq!(get(&state, "/ready").await, (StatusCode::OK, "ready\n".into()));
        assert!(get(&state, "/metrics").await.1.contains("moq_relay_ready 1"));
        let ticket = state.admission.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(get(&state, "/ready").await.1, "not ready: full\n");
        // The gauge agrees with /ready for every reason, not only starting/draining.
        assert!(get(&state, "/metrics").await.1.contains("moq_relay_ready 0"));
        drop(ticket);
        assert_eq!(get(&state, "/ready").await.0, StatusCode::OK);
        state.lifecycle.drain();
        assert_eq!(get(&state, "/ready").await.1, "not ready: draining\n");
        assert!(get(&state, "/metrics").await.1.contains("moq_relay_ready 0"));
        let reasons = state.readiness();
        assert_eq!(reasons.check(), Err(NotReady::Draining));
    }

    #[tokio::test]
    async fn without_its_acme_certificate_the_relay_is_not_ready() {
        let tmp = tempfile::tempdir().unwrap();
        let server = crate::http::acme::tests::unreachable_acme(tmp.path());
        let mut state = state(10);
        state.acme = server.acme().cloned();
        state.lifecycle.set_ready();
        assert_eq!(
            get(&state, "/ready").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: waiting for the ACME certificate\n".into()
            )
        );
        // Draining still says draining.
        state.lifecycle.drain();
        assert_eq!(get(&state, "/ready").await.1, "not ready: draining\n");
    }

    #[tokio::test]
    async fn nodes_and_sessions_are_json() {
        let state = state(10);
        let (status, body) = get(&state, "/nodes").await;
        assert_eq!(status, StatusCode::OK);
        let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(nodes["id"], "42");
        assert_eq!(nodes["node"], "https://relay.example/");
        assert_eq!(get(&state, "/sessions").await.1, "[]");
        assert_eq!(get(&state, "/health").await.1, "ok\n");
    }

    #[test]
    fn revalidation_filters() {
        let session = |id: u64, root: &str, peer: &str| SessionInfo {
            id,
            peer: peer.parse().unwrap(),
            root: Path::new(root).unwrap(),
            version: moq_native::Version::Lite05,
            transport: moq_native::Transport::Quic,
            since: std::time::Instant::now(),
            connection: None,
            grant: Arc::new(crate::gate::Grant {
                root: Path::new(root).unwrap(),
                permissions: moq_core::session::Permissions::all(),
                claims: None,
                token: None,
                client_certificate: false,
                peer: false,
                expires: None,
            }),
            revoke: Default::default(),
            nudge: None,
            service_id: (id == 2).then(|| "00ff".to_string()),
        };
        let a = session(1, "demo/one", "203.0.113.9:1");
        let b = session(2, "demo/two", "[::ffff:198.51.100.2]:1");
        let c = session(3, "other", "203.0.113.10:1");
        let picks = |query: &str| -> Vec<u64> {
            let filter = Filter::parse(Some(query)).unwrap();
            [&a, &b, &c]
                .iter()
                .filter(|s| filter.matches(s))
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(picks(""), [1, 2, 3]);
        assert_eq!(picks("path=demo/**"), [1, 2]);
        assert_eq!(picks("path=/demo/one"), [1]);
        assert_eq!(picks("remote=203.0.113.0/24"), [1, 3]);
        assert_eq!(picks("remote=198.51.100.2"), [2]);
        assert_eq!(picks("id=00ff"), [2]);
        assert_eq!(picks("id=3&path=**"), [3]);
        for bad in ["query=jwt", "path=a//b", "remote=nope"] {
            assert!(Filter::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn revalidation_needs_the_sessions() {
        let state = state(10);
        let request = axum::http::Request::post("/sessions/revalidate")
            .body(Body::empty())
            .unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
