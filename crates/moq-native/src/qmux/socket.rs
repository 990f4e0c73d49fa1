//! What qmux needs from a WebSocket: send a binary message, receive the next
//! message, ping, close. Adapters for `tokio-tungstenite` (the client, tests) and,
//! with the `axum` feature, for axum's `WebSocket` (a relay's HTTP listener).
//!
//! The two halves run concurrently in the session's driver, so a socket is split
//! once at the start.

use std::{fmt, future::Future};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt, stream::SplitSink, stream::SplitStream};

/// One message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A binary message: one QMux record.
    Binary(Bytes),
    /// A text message, which the binding forbids.
    Text,
    /// A WebSocket Ping or Pong: proof the peer is alive, nothing more. (The
    /// WebSocket library answers Pings itself.)
    Control,
    /// The peer's Close frame.
    Close,
}

/// A WebSocket failure, as text for logs (the libraries' error types differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketError(pub String);

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SocketError {}

/// A message-oriented socket qmux can run over: a WebSocket, or an in-memory pipe in tests.
pub trait Socket: Send + 'static {
    /// The sending half.
    type Sender: Sender;
    /// The receiving half.
    type Receiver: Receiver;

    /// Split into halves that can be used at the same time.
    fn split(self) -> (Self::Sender, Self::Receiver);
}

/// The sending half of a [`Socket`].
pub trait Sender: Send + 'static {
    /// Send one binary message; resolves once the socket accepted it (backpressure).
    fn send(&mut self, message: Bytes) -> impl Future<Output = Result<(), SocketError>> + Send;
    /// Send a keep-alive Ping.
    fn ping(&mut self) -> impl Future<Output = Result<(), SocketError>> + Send;
    /// Send a Close frame and flush.
    fn close(&mut self) -> impl Future<Output = Result<(), SocketError>> + Send;
}

/// The receiving half of a [`Socket`].
pub trait Receiver: Send + 'static {
    /// The next message; `None` once the connection is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, SocketError>>> + Send;
}

/// A WebSocket message type qmux can use: the library's own `Message`.
pub trait Message: Send + Sized + 'static {
    /// A binary message.
    fn binary(data: Bytes) -> Self;
    /// A keep-alive Ping.
    fn ping() -> Self;
    /// A Close frame without a status (the reason travels in qmux's close frames).
    fn close() -> Self;
    /// What this message means to qmux.
    fn classify(self) -> Incoming;
}

/// Any `Sink + Stream` of WebSocket messages (tokio-tungstenite's `WebSocketStream`,
/// axum's `WebSocket`) as a qmux [`Socket`].
///
/// ```ignore
/// let session = qmux::Session::new(qmux::Ws(socket), qmux::Role::Server, negotiated.wire, config);
/// ```
#[derive(Debug)]
pub struct Ws<T>(pub T);

/// The sending half of a [`Ws`].
pub struct WsSender<T, M>(SplitSink<T, M>);

/// The receiving half of a [`Ws`].
pub struct WsReceiver<T>(SplitStream<T>);

impl<T, M> fmt::Debug for WsSender<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WsSender")
    }
}

impl<T> fmt::Debug for WsReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WsReceiver")
    }
}

impl<T, M, E> Socket for Ws<T>
where
    T: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Send + 'static,
    M: Message,
    E: fmt::Display + Send + 'static,
{
    type Sender = WsSender<T, M>;
    type Receiver = WsReceiver<T>;

    fn split(self) -> (Self::Sender, Self::Receiver) {
        let (sink, stream) = StreamExt::split(self.0);
        (WsSender(sink), WsReceiver(stream))
    }
}

fn socket_error(err: impl fmt::Display) -> SocketError {
    SocketError(err.to_string())
}

impl<T, M, E> Sender for WsSender<T, M>
where
    T: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Send + 'static,
    M: Message,
    E: fmt::Display + Send + 'static,
{
    async fn send(&mut self, message: Bytes) -> Result<(), SocketError> {
        self.0.send(M::binary(message)).await.map_err(socket_error)
    }

    async fn ping(&mut self) -> Result<(), SocketError> {
        self.0.send(M::ping()).await.map_err(socket_error)
    }

    async fn close(&mut self) -> Result<(), SocketError> {
        self.0.send(M::close()).await.map_err(socket_error)?;
        self.0.close().await.map_err(socket_error)
    }
}

