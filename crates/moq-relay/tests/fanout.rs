//! Fan-out end to end over real QUIC sockets on loopback: an in-process relay,
//! in-process publishers and subscribers speaking moq-lite over raw QUIC and
//! WebTransport; every version, late joiners, and what viewers see when a publisher
//! leaves.
#![allow(clippy::unwrap_used)] // Test code.

use std::time::{Duration, Instant};

use moq_core::{Origin, transport::Session as _};
use moq_native::Version;
use moq_proto::Path;

mod common;
use common::{connect, frame, publisher, read_groups, start_relay, subscriber, write_group};

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
    // Every subscription reaches the relay, and the relay's one upstream subscription
    // reaches the publisher, before the first group.
    relay.wait_subscriptions(200).await;
    publisher.wait_subscribed().await;

    const GROUPS: u64 = 5;
    const FRAMES: u64 = 10;
    let track = &publisher.track;
    let writer = async {
        for seq in 0..GROUPS {
            write_group(track, seq, FRAMES, 1000);
            // Pacing, not waiting: a live publisher writes groups over time, and 200
            // viewers each get every group while the next is being written.
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
    publisher.wait_subscribed().await;
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
            publisher.wait_subscribed().await;
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
    drop(publisher.publication);
    let event = tokio::time::timeout(Duration::from_secs(2), announced.next())
        .await
        .unwrap()
        .unwrap();
    assert!(event.broadcast.is_none());
    drop(publisher.broadcast);
}
