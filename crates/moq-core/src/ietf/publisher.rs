//! The publishing half: serves the peer's SUBSCRIBE_NAMESPACE, SUBSCRIBE and FETCH from
//! the `publish` origin, and (as a client) announces what that origin holds.

use std::{collections::HashMap, sync::Arc, time::Duration};
use tracing::Instrument;

use bytes::Bytes;
use moq_proto::{
    Path,
    ietf::{
        FetchHeader, FetchKind, FetchObject, FetchSubgroup, Filter, GroupOrder, KeyValuePairs, KvValue,
        Location, Message, Namespace, NamespaceActive, NamespaceDone, Parameters, PublishDone,
        PublishNamespace, PublishNamespaceDone, RequestId, RequestOk, RequestTarget, SubgroupHeader,
        SubgroupId, SubgroupObject, Subscribe, SubscribeNamespace, SubscribeOk, Version, coding::put_varint,
        message::codes, params, properties,
    },
};
use tokio::{
    sync::oneshot,
    task::{AbortHandle, JoinSet},
};

use super::{Kind, NsRoute, Slot, State, error_code, refuse, stream::Writer};
use crate::transport::{COALESCE_BYTES, COALESCE_FRAMES};
use crate::{
    BroadcastConsumer, Error, GroupConsumer, OriginEvent, Result, TrackConsumer, TrackInfo,
    ietf::control::Channel,
    stats::{ActiveSubscription, Batch, Limit, Stats},
    transport::Session,
};

/// A group in flight this long, with newer ones queued behind it, is given up.
const STUCK: Duration = Duration::from_millis(500);

/// How long SUBSCRIBE waits for the track's properties (from its publisher) before
/// answering without them.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long FETCH waits for a group of its range when none is cached yet.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// PUBLISH_DONE status codes (the same in every draft).
mod status {
    /// INTERNAL_ERROR.
    pub(super) const INTERNAL_ERROR: u64 = 0x0;
    /// UNAUTHORIZED.
    pub(super) const UNAUTHORIZED: u64 = 0x1;
    /// TRACK_ENDED: the clean end.
    pub(super) const TRACK_ENDED: u64 = 0x2;
}

/// Where a subscription or fetch stops: the last group, and the last object in it.
#[derive(Debug, Clone, Copy)]
struct End {
    group: u64,
    /// Inclusive; `None` for the whole group.
    object: Option<u64>,
}

impl End {
    fn past(&self, group: u64) -> bool {
        group > self.group
    }

    /// The exclusive object bound within `group`, if this end cuts it.
    fn objects(&self, group: u64) -> Option<u64> {
        match group == self.group {
            true => self.object.map(|o| o.saturating_add(1)),
            false => None,
        }
    }
}

/// The largest location the track holds now: the last frame of its latest group (or of
/// the one before while the latest is still empty).
fn largest(track: &TrackConsumer) -> Option<Location> {
    let latest = track.latest()?;
    for group in [Some(latest), latest.checked_sub(1)].into_iter().flatten() {
        if let Some(frames) = track.get_group(group).map(|g| g.frames() as u64)
            && let Some(last) = frames.checked_sub(1)
        {
            return Some(Location { group, object: last });
        }
    }
    None
}

/// The wire publisher priority (lower first) of a track's priority (higher first).
pub(crate) fn wire_priority(info: Option<&TrackInfo>) -> u8 {
    info.map_or(128, |i| !i.priority)
}

/// Send order on our side: the subscriber's priority (wire: lower first) first, then
/// newer groups first.
// `255 - wire - 128` is -128..=127; shifted left by 23 it stays within an i32.
#[allow(clippy::arithmetic_side_effects)]
fn send_order(wire: u8, sequence: u64) -> i32 {
    ((i32::from(u8::MAX - wire) - 128) << 23) | (sequence & 0x7f_ffff) as i32
}

/// The broadcast at a namespace the peer named, after checking it may see it.
fn broadcast(state: &State, namespace: &Namespace) -> Result<BroadcastConsumer> {
    let relative = namespace
        .to_path()
        .ok_or_else(|| Error::Protocol(format!("namespace {namespace} is not a path")))?;
    if !state.config.permissions.can_subscribe(&relative) {
        return Err(Error::Unauthorized(format!("may not subscribe to '{relative}'")));
    }
    let origin = state.config.publish.as_ref().ok_or(Error::NotFound)?;
    origin.consume(&state.absolute(&relative)?).ok_or(Error::NotFound)
}

/// The code and reason to refuse a request with, for errors that are not fatal to the
/// session.
fn refusal(err: &Error, kind: Kind, version: Version) -> (u64, String) {
    let reason = match err {
        // The namespace cannot name a broadcast here (an empty field, a '/').
        Error::Protocol(reason) => return (codes::INTERNAL_ERROR, reason.clone()),
        err => err.to_string(),
    };
    (error_code(err, kind, version), reason)
}

