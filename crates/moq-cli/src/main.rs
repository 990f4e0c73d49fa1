//! `moq`: publish to, subscribe from, and list broadcasts on a Media over QUIC
//! relay (moq-lite 03–06 over raw QUIC or WebTransport).

mod auth;
mod clock;
mod frames;
mod token;

use std::{
    io::{BufRead, Read, Write},
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer, model::cache::Cache,
    session::Config as SessionConfig,
};
use moq_native::{Protocol, adapter::MoqSession, client};
use moq_proto::{Hops, Path, Role};
use url::Url;

#[derive(Parser, Debug)]
#[command(
    name = "moq",
    version,
    about = "Publish, subscribe and list broadcasts on a MoQ relay"
)]
struct Cli {
    #[command(flatten)]
    tls: TlsArgs,
    /// Only offer these versions (e.g. moq-lite-04, or moq-transport-16 to speak IETF
    /// moq-transport); repeatable. Default: every moq-lite version.
    #[arg(long = "version-offer", global = true, value_name = "VERSION")]
    versions: Vec<Protocol>,
    /// Never fall back from https:// or http:// to a WebSocket (ws:// and wss:// URLs
    /// still use one).
    #[arg(long = "no-websocket", global = true)]
    no_websocket: bool,
    /// WebTransport's head start, in milliseconds, before the WebSocket fallback is tried.
    #[arg(
        long = "websocket-delay",
        global = true,
        value_name = "MS",
        default_value_t = 500
    )]
    websocket_delay: u64,
    /// Log level (or set RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct TlsArgs {
    /// Trust this CA certificate (PEM); repeatable.
    #[arg(long = "tls-root", global = true, value_name = "FILE")]
    roots: Vec<PathBuf>,
    /// Accept exactly the server certificate with this SHA-256 (hex); repeatable.
    #[arg(long = "tls-fingerprint", global = true, value_name = "HEX")]
    fingerprints: Vec<String>,
    /// Accept any certificate (development only).
    #[arg(long = "tls-insecure", alias = "tls-disable-verify", global = true)]
    insecure: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish a broadcast.
    Publish {
        #[command(subcommand)]
        source: Source,
    },
    /// Subscribe to a track and write its frames to stdout.
    Subscribe(SubscribeArgs),
    /// Print the clock broadcast's time lines (like the ecosystem's clock subscriber).
    Clock(ClockArgs),
    /// List the broadcasts announced under a prefix.
    Announced(AnnouncedArgs),
    /// Generate keys, and sign and verify tokens.
    Token(token::TokenArgs),
    /// Serve the auth-server contract to relays (`serve`), ask a relay to re-check its
    /// sessions (`revalidate`), and `generate`/`sign`/`verify` as `moq token`.
    Auth(auth::AuthArgs),
}

#[derive(Subcommand, Debug)]
enum Source {
    /// A clock: track `seconds`, one group per minute, one frame per second.
    Clock {
        /// Relay URL: https://, http:// (development: pins /certificate.sha256), moqt:// (raw
        /// QUIC), or wss:// / ws:// (WebSocket).
        url: Url,
        /// Broadcast name, relative to the URL path.
        #[arg(long)]
        broadcast: String,
    },
    /// Frames read from stdin.
    Stdin {
        /// Relay URL.
        url: Url,
        /// Broadcast name, relative to the URL path.
        #[arg(long)]
        broadcast: String,
        /// Track name.
        #[arg(long, default_value = "data")]
        track: String,
        /// How stdin is split into frames.
        #[arg(long, value_enum, default_value_t = Format::Lines)]
        format: Format,
        /// Frames per group (a late joiner starts at the latest group).
        #[arg(long, default_value_t = 1)]
        group_size: u64,
    },
}

/// How frames are written to or read from a byte stream.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One frame per line (the newline is not part of the frame).
    Lines,
    /// Each frame prefixed by its length as a 4-byte big-endian integer.
    Binary,
}

#[derive(Args, Debug)]
struct SubscribeArgs {
    /// Relay URL.
    url: Url,
    /// Broadcast name, relative to the URL path.
    #[arg(long)]
    broadcast: String,
    /// Track name.
    #[arg(long)]
    track: String,
    /// How frames are written to stdout.
    #[arg(long, value_enum, default_value_t = Format::Lines)]
    format: Format,
    /// Exit after this many frames.
    #[arg(long)]
    count: Option<u64>,
    /// How long to wait for the broadcast to be announced.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    wait: u64,
}

