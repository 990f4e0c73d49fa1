//! Reading a track frame by frame, across relay failovers.
//!
//! When a relay on the path dies (or drains), the group in flight is cut off;
//! the relay that takes over may deliver the same group again, whole, possibly
//! after a newer one (newer groups are sent first). A reader wants neither an
//! error nor the frames it already has: [`Frames`] skips a cut-off group's tail
//! (with a warning) and the replayed frames of every recent group.

use std::collections::BTreeMap;

use moq_core::{Frame, GroupConsumer, TrackConsumer};

/// How many recent groups remember how many of their frames were returned.
const REMEMBERED: usize = 64;

/// The frames of a track, each once.
pub(crate) struct Frames {
    track: TrackConsumer,
    group: Option<GroupConsumer>,
    /// Frames read of the current group.
    index: usize,
    /// Frames returned per recent group (by sequence), so a replayed group only
    /// yields what is new.
    shown: BTreeMap<u64, usize>,
}

impl Frames {
    /// Read `track` from its current group on.
    pub(crate) fn new(track: TrackConsumer) -> Self {
        Self {
            track,
            group: None,
            index: 0,
            shown: BTreeMap::new(),
        }
    }

    /// The next new frame: its group's sequence, its index in the group and
    /// the frame; `None` when the track ends.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<(u64, usize, Frame)>> {
        loop {
            let group = match &mut self.group {
                Some(group) => group,
                None => match self.track.next_group().await? {
                    Some(group) => {
                        self.index = 0;
                        self.group.insert(group)
                    }
                    None => return Ok(None),
                },
            };
            let sequence = group.sequence();
            let frame = match group.next_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.group = None;
                    continue;
                }
                // The route was lost mid-group (say a relay died): the group
                // may come again whole from another route, or the next one will.
                Err(err) => {
                    tracing::warn!(group = sequence, %err, "group cut off; waiting for the next one");
                    self.group = None;
                    continue;
                }
            };
            let index = self.index;
            self.index += 1;
            let seen = self.shown.entry(sequence).or_default();
            if index < *seen {
                continue;
            }
            *seen = index + 1;
            while self.shown.len() > REMEMBERED {
                self.shown.pop_first();
            }
            return Ok(Some((sequence, index, frame)));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use moq_core::{Error, GroupProducer, TrackInfo, TrackProducer, model::cache::Cache};

    use super::*;

    fn frame(text: &'static str) -> Frame {
        Frame {
            timestamp: 0,
            payload: Bytes::from_static(text.as_bytes()),
        }
    }

    #[tokio::test]
    async fn a_cut_off_group_replayed_whole_yields_each_frame_once() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        let mut frames = Frames::new(track.consume());
        let mut cut = track.create_group(1).unwrap();
        cut.write(frame("a"));
        cut.write(frame("b"));
        let next = frames.next().await.unwrap().unwrap();
        assert_eq!((next.0, next.1, next.2.payload), (1, 0, Bytes::from("a")));
        assert_eq!(frames.next().await.unwrap().unwrap().2.payload, "b");
        cut.abort(Error::Cancelled);
        // The new route delivers group 1 again, whole, then group 2.
        let (mut again, copy) = GroupProducer::new(1);
        track.insert_group(copy).unwrap();
        for text in ["a", "b", "c"] {
            again.write(frame(text));
        }
        again.finish();
        let mut next = track.create_group(2).unwrap();
        next.write(frame("d"));
        next.finish();
        let rest: Vec<_> = [frames.next().await, frames.next().await]
            .into_iter()
            .map(|f| f.unwrap().unwrap())
            .map(|(seq, index, f)| (seq, index, f.payload))
            .collect();
        assert_eq!(rest, [(1, 2, Bytes::from("c")), (2, 0, Bytes::from("d"))]);
        track.finish();
        assert!(frames.next().await.unwrap().is_none());
    }

    /// After a reconnect the new route may send a newer group before the replay of the
    /// one that was cut off: the replay still yields only its missing frames.
    #[tokio::test]
    async fn a_replay_arriving_after_a_newer_group_yields_only_what_is_missing() {
        let track = TrackProducer::with_info("t", TrackInfo::default(), Cache::default());
        let mut frames = Frames::new(track.consume());
        let mut cut = track.create_group(1).unwrap();
        cut.write(frame("a"));
        assert_eq!(frames.next().await.unwrap().unwrap().2.payload, "a");
        cut.abort(Error::Cancelled);
        let mut newer = track.create_group(2).unwrap();
        newer.write(frame("c"));
        newer.finish();
        let (mut again, copy) = GroupProducer::new(1);
        track.insert_group(copy).unwrap();
        again.write(frame("a"));
        again.write(frame("b"));
        again.finish();
        track.finish();
        let mut rest = Vec::new();
        while let Some((seq, index, f)) = frames.next().await.unwrap() {
            rest.push((seq, index, f.payload));
        }
        assert_eq!(rest, [(2, 0, Bytes::from("c")), (1, 1, Bytes::from("b"))]);
    }
}
