//! moq-lite session drivers (lite-01 to lite-06).
//!
//! lite-03 and newer are chosen by the transport (ALPN or WebTransport
//! protocol); lite-01/02 are chosen in-band first ([`accept_in_band`],
//! [`connect_in_band`]) and run with [`run_in_band`], which also watches their
//! Session stream.
//!
//! A session is symmetric: each side may publish and subscribe. [`run`] is the
//! driver future: it serves the peer's requests from the `publish` origin,
//! learns the peer's broadcasts (by opening an Announce stream to it, the
//! "pull" model) into the `consume` origin, and subscribes upstream on demand,
//! one subscription per track however many local consumers share it.
//!
//! Tasks are spawned into `JoinSet`s owned by the driver, so dropping the
//! driver future cancels everything it started.

mod in_band;
#[cfg(test)]
mod limit_tests;
mod publisher;
mod stream;
mod subscriber;
#[cfg(test)]
mod tests;
mod usage;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use moq_proto::{DataStream, Hops, Path, Setup, Version};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    Error, Origin, Result,
    stats::{Limit, Stats},
    transport::{RecvStream, SendStream, Session, TransportError},
};
pub use in_band::{ClientParameters, Negotiated, accept_in_band, connect_in_band};
use stream::{Reader, Writer};
use usage::{Header, Usage};

/// What the peer may do, as path prefixes relative to the session root.
/// A path is allowed when one of the prefixes is a prefix of it
/// (segment-aware). An empty list allows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Where the peer may publish.
    pub publish: Vec<Path>,
    /// What the peer may subscribe to and discover.
    pub subscribe: Vec<Path>,
}

impl Permissions {
    /// Everything allowed.
    pub fn all() -> Self {
        Self {
            publish: vec![Path::empty()],
            subscribe: vec![Path::empty()],
        }
    }

    fn allows(prefixes: &[Path], path: &Path) -> bool {
        prefixes.iter().any(|p| path.has_prefix(p))
    }

    /// Whether the peer may publish at `path` (relative to the root).
    pub fn can_publish(&self, path: &Path) -> bool {
        Self::allows(&self.publish, path)
    }

    /// Whether the peer may subscribe to `path` (relative to the root).
    pub fn can_subscribe(&self, path: &Path) -> bool {
        Self::allows(&self.subscribe, path)
    }

    /// Whether anything under `prefix` could be subscribed to.
    pub fn can_discover(&self, prefix: &Path) -> bool {
        self.subscribe
            .iter()
            .any(|p| p.has_prefix(prefix) || prefix.has_prefix(p))
    }
}

