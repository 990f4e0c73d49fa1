//! Proptest strategies that generate valid, canonical messages for a version:
//! values the version can express, in the form its decoder produces.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.
#![allow(dead_code)]

pub(crate) mod ietf;

use std::time::Duration;

use bytes::Bytes;
use moq_proto::{coding::MAX_VARINT, *};
use proptest::{collection::vec, option, prelude::*};

pub(crate) fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::EVERY.to_vec())
}

pub(crate) fn varint() -> impl Strategy<Value = u64> {
    prop_oneof![0..64u64, 0..16_384u64, 0..=MAX_VARINT]
}

/// A value that still fits when encoded as `value + 1`.
pub(crate) fn optional_value() -> impl Strategy<Value = Option<u64>> {
    option::of(prop_oneof![0..100u64, 0..MAX_VARINT])
}

pub(crate) fn millis() -> impl Strategy<Value = Duration> {
    varint().prop_map(Duration::from_millis)
}

pub(crate) fn path() -> impl Strategy<Value = Path> {
    vec("[a-zA-Z0-9._~-]{1,8}", 0..6).prop_map(|segs| Path::new(&segs.join("/")).unwrap())
}

pub(crate) fn name() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

pub(crate) fn hops(v: Version) -> impl Strategy<Value = Hops> {
    let ids = if !v.has_hops() {
        // lite-01/02 carry no hop list.
        Just(Vec::new()).boxed()
    } else if v.has_hop_ids() {
        prop::collection::hash_set(1..=MAX_VARINT, 0..8)
            .prop_map(|set| set.into_iter().collect::<Vec<_>>())
            .boxed()
    } else {
        // lite-03 carries a count only, so the ids are unknown (0).
        (0..8usize).prop_map(|n| vec![0; n]).boxed()
    };
    ids.prop_map(|ids| Hops::from_ids(ids).unwrap())
}

pub(crate) fn cost(v: Version) -> BoxedStrategy<Cost> {
    if v.has_route_cost() {
        (varint(), varint())
            .prop_map(|(warm, cold)| Cost { warm, cold })
            .boxed()
    } else {
        Just(Cost::UNKNOWN).boxed()
    }
}

pub(crate) fn range(v: Version) -> BoxedStrategy<Range> {
    if v.has_frame_bounds() {
        (optional_value(), optional_value(), varint(), optional_value())
            .prop_map(|(start_group, end_group, start_frame, end_frame)| {
                // A frame bound needs its group; a floor of 0 with no frame is "none".
                let start_frame = if start_group.is_some() { start_frame } else { 0 };
                let end_frame = if end_group.is_some() { end_frame } else { None };
                let start_group = match (start_group, start_frame) {
                    (Some(0), 0) => None,
                    (g, _) => g,
                };
                Range {
                    start_group,
                    end_group,
                    start_frame,
                    end_frame,
                }
            })
            .boxed()
    } else {
        (optional_value(), optional_value())
            .prop_map(|(start_group, end_group)| Range {
                start_group,
                end_group,
                ..Default::default()
            })
            .boxed()
    }
}

fn ordered(v: Version) -> BoxedStrategy<bool> {
    if v.has_ordered() {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    }
}

pub(crate) fn setup() -> impl Strategy<Value = Setup> {
    let probe = prop::sample::select(vec![ProbeLevel::None, ProbeLevel::Report, ProbeLevel::Increase]);
    let role = option::of(prop::sample::select(vec![Role::Publisher, Role::Subscriber]));
    let unknown = prop::collection::btree_map(6..1000u64, vec(any::<u8>(), 0..16), 0..4).prop_map(|m| {
        m.into_iter()
            .map(|(id, v)| (id, Bytes::from(v)))
            .collect::<Vec<_>>()
    });
    (
        probe,
        option::of(name()),
        role,
        option::of(varint()),
        option::of(1..=MAX_VARINT),
        unknown,
    )
        .prop_map(|(probe, path, role, cost, origin, unknown)| Setup {
            probe,
            path,
            role,
            cost,
            origin,
            unknown,
        })
}

pub(crate) fn announce_request(v: Version) -> impl Strategy<Value = AnnounceRequest> {
    let exclude = if v.has_exclude_hop() {
        varint().boxed()
    } else {
        Just(0).boxed()
    };
    (path(), exclude).prop_map(|(prefix, exclude_hop)| AnnounceRequest { prefix, exclude_hop })
}

pub(crate) fn announce_ok() -> impl Strategy<Value = AnnounceOk> {
    (varint(), varint()).prop_map(|(origin, active)| AnnounceOk { origin, active })
}

pub(crate) fn announce(v: Version) -> BoxedStrategy<Announce> {
    let active =
        (path(), hops(v), cost(v)).prop_map(|(suffix, hops, cost)| Announce::Active { suffix, hops, cost });
    if v.has_announce_ids() {
        prop_oneof![
            active,
            varint().prop_map(|id| Announce::EndedId { id }),
            (varint(), hops(v), cost(v)).prop_map(|(id, hops, cost)| Announce::Restart { id, hops, cost }),
        ]
        .boxed()
    } else {
        prop_oneof![
            active,
            (path(), hops(v)).prop_map(|(suffix, hops)| Announce::Ended { suffix, hops }),
        ]
        .boxed()
    }
}

