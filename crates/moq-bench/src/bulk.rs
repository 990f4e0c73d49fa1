//! `moq-quic-bulk`: the QUIC stack's own ceiling on this machine, with the relay's quinn
//! configuration (moq-native's endpoints, congestion controller, TLS and limits), and no
//! MoQ at all.
//!
//! `moq-quic-bulk send --bind ADDR` listens like a relay and, to every client that
//! connects, writes `--write`-byte chunks on `--streams` unidirectional streams at once, as
//! fast as quinn takes them, until the client leaves. `moq-quic-bulk recv --connect URL`
//! opens `--connections` connections, reads everything, and prints one JSON line with the
//! bytes received and the rate over `--duration` (after `--ramp`). Pin each side to its own
//! core with `taskset` to measure one sending core (`bench/compare --scenarios ceiling`).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use moq_native::{Connection, client, server};
use url::Url;

#[derive(Parser, Debug)]
#[command(
    name = "moq-quic-bulk",
    about = "Bare QUIC bulk transfer with the relay's quinn configuration"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// Accept connections and send to each as fast as the stack allows.
    Send {
        /// UDP address to listen on.
        #[arg(long, default_value = "127.0.0.1:4480")]
        bind: SocketAddr,
        /// Streams written at once per connection.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Bytes per write call.
        #[arg(long, default_value_t = 16 * 1024)]
        write: usize,
    },
    /// Connect, read everything, report the rate.
    Recv {
        /// The sender, e.g. `moql://127.0.0.1:4480`.
        #[arg(long)]
        connect: Url,
        /// Connections to open.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Measurement window.
        #[arg(long, default_value = "10s", value_parser = moq_units::parse_duration)]
        duration: Duration,
        /// Warm-up before the window.
        #[arg(long, default_value = "2s", value_parser = moq_units::parse_duration)]
        ramp: Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().role {
        Role::Send { bind, streams, write } => send(bind, streams, write).await,
        Role::Recv {
            connect,
            connections,
            duration,
            ramp,
        } => recv(connect, connections, duration, ramp).await,
    }
}

async fn send(bind: SocketAddr, streams: usize, write: usize) -> anyhow::Result<()> {
    let server = server::Server::bind(server::Config {
        bind,
        tls: server::TlsConfig {
            generate: vec!["localhost".to_string()],
            ..Default::default()
        },
        ..Default::default()
    })
    .context("binding the sender")?;
    eprintln!("moq-quic-bulk: sending on {}", server.local_addr()?);
    let chunk = Bytes::from(vec![0x5a; write.max(1)]);
    while let Some(incoming) = server.accept().await {
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let request = match incoming.accept().await {
                Ok(request) => request,
                Err(err) => return eprintln!("moq-quic-bulk: handshake failed: {err}"),
            };
            let conn = request.connection().clone();
            if let Err(err) = request.ok().await {
                return eprintln!("moq-quic-bulk: session refused: {err}");
            }
            let mut writers = tokio::task::JoinSet::new();
            for _ in 0..streams.max(1) {
                let conn = conn.clone();
                let chunk = chunk.clone();
                writers.spawn(async move {
                    let Ok(mut stream) = conn.open_uni().await else {
                        return;
                    };
                    // Until the receiver goes away.
                    while stream.write_chunk(chunk.clone()).await.is_ok() {}
                });
            }
            // Ends when the receiver closes the connection.
            while writers.join_next().await.is_some() {}
        });
    }
    Ok(())
}

async fn recv(url: Url, connections: usize, duration: Duration, ramp: Duration) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "moql" | "moqt") {
        anyhow::bail!("the sender must be reached over QUIC: use moql:// or moqt://, not {url}");
    }
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            insecure: true,
            ..Default::default()
        },
        ..Default::default()
    })?;
    let received = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..connections.max(1) {
        let connected = client.connect(&url).await.context("connecting to the sender")?;
        let Connection::Quic(session) = connected.session else {
            anyhow::bail!("{url} was reached over a WebSocket, not QUIC");
        };
        let conn: quinn::Connection = (*session).clone();
        let received = received.clone();
        let reader = conn.clone();
        tokio::spawn(async move {
            while let Ok(mut stream) = reader.accept_uni().await {
                let received = received.clone();
                tokio::spawn(async move {
                    while let Ok(Some(chunk)) = stream.read_chunk(usize::MAX, true).await {
                        received.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        conns.push(conn);
    }
    tokio::time::sleep(ramp).await;
    let (start, before) = (Instant::now(), received.load(Ordering::Relaxed));
    tokio::time::sleep(duration).await;
    let bytes = received.load(Ordering::Relaxed).saturating_sub(before);
    let secs = start.elapsed().as_secs_f64();
    let lost: u64 = conns.iter().map(|c| c.stats().path.lost_packets).sum();
    let sent: u64 = conns.iter().map(|c| c.stats().path.sent_packets).sum();
    for conn in &conns {
        conn.close(0u32.into(), b"done");
    }
    println!(
        "{}",
        serde_json::json!({
            "bytes": bytes,
            "seconds": secs,
            "gbit_per_s": bytes as f64 * 8.0 / secs / 1e9,
            "connections": conns.len(),
            "receiver_packets_sent": sent,
            "receiver_packets_lost": lost,
        })
    );
    Ok(())
}
