//! The subscribing half: mirrors the peer's announced broadcasts (PUBLISH_NAMESPACE, or
//! NAMESPACE on our SUBSCRIBE_NAMESPACE) into the `consume` origin, subscribes upstream
//! when a local consumer asks for a track (one SUBSCRIBE per track, however many
//! consumers), and turns the subgroup streams that arrive into groups.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tracing::Instrument;

use bytes::Bytes;
use moq_proto::{
    Hops, Path,
    ietf::{
        DatagramBody, Decode, Filter, GroupOrder, KvValue, Message, Namespace, ObjectDatagram, Parameters,
        PublishNamespace, RequestId, RequestOk, SubgroupHeader, SubgroupId, SubgroupObject, Subscribe,
        SubscribeNamespace, SubscribeOk, UniStream, Version, message::codes, properties, status,
    },
};
use tokio::{
    sync::watch,
    task::{JoinHandle, JoinSet},
};

use super::{Kind, Slot, State, code, refuse, stream::Reader};
use crate::model::origin::abort_after_grace;
use crate::{
    BroadcastConsumer, BroadcastProducer, Error, Frame, GroupProducer, Result, TrackInfo, TrackProducer,
    ietf::control::Channel,
    model::Publication,
    stats::{Limit, Stats},
    transport::{RecvStream, Session},
};

/// How long a data stream waits for the SUBSCRIBE_OK that binds its track alias (they
/// travel on different streams and may arrive in either order).
const ALIAS_WAIT: Duration = Duration::from_secs(2);

/// After PUBLISH_DONE, how long to wait for the data streams it counts that have not
/// ended yet.
const SETTLE: Duration = Duration::from_secs(2);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One upstream subscription, as the data streams that name its alias find it.
#[derive(Debug)]
pub(crate) struct Upstream {
    track: Arc<TrackProducer>,
    /// The track's TIMESCALE, when the publisher declared one: object TIMESTAMPs are in
    /// it. Without one, frames are stamped on arrival.
    timescale: Option<u64>,
    /// Data streams of this subscription read to their end.
    done: watch::Sender<u64>,
}

/// Upstream subscriptions by track alias.
#[derive(Debug, Default)]
pub(crate) struct Aliases {
    map: Mutex<HashMap<u64, Arc<Upstream>>>,
    /// Bumped whenever an alias is bound, for streams waiting on one.
    bound: watch::Sender<u64>,
}

impl Aliases {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Upstream>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bind `alias`; one a live subscription already uses is the publisher's error
    /// (DUPLICATE_TRACK_ALIAS).
    fn insert(&self, alias: u64, upstream: Arc<Upstream>) -> Result<()> {
        let mut map = self.lock();
        if map.contains_key(&alias) {
            return Err(Error::Protocol(format!("track alias {alias} is already in use")));
        }
        map.insert(alias, upstream);
        drop(map);
        self.bound.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    fn remove(&self, alias: u64) {
        self.lock().remove(&alias);
    }

    fn get(&self, alias: u64) -> Option<Arc<Upstream>> {
        self.lock().get(&alias).cloned()
    }

    /// The subscription bound to `alias`, waiting a while for its SUBSCRIBE_OK.
    async fn wait(&self, alias: u64) -> Option<Arc<Upstream>> {
        let mut bound = self.bound.subscribe();
        let wait = async {
            loop {
                if let Some(upstream) = self.get(alias) {
                    return Some(upstream);
                }
                bound.changed().await.ok()?;
            }
        };
        tokio::time::timeout(ALIAS_WAIT, wait).await.ok().flatten()
    }
}

/// One broadcast of the peer, mirrored into the `consume` origin while any announcement
/// of it (PUBLISH_NAMESPACE, NAMESPACE) lives.
#[derive(Debug)]
struct Mirror {
    sources: usize,
    publication: Option<Publication>,
    task: JoinHandle<()>,
}

/// The peer's broadcasts, by path relative to the session root.
#[derive(Debug, Default)]
pub(crate) struct Mirrors {
    map: Mutex<HashMap<Path, Mirror>>,
}

impl Mirrors {
    fn lock(&self) -> MutexGuard<'_, HashMap<Path, Mirror>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget every mirror without finishing it: the session is gone, so its broadcasts
    /// linger (a publisher reconnecting resumes them) rather than end.
    pub(crate) fn clear(&self) {
        for (_, mirror) in self.lock().drain() {
            mirror.task.abort();
        }
    }

