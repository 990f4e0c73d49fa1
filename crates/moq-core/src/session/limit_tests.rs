//! Session tests that cross each limit of the [`Quota`](super::Quota) over the
//! in-memory transport: each checks the refusal the peer sees (the stream reset or
//! stopped with the protocol's code), the counter, and that another session through the
//! same relay lost nothing.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use moq_proto::{
    Announce, AnnounceOk, AnnounceRequest, ControlStream, Cost, Encode, Fetch, Hops, Path, SubscribeResponse,
    TrackRequest, Version,
};

use super::{stream::Reader, *};
use crate::{
    BroadcastProducer, Frame, Origin, Publication, TrackConsumer, TrackInfo, TrackProducer,
    mem::{self, MemSession},
    model::cache::{Cache, CacheConfig},
    stats::{Limit, Stats},
    transport::{SendStream as _, Session as _},
};

const VERSION: Version = Version::Lite06;

/// NO_CAPACITY, CONTROL_TIMEOUT, GROUP_TOO_LARGE, EVICTED.
const NO_CAPACITY: u32 = 0x30;
const CONTROL_TIMEOUT: u32 = 0x31;
const GROUP_TOO_LARGE: u32 = 0x32;
const EVICTED: u32 = 0x35;

fn path(s: &str) -> Path {
    Path::new(s).unwrap()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

/// Wait until `check` holds, for at most 5 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A relay: one origin that sessions publish into and serve from, under one quota.
struct Relay {
    origin: Origin,
    stats: Arc<Stats>,
    quota: Quota,
}

impl Relay {
    fn new(quota: Quota) -> Self {
        Self::with_cache(quota, Cache::default())
    }

    fn with_cache(quota: Quota, cache: Cache) -> Self {
        Self {
            origin: Origin::new(cache, Duration::ZERO),
            stats: Arc::default(),
            quota,
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::new(VERSION);
        config.publish = Some(self.origin.clone());
        config.consume = Some(self.origin.clone());
        config.quota = self.quota.clone();
        config.stats = self.stats.clone();
        config
    }

    /// A session with a peer running its own driver: (relay's end, peer's end).
    fn connect(&self, peer: Config) -> (MemSession, MemSession) {
        let (ours, theirs) = mem::pair();
        tokio::spawn(run(ours.clone(), self.config()));
        tokio::spawn(run(theirs.clone(), peer));
        (ours, theirs)
    }

    /// A session with a peer that speaks raw bytes: only the relay runs a driver.
    fn raw(&self) -> (MemSession, MemSession) {
        let (ours, theirs) = mem::pair();
        tokio::spawn(run(ours.clone(), self.config()));
        (ours, theirs)
    }

    /// A viewer of broadcast `name`'s `video` track through the relay.
    async fn viewer(&self, name: &str) -> TrackConsumer {
        let origin = Origin::default();
        let mut config = Config::new(VERSION);
        config.consume = Some(origin.clone());
        self.connect(config);
        let broadcast = within(origin.wait_for(&path(name), Duration::from_secs(5)))
            .await
            .expect("the viewer sees the broadcast");
        broadcast.subscribe("video").unwrap()
    }
}

/// A publishing client: one broadcast with a `video` track.
struct Publisher {
    _origin: Origin,
    _broadcast: BroadcastProducer,
    track: TrackProducer,
    _publication: Publication,
}

impl Publisher {
    /// Publish broadcast `name` to the relay.
    fn start(relay: &Relay, name: &str) -> Self {
        Self::start_with(relay, name, Quota::default())
    }

    /// Publish broadcast `name` to the relay, the publisher's own session under `quota`.
    fn start_with(relay: &Relay, name: &str, quota: Quota) -> Self {
        let origin = Origin::default();
        let broadcast = BroadcastProducer::new(Cache::default());
        let track = broadcast.create_track(TrackProducer::with_info(
            "video",
            TrackInfo::default(),
            Cache::default(),
        ));
        let publication = origin.publish(path(name), broadcast.consume(), Hops::new());
        let mut config = Config::new(VERSION);
        config.publish = Some(origin.clone());
        config.quota = quota;
        relay.connect(config);
        Self {
            _origin: origin,
            _broadcast: broadcast,
            track,
            _publication: publication,
        }
    }

    /// Wait until the relay subscribed to the track: every group written from now on
    /// reaches the viewer whose subscription caused it.
    async fn subscribed(&self) {
        until("the relay to subscribe", || self.track.consumers() >= 1).await;
    }
}

fn frame(size: usize) -> Frame {
    Frame {
        timestamp: 0,
        payload: Bytes::from(vec![7; size]),
    }
}

/// Read the next group whole: its sequence, its frame count, and how it ended.
async fn read_group(track: &mut TrackConsumer) -> (u64, usize, crate::Result<()>) {
    read_whole(within(track.next_group()).await.unwrap().unwrap()).await
}

async fn read_whole(mut group: crate::GroupConsumer) -> (u64, usize, crate::Result<()>) {
    let mut frames = 0;
    let end = loop {
        match within(group.next_frame()).await {
            Ok(Some(_)) => frames += 1,
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    (group.sequence(), frames, end)
}

/// Another broadcast through the same relay: three groups of three frames, all arrive.
async fn victim_loses_nothing(relay: &Relay) {
    let publisher = Publisher::start(relay, "calm");
    let mut viewer = relay.viewer("calm").await;
    publisher.subscribed().await;
    for seq in 0..3 {
        let mut group = publisher.track.create_group(seq).unwrap();
        for _ in 0..3 {
            group.write(frame(100));
        }
        group.finish();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(read_group(&mut viewer).await);
    }
    got.sort_by_key(|g| g.0);
    assert_eq!(got, [(0, 3, Ok(())), (1, 3, Ok(())), (2, 3, Ok(()))]);
}

/// Open a bidirectional stream and send `request` on it.
async fn request(peer: &MemSession, request: &[u8]) -> (mem::MemSend, Reader<mem::MemRecv>) {
    let (mut send, recv) = peer.open_bi().await.unwrap();
    send.write_all(request).await.unwrap();
    (send, Reader::new(recv, VERSION))
}

/// Accept the ANNOUNCE_REQUEST the relay sends a raw peer (the pull model); returns the
/// stream to answer on.
async fn announce_request(peer: &MemSession) -> mem::MemSend {
    let (send, recv) = within(peer.accept_bi()).await.unwrap();
    let mut reader = Reader::new(recv, VERSION);
    assert_eq!(
        within(reader.decode::<ControlStream>()).await.unwrap(),
        ControlStream::Announce
    );
    within(reader.decode::<AnnounceRequest>()).await.unwrap();
    send
}

fn bytes(kind: ControlStream, message: &impl Encode) -> Vec<u8> {
    let mut out = kind.to_vec(VERSION).unwrap();
    out.extend(message.to_vec(VERSION).unwrap());
    out
}

#[tokio::test]
async fn a_group_past_its_size_or_frame_cap_is_ended_with_group_too_large() {
    let caps = [
        (
            Limit::GroupSize,
            Quota {
                max_group_size: 10 * 1000,
                ..Default::default()
            },
        ),
        (
            Limit::GroupFrames,
            Quota {
                max_group_frames: 10,
                ..Default::default()
            },
        ),
    ];
    for (limit, quota) in caps {
        let relay = Relay::new(quota);
        let attacker = Publisher::start(&relay, "evil");
        let mut viewer = relay.viewer("evil").await;
        attacker.subscribed().await;
        let mut group = attacker.track.create_group(0).unwrap();
        for _ in 0..20 {
            group.write(frame(1000));
        }
        // Its viewer keeps the ten frames that fit, then sees GROUP_TOO_LARGE.
        assert_eq!(
            read_group(&mut viewer).await,
            (0, 10, Err(Error::Reset(GROUP_TOO_LARGE))),
            "{limit:?}"
        );
        assert_eq!(relay.stats.refused(limit), 1, "{limit:?}");
        // The group is not kept growing at the relay: only the frames that fit.
        let cached = relay
            .origin
            .consume(&path("evil"))
            .unwrap()
            .subscribe("video")
            .unwrap()
            .get_group(0)
            .unwrap();
        assert_eq!(cached.frames(), 10);
        assert!(cached.is_aborted());
        victim_loses_nothing(&relay).await;
    }
}

#[tokio::test]
async fn group_streams_past_the_session_limit_are_stopped_and_the_slots_come_back() {
    let relay = Relay::new(Quota {
        max_groups: 2,
        ..Default::default()
    });
    let attacker = Publisher::start(&relay, "evil");
    let mut viewer = relay.viewer("evil").await;
    attacker.subscribed().await;
    let mut open: Vec<_> = (0..3)
        .map(|seq| {
            let mut group = attacker.track.create_group(seq).unwrap();
            group.write(frame(10));
            group
        })
        .collect();
    until("a group stream to be refused", || {
        relay.stats.refused(Limit::Groups) == 1
    })
    .await;
    // Two of the three reached the viewer; finish them.
    let mut arrived = Vec::new();
    for _ in 0..2 {
        let group = within(viewer.next_group()).await.unwrap().unwrap();
        arrived.push(group.sequence());
    }
    for group in open.drain(..) {
        match arrived.contains(&group.sequence()) {
            true => group.finish(),
            false => drop(group),
        }
    }
    // With the slots back, a new group goes through.
    let mut group = attacker.track.create_group(3).unwrap();
    group.write(frame(10));
    group.finish();
    assert_eq!(read_group(&mut viewer).await, (3, 1, Ok(())));
    assert_eq!(relay.stats.refused(Limit::Groups), 1);
    victim_loses_nothing(&relay).await;
}

#[tokio::test]
async fn fetch_track_and_announce_requests_past_their_limits_are_reset_with_no_capacity() {
    let relay = Relay::new(Quota {
        max_fetches: 1,
        max_track_requests: 1,
        max_announce_requests: 1,
        ..Default::default()
    });
    // A broadcast whose track never states its info and never has group 99: the first
    // request of each kind waits, holding its slot.
    let quiet = BroadcastProducer::new(Cache::default());
    let _track = quiet.create_track(TrackProducer::new("video", Cache::default()));
    let _publication = relay.origin.publish(path("quiet"), quiet.consume(), Hops::new());
    let (relay_session, peer) = relay.raw();
    let announce = bytes(
        ControlStream::Announce,
        &AnnounceRequest {
            prefix: Path::empty(),
            exclude_hop: 0,
        },
    );
    let track = bytes(
        ControlStream::Track,
        &TrackRequest {
            broadcast: path("quiet"),
            track: "video".into(),
        },
    );
    let fetch = bytes(
        ControlStream::Fetch,
        &Fetch {
            broadcast: path("quiet"),
            track: "video".into(),
            group: 99,
            ..Default::default()
        },
    );
    let mut held = Vec::new();
    // The first announce request is answered and stays open.
    let (send, mut reader) = request(&peer, &announce).await;
    assert_eq!(within(reader.decode::<AnnounceOk>()).await.unwrap().active, 1);
    held.push((send, reader));
    let (_send, mut refused) = request(&peer, &announce).await;
    assert_eq!(
        within(refused.decode::<AnnounceOk>()).await.unwrap_err(),
        Error::Reset(NO_CAPACITY)
    );
    assert_eq!(relay.stats.refused(Limit::AnnounceRequests), 1);

    for (limit, message) in [(Limit::TrackRequests, &track), (Limit::Fetches, &fetch)] {
        held.push(request(&peer, message).await);
        // The first is admitted before the second arrives: the relay reads streams in order.
        let (_send, mut refused) = request(&peer, message).await;
        assert_eq!(
            within(refused.decode::<moq_proto::TrackInfo>())
                .await
                .unwrap_err(),
            Error::Reset(NO_CAPACITY),
            "{limit:?}"
        );
        assert_eq!(relay.stats.refused(limit), 1, "{limit:?}");
    }
    assert!(relay_session.close_reason().is_none(), "the session survives");
    victim_loses_nothing(&relay).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_first_message_never_comes_is_stopped_at_the_header_timeout() {
    let relay = Relay::new(Quota {
        header_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    let (relay_session, peer) = relay.raw();
    let started = tokio::time::Instant::now();
    // A SUBSCRIBE stream and a GROUP stream that send their type and nothing more.
    let (_send, mut subscribe) = request(&peer, &[0x02]).await;
    let mut group = peer.open_uni().await.unwrap();
    group.write_all(&[0x00]).await.unwrap();
    assert_eq!(
        within(subscribe.decode::<SubscribeResponse>()).await.unwrap_err(),
        Error::Reset(CONTROL_TIMEOUT)
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let mut stopped = None;
    for _ in 0..100 {
        if let Err(err) = group.write_all(&[0x00]).await {
            stopped = err.code;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stopped, Some(CONTROL_TIMEOUT));
    assert_eq!(relay.stats.refused(Limit::StreamTimeout), 2);
    assert!(relay_session.close_reason().is_none(), "the session survives");
    // A stream whose header arrives in time is not timed out afterwards.
    let (_send, mut reader) = request(
        &peer,
        &bytes(
            ControlStream::Announce,
            &AnnounceRequest {
                prefix: Path::empty(),
                exclude_hop: 0,
            },
        ),
    )
    .await;
    within(reader.decode::<AnnounceOk>()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(relay.stats.refused(Limit::StreamTimeout), 2);
    victim_loses_nothing(&relay).await;
}

#[tokio::test]
async fn streams_past_the_pending_limit_are_refused_at_once() {
    let relay = Relay::new(Quota {
        max_pending_streams: 2,
        ..Default::default()
    });
    // A burst of new streams whose headers are there (a viewer subscribing) is no flood.
    victim_loses_nothing(&relay).await;
    let (_relay_session, peer) = relay.raw();
    // Two streams opened with nothing on them yet hold both pending slots.
    let (mut first, mut first_reader) = request(&peer, &[]).await;
    let _second = request(&peer, &[]).await;
    let (_send, mut third) = request(&peer, &[]).await;
    assert_eq!(
        within(third.decode::<AnnounceOk>()).await.unwrap_err(),
        Error::Reset(NO_CAPACITY)
    );
    assert_eq!(relay.stats.refused(Limit::PendingStreams), 1);
    // Once the first one's header arrives, its pending slot is free for a new stream.
    let announce = bytes(
        ControlStream::Announce,
        &AnnounceRequest {
            prefix: Path::empty(),
            exclude_hop: 0,
        },
    );
    first.write_all(&announce).await.unwrap();
    within(first_reader.decode::<AnnounceOk>()).await.unwrap();
    let (_send, mut fourth) = request(&peer, &announce).await;
    within(fourth.decode::<AnnounceOk>()).await.unwrap();
    assert_eq!(relay.stats.refused(Limit::PendingStreams), 1);
    victim_loses_nothing(&relay).await;
}

#[tokio::test]
async fn lite06_announcements_past_the_limit_are_counted_and_their_ids_not_stored() {
    let relay = Relay::new(Quota {
        max_announcements: 2,
        ..Default::default()
    });
    let (relay_session, peer) = relay.raw();
    // The relay asks the peer for its broadcasts (the pull model); answer by hand.
    let mut send = announce_request(&peer).await;
    let start = |name: &str| Announce::Active {
        suffix: path(name),
        hops: Hops::new(),
        cost: Cost::default(),
    };
    let mut out = AnnounceOk { origin: 0, active: 0 }.to_vec(VERSION).unwrap();
    for msg in [
        start("a"),                  // id 0
        start("b"),                  // id 1
        start("c"),                  // id 2: past the limit, refused
        Announce::EndedId { id: 2 }, // the refused id: ignored
        start("d"),                  // id 3: still past the limit, refused
        Announce::EndedId { id: 0 }, // a ends
        start("e"),                  // id 4: room again
    ] {
        out.extend(msg.to_vec(VERSION).unwrap());
    }
    send.write_all(&out).await.unwrap();
    until("b and e announced at the relay", || {
        relay.origin.paths() == [path("b"), path("e")]
    })
    .await;
    assert_eq!(relay.stats.refused(Limit::Announcements), 2);
    // An id no START named is a protocol violation.
    send.write_all(&Announce::EndedId { id: 99 }.to_vec(VERSION).unwrap())
        .await
        .unwrap();
    until("the session to end over the unknown id", || {
        relay_session.close_reason().is_some()
    })
    .await;
    let (code, reason) = relay_session.close_reason().unwrap();
    assert_eq!(code, 0x3, "{reason}");
    assert!(reason.contains("unknown announce id 99"), "{reason}");
}

#[tokio::test]
async fn over_the_cache_budget_groups_still_being_written_are_evicted_and_the_victim_loses_nothing() {
    // Room for a few groups, not for the attacker's forty open ones.
    let cache = Cache::new(CacheConfig {
        capacity: Some(200_000),
        duration: None,
    });
    // Both the attacker and the relay deliver all forty at once: only the budget ends any.
    let deliver_all = Quota {
        max_groups_in_flight: 64,
        ..Default::default()
    };
    let relay = Relay::with_cache(deliver_all.clone(), cache.clone());
    let attacker = Publisher::start_with(&relay, "evil", deliver_all);
    let mut viewer = relay.viewer("evil").await;
    attacker.subscribed().await;
    // Forty groups left open, each in the viewer's hands before the next starts.
    let mut open = Vec::new();
    let mut received = Vec::new();
    for seq in 0..40 {
        let mut group = attacker.track.create_group(seq).unwrap();
        group.write(frame(10_000));
        open.push(group);
        received.push(within(viewer.next_group()).await.unwrap().unwrap());
    }
    // Writes make room at most every few milliseconds; the relay's periodic sweep
    // catches what a burst left over the budget.
    cache.sweep();
    assert!(cache.stats().aborted_groups() > 0, "the budget was kept");
    // The attacker finishes what it has: for its viewer, each group ends either whole or,
    // when it was evicted, with EVICTED after the frame it had.
    for group in open {
        group.finish();
    }
    let mut evicted = 0;
    for group in received {
        match read_whole(group).await {
            (_, 1, Ok(())) => {}
            (_, 1, Err(Error::Reset(EVICTED))) => evicted += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(evicted, cache.stats().aborted_groups());
    // What the evicted groups held is released as their last holders finish.
    until("the cache back within its budget", || {
        cache.stats().bytes() <= 200_000
    })
    .await;
    victim_loses_nothing(&relay).await;
}

/// A SUBSCRIBE_END that overtakes the stream of the last group it counts (they travel on
/// different streams; under loss the end can arrive first): the relay waits for that
/// group instead of ending the track without it.
#[tokio::test]
async fn a_subscribe_end_that_overtakes_its_last_group_still_delivers_that_group() {
    let relay = Relay::new(Quota::default());
    let (_relay_session, peer) = relay.raw();
    // The relay asks the peer for its broadcasts; one answer by hand.
    let mut announce = announce_request(&peer).await;
    let mut out = AnnounceOk { origin: 0, active: 0 }.to_vec(VERSION).unwrap();
    let active = Announce::Active {
        suffix: path("pub"),
        hops: Hops::new(),
        cost: Cost::default(),
    };
    out.extend(active.to_vec(VERSION).unwrap());
    announce.write_all(&out).await.unwrap();

    let mut viewer = relay.viewer("pub").await;
    // The relay's SUBSCRIBE and its TRACK (info) request, in either order.
    let mut subscription = None;
    for _ in 0..2 {
        let (mut send, recv) = within(peer.accept_bi()).await.unwrap();
        let mut reader = Reader::new(recv, VERSION);
        match within(reader.decode::<ControlStream>()).await.unwrap() {
            ControlStream::Subscribe => {
                let subscribe = within(reader.decode::<moq_proto::Subscribe>()).await.unwrap();
                subscription = Some((send, reader, subscribe.id));
            }
            ControlStream::Track => {
                within(reader.decode::<TrackRequest>()).await.unwrap();
                let info = moq_proto::TrackInfo {
                    priority: 0,
                    ordered: false,
                    max_latency: Duration::from_secs(5),
                    timescale: 1_000_000,
                };
                send.write_all(&info.to_vec(VERSION).unwrap()).await.unwrap();
                send.finish().unwrap();
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
    let (mut send, _reader, id) = subscription.expect("a SUBSCRIBE");
    // Let the track's info land first (a track that ends before its info is asked again).
    tokio::time::sleep(Duration::from_millis(50)).await;
    // START at group 0, END after one group, and the subscription finished...
    let mut out = SubscribeResponse::Start { group: 0 }.to_vec(VERSION).unwrap();
    out.extend(SubscribeResponse::End { group: 1 }.to_vec(VERSION).unwrap());
    send.write_all(&out).await.unwrap();
    send.finish().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...before group 0's stream arrives.
    let mut group = peer.open_uni().await.unwrap();
    let mut out = moq_proto::DataStream::Group.to_vec(VERSION).unwrap();
    out.extend(
        moq_proto::GroupHeader {
            subscribe: id,
            sequence: 0,
            frame_start: 0,
        }
        .to_vec(VERSION)
        .unwrap(),
    );
    out.extend(
        moq_proto::FrameHeader {
            timestamp_delta: 0,
            size: 4,
        }
        .to_vec(VERSION)
        .unwrap(),
    );
    out.extend(b"last");
    group.write_all(&out).await.unwrap();
    group.finish().unwrap();

    let (sequence, frames, end) = read_group(&mut viewer).await;
    assert_eq!((sequence, frames), (0, 1), "the last group, whole");
    end.unwrap();
    assert!(
        within(viewer.next_group()).await.unwrap().is_none(),
        "then the track ends"
    );
}
