//! `moq`: publish to, subscribe from, and list broadcasts on a Media over QUIC
//! relay (moq-lite 03–06 over raw QUIC or WebTransport).

mod auth;
mod clock;
mod connection;
mod frames;
mod redact;
mod token;

use std::{
    io::{BufRead, Read, Write},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use connection::{Connection, Endpoint, Roles, Token};
use moq_core::{BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer, model::cache::Cache};
use moq_native::{Protocol, client};
use moq_proto::{Hops, Path};
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
    /// Read the token (a JWT) from this file; it is sent as the URL's `?jwt=` (in SETUP
    /// over raw QUIC) and re-read at every reconnection, so replacing the file rotates it.
    /// Without it the MOQ_TOKEN environment variable is used, if set. (A token in the URL
    /// works too, but anyone on the machine can read it with `ps`.)
    #[arg(long = "token-file", global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// How long to keep trying to reach a relay again after losing it (a restart, a
    /// network change), e.g. `30s`; `0s` gives up at once. GOAWAY is followed at once.
    #[arg(long = "reconnect-timeout", global = true, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    reconnect_timeout: Duration,
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

fn parse_duration(text: &str) -> Result<Duration, String> {
    moq_units::parse_duration(text)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // web-transport-quinn warns about every session a relay ends without its capsule;
    // that is not news to someone watching a clock.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},web_transport_quinn=error", cli.log_level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| redact::Stderr)
        .init();
    if let Err(err) = run(cli).await {
        // One line, with every token hidden.
        let message = format!("{err:#}").replace('\n', " ");
        eprintln!("moq: {}", redact::text(&message));
        std::process::exit(1);
    }
    // Exit now: a thread blocked reading stdin (`publish stdin`) would otherwise keep the
    // runtime, and the process, alive after the session is closed.
    std::process::exit(0);
}

/// Where the token comes from, given the URL (whose own `?jwt=` is taken out of it).
fn token_source(cli_file: Option<&PathBuf>, url: &mut Url) -> Token {
    if let Some(token) = connection::take_inline_token(url) {
        return Token::Inline(token);
    }
    if let Some(file) = cli_file {
        return Token::File(file.clone());
    }
    match std::env::var("MOQ_TOKEN") {
        Ok(token) if !token.trim().is_empty() => Token::Env(token),
        _ => Token::None,
    }
}

/// The URL a command dials.
fn command_url(command: &mut Command) -> Option<&mut Url> {
    match command {
        Command::Publish {
            source: Source::Clock { url, .. } | Source::Stdin { url, .. },
        } => Some(url),
        Command::Subscribe(args) => Some(&mut args.url),
        Command::Clock(args) => Some(&mut args.url),
        Command::Announced(args) => Some(&mut args.url),
        Command::Token(_) | Command::Auth(_) => None,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cli = match cli.command {
        Command::Token(args) => return token::run(args),
        Command::Auth(args) => return auth::run(args).await,
        _ => cli,
    };
    let token = match command_url(&mut cli.command) {
        Some(url) => token_source(cli.token_file.as_ref(), url),
        None => Token::None,
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
    let endpoint = Arc::new(Endpoint {
        client,
        token,
        reconnect: cli.reconnect_timeout,
    });
    let work = async {
        match cli.command {
            Command::Publish { source } => publish(&endpoint, source).await,
            Command::Subscribe(args) => subscribe(&endpoint, args).await,
            Command::Clock(args) => clock(&endpoint, args).await,
            Command::Announced(args) => announced(&endpoint, args).await,
            Command::Token(_) | Command::Auth(_) => Ok(()),
        }
    };
    // Interrupted (Ctrl-C, SIGTERM): stop, but still close the session below, so the
    // relay (and whoever watches our broadcasts) learns at once that we left.
    let result = tokio::select! {
        result = work => result,
        signal = interrupted() => {
            tracing::info!(signal, "stopping");
            Ok(())
        }
    };
    // Tell the relay we are gone rather than leaving it to time the session out.
    endpoint.client.close_and_wait(Duration::from_millis(500)).await;
    result
}

/// Resolves with the signal's name on Ctrl-C or SIGTERM (never, if neither can be watched).
async fn interrupted() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        },
        () = terminate => "SIGTERM",
    }
}

/// Run `work` until it ends or the connection is given up; close the connection after.
async fn until_failed<T>(
    mut connection: Connection,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = tokio::select! {
        result = work => result,
        err = connection.failed() => return Err(err),
    };
    // A track that ended with its session (the relay closed it: a token expired, ...)
    // ends the command with the session's reason, not as a success: the close reaches
    // the track and the connection's supervisor at the same moment.
    if let Ok(err) = tokio::time::timeout(SETTLE, connection.failed()).await {
        return Err(err);
    }
    connection.close().await;
    result
}

/// How long a finished command waits to learn whether its session was closed under it.
const SETTLE: Duration = Duration::from_millis(150);

