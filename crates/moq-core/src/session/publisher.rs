//! The publishing half: serves the peer's control streams (announce interest,
//! subscriptions, fetches, track info) from the `publish` origin.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use moq_proto::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, DecodeError, Fetch,
    FrameHeader, GroupHeader, Hops, Path, Subscribe, SubscribeOk, SubscribeResponse, SubscribeUpdate,
    TimestampCursor, TrackRequest, Version,
};
use tokio::task::{AbortHandle, JoinSet};

use super::{Reader, SessionState, Writer, permissions_changed, reject};
use crate::transport::{COALESCE_BYTES, COALESCE_FRAMES};
use crate::{
    Announced, BroadcastConsumer, Error, GroupConsumer, OriginEvent, Result,
    stats::{ActiveSubscription, Batch, Limit, Stats},
    transport::{RecvStream, SendStream, Session},
};

/// A group in flight this long, with newer ones queued behind it, is given up.
const STUCK: Duration = Duration::from_millis(500);

/// How long FETCH waits for a group that is not cached yet.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// How long to wait for a track's info before answering without it.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one bidirectional stream opened by the peer.
pub(crate) async fn serve_control_stream<S: Session>(
    session: S,
    shared: Arc<SessionState>,
    send: S::SendStream,
    mut reader: Reader<S::RecvStream>,
) -> Result<()> {
    let version = shared.config.version;
    let mut writer = Writer::new(send, version);
    let kind = match reader.decode::<ControlStream>().await {
        Ok(kind) => kind,
        // An unknown stream type resets that stream only (lite-03+).
        Err(Error::Decode(DecodeError::UnknownType { value, .. })) => {
            tracing::debug!(value, "unknown stream type; resetting it");
            reject(&mut writer, &mut reader, &Error::NotFound);
            return Ok(());
        }
        Err(err) => {
            reject(&mut writer, &mut reader, &err);
            return Err(err);
        }
    };
    let result = match kind {
        ControlStream::Announce => serve_announce(&shared, &mut writer, &mut reader).await,
        ControlStream::Subscribe => serve_subscribe(&session, &shared, &mut writer, &mut reader).await,
        ControlStream::Fetch => serve_fetch(&shared, &mut writer, &mut reader).await,
        ControlStream::Track => serve_track(&shared, &mut writer, &mut reader).await,
        ControlStream::Goaway => {
            let goaway = reader.decode::<moq_proto::Goaway>().await?;
            tracing::info!(uri = %goaway.uri, "peer is going away");
            // The caller moves (make before break); we keep serving until it does.
            shared.config.events.update(|e| {
                e.goaway.get_or_insert(goaway.uri);
            });
            Ok(())
        }
        // lite-01/02: the Session stream is the first one, read by the negotiation.
        ControlStream::Session => Err(Error::Protocol("a second session stream".into())),
        // We advertise no probe capability; the draft says to reset the stream.
        _ => Err(Error::NotFound),
    };
    match result {
        Ok(()) => Ok(()),
        Err(err @ (Error::Decode(_) | Error::Protocol(_))) => {
            reject(&mut writer, &mut reader, &err);
            Err(err)
        }
        // The peer ended the Announce stream it opened to learn our broadcasts with
        // UNAUTHORIZED: it will take none of them from this session.
        Err(Error::Reset(code))
            if kind == ControlStream::Announce
                && code == Error::Unauthorized(String::new()).stream_code() =>
        {
            tracing::warn!(code, "the peer refused our broadcasts: we may not publish there");
            shared.config.events.update(|e| {
                e.publish_refused.get_or_insert(Error::Reset(code));
            });
            Ok(())
        }
        Err(err) => {
            tracing::debug!(?kind, %err, "control stream ended");
            reject(&mut writer, &mut reader, &err);
            Ok(())
        }
    }
}

fn origin(shared: &SessionState) -> Result<&crate::Origin> {
    shared.config.publish.as_ref().ok_or(Error::NotFound)
}

