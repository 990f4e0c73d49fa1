//! Session driver tests over the in-memory transport, for every version.

use std::time::Duration;

use bytes::Bytes;
use moq_proto::{ControlStream, Encode, Path, Version};

use super::*;
use crate::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer,
    mem::{self, MemSession},
    model::cache::Cache,
    transport::{SendStream, Session as _},
};

fn path(s: &str) -> Path {
    Path::new(s).unwrap()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

/// A publisher client: one broadcast with one track.
struct Publisher {
    origin: Origin,
    _broadcast: BroadcastProducer,
    track: TrackProducer,
    _publication: crate::Publication,
}

fn publisher(name: &str) -> Publisher {
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let info = TrackInfo {
        priority: 3,
        max_latency: Duration::from_secs(2),
        timescale: 1000,
    };
    let track = broadcast.create_track(TrackProducer::with_info("seconds", info, Cache::default()));
    let publication = origin.publish(path(name), broadcast.consume(), moq_proto::Hops::new());
    Publisher {
        origin,
        _broadcast: broadcast,
        track,
        _publication: publication,
    }
}

fn write_group(track: &TrackProducer, seq: u64, frames: &[&str]) {
    let mut group = track.create_group(seq).unwrap();
    for (i, f) in frames.iter().enumerate() {
        group.write(Frame {
            timestamp: seq * 1000 + i as u64 * 10,
            payload: Bytes::copy_from_slice(f.as_bytes()),
        });
    }
    group.finish();
}

fn client(version: Version, publish: Option<Origin>, consume: Option<Origin>) -> Config {
    let mut config = Config::new(version);
    config.publish = publish;
    config.consume = consume;
    config
}

/// Connect two sessions and run both drivers in the background.
fn connect(a: Config, b: Config) -> (MemSession, MemSession) {
    let (sa, sb) = mem::pair();
    tokio::spawn(run(sa.clone(), a));
    tokio::spawn(run(sb.clone(), b));
    (sa, sb)
}

async fn read_frames(track: &mut crate::TrackConsumer, groups: usize) -> Vec<(u64, Vec<Frame>)> {
    let mut out = Vec::new();
    for _ in 0..groups {
        let mut group = within(track.next_group()).await.unwrap().unwrap();
        let mut frames = Vec::new();
        while let Some(frame) = within(group.next_frame()).await.unwrap() {
            frames.push(frame);
        }
        out.push((group.sequence(), frames));
    }
    out
}

/// publisher → relay → subscriber, each hop a real session driver.
async fn chain(version: Version) {
    let publisher = publisher("clock");
    let relay = Origin::default();
    let mut relay_side = client(version, Some(relay.clone()), Some(relay.clone()));
    relay_side.root = path("anon");
    connect(
        client(version, Some(publisher.origin.clone()), None),
        relay_side.clone(),
    );

    let viewer = Origin::default();
    connect(relay_side, client(version, None, Some(viewer.clone())));

    let broadcast = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
        .await
        .expect("viewer never saw the broadcast");
    assert!(
        relay.consume(&path("anon/clock")).is_some(),
        "relay stores it under the session root"
    );

    let mut track = broadcast.subscribe("seconds").unwrap();
    // Give the subscription time to reach the publisher before the first group.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_group(&publisher.track, 0, &["12:00:", "00", "01"]);
    write_group(&publisher.track, 1, &["12:01:", "00"]);
    let got = read_frames(&mut track, 2).await;
    assert_eq!(got[0].0, 0);
    assert_eq!(got[1].0, 1);
    let payloads: Vec<_> = got[0].1.iter().map(|f| f.payload.clone()).collect();
    assert_eq!(payloads, ["12:00:", "00", "01"]);
    if version.has_frame_timestamps() {
        let stamps: Vec<_> = got[0].1.iter().map(|f| f.timestamp).collect();
        assert_eq!(stamps, [0, 10, 20], "timestamps survive two hops");
        let info = within(track.info()).await.unwrap();
        assert_eq!((info.timescale, info.max_latency), (1000, Duration::from_secs(2)));
    }
}

#[tokio::test]
async fn chain_lite03() {
    chain(Version::Lite03).await;
}

#[tokio::test]
async fn chain_lite04() {
    chain(Version::Lite04).await;
}

#[tokio::test]
async fn chain_lite05() {
    chain(Version::Lite05).await;
}

#[tokio::test]
async fn chain_lite06() {
    chain(Version::Lite06).await;
}

#[tokio::test]
async fn unannounce_reaches_the_viewer() {
    for version in Version::ALL {
        let relay = Origin::default();
        let viewer = Origin::default();
        connect(
            client(version, Some(relay.clone()), None),
            client(version, None, Some(viewer.clone())),
        );
        let broadcast = BroadcastProducer::new(Cache::default());
        let publication = relay.publish(path("a/b"), broadcast.consume(), moq_proto::Hops::new());
        let mut announced = viewer.announced(Path::empty());
        let event = within(announced.next()).await.unwrap();
        assert_eq!(
            (event.suffix.as_str(), event.broadcast.is_some()),
            ("a/b", true),
            "{version}"
        );
        publication.finish();
        let event = within(announced.next()).await.unwrap();
        assert_eq!(
            (event.suffix.as_str(), event.broadcast.is_some()),
            ("a/b", false),
            "{version}"
        );
    }
}

#[tokio::test]
async fn one_upstream_subscription_for_many_viewers() {
    let version = Version::Lite05;
    let publisher = publisher("b");
    let relay = Origin::default();
    connect(
        client(version, Some(publisher.origin.clone()), None),
        client(version, Some(relay.clone()), Some(relay.clone())),
    );
    let broadcast = within(relay.wait_for(&path("b"), Duration::from_secs(5)))
        .await
        .unwrap();
    let mut viewers: Vec<_> = (0..20).map(|_| broadcast.subscribe("seconds").unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_group(&publisher.track, 0, &["x"]);
    for viewer in &mut viewers {
        assert_eq!(read_frames(viewer, 1).await[0].0, 0);
    }
    // The publisher's track is read once: by its session's one subscription.
    assert_eq!(publisher.track.consumers(), 1);
}

#[tokio::test]
async fn subscribe_to_missing_broadcast_is_refused_not_fatal() {
    let version = Version::Lite06;
    let relay = Origin::default();
    let (_relay_session, viewer) = connect(
        client(version, Some(relay.clone()), None),
        client(version, None, None),
    );
    let (mut send, recv) = viewer.open_bi().await.unwrap();
    let mut msg = ControlStream::Subscribe.to_vec(version).unwrap();
    msg.extend(
        moq_proto::Subscribe {
            id: 1,
            broadcast: path("nope"),
            track: "t".into(),
            ..Default::default()
        }
        .to_vec(version)
        .unwrap(),
    );
    send.write_all(&msg).await.unwrap();
    let mut reader = stream::Reader::new(recv, version);
    let err = within(reader.decode::<moq_proto::SubscribeResponse>())
        .await
        .unwrap_err();
    assert_eq!(err, Error::Reset(Error::NotFound.stream_code()));
    assert!(viewer.close_reason().is_none(), "the session survives");
}

#[tokio::test]
async fn permission_denied_subscribe_is_refused() {
    let version = Version::Lite04;
    let publisher = publisher("secret/b");
    let mut relay_side = client(version, Some(publisher.origin.clone()), None);
    relay_side.permissions = Permissions {
        publish: vec![],
        subscribe: vec![path("public")],
    };
    let viewer = Origin::default();
    connect(relay_side, client(version, None, Some(viewer.clone())));
    // Not even announced to a peer that may not see it.
    assert!(
        viewer
            .wait_for(&path("secret/b"), Duration::from_millis(300))
            .await
            .is_none()
    );

    // The same setup with the prefix allowed does show it (the check above is not vacuous).
    let mut allowed = client(version, Some(publisher.origin.clone()), None);
    allowed.permissions.subscribe = vec![path("secret")];
    let viewer = Origin::default();
    connect(allowed, client(version, None, Some(viewer.clone())));
    assert!(
        viewer
            .wait_for(&path("secret/b"), Duration::from_secs(5))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn malformed_control_message_closes_the_session_with_a_protocol_error() {
    let version = Version::Lite05;
    let relay = Origin::default();
    let (relay_session, peer) = connect(
        client(version, Some(relay.clone()), None),
        client(version, None, None),
    );
    let (mut send, _recv) = peer.open_bi().await.unwrap();
    // A SUBSCRIBE whose length prefix claims 3 bytes but whose body is garbage.
    send.write_all(&[0x02, 0x03, 0xff, 0xff, 0xff]).await.unwrap();
    within(async {
        while relay_session.close_reason().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (code, reason) = relay_session.close_reason().unwrap();
    assert_eq!(code, 0x3, "{reason}");
    assert!(reason.contains("SUBSCRIBE"), "{reason}");
}

#[tokio::test]
async fn unknown_stream_type_resets_only_that_stream() {
    let version = Version::Lite06;
    let relay = Origin::default();
    let (relay_session, peer) = connect(
        client(version, Some(relay.clone()), None),
        client(version, None, None),
    );
    let (mut send, recv) = peer.open_bi().await.unwrap();
    send.write_all(&[0x3f]).await.unwrap();
    let mut reader = stream::Reader::new(recv, version);
    assert!(matches!(
        within(reader.decode::<moq_proto::Goaway>()).await,
        Err(Error::Reset(_))
    ));
    assert!(relay_session.close_reason().is_none());
}

#[tokio::test]
async fn datagrams_deliver_single_frame_groups() {
    let version = Version::Lite05;
    let publisher = publisher("b");
    let relay = Origin::default();
    let (pub_session, _) = connect(
        client(version, Some(publisher.origin.clone()), None),
        client(version, Some(relay.clone()), Some(relay.clone())),
    );
    let broadcast = within(relay.wait_for(&path("b"), Duration::from_secs(5)))
        .await
        .unwrap();
    let mut track = broadcast.subscribe("seconds").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Subscription ids start at 0 on the relay side.
    let datagram = moq_proto::Datagram {
        subscribe: 0,
        sequence: 9,
        timestamp: 77,
        payload: Bytes::from_static(b"dg"),
    };
    pub_session
        .send_datagram(datagram.to_vec(version).unwrap().into())
        .unwrap();
    let got = read_frames(&mut track, 1).await;
    assert_eq!(got[0].0, 9);
    assert_eq!(got[0].1[0].payload, "dg");
}

#[tokio::test]
async fn stats_count_media_in_and_out() {
    let version = Version::Lite06;
    let publisher = publisher("b");
    let relay = Origin::default();
    let mut relay_side = client(version, Some(relay.clone()), Some(relay.clone()));
    let stats = relay_side.stats.clone();
    relay_side.root = Path::empty();
    connect(
        client(version, Some(publisher.origin.clone()), None),
        relay_side.clone(),
    );
    let viewer = Origin::default();
    connect(relay_side, client(version, None, Some(viewer.clone())));
    let broadcast = within(viewer.wait_for(&path("b"), Duration::from_secs(5)))
        .await
        .unwrap();
    let mut track = broadcast.subscribe("seconds").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_group(&publisher.track, 0, &["abc", "de"]);
    read_frames(&mut track, 1).await;
    use std::sync::atomic::Ordering::Relaxed;
    // The relay received 5 payload bytes in 2 frames and sent the same to the viewer.
    assert_eq!(stats.bytes_received.load(Relaxed), 5);
    assert_eq!(stats.frames_received.load(Relaxed), 2);
    assert_eq!(stats.groups_received.load(Relaxed), 1);
    assert_eq!(stats.bytes_sent.load(Relaxed), 5);
    assert_eq!(stats.frames_sent.load(Relaxed), 2);
    assert_eq!(stats.groups_sent.load(Relaxed), 1);
    assert_eq!(stats.subscriptions_active.load(Relaxed), 1);
}

#[tokio::test]
async fn shutdown_sends_goaway() {
    for version in [Version::Lite04, Version::Lite06] {
        let (ours, peer) = mem::pair();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut config = client(version, Some(Origin::default()), None);
        config.shutdown = Some(rx);
        tokio::spawn(run(ours, config));
        tx.send(true).unwrap();
        let (_send, recv) = within(peer.accept_bi()).await.unwrap();
        let mut reader = stream::Reader::new(recv, version);
        assert_eq!(
            within(reader.decode::<ControlStream>()).await.unwrap(),
            ControlStream::Goaway
        );
        assert_eq!(
            within(reader.decode::<moq_proto::Goaway>()).await.unwrap().uri,
            ""
        );
    }
}
