//! Harness for the moq-lite session driver (target `session`): the input is a
//! script of transport operations played, as the peer, against a relay-like
//! session (`moq_core::session::run`, or the in-band path for lite-01/02) over
//! the in-memory transport.
//!
//! Layout of an input:
//!
//! - byte 0: the version, `Version::EVERY[b % 6]` (lite-01 … lite-06);
//! - byte 1: flags. Bit 0: the harness sends a well-formed SETUP first (the
//!   legacy SETUP on a bidirectional stream for lite-01/02, a SETUP stream on
//!   lite-05+). Bits 1-2: what the peer may do (everything; subscribe only;
//!   publish only; subscribe `clock` and publish `live`). Bit 3: session root
//!   `anon` instead of the relay root. Bit 4: a small quota (2 subscriptions,
//!   1 group in flight, 2 announcements) instead of the default;
//! - then operations, one opcode byte each followed by its arguments (see
//!   [`Op`]), at most [`MAX_OPS`] of them.
//!
//! The relay's origin holds one broadcast, `anon/clock` (track `seconds`, two
//! groups), so subscriptions and fetches find something. Everything runs on a
//! current-thread runtime with a paused clock: time only moves when every task
//! is idle, so the linger, stuck-group and fetch timers cost no wall time.
//! After each operation the harness lets every task run until idle (and 1 ms
//! of virtual time pass).
//!
//! Checked, beyond "no panic" (a panic in any task aborts the process under
//! libFuzzer) and the allocation cap of [`crate::alloc`]:
//! - after the peer closes the connection, the driver returns within 60 s of
//!   virtual time;
//! - once it has returned and the origin's linger has passed, no upstream
//!   subscription is still counted and the relay's origin holds only its own
//!   broadcast again (the peer's announcements are gone);
//! - when the whole runtime is dropped, the memory allocated during the input
//!   is freed again (within [`RETAINED_SLACK`]).

use std::time::Duration;

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer,
    cache::Cache,
    mem::{self, MemRecv, MemSend, MemSession},
    session::{self, Config, Permissions, Quota},
    transport::{RecvStream, SendStream, Session},
};
use moq_proto::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, Datagram, Encode,
    Fetch, FrameHeader, Goaway, GroupHeader, Hops, Path, Probe, ProbeLevel, Range, Role, SessionInfo, Setup,
    Subscribe, SubscribeDrop, SubscribeOk, SubscribeResponse, SubscribeUpdate, TrackRequest, Version,
    legacy::{LegacyClientSetup, SetupKind},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::trace;

/// Most operations played from one input.
pub const MAX_OPS: usize = 256;

/// Most streams of each kind the script may hold at once.
const MAX_STREAMS: usize = 64;

/// How long the relay's origin keeps an abruptly orphaned broadcast announced.
const LINGER: Duration = Duration::from_secs(5);

/// Bytes an input may leave allocated after its runtime is gone (lazily built
/// statics, thread-locals): more than this is a leak.
pub const RETAINED_SLACK: usize = 256 * 1024;

/// The operations, by `opcode % 20`.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Open a bidirectional stream.
    OpenBi,
    /// Open a unidirectional stream.
    OpenUni,
    /// Write raw bytes: stream, length, bytes.
    WriteRaw,
    /// Write one well-formed message (see [`message`]): stream, message.
    WriteMessage,
    /// Finish (FIN) a stream.
    Finish,
    /// Reset a stream: stream, code.
    Reset,
    /// Stop a receiving half: stream, code.
    Stop,
    /// Drop a sending half.
    DropSend,
    /// Drop a receiving half.
    DropRecv,
    /// Accept a bidirectional stream the relay opened, if one is waiting.
    AcceptBi,
    /// Accept a unidirectional stream the relay opened, if one is waiting.
    AcceptUni,
    /// Read whatever a receiving half has buffered.
    Read,
    /// Send a datagram: raw bytes, or a well-formed DATAGRAM.
    Datagram,
    /// Let virtual time pass: one of 1 ms … 30 s.
    Sleep,
    /// Close the connection: code.
    Close,
    /// Start draining the relay (GOAWAY on lite-04+).
    Drain,
    /// A local viewer subscribes to a track of a broadcast in the relay's origin.
    LocalSubscribe,
    /// A local viewer leaves.
    LocalUnsubscribe,
    /// The relay's own broadcast gets a new group.
    LocalGroup,
    /// The relay's own broadcast ends.
    LocalEnd,
}

