//! IETF moq-transport sessions (drafts 14 to 22) over the same model as moq-lite.
//!
//! A moq-transport peer sees the relay as moq-transport; underneath, its broadcasts land
//! in the same [`Origin`](crate::Origin) as moq-lite ones and are served from it, so an
//! IETF publisher reaches moq-lite viewers and the other way round, with one upstream
//! subscription per track whatever the viewers speak, and payloads shared, never copied
//! per viewer.
//!
//! Use: a server reads the client's SETUP with [`accept`] (its PATH and
//! AUTHORIZATION_TOKEN are what a raw-QUIC server authenticates), a client sends its own
//! with [`connect`]; either hands the [`Established`] session to [`run`] with the same
//! [`session::Config`] a moq-lite session takes (its moq-lite `version`, `setup` and
//! `peer_setup` are not used here).
//!
//! # How moq-transport maps onto the model
//!
//! | moq-transport | model |
//! |---|---|
//! | track namespace (a tuple) | broadcast path, one field per segment, relative to the session root |
//! | track name | track name |
//! | group | group, same sequence number |
//! | object (in Object ID order) | frame (in arrival order) |
//! | subgroup 0 | the group's frames |
//! | TIMESTAMP object property (0x10) with the track's TIMESCALE (0x08) | frame timestamp and track timescale |
//! | publisher priority (lower first) | track priority (higher first): 255 − p |
//!
//! What is dropped or narrowed, on the way in:
//! - subgroups other than 0: their streams are stopped (a group is one ordered list of
//!   frames here); so is a subgroup stream that does not start at object 0;
//! - gaps in Object IDs close up (frames are numbered in arrival order), object
//!   statuses end the group, and object properties other than TIMESTAMP are not kept;
//! - a datagram past object 0 (a datagram group has one frame);
//! - without a TIMESCALE (every draft before 17 declares none) frames are stamped with
//!   their arrival time in microseconds.
//!
//! On the way out: each group is one subgroup-0 stream with the track's priority as the
//! publisher priority, objects numbered from 0 by frame, and (draft-17+) each object
//! carries its TIMESTAMP with the track's TIMESCALE declared in SUBSCRIBE_OK. A
//! subscription starts at the latest group, replayed from its first object whatever the
//! filter says about the current group (LargestObject / Next Object): what moq-lite
//! viewers get, and what `@moq/net` and `moq` expect of a relay. Before draft-20 so is
//! NextGroupStart, as the reference relay serves it; from draft-20 a relative start
//! counts groups back from the next one, and absolute starts pick from the cache.
//!
//! # Streams
//!
//! Draft-14 … -16 multiplex every request over the control stream ([`control::Mux`]),
//! draft-17+ open a bidirectional stream per request; [`control::Channel`] hides which.

mod control;
mod publisher;
mod setup;
mod stream;
mod subscriber;
#[cfg(test)]
mod tests;

use std::{
    hash::{BuildHasher, RandomState},
    sync::{Arc, atomic::AtomicBool},
};
use tracing::Instrument;

pub use control::Role;
use control::{Channel, Credit, Dispatch, Mux, NsRoute};
use moq_proto::ietf::{GoAway, Message, Namespace, RequestError, message::codes};
pub use moq_proto::ietf::{SetupOptions, Version};
pub use setup::{Established, accept, connect};
use stream::{Reader, Writer};
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    Error, Result,
    session::{
        self,
        usage::{Header, Slot, Usage},
    },
    stats::Limit,
    transport::{RecvStream, SendStream, Session},
};

/// Which request an error reply answers: the drafts number some errors per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Subscribe,
    Fetch,
    TrackStatus,
    Publish,
    PublishNamespace,
    SubscribeNamespace,
}

/// Request error codes that differ by draft (the ones that do not are in
/// [`moq_proto::ietf::message::codes`]).
mod code {
    /// TRACK_DOES_NOT_EXIST (draft-14, SUBSCRIBE / FETCH / TRACK_STATUS).
    pub(crate) const DOES_NOT_EXIST_14: u64 = 0x4;
    /// DOES_NOT_EXIST (draft-15+).
    pub(crate) const DOES_NOT_EXIST: u64 = 0x10;
    /// INVALID_RANGE (draft-14 FETCH_ERROR).
    pub(crate) const INVALID_RANGE_14: u64 = 0x5;
    /// INVALID_RANGE (draft-15+).
    pub(crate) const INVALID_RANGE: u64 = 0x11;
    /// GOING_AWAY (draft-17+).
    pub(crate) const GOING_AWAY: u64 = 0x6;
}

