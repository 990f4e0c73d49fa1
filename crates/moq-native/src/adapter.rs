//! Adapts raw QUIC, WebTransport and qmux-over-WebSocket sessions to the transport
//! traits the moq-core session drivers are written against, as one type:
//! [`MoqSession`] (and [`Connection`] for what a client or server hands over).
//!
//! Stream error codes: WebTransport maps application codes into the HTTP/3
//! range (web-transport-quinn does that). On raw QUIC we send the same mapped
//! form, as the ecosystem's tools expect it there too, and read either form.
//! qmux sends application codes unmapped, as `@moq/qmux` does, and reads either form.
//!
//! Stream credit: a QUIC connection starts with [`quic::Config::initial_streams`] per
//! direction, because quinn allocates the state of every stream the peer may open as
//! soon as it is granted. Every stream the peer opens and we accept counts as open until
//! we drop it; while more than half of the credit is open, it doubles, up to
//! `max_*_streams`. (qmux allocates nothing per granted stream: it grants its limit
//! up front.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use moq_core::transport::{self, TransportError};

use crate::{Session, Transport, qmux, quic};

/// The connection under a moq session: QUIC (raw or WebTransport) or qmux over a
/// WebSocket. What [`client::Connected`](crate::client::Connected) carries.
// A QUIC session is big and a qmux one is a pointer; boxing would only move the cost
// to every access, and a connection is moved once per session.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Connection {
    /// Raw QUIC or WebTransport.
    Quic(Session),
    /// qmux over a WebSocket.
    WebSocket(qmux::Session),
}

impl From<Session> for Connection {
    fn from(session: Session) -> Self {
        Self::Quic(session)
    }
}

impl From<qmux::Session> for Connection {
    fn from(session: qmux::Session) -> Self {
        Self::WebSocket(session)
    }
}

impl Connection {
    /// Close the connection with an application code and a reason.
    pub fn close(&self, code: u32, reason: &str) {
        match self {
            Self::Quic(session) => session.close(code, reason.as_bytes()),
            Self::WebSocket(session) => session.close(code, reason),
        }
    }

    /// The QUIC (or WebTransport) session, if this is one.
    pub fn quic(&self) -> Option<&Session> {
        match self {
            Self::Quic(session) => Some(session),
            Self::WebSocket(_) => None,
        }
    }

    /// The qmux session, if this is one.
    pub fn websocket(&self) -> Option<&qmux::Session> {
        match self {
            Self::Quic(_) => None,
            Self::WebSocket(session) => Some(session),
        }
    }

    /// The current round-trip time estimate (QUIC only).
    pub fn rtt(&self) -> Option<Duration> {
        self.quic().map(|s| {
            let conn: &quinn::Connection = s;
            conn.rtt()
        })
    }

    /// The QUIC connection's statistics (QUIC only).
    pub fn stats(&self) -> Option<quinn::ConnectionStats> {
        self.quic().map(|s| {
            let conn: &quinn::Connection = s;
            conn.stats()
        })
    }
}

/// A session usable by `moq_core::session::run`: raw QUIC, WebTransport or qmux.
#[derive(Clone, Debug)]
pub struct MoqSession {
    inner: Inner,
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Inner {
    Quic {
        session: Session,
        raw: bool,
        bi: Arc<Credit>,
        uni: Arc<Credit>,
    },
    WebSocket(qmux::Session),
}

impl MoqSession {
    /// Wrap a session negotiated over `transport` by an endpoint with the default
    /// [`quic::Config`]. A qmux session is always [`Transport::WebSocket`].
    pub fn new(session: impl Into<Connection>, transport: Transport) -> Self {
        Self::with_config(session, transport, &quic::Config::default())
    }

    /// Wrap a session negotiated over `transport` by an endpoint configured with
    /// `config`, so the stream credit grows from where that configuration started it
    /// (QUIC only; a qmux session has its own [`qmux::Config`]).
    pub fn with_config(session: impl Into<Connection>, transport: Transport, config: &quic::Config) -> Self {
        let inner = match session.into() {
            Connection::WebSocket(session) => Inner::WebSocket(session),
            Connection::Quic(session) => Inner::Quic {
                session,
                raw: transport == Transport::Quic,
                bi: Credit::new(
                    Dir::Bi,
                    config.initial(config.max_bidi_streams),
                    config.max_bidi_streams,
                ),
                uni: Credit::new(
                    Dir::Uni,
                    config.initial(config.max_uni_streams),
                    config.max_uni_streams,
                ),
            },
        };
        Self { inner }
    }

