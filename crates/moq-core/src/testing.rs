//! Helpers shared by the crate's tests.

use std::time::Duration;

use bytes::Bytes;

use crate::TrackConsumer;

/// Read `track` to its end, each group whole, allowing `wait` for each next group or
/// frame; returns the last group read (its sequence and payloads), if any.
pub(crate) async fn last_group(track: &mut TrackConsumer, wait: Duration) -> Option<(u64, Vec<Bytes>)> {
    let mut last = None;
    while let Ok(Ok(Some(mut group))) = tokio::time::timeout(wait, track.next_group()).await {
        let mut frames = Vec::new();
        while let Ok(Ok(Some(frame))) = tokio::time::timeout(wait, group.next_frame()).await {
            frames.push(frame.payload);
        }
        last = Some((group.sequence(), frames));
    }
    last
}

/// A stream that yields `chunks`, then ends.
pub(crate) fn chunks(chunks: &[Bytes]) -> impl crate::transport::RecvStream {
    struct Chunks(std::collections::VecDeque<Bytes>);
    impl crate::transport::RecvStream for Chunks {
        async fn read_chunk(
            &mut self,
            max: usize,
        ) -> std::result::Result<Option<Bytes>, crate::transport::TransportError> {
            Ok(self.0.pop_front().map(|mut chunk| {
                if chunk.len() > max {
                    self.0.push_front(chunk.split_off(max));
                }
                chunk
            }))
        }
        fn stop(&mut self, _: u32) {}
    }
    Chunks(chunks.iter().cloned().collect())
}
