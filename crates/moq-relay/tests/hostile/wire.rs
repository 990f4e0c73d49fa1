//! Attackers at the wire level: raw QUIC moq-lite sessions whose every byte is
//! built by hand with `moq_proto`, so they can do what no well-behaved client does
//! (endless groups, streams that never finish, floods of requests).

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use moq_core::transport::{RecvStream as _, SendStream as _, Session as _};
use moq_native::{
    Version,
    adapter::{MoqSession, RecvStream, SendStream},
    client,
};
use moq_proto::{
    Announce, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, Decode, DecodeError, Encode,
    Hops, Path, Setup, Subscribe, SubscribeOk, SubscribeResponse, TrackInfo, TrackRequest, decode_slice,
};
use tokio::{sync::mpsc, task::JoinSet};

use crate::harness::Relay;

/// The version attackers speak: the newest both relays have.
pub(crate) const VERSION: Version = Version::Lite06;

/// One message's bytes at [`VERSION`].
pub(crate) fn enc<T: Encode>(msg: &T) -> Vec<u8> {
    msg.to_vec(VERSION).expect("encodable")
}

/// Encode messages back to back.
macro_rules! bytes {
    ($($msg:expr),+ $(,)?) => {{
        let mut out = Vec::new();
        $(out.extend($crate::wire::enc($msg));)+
        out
    }};
}
pub(crate) use bytes;

/// A raw session and the client (UDP socket) it lives on.
pub(crate) struct Raw {
    /// The session.
    pub session: MoqSession,
    _client: Arc<client::Client>,
}

/// Dial the relay over raw QUIC at `/anon` from `client`; with `setup`, send our SETUP
/// (path `/anon`) like any lite-05+ client.
pub(crate) async fn dial(relay: &Relay, client: &Arc<client::Client>, setup: bool) -> anyhow::Result<Raw> {
    let connected = client.connect(&relay.url("moqt", "anon")).await?;
    let session = MoqSession::new(connected.session, connected.transport);
    if setup {
        send_setup(&session, Some("/anon".into())).await?;
    }
    Ok(Raw {
        session,
        _client: client.clone(),
    })
}

/// Our SETUP on its own unidirectional stream.
pub(crate) async fn send_setup(session: &MoqSession, path: Option<String>) -> anyhow::Result<()> {
    let mut stream = session.open_uni().await?;
    stream
        .write_all(&bytes!(
            &DataStream::Setup,
            &Setup {
                path,
                ..Default::default()
            },
        ))
        .await?;
    stream.finish()?;
    Ok(())
}

/// A client on `bind` that speaks only [`VERSION`].
pub(crate) fn attacker(relay: &Relay, bind: IpAddr) -> Arc<client::Client> {
    Arc::new(relay.client(bind, &[VERSION]))
}

/// Reads length-prefixed messages from a stream.
pub(crate) struct Reader {
    recv: RecvStream,
    buf: BytesMut,
}

