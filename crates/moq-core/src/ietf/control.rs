//! Requests and their channels.
//!
//! Every moq-transport request (SUBSCRIBE, FETCH, PUBLISH_NAMESPACE, ...) has a channel
//! its two ends exchange messages on until it ends:
//! - draft-17+: the request's own bidirectional stream (draft-16 opens one for
//!   SUBSCRIBE_NAMESPACE too). Its FIN or reset ends the request.
//! - draft-14 … -16: a slice of the one control stream. [`Mux`] reads that stream and
//!   routes each message to its request by Request ID (or, for draft-14/15's namespace
//!   messages, by namespace); a request's end is a message (UNSUBSCRIBE, FETCH_CANCEL,
//!   PUBLISH_NAMESPACE_DONE, ...).
//!
//! [`Channel`] hides which, so each request is handled once for every draft.
//!
//! Request IDs: the client uses even ones from 0, the server odd ones from 1, each
//! advancing by 2. Up to draft-16 the peer grants how far we may go (MAX_REQUEST_ID,
//! [`Credit`]) and we grant it a window that slides as it uses it; a request past the
//! grant, of the wrong parity or going backwards closes the session (draft-14 §9.1).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use moq_proto::ietf::{Message, Namespace, RequestId, RequestTarget, Version};
use tokio::sync::{mpsc, watch};

use super::stream::{Reader, Writer};
use crate::{
    Error, Result,
    transport::{RecvStream, SendStream, Session},
};

/// Request IDs we let the peer have outstanding beyond its last one (draft-14 … -16).
pub(crate) const WINDOW: u64 = 2 * 1024;

/// How long a request waits for the peer to grant a Request ID (MAX_REQUEST_ID).
const CREDIT_WAIT: Duration = Duration::from_secs(10);

/// Messages waiting for one request's handler. A peer that floods one request with
/// updates or cancels past this is breaking the protocol.
const INBOX: usize = 64;

/// Messages waiting for the control stream writer.
const OUTBOX: usize = 256;

/// Which side of the connection we are: it sets the parity of our Request IDs and who
/// sends which SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialled: even Request IDs.
    Client,
    /// We accepted: odd Request IDs.
    Server,
}

impl Role {
    /// The first Request ID this side uses.
    pub(crate) fn first_id(self) -> u64 {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }

    pub(crate) fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

/// The Request IDs we may use: the next one, and how far the peer lets us go.
#[derive(Debug)]
pub(crate) struct Credit {
    next: tokio::sync::Mutex<u64>,
    /// Exclusive bound from the peer's MAX_REQUEST_ID; `None` without flow control
    /// (draft-17+).
    max: watch::Sender<Option<u64>>,
}

impl Credit {
    pub(crate) fn new(role: Role, max: Option<u64>) -> Self {
        Self {
            next: tokio::sync::Mutex::new(role.first_id()),
            max: watch::channel(max).0,
        }
    }

    /// The peer raised our limit (MAX_REQUEST_ID). A limit that goes down is a
    /// protocol violation (draft-14 §9.4).
    pub(crate) fn grant(&self, max: u64) -> Result<()> {
        let mut lowered = false;
        self.max.send_if_modified(|m| match *m {
            Some(old) if max < old => {
                lowered = true;
                false
            }
            _ => {
                *m = Some(max);
                true
            }
        });
        match lowered {
            true => Err(Error::Protocol("MAX_REQUEST_ID went down".into())),
            false => Ok(()),
        }
    }

    /// Take the next Request ID, waiting (a while) for the peer to allow it. Held while
    /// `then` runs, so IDs leave in the order they were taken.
    pub(crate) async fn take<T>(&self, then: impl AsyncFnOnce(u64) -> Result<T>) -> Result<T> {
        let mut next = self.next.lock().await;
        let id = *next;
        let mut max = self.max.subscribe();
        let allowed = tokio::time::timeout(CREDIT_WAIT, async {
            max.wait_for(|m| m.is_none_or(|m| id < m)).await.map(|_| ())
        })
        .await;
        match allowed {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::Cancelled),
            Err(_) => return Err(Error::Limit("the peer's MAX_REQUEST_ID")),
        }
        *next = id.saturating_add(2);
        then(id).await
    }
}

/// The Request IDs the peer may use (draft-14 … -16): where its next one must be, and
/// the bound we granted.
#[derive(Debug)]
pub(crate) struct Window {
    /// The lowest ID the next request may have.
    expected: u64,
    /// Exclusive bound we granted.
    granted: u64,
}

impl Window {
    pub(crate) fn new(role: Role) -> Self {
        let first = role.peer().first_id();
        Self {
            expected: first,
            granted: first.saturating_add(WINDOW),
        }
    }

    /// The bound we grant in our SETUP.
    pub(crate) fn granted(&self) -> u64 {
        self.granted
    }

