//! The qmux session: QUIC-like streams, flow control and stream limits over a
//! message socket, implementing moq-core's transport traits.
//!
//! All state lives in one [`Machine`] behind a mutex that is never held across an
//! `.await`. Stream handles and the session handle poll it; the driver task (one per
//! session, started by [`Session::new`] and ended with it) reads records off the
//! socket into it and writes the records it produces, highest-priority stream first.
//!
//! Memory a peer can make us hold is bounded by what we advertise: `max_data` bytes
//! of unread stream data in total, `max_stream_data` per stream, `max_*_streams`
//! open streams, a short datagram queue, and one pending control frame per stream.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    future::poll_fn,
    ops::{Index, IndexMut},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use moq_core::transport::{self, TransportError};
use tokio::{sync::watch, time::Instant};

use super::{
    Config, Error, Role, Wire,
    socket::{Incoming, Receiver, Sender, Socket},
    wire::{
        DEFAULT_MAX_RECORD_SIZE, Frame, Frames, TransportParams, encode_stream_header, stream_header_len,
    },
};

/// The largest record we send, and the `max_record_size` we advertise: the QMux
/// default, which every released peer accepts.
pub(crate) const MAX_RECORD: usize = DEFAULT_MAX_RECORD_SIZE as usize;
/// qmux-00 has no records: one frame per message, at most this big (draft-00 `max_frame_size`).
pub(crate) const MAX_FRAME_00: usize = 16384;
/// STREAM payloads we send stay under this: released receivers enforce a 16 KiB frame
/// limit on receive whatever they advertise (`@moq/qmux` `MAX_FRAME_PAYLOAD`).
const MAX_STREAM_PAYLOAD: usize = 16384 - 32;
/// The CONNECTION_CLOSE code the ecosystem uses for a protocol violation.
const PROTOCOL_VIOLATION: u64 = 1002;
/// Datagrams waiting for `recv_datagram`; more are dropped (they are unreliable anyway).
const DATAGRAM_QUEUE: usize = 64;
/// How long the driver keeps flushing a close, or waits for the peer's, before it
/// drops the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most concurrent streams per direction a session grants, whatever the config says.
const MAX_STREAM_LIMIT: u64 = 1 << 16;
/// How long the WebSocket Close waits after our APPLICATION_CLOSE.
const CLOSE_LINGER: Duration = Duration::from_millis(100);
/// Close reasons are cut to this many bytes on the wire.
const MAX_REASON: usize = 512;
/// A stream fragment smaller than this share of its record is copied out, so a
/// peer cannot pin a whole 16 KiB record in memory per buffered byte.
const COPY_BELOW_DIVISOR: usize = 4;

/// A stream's direction: bit 1 of its id (RFC 9000 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Bi,
    Uni,
}

impl Dir {
    const BOTH: [Self; 2] = [Self::Bi, Self::Uni];

    /// The direction bit of a stream id.
    fn bit(self) -> u64 {
        match self {
            Self::Bi => 0,
            Self::Uni => 0x2,
        }
    }
}

fn dir(id: u64) -> Dir {
    if id & 0x2 != 0 { Dir::Uni } else { Dir::Bi }
}

/// One value per stream direction, indexed by [`Dir`] (which cannot be out of range).
#[derive(Debug, Default)]
struct PerDir<T> {
    bi: T,
    uni: T,
}

impl<T> PerDir<T> {
    fn new(bi: T, uni: T) -> Self {
        Self { bi, uni }
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        [&mut self.bi, &mut self.uni].into_iter()
    }
}

impl<T> Index<Dir> for PerDir<T> {
    type Output = T;

    fn index(&self, d: Dir) -> &T {
        match d {
            Dir::Bi => &self.bi,
            Dir::Uni => &self.uni,
        }
    }
}

impl<T> IndexMut<Dir> for PerDir<T> {
    fn index_mut(&mut self, d: Dir) -> &mut T {
        match d {
            Dir::Bi => &mut self.bi,
            Dir::Uni => &mut self.uni,
        }
    }
}

fn index(id: u64) -> u64 {
    id >> 2
}

/// Wakers of several tasks waiting for the same thing.
#[derive(Debug, Default)]
struct Wakers(Vec<Waker>);

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    fn wake(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(waker) = slot.take() {
        waker.wake();
    }
}

/// How a sending half stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// Accepting writes.
    Open,
    /// `finish` was called; FIN goes out after the buffered data.
    Finishing,
    /// FIN was sent.
    Done,
    /// We reset it (RESET_STREAM queued or sent).
    Reset,
    /// The peer sent STOP_SENDING with this code; we answered with RESET_STREAM.
    Stopped(u32),
}

#[derive(Debug)]
struct SendHalf {
    state: SendState,
    buf: VecDeque<Bytes>,
    /// Bytes in `buf`.
    queued: usize,
    /// Bytes sent so far: the next STREAM frame's offset.
    offset: u64,
    /// The peer's credit for this stream (cumulative).
    max: u64,
    priority: i32,
    /// When this stream last got to send, to take turns among equal priorities.
    served: u64,
    /// The application still holds the handle.
    handle: bool,
    waker: Option<Waker>,
}

impl SendHalf {
    fn new(max: u64) -> Self {
        Self {
            state: SendState::Open,
            buf: VecDeque::new(),
            queued: 0,
            offset: 0,
            max,
            priority: 0,
            served: 0,
            handle: true,
            waker: None,
        }
    }

    fn terminal(&self) -> bool {
        matches!(
            self.state,
            SendState::Done | SendState::Reset | SendState::Stopped(_)
        )
    }

    /// Drop the unsent data (reset, stop, close).
    fn discard(&mut self) {
        self.buf.clear();
        self.queued = 0;
    }
}

#[derive(Debug)]
struct RecvHalf {
    buf: VecDeque<Bytes>,
    /// Bytes in `buf`.
    buffered: usize,
    /// Bytes received (the highest offset seen).
    received: u64,
    /// Bytes delivered to the application or discarded: what credit is based on.
    consumed: u64,
    /// The credit we granted (cumulative).
    max: u64,
    fin: bool,
    reset: Option<u32>,
    /// We sent STOP_SENDING (or the handle was dropped): new data is discarded.
    stopped: bool,
    /// The application still holds the handle (or has yet to accept the stream).
    handle: bool,
    waker: Option<Waker>,
}

impl RecvHalf {
    fn new(max: u64) -> Self {
        Self {
            buf: VecDeque::new(),
            buffered: 0,
            received: 0,
            consumed: 0,
            max,
            fin: false,
            reset: None,
            stopped: false,
            handle: true,
            waker: None,
        }
    }

    /// Nothing more will arrive or be read.
    fn terminal(&self) -> bool {
        self.reset.is_some() || (self.fin && self.buffered == 0)
    }
}