/// The request error code for `err` answering a `kind` request in `version`. A
/// condition a draft does not number becomes INTERNAL_ERROR, as its reader would read
/// an unknown code anyway.
pub(crate) fn error_code(err: &Error, kind: Kind, version: Version) -> u64 {
    match err {
        Error::Unauthorized(_) => codes::UNAUTHORIZED,
        Error::Timeout | Error::RequestTimeout => codes::TIMEOUT,
        Error::NotFound => match (version, kind) {
            (Version::Draft14, Kind::Subscribe | Kind::Fetch | Kind::TrackStatus) => code::DOES_NOT_EXIST_14,
            (Version::Draft14, _) => codes::INTERNAL_ERROR,
            _ => code::DOES_NOT_EXIST,
        },
        Error::GoingAway if version.has_unified_setup() => code::GOING_AWAY,
        _ => codes::INTERNAL_ERROR,
    }
}

/// The INVALID_RANGE code of `version` (FETCH).
pub(crate) fn invalid_range(version: Version) -> u64 {
    match version {
        Version::Draft14 => code::INVALID_RANGE_14,
        _ => code::INVALID_RANGE,
    }
}

/// The error reply to a `kind` request with `request_id`: draft-14's per-request
/// `…_ERROR`, REQUEST_ERROR after (without the Request ID from draft-17).
pub(crate) fn error_reply(version: Version, kind: Kind, request_id: u64, code: u64, reason: &str) -> Message {
    let mut reason = reason.to_string();
    if reason.len() > moq_proto::limits::MAX_REASON_BYTES {
        let mut end = moq_proto::limits::MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        reason.truncate(end);
    }
    let error = RequestError {
        request_id: if version.has_response_request_id() {
            request_id
        } else {
            0
        },
        code,
        retry_interval: 0,
        reason,
    };
    if version.has_request_ok() {
        return Message::RequestError(error);
    }
    match kind {
        Kind::Subscribe => Message::SubscribeError(error),
        Kind::Fetch => Message::FetchError(error),
        Kind::TrackStatus => Message::TrackStatusError(error),
        Kind::Publish => Message::PublishError(error),
        Kind::PublishNamespace => Message::PublishNamespaceError(error),
        Kind::SubscribeNamespace => Message::SubscribeNamespaceError(error),
    }
}

/// Refuse a request: its error reply, then the end of its channel.
pub(crate) async fn refuse<S: Session>(
    version: Version,
    mut channel: Channel<S>,
    kind: Kind,
    request_id: u64,
    code: u64,
    reason: &str,
) -> Result<()> {
    tracing::debug!(?kind, request_id, code, reason, "request refused");
    channel
        .send(error_reply(version, kind, request_id, code, reason))
        .await?;
    channel.finish().await
}

/// What a session's tasks share.
pub(crate) struct State {
    pub(crate) config: session::Config,
    pub(crate) version: Version,
    /// Whether we dialled or accepted (for logs).
    pub(crate) role: Role,
    pub(crate) usage: Arc<Usage>,
    /// The control stream (draft-14 … -16).
    pub(crate) mux: Option<Arc<Mux>>,
    /// Our Request IDs where no control stream grants them (draft-17+).
    credit: Credit,
    /// Upstream subscriptions by track alias, for the data streams that name them.
    pub(crate) aliases: subscriber::Aliases,
    /// The peer's announced broadcasts, mirrored into the `consume` origin.
    pub(crate) mirrors: subscriber::Mirrors,
    /// A hop id standing for the peer (its own when it declared one), so broadcasts it
    /// announced are never announced back to it.
    pub(crate) peer_hop: u64,
    /// We sent GOAWAY: new requests are refused.
    pub(crate) going_away: AtomicBool,
}