    /// Check a new request's ID; returns a new bound to grant when the window ran low.
    pub(crate) fn admit(&mut self, id: u64) -> Result<Option<u64>> {
        if id % 2 != self.expected % 2 {
            return Err(Error::Protocol(format!("request id {id} has our parity")));
        }
        if id < self.expected {
            return Err(Error::Protocol(format!(
                "request id {id} went backwards (expected at least {})",
                self.expected
            )));
        }
        if id >= self.granted {
            return Err(Error::Protocol(format!(
                "request id {id} is past the MAX_REQUEST_ID {} we granted",
                self.granted
            )));
        }
        self.expected = id.saturating_add(2);
        if self.granted.saturating_sub(self.expected) < WINDOW / 2 {
            self.granted = self.expected.saturating_add(WINDOW);
            return Ok(Some(self.granted));
        }
        Ok(None)
    }
}

/// Which namespace-keyed route a draft-14/15 message follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NsRoute {
    /// The peer's PUBLISH_NAMESPACE, ended by its PUBLISH_NAMESPACE_DONE.
    PeerPublish,
    /// Our PUBLISH_NAMESPACE, cancelled by the peer's PUBLISH_NAMESPACE_CANCEL.
    OurPublish,
    /// The peer's SUBSCRIBE_NAMESPACE, ended by UNSUBSCRIBE_NAMESPACE (draft-14 text).
    PeerPrefix,
}

#[derive(Debug, Default)]
struct Routes {
    by_id: HashMap<u64, mpsc::Sender<Message>>,
    by_namespace: HashMap<(NsRoute, Namespace), u64>,
    closed: bool,
}

/// The draft-14 … -16 control stream, shared by every request on it.
#[derive(Debug)]
pub(crate) struct Mux {
    version: Version,
    out: mpsc::Sender<Message>,
    routes: Mutex<Routes>,
    /// The IDs the peer may use.
    window: Mutex<Window>,
    /// The IDs we may use.
    pub(crate) credit: Credit,
}

/// What one control stream message means to the session.
#[derive(Debug)]
pub(crate) enum Dispatch {
    /// Routed to a request (or dropped: a late message for one that ended).
    Done,
    /// A new request from the peer, with its channel.
    Request(Message, ControlChannel),
    /// A session-level message for the driver (GOAWAY).
    Session(Message),
}

impl Mux {
    /// A mux writing to `out`; the peer granted us `max` (its SETUP's MAX_REQUEST_ID).
    pub(crate) fn new(version: Version, role: Role, max: u64) -> (Arc<Self>, mpsc::Receiver<Message>) {
        let (out, rx) = mpsc::channel(OUTBOX);
        let mux = Arc::new(Self {
            version,
            out,
            routes: Mutex::default(),
            window: Mutex::new(Window::new(role)),
            credit: Credit::new(role, Some(max)),
        });
        (mux, rx)
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bound our SETUP grants the peer.
    pub(crate) fn granted(&self) -> u64 {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).granted()
    }

    /// Queue a message for the control stream.
    pub(crate) async fn send(&self, msg: Message) -> Result<()> {
        self.out
            .send(msg)
            .await
            .map_err(|_| Error::Transport("the control stream is closed".into()))
    }

    fn register(
        self: &Arc<Self>,
        id: u64,
        namespace: Option<(NsRoute, Namespace)>,
    ) -> Result<ControlChannel> {
        let (tx, inbox) = mpsc::channel(INBOX);
        let mut routes = self.routes();
        if routes.closed {
            return Err(Error::Cancelled);
        }
        if routes.by_id.insert(id, tx).is_some() {
            return Err(Error::Protocol(format!("request id {id} is already in use")));
        }
        if let Some(key) = namespace.clone() {
            routes.by_namespace.insert(key, id);
        }
        Ok(ControlChannel {
            id,
            mux: self.clone(),
            inbox,
            namespace,
        })
    }

    /// Start a request of ours: take a Request ID (waiting for credit), register the
    /// route its answers follow, and queue the message `build` makes for that ID.
    pub(crate) async fn open(
        self: &Arc<Self>,
        namespace: Option<(NsRoute, Namespace)>,
        build: impl FnOnce(u64) -> Message,
    ) -> Result<(u64, ControlChannel)> {
        self.credit
            .take(async |id| {
                let channel = self.register(id, namespace)?;
                self.send(build(id)).await?;
                Ok((id, channel))
            })
            .await
    }

    /// Check a Request ID the peer just used, and grant more when its window runs low.
    fn admit(&self, id: u64) -> Result<()> {
        let grant = self.window.lock().unwrap_or_else(|e| e.into_inner()).admit(id)?;
        if let Some(max) = grant
            && self.out.try_send(Message::MaxRequestId(RequestId(max))).is_err()
        {
            // Not fatal: the peer says REQUESTS_BLOCKED and we grant again then.
            tracing::debug!(max, "control queue full; MAX_REQUEST_ID deferred");
        }
        Ok(())
    }