/// Serve one SUBSCRIBE: SUBSCRIBE_OK, a subgroup stream per group, PUBLISH_DONE at the
/// track's end. The subscriber ends it with UNSUBSCRIBE (draft-14 … -16) or by ending
/// its request stream.
pub(crate) async fn subscribe<S: Session>(
    session: S,
    state: Arc<State>,
    msg: Subscribe,
    channel: Channel<S>,
) -> Result<()> {
    let version = state.version;
    let id = msg.request_id;
    let kind = Kind::Subscribe;
    let (_slot, mut track, info) = match open_track(&state, &msg).await {
        Ok(opened) => opened,
        Err((code, reason)) => return refuse(version, channel, kind, id, code, &reason).await,
    };
    let _active = ActiveSubscription::new(&state.config.stats);

    // Where to start. By default the latest group, from its first object.
    let largest = largest(&track);
    let (start_object, end) = match start_at(&mut track, msg.filter, version) {
        Ok(start) => start,
        Err(reason) => return refuse(version, channel, kind, id, codes::INTERNAL_ERROR, reason).await,
    };
    let stamps = match (version.has_unified_setup(), info) {
        (true, Some(info)) => Some(info.timescale),
        _ => None,
    };
    let mut channel = channel;
    channel
        .send(Message::SubscribeOk(SubscribeOk {
            request_id: id,
            track_alias: id,
            expires: None,
            group_order: Some(GroupOrder::Descending),
            largest,
            params: Parameters::new(),
            properties: track_properties(version, stamps, info.as_ref())?,
        }))
        .await?;
    tracing::debug!(id, namespace = %msg.namespace, track = %msg.name, "subscribed");

    // A draft-20+ fill (the current group's head on a fetch stream) is never needed: the
    // subscription replays the whole group. Say so the way the draft signals a failed
    // fill: its FETCH_HEADER, then a reset.
    if msg.params.contains(params::FILL_PARAMETERS) {
        let mut writer = Writer::new(session.open_uni().await?, version);
        writer.encode(&FetchHeader { request_id: id }).await?;
        writer.reset(Error::Cancelled.stream_code());
    }

    let mut delivery = Delivery {
        session: &session,
        state: &state,
        alias: id,
        priority: msg.priority.unwrap_or(128),
        publisher: wire_priority(info.as_ref()),
        stamps,
        groups: JoinSet::new(),
        in_flight: InFlight::new(state.config.quota.max_groups_in_flight),
        opened: 0,
        start_object,
        end,
    };
    let ended = match delivery.run(&mut track, &mut channel).await? {
        Stopped::Track(ended) => ended,
        Stopped::Left => {
            delivery.groups.shutdown().await;
            return channel.finish().await;
        }
        Stopped::Broken(code) => {
            delivery.groups.shutdown().await;
            channel.reset(code);
            return Ok(());
        }
    };
    // Let the groups in flight complete before saying the subscription is over.
    while delivery.groups.join_next().await.is_some() {}
    publish_done(channel, id, &ended, delivery.opened).await
}

/// Say a subscription is over: PUBLISH_DONE with how it `ended` and the streams it
/// `opened`, then the end of its request stream.
async fn publish_done<S: Session>(
    mut channel: Channel<S>,
    id: u64,
    ended: &Result<()>,
    opened: u64,
) -> Result<()> {
    let (status, reason) = match ended {
        Ok(()) => (status::TRACK_ENDED, "track ended".to_string()),
        Err(Error::Unauthorized(_)) => (status::UNAUTHORIZED, "unauthorized".to_string()),
        Err(err) => (status::INTERNAL_ERROR, err.to_string()),
    };
    channel
        .send(Message::PublishDone(PublishDone {
            request_id: id,
            status,
            stream_count: opened,
            reason,
        }))
        .await?;
    channel.finish().await
}

/// The track a SUBSCRIBE names, with its properties (`None` when its publisher did not
/// give them within [`INFO_TIMEOUT`]), once the session has room for the subscription;
/// or the code and reason to refuse it with.
async fn open_track(
    state: &State,
    msg: &Subscribe,
) -> std::result::Result<(Slot, TrackConsumer, Option<TrackInfo>), (u64, String)> {
    let version = state.version;
    let kind = Kind::Subscribe;
    let slot = state
        .admit(Limit::Subscriptions)
        .map_err(|err| (codes::INTERNAL_ERROR, err.to_string()))?;
    if msg.forward == Some(false) {
        return Err((codes::NOT_SUPPORTED, "FORWARD=0 is not supported".to_string()));
    }
    let mut track = broadcast(state, &msg.namespace)
        .and_then(|b| b.subscribe(&msg.name))
        .map_err(|err| refusal(&err, kind, version))?;
    // The track's properties come from its publisher; a relay's fresh upstream
    // subscription answers them (or refuses the track) first.
    let info = match tokio::time::timeout(INFO_TIMEOUT, track.info()).await {
        Ok(Ok(info)) => Some(info),
        Ok(Err(err)) => return Err(refusal(&err, kind, version)),
        Err(_) => None,
    };
    Ok((slot, track, info))
}

