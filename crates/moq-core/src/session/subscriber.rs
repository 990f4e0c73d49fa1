//! The subscribing half: learns the peer's broadcasts through an Announce
//! stream, publishes them into the `consume` origin, subscribes upstream when
//! a local consumer asks for a track, and ingests the groups that arrive.

use crate::model::origin::{END_GRACE, abort_after_grace};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use moq_proto::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, Datagram, Decode,
    FrameHeader, GroupHeader, Hops, Path, Range, Subscribe, SubscribeResponse, TimestampCursor, TrackRequest,
    Version,
};
use tokio::task::{AbortHandle, JoinSet};

use super::{Reader, SessionState, Writer, permissions_changed};
use crate::{
    BroadcastConsumer, BroadcastProducer, Error, Frame, GroupProducer, Origin, Result, TrackInfo,
    TrackProducer,
    model::Publication,
    stats::{Limit, Stats},
    transport::{RecvStream, Session},
};

/// How long a non-latest group may be before the upstream publisher skips it.
const UPSTREAM_MAX_LATENCY: Duration = Duration::from_secs(10);

/// How long a resuming subscription waits for its SUBSCRIBE to be answered before it
/// asks for the track's properties anyway.
const RESUME_INFO_DELAY: Duration = Duration::from_millis(200);

/// Live upstream subscriptions by id, so group streams find their track.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    map: Mutex<HashMap<u64, Arc<TrackProducer>>>,
    next: AtomicU64,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<TrackProducer>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: u64) -> Option<Arc<TrackProducer>> {
        self.lock().get(&id).cloned()
    }
}

/// Removes a subscription from the table when its task ends.
struct Registered<'a> {
    subscriptions: &'a Subscriptions,
    id: u64,
    upstream: &'a crate::stats::Upstream,
}