#[derive(Args, Debug)]
struct ClockArgs {
    /// Relay URL.
    url: Url,
    /// Broadcast name, relative to the URL path.
    #[arg(long)]
    broadcast: String,
    /// Exit after this many lines.
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args, Debug)]
struct AnnouncedArgs {
    /// Relay URL.
    url: Url,
    /// Only list broadcasts under this prefix.
    #[arg(default_value = "")]
    prefix: String,
    /// Keep running and print `+path` / `-path` as broadcasts come and go.
    #[arg(long)]
    watch: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(err) = run(cli).await {
        eprintln!("moq: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cli = match cli.command {
        Command::Token(args) => return token::run(args),
        Command::Auth(args) => return auth::run(args).await,
        _ => cli,
    };
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            roots: cli.tls.roots.clone(),
            fingerprints: cli.tls.fingerprints.clone(),
            insecure: cli.tls.insecure,
            ..Default::default()
        },
        versions: cli.versions.clone(),
        websocket: client::WebSocketConfig {
            enabled: !cli.no_websocket,
            delay: Duration::from_millis(cli.websocket_delay),
        },
        ..Default::default()
    })?;
    let result = match cli.command {
        Command::Publish { source } => publish(&client, source).await,
        Command::Subscribe(args) => subscribe(&client, args).await,
        Command::Clock(args) => {
            let track = open_track(&client, &args.url, &args.broadcast, clock::TRACK, 10).await?;
            clock::subscribe(track, args.count).await
        }
        Command::Announced(args) => announced(&client, args).await,
        Command::Token(_) | Command::Auth(_) => Ok(()),
    };
    // Tell the relay we are gone rather than leaving it to time the session out.
    client.close_and_wait(Duration::from_millis(500)).await;
    result
}

/// A connected session: its driver runs in the background.
struct Connection {
    session: MoqSession,
    driver: tokio::task::JoinHandle<moq_core::Result<()>>,
}

impl Connection {
    /// Wait for the session to end; an error if it ended badly.
    async fn closed(&mut self) -> anyhow::Result<()> {
        match (&mut self.driver).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err).context("session ended"),
            Err(err) => Err(err).context("session task failed"),
        }
    }
}

async fn connect(
    client: &client::Client,
    url: &Url,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> anyhow::Result<Connection> {
    let connected = client
        .connect(url)
        .await
        .with_context(|| format!("could not connect to {url}"))?;
    tracing::info!(version = %connected.version, transport = ?connected.transport, "connected");
    let mut config = SessionConfig::new(connected.version.lite().unwrap_or(moq_proto::Version::Lite06));
    config.setup.role = match (&publish, &consume) {
        (Some(_), None) => Some(Role::Publisher),
        (None, Some(_)) => Some(Role::Subscriber),
        _ => None,
    };
    config.publish = publish;
    config.consume = consume;
    config.setup.path = connected.setup_path(url);
    let session = MoqSession::new(connected.session, connected.transport);
    let driver = tokio::spawn(moq_core::ietf::run_client(
        session.clone(),
        connected.version,
        config,
    ));
    Ok(Connection { session, driver })
}

fn broadcast_path(name: &str) -> anyhow::Result<Path> {
    let path = Path::new(name).with_context(|| format!("invalid broadcast name '{name}'"))?;
    if path.is_empty() {
        bail!("the broadcast name must not be empty");
    }
    Ok(path)
}

async fn publish(client: &client::Client, source: Source) -> anyhow::Result<()> {
    let (url, name) = match &source {
        Source::Clock { url, broadcast } | Source::Stdin { url, broadcast, .. } => (url, broadcast),
    };
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let _publication = origin.publish(broadcast_path(name)?, broadcast.consume(), Hops::new());
    let mut connection = connect(client, url, Some(origin), None).await?;
    let work = async {
        match source {
            Source::Clock { .. } => {
                let track = broadcast.create_track(TrackProducer::with_info(
                    clock::TRACK,
                    clock::info(),
                    Cache::default(),
                ));
                clock::publish(track).await
            }
            Source::Stdin {
                track,
                format,
                group_size,
                ..
            } => {
                let info = TrackInfo {
                    timescale: 1_000_000,
                    ..Default::default()
                };
                let track = broadcast.create_track(TrackProducer::with_info(track, info, Cache::default()));
                publish_stdin(track, format, group_size.max(1)).await
            }
        }
    };
    tokio::select! {
        result = work => {
            result?;
            // Let subscribers drain what is buffered before closing.
            tokio::time::sleep(Duration::from_millis(500)).await;
            moq_core::transport::Session::close(&connection.session, 0, "done");
            Ok(())
        }
        result = connection.closed() => result.and_then(|()| bail!("the relay closed the session")),
    }
}

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Read frames from stdin on a blocking thread and publish them.
async fn publish_stdin(track: TrackProducer, format: Format, group_size: u64) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        match format {
            Format::Lines => {
                for line in stdin.lines() {
                    if tx.blocking_send(Bytes::from(line?)).is_err() {
                        break;
                    }
                }
            }
            Format::Binary => loop {
                let mut len = [0u8; 4];
                match stdin.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e.into()),
                }
                let len = u32::from_be_bytes(len) as usize;
                if len as u64 > moq_proto::limits::MAX_FRAME_SIZE {
                    bail!(
                        "frame of {len} bytes exceeds the {} byte limit",
                        moq_proto::limits::MAX_FRAME_SIZE
                    );
                }
                let mut frame = vec![0; len];
                stdin
                    .read_exact(&mut frame)
                    .context("stdin ended in the middle of a frame")?;
                if tx.blocking_send(Bytes::from(frame)).is_err() {
                    break;
                }
            },
        }
        Ok(())
    });
    let mut sequence = 0u64;
    let mut group = None;
    let mut in_group = 0u64;
    while let Some(payload) = rx.recv().await {
        if group.is_none() {
            group = Some(track.create_group(sequence)?);
            sequence += 1;
        }
        if let Some(g) = group.as_mut() {
            g.write(Frame {
                timestamp: micros(),
                payload,
            });
        }
        in_group += 1;
        if in_group >= group_size {
            if let Some(g) = group.take() {
                g.finish();
            }
            in_group = 0;
        }
    }
    if let Some(g) = group.take() {
        g.finish();
    }
    reader.await??;
    track.finish();
    Ok(())
}