/// Point `track` at the first group the SUBSCRIBE's filter asks for. Returns the first
/// object of that group and where the subscription ends, or why the filter is refused.
fn start_at(
    track: &mut TrackConsumer,
    filter: Option<Filter>,
    version: Version,
) -> std::result::Result<(u64, Option<End>), &'static str> {
    let mut start_object = 0;
    let mut end = None;
    match filter {
        // Before draft-20 NextGroupStart is served like LargestObject, as the reference
        // relay does: peers use it to ask for whole groups, and the current one is whole.
        Some(Filter::Relative(0)) if !version.has_filtered_fetch() => {}
        Some(Filter::Relative(groups)) => {
            if let Some(latest) = track.latest() {
                track.start_at(latest.saturating_add(1).saturating_sub(groups));
            }
        }
        Some(Filter::Unfiltered) => track.start_at(0),
        Some(Filter::Absolute { start, end: until }) => {
            track.start_at(start.group);
            start_object = start.object;
            end = until.map(|e| End {
                group: e.group,
                object: e.object,
            });
            if end.is_some_and(|e| e.group < start.group) {
                return Err("the filter ends before it starts");
            }
        }
        Some(Filter::NextObject) | None => {}
    }
    Ok((start_object, end))
}

/// SUBSCRIBE_OK's track properties (draft-17+): the timescale objects are stamped in,
/// the publisher priority when the track's properties are known, and the group order.
fn track_properties(
    version: Version,
    stamps: Option<u64>,
    info: Option<&TrackInfo>,
) -> Result<KeyValuePairs> {
    let mut props = KeyValuePairs::new();
    if version >= Version::Draft17 {
        if let Some(timescale) = stamps {
            props
                .push(properties::PROPERTY_TIMESCALE, KvValue::Varint(timescale))
                .map_err(|e| Error::Protocol(e.to_string()))?;
        }
        if let Some(info) = info {
            props
                .push(
                    properties::PROPERTY_DEFAULT_PUBLISHER_PRIORITY,
                    KvValue::Varint(u64::from(wire_priority(Some(info)))),
                )
                .map_err(|e| Error::Protocol(e.to_string()))?;
        }
        props
            .push(
                properties::PROPERTY_DEFAULT_GROUP_ORDER,
                KvValue::Varint(u64::from(GroupOrder::Descending.code())),
            )
            .map_err(|e| Error::Protocol(e.to_string()))?;
    }
    Ok(props)
}

/// How a subscription's delivery stopped.
enum Stopped {
    /// The track ended, failed or passed the subscription's end: PUBLISH_DONE follows.
    Track(Result<()>),
    /// The subscriber left: UNSUBSCRIBE, or the end of its request stream.
    Left,
    /// The request stream failed; it is reset with this code.
    Broken(u32),
}

/// The groups of one subscription on their way, one subgroup stream each.
struct Delivery<'a, S: Session> {
    session: &'a S,
    state: &'a State,
    alias: u64,
    /// The subscriber's priority (wire: lower first).
    priority: u8,
    /// Our publisher priority (wire).
    publisher: u8,
    /// The timescale objects are stamped in (draft-17+ with known track info).
    stamps: Option<u64>,
    groups: JoinSet<Result<()>>,
    in_flight: InFlight,
    /// Streams opened, for PUBLISH_DONE's Stream Count.
    opened: u64,
    /// Objects before this one of the first group are skipped (absolute start).
    start_object: u64,
    end: Option<End>,
}