/// Resolve a wire path (relative to the root) after checking permission.
fn resolve(shared: &SessionState, relative: &Path) -> Result<Path> {
    if !shared.can_subscribe(relative) {
        return Err(Error::Unauthorized(format!("may not subscribe to '{relative}'")));
    }
    shared
        .config
        .root
        .join(relative.as_str())
        .map_err(|e| Error::Protocol(e.to_string()))
}

fn broadcast(shared: &SessionState, relative: &Path) -> Result<BroadcastConsumer> {
    let path = resolve(shared, relative)?;
    origin(shared)?.consume(&path).ok_or(Error::NotFound)
}

async fn serve_announce<S: SendStream, R: RecvStream>(
    shared: &SessionState,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let request = reader.decode::<AnnounceRequest>().await?;
    let _slot = shared.admit(Limit::AnnounceRequests)?;
    shared.config.events.update(|e| e.announce_requested = true);
    let Some(origin) = shared.config.publish.as_ref() else {
        return announce_nothing(shared, writer, reader).await;
    };
    let full = shared
        .config
        .root
        .join(request.prefix.as_str())
        .map_err(|e| Error::Protocol(e.to_string()))?;
    if !shared.can_discover(&request.prefix) {
        return Err(Error::Unauthorized(format!(
            "may not discover '{}'",
            request.prefix
        )));
    }
    let mut announced = origin.announced(full);
    let mut feed = AnnounceFeed::new(shared, &request);
    let mut permissions = shared.permissions.clone();
    feed.send_initial(writer, &mut announced)?;
    writer.flush().await?;
    loop {
        tokio::select! {
            () = permissions_changed(&mut permissions) => {
                if !shared.can_discover(&request.prefix) {
                    return Err(Error::Unauthorized(format!("may no longer discover '{}'", request.prefix)));
                }
                feed.withdraw_forbidden(writer)?;
                writer.flush().await?;
            }
            event = announced.next() => {
                let Some(event) = event else { break };
                feed.announce(writer, event)?;
                // Send whatever else is pending in one write.
                while let Some(event) = announced.try_next() {
                    feed.announce(writer, event)?;
                }
                writer.flush().await?;
            }
            // The peer closing its side ends its interest.
            done = reader.closed() => {
                done?;
                break;
            }
        }
    }
    writer.finish().await
}

/// We publish nothing: say so (an empty ANNOUNCE_INIT on lite-01/02,
/// ANNOUNCE_OK on lite-05+) and keep the stream open until the peer closes it.
/// Resetting it would end the session for peers that treat announce errors as
/// fatal.
async fn announce_nothing<S: SendStream, R: RecvStream>(
    shared: &SessionState,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    if shared.config.version.has_announce_init() {
        writer.encode(&AnnounceInit::default()).await?;
    }
    if shared.config.version.has_announce_ok() {
        writer
            .encode(&AnnounceOk {
                origin: shared.config.hop,
                active: 0,
            })
            .await?;
    }
    reader.closed().await?;
    writer.finish().await
}

/// What one Announce stream has told the peer: which broadcasts it announced,
/// under which ids, and what it may see.
struct AnnounceFeed<'a> {
    shared: &'a SessionState,
    request: &'a AnnounceRequest,
    version: Version,
    /// Announced suffixes and their ids (lite-06 names them by id afterwards).
    ids: HashMap<Path, u64>,
    next_id: u64,
}

impl<'a> AnnounceFeed<'a> {
    fn new(shared: &'a SessionState, request: &'a AnnounceRequest) -> Self {
        Self {
            shared,
            request,
            version: shared.config.version,
            ids: HashMap::new(),
            next_id: 0,
        }
    }

    /// The hop not to announce routes back through: the peer's identity, read at
    /// every announcement since the peer's SETUP (which names it) may be processed
    /// after this stream started.
    fn excluded_hop(&self) -> Option<u64> {
        match self.request.exclude_hop {
            0 => self.shared.peer_hop(),
            hop => Some(hop),
        }
    }