/// What one peer may hold on a session, so it cannot exhaust the relay. Each limit is
/// checked before anything is stored; a refusal resets (or stops) the stream concerned
/// with the error's code and is counted in [`Stats`] (see [`crate::stats::Limit`]).
#[derive(Debug, Clone)]
pub struct Quota {
    /// Concurrent subscriptions the peer may hold on us.
    pub max_subscriptions: usize,
    /// Group streams in flight per subscription before the oldest is dropped.
    pub max_groups_in_flight: usize,
    /// Broadcasts the peer may announce to us.
    pub max_announcements: usize,
    /// FETCH streams the peer may have open on us at once.
    pub max_fetches: usize,
    /// TRACK (track info) streams the peer may have open on us at once.
    pub max_track_requests: usize,
    /// Announce streams (ANNOUNCE_REQUEST) the peer may have open on us at once.
    pub max_announce_requests: usize,
    /// Group streams the peer may be sending us at once.
    pub max_groups: usize,
    /// Payload bytes one group from the peer may hold; past it the group ends with
    /// GROUP_TOO_LARGE (readers keep the frames before it).
    pub max_group_size: u64,
    /// Frames one group from the peer may hold; past it the group ends likewise.
    pub max_group_frames: u64,
    /// Streams the peer may have opened whose type and first message have not arrived.
    pub max_pending_streams: usize,
    /// How long a stream the peer opens may take to deliver its type and first message
    /// before it is stopped with CONTROL_TIMEOUT.
    pub header_timeout: Duration,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            max_subscriptions: 4096,
            max_groups_in_flight: 4,
            max_announcements: 4096,
            max_fetches: 64,
            max_track_requests: 256,
            max_announce_requests: 64,
            max_groups: 256,
            max_group_size: 32 << 20,
            max_group_frames: 100_000,
            max_pending_streams: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How to run a session.
#[derive(Debug, Clone)]
pub struct Config {
    /// The negotiated version.
    pub version: Version,
    /// Broadcasts we serve to the peer, or `None` to serve nothing.
    pub publish: Option<Origin>,
    /// Where the peer's broadcasts go, or `None` to not ask for them.
    pub consume: Option<Origin>,
    /// The session root: paths on the wire are relative to it in both origins.
    pub root: Path,
    /// What the peer may do.
    pub permissions: Permissions,
    /// Our hop id (0 for none). Sent in SETUP (lite-05+) and added to the
    /// hop list of every broadcast we announce.
    pub hop: u64,
    /// The price of this link, added to the cost of every broadcast the peer
    /// announces (a relay's `?cost=N`; 0 for ordinary sessions). A broadcast
    /// that crossed a relay is charged at least 1.
    pub cost: u64,
    /// Upstream subscriptions this session holds on the peer, live count
    /// (shared by a relay across sessions to prove deduplication).
    pub upstream: Arc<crate::stats::Upstream>,
    /// The SETUP we send (lite-05+): a raw-QUIC client puts its path here.
    pub setup: Setup,
    /// The peer's SETUP when the caller already read it (a raw-QUIC server
    /// reads it first to learn the path).
    pub peer_setup: Option<Setup>,
    /// What the peer may open.
    pub quota: Quota,
    /// Counters to update (shared across sessions by a relay).
    pub stats: Arc<Stats>,
    /// When this turns true, tell the peer we are going away (GOAWAY, lite-04+)
    /// and keep serving until it leaves or the driver is dropped.
    pub shutdown: Option<watch::Receiver<bool>>,
    /// Which of the peer's announcements to take: called with the path (relative to the
    /// root) and the route's hops (the peer's own hop id last); `None` takes every one.
    pub accept: Option<AnnounceFilter>,
    /// Which of the peer's broadcasts to ask for (with `consume`): a prefix relative to
    /// the root; empty asks for all. A peer that may not show us this prefix refuses at
    /// once (see [`PeerEvents::discover_refused`]) instead of showing nothing.
    pub discover: Path,
    /// What the peer tells us while the session runs (GOAWAY, refusals), for the caller
    /// to act on: keep a clone before [`run`].
    pub events: Events,
}

/// What the peer has told us about the session so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerEvents {
    /// The peer sent GOAWAY (lite-04+) with this new session URI; empty means "the same
    /// URI again". It keeps serving until we leave: connect anew, then close this one.
    pub goaway: Option<String>,
    /// The peer refused our request for its broadcasts (the Announce stream we opened),
    /// with the error it reset the stream with.
    pub discover_refused: Option<Error>,
    /// The peer refused the broadcasts we announce (it ended the Announce stream it opened
    /// to us with UNAUTHORIZED): we may not publish there.
    pub publish_refused: Option<Error>,
    /// The peer asked for our broadcasts (opened an Announce stream to us). A relay that
    /// never does will take none of them: a publisher can say so instead of going quiet.
    pub announce_requested: bool,
}

/// A shared, watchable [`PeerEvents`]: the session driver records, the caller watches.
/// Clones share the same state.
#[derive(Debug, Clone)]
pub struct Events(Arc<watch::Sender<PeerEvents>>);

impl Default for Events {
    fn default() -> Self {
        Self(Arc::new(watch::channel(PeerEvents::default()).0))
    }
}

impl Events {
    /// What the peer has told us so far.
    pub fn get(&self) -> PeerEvents {
        self.0.borrow().clone()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<PeerEvents> {
        self.0.subscribe()
    }

    /// Wait for the peer's GOAWAY; its new session URI (empty: the same one again).
    pub async fn goaway(&self) -> String {
        let mut rx = self.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let uri = rx
            .wait_for(|e| e.goaway.is_some())
            .await
            .ok()
            .and_then(|e| e.goaway.clone());
        uri.unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut PeerEvents)) {
        self.0.send_modify(change);
    }
}

/// A predicate over the peer's announcements (see [`Config::accept`]).
#[derive(Clone)]
pub struct AnnounceFilter(pub Arc<AnnounceFn>);

/// The test behind an [`AnnounceFilter`]: the announced path and its hops.
pub type AnnounceFn = dyn Fn(&Path, &Hops) -> bool + Send + Sync;