impl<S: Session> Delivery<'_, S> {
    /// Send the track's groups and answer the subscriber's updates until the track or
    /// the subscriber stops.
    async fn run(&mut self, track: &mut TrackConsumer, channel: &mut Channel<S>) -> Result<Stopped> {
        let version = self.state.version;
        loop {
            tokio::select! {
                group = track.next_group() => {
                    let group = match group {
                        Ok(Some(group)) => group,
                        Ok(None) => return Ok(Stopped::Track(Ok(()))),
                        Err(err) => return Ok(Stopped::Track(Err(err))),
                    };
                    if self.end.is_some_and(|e| e.past(group.sequence())) {
                        return Ok(Stopped::Track(Ok(())));
                    }
                    self.send(group).await?;
                }
                msg = channel.recv() => match msg {
                    Ok(Some(Message::RequestUpdate(update))) => {
                        if let Some(priority) = update.priority {
                            self.priority = priority;
                        }
                        // Draft-14's SUBSCRIBE_UPDATE has no answer.
                        if version.has_request_ok() {
                            channel.send(Message::RequestOk(RequestOk {
                                request_id: update.request_id,
                                ..Default::default()
                            })).await?;
                        }
                    }
                    // The subscriber is done: UNSUBSCRIBE, or the end of its request stream
                    // (we take a FIN as the end on every draft: draft-19+ call it only the end
                    // of updates, but peers send it only when they leave).
                    Ok(Some(Message::Unsubscribe(_)) | None) => return Ok(Stopped::Left),
                    Ok(Some(other)) => {
                        return Err(Error::Protocol(format!("{:?} on a subscription", other.message_type())));
                    }
                    Err(err) => return Ok(Stopped::Broken(err.stream_code())),
                },
                Some(_) = self.groups.join_next() => {}
            }
        }
    }

    async fn send(&mut self, group: GroupConsumer) -> Result<()> {
        let now = tokio::time::Instant::now();
        self.in_flight.make_room(now);
        self.opened = self.opened.saturating_add(1);
        let sequence = group.sequence();
        let handle = self.groups.spawn(serve_group(
            self.session.clone(),
            Serve {
                version: self.state.version,
                alias: self.alias,
                publisher: self.publisher,
                order: send_order(self.priority, sequence),
                stamps: self.stamps,
                start: std::mem::take(&mut self.start_object),
                until: self.end.and_then(|e| e.objects(sequence)),
                stats: self.state.config.stats.clone(),
            },
            group,
        ));
        self.in_flight.push(handle, now);
        Ok(())
    }
}

/// How one group goes out.
struct Serve {
    version: Version,
    alias: u64,
    publisher: u8,
    order: i32,
    stamps: Option<u64>,
    /// The first object sent.
    start: u64,
    /// The object bound (exclusive), if the subscription ends in this group.
    until: Option<u64>,
    stats: Arc<Stats>,
}

/// An object properties block holding one TIMESTAMP (the first type of a list is
/// written as is in every draft).
fn timestamp_block(timestamp: u64, version: Version) -> Result<Bytes> {
    let mut out = Vec::with_capacity(10);
    put_varint(&mut out, properties::PROPERTY_TIMESTAMP, version, "property type")
        .and_then(|()| put_varint(&mut out, timestamp, version, "timestamp"))
        .map_err(|e| Error::Protocol(e.to_string()))?;
    Ok(Bytes::from(out))
}

/// Deliver one group on its own subgroup stream.
async fn serve_group<S: Session>(session: S, serve: Serve, mut group: GroupConsumer) -> Result<()> {
    let version = serve.version;
    let sequence = group.sequence();
    tracing::trace!(alias = serve.alias, sequence, "group out");
    Stats::add(&serve.stats.groups_sent, 1);
    let mut writer = Writer::new(session.open_uni().await?, version);
    writer.set_priority(serve.order);
    writer.queue(&SubgroupHeader {
        track_alias: serve.alias,
        group: sequence,
        subgroup: SubgroupId::Zero,
        priority: Some(serve.publisher),
        properties: serve.stamps.is_some(),
        end_of_group: true,
        first_object: serve.start == 0,
    })?;
    // The header at once: a reset before it would leave the peer guessing.
    writer.flush().await?;
    let result: Result<()> = async {
        let mut sent = Batch::new(&serve.stats);
        let mut index = 0u64;
        let mut previous: Option<u64> = None;
        let mut ready = Vec::new();
        let mut payloads = Vec::new();
        while let Some(frame) = group.next_frame().await? {
            // Objects already here behind this one go out with it in one write.
            ready.push(frame);
            group.ready_frames(COALESCE_FRAMES, COALESCE_BYTES, &mut ready);
            for frame in ready.drain(..) {
                if serve.until.is_some_and(|until| index >= until) {
                    break;
                }
                if index >= serve.start {
                    let id_delta = match previous {
                        None => index,
                        Some(previous) => index.saturating_sub(previous).saturating_sub(1),
                    };
                    let properties = match serve.stamps {
                        Some(_) => Some(timestamp_block(frame.timestamp, version)?),
                        None => None,
                    };
                    let size = frame.payload.len() as u64;
                    let object = SubgroupObject {
                        id_delta,
                        properties,
                        size,
                        status: 0,
                    };
                    writer.raw(|buf| object.encode(buf, version))?;
                    payloads.push((writer.queued(), frame.payload));
                    sent.sent(size);
                    previous = Some(index);
                }
                index = index.saturating_add(1);
            }
            writer.payloads(&mut payloads).await?;
            if serve.until.is_some_and(|until| index >= until) {
                break;
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => writer.finish().await,
        Err(err) => {
            writer.reset(err.stream_code());
            Err(err)
        }
    }
}

/// The group streams of one subscription still being written, oldest first.
struct InFlight {
    streams: std::collections::VecDeque<(AbortHandle, tokio::time::Instant)>,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            streams: Default::default(),
            limit: limit.max(1),
        }
    }

    /// A slow subscriber: drop the oldest groups in flight once there are too many and
    /// they have been stuck for a while, never buffer more.
    fn make_room(&mut self, now: tokio::time::Instant) {
        self.streams.retain(|(h, _)| !h.is_finished());
        while self.streams.len() >= self.limit {
            let stuck = self
                .streams
                .front()
                .is_some_and(|(_, since)| now.saturating_duration_since(*since) > STUCK);
            if !stuck && self.streams.len() < self.limit.saturating_mul(8) {
                break;
            }
            if let Some((oldest, _)) = self.streams.pop_front() {
                oldest.abort();
            }
        }
    }

    fn push(&mut self, handle: AbortHandle, now: tokio::time::Instant) {
        self.streams.push_back((handle, now));
    }
}