    /// Whether the peer may see the broadcast at `suffix` reached through `hops`.
    fn visible(&self, suffix: &Path, hops: &Hops) -> bool {
        let Ok(relative) = self.request.prefix.join(suffix.as_str()) else {
            return false;
        };
        self.shared.can_subscribe(&relative) && self.excluded_hop().is_none_or(|hop| !hops.contains(hop))
    }

    /// Queue the initial set, filtered, after an ANNOUNCE_OK whose count is exact
    /// (lite-05+), or as ANNOUNCE_INIT (lite-01/02).
    fn send_initial<S: SendStream>(
        &mut self,
        writer: &mut Writer<S>,
        announced: &mut Announced,
    ) -> Result<()> {
        let mut initial = Vec::new();
        for _ in 0..announced.initial() {
            match announced.try_next() {
                Some(event) if event.broadcast.is_some() && self.visible(&event.suffix, &event.hops) => {
                    initial.push(event)
                }
                Some(_) => {}
                None => break,
            }
        }
        if self.version.has_announce_init() {
            return self.send_init(writer, initial);
        }
        if self.version.has_announce_ok() {
            writer.queue(&AnnounceOk {
                origin: self.shared.config.hop,
                active: initial.len() as u64,
            })?;
        }
        for event in initial {
            self.announce(writer, event)?;
        }
        Ok(())
    }

    /// lite-01/02: the initial suffixes in one ANNOUNCE_INIT (each once, at most
    /// [`moq_proto::limits::MAX_ANNOUNCE_INIT`]); any beyond follow as ANNOUNCEs.
    fn send_init<S: SendStream>(&mut self, writer: &mut Writer<S>, initial: Vec<OriginEvent>) -> Result<()> {
        let mut suffixes = Vec::new();
        let mut rest = Vec::new();
        for event in initial {
            if self.ids.contains_key(&event.suffix) {
                continue;
            }
            if suffixes.len() < moq_proto::limits::MAX_ANNOUNCE_INIT {
                self.ids.insert(event.suffix.clone(), self.next_id);
                self.next_id = self.next_id.wrapping_add(1);
                suffixes.push(event.suffix);
            } else {
                rest.push(event);
            }
        }
        writer.queue(&AnnounceInit { suffixes })?;
        for event in rest {
            self.activate(writer, event)?;
        }
        Ok(())
    }

    /// Queue what one origin event means to the peer.
    fn announce<S: SendStream>(&mut self, writer: &mut Writer<S>, event: OriginEvent) -> Result<()> {
        // A route the peer may not see now (say it switched to one through the
        // peer) is withdrawn like an ended broadcast: leaving the old one up
        // would let two relays keep a dead broadcast alive for each other.
        match event.broadcast.is_some() && self.visible(&event.suffix, &event.hops) {
            true => self.activate(writer, event),
            false => self.withdraw(writer, event.suffix),
        }
    }

    /// Withdraw every broadcast announced on this stream that the peer may no longer
    /// subscribe to (its permissions narrowed).
    fn withdraw_forbidden<S: SendStream>(&mut self, writer: &mut Writer<S>) -> Result<()> {
        let forbidden: Vec<Path> = self
            .ids
            .keys()
            .filter(|suffix| {
                self.request
                    .prefix
                    .join(suffix.as_str())
                    .map_or(true, |relative| !self.shared.can_subscribe(&relative))
            })
            .cloned()
            .collect();
        for suffix in forbidden {
            self.withdraw(writer, suffix)?;
        }
        Ok(())
    }

    fn withdraw<S: SendStream>(&mut self, writer: &mut Writer<S>, suffix: Path) -> Result<()> {
        let Some(id) = self.ids.remove(&suffix) else {
            return Ok(());
        };
        let msg = match self.version.has_announce_ids() {
            true => Announce::EndedId { id },
            false => Announce::Ended {
                suffix,
                hops: Hops::new(),
            },
        };
        writer.queue(&msg)
    }