    /// How the session is carried.
    pub fn transport(&self) -> Transport {
        match &self.inner {
            Inner::Quic { raw: true, .. } => Transport::Quic,
            Inner::Quic { raw: false, .. } => Transport::WebTransport,
            Inner::WebSocket(_) => Transport::WebSocket,
        }
    }

    /// The underlying QUIC or WebTransport session (`None` for qmux).
    pub fn session(&self) -> Option<&Session> {
        match &self.inner {
            Inner::Quic { session, .. } => Some(session),
            Inner::WebSocket(_) => None,
        }
    }

    /// The underlying qmux session (`None` for QUIC).
    pub fn websocket(&self) -> Option<&qmux::Session> {
        match &self.inner {
            Inner::Quic { .. } => None,
            Inner::WebSocket(session) => Some(session),
        }
    }

    /// The QUIC connection, for statistics (`None` for qmux).
    pub fn quic_connection(&self) -> Option<&quinn::Connection> {
        self.session().map(|s| {
            let conn: &quinn::Connection = s;
            conn
        })
    }

    /// The current round-trip time estimate (QUIC only).
    pub fn rtt(&self) -> Option<Duration> {
        self.quic_connection().map(quinn::Connection::rtt)
    }

    /// The QUIC connection's statistics (QUIC only).
    pub fn stats(&self) -> Option<quinn::ConnectionStats> {
        self.quic_connection().map(quinn::Connection::stats)
    }
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    Bi,
    Uni,
}

/// The stream limit we granted the peer in one direction, and how much of it is open.
#[derive(Debug)]
struct Credit {
    dir: Dir,
    open: AtomicU32,
    limit: AtomicU32,
    max: u32,
}

impl Credit {
    fn new(dir: Dir, limit: u32, max: u32) -> Arc<Self> {
        Arc::new(Self {
            dir,
            open: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            max,
        })
    }