/// Serve one FETCH from the cache: a range of one track (standalone, or draft-20's
/// track with a LOCATION_FILTER). Joining fetches are refused: subscriptions here start
/// with their whole current group, so there is nothing before it to join.
pub(crate) async fn fetch<S: Session>(
    session: S,
    state: Arc<State>,
    msg: moq_proto::ietf::Fetch,
    channel: Channel<S>,
) -> Result<()> {
    let version = state.version;
    let id = msg.request_id;
    let kind = Kind::Fetch;
    let (_slot, track, info, range) = match open_fetch(&state, msg.kind).await {
        Ok(opened) => opened,
        Err((code, reason)) => return refuse(version, channel, kind, id, code, &reason).await,
    };
    // Resolve the range against what the track holds now: never past its largest object.
    let Some(largest) = largest(&track) else {
        return refuse(
            version,
            channel,
            kind,
            id,
            invalid_range_code(version),
            "the track has no objects",
        )
        .await;
    };
    let (start, end) = match fetch_range(range, msg.filter, largest) {
        Ok(range) => range,
        Err(reason) => return refuse(version, channel, kind, id, invalid_range_code(version), reason).await,
    };
    let descending = msg.group_order == Some(GroupOrder::Descending);
    let plan = fetch_plan(&track, start, end, largest, descending);
    let Some(last) = plan
        .iter()
        .map(|(g, _, count)| Location {
            group: g.sequence(),
            object: count.saturating_sub(1),
        })
        .max_by_key(|l| (l.group, l.object))
    else {
        return refuse(
            version,
            channel,
            kind,
            id,
            invalid_range_code(version),
            "no cached objects in the range",
        )
        .await;
    };
    let mut channel = channel;
    channel
        .send(Message::FetchOk(moq_proto::ietf::FetchOk {
            request_id: id,
            group_order: Some(match descending {
                true => GroupOrder::Descending,
                false => GroupOrder::Ascending,
            }),
            end_of_track: false,
            end: last,
            params: Parameters::new(),
            properties: KeyValuePairs::new(),
        }))
        .await?;

    let publisher = wire_priority(info.as_ref());
    let written = write_fetch(&session, version, id, publisher, &state.config.stats, plan);
    tokio::select! {
        result = written => result?,
        // FETCH_CANCEL (draft-14 … -16) or the end of the request stream.
        () = fetch_cancelled(&mut channel) => return Ok(()),
    }
    channel.finish().await
}

/// The track a FETCH names, with its properties if its publisher gives them within
/// [`INFO_TIMEOUT`], and the standalone range it asks for (End Object 0: the whole end
/// group; otherwise the last object plus one), once the session has room for it; or the
/// code and reason to refuse it with. Waits up to [`FETCH_WAIT`] for a track nobody was
/// reading to produce its first group.
async fn open_fetch(
    state: &State,
    kind: FetchKind,
) -> std::result::Result<(Slot, TrackConsumer, Option<TrackInfo>, Option<(Location, End)>), (u64, String)> {
    let version = state.version;
    let slot = state
        .admit(Limit::Fetches)
        .map_err(|err| (codes::INTERNAL_ERROR, err.to_string()))?;
    let (namespace, name, range) = match kind {
        FetchKind::Standalone {
            namespace,
            name,
            start,
            end,
        } => {
            // End Object 0 is the whole end group; otherwise the last object plus one.
            let end = End {
                group: end.group,
                object: end.object.checked_sub(1),
            };
            (namespace, name, Some((start, end)))
        }
        FetchKind::Track { namespace, name } => (namespace, name, None),
        FetchKind::RelativeJoining { .. } | FetchKind::AbsoluteJoining { .. } => {
            return Err((
                codes::NOT_SUPPORTED,
                "joining FETCH is not supported: a subscription starts with its whole current group"
                    .to_string(),
            ));
        }
    };
    let mut track = broadcast(state, &namespace)
        .and_then(|b| b.subscribe(&name))
        .map_err(|err| refusal(&err, Kind::Fetch, version))?;
    let info = tokio::time::timeout(INFO_TIMEOUT, track.info())
        .await
        .ok()
        .and_then(Result::ok);
    // Wait (a little) for a track nobody was reading to produce its first group.
    if track.latest().is_none() {
        let _ = tokio::time::timeout(FETCH_WAIT, async {
            while track.latest().is_none() {
                if track.next_group().await.ok().flatten().is_none() {
                    break;
                }
            }
        })
        .await;
    }
    Ok((slot, track, info, range))
}

