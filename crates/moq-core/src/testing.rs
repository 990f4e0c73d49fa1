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
