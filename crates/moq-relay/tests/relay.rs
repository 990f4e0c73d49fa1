//! The relay end to end over real QUIC sockets on loopback: in-process relay,
//! in-process publishers and subscribers speaking moq-lite over raw QUIC and
//! WebTransport.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    net::SocketAddr,
    path::Path as FsPath,
    time::{Duration, Instant},
};

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackConsumer, TrackInfo, TrackProducer,
    model::cache::Cache,
    session::{self, Config as SessionConfig},
    transport::Session as _,
};
use moq_native::{Transport, Version, adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use moq_relay::{Relay, config::Config};
use url::Url;

mod http;
use http::http_get;

struct TestRelay {
    quic: SocketAddr,
    web: SocketAddr,
    fingerprint: String,
    internal: Option<SocketAddr>,
}

async fn start_relay(extra: &str) -> TestRelay {
    // Every test client comes from 127.0.0.1: lift the per-address limits.
    let limits = if extra.contains("[limits]") {
        ""
    } else {
        "[limits]\nconnections_per_second_per_ip = 100000\nsessions_per_ip = 100000"
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.tls]
generate = ["localhost"]
{tls}
[web.http]
listen = "127.0.0.1:0"
{limits}
{extra}
"#,
        // Extra [server.tls] keys go into the table above.
        tls = extra
            .lines()
            .filter(|l| l.starts_with("tls."))
            .map(|l| &l[4..])
            .collect::<Vec<_>>()
            .join("\n"),
        extra = extra
            .lines()
            .filter(|l| !l.starts_with("tls."))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = Config::from_toml(&text, FsPath::new("test.toml")).unwrap();
    if !extra.contains("[auth]") {
        config.auth.public = Some(moq_relay::config::Public::everything());
    }
    config.validate().unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let quic = relay.quic_addr().unwrap();
    let web = relay.web_addr().unwrap();
    let fingerprint = relay.quic.fingerprints()[0].clone();
    let internal = relay.internal_addr();
    tokio::spawn(relay.run());
    TestRelay {
        quic,
        web,
        fingerprint,
        internal,
    }
}

impl TestRelay {
    fn client(&self, versions: &[Version]) -> client::Client {
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

    fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://localhost:{}/{path}", self.quic.port())).unwrap()
    }
}

/// Connect and run a session in the background; returns the session handle.
async fn connect(
    client: &client::Client,
    url: &Url,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> (MoqSession, Version) {
    let connected = client.connect(url).await.unwrap();
    let mut config = SessionConfig::new(connected.version);
    config.publish = publish;
    config.consume = consume;
    if connected.transport == Transport::Quic {
        config.setup.path = Some(url.path().to_string());
    }
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::spawn(session::run(session.clone(), config));
    (session, connected.version)
}

struct Publisher {
    _origin: Origin,
    broadcast: BroadcastProducer,
    track: TrackProducer,
    session: MoqSession,
    _publication: moq_core::Publication,
}

async fn publisher(relay: &TestRelay, client: &client::Client, scheme: &str, name: &str) -> Publisher {
    publisher_at(relay, client, scheme, "anon", name).await
}

async fn publisher_at(
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
        _origin: origin,
        broadcast,
        track,
        session,
        _publication: publication,
    }
}

async fn subscriber(
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

fn frame(group: u64, index: u64, size: usize) -> Frame {
    let mut payload = format!("{group}:{index}:").into_bytes();
    payload.resize(size.max(payload.len()), b'x');
    Frame {
        timestamp: group * 1_000_000 + index * 1000,
        payload: Bytes::from(payload),
    }
}

fn write_group(track: &TrackProducer, seq: u64, frames: u64, size: usize) {
    let mut group = track.create_group(seq).unwrap();
    for i in 0..frames {
        group.write(frame(seq, i, size));
    }
    group.finish();
}

/// Read `groups` whole groups; returns (sequence, frames) each, by sequence
/// (groups travel on independent streams, so they may arrive out of order).
async fn read_groups(track: &mut TrackConsumer, groups: usize) -> Vec<(u64, Vec<Frame>)> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_two_hundred_subscribers_every_frame_in_order() {
    let relay = start_relay("").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;

    let mut subscribers = Vec::new();
    for i in 0..200 {
        // Half over raw QUIC, half over WebTransport.
        let scheme = if i % 2 == 0 { "moqt" } else { "https" };
        subscribers.push(subscriber(&relay, &client, scheme, "live").await);
    }
    // Let every subscription reach the publisher before the first group.
    tokio::time::sleep(Duration::from_millis(500)).await;

    const GROUPS: u64 = 5;
    const FRAMES: u64 = 10;
    let track = &publisher.track;
    let writer = async {
        for seq in 0..GROUPS {
            write_group(track, seq, FRAMES, 1000);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let readers = futures_join_all(
        subscribers
            .iter_mut()
            .map(|(t, _)| read_groups(t, GROUPS as usize)),
    );
    let ((), results) = tokio::join!(writer, readers);
    for (n, got) in results.into_iter().enumerate() {
        for (seq, (sequence, frames)) in got.iter().enumerate() {
            assert_eq!(*sequence, seq as u64, "subscriber {n}");
            let want: Vec<_> = (0..FRAMES).map(|i| frame(seq as u64, i, 1000)).collect();
            assert_eq!(frames, &want, "subscriber {n} group {seq}");
        }
    }
    // One upstream subscription serves all 200.
    assert_eq!(publisher.track.consumers(), 1);
}

/// Poll a set of futures to completion concurrently, in order.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Sequential awaits still make progress for all: the sessions run on their own tasks.
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_starts_at_the_latest_group() {
    let relay = start_relay("").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "https", "live").await;
    let (mut early, _s1) = subscriber(&relay, &client, "moqt", "live").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for seq in 0..3 {
        write_group(&publisher.track, seq, 2, 10);
    }
    assert_eq!(read_groups(&mut early, 3).await.last().unwrap().0, 2);

    let (mut late, _s2) = subscriber(&relay, &client, "moqt", "live").await;
    let first = read_groups(&mut late, 1).await;
    assert_eq!(first[0].0, 2, "a late joiner starts at the latest group");
    write_group(&publisher.track, 3, 2, 10);
    assert_eq!(read_groups(&mut late, 1).await[0].0, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_over_both_transports() {
    let relay = start_relay("").await;
    for version in Version::ALL {
        for scheme in ["moqt", "https"] {
            let client = relay.client(&[version]);
            let name = format!("v{}{scheme}", version.code() & 0xff);
            let publisher = publisher(&relay, &client, scheme, &name).await;
            let (mut track, session) = subscriber(&relay, &client, scheme, &name).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            write_group(&publisher.track, 7, 3, 100);
            let got = read_groups(&mut track, 1).await;
            assert_eq!(got[0].0, 7, "{version} {scheme}");
            assert_eq!(got[0].1.len(), 3, "{version} {scheme}");
            if version.has_frame_timestamps() {
                assert_eq!(
                    got[0].1[1].timestamp, 7_001_000,
                    "{version} {scheme}: timestamps carried"
                );
            }
            session.close(0, "done");
            publisher.session.close(0, "done");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_gone_subscribers_see_the_end_after_linger() {
    let relay = start_relay("[cluster]\nlinger = \"1s\"").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let viewer_origin = Origin::default();
    let (_viewer, _) = connect(
        &client,
        &relay.url("https", "anon"),
        None,
        Some(viewer_origin.clone()),
    )
    .await;
    let mut announced = viewer_origin.announced(Path::empty());
    let event = tokio::time::timeout(Duration::from_secs(5), announced.next())
        .await
        .unwrap()
        .unwrap();
    assert!(event.broadcast.is_some());

    // The publisher's connection dies abruptly.
    let gone = Instant::now();
    publisher.session.close(0, "crash");
    drop(publisher);
    let event = tokio::time::timeout(Duration::from_secs(5), announced.next())
        .await
        .unwrap()
        .unwrap();
    assert!(event.broadcast.is_none(), "unannounced");
    let waited = gone.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "kept for the linger: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "not much longer: {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_that_finishes_is_unannounced_at_once() {
    let relay = start_relay("[cluster]\nlinger = \"5s\"").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let viewer_origin = Origin::default();
    let (_viewer, _) = connect(
        &client,
        &relay.url("moqt", "anon"),
        None,
        Some(viewer_origin.clone()),
    )
    .await;
    let mut announced = viewer_origin.announced(Path::empty());
    tokio::time::timeout(Duration::from_secs(5), announced.next())
        .await
        .unwrap()
        .unwrap();
    // A clean unannounce (the publisher ends its broadcast) skips the linger.
    drop(publisher._publication);
    let event = tokio::time::timeout(Duration::from_secs(2), announced.next())
        .await
        .unwrap()
        .unwrap();
    assert!(event.broadcast.is_none());
    drop(publisher.broadcast);
}

/// Resident set size of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// A free port on 127.0.0.1 for both UDP and TCP (best effort).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The relay binary as its own process, so its memory can be measured alone.
struct RelayProcess {
    child: std::process::Child,
    relay: TestRelay,
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn_relay(extra: &[&str]) -> RelayProcess {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_moq-relay"))
        .args([
            "--server-bind",
            &addr,
            "--tls-generate",
            "localhost",
            "--web-http-listen",
            &addr,
        ])
        .args(["--auth-public", ""])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let web: SocketAddr = addr.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let fingerprint = loop {
        if tokio::net::TcpStream::connect(web).await.is_ok() {
            let (status, body) = http_get(&format!("http://{addr}/certificate.sha256")).await;
            if status == 200 {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "relay did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    RelayProcess {
        child,
        relay: TestRelay {
            quic: web,
            web,
            fingerprint,
            internal: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_delay_others_or_grow_memory() {
    let process = spawn_relay(&["--cache-capacity", "4MiB", "--cache-duration", "1s"]).await;
    let relay = &process.relay;
    let client = relay.client(&[Version::Lite06]);
    let publisher = publisher(relay, &client, "moqt", "live").await;
    let (mut fast, _fast_session) = subscriber(relay, &client, "moqt", "live").await;

    // A subscriber that subscribes, then never reads a byte of the groups.
    let stalled = client.connect(&relay.url("moqt", "anon")).await.unwrap();
    let stalled = MoqSession::new(stalled.session, stalled.transport);
    {
        use moq_proto::{ControlStream, Encode, Setup, Subscribe};
        let mut setup = moq_core::transport::Session::open_uni(&stalled).await.unwrap();
        let mut hello = moq_proto::DataStream::Setup.to_vec(Version::Lite06).unwrap();
        hello.extend(
            Setup {
                path: Some("/anon".into()),
                ..Default::default()
            }
            .to_vec(Version::Lite06)
            .unwrap(),
        );
        moq_core::transport::SendStream::write_all(&mut setup, &hello)
            .await
            .unwrap();
        moq_core::transport::SendStream::finish(&mut setup).unwrap();
        let (mut send, _recv) = moq_core::transport::Session::open_bi(&stalled).await.unwrap();
        let mut msg = ControlStream::Subscribe.to_vec(Version::Lite06).unwrap();
        msg.extend(
            Subscribe {
                id: 0,
                broadcast: Path::new("live").unwrap(),
                track: "video".into(),
                ..Default::default()
            }
            .to_vec(Version::Lite06)
            .unwrap(),
        );
        moq_core::transport::SendStream::write_all(&mut send, &msg)
            .await
            .unwrap();
        std::mem::forget(send);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 60 groups of 1 MB: far more than any window or queue may hold.
    let pid = process.child.id();
    let before = rss(pid);
    let track = &publisher.track;
    let mut latencies = Vec::new();
    let mut peak = before;
    for seq in 0..60u64 {
        let sent = Instant::now();
        write_group(track, seq, 10, 100_000);
        let got = read_groups(&mut fast, 1).await;
        assert_eq!(got[0].0, seq, "the fast subscriber gets every group, in order");
        latencies.push(sent.elapsed());
        peak = peak.max(rss(pid));
    }
    let worst = latencies.iter().max().unwrap();
    assert!(
        *worst < Duration::from_secs(1),
        "fast subscriber delayed: worst group took {worst:?}"
    );
    let grown = peak.saturating_sub(before);
    // Bounded by the cache (4 MiB), the stalled subscriber's groups in flight
    // (4 x 1 MB) and its connection's send window; not by the 60 MB published.
    assert!(
        grown < 32 << 20,
        "relay memory grew by {} MiB while a subscriber stalled",
        grown >> 20
    );
    stalled.close(0, "bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints() {
    let relay = start_relay("").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", relay.web);
        async move { http_get(&url).await }
    };
    let (status, body) = get("/certificate.sha256").await;
    assert_eq!((status, body.as_str()), (200, relay.fingerprint.as_str()));
    assert_eq!(get("/health").await, (200, "ok\n".to_string()));
    assert_eq!(get("/announced").await, (200, "anon/live\n".to_string()));
    assert_eq!(get("/announced/anon").await, (200, "live\n".to_string()));
    assert_eq!(get("/announced/other").await, (200, String::new()));

    write_group(&publisher.track, 0, 3, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get("/fetch/anon/live/video?group=0").await;
    assert_eq!(status, 200);
    assert_eq!(body, "0:0:0:1:0:2:");
    let (status, _) = get("/fetch/anon/missing/video").await;
    assert_eq!(status, 404);

    // Browser pages on another origin may read the fingerprint (CORS).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(relay.web).await.unwrap();
    stream
        .write_all(b"GET /certificate.sha256 HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_is_limited_to_public_prefixes() {
    let relay = start_relay("[auth]\npublic = \"anon\"").await;
    let client = relay.client(&[]);
    // Inside the public prefix: works.
    let _ok = publisher(&relay, &client, "moqt", "live").await;
    // Outside it: refused with a reason (WebTransport: HTTP 401 at CONNECT).
    let err = client.connect(&relay.url("https", "secret")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Raw QUIC: the path arrives in SETUP, so the refusal is a close with code 2.
    let connected = client.connect(&relay.url("moqt", "secret")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    let mut config = SessionConfig::new(connected.version);
    config.setup.path = Some("/secret".into());
    config.consume = Some(Origin::default());
    let result = tokio::time::timeout(Duration::from_secs(5), session::run(session, config))
        .await
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("unauthorized") || err.contains("code 2") || err.contains("not public"),
        "{err}"
    );
}

/// The value of one sample in a Prometheus text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic() {
    let relay = start_relay("[internal]\nlisten = \"127.0.0.1:0\"\n[auth]\npublic = \"anon\"").await;
    let internal = relay.internal.unwrap();
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(subscriber(&relay, &client, "https", "live").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for seq in 0..2 {
        write_group(&publisher.track, seq, 5, 1000);
    }
    for (track, _) in &mut subscribers {
        read_groups(track, 2).await;
    }
    // One refused session: no token, outside the public prefix.
    let _ = client.connect(&relay.url("https", "secret")).await;

    let (status, text) = http_get(&format!("http://{internal}/metrics")).await;
    assert_eq!(status, 200);
    // 10 frames of 1000 bytes in, to each of 3 subscribers out.
    assert_eq!(
        sample(&text, "moq_relay_bytes_received_total"),
        Some(10_000.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_bytes_sent_total"),
        Some(30_000.0),
        "{text}"
    );
    assert_eq!(sample(&text, "moq_relay_frames_received_total"), Some(10.0));
    assert_eq!(sample(&text, "moq_relay_groups_sent_total"), Some(6.0));
    assert_eq!(sample(&text, "moq_relay_subscriptions_active"), Some(3.0));
    assert_eq!(sample(&text, "moq_relay_broadcasts_active"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "moq_relay_sessions_active{transport=\"webtransport\",version=\"moq-lite-06\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"token_required\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&text, "moq_relay_ready"), Some(1.0));
    assert!(sample(&text, "moq_relay_tls_certificate_expiry_timestamp_seconds").unwrap() > 1.7e9);
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(text.contains("moq_relay_build_info{version="), "{text}");

    let (status, body) = http_get(&format!("http://{internal}/sessions")).await;
    assert_eq!(status, 200);
    let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 4, "{body}");
    assert_eq!(http_get(&format!("http://{internal}/health")).await.0, 200);
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_turns_ready_off_and_sends_goaway() {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\ntls.generate = [\"localhost\"]\n[web.http]\nlisten = \"127.0.0.1:0\"\n[internal]\nlisten = \"127.0.0.1:0\"\n[auth]\npublic = \"\"";
    let config = Config::from_toml(text, FsPath::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let internal = relay.internal_addr().unwrap();
    let test = TestRelay {
        quic: relay.quic_addr().unwrap(),
        web: relay.web_addr().unwrap(),
        fingerprint: relay.quic.fingerprints()[0].clone(),
        internal: None,
    };
    let handle = relay.handle();
    tokio::spawn(relay.run());
    assert_eq!(http_get(&format!("http://{internal}/ready")).await.0, 200);

    // A lite-04 WebTransport client that only listens for what the relay opens.
    let client = test.client(&[Version::Lite04]);
    let connected = client.connect(&test.url("https", "anon")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let drain = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drain(Duration::from_secs(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = http_get(&format!("http://{internal}/ready")).await;
    assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));

    // The relay opens an Announce stream (pull model) and then a Goaway stream.
    let mut saw_goaway = false;
    for _ in 0..2 {
        let (_send, mut recv) = tokio::time::timeout(Duration::from_secs(2), session.accept_bi())
            .await
            .unwrap()
            .unwrap();
        let chunk = moq_core::transport::RecvStream::read_chunk(&mut recv, 1)
            .await
            .unwrap()
            .unwrap();
        if chunk[0] == moq_proto::ControlStream::Goaway.code() as u8 {
            saw_goaway = true;
            break;
        }
    }
    assert!(saw_goaway, "GOAWAY sent on drain");
    // Nobody left on their own: the drain gives up after its timeout and closes.
    assert_eq!(drain.await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let port = free_port();
    let internal = free_port();
    let addr = format!("127.0.0.1:{port}");
    let internal_addr = format!("127.0.0.1:{internal}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moq-relay"))
        .args([
            "--server-bind",
            &addr,
            "--tls-generate",
            "localhost",
            "--web-http-listen",
            &addr,
        ])
        .args([
            "--auth-public",
            "",
            "--internal-listen",
            &internal_addr,
            "--drain-timeout",
            "1s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&internal_addr).await.is_err() {
        assert!(Instant::now() < deadline, "relay did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A relay that requires tokens signed by a fresh key; returns the key too.
async fn token_relay(extra: &str) -> (TestRelay, moq_auth::Key, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let path = dir.path().join("root.jwk");
    key.write_file(&path).unwrap();
    let relay = start_relay(&format!("[auth]\nkey = \"{}\"\n{extra}", path.display())).await;
    (relay, key, dir)
}

fn token(key: &moq_auth::Key, root: &str, put: &[&str], get: &[&str], exp: Option<u64>) -> String {
    let mut claims = moq_auth::Claims::new(root);
    claims.put = put.iter().map(|s| s.to_string()).collect();
    claims.get = get.iter().map(|s| s.to_string()).collect();
    claims.exp = exp;
    key.sign(&claims).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_exactly_their_scope_on_both_transports() {
    let (relay, key, _dir) = token_relay("[internal]\nlisten = \"127.0.0.1:0\"").await;
    let client = relay.client(&[]);
    let publish = token(&key, "room", &["cam"], &[], None);
    let watch = token(&key, "room", &[], &["cam"], None);

    // A publisher with a publish-only token, over raw QUIC (token in SETUP) ...
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let track = broadcast.create_track(TrackProducer::with_info(
        "video",
        TrackInfo::default(),
        Cache::default(),
    ));
    let _p = origin.publish(Path::new("cam").unwrap(), broadcast.consume(), Hops::new());
    let url = Url::parse(&format!(
        "moqt://localhost:{}/room?jwt={publish}",
        relay.quic.port()
    ))
    .unwrap();
    let connected = client.connect(&url).await.unwrap();
    let mut config = SessionConfig::new(connected.version);
    config.publish = Some(origin.clone());
    config.setup.path = Some(format!("/room?jwt={publish}"));
    tokio::spawn(session::run(
        MoqSession::new(connected.session, connected.transport),
        config,
    ));

    // ... and a viewer with a subscribe-only token, over WebTransport (token in the URL).
    let viewer = Origin::default();
    let url = Url::parse(&format!(
        "https://localhost:{}/room?jwt={watch}",
        relay.quic.port()
    ))
    .unwrap();
    let (_viewer, _) = connect(&client, &url, None, Some(viewer.clone())).await;
    let cam = viewer
        .wait_for(&Path::new("cam").unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut video = cam.subscribe("video").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_group(&track, 0, 2, 10);
    assert_eq!(read_groups(&mut video, 1).await[0].0, 0);

    // No token, a forged token, a token for another root: refused and counted by reason.
    let forged = token(
        &moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap(),
        "room",
        &[],
        &["cam"],
        None,
    );
    for (query, _) in [
        ("", "token_required"),
        (&format!("?jwt={forged}")[..], "bad_signature"),
    ] {
        let url = Url::parse(&format!("https://localhost:{}/room{query}", relay.quic.port())).unwrap();
        let err = client.connect(&url).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
    let url = Url::parse(&format!(
        "https://localhost:{}/other?jwt={watch}",
        relay.quic.port()
    ))
    .unwrap();
    assert!(client.connect(&url).await.is_err());

    let (_, text) = http_get(&format!("http://{}/metrics", relay.internal.unwrap())).await;
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"token_required\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"bad_signature\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"wrong_root\"}"),
        Some(1.0),
        "{text}"
    );

    // HTTP obeys the same rules.
    assert_eq!(
        http_get(&format!("http://{}/announced/room", relay.web)).await.0,
        401
    );
    let (status, body) = http_get(&format!("http://{}/announced/room?jwt={watch}", relay.web)).await;
    assert_eq!((status, body.as_str()), (200, "cam\n"));
    let (status, _) = http_get(&format!(
        "http://{}/fetch/room/cam/video?group=0&jwt={publish}",
        relay.web
    ))
    .await;
    assert_eq!(status, 401, "a publish-only token may not read");
    let (status, body) = http_get(&format!(
        "http://{}/fetch/room/cam/video?group=0&jwt={watch}",
        relay.web
    ))
    .await;
    assert_eq!((status, body.len()), (200, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closes_within_a_second_of_token_expiry() {
    let (relay, key, _dir) = token_relay("").await;
    let client = relay.client(&[]);
    let exp = now() + 2;
    let watch = token(&key, "", &[], &[""], Some(exp));
    let url = Url::parse(&format!("https://localhost:{}/?jwt={watch}", relay.quic.port())).unwrap();
    let (session, _) = connect(&client, &url, None, Some(Origin::default())).await;
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        moq_core::transport::Session::closed(&session),
    )
    .await
    .expect("closed at expiry");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(at < exp as f64 + 1.0, "closed {:.2}s after exp", at - exp as f64);
    assert!(at >= exp as f64 - 0.05, "closed before exp");
    assert!(closed.to_string().contains("expired"), "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_from_one_address_are_refused_cheaply() {
    let relay = start_relay(
        "[internal]\nlisten = \"127.0.0.1:0\"\n[limits]\nconnections_per_second_per_ip = 5\nsessions_per_ip = 1000\n[auth]\npublic = \"\"",
    )
    .await;
    let client = relay.client(&[]);
    // A publisher and a viewer connected before the flood.
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let (mut viewer, _v) = subscriber(&relay, &client, "https", "live").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Twelve connection attempts at once from the same address.
    let flood = std::sync::Arc::new(relay.client(&[]));
    let started = Instant::now();
    let attempts: Vec<_> = (0..12)
        .map(|_| {
            let flood = flood.clone();
            let url = relay.url("moqt", "anon");
            tokio::spawn(async move { flood.connect(&url).await.map(|_| ()).map_err(|e| e.to_string()) })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => ok += 1,
            Err(err) => {
                assert!(err.contains("refused"), "{err}");
                refused += 1;
            }
        }
    }
    // A burst of 5, then 5 per second while the flood lasted (handshakes take a
    // while on a loaded machine).
    let allowed = 5 + (5.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        ok >= 5 && ok <= allowed,
        "{ok} admitted, at most {allowed} allowed"
    );
    assert!(refused >= 12 - allowed, "{refused} refused");
    // The existing sessions keep receiving every frame during and after the flood.
    for seq in 0..3 {
        write_group(&publisher.track, seq, 4, 100);
    }
    let got = read_groups(&mut viewer, 3).await;
    assert_eq!(
        got.iter().map(|g| (g.0, g.1.len())).collect::<Vec<_>>(),
        [(0, 4), (1, 4), (2, 4)]
    );
    let (_, text) = http_get(&format!("http://{}/metrics", relay.internal.unwrap())).await;
    assert_eq!(
        sample(&text, "moq_relay_sessions_refused_total{reason=\"rate_limit\"}"),
        Some(refused as f64),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_keeps_sessions_and_serves_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = moq_native::tls::generate(&["localhost".to_string()]).unwrap();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n[auth]\npublic = \"\"\n",
        cert.display(),
        key.display()
    );
    let config = Config::from_toml(&text, FsPath::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let handle = relay.handle();
    let old = TestRelay {
        quic: relay.quic_addr().unwrap(),
        web: relay.quic_addr().unwrap(),
        fingerprint: relay.quic.fingerprints()[0].clone(),
        internal: None,
    };
    tokio::spawn(relay.run());
    let client = old.client(&[]);
    let publisher = publisher(&old, &client, "moqt", "live").await;
    let (mut track, _session) = subscriber(&old, &client, "https", "live").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_group(&publisher.track, 0, 1, 10);
    assert_eq!(read_groups(&mut track, 1).await[0].0, 0);

    // Swap the files and reload (what SIGHUP and the file watcher do).
    let second = moq_native::tls::generate(&["localhost".to_string()]).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    handle.reload_certificates().unwrap();

    // New connections see the new certificate ...
    let new = TestRelay {
        fingerprint: moq_native::tls::fingerprint(&second.cert_der),
        ..old
    };
    assert!(new.client(&[]).connect(&new.url("https", "anon")).await.is_ok());
    let err = old
        .client(&[])
        .connect(&old.url("https", "anon"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fingerprint"), "{err}");
    // ... and sessions opened before the swap keep receiving.
    write_group(&publisher.track, 1, 1, 10);
    assert_eq!(read_groups(&mut track, 1).await[0].0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_to_connected_clients_and_exits_within_the_drain_timeout() {
    let process = spawn_relay(&["--drain-timeout", "2s"]).await;
    let relay = &process.relay;
    let client = relay.client(&[Version::Lite04]);
    let connected = client.connect(&relay.url("https", "anon")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = process.child.id();
    let started = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut saw_goaway = false;
    for _ in 0..2 {
        let Ok(Ok((_send, mut recv))) =
            tokio::time::timeout(Duration::from_secs(3), session.accept_bi()).await
        else {
            break;
        };
        let chunk = moq_core::transport::RecvStream::read_chunk(&mut recv, 1)
            .await
            .unwrap()
            .unwrap();
        if chunk[0] == moq_proto::ControlStream::Goaway.code() as u8 {
            saw_goaway = true;
            break;
        }
    }
    assert!(saw_goaway, "GOAWAY on SIGTERM");
    let mut process = process;
    let exit = tokio::task::spawn_blocking(move || process.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "exited after {took:?} (drain_timeout 2s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_false_when_full_and_true_again() {
    let relay = start_relay(
        "[internal]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_sessions = 1\n[auth]\npublic = \"\"",
    )
    .await;
    let ready = format!("http://{}/ready", relay.internal.unwrap());
    assert_eq!(http_get(&ready).await.0, 200);
    let client = relay.client(&[]);
    let (session, _) = connect(
        &client,
        &relay.url("https", "anon"),
        None,
        Some(Origin::default()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get(&ready).await, (503, "not ready: full\n".to_string()));
    session.close(0, "bye");
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(&ready).await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CA and a client certificate it signed, written as PEM files in `dir`:
/// (ca.pem, client.pem, client.key).
fn client_pki(dir: &FsPath, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_configured_ca_stands_in_for_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_pki(dir.path(), "peer");
    let (_, stranger_cert, stranger_key) = client_pki(dir.path(), "stranger");
    let relay = start_relay(&format!(
        "tls.root = [\"{}\"]\n[auth]\npublic = \"anon\"",
        ca.display()
    ))
    .await;
    let with_cert = |cert: &std::path::PathBuf, key: &std::path::PathBuf| {
        client::Client::new(client::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: client::ClientTls {
                fingerprints: vec![relay.fingerprint.clone()],
                cert: Some(cert.clone()),
                key: Some(key.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    };

    // A peer with a certificate from the CA: full access within its path, no token.
    let peer = with_cert(&cert, &key);
    let publisher = publisher_at(&relay, &peer, "https", "secret", "live").await;
    let viewer = Origin::default();
    let (_v, _) = connect(&peer, &relay.url("moqt", "secret"), None, Some(viewer.clone())).await;
    let broadcast = viewer
        .wait_for(&Path::new("live").unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut track = broadcast.subscribe("video").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_group(&publisher.track, 0, 1, 10);
    assert_eq!(read_groups(&mut track, 1).await[0].0, 0);

    // Without a certificate (and no token) the same path is refused.
    let err = relay
        .client(&[])
        .connect(&relay.url("https", "secret"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // A certificate from another CA fails the TLS handshake.
    assert!(
        with_cert(&stranger_cert, &stranger_key)
            .connect(&relay.url("https", "secret"))
            .await
            .is_err()
    );
}
