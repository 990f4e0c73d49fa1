//! `moq-bench`: a light Media over QUIC load generator. One process runs P
//! publisher sessions and S subscriber sessions per broadcast (each its own
//! QUIC or WebTransport session) against any moq-lite relay, and measures
//! end-to-end latency from the send time every frame carries.

mod behind;
mod payload;
mod stats;
mod units;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Parser;
use moq_core::{
    BroadcastConsumer, BroadcastProducer, Frame, GroupConsumer, Origin, TrackInfo, TrackProducer,
    model::cache::Cache, session::Config as SessionConfig,
};
use moq_native::{Protocol, adapter::MoqSession, client};
use moq_proto::{Hops, Path, Role};
use serde::Serialize;
use url::Url;

use crate::{
    behind::Behind,
    payload::Header,
    stats::{Histogram, exact_quantile},
    units::parse_bitrate,
};

/// The track every publisher publishes.
const TRACK: &str = "video";
/// Behind-live is sampled on a grid of this step for its distribution.
const BEHIND_STEP: Duration = Duration::from_millis(10);

#[derive(Parser, Debug, Clone)]
#[command(
    name = "moq-bench",
    version,
    about = "Load a MoQ relay with synthetic video-like broadcasts and measure end-to-end latency"
)]
struct Cli {
    /// Relay URL: moqt:// (raw QUIC), https:// or http:// (WebTransport; http pins
    /// /certificate.sha256), wss:// or ws:// (qmux over WebSocket). There is no fallback
    /// between them: a run measures one transport.
    #[arg(long)]
    url: Url,
    /// Subscribers connect here instead of --url (another relay of a cluster: measures the
    /// latency a hop adds). Give each relay's --tls-fingerprint.
    #[arg(long = "subscribe-url")]
    subscribe_url: Option<Url>,
    /// Accept exactly the server certificate with this SHA-256 (hex); repeatable.
    #[arg(long = "tls-fingerprint", value_name = "HEX")]
    fingerprints: Vec<String>,
    /// Accept any certificate (development only).
    #[arg(long = "tls-insecure")]
    insecure: bool,
    /// Only offer these versions, moq-lite or moq-transport (`moq-lite-06`,
    /// `moq-transport-16`); repeatable. Default: every moq-lite version.
    #[arg(long = "version-offer", value_name = "VERSION")]
    versions: Vec<Protocol>,
    /// Publishers (broadcasts `<prefix>/p<n>`, track `video`).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per broadcast, each its own session.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Bitrate of each broadcast (e.g. 1mbit, 500kbit); 0 publishes a quiet broadcast with no frames.
    #[arg(long, default_value = "1mbit", value_parser = parse_bitrate)]
    bitrate: u64,
    /// Frames per second of each broadcast; 0 publishes a quiet broadcast.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Group (GOP) duration.
    #[arg(long, default_value = "2s", value_parser = moq_units::parse_duration)]
    group: Duration,
    /// Key-frame size relative to a delta frame.
    #[arg(long, default_value_t = 10.0)]
    keyframe_ratio: f64,
    /// Spread the subscribers' connections over this long.
    #[arg(long, default_value = "5s", value_parser = moq_units::parse_duration)]
    ramp: Duration,
    /// Measurement window, after the ramp.
    #[arg(long, default_value = "30s", value_parser = moq_units::parse_duration)]
    duration: Duration,
    /// How long to wait for frames in flight after the window.
    #[arg(long, default_value = "2s", value_parser = moq_units::parse_duration)]
    grace: Duration,
    /// Extra subscribers joining (and, after --churn-life, leaving) per second, spread over the broadcasts.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// How long each churning subscriber stays.
    #[arg(long, default_value = "2s", value_parser = moq_units::parse_duration)]
    churn_life: Duration,
    /// UDP sockets (QUIC endpoints) the sessions are spread over.
    #[arg(long, default_value_t = 8)]
    endpoints: usize,
    /// Broadcast name prefix.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Write the JSON summary to this file instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// A viewer whose newest frame is older than this is "behind live" (see `behind_live` in
    /// the summary).
    #[arg(long, default_value = "500ms", value_parser = moq_units::parse_duration)]
    behind_threshold: Duration,
    /// Log level (or set RUST_LOG).
    #[arg(long, default_value = "error")]
    log_level: String,
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Frame sizes of a broadcast.
#[derive(Debug, Clone, Copy)]
struct Plan {
    period: Duration,
    group_len: u32,
    key_size: usize,
    delta_size: usize,
}

impl Plan {
    fn new(cli: &Cli) -> Option<Self> {
        if cli.fps <= 0.0 || cli.bitrate == 0 {
            return None;
        }
        let group_len = (cli.fps * cli.group.as_secs_f64()).round().max(1.0) as u32;
        let group_bytes = cli.bitrate as f64 / 8.0 * (f64::from(group_len) / cli.fps);
        let ratio = cli.keyframe_ratio.max(1.0);
        let delta = group_bytes / (ratio + f64::from(group_len) - 1.0);
        Some(Self {
            period: Duration::from_secs_f64(1.0 / cli.fps),
            group_len,
            key_size: (delta * ratio).round() as usize,
            delta_size: delta.round() as usize,
        })
    }
}

/// What one steady subscriber saw, for the per-subscriber counts at the end.
#[derive(Debug, Default)]
struct SubState {
    /// Highest group sequence received so far (any time).
    highest: Option<u64>,
    /// Groups whose first frame was sent inside the window: lowest, highest, count.
    window_min: Option<u64>,
    window_max: u64,
    window_groups: u64,
    /// Behind-live accounting (set once subscribed).
    behind: Option<Behind>,
}

/// Everything the sessions report into.
struct Shared {
    cli: Cli,
    /// Measurement window, Unix microseconds of the send time.
    window: (u64, u64),
    stopping: AtomicBool,
    latency: Mutex<Histogram>,
    /// Latency of frames received since the last progress line.
    second: Mutex<Histogram>,
    setup: Mutex<Vec<u64>>,
    /// Behind-live of every steady viewer, sampled every [`BEHIND_STEP`] inside the window.
    behind: Mutex<Histogram>,
    churn_setup: Mutex<Vec<u64>>,
    subs: Mutex<Vec<Arc<Mutex<SubState>>>>,
    errors: Mutex<BTreeMap<String, u64>>,
    error_count: AtomicU64,
    frames_rx: AtomicU64,
    bytes_rx: AtomicU64,
    frames_window: AtomicU64,
    bytes_window: AtomicU64,
    gaps: AtomicU64,
    late_groups: AtomicU64,
    sent_total: AtomicU64,
    sent_window: AtomicU64,
    /// Groups whose first frame was sent inside the window (all publishers).
    groups_sent_window: AtomicU64,
    /// (viewer, group) pairs of window groups of which at least one frame arrived.
    groups_received: AtomicU64,
    /// (viewer, group) pairs of window groups of which every frame arrived.
    groups_complete: AtomicU64,
    /// Group streams the relay reset (steady viewers, any time).
    groups_reset: AtomicU64,
    pubs_up: AtomicU64,
    subs_up: AtomicU64,
    subs_failed: AtomicU64,
    churn_joined: AtomicU64,
    churn_left: AtomicU64,
    churn_failed: AtomicU64,
}

impl Shared {
    /// Nothing measured yet; `window` is the measurement window in Unix microseconds.
    fn new(cli: Cli, window: (u64, u64)) -> Self {
        Self {
            window,
            cli,
            stopping: AtomicBool::new(false),
            latency: Mutex::default(),
            second: Mutex::default(),
            setup: Mutex::default(),
            behind: Mutex::default(),
            churn_setup: Mutex::default(),
            subs: Mutex::default(),
            errors: Mutex::default(),
            error_count: AtomicU64::new(0),
            frames_rx: AtomicU64::new(0),
            bytes_rx: AtomicU64::new(0),
            frames_window: AtomicU64::new(0),
            bytes_window: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            late_groups: AtomicU64::new(0),
            sent_total: AtomicU64::new(0),
            sent_window: AtomicU64::new(0),
            groups_sent_window: AtomicU64::new(0),
            groups_received: AtomicU64::new(0),
            groups_complete: AtomicU64::new(0),
            groups_reset: AtomicU64::new(0),
            pubs_up: AtomicU64::new(0),
            subs_up: AtomicU64::new(0),
            subs_failed: AtomicU64::new(0),
            churn_joined: AtomicU64::new(0),
            churn_left: AtomicU64::new(0),
            churn_failed: AtomicU64::new(0),
        }
    }