impl Op {
    const ALL: [Op; 20] = [
        Op::OpenBi,
        Op::OpenUni,
        Op::WriteRaw,
        Op::WriteMessage,
        Op::Finish,
        Op::Reset,
        Op::Stop,
        Op::DropSend,
        Op::DropRecv,
        Op::AcceptBi,
        Op::AcceptUni,
        Op::Read,
        Op::Datagram,
        Op::Sleep,
        Op::Close,
        Op::Drain,
        Op::LocalSubscribe,
        Op::LocalUnsubscribe,
        Op::LocalGroup,
        Op::LocalEnd,
    ];
}

/// Reads the script; past the end every read is 0.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// A number, small ones likelier: the top two bits of the first byte say
    /// how many more bytes follow (0, 1, 3 or 8).
    fn num(&mut self) -> u64 {
        let b = self.byte();
        let low = u64::from(b & 0x3f);
        let more = match b >> 6 {
            0 => return low,
            1 => 1,
            2 => 3,
            _ => 8,
        };
        let mut v = if more == 8 { 0 } else { low };
        for &x in self.bytes(more) {
            v = (v << 8) | u64::from(x);
        }
        v
    }

    /// A number below 2^62 (what a varint holds).
    fn varint(&mut self) -> u64 {
        self.num() & ((1 << 62) - 1)
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 48);
        String::from_utf8_lossy(self.bytes(len)).into_owned()
    }

    /// A path: one of a few the relay knows about, or fuzzed text.
    fn path(&mut self) -> Path {
        const KNOWN: [&str; 12] = [
            "",
            "clock",
            "anon",
            "anon/clock",
            "live",
            "live/cam",
            "a/b/c",
            "clock/x",
            "other",
            "..",
            "x//y/",
            ".internal/origins/n",
        ];
        let b = self.byte();
        let raw = match KNOWN.get(usize::from(b)) {
            Some(known) => (*known).to_string(),
            None if b >= 0xf0 => self.text(),
            None => KNOWN[usize::from(b) % KNOWN.len()].to_string(),
        };
        Path::new(&raw).unwrap_or_default()
    }

    fn track(&mut self) -> String {
        const KNOWN: [&str; 4] = ["seconds", "", "video", "x"];
        let b = self.byte();
        match b >= 0xf0 {
            true => self.text(),
            false => KNOWN[usize::from(b) % KNOWN.len()].to_string(),
        }
    }

    fn hops(&mut self) -> Hops {
        let n = self.byte() % 4;
        let ids = (0..n).map(|_| self.varint()).collect();
        Hops::from_ids(ids).unwrap_or_default()
    }

    fn cost(&mut self) -> Cost {
        Cost {
            warm: self.varint(),
            cold: self.varint(),
        }
    }

    fn optional(&mut self) -> Option<u64> {
        match self.bool() {
            true => Some(self.varint()),
            false => None,
        }
    }

    fn range(&mut self) -> Range {
        Range {
            start_group: self.optional(),
            end_group: self.optional(),
            start_frame: self.varint(),
            end_frame: self.optional(),
        }
    }
}