/// Where a FETCH starts and ends: its standalone `range`, else its `filter` resolved
/// against the track's `largest` object; or why there is nothing to fetch.
fn fetch_range(
    range: Option<(Location, End)>,
    filter: Option<Filter>,
    largest: Location,
) -> std::result::Result<(Location, End), &'static str> {
    let to_largest = End {
        group: largest.group,
        object: Some(largest.object),
    };
    match (range, filter) {
        (Some(range), _) => Ok(range),
        (None, None | Some(Filter::Unfiltered)) => Ok((Location { group: 0, object: 0 }, to_largest)),
        (None, Some(Filter::Relative(groups))) => Ok((
            Location {
                group: largest.group.saturating_add(1).saturating_sub(groups),
                object: 0,
            },
            to_largest,
        )),
        (None, Some(Filter::Absolute { start, end })) => Ok((
            start,
            end.map_or(to_largest, |e| End {
                group: e.group,
                object: e.object,
            }),
        )),
        (None, Some(Filter::NextObject)) => Err("nothing after the largest object yet"),
    }
}

/// What each cached group of the range contributes, in the order it is sent: the group,
/// its first object and its object bound (exclusive), cut to the range and to `largest`.
fn fetch_plan(
    track: &TrackConsumer,
    start: Location,
    end: End,
    largest: Location,
    descending: bool,
) -> Vec<(GroupConsumer, u64, u64)> {
    let mut groups: Vec<GroupConsumer> = track
        .cached()
        .into_iter()
        .filter(|g| g.sequence() >= start.group && g.sequence() <= end.group.min(largest.group))
        .collect();
    groups.sort_by_key(GroupConsumer::sequence);
    if descending {
        groups.reverse();
    }
    // What each group contributes: its frames now, cut to the range.
    let mut plan = Vec::new();
    for group in groups {
        let sequence = group.sequence();
        let mut count = group.frames() as u64;
        if let Some(until) = end.objects(sequence) {
            count = count.min(until);
        }
        if sequence == largest.group {
            count = count.min(largest.object.saturating_add(1));
        }
        let first = if sequence == start.group { start.object } else { 0 };
        if first < count {
            plan.push((group, first, count));
        }
    }
    plan
}

/// Write the fetch stream: FETCH_HEADER, then the objects of `plan` in order, each
/// frame's payload as it comes.
async fn write_fetch<S: Session>(
    session: &S,
    version: Version,
    id: u64,
    publisher: u8,
    stats: &Arc<Stats>,
    plan: Vec<(GroupConsumer, u64, u64)>,
) -> Result<()> {
    let mut writer = Writer::new(session.open_uni().await?, version);
    writer.queue(&FetchHeader { request_id: id })?;
    let mut sent = Batch::new(stats);
    let mut previous_group: Option<u64> = None;
    for (mut group, first, count) in plan {
        let sequence = group.sequence();
        group.skip_to(usize::try_from(first).unwrap_or(usize::MAX));
        for object in first..count {
            let Some(frame) = group.next_frame().await? else {
                break;
            };
            let size = frame.payload.len() as u64;
            let at = FetchAt {
                sequence,
                object,
                first: object == first,
                previous_group,
            };
            writer.queue(&fetch_object(version, at, publisher, size))?;
            writer.payload(frame.payload).await?;
            sent.sent(size);
        }
        previous_group = Some(sequence);
    }
    writer.finish().await
}

/// Where an object of a fetch stream is.
struct FetchAt {
    /// Its group.
    sequence: u64,
    /// Its object ID.
    object: u64,
    /// Whether it is the first object sent of its group.
    first: bool,
    /// The group sent before it, if any.
    previous_group: Option<u64>,
}

/// The header of one object of a fetch stream, `size` payload bytes.
fn fetch_object(version: Version, at: FetchAt, publisher: u8, size: u64) -> FetchObject {
    match (version.has_serialization_flags(), at.first) {
        // Draft-14 writes every field of every object.
        (false, _) => FetchObject::Object {
            group: Some(at.sequence),
            subgroup: FetchSubgroup::Explicit(0),
            object: Some(at.object),
            priority: Some(publisher),
            properties: Some(Bytes::new()),
            size,
            status: 0,
        },
        // A group's first object names its group and object (a group delta
        // from draft-18); the rest follow on (the previous ID plus one).
        (true, true) => FetchObject::Object {
            group: Some(match (version.has_fetch_group_delta(), at.previous_group) {
                (true, Some(previous)) => previous.abs_diff(at.sequence).saturating_sub(1),
                _ => at.sequence,
            }),
            subgroup: FetchSubgroup::Zero,
            object: Some(at.object),
            priority: Some(publisher),
            properties: None,
            size,
            status: 0,
        },
        (true, false) => FetchObject::Object {
            group: None,
            subgroup: FetchSubgroup::Zero,
            object: None,
            priority: None,
            properties: None,
            size,
            status: 0,
        },
    }
}

