//! Buffered readers and writers that speak `moq-proto` messages over a stream.

use bytes::{Buf, Bytes, BytesMut};
use moq_proto::{Decode, DecodeError, Encode, Version, decode_slice};

use super::usage::Header;
use crate::{
    Error, Result,
    transport::{RecvStream, SendStream},
};

/// Largest read per call; also bounds what one read adds to the buffer.
const CHUNK: usize = 64 * 1024;

/// Reads messages and payloads from a stream.
pub(crate) struct Reader<R> {
    stream: R,
    buf: BytesMut,
    version: Version,
    /// On a stream the peer opened: its header is still to come, by a deadline.
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

    /// A reader for a stream the peer opened: its type and first message must arrive
    /// before the header's deadline, or the stream is stopped with CONTROL_TIMEOUT.
    pub(crate) fn with_header(stream: R, version: Version, header: Header) -> Self {
        Self {
            header: Some(header),
            ..Self::new(stream, version)
        }
    }

    /// A reader whose stream already yielded `buffered`, bytes read past a
    /// message decoded by other means (the legacy SETUP).
    pub(crate) fn with_buffered(stream: R, version: Version, buffered: BytesMut) -> Self {
        Self {
            stream,
            buf: buffered,
            version,
            header: None,
        }
    }

    /// Read more bytes into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        let deadline = self.header.as_ref().map(Header::deadline);
        let read = self.stream.read_chunk(CHUNK);
        // `None`: the deadline passed first.
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

    /// The next message, or `None` if the stream ended cleanly between messages.
    pub(crate) async fn decode_maybe<T: Decode>(&mut self) -> Result<Option<T>> {
        loop {
            if !self.buf.is_empty() {
                match decode_slice::<T>(&self.buf, self.version) {
                    Ok((msg, used)) => {
                        self.buf.advance(used);
                        if self.header.as_mut().is_some_and(Header::received) {
                            // The header is complete: no deadline, no pending slot.
                            self.header = None;
                        }
                        return Ok(Some(msg));
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

    /// The next message; the stream ending first is an error.
    pub(crate) async fn decode<T: Decode>(&mut self) -> Result<T> {
        self.decode_maybe()
            .await?
            .ok_or_else(|| Error::Protocol("stream ended before an expected message".into()))
    }

    /// Exactly `size` payload bytes. Chunks are not copied when one holds them all.
    pub(crate) async fn read_exact(&mut self, size: usize) -> Result<Bytes> {
        if self.buf.len() >= size {
            return Ok(self.buf.split_to(size).freeze());
        }
        // Read straight into the payload, without growing the message buffer.
        let mut payload = BytesMut::with_capacity(size.min(1 << 20));
        payload.extend_from_slice(&self.buf.split());
        while payload.len() < size {
            match self.stream.read_chunk(size.saturating_sub(payload.len())).await? {
                Some(chunk) if payload.is_empty() && chunk.len() == size => return Ok(chunk),
                Some(chunk) => payload.extend_from_slice(&chunk),
                None => return Err(Error::Protocol("stream ended in the middle of a frame".into())),
            }
        }
        Ok(payload.freeze())
    }

    /// Wait for the peer to end its side, discarding nothing: an unexpected
    /// message is a protocol error.
    pub(crate) async fn closed(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            return Err(Error::Protocol("unexpected data".into()));
        }
        match self.fill().await? {
            false => Ok(()),
            true => Err(Error::Protocol("unexpected data".into())),
        }
    }

    pub(crate) fn stop(&mut self, code: u32) {
        self.stream.stop(code);
    }
}

/// Writes messages and payloads to a stream.
///
/// Dropped without [`finish`](Writer::finish) or [`reset`](Writer::reset), it
/// resets the stream: a cut-short group must never look complete to the peer.
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

    /// Buffer a message; it goes out with the next [`flush`](Self::flush) or payload.
    pub(crate) fn queue<T: Encode + std::fmt::Debug>(&mut self, msg: &T) -> Result<()> {
        msg.encode(&mut self.buf, self.version)
            .map_err(|e| Error::Protocol(format!("cannot encode {msg:?}: {e}")))
    }

    /// Buffer bytes written by `encode`, for what has no [`moq_proto::Encode`]
    /// impl (the legacy SETUP, whose framing is not tied to a version).
    pub(crate) fn raw(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), moq_proto::EncodeError>,
    ) -> Result<()> {
        encode(&mut self.buf).map_err(|e| Error::Protocol(format!("cannot encode: {e}")))
    }

    /// Write buffered messages.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write one message now.
    pub(crate) async fn encode<T: Encode + std::fmt::Debug>(&mut self, msg: &T) -> Result<()> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Bytes buffered so far: where a payload goes among queued headers (see
    /// [`payloads`](Self::payloads)).
    pub(crate) fn queued(&self) -> usize {
        self.buf.len()
    }

    /// Write buffered messages with shared payloads among them, each after the buffered
    /// bytes up to its offset (from [`queued`](Self::queued)), in one write: several
    /// frames, one wake of the connection, no payload copied.
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

#[cfg(test)]
mod tests {
    use moq_proto::FrameHeader;

    use super::*;
    use crate::{mem, transport::Session};

    #[tokio::test]
    async fn payloads_go_out_as_the_very_buffers_handed_over() {
        let (a, b) = mem::pair();
        let version = Version::Lite06;
        let mut writer = Writer::new(a.open_uni().await.unwrap(), version);
        let small = Bytes::from(vec![1u8; 100]);
        let large = Bytes::from(vec![2u8; 64 * 1024]);
        for payload in [&small, &large] {
            writer
                .queue(&FrameHeader {
                    timestamp_delta: 0,
                    size: payload.len() as u64,
                })
                .unwrap();
            let at = writer.queued();
            writer.payloads(&mut vec![(at, payload.clone())]).await.unwrap();
        }
        writer.finish().await.unwrap();

        let mut recv = b.accept_uni().await.unwrap();
        let mut chunks = Vec::new();
        while let Some(chunk) = recv.read_chunk(usize::MAX).await.unwrap() {
            chunks.push(chunk);
        }
        // Header, payload, header, payload: no payload was copied, small or large.
        let sizes = chunks.iter().map(Bytes::len).collect::<Vec<_>>();
        assert_eq!(chunks.len(), 4, "{sizes:?}");
        assert_eq!(chunks[1].as_ptr(), small.as_ptr());
        assert_eq!(chunks[3].as_ptr(), large.as_ptr());

        let mut reader = Reader::new(crate::testing::chunks(&chunks), version);
        for payload in [&small, &large] {
            let header = reader.decode::<FrameHeader>().await.unwrap();
            let size = usize::try_from(header.size).unwrap();
            assert_eq!(&reader.read_exact(size).await.unwrap(), payload);
        }
        assert!(reader.decode_maybe::<FrameHeader>().await.unwrap().is_none());
    }
}
