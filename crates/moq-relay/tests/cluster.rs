//! Clusters of real relay processes on 127.0.0.x: links, the root's
//! directory, loops, failover and cluster authentication. Publishers and
//! viewers are in-process moq-lite sessions over real QUIC sockets.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackConsumer, TrackInfo, TrackProducer,
    model::cache::Cache,
    session::{self, Config as SessionConfig},
};
use moq_native::{adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use url::Url;

mod common;
use common::{client_pki, free_port, http_get, init_tracing, metric_sum, poll, sample};

/// One relay process.
struct Node {
    id: u64,
    ip: IpAddr,
    port: u16,
    internal: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    next_ip: u8,
}

impl Cluster {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            // Spread tests over 127.0.0.0/8 so parallel tests rarely share an address.
            next_ip: 10 + (std::process::id() % 200) as u8,
        }
    }

    /// Start a relay with hop id `id`; `cluster` is extra `[cluster]` keys, `extra` more tables.
    async fn node(&mut self, id: u64, cluster: &str, extra: &str) -> Node {
        let mut node = self.plan(id);
        node.launch(cluster, extra).await;
        node
    }

    /// Pick a relay's addresses without starting it (to link relays in a ring).
    fn plan(&mut self, id: u64) -> Node {
        let ip: IpAddr = format!("127.0.{}.{}", id % 250 + 1, self.next_ip)
            .parse()
            .unwrap();
        Node {
            ip,
            port: free_port(ip),
            internal: SocketAddr::new(ip, free_port(ip)),
            config: self.dir.path().join(format!("relay-{id}.toml")),
            id,
            child: None,
        }
    }
}

impl Node {
    async fn launch(&mut self, cluster: &str, extra: &str) {
        let (ip, port, internal, id) = (self.ip, self.port, self.internal, self.id);
        let auth = if extra.contains("[auth]") {
            ""
        } else {
            "[auth]\npublic = \"\"\n"
        };
        let client_tls = if extra.contains("[client.tls]") {
            ""
        } else {
            "[client.tls]\ndisable_verify = true\n"
        };
        // `tls.` lines of `extra` belong to [server.tls].
        let server_tls: Vec<&str> = extra.lines().filter_map(|l| l.strip_prefix("tls.")).collect();
        let server_tls = server_tls.join("\n");
        let extra: Vec<&str> = extra.lines().filter(|l| !l.starts_with("tls.")).collect();
        let extra = extra.join("\n");
        let text = format!(
            r#"
[server]
listen = "{ip}:{port}"
[server.tls]
generate = ["localhost"]
{server_tls}
[web.http]
listen = "{ip}:{port}"
[internal]
listen = "{internal}"
[limits]
connections_per_second_per_ip = 100000
sessions_per_ip = 100000
{client_tls}
{auth}
{extra}
[cluster]
id = {id}
node = "https://{ip}:{port}/"
{allow}
{cluster}
"#,
            // Relays of these tests live on 127.0.0.0/8; one test sets its own list.
            allow = if cluster.contains("allow") {
                ""
            } else {
                "allow = [\"127.0.0.0/8\"]"
            },
        );
        std::fs::write(&self.config, text).unwrap();
        self.start().await;
    }

    async fn start(&mut self) {
        let log = std::fs::File::create(self.config.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_moq-relay"))
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".to_string()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let internal = self.internal;
        poll(
            &format!("relay {} to start", self.url()),
            Duration::from_secs(15),
            async || match tokio::net::TcpStream::connect(internal).await {
                Ok(_) => Ok(()),
                Err(err) => Err(format!("internal listener: {err}")),
            },
        )
        .await
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://{}:{}/", self.ip, self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_extension("log")).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> String {
        http_get(&format!("http://{}{path}", self.internal)).await.1
    }

    async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.get("/metrics").await, name)
    }

    async fn nodes(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/nodes").await).unwrap()
    }

    /// Wait (up to 20 s) until `/metrics` counts an authentication failure for `reason`.
    /// The counter of each common reason is exposed at zero from the start, so only a
    /// value of at least one counts.
    async fn auth_failure(&self, reason: &str) {
        let what = format!("a {reason} failure counted at {}", self.url());
        let series = format!("moq_relay_auth_failures_total{{reason=\"{reason}\"}}");
        poll(&what, Duration::from_secs(20), async || {
            let text = self.get("/metrics").await;
            match sample(&text, &series) {
                Some(n) if n >= 1.0 => Ok(()),
                _ => Err(text),
            }
        })
        .await
    }

    /// Wait until this relay's links of `kind` are all up (and there are `count`).
    async fn links_up(&self, kind: &str, count: usize) {
        let what = format!("{count} {kind} links up at {}", self.url());
        poll(&what, Duration::from_secs(30), async || {
            let nodes = self.nodes().await;
            let up = nodes["links"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["kind"] == kind && l["state"] == "up")
                .count();
            if up >= count {
                Ok(())
            } else {
                Err(format!("{nodes}\n{}", self.log()))
            }
        })
        .await
    }
}

