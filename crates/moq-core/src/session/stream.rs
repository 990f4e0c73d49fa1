//! Buffered readers and writers that speak `moq-proto` messages over a stream.

use bytes::{Buf, Bytes, BytesMut};
use moq_proto::{Decode, DecodeError, Encode, Version, decode_slice};

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
}

impl<R: RecvStream> Reader<R> {
    pub fn new(stream: R, version: Version) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Read more bytes into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        match self.stream.read_chunk(CHUNK).await? {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The next message, or `None` if the stream ended cleanly between messages.
    pub async fn decode_maybe<T: Decode>(&mut self) -> Result<Option<T>> {
        loop {
            if !self.buf.is_empty() {
                match decode_slice::<T>(&self.buf, self.version) {
                    Ok((msg, used)) => {
                        self.buf.advance(used);
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
    pub async fn decode<T: Decode>(&mut self) -> Result<T> {
        self.decode_maybe()
            .await?
            .ok_or_else(|| Error::Protocol("stream ended before an expected message".into()))
    }

    /// Exactly `size` payload bytes. Chunks are not copied when one holds them all.
    pub async fn read_exact(&mut self, size: usize) -> Result<Bytes> {
        if self.buf.len() >= size {
            return Ok(self.buf.split_to(size).freeze());
        }
        // Read straight into the payload, without growing the message buffer.
        let mut payload = BytesMut::with_capacity(size.min(1 << 20));
        payload.extend_from_slice(&self.buf.split());
        while payload.len() < size {
            match self.stream.read_chunk(size - payload.len()).await? {
                Some(chunk) if payload.is_empty() && chunk.len() == size => return Ok(chunk),
                Some(chunk) => payload.extend_from_slice(&chunk),
                None => return Err(Error::Protocol("stream ended in the middle of a frame".into())),
            }
        }
        Ok(payload.freeze())
    }

    /// Wait for the peer to end its side, discarding nothing: an unexpected
    /// message is a protocol error.
    pub async fn closed(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            return Err(Error::Protocol("unexpected data".into()));
        }
        match self.fill().await? {
            false => Ok(()),
            true => Err(Error::Protocol("unexpected data".into())),
        }
    }

    pub fn stop(&mut self, code: u32) {
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
    pub fn new(stream: S, version: Version) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(64),
            version,
            done: false,
        }
    }

    /// Buffer a message; it goes out with the next [`flush`](Self::flush) or payload.
    pub fn queue<T: Encode + std::fmt::Debug>(&mut self, msg: &T) -> Result<()> {
        msg.encode(&mut self.buf, self.version)
            .map_err(|e| Error::Protocol(format!("cannot encode {msg:?}: {e}")))
    }

    /// Write buffered messages.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write one message now.
    pub async fn encode<T: Encode + std::fmt::Debug>(&mut self, msg: &T) -> Result<()> {
        self.queue(msg)?;
        self.flush().await
    }

    /// Write buffered messages then a shared payload, without copying it.
    pub async fn payload(&mut self, payload: Bytes) -> Result<()> {
        self.flush().await?;
        if !payload.is_empty() {
            self.stream.write_chunk(payload).await?;
        }
        Ok(())
    }

    pub fn set_priority(&mut self, priority: i32) {
        self.stream.set_priority(priority);
    }

    pub async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        self.done = true;
        self.stream.finish()?;
        Ok(())
    }

    pub fn reset(&mut self, code: u32) {
        self.done = true;
        self.stream.reset(code);
    }
}