/// One well-formed message (encoded for `version`), chosen by the next byte;
/// `None` when the version cannot carry it.
fn message(input: &mut Input<'_>, version: Version) -> Option<Vec<u8>> {
    fn enc<T: Encode>(msg: T, version: Version) -> Option<Vec<u8>> {
        msg.to_vec(version).ok()
    }
    match input.byte() % 20 {
        0 => {
            const KINDS: [ControlStream; 7] = [
                ControlStream::Session,
                ControlStream::Announce,
                ControlStream::Subscribe,
                ControlStream::Fetch,
                ControlStream::Probe,
                ControlStream::Goaway,
                ControlStream::Track,
            ];
            enc(KINDS[usize::from(input.byte()) % KINDS.len()], version)
        }
        1 => enc(
            match input.bool() {
                true => DataStream::Setup,
                false => DataStream::Group,
            },
            version,
        ),
        2 => enc(
            AnnounceRequest {
                prefix: input.path(),
                exclude_hop: input.varint(),
            },
            version,
        ),
        3 => enc(
            AnnounceOk {
                origin: input.varint(),
                active: input.varint(),
            },
            version,
        ),
        4 => {
            let n = input.byte() % 4;
            let suffixes = (0..n).map(|_| input.path()).collect();
            enc(AnnounceInit { suffixes }, version)
        }
        5 => {
            let announce = match input.byte() % 4 {
                0 => Announce::Active {
                    suffix: input.path(),
                    hops: input.hops(),
                    cost: input.cost(),
                },
                1 => Announce::Ended {
                    suffix: input.path(),
                    hops: input.hops(),
                },
                2 => Announce::EndedId { id: input.varint() },
                _ => Announce::Restart {
                    id: input.varint(),
                    hops: input.hops(),
                    cost: input.cost(),
                },
            };
            enc(announce, version)
        }
        6 => enc(
            Subscribe {
                id: input.varint(),
                broadcast: input.path(),
                track: input.track(),
                priority: input.byte(),
                ordered: input.bool(),
                max_latency: Duration::from_millis(input.num() % 100_000),
                range: input.range(),
            },
            version,
        ),
        7 => enc(
            SubscribeUpdate {
                priority: input.byte(),
                ordered: input.bool(),
                max_latency: Duration::from_millis(input.num() % 100_000),
                range: input.range(),
            },
            version,
        ),
        8 => {
            let response = match input.byte() % 4 {
                0 => SubscribeResponse::Ok(SubscribeOk {
                    priority: input.byte(),
                    ordered: input.bool(),
                    max_latency: Duration::from_millis(input.num() % 100_000),
                    start_group: input.optional(),
                    end_group: input.optional(),
                }),
                1 => SubscribeResponse::Start {
                    group: input.varint(),
                },
                2 => SubscribeResponse::End {
                    group: input.varint(),
                },
                _ => SubscribeResponse::Drop(SubscribeDrop {
                    start: input.varint(),
                    end: input.varint(),
                    error: input.varint(),
                }),
            };
            enc(response, version)
        }
        9 => enc(
            Fetch {
                broadcast: input.path(),
                track: input.track(),
                priority: input.byte(),
                group: input.varint(),
                start_frame: input.varint(),
                end_frame: input.optional(),
            },
            version,
        ),
        10 => enc(
            TrackRequest {
                broadcast: input.path(),
                track: input.track(),
            },
            version,
        ),
        11 => enc(
            moq_proto::TrackInfo {
                priority: input.byte(),
                ordered: input.bool(),
                max_latency: Duration::from_millis(input.num() % 100_000),
                timescale: input.varint(),
            },
            version,
        ),
        12 => enc(
            GroupHeader {
                subscribe: input.varint(),
                sequence: input.varint(),
                frame_start: input.varint(),
            },
            version,
        ),
        13 => {
            // A whole frame: header and payload.
            let size = input.byte();
            let delta = i64::from(input.byte() as i8) * 1000;
            let mut out = enc(
                FrameHeader {
                    timestamp_delta: delta,
                    size: u64::from(size),
                },
                version,
            )?;
            let payload = input.bytes(usize::from(size)).to_vec();
            out.extend_from_slice(&payload);
            out.resize(out.len() + usize::from(size) - payload.len(), 0);
            Some(out)
        }
        14 => enc(
            FrameHeader {
                timestamp_delta: input.num() as i64,
                size: input.num(),
            },
            version,
        ),
        15 => enc(
            Setup {
                probe: match input.byte() % 3 {
                    0 => ProbeLevel::None,
                    1 => ProbeLevel::Report,
                    _ => ProbeLevel::Increase,
                },
                path: input.bool().then(|| input.text()),
                role: match input.byte() % 3 {
                    0 => None,
                    1 => Some(Role::Publisher),
                    _ => Some(Role::Subscriber),
                },
                cost: input.optional(),
                origin: input.optional(),
                unknown: Vec::new(),
            },
            version,
        ),
        16 => enc(Goaway { uri: input.text() }, version),
        17 => enc(
            Probe {
                bitrate: input.optional(),
                rtt_ms: input.optional(),
            },
            version,
        ),
        18 => enc(
            SessionInfo {
                bitrate: input.optional(),
            },
            version,
        ),
        _ => {
            let kind = match input.byte() % 3 {
                0 => SetupKind::Ietf14,
                1 => SetupKind::Lite,
                _ => SetupKind::Ietf7,
            };
            let n = input.byte() % 4;
            let versions = (0..n)
                .map(|_| match input.bool() {
                    true => Version::EVERY[usize::from(input.byte()) % Version::EVERY.len()].code(),
                    false => input.varint(),
                })
                .collect();
            let setup = LegacyClientSetup {
                kind,
                versions,
                parameters: Bytes::from_static(&[0]),
            };
            let mut out = Vec::new();
            setup.encode(&mut out).ok()?;
            Some(out)
        }
    }
}