fn test_client() -> client::Client {
    init_tracing();
    client::Client::new(client::Config {
        tls: client::ClientTls {
            insecure: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

async fn connect(
    client: &client::Client,
    node: &Node,
    publish: Option<Origin>,
    consume: Option<Origin>,
) -> MoqSession {
    let url = Url::parse(&format!("{}anon", node.url())).unwrap();
    common::connect(client, &url, publish, consume).await.0
}

/// A publisher writing one 5-frame group every 100 ms, frames tagged with `tag`.
struct Publisher {
    session: MoqSession,
    running: Arc<AtomicBool>,
    _publication: moq_core::Publication,
    _origin: Origin,
}

impl Publisher {
    async fn start(client: &client::Client, node: &Node, name: &str, tag: &'static str) -> Self {
        let origin = Origin::default();
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "video",
            TrackInfo::default(),
            Cache::default(),
        ));
        let publication = origin.publish(Path::new(name).unwrap(), broadcast.consume(), Hops::new());
        let session = connect(client, node, Some(origin.clone()), None).await;
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        tokio::spawn(async move {
            let _broadcast = broadcast;
            // Sequence numbers from the clock, so two publishers of one
            // broadcast (redundant origins) write interchangeable groups.
            while flag.load(Ordering::Relaxed) {
                let seq = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
                    / 100;
                if let Ok(mut group) = track.create_group(seq) {
                    for i in 0..5u64 {
                        group.write(Frame {
                            timestamp: seq * 100_000 + i,
                            payload: Bytes::from(format!("{tag}:{seq}:{i}")),
                        });
                    }
                    group.finish();
                }
                // Pacing, not waiting: a live source writes a group every 100 ms.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            session,
            running,
            _publication: publication,
            _origin: origin,
        }
    }

    fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
        moq_core::transport::Session::close(&self.session, 0, "done");
    }
}

/// What a viewer received: (sequence, frames) per whole group, in arrival order.
type Received = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

struct Viewer {
    received: Received,
    _session: MoqSession,
    _origin: Origin,
}

impl Viewer {
    async fn start(client: &client::Client, node: &Node, name: &str) -> Self {
        let origin = Origin::default();
        let session = connect(client, node, None, Some(origin.clone())).await;
        let broadcast = origin
            .wait_for(&Path::new(name).unwrap(), Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{name} announced at {}", node.url()));
        let track = broadcast.subscribe("video").unwrap();
        let received: Received = Arc::default();
        tokio::spawn(read(track, received.clone()));
        Self {
            received,
            _session: session,
            _origin: origin,
        }
    }

    fn groups(&self) -> Vec<(u64, Vec<String>)> {
        self.received.lock().unwrap().clone()
    }

    /// Wait until `n` more whole groups arrived.
    async fn more(&self, n: usize) {
        let start = self.groups().len();
        poll(&format!("{n} more groups"), Duration::from_secs(45), async || {
            let groups = self.groups();
            if groups.len() >= start + n {
                return Ok(());
            }
            let tail: Vec<_> = groups
                .iter()
                .rev()
                .take(3)
                .map(|(seq, f)| (seq, f[0].clone()))
                .collect();
            Err(format!("only {} more; last: {tail:?}", groups.len() - start))
        })
        .await
    }

    /// Wait for `n` more groups after a failover; on timeout, fail with the
    /// `/nodes` of the first relay and the newest log lines of each.
    async fn more_after_failover(&self, n: usize, relays: &[&Node]) {
        if tokio::time::timeout(Duration::from_secs(40), self.more(n))
            .await
            .is_ok()
        {
            return;
        }
        let mut report = format!("no failover in 40 s; /nodes: {}", relays[0].nodes().await);
        for relay in relays {
            let tail: Vec<_> = relay.log().lines().rev().take(60).map(str::to_string).collect();
            report += &format!("\n{} log (newest first):\n{}", relay.url(), tail.join("\n"));
        }
        panic!("{report}");
    }

    /// Every frame of a group in order and from one origin; every group whole
    /// but one cut off by a failover (then possibly replayed whole); no group
    /// delivered whole twice. Groups travel on their own streams, so they may
    /// arrive out of order.
    fn check(&self) {
        let groups = self.groups();
        let mut whole = std::collections::HashSet::new();
        let mut cut = 0;
        for (seq, frames) in &groups {
            let tag = frames[0].split(':').next().unwrap();
            for (i, frame) in frames.iter().enumerate() {
                assert_eq!(
                    *frame,
                    format!("{tag}:{seq}:{i}"),
                    "frames in order, from one origin"
                );
            }
            if frames.len() == 5 {
                assert!(whole.insert(*seq), "group {seq} delivered twice");
            } else {
                cut += 1;
            }
        }
        assert!(cut <= 2, "{cut} groups cut off: {groups:?}");
    }
}

async fn read(mut track: TrackConsumer, received: Received) {
    while let Ok(Some(mut group)) = track.next_group().await {
        let seq = group.sequence();
        let received = received.clone();
        // Groups are read one after another: the publisher writes whole groups at once.
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = group.next_frame().await {
            frames.push(String::from_utf8_lossy(&frame.payload).to_string());
        }
        if !frames.is_empty() {
            received.lock().unwrap().push((seq, frames));
        }
    }
}

fn links(urls: &[&Node]) -> String {
    let list: Vec<String> = urls.iter().map(|n| format!("\"{}\"", n.url())).collect();
    format!("connect = [{}]", list.join(", "))
}

fn roots(urls: &[&Node]) -> String {
    let list: Vec<String> = urls.iter().map(|n| format!("\"{}\"", n.url())).collect();
    format!("root = [{}]", list.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_delivers_every_frame_with_one_upstream_subscription_per_relay() {
    let mut c = Cluster::new();
    let root = c.node(1, "", "").await;
    let r = roots(&[&root]);
    let o1 = c.node(11, &r, "").await;
    let o2 = c.node(12, &r, "").await;
    let r1 = c.node(21, &format!("{r}\n{}", links(&[&o1, &o2])), "").await;
    let r2 = c.node(22, &format!("{r}\n{}", links(&[&o1, &o2])), "").await;
    let e1 = c.node(31, &format!("{r}\n{}", links(&[&r1])), "").await;
    let e2 = c.node(32, &format!("{r}\n{}", links(&[&r1, &r2])), "").await;
    let e3 = c.node(33, &format!("{r}\n{}", links(&[&r2])), "").await;
    for regional in [&r1, &r2] {
        regional.links_up("static", 2).await;
    }
    e2.links_up("static", 2).await;

    let client = test_client();
    let publisher = Publisher::start(&client, &o1, "live", "o1").await;
    let mut viewers = Vec::new();
    for edge in [&e1, &e2, &e3] {
        for _ in 0..2 {
            viewers.push(Viewer::start(&client, edge, "live").await);
        }
    }
    for viewer in &viewers {
        viewer.more(20).await;
        viewer.check();
    }
    // Deduplication at every hop: one upstream subscription per relay on the path.
    for (name, node, expected) in [
        ("o1", &o1, 1.0),
        ("r1", &r1, 1.0),
        ("r2", &r2, 1.0),
        ("e1", &e1, 1.0),
        ("e2", &e2, 1.0),
        ("e3", &e3, 1.0),
        ("root", &root, 0.0),
    ] {
        let upstream = node.metric("moq_relay_upstream_subscriptions_active").await;
        assert_eq!(upstream, expected, "{name}: {}", node.nodes().await);
    }
    // The root knows who originates the broadcast; routes say where it comes from.
    let nodes = e2.nodes().await;
    let route = nodes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "anon/live")
        .unwrap();
    assert_eq!(route["via"], "link", "{nodes}");
    assert_eq!(route["hops"][0], "11", "{nodes}");
    let known = root.nodes().await;
    assert!(
        known["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["via"] == "directory"),
        "the root carries no media, it only knows where broadcasts are: {known}"
    );
    let origins = known["origins"].as_array().unwrap();
    assert!(
        origins
            .iter()
            .any(|o| o["path"] == "anon/live" && o["node"] == "11"),
        "the root knows who originates the broadcast: {known}"
    );
    assert_eq!(
        known["nodes"].as_array().unwrap().len(),
        7,
        "every relay registered: {known}"
    );
    publisher.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_forms_no_loop_and_delivers_each_frame_once() {
    let mut c = Cluster::new();
    // a → b → c → a, each dialling the next: a ring.
    let mut a = c.plan(41);
    let mut b = c.plan(42);
    let mut cc = c.plan(43);
    a.launch(&links(&[&cc]), "").await;
    b.launch(&links(&[&a]), "").await;
    cc.launch(&links(&[&b]), "").await;
    a.links_up("static", 1).await;
    b.links_up("static", 1).await;
    cc.links_up("static", 1).await;

    let client = test_client();
    let publisher = Publisher::start(&client, &a, "ring", "a").await;
    let vb = Viewer::start(&client, &b, "ring").await;
    let vc = Viewer::start(&client, &cc, "ring").await;
    vb.more(20).await;
    vc.more(20).await;
    vb.check();
    vc.check();
    for node in [&a, &b, &cc] {
        assert_eq!(node.metric("moq_relay_upstream_subscriptions_active").await, 1.0);
    }
    // No relay learned the broadcast back through itself.
    for node in [&a, &b, &cc] {
        let nodes = node.nodes().await;
        for route in nodes["routes"].as_array().unwrap() {
            let hops: Vec<&str> = route["hops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            assert!(!hops.contains(&nodes["id"].as_str().unwrap()), "loop: {nodes}");
        }
    }
    // With no loop, the broadcast disappears everywhere once its publisher leaves.
    publisher.stop();
    drop(publisher);
    poll(
        "the broadcast to end on every relay",
        Duration::from_secs(20),
        async || {
            for node in [&a, &b, &cc] {
                if node.metric("moq_relay_broadcasts_active").await != 0.0 {
                    return Err(format!("broadcast kept alive by a loop: {}", node.nodes().await));
                }
            }
            Ok(())
        },
    )
    .await;
    cc.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_regional_relay_reroutes_the_edge() {
    let mut c = Cluster::new();
    let origin = c.node(51, "", "").await;
    let mut r1 = c.node(52, &links(&[&origin]), "").await;
    let r2 = c.node(53, &links(&[&origin]), "").await;
    // The edge prefers r1 (cheaper link); r2 is its standby.
    let edge = c
        .node(
            54,
            &format!("connect = [\"{}?cost=1\", \"{}?cost=5\"]", r1.url(), r2.url()),
            "",
        )
        .await;
    edge.links_up("static", 2).await;
    let client = test_client();
    let _publisher = Publisher::start(&client, &origin, "live", "o").await;
    let viewer = Viewer::start(&client, &edge, "live").await;
    viewer.more(10).await;
    assert_eq!(r1.metric("moq_relay_upstream_subscriptions_active").await, 1.0);
    assert_eq!(r2.metric("moq_relay_upstream_subscriptions_active").await, 0.0);

    let before = viewer.groups().len();
    let last_before = viewer.groups().last().unwrap().0;
    r1.kill();
    viewer.more_after_failover(20, &[&edge, &r2]).await;
    viewer.check();
    let groups = viewer.groups();
    let first_after = groups[before].0;
    // Lost: what was written while the dead link went unnoticed (a killed
    // process says nothing; links time out after 3 s of silence).
    assert!(
        first_after - last_before <= 60,
        "gap of {} groups at failover: {:?}",
        first_after - last_before,
        &groups[before.saturating_sub(2)..before + 2]
    );
    assert_eq!(r2.metric("moq_relay_upstream_subscriptions_active").await, 1.0);
    assert!(edge.log().contains("cluster link down"), "link loss is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_finds_broadcasts_and_a_second_root_takes_over() {
    let mut c = Cluster::new();
    let mut root_a = c.node(61, "", "").await;
    let mut root_b = c.node(62, "", "").await;
    let r = roots(&[&root_a, &root_b]);
    let origin = c.node(63, &r, "").await;
    // The edge has no link at all: only the roots tell it where broadcasts are.
    let edge = c.node(64, &r, "").await;
    origin.links_up("root", 2).await;
    edge.links_up("root", 2).await;

    let client = test_client();
    let _first = Publisher::start(&client, &origin, "first", "o").await;
    let viewer = Viewer::start(&client, &edge, "first").await;
    viewer.more(10).await;
    let nodes = edge.nodes().await;
    assert!(
        nodes["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "on-demand" && l["state"] == "up"),
        "dialled the origin on demand: {nodes}"
    );

    // The first root dies: media keeps flowing, and new broadcasts are found through the second.
    root_a.kill();
    let killed = std::time::Instant::now();
    viewer.more(10).await;
    let _second = Publisher::start(&client, &origin, "second", "o").await;
    let joined = std::time::Instant::now();
    let late = Viewer::start(&client, &edge, "second").await;
    late.more(5).await;
    eprintln!(
        "MEASURED root killed: a viewer joining {} ms later got 5 frames of a new broadcast {} ms after joining",
        (joined - killed).as_millis(),
        joined.elapsed().as_millis()
    );

    // The root comes back: relays register again. Then the other root dies,
    // and a broadcast that starts now is found through the restarted one.
    root_a.start().await;
    edge.links_up("root", 2).await;
    origin.links_up("root", 2).await;
    root_b.kill();
    let _third = Publisher::start(&client, &origin, "third", "o").await;
    let joined = std::time::Instant::now();
    let latest = Viewer::start(&client, &edge, "third").await;
    latest.more(5).await;
    eprintln!(
        "MEASURED the other root killed: 5 frames of a new broadcast {} ms after joining",
        joined.elapsed().as_millis()
    );
    viewer.more(5).await;
    viewer.check();
    late.check();
    latest.check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_origins_fail_over_at_a_group_boundary() {
    let mut c = Cluster::new();
    let mut active = c.node(71, "", "").await;
    let passive = c.node(72, "", "").await;
    // Active-passive: the standby origin is behind a dearer link.
    let edge = c
        .node(
            73,
            &format!(
                "connect = [\"{}?cost=1\", \"{}?cost=10\"]",
                active.url(),
                passive.url()
            ),
            "",
        )
        .await;
    edge.links_up("static", 2).await;
    let client = test_client();
    let p1 = Publisher::start(&client, &active, "live", "active").await;
    let _p2 = Publisher::start(&client, &passive, "live", "passive").await;
    let viewer = Viewer::start(&client, &edge, "live").await;
    viewer.more(10).await;
    assert!(viewer.groups().iter().all(|(_, f)| f[0].starts_with("active:")));

    // The active origin dies with its publisher.
    p1.stop();
    active.kill();
    viewer.more_after_failover(15, &[&edge]).await;
    viewer.check();
    let groups = viewer.groups();
    assert!(
        groups.last().unwrap().1[0].starts_with("passive:"),
        "switched to the standby"
    );

    // Active-active: equal links; whichever is chosen, losing it switches to the other.
    let a = c.node(74, "", "").await;
    let mut b = c.node(75, "", "").await;
    let edge = c.node(76, &links(&[&a, &b]), "").await;
    edge.links_up("static", 2).await;
    let pa = Publisher::start(&client, &a, "live", "a").await;
    let pb = Publisher::start(&client, &b, "live", "b").await;
    let viewer = Viewer::start(&client, &edge, "live").await;
    viewer.more(10).await;
    let chosen = viewer.groups().last().unwrap().1[0]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    if chosen == "a" {
        pa.stop();
        drop(a);
    } else {
        pb.stop();
        b.kill();
    }
    viewer.more_after_failover(15, &[&edge]).await;
    viewer.check();
    let now = viewer.groups().last().unwrap().1[0]
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(now, chosen, "switched to the other origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_a_wrong_or_missing_cluster_token_is_refused_and_counted() {
    let mut c = Cluster::new();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let key_path = c.dir.path().join("cluster.jwk");
    key.write_file(&key_path).unwrap();
    let auth = format!("[auth]\nkey = \"{}\"\n", key_path.display());
    let origin = c.node(81, "", &auth).await;

    // No token.
    let missing = c.node(82, &links(&[&origin]), "").await;
    // A token signed by another key.
    let other = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let mut claims = moq_auth::Claims::new("");
    claims.put = vec![String::new()];
    claims.get = vec![String::new()];
    let wrong = c.dir.path().join("wrong.jwt");
    std::fs::write(&wrong, other.sign(&claims).unwrap()).unwrap();
    let _wrong = c
        .node(
            83,
            &format!("{}\ntoken = \"{}\"", links(&[&origin]), wrong.display()),
            "",
        )
        .await;
    // The right token.
    let good = c.dir.path().join("good.jwt");
    std::fs::write(&good, key.sign(&claims).unwrap()).unwrap();
    let admitted = c
        .node(
            84,
            &format!("{}\ntoken = \"{}\"", links(&[&origin]), good.display()),
            "",
        )
        .await;
    admitted.links_up("static", 1).await;

    origin.auth_failure("token_required").await;
    origin.auth_failure("bad_signature").await;
    let log = origin.log();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        !log.contains(&std::fs::read_to_string(&good).unwrap()),
        "tokens never logged"
    );
    // The refused relay says why, and keeps retrying.
    poll("refusal reported", Duration::from_secs(20), async || {
        let nodes = missing.nodes().await;
        let link = &nodes["links"][0];
        assert_ne!(link["state"], "up", "{nodes}");
        let error = link["last_error"].as_str().unwrap_or_default().to_string();
        if error.contains("401") || error.contains("nauthorized") {
            Ok(())
        } else {
            Err(nodes.to_string())
        }
    })
    .await;
    assert!(missing.log().contains("cluster link down; will retry"));
    // Cut off from its only upstream, the relay asks to be taken out of rotation.
    assert_eq!(missing.get("/ready").await, "not ready: no cluster link\n");
    assert_eq!(admitted.get("/ready").await, "ready\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_a_link_without_a_token() {
    let mut c = Cluster::new();
    let (ca, cert, key) = client_pki(c.dir.path(), "edge");
    let signing = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let key_path = c.dir.path().join("origin.jwk");
    signing.write_file(&key_path).unwrap();
    // The origin takes tokens only, and certificates from the cluster CA.
    let origin = c
        .node(
            91,
            "",
            &format!(
                "tls.root = [\"{}\"]\n[auth]\nkey = \"{}\"",
                ca.display(),
                key_path.display()
            ),
        )
        .await;
    // The edge presents its certificate when it dials; it carries no token.
    let edge = c
        .node(
            92,
            &links(&[&origin]),
            &format!(
                "[client.tls]\ndisable_verify = true\ncert = \"{}\"\nkey = \"{}\"",
                cert.display(),
                key.display()
            ),
        )
        .await;
    edge.links_up("static", 1).await;

    // A publisher with a token on the origin; an anonymous viewer on the edge.
    let mut claims = moq_auth::Claims::new("anon");
    claims.put = vec![String::new()];
    let client = test_client();
    let origin_url = Url::parse(&format!(
        "{}anon?jwt={}",
        origin.url(),
        signing.sign(&claims).unwrap()
    ))
    .unwrap();
    let connected = client.connect(&origin_url).await.unwrap();
    let publish = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let track = broadcast.create_track(TrackProducer::with_info(
        "video",
        TrackInfo::default(),
        Cache::default(),
    ));
    let _publication = publish.publish(Path::new("live").unwrap(), broadcast.consume(), Hops::new());
    let mut config = SessionConfig::new(connected.version.lite().expect("moq-lite"));
    config.publish = Some(publish.clone());
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::spawn(session::run(session, config));
    let writer = tokio::spawn(async move {
        for seq in 0.. {
            let mut group = track.create_group(seq).unwrap();
            for i in 0..5u64 {
                group.write(Frame {
                    timestamp: i,
                    payload: Bytes::from(format!("m:{seq}:{i}")),
                });
            }
            group.finish();
            // Pacing, not waiting: a live source writes a group every 100 ms.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let viewer = Viewer::start(&client, &edge, "live").await;
    viewer.more(5).await;
    viewer.check();
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_relays_cannot_write_the_directory_where_tokens_are_used() {
    let mut c = Cluster::new();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let key_path = c.dir.path().join("root.jwk");
    key.write_file(&key_path).unwrap();
    // Everything is public on this root, but it verifies tokens: directory
    // entries make relays dial URLs with their cluster token, so anonymous
    // writers could steer them anywhere.
    let root = c
        .node(
            95,
            "",
            &format!("[auth]\nkey = \"{}\"\npublic = \"\"", key_path.display()),
        )
        .await;
    let _anonymous = c.node(96, &roots(&[&root]), "").await;
    root.auth_failure("cluster_anonymous").await;
    assert!(root.nodes().await["nodes"].as_array().unwrap().is_empty());
    assert!(root.log().contains("cluster directory refused"));

    // A token that may publish but not subscribe cannot register either.
    let strict = c
        .node(97, "", &format!("[auth]\nkey = \"{}\"", key_path.display()))
        .await;
    let mut claims = moq_auth::Claims::new("");
    claims.put = vec![String::new()];
    let narrow = c.dir.path().join("narrow.jwt");
    std::fs::write(&narrow, key.sign(&claims).unwrap()).unwrap();
    let _narrow = c
        .node(
            98,
            &format!("{}\ntoken = \"{}\"", roots(&[&strict]), narrow.display()),
            "",
        )
        .await;
    strict.auth_failure("cluster_scope").await;
    assert!(strict.nodes().await["nodes"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_named_by_the_directory_outside_the_allow_list_is_not_dialled() {
    let mut c = Cluster::new();
    let root = c.node(101, "", "").await;
    let origin = c.node(102, &roots(&[&root]), "").await;
    // The edge lets the cluster token go to the root only (the default would be the
    // same: the hosts of `connect` and `root`).
    let allow = format!("{}\nallow = [\"{}\"]", roots(&[&root]), root.ip);
    let edge = c.node(103, &allow, "").await;
    origin.links_up("root", 1).await;
    edge.links_up("root", 1).await;

    let client = test_client();
    let _publisher = Publisher::start(&client, &origin, "far", "o").await;
    // The broadcast is announced at the edge (a placeholder from the directory), but
    // the dial that would fetch it is refused, counted and logged.
    let _viewer = Viewer::start(&client, &edge, "far").await;
    let series = "moq_relay_cluster_directory_refused_total{reason=\"url_not_allowed\"}";
    poll("the refused dial counted", Duration::from_secs(20), async || {
        let text = edge.get("/metrics").await;
        match sample(&text, series) {
            Some(n) if n >= 1.0 => Ok(()),
            _ => Err(edge.log()),
        }
    })
    .await;
    assert!(edge.log().contains("not in [cluster] allow"), "{}", edge.log());
    let nodes = edge.nodes().await;
    assert!(
        !nodes["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "on-demand"),
        "no on-demand link: {nodes}"
    );
}

/// Issue 13: relays across a network that blocks UDP link over qmux/WebSocket when
/// `[client.websocket]` enables the fallback. The upstream relay's HTTPS listener is on a
/// port where no QUIC listens, so the QUIC dial can only fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_falls_back_to_websocket_when_quic_does_not_connect() {
    let mut c = Cluster::new();
    let mut upstream = c.plan(111);
    let https = free_port(upstream.ip);
    upstream
        .launch("", &format!("[web.https]\nlisten = \"{}:{https}\"", upstream.ip))
        .await;
    let link = format!(
        "connect = [\"https://{}:{https}/\"]\n[client.websocket]\nenabled = true\ndelay = \"200ms\"",
        upstream.ip
    );
    let edge = c.node(112, &link, "").await;
    edge.links_up("static", 1).await;

    let client = test_client();
    let _publisher = Publisher::start(&client, &upstream, "tcp-only", "u").await;
    let viewer = Viewer::start(&client, &edge, "tcp-only").await;
    viewer.more(5).await;
    viewer.check();
    assert!(
        upstream.log().contains("transport=websocket"),
        "the link is a WebSocket session at the upstream relay: {}",
        upstream.log()
    );
}

/// A link may speak moq-transport (`[client] version`), for a peer that speaks only
/// that: media crosses it both ways into moq-lite viewers, one upstream subscription
/// per relay, and the origin counts the link under its draft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_over_moq_transport_carries_media() {
    for draft in ["moq-transport-17", "moq-transport-14"] {
        let mut c = Cluster::new();
        let origin = c.node(11, "", "").await;
        let edge = c
            .node(
                31,
                &links(&[&origin]),
                &format!("[client]\nversion = \"{draft}\""),
            )
            .await;
        edge.links_up("static", 1).await;

        let client = test_client();
        // Origin → edge, and edge → origin.
        let down = Publisher::start(&client, &origin, "down", "o").await;
        let up = Publisher::start(&client, &edge, "up", "e").await;
        let viewers = [
            Viewer::start(&client, &edge, "down").await,
            Viewer::start(&client, &edge, "down").await,
            Viewer::start(&client, &origin, "up").await,
        ];
        for viewer in &viewers {
            viewer.more(5).await;
            viewer.check();
        }
        let text = origin.get("/metrics").await;
        // Links dial the https:// URL: WebTransport.
        let label = format!("moq_relay_sessions_active{{transport=\"webtransport\",version=\"{draft}\"}}");
        assert_eq!(sample(&text, &label), Some(1.0), "{draft}: {text}");
        assert_eq!(
            edge.metric("moq_relay_upstream_subscriptions_active").await,
            2.0,
            "{draft}: one for `down` over the link, shared by its two viewers, and one for `up` from its publisher"
        );
        down.stop();
        up.stop();
    }
}

/// Issue 14, item 1: a rolling restart of a relay in the middle of a cluster. On SIGTERM
/// it sends GOAWAY; the link that dialled it leaves at once (redialling without backoff),
/// so the drain ends far inside drain_timeout (10 s by default); once the relay is back
/// on the same address the link resubscribes from where it stood and the viewer at the
/// edge loses no group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_loses_its_links_at_once_and_viewers_lose_nothing() {
    let mut c = Cluster::new();
    let origin = c.node(121, "", "").await;
    let mut middle = c.node(122, &links(&[&origin]), "").await;
    let edge = c
        .node(123, &format!("{}\nlinger = \"20s\"", links(&[&middle])), "")
        .await;
    middle.links_up("static", 1).await;
    edge.links_up("static", 1).await;

    // A publisher numbering its groups 0, 1, 2, ... (one every 50 ms), kept 30 s.
    let client = test_client();
    let publish = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let info = TrackInfo {
        max_latency: Duration::from_secs(30),
        ..TrackInfo::default()
    };
    let track = broadcast.create_track(TrackProducer::with_info("video", info, Cache::default()));
    let _publication = publish.publish(Path::new("counted").unwrap(), broadcast.consume(), Hops::new());
    let _session = connect(&client, &origin, Some(publish.clone()), None).await;
    let running = Arc::new(AtomicBool::new(true));
    let writer = tokio::spawn({
        let running = running.clone();
        async move {
            let _broadcast = broadcast;
            let mut seq = 0u64;
            while running.load(Ordering::Relaxed) {
                let mut group = track.create_group(seq).unwrap();
                group.write(Frame {
                    timestamp: seq,
                    payload: Bytes::from(format!("n:{seq}:0")),
                });
                group.finish();
                seq += 1;
                // Pacing, not waiting: a live source.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let viewer = Viewer::start(&client, &edge, "counted").await;
    viewer.more(10).await;

    let child = middle.child.as_mut().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let drained = started.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", middle.log());
    assert!(
        drained < Duration::from_secs(5),
        "the drain took {drained:?} of its 10 s: the link did not leave on GOAWAY\n{}",
        edge.log()
    );
    assert!(
        edge.log().contains("peer is going away; redialling at once"),
        "{}",
        edge.log()
    );
    middle.child = None;
    middle.start().await;
    edge.links_up("static", 1).await;
    viewer.more(20).await;
    running.store(false, Ordering::Relaxed);
    writer.await.unwrap();

    let mut seqs: Vec<u64> = viewer.groups().iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "group {} lost across the restart: {seqs:?}\n{}",
            pair[0] + 1,
            edge.log()
        );
    }
}