/// Returns once the fetcher cancels: FETCH_CANCEL (draft-14 … -16) or the end (or
/// failure) of its request stream. Other messages are ignored.
async fn fetch_cancelled<S: Session>(channel: &mut Channel<S>) {
    loop {
        match channel.recv().await {
            Ok(Some(Message::FetchCancel(_)) | None) | Err(_) => return,
            Ok(Some(other)) => tracing::debug!(kind = ?other.message_type(), "ignored on a fetch"),
        }
    }
}

fn invalid_range_code(version: Version) -> u64 {
    super::invalid_range(version)
}

/// Serve one SUBSCRIBE_NAMESPACE: acknowledge, then tell the peer about every broadcast
/// under the prefix, now and as they come and go: NAMESPACE / NAMESPACE_DONE on the
/// request's stream (draft-16+), or our own PUBLISH_NAMESPACE requests (draft-14, -15).
pub(crate) async fn subscribe_namespace<S: Session>(
    session: S,
    state: Arc<State>,
    msg: SubscribeNamespace,
    mut channel: Channel<S>,
) -> Result<()> {
    let version = state.version;
    let id = msg.request_id;
    let kind = Kind::SubscribeNamespace;
    let _slot = match state.admit(Limit::AnnounceRequests) {
        Ok(slot) => slot,
        Err(err) => {
            return refuse(
                version,
                channel,
                kind,
                id,
                codes::INTERNAL_ERROR,
                &err.to_string(),
            )
            .await;
        }
    };
    let Some(prefix) = msg.prefix.to_path() else {
        return refuse(
            version,
            channel,
            kind,
            id,
            codes::INTERNAL_ERROR,
            "the namespace prefix is not a path (an empty field or a '/')",
        )
        .await;
    };
    if !state.config.permissions.can_discover(&prefix) {
        return refuse(
            version,
            channel,
            kind,
            id,
            codes::UNAUTHORIZED,
            &format!("may not discover '{prefix}'"),
        )
        .await;
    }
    let ok = match version.has_request_ok() {
        true => Message::RequestOk(RequestOk {
            request_id: id,
            ..Default::default()
        }),
        false => Message::SubscribeNamespaceOk(RequestId(id)),
    };
    channel.send(ok).await?;
    let Some(origin) = state.config.publish.clone() else {
        // Nothing to announce: hold the request until the peer drops it.
        while let Ok(Some(_)) = channel.recv().await {}
        return Ok(());
    };
    let mut announced = origin.announced(state.absolute(&prefix)?);
    let mut feed = Feed::new(&session, &state, prefix.clone());
    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { break };
                feed.apply(&mut channel, event).await?;
                while let Some(event) = announced.try_next() {
                    feed.apply(&mut channel, event).await?;
                }
            }
            msg = channel.recv() => match msg {
                Ok(Some(Message::UnsubscribeNamespace(_)) | None) | Err(_) => break,
                Ok(Some(other)) => tracing::debug!(kind = ?other.message_type(), "ignored on a namespace subscription"),
            },
            Some(_) = feed.tasks.join_next() => {}
        }
    }
    feed.tasks.shutdown().await;
    channel.finish().await
}

/// What one SUBSCRIBE_NAMESPACE (or a client's own announcing) has told the peer.
struct Feed<'a, S: Session> {
    session: &'a S,
    state: &'a Arc<State>,
    /// The prefix, relative to the session root.
    prefix: Path,
    /// Announced suffixes; draft-14/15 (and unsolicited announcing) hold a task per
    /// PUBLISH_NAMESPACE that ends it when its sender drops.
    active: HashMap<Path, Option<oneshot::Sender<()>>>,
    tasks: JoinSet<()>,
}

