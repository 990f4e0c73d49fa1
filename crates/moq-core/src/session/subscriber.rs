//! The subscribing half: learns the peer's broadcasts through an Announce
//! stream, publishes them into the `consume` origin, subscribes upstream when
//! a local consumer asks for a track, and ingests the groups that arrive.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use moq_proto::{
    Announce, AnnounceOk, AnnounceRequest, ControlStream, DataStream, Datagram, Decode, FrameHeader,
    GroupHeader, Path, Range, Subscribe, SubscribeResponse, TimestampCursor, TrackRequest,
};
use tokio::task::{AbortHandle, JoinSet};

use super::{Reader, Shared, Writer};
use crate::{
    BroadcastProducer, Error, Frame, Result, TrackInfo, TrackProducer,
    model::Publication,
    stats::Stats,
    transport::{RecvStream, Session},
};

/// How long a non-latest group may be before the upstream publisher skips it.
const UPSTREAM_MAX_LATENCY: Duration = Duration::from_secs(10);

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
    upstream: &'a AtomicUsize,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.subscriptions.lock().remove(&self.id);
        self.upstream.fetch_sub(1, Ordering::Relaxed);
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

/// Ask the peer for its broadcasts and mirror them into the `consume` origin.
pub(crate) async fn announced<S: Session>(session: S, shared: Arc<Shared>) -> Result<()> {
    let version = shared.config.version;
    let Some(origin) = shared.config.consume.clone() else {
        return Ok(());
    };
    let (send, recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    let mut reader = Reader::new(recv, version);
    writer.queue(&ControlStream::Announce)?;
    writer
        .encode(&AnnounceRequest {
            prefix: Path::empty(),
            exclude_hop: shared.config.hop,
        })
        .await?;

    let peer_hop = match version.has_announce_ok() {
        true => match reader.decode::<AnnounceOk>().await {
            Ok(ok) => ok.origin,
            // A peer that publishes nothing may simply refuse announce interest.
            Err(Error::Reset(code)) => {
                tracing::debug!(code, "peer refused announce interest");
                return Ok(());
            }
            Err(err) => return Err(err),
        },
        false => 0,
    };

    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut active: HashMap<Path, Mirrored> = HashMap::new();
    // lite-06: announce ids in START order; `None` once ended or refused.
    let mut ids: Vec<Option<Path>> = Vec::new();
    let limit = shared.config.limits.max_announcements;

    let result = loop {
        let msg = tokio::select! {
            msg = reader.decode_maybe::<Announce>() => msg,
            Some(_) = tasks.join_next() => continue,
        };
        let msg = match msg {
            Ok(Some(msg)) => msg,
            Ok(None) => break Ok(()),
            Err(Error::Reset(code)) => {
                tracing::debug!(code, "peer ended announcements");
                break Ok(());
            }
            Err(err) => break Err(err),
        };
        let (suffix, mut hops, cost) = match msg {
            Announce::Active { suffix, hops, cost } => {
                if version.has_announce_ids() {
                    ids.push(Some(suffix.clone()));
                }
                (suffix, hops, cost)
            }
            Announce::Restart { id, hops, cost } => match ids.get(id as usize).cloned().flatten() {
                Some(suffix) => (suffix, hops, cost),
                None => break Err(Error::Protocol(format!("RESTART of unknown announce id {id}"))),
            },
            Announce::Ended { suffix, .. } => {
                if let Some(old) = active.remove(&suffix) {
                    old.task.abort();
                    old.publication.finish();
                }
                continue;
            }
            Announce::EndedId { id } => {
                match ids.get_mut(id as usize).and_then(Option::take) {
                    Some(suffix) => {
                        if let Some(old) = active.remove(&suffix) {
                            old.task.abort();
                            old.publication.finish();
                        }
                    }
                    None => break Err(Error::Protocol(format!("END of unknown announce id {id}"))),
                }
                continue;
            }
            Announce::Unknown { .. } => continue,
        };
        // A route that is no longer usable also withdraws the peer's previous
        // route for the path: keeping the old one would keep a broadcast the
        // peer no longer offers that way.
        let unusable = if peer_hop != 0 && hops.push(peer_hop).is_err() {
            tracing::warn!(%suffix, "announcement with too many hops ignored");
            true
        } else {
            // A route back through us: a loop.
            hops.contains(shared.config.hop)
        };
        if unusable {
            if let Some(old) = active.remove(&suffix) {
                old.task.abort();
                old.publication.finish();
            }
            continue;
        }
        if !shared.config.permissions.can_publish(&suffix) {
            tracing::warn!(%suffix, "peer announced a broadcast it may not publish; ignored");
            continue;
        }
        if !active.contains_key(&suffix) && active.len() >= limit {
            tracing::warn!(%suffix, "too many announcements from peer; ignored");
            continue;
        }
        let path = match shared.config.root.join(suffix.as_str()) {
            Ok(path) => path,
            Err(err) => break Err(Error::Protocol(err.to_string())),
        };
        let mut broadcast = BroadcastProducer::dynamic(origin.cache().clone());
        // The peer's advertised cost (lite-06; 0 before) plus the price of this
        // link. A route through another relay costs at least 1 whichever side
        // dialled, so an accepted link is never a free bridge between two others.
        let link = match hops.is_empty() {
            true => shared.config.cost,
            false => shared.config.cost.max(1),
        };
        let cost = cost.warm.saturating_add(link);
        let publication = origin.publish_route(path, broadcast.consume(), hops, cost);
        let task = {
            let session = session.clone();
            let shared = shared.clone();
            let suffix = suffix.clone();
            tasks.spawn(async move {
                let mut subscriptions = JoinSet::new();
                loop {
                    tokio::select! {
                        track = broadcast.requested_track() => {
                            let Some(track) = track else { break };
                            subscriptions.spawn(subscribe(session.clone(), shared.clone(), suffix.clone(), track));
                        }
                        Some(_) = subscriptions.join_next() => {}
                    }
                }
            })
        };
        // A restart replaces the old mirror after the new one is attached.
        if let Some(old) = active.insert(suffix, Mirrored { publication, task }) {
            old.task.abort();
            old.publication.finish();
        }
    };
    // Abrupt end (session gone): publications drop without finish, so paths linger.
    drop(active);
    tasks.shutdown().await;
    result
}

/// Subscribe upstream for one track and feed it until nobody reads it.
async fn subscribe<S: Session>(session: S, shared: Arc<Shared>, broadcast: Path, track: TrackProducer) {
    let name = track.name().to_string();
    if let Err(err) = run_subscription(session, &shared, broadcast.clone(), track).await {
        tracing::debug!(%broadcast, track = %name, %err, "upstream subscription ended");
    }
}

async fn run_subscription<S: Session>(
    session: S,
    shared: &Shared,
    broadcast: Path,
    track: TrackProducer,
) -> Result<()> {
    let version = shared.config.version;
    let subscriptions = &shared.subscriptions;
    let id = subscriptions.next.fetch_add(1, Ordering::Relaxed);
    let track = Arc::new(track);
    subscriptions.lock().insert(id, track.clone());
    let upstream = &*shared.config.upstream;
    upstream.fetch_add(1, Ordering::Relaxed);
    let _registered = Registered {
        subscriptions,
        id,
        upstream,
    };

    let result = async {
        let (send, recv) = session.open_bi().await?;
        let mut writer = Writer::new(send, version);
        let mut reader = Reader::new(recv, version);
        writer.queue(&ControlStream::Subscribe)?;
        writer
            .encode(&Subscribe {
                id,
                broadcast: broadcast.clone(),
                track: track.name().to_string(),
                priority: 0,
                ordered: false,
                max_latency: UPSTREAM_MAX_LATENCY,
                range: Range::default(),
            })
            .await?;

        // lite-05+: the track's fixed properties come from a Track stream.
        let mut info_task = None;
        if version.has_track_stream() {
            let session = session.clone();
            let track = track.clone();
            let broadcast = broadcast.clone();
            info_task = Some(tokio::spawn(async move {
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
            }));
        }
        let _info_guard = AbortOnDrop(info_task);

        loop {
            tokio::select! {
                msg = reader.decode_maybe::<SubscribeResponse>() => match msg? {
                    Some(SubscribeResponse::Ok(ok)) => {
                        if track.info().is_none() {
                            track.set_info(TrackInfo {
                                priority: ok.priority,
                                max_latency: TrackInfo::default().max_latency,
                                timescale: 1_000_000,
                            });
                        }
                    }
                    Some(SubscribeResponse::Start { .. }) | Some(SubscribeResponse::Drop(_)) => {}
                    Some(SubscribeResponse::End { .. }) => {}
                    // The publisher finished: every group is accounted for.
                    None => return Ok(()),
                },
                _ = track.unused() => {
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
pub(crate) async fn serve_uni<R: RecvStream>(shared: Arc<Shared>, recv: R) -> Result<()> {
    let version = shared.config.version;
    let mut reader = Reader::new(recv, version);
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

async fn ingest_group<R: RecvStream>(shared: &Shared, mut reader: Reader<R>) -> Result<()> {
    let version = shared.config.version;
    let header = reader.decode::<GroupHeader>().await?;
    let Some(track) = shared.subscriptions.get(header.subscribe) else {
        // Cancelled meanwhile, or never ours: stop the stream, not the session.
        reader.stop(Error::Cancelled.stream_code());
        return Ok(());
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
        let header = match reader.decode_maybe::<FrameHeader>().await {
            Ok(Some(header)) => header,
            Ok(None) => break,
            Err(err) => {
                group.abort(err.clone());
                return match err {
                    Error::Decode(_) | Error::Protocol(_) => Err(err),
                    _ => Ok(()),
                };
            }
        };
        let timestamp = match version.has_frame_timestamps() {
            true => cursor
                .apply(header.timestamp_delta)
                .ok_or_else(|| Error::Protocol("frame timestamp out of range".into()))?,
            false => now_micros(),
        };
        let size = usize::try_from(header.size).map_err(|_| Error::Limit("frame size"))?;
        let payload = match reader.read_exact(size).await {
            Ok(payload) => payload,
            Err(err) => {
                group.abort(err.clone());
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

/// A group delivered as one QUIC datagram (lite-05+).
pub(crate) fn datagram(shared: &Shared, datagram: Bytes) {
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