#[derive(Debug)]
struct Stream {
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
}

/// Which of the peer's stream indexes have been opened, to tell a new stream from
/// one already closed (a late frame must not resurrect it). Opening index N opens
/// every lower index too (RFC 9000 §3.2); `holes` are those not seen yet.
#[derive(Debug, Default)]
struct Opened {
    next: u64,
    holes: BTreeSet<u64>,
}

impl Opened {
    fn is_new(&self, index: u64) -> bool {
        index >= self.next || self.holes.contains(&index)
    }

    fn record(&mut self, index: u64) {
        if index < self.next {
            self.holes.remove(&index);
            return;
        }
        for hole in self.next..index {
            self.holes.insert(hole);
        }
        self.next = index.saturating_add(1);
    }
}

/// Why the session ended.
#[derive(Debug, Clone)]
struct Ended {
    error: Error,
}

/// The sans-IO qmux connection: flow control, stream states, and the frames to send.
#[derive(Debug)]
pub(crate) struct Machine {
    role: Role,
    wire: Wire,
    config: Config,
    ended: Option<Ended>,
    /// The close frame to send before dropping the socket.
    close_frame: Option<Frame>,
    params_sent: bool,
    peer: Option<TransportParams>,

    // Sending: the peer's limits.
    send_max_data: u64,
    sent_data: u64,
    local_next: PerDir<u64>,
    local_max: PerDir<u64>,

    // Receiving: our limits.
    recv_max_data: u64,
    recv_data: u64,
    recv_consumed: u64,
    max_data_dirty: bool,
    opened: PerDir<Opened>,
    remote_max: PerDir<u64>,
    remote_closed: PerDir<u64>,
    max_streams_dirty: PerDir<bool>,

    streams: HashMap<u64, Stream>,
    accept: PerDir<VecDeque<u64>>,
    accept_wakers: PerDir<Wakers>,
    open_wakers: PerDir<Wakers>,
    established_wakers: Wakers,
    datagrams: VecDeque<Bytes>,
    datagram_wakers: Wakers,

    /// RESET_STREAM and STOP_SENDING to send: at most one of each per stream.
    control: VecDeque<Frame>,
    /// Streams whose receive credit grew since we last said so.
    window_dirty: BTreeSet<u64>,
    ping_request: Option<u64>,
    ping_response: Option<u64>,
    next_ping: u64,
    /// Streams with data or a FIN to send.
    pending: HashSet<u64>,
    served: u64,
    writer: Option<Waker>,
}

impl Machine {
    fn new(role: Role, wire: Wire, mut config: Config) -> Self {
        // Stream limits beyond this are no use and would let a peer make us track
        // that many implicitly opened streams.
        config.max_bidi_streams = config.max_bidi_streams.min(MAX_STREAM_LIMIT);
        config.max_uni_streams = config.max_uni_streams.min(MAX_STREAM_LIMIT);
        Self {
            role,
            wire,
            ended: None,
            close_frame: None,
            params_sent: false,
            peer: None,
            send_max_data: 0,
            sent_data: 0,
            local_next: PerDir::default(),
            local_max: PerDir::default(),
            recv_max_data: config.max_data,
            recv_data: 0,
            recv_consumed: 0,
            max_data_dirty: false,
            opened: Default::default(),
            remote_max: PerDir::new(config.max_bidi_streams, config.max_uni_streams),
            remote_closed: PerDir::default(),
            max_streams_dirty: PerDir::default(),
            streams: HashMap::new(),
            accept: Default::default(),
            accept_wakers: Default::default(),
            open_wakers: Default::default(),
            established_wakers: Wakers::default(),
            datagrams: VecDeque::new(),
            datagram_wakers: Wakers::default(),
            control: VecDeque::new(),
            window_dirty: BTreeSet::new(),
            ping_request: None,
            ping_response: None,
            next_ping: 0,
            pending: HashSet::new(),
            served: 0,
            writer: None,
            config,
        }
    }