pub(crate) fn subscribe(v: Version) -> impl Strategy<Value = Subscribe> {
    // lite-01/02 SUBSCRIBE ends at the priority.
    let (latency, range) = if v.has_subscribe_range() {
        (millis().boxed(), range(v))
    } else {
        (Just(Duration::ZERO).boxed(), Just(Range::default()).boxed())
    };
    (varint(), path(), name(), any::<u8>(), ordered(v), latency, range).prop_map(
        |(id, broadcast, track, priority, ordered, max_latency, range)| Subscribe {
            id,
            broadcast,
            track,
            priority,
            ordered,
            max_latency,
            range,
        },
    )
}

pub(crate) fn subscribe_update(v: Version) -> impl Strategy<Value = SubscribeUpdate> {
    (any::<u8>(), ordered(v), millis(), range(v)).prop_map(|(priority, ordered, max_latency, range)| {
        SubscribeUpdate {
            priority,
            ordered,
            max_latency,
            range,
        }
    })
}

pub(crate) fn subscribe_response(v: Version) -> BoxedStrategy<SubscribeResponse> {
    let drop = (varint(), varint(), varint()).prop_map(|(a, b, error)| {
        SubscribeResponse::Drop(SubscribeDrop {
            start: a.min(b),
            end: a.max(b),
            error,
        })
    });
    if !v.has_subscribe_range() {
        // lite-01: the priority alone; lite-02: nothing.
        let priority = if v == Version::Lite01 {
            any::<u8>().boxed()
        } else {
            Just(0).boxed()
        };
        return priority
            .prop_map(|priority| {
                SubscribeResponse::Ok(SubscribeOk {
                    priority,
                    ..Default::default()
                })
            })
            .boxed();
    }
    if v.has_track_stream() {
        prop_oneof![
            varint().prop_map(|group| SubscribeResponse::Start { group }),
            varint().prop_map(|group| SubscribeResponse::End { group }),
            drop,
        ]
        .boxed()
    } else {
        let ok = (
            any::<u8>(),
            ordered(v),
            millis(),
            optional_value(),
            optional_value(),
        )
            .prop_map(|(priority, ordered, max_latency, start_group, end_group)| {
                SubscribeResponse::Ok(SubscribeOk {
                    priority,
                    ordered,
                    max_latency,
                    start_group,
                    end_group,
                })
            });
        prop_oneof![ok, drop].boxed()
    }
}

pub(crate) fn track_request() -> impl Strategy<Value = TrackRequest> {
    (path(), name()).prop_map(|(broadcast, track)| TrackRequest { broadcast, track })
}

pub(crate) fn track_info(v: Version) -> impl Strategy<Value = TrackInfo> {
    (any::<u8>(), ordered(v), millis(), 1..=MAX_VARINT).prop_map(
        |(priority, ordered, max_latency, timescale)| TrackInfo {
            priority,
            ordered,
            max_latency,
            timescale,
        },
    )
}

pub(crate) fn fetch(v: Version) -> impl Strategy<Value = Fetch> {
    let frames = if v.has_frame_bounds() {
        (varint(), optional_value())
            .prop_map(|(start, end)| (start, end.map(|e| e.max(start))))
            .boxed()
    } else {
        Just((0, None)).boxed()
    };
    (path(), name(), any::<u8>(), varint(), frames).prop_map(
        |(broadcast, track, priority, group, (start_frame, end_frame))| Fetch {
            broadcast,
            track,
            priority,
            group,
            start_frame,
            end_frame,
        },
    )
}

pub(crate) fn group_header(v: Version) -> impl Strategy<Value = GroupHeader> {
    let start = if v.has_frame_bounds() {
        varint().boxed()
    } else {
        Just(0).boxed()
    };
    (varint(), varint(), start).prop_map(|(subscribe, sequence, frame_start)| GroupHeader {
        subscribe,
        sequence,
        frame_start,
    })
}

pub(crate) fn frame_header(v: Version) -> impl Strategy<Value = FrameHeader> {
    let delta = if v.has_frame_timestamps() {
        (-(1i64 << 61)..(1i64 << 61)).boxed()
    } else {
        Just(0).boxed()
    };
    (delta, 0..=limits::MAX_FRAME_SIZE).prop_map(|(timestamp_delta, size)| FrameHeader {
        timestamp_delta,
        size,
    })
}

pub(crate) fn datagram() -> impl Strategy<Value = Datagram> {
    (varint(), varint(), varint(), vec(any::<u8>(), 0..1200)).prop_map(
        |(subscribe, sequence, timestamp, p)| Datagram {
            subscribe,
            sequence,
            timestamp,
            payload: Bytes::from(p),
        },
    )
}

pub(crate) fn probe(v: Version) -> impl Strategy<Value = Probe> {
    let rtt = if v.has_probe_rtt() {
        option::of(1..=MAX_VARINT).boxed()
    } else {
        Just(None).boxed()
    };
    (option::of(1..=MAX_VARINT), rtt).prop_map(|(bitrate, rtt_ms)| Probe { bitrate, rtt_ms })
}

pub(crate) fn goaway() -> impl Strategy<Value = Goaway> {
    "\\PC{0,40}".prop_map(|uri| Goaway { uri })
}

pub(crate) fn announce_init() -> impl Strategy<Value = AnnounceInit> {
    prop::collection::btree_set(path(), 0..8).prop_map(|set| AnnounceInit {
        suffixes: set.into_iter().collect(),
    })
}

pub(crate) fn session_info() -> impl Strategy<Value = SessionInfo> {
    option::of(1..=MAX_VARINT).prop_map(|bitrate| SessionInfo { bitrate })
}
