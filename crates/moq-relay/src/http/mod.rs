//! The relay's HTTP listeners, each a plain `axum` router built from narrow state:
//! [`public`] (on the QUIC address and on `[web.https]`: certificate fingerprint,
//! announced, fetch, and the WebSocket fallback of [`websocket`]), [`admin`] (the
//! internal ops listener: metrics, health, readiness, nodes, sessions) and [`acme`]
//! (ACME HTTP-01 challenges on port 80, redirecting everything else to HTTPS).
//!
//! Routers are tested without sockets. [`serve`] runs one on a TCP listener, with TLS
//! or without, bounded for hostile clients: a cap on open connections, a deadline for
//! the TLS handshake and for the request headers (slowloris), and graceful shutdown.

pub mod acme;
pub mod admin;
pub mod public;
pub mod websocket;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, http::Request};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::Refusals;

/// Bounds on one HTTP listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Time for a client to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a client to send its request headers (each request).
    pub header_timeout: Duration,
    /// How long finishing requests may delay shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The peer address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Bind a TCP listener for the listener named `what` (for the error message).
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// A listener and what it serves.
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS, for HTTPS.
    pub tls: Option<moq_native::tls::TcpTls>,
    /// What it serves.
    pub router: Router,
    /// Its bounds.
    pub limits: Limits,
    /// Where refused connections are counted.
    pub refusals: Refusals,
}

/// Serve `listener` until `shutdown` is cancelled, then let requests in flight finish
/// (bounded by the listener's grace).
pub async fn serve(listener: Listener, shutdown: CancellationToken) {
    let Listener {
        tcp,
        tls,
        router,
        limits,
        refusals,
    } = listener;
    let addr = tcp
        .local_addr()
        .map_or_else(|err| err.to_string(), |a| a.to_string());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&limits);
    let tls = tls.map(Arc::new);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(%addr, %err, "HTTP accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refusals.refused("http_connections");
            tracing::debug!(%peer, "HTTP connection refused: too many open");
            continue;
        };
        // A WebSocket session's small writes (control messages, a frame's header before
        // its payload) must not wait for the peer's delayed ACK behind Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %err, "TCP_NODELAY not set");
        }
        let connection = Connection {
            stream,
            // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
            peer: SocketAddr::new(peer.ip().to_canonical(), peer.port()),
            permit,
            router: router.clone(),
            builder: builder.clone(),
            tls: tls.clone(),
            handshake_timeout: limits.handshake_timeout,
            watcher: graceful.watcher(),
            refusals: refusals.clone(),
        };
        tokio::spawn(connection.serve());
    }
    drop(tcp);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!(%addr, "HTTP connections still open at shutdown");
    }
}

/// The HTTP/1 and HTTP/2 server every connection of a listener uses: request headers
/// within the header timeout, and HTTP/2's CONNECT protocol (WebSocket over HTTP/2).
fn connection_builder(limits: &Limits) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
    Arc::new(builder)
}

/// One accepted TCP connection and what serving it takes.
struct Connection {
    stream: TcpStream,
    /// The peer's address, canonical (IPv4 as IPv4).
    peer: SocketAddr,
    /// Its place among the listener's open connections, held until it closes.
    permit: OwnedSemaphorePermit,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// TLS, for HTTPS.
    tls: Option<Arc<moq_native::tls::TcpTls>>,
    handshake_timeout: Duration,
    /// Lets shutdown wait for the connection.
    watcher: Watcher,
    refusals: Refusals,
}

impl Connection {
    /// The TLS handshake (bounded), if any, then HTTP until the connection closes;
    /// refused handshakes and too slow headers are counted.
    async fn serve(self) {
        let Connection {
            stream,
            peer,
            permit,
            router,
            builder,
            tls,
            handshake_timeout,
            watcher,
            refusals,
        } = self;
        let _permit = permit;
        let service = router.map_request(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            request
        });
        let service = TowerToHyperService::new(service);
        let result = match tls.map(|tls| tls.acceptor()) {
            Some(acceptor) => {
                let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                else {
                    refusals.refused("tls_handshake");
                    tracing::debug!(%peer, "TLS handshake failed or timed out");
                    return;
                };
                // An ACME TLS-ALPN-01 validation ends with the handshake (RFC 8737 §3).
                if stream.get_ref().1.alpn_protocol() == Some(moq_native::acme::ALPN_ACME_TLS) {
                    tracing::debug!(%peer, "ACME tls-alpn-01 validation answered");
                    return;
                }
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                watcher.watch(connection.into_owned()).await
            }
            None => {
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                watcher.watch(connection.into_owned()).await
            }
        };
        // A client too slow with its headers (slowloris) is cut off and counted.
        if let Err(err) = result
            && err
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout)
        {
            refusals.refused("http_header_timeout");
            tracing::debug!(%peer, "HTTP request headers too slow; closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken, Refusals) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let refusals = Refusals::default();
        let router = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let listener = Listener {
            tcp,
            tls: None,
            router,
            limits,
            refusals: refusals.clone(),
        };
        tokio::spawn(serve(listener, shutdown.clone()));
        (addr, shutdown, refusals)
    }

    /// Read until the server closes the connection (or 5 s pass); what was read.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let limits = Limits {
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let (addr, _shutdown, refusals) = start(limits).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let answer = read_to_close(&mut slow).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "closed after {:?}",
            started.elapsed()
        );
        assert!(!answer.contains("hello"), "{answer}");
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("refused", "", refusals.refused_family());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"reason="http_header_timeout"} 1"#), "{text}");
        // A prompt client is served.
        let mut fast = tokio::net::TcpStream::connect(addr).await.unwrap();
        fast.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_to_close(&mut fast).await.ends_with("hello"));
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_counted() {
        let limits = Limits {
            max_connections: 2,
            ..Default::default()
        };
        let (addr, _shutdown, refusals) = start(limits).await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            read_to_close(&mut c).await,
            "",
            "the third connection is closed unanswered"
        );
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("refused", "", refusals.refused_family());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"reason="http_connections"} 1"#), "{text}");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting() {
        let (addr, shutdown, _) = start(Limits::default()).await;
        shutdown.cancel();
        // Poll (with a deadline) until connecting is refused.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the listener closes after shutdown"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
