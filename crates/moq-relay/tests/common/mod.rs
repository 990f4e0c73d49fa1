//! Helpers shared by the relay's integration test binaries (`fanout`, `http`, `auth`,
//! `ops`, `limits`, `cluster`): waiting on a condition with a deadline, a minimal HTTP
//! client, Prometheus sample parsing, an in-process relay and a relay process on
//! loopback, moq-lite clients, publishers, subscribers and frames.
//!
//! Nothing here sleeps to wait for something to happen: [`poll`] and [`eventually`]
//! check a condition until a deadline and fail with what they were waiting for. Nothing
//! here touches the process environment either: child processes get theirs through
//! `Command::env`, because the test harness runs tests on threads of one process.
#![allow(clippy::unwrap_used, dead_code)] // Test code; each binary uses a part of it.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path as FsPath, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackConsumer, TrackInfo, TrackProducer, model::cache::Cache,
    session::Config as SessionConfig,
};
use moq_native::{Version, adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use moq_relay::{Relay, config::Config, metrics::Metrics, session::Sessions};
use url::Url;

/// 127.0.0.1.
pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How long the tests wait for something that takes milliseconds on an idle machine
/// (a subscription to reach the publisher, a session to register): generous, because
/// the machine running them may be busy.
pub(crate) const SOON: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Waiting with a deadline
// ---------------------------------------------------------------------------------------

/// Run `check` until it returns `Ok`, for at most `timeout`, and return its value.
///
/// Between attempts it pauses 10 ms, doubling up to 200 ms. Each attempt is bounded by
/// the deadline too, so a probe that hangs cannot outlive it. On timeout it panics with
/// `what` and the detail of the last `Err`, which should say what was seen instead.
pub(crate) async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(detail)) => detail,
            Err(_) => "the last check was still running at the deadline".to_string(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Wait until `check` returns true, for at most `timeout`; panics naming `what`.
pub(crate) async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    poll(what, timeout, async || {
        if check().await {
            Ok(())
        } else {
            Err("still false".to_string())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// HTTP and metrics
// ---------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET over TCP: (status, body).
pub(crate) async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = Url::parse(url).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Bodies here are small and either sized or chunked in one chunk.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

/// The value of one sample in a Prometheus text exposition, named with its labels
/// exactly as exposed (`name{label="value"}`), or a bare name for an unlabelled one.
pub(crate) fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every sample of metric `name`, whatever its labels (0 if there is none).
pub(crate) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------
// Processes, ports, logs, certificates
// ---------------------------------------------------------------------------------------

/// Log to the test's output, filtered by `RUST_LOG` (once per test binary).
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A free port on `ip` for both UDP and TCP (best effort: another process may take it
/// before the relay binds it).
pub(crate) fn free_port(ip: IpAddr) -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// A CA and a client certificate for `{name}.relay` it signed, written as PEM files in
/// `dir`: (`{name}-ca.pem`, `{name}.pem`, `{name}.key`).
pub(crate) fn client_pki(dir: &FsPath, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![format!("{name}.relay")])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

// ---------------------------------------------------------------------------------------
// Relays
// ---------------------------------------------------------------------------------------

/// Where a relay under test listens, and (in process) its state to poll.
#[derive(Clone)]
pub(crate) struct TestRelay {
    /// The QUIC (and WebTransport) address.
    pub quic: SocketAddr,
    /// The public HTTP address.
    pub web: SocketAddr,
    /// The SHA-256 fingerprint of its certificate, hex.
    pub fingerprint: String,
    /// The internal (ops) listener, if it has one.
    pub internal: Option<SocketAddr>,
    /// An in-process relay's state; `None` for a relay process.
    pub state: Option<RelayState>,
}

/// What tests read of an in-process relay while it runs.
#[derive(Clone)]
pub(crate) struct RelayState {
    /// Its sessions: registry, media plane, lifecycle.
    pub sessions: Arc<Sessions>,
    /// Its metrics registry.
    pub metrics: Metrics,
}

/// Start an in-process relay on 127.0.0.1 with a self-signed certificate.
///
/// `extra` is more TOML; its lines starting with `tls.` go into `[server.tls]`, those
/// starting with `server.` into `[server]`. Without
/// an `[auth]` table everything is public; without a `[limits]` table the per-address
/// limits are lifted (every test client comes from 127.0.0.1).
pub(crate) async fn start_relay(extra: &str) -> TestRelay {
    let limits = if extra.contains("[limits]") {
        ""
    } else {
        "[limits]\nconnections_per_second_per_ip = 100000\nsessions_per_ip = 100000"
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[server.tls]
generate = ["localhost"]
{tls}
[web.http]
listen = "127.0.0.1:0"
{limits}
{extra}
"#,
        server = extra
            .lines()
            .filter(|l| l.starts_with("server."))
            .map(|l| &l[7..])
            .collect::<Vec<_>>()
            .join("\n"),
        tls = extra
            .lines()
            .filter(|l| l.starts_with("tls."))
            .map(|l| &l[4..])
            .collect::<Vec<_>>()
            .join("\n"),
        extra = extra
            .lines()
            .filter(|l| !l.starts_with("tls.") && !l.starts_with("server."))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    init_tracing();
    let mut config = Config::from_toml(&text, FsPath::new("test.toml")).unwrap();
    if !extra.contains("[auth]") {
        config.auth.public = Some(moq_relay::config::Public::everything());
    }
    config.validate().unwrap();
    // HTTP on port 0 takes the QUIC port's number over TCP, which another test's client
    // may hold as its ephemeral port at that moment: draw again (rare, and only in tests).
    let mut attempts = 0;
    let relay = loop {
        match Relay::bind(config.clone()).await {
            Ok(relay) => break relay,
            Err(err) if attempts < 5 && format!("{err:#}").contains("Address already in use") => {
                attempts += 1
            }
            Err(err) => panic!("{err:#}"),
        }
    };
    let test = TestRelay::of(&relay);
    tokio::spawn(relay.run());
    test
}

impl TestRelay {
    /// Describe a bound (not yet running) in-process relay. Without a public HTTP
    /// listener, `web` is the QUIC address.
    pub(crate) fn of(relay: &Relay) -> Self {
        let quic = relay.quic_addr().unwrap();
        Self {
            quic,
            web: relay.web_addr().unwrap_or(quic),
            fingerprint: relay.quic.fingerprints()[0].clone(),
            internal: relay.internal_addr(),
            state: Some(RelayState {
                sessions: relay.sessions.clone(),
                metrics: relay.metrics.clone(),
            }),
        }
    }

    /// A client that trusts this relay's certificate by fingerprint; `versions` empty
    /// means every version.
    pub(crate) fn client(&self, versions: &[Version]) -> client::Client {
        client::Client::new(client::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: client::ClientTls {
                fingerprints: vec![self.fingerprint.clone()],
                ..Default::default()
            },
            versions: versions.iter().map(|&v| v.into()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    /// A client offering exactly `versions` (moq-lite or moq-transport).
    pub(crate) fn client_for(&self, versions: &[moq_native::Protocol]) -> client::Client {
        client::Client::new(client::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: client::ClientTls {
                fingerprints: vec![self.fingerprint.clone()],
                ..Default::default()
            },
            versions: versions.to_vec(),
            ..Default::default()
        })
        .unwrap()
    }

    /// `scheme://localhost:PORT/path` on the QUIC port.
    pub(crate) fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://localhost:{}/{path}", self.quic.port())).unwrap()
    }

    /// The Prometheus text: rendered directly in process, else scraped from the
    /// internal listener.
    pub(crate) async fn metrics_text(&self) -> String {
        match (&self.state, self.internal) {
            (Some(state), _) => state.metrics.render(),
            (None, Some(internal)) => http_get(&format!("http://{internal}/metrics")).await.1,
            (None, None) => panic!("a relay process without an internal listener has no metrics"),
        }
    }

    /// The sum of every sample of metric `name`.
    pub(crate) async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics_text().await, name)
    }

    /// Wait until at least `n` subscriptions from peers are live on the relay (each
    /// already holds its track, so every group written from now on reaches it).
    pub(crate) async fn wait_subscriptions(&self, n: usize) {
        poll(
            &format!("{n} subscriptions live at the relay"),
            SOON,
            async || {
                let live = self.metric("moq_relay_subscriptions_active").await;
                if live >= n as f64 {
                    Ok(())
                } else {
                    Err(format!("{live} live"))
                }
            },
        )
        .await
    }

    /// Wait until at least `n` sessions are registered on the relay.
    pub(crate) async fn wait_sessions(&self, n: usize) {
        poll(
            &format!("{n} sessions registered at the relay"),
            SOON,
            async || {
                let open = match &self.state {
                    Some(state) => state.sessions.registry.len() as f64,
                    None => self.metric("moq_relay_sessions_active").await,
                };
                if open >= n as f64 {
                    Ok(())
                } else {
                    Err(format!("{open} registered"))
                }
            },
        )
        .await
    }

    /// The in-process relay's state (panics for a relay process).
    pub(crate) fn state(&self) -> &RelayState {
        self.state.as_ref().expect("an in-process relay")
    }
}

/// The relay binary as its own process (so its memory can be measured alone, or it can
/// be sent signals). Killed when dropped.
pub(crate) struct RelayProcess {
    /// The process.
    pub child: Child,
    /// Its addresses; `internal` is always set, `state` never.
    pub relay: TestRelay,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the `moq-relay` binary on a free port of 127.0.0.1 (QUIC and HTTP on the same
/// port, an internal listener on another), everything public, with `extra` flags; returns
/// once it serves its certificate fingerprint.
pub(crate) async fn spawn_relay(extra: &[&str]) -> RelayProcess {
    let port = free_port(LOCALHOST);
    let addr = SocketAddr::new(LOCALHOST, port);
    let internal = SocketAddr::new(LOCALHOST, free_port(LOCALHOST));
    let child = Command::new(env!("CARGO_BIN_EXE_moq-relay"))
        .args(["--server-bind", &addr.to_string()])
        .args(["--tls-generate", "localhost"])
        .args(["--web-http-listen", &addr.to_string()])
        .args(["--internal-listen", &internal.to_string()])
        .args(["--auth-public", ""])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut process = RelayProcess {
        child,
        relay: TestRelay {
            quic: addr,
            web: addr,
            fingerprint: String::new(),
            internal: Some(internal),
            state: None,
        },
    };
    let child = &mut process.child;
    process.relay.fingerprint = poll("the relay process to start", SOON, async || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the relay process exited at startup: {status}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return Err("HTTP port closed".into());
        }
        if tokio::net::TcpStream::connect(internal).await.is_err() {
            return Err("internal port closed".into());
        }
        match http_get(&format!("http://{addr}/certificate.sha256")).await {
            (200, fingerprint) => Ok(fingerprint),
            (status, body) => Err(format!("/certificate.sha256: {status} {body}")),
        }
    })
    .await;
    process
}

impl RelayProcess {
    /// Send SIGTERM (through `kill(1)`: the tests link no libc bindings).
    pub(crate) fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Send a signal by name (`HUP`, `TERM`, ...).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Wait (up to `timeout`) for the process to exit; returns how it exited.
    pub(crate) async fn exit_status(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        poll("the relay process to exit", timeout, async || {
            child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_string())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------
// Clients, publishers, subscribers, frames
// ---------------------------------------------------------------------------------------

/// Connect and run a session (moq-lite, or moq-transport when the client offers only
/// that) in the background; returns its handle and the negotiated version. Over raw
/// QUIC the URL path goes in SETUP.
pub(crate) async fn connect(
    client: &client::Client,
    url: &Url,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> (MoqSession, moq_native::Protocol) {
    let connected = client.connect(url).await.unwrap();
    let mut config = SessionConfig::new(Version::Lite06);
    config.publish = publish;
    config.consume = consume;
    config.setup.path = connected.setup_path(url);
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::spawn(moq_core::ietf::run_client(
        session.clone(),
        connected.version,
        config,
    ));
    (session, connected.version)
}

/// An in-process publisher of one broadcast with one track, `video`.
pub(crate) struct Publisher {
    /// What the session publishes from.
    pub origin: Origin,
    /// The broadcast.
    pub broadcast: BroadcastProducer,
    /// Its `video` track: write groups here.
    pub track: TrackProducer,
    /// The session to the relay.
    pub session: MoqSession,
    /// Keeps the broadcast announced; drop it to unannounce.
    pub publication: moq_core::Publication,
}

impl Publisher {
    /// Wait until the relay subscribed to the `video` track. A subscriber whose
    /// subscription started this (the first on the track) then receives every group
    /// written from now on.
    pub(crate) async fn wait_subscribed(&self) {
        let track = &self.track;
        eventually(
            "the relay to subscribe to the publisher's track",
            SOON,
            async || track.consumers() >= 1,
        )
        .await
    }
}

/// Publish broadcast `name` under the root `anon`.
pub(crate) async fn publisher(
    relay: &TestRelay,
    client: &client::Client,
    scheme: &str,
    name: &str,
) -> Publisher {
    publisher_at(relay, client, scheme, "anon", name).await
}

/// Publish broadcast `name` under the session root `root`.
pub(crate) async fn publisher_at(
    relay: &TestRelay,
    client: &client::Client,
    scheme: &str,
    root: &str,
    name: &str,
) -> Publisher {
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let track = broadcast.create_track(TrackProducer::with_info(
        "video",
        TrackInfo::default(),
        Cache::default(),
    ));
    let publication = origin.publish(Path::new(name).unwrap(), broadcast.consume(), Hops::new());
    let (session, _) = connect(client, &relay.url(scheme, root), Some(origin.clone()), None).await;
    Publisher {
        origin,
        broadcast,
        track,
        session,
        publication,
    }
}

/// Subscribe to the `video` track of broadcast `name` under the root `anon`, once it is
/// announced. The subscription may still be on its way to the relay when this returns.
pub(crate) async fn subscriber(
    relay: &TestRelay,
    client: &client::Client,
    scheme: &str,
    name: &str,
) -> (TrackConsumer, MoqSession) {
    let origin = Origin::default();
    let (session, _) = connect(client, &relay.url(scheme, "anon"), None, Some(origin.clone())).await;
    let broadcast = origin
        .wait_for(&Path::new(name).unwrap(), Duration::from_secs(10))
        .await
        .expect("broadcast announced");
    (broadcast.subscribe("video").unwrap(), session)
}

/// Frame `index` of group `group`: payload `"{group}:{index}:"` padded with `x` to `size`.
pub(crate) fn frame(group: u64, index: u64, size: usize) -> Frame {
    let mut payload = format!("{group}:{index}:").into_bytes();
    payload.resize(size.max(payload.len()), b'x');
    Frame {
        timestamp: group * 1_000_000 + index * 1000,
        payload: Bytes::from(payload),
    }
}

/// Write group `seq` of `frames` frames of `size` bytes, and finish it.
pub(crate) fn write_group(track: &TrackProducer, seq: u64, frames: u64, size: usize) {
    let mut group = track.create_group(seq).unwrap();
    for i in 0..frames {
        group.write(frame(seq, i, size));
    }
    group.finish();
}

/// Read `groups` whole groups; returns (sequence, frames) each, by sequence
/// (groups travel on independent streams, so they may arrive out of order).
pub(crate) async fn read_groups(track: &mut TrackConsumer, groups: usize) -> Vec<(u64, Vec<Frame>)> {
    let mut out = Vec::new();
    while out.len() < groups {
        let mut group = tokio::time::timeout(Duration::from_secs(20), track.next_group())
            .await
            .expect("group in time")
            .unwrap()
            .expect("track still live");
        let mut frames = Vec::new();
        while let Some(f) = tokio::time::timeout(Duration::from_secs(20), group.next_frame())
            .await
            .expect("frame in time")
            .unwrap()
        {
            frames.push(f);
        }
        out.push((group.sequence(), frames));
    }
    out.sort_by_key(|(sequence, _)| *sequence);
    out
}