    fn deliver(&self, id: u64, msg: Message) -> Result<Dispatch> {
        let tx = self.routes().by_id.get(&id).cloned();
        match tx {
            Some(tx) => match tx.try_send(msg) {
                Ok(()) => Ok(Dispatch::Done),
                // The handler finished meanwhile.
                Err(mpsc::error::TrySendError::Closed(_)) => Ok(Dispatch::Done),
                Err(mpsc::error::TrySendError::Full(_)) => Err(Error::Protocol(format!(
                    "more than {INBOX} unanswered messages for request {id}"
                ))),
            },
            None => {
                tracing::debug!(id, kind = ?msg.message_type(), "message for a request that is not open; ignored");
                Ok(Dispatch::Done)
            }
        }
    }

    fn by_target(&self, route: NsRoute, target: &RequestTarget) -> Option<u64> {
        match target {
            RequestTarget::Request(id) => Some(*id),
            RequestTarget::Namespace(ns) => self.routes().by_namespace.get(&(route, ns.clone())).copied(),
        }
    }

    /// Route one message read from the control stream.
    pub(crate) fn dispatch(self: &Arc<Self>, msg: Message) -> Result<Dispatch> {
        use Message as M;
        if let Some(id) = msg.new_request_id()
            && !matches!(msg, M::RequestUpdate(_))
        {
            self.admit(id)?;
            let namespace = match &msg {
                M::PublishNamespace(m) if !self.version.has_namespace_done_by_request() => {
                    Some((NsRoute::PeerPublish, m.namespace.clone()))
                }
                M::SubscribeNamespace(m) => Some((NsRoute::PeerPrefix, m.prefix.clone())),
                _ => None,
            };
            let channel = self.register(id, namespace)?;
            return Ok(Dispatch::Request(msg, channel));
        }
        let id = match &msg {
            M::RequestUpdate(m) => {
                self.admit(m.request_id)?;
                Some(m.existing_request_id)
            }
            M::Unsubscribe(id) | M::FetchCancel(id) => Some(id.0),
            M::SubscribeOk(m) => Some(m.request_id),
            M::RequestOk(m) => Some(m.request_id),
            M::RequestError(m)
            | M::SubscribeError(m)
            | M::FetchError(m)
            | M::PublishError(m)
            | M::TrackStatusError(m)
            | M::PublishNamespaceError(m)
            | M::SubscribeNamespaceError(m) => Some(m.request_id),
            M::TrackStatusOk(m) => Some(m.request_id),
            M::FetchOk(m) => Some(m.request_id),
            M::PublishOk(m) => Some(m.request_id),
            M::PublishDone(m) => Some(m.request_id),
            M::PublishNamespaceOk(id) | M::SubscribeNamespaceOk(id) => Some(id.0),
            M::PublishNamespaceDone(m) => self.by_target(NsRoute::PeerPublish, &m.target),
            M::PublishNamespaceCancel(m) => self.by_target(NsRoute::OurPublish, &m.target),
            M::UnsubscribeNamespace(m) => self.by_target(NsRoute::PeerPrefix, &m.target),
            M::MaxRequestId(max) => {
                self.credit.grant(max.0)?;
                return Ok(Dispatch::Done);
            }
            M::RequestsBlocked(at) => {
                tracing::debug!(at = at.0, "peer is blocked on request ids");
                let granted = self.granted();
                if self.out.try_send(M::MaxRequestId(RequestId(granted))).is_err() {
                    tracing::debug!("control queue full; MAX_REQUEST_ID not repeated");
                }
                return Ok(Dispatch::Done);
            }
            M::GoAway(_) => return Ok(Dispatch::Session(msg)),
            M::Unknown { kind, .. } => {
                return Err(Error::Protocol(format!(
                    "unknown message type {kind:#x} on the control stream"
                )));
            }
            other => {
                return Err(Error::Protocol(format!(
                    "{} is not expected on the control stream",
                    other
                        .message_type()
                        .map_or("this message", |t| t.name(self.version))
                )));
            }
        };
        match id {
            Some(id) => self.deliver(id, msg),
            None => {
                tracing::debug!(kind = ?msg.message_type(), "namespace message for nothing open; ignored");
                Ok(Dispatch::Done)
            }
        }
    }

    /// The control stream ended: every request on it ends too.
    pub(crate) fn close(&self) {
        let mut routes = self.routes();
        routes.closed = true;
        routes.by_id.clear();
        routes.by_namespace.clear();
    }
}

/// A request's slice of the control stream (draft-14 … -16). Dropping it forgets the
/// request's routes.
#[derive(Debug)]
pub(crate) struct ControlChannel {
    id: u64,
    mux: Arc<Mux>,
    inbox: mpsc::Receiver<Message>,
    namespace: Option<(NsRoute, Namespace)>,
}