    fn our_params(&self) -> TransportParams {
        let c = &self.config;
        TransportParams {
            max_idle_timeout: u64::try_from(c.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            initial_max_data: c.max_data,
            initial_max_stream_data_bidi_local: c.max_stream_data,
            initial_max_stream_data_bidi_remote: c.max_stream_data,
            initial_max_stream_data_uni: c.max_stream_data,
            initial_max_streams_bidi: c.max_bidi_streams,
            initial_max_streams_uni: c.max_uni_streams,
            max_datagram_frame_size: if self.wire.records() && c.datagrams {
                MAX_RECORD as u64
            } else {
                0
            },
            max_record_size: MAX_RECORD as u64,
            reset_stream_at: false,
        }
    }

    fn local(&self, id: u64) -> bool {
        (id & 0x1 != 0) == (self.role == Role::Server)
    }

    fn wake_writer(&mut self) {
        wake(&mut self.writer);
    }

    /// End the session: every handle fails with `error` from now on.
    fn end(&mut self, error: Error, close_frame: Option<Frame>) {
        if self.ended.is_some() {
            return;
        }
        tracing::debug!(%error, "qmux session ended");
        self.ended = Some(Ended { error });
        self.close_frame = close_frame;
        // Free every buffer now; handles only need to learn that it is over.
        for (_, stream) in self.streams.drain() {
            if let Some(mut send) = stream.send {
                wake(&mut send.waker);
            }
            if let Some(mut recv) = stream.recv {
                wake(&mut recv.waker);
            }
        }
        self.accept = Default::default();
        self.datagrams.clear();
        self.control.clear();
        self.window_dirty.clear();
        self.pending.clear();
        for wakers in self.accept_wakers.iter_mut().chain(self.open_wakers.iter_mut()) {
            wakers.wake();
        }
        self.established_wakers.wake();
        self.datagram_wakers.wake();
        self.wake_writer();
    }

    /// End the session because the peer broke the protocol, telling it why.
    fn violation(&mut self, error: Error) {
        let reason = truncate(error.to_string());
        self.end(
            error,
            Some(Frame::ConnectionClose {
                code: PROTOCOL_VIOLATION,
                frame_type: 0,
                reason,
            }),
        );
    }

    fn error(&self) -> Option<TransportError> {
        self.ended
            .as_ref()
            .map(|ended| TransportError::new(format!("qmux: {}", ended.error)))
    }

    // ---------------------------------------------------------------- receiving

    /// Apply one record from the peer.
    fn on_record(&mut self, record: Bytes) -> Result<(), Error> {
        let limit = match self.wire {
            Wire::Qmux00 => MAX_FRAME_00,
            Wire::Qmux01 => MAX_RECORD,
        };
        if record.len() > limit {
            return Err(Error::Protocol(format!(
                "a {}-byte message exceeds our {limit}-byte record limit",
                record.len()
            )));
        }
        let size = record.len();
        for frame in Frames::new(record) {
            self.on_frame(frame?, size)?;
            if self.ended.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame, record: usize) -> Result<(), Error> {
        if self.peer.is_none() && !matches!(frame, Frame::TransportParameters(_)) {
            // The binding says QX_TRANSPORT_PARAMETERS comes first. Peers on qmux-00/01
            // are not strict about it, so neither are we: stream credit simply starts at
            // zero until the parameters arrive.
            tracing::trace!("qmux frame before the peer's transport parameters");
        }
        match frame {
            Frame::Stream {
                id,
                offset,
                data,
                fin,
            } => self.on_stream(id, offset, data, fin, record),
            Frame::ResetStream { id, code, final_size } => self.on_reset(id, code, final_size),
            Frame::StopSending { id, code } => self.on_stop_sending(id, code),
            Frame::MaxData(max) => {
                self.on_max_data(max);
                Ok(())
            }
            Frame::MaxStreamData { id, max } => self.on_max_stream_data(id, max),
            Frame::MaxStreamsBidi(max) => {
                self.raise_local_max(Dir::Bi, max);
                Ok(())
            }
            Frame::MaxStreamsUni(max) => {
                self.raise_local_max(Dir::Uni, max);
                Ok(())
            }
            Frame::DataBlocked(_)
            | Frame::StreamDataBlocked { .. }
            | Frame::StreamsBlockedBidi(_)
            | Frame::StreamsBlockedUni(_) => Ok(()),
            Frame::ConnectionClose { code, reason, .. } => {
                self.on_peer_close(Error::PeerError {
                    code,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                });
                Ok(())
            }
            Frame::ApplicationClose { code, reason } => {
                self.on_peer_close(Error::PeerClosed {
                    code,
                    reason: String::from_utf8_lossy(&reason).into_owned(),
                });
                Ok(())
            }
            Frame::TransportParameters(params) => self.on_params(params),
            Frame::PingRequest(seq) => {
                self.on_ping_request(seq);
                Ok(())
            }
            Frame::PingResponse(_) => Ok(()),
            Frame::Datagram(data) => self.on_datagram(data, record),
        }
    }

    fn on_max_data(&mut self, max: u64) {
        if max > self.send_max_data {
            self.send_max_data = max;
            self.wake_writer();
        }
    }

    fn on_max_stream_data(&mut self, id: u64, max: u64) -> Result<(), Error> {
        if !self.local(id) && dir(id) == Dir::Uni {
            return Err(Error::Protocol(format!(
                "MAX_STREAM_DATA for stream {id}, which only the peer sends on"
            )));
        }
        if let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut())
            && max > send.max
        {
            send.max = max;
            self.wake_writer();
        }
        Ok(())
    }

    /// The peer closed the connection: nothing more to send, not even a close.
    fn on_peer_close(&mut self, error: Error) {
        self.end(error, None);
    }

    fn on_ping_request(&mut self, seq: u64) {
        // One answer is enough however many arrive: a peer must not be able to
        // queue answers faster than it reads them.
        self.ping_response = Some(seq);
        self.wake_writer();
    }

    fn on_datagram(&mut self, data: Bytes, record: usize) -> Result<(), Error> {
        let advertised = self.our_params().max_datagram_frame_size;
        if advertised == 0 {
            return Err(Error::Protocol(
                "DATAGRAM received, but we did not advertise datagram support".into(),
            ));
        }
        if data.len() as u64 > advertised {
            return Err(Error::Protocol(format!(
                "a {}-byte DATAGRAM exceeds our {advertised}-byte limit",
                data.len()
            )));
        }
        if self.datagrams.len() < DATAGRAM_QUEUE {
            self.datagrams.push_back(own(data, record));
            self.datagram_wakers.wake();
        }
        Ok(())
    }

    fn raise_local_max(&mut self, d: Dir, max: u64) {
        // MAX_STREAMS above 2^60 cannot name a stream id (RFC 9000 §19.11).
        let max = max.min(1 << 60);
        if max > self.local_max[d] {
            self.local_max[d] = max;
            self.open_wakers[d].wake();
        }
    }

    fn on_params(&mut self, params: TransportParams) -> Result<(), Error> {
        if self.peer.is_some() {
            return Err(Error::Protocol("QX_TRANSPORT_PARAMETERS sent twice".into()));
        }
        if self.wire.records() && params.max_record_size < DEFAULT_MAX_RECORD_SIZE {
            return Err(Error::Protocol(format!(
                "max_record_size {} is below the minimum {DEFAULT_MAX_RECORD_SIZE}",
                params.max_record_size
            )));
        }
        self.send_max_data = self.send_max_data.max(params.initial_max_data);
        self.raise_local_max(Dir::Bi, params.initial_max_streams_bidi);
        self.raise_local_max(Dir::Uni, params.initial_max_streams_uni);
        // Streams opened before the parameters arrived start with their credit now.
        let role = self.role;
        for (&id, stream) in &mut self.streams {
            let Some(send) = stream.send.as_mut() else {
                continue;
            };
            let local = (id & 0x1 != 0) == (role == Role::Server);
            let initial = match (dir(id), local) {
                (Dir::Uni, _) => params.initial_max_stream_data_uni,
                (_, true) => params.initial_max_stream_data_bidi_remote,
                (_, false) => params.initial_max_stream_data_bidi_local,
            };
            send.max = send.max.max(initial);
        }
        self.peer = Some(params);
        self.established_wakers.wake();
        self.wake_writer();
        Ok(())
    }

    /// The credit the peer gives a stream we send on, from its parameters.
    fn initial_send_max(&self, id: u64) -> u64 {
        let Some(peer) = &self.peer else { return 0 };
        match (dir(id), self.local(id)) {
            (Dir::Uni, _) => peer.initial_max_stream_data_uni,
            (_, true) => peer.initial_max_stream_data_bidi_remote,
            (_, false) => peer.initial_max_stream_data_bidi_local,
        }
    }

    /// Find or create the stream a peer frame names. `Ok(false)`: a stream that
    /// existed and is gone (late frames are ignored).
    fn peer_stream(&mut self, id: u64, what: &str) -> Result<bool, Error> {
        if self.local(id) {
            if index(id) >= self.local_next[dir(id)] {
                return Err(Error::Protocol(format!(
                    "{what} for stream {id}, which we never opened"
                )));
            }
            return Ok(self.streams.contains_key(&id));
        }
        if self.streams.contains_key(&id) {
            return Ok(true);
        }
        let d = dir(id);
        if !self.opened[d].is_new(index(id)) {
            return Ok(false);
        }
        if index(id) >= self.remote_max[d] {
            return Err(Error::StreamLimit(format!(
                "stream {id} is beyond the {} {} streams we allow",
                self.remote_max[d],
                if d == Dir::Bi {
                    "bidirectional"
                } else {
                    "unidirectional"
                },
            )));
        }
        self.opened[d].record(index(id));
        let window = self.config.max_stream_data;
        let send = (d == Dir::Bi).then(|| SendHalf::new(self.initial_send_max(id)));
        self.streams.insert(
            id,
            Stream {
                send,
                recv: Some(RecvHalf::new(window)),
            },
        );
        self.accept[d].push_back(id);
        self.accept_wakers[d].wake();
        Ok(true)
    }

    fn on_stream(
        &mut self,
        id: u64,
        offset: u64,
        data: Bytes,
        fin: bool,
        record: usize,
    ) -> Result<(), Error> {
        if self.local(id) && dir(id) == Dir::Uni {
            return Err(Error::Protocol(format!(
                "STREAM frame on stream {id}, which only we send on"
            )));
        }
        let len = data.len() as u64;
        if self.recv_data.saturating_add(len) > self.recv_max_data {
            return Err(Error::FlowControl(format!(
                "{} bytes received on the connection, {} allowed",
                self.recv_data.saturating_add(len),
                self.recv_max_data
            )));
        }

        if !self.peer_stream(id, "STREAM")? {
            // A stream already closed: its late data is dropped, but it still counts
            // against the connection's credit, and that credit is returned at once.
            self.recv_data = self.recv_data.saturating_add(len);
            self.consumed(len);
            return Ok(());
        }
        self.recv_data = self.recv_data.saturating_add(len);
        let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Err(Error::Protocol(format!("STREAM frame on send-only stream {id}")));
        };
        // The binding requires in-order data on each stream; like the other
        // implementations we do not insist that `offset` says so.
        let _ = offset;
        let end = recv.received.saturating_add(len);
        if end > recv.max {
            return Err(Error::FlowControl(format!(
                "{end} bytes received on stream {id}, {} allowed",
                recv.max
            )));
        }
        recv.received = end;

        // After STOP_SENDING, a reset or the FIN, data is dropped (and its credit
        // returned at once); a FIN still ends the stream.
        let discard = recv.stopped || recv.reset.is_some() || recv.fin;
        if !discard && !data.is_empty() {
            recv.buffered = recv.buffered.saturating_add(data.len());
            recv.buf.push_back(own(data, record));
        }
        if fin && recv.reset.is_none() {
            recv.fin = true;
        }
        wake(&mut recv.waker);
        if discard {
            self.consumed(len);
        }
        self.maybe_remove(id);
        Ok(())
    }

