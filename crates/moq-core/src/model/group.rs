//! A group: an append-only list of frames delivered in order on one stream.

use bytes::Bytes;
use tokio::sync::watch;

use crate::{Error, Result};

/// One frame: an opaque payload and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Presentation timestamp in the track's timescale.
    pub timestamp: u64,
    /// The payload, shared by every consumer.
    pub payload: Bytes,
}

#[derive(Debug, Default)]
pub(crate) struct GroupState {
    frames: Vec<Frame>,
    bytes: usize,
    end: Option<Result<()>>,
}

/// Writes frames into a group. Dropping it without [`finish`](Self::finish)
/// aborts the group with [`Error::Cancelled`].
#[derive(Debug)]
pub struct GroupProducer {
    sequence: u64,
    state: watch::Sender<GroupState>,
}

impl GroupProducer {
    /// A new, empty group and a consumer that reads it from the start.
    pub fn new(sequence: u64) -> (Self, GroupConsumer) {
        let (tx, rx) = watch::channel(GroupState::default());
        (
            Self { sequence, state: tx },
            GroupConsumer {
                sequence,
                state: rx,
                index: 0,
            },
        )
    }

    /// The group's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Append a frame.
    pub fn write(&mut self, frame: Frame) {
        self.state.send_modify(|s| {
            if s.end.is_none() {
                s.bytes = s.bytes.saturating_add(frame.payload.len());
                s.frames.push(frame);
            }
        });
    }

    /// Total payload bytes written so far.
    pub fn bytes(&self) -> usize {
        self.state.borrow().bytes
    }

    /// Mark the group complete.
    pub fn finish(self) {
        self.end(Ok(()));
    }

    /// End the group with an error; consumers see it after the frames they
    /// have not read yet.
    pub fn abort(self, err: Error) {
        self.end(Err(err));
    }

    fn end(&self, result: Result<()>) {
        self.state.send_if_modified(|s| {
            if s.end.is_some() {
                return false;
            }
            s.end = Some(result);
            true
        });
    }

    /// Resolves when no consumer is left.
    pub async fn unused(&self) {
        self.state.closed().await
    }
}

impl Drop for GroupProducer {
    fn drop(&mut self) {
        self.end(Err(Error::Cancelled));
    }
}

/// Reads a group's frames in order. Cloning gives a new reader at frame 0.
#[derive(Debug)]
pub struct GroupConsumer {
    sequence: u64,
    state: watch::Receiver<GroupState>,
    index: usize,
}

impl Clone for GroupConsumer {
    fn clone(&self) -> Self {
        Self {
            sequence: self.sequence,
            state: self.state.clone(),
            index: 0,
        }
    }
}

impl GroupConsumer {
    /// The group's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Skip the first `index` frames (for frame-level resume).
    pub fn skip_to(&mut self, index: usize) {
        self.index = index;
    }

    /// The next frame; `Ok(None)` once the group finished.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>> {
        let index = self.index;
        let state = self
            .state
            .wait_for(|s| s.frames.len() > index || s.end.is_some())
            .await
            .map_err(|_| Error::Cancelled)?;
        if let Some(frame) = state.frames.get(index) {
            let frame = frame.clone();
            drop(state);
            self.index = self.index.saturating_add(1);
            return Ok(Some(frame));
        }
        match &state.end {
            Some(Ok(())) => Ok(None),
            Some(Err(err)) => Err(err.clone()),
            None => Ok(None),
        }
    }

    /// Total payload bytes written so far.
    pub fn bytes(&self) -> usize {
        self.state.borrow().bytes
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> usize {
        self.state.borrow().frames.len()
    }

    /// Whether the group ended with an error (its producer aborted or went
    /// away), so a copy from another route may replace it.
    pub fn is_aborted(&self) -> bool {
        matches!(self.state.borrow().end, Some(Err(_)))
    }

    /// Whether the producer finished or aborted the group.
    pub fn is_done(&self) -> bool {
        self.state.borrow().end.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Frame {
        Frame {
            timestamp: n.into(),
            payload: Bytes::from(vec![n; 3]),
        }
    }

    #[tokio::test]
    async fn readers_see_every_frame_in_order() {
        let (mut producer, mut a) = GroupProducer::new(7);
        producer.write(frame(1));
        let mut b = a.clone();
        producer.write(frame(2));
        producer.finish();
        for reader in [&mut a, &mut b] {
            assert_eq!(reader.next_frame().await.unwrap(), Some(frame(1)));
            assert_eq!(reader.next_frame().await.unwrap(), Some(frame(2)));
            assert_eq!(reader.next_frame().await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn payload_is_shared_not_copied() {
        let (mut producer, mut a) = GroupProducer::new(0);
        let payload = Bytes::from_static(b"shared");
        producer.write(Frame {
            timestamp: 0,
            payload: payload.clone(),
        });
        let got = a.next_frame().await.unwrap().unwrap();
        assert_eq!(got.payload.as_ptr(), payload.as_ptr());
    }

    #[tokio::test]
    async fn dropped_producer_aborts() {
        let (mut producer, mut a) = GroupProducer::new(0);
        producer.write(frame(1));
        drop(producer);
        assert_eq!(a.next_frame().await.unwrap(), Some(frame(1)));
        assert_eq!(a.next_frame().await, Err(Error::Cancelled));
    }
}
