//! A tiny moq server over WebSocket (qmux), for interop checks with `@moq/net`:
//! accepts WebSocket upgrades on plain TCP, negotiates the subprotocol with
//! `moq_native::qmux::subprotocol::select`, and publishes one broadcast `clock`
//! whose track `seconds` carries a group per second of ten frames `"<group>.<frame>"`.
//!
//! ```sh
//! cargo run -p moq-native --example qmux-clock -- [ADDR] [--wire qmux-00] [--version moq-lite-04]
//! ```
//!
//! `--wire` accepts only that QMux wire format, `--version` (repeatable) only those
//! moq-lite versions. Prints `listening ws://ADDR/` on stdout once bound, then one
//! line per session on stderr.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use moq_core::{BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer, model::cache::Cache};
use moq_native::qmux;
use moq_proto::{Hops, Path};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request, Response},
    http::{HeaderValue, StatusCode, header::SEC_WEBSOCKET_PROTOCOL},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: qmux-clock [ADDR] [--wire qmux-00|qmux-01] [--version moq-lite-0N]...";
    let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
    let mut only = Only::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wire" => only.wire = Some(args.next().context(usage)?),
            "--version" => only.versions.push(args.next().context(usage)?.parse()?),
            other => addr = other.parse().context(usage)?,
        }
    }
    let only = Arc::new(only);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    println!("listening ws://{}/", listener.local_addr()?);

    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let info = TrackInfo {
        priority: 1,
        max_latency: Duration::from_secs(2),
        timescale: 1000,
    };
    let track = broadcast.create_track(TrackProducer::with_info("seconds", info, Cache::default()));
    let _publication = origin.publish(Path::new("clock")?, broadcast.consume(), Hops::new());
    tokio::spawn(tick(track));

    loop {
        let (tcp, peer) = listener.accept().await?;
        let (origin, only) = (origin.clone(), only.clone());
        tokio::spawn(async move {
            if let Err(err) = serve_websocket_client(tcp, origin, &only).await {
                eprintln!("{peer}: {err:#}");
            }
        });
    }
}

/// Ten frames per group, one group per second.
async fn tick(track: TrackProducer) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for sequence in 0u64.. {
        let Ok(mut group) = track.create_group(sequence) else {
            return;
        };
        for frame in 0..10u64 {
            every.tick().await;
            group.write(Frame {
                timestamp: sequence * 1000 + frame * 100,
                payload: Bytes::from(format!("{sequence}.{frame}")),
            });
        }
        group.finish();
    }
}

/// Restrictions from the command line.
#[derive(Debug, Default)]
struct Only {
    /// Accept only subprotocols with this prefix (`qmux-00`).
    wire: Option<String>,
    /// Accept only these versions (empty: all).
    versions: Vec<moq_proto::Protocol>,
}

/// Upgrade one TCP connection to a qmux WebSocket and run a moq session on it.
async fn serve_websocket_client(tcp: TcpStream, origin: Origin, only: &Only) -> anyhow::Result<()> {
    let wire = only.wire.clone();
    let versions = only.versions.clone();
    let peer = tcp.peer_addr()?;
    let decided = Arc::new(Mutex::new(None));
    let record = decided.clone();
    // tungstenite's callback type, not ours.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let headers: Vec<&str> = request
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let offered = qmux::subprotocol::offered(headers)
            .into_iter()
            .filter(|p| wire.as_ref().is_none_or(|w| p.starts_with(&format!("{w}."))));
        match qmux::subprotocol::select(offered, &versions) {
            Ok(negotiated) => {
                if let Ok(value) = HeaderValue::from_str(&negotiated.subprotocol) {
                    response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
                }
                if let Ok(mut slot) = record.lock() {
                    *slot = Some(negotiated);
                }
                Ok(response)
            }
            Err(refusal) => {
                let mut reply = ErrorResponse::new(Some(refusal.to_string()));
                *reply.status_mut() = StatusCode::BAD_REQUEST;
                Err(reply)
            }
        }
    };
    let socket =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(qmux::websocket_config()))
            .await
            .context("WebSocket upgrade")?;
    let negotiated = decided
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .context("no subprotocol was chosen")?;
    eprintln!("{peer}: session on {}", negotiated.subprotocol);

    let session = qmux::Session::new(
        qmux::Ws(socket),
        qmux::Role::Server,
        negotiated.wire,
        qmux::Config::default(),
    );
    let Some(version) = negotiated.version.lite() else {
        anyhow::bail!("this example speaks moq-lite only");
    };
    let mut config = moq_core::session::Config::new(version);
    config.publish = Some(origin);
    let result = moq_core::session::run(session, config).await;
    eprintln!("{peer}: session ended: {result:?}");
    Ok(())
}