    /// Count an accepted stream as open, and grow the limit if the peer is using it.
    fn opened(self: &Arc<Self>, conn: &quinn::Connection) -> Open {
        let open = self.open.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let limit = self.limit.load(Ordering::Relaxed);
        if open > limit / 2 && limit < self.max {
            let grown = limit.saturating_mul(2).min(self.max);
            // Two accepts racing here grow it once; the loser sees the new limit next time.
            if self
                .limit
                .compare_exchange(limit, grown, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                let count = quinn::VarInt::from_u32(grown);
                match self.dir {
                    Dir::Bi => conn.set_max_concurrent_bi_streams(count),
                    Dir::Uni => conn.set_max_concurrent_uni_streams(count),
                }
            }
        }
        Open(self.clone())
    }
}

/// One accepted stream, counted in its direction's [`Credit`] until dropped.
#[derive(Debug)]
struct Open(Arc<Credit>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sending half of a stream.
#[derive(Debug)]
pub enum SendStream {
    /// A WebTransport stream.
    WebTransport(web_transport_quinn::SendStream),
    /// A raw QUIC stream.
    Quic(quinn::SendStream),
    /// A qmux stream.
    WebSocket(qmux::SendStream),
}

/// The receiving half of a stream.
#[derive(Debug)]
pub struct RecvStream {
    inner: Recv,
    /// Set on streams the peer opened: they use our stream credit.
    _open: Option<Open>,
}

#[derive(Debug)]
enum Recv {
    WebTransport(web_transport_quinn::RecvStream),
    Quic(quinn::RecvStream),
    WebSocket(qmux::RecvStream),
}

impl RecvStream {
    fn new(inner: Recv, open: Option<Open>) -> Self {
        Self { inner, _open: open }
    }
}

fn session_error(err: impl std::fmt::Display) -> TransportError {
    TransportError::new(err.to_string())
}

/// A raw QUIC stream code in the HTTP/3 form the ecosystem uses.
fn encode_code(code: u32) -> quinn::VarInt {
    quinn::VarInt::from_u64(web_transport_quinn::proto::error_to_http3(code))
        .unwrap_or(quinn::VarInt::from_u32(code))
}

/// Read a peer's raw QUIC stream code in either form.
fn decode_code(code: quinn::VarInt) -> u32 {
    let code = code.into_inner();
    web_transport_quinn::proto::error_from_http3(code)
        .unwrap_or_else(|| u32::try_from(code).unwrap_or(u32::MAX))
}

fn reset(code: u32) -> TransportError {
    TransportError {
        code: Some(code),
        message: format!("reset by peer with code {code}"),
    }
}

fn stopped(code: u32) -> TransportError {
    TransportError {
        code: Some(code),
        message: format!("stopped by peer with code {code}"),
    }
}

impl transport::Session for MoqSession {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        match &self.inner {
            Inner::WebSocket(session) => {
                let (send, recv) = transport::Session::open_bi(session).await?;
                Ok((
                    SendStream::WebSocket(send),
                    RecvStream::new(Recv::WebSocket(recv), None),
                ))
            }
            Inner::Quic {
                session, raw: true, ..
            } => {
                let conn: &quinn::Connection = session;
                let (send, recv) = conn.open_bi().await.map_err(session_error)?;
                Ok((SendStream::Quic(send), RecvStream::new(Recv::Quic(recv), None)))
            }
            Inner::Quic { session, .. } => {
                let (send, recv) = session.open_bi().await.map_err(session_error)?;
                Ok((
                    SendStream::WebTransport(send),
                    RecvStream::new(Recv::WebTransport(recv), None),
                ))
            }
        }
    }

    async fn open_uni(&self) -> Result<SendStream, TransportError> {
        match &self.inner {
            Inner::WebSocket(session) => Ok(SendStream::WebSocket(
                transport::Session::open_uni(session).await?,
            )),
            Inner::Quic {
                session, raw: true, ..
            } => {
                let conn: &quinn::Connection = session;
                Ok(SendStream::Quic(conn.open_uni().await.map_err(session_error)?))
            }
            Inner::Quic { session, .. } => Ok(SendStream::WebTransport(
                session.open_uni().await.map_err(session_error)?,
            )),
        }
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        let (session, raw, bi) = match &self.inner {
            Inner::WebSocket(session) => {
                let (send, recv) = transport::Session::accept_bi(session).await?;
                return Ok((
                    SendStream::WebSocket(send),
                    RecvStream::new(Recv::WebSocket(recv), None),
                ));
            }
            Inner::Quic { session, raw, bi, .. } => (session, *raw, bi),
        };
        let conn: &quinn::Connection = session;
        let (send, recv) = match raw {
            true => {
                let (send, recv) = conn.accept_bi().await.map_err(session_error)?;
                (SendStream::Quic(send), Recv::Quic(recv))
            }
            false => {
                let (send, recv) = session.accept_bi().await.map_err(session_error)?;
                (SendStream::WebTransport(send), Recv::WebTransport(recv))
            }
        };
        let open = bi.opened(conn);
        Ok((send, RecvStream::new(recv, Some(open))))
    }

    async fn accept_uni(&self) -> Result<RecvStream, TransportError> {
        let (session, raw, uni) = match &self.inner {
            Inner::WebSocket(session) => {
                let recv = transport::Session::accept_uni(session).await?;
                return Ok(RecvStream::new(Recv::WebSocket(recv), None));
            }
            Inner::Quic {
                session, raw, uni, ..
            } => (session, *raw, uni),
        };
        let conn: &quinn::Connection = session;
        let recv = match raw {
            true => Recv::Quic(conn.accept_uni().await.map_err(session_error)?),
            false => Recv::WebTransport(session.accept_uni().await.map_err(session_error)?),
        };
        let open = uni.opened(conn);
        Ok(RecvStream::new(recv, Some(open)))
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        match &self.inner {
            Inner::WebSocket(session) => transport::Session::recv_datagram(session).await,
            Inner::Quic { session, .. } => session.read_datagram().await.map_err(session_error),
        }
    }

    fn close(&self, code: u32, reason: &str) {
        match &self.inner {
            Inner::WebSocket(session) => session.close(code, reason),
            Inner::Quic { session, .. } => session.close(code, reason.as_bytes()),
        }
    }

    async fn closed(&self) -> TransportError {
        match &self.inner {
            Inner::WebSocket(session) => transport::Session::closed(session).await,
            Inner::Quic { session, .. } => session_error(session.closed().await),
        }
    }

    fn peer_close(&self) -> Option<(u32, String)> {
        use web_transport_quinn::{SessionError, WebTransportError};
        match &self.inner {
            Inner::WebSocket(session) => session.peer_close(),
            // WebTransport's CLOSE_WEBTRANSPORT_SESSION, or a raw QUIC application close
            // (web-transport-quinn reports both this way; our own close reads as local).
            Inner::Quic { session, .. } => match session.close_reason()? {
                SessionError::WebTransportError(WebTransportError::Closed(code, reason)) => {
                    Some((code, reason))
                }
                _ => None,
            },
        }
    }
}

impl transport::SendStream for SendStream {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), TransportError> {
        match self {
            Self::WebTransport(s) => s.write_all(buf).await.map_err(wt_write_error),
            Self::Quic(s) => s.write_all(buf).await.map_err(quic_write_error),
            Self::WebSocket(s) => transport::SendStream::write_all(s, buf).await,
        }
    }