    fn on_reset(&mut self, id: u64, code: u64, final_size: u64) -> Result<(), Error> {
        if self.local(id) && dir(id) == Dir::Uni {
            return Err(Error::Protocol(format!(
                "RESET_STREAM on stream {id}, which only we send on"
            )));
        }
        let code = super::decode_code(code);
        let window = self.config.max_stream_data;
        let (received, max, known) = match self.streams.get(&id).and_then(|s| s.recv.as_ref()) {
            Some(recv) => (recv.received, recv.max, true),
            None => (0, window, false),
        };
        if !known {
            // Reset before any data: a peer stream is opened and closed at once, without
            // troubling the application; one of ours that is gone stays gone.
            if self.local(id) {
                if index(id) >= self.local_next[dir(id)] {
                    return Err(Error::Protocol(format!(
                        "RESET_STREAM for stream {id}, which we never opened"
                    )));
                }
                return Ok(());
            }
            let d = dir(id);
            if !self.opened[d].is_new(index(id)) {
                return Ok(());
            }
            if index(id) >= self.remote_max[d] {
                return Err(Error::StreamLimit(format!(
                    "RESET_STREAM for stream {id} beyond our limit"
                )));
            }
            if final_size > max || self.recv_data.saturating_add(final_size) > self.recv_max_data {
                return Err(Error::FlowControl(format!(
                    "RESET_STREAM final size {final_size} exceeds our credit"
                )));
            }
            self.opened[d].record(index(id));
            self.recv_data = self.recv_data.saturating_add(final_size);
            self.consumed(final_size);
            self.stream_closed(d);
            return Ok(());
        }

        // Drafts up to -02 let a sender report a final size below what it sent; take
        // the larger so a reset can never give credit back.
        let final_size = final_size.max(received);
        let gap = final_size.saturating_sub(received);
        if final_size > max || self.recv_data.saturating_add(gap) > self.recv_max_data {
            return Err(Error::FlowControl(format!(
                "RESET_STREAM final size {final_size} on stream {id} exceeds our credit"
            )));
        }
        self.recv_data = self.recv_data.saturating_add(gap);
        let mut freed = gap;
        if let Some(recv) = self.streams.get_mut(&id).and_then(|s| s.recv.as_mut())
            && recv.reset.is_none()
            && !(recv.fin && recv.buffered == 0)
        {
            freed = freed.saturating_add(recv.buffered as u64);
            recv.buf.clear();
            recv.buffered = 0;
            recv.received = final_size;
            recv.reset = Some(code);
            wake(&mut recv.waker);
        }
        self.consumed(freed);
        self.maybe_remove(id);
        Ok(())
    }