impl<'a> Registered<'a> {
    /// Register `track` under a fresh subscription id and count it upstream.
    fn new(shared: &'a SessionState, track: Arc<TrackProducer>) -> Self {
        let subscriptions = &shared.subscriptions;
        let id = subscriptions.next.fetch_add(1, Ordering::Relaxed);
        subscriptions.lock().insert(id, track);
        let upstream = &*shared.config.upstream;
        upstream.add();
        Self {
            subscriptions,
            id,
            upstream,
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.subscriptions.lock().remove(&self.id);
        self.upstream.remove();
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One announced broadcast of the peer, mirrored locally.
struct Mirrored {
    publication: Publication,
    task: AbortHandle,
}

impl Mirrored {
    /// Stop serving the peer's broadcast and unannounce it.
    fn end(self) {
        self.task.abort();
        self.publication.finish();
    }

    /// The peer ended its broadcast: unannounce it at once, and give its subscriptions
    /// [`END_GRACE`] to finish the groups still arriving.
    fn ended(self) {
        self.publication.finish();
        abort_after_grace(self.task);
    }
}

/// Ask the peer for its broadcasts and mirror them into the `consume` origin.
pub(crate) async fn announced<S: Session>(session: S, shared: Arc<SessionState>) -> Result<()> {
    let Some(origin) = shared.config.consume.clone() else {
        return Ok(());
    };
    // The writer stays open while we listen: dropping it would reset the stream.
    let Some((mut writer, mut reader, peer_hop)) = request_announcements(&session, &shared).await? else {
        return Ok(());
    };
    let mut mirror = Mirror {
        session,
        shared,
        origin,
        peer_hop,
        tasks: JoinSet::new(),
        active: HashMap::new(),
        ids: HashMap::new(),
        next_id: 0,
    };
    // lite-01/02: the broadcasts already active come first, in one message.
    if mirror.shared.config.version.has_announce_init() {
        let init = match reader.decode::<AnnounceInit>().await {
            Ok(init) => init,
            Err(Error::Reset(code)) => {
                discover_refused(&mirror.shared, code);
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        for suffix in init.suffixes {
            mirror.apply(Announce::Active {
                suffix,
                hops: Hops::new(),
                cost: Cost::UNKNOWN,
            })?;
        }
    }
    let mut permissions = mirror.shared.permissions.clone();
    let result = loop {
        let msg = tokio::select! {
            msg = reader.decode_maybe::<Announce>() => msg,
            Some(_) = mirror.tasks.join_next() => continue,
            () = permissions_changed(&mut permissions) => {
                mirror.withdraw_forbidden();
                continue;
            }
        };
        let msg = match msg {
            Ok(Some(msg)) => msg,
            Ok(None) => break Ok(()),
            // lite-03/04 have no ANNOUNCE_OK: a refusal comes as a reset instead of news.
            Err(Error::Reset(code)) if code == Error::Unauthorized(String::new()).stream_code() => {
                discover_refused(&mirror.shared, code);
                break Ok(());
            }
            Err(Error::Reset(code)) => {
                tracing::debug!(code, "peer ended announcements");
                break Ok(());
            }
            Err(err) => break Err(err),
        };
        if let Err(err) = mirror.apply(msg) {
            break Err(err);
        }
    };
    // Say why we stop listening, so the peer can tell its user.
    if let Err(err @ Error::Unauthorized(_)) = &result {
        super::reject(&mut writer, &mut reader, err);
    }
    // Abrupt end (session gone): publications drop without finish, so paths linger.
    drop(mirror.active);
    mirror.tasks.shutdown().await;
    result
}

/// Both halves of a control stream.
type Control<S> = (
    Writer<<S as Session>::SendStream>,
    Reader<<S as Session>::RecvStream>,
);

/// Open an Announce stream to the peer for everything it has. Returns the stream
/// and the peer's hop id (from ANNOUNCE_OK, lite-05+; 0 before), or `None` when
/// the peer refused.
async fn request_announcements<S: Session>(
    session: &S,
    shared: &SessionState,
) -> Result<Option<(Writer<S::SendStream>, Reader<S::RecvStream>, u64)>> {
    let version = shared.config.version;
    let (send, recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    let mut reader = Reader::new(recv, version);
    writer.queue(&ControlStream::Announce)?;
    writer
        .encode(&AnnounceRequest {
            prefix: shared.config.discover.clone(),
            exclude_hop: shared.config.hop,
        })
        .await?;
    if !version.has_announce_ok() {
        return Ok(Some((writer, reader, 0)));
    }
    match reader.decode::<AnnounceOk>().await {
        Ok(ok) => Ok(Some((writer, reader, ok.origin))),
        // A peer that publishes nothing may simply refuse announce interest.
        Err(Error::Reset(code)) => {
            discover_refused(shared, code);
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// The peer reset our Announce stream: record why, for the caller.
fn discover_refused(shared: &SessionState, code: u32) {
    tracing::debug!(code, prefix = %shared.config.discover, "peer refused announce interest");
    shared.config.events.update(|e| {
        e.discover_refused.get_or_insert(Error::Reset(code));
    });
}

/// The peer's announced broadcasts, mirrored into the `consume` origin.
struct Mirror<S: Session> {
    session: S,
    shared: Arc<SessionState>,
    origin: Origin,
    /// The peer's hop id (0 when it has none), appended to every route it announces.
    peer_hop: u64,
    /// One task per mirrored broadcast, subscribing upstream on demand.
    tasks: JoinSet<()>,
    active: HashMap<Path, Mirrored>,
    /// lite-06: the live announce ids (START ordinals) and their paths. Bounded by the
    /// announcement quota: a START past it is refused before its id is stored.
    ids: HashMap<u64, Path>,
    /// lite-06: the id the next START gets; ids below it that are not in `ids` ended or
    /// were refused.
    next_id: u64,
}

impl<S: Session> Mirror<S> {
    /// Apply one announcement. An error is fatal to the Announce stream.
    fn apply(&mut self, msg: Announce) -> Result<()> {
        let version = self.shared.config.version;
        let (suffix, hops, cost) = match msg {
            Announce::Active { suffix, hops, cost } => {
                if version.has_announce_ids() {
                    let id = self.next_id;
                    self.next_id = self.next_id.saturating_add(1);
                    if self.ids.len() >= self.shared.config.quota.max_announcements {
                        self.refuse(&suffix);
                        return Ok(());
                    }
                    self.ids.insert(id, suffix.clone());
                }
                (suffix, hops, cost)
            }
            Announce::Restart { id, hops, cost } => match self.ids.get(&id) {
                Some(suffix) => (suffix.clone(), hops, cost),
                None => return self.unknown_id("RESTART", id),
            },
            Announce::Ended { suffix, .. } => {
                self.ended(&suffix);
                return Ok(());
            }
            Announce::EndedId { id } => {
                let Some(suffix) = self.ids.remove(&id) else {
                    return self.unknown_id("END", id);
                };
                self.ended(&suffix);
                return Ok(());
            }
            Announce::Unknown { .. } => return Ok(()),
        };
        self.route(suffix, hops, cost)
    }

    /// An id no START named is a protocol violation; one that ended or was refused
    /// is ignored.
    fn unknown_id(&self, what: &str, id: u64) -> Result<()> {
        match id < self.next_id {
            true => Ok(()),
            false => Err(Error::Protocol(format!("{what} of unknown announce id {id}"))),
        }
    }

    /// An announcement past the quota: counted, and logged once per session.
    fn refuse(&self, suffix: &Path) {
        self.shared
            .usage
            .refuse(Limit::Announcements, format_args!("'{suffix}' ignored"));
    }

    /// Withdraw the peer's broadcasts it may no longer publish (its permissions
    /// narrowed). They stay withdrawn until the peer announces them again.
    fn withdraw_forbidden(&mut self) {
        let forbidden: Vec<Path> = self
            .active
            .keys()
            .filter(|suffix| !self.shared.can_publish(suffix))
            .cloned()
            .collect();
        for suffix in forbidden {
            tracing::info!(%suffix, "no longer allowed to publish; withdrawn");
            self.withdraw(&suffix);
        }
    }

    fn withdraw(&mut self, suffix: &Path) {
        if let Some(old) = self.active.remove(suffix) {
            old.end();
        }
    }

    /// The peer ended its broadcast at `suffix` (see [`Mirrored::ended`]).
    fn ended(&mut self, suffix: &Path) {
        if let Some(old) = self.active.remove(suffix) {
            old.ended();
        }
    }

    /// The path (relative to the root) of the peer's broadcast at `suffix` of the prefix
    /// we asked for.
    fn relative(&self, suffix: &Path) -> Result<Path> {
        let prefix = &self.shared.config.discover;
        if prefix.is_empty() {
            return Ok(suffix.clone());
        }
        prefix
            .join(suffix.as_str())
            .map_err(|err| Error::Protocol(err.to_string()))
    }

    /// A route to the peer's broadcast at `suffix`: mirror it if it is usable and
    /// allowed.
    fn route(&mut self, suffix: Path, mut hops: Hops, cost: Cost) -> Result<()> {
        let relative = self.relative(&suffix)?;
        // A route that is no longer usable also withdraws the peer's previous
        // route for the path: keeping the old one would keep a broadcast the
        // peer no longer offers that way.
        let unusable = if self.peer_hop != 0 && hops.push(self.peer_hop).is_err() {
            tracing::warn!(%suffix, "announcement with too many hops ignored");
            true
        } else {
            // A route back through us: a loop; or one the caller does not take.
            hops.contains(self.shared.config.hop)
                || self
                    .shared
                    .config
                    .accept
                    .as_ref()
                    .is_some_and(|accept| !accept.allows(&relative, &hops))
        };
        if unusable {
            self.withdraw(&suffix);
            return Ok(());
        }
        if !self.shared.can_publish(&relative) {
            Stats::add(&self.shared.config.stats.announcements_forbidden, 1);
            // A peer that may publish nothing at all is told so: its Announce stream is
            // refused with UNAUTHORIZED (no other broadcast of it could be taken anyway),
            // and the session goes on.
            if self.shared.permissions.borrow().publishes_nothing() {
                tracing::info!(path = %relative, "peer announced a broadcast but may publish nothing here; refused");
                return Err(Error::Unauthorized(format!("may not publish '{relative}'")));
            }
            // Debug only: a peer repeating this must not flood the log.
            tracing::debug!(path = %relative, "peer announced a broadcast it may not publish; ignored");
            return Ok(());
        }
        if !self.active.contains_key(&suffix)
            && self.active.len() >= self.shared.config.quota.max_announcements
        {
            self.refuse(&suffix);
            return Ok(());
        }
        self.mirror(suffix, hops, cost)
    }

    /// Publish the peer's broadcast locally and serve its track requests upstream.
    fn mirror(&mut self, suffix: Path, hops: Hops, cost: Cost) -> Result<()> {
        let config = &self.shared.config;
        let relative = self.relative(&suffix)?;
        let path = config
            .root
            .join(relative.as_str())
            .map_err(|err| Error::Protocol(err.to_string()))?;
        let broadcast = BroadcastProducer::dynamic(self.origin.cache().clone());
        // The peer's advertised cost (lite-06; 0 before) plus the price of this
        // link. A route through another relay costs at least 1 whichever side
        // dialled, so an accepted link is never a free bridge between two others.
        let link = match hops.is_empty() {
            true => config.cost,
            false => config.cost.max(1),
        };
        let cost = cost.warm.saturating_add(link);
        let publication = self.origin.publish_route(path, broadcast.consume(), hops, cost);
        let task = self.tasks.spawn(subscribe_on_request(
            self.session.clone(),
            self.shared.clone(),
            relative,
            broadcast,
        ));
        // A restart replaces the old mirror after the new one is attached.
        if let Some(old) = self.active.insert(suffix, Mirrored { publication, task }) {
            old.end();
        }
        Ok(())
    }
}

/// Subscribe upstream to each track a local consumer asks for in the peer's
/// broadcast at `suffix`, until the broadcast ends.
async fn subscribe_on_request<S: Session>(
    session: S,
    shared: Arc<SessionState>,
    suffix: Path,
    mut broadcast: BroadcastProducer,
) {
    let mut subscriptions = JoinSet::new();
    loop {
        tokio::select! {
            track = broadcast.requested_track() => {
                let Some(track) = track else { break };
                let mirrored = broadcast.consume();
                subscriptions.spawn(subscribe(session.clone(), shared.clone(), suffix.clone(), mirrored, track));
            }
            Some(_) = subscriptions.join_next() => {}
        }
    }
}

/// Subscribe upstream for one track and feed it until nobody reads it.
async fn subscribe<S: Session>(
    session: S,
    shared: Arc<SessionState>,
    broadcast: Path,
    mirrored: BroadcastConsumer,
    track: TrackProducer,
) {
    let name = track.name().to_string();
    if let Err(err) = run_subscription(session, &shared, broadcast.clone(), &mirrored, track).await {
        tracing::debug!(%broadcast, track = %name, %err, "upstream subscription ended");
    }
}

async fn run_subscription<S: Session>(
    session: S,
    shared: &SessionState,
    broadcast: Path,
    mirrored: &BroadcastConsumer,
    track: TrackProducer,
) -> Result<()> {
    let track = Arc::new(track);
    let registered = Registered::new(shared, track.clone());
    let result = async {
        let version = shared.config.version;
        let (mut writer, mut reader) =
            open_subscription(&session, version, registered.id, &broadcast, &track).await?;
        // lite-05+: the track's fixed properties come from a Track stream. A resuming
        // subscription lets its SUBSCRIBE reach the peer first: a relay that sees the
        // Track request first opens its own upstream at the latest group, and the groups
        // we asked to resume from would never come.
        let (answered, first_answer) = tokio::sync::oneshot::channel::<()>();
        let mut answered = Some(answered);
        let resuming = track.start().is_some();
        let _info = AbortOnDrop(version.has_track_stream().then(|| {
            let (session, track) = (session.clone(), track.clone());
            tokio::spawn(async move {
                if resuming {
                    let _ = tokio::time::timeout(RESUME_INFO_DELAY, first_answer).await;
                }
                request_track_info(session, version, broadcast, track).await;
            })
        }));
        // lite-05+: the publisher's SUBSCRIBE_END says how many groups it started.
        let mut end = None;
        loop {
            tokio::select! {
                msg = reader.decode_maybe::<SubscribeResponse>() => match msg? {
                    Some(response) => {
                        if let Some(answered) = answered.take() {
                            let _ = answered.send(());
                        }
                        if let SubscribeResponse::End { group } = response {
                            end = Some(group);
                        }
                        on_subscribe_response(&track, response);
                    }
                    // The publisher finished. The last group it counted travels on its own
                    // stream and may still be on the way: wait for it, for a while.
                    None => {
                        if let Some(last) = end.and_then(|end| end.checked_sub(1)) {
                            let _ = tokio::time::timeout(END_GRACE, track.reached(last)).await;
                        }
                        return Ok(());
                    }
                },
                // Taken out of the broadcast first: a viewer arriving now gets a new
                // subscription, not this one as it ends.
                _ = mirrored.retired(&track) => {
                    writer.finish().await?;
                    return Err(Error::Cancelled);
                }
            }
        }
    }
    .await;
    let result = result.map_err(|err| if refused(&err) { Error::NotFound } else { err });
    match &result {
        Ok(()) => track.close(Ok(())),
        Err(err) => track.close(Err(err.clone())),
    }
    result
}

/// Open a Subscribe stream for `track` of the peer's `broadcast` under `id`.
async fn open_subscription<S: Session>(
    session: &S,
    version: Version,
    id: u64,
    broadcast: &Path,
    track: &TrackProducer,
) -> Result<Control<S>> {
    let (send, recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    let reader = Reader::new(recv, version);
    tracing::debug!(%broadcast, track = %track.name(), start = ?track.start(), "subscribing upstream");
    writer.queue(&ControlStream::Subscribe)?;
    writer
        .encode(&Subscribe {
            id,
            broadcast: broadcast.clone(),
            track: track.name().to_string(),
            priority: 0,
            ordered: false,
            max_latency: UPSTREAM_MAX_LATENCY,
            // A consumer resuming (after a reconnect or a failover) asks for what it missed.
            range: Range {
                start_group: track.start(),
                ..Range::default()
            },
        })
        .await?;
    Ok((writer, reader))
}

fn on_subscribe_response(track: &TrackProducer, response: SubscribeResponse) {
    match response {
        SubscribeResponse::Ok(ok) => {
            if track.info().is_none() {
                track.set_info(TrackInfo {
                    priority: ok.priority,
                    max_latency: TrackInfo::default().max_latency,
                    timescale: 1_000_000,
                });
            }
        }
        SubscribeResponse::Start { .. } | SubscribeResponse::Drop(_) | SubscribeResponse::End { .. } => {}
    }
}

/// Ask the peer for a track's info on a Track stream (lite-05+) and set it.
async fn request_track_info<S: Session>(
    session: S,
    version: Version,
    broadcast: Path,
    track: Arc<TrackProducer>,
) {
    let result: Result<()> = async {
        let (send, recv) = session.open_bi().await?;
        let mut writer = Writer::new(send, version);
        let mut reader = Reader::new(recv, version);
        writer.queue(&ControlStream::Track)?;
        writer
            .encode(&TrackRequest {
                broadcast,
                track: track.name().to_string(),
            })
            .await?;
        let info = reader.decode::<moq_proto::TrackInfo>().await?;
        track.set_info(TrackInfo {
            priority: info.priority,
            max_latency: info.max_latency,
            timescale: info.timescale,
        });
        writer.finish().await
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(%err, "track info request failed");
        // The publisher does not have the track: fail it now rather than
        // leave subscribers waiting for info that will never come.
        if refused(&err) {
            track.close(Err(Error::NotFound));
        }
    }
}

/// Whether the publisher refused a request for a track it does not have: our
/// NOT_FOUND code (0x33), or any reset of a request before it produced anything.
fn refused(err: &Error) -> bool {
    matches!(err, Error::NotFound | Error::Reset(_))
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Serve one unidirectional stream opened by the peer: a group or its SETUP.
pub(crate) async fn receive_data_stream<R: RecvStream>(
    shared: Arc<SessionState>,
    mut reader: Reader<R>,
) -> Result<()> {
    match reader.decode::<DataStream>().await? {
        DataStream::Setup => {
            let setup = reader.decode::<moq_proto::Setup>().await?;
            let mut peer = shared.peer_setup.lock().unwrap_or_else(|e| e.into_inner());
            if peer.is_some() {
                return Err(Error::Protocol("second SETUP stream".into()));
            }
            *peer = Some(setup);
            Ok(())
        }
        DataStream::Group => ingest_group(&shared, reader).await,
        _ => Ok(()),
    }
}

async fn ingest_group<R: RecvStream>(shared: &SessionState, mut reader: Reader<R>) -> Result<()> {
    let version = shared.config.version;
    let header = reader.decode::<GroupHeader>().await?;
    let Some(track) = shared.subscriptions.get(header.subscribe) else {
        // Cancelled meanwhile, or never ours: stop the stream, not the session.
        reader.stop(Error::Cancelled.stream_code());
        return Ok(());
    };
    let _slot = match shared.admit(Limit::Groups) {
        Ok(slot) => slot,
        Err(err) => {
            reader.stop(err.stream_code());
            return Ok(());
        }
    };
    let mut group = match track.create_group(header.sequence) {
        Ok(group) => group,
        Err(err) => {
            reader.stop(err.stream_code());
            return Ok(());
        }
    };
    let stats = &shared.config.stats;
    Stats::add(&stats.groups_received, 1);
    let mut cursor = TimestampCursor::new();
    loop {
        // The cache may evict the group whenever memory is short: stop reading then.
        let header = tokio::select! {
            header = reader.decode_maybe::<FrameHeader>() => header,
            ended = group.closed() => Err(ended.err().unwrap_or(Error::Cancelled)),
        };
        let header = match header {
            Ok(Some(header)) => header,
            Ok(None) => break,
            Err(err) => {
                let fatal = matches!(err, Error::Decode(_) | Error::Protocol(_));
                end_group(&mut reader, group, err.clone());
                return if fatal { Err(err) } else { Ok(()) };
            }
        };
        let timestamp = match version.has_frame_timestamps() {
            true => cursor
                .apply(header.timestamp_delta)
                .ok_or_else(|| Error::Protocol("frame timestamp out of range".into()))?,
            false => now_micros(),
        };
        let size = usize::try_from(header.size).map_err(|_| Error::Limit("frame size"))?;
        if let Err(err) = shared
            .usage
            .group_within_caps(&shared.config.quota, &group, header.size)
        {
            reader.stop(err.stream_code());
            group.abort(err);
            return Ok(());
        }
        // Charged while it arrives.
        group.reserve(header.size);
        let payload = tokio::select! {
            payload = reader.read_exact(size) => payload,
            ended = group.closed() => Err(ended.err().unwrap_or(Error::Cancelled)),
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(err) => {
                end_group(&mut reader, group, err);
                return Ok(());
            }
        };
        Stats::add(&stats.frames_received, 1);
        Stats::add(&stats.bytes_received, header.size);
        group.write(Frame { timestamp, payload });
    }
    group.finish();
    Ok(())
}

/// End an incoming group early with `err`. When the group had already ended here (its
/// cache evicted it), the peer is told to stop sending, with that error's code.
fn end_group<R: RecvStream>(reader: &mut Reader<R>, group: GroupProducer, err: Error) {
    if group.is_closed() {
        reader.stop(err.stream_code());
    }
    group.abort(err);
}

/// A group delivered as one QUIC datagram (lite-05+).
pub(crate) fn datagram(shared: &SessionState, datagram: Bytes) {
    let mut buf = datagram;
    let datagram = match Datagram::decode(&mut buf, shared.config.version) {
        Ok(d) => d,
        Err(err) => {
            tracing::debug!(%err, "malformed datagram dropped");
            return;
        }
    };
    let Some(track) = shared.subscriptions.get(datagram.subscribe) else {
        return;
    };
    // Datagrams may duplicate a group already received on a stream.
    if let Ok(mut group) = track.create_group(datagram.sequence) {
        let stats = &shared.config.stats;
        Stats::add(&stats.groups_received, 1);
        Stats::add(&stats.frames_received, 1);
        Stats::add(&stats.bytes_received, datagram.payload.len() as u64);
        group.write(Frame {
            timestamp: datagram.timestamp,
            payload: datagram.payload,
        });
        group.finish();
    }
}
