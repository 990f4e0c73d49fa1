//! The relay's public HTTP listener end to end on loopback: certificate fingerprint,
//! health, announced, fetch and CORS, with a real publisher behind them.
#![allow(clippy::unwrap_used)] // Test code.

use moq_core::Origin;
use moq_proto::Path;
use moq_relay::{Relay, config::Config};

mod common;
use common::{
    SOON, TestRelay, connect, http_get, poll, publisher, read_groups, start_relay, subscriber, write_group,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints() {
    // Every step has its own deadline, so a hang names the step (the whole test once
    // ran into nextest's 120 s limit in CI with nothing to say where).
    let relay = step("start the relay", start_relay("")).await;
    let client = relay.client(&[]);
    let publisher = step("publish", publisher(&relay, &client, "moqt", "live")).await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", relay.web);
        async move { http_get(&url).await }
    };
    // A broadcast nobody announces is answered 404 once the relay's wait for it
    // (`FETCH_TIMEOUT`, 30 s, as the reference relay) runs out; started first, so that
    // wait overlaps the rest of the test.
    let missing = tokio::spawn(get("/fetch/anon/missing/video"));
    let (status, body) = get("/certificate.sha256").await;
    assert_eq!((status, body.as_str()), (200, relay.fingerprint.as_str()));
    assert_eq!(get("/health").await, (200, "ok\n".to_string()));
    // The publisher's announcement reaches the relay.
    let announced = poll(
        "the broadcast to be announced over HTTP",
        SOON,
        async || match get("/announced").await {
            (200, body) if !body.is_empty() => Ok((200, body)),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(announced, (200, "anon/live\n".to_string()));
    assert_eq!(get("/announced/anon").await, (200, "live\n".to_string()));
    assert_eq!(get("/announced/other").await, (200, String::new()));

    // No wait after writing: the fetch subscribes and waits for the group itself.
    write_group(&publisher.track, 0, 3, 4);
    let (status, body) = get("/fetch/anon/live/video?group=0").await;
    assert_eq!(status, 200);
    assert_eq!(body, "0:0:0:1:0:2:");

    // Browser pages on another origin may read the fingerprint (CORS).
    let response = step("a CORS request", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(relay.web).await.unwrap();
        stream
            .write_all(b"GET /certificate.sha256 HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    })
    .await;
    assert!(
        response
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{response}"
    );

    let (status, body) = step("the fetch of a missing broadcast", missing).await.unwrap();
    assert_eq!(status, 404, "{body}");
}

/// `what` within 45 s (the relay's 30 s fetch wait and some), or a panic that names it.
async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(45), work).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done after 45 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_viewers_get_small_frames_without_waiting_for_delayed_acks() {
    let relay = start_relay("").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let (mut track, _session) = subscriber(&relay, &client, "ws", "live").await;
    relay.wait_subscriptions(1).await;
    publisher.wait_subscribed().await;
    // A live stream of 4 KiB frames every 20 ms, two per group: a group's stream header
    // and its first frame are two small writes on the relay's TCP socket. With Nagle's
    // algorithm on it, the second waits for the ACK of the first, which the viewer's
    // kernel may delay (up to 40 ms).
    const GROUPS: u64 = 50;
    const FRAMES: u64 = 2;
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let write = async {
        for seq in 0..GROUPS {
            let mut group = publisher.track.create_group(seq).unwrap();
            for i in 0..FRAMES {
                sent_tx.send(((seq, i), std::time::Instant::now())).unwrap();
                group.write(common::frame(seq, i, 4096));
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            group.finish();
        }
    };
    let read = async {
        let mut arrived = std::collections::HashMap::new();
        while arrived.len() < usize::try_from(GROUPS * FRAMES).unwrap() {
            let mut group = tokio::time::timeout(SOON, track.next_group())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let mut i = 0;
            while let Some(_frame) = tokio::time::timeout(SOON, group.next_frame())
                .await
                .unwrap()
                .unwrap()
            {
                arrived.insert((group.sequence(), i), std::time::Instant::now());
                i += 1;
            }
        }
        arrived
    };
    let ((), arrived) = tokio::join!(write, read);
    let mut delays: Vec<_> = sent_rx
        .try_iter()
        .map(|(key, sent)| arrived[&key].saturating_duration_since(sent))
        .collect();
    delays.sort();
    // With Nagle on, 6 and 14 of the 100 frames took 40-48 ms (the viewer's delayed ACK)
    // in two runs; without it none took over 3.1 ms. Two late frames are allowed for a
    // busy test machine.
    let late = delays.iter().filter(|d| d.as_millis() > 30).count();
    assert!(
        late <= 2,
        "{late} of {} frames took over 30 ms to cross the relay to a WebSocket viewer: {delays:?}",
        delays.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_go_through_the_same_gate() {
    let relay = start_relay("[auth]\npublic = \"anon\"").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    // A viewer over qmux/WebSocket (ws://, the HTTP listener) gets the broadcast.
    let (mut track, _session) = subscriber(&relay, &client, "ws", "live").await;
    relay.wait_subscriptions(1).await;
    publisher.wait_subscribed().await;
    write_group(&publisher.track, 0, 3, 100);
    let groups = read_groups(&mut track, 1).await;
    assert_eq!(groups[0].1.len(), 3);
    let sessions = relay.state().sessions.registry.list();
    assert!(
        sessions
            .iter()
            .any(|s| s.transport == moq_native::Transport::WebSocket),
        "{sessions:?}"
    );
    let metrics = relay.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("moq_relay_sessions_active{transport=\"websocket\"") && l.ends_with(" 1")),
        "{metrics}"
    );
    // Outside the public prefix: refused at the upgrade, counted like any session.
    let url = url::Url::parse(&format!("ws://localhost:{}/private", relay.web.port())).unwrap();
    let err = client.connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
    let text = relay.metrics_text().await;
    assert!(
        text.contains("moq_relay_auth_failures_total{reason=\"token_required\"} 1"),
        "{text}"
    );
    // A plain GET to a path that is not an endpoint is still a 404.
    assert_eq!(http_get(&format!("http://{}/nothing", relay.web)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_endpoints_and_wss_across_a_certificate_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = moq_native::tls::generate(&["localhost".to_string()]).unwrap();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    // [web.https] without files of its own shares the QUIC listener's certificate.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n[web.https]\nlisten = \
         \"127.0.0.1:0\"\n[auth]\npublic = \"\"\n",
        cert.display(),
        key.display()
    );
    let config = Config::from_toml(&text, std::path::Path::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let https = relay.https_addr().unwrap();
    let handle = relay.handle();
    let old = TestRelay::of(&relay);
    tokio::spawn(relay.run());

    // The endpoints over TLS, HTTP/1.1 and HTTP/2.
    for version in ["--http1.1", "--http2"] {
        let output = std::process::Command::new("curl")
            .args(["-sk", version, "-w", " %{http_version}"])
            .arg(format!("https://127.0.0.1:{}/certificate.sha256", https.port()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(text.starts_with(&old.fingerprint), "{version}: {text}");
    }

    // A wss:// viewer on the HTTPS port keeps receiving across a certificate swap.
    let client = old.client(&[]);
    let publisher = publisher(&old, &client, "moqt", "live").await;
    let wss = url::Url::parse(&format!("wss://localhost:{}/anon", https.port())).unwrap();
    let origin = Origin::default();
    let (_session, _) = connect(&client, &wss, None, Some(origin.clone())).await;
    let broadcast = origin.wait_for(&Path::new("live").unwrap(), SOON).await.unwrap();
    let mut track = broadcast.subscribe("video").unwrap();
    publisher.wait_subscribed().await;
    write_group(&publisher.track, 0, 1, 10);
    assert_eq!(read_groups(&mut track, 1).await[0].0, 0);

    let second = moq_native::tls::generate(&["localhost".to_string()]).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    handle.reload_certificates().unwrap();
    let new = TestRelay {
        fingerprint: moq_native::tls::fingerprint(&second.cert_der),
        ..old.clone()
    };
    assert!(
        new.client(&[]).connect(&wss).await.is_ok(),
        "the new certificate over wss"
    );
    assert!(
        old.client(&[]).connect(&wss).await.is_err(),
        "the old one is gone"
    );
    write_group(&publisher.track, 1, 1, 10);
    assert_eq!(
        read_groups(&mut track, 1).await[0].0,
        1,
        "the live session kept receiving"
    );
}