    async fn write_chunk(&mut self, buf: Bytes) -> Result<(), TransportError> {
        match self {
            Self::WebTransport(s) => s.write_chunk(buf).await.map_err(wt_write_error),
            Self::Quic(s) => s.write_chunk(buf).await.map_err(quic_write_error),
            Self::WebSocket(s) => transport::SendStream::write_chunk(s, buf).await,
        }
    }

    async fn write_chunks(&mut self, bufs: &mut [Bytes]) -> Result<(), TransportError> {
        match self {
            Self::WebTransport(s) => s.write_all_chunks(bufs).await.map_err(wt_write_error),
            Self::Quic(s) => s.write_all_chunks(bufs).await.map_err(quic_write_error),
            Self::WebSocket(s) => transport::SendStream::write_chunks(s, bufs).await,
        }
    }

    fn set_priority(&mut self, priority: i32) {
        let _ = match self {
            Self::WebTransport(s) => s.set_priority(priority),
            Self::Quic(s) => s.set_priority(priority).map_err(Into::into),
            Self::WebSocket(s) => {
                transport::SendStream::set_priority(s, priority);
                Ok(())
            }
        };
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        let result = match self {
            Self::WebTransport(s) => s.finish(),
            Self::Quic(s) => s.finish().map_err(Into::into),
            Self::WebSocket(s) => return transport::SendStream::finish(s),
        };
        result.map_err(|_| TransportError::new("stream already closed"))
    }

    fn reset(&mut self, code: u32) {
        let _ = match self {
            Self::WebTransport(s) => s.reset(code),
            Self::Quic(s) => s.reset(encode_code(code)).map_err(Into::into),
            Self::WebSocket(s) => {
                transport::SendStream::reset(s, code);
                Ok(())
            }
        };
    }
}

fn wt_write_error(err: web_transport_quinn::WriteError) -> TransportError {
    match err {
        web_transport_quinn::WriteError::Stopped(code) => stopped(code),
        other => TransportError::new(other.to_string()),
    }
}

fn quic_write_error(err: quinn::WriteError) -> TransportError {
    match err {
        quinn::WriteError::Stopped(code) => stopped(decode_code(code)),
        other => TransportError::new(other.to_string()),
    }
}

impl transport::RecvStream for RecvStream {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        match &mut self.inner {
            Recv::WebTransport(s) => match s.read_chunk(max, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
                Err(web_transport_quinn::ReadError::Reset(code)) => Err(reset(code)),
                Err(other) => Err(TransportError::new(other.to_string())),
            },
            Recv::Quic(s) => match s.read_chunk(max, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
                Err(quinn::ReadError::Reset(code)) => Err(reset(decode_code(code))),
                Err(other) => Err(TransportError::new(other.to_string())),
            },
            Recv::WebSocket(s) => transport::RecvStream::read_chunk(s, max).await,
        }
    }

    fn stop(&mut self, code: u32) {
        let _ = match &mut self.inner {
            Recv::WebTransport(s) => s.stop(code),
            Recv::Quic(s) => s.stop(encode_code(code)),
            Recv::WebSocket(s) => {
                transport::RecvStream::stop(s, code);
                Ok(())
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_accept_the_bare_form() {
        for code in [0, 1, 0x33, 0x42, u32::MAX] {
            assert_eq!(decode_code(encode_code(code)), code);
        }
        // A peer that sends bare codes on raw QUIC is understood too.
        assert_eq!(decode_code(quinn::VarInt::from_u32(0x33)), 0x33);
    }
}