    fn activate<S: SendStream>(&mut self, writer: &mut Writer<S>, event: OriginEvent) -> Result<()> {
        let version = self.version;
        let hop = self.shared.config.hop;
        let suffix = event.suffix;
        let mut hops = event.hops;
        let cost = Cost::new(event.cost);
        // lite-05+ receivers append ANNOUNCE_OK's hop themselves.
        if !version.has_announce_ok() && hop != 0 {
            let _ = hops.push(hop);
        }
        match self.ids.get(&suffix) {
            // A new route to a broadcast the peer already has: lite-06 says so with
            // RESTART (relays need the new hops to avoid loops and to pick routes).
            Some(&id) if version.has_announce_ids() => writer.queue(&Announce::Restart { id, hops, cost }),
            // Before lite-06 the only way to say it is to announce the broadcast again,
            // which receivers read as a restart (lite-05) or an end and a new broadcast
            // (lite-01..04): their viewers' subscriptions are dropped. A route change
            // must be invisible to viewers, so it is not told.
            Some(_) => Ok(()),
            None => {
                self.ids.insert(suffix.clone(), self.next_id);
                self.next_id = self.next_id.wrapping_add(1);
                writer.queue(&Announce::Active { suffix, hops, cost })
            }
        }
    }
}

/// Tell the peer we are going away (lite-04+): it should reconnect, here or elsewhere.
pub(crate) async fn goaway<S: Session>(session: S, version: Version) -> Result<()> {
    let (send, _recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    writer.queue(&ControlStream::Goaway)?;
    writer.queue(&moq_proto::Goaway::default())?;
    writer.finish().await
}

/// Send order: subscriber priority first, then newer groups first.
// `subscriber - 128` is -128..=127, and shifted left by 23 it stays within an i32.
#[allow(clippy::arithmetic_side_effects)]
fn priority(subscriber: u8, sequence: u64) -> i32 {
    ((i32::from(subscriber) - 128) << 23) | (sequence & 0x7f_ffff) as i32
}

async fn serve_subscribe<S: Session>(
    session: &S,
    shared: &SessionState,
    writer: &mut Writer<S::SendStream>,
    reader: &mut Reader<S::RecvStream>,
) -> Result<()> {
    let version = shared.config.version;
    let subscribe = reader.decode::<Subscribe>().await?;
    let _slot = shared.admit(Limit::Subscriptions)?;
    let _active = ActiveSubscription::new(&shared.config.stats);
    let broadcast = broadcast(shared, &subscribe.broadcast)?;
    // A start group reaches our own source too when the track is new here.
    let mut track = broadcast.subscribe_from(&subscribe.track, subscribe.range.start_group)?;
    tracing::debug!(
        id = subscribe.id,
        broadcast = %subscribe.broadcast,
        track = %subscribe.track,
        start = ?subscribe.range.start_group,
        "subscribed"
    );

    if !version.has_track_stream() {
        // lite-01..04 acknowledge explicitly, echoing the subscriber's priority
        // (lite-02's SUBSCRIBE_OK is empty).
        writer
            .encode(&SubscribeResponse::Ok(SubscribeOk {
                priority: subscribe.priority,
                ..Default::default()
            }))
            .await?;
    }

    let mut delivery = Delivery::new(session, shared, &subscribe);
    let mut permissions = shared.permissions.clone();
    let ended = loop {
        tokio::select! {
            () = permissions_changed(&mut permissions) => {
                if !shared.can_subscribe(&subscribe.broadcast) {
                    delivery.groups.shutdown().await;
                    return Err(Error::Unauthorized(format!(
                        "may no longer subscribe to '{}'",
                        subscribe.broadcast
                    )));
                }
            }
            group = track.next_group() => {
                let group = match group {
                    Ok(Some(group)) => group,
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err),
                };
                if subscribe.range.end_group.is_some_and(|end| group.sequence() > end) {
                    break Ok(());
                }
                delivery.send(writer, group).await?;
            }
            update = reader.decode_maybe::<SubscribeUpdate>() => {
                match update? {
                    Some(update) => delivery.priority = update.priority,
                    // The subscriber closed its side: it is done.
                    None => {
                        delivery.groups.shutdown().await;
                        return writer.finish().await;
                    }
                }
            }
            Some(_) = delivery.groups.join_next() => {}
        }
    };
    // Let the groups in flight complete before saying the subscription is over.
    while delivery.groups.join_next().await.is_some() {}
    ended?;
    if version.has_track_stream() {
        let end = delivery.last.map_or(0, |l| l.saturating_add(1));
        writer.queue(&SubscribeResponse::End { group: end })?;
    }
    writer.finish().await
}