    fn on_stop_sending(&mut self, id: u64, code: u64) -> Result<(), Error> {
        if !self.local(id) && dir(id) == Dir::Uni {
            return Err(Error::Protocol(format!(
                "STOP_SENDING for stream {id}, which only the peer sends on"
            )));
        }
        if self.local(id) && index(id) >= self.local_next[dir(id)] {
            return Err(Error::Protocol(format!(
                "STOP_SENDING for stream {id}, which we never opened"
            )));
        }
        let raw = code;
        let code = super::decode_code(code);
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            return Ok(());
        };
        if matches!(send.state, SendState::Open | SendState::Finishing) {
            send.state = SendState::Stopped(code);
            send.discard();
            wake(&mut send.waker);
            let final_size = send.offset;
            self.pending.remove(&id);
            // RFC 9000 §3.5: answer STOP_SENDING with RESET_STREAM, echoing the code.
            self.control.push_back(Frame::ResetStream {
                id,
                code: raw,
                final_size,
            });
            self.wake_writer();
        }
        self.maybe_remove(id);
        Ok(())
    }

    /// `n` bytes left the receive buffers (read or discarded): credit may grow.
    fn consumed(&mut self, n: u64) {
        self.recv_consumed = self.recv_consumed.saturating_add(n);
        let window = self.config.max_data;
        if self.recv_max_data.saturating_sub(self.recv_consumed) <= window / 2 {
            self.recv_max_data = self.recv_consumed.saturating_add(window);
            self.max_data_dirty = true;
            self.wake_writer();
        }
    }

    /// A peer stream is gone: it no longer counts against the limit we gave.
    fn stream_closed(&mut self, d: Dir) {
        self.remote_closed[d] = self.remote_closed[d].saturating_add(1);
        let window = if d == Dir::Bi {
            self.config.max_bidi_streams
        } else {
            self.config.max_uni_streams
        };
        let target = self.remote_closed[d].saturating_add(window);
        if target > self.remote_max[d] {
            self.remote_max[d] = target;
            self.max_streams_dirty[d] = true;
            self.wake_writer();
        }
    }

    /// Forget a stream once both halves are finished and no handle refers to it.
    fn maybe_remove(&mut self, id: u64) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        let send_done = stream.send.as_ref().is_none_or(|s| !s.handle && s.terminal());
        let recv_done = stream.recv.as_ref().is_none_or(|r| !r.handle && r.terminal());
        if !(send_done && recv_done) {
            return;
        }
        self.streams.remove(&id);
        self.pending.remove(&id);
        self.window_dirty.remove(&id);
        if !self.local(id) {
            self.stream_closed(dir(id));
        }
    }

    // ---------------------------------------------------------------- sending

    /// The next record to send, `Ready(None)` once the session has ended and its
    /// close frame is out.
    fn poll_transmit(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let single = !self.wire.records();
        let budget = if single { MAX_FRAME_00 } else { MAX_RECORD };
        let mut record = BytesMut::new();

        if !self.params_sent {
            self.params_sent = true;
            Frame::TransportParameters(self.our_params()).encode(&mut record);
            if single || self.ended.is_some() {
                return Poll::Ready(Some(record.freeze()));
            }
        }
        if self.ended.is_some() {
            return match self.close_frame.take() {
                Some(frame) => {
                    frame.encode(&mut record);
                    Poll::Ready(Some(record.freeze()))
                }
                None if !record.is_empty() => Poll::Ready(Some(record.freeze())),
                None => Poll::Ready(None),
            };
        }

        // Control frames first: credit updates unblock the peer, resets free memory.
        while let Some(frame) = self.next_control() {
            let len = frame.encoded_len();
            if !record.is_empty() && record.len().saturating_add(len) > budget {
                self.unpop_control(frame);
                return Poll::Ready(Some(record.freeze()));
            }
            frame.encode(&mut record);
            if single {
                return Poll::Ready(Some(record.freeze()));
            }
        }

        while let Some(id) = self.pick_stream() {
            let room = budget.saturating_sub(record.len());
            if !self.emit_stream(id, &mut record, room) {
                break;
            }
            if single {
                break;
            }
        }

        if record.is_empty() {
            self.writer = Some(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(Some(record.freeze()))
        }
    }

    fn next_control(&mut self) -> Option<Frame> {
        if self.max_data_dirty {
            self.max_data_dirty = false;
            return Some(Frame::MaxData(self.recv_max_data));
        }
        for d in Dir::BOTH {
            if self.max_streams_dirty[d] {
                self.max_streams_dirty[d] = false;
                let max = self.remote_max[d];
                return Some(if d == Dir::Bi {
                    Frame::MaxStreamsBidi(max)
                } else {
                    Frame::MaxStreamsUni(max)
                });
            }
        }
        while let Some(id) = self.window_dirty.pop_first() {
            if let Some(recv) = self.streams.get(&id).and_then(|s| s.recv.as_ref())
                && !recv.fin
                && recv.reset.is_none()
                && !recv.stopped
            {
                return Some(Frame::MaxStreamData { id, max: recv.max });
            }
        }
        if let Some(frame) = self.control.pop_front() {
            return Some(frame);
        }
        if let Some(seq) = self.ping_response.take() {
            return Some(Frame::PingResponse(seq));
        }
        self.ping_request.take().map(Frame::PingRequest)
    }

    /// Put back a control frame that did not fit in this record.
    fn unpop_control(&mut self, frame: Frame) {
        match frame {
            Frame::MaxData(_) => self.max_data_dirty = true,
            Frame::MaxStreamsBidi(_) => self.max_streams_dirty[Dir::Bi] = true,
            Frame::MaxStreamsUni(_) => self.max_streams_dirty[Dir::Uni] = true,
            Frame::MaxStreamData { id, .. } => {
                self.window_dirty.insert(id);
            }
            Frame::PingResponse(seq) => self.ping_response = Some(seq),
            Frame::PingRequest(seq) => self.ping_request = Some(seq),
            other => self.control.push_front(other),
        }
    }

    /// The stream that should send next: highest priority, then the one that waited
    /// longest, then the oldest.
    fn pick_stream(&self) -> Option<u64> {
        let conn_credit = self.send_max_data > self.sent_data;
        self.pending
            .iter()
            .filter_map(|&id| {
                let send = self.streams.get(&id)?.send.as_ref()?;
                let data = send.queued > 0 && send.offset < send.max && conn_credit;
                let fin = send.queued == 0 && send.state == SendState::Finishing;
                (data || fin).then_some((send.priority, Reverse(send.served), Reverse(id)))
            })
            .max()
            .map(|(_, _, Reverse(id))| id)
    }

    /// Append one STREAM frame of `id` within `room` bytes. False if it did not fit.
    fn emit_stream(&mut self, id: u64, record: &mut BytesMut, room: usize) -> bool {
        let conn_credit = self.send_max_data.saturating_sub(self.sent_data);
        self.served = self.served.wrapping_add(1);
        let served = self.served;
        let Some(send) = self.streams.get_mut(&id).and_then(|s| s.send.as_mut()) else {
            self.pending.remove(&id);
            return true;
        };
        let credit = send.max.saturating_sub(send.offset).min(conn_credit);
        let fixed = stream_header_len(id, send.offset, 0).saturating_sub(1);
        // The length field takes at most 2 bytes: payloads stay under 16 KiB.
        let fits = room.saturating_sub(fixed.saturating_add(2));
        let n = send
            .queued
            .min(usize::try_from(credit).unwrap_or(usize::MAX))
            .min(MAX_STREAM_PAYLOAD)
            .min(fits);
        let fin = send.state == SendState::Finishing && n == send.queued;
        if n == 0 && !(fin && room > fixed) {
            return false;
        }

        encode_stream_header(record, id, send.offset, n, fin);
        let mut left = n;
        while left > 0 {
            let Some(chunk) = send.buf.front_mut() else { break };
            let take = left.min(chunk.len());
            if let Some(part) = chunk.get(..take) {
                record.extend_from_slice(part);
            }
            chunk.advance(take);
            if chunk.is_empty() {
                send.buf.pop_front();
            }
            left = left.saturating_sub(take);
        }
        send.queued = send.queued.saturating_sub(n);
        send.offset = send.offset.saturating_add(n as u64);
        send.served = served;
        if fin {
            send.state = SendState::Done;
        }
        if n > 0 {
            wake(&mut send.waker);
        }
        let idle = send.queued == 0 && send.state != SendState::Finishing;
        self.sent_data = self.sent_data.saturating_add(n as u64);
        if idle {
            self.pending.remove(&id);
        }
        if fin {
            self.maybe_remove(id);
        }
        true
    }
}