impl Reader {
    /// Wrap a stream.
    pub(crate) fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
        }
    }

    /// The next message.
    pub(crate) async fn decode<T: Decode>(&mut self) -> anyhow::Result<T> {
        loop {
            match decode_slice::<T>(&self.buf, VERSION) {
                Ok((msg, used)) => {
                    let _ = self.buf.split_to(used);
                    return Ok(msg);
                }
                Err(DecodeError::Short) => {}
                Err(err) => bail!("decode: {err}"),
            }
            match self.recv.read_chunk(64 * 1024).await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => bail!("stream ended"),
            }
        }
    }

    /// Read and drop everything until the stream ends; bytes read.
    pub(crate) async fn drain(self) -> u64 {
        let total = AtomicU64::new(0);
        self.drain_into(&total).await;
        total.into_inner()
    }

    /// Read and drop everything until the stream ends, adding what is read to `total`
    /// as it arrives.
    pub(crate) async fn drain_into(mut self, total: &AtomicU64) {
        total.fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        while let Ok(Some(chunk)) = self.recv.read_chunk(1 << 20).await {
            total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A subscription the relay opened to a [`Publisher`].
#[derive(Debug, Clone)]
pub(crate) struct Subscription {
    /// The subscribe id group streams must carry.
    pub id: u64,
}

/// A hand-made publisher: answers the relay's Announce stream with `broadcasts`,
/// its Subscribe streams with SUBSCRIBE_START, its Track streams with a TRACK_INFO,
/// and hands every subscription over so the attack can send what it likes.
pub(crate) struct Publisher {
    /// The raw session.
    pub raw: Raw,
    /// Subscriptions the relay made.
    pub subscriptions: mpsc::UnboundedReceiver<Subscription>,
    /// Announcements sent so far.
    pub announced: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl Publisher {
    /// Connect from `client` and announce `broadcasts` (relative to `/anon`).
    pub(crate) async fn start(
        relay: &Relay,
        client: &Arc<client::Client>,
        broadcasts: Vec<Path>,
    ) -> anyhow::Result<Self> {
        let raw = dial(relay, client, true).await?;
        let (tx, subscriptions) = mpsc::unbounded_channel();
        let announced = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let session = raw.session.clone();
        let count = announced.clone();
        let first = broadcasts.first().cloned();
        let broadcasts = Arc::new(broadcasts);
        tasks.spawn(async move {
            let mut streams = JoinSet::new();
            while let Ok((send, recv)) = session.accept_bi().await {
                streams.spawn(serve(send, recv, broadcasts.clone(), tx.clone(), count.clone()));
                while streams.try_join_next().is_some() {}
            }
        });
        // Viewers may subscribe only once the relay knows the broadcast.
        if let Some(first) = first {
            relay.wait_announced(first.as_str()).await;
        }
        Ok(Self {
            raw,
            subscriptions,
            announced,
            tasks,
        })
    }

    /// The next subscription the relay makes, within `timeout`.
    pub(crate) async fn subscription(&mut self, timeout: Duration) -> anyhow::Result<Subscription> {
        tokio::time::timeout(timeout, self.subscriptions.recv())
            .await
            .context("no subscription from the relay in time")?
            .context("publisher session ended")
    }

    /// Stop serving and close the session.
    pub(crate) fn close(mut self) {
        self.raw.session.close(0, "done");
        self.tasks.abort_all();
    }
}

async fn serve(
    mut send: SendStream,
    recv: RecvStream,
    broadcasts: Arc<Vec<Path>>,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    announced: Arc<AtomicU64>,
) {
    let mut reader = Reader::new(recv);
    let Ok(kind) = reader.decode::<ControlStream>().await else {
        return;
    };
    match kind {
        ControlStream::Announce => {
            if reader.decode::<AnnounceRequest>().await.is_err() {
                return;
            }
            let mut out = bytes!(&AnnounceOk {
                origin: 0,
                active: broadcasts.len() as u64,
            });
            for (i, suffix) in broadcasts.iter().enumerate() {
                out.extend(bytes!(&Announce::Active {
                    suffix: suffix.clone(),
                    hops: Hops::new(),
                    cost: Cost::new(0),
                }));
                // Write in batches, so progress is visible while flow control holds us.
                if out.len() > 64 * 1024 || i + 1 == broadcasts.len() {
                    if send.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    announced.store(i as u64 + 1, Ordering::Relaxed);
                }
            }
            if !out.is_empty() && send.write_all(&out).await.is_err() {
                return;
            }
            // Keep the stream (and so the announcements) open.
            let _ = reader.drain().await;
        }
        ControlStream::Subscribe => {
            let Ok(subscribe) = reader.decode::<Subscribe>().await else {
                return;
            };
            let response = match VERSION.has_track_stream() {
                true => SubscribeResponse::Start { group: 0 },
                false => SubscribeResponse::Ok(SubscribeOk::default()),
            };
            if send.write_all(&bytes!(&response)).await.is_err() {
                return;
            }
            let _ = subscriptions.send(Subscription { id: subscribe.id });
            let _ = reader.drain().await;
        }
        ControlStream::Track => {
            if reader.decode::<TrackRequest>().await.is_err() {
                return;
            }
            let info = TrackInfo {
                priority: 0,
                ordered: false,
                max_latency: Duration::from_secs(5),
                timescale: 1_000_000,
            };
            if send.write_all(&bytes!(&info)).await.is_ok() {
                let _ = send.finish();
            }
            let _ = reader.drain().await;
        }
        _ => send.reset(0),
    }
}

/// A hand-made viewer: subscribes to `broadcast`/`track` (relative to `/anon`) and
/// reads and drops every group stream, counting bytes.
pub(crate) struct Viewer {
    /// Bytes received on group streams.
    pub bytes: Arc<AtomicU64>,
    raw: Raw,
    _subscribe: (SendStream, RecvStream),
    tasks: JoinSet<()>,
}

impl Viewer {
    /// Connect from `client` and subscribe.
    pub(crate) async fn start(
        relay: &Relay,
        client: &Arc<client::Client>,
        broadcast: &str,
        track: &str,
    ) -> anyhow::Result<Self> {
        let raw = dial(relay, client, true).await?;
        let (mut send, recv) = raw.session.open_bi().await?;
        send.write_all(&bytes!(
            &ControlStream::Subscribe,
            &Subscribe {
                id: 0,
                broadcast: Path::new(broadcast)?,
                track: track.into(),
                ..Default::default()
            },
        ))
        .await?;
        let counted = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let session = raw.session.clone();
        let total = counted.clone();
        tasks.spawn(async move {
            let mut streams = JoinSet::new();
            while let Ok(recv) = session.accept_uni().await {
                let total = total.clone();
                streams.spawn(async move { Reader::new(recv).drain_into(&total).await });
                while streams.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            bytes: counted,
            raw,
            _subscribe: (send, recv),
            tasks,
        })
    }

    /// Stop and close.
    pub(crate) fn close(mut self) {
        self.raw.session.close(0, "done");
        self.tasks.abort_all();
    }
}

/// A group stream's first bytes: stream type and GROUP header.
pub(crate) fn group_header(subscribe: u64, sequence: u64) -> Vec<u8> {
    bytes!(
        &DataStream::Group,
        &moq_proto::GroupHeader {
            subscribe,
            sequence,
            frame_start: 0,
        },
    )
}

/// A FRAME header for `size` payload bytes.
pub(crate) fn frame_header(size: u64) -> Vec<u8> {
    bytes!(&moq_proto::FrameHeader {
        timestamp_delta: 0,
        size,
    })
}

/// A payload of `size` bytes, shared (written without copies).
pub(crate) fn payload(size: usize) -> Bytes {
    Bytes::from(vec![0x5a; size])
}

/// How a flood of requests on bidirectional streams went.
#[derive(Debug, Default)]
pub(crate) struct Flood {
    /// Streams opened and written.
    pub opened: u64,
    /// Requests the relay answered (reset, finished or replied to) within a second.
    pub answered_fast: u64,
    /// Requests the relay reset or stopped (at any time).
    pub reset: u64,
    /// Why opening stopped early, if it did.
    pub stopped: Option<String>,
}

impl Flood {
    /// Open up to `count` bidirectional streams within `duration`, write `request(i)` on
    /// each and keep them all open, watching how the relay answers. Returns once every
    /// stream is opened (or opening stalls) and a second more has passed.
    pub(crate) async fn run(
        session: &MoqSession,
        count: u64,
        duration: Duration,
        request: impl Fn(u64) -> Vec<u8>,
    ) -> (Self, Vec<SendStream>) {
        let fast = Arc::new(AtomicU64::new(0));
        let reset = Arc::new(AtomicU64::new(0));
        let mut watchers = JoinSet::new();
        let mut held = Vec::new();
        let mut flood = Self::default();
        let started = std::time::Instant::now();
        while flood.opened < count {
            if started.elapsed() > duration {
                flood.stopped = Some(format!("time up after {:?}", duration));
                break;
            }
            let (mut send, mut recv) =
                match tokio::time::timeout(Duration::from_secs(2), session.open_bi()).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        flood.stopped = Some(format!("session closed: {err}"));
                        break;
                    }
                    Err(_) => {
                        flood.stopped = Some("no stream credit for 2 s".into());
                        break;
                    }
                };
            if let Err(err) = send.write_all(&request(flood.opened)).await {
                flood.stopped = Some(format!("write failed: {err}"));
                break;
            }
            flood.opened += 1;
            held.push(send);
            let (fast, reset) = (fast.clone(), reset.clone());
            watchers.spawn(async move {
                let sent = std::time::Instant::now();
                let mut answered = false;
                loop {
                    let read = recv.read_chunk(1 << 16).await;
                    if !answered && sent.elapsed() < Duration::from_secs(1) {
                        fast.fetch_add(1, Ordering::Relaxed);
                    }
                    answered = true;
                    match read {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            reset.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
            while watchers.try_join_next().is_some() {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        flood.answered_fast = fast.load(Ordering::Relaxed);
        flood.reset = reset.load(Ordering::Relaxed);
        watchers.abort_all();
        (flood, held)
    }
}
