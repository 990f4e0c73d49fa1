//! The relay's HTTP listeners, each a plain `axum` router built from narrow state:
//! [`public`] (on the QUIC address: certificate fingerprint, announced, fetch) and
//! [`admin`] (the internal ops listener: metrics, health, readiness, nodes, sessions).
//! Routers are tested without sockets; [`serve`] runs one on a listener until shutdown.

pub mod admin;
pub mod public;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bind a TCP listener for the listener named `what` (for the error message).
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then finish the requests
/// in flight.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let addr = listener.local_addr().ok();
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned());
    if let Err(err) = server.await {
        tracing::warn!(?addr, %err, "HTTP listener stopped");
    }
}