impl State {
    /// Take a slot of `limit` for the peer, or refuse (counted, logged) at its quota.
    pub(crate) fn admit(&self, limit: Limit) -> Result<Slot> {
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

    /// Start a request of ours: on the control stream (draft-14 … -16, unless
    /// `own_stream`) or on a new bidirectional stream, with the message `build` makes for
    /// its Request ID.
    pub(crate) async fn request<S: Session>(
        &self,
        session: &S,
        own_stream: bool,
        namespace: Option<(NsRoute, Namespace)>,
        build: impl FnOnce(u64) -> Message,
    ) -> Result<(u64, Channel<S>)> {
        let version = self.version;
        if let Some(mux) = &self.mux
            && !own_stream
        {
            let (id, channel) = mux.open(namespace, build).await?;
            return Ok((id, Channel::Control(channel)));
        }
        let credit = self.mux.as_ref().map_or(&self.credit, |mux| &mux.credit);
        credit
            .take(async |id| {
                let (send, recv) = session.open_bi().await?;
                let mut writer = Writer::new(send, version);
                writer.encode(&build(id)).await?;
                Ok((id, Channel::stream(writer, Reader::new(recv, version))))
            })
            .await
    }

    /// A path on the wire, relative to the session root, as a full origin path.
    pub(crate) fn absolute(&self, relative: &moq_proto::Path) -> Result<moq_proto::Path> {
        self.config
            .root
            .join(relative.as_str())
            .map_err(|e| Error::Protocol(e.to_string()))
    }
}

/// A random 62-bit id, never 0.
fn random_hop() -> u64 {
    (RandomState::new().hash_one(std::time::Instant::now()) >> 2).max(1)
}

/// Run an established session until the connection closes or a fatal error, serving
/// the peer's requests from `config.publish` and mirroring its broadcasts into
/// `config.consume`. Closes the connection with a matching code on a fatal error.
pub async fn run<S: Session>(session: S, config: session::Config, established: Established<S>) -> Result<()> {
    let Established {
        version,
        role,
        peer,
        control,
    } = established;
    let peer_hop = peer
        .other
        .get_varint(moq_proto::ietf::setup::OPTION_HOP_ID)
        .filter(|hop| *hop != 0)
        .unwrap_or_else(random_hop);
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let (events_tx, mut events) = mpsc::channel::<Dispatch>(64);

    // Our SETUP (the server answers now), then the control streams.
    let options = setup::our_options(SetupOptions::default(), role, version);
    let (mux, mut goaway_out) = match control {
        setup::Control::Bidi {
            mut writer,
            reader,
            reply,
        } => {
            if reply {
                let version_code = version.has_setup_versions().then(|| version.code());
                let sent = writer
                    .encode(&Message::ServerSetup(moq_proto::ietf::ServerSetup {
                        version: version_code,
                        options,
                    }))
                    .await;
                sent?;
            }
            let (mux, out) = Mux::new(version, role, peer.max_request_id.unwrap_or(0));
            tasks.spawn(control::read_control(mux.clone(), reader, events_tx.clone()).in_current_span());
            tasks.spawn(control::write_control(writer, out).in_current_span());
            (Some(mux), None)
        }
        setup::Control::Uni { ours, mut theirs } => {
            let ours = match ours {
                Some(ours) => ours,
                None => {
                    let mut writer = Writer::new(session.open_uni().await?, version);
                    writer
                        .encode(&moq_proto::ietf::UniStream::Setup(moq_proto::ietf::Setup {
                            options,
                        }))
                        .await?;
                    writer
                }
            };
            let events = events_tx.clone();
            tasks.spawn(
                async move {
                    while let Some(goaway) = setup::read_goaway(&mut theirs).await? {
                        if events
                            .send(Dispatch::Session(Message::GoAway(goaway)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // The peer ended its SETUP stream: nothing more can come on it.
                    std::future::pending().await
                }
                .in_current_span(),
            );
            (None, Some(ours))
        }
    };
    drop(events_tx);

    let state = Arc::new(State {
        usage: Usage::new(config.stats.clone()),
        config,
        version,
        role,
        mux,
        credit: Credit::new(role, None),
        aliases: subscriber::Aliases::default(),
        mirrors: subscriber::Mirrors::default(),
        peer_hop,
        going_away: AtomicBool::new(false),
    });
    tracing::debug!(%version, ?role, path = ?peer.path, "moq-transport session running");

    // A client announces what it publishes and asks for what the server has; a server
    // waits to be asked (the peer publishes with PUBLISH_NAMESPACE, discovers with
    // SUBSCRIBE_NAMESPACE).
    if role == Role::Client {
        if state.config.publish.is_some() {
            tasks.spawn(publisher::announce(session.clone(), state.clone()).in_current_span());
        }
        if state.config.consume.is_some() {
            tasks.spawn(subscriber::discover(session.clone(), state.clone()).in_current_span());
        }
    }

    let mut shutdown = state.config.shutdown.clone();
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
                if changed.is_ok() {
                    state.going_away.store(true, std::sync::atomic::Ordering::Relaxed);
                    let goaway = GoAway::default();
                    match (&state.mux, goaway_out.as_mut()) {
                        (Some(mux), _) => {
                            if let Err(err) = mux.send(Message::GoAway(goaway)).await {
                                tracing::debug!(%err, "GOAWAY not sent");
                            }
                        }
                        (None, Some(writer)) => {
                            if let Err(err) = setup::write_goaway(writer, goaway).await {
                                tracing::debug!(%err, "GOAWAY not sent");
                            }
                        }
                        (None, None) => {}
                    }
                }
            }
            stream = session.accept_bi() => {
                let (mut send, mut recv) = match stream {
                    Ok(stream) => stream,
                    Err(err) => break Err(Error::from(err)),
                };
                let quota = &state.config.quota;
                match Header::admit(&state.usage, quota.max_pending_streams, quota.header_timeout).await {
                    Ok(header) => {
                        let reader = Reader::with_header(recv, version, header);
                        let writer = Writer::new(send, version);
                        tasks.spawn(serve_stream(session.clone(), state.clone(), writer, reader).in_current_span());
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
                    Err(err) => break Err(Error::from(err)),
                };
                let quota = &state.config.quota;
                match Header::admit(&state.usage, quota.max_pending_streams, quota.header_timeout).await {
                    Ok(header) => {
                        let reader = Reader::with_header(recv, version, header);
                        tasks.spawn(subscriber::receive_uni(state.clone(), reader).in_current_span());
                    }
                    Err(err) => recv.stop(err.stream_code()),
                }
            }
            datagram = session.recv_datagram() => {
                match datagram {
                    Ok(datagram) => subscriber::datagram(&state, datagram),
                    Err(err) => break Err(Error::from(err)),
                }
            }
            Some(event) = events.recv() => match event {
                Dispatch::Request(msg, channel) => {
                    tasks.spawn(serve_request(session.clone(), state.clone(), msg, Channel::Control(channel)).in_current_span());
                }
                Dispatch::Session(Message::GoAway(goaway)) => {
                    tracing::info!(uri = %goaway.uri, timeout_ms = goaway.timeout, "peer is going away");
                }
                Dispatch::Session(_) | Dispatch::Done => {}
            },
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(Ok(())) => {}
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
            Error::Transport(_) | Error::Reset(_) => {}
            err => session.close(err.session_code(), &err.to_string()),
        }
    }
    if let Some(mux) = &state.mux {
        mux.close();
    }
    tasks.shutdown().await;
    // The session is gone: the peer's broadcasts linger rather than end.
    state.mirrors.clear();
    result
}

/// How long a client waits for the server's SETUP in [`run_client`].
pub const CLIENT_SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Run a client session whatever protocol its transport negotiated: moq-lite at once
/// (with `config.version` set to it), moq-transport after the SETUP exchange, whose PATH
/// is `config.setup.path` (what a raw-QUIC server authenticates).
pub async fn run_client<S: Session>(
    session: S,
    protocol: moq_proto::Protocol,
    mut config: session::Config,
) -> Result<()> {
    match protocol {
        moq_proto::Protocol::Lite(version) => {
            config.version = version;
            session::run(session, config).await
        }
        moq_proto::Protocol::Ietf(draft) => {
            let options = SetupOptions {
                path: config.setup.path.clone(),
                ..Default::default()
            };
            let established = match connect(&session, draft, options, CLIENT_SETUP_TIMEOUT).await {
                Ok(established) => established,
                Err(err) => {
                    if !matches!(err, Error::Transport(_) | Error::Reset(_)) {
                        session.close(err.session_code(), &err.to_string());
                    }
                    return Err(err);
                }
            };
            run(session, config, established).await
        }
    }
}

/// Serve one bidirectional stream the peer opened: a request on its own stream
/// (draft-16's SUBSCRIBE_NAMESPACE, every request from draft-17).
async fn serve_stream<S: Session>(
    session: S,
    state: Arc<State>,
    mut writer: Writer<S::SendStream>,
    mut reader: Reader<S::RecvStream>,
) -> Result<()> {
    let msg = match reader.decode::<Message>().await {
        Ok(msg) => msg,
        Err(err @ (Error::Decode(_) | Error::Protocol(_))) => {
            writer.reset(err.stream_code());
            reader.stop(err.stream_code());
            return Err(err);
        }
        Err(err) => {
            tracing::debug!(%err, "request stream ended before its request");
            writer.reset(err.stream_code());
            return Ok(());
        }
    };
    serve_request(session, state, msg, Channel::stream(writer, reader)).await
}

/// Serve one request of the peer, whatever carries it.
async fn serve_request<S: Session>(
    session: S,
    state: Arc<State>,
    msg: Message,
    channel: Channel<S>,
) -> Result<()> {
    let version = state.version;
    if state.going_away.load(std::sync::atomic::Ordering::Relaxed)
        && let Some((kind, id)) = request_kind(&msg)
    {
        return refuse(
            version,
            channel,
            kind,
            id,
            error_code(&Error::GoingAway, kind, version),
            "going away",
        )
        .await;
    }
    let result = match msg {
        Message::Subscribe(msg) => publisher::subscribe(session, state.clone(), msg, channel).await,
        Message::Fetch(msg) => publisher::fetch(session, state.clone(), msg, channel).await,
        Message::SubscribeNamespace(msg) => {
            publisher::subscribe_namespace(session, state.clone(), msg, channel).await
        }
        Message::PublishNamespace(msg) => {
            subscriber::publish_namespace(session, state.clone(), msg, channel).await
        }
        Message::TrackStatus(msg) => {
            refuse(
                version,
                channel,
                Kind::TrackStatus,
                msg.request_id,
                codes::NOT_SUPPORTED,
                "TRACK_STATUS is not supported",
            )
            .await
        }
        Message::Publish(msg) => {
            refuse(
                version,
                channel,
                Kind::Publish,
                msg.request_id,
                codes::NOT_SUPPORTED,
                "PUBLISH is not supported; announce with PUBLISH_NAMESPACE",
            )
            .await
        }
        Message::SubscribeTracks(msg) => {
            refuse(
                version,
                channel,
                Kind::SubscribeNamespace,
                msg.request_id,
                codes::NOT_SUPPORTED,
                "SUBSCRIBE_TRACKS is not supported",
            )
            .await
        }
        // A request type this draft lacks (or we do not know) on its own stream: say so on
        // that stream and carry on (REQUEST_ERROR names no request from draft-17).
        Message::Unknown { kind, .. } if matches!(channel, Channel::Stream { .. }) => {
            refuse(
                version,
                channel,
                Kind::Subscribe,
                0,
                codes::NOT_SUPPORTED,
                &format!("request type {kind:#x} is not supported"),
            )
            .await
        }
        other => {
            let name = other
                .message_type()
                .map_or("an unknown message", |t| t.name(version));
            Err(Error::Protocol(format!("{name} cannot start a request")))
        }
    };
    match result {
        Err(err @ (Error::Decode(_) | Error::Protocol(_))) => Err(err),
        Err(err) => {
            tracing::debug!(%err, "request ended");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// The kind and Request ID of a request message.
fn request_kind(msg: &Message) -> Option<(Kind, u64)> {
    Some(match msg {
        Message::Subscribe(m) => (Kind::Subscribe, m.request_id),
        Message::Fetch(m) => (Kind::Fetch, m.request_id),
        Message::TrackStatus(m) => (Kind::TrackStatus, m.request_id),
        Message::Publish(m) => (Kind::Publish, m.request_id),
        Message::PublishNamespace(m) => (Kind::PublishNamespace, m.request_id),
        Message::SubscribeNamespace(m) | Message::SubscribeTracks(m) => {
            (Kind::SubscribeNamespace, m.request_id)
        }
        _ => return None,
    })
}
