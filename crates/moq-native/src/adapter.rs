//! Adapts `web_transport_quinn` (raw QUIC and WebTransport alike) to the
//! transport traits the moq-core session drivers are written against.

use bytes::Bytes;
use moq_core::transport::{self, TransportError};

use crate::Session;

/// A [`Session`] usable by `moq_core::session::run`.
#[derive(Clone, Debug)]
pub struct MoqSession(pub Session);

/// The sending half of a stream.
#[derive(Debug)]
pub struct SendStream(web_transport_quinn::SendStream);

/// The receiving half of a stream.
#[derive(Debug)]
pub struct RecvStream(web_transport_quinn::RecvStream);

fn session_error(err: web_transport_quinn::SessionError) -> TransportError {
    TransportError::new(err.to_string())
}

impl transport::Session for MoqSession {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    async fn open_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        let (send, recv) = self.0.open_bi().await.map_err(session_error)?;
        Ok((SendStream(send), RecvStream(recv)))
    }

    async fn open_uni(&self) -> Result<SendStream, TransportError> {
        Ok(SendStream(self.0.open_uni().await.map_err(session_error)?))
    }

    async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        let (send, recv) = self.0.accept_bi().await.map_err(session_error)?;
        Ok((SendStream(send), RecvStream(recv)))
    }

    async fn accept_uni(&self) -> Result<RecvStream, TransportError> {
        Ok(RecvStream(self.0.accept_uni().await.map_err(session_error)?))
    }

    async fn recv_datagram(&self) -> Result<Bytes, TransportError> {
        self.0.read_datagram().await.map_err(session_error)
    }

    fn close(&self, code: u32, reason: &str) {
        self.0.close(code, reason.as_bytes());
    }

    async fn closed(&self) -> TransportError {
        session_error(self.0.closed().await)
    }
}

impl transport::SendStream for SendStream {
    async fn write_all(&mut self, buf: &[u8]) -> Result<(), TransportError> {
        self.0.write_all(buf).await.map_err(write_error)
    }

    async fn write_chunk(&mut self, buf: Bytes) -> Result<(), TransportError> {
        self.0.write_chunk(buf).await.map_err(write_error)
    }

    fn set_priority(&mut self, priority: i32) {
        let _ = self.0.set_priority(priority);
    }

    fn finish(&mut self) -> Result<(), TransportError> {
        self.0
            .finish()
            .map_err(|_| TransportError::new("stream already closed"))
    }

    fn reset(&mut self, code: u32) {
        let _ = self.0.reset(code);
    }
}

fn write_error(err: web_transport_quinn::WriteError) -> TransportError {
    match err {
        web_transport_quinn::WriteError::Stopped(code) => TransportError {
            code: Some(code),
            message: format!("stopped by peer with code {code}"),
        },
        other => TransportError::new(other.to_string()),
    }
}

impl transport::RecvStream for RecvStream {
    async fn read_chunk(&mut self, max: usize) -> Result<Option<Bytes>, TransportError> {
        match self.0.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(web_transport_quinn::ReadError::Reset(code)) => Err(TransportError {
                code: Some(code),
                message: format!("reset by peer with code {code}"),
            }),
            Err(other) => Err(TransportError::new(other.to_string())),
        }
    }

    fn stop(&mut self, code: u32) {
        let _ = self.0.stop(code);
    }
}