/// The groups of one subscription on their way to the subscriber, one stream each.
struct Delivery<'a, S: Session> {
    session: &'a S,
    shared: &'a SessionState,
    subscribe: u64,
    /// The subscriber's priority, updated by SUBSCRIBE_UPDATE.
    priority: u8,
    groups: JoinSet<Result<()>>,
    in_flight: InFlight,
    /// The last group started, if any.
    last: Option<u64>,
}

impl<'a, S: Session> Delivery<'a, S> {
    fn new(session: &'a S, shared: &'a SessionState, subscribe: &Subscribe) -> Self {
        Self {
            session,
            shared,
            subscribe: subscribe.id,
            priority: subscribe.priority,
            groups: JoinSet::new(),
            in_flight: InFlight::new(shared.config.quota.max_groups_in_flight),
            last: None,
        }
    }

    /// Start sending `group` on its own stream, making room for it first.
    async fn send(&mut self, writer: &mut Writer<S::SendStream>, group: GroupConsumer) -> Result<()> {
        let version = self.shared.config.version;
        let sequence = group.sequence();
        if self.last.is_none() && version.has_track_stream() {
            writer
                .encode(&SubscribeResponse::Start { group: sequence })
                .await?;
        }
        self.last = Some(sequence);
        let now = tokio::time::Instant::now();
        self.in_flight.make_room(now);
        let stats = self.shared.config.stats.clone();
        let handle = self.groups.spawn(serve_group(
            self.session.clone(),
            version,
            self.subscribe,
            self.priority,
            group,
            stats,
        ));
        self.in_flight.push(handle, now);
        Ok(())
    }
}