impl<T, M, E> Receiver for WsReceiver<T>
where
    T: Stream<Item = Result<M, E>> + Sink<M, Error = E> + Send + 'static,
    M: Message,
    E: fmt::Display + Send + 'static,
{
    async fn recv(&mut self) -> Option<Result<Incoming, SocketError>> {
        let message = self.0.next().await?;
        Some(message.map(M::classify).map_err(socket_error))
    }
}

impl Message for tokio_tungstenite::tungstenite::Message {
    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn ping() -> Self {
        Self::Ping(Bytes::new())
    }

    fn close() -> Self {
        Self::Close(None)
    }

    fn classify(self) -> Incoming {
        match self {
            Self::Binary(data) => Incoming::Binary(data),
            Self::Text(_) => Incoming::Text,
            Self::Ping(_) | Self::Pong(_) | Self::Frame(_) => Incoming::Control,
            Self::Close(_) => Incoming::Close,
        }
    }
}

#[cfg(feature = "axum")]
impl Message for axum::extract::ws::Message {
    fn binary(data: Bytes) -> Self {
        Self::Binary(data)
    }

    fn ping() -> Self {
        Self::Ping(Bytes::new())
    }

    fn close() -> Self {
        Self::Close(None)
    }

    fn classify(self) -> Incoming {
        match self {
            Self::Binary(data) => Incoming::Binary(data),
            Self::Text(_) => Incoming::Text,
            Self::Ping(_) | Self::Pong(_) => Incoming::Control,
            Self::Close(_) => Incoming::Close,
        }
    }
}

/// An in-memory message pipe, for tests of sessions without sockets.
#[cfg(test)]
pub(crate) mod mem {
    use super::*;
    use tokio::sync::mpsc;

    /// One end of a pipe; messages sent on one end arrive at the other, in order.
    #[derive(Debug)]
    pub(crate) struct End {
        tx: mpsc::UnboundedSender<Incoming>,
        rx: mpsc::UnboundedReceiver<Incoming>,
    }

    /// Two connected ends.
    pub(crate) fn pair() -> (End, End) {
        let (a_tx, b_rx) = mpsc::unbounded_channel();
        let (b_tx, a_rx) = mpsc::unbounded_channel();
        (End { tx: a_tx, rx: a_rx }, End { tx: b_tx, rx: b_rx })
    }

    impl End {
        /// Split into raw halves, for tests that play a (hostile) peer by hand.
        pub(crate) fn into_raw(self) -> (mpsc::UnboundedSender<Incoming>, mpsc::UnboundedReceiver<Incoming>) {
            (self.tx, self.rx)
        }
    }

    #[derive(Debug)]
    pub(crate) struct MemSender(mpsc::UnboundedSender<Incoming>);

    #[derive(Debug)]
    pub(crate) struct MemReceiver(mpsc::UnboundedReceiver<Incoming>);

    impl Socket for End {
        type Sender = MemSender;
        type Receiver = MemReceiver;

        fn split(self) -> (MemSender, MemReceiver) {
            (MemSender(self.tx), MemReceiver(self.rx))
        }
    }

    fn gone() -> SocketError {
        SocketError("pipe closed".to_string())
    }

    impl Sender for MemSender {
        async fn send(&mut self, message: Bytes) -> Result<(), SocketError> {
            self.0.send(Incoming::Binary(message)).map_err(|_| gone())
        }

        async fn ping(&mut self) -> Result<(), SocketError> {
            self.0.send(Incoming::Control).map_err(|_| gone())
        }

        async fn close(&mut self) -> Result<(), SocketError> {
            self.0.send(Incoming::Close).map_err(|_| gone())
        }
    }

    impl Receiver for MemReceiver {
        async fn recv(&mut self) -> Option<Result<Incoming, SocketError>> {
            self.0.recv().await.map(Ok)
        }
    }
}
