//! qmux over WebSocket: moq-lite for viewers without WebTransport (Safari, older
//! Firefox) and networks that block UDP.
//!
//! QMux (draft-ietf-quic-qmux) carries QUIC's streams, flow control and stream
//! limits as QUIC frames over an ordered, reliable transport. Over WebSocket each
//! binary message is one QMux record (`draft-lcurley-qmux-websocket`), and the
//! `Sec-WebSocket-Protocol` value names both the QMux wire format and the moq-lite
//! version: `qmux-01.moq-lite-05` (see [`subprotocol`]). This is what `@moq/net`
//! (through `@moq/qmux`) and the reference relay speak; where their code and the
//! drafts disagree, we follow the code:
//!
//! - qmux-01: a message holds one or more frames, at most `max_record_size`
//!   (16382) bytes; `QX_PING` keep-alives; DATAGRAM frames.
//! - qmux-00: a message holds exactly one frame of at most 16384 bytes.
//! - Transport parameters are exchanged first by both sides; send credit is zero
//!   until the peer's arrive.
//! - Stream reset and stop codes are the application's codes, unmapped (WebTransport
//!   would map them into the HTTP/3 range; a peer that does so anyway is understood).
//! - A protocol violation closes the session with CONNECTION_CLOSE code 1002 and
//!   a reason; [`Session::close`] sends APPLICATION_CLOSE.
//! - Keep-alive: a WebSocket Ping every 5 s (and a `QX_PING` on qmux-01 when we have
//!   sent nothing for that long); no message from the peer for 30 s ends the session.
//!
//! Serving it from an HTTP listener (axum, with this crate's `axum` feature):
//!
//! ```ignore
//! async fn upgrade(ws: WebSocketUpgrade, headers: HeaderMap) -> Response {
//!     let offered = headers.get_all(SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
//!     let negotiated = match qmux::subprotocol::select(offered, &allowed_versions) {
//!         Ok(negotiated) => negotiated,
//!         Err(refusal) => return (StatusCode::from_u16(refusal.status())?, refusal.to_string()).into_response(),
//!     };
//!     ws.protocols([negotiated.subprotocol.clone()]) // answer exactly the chosen one
//!         .max_message_size(qmux::MAX_MESSAGE_SIZE)
//!         .max_frame_size(qmux::MAX_MESSAGE_SIZE)
//!         .on_upgrade(move |socket| async move {
//!             let session = qmux::Session::new(qmux::Ws(socket), qmux::Role::Server, negotiated.wire, config);
//!             let session = MoqSession::new(session, Transport::WebSocket);
//!             // The URL path and `?jwt=` are the request's; run moq_core::session::run(session, ...).
//!         })
//! }
//! ```
//!
//! What it must never do: grow memory without bound for a hostile peer (every buffer
//! is bounded by the credit we advertise), `unwrap` peer data, or block the socket
//! reader on the application (data the application does not read is bounded by
//! flow control, not by stalling the socket).

mod session;
mod socket;
pub mod subprotocol;
pub mod wire;

#[cfg(test)]
mod tests;

use std::{fmt, time::Duration};

pub(crate) use session::{Closer, MAX_FRAME_00};
pub use session::{RecvStream, SendStream, Session};
pub use socket::{Incoming, Message, Receiver, Sender, Socket, SocketError, Ws, WsReceiver, WsSender};
pub use subprotocol::{Negotiated, Refusal};

/// The largest WebSocket message a qmux peer sends (a qmux-00 frame): give it to the
/// WebSocket library as its message and frame size limit, so a hostile peer cannot
/// make it buffer more than this per message (tungstenite's default is 64 MiB).
pub const MAX_MESSAGE_SIZE: usize = MAX_FRAME_00;

/// The WebSocket library's read buffer for a qmux socket. tungstenite allocates it for
/// every connection and zero-fills all of it before each read, so every connection keeps
/// this much resident (its default, 128 KiB, is most of what a WebSocket viewer cost a
/// relay beyond a QUIC one); a larger message is read in several reads.
pub const READ_BUFFER_SIZE: usize = 32 << 10;

/// The tungstenite settings for a qmux socket: messages and frames of at most
/// [`MAX_MESSAGE_SIZE`], so nothing bigger is ever buffered for a peer, and a
/// [`READ_BUFFER_SIZE`] read buffer. A server on axum sets the same on its `WebSocketUpgrade`.
pub fn websocket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

/// Which side of the WebSocket this is: it decides which stream ids are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We dialled.
    Client,
    /// We accepted.
    Server,
}