/// The group streams of one subscription still being written, oldest first.
struct InFlight {
    streams: VecDeque<(AbortHandle, tokio::time::Instant)>,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            streams: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// A slow subscriber: drop the oldest groups in flight once there are too
    /// many and they have been stuck for a while, never buffer more. A burst of
    /// small groups completes quickly and loses nothing.
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

/// Deliver one group on its own unidirectional stream.
async fn serve_group<S: Session>(
    session: S,
    version: Version,
    subscribe: u64,
    prio: u8,
    mut group: GroupConsumer,
    stats: Arc<Stats>,
) -> Result<()> {
    let sequence = group.sequence();
    Stats::add(&stats.groups_sent, 1);
    let mut writer = Writer::new(session.open_uni().await?, version);
    writer.set_priority(priority(prio, sequence));
    writer.queue(&DataStream::Group)?;
    writer.queue(&GroupHeader {
        subscribe,
        sequence,
        frame_start: 0,
    })?;
    // Send the header at once: some clients fail a stream reset before its header arrives.
    writer.flush().await?;
    let result = write_frames(&mut writer, version, &mut group, 0, None, &stats).await;
    match result {
        Ok(()) => writer.finish().await,
        Err(err) => {
            writer.reset(err.stream_code());
            Err(err)
        }
    }
}

async fn write_frames<S: SendStream>(
    writer: &mut Writer<S>,
    version: Version,
    group: &mut GroupConsumer,
    start: u64,
    end: Option<u64>,
    stats: &Stats,
) -> Result<()> {
    let mut cursor = TimestampCursor::new();
    let mut index = 0u64;
    let mut sent = Batch::new(stats);
    let mut ready = Vec::new();
    let mut payloads = Vec::new();
    while let Some(frame) = group.next_frame().await? {
        // Frames already here behind this one (a viewer that joined mid-group, or fell
        // behind) go out with it in one write.
        ready.push(frame);
        group.ready_frames(COALESCE_FRAMES, COALESCE_BYTES, &mut ready);
        for frame in ready.drain(..) {
            if end.is_some_and(|end| index > end) {
                break;
            }
            let delta = cursor
                .delta_to(frame.timestamp)
                .ok_or_else(|| Error::Protocol("timestamp out of range".into()))?;
            if index >= start {
                writer.queue(&FrameHeader {
                    timestamp_delta: if version.has_frame_timestamps() { delta } else { 0 },
                    size: frame.payload.len() as u64,
                })?;
                sent.sent(frame.payload.len() as u64);
                payloads.push((writer.queued(), frame.payload));
            }
            index = index.saturating_add(1);
        }
        writer.payloads(&mut payloads).await?;
        if end.is_some_and(|end| index > end) {
            break;
        }
    }
    Ok(())
}

async fn serve_fetch<S: SendStream, R: RecvStream>(
    shared: &SessionState,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let version = shared.config.version;
    let fetch = reader.decode::<Fetch>().await?;
    let _slot = shared.admit(Limit::Fetches)?;
    let broadcast = broadcast(shared, &fetch.broadcast)?;
    let mut track = broadcast.subscribe(&fetch.track)?;
    let mut group = match track.get_group(fetch.group) {
        Some(group) => group,
        // Not cached (nobody was reading the track): pull it and wait for the group.
        None => tokio::time::timeout(FETCH_WAIT, async {
            loop {
                if let Some(group) = track.get_group(fetch.group) {
                    return Ok(group);
                }
                match track.next_group().await? {
                    Some(g) if g.sequence() == fetch.group => return Ok(g),
                    Some(_) => continue,
                    None => return Err(Error::NotFound),
                }
            }
        })
        .await
        .map_err(|_| Error::NotFound)??,
    };
    let stats = &shared.config.stats;
    write_frames(
        writer,
        version,
        &mut group,
        fetch.start_frame,
        fetch.end_frame,
        stats,
    )
    .await?;
    writer.finish().await
}

async fn serve_track<S: SendStream, R: RecvStream>(
    shared: &SessionState,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let request = reader.decode::<TrackRequest>().await?;
    let _slot = shared.admit(Limit::TrackRequests)?;
    let broadcast = broadcast(shared, &request.broadcast)?;
    let mut track = broadcast.subscribe(&request.track)?;
    let info = tokio::time::timeout(INFO_TIMEOUT, track.info())
        .await
        .map_err(|_| Error::Timeout)??;
    writer.queue(&moq_proto::TrackInfo {
        priority: info.priority,
        ordered: false,
        max_latency: info.max_latency,
        timescale: info.timescale,
    })?;
    writer.finish().await
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Frame, GroupProducer, transport::TransportError};

