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

/// Connect two sessions and run both drivers in the background. lite-01/02
/// negotiate in-band first, `a` as the client.
fn connect(a: Config, b: Config) -> (MemSession, MemSession) {
    let (sa, sb) = mem::pair();
    let version = a.version;
    if version.is_in_band() {
        let client = sa.clone();
        tokio::spawn(async move {
            let negotiated =
                connect_in_band(&client, &[version], ClientParameters::default(), NEGOTIATION).await?;
            run_in_band(client, a, negotiated).await
        });
        let server = sb.clone();
        tokio::spawn(async move {
            let negotiated = accept_in_band(&server, &[version], NEGOTIATION).await?;
            run_in_band(server, b, negotiated).await
        });
        return (sa, sb);
    }
    tokio::spawn(run(sa.clone(), a));
    tokio::spawn(run(sb.clone(), b));
    (sa, sb)
}

/// How long the in-band SETUP may take in these tests.
const NEGOTIATION: Duration = Duration::from_secs(5);

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
async fn chain_lite01() {
    chain(Version::Lite01).await;
}

#[tokio::test]
async fn chain_lite02() {
    chain(Version::Lite02).await;
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
    for version in Version::EVERY {
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

/// A publisher that writes its last group and ends the broadcast at once: the relay
/// hears the announcement end while that group's stream may still be on its way, and
/// must deliver the group rather than stop its stream (the hostile suite's victim lost
/// it this way under load).
#[tokio::test]
async fn the_last_group_before_a_broadcast_ends_reaches_the_viewer() {
    for version in [Version::Lite02, Version::Lite03, Version::Lite06] {
        for round in 0..20 {
            let publisher = publisher("clock");
            let relay = Origin::default();
            connect(
                client(version, Some(publisher.origin.clone()), None),
                client(version, None, Some(relay.clone())),
            );
            let viewer = Origin::default();
            connect(
                client(version, Some(relay.clone()), None),
                client(version, None, Some(viewer.clone())),
            );
            let broadcast = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
                .await
                .expect("viewer never saw the broadcast");
            let mut track = broadcast.subscribe("seconds").unwrap();
            write_group(&publisher.track, 0, &["first"]);
            let first = within(track.next_group()).await.unwrap().unwrap();
            assert_eq!(first.sequence(), 0);
            write_group(&publisher.track, 1, &["last", "frame"]);
            drop(publisher);
            assert_eq!(
                crate::testing::last_group(&mut track, Duration::from_secs(2)).await,
                Some((1, vec![Bytes::from("last"), Bytes::from("frame")])),
                "{version}, round {round}: the last group was lost"
            );
        }
    }
}

/// A viewer that subscribes just as the last one leaves must not be handed the upstream
/// subscription being torn down (see [`crate::testing::rejoining_viewers_get_each_frame_once`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joining_as_the_last_one_leaves_gets_each_frame_once() {
    for version in [Version::Lite02, Version::Lite06] {
        let publisher = publisher("clock");
        let relay = Origin::default();
        connect(
            client(version, Some(publisher.origin.clone()), None),
            client(version, None, Some(relay.clone())),
        );
        let broadcast = within(relay.wait_for(&path("clock"), Duration::from_secs(5)))
            .await
            .expect("the relay never saw the broadcast");
        crate::testing::rejoining_viewers_get_each_frame_once(&broadcast, &publisher.track, version).await;
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
        ..Permissions::default()
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

/// Poll `done` until it holds, for at most five seconds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn patterns(list: &[&str]) -> Vec<Pattern> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

#[tokio::test]
async fn pattern_permissions_are_exact() {
    for version in [Version::Lite04, Version::Lite06] {
        let publisher = publisher("alice/chat");
        let _video = publisher.origin.publish(
            path("alice/video"),
            BroadcastProducer::new(Cache::default()).consume(),
            moq_proto::Hops::new(),
        );
        let mut relay_side = client(version, Some(publisher.origin.clone()), None);
        relay_side.permissions = Permissions::from_patterns(vec![], patterns(&["*/chat"]));
        let viewer = Origin::default();
        connect(relay_side, client(version, None, Some(viewer.clone())));
        assert!(
            viewer
                .wait_for(&path("alice/chat"), Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(viewer.consume(&path("alice/video")).is_none(), "{version}");
    }
}

#[tokio::test]
async fn narrowed_publish_permissions_withdraw_the_peers_broadcasts() {
    for version in [Version::Lite03, Version::Lite05, Version::Lite06] {
        let cam = publisher("cam");
        let _mic = cam.origin.publish(
            path("mic"),
            BroadcastProducer::new(Cache::default()).consume(),
            moq_proto::Hops::new(),
        );
        let relay = Origin::default();
        let granted = Permissions::from_patterns(patterns(&["cam", "mic"]), vec![]);
        let (grants, live) = watch::channel(granted.clone());
        let mut relay_side = client(version, None, Some(relay.clone()));
        relay_side.permissions = granted;
        relay_side.live_permissions = Some(live);
        let (_peer, relay_session) = connect(client(version, Some(cam.origin.clone()), None), relay_side);
        assert!(
            relay
                .wait_for(&path("cam"), Duration::from_secs(5))
                .await
                .is_some()
        );
        assert!(
            relay
                .wait_for(&path("mic"), Duration::from_secs(5))
                .await
                .is_some()
        );

        grants.send_replace(Permissions::from_patterns(patterns(&["mic"]), vec![]));
        eventually("cam to be withdrawn", || relay.consume(&path("cam")).is_none()).await;
        assert!(
            relay.consume(&path("mic")).is_some(),
            "{version}: mic is still allowed"
        );
        assert!(
            relay_session.close_reason().is_none(),
            "{version}: the session goes on"
        );
    }
}

#[tokio::test]
async fn narrowed_subscribe_permissions_end_subscriptions_and_announcements() {
    for version in [Version::Lite04, Version::Lite05, Version::Lite06] {
        let a = publisher("a/x");
        let b = publisher("b/y");
        let relay = Origin::default();
        let _a = relay.publish(path("a/x"), a._broadcast.consume(), moq_proto::Hops::new());
        let _b = relay.publish(path("b/y"), b._broadcast.consume(), moq_proto::Hops::new());
        let granted = Permissions::from_patterns(vec![], patterns(&["a/**", "b/**"]));
        let (grants, live) = watch::channel(granted.clone());
        let mut relay_side = client(version, Some(relay.clone()), None);
        relay_side.permissions = granted;
        relay_side.live_permissions = Some(live);
        let viewer = Origin::default();
        let (relay_session, _viewer) = connect(relay_side, client(version, None, Some(viewer.clone())));
        let watched = within(viewer.wait_for(&path("b/y"), Duration::from_secs(5)))
            .await
            .expect("b/y announced");
        assert!(
            viewer
                .wait_for(&path("a/x"), Duration::from_secs(5))
                .await
                .is_some()
        );
        let mut track = watched.subscribe("seconds").unwrap();
        write_group(&b.track, 0, &["first"]);
        let got = read_frames(&mut track, 1).await;
        assert_eq!(got[0].1[0].payload, Bytes::from_static(b"first"));

        grants.send_replace(Permissions::from_patterns(vec![], patterns(&["a/**"])));
        eventually("b/y to be withdrawn", || viewer.consume(&path("b/y")).is_none()).await;
        write_group(&b.track, 1, &["second"]);
        // The subscription ends instead of delivering the next group.
        let next = within(track.next_group()).await;
        assert!(!matches!(next, Ok(Some(_))), "{version}: {next:?}");
        assert!(
            viewer.consume(&path("a/x")).is_some(),
            "{version}: a/x is still allowed"
        );
        assert!(
            relay_session.close_reason().is_none(),
            "{version}: the session goes on"
        );
    }
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

/// Read exactly `n` bytes from a raw stream.
async fn read_n(recv: &mut mem::MemRecv, n: usize) -> Vec<u8> {
    use crate::transport::RecvStream;
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = within(recv.read_chunk(n - out.len()))
            .await
            .unwrap()
            .expect("stream ended early");
        out.extend_from_slice(&chunk);
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .flat_map(|word| {
            (0..word.len())
                .step_by(2)
                .map(move |i| u8::from_str_radix(&word[i..i + 2], 16).unwrap())
        })
        .collect()
}

/// What @moq/net 0.3.4 in Firefox 153 sends over WebTransport without a
/// protocol (interop/browser/README.md): CLIENT_SETUP offering lite-02,
/// lite-01 and draft-14 with MaxRequestId, Solicit and Implementation.
const FIREFOX_SETUP: &str = "20 0031 03 c0000000ff0dad02 c0000000ff0dad01 c0000000ff00000e \
    03 02 8000a455 80040b5a 01 07 0b 6d6f712d6c6974652d6a73";

/// The Firefox capture replayed byte for byte into the server-side negotiation:
/// SERVER_SETUP as the reference relay sends it, then the clock's announce and
/// subscription exactly as the browser saw them, then a group.
#[tokio::test]
async fn firefox_bytes_negotiate_lite02_and_read_the_clock() {
    let publisher = publisher("clock");
    let (browser, relay) = mem::pair();
    let server = relay.clone();
    let origin = publisher.origin.clone();
    let (negotiated_tx, negotiated_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let negotiated = accept_in_band(&server, &Version::IN_BAND, NEGOTIATION).await?;
        let _ = negotiated_tx.send((negotiated.version(), negotiated.parameters().clone()));
        run_in_band(server, client(Version::Lite03, Some(origin), None), negotiated).await
    });

    let (mut setup_send, mut setup_recv) = browser.open_bi().await.unwrap();
    setup_send.write_all(&hex(FIREFOX_SETUP)).await.unwrap();
    assert_eq!(
        read_n(&mut setup_recv, 12).await,
        hex("21 0009 c0000000ff0dad02 00")
    );
    let (version, parameters) = within(negotiated_rx).await.unwrap();
    assert_eq!(version, Version::Lite02, "the config's lite-03 was replaced");
    assert_eq!(parameters.implementation.as_deref(), Some("moq-lite-js"));
    assert_eq!(parameters.path, None);

    // ANNOUNCE_PLEASE for the root → ANNOUNCE_INIT naming the clock.
    let (mut send, mut recv) = browser.open_bi().await.unwrap();
    send.write_all(&hex("01 01 00")).await.unwrap();
    assert_eq!(read_n(&mut recv, 8).await, hex("07 01 05 636c6f636b"));

    // SUBSCRIBE to clock/seconds → SUBSCRIBE_OK (empty on lite-02).
    let (mut sub_send, mut sub_recv) = browser.open_bi().await.unwrap();
    sub_send
        .write_all(&hex("02 10 00 05 636c6f636b 07 7365636f6e6473 00"))
        .await
        .unwrap();
    assert_eq!(read_n(&mut sub_recv, 1).await, hex("00"));

    // A group: stream type 0, GROUP (subscription 0, sequence 0), then frames
    // with no timestamps.
    write_group(&publisher.track, 0, &["12:00:", "00"]);
    let mut group = within(browser.accept_uni()).await.unwrap();
    let want = hex("00 02 00 00 06 31323a30303a 02 3030");
    assert_eq!(read_n(&mut group, want.len()).await, want);
    assert!(browser.close_reason().is_none() && relay.close_reason().is_none());
}

/// The lite-01/02-era framing: the Session stream type (0) opens the SETUP,
/// sized by a varint, and the reply has no type. The reply keeps that framing.
#[tokio::test]
async fn in_band_answers_the_session_stream_framing_in_kind() {
    let (client, server) = mem::pair();
    let (mut send, mut recv) = client.open_bi().await.unwrap();
    send.write_all(&hex("00 0a 01 c0000000ff0dad01 00"))
        .await
        .unwrap();
    let negotiated = within(accept_in_band(&server, &Version::IN_BAND, NEGOTIATION))
        .await
        .unwrap();
    assert_eq!(negotiated.version(), Version::Lite01);
    assert_eq!(negotiated.kind(), moq_proto::legacy::SetupKind::Lite);
    assert_eq!(read_n(&mut recv, 10).await, hex("09 c0000000ff0dad01 00"));
}

/// An offer with nothing we allow closes the session with the version code.
#[tokio::test]
async fn in_band_refuses_an_offer_with_nothing_we_allow() {
    for (offer, allowed) in [
        // draft-14 only: negotiated this way, but we have no session for it.
        ("20 000a 01 c0000000ff00000e 00", &Version::IN_BAND[..]),
        // lite-02 when only lite-01 is allowed.
        ("20 000a 01 c0000000ff0dad02 00", &[Version::Lite01][..]),
        // An ALPN version offered in-band, and nothing at all.
        ("20 000a 01 c0000000ff0dad05 00", &Version::EVERY[..]),
        ("20 0002 00 00", &Version::IN_BAND[..]),
    ] {
        let (client, server) = mem::pair();
        let (mut send, _recv) = client.open_bi().await.unwrap();
        send.write_all(&hex(offer)).await.unwrap();
        let err = within(accept_in_band(&server, allowed, NEGOTIATION))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Version(_)), "{offer}: {err}");
        let (code, reason) = server.close_reason().unwrap();
        assert_eq!(code, 0x15, "{reason}");
        assert!(reason.contains("offered"), "{reason}");
    }
}

/// Malformed or truncated SETUPs are decode or protocol errors: closed with 0x3.
#[tokio::test]
async fn in_band_refuses_a_malformed_setup() {
    for (wire, finish) in [
        // A count of 5 in a one-byte body.
        ("20 0001 05", false),
        // Not a SETUP type at all.
        ("21 0009 c0000000ff0dad02 00", false),
        // Lite-02 offered, but the draft-14 parameters are cut short.
        ("20 000b 01 c0000000ff0dad02 01 02", false),
        // A varint size over the limit, refused before buffering.
        ("00 80010001", false),
        // The stream ends in the middle of the SETUP.
        ("20 0031 03", true),
    ] {
        let (client, server) = mem::pair();
        let (mut send, _recv) = client.open_bi().await.unwrap();
        send.write_all(&hex(wire)).await.unwrap();
        if finish {
            send.finish().unwrap();
        }
        let err = within(accept_in_band(&server, &Version::IN_BAND, NEGOTIATION))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Decode(_) | Error::Protocol(_)),
            "{wire}: {err}"
        );
        assert_eq!(server.close_reason().unwrap().0, 0x3, "{wire}: {err}");
    }
}

/// A client that never finishes its SETUP is cut off at the deadline.
#[tokio::test(start_paused = true)]
async fn in_band_setup_times_out() {
    let (client, server) = mem::pair();
    let (mut send, _recv) = client.open_bi().await.unwrap();
    // Half a SETUP, then silence.
    send.write_all(&hex("20 0031 03 c0000000")).await.unwrap();
    let started = tokio::time::Instant::now();
    let err = accept_in_band(&server, &Version::IN_BAND, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(server.close_reason().unwrap().0, 0x11);

    // And one that opens nothing at all.
    let (_client, server) = mem::pair();
    let err = accept_in_band(&server, &Version::IN_BAND, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, Error::Timeout);
}

/// Our client against our server: the client's order decides, and the
/// parameters arrive.
#[tokio::test]
async fn in_band_client_and_server_agree() {
    let (client, server) = mem::pair();
    let parameters = ClientParameters {
        path: Some("anon?jwt=abc".into()),
        authority: Some("relay.example".into()),
        implementation: Some("moq-core-test".into()),
        ..Default::default()
    };
    let (ours, theirs) = tokio::join!(
        connect_in_band(
            &client,
            &[Version::Lite01, Version::Lite02],
            parameters.clone(),
            NEGOTIATION
        ),
        accept_in_band(&server, &Version::IN_BAND, NEGOTIATION),
    );
    let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
    assert_eq!(
        (ours.version(), theirs.version()),
        (Version::Lite01, Version::Lite01)
    );
    assert_eq!(theirs.parameters(), &parameters);
    assert_eq!(theirs.offered(), [0xff0d_ad01, 0xff0d_ad02]);
}

#[tokio::test]
async fn in_band_client_refuses_a_version_it_did_not_offer() {
    let err = connect_in_band(
        &mem::pair().0,
        &[Version::Lite05],
        ClientParameters::default(),
        NEGOTIATION,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Version(_)), "{err}");

    let (client, server) = mem::pair();
    let answer = tokio::spawn(async move {
        let (mut send, mut recv) = server.accept_bi().await.unwrap();
        // Wait for the whole offer (lite-02 only, no parameters), then pick lite-01.
        assert_eq!(read_n(&mut recv, 13).await, hex("20 000a 01 c0000000ff0dad02 00"));
        send.write_all(&hex("21 0009 c0000000ff0dad01 00")).await.unwrap();
        server
    });
    let err = connect_in_band(
        &client,
        &[Version::Lite02],
        ClientParameters::default(),
        NEGOTIATION,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Version(_)), "{err}");
    assert_eq!(client.close_reason().unwrap().0, 0x15);
    answer.await.unwrap();
}