/// The peer's side of the connection, as the script drives it.
struct Peer {
    session: MemSession,
    sends: Vec<Option<MemSend>>,
    recvs: Vec<Option<MemRecv>>,
}

impl Peer {
    fn send(&mut self, pick: u8) -> Option<&mut MemSend> {
        let n = self.sends.len();
        if n == 0 {
            return None;
        }
        self.sends.get_mut(usize::from(pick) % n)?.as_mut()
    }

    fn recv(&mut self, pick: u8) -> Option<&mut MemRecv> {
        let n = self.recvs.len();
        if n == 0 {
            return None;
        }
        self.recvs.get_mut(usize::from(pick) % n)?.as_mut()
    }

    fn add_send(&mut self, send: MemSend) {
        if self.sends.len() < MAX_STREAMS {
            self.sends.push(Some(send));
        }
    }

    fn add_recv(&mut self, recv: MemRecv) {
        if self.recvs.len() < MAX_STREAMS {
            self.recvs.push(Some(recv));
        }
    }
}

/// The relay's own broadcast.
struct Local {
    broadcast: BroadcastProducer,
    track: TrackProducer,
    publication: Option<moq_core::Publication>,
    next_group: u64,
}

impl Local {
    fn group(&mut self, frames: u8) {
        let Ok(mut group) = self.track.create_group(self.next_group) else {
            return;
        };
        for i in 0..frames {
            group.write(Frame {
                timestamp: self.next_group * 1000 + u64::from(i),
                payload: Bytes::from(vec![i; usize::from(i) * 16]),
            });
        }
        group.finish();
        self.next_group += 1;
    }
}

/// Let every task run until all are idle, then 1 ms of virtual time pass.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Run one input. See the module docs.
pub fn run(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let before = crate::alloc::live();
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        runtime.block_on(script(data));
    }
    let after = crate::alloc::live();
    assert!(
        after <= before.saturating_add(RETAINED_SLACK),
        "the input left {} bytes allocated after its runtime was dropped",
        after.saturating_sub(before)
    );
}