impl Drop for ControlChannel {
    fn drop(&mut self) {
        let mut routes = self.mux.routes();
        routes.by_id.remove(&self.id);
        if let Some(key) = &self.namespace
            && routes.by_namespace.get(key) == Some(&self.id)
        {
            routes.by_namespace.remove(key);
        }
    }
}

/// The message channel of one request.
pub(crate) enum Channel<S: Session> {
    /// Its own bidirectional stream.
    Stream {
        /// Our half.
        writer: Writer<S::SendStream>,
        /// The peer's half.
        reader: Reader<S::RecvStream>,
    },
    /// Its slice of the control stream.
    Control(ControlChannel),
}

impl<S: Session> Channel<S> {
    /// A channel on a bidirectional stream.
    pub(crate) fn stream(writer: Writer<S::SendStream>, reader: Reader<S::RecvStream>) -> Self {
        Self::Stream { writer, reader }
    }

    /// Send one message.
    pub(crate) async fn send(&mut self, msg: Message) -> Result<()> {
        match self {
            Self::Stream { writer, .. } => writer.encode(&msg).await,
            Self::Control(c) => c.mux.send(msg).await,
        }
    }

    /// The next message for this request; `None` when the peer ended its side (a FIN on
    /// a request stream; the control stream's end).
    pub(crate) async fn recv(&mut self) -> Result<Option<Message>> {
        match self {
            Self::Stream { reader, .. } => reader.decode_maybe::<Message>().await,
            Self::Control(c) => Ok(c.inbox.recv().await),
        }
    }

    /// End our side cleanly (FIN); a control slice just stops being routed.
    pub(crate) async fn finish(mut self) -> Result<()> {
        match &mut self {
            Self::Stream { writer, .. } => writer.finish().await,
            Self::Control(_) => Ok(()),
        }
    }

    /// End the request abruptly: reset our half and stop the peer's (request streams).
    pub(crate) fn reset(mut self, code: u32) {
        if let Self::Stream { writer, reader } = &mut self {
            writer.reset(code);
            reader.stop(code);
        }
    }
}

/// Read the control stream (draft-14 … -16) until it ends, routing what it carries;
/// new requests and session messages go to `events`.
pub(crate) async fn read_control<R: RecvStream>(
    mux: Arc<Mux>,
    mut reader: Reader<R>,
    events: mpsc::Sender<Dispatch>,
) -> Result<()> {
    let result = async {
        loop {
            let Some(msg) = reader.decode_maybe::<Message>().await? else {
                return Err(Error::Protocol("the peer ended the control stream".into()));
            };
            match mux.dispatch(msg)? {
                Dispatch::Done => {}
                event => {
                    if events.send(event).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    mux.close();
    result
}

/// Write what requests queue for the control stream, in order, until every sender is
/// gone.
pub(crate) async fn write_control<W: SendStream>(
    mut writer: Writer<W>,
    mut out: mpsc::Receiver<Message>,
) -> Result<()> {
    while let Some(msg) = out.recv().await {
        writer.queue(&msg)?;
        // Send whatever else is queued in the same write.
        while let Ok(more) = out.try_recv() {
            writer.queue(&more)?;
        }
        writer.flush().await?;
    }
    writer.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_checks_parity_order_and_bound() {
        let mut window = Window::new(Role::Server);
        // The client's IDs are even.
        assert!(window.admit(1).is_err());
        assert_eq!(window.admit(0).unwrap(), None);
        assert!(window.admit(0).is_err(), "backwards");
        // Skipping ahead is allowed (a cancelled request never sent).
        assert_eq!(window.admit(4).unwrap(), None);
        assert!(window.admit(WINDOW).is_err(), "past the grant");
        // Using half the window grants more.
        let mut grant = None;
        let mut id = 6;
        while grant.is_none() {
            grant = window.admit(id).unwrap();
            id += 2;
        }
        assert_eq!(grant, Some(id + WINDOW));
    }

    #[tokio::test(start_paused = true)]
    async fn credit_waits_for_max_request_id() {
        let credit = Arc::new(Credit::new(Role::Client, Some(2)));
        assert_eq!(credit.take(async |id| Ok(id)).await.unwrap(), 0);
        let waiting = tokio::spawn({
            let credit = credit.clone();
            async move { credit.take(async |id| Ok(id)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        credit.grant(4).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 2);
        assert!(credit.grant(3).is_err(), "a lower MAX_REQUEST_ID is a violation");
        // No credit within the wait: the request fails.
        let err = credit.take(async |id| Ok(id)).await.unwrap_err();
        assert_eq!(err, Error::Limit("the peer's MAX_REQUEST_ID"));
    }
}