/// An origin for what the relay announces to a viewer: a broadcast whose session was
/// lost stays (and its tracks wait) while we reconnect.
fn viewer_origin(endpoint: &Endpoint) -> Origin {
    Origin::new(Cache::default(), endpoint.reconnect)
}

fn broadcast_path(name: &str) -> anyhow::Result<Path> {
    let path = Path::new(name).with_context(|| format!("invalid broadcast name '{name}'"))?;
    if path.is_empty() {
        bail!("the broadcast name must not be empty");
    }
    Ok(path)
}

/// The parent of a broadcast path: the prefix a viewer asks the relay to list, so a
/// relay that will not show it says so at once.
fn parent(path: &Path) -> Path {
    path.as_str()
        .rsplit_once('/')
        .and_then(|(parent, _)| Path::new(parent).ok())
        .unwrap_or_else(Path::empty)
}

async fn publish(endpoint: &Arc<Endpoint>, source: Source) -> anyhow::Result<()> {
    let (url, name) = match &source {
        Source::Clock { url, broadcast } | Source::Stdin { url, broadcast, .. } => (url, broadcast),
    };
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let _publication = origin.publish(broadcast_path(name)?, broadcast.consume(), Hops::new());
    let roles = Roles {
        publish: Some(origin),
        consume: None,
        discover: Path::empty(),
    };
    // The track exists before the relay learns of the broadcast: a viewer that subscribes
    // at once must not be told it does not exist.
    let track = match &source {
        Source::Clock { .. } => TrackProducer::with_info(clock::TRACK, clock::info(), Cache::default()),
        Source::Stdin { track, .. } => {
            let info = TrackInfo {
                timescale: 1_000_000,
                ..Default::default()
            };
            TrackProducer::with_info(track.as_str(), info, Cache::default())
        }
    };
    let track = broadcast.create_track(track);
    let connection = Connection::open(endpoint.clone(), roles, url).await?;
    let work = async {
        match source {
            Source::Clock { .. } => clock::publish(track).await,
            Source::Stdin {
                format, group_size, ..
            } => publish_stdin(track, format, group_size.max(1)).await,
        }
    };
    until_failed(connection, async {
        work.await?;
        // Let subscribers drain what is buffered before closing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    })
    .await
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
    endpoint: &Arc<Endpoint>,
    url: &Url,
    name: &str,
    track: &str,
    wait: u64,
) -> anyhow::Result<(moq_core::TrackConsumer, Connection)> {
    let origin = viewer_origin(endpoint);
    let path = broadcast_path(name)?;
    let roles = Roles {
        publish: None,
        consume: Some(origin.clone()),
        discover: parent(&path),
    };
    let mut connection = Connection::open(endpoint.clone(), roles, url).await?;
    let broadcast = tokio::select! {
        b = origin.wait_for(&path, Duration::from_secs(wait)) => b,
        err = connection.failed() => return Err(err),
    };
    let shown = redact::text(url.as_str());
    let broadcast = broadcast
        .with_context(|| format!("broadcast '{name}' was not announced at {shown} within {wait}s"))?;
    Ok((broadcast.subscribe(track)?, connection))
}

async fn clock(endpoint: &Arc<Endpoint>, args: ClockArgs) -> anyhow::Result<()> {
    let (track, connection) = open_track(endpoint, &args.url, &args.broadcast, clock::TRACK, 10).await?;
    until_failed(connection, clock::subscribe(track, args.count)).await
}

async fn subscribe(endpoint: &Arc<Endpoint>, args: SubscribeArgs) -> anyhow::Result<()> {
    let (track, connection) =
        open_track(endpoint, &args.url, &args.broadcast, &args.track, args.wait).await?;
    until_failed(connection, write_frames(track, &args)).await
}

async fn write_frames(track: moq_core::TrackConsumer, args: &SubscribeArgs) -> anyhow::Result<()> {
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

async fn announced(endpoint: &Arc<Endpoint>, args: AnnouncedArgs) -> anyhow::Result<()> {
    let origin = viewer_origin(endpoint);
    let prefix = Path::new(&args.prefix).context("invalid prefix")?;
    // Asking for the prefix itself lets a relay that will not show it say so.
    let roles = Roles {
        publish: None,
        consume: Some(origin.clone()),
        discover: prefix.clone(),
    };
    let mut connection = Connection::open(endpoint.clone(), roles, &args.url).await?;
    let mut announced = origin.announced(prefix);
    // The relay sends its current set right after the session starts.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        err = connection.failed() => return Err(err),
    }
    let mut out = std::io::stdout().lock();
    while let Some(event) = announced.try_next() {
        if event.broadcast.is_some() {
            writeln!(out, "{}", event.suffix)?;
        }
    }
    out.flush()?;
    drop(out);
    if !args.watch {
        connection.close().await;
        return Ok(());
    }
    until_failed(connection, async {
        while let Some(event) = announced.next().await {
            let sign = if event.broadcast.is_some() { '+' } else { '-' };
            println!("{sign}{}", event.suffix);
        }
        Ok(())
    })
    .await
}
