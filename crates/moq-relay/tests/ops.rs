//! The operations surface end to end: metrics counting real traffic, readiness,
//! draining (in process and on SIGTERM, with GOAWAY to connected clients) and
//! certificate reload without dropping sessions.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    path::Path as FsPath,
    time::{Duration, Instant},
};

use moq_core::{Origin, transport::Session as _};
use moq_native::{Version, adapter::MoqSession};
use moq_relay::{Relay, config::Config};

mod common;
use common::{
    SOON, TestRelay, connect, eventually, http_get, publisher, read_groups, sample, spawn_relay, start_relay,
    subscriber, write_group,
};

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
    relay.wait_subscriptions(3).await;
    publisher.wait_subscribed().await;
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
    let test = TestRelay::of(&relay);
    let handle = relay.handle();
    tokio::spawn(relay.run());
    assert_eq!(http_get(&format!("http://{internal}/ready")).await.0, 200);

    // A lite-04 WebTransport client that only listens for what the relay opens.
    let client = test.client(&[Version::Lite04]);
    let connected = client.connect(&test.url("https", "anon")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    test.wait_sessions(1).await;

    let drain = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drain(Duration::from_secs(2)).await }
    });
    let lifecycle = &test.state().sessions.lifecycle;
    eventually("the drain to start", SOON, async || lifecycle.is_draining()).await;
    let (status, body) = http_get(&format!("http://{internal}/ready")).await;
    assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
    // No new sessions over WebSocket either: a client moving on GOAWAY must not land here.
    let ws = url::Url::parse(&format!("ws://localhost:{}/anon", test.web.port())).unwrap();
    let err = client.connect(&ws).await.map(|_| ()).unwrap_err();
    assert!(format!("{err:#}").contains("503"), "{err:#}");

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
    let mut process = spawn_relay(&["--drain-timeout", "1s"]).await;
    let started = Instant::now();
    process.sigterm();
    let exit = process.exit_status(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
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
    let old = TestRelay::of(&relay);
    tokio::spawn(relay.run());
    let client = old.client(&[]);
    let publisher = publisher(&old, &client, "moqt", "live").await;
    let (mut track, _session) = subscriber(&old, &client, "https", "live").await;
    publisher.wait_subscribed().await;
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
        ..old.clone()
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

    // A broken file is refused, counted, and the last good certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(handle.reload_certificates().is_err());
    let metrics = new.metrics_text().await;
    assert!(
        metrics.contains("moq_relay_tls_certificate_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(new.client(&[]).connect(&new.url("https", "anon")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_to_connected_clients_and_exits_within_the_drain_timeout() {
    let mut process = spawn_relay(&["--drain-timeout", "2s"]).await;
    let relay = &process.relay;
    let client = relay.client(&[Version::Lite04]);
    let connected = client.connect(&relay.url("https", "anon")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    relay.wait_sessions(1).await;

    let started = Instant::now();
    process.sigterm();
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
    // A new connection while draining is refused at once, not left to time out, so a
    // client following GOAWAY to the same name moves on to another relay without waiting.
    let attempt = Instant::now();
    let refused = client.connect(&relay.url("moqt", "anon")).await;
    assert!(refused.is_err(), "a draining relay admitted a new session");
    assert!(
        attempt.elapsed() < Duration::from_secs(1),
        "the refusal took {:?}: {:?}",
        attempt.elapsed(),
        refused.err()
    );
    let exit = process.exit_status(Duration::from_secs(10)).await;
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
    relay.wait_sessions(1).await;
    assert_eq!(http_get(&ready).await, (503, "not ready: full\n".to_string()));
    // The reason is a metric too, every reason present (0 or 1).
    let metrics = relay.metrics_text().await;
    assert!(
        metrics.contains("moq_relay_not_ready{reason=\"full\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("moq_relay_not_ready{reason=\"draining\"} 0"),
        "{metrics}"
    );
    session.close(0, "bye");
    eventually("ready again", Duration::from_secs(5), async || {
        http_get(&ready).await.0 == 200
    })
    .await;
}

/// Issue 14: logs written to a file (or journald) are plain text, without the ANSI
/// colour escapes a terminal gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_carry_no_colour_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("relay.log");
    let port = common::free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moq-relay"))
        .args([
            "--server-bind",
            &format!("127.0.0.1:{port}"),
            "--tls-generate",
            "localhost",
        ])
        .args([
            "--web-http-listen",
            &format!("127.0.0.1:{port}"),
            "--auth-public",
            "",
        ])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = common::poll("the relay to log that it listens", SOON, async || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text.contains("listening for HTTP") {
            true => Ok(text),
            false => Err(text),
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(!text.contains('\u{1b}'), "escape codes in the log file: {text:?}");
}

/// Issue 14, item 5: an anonymous publisher in a prefix anonymous users may only watch is
/// refused where it can see it (its Announce stream ends UNAUTHORIZED), and the relay logs
/// and counts it instead of letting the broadcast vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_publish_into_a_subscribe_only_prefix_is_refused_and_counted() {
    let relay = start_relay("[auth]\npublic = { subscribe = [\"anon\"] }").await;
    let client = relay.client(&[]);
    let origin = Origin::default();
    let broadcast = moq_core::BroadcastProducer::new(moq_core::model::cache::Cache::default());
    let _publication = origin.publish(
        moq_proto::Path::new("live").unwrap(),
        broadcast.consume(),
        moq_proto::Hops::new(),
    );
    let connected = client.connect(&relay.url("moqt", "anon")).await.unwrap();
    let mut config = moq_core::session::Config::new(connected.version.lite().unwrap());
    config.publish = Some(origin);
    config.setup.path = Some("/anon".to_string());
    let events = config.events.clone();
    let session = MoqSession::new(connected.session, connected.transport);
    tokio::spawn(moq_core::session::run(session.clone(), config));

    let mut rx = events.subscribe();
    let refused = tokio::time::timeout(SOON, rx.wait_for(|e| e.publish_refused.is_some()))
        .await
        .expect("the publisher is told it may not publish")
        .unwrap()
        .publish_refused
        .clone();
    assert!(refused.is_some());
    let text = relay.metrics_text().await;
    assert_eq!(
        sample(&text, "moq_relay_announcements_forbidden_total"),
        Some(1.0),
        "{text}"
    );
    assert!(
        relay.state().sessions.media.origin.paths().is_empty(),
        "nothing was relayed"
    );
}