async fn script(data: &[u8]) {
    let mut input = Input { data };
    let version = Version::EVERY[usize::from(input.byte()) % Version::EVERY.len()];
    let flags = input.byte();

    // The relay: an origin holding its own broadcast.
    let origin = Origin::new(Cache::default(), LINGER);
    let broadcast = BroadcastProducer::new(origin.cache().clone());
    let info = TrackInfo {
        priority: 2,
        max_latency: Duration::from_secs(2),
        timescale: 1000,
    };
    let track = broadcast.create_track(TrackProducer::with_info("seconds", info, origin.cache().clone()));
    let own = Path::new("anon/clock").expect("a valid path");
    let publication = origin.publish(own.clone(), broadcast.consume(), Hops::new());
    let mut local = Local {
        broadcast,
        track,
        publication: Some(publication),
        next_group: 0,
    };
    local.group(3);
    local.group(2);

    let permissions = match (flags >> 1) & 3 {
        0 => Permissions::all(),
        1 => Permissions {
            publish: Vec::new(),
            subscribe: vec![Path::empty()],
            ..Permissions::default()
        },
        2 => Permissions {
            publish: vec![Path::empty()],
            subscribe: Vec::new(),
            ..Permissions::default()
        },
        _ => Permissions {
            publish: vec![Path::new("live").expect("a valid path")],
            subscribe: vec![Path::new("clock").expect("a valid path")],
            ..Permissions::default()
        },
    };
    let mut config = Config::new(version);
    // As the relay configures a session (moq-relay `session::configure`).
    config.publish = (!permissions.subscribe.is_empty()).then(|| origin.clone());
    config.consume = (!permissions.publish.is_empty()).then(|| origin.clone());
    config.permissions = permissions;
    if flags & 8 != 0 {
        config.root = Path::new("anon").expect("a valid path");
    }
    config.hop = 7;
    if flags & 16 != 0 {
        config.quota = Quota {
            max_subscriptions: 2,
            max_groups_in_flight: 1,
            max_announcements: 2,
            ..Quota::default()
        };
    }
    let (drain, draining) = watch::channel(false);
    config.shutdown = Some(draining);
    let upstream = config.upstream.clone();

    let (client, server) = mem::pair();
    let driver: JoinHandle<()> = tokio::spawn(async move {
        let result = match version.is_in_band() {
            true => match session::accept_in_band(&server, &[version], Duration::from_secs(5)).await {
                Ok(negotiated) => session::run_in_band(server, config, negotiated).await,
                Err(err) => Err(err),
            },
            false => session::run(server, config).await,
        };
        // Any outcome is fine; only panics and hangs are findings.
        drop(result);
    });

    let mut peer = Peer {
        session: client,
        sends: Vec::new(),
        recvs: Vec::new(),
    };
    if flags & 1 != 0 {
        setup(&mut peer, version).await;
    }

    let mut viewers: Vec<JoinHandle<()>> = Vec::new();
    let started = std::time::Instant::now();
    for _ in 0..MAX_OPS {
        if input.is_empty() || started.elapsed() > Duration::from_secs(2) {
            break;
        }
        let op = Op::ALL[usize::from(input.byte()) % Op::ALL.len()];
        if trace() {
            eprintln!(
                "op {op:?} (streams: {} send, {} recv; viewers {}; closed {:?}; origin {:?})",
                peer.sends.len(),
                peer.recvs.len(),
                viewers.len(),
                peer.session.close_reason(),
                origin.paths(),
            );
        }
        play(
            op,
            &mut input,
            &mut peer,
            version,
            &origin,
            &mut local,
            &mut viewers,
            &drain,
        )
        .await;
        settle().await;
    }

    if trace() {
        eprintln!(
            "script done; closed {:?}; origin {:?}",
            peer.session.close_reason(),
            origin.paths()
        );
    }
    // The peer goes away: the driver must notice and return.
    peer.session.close(0, "script done");
    let finished = tokio::time::timeout(Duration::from_secs(60), driver).await;
    match finished {
        Ok(Ok(())) => {}
        Ok(Err(join)) => panic!("the session driver failed: {join}"),
        Err(_) => panic!("the session driver did not return within 60 s of the connection closing"),
    }
    if trace() {
        eprintln!("driver returned; upstream {}", upstream.get());
        settle().await;
        eprintln!("after 1 ms; upstream {}", upstream.get());
    }
    for viewer in viewers {
        viewer.abort();
    }
    drop(peer);
    // Past the linger, only the relay's own broadcast may remain (if not ended).
    // Tasks the driver aborted on its way out are gone by then too.
    tokio::time::sleep(LINGER + Duration::from_secs(1)).await;
    assert_eq!(
        upstream.get(),
        0,
        "upstream subscriptions still counted after the session ended"
    );
    let paths = origin.paths();
    let expected: Vec<Path> = match local.publication.is_some() {
        true => vec![own],
        false => Vec::new(),
    };
    assert_eq!(paths, expected, "the peer's broadcasts outlived its session");
}