impl AnnounceFilter {
    /// Whether the announcement of `path` over `hops` is taken.
    pub fn allows(&self, path: &Path, hops: &Hops) -> bool {
        (self.0)(path, hops)
    }
}

impl std::fmt::Debug for AnnounceFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnnounceFilter")
    }
}

impl Config {
    /// A session that serves `publish` and feeds `consume`, at the root, allowing everything.
    pub fn new(version: Version) -> Self {
        Self {
            version,
            publish: None,
            consume: None,
            root: Path::empty(),
            permissions: Permissions::all(),
            hop: 0,
            cost: 0,
            upstream: Arc::default(),
            setup: Setup::default(),
            peer_setup: None,
            quota: Quota::default(),
            stats: Arc::default(),
            shutdown: None,
            accept: None,
            discover: Path::empty(),
            events: Events::default(),
        }
    }
}

/// What the session's tasks share: its config, the peer's SETUP, the upstream
/// subscriptions and what the peer holds against its quota.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub config: Config,
    pub peer_setup: Mutex<Option<Setup>>,
    pub subscriptions: subscriber::Subscriptions,
    pub usage: Arc<Usage>,
}

impl SessionState {
    /// Admit a stream the peer just opened: its type and first message are due within
    /// the quota's header timeout, and it holds a pending slot until they arrive.
    async fn header(&self) -> Result<Header> {
        let quota = &self.config.quota;
        Header::admit(&self.usage, quota.max_pending_streams, quota.header_timeout).await
    }

    /// Take a slot of `limit` for the peer, or refuse (counted, logged) at its quota.
    pub(crate) fn admit(&self, limit: Limit) -> Result<usage::Slot> {
        let quota = &self.config.quota;
        let max = match limit {
            Limit::Subscriptions => quota.max_subscriptions,
            Limit::Fetches => quota.max_fetches,
            Limit::TrackRequests => quota.max_track_requests,
            Limit::AnnounceRequests => quota.max_announce_requests,
            Limit::Groups => quota.max_groups,
            Limit::PendingStreams => quota.max_pending_streams,
            Limit::Announcements => quota.max_announcements,
            _ => usize::MAX,
        };
        self.usage.admit(limit, max)
    }

    /// The peer's hop id, from its SETUP, if it declared one.
    pub(crate) fn peer_hop(&self) -> Option<u64> {
        self.peer_setup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|s| s.origin)
    }
}

/// Read the peer's SETUP from its Setup stream (lite-05+). A server on raw
/// QUIC calls this before [`run`] to learn the requested path; pass the
/// result as [`Config::peer_setup`].
pub async fn read_setup<S: Session>(session: &S, version: Version) -> Result<Setup> {
    let recv = session.accept_uni().await?;
    let mut reader = Reader::new(recv, version);
    match reader.decode::<DataStream>().await? {
        DataStream::Setup => reader.decode::<Setup>().await,
        DataStream::Group => Err(Error::Protocol("expected the SETUP stream first".into())),
        _ => Err(Error::Protocol("unknown stream before SETUP".into())),
    }
}

/// Run a session until the connection closes or a fatal error. Closes the
/// connection with a matching code on a fatal error.
///
/// For lite-01/02 use [`run_in_band`]: their Session stream must stay open.
pub async fn run<S: Session>(session: S, config: Config) -> Result<()> {
    drive(session, config, None).await
}

/// Run a session whose version was negotiated in-band (lite-01/02), as
/// [`run`] does, with `config.version` replaced by the negotiated one. The
/// Session stream is read for SESSION_INFO; the peer ending or resetting it
/// ends the session ([`Error::Cancelled`], closed with code 0).
pub async fn run_in_band<S: Session>(
    session: S,
    mut config: Config,
    negotiated: Negotiated<S>,
) -> Result<()> {
    config.version = negotiated.version();
    drive(session, config, Some(negotiated.stream)).await
}

/// The next SESSION_INFO on the Session stream, or never without one.
async fn session_info<S: Session>(stream: &mut Option<in_band::SessionStream<S>>) -> Result<()> {
    let Some(stream) = stream.as_mut() else {
        return std::future::pending().await;
    };
    match stream.reader.decode_maybe::<moq_proto::SessionInfo>().await {
        Ok(Some(info)) => {
            tracing::trace!(bitrate = ?info.bitrate, "peer session info");
            Ok(())
        }
        // The peer abandoned the session; moq-net ends it the same way.
        Ok(None) | Err(Error::Reset(_)) => Err(Error::Cancelled),
        Err(err) => Err(err),
    }
}