/// A stream fragment as its own allocation when it is a small part of a big record.
fn own(data: Bytes, record: usize) -> Bytes {
    if data.len().saturating_mul(COPY_BELOW_DIVISOR) < record {
        Bytes::copy_from_slice(&data)
    } else {
        data
    }
}

fn truncate(reason: String) -> Bytes {
    let mut bytes = reason.into_bytes();
    if bytes.len() > MAX_REASON {
        bytes.truncate(MAX_REASON);
    }
    Bytes::from(bytes)
}

/// What a qmux session's handles and its driver share: the [`Machine`] behind its
/// lock, and the signals that the session ended and the driver finished.
#[derive(Debug)]
pub(crate) struct QmuxState {
    machine: Mutex<Machine>,
    ended: watch::Sender<bool>,
    /// The driver has finished: the close went out and the socket is closed.
    finished: watch::Sender<bool>,
}

impl QmuxState {
    fn lock(&self) -> MutexGuard<'_, Machine> {
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify_ended(&self, state: &Machine) {
        if state.ended.is_some() {
            self.ended.send_replace(true);
        }
    }

    fn close(&self, code: u32, reason: &str) {
        let mut state = self.lock();
        state.end(
            Error::Closed {
                code: u64::from(code),
                reason: reason.to_string(),
            },
            Some(Frame::ApplicationClose {
                code: u64::from(code),
                reason: truncate(reason.to_string()),
            }),
        );
        self.notify_ended(&state);
    }

    fn fail(&self, error: Error) {
        let mut state = self.lock();
        if error.is_violation() {
            state.violation(error);
        } else {
            state.end(error, None);
        }
        self.notify_ended(&state);
    }

    fn on_record(&self, record: Bytes) {
        let mut state = self.lock();
        if state.ended.is_some() {
            return;
        }
        if let Err(err) = state.on_record(record) {
            state.violation(err);
        }
        self.notify_ended(&state);
    }

    fn established(&self) -> bool {
        self.lock().peer.is_some()
    }

    async fn wait_ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|ended| *ended).await;
    }
}

/// Ends the session when the last handle (session or stream) is dropped.
#[derive(Debug)]
struct Owner(Arc<QmuxState>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close(0, "");
    }
}

/// A qmux session over a WebSocket (or any message [`Socket`]).
///
/// Clones refer to the same session. It implements moq-core's transport traits, so
/// `moq_core::session::run` drives moq-lite over it exactly as over QUIC. The
/// session ends when [`close`](Session::close) is called, the peer closes, a
/// protocol or flow-control violation, silence for the idle timeout, or when the
/// last handle (session or stream) is dropped.
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<QmuxState>,
    owner: Arc<Owner>,
}