/// A well-formed start: the legacy SETUP for lite-01/02, a SETUP stream on lite-05+.
async fn setup(peer: &mut Peer, version: Version) {
    if version.is_in_band() {
        let setup = LegacyClientSetup {
            kind: SetupKind::Ietf14,
            versions: vec![version.code()],
            parameters: Bytes::from_static(&[0]),
        };
        let mut bytes = Vec::new();
        if setup.encode(&mut bytes).is_err() {
            return;
        }
        if let Ok((mut send, recv)) = peer.session.open_bi().await {
            let _ = send.write_all(&bytes).await;
            peer.add_send(send);
            peer.add_recv(recv);
        }
    } else if version.has_setup_stream() {
        let mut bytes = DataStream::Setup.to_vec(version).unwrap_or_default();
        let setup = Setup {
            origin: Some(99),
            ..Setup::default()
        };
        bytes.extend(setup.to_vec(version).unwrap_or_default());
        if let Ok(mut send) = peer.session.open_uni().await {
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            peer.add_send(send);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn play(
    op: Op,
    input: &mut Input<'_>,
    peer: &mut Peer,
    version: Version,
    origin: &Origin,
    local: &mut Local,
    viewers: &mut Vec<JoinHandle<()>>,
    drain: &watch::Sender<bool>,
) {
    let poll = Duration::from_millis(1);
    match op {
        Op::OpenBi => {
            if let Ok((send, recv)) = peer.session.open_bi().await {
                peer.add_send(send);
                peer.add_recv(recv);
            }
        }
        Op::OpenUni => {
            if let Ok(send) = peer.session.open_uni().await {
                peer.add_send(send);
            }
        }
        Op::WriteRaw => {
            let pick = input.byte();
            let len = usize::from(input.byte());
            let bytes = input.bytes(len).to_vec();
            if let Some(send) = peer.send(pick) {
                let _ = send.write_all(&bytes).await;
            }
        }
        Op::WriteMessage => {
            let pick = input.byte();
            let Some(bytes) = message(input, version) else {
                return;
            };
            if let Some(send) = peer.send(pick) {
                let _ = send.write_chunk(Bytes::from(bytes)).await;
            }
        }
        Op::Finish => {
            if let Some(send) = peer.send(input.byte()) {
                let _ = send.finish();
            }
        }
        Op::Reset => {
            let pick = input.byte();
            let code = input.varint() as u32;
            if let Some(send) = peer.send(pick) {
                send.reset(code);
            }
        }
        Op::Stop => {
            let pick = input.byte();
            let code = input.varint() as u32;
            if let Some(recv) = peer.recv(pick) {
                recv.stop(code);
            }
        }
        Op::DropSend => {
            let n = peer.sends.len();
            let pick = usize::from(input.byte());
            if n > 0
                && let Some(slot) = peer.sends.get_mut(pick % n)
            {
                *slot = None;
            }
        }
        Op::DropRecv => {
            let n = peer.recvs.len();
            let pick = usize::from(input.byte());
            if n > 0
                && let Some(slot) = peer.recvs.get_mut(pick % n)
            {
                *slot = None;
            }
        }
        Op::AcceptBi => {
            if let Ok(Ok((send, recv))) = tokio::time::timeout(poll, peer.session.accept_bi()).await {
                peer.add_send(send);
                peer.add_recv(recv);
            }
        }
        Op::AcceptUni => {
            if let Ok(Ok(recv)) = tokio::time::timeout(poll, peer.session.accept_uni()).await {
                peer.add_recv(recv);
            }
        }
        Op::Read => {
            if let Some(recv) = peer.recv(input.byte()) {
                for _ in 0..16 {
                    let read = tokio::time::timeout(poll, recv.read_chunk(64 * 1024)).await;
                    if trace() {
                        eprintln!("  read {read:?}");
                    }
                    match read {
                        Ok(Ok(Some(_))) => {}
                        _ => break,
                    }
                }
            }
        }
        Op::Datagram => {
            let bytes = match input.bool() {
                true => {
                    let len = usize::from(input.byte());
                    input.bytes(len).to_vec()
                }
                false => {
                    let datagram = Datagram {
                        subscribe: input.varint(),
                        sequence: input.varint(),
                        timestamp: input.varint(),
                        payload: Bytes::from(input.text()),
                    };
                    match datagram.to_vec(version) {
                        Ok(bytes) => bytes,
                        Err(_) => return,
                    }
                }
            };
            let _ = peer.session.send_datagram(Bytes::from(bytes));
        }
        Op::Sleep => {
            const STEPS_MS: [u64; 8] = [1, 10, 100, 500, 1000, 5000, 10_000, 30_000];
            let ms = STEPS_MS[usize::from(input.byte()) % STEPS_MS.len()];
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Op::Close => {
            let code = input.varint() as u32;
            peer.session.close(code, "fuzz");
        }
        Op::Drain => {
            let _ = drain.send(true);
        }
        Op::LocalSubscribe => {
            let path = input.path();
            let name = input.track();
            if viewers.len() >= MAX_STREAMS {
                return;
            }
            let Some(broadcast) = origin.consume(&path) else {
                return;
            };
            let Ok(mut track) = broadcast.subscribe(&name) else {
                return;
            };
            viewers.push(tokio::spawn(async move {
                while let Ok(Some(mut group)) = track.next_group().await {
                    while let Ok(Some(_)) = group.next_frame().await {}
                }
            }));
        }
        Op::LocalUnsubscribe => {
            let n = viewers.len();
            let pick = usize::from(input.byte());
            if n > 0 {
                viewers.swap_remove(pick % n).abort();
            }
        }
        Op::LocalGroup => {
            let frames = input.byte() % 8;
            local.group(frames);
        }
        Op::LocalEnd => {
            if let Some(publication) = local.publication.take() {
                publication.finish();
                local.broadcast.close(Ok(()));
            }
        }
    }
}
