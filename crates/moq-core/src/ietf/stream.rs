//! Buffered readers and writers that speak moq-transport over a stream: control
//! messages, data stream headers, object headers and payloads.
//!
//! The moq-lite ones next door are tied to the lite codec's traits; these take the IETF
//! codec's, whose varint depends on the draft.

use bytes::{Buf, Bytes, BytesMut};
use moq_proto::{
    DecodeError,
    ietf::{Encode, SubgroupObject, Version, decode_slice},
};

use crate::{
    Error, Result,
    session::usage::Header,
    transport::{RecvStream, SendStream},
};

/// Largest read per call; also bounds what one read adds to the buffer.
const CHUNK: usize = 64 * 1024;

/// Reads moq-transport values and payloads from a stream.
pub(crate) struct Reader<R> {
    stream: R,
    buf: BytesMut,
    version: Version,
    /// On a stream the peer opened: its first message is due by a deadline.
    header: Option<Header>,
}

impl<R: RecvStream> Reader<R> {
    pub(crate) fn new(stream: R, version: Version) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            version,
            header: None,
        }
    }

    /// A reader for a stream the peer opened: its first value (a request, or a data
    /// stream header) must arrive before the header's deadline, or the stream is stopped
    /// with CONTROL_TIMEOUT.
    pub(crate) fn with_header(stream: R, version: Version, header: Header) -> Self {
        Self {
            header: Some(header),
            ..Self::new(stream, version)
        }
    }

    async fn fill(&mut self) -> Result<bool> {
        let deadline = self.header.as_ref().map(Header::deadline);
        let read = self.stream.read_chunk(CHUNK);
        let chunk = match deadline {
            None => Some(read.await),
            Some(deadline) => tokio::time::timeout_at(deadline, read).await.ok(),
        };
        let Some(chunk) = chunk else {
            let err = self.header.take().map_or(Error::RequestTimeout, |h| h.expired());
            self.stream.stop(err.stream_code());
            return Err(err);
        };
        match chunk? {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The first value arrived: the stream no longer holds a pending slot.
    fn arrived(&mut self) {
        if let Some(header) = self.header.as_mut() {
            // moq-transport frames the type with the message: one value is the header.
            while !header.received() {}
            self.header = None;
        }
    }

    /// Decode one value with `decode`, or `None` if the stream ended cleanly first.
    async fn read_with<T>(
        &mut self,
        decode: impl Fn(&[u8]) -> std::result::Result<(T, usize), DecodeError>,
    ) -> Result<Option<T>> {
        loop {
            if !self.buf.is_empty() {
                match decode(&self.buf) {
                    Ok((value, used)) => {
                        self.buf.advance(used);
                        self.arrived();
                        return Ok(Some(value));
                    }
                    Err(DecodeError::Short) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            if !self.fill().await? {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Error::Protocol("stream ended in the middle of a message".into())),
                };
            }
        }
    }

    /// The next value, or `None` if the stream ended cleanly between values.
    pub(crate) async fn decode_maybe<T: moq_proto::ietf::Decode>(&mut self) -> Result<Option<T>> {
        let version = self.version;
        self.read_with(|buf| decode_slice::<T>(buf, version)).await
    }

    /// The next value; the stream ending first is an error.
    pub(crate) async fn decode<T: moq_proto::ietf::Decode>(&mut self) -> Result<T> {
        self.decode_maybe()
            .await?
            .ok_or_else(|| Error::Protocol("stream ended before an expected message".into()))
    }

    /// The next object header of a subgroup stream, or `None` at its end.
    pub(crate) async fn object(&mut self, properties: bool) -> Result<Option<SubgroupObject>> {
        let version = self.version;
        self.read_with(|buf| {
            let mut cursor = buf;
            let object = SubgroupObject::decode(&mut cursor, version, properties)?;
            Ok((object, buf.len().saturating_sub(cursor.len())))
        })
        .await
    }

    /// Exactly `size` payload bytes. Chunks are not copied when one holds them all.
    pub(crate) async fn read_exact(&mut self, size: usize) -> Result<Bytes> {
        if self.buf.len() >= size {
            return Ok(self.buf.split_to(size).freeze());
        }
        let mut payload = BytesMut::with_capacity(size.min(1 << 20));
        payload.extend_from_slice(&self.buf.split());
        while payload.len() < size {
            match self.stream.read_chunk(size.saturating_sub(payload.len())).await? {
                Some(chunk) if payload.is_empty() && chunk.len() == size => return Ok(chunk),
                Some(chunk) => payload.extend_from_slice(&chunk),
                None => return Err(Error::Protocol("stream ended in the middle of an object".into())),
            }
        }
        Ok(payload.freeze())
    }

    /// Discard everything until the peer ends the stream (padding).
    pub(crate) async fn drain(&mut self) -> Result<()> {
        self.buf.clear();
        while self.fill().await? {
            self.buf.clear();
        }
        Ok(())
    }

    pub(crate) fn stop(&mut self, code: u32) {
        self.stream.stop(code);
    }
}

/// Writes moq-transport values and payloads to a stream.
///
/// Dropped without [`finish`](Writer::finish) or [`reset`](Writer::reset), it resets the
/// stream: a group cut short must never look complete to the peer.
pub(crate) struct Writer<S: SendStream> {
    stream: S,
    buf: Vec<u8>,
    version: Version,
    done: bool,
}

impl<S: SendStream> Drop for Writer<S> {
    fn drop(&mut self) {
        if !self.done {
            self.stream.reset(Error::Cancelled.stream_code());
        }
    }
}

impl<S: SendStream> Writer<S> {
    pub(crate) fn new(stream: S, version: Version) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(64),
            version,
            done: false,
        }
    }

    /// Buffer a value; it goes out with the next flush or payload.
    pub(crate) fn queue<T: Encode + std::fmt::Debug>(&mut self, value: &T) -> Result<()> {
        value
            .encode(&mut self.buf, self.version)
            .map_err(|e| Error::Protocol(format!("cannot encode {value:?}: {e}")))
    }

    /// Buffer bytes written by `encode`, for what has no [`Encode`] impl of its own.
    pub(crate) fn raw(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), moq_proto::EncodeError>,
    ) -> Result<()> {
        encode(&mut self.buf).map_err(|e| Error::Protocol(format!("cannot encode: {e}")))
    }

    /// Write what is buffered.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write one value now.
    pub(crate) async fn encode<T: Encode + std::fmt::Debug>(&mut self, value: &T) -> Result<()> {
        self.queue(value)?;
        self.flush().await
    }

    /// Write buffered messages then a shared payload: neither is copied, and both go
    /// out in one write (one wake of the connection per frame).
    pub(crate) async fn payload(&mut self, payload: Bytes) -> Result<()> {
        Ok(crate::transport::write_with_payload(&mut self.stream, &mut self.buf, payload).await?)
    }

    /// Bytes buffered so far: where a payload goes among queued headers.
    pub(crate) fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Write buffered messages with shared payloads among them, each after the buffered
    /// bytes up to its offset, in one write (as the moq-lite writer's `payloads`).
    pub(crate) async fn payloads(&mut self, payloads: &mut Vec<(usize, Bytes)>) -> Result<()> {
        Ok(crate::transport::write_with_payloads(&mut self.stream, &mut self.buf, payloads).await?)
    }

    pub(crate) fn set_priority(&mut self, priority: i32) {
        self.stream.set_priority(priority);
    }

    pub(crate) async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        self.done = true;
        self.stream.finish()?;
        Ok(())
    }

    pub(crate) fn reset(&mut self, code: u32) {
        self.done = true;
        self.stream.reset(code);
    }
}