async fn drive<S: Session>(
    session: S,
    config: Config,
    mut session_stream: Option<in_band::SessionStream<S>>,
) -> Result<()> {
    let version = config.version;
    let shared = Arc::new(SessionState {
        peer_setup: Mutex::new(config.peer_setup.clone()),
        usage: Usage::new(config.stats.clone()),
        config,
        subscriptions: subscriber::Subscriptions::default(),
    });
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();

    if version.has_setup_stream() {
        let session = session.clone();
        let mut setup = shared.config.setup.clone();
        if setup.origin.is_none() && shared.config.hop != 0 {
            setup.origin = Some(shared.config.hop);
        }
        tasks.spawn(async move {
            let mut writer = Writer::new(session.open_uni().await?, version);
            writer.queue(&DataStream::Setup)?;
            writer.queue(&setup)?;
            writer.finish().await
        });
    }
    if shared.config.consume.is_some() {
        tasks.spawn(subscriber::announced(session.clone(), shared.clone()));
    }

    let mut shutdown = shared.config.shutdown.clone();
    let mut going_away = false;
    let result = loop {
        tokio::select! {
            changed = async {
                match shutdown.as_mut() {
                    Some(rx) => rx.wait_for(|v| *v).await.map(|_| ()),
                    None => std::future::pending().await,
                }
            }, if !going_away => {
                going_away = true;
                if changed.is_ok() && version.has_goaway() {
                    tasks.spawn(publisher::goaway(session.clone(), version));
                }
            }
            stream = session.accept_bi() => {
                let (mut send, mut recv) = match stream {
                    Ok(stream) => stream,
                    Err(err) => break Err(ended(&session, err)),
                };
                match shared.header().await {
                    Ok(header) => {
                        let reader = Reader::with_header(recv, version, header);
                        tasks.spawn(publisher::serve_control_stream(session.clone(), shared.clone(), send, reader));
                    }
                    Err(err) => {
                        send.reset(err.stream_code());
                        recv.stop(err.stream_code());
                    }
                }
            }
            stream = session.accept_uni() => {
                let mut recv = match stream {
                    Ok(stream) => stream,
                    Err(err) => break Err(ended(&session, err)),
                };
                match shared.header().await {
                    Ok(header) => {
                        let reader = Reader::with_header(recv, version, header);
                        tasks.spawn(subscriber::receive_data_stream(shared.clone(), reader));
                    }
                    Err(err) => recv.stop(err.stream_code()),
                }
            }
            info = session_info(&mut session_stream) => {
                if let Err(err) = info {
                    break Err(err);
                }
            }
            datagram = session.recv_datagram(), if version.has_datagrams() => {
                match datagram {
                    Ok(datagram) => subscriber::datagram(&shared, datagram),
                    Err(err) => break Err(ended(&session, err)),
                }
            }
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(Ok(())) => {}
                    // Fatal to the session: the peer broke the protocol on a stream
                    // whose failure we cannot contain.
                    Ok(Err(err @ (Error::Decode(_) | Error::Protocol(_)))) => break Err(err),
                    Ok(Err(err)) => tracing::debug!(%err, "session task ended"),
                    Err(join) if join.is_panic() => break Err(Error::Protocol("internal task panicked".into())),
                    Err(_) => {}
                }
            }
        }
    };
    if let Err(err) = &result {
        match err {
            Error::Transport(_) | Error::Reset(_) | Error::Closed { .. } => {}
            err => session.close(err.session_code(), &err.to_string()),
        }
    }
    tasks.shutdown().await;
    result
}

/// Why the connection under a session ended: the peer's close code and reason when it
/// closed it ([`Error::Closed`], so a caller can tell a refusal from a lost link), else
/// the transport's error.
fn ended<S: Session>(session: &S, err: TransportError) -> Error {
    match session.peer_close() {
        Some((code, reason)) => Error::Closed { code, reason },
        None => Error::from(err),
    }
}

/// Reset both halves of a control stream with an error's code.
pub(crate) fn reject<S: SendStream, R: RecvStream>(
    writer: &mut Writer<S>,
    reader: &mut Reader<R>,
    err: &Error,
) {
    let code = err.stream_code();
    writer.reset(code);
    reader.stop(code);
}