    fn pending(set: &mut JoinSet<Result<()>>) -> AbortHandle {
        set.spawn(std::future::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_drops_the_oldest_group_once_it_is_stuck() {
        let mut set = JoinSet::new();
        let mut in_flight = InFlight::new(2);
        let start = tokio::time::Instant::now();
        let oldest = pending(&mut set);
        in_flight.push(oldest.clone(), start);
        in_flight.push(pending(&mut set), start);
        // At the limit but not stuck: a burst waits rather than losing a group.
        in_flight.make_room(start);
        assert_eq!(in_flight.streams.len(), 2);
        in_flight.make_room(start + STUCK + Duration::from_millis(1));
        assert_eq!(in_flight.streams.len(), 1);
        tokio::task::yield_now().await;
        assert!(oldest.is_finished(), "the oldest group stream was aborted");
    }

    /// A send stream that keeps what it is given and counts the writes.
    #[derive(Clone, Default)]
    struct Recorder(Arc<std::sync::Mutex<(usize, Vec<u8>)>>);

    impl Recorder {
        fn take(&self) -> (usize, Vec<u8>) {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl crate::transport::SendStream for Recorder {
        async fn write_all(&mut self, buf: &[u8]) -> std::result::Result<(), TransportError> {
            let mut seen = self.0.lock().unwrap();
            seen.0 += 1;
            seen.1.extend_from_slice(buf);
            Ok(())
        }
        async fn write_chunk(&mut self, buf: Bytes) -> std::result::Result<(), TransportError> {
            self.write_all(&buf).await
        }
        async fn write_chunks(&mut self, bufs: &mut [Bytes]) -> std::result::Result<(), TransportError> {
            let mut seen = self.0.lock().unwrap();
            seen.0 += 1;
            for buf in bufs.iter_mut() {
                seen.1.extend_from_slice(&std::mem::take(buf));
            }
            Ok(())
        }
        fn set_priority(&mut self, _: i32) {}
        fn finish(&mut self) -> std::result::Result<(), TransportError> {
            Ok(())
        }
        fn reset(&mut self, _: u32) {}
    }

    /// What `write_frames` wrote, decoded back: (timestamp delta, payload) per frame.
    async fn frames_in(bytes: Vec<u8>, version: Version) -> Vec<(i64, Bytes)> {
        let mut reader = Reader::new(crate::testing::chunks(&[Bytes::from(bytes)]), version);
        let mut out = Vec::new();
        while let Some(header) = reader.decode_maybe::<FrameHeader>().await.unwrap() {
            let size = usize::try_from(header.size).unwrap();
            out.push((header.timestamp_delta, reader.read_exact(size).await.unwrap()));
        }
        out
    }

    fn frame(i: u64) -> Frame {
        Frame {
            timestamp: i * 33,
            payload: Bytes::from(vec![u8::try_from(i).unwrap(); 100 + usize::try_from(i).unwrap()]),
        }
    }

    #[tokio::test]
    async fn frames_already_waiting_go_out_in_one_write() {
        let version = Version::Lite06;
        let stats = Stats::default();
        let (mut producer, mut group) = GroupProducer::new(7);
        for i in 0..40 {
            producer.write(frame(i));
        }
        producer.finish();
        let stream = Recorder::default();
        let mut writer = Writer::new(stream.clone(), version);
        write_frames(&mut writer, version, &mut group, 0, None, &stats)
            .await
            .unwrap();
        writer.finish().await.unwrap();
        let (writes, bytes) = stream.take();
        // A viewer that joins a group 40 frames in gets them in one write, not 40.
        assert_eq!(writes, 1);
        let frames = frames_in(bytes, version).await;
        assert_eq!(frames.len(), 40);
        for (i, (delta, payload)) in frames.iter().enumerate() {
            let expected = frame(i as u64);
            assert_eq!(*delta, if i == 0 { 0 } else { 33 });
            assert_eq!(payload, &expected.payload);
        }
    }

    #[tokio::test]
    async fn a_backlog_is_written_in_bounded_batches_and_live_frames_one_by_one() {
        let version = Version::Lite06;
        let (mut producer, mut group) = GroupProducer::new(7);
        // 150 frames waiting: batches of at most COALESCE_FRAMES.
        for i in 0..150 {
            producer.write(frame(i % 200));
        }
        let stream = Recorder::default();
        let mut writer = Writer::new(stream.clone(), version);
        let task = tokio::spawn(async move {
            write_frames(&mut writer, version, &mut group, 0, None, &Stats::default()).await
        });
        let wait_for = async |frames: usize| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let seen = stream.0.lock().unwrap().clone();
                if frames_in(seen.1.clone(), version).await.len() >= frames {
                    return seen.0;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{frames} frames not written"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        assert_eq!(wait_for(150).await, 150usize.div_ceil(COALESCE_FRAMES));
        // Then frames that arrive one at a time go out one at a time, at once.
        for i in 150..153 {
            producer.write(frame(i));
            wait_for(usize::try_from(i).unwrap() + 1).await;
        }
        assert_eq!(wait_for(153).await, 150usize.div_ceil(COALESCE_FRAMES) + 3);
        producer.finish();
        task.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_stops_growing_at_eight_times_the_limit() {
        let mut set = JoinSet::new();
        let mut in_flight = InFlight::new(1);
        let now = tokio::time::Instant::now();
        for _ in 0..20 {
            in_flight.make_room(now);
            in_flight.push(pending(&mut set), now);
        }
        assert_eq!(in_flight.streams.len(), 8);
    }
}