/// SESSION_INFO on the Session stream is read and ignored; the peer ending the
/// Session stream ends the session.
#[tokio::test]
async fn session_stream_carries_session_info_and_its_end_ends_the_session() {
    let (browser, relay) = mem::pair();
    let server = relay.clone();
    let driver = tokio::spawn(async move {
        let negotiated = accept_in_band(&server, &Version::IN_BAND, NEGOTIATION).await?;
        run_in_band(
            server,
            client(Version::Lite02, Some(Origin::default()), None),
            negotiated,
        )
        .await
    });
    let (mut send, mut recv) = browser.open_bi().await.unwrap();
    send.write_all(&hex("20 000a 01 c0000000ff0dad02 00"))
        .await
        .unwrap();
    read_n(&mut recv, 12).await;
    send.write_all(&hex("02 43e8 01 00")).await.unwrap();
    // Still serving: an announce request is answered with an empty ANNOUNCE_INIT.
    let (mut announce, mut reply) = browser.open_bi().await.unwrap();
    announce.write_all(&hex("01 01 00")).await.unwrap();
    assert_eq!(read_n(&mut reply, 2).await, hex("01 00"));
    assert!(relay.close_reason().is_none());

    send.finish().unwrap();
    let result = within(driver).await.unwrap();
    assert_eq!(result, Err(Error::Cancelled));
    assert_eq!(relay.close_reason().unwrap().0, 0x0);
}