impl Session {
    /// Start a session over `socket`, whose subprotocol negotiation chose `wire`.
    ///
    /// Spawns the session's driver task on the current tokio runtime (like quinn's
    /// endpoint driver); it owns the socket and ends, closing the socket, with the
    /// session. Must be called inside a tokio runtime.
    pub fn new<T: Socket>(socket: T, role: Role, wire: Wire, config: Config) -> Self {
        let (ended, _) = watch::channel(false);
        let (finished, _) = watch::channel(false);
        let shared = Arc::new(QmuxState {
            machine: Mutex::new(Machine::new(role, wire, config.clone())),
            ended,
            finished,
        });
        tokio::spawn(drive(shared.clone(), socket, config));
        Self {
            owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    /// Wait until the peer's transport parameters arrived (the handshake is done), or
    /// the session ended.
    pub async fn established(&self) -> Result<(), TransportError> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(err) = state.error() {
                return Poll::Ready(Err(err));
            }
            if state.peer.is_some() {
                return Poll::Ready(Ok(()));
            }
            state.established_wakers.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The wire format in use.
    pub fn wire(&self) -> Wire {
        self.shared.lock().wire
    }

    /// The peer's transport parameters, once they arrived.
    pub fn peer_params(&self) -> Option<TransportParams> {
        self.shared.lock().peer.clone()
    }

    /// Close the session with an application code and reason (APPLICATION_CLOSE).
    pub fn close(&self, code: u32, reason: &str) {
        self.shared.close(code, reason);
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<TransportError> {
        self.shared.lock().error()
    }

    /// The code and reason the peer closed the session with (APPLICATION_CLOSE), once it
    /// has; `None` while open or when it ended any other way.
    pub fn peer_close(&self) -> Option<(u32, String)> {
        match &self.shared.lock().ended.as_ref()?.error {
            Error::PeerClosed { code, reason } => Some((super::decode_code(*code), reason.clone())),
            _ => None,
        }
    }

    /// A handle that can close the session without keeping it alive.
    pub(crate) fn closer(&self) -> Closer {
        Closer(self.shared.clone())
    }

    fn stream(&self, id: u64) -> (SendStream, RecvStream) {
        (
            SendStream {
                shared: self.shared.clone(),
                _owner: self.owner.clone(),
                id,
            },
            RecvStream {
                shared: self.shared.clone(),
                _owner: self.owner.clone(),
                id,
            },
        )
    }

    fn poll_open(&self, cx: &mut Context<'_>, d: Dir) -> Poll<Result<u64, TransportError>> {
        let mut state = self.shared.lock();
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        if state.local_next[d] >= state.local_max[d] {
            state.open_wakers[d].register(cx.waker());
            return Poll::Pending;
        }
        let index = state.local_next[d];
        state.local_next[d] = index.saturating_add(1);
        let server = u64::from(state.role == Role::Server);
        let id = index << 2 | d.bit() | server;
        let send = SendHalf::new(state.initial_send_max(id));
        let recv = (d == Dir::Bi).then(|| RecvHalf::new(state.config.max_stream_data));
        state.streams.insert(
            id,
            Stream {
                send: Some(send),
                recv,
            },
        );
        Poll::Ready(Ok(id))
    }

    fn poll_accept(&self, cx: &mut Context<'_>, d: Dir) -> Poll<Result<u64, TransportError>> {
        let mut state = self.shared.lock();
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        match state.accept[d].pop_front() {
            Some(id) => Poll::Ready(Ok(id)),
            None => {
                state.accept_wakers[d].register(cx.waker());
                Poll::Pending
            }
        }
    }
}

/// Closes a session without counting as a handle to it.
#[derive(Debug, Clone)]
pub(crate) struct Closer(Arc<QmuxState>);

impl Closer {
    /// Close with `code` and `reason` (no-op once ended).
    pub(crate) fn close(&self, code: u32, reason: &str) {
        self.0.close(code, reason);
    }

    /// Wait until the session has ended and its driver has flushed the close.
    pub(crate) async fn finished(&self) {
        let mut rx = self.0.finished.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether the driver has finished.
    pub(crate) fn is_finished(&self) -> bool {
        *self.0.finished.borrow()
    }
}

impl transport::Session for Session {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        let id = poll_fn(|cx| self.poll_open(cx, Dir::Bi)).await?;
        Ok(self.stream(id))
    }

    async fn open_uni(&self) -> Result<SendStream, TransportError> {
        let id = poll_fn(|cx| self.poll_open(cx, Dir::Uni)).await?;
        let (send, mut recv) = self.stream(id);
        // A unidirectional stream of ours has no receiving half to release.
        recv.id = u64::MAX;
        Ok(send)
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        let id = poll_fn(|cx| self.poll_accept(cx, Dir::Bi)).await?;
        Ok(self.stream(id))
    }

    async fn accept_uni(&self) -> Result<RecvStream, TransportError> {
        let id = poll_fn(|cx| self.poll_accept(cx, Dir::Uni)).await?;
        let (mut send, recv) = self.stream(id);
        send.id = u64::MAX;
        Ok(recv)
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if let Some(err) = state.error() {
                return Poll::Ready(Err(err));
            }
            match state.datagrams.pop_front() {
                Some(datagram) => Poll::Ready(Ok(datagram)),
                None => {
                    state.datagram_wakers.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn close(&self, code: u32, reason: &str) {
        Session::close(self, code, reason);
    }

    fn peer_close(&self) -> Option<(u32, String)> {
        Session::peer_close(self)
    }

    async fn closed(&self) -> TransportError {
        self.shared.wait_ended().await;
        self.shared
            .lock()
            .error()
            .unwrap_or_else(|| TransportError::new("qmux: session ended"))
    }
}

/// The sending half of a qmux stream. Dropped without [`finish`] or [`reset`], it
/// finishes the stream (as quinn does).
///
/// [`finish`]: transport::SendStream::finish
/// [`reset`]: transport::SendStream::reset
#[derive(Debug)]
pub struct SendStream {
    shared: Arc<QmuxState>,
    _owner: Arc<Owner>,
    id: u64,
}

impl SendStream {
    /// The stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queue `data` once the stream has room for it.
    fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Option<Bytes>,
    ) -> Poll<Result<(), TransportError>> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        let limit = state.config.send_buffer;
        let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) else {
            return Poll::Ready(Err(TransportError::new("qmux: stream closed")));
        };
        match send.state {
            SendState::Open => {}
            SendState::Stopped(code) => {
                return Poll::Ready(Err(TransportError {
                    code: Some(code),
                    message: format!("stopped by peer with code {code}"),
                }));
            }
            _ => return Poll::Ready(Err(TransportError::new("qmux: stream already finished or reset"))),
        }
        if send.queued >= limit {
            send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if let Some(data) = data.take()
            && !data.is_empty()
        {
            send.queued = send.queued.saturating_add(data.len());
            send.buf.push_back(data);
            state.pending.insert(self.id);
            state.wake_writer();
        }
        Poll::Ready(Ok(()))
    }

    /// The room left in the send buffer, once there is some.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, TransportError>> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        let limit = state.config.send_buffer;
        let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) else {
            return Poll::Ready(Err(TransportError::new("qmux: stream closed")));
        };
        if let SendState::Stopped(code) = send.state {
            return Poll::Ready(Err(TransportError {
                code: Some(code),
                message: format!("stopped by peer with code {code}"),
            }));
        }
        if send.state != SendState::Open {
            return Poll::Ready(Err(TransportError::new("qmux: stream already finished or reset")));
        }
        if send.queued >= limit {
            send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(limit.saturating_sub(send.queued)))
    }
}

impl transport::SendStream for SendStream {
    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), TransportError> {
        // Copy in pieces no bigger than the room left, so a large write does not
        // double its memory while it waits for the peer.
        while !buf.is_empty() {
            let room = poll_fn(|cx| self.poll_room(cx)).await?;
            let (now, rest) = buf.split_at(room.min(buf.len()));
            let mut chunk = Some(Bytes::copy_from_slice(now));
            poll_fn(|cx| self.poll_write(cx, &mut chunk)).await?;
            buf = rest;
        }
        Ok(())
    }

    async fn write_chunk(&mut self, buf: Bytes) -> Result<(), TransportError> {
        // A shared buffer is queued whole: holding a reference costs no copy.
        let mut chunk = Some(buf);
        poll_fn(|cx| self.poll_write(cx, &mut chunk)).await
    }

    fn set_priority(&mut self, priority: i32) {
        let mut state = self.shared.lock();
        if let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) {
            send.priority = priority;
        }
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(err) = state.error() {
            return Err(err);
        }
        let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) else {
            return Err(TransportError::new("qmux: stream closed"));
        };
        if send.state != SendState::Open {
            return Err(TransportError::new("qmux: stream already finished or reset"));
        }
        send.state = SendState::Finishing;
        state.pending.insert(self.id);
        state.wake_writer();
        Ok(())
    }

    fn reset(&mut self, code: u32) {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) else {
            return;
        };
        if !matches!(send.state, SendState::Open | SendState::Finishing) {
            return;
        }
        send.state = SendState::Reset;
        send.discard();
        let final_size = send.offset;
        state.pending.remove(&self.id);
        state.control.push_back(Frame::ResetStream {
            id: self.id,
            code: u64::from(code),
            final_size,
        });
        state.wake_writer();
        state.maybe_remove(self.id);
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let Some(send) = state.streams.get_mut(&self.id).and_then(|s| s.send.as_mut()) else {
            return;
        };
        send.handle = false;
        if send.state == SendState::Open {
            send.state = SendState::Finishing;
            state.pending.insert(self.id);
            state.wake_writer();
        }
        state.maybe_remove(self.id);
    }
}

/// The receiving half of a qmux stream. Dropped before the end of the stream, it
/// sends STOP_SENDING with code 0 (as quinn does).
#[derive(Debug)]
pub struct RecvStream {
    shared: Arc<QmuxState>,
    _owner: Arc<Owner>,
    id: u64,
}