    fn in_window(&self, sent: u64) -> bool {
        sent >= self.window.0 && sent < self.window.1
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    fn error(&self, what: impl std::fmt::Display) {
        if self.stopping() {
            return;
        }
        self.error_count.fetch_add(1, Relaxed);
        let mut text = what.to_string();
        text.truncate(160);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 32 || errors.contains_key(&text) {
            *errors.entry(text).or_default() += 1;
        }
    }
}

/// A connected session whose driver runs in the background.
struct Connection {
    session: MoqSession,
    driver: tokio::task::JoinHandle<moq_core::Result<()>>,
}

impl Connection {
    async fn closed(&mut self) -> String {
        match (&mut self.driver).await {
            Ok(Ok(())) => "the relay closed the session".to_string(),
            Ok(Err(err)) => format!("session ended: {err}"),
            Err(err) => format!("session task failed: {err}"),
        }
    }

    fn close(&self) {
        moq_core::transport::Session::close(&self.session, 0, "done");
    }
}

async fn connect(
    client: &client::Client,
    url: &Url,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> anyhow::Result<Connection> {
    let connected = client.connect(url).await.context("connect")?;
    let mut config = SessionConfig::new(connected.version.lite().unwrap_or(moq_proto::Version::Lite06));
    config.setup.role = Some(if publish.is_some() {
        Role::Publisher
    } else {
        Role::Subscriber
    });
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

fn broadcast_path(prefix: &str, n: usize) -> anyhow::Result<Path> {
    Path::new(&format!("{prefix}/p{n}")).context("invalid broadcast prefix")
}

async fn publisher(shared: Arc<Shared>, client: Arc<client::Client>, n: usize, plan: Option<Plan>) {
    let cli = &shared.cli;
    let path = match broadcast_path(&cli.prefix, n) {
        Ok(p) => p,
        Err(e) => return shared.error(format!("publisher: {e:#}")),
    };
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let info = TrackInfo {
        timescale: 1_000_000,
        ..Default::default()
    };
    let track = broadcast.create_track(TrackProducer::with_info(TRACK, info, Cache::default()));
    let _publication = origin.publish(path, broadcast.consume(), Hops::new());
    let mut connection = match connect(&client, &cli.url, Some(origin.clone()), None).await {
        Ok(c) => c,
        Err(e) => return shared.error(format!("publisher: {e:#}")),
    };
    shared.pubs_up.fetch_add(1, Relaxed);
    let work = publish(&shared, &track, plan, n);
    tokio::select! {
        () = work => {}
        why = connection.closed() => shared.error(format!("publisher: {why}")),
    }
    shared.pubs_up.fetch_sub(1, Relaxed);
}

/// Publisher `n`'s frames, by `plan` (none: a quiet broadcast, announced and never a
/// frame), in groups of `plan.group_len`, until the bench stops.
async fn publish(shared: &Shared, track: &TrackProducer, plan: Option<Plan>, n: usize) {
    let cli = &shared.cli;
    let Some(plan) = plan else {
        // A quiet broadcast: announced, never a frame.
        return std::future::pending::<()>().await;
    };
    // Spread the publishers' frames over the frame period.
    let phase = plan.period.mul_f64(n as f64 / cli.publishers.max(1) as f64);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + phase, plan.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut frame = 0u64;
    let mut sequence = 0u64;
    let mut group = None;
    let mut index = 0u32;
    while !shared.stopping() {
        ticks.tick().await;
        if group.is_none() {
            match track.create_group(sequence) {
                Ok(g) => group = Some(g),
                Err(e) => return shared.error(format!("publisher: create group: {e}")),
            }
            index = 0;
        }
        let sent = unix_micros();
        let header = Header {
            sent_micros: sent,
            frame,
            group: sequence,
            index,
            group_len: plan.group_len,
        };
        let size = if index == 0 {
            plan.key_size
        } else {
            plan.delta_size
        };
        if let Some(g) = group.as_mut() {
            g.write(Frame {
                timestamp: sent,
                payload: payload::encode(&header, size),
            });
        }
        shared.sent_total.fetch_add(1, Relaxed);
        if shared.in_window(sent) {
            shared.sent_window.fetch_add(1, Relaxed);
            if index == 0 {
                shared.groups_sent_window.fetch_add(1, Relaxed);
            }
        }
        frame += 1;
        index += 1;
        if index >= plan.group_len {
            if let Some(g) = group.take() {
                g.finish();
            }
            sequence += 1;
        }
    }
}

/// Connect, wait for the broadcast, subscribe. Returns the setup time too.
async fn open(
    shared: &Shared,
    client: &client::Client,
    path: &Path,
) -> anyhow::Result<(Connection, BroadcastConsumer, moq_core::TrackConsumer, u64)> {
    let start = Instant::now();
    let origin = Origin::default();
    let url = shared.cli.subscribe_url.as_ref().unwrap_or(&shared.cli.url);
    let mut connection = connect(client, url, None, Some(origin.clone())).await?;
    let broadcast = tokio::select! {
        b = origin.wait_for(path, Duration::from_secs(15)) => b,
        why = connection.closed() => anyhow::bail!("{why}"),
    };
    let broadcast = broadcast.with_context(|| format!("'{path}' was not announced within 15 s"))?;
    let track = broadcast.subscribe(TRACK).context("subscribe")?;
    Ok((connection, broadcast, track, micros(start.elapsed())))
}

/// Read one group; `state` is set for steady subscribers (which measure).
async fn read_group(shared: Arc<Shared>, mut group: GroupConsumer, state: Option<Arc<Mutex<SubState>>>) {
    let mut tally = Tally::new(&shared);
    loop {
        match group.next_frame().await {
            Ok(Some(frame)) => {
                let now = unix_micros();
                let len = frame.payload.len() as u64;
                shared.frames_rx.fetch_add(1, Relaxed);
                shared.bytes_rx.fetch_add(len, Relaxed);
                let Some(state) = &state else { continue };
                let Some(header) = payload::decode(&frame.payload) else {
                    shared.error("a frame too short for the bench header");
                    continue;
                };
                tally.frame(&shared, state, &header, now, len);
            }
            Ok(None) => break,
            // The relay gave up on this group (a slow viewer skips to newer groups): not an
            // error; its missing tail is counted below.
            Err(moq_core::Error::Reset(_)) => {
                if state.is_some() {
                    shared.groups_reset.fetch_add(1, Relaxed);
                }
                break;
            }
            Err(e) => {
                if state.is_some() {
                    shared.error(format!("group: {e}"));
                }
                break;
            }
        }
    }
    if tally.counted == Some(true) && tally.next_index < tally.group_len && !shared.stopping() {
        shared
            .gaps
            .fetch_add(u64::from(tally.group_len - tally.next_index), Relaxed);
    }
}

/// What a steady subscriber has measured of one group so far.
struct Tally {
    next_index: u32,
    group_len: u32,
    /// Whether the group counts for gaps (its first frame to arrive was sent inside the
    /// window).
    counted: Option<bool>,
    /// Whether this group's first frame was sent inside the window (estimated from the first
    /// frame that arrives: its send time minus its index times the frame period).
    group_in_window: Option<bool>,
    frames_got: u32,
    /// The frame period, in microseconds (0 without a frame rate).
    period_us: f64,
    /// How-far-behind samples, kept to reuse the allocation.
    samples: Vec<u64>,
}

impl Tally {
    fn new(shared: &Shared) -> Self {
        Self {
            next_index: 0,
            group_len: 0,
            counted: None,
            group_in_window: None,
            frames_got: 0,
            period_us: if shared.cli.fps > 0.0 {
                1e6 / shared.cli.fps
            } else {
                0.0
            },
            samples: Vec::new(),
        }
    }

    /// Measure one frame (`len` bytes, arrived at `now`): latency, the window's counts,
    /// gaps, whole groups and how far behind the subscriber is.
    fn frame(&mut self, shared: &Shared, state: &Mutex<SubState>, header: &Header, now: u64, len: u64) {
        let latency = now.saturating_sub(header.sent_micros);
        let in_window = shared.in_window(header.sent_micros);
        shared
            .second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(latency);
        if in_window {
            shared
                .latency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(latency);
            shared.frames_window.fetch_add(1, Relaxed);
            shared.bytes_window.fetch_add(len, Relaxed);
        }
        let counts = *self.counted.get_or_insert_with(|| {
            if in_window {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.window_min = Some(s.window_min.map_or(header.group, |m| m.min(header.group)));
                s.window_max = s.window_max.max(header.group);
                s.window_groups += 1;
            }
            in_window
        });
        if counts && header.index > self.next_index {
            shared
                .gaps
                .fetch_add(u64::from(header.index - self.next_index), Relaxed);
        }
        self.next_index = self.next_index.max(header.index.saturating_add(1));
        self.group_len = header.group_len;
        let period_us = self.period_us;
        let whole = *self.group_in_window.get_or_insert_with(|| {
            let start = header
                .sent_micros
                .saturating_sub((f64::from(header.index) * period_us) as u64);
            let inside = shared.in_window(start);
            if inside {
                shared.groups_received.fetch_add(1, Relaxed);
            }
            inside
        });
        self.frames_got += 1;
        if whole && self.frames_got == self.group_len {
            shared.groups_complete.fetch_add(1, Relaxed);
        }
        let samples = &mut self.samples;
        {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(behind) = s.behind.as_mut() {
                behind.frame(now, header.sent_micros, &mut |v| samples.push(v));
            }
        }
        if !samples.is_empty() {
            let mut h = shared.behind.lock().unwrap_or_else(|e| e.into_inner());
            for v in samples.drain(..) {
                h.record(v);
            }
        }
    }
}

async fn subscriber(shared: Arc<Shared>, client: Arc<client::Client>, n: usize) {
    let path = match broadcast_path(&shared.cli.prefix, n) {
        Ok(p) => p,
        Err(e) => return shared.error(format!("subscriber: {e:#}")),
    };
    let (mut connection, _broadcast, mut track, setup) = match open(&shared, &client, &path).await {
        Ok(x) => x,
        Err(e) => {
            shared.subs_failed.fetch_add(1, Relaxed);
            return shared.error(format!("subscriber: {e:#}"));
        }
    };
    shared.setup.lock().unwrap_or_else(|e| e.into_inner()).push(setup);
    let state = Arc::new(Mutex::new(SubState {
        behind: Some(Behind::new(
            shared.window,
            micros(shared.cli.behind_threshold),
            micros(BEHIND_STEP),
            unix_micros(),
        )),
        ..SubState::default()
    }));
    shared
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(state.clone());
    shared.subs_up.fetch_add(1, Relaxed);
    loop {
        tokio::select! {
            next = track.next_group() => match next {
                Ok(Some(group)) => {
                    {
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        let seq = group.sequence();
                        if s.highest.is_some_and(|h| seq < h) {
                            shared.late_groups.fetch_add(1, Relaxed);
                        }
                        s.highest = Some(s.highest.map_or(seq, |h| h.max(seq)));
                    }
                    tokio::spawn(read_group(shared.clone(), group, Some(state.clone())));
                }
                Ok(None) => break,
                Err(e) => {
                    shared.error(format!("subscriber: track: {e}"));
                    break;
                }
            },
            why = connection.closed() => {
                shared.error(format!("subscriber: {why}"));
                break;
            }
        }
    }
    shared.subs_up.fetch_sub(1, Relaxed);
}

async fn churner(shared: Arc<Shared>, client: Arc<client::Client>, n: usize) {
    let path = match broadcast_path(&shared.cli.prefix, n) {
        Ok(p) => p,
        Err(e) => return shared.error(format!("churn: {e:#}")),
    };
    shared.churn_joined.fetch_add(1, Relaxed);
    let (mut connection, _broadcast, mut track, setup) = match open(&shared, &client, &path).await {
        Ok(x) => x,
        Err(e) => {
            shared.churn_failed.fetch_add(1, Relaxed);
            return shared.error(format!("churn: {e:#}"));
        }
    };
    shared
        .churn_setup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(setup);
    let life = tokio::time::sleep(shared.cli.churn_life);
    tokio::pin!(life);
    loop {
        tokio::select! {
            () = &mut life => break,
            next = track.next_group() => match next {
                Ok(Some(group)) => {
                    tokio::spawn(read_group(shared.clone(), group, None));
                }
                Ok(None) => break,
                Err(e) => {
                    shared.error(format!("churn: track: {e}"));
                    break;
                }
            },
            why = connection.closed() => {
                shared.error(format!("churn: {why}"));
                break;
            }
        }
    }
    connection.close();
    shared.churn_left.fetch_add(1, Relaxed);
}

#[derive(Serialize)]
struct Quantiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
    samples: u64,
}

/// Behind-live over the window (definition in `behind.rs`).
#[derive(Serialize)]
struct BehindSummary {
    threshold_ms: f64,
    /// Time-weighted distribution over all viewers (sampled every 10 ms).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Mean over viewers of the time spent above the threshold, seconds.
    mean_above_s: f64,
    /// Time above the threshold / (viewers × window).
    fraction_above: f64,
    /// The longest continuous stretch above the threshold of any viewer, seconds.
    longest_above_s: f64,
    /// Behind-live at the end of the window: mean and max over viewers.
    end_mean_ms: f64,
    end_max_ms: f64,
    viewers: u64,
}

#[derive(Serialize)]
struct Summary {
    url: String,
    publishers: usize,
    subscribers_per_broadcast: usize,
    bitrate_bps: u64,
    fps: f64,
    group_s: f64,
    keyframe_ratio: f64,
    ramp_s: f64,
    duration_s: f64,
    churn_per_s: f64,
    publishers_connected: u64,
    subscribers_connected: u64,
    subscribers_failed: u64,
    latency_ms: Quantiles,
    throughput_mbit_s: f64,
    frames_expected: u64,
    frames_delivered: u64,
    delivered_ratio: f64,
    bytes_delivered: u64,
    missing_frames: u64,
    missing_groups: u64,
    late_groups: u64,
    /// Window groups (first frame sent in the window) × subscribers.
    groups_expected: u64,
    /// Of those, the ones of which at least one frame arrived.
    groups_received: u64,
    /// Of those, the ones of which every frame arrived.
    groups_complete: u64,
    /// `groups_expected - groups_received`: groups a viewer never saw a frame of.
    groups_skipped: u64,
    /// Group streams the relay reset before their end (it skipped the rest of the group).
    groups_reset: u64,
    behind_live: BehindSummary,
    frames_received_total: u64,
    bytes_received_total: u64,
    frames_sent_total: u64,
    setup_ms: Quantiles,
    churn_joined: u64,
    churn_left: u64,
    churn_failed: u64,
    churn_setup_ms: Quantiles,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    elapsed_s: f64,
    /// The latency CDF over the window (the histogram `latency_ms` is read from):
    /// `[latency_ms, fraction of frames at most that late]` at fixed quantiles (0, 0.01, 0.05,
    /// 0.1 … 0.9, 0.95 … 0.9999, 1) and 10 log-spaced latencies per decade; empty without frames.
    latency_cdf_ms: Vec<[f64; 2]>,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn sample_quantiles(values: &mut [u64]) -> Quantiles {
    let mean = if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<u64>() as f64 / values.len() as f64
    };
    Quantiles {
        p50: ms(exact_quantile(values, 0.5)),
        p99: ms(exact_quantile(values, 0.99)),
        p999: ms(exact_quantile(values, 0.999)),
        max: ms(exact_quantile(values, 1.0)),
        mean: ms(mean as u64),
        samples: values.len() as u64,
    }
}

/// Close every viewer's behind-live window and aggregate.
fn summarize_behind(shared: &Shared) -> BehindSummary {
    let subs = shared.subs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut samples = Vec::new();
    let (mut above, mut longest, mut end_sum, mut end_max, mut viewers) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for sub in &subs {
        let mut s = sub.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = s.behind.as_mut() else { continue };
        b.finish(&mut |v| samples.push(v));
        viewers += 1;
        above += b.above();
        longest = longest.max(b.longest());
        let end = b.at_end().unwrap_or(0);
        end_sum += end;
        end_max = end_max.max(end);
    }
    let hist = {
        let mut h = shared.behind.lock().unwrap_or_else(|e| e.into_inner());
        for v in samples {
            h.record(v);
        }
        h.clone()
    };
    let window_s = (shared.window.1 - shared.window.0) as f64 / 1e6;
    let per_viewer = |x: u64| {
        if viewers == 0 {
            0.0
        } else {
            x as f64 / viewers as f64
        }
    };
    BehindSummary {
        threshold_ms: shared.cli.behind_threshold.as_secs_f64() * 1e3,
        p50_ms: ms(hist.quantile(0.5)),
        p99_ms: ms(hist.quantile(0.99)),
        max_ms: ms(hist.max()),
        mean_above_s: per_viewer(above) / 1e6,
        fraction_above: if window_s > 0.0 {
            per_viewer(above) / 1e6 / window_s
        } else {
            0.0
        },
        longest_above_s: longest as f64 / 1e6,
        end_mean_ms: per_viewer(end_sum) / 1e3,
        end_max_ms: ms(end_max),
        viewers,
    }
}

fn summarize(shared: &Shared, elapsed: Duration) -> Summary {
    let cli = &shared.cli;
    let latency = shared.latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let missing_groups = shared
        .subs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.window_min
                .map_or(0, |min| (s.window_max - min + 1).saturating_sub(s.window_groups))
        })
        .sum();
    let behind_live = summarize_behind(shared);
    let groups_expected = shared.groups_sent_window.load(Relaxed) * cli.subscribers as u64;
    let groups_received = shared.groups_received.load(Relaxed);
    let expected = shared.sent_window.load(Relaxed) * cli.subscribers as u64;
    let delivered = shared.frames_window.load(Relaxed);
    let bytes = shared.bytes_window.load(Relaxed);
    let mut setup = shared.setup.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut churn_setup = shared
        .churn_setup
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Summary {
        url: cli.url.to_string(),
        publishers: cli.publishers,
        subscribers_per_broadcast: cli.subscribers,
        bitrate_bps: cli.bitrate,
        fps: cli.fps,
        group_s: cli.group.as_secs_f64(),
        keyframe_ratio: cli.keyframe_ratio,
        ramp_s: cli.ramp.as_secs_f64(),
        duration_s: cli.duration.as_secs_f64(),
        churn_per_s: cli.churn,
        publishers_connected: shared.pubs_up.load(Relaxed),
        subscribers_connected: shared.subs_up.load(Relaxed),
        subscribers_failed: shared.subs_failed.load(Relaxed),
        latency_ms: Quantiles {
            p50: ms(latency.quantile(0.5)),
            p99: ms(latency.quantile(0.99)),
            p999: ms(latency.quantile(0.999)),
            max: ms(latency.max()),
            mean: ms(latency.mean() as u64),
            samples: latency.count(),
        },
        throughput_mbit_s: bytes as f64 * 8.0 / cli.duration.as_secs_f64().max(1e-9) / 1e6,
        frames_expected: expected,
        frames_delivered: delivered,
        delivered_ratio: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        bytes_delivered: bytes,
        missing_frames: shared.gaps.load(Relaxed),
        missing_groups,
        late_groups: shared.late_groups.load(Relaxed),
        groups_expected,
        groups_received,
        groups_complete: shared.groups_complete.load(Relaxed),
        groups_skipped: groups_expected.saturating_sub(groups_received),
        groups_reset: shared.groups_reset.load(Relaxed),
        behind_live,
        frames_received_total: shared.frames_rx.load(Relaxed),
        bytes_received_total: shared.bytes_rx.load(Relaxed),
        frames_sent_total: shared.sent_total.load(Relaxed),
        setup_ms: sample_quantiles(&mut setup),
        churn_joined: shared.churn_joined.load(Relaxed),
        churn_left: shared.churn_left.load(Relaxed),
        churn_failed: shared.churn_failed.load(Relaxed),
        churn_setup_ms: sample_quantiles(&mut churn_setup),
        errors: shared.error_count.load(Relaxed),
        error_kinds: shared.errors.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        elapsed_s: elapsed.as_secs_f64(),
        latency_cdf_ms: latency.cdf().into_iter().map(|(us, q)| [ms(us), q]).collect(),
    }
}

fn progress(shared: &Shared, t0: Instant, last: &mut (u64, u64, Instant)) {
    let now = Instant::now();
    let frames = shared.frames_rx.load(Relaxed);
    let bytes = shared.bytes_rx.load(Relaxed);
    let dt = now.duration_since(last.2).as_secs_f64().max(1e-6);
    let second = std::mem::take(&mut *shared.second.lock().unwrap_or_else(|e| e.into_inner()));
    let window = shared
        .latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .quantile(0.99);
    let unix = unix_micros();
    let phase = if unix < shared.window.0 {
        "ramp"
    } else if unix < shared.window.1 {
        "measure"
    } else {
        "grace"
    };
    eprintln!(
        "[{:>5.1}s {phase}] pubs {}/{} subs {}/{} (failed {}) churn +{} -{} | rx {:.2} Mbit/s {:.0} frames/s | \
         latency 1s p50 {:.1} p99 {:.1} max {:.1} ms, window p99 {:.1} ms | gaps {} late {} errors {}",
        t0.elapsed().as_secs_f64(),
        shared.pubs_up.load(Relaxed),
        shared.cli.publishers,
        shared.subs_up.load(Relaxed),
        shared.cli.publishers * shared.cli.subscribers,
        shared.subs_failed.load(Relaxed),
        shared.churn_joined.load(Relaxed),
        shared.churn_left.load(Relaxed),
        (bytes - last.1) as f64 * 8.0 / dt / 1e6,
        (frames - last.0) as f64 / dt,
        ms(second.quantile(0.5)),
        ms(second.quantile(0.99)),
        ms(second.max()),
        ms(window),
        shared.gaps.load(Relaxed),
        shared.late_groups.load(Relaxed),
        shared.error_count.load(Relaxed),
    );
    *last = (frames, bytes, now);
}

/// The QUIC clients the sessions share (`--endpoints`, at least one, at most one a
/// session).
fn clients(cli: &Cli, sessions: usize) -> anyhow::Result<Vec<Arc<client::Client>>> {
    let mut clients = Vec::new();
    for _ in 0..cli.endpoints.clamp(1, sessions.max(1)) {
        let client = client::Client::new(client::Config {
            tls: client::ClientTls {
                fingerprints: cli.fingerprints.clone(),
                insecure: cli.insecure,
                ..Default::default()
            },
            versions: cli.versions.clone(),
            // A slow handshake under load must not switch some sessions to WebSocket.
            websocket: client::WebSocketConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        })?;
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

/// Churning subscribers (`--churn` a second), from `start` until `until` or the stop,
/// spread over `clients`.
fn spawn_churn(
    shared: Arc<Shared>,
    clients: Vec<Arc<client::Client>>,
    start: tokio::time::Instant,
    until: Instant,
) {
    tokio::spawn(async move {
        let period = Duration::from_secs_f64(1.0 / shared.cli.churn);
        let mut ticks = tokio::time::interval_at(start, period);
        let mut k = 0usize;
        loop {
            ticks.tick().await;
            if Instant::now() >= until || shared.stopping() {
                break;
            }
            let client = clients[k % clients.len()].clone();
            tokio::spawn(churner(shared.clone(), client, k % shared.cli.publishers));
            k += 1;
        }
    });
}

/// Print progress each second (unless `--quiet`) until `end` or Ctrl-C.
async fn wait_for_end(shared: &Shared, t0: Instant, end: Instant) {
    let cli = &shared.cli;
    let mut last = (0, 0, Instant::now());
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if !cli.quiet {
                    progress(shared, t0, &mut last);
                }
            }
            () = tokio::time::sleep_until(end.into()) => break,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("moq-bench: interrupted; summarizing what was measured");
                break;
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    anyhow::ensure!(cli.publishers > 0, "--publishers must be at least 1");
    let plan = Plan::new(&cli);
    let sessions = cli.publishers * (cli.subscribers + 1);
    let clients = clients(&cli, sessions)?;
    let t0 = Instant::now();
    let unix0 = unix_micros();
    // Publishers first; subscribers after 0.5 s, spread over the ramp; the
    // window opens one second after the last subscriber started.
    let lead = Duration::from_millis(500);
    let window_start = lead + cli.ramp + Duration::from_secs(1);
    let window_end = window_start + cli.duration;
    let shared = Arc::new(Shared::new(
        cli.clone(),
        (unix0 + micros(window_start), unix0 + micros(window_end)),
    ));
    let mut next_client = 0usize;
    let mut pick = || {
        next_client += 1;
        clients[next_client % clients.len()].clone()
    };
    for n in 0..cli.publishers {
        tokio::spawn(publisher(shared.clone(), pick(), n, plan));
    }
    // Subscribers of different broadcasts interleave, so every broadcast fills up at the same pace.
    let total = cli.publishers * cli.subscribers;
    let mut starts = Vec::with_capacity(total);
    for i in 0..total {
        let at = lead + cli.ramp.mul_f64(i as f64 / total.max(1) as f64);
        starts.push((at, i % cli.publishers, pick()));
    }
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            for (at, n, client) in starts {
                tokio::time::sleep_until((t0 + at).into()).await;
                tokio::spawn(subscriber(shared.clone(), client, n));
            }
        });
    }
    if cli.churn > 0.0 {
        let churn_clients: Vec<_> = (0..clients.len()).map(|_| pick()).collect();
        spawn_churn(
            shared.clone(),
            churn_clients,
            (t0 + lead + cli.ramp).into(),
            t0 + window_end,
        );
    }
    let end = t0 + window_end + cli.grace;
    wait_for_end(&shared, t0, end).await;
    let summary = summarize(&shared, t0.elapsed());
    shared.stopping.store(true, Relaxed);
    let text = serde_json::to_string_pretty(&summary)?;
    match &cli.json {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    for client in &clients {
        client.close();
    }
    for client in &clients {
        client.close_and_wait(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moq-bench: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // Sessions still running are simply dropped with the process.
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Err(err) = result {
        eprintln!("moq-bench: {err:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use moq_core::GroupProducer;

    use super::*;

    /// A bench whose window covers all of time, 30 fps, 2 s groups (60 frames).
    fn shared() -> Arc<Shared> {
        let cli = Cli::parse_from(["moq-bench", "--url", "moqt://localhost/anon"]);
        Arc::new(Shared::new(cli, (0, u64::MAX)))
    }

    fn frame(index: u32) -> Frame {
        let header = Header {
            sent_micros: unix_micros(),
            frame: u64::from(index),
            group: 0,
            index,
            group_len: 60,
        };
        Frame {
            timestamp: header.sent_micros,
            payload: payload::encode(&header, 100),
        }
    }

    /// A group the relay cut short with a reset: 3 frames, then `err`.
    async fn read_aborted(err: moq_core::Error) -> Arc<Shared> {
        let shared = shared();
        let state = Arc::new(Mutex::new(SubState::default()));
        let (mut producer, consumer) = GroupProducer::new(0);
        for i in 0..3 {
            producer.write(frame(i));
        }
        producer.abort(err);
        read_group(shared.clone(), consumer, Some(state)).await;
        shared
    }

    #[tokio::test]
    async fn a_group_reset_by_the_relay_is_a_skipped_tail_not_an_error() {
        let shared = read_aborted(moq_core::Error::Reset(1)).await;
        assert_eq!(shared.groups_reset.load(Relaxed), 1);
        assert_eq!(shared.error_count.load(Relaxed), 0);
        assert_eq!(shared.groups_received.load(Relaxed), 1);
        assert_eq!(shared.groups_complete.load(Relaxed), 0);
        // The 57 frames the relay never sent are missing.
        assert_eq!(shared.gaps.load(Relaxed), 57);
    }

    #[tokio::test]
    async fn other_group_failures_are_still_errors() {
        let shared = read_aborted(moq_core::Error::Protocol("bad frame".into())).await;
        assert_eq!(shared.groups_reset.load(Relaxed), 0);
        assert_eq!(shared.error_count.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_whole_group_counts_as_complete() {
        let shared = shared();
        let state = Arc::new(Mutex::new(SubState::default()));
        let (mut producer, consumer) = GroupProducer::new(0);
        for i in 0..60 {
            producer.write(frame(i));
        }
        producer.finish();
        read_group(shared.clone(), consumer, Some(state)).await;
        assert_eq!(shared.groups_complete.load(Relaxed), 1);
        assert_eq!(shared.gaps.load(Relaxed), 0);
        assert_eq!(shared.error_count.load(Relaxed), 0);
    }
}
