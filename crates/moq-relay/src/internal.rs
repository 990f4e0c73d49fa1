//! The internal (ops) listener: `/metrics`, `/health`, `/ready`, `/nodes`,
//! `/sessions`. Plain HTTP, off by default, meant for a private address.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::relay::Shared;

/// A bound internal listener.
pub struct Internal {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Internal {
    /// Bind the listener.
    pub async fn bind(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for [internal] on {addr}: {e}"))?;
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok\n" }))
            .route("/ready", get(ready))
            .route("/nodes", get(nodes))
            .route("/sessions", get(sessions))
            .with_state(shared);
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

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    match shared.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
    }
}

async fn nodes(State(shared): State<Arc<Shared>>) -> Response {
    let cluster = &shared.cluster;
    let links: Vec<_> = cluster.links().iter().map(|l| l.to_json()).collect();
    let known: Vec<_> = cluster
        .nodes()
        .into_iter()
        .map(|(id, url)| serde_json::json!({ "id": id.to_string(), "url": url }))
        .collect();
    // The route chosen for every broadcast: where it comes from and at what cost.
    let mut announced = shared.origin.announced(moq_proto::Path::empty());
    let mut routes = Vec::new();
    for _ in 0..announced.initial() {
        let Some(event) = announced.try_next() else { break };
        let hops: Vec<String> = event.hops.ids().iter().map(|h| h.to_string()).collect();
        let via = match event.cost {
            0 if hops.is_empty() => "local",
            cost if cost >= crate::cluster::PLACEHOLDER_COST => "directory",
            _ => "link",
        };
        routes.push(serde_json::json!({
            "path": event.suffix.as_str(),
            "hops": hops,
            "cost": event.cost,
            "via": via,
        }));
    }
    // What the directory says: which relay originates which broadcast.
    let mut listed = cluster
        .directory
        .announced(moq_proto::Path::new("origin").unwrap_or_default());
    let mut origins = Vec::new();
    for _ in 0..listed.initial() {
        let Some(event) = listed.try_next() else { break };
        if let Some((node, path)) = event.suffix.as_str().split_once('/') {
            origins.push(serde_json::json!({ "path": path, "node": node }));
        }
    }
    let body = serde_json::json!({
        "id": shared.hop.to_string(),
        "origins": origins,
        "node": shared.node,
        "links": links,
        "nodes": known,
        "routes": routes,
        "upstream_subscriptions": shared.upstream.load(std::sync::atomic::Ordering::Relaxed),
        "broadcasts": shared.origin.paths().iter().map(|p| p.as_str().to_string()).collect::<Vec<_>>(),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn sessions(State(shared): State<Arc<Shared>>) -> Response {
    let list: Vec<_> = shared
        .sessions()
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "peer": s.peer.to_string(),
                "path": s.path,
                "version": s.version,
                "transport": s.transport,
                "seconds": s.since.elapsed().as_secs(),
                "rtt_ms": s.connection.rtt().as_millis() as u64,
            })
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Array(list).to_string(),
    )
        .into_response()
}