impl RecvStream {
    /// The stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Result<Option<Bytes>, TransportError>> {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        if let Some(err) = state.error() {
            return Poll::Ready(Err(err));
        }
        let id = self.id;
        let Some(recv) = state.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
            return Poll::Ready(Err(TransportError::new("qmux: stream closed")));
        };
        if let Some(code) = recv.reset {
            return Poll::Ready(Err(TransportError {
                code: Some(code),
                message: format!("reset by peer with code {code}"),
            }));
        }
        if recv.stopped {
            return Poll::Ready(Err(TransportError::new("qmux: stream stopped")));
        }
        if let Some(front) = recv.buf.front_mut() {
            let chunk = if front.len() <= max.max(1) {
                recv.buf.pop_front().unwrap_or_default()
            } else {
                front.split_to(max.max(1))
            };
            let n = chunk.len();
            recv.buffered = recv.buffered.saturating_sub(n);
            recv.consumed = recv.consumed.saturating_add(n as u64);
            let window = state.config.max_stream_data;
            if !recv.fin && recv.max.saturating_sub(recv.consumed) <= window / 2 {
                recv.max = recv.consumed.saturating_add(window);
                state.window_dirty.insert(id);
                state.wake_writer();
            }
            state.consumed(n as u64);
            return Poll::Ready(Ok(Some(chunk)));
        }
        if recv.fin {
            return Poll::Ready(Ok(None));
        }
        recv.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl transport::RecvStream for RecvStream {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        poll_fn(|cx| self.poll_read(cx, max)).await
    }

    fn stop(&mut self, code: u32) {
        let mut guard = self.shared.lock();
        stop(&mut guard, self.id, code);
    }
}

/// Stop receiving on `id`: discard what is buffered and ask the peer to stop.
fn stop(state: &mut Machine, id: u64, code: u32) {
    let Some(recv) = state.streams.get_mut(&id).and_then(|s| s.recv.as_mut()) else {
        return;
    };
    if recv.stopped || recv.terminal() {
        return;
    }
    recv.stopped = true;
    let freed = recv.buffered as u64;
    recv.buf.clear();
    recv.buffered = 0;
    // Once the FIN arrived there is nothing left to stop: the rest is just dropped.
    if !recv.fin {
        state.control.push_back(Frame::StopSending {
            id,
            code: u64::from(code),
        });
    }
    state.consumed(freed);
    state.wake_writer();
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        stop(state, self.id, 0);
        if let Some(recv) = state.streams.get_mut(&self.id).and_then(|s| s.recv.as_mut()) {
            recv.handle = false;
        }
        state.maybe_remove(self.id);
    }
}

// ---------------------------------------------------------------------- driver

/// Run the socket for `shared` until the session ends and its close is flushed.
async fn drive<T: Socket>(shared: Arc<QmuxState>, socket: T, config: Config) {
    let (mut tx, mut rx) = socket.split();
    let wire = shared.lock().wire;
    let reading = read_loop(&shared, &mut rx, &config);
    let writing = write_loop(&shared, &mut tx, &config, wire);
    tokio::pin!(reading, writing);
    tokio::select! {
        () = &mut writing => {}
        // The peer is gone or the session failed: give the writer a moment to send
        // our close frame, not forever (the socket may not drain).
        () = async { (&mut reading).await; tokio::time::sleep(CLOSE_GRACE).await } => {}
    }
    // Whatever ended the driver, the session is over now.
    shared.fail(Error::SocketClosed);
    shared.finished.send_replace(true);
}

/// `after` past `start`; a timeout too long to represent (say `Duration::MAX` for
/// "never") waits about a century instead of overflowing.
fn later(start: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    start
        .checked_add(after)
        .or_else(|| start.checked_add(CENTURY))
        .unwrap_or(start)
}

async fn read_loop<R: Receiver>(shared: &QmuxState, rx: &mut R, config: &Config) {
    let start = Instant::now();
    let handshake = later(start, config.handshake_timeout);
    let mut deadline = later(start, config.idle_timeout);
    loop {
        let established = shared.established();
        let message = tokio::select! {
            message = rx.recv() => message,
            () = tokio::time::sleep_until(deadline) => {
                shared.fail(Error::IdleTimeout(config.idle_timeout));
                return;
            }
            () = tokio::time::sleep_until(handshake), if !established => {
                shared.fail(Error::HandshakeTimeout(config.handshake_timeout));
                return;
            }
            () = shared.wait_ended() => return,
        };
        deadline = later(Instant::now(), config.idle_timeout);
        match message {
            None => {
                shared.fail(Error::SocketClosed);
                return;
            }
            Some(Err(err)) => {
                shared.fail(Error::Socket(err.0));
                return;
            }
            Some(Ok(Incoming::Binary(record))) => shared.on_record(record),
            Some(Ok(Incoming::Control)) => {}
            Some(Ok(Incoming::Text)) => {
                shared.fail(Error::Protocol("a text message (qmux is binary only)".into()));
                return;
            }
            Some(Ok(Incoming::Close)) => {
                shared.fail(Error::SocketClosed);
                return;
            }
        }
    }
}

async fn write_loop<S: Sender>(shared: &QmuxState, tx: &mut S, config: &Config, wire: Wire) {
    let mut ping = config.keep_alive.map(|every| {
        let mut interval = tokio::time::interval_at(later(Instant::now(), every), every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut last_send = Instant::now();
    loop {
        let next = tokio::select! {
            record = poll_fn(|cx| shared.lock().poll_transmit(cx)) => record,
            _ = async {
                match ping.as_mut() {
                    Some(interval) => interval.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Err(err) = tx.ping().await {
                    shared.fail(Error::Socket(err.0));
                    continue;
                }
                // On qmux-01 a QX_PING keeps peers whose idle timer only counts qmux
                // frames (browsers never see WebSocket Pongs) from timing us out.
                if wire.records()
                    && let Some(every) = config.keep_alive
                    && last_send.elapsed() >= every
                {
                    let mut state = shared.lock();
                    if state.ended.is_none() {
                        let seq = state.next_ping;
                        state.next_ping = seq.wrapping_add(1);
                        state.ping_request = Some(seq);
                    }
                }
                continue;
            }
        };
        let Some(record) = next else { break };
        if let Err(err) = tx.send(record).await {
            shared.fail(Error::Socket(err.0));
            break;
        }
        last_send = Instant::now();
    }
    // After our own close, give the peer a moment to act on it before the WebSocket
    // Close arrives (as @moq/qmux does), so it does not race its own teardown.
    let local = matches!(
        shared.lock().ended,
        Some(Ended {
            error: Error::Closed { .. }
        })
    );
    if local {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, tx.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_does_not_overflow_on_a_timeout_meaning_never() {
        let start = Instant::now();
        assert_eq!(
            later(start, Duration::from_secs(5)),
            start + Duration::from_secs(5)
        );
        let never = later(start, Duration::MAX);
        assert!(never > start + Duration::from_secs(50 * 365 * 24 * 60 * 60));
    }

    #[test]
    fn per_direction_values_follow_the_stream_id_bit() {
        let mut counts: PerDir<u64> = PerDir::new(1, 2);
        assert_eq!(counts[dir(0)], 1, "client bidi");
        assert_eq!(counts[dir(2)], 2, "client uni");
        assert_eq!(counts[dir(3)], 2, "server uni");
        counts[Dir::Uni] = 7;
        assert_eq!(counts.iter_mut().map(|v| *v).collect::<Vec<_>>(), [1, 7]);
        assert_eq!(Dir::Uni.bit() | 1, 3);
    }
}