#[tokio::test]
async fn malformed_session_info_and_a_second_session_stream_are_protocol_errors() {
    for second_session in [false, true] {
        let (browser, relay) = mem::pair();
        let server = relay.clone();
        let driver = tokio::spawn(async move {
            let negotiated = accept_in_band(&server, &Version::IN_BAND, NEGOTIATION).await?;
            run_in_band(server, client(Version::Lite02, None, None), negotiated).await
        });
        let (mut send, mut recv) = browser.open_bi().await.unwrap();
        send.write_all(&hex("20 000a 01 c0000000ff0dad02 00"))
            .await
            .unwrap();
        read_n(&mut recv, 12).await;
        if second_session {
            let (mut again, _recv) = browser.open_bi().await.unwrap();
            again.write_all(&hex("00")).await.unwrap();
        } else {
            // A SESSION_INFO with a byte after its bitrate.
            send.write_all(&hex("02 05 05")).await.unwrap();
        }
        let result = within(driver).await.unwrap();
        assert!(
            matches!(result, Err(Error::Decode(_) | Error::Protocol(_))),
            "{result:?}"
        );
        assert_eq!(relay.close_reason().unwrap().0, 0x3);
    }
}

/// More broadcasts than one ANNOUNCE_INIT may name: the rest follow as ANNOUNCEs
/// and the viewer sees them all.
#[tokio::test]
async fn announce_init_overflow_follows_as_announces() {
    let relay = Origin::default();
    let count = moq_proto::limits::MAX_ANNOUNCE_INIT + 5;
    let broadcast = BroadcastProducer::new(Cache::default());
    let _publications: Vec<_> = (0..count)
        .map(|i| {
            relay.publish(
                path(&format!("b{i}")),
                broadcast.consume(),
                moq_proto::Hops::new(),
            )
        })
        .collect();
    let viewer = Origin::default();
    connect(
        client(Version::Lite02, None, Some(viewer.clone())),
        client(Version::Lite02, Some(relay.clone()), None),
    );
    within(async {
        while viewer.paths().len() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(viewer.consume(&path(&format!("b{}", count - 1))).is_some());
}

/// Wait (at most 5 s) until `check` holds, polling.
async fn until(mut check: impl FnMut() -> bool) {
    within(async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// GOAWAY reaches the caller with its new session URI, and the session keeps serving
/// meanwhile (the caller connects anew before it lets this one go).
#[tokio::test]
async fn goaway_reaches_the_caller_and_the_session_keeps_serving() {
    for version in [Version::Lite04, Version::Lite05, Version::Lite06] {
        let publisher = publisher("clock");
        let (ours, peer) = mem::pair();
        let viewer = Origin::default();
        let config = client(version, None, Some(viewer.clone()));
        let events = config.events.clone();
        tokio::spawn(run(ours, config));
        tokio::spawn(run(
            peer.clone(),
            client(version, Some(publisher.origin.clone()), None),
        ));
        let broadcast = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
            .await
            .unwrap();
        let mut track = broadcast.subscribe("seconds").unwrap();
        until(|| publisher.track.consumers() > 0).await;
        assert_eq!(events.get().goaway, None);

        // The peer says where to go next.
        let (send, _recv) = peer.open_bi().await.unwrap();
        let mut writer = stream::Writer::new(send, version);
        writer.queue(&ControlStream::Goaway).unwrap();
        writer
            .queue(&moq_proto::Goaway {
                uri: "https://next.example/anon".into(),
            })
            .unwrap();
        within(writer.finish()).await.unwrap();
        assert_eq!(
            within(events.goaway()).await,
            "https://next.example/anon",
            "{version}"
        );

        write_group(&publisher.track, 7, &["still", "here"]);
        let got = read_frames(&mut track, 1).await;
        assert_eq!(got[0].0, 7, "{version}: served after GOAWAY");
    }
}

/// A session the peer closes ends with its code and reason, so a client can say why
/// (`unauthorized: token expired`) instead of "connection closed"; our own close does not
/// look like the peer's.
#[tokio::test]
async fn a_peer_close_ends_the_session_with_its_code_and_reason() {
    for version in [Version::Lite03, Version::Lite06] {
        let (ours, peer) = mem::pair();
        let driver = tokio::spawn(run(ours, client(version, None, Some(Origin::default()))));
        peer.close(0x2, "unauthorized: token expired");
        let err = within(driver).await.unwrap().unwrap_err();
        assert_eq!(
            err,
            Error::Closed {
                code: 0x2,
                reason: "unauthorized: token expired".into()
            }
        );
        assert_eq!(err.session_code(), 0x2);

        let (ours, _peer) = mem::pair();
        let driver = tokio::spawn(run(ours.clone(), client(version, None, Some(Origin::default()))));
        ours.close(0, "done");
        let err = within(driver).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Transport(_)), "{err:?}");
    }
}

/// `discover` asks the peer for one prefix: broadcasts under it arrive at their full path
/// and can be subscribed to; a prefix the peer may not show us is refused at once, and the
/// caller learns so instead of seeing an empty list.
#[tokio::test]
async fn discover_asks_for_one_prefix_and_learns_of_a_refusal() {
    for version in [Version::Lite02, Version::Lite04, Version::Lite06] {
        let publisher = publisher("anon/clock");
        let mut relay = client(version, Some(publisher.origin.clone()), None);
        relay.permissions.subscribe = vec![path("anon")];

        let viewer = Origin::default();
        let mut allowed = client(version, None, Some(viewer.clone()));
        allowed.discover = path("anon");
        let events = allowed.events.clone();
        connect(allowed, relay.clone());
        let broadcast = within(viewer.wait_for(&path("anon/clock"), Duration::from_secs(5)))
            .await
            .expect("the broadcast under the prefix, at its full path");
        let mut track = broadcast.subscribe("seconds").unwrap();
        until(|| publisher.track.consumers() > 0).await;
        write_group(&publisher.track, 1, &["x"]);
        assert_eq!(read_frames(&mut track, 1).await[0].0, 1, "{version}");
        assert_eq!(events.get().discover_refused, None);

        let mut refused = client(version, None, Some(Origin::default()));
        refused.discover = path("secret");
        let events = refused.events.clone();
        connect(refused, relay);
        let mut rx = events.subscribe();
        let got = within(rx.wait_for(|e| e.discover_refused.is_some()))
            .await
            .unwrap()
            .discover_refused
            .clone();
        let unauthorized = Error::Unauthorized(String::new()).stream_code();
        assert_eq!(got, Some(Error::Reset(unauthorized)), "{version}");
    }
}

/// A peer that may publish nothing but announces a broadcast is told so (its Announce
/// stream is refused with UNAUTHORIZED) and its caller learns it; one that may publish
/// elsewhere keeps its session quiet about a broadcast outside its rights.
#[tokio::test]
async fn announcing_without_publish_rights_is_refused_and_reported() {
    for version in [Version::Lite04, Version::Lite05, Version::Lite06] {
        for (rights, refused) in [(vec![], true), (vec![path("other")], false)] {
            let publisher = publisher("clock");
            let ours = client(version, Some(publisher.origin.clone()), None);
            let events = ours.events.clone();
            let relay_origin = Origin::default();
            let mut relay = client(version, None, Some(relay_origin.clone()));
            relay.permissions.publish = rights;
            let stats = relay.stats.clone();
            // A second broadcast the relay may serve, to show the session goes on.
            let (sa, sb) = mem::pair();
            tokio::spawn(run(sa, ours));
            tokio::spawn(run(sb, relay));
            if refused {
                let mut rx = events.subscribe();
                let got = within(rx.wait_for(|e| e.publish_refused.is_some()))
                    .await
                    .unwrap()
                    .publish_refused
                    .clone();
                let unauthorized = Error::Unauthorized(String::new()).stream_code();
                assert_eq!(got, Some(Error::Reset(unauthorized)), "{version}");
            } else {
                // Give the announcement time to arrive and be ignored.
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert_eq!(events.get().publish_refused, None, "{version}");
            }
            assert!(relay_origin.paths().is_empty(), "{version}: nothing taken");
            // Counted either way, so an operator sees publishers knocking on the wrong door.
            assert_eq!(
                stats
                    .announcements_forbidden
                    .load(std::sync::atomic::Ordering::Relaxed),
                1,
                "{version}"
            );
        }
    }
}

/// A subscription with a start group asks the publisher for it, and a relay between them
/// passes it on: a viewer resuming after a reconnect gets the groups it missed, not only
/// the latest.
#[tokio::test]
async fn a_start_group_reaches_the_publisher_through_a_relay() {
    for version in [Version::Lite04, Version::Lite06] {
        let publisher = publisher("clock");
        for seq in [1, 2, 3] {
            write_group(&publisher.track, seq, &["f"]);
        }
        let relay = Origin::default();
        let relay_side = client(version, Some(relay.clone()), Some(relay.clone()));
        connect(
            client(version, Some(publisher.origin.clone()), None),
            relay_side.clone(),
        );
        let viewer = Origin::default();
        connect(relay_side, client(version, None, Some(viewer.clone())));
        let broadcast = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
            .await
            .unwrap();
        let mut track = broadcast.subscribe_from("seconds", Some(2)).unwrap();
        let got: Vec<u64> = read_frames(&mut track, 2).await.iter().map(|g| g.0).collect();
        assert_eq!(got, [2, 3], "{version}");
    }
}

/// A publisher learns whether the peer asked for its broadcasts at all: a relay that
/// takes nothing from the session never opens the Announce stream.
#[tokio::test]
async fn a_publisher_learns_whether_the_peer_asked_for_its_broadcasts() {
    for version in [Version::Lite03, Version::Lite06] {
        for asks in [true, false] {
            let ours_origin = publisher("mine").origin;
            let theirs = publisher("theirs");
            let seen = Origin::default();
            let ours = client(version, Some(ours_origin), Some(seen.clone()));
            let events = ours.events.clone();
            let relay_consume = asks.then(Origin::default);
            connect(ours, client(version, Some(theirs.origin.clone()), relay_consume));
            // Once we see the peer's broadcast the session is up both ways.
            within(seen.wait_for(&path("theirs"), Duration::from_secs(5)))
                .await
                .unwrap();
            if asks {
                let mut rx = events.subscribe();
                within(rx.wait_for(|e| e.announce_requested)).await.unwrap();
            } else {
                assert!(!events.get().announce_requested, "{version}");
            }
        }
    }
}
