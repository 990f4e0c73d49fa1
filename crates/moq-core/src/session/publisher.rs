//! The publishing half: serves the peer's control streams (announce interest,
//! subscriptions, fetches, track info) from the `publish` origin.

use std::{collections::HashMap, sync::Arc, time::Duration};

use moq_proto::{
    Announce, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, DecodeError, Fetch, FrameHeader,
    GroupHeader, Hops, Path, Subscribe, SubscribeOk, SubscribeResponse, SubscribeUpdate, TimestampCursor,
    TrackRequest, Version,
};
use tokio::task::{AbortHandle, JoinSet};

use super::{Reader, Shared, Writer, reject};
use crate::{
    BroadcastConsumer, Error, GroupConsumer, Result,
    stats::{ActiveSubscription, Batch, Stats},
    transport::{RecvStream, SendStream, Session},
};

/// A group in flight this long, with newer ones queued behind it, is given up.
const STUCK: Duration = Duration::from_millis(500);

/// How long FETCH waits for a group that is not cached yet.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// How long to wait for a track's info before answering without it.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one bidirectional stream opened by the peer.
pub(crate) async fn serve<S: Session>(
    session: S,
    shared: Arc<Shared>,
    send: S::SendStream,
    recv: S::RecvStream,
) -> Result<()> {
    let version = shared.config.version;
    let mut reader = Reader::new(recv, version);
    let mut writer = Writer::new(send, version);
    let kind = match reader.decode::<ControlStream>().await {
        Ok(kind) => kind,
        // An unknown stream type resets that stream only (lite-03+).
        Err(Error::Decode(DecodeError::UnknownType { value, .. })) => {
            tracing::debug!(value, "unknown stream type; resetting it");
            reject(&mut writer, &mut reader, &Error::NotFound);
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let result = match kind {
        ControlStream::Announce => serve_announce(&shared, &mut writer, &mut reader).await,
        ControlStream::Subscribe => serve_subscribe(&session, &shared, &mut writer, &mut reader).await,
        ControlStream::Fetch => serve_fetch(&shared, &mut writer, &mut reader).await,
        ControlStream::Track => serve_track(&shared, &mut writer, &mut reader).await,
        ControlStream::Goaway => {
            let goaway = reader.decode::<moq_proto::Goaway>().await?;
            tracing::info!(uri = %goaway.uri, "peer is going away");
            Ok(())
        }
        // We advertise no probe capability; the draft says to reset the stream.
        _ => Err(Error::NotFound),
    };
    match result {
        Ok(()) => Ok(()),
        Err(err @ (Error::Decode(_) | Error::Protocol(_))) => {
            reject(&mut writer, &mut reader, &err);
            Err(err)
        }
        Err(err) => {
            tracing::debug!(?kind, %err, "control stream ended");
            reject(&mut writer, &mut reader, &err);
            Ok(())
        }
    }
}

fn origin(shared: &Shared) -> Result<&crate::Origin> {
    shared.config.publish.as_ref().ok_or(Error::NotFound)
}

/// Resolve a wire path (relative to the root) after checking permission.
fn resolve(shared: &Shared, relative: &Path) -> Result<Path> {
    if !shared.config.permissions.can_subscribe(relative) {
        return Err(Error::Unauthorized(format!("may not subscribe to '{relative}'")));
    }
    shared
        .config
        .root
        .join(relative.as_str())
        .map_err(|e| Error::Protocol(e.to_string()))
}

fn broadcast(shared: &Shared, relative: &Path) -> Result<BroadcastConsumer> {
    let path = resolve(shared, relative)?;
    origin(shared)?.consume(&path).ok_or(Error::NotFound)
}

async fn serve_announce<S: SendStream, R: RecvStream>(
    shared: &Shared,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let version = shared.config.version;
    let request = reader.decode::<AnnounceRequest>().await?;
    let Some(origin) = shared.config.publish.as_ref() else {
        // We publish nothing: say so (lite-05+) and keep the stream open. Resetting it
        // would end the session for peers that treat announce errors as fatal.
        if version.has_announce_ok() {
            writer
                .encode(&AnnounceOk {
                    origin: shared.config.hop,
                    active: 0,
                })
                .await?;
        }
        reader.closed().await?;
        return writer.finish().await;
    };
    let root = &shared.config.root;
    let full = root
        .join(request.prefix.as_str())
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let permissions = &shared.config.permissions;
    if !permissions.can_discover(&request.prefix) {
        return Err(Error::Unauthorized(format!(
            "may not discover '{}'",
            request.prefix
        )));
    }
    let mut announced = origin.announced(full);
    // The peer's identity, to avoid announcing routes back through it.
    // Read at every announcement: the peer's SETUP (which names it) may be
    // processed after this stream started.
    let exclude = || match request.exclude_hop {
        0 => shared.peer_hop(),
        hop => Some(hop),
    };
    let visible = |suffix: &Path, hops: &Hops| -> bool {
        let relative = match request.prefix.join(suffix.as_str()) {
            Ok(p) => p,
            Err(_) => return false,
        };
        permissions.can_subscribe(&relative) && exclude().is_none_or(|hop| !hops.contains(hop))
    };
    let mut ids: HashMap<Path, u64> = HashMap::new();
    let mut next_id = 0u64;
    let hop = shared.config.hop;
    let mut announce = |writer: &mut Writer<S>, mut event: crate::OriginEvent| -> Result<()> {
        // A route the peer may not see now (say it switched to one through the
        // peer) is withdrawn like an ended broadcast: leaving the old one up
        // would let two relays keep a dead broadcast alive for each other.
        if event.broadcast.is_some() && !visible(&event.suffix, &event.hops) {
            event.broadcast = None;
        }
        let Some(_) = event.broadcast else {
            let Some(id) = ids.remove(&event.suffix) else {
                return Ok(());
            };
            let msg = match version.has_announce_ids() {
                true => Announce::EndedId { id },
                false => Announce::Ended {
                    suffix: event.suffix,
                    hops: Hops::new(),
                },
            };
            return writer.queue(&msg);
        };
        let mut hops = event.hops;
        let cost = Cost::new(event.cost);
        // lite-05+ receivers append ANNOUNCE_OK's hop themselves.
        if !version.has_announce_ok() && hop != 0 {
            let _ = hops.push(hop);
        }
        match ids.get(&event.suffix) {
            Some(&id) if version.has_announce_ids() => writer.queue(&Announce::Restart { id, hops, cost }),
            // lite-05 treats a repeated active as a restart.
            Some(_) if version.has_announce_ok() => writer.queue(&Announce::Active {
                suffix: event.suffix,
                hops,
                cost: Cost::UNKNOWN,
            }),
            // lite-03/04 have no restart: end it, then announce it again.
            Some(_) => {
                writer.queue(&Announce::Ended {
                    suffix: event.suffix.clone(),
                    hops: Hops::new(),
                })?;
                writer.queue(&Announce::Active {
                    suffix: event.suffix,
                    hops,
                    cost: Cost::UNKNOWN,
                })
            }
            None => {
                ids.insert(event.suffix.clone(), next_id);
                next_id += 1;
                writer.queue(&Announce::Active {
                    suffix: event.suffix,
                    hops,
                    cost,
                })
            }
        }
    };

    // The initial set, filtered, so ANNOUNCE_OK's count is exact.
    let mut initial = Vec::new();
    for _ in 0..announced.initial() {
        match announced.try_next() {
            Some(event) if event.broadcast.is_some() && visible(&event.suffix, &event.hops) => {
                initial.push(event)
            }
            Some(_) => {}
            None => break,
        }
    }
    if version.has_announce_ok() {
        writer.queue(&AnnounceOk {
            origin: hop,
            active: initial.len() as u64,
        })?;
    }
    for event in initial {
        announce(writer, event)?;
    }
    writer.flush().await?;

    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { break };
                announce(writer, event)?;
                // Send whatever else is pending in one write.
                while let Some(event) = announced.try_next() {
                    announce(writer, event)?;
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

/// Tell the peer we are going away (lite-04+): it should reconnect, here or elsewhere.
pub(crate) async fn goaway<S: Session>(session: S, version: Version) -> Result<()> {
    let (send, _recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    writer.queue(&ControlStream::Goaway)?;
    writer.queue(&moq_proto::Goaway::default())?;
    writer.finish().await
}

/// Send order: subscriber priority first, then newer groups first.
fn priority(subscriber: u8, sequence: u64) -> i32 {
    ((i32::from(subscriber) - 128) << 23) | (sequence & 0x7f_ffff) as i32
}

async fn serve_subscribe<S: Session>(
    session: &S,
    shared: &Shared,
    writer: &mut Writer<S::SendStream>,
    reader: &mut Reader<S::RecvStream>,
) -> Result<()> {
    let version = shared.config.version;
    let subscribe = reader.decode::<Subscribe>().await?;
    let served = shared.served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _guard = Served(&shared.served);
    if served >= shared.config.limits.max_subscriptions {
        return Err(Error::Limit("subscriptions per session"));
    }
    let _active = ActiveSubscription::new(&shared.config.stats);
    let broadcast = broadcast(shared, &subscribe.broadcast)?;
    let mut track = broadcast.subscribe(&subscribe.track)?;
    if let Some(start) = subscribe.range.start_group {
        track.start_at(start);
    }
    tracing::debug!(id = subscribe.id, broadcast = %subscribe.broadcast, track = %subscribe.track, "subscribed");

    if !version.has_track_stream() {
        // lite-03/04 acknowledge explicitly, echoing the subscriber's priority.
        writer
            .encode(&SubscribeResponse::Ok(SubscribeOk {
                priority: subscribe.priority,
                ..Default::default()
            }))
            .await?;
    }

    let mut prio = subscribe.priority;
    let limit = shared.config.limits.max_groups_in_flight.max(1);
    let mut groups: JoinSet<Result<()>> = JoinSet::new();
    let mut in_flight: std::collections::VecDeque<(AbortHandle, tokio::time::Instant)> = Default::default();
    let mut started = false;
    let mut last = None;
    let end_group = subscribe.range.end_group;
    let ended = loop {
        tokio::select! {
            group = track.next_group() => {
                let group = match group {
                    Ok(Some(group)) => group,
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err),
                };
                let sequence = group.sequence();
                if end_group.is_some_and(|end| sequence > end) {
                    break Ok(());
                }
                if !started && version.has_track_stream() {
                    writer.encode(&SubscribeResponse::Start { group: sequence }).await?;
                }
                started = true;
                last = Some(sequence);
                // A slow subscriber: drop the oldest groups in flight once there are
                // too many and they have been stuck for a while, never buffer more.
                // A burst of small groups completes quickly and loses nothing.
                in_flight.retain(|(h, _)| !h.is_finished());
                let now = tokio::time::Instant::now();
                while in_flight.len() >= limit {
                    let stuck = in_flight.front().is_some_and(|(_, since)| now - *since > STUCK);
                    if !stuck && in_flight.len() < limit * 8 {
                        break;
                    }
                    if let Some((oldest, _)) = in_flight.pop_front() {
                        oldest.abort();
                    }
                }
                let stats = shared.config.stats.clone();
                let handle = groups.spawn(serve_group(session.clone(), version, subscribe.id, prio, group, stats));
                in_flight.push_back((handle, now));
            }
            update = reader.decode_maybe::<SubscribeUpdate>() => {
                match update? {
                    Some(update) => prio = update.priority,
                    // The subscriber closed its side: it is done.
                    None => {
                        groups.shutdown().await;
                        return writer.finish().await;
                    }
                }
            }
            Some(_) = groups.join_next() => {}
        }
    };
    // Let the groups in flight complete before saying the subscription is over.
    while groups.join_next().await.is_some() {}
    match ended {
        Ok(()) => {
            if version.has_track_stream() {
                let end = last.map_or(0, |l| l + 1);
                writer.queue(&SubscribeResponse::End { group: end })?;
            }
            writer.finish().await
        }
        Err(err) => Err(err),
    }
}

struct Served<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Served<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
    while let Some(frame) = group.next_frame().await? {
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
            let size = frame.payload.len() as u64;
            writer.payload(frame.payload).await?;
            sent.sent(size);
        }
        index += 1;
    }
    Ok(())
}

async fn serve_fetch<S: SendStream, R: RecvStream>(
    shared: &Shared,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let version = shared.config.version;
    let fetch = reader.decode::<Fetch>().await?;
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
    shared: &Shared,
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
) -> Result<()> {
    let request = reader.decode::<TrackRequest>().await?;
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