/// The QMux wire format, from the negotiated subprotocol's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wire {
    /// draft-ietf-quic-qmux-00: one frame per message.
    Qmux00,
    /// draft-ietf-quic-qmux-01: one record (one or more frames) per message.
    Qmux01,
}

impl Wire {
    /// Newest first: the order we prefer them in.
    pub const PREFERRED: [Wire; 2] = [Wire::Qmux01, Wire::Qmux00];

    /// The bare subprotocol name, `qmux-01`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qmux00 => "qmux-00",
            Self::Qmux01 => "qmux-01",
        }
    }

    /// Whether messages are records of several frames (and `QX_PING`, datagrams exist).
    pub fn records(self) -> bool {
        self == Self::Qmux01
    }
}

impl fmt::Display for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits and timers of a qmux session. The same values are advertised to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bidirectional streams the peer may have open at once (default 1024; moq-lite
    /// opens one per subscription). The limit is raised as streams close.
    pub max_bidi_streams: u64,
    /// Unidirectional streams the peer may have open at once (default 1024; one per group).
    pub max_uni_streams: u64,
    /// Bytes the peer may have sent that we have not read yet, over all streams
    /// (default 4 MiB): the bound on what one session makes us buffer.
    pub max_data: u64,
    /// Bytes the peer may have sent on one stream that we have not read yet (default 1 MiB).
    pub max_stream_data: u64,
    /// Bytes we accept from the application per stream before a write waits for the
    /// peer to take them (default 256 KiB). A shared buffer is queued whole.
    pub send_buffer: usize,
    /// A session that receives nothing for this long ends (default 30 s). Advertised as
    /// `max_idle_timeout`.
    pub idle_timeout: Duration,
    /// Send a WebSocket Ping (and a `QX_PING` on qmux-01 when otherwise idle) this
    /// often (default 5 s); `None` disables it.
    pub keep_alive: Option<Duration>,
    /// A peer that sends no transport parameters within this long is dropped (default 10 s).
    pub handshake_timeout: Duration,
    /// Accept DATAGRAM frames on qmux-01 (default true); at most 64 wait to be read.
    pub datagrams: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_bidi_streams: 1024,
            max_uni_streams: 1024,
            max_data: 4 << 20,
            max_stream_data: 1 << 20,
            send_buffer: 256 << 10,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(5)),
            handshake_timeout: Duration::from_secs(10),
            datagrams: true,
        }
    }
}

/// Why a qmux session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record could not be decoded.
    #[error("malformed record: {0}")]
    Wire(#[from] wire::WireError),
    /// The peer broke a protocol rule.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer sent more than the credit we gave it.
    #[error("flow control violation: {0}")]
    FlowControl(String),
    /// The peer opened more streams than we allowed.
    #[error("stream limit exceeded: {0}")]
    StreamLimit(String),
    /// Nothing arrived for the idle timeout.
    #[error("no message from the peer for {0:?}")]
    IdleTimeout(Duration),
    /// The peer's transport parameters never arrived.
    #[error("the peer sent no transport parameters within {0:?}")]
    HandshakeTimeout(Duration),
    /// The WebSocket failed.
    #[error("WebSocket error: {0}")]
    Socket(String),
    /// The WebSocket closed without a qmux close.
    #[error("the WebSocket closed")]
    SocketClosed,
    /// The peer closed the session (APPLICATION_CLOSE).
    #[error("closed by the peer with code {code}: {reason}")]
    PeerClosed {
        /// The peer's application code.
        code: u64,
        /// The peer's reason.
        reason: String,
    },
    /// The peer closed the session because of an error it saw (CONNECTION_CLOSE).
    #[error("the peer closed the session with error {code}: {reason}")]
    PeerError {
        /// The transport error code (1002: protocol violation).
        code: u64,
        /// The peer's reason.
        reason: String,
    },
    /// We closed the session.
    #[error("closed locally with code {code}: {reason}")]
    Closed {
        /// Our application code.
        code: u64,
        /// Our reason.
        reason: String,
    },
}

impl Error {
    /// Whether the peer broke the protocol (we tell it with CONNECTION_CLOSE).
    fn is_violation(&self) -> bool {
        matches!(
            self,
            Self::Wire(_) | Self::Protocol(_) | Self::FlowControl(_) | Self::StreamLimit(_)
        )
    }
}

/// A stream error code off the wire. The ecosystem sends application codes as they
/// are; a peer that maps them into the HTTP/3 range like WebTransport does is
/// understood too (the two ranges do not overlap for 32-bit codes).
pub(crate) fn decode_code(code: u64) -> u32 {
    web_transport_quinn::proto::error_from_http3(code)
        .unwrap_or_else(|| u32::try_from(code).unwrap_or(u32::MAX))
}