    fn release(&self, path: &Path, clean: bool) {
        let mut map = self.lock();
        let Some(mirror) = map.get_mut(path) else {
            return;
        };
        mirror.sources = mirror.sources.saturating_sub(1);
        if mirror.sources > 0 {
            return;
        }
        let Some(mut mirror) = map.remove(path) else {
            return;
        };
        let Some(publication) = mirror.publication.take().filter(|_| clean) else {
            // Withdrawn abruptly: the broadcast lingers, and nothing more will come.
            mirror.task.abort();
            return;
        };
        // Ended cleanly: unannounced at once, and its subscriptions get END_GRACE to take
        // the groups still arriving and their PUBLISH_DONE (the namespace's end often
        // overtakes the last group's stream), as on moq-lite sessions.
        publication.finish();
        abort_after_grace(mirror.task.abort_handle());
    }
}

/// One announcement of a mirrored broadcast; dropping it withdraws the announcement,
/// abruptly (the broadcast lingers) unless [`MirrorGuard::finish`] said it ended.
pub(crate) struct MirrorGuard {
    state: Arc<State>,
    path: Path,
    clean: bool,
}

impl MirrorGuard {
    /// The peer ended the announcement cleanly.
    fn finish(mut self) {
        self.clean = true;
    }
}

impl Drop for MirrorGuard {
    fn drop(&mut self) {
        self.state.mirrors.release(&self.path, self.clean);
    }
}

/// Mirror the peer's broadcast at `path` (relative to the root), or add one more
/// announcement of it. Refused when the peer may not publish there, when the caller's
/// filter does not take it, or past the announcement quota.
fn mirror<S: Session>(session: &S, state: &Arc<State>, path: Path) -> Result<MirrorGuard> {
    let config = &state.config;
    let Some(origin) = config.consume.clone() else {
        return Err(Error::Unauthorized("this session may not publish".into()));
    };
    if !config.permissions.can_publish(&path) {
        return Err(Error::Unauthorized(format!("may not publish '{path}'")));
    }
    let mut hops = Hops::new();
    hops.push(state.peer_hop)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    if hops.contains(config.hop) && config.hop != 0
        || config
            .accept
            .as_ref()
            .is_some_and(|accept| !accept.allows(&path, &hops))
    {
        return Err(Error::Unauthorized(format!(
            "'{path}' is not taken from this peer"
        )));
    }
    let mut map = state.mirrors.lock();
    if let Some(existing) = map.get_mut(&path) {
        existing.sources = existing.sources.saturating_add(1);
    } else {
        if map.len() >= config.quota.max_announcements {
            drop(map);
            state
                .usage
                .refuse(Limit::Announcements, format_args!("'{path}' refused"));
            return Err(Error::Limit(Limit::Announcements.name()));
        }
        let absolute = state.absolute(&path)?;
        let broadcast = BroadcastProducer::dynamic(origin.cache().clone());
        // Crossing a link to another relay costs at least 1, as on moq-lite links.
        let cost = config.cost.max(1);
        let publication = origin.publish_route(absolute, broadcast.consume(), hops, cost);
        let task = tokio::spawn(
            subscribe_on_request(session.clone(), state.clone(), path.clone(), broadcast).in_current_span(),
        );
        map.insert(
            path.clone(),
            Mirror {
                sources: 1,
                publication: Some(publication),
                task,
            },
        );
    }
    Ok(MirrorGuard {
        state: state.clone(),
        path,
        clean: false,
    })
}

/// Serve the peer's PUBLISH_NAMESPACE: acknowledge and mirror the broadcast until the
/// peer withdraws it (PUBLISH_NAMESPACE_DONE, or the end of its request stream).
pub(crate) async fn publish_namespace<S: Session>(
    session: S,
    state: Arc<State>,
    msg: PublishNamespace,
    mut channel: Channel<S>,
) -> Result<()> {
    let version = state.version;
    let id = msg.request_id;
    let kind = Kind::PublishNamespace;
    let Some(path) = msg.namespace.to_path() else {
        return refuse(
            version,
            channel,
            kind,
            id,
            codes::INTERNAL_ERROR,
            "the namespace is not a path (an empty field or a '/')",
        )
        .await;
    };
    let guard = match mirror(&session, &state, path.clone()) {
        Ok(guard) => guard,
        Err(err) => {
            let code = match &err {
                Error::Unauthorized(_) => codes::UNAUTHORIZED,
                _ => codes::INTERNAL_ERROR,
            };
            return refuse(version, channel, kind, id, code, &err.to_string()).await;
        }
    };
    let ok = match version.has_request_ok() {
        true => Message::RequestOk(RequestOk {
            request_id: id,
            ..Default::default()
        }),
        false => Message::PublishNamespaceOk(RequestId(id)),
    };
    channel.send(ok).await?;
    tracing::debug!(%path, role = ?state.role, id, "peer announced");
    loop {
        match channel.recv().await {
            Ok(Some(Message::PublishNamespaceDone(_))) | Ok(None) => {
                guard.finish();
                break;
            }
            Ok(Some(other)) => {
                tracing::debug!(kind = ?other.message_type(), "ignored on a PUBLISH_NAMESPACE");
            }
            // Reset: the broadcast lingers, as after a lost connection.
            Err(_) => break,
        }
    }
    channel.finish().await
}

/// A client's discovery: SUBSCRIBE_NAMESPACE for everything under the session root.
/// The answers are NAMESPACE messages on its stream (draft-16+) or PUBLISH_NAMESPACE
/// requests (draft-14, -15; served by [`publish_namespace`]).
pub(crate) async fn discover<S: Session>(session: S, state: Arc<State>) -> Result<()> {
    let version = state.version;
    let (_, mut channel) = state
        .request(&session, version.has_namespace_messages(), None, |id| {
            Message::SubscribeNamespace(SubscribeNamespace {
                request_id: id,
                required_request_id_delta: 0,
                prefix: Namespace::empty(),
                // Namespaces only (draft-16, -17 Subscribe Options).
                options: u64::from(version.has_subscribe_options()),
                params: Parameters::new(),
            })
        })
        .await?;
    let mut guards: HashMap<Path, MirrorGuard> = HashMap::new();
    loop {
        match channel.recv().await {
            Ok(Some(Message::SubscribeNamespaceOk(_) | Message::RequestOk(_))) => {}
            Ok(Some(Message::SubscribeNamespaceError(err) | Message::RequestError(err))) => {
                tracing::debug!(code = err.code, reason = %err.reason, "peer refused SUBSCRIBE_NAMESPACE");
                return Ok(());
            }
            Ok(Some(Message::Namespace(ns))) => {
                let Some(path) = ns.suffix.to_path() else {
                    tracing::debug!(suffix = %ns.suffix, "NAMESPACE that is not a path; ignored");
                    continue;
                };
                if guards.contains_key(&path) {
                    continue;
                }
                match mirror(&session, &state, path.clone()) {
                    Ok(guard) => {
                        guards.insert(path, guard);
                    }
                    Err(err) => tracing::debug!(%path, %err, "announcement not taken"),
                }
            }
            Ok(Some(Message::NamespaceDone(ns))) => {
                if let Some(guard) = ns.suffix.to_path().and_then(|path| guards.remove(&path)) {
                    guard.finish();
                }
            }
            Ok(Some(other)) => {
                return Err(Error::Protocol(format!(
                    "{:?} on a SUBSCRIBE_NAMESPACE",
                    other.message_type()
                )));
            }
            Ok(None) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

/// Subscribe upstream to each track a local consumer asks for in the peer's broadcast
/// at `path`, until the mirror ends.
async fn subscribe_on_request<S: Session>(
    session: S,
    state: Arc<State>,
    path: Path,
    mut broadcast: BroadcastProducer,
) {
    let mut subscriptions = JoinSet::new();
    loop {
        tokio::select! {
            track = broadcast.requested_track() => {
                let Some(track) = track else { break };
                let session = session.clone();
                let state = state.clone();
                let path = path.clone();
                let mirrored = broadcast.consume();
                subscriptions.spawn(async move {
                    let name = track.name().to_string();
                    if let Err(err) = run_subscription(session, state, path.clone(), &mirrored, track).await {
                        tracing::debug!(broadcast = %path, track = %name, %err, "upstream subscription ended");
                    }
                }.in_current_span());
            }
            Some(_) = subscriptions.join_next() => {}
        }
    }
}

/// Counts a subscription upstream while it lives (shared by a relay to prove there is
/// one per track).
struct Counted<'a>(&'a crate::stats::Upstream);

impl<'a> Counted<'a> {
    fn new(counter: &'a crate::stats::Upstream) -> Self {
        counter.add();
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.remove();
    }
}

/// What a refusal code means for the track.
fn refused(code: u64, version: Version) -> Error {
    match code {
        codes::UNAUTHORIZED => Error::Unauthorized("the publisher refused the subscription".into()),
        code::DOES_NOT_EXIST_14 if version == Version::Draft14 => Error::NotFound,
        _ => Error::NotFound,
    }
}

/// Subscribe upstream for one track and feed it until nobody reads it or the publisher
/// ends it.
async fn run_subscription<S: Session>(
    session: S,
    state: Arc<State>,
    path: Path,
    mirrored: &BroadcastConsumer,
    track: TrackProducer,
) -> Result<()> {
    let version = state.version;
    let track = Arc::new(track);
    let _counted = Counted::new(&state.config.upstream);
    let (id, channel) = match request_track(&session, &state, &path, &track).await {
        Ok(opened) => opened,
        Err(err) => {
            track.close(Err(err.clone()));
            return Err(err);
        }
    };
    let Some((ok, mut channel)) = await_subscribe_ok(version, id, channel, mirrored, &track).await? else {
        return Ok(());
    };
    let timescale = adopt_properties(&track, &ok);
    let upstream = Arc::new(Upstream {
        track: track.clone(),
        timescale,
        done: watch::channel(0).0,
    });
    let alias = ok.track_alias;
    state.aliases.insert(alias, upstream.clone())?;
    let result = follow(&mut channel, &upstream, mirrored).await;
    state.aliases.remove(alias);
    match result {
        Ok(true) => {
            track.close(Ok(()));
            channel.finish().await
        }
        Ok(false) => {
            cancel(version, id, channel).await;
            track.close(Err(Error::Cancelled));
            Ok(())
        }
        Err(err) => {
            track.close(Err(err.clone()));
            Err(err)
        }
    }
}

/// Send SUBSCRIBE for `track` at `path`, asking for whole groups: the next one before
/// draft-20 (a publisher that keeps the current one, as moq-lite relays do, starts
/// there), the current one from draft-20. Returns the request's ID and stream.
async fn request_track<S: Session>(
    session: &S,
    state: &State,
    path: &Path,
    track: &TrackProducer,
) -> Result<(u64, Channel<S>)> {
    let filter = match state.version >= Version::Draft20 {
        true => Filter::Relative(1),
        false => Filter::Relative(0),
    };
    let namespace = Namespace::from_path(path);
    let name = track.name().to_string();
    state
        .request(session, false, None, |id| {
            Message::Subscribe(Subscribe {
                request_id: id,
                required_request_id_delta: 0,
                namespace,
                name,
                priority: Some(128),
                group_order: Some(GroupOrder::Descending),
                forward: Some(true),
                filter: Some(filter),
                params: Parameters::new(),
            })
        })
        .await
}

/// The publisher's SUBSCRIBE_OK, with the request stream; `None` when the subscription
/// ended first (the track then closed: refused, or nobody reads it any more).
async fn await_subscribe_ok<S: Session>(
    version: Version,
    id: u64,
    mut channel: Channel<S>,
    mirrored: &BroadcastConsumer,
    track: &TrackProducer,
) -> Result<Option<(SubscribeOk, Channel<S>)>> {
    let response = tokio::select! {
        msg = channel.recv() => msg,
        // Taken out of the broadcast first: a viewer arriving now gets a new subscription.
        _ = mirrored.retired(track) => {
            cancel(version, id, channel).await;
            track.close(Err(Error::Cancelled));
            return Ok(None);
        }
    };
    match response {
        Ok(Some(Message::SubscribeOk(ok))) => Ok(Some((ok, channel))),
        Ok(Some(Message::SubscribeError(err) | Message::RequestError(err))) => {
            let error = refused(err.code, version);
            tracing::debug!(code = err.code, reason = %err.reason, "publisher refused SUBSCRIBE");
            track.close(Err(error));
            Ok(None)
        }
        Ok(Some(other)) => {
            track.close(Err(Error::NotFound));
            Err(Error::Protocol(format!(
                "{:?} answered SUBSCRIBE",
                other.message_type()
            )))
        }
        Ok(None) => {
            track.close(Err(Error::NotFound));
            Ok(None)
        }
        Err(err) => {
            track.close(Err(Error::NotFound));
            Err(err)
        }
    }
}

/// Take the track's properties from SUBSCRIBE_OK when it has none yet (the publisher's
/// priority, its timescale). Returns the timescale the publisher declared, if any.
fn adopt_properties(track: &TrackProducer, ok: &SubscribeOk) -> Option<u64> {
    let timescale = ok
        .properties
        .get_varint(properties::PROPERTY_TIMESCALE)
        .filter(|t| *t > 0);
    let priority = ok
        .properties
        .get_varint(properties::PROPERTY_DEFAULT_PUBLISHER_PRIORITY)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(128);
    if track.info().is_none() {
        track.set_info(TrackInfo {
            priority: !priority,
            max_latency: TrackInfo::default().max_latency,
            timescale: timescale.unwrap_or(1_000_000),
        });
    }
    timescale
}

/// Follow a running subscription until the publisher ends it (`true`: the track ended
/// cleanly) or nobody reads the track any more (`false`).
async fn follow<S: Session>(
    channel: &mut Channel<S>,
    upstream: &Upstream,
    mirrored: &BroadcastConsumer,
) -> Result<bool> {
    loop {
        tokio::select! {
            msg = channel.recv() => match msg? {
                Some(Message::PublishDone(done)) => {
                    // The streams it counts may still be arriving or in flight.
                    let mut finished = upstream.done.subscribe();
                    let _ = tokio::time::timeout(SETTLE, finished.wait_for(|n| *n >= done.stream_count)).await;
                    return match done.status {
                        0x2 => Ok(true),
                        0x1 => Err(Error::Unauthorized("the publisher ended the subscription".into())),
                        _ => Err(Error::Transport(format!("the publisher ended the subscription: {}", done.reason))),
                    };
                }
                Some(other) => tracing::debug!(kind = ?other.message_type(), "ignored on a subscription"),
                // A request stream ending without PUBLISH_DONE: the publisher failed it.
                None => return Err(Error::Cancelled),
            },
            _ = mirrored.retired(&upstream.track) => return Ok(false),
        }
    }
}

/// Tell the publisher we are done with a subscription: UNSUBSCRIBE (draft-14 … -16) or
/// the end of its request stream.
async fn cancel<S: Session>(version: Version, id: u64, mut channel: Channel<S>) {
    if version.has_control_stream_requests() && matches!(channel, Channel::Control(_)) {
        if let Err(err) = channel.send(Message::Unsubscribe(RequestId(id))).await {
            tracing::debug!(%err, "UNSUBSCRIBE not sent");
        }
        return;
    }
    channel.reset(Error::Cancelled.stream_code());
}

/// Serve one unidirectional stream the peer opened.
pub(crate) async fn receive_uni<R: RecvStream>(state: Arc<State>, mut reader: Reader<R>) -> Result<()> {
    match reader.decode::<UniStream>().await? {
        UniStream::Subgroup(header) => ingest(&state, reader, header).await,
        // We never FETCH, so a fetch stream answers nothing of ours.
        UniStream::Fetch(_) => {
            reader.stop(Error::Cancelled.stream_code());
            Ok(())
        }
        UniStream::Setup(_) => Err(Error::Protocol("a second SETUP stream".into())),
        UniStream::Padding => reader.drain().await,
    }
}

/// Ingest one subgroup stream into its subscription's track.
async fn ingest<R: RecvStream>(state: &State, mut reader: Reader<R>, header: SubgroupHeader) -> Result<()> {
    tracing::trace!(alias = header.track_alias, group = header.group, "group in");
    let Some(upstream) = state.aliases.wait(header.track_alias).await else {
        tracing::debug!(
            alias = header.track_alias,
            "data for no subscription of ours; stopped"
        );
        reader.stop(Error::Cancelled.stream_code());
        return Ok(());
    };
    let result = ingest_group(state, &mut reader, &header, &upstream).await;
    upstream.done.send_modify(|n| *n = n.saturating_add(1));
    result
}

async fn ingest_group<R: RecvStream>(
    state: &State,
    reader: &mut Reader<R>,
    header: &SubgroupHeader,
    upstream: &Upstream,
) -> Result<()> {
    let Some((_slot, mut group)) = open_group(state, reader, header, upstream) else {
        return Ok(());
    };
    let stats = &state.config.stats;
    Stats::add(&stats.groups_received, 1);
    let version = state.version;
    let mut next_id: Option<u64> = None;
    loop {
        let object = match next_object(reader, &group, header.properties).await {
            Ok(Some(object)) => object,
            Ok(None) => break,
            Err(err) => {
                let fatal = matches!(err, Error::Decode(_) | Error::Protocol(_));
                end_group(reader, group, err.clone());
                return if fatal { Err(err) } else { Ok(()) };
            }
        };
        let id = match next_id {
            None => object.id_delta,
            Some(next) => next.saturating_add(object.id_delta),
        };
        if next_id.is_none() && id != 0 {
            // A stream starting mid-group: our groups start at their first frame.
            tracing::debug!(
                group = header.group,
                first = id,
                "subgroup stream without its head; stopped"
            );
            reader.stop(Error::Cancelled.stream_code());
            group.abort(Error::Cancelled);
            return Ok(());
        }
        next_id = Some(id.saturating_add(1));
        if object.size == 0 && object.status != status::NORMAL {
            match object.status {
                // Nothing follows in the group (or the track); the FIN is next.
                status::END_OF_GROUP | status::END_OF_TRACK => break,
                _ => continue,
            }
        }
        let size = usize::try_from(object.size).map_err(|_| Error::Limit("object size"))?;
        if let Err(err) = state
            .usage
            .group_within_caps(&state.config.quota, &group, object.size)
        {
            reader.stop(err.stream_code());
            group.abort(err);
            return Ok(());
        }
        group.reserve(object.size);
        let payload = tokio::select! {
            payload = reader.read_exact(size) => payload,
            ended = group.closed() => Err(ended.err().unwrap_or(Error::Cancelled)),
        };
        let payload = match payload {
            Ok(payload) => payload,
            Err(err) => {
                end_group(reader, group, err);
                return Ok(());
            }
        };
        let timestamp = match (upstream.timescale, &object.properties) {
            (Some(_), Some(block)) => object_timestamp(block, version).unwrap_or_else(now_micros),
            _ => now_micros(),
        };
        Stats::add(&stats.frames_received, 1);
        Stats::add(&stats.bytes_received, object.size);
        group.write(Frame { timestamp, payload });
    }
    group.finish();
    Ok(())
}

/// The group a subgroup stream carries, once the session has room for it; `None` (the
/// stream stopped) for a stream we do not take: not subgroup 0 from its first object
/// (one ordered list of frames per group), over the session's limit, or refused by the
/// track.
fn open_group<R: RecvStream>(
    state: &State,
    reader: &mut Reader<R>,
    header: &SubgroupHeader,
    upstream: &Upstream,
) -> Option<(Slot, GroupProducer)> {
    // One ordered list of frames per group: subgroup 0 only, from its first object.
    let subgroup_zero = match header.subgroup {
        SubgroupId::Zero | SubgroupId::FirstObject => true,
        SubgroupId::Explicit(id) => id == 0,
    };
    if !subgroup_zero || !header.first_object {
        tracing::debug!(group = header.group, subgroup = ?header.subgroup, "not subgroup 0 from its start; stopped");
        reader.stop(Error::Cancelled.stream_code());
        return None;
    }
    let slot = match state.admit(Limit::Groups) {
        Ok(slot) => slot,
        Err(err) => {
            reader.stop(err.stream_code());
            return None;
        }
    };
    match upstream.track.create_group(header.group) {
        Ok(group) => Some((slot, group)),
        Err(err) => {
            reader.stop(err.stream_code());
            None
        }
    }
}

/// The stream's next object header, or the group's end when our side closed it first.
async fn next_object<R: RecvStream>(
    reader: &mut Reader<R>,
    group: &GroupProducer,
    properties: bool,
) -> Result<Option<SubgroupObject>> {
    tokio::select! {
        object = reader.object(properties) => object,
        ended = group.closed() => Err(ended.err().unwrap_or(Error::Cancelled)),
    }
}

/// The TIMESTAMP in an object's properties block, if it has one (a malformed block is
/// treated as none: the frame is stamped on arrival).
fn object_timestamp(block: &Bytes, version: Version) -> Option<u64> {
    let props = properties::object_properties(block, version).ok()?;
    match props.get(properties::PROPERTY_TIMESTAMP)? {
        KvValue::Varint(timestamp) => Some(*timestamp),
        KvValue::Bytes(_) => None,
    }
}

/// End an incoming group early with `err`; when our cache ended it first, tell the peer
/// to stop sending.
fn end_group<R: RecvStream>(reader: &mut Reader<R>, group: GroupProducer, err: Error) {
    if group.is_closed() {
        reader.stop(err.stream_code());
    }
    group.abort(err);
}

/// An OBJECT_DATAGRAM: a single-frame group, when it is object 0 of a subscription of
/// ours. Anything else is dropped, like a lost datagram.
pub(crate) fn datagram(state: &State, datagram: Bytes) {
    let mut buf = datagram;
    let datagram = match ObjectDatagram::decode(&mut buf, state.version) {
        Ok(datagram) => datagram,
        Err(err) => {
            tracing::debug!(%err, "malformed datagram dropped");
            return;
        }
    };
    let Some(upstream) = state.aliases.get(datagram.track_alias) else {
        return;
    };
    if datagram.object.unwrap_or(0) != 0 {
        return;
    }
    let DatagramBody::Payload(payload) = datagram.body else {
        return;
    };
    let timestamp = match (upstream.timescale, &datagram.properties) {
        (Some(_), Some(block)) => object_timestamp(block, state.version).unwrap_or_else(now_micros),
        _ => now_micros(),
    };
    // A datagram may repeat a group that already arrived on a stream.
    if let Ok(mut group) = upstream.track.create_group(datagram.group) {
        let stats = &state.config.stats;
        Stats::add(&stats.groups_received, 1);
        Stats::add(&stats.frames_received, 1);
        Stats::add(&stats.bytes_received, payload.len() as u64);
        group.write(Frame { timestamp, payload });
        group.finish();
    }
}
