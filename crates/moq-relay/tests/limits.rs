//! Limits crossed on purpose, end to end: a connection flood from one address, and a
//! subscriber that stops reading. Each checks the refusal or the bound, and that the
//! other sessions lost nothing.
#![allow(clippy::unwrap_used)] // Test code.

use std::time::{Duration, Instant};

use moq_core::transport::Session as _;
use moq_native::{Version, adapter::MoqSession};
use moq_proto::Path;

mod common;
use common::{http_get, publisher, read_groups, sample, spawn_relay, start_relay, subscriber, write_group};

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
    // Both subscriptions are live at the relay, and its upstream one at the publisher.
    relay.wait_subscriptions(2).await;
    publisher.wait_subscribed().await;

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
async fn connection_floods_from_one_address_are_refused_cheaply() {
    let relay = start_relay(
        "[internal]\nlisten = \"127.0.0.1:0\"\n[limits]\nconnections_per_second_per_ip = 5\nsessions_per_ip = 1000\n[auth]\npublic = \"\"",
    )
    .await;
    let client = relay.client(&[]);
    // A publisher and a viewer connected before the flood.
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let (mut viewer, _v) = subscriber(&relay, &client, "https", "live").await;
    let admitted = tokio::time::Instant::now();
    publisher.wait_subscribed().await;
    // Time is the condition here, not an event: the limiter refills 5 connections per
    // second, and the flood must meet a full burst, not what the two sessions above left.
    // The bucket cannot be read without spending from it.
    tokio::time::sleep_until(admitted + Duration::from_millis(1200)).await;
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
