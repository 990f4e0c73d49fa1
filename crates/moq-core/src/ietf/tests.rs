//! moq-transport session tests over the in-memory transport, for every draft: media in
//! both directions and across to moq-lite, one upstream subscription per track,
//! refusals, not-supported replies, malformed input and GOAWAY.

use std::{sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use moq_proto::{
    Path,
    ietf::{
        Fetch, FetchHeader, FetchKind, FetchObject, Filter, GroupOrder, Location, Message, Namespace,
        Publish, PublishNamespace, Subscribe, SubscribeNamespace, UniStream, Version, message::codes,
    },
};

use super::{
    Role,
    setup::{self, Control, Established},
    stream::{Reader, Writer},
};
use crate::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer,
    mem::{self, MemRecv, MemSend, MemSession},
    model::cache::Cache,
    session,
    transport::{SendStream, Session as _},
};

const SETUP: Duration = Duration::from_secs(5);

fn path(s: &str) -> Path {
    Path::new(s).unwrap()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

/// Wait until `check` holds, polling (no sleeping for a fixed time).
async fn eventually(mut check: impl FnMut() -> bool) {
    within(async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

fn config(publish: Option<Origin>, consume: Option<Origin>) -> session::Config {
    let mut config = session::Config::new(moq_proto::Version::Lite06);
    config.publish = publish;
    config.consume = consume;
    config
}

/// A relay's side of a session: serves `origin` and takes announcements into it, at
/// the root `anon`.
fn relay_config(origin: &Origin) -> session::Config {
    let mut config = config(Some(origin.clone()), Some(origin.clone()));
    config.root = path("anon");
    config
}

/// Connect a client and a server over the in-memory transport and run both.
fn connect(version: Version, client: session::Config, server: session::Config) -> (MemSession, MemSession) {
    let (a, b) = mem::pair();
    let client_session = a.clone();
    tokio::spawn(async move {
        let options = super::SetupOptions {
            path: Some("/anon".into()),
            ..Default::default()
        };
        let established = setup::connect(&client_session, version, options, SETUP).await?;
        super::run(client_session, client, established).await
    });
    let server_session = b.clone();
    tokio::spawn(async move {
        let established = setup::accept(&server_session, version, SETUP).await?;
        assert_eq!(established.peer().path.as_deref(), Some("/anon"));
        super::run(server_session, server, established).await
    });
    (a, b)
}

/// A publisher: one broadcast `name` with one track `seconds`.
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

async fn read_group(track: &mut crate::TrackConsumer) -> (u64, Vec<Frame>) {
    let mut group = within(track.next_group()).await.unwrap().unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = within(group.next_frame()).await.unwrap() {
        frames.push(frame);
    }
    (group.sequence(), frames)
}

fn payloads(frames: &[Frame]) -> Vec<&[u8]> {
    frames.iter().map(|f| &f.payload[..]).collect()
}

/// An IETF publisher of broadcast `clock` connected to a relay's origin (its root `anon`).
fn publishing_to_a_relay(version: Version) -> (Publisher, Origin) {
    let publisher = publisher("clock");
    let relay = Origin::default();
    connect(
        version,
        config(Some(publisher.origin.clone()), None),
        relay_config(&relay),
    );
    (publisher, relay)
}

/// A relay viewer that subscribes just as the last one leaves is not handed the IETF
/// upstream subscription being torn down (see
/// [`crate::testing::rejoining_viewers_get_each_frame_once`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joining_as_the_last_one_leaves_gets_each_frame_once() {
    for version in [Version::Draft14, Version::Draft22] {
        let (publisher, relay) = publishing_to_a_relay(version);
        let broadcast = within(relay.wait_for(&path("anon/clock"), Duration::from_secs(5)))
            .await
            .expect("announced at the relay");
        crate::testing::rejoining_viewers_get_each_frame_once(&broadcast, &publisher.track, version).await;
    }
}

/// An IETF publisher → relay → IETF subscriber, and a moq-lite-style local reader of
/// the relay's origin, for one draft.
async fn through_relay(version: Version) {
    let (publisher, relay) = publishing_to_a_relay(version);
    let viewer = Origin::default();
    let viewer_side = relay_config(&relay);
    let serving = viewer_side.stats.clone();
    connect(version, config(None, Some(viewer.clone())), viewer_side);

    // The relay learned the broadcast from PUBLISH_NAMESPACE, under the session root.
    let at_relay = within(relay.wait_for(&path("anon/clock"), Duration::from_secs(5)))
        .await
        .expect("announced at the relay");
    // The viewer learned it from its SUBSCRIBE_NAMESPACE.
    let at_viewer = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
        .await
        .expect("announced to the viewer");

    let mut local = at_relay.subscribe("seconds").unwrap();
    let mut remote = at_viewer.subscribe("seconds").unwrap();
    // Both subscriptions are in place (one upstream) before anything is written.
    eventually(|| publisher.track.consumers() >= 1).await;
    eventually(|| serving.subscriptions_active.load(Ordering::Relaxed) >= 1).await;
    write_group(&publisher.track, 7, &["2024-01-01 00:00:", "00", "01"]);
    write_group(&publisher.track, 8, &["2024-01-01 00:01:", "00"]);

    for track in [&mut local, &mut remote] {
        let (seq, frames) = read_group(track).await;
        assert_eq!(seq, 7, "{version}");
        assert_eq!(
            payloads(&frames),
            [&b"2024-01-01 00:00:"[..], b"00", b"01"],
            "{version}"
        );
        let (seq, frames) = read_group(track).await;
        assert_eq!(seq, 8, "{version}");
        assert_eq!(frames.len(), 2, "{version}");
    }
    // Timestamps and the timescale cross from draft-17 (TIMESCALE + TIMESTAMP).
    let info = within(local.info()).await.unwrap();
    if version.has_unified_setup() {
        assert_eq!(info.timescale, 1000, "{version}");
        let (_, frames) = {
            write_group(&publisher.track, 9, &["a", "b"]);
            read_group(&mut local).await
        };
        assert_eq!(
            frames.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            [9000, 9010],
            "{version}"
        );
    }
    // The publisher's priority (3, higher first) crosses as wire priority 252, in the
    // Track Properties of draft-17+ (earlier drafts leave the default, 127).
    let expected = if version.has_unified_setup() { 3 } else { 127 };
    assert_eq!(info.priority, expected, "{version}");
}

/// An IETF publisher that writes its last group and ends its namespace at once: the
/// relay delivers that group (PUBLISH_NAMESPACE_DONE and the group's stream travel
/// separately, and the DONE often arrives first).
#[tokio::test]
async fn the_last_group_before_a_namespace_ends_reaches_the_viewer() {
    for version in [Version::ALL[0], Version::ALL[Version::ALL.len() - 1]] {
        for round in 0..3 {
            let (publisher, relay) = publishing_to_a_relay(version);
            let at_relay = within(relay.wait_for(&path("anon/clock"), Duration::from_secs(5)))
                .await
                .expect("announced at the relay");
            let mut track = at_relay.subscribe("seconds").unwrap();
            eventually(|| publisher.track.consumers() >= 1).await;
            write_group(&publisher.track, 0, &["first"]);
            assert_eq!(read_group(&mut track).await.0, 0);
            write_group(&publisher.track, 1, &["last", "frame"]);
            drop(publisher);
            let ended = std::time::Instant::now();
            assert_eq!(
                crate::testing::last_group(&mut track, Duration::from_secs(5)).await,
                Some((1, vec![Bytes::from("last"), Bytes::from("frame")])),
                "{version}, round {round}: the last group was lost"
            );
            // And the track ends with the publisher's PUBLISH_DONE, not when the relay's
            // wait for stragglers (END_GRACE, 2 s) runs out.
            let took = ended.elapsed();
            assert!(
                took < Duration::from_millis(1500),
                "{version}, round {round}: the track ended {took:?} after its publisher"
            );
        }
    }
}

#[tokio::test]
async fn media_crosses_a_relay_on_every_draft() {
    for version in Version::ALL {
        through_relay(version).await;
    }
}

#[tokio::test]
async fn a_lite_publisher_reaches_an_ietf_viewer_and_back() {
    for version in [Version::Draft14, Version::Draft16, Version::Draft22] {
        // lite publisher → relay.
        let publisher = publisher("room");
        let relay = Origin::default();
        let (a, b) = mem::pair();
        let lite = moq_proto::Version::Lite06;
        tokio::spawn(session::run(a, {
            let mut c = session::Config::new(lite);
            c.publish = Some(publisher.origin.clone());
            c
        }));
        tokio::spawn(session::run(b, {
            let mut c = relay_config(&relay);
            c.version = lite;
            c
        }));
        // IETF viewer ← relay.
        let viewer = Origin::default();
        connect(version, config(None, Some(viewer.clone())), relay_config(&relay));
        let broadcast = within(viewer.wait_for(&path("room"), Duration::from_secs(5)))
            .await
            .unwrap();
        let mut track = broadcast.subscribe("seconds").unwrap();
        eventually(|| publisher.track.consumers() >= 1).await;
        write_group(&publisher.track, 1, &["x", "y"]);
        let (seq, frames) = read_group(&mut track).await;
        assert_eq!((seq, payloads(&frames)), (1, vec![&b"x"[..], b"y"]), "{version}");

        // And an IETF publisher to a lite viewer.
        let ietf_publisher = self::publisher("talk");
        connect(
            version,
            config(Some(ietf_publisher.origin.clone()), None),
            relay_config(&relay),
        );
        let (a, b) = mem::pair();
        let lite_viewer = Origin::default();
        tokio::spawn(session::run(a, {
            let mut c = session::Config::new(lite);
            c.consume = Some(lite_viewer.clone());
            c
        }));
        tokio::spawn(session::run(b, {
            let mut c = relay_config(&relay);
            c.version = lite;
            c
        }));
        let broadcast = within(lite_viewer.wait_for(&path("talk"), Duration::from_secs(5)))
            .await
            .unwrap();
        let mut track = broadcast.subscribe("seconds").unwrap();
        eventually(|| ietf_publisher.track.consumers() >= 1).await;
        write_group(&ietf_publisher.track, 4, &["hello"]);
        let (seq, frames) = read_group(&mut track).await;
        assert_eq!((seq, payloads(&frames)), (4, vec![&b"hello"[..]]), "{version}");
    }
}

#[tokio::test]
async fn many_viewers_share_one_upstream_subscription() {
    let version = Version::Draft16;
    let publisher = publisher("clock");
    let relay = Origin::default();
    let mut publisher_side = relay_config(&relay);
    let upstream = publisher_side.upstream.clone();
    publisher_side.publish = None;
    connect(
        version,
        config(Some(publisher.origin.clone()), None),
        publisher_side,
    );
    let mut tracks = Vec::new();
    for _ in 0..3 {
        let viewer = Origin::default();
        let viewer_side = relay_config(&relay);
        let serving = viewer_side.stats.clone();
        connect(version, config(None, Some(viewer.clone())), viewer_side);
        let broadcast = within(viewer.wait_for(&path("clock"), Duration::from_secs(5)))
            .await
            .unwrap();
        tracks.push(broadcast.subscribe("seconds").unwrap());
        eventually(|| serving.subscriptions_active.load(Ordering::Relaxed) >= 1).await;
    }
    eventually(|| publisher.track.consumers() >= 1).await;
    write_group(&publisher.track, 1, &["a"]);
    for track in &mut tracks {
        assert_eq!(read_group(track).await.0, 1);
    }
    assert_eq!(upstream.get(), 1, "one SUBSCRIBE upstream");
    assert_eq!(publisher.track.consumers(), 1);
    // The viewers leave: the upstream subscription is cancelled (UNSUBSCRIBE).
    drop(tracks);
    eventually(|| upstream.get() == 0).await;
    eventually(|| publisher.track.consumers() == 0).await;
}

/// A hand-driven client: SETUP done, then raw messages.
struct Raw {
    session: MemSession,
    version: Version,
    control: Option<(Writer<MemSend>, Reader<MemRecv>)>,
    /// The server's SETUP stream (draft-17+).
    setup: Option<Reader<MemRecv>>,
    next_id: u64,
}

/// A request's channel on the raw client.
enum Req {
    Control,
    Stream {
        _writer: Writer<MemSend>,
        reader: Reader<MemRecv>,
    },
}

impl Raw {
    /// Start a server session with `server` and connect a raw client to it.
    async fn start(version: Version, server: session::Config) -> Self {
        let (a, b) = mem::pair();
        let server_session = b.clone();
        tokio::spawn(async move {
            let established = setup::accept(&server_session, version, SETUP).await?;
            super::run(server_session, server, established).await
        });
        let established = within(setup::connect(&a, version, Default::default(), SETUP))
            .await
            .unwrap();
        Self::from(a, established)
    }

    fn from(session: MemSession, established: Established<MemSession>) -> Self {
        let version = established.version;
        let (control, setup) = match established.control {
            Control::Bidi { writer, reader, .. } => (Some((writer, reader)), None),
            Control::Uni { ours, theirs } => {
                // Our SETUP stream must stay open: dropping it resets it.
                std::mem::forget(ours);
                (None, Some(theirs))
            }
        };
        Self {
            session,
            version,
            control,
            setup,
            next_id: 0,
        }
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 2;
        id
    }

    async fn send(&mut self, msg: Message) -> Req {
        match &mut self.control {
            Some((writer, _)) => {
                writer.encode(&msg).await.unwrap();
                Req::Control
            }
            None => {
                let (send, recv) = self.session.open_bi().await.unwrap();
                let mut writer = Writer::new(send, self.version);
                writer.encode(&msg).await.unwrap();
                Req::Stream {
                    _writer: writer,
                    reader: Reader::new(recv, self.version),
                }
            }
        }
    }

    /// The next message for `req`, skipping flow control on the control stream.
    async fn recv(&mut self, req: &mut Req) -> Option<Message> {
        loop {
            let msg = match req {
                Req::Control => within(self.control.as_mut().unwrap().1.decode_maybe::<Message>()).await,
                Req::Stream { reader, .. } => within(reader.decode_maybe::<Message>()).await,
            };
            match msg {
                Ok(Some(Message::MaxRequestId(_))) => continue,
                Ok(msg) => return msg,
                Err(_) => return None,
            }
        }
    }

    /// Send a request and return the code of the error reply it must get.
    async fn refused(&mut self, msg: Message) -> u64 {
        let mut req = self.send(msg).await;
        error_code(self.recv(&mut req).await)
    }

    /// How the server closed the session.
    async fn closed(&self) -> (u32, String) {
        within(async {
            loop {
                if let Some(reason) = self.session.close_reason() {
                    return reason;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// The code of an error reply, whichever message carries it in this draft.
fn error_code(msg: Option<Message>) -> u64 {
    match msg {
        Some(
            Message::RequestError(e)
            | Message::SubscribeError(e)
            | Message::FetchError(e)
            | Message::PublishError(e)
            | Message::TrackStatusError(e)
            | Message::PublishNamespaceError(e)
            | Message::SubscribeNamespaceError(e),
        ) => e.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn subscribe(id: u64, ns: &str, name: &str) -> Message {
    Message::Subscribe(Subscribe {
        request_id: id,
        namespace: Namespace::from_path(&path(ns)),
        name: name.into(),
        priority: Some(128),
        group_order: Some(GroupOrder::Descending),
        forward: Some(true),
        filter: Some(Filter::NextObject),
        ..Default::default()
    })
}

#[tokio::test]
async fn refusals_and_not_supported_replies_on_every_draft() {
    for version in Version::ALL {
        let publisher = publisher("clock");
        let mut server = config(Some(publisher.origin.clone()), None);
        server.permissions.publish = vec![];
        server.permissions.subscribe = vec![path("clock"), path("nothing")];
        let mut raw = Raw::start(version, server).await;

        // A broadcast that is not there.
        let id = raw.id();
        let not_found = match version {
            Version::Draft14 => 0x4,
            _ => 0x10,
        };
        assert_eq!(
            raw.refused(subscribe(id, "nothing", "seconds")).await,
            not_found,
            "{version}"
        );

        // One the session may not see.
        let id = raw.id();
        assert_eq!(
            raw.refused(subscribe(id, "secret/clock", "seconds")).await,
            codes::UNAUTHORIZED,
            "{version}"
        );

        // Requests the relay does not serve.
        let id = raw.id();
        let mut track_status = subscribe(id, "clock", "seconds");
        if let Message::Subscribe(m) = track_status {
            track_status = Message::TrackStatus(m);
        }
        assert_eq!(raw.refused(track_status).await, codes::NOT_SUPPORTED, "{version}");

        let id = raw.id();
        assert_eq!(
            raw.refused(Message::Publish(Publish {
                request_id: id,
                namespace: Namespace::from_path(&path("clock")),
                name: "x".into(),
                track_alias: 1,
                group_order: Some(GroupOrder::Ascending),
                forward: Some(true),
                ..Default::default()
            }))
            .await,
            codes::NOT_SUPPORTED,
            "{version}"
        );

        if !version.has_filtered_fetch() {
            let id = raw.id();
            assert_eq!(
                raw.refused(Message::Fetch(Fetch {
                    request_id: id,
                    priority: Some(1),
                    group_order: Some(GroupOrder::Ascending),
                    kind: FetchKind::RelativeJoining {
                        joining_request_id: 0,
                        offset: 0,
                    },
                    ..Default::default()
                }))
                .await,
                codes::NOT_SUPPORTED,
                "{version}"
            );
        }

        // A session that may not publish cannot announce.
        let id = raw.id();
        assert_eq!(
            raw.refused(Message::PublishNamespace(PublishNamespace {
                request_id: id,
                namespace: Namespace::from_path(&path("mine")),
                ..Default::default()
            }))
            .await,
            codes::UNAUTHORIZED,
            "{version}"
        );

        // Nor discover outside its permissions.
        let id = raw.id();
        assert_eq!(
            raw.refused(Message::SubscribeNamespace(SubscribeNamespace {
                request_id: id,
                prefix: Namespace::from_path(&path("secret")),
                options: u64::from(version.has_subscribe_options()),
                ..Default::default()
            }))
            .await,
            codes::UNAUTHORIZED,
            "{version}"
        );

        // After all of that the session still serves.
        let id = raw.id();
        let mut req = raw.send(subscribe(id, "clock", "seconds")).await;
        assert!(
            matches!(raw.recv(&mut req).await, Some(Message::SubscribeOk(_))),
            "{version}"
        );
        assert_eq!(raw.session.close_reason(), None, "{version}");
    }
}

#[tokio::test]
async fn an_unknown_request_type_on_its_own_stream_is_not_supported() {
    for version in Version::ALL.into_iter().filter(|v| v.has_request_streams()) {
        let mut raw = Raw::start(version, config(None, None)).await;
        assert_eq!(
            raw.refused(Message::Unknown {
                kind: 0x3f,
                body: Bytes::from_static(b"\x00"),
            })
            .await,
            codes::NOT_SUPPORTED,
            "{version}"
        );
        assert_eq!(raw.session.close_reason(), None);
    }
}

#[tokio::test]
async fn malformed_input_closes_the_session_with_protocol_violation() {
    for version in Version::ALL {
        // An unknown message on the control stream, or a request stream whose first
        // message does not decode.
        let mut raw = Raw::start(version, config(None, None)).await;
        match &mut raw.control {
            Some((writer, _)) => writer.raw(|buf| {
                buf.extend_from_slice(&[0x3f, 0x00, 0x01, 0x00]);
                Ok(())
            }),
            None => {
                let (send, _recv) = raw.session.open_bi().await.unwrap();
                let mut writer = Writer::new(send, version);
                // SUBSCRIBE whose body is cut short inside its length.
                writer
                    .raw(|buf| {
                        buf.extend_from_slice(&[0x03, 0x00, 0x02, 0x01, 0x05]);
                        Ok(())
                    })
                    .unwrap();
                writer.flush().await.unwrap();
                std::mem::forget(writer);
                Ok(())
            }
        }
        .unwrap();
        if let Some((writer, _)) = &mut raw.control {
            writer.flush().await.unwrap();
        }
        assert_eq!(raw.closed().await.0, 0x3, "{version}");

        // An unknown unidirectional stream type.
        let raw = Raw::start(version, config(None, None)).await;
        let mut send = raw.session.open_uni().await.unwrap();
        send.write_all(&[0x3e]).await.unwrap();
        assert_eq!(raw.closed().await.0, 0x3, "{version}");
    }
}

#[tokio::test]
async fn control_stream_request_ids_are_checked() {
    for version in [Version::Draft14, Version::Draft15, Version::Draft16] {
        // The client's IDs are even: an odd one is the server's.
        let mut raw = Raw::start(version, config(None, None)).await;
        let mut req = raw.send(subscribe(1, "clock", "seconds")).await;
        let _ = raw.recv(&mut req).await;
        assert_eq!(raw.closed().await.0, 0x3, "{version}");

        // Past the MAX_REQUEST_ID the server granted.
        let mut raw = Raw::start(version, config(None, None)).await;
        let mut req = raw
            .send(subscribe(super::control::WINDOW + 2, "clock", "seconds"))
            .await;
        let _ = raw.recv(&mut req).await;
        assert_eq!(raw.closed().await.0, 0x3, "{version}");
    }
}

#[tokio::test]
async fn a_client_setup_without_draft_14_is_refused() {
    let (a, b) = mem::pair();
    let server = tokio::spawn(async move { setup::accept(&b, Version::Draft14, SETUP).await.map(|_| ()) });
    let (send, _recv) = a.open_bi().await.unwrap();
    let mut writer = Writer::new(send, Version::Draft14);
    writer
        .encode(&Message::ClientSetup(moq_proto::ietf::ClientSetup {
            versions: vec![Version::Draft15.code()],
            options: Default::default(),
        }))
        .await
        .unwrap();
    let err = within(server).await.unwrap().unwrap_err();
    assert!(matches!(err, crate::Error::Version(_)), "{err:?}");
    assert_eq!(err.session_code(), 0x15);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_times_out_in_setup() {
    for version in [Version::Draft14, Version::Draft22] {
        let (_a, b) = mem::pair();
        let err = setup::accept(&b, version, SETUP).await.unwrap_err();
        assert_eq!(err, crate::Error::Timeout);
    }
}

#[tokio::test]
async fn draining_sends_goaway_on_every_draft() {
    for version in Version::ALL {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut server = config(None, None);
        server.shutdown = Some(rx);
        let mut raw = Raw::start(version, server).await;
        tx.send(true).unwrap();
        let goaway = match (&mut raw.control, &mut raw.setup) {
            (Some((_, reader)), _) => loop {
                match within(reader.decode::<Message>()).await.unwrap() {
                    Message::GoAway(goaway) => break goaway,
                    _ => continue,
                }
            },
            (None, Some(reader)) => within(setup::read_goaway(reader)).await.unwrap().unwrap(),
            _ => unreachable!(),
        };
        assert_eq!(goaway.uri, "", "{version}");
        // Draining refuses new requests (GOING_AWAY from draft-17), and keeps the session.
        let id = raw.id();
        let code = raw.refused(subscribe(id, "clock", "seconds")).await;
        let expected = match version.has_unified_setup() {
            true => 0x6,
            false => codes::INTERNAL_ERROR,
        };
        assert_eq!(code, expected, "{version}");
        assert_eq!(raw.session.close_reason(), None);
    }
}

#[tokio::test]
async fn a_fetch_serves_cached_groups_on_a_fetch_stream() {
    for version in Version::ALL {
        let publisher = publisher("clock");
        // The origin's track caches from when someone reads it.
        let mut reading = publisher
            .origin
            .consume(&path("clock"))
            .unwrap()
            .subscribe("seconds")
            .unwrap();
        eventually(|| publisher.track.consumers() >= 1).await;
        write_group(&publisher.track, 3, &["a", "b"]);
        write_group(&publisher.track, 4, &["c"]);
        read_group(&mut reading).await;
        read_group(&mut reading).await;
        let mut raw = Raw::start(version, config(Some(publisher.origin.clone()), None)).await;
        let id = raw.id();
        let namespace = Namespace::from_path(&path("clock"));
        let (kind, filter) = match version.has_filtered_fetch() {
            false => (
                FetchKind::Standalone {
                    namespace,
                    name: "seconds".into(),
                    start: Location { group: 3, object: 0 },
                    end: Location { group: 4, object: 0 },
                },
                None,
            ),
            true => (
                FetchKind::Track {
                    namespace,
                    name: "seconds".into(),
                },
                Some(Filter::Absolute {
                    start: Location { group: 3, object: 0 },
                    end: None,
                }),
            ),
        };
        let mut req = raw
            .send(Message::Fetch(Fetch {
                request_id: id,
                priority: Some(1),
                group_order: Some(GroupOrder::Ascending),
                kind,
                filter,
                ..Default::default()
            }))
            .await;
        let ok = raw.recv(&mut req).await;
        assert!(
            matches!(&ok, Some(Message::FetchOk(ok)) if ok.end == Location { group: 4, object: 0 }),
            "{version}: {ok:?}"
        );
        let recv = within(raw.session.accept_uni()).await.unwrap();
        let mut reader = Reader::new(recv, version);
        match within(reader.decode::<UniStream>()).await.unwrap() {
            UniStream::Fetch(FetchHeader { request_id }) => assert_eq!(request_id, id),
            other => panic!("{other:?}"),
        }
        let mut objects = Vec::new();
        while let Some(object) = within(reader.decode_maybe::<FetchObject>()).await.unwrap() {
            let FetchObject::Object { size, .. } = object else {
                panic!("{object:?}")
            };
            objects.push(within(reader.read_exact(size as usize)).await.unwrap());
        }
        assert_eq!(objects, [&b"a"[..], b"b", b"c"], "{version}");
    }
}

#[tokio::test]
async fn subscribe_ok_names_the_largest_object_and_the_latest_group_is_replayed() {
    for version in [Version::Draft14, Version::Draft16, Version::Draft22] {
        let publisher = publisher("clock");
        write_group(&publisher.track, 5, &["h", "1", "2"]);
        let mut raw = Raw::start(version, config(Some(publisher.origin.clone()), None)).await;
        let id = raw.id();
        let mut req = raw.send(subscribe(id, "clock", "seconds")).await;
        let Some(Message::SubscribeOk(ok)) = raw.recv(&mut req).await else {
            panic!("no SUBSCRIBE_OK")
        };
        assert_eq!(ok.largest, Some(Location { group: 5, object: 2 }), "{version}");
        let recv = within(raw.session.accept_uni()).await.unwrap();
        let mut reader = Reader::new(recv, version);
        let UniStream::Subgroup(header) = within(reader.decode::<UniStream>()).await.unwrap() else {
            panic!("not a subgroup stream")
        };
        assert_eq!((header.track_alias, header.group), (ok.track_alias, 5));
        // The publisher's priority 3 (higher first) is 252 on the wire (lower first).
        assert_eq!(header.priority, Some(252));
        let first = within(reader.object(header.properties)).await.unwrap().unwrap();
        assert_eq!(first.id_delta, 0, "the group starts at its first object");
        if version.has_unified_setup() {
            assert!(ok.properties.get_varint(0x08).is_some(), "TIMESCALE declared");
        }
    }
}

#[tokio::test]
async fn a_subgroup_other_than_zero_is_dropped_and_the_session_goes_on() {
    let version = Version::Draft16;
    let relay = Origin::default();
    let (a, b) = mem::pair();
    let server = b.clone();
    tokio::spawn(async move {
        let established = setup::accept(&server, version, SETUP).await?;
        super::run(server, relay_config(&relay), established).await
    });
    let established = within(setup::connect(&a, version, Default::default(), SETUP))
        .await
        .unwrap();
    assert_eq!(established.role(), Role::Client);
    let raw = Raw::from(a, established);
    let send = raw.session.open_uni().await.unwrap();
    let mut writer = Writer::new(send, version);
    writer
        .encode(&UniStream::Subgroup(moq_proto::ietf::SubgroupHeader {
            track_alias: 99,
            group: 0,
            subgroup: moq_proto::ietf::SubgroupId::Explicit(1),
            ..Default::default()
        }))
        .await
        .unwrap();
    // No subscription has alias 99: the stream is dropped after a while, not the session.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(raw.session.close_reason(), None);
    drop(writer);
}

#[test]
fn roles_alternate_request_id_parity() {
    assert_eq!(Role::Client.first_id(), 0);
    assert_eq!(Role::Server.first_id(), 1);
    assert_eq!(Role::Client.peer(), Role::Server);
}