/// Connect, wait for the broadcast to be announced, and subscribe to one track.
async fn open_track(
    client: &client::Client,
    url: &Url,
    name: &str,
    track: &str,
    wait: u64,
) -> anyhow::Result<moq_core::TrackConsumer> {
    let origin = Origin::default();
    let mut connection = connect(client, url, None, Some(origin.clone())).await?;
    let path = broadcast_path(name)?;
    let broadcast = tokio::select! {
        b = origin.wait_for(&path, Duration::from_secs(wait)) => b,
        result = connection.closed() => {
            result?;
            bail!("the relay closed the session");
        }
    };
    let broadcast =
        broadcast.with_context(|| format!("broadcast '{name}' was not announced at {url} within {wait}s"))?;
    Ok(broadcast.subscribe(track)?)
}

async fn subscribe(client: &client::Client, args: SubscribeArgs) -> anyhow::Result<()> {
    let track = open_track(client, &args.url, &args.broadcast, &args.track, args.wait).await?;
    let mut out = std::io::stdout().lock();
    let mut written = 0u64;
    let mut frames = frames::Frames::new(track);
    while let Some((_, _, frame)) = frames.next().await? {
        match args.format {
            Format::Lines => {
                out.write_all(&frame.payload)?;
                out.write_all(b"\n")?;
            }
            Format::Binary => {
                out.write_all(&(frame.payload.len() as u32).to_be_bytes())?;
                out.write_all(&frame.payload)?;
            }
        }
        out.flush()?;
        written += 1;
        if args.count.is_some_and(|c| written >= c) {
            return Ok(());
        }
    }
    Ok(())
}

async fn announced(client: &client::Client, args: AnnouncedArgs) -> anyhow::Result<()> {
    let origin = Origin::default();
    let mut connection = connect(client, &args.url, None, Some(origin.clone())).await?;
    let prefix = Path::new(&args.prefix).context("invalid prefix")?;
    let mut announced = origin.announced(prefix);
    // The relay sends its current set right after the session starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = std::io::stdout().lock();
    while let Some(event) = announced.try_next() {
        if event.broadcast.is_some() {
            writeln!(out, "{}", event.suffix)?;
        }
    }
    out.flush()?;
    drop(out);
    if !args.watch {
        moq_core::transport::Session::close(&connection.session, 0, "done");
        return Ok(());
    }
    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { return Ok(()) };
                let sign = if event.broadcast.is_some() { '+' } else { '-' };
                println!("{sign}{}", event.suffix);
            }
            result = connection.closed() => return result,
        }
    }
}