impl<'a, S: Session> Feed<'a, S> {
    fn new(session: &'a S, state: &'a Arc<State>, prefix: Path) -> Self {
        Self {
            session,
            state,
            prefix,
            active: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Whether the peer may see the broadcast at `suffix` reached over `hops`: allowed,
    /// and not one it announced to us itself.
    fn visible(&self, suffix: &Path, hops: &moq_proto::Hops) -> bool {
        let Ok(relative) = self.prefix.join(suffix.as_str()) else {
            return false;
        };
        self.state.config.permissions.can_subscribe(&relative) && !hops.contains(self.state.peer_hop)
    }

    /// Apply one origin event: NAMESPACE / NAMESPACE_DONE on `channel` (draft-16+
    /// namespace subscriptions), else a PUBLISH_NAMESPACE request of ours.
    async fn apply(&mut self, channel: &mut Channel<S>, event: OriginEvent) -> Result<()> {
        let solicited_messages = self.state.version.has_namespace_messages();
        self.apply_with(event, solicited_messages, Some(channel)).await
    }

    async fn apply_with(
        &mut self,
        event: OriginEvent,
        namespace_messages: bool,
        channel: Option<&mut Channel<S>>,
    ) -> Result<()> {
        let suffix = event.suffix.clone();
        let active = event.broadcast.is_some() && self.visible(&suffix, &event.hops);
        match (active, self.active.contains_key(&suffix)) {
            (true, false) => {
                let sender = match (namespace_messages, channel) {
                    (true, Some(channel)) => {
                        channel
                            .send(Message::Namespace(NamespaceActive {
                                suffix: Namespace::from_path(&suffix),
                                params: None,
                            }))
                            .await?;
                        None
                    }
                    _ => {
                        let namespace = Namespace::from_path(
                            &self
                                .prefix
                                .join(suffix.as_str())
                                .map_err(|e| Error::Protocol(e.to_string()))?,
                        );
                        let (tx, rx) = oneshot::channel();
                        let session = self.session.clone();
                        let state = self.state.clone();
                        self.tasks.spawn(
                            async move {
                                if let Err(err) = announce_one(session, state, namespace, rx).await {
                                    tracing::debug!(%err, "announcement ended");
                                }
                            }
                            .in_current_span(),
                        );
                        Some(tx)
                    }
                };
                self.active.insert(suffix, sender);
            }
            (false, true) => {
                // Dropping a task's sender ends its PUBLISH_NAMESPACE.
                if let Some(None) = self.active.remove(&suffix)
                    && let Some(channel) = channel
                {
                    channel
                        .send(Message::NamespaceDone(NamespaceDone {
                            suffix: Namespace::from_path(&suffix),
                        }))
                        .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Announce one broadcast with PUBLISH_NAMESPACE until `ended` fires (or its sender
/// drops), then withdraw it: PUBLISH_NAMESPACE_DONE (draft-14 … -16) or the end of the
/// request's stream (draft-17+). The peer may refuse or cancel it meanwhile.
async fn announce_one<S: Session>(
    session: S,
    state: Arc<State>,
    namespace: Namespace,
    mut ended: oneshot::Receiver<()>,
) -> Result<()> {
    let version = state.version;
    let route = (!version.has_namespace_done_by_request()).then(|| (NsRoute::OurPublish, namespace.clone()));
    let (id, mut channel) = state
        .request(&session, false, route, |id| {
            Message::PublishNamespace(PublishNamespace {
                request_id: id,
                required_request_id_delta: 0,
                namespace: namespace.clone(),
                params: Parameters::new(),
            })
        })
        .await?;
    loop {
        tokio::select! {
            _ = &mut ended => break,
            msg = channel.recv() => match msg {
                Ok(Some(Message::PublishNamespaceOk(_) | Message::RequestOk(_))) => {}
                Ok(Some(Message::PublishNamespaceError(err) | Message::RequestError(err))) => {
                    tracing::debug!(%namespace, code = err.code, reason = %err.reason, "peer refused our PUBLISH_NAMESPACE");
                    return Ok(());
                }
                Ok(Some(Message::PublishNamespaceCancel(cancel))) => {
                    tracing::debug!(%namespace, code = cancel.code, "peer cancelled our PUBLISH_NAMESPACE");
                    return Ok(());
                }
                Ok(Some(other)) => tracing::debug!(kind = ?other.message_type(), "ignored on our PUBLISH_NAMESPACE"),
                Ok(None) | Err(_) => return Ok(()),
            },
        }
    }
    if version.has_control_stream_requests() {
        let target = match version.has_namespace_done_by_request() {
            true => RequestTarget::Request(id),
            false => RequestTarget::Namespace(namespace),
        };
        channel
            .send(Message::PublishNamespaceDone(PublishNamespaceDone { target }))
            .await?;
    }
    channel.finish().await
}

/// A client's unsolicited announcements: PUBLISH_NAMESPACE for every broadcast of the
/// `publish` origin under the session root, withdrawn when it ends.
pub(crate) async fn announce<S: Session>(session: S, state: Arc<State>) -> Result<()> {
    let Some(origin) = state.config.publish.clone() else {
        return Ok(());
    };
    let mut announced = origin.announced(state.config.root.clone());
    let mut feed = Feed::new(&session, &state, Path::empty());
    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { break };
                feed.apply_with(event, false, None).await?;
            }
            Some(_) = feed.tasks.join_next() => {}
        }
    }
    feed.tasks.shutdown().await;
    Ok(())
}
