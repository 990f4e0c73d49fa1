//! What the session drivers need from a transport: QUIC-like multiplexed
//! streams and datagrams. Implemented for raw QUIC and WebTransport elsewhere
//! (`moq-native`); this crate never names a QUIC library.

use std::future::Future;

use bytes::Bytes;

/// A transport failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    /// The peer reset or stopped the stream with this application code.
    pub code: Option<u32>,
    /// What happened, for logs.
    pub message: String,
}

impl TransportError {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: None,
            message: message.into(),
        }
    }
}

impl From<TransportError> for crate::Error {
    fn from(err: TransportError) -> Self {
        match err.code {
            Some(code) => crate::Error::Reset(code),
            None => crate::Error::Transport(err.message),
        }
    }
}

/// A connection carrying streams and datagrams. Clones refer to the same connection.
pub trait Session: Clone + Send + Sync + 'static {
    /// The sending half of a stream.
    type SendStream: SendStream;
    /// The receiving half of a stream.
    type RecvStream: RecvStream;

    /// Open a bidirectional stream.
    fn open_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), TransportError>> + Send;
    /// Open a unidirectional stream.
    fn open_uni(&self) -> impl Future<Output = Result<Self::SendStream, TransportError>> + Send;
    /// Accept the peer's next bidirectional stream.
    fn accept_bi(
        &self,
    ) -> impl Future<Output = Result<(Self::SendStream, Self::RecvStream), TransportError>> + Send;
    /// Accept the peer's next unidirectional stream.
    fn accept_uni(&self) -> impl Future<Output = Result<Self::RecvStream, TransportError>> + Send;
    /// Receive the next datagram.
    fn recv_datagram(&self) -> impl Future<Output = Result<Bytes, TransportError>> + Send;
    /// Close the connection with an application code and a reason.
    fn close(&self, code: u32, reason: &str);
    /// Resolves when the connection is closed, with why.
    fn closed(&self) -> impl Future<Output = TransportError> + Send;
    /// The application code and reason the peer closed the connection with, once it has;
    /// `None` while it is open, or when it ended any other way (locally, idle, lost).
    /// Lets a caller tell a refusal (`0x2 unauthorized: token expired`) from a lost link.
    fn peer_close(&self) -> Option<(u32, String)> {
        None
    }
}

/// The sending half of a stream.
pub trait SendStream: Send + 'static {
    /// Write all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Write a shared buffer without copying it.
    fn write_chunk(&mut self, buf: Bytes) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Write shared buffers in order without copying them, in as few operations as the
    /// transport allows (QUIC: one, so one wake of the connection for a frame's header and
    /// payload). The buffers are taken (left empty). By default, one `write_chunk` each.
    fn write_chunks(
        &mut self,
        bufs: &mut [Bytes],
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        async move {
            for buf in bufs.iter_mut() {
                self.write_chunk(std::mem::take(buf)).await?;
            }
            Ok(())
        }
    }
    /// Higher is sent first.
    fn set_priority(&mut self, priority: i32);
    /// Gracefully end the stream (FIN).
    fn finish(&mut self) -> Result<(), TransportError>;
    /// Abruptly end the stream with a code (RESET_STREAM).
    fn reset(&mut self, code: u32);
}

/// The receiving half of a stream.
pub trait RecvStream: Send + 'static {
    /// Read the next chunk of at most `max` bytes; `None` at the end of the stream.
    fn read_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Bytes>, TransportError>> + Send;
    /// Tell the peer to stop sending (STOP_SENDING) with a code.
    fn stop(&mut self, code: u32);
}

/// At most this many frames already waiting for a viewer go out in one write...
pub(crate) const COALESCE_FRAMES: usize = 64;
/// ...and no more once this much payload is in it.
pub(crate) const COALESCE_BYTES: usize = 256 * 1024;

/// [`write_with_payload`] for several frames at once: `queued` holds every frame's header
/// back to back, and each payload goes after the header bytes up to its offset. One
/// write, no payload copied, the headers copied once into one shared buffer.
pub(crate) async fn write_with_payloads<S: SendStream>(
    stream: &mut S,
    queued: &mut Vec<u8>,
    payloads: &mut Vec<(usize, Bytes)>,
) -> Result<(), TransportError> {
    if let [(offset, _)] = payloads.as_slice()
        && *offset == queued.len()
    {
        // One frame (the live case): no list of chunks to build.
        let (_, payload) = payloads.remove(0);
        return write_with_payload(stream, queued, payload).await;
    }
    let headers = Bytes::copy_from_slice(queued);
    queued.clear();
    let mut chunks = Vec::with_capacity(payloads.len().saturating_mul(2).saturating_add(1));
    let mut at = 0;
    for (offset, payload) in payloads.drain(..) {
        let offset = offset.clamp(at, headers.len());
        if offset > at {
            chunks.push(headers.slice(at..offset));
            at = offset;
        }
        if !payload.is_empty() {
            chunks.push(payload);
        }
    }
    if at < headers.len() {
        chunks.push(headers.slice(at..));
    }
    if chunks.is_empty() {
        return Ok(());
    }
    stream.write_chunks(&mut chunks).await
}

/// Write the bytes `queued` (message headers encoded ahead) then `payload`, neither
/// copied (the few header bytes are), in one [`SendStream::write_chunks`]; `queued` is
/// left empty.
pub(crate) async fn write_with_payload<S: SendStream>(
    stream: &mut S,
    queued: &mut Vec<u8>,
    payload: Bytes,
) -> Result<(), TransportError> {
    let header = Bytes::copy_from_slice(queued);
    queued.clear();
    match (header.is_empty(), payload.is_empty()) {
        (true, true) => Ok(()),
        (true, false) => stream.write_chunk(payload).await,
        (false, true) => stream.write_chunk(header).await,
        (false, false) => stream.write_chunks(&mut [header, payload]).await,
    }
}
