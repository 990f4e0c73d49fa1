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

/// Viewers of `broadcast`'s track `seconds` (fed by `publisher`) leave and are replaced,
/// 600 times, the next one subscribing 0–59 µs after the last one left: each must read
/// the open group from its first frame to the newest, live, once, with no error. A viewer
/// handed the upstream subscription being torn down as the last one left got the group's
/// frames, then a reset, and (in a relay) the same group again from a new subscription:
/// what a browser over WebSocket once printed twice in the interop suite.
pub(crate) async fn rejoining_viewers_get_each_frame_once(
    broadcast: &crate::BroadcastConsumer,
    publisher: &crate::TrackProducer,
    version: impl std::fmt::Display,
) {
    let mut group = publisher.create_group(0).expect("group 0 is new");
    let mut written = 0u64;
    let mut write = |group: &mut crate::GroupProducer| {
        group.write(crate::Frame {
            timestamp: written,
            payload: Bytes::from(written.to_string()),
        });
        written += 1;
        written
    };
    write(&mut group);
    let wait = Duration::from_secs(5);
    let mut viewer = broadcast.subscribe("seconds").expect("the track");
    for round in 0..=600u64 {
        let mut reading = tokio::time::timeout(wait, viewer.next_group())
            .await
            .unwrap_or_else(|_| panic!("{version}, round {round}: no group for 5 s"))
            .unwrap_or_else(|err| panic!("{version}, round {round}: {err}"))
            .unwrap_or_else(|| panic!("{version}, round {round}: the track ended"));
        let newest = write(&mut group);
        for expected in 0..newest {
            let frame = tokio::time::timeout(wait, reading.next_frame())
                .await
                .unwrap_or_else(|_| panic!("{version}, round {round}: no frame {expected} for 5 s"))
                .unwrap_or_else(|err| panic!("{version}, round {round}: frame {expected}: {err}"))
                .unwrap_or_else(|| panic!("{version}, round {round}: the group ended at {expected}"));
            assert_eq!(frame.payload, expected.to_string(), "{version}, round {round}");
        }
        if round == 600 {
            // The last viewer saw the group once: no second copy follows.
            let again = tokio::time::timeout(Duration::from_millis(300), viewer.next_group()).await;
            assert!(again.is_err(), "{version}: a second copy of the group: {again:?}");
            return;
        }
        drop((reading, viewer));
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_micros(round % 60) {
            std::hint::spin_loop();
        }
        viewer = broadcast.subscribe("seconds").expect("the track");
    }
}
