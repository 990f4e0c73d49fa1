//! Bytes written by the reference encoder (`moq-net` 0.3.18) decode with
//! moq-proto to exactly the values it encoded.
//!
//! moq-net's `fuzz` feature exposes fixed samples (`LiteSample`) and a lite-06
//! announce stream writer (`encode_announces`); the values below are the ones
//! those samples are documented to carry.
#![allow(clippy::unwrap_used)] // Test code.

use std::time::Duration;

use moq_net::fuzz::{Announced, LiteSample, encode_announces};
use moq_proto::*;

fn theirs(sample: LiteSample, v: Version) -> Vec<u8> {
    sample.encode(moq_net::Version::from_code(v.code()).unwrap())
}

fn decode_all<T: Decode>(bytes: &[u8], v: Version) -> T {
    let (msg, used) = decode_slice::<T>(bytes, v).unwrap_or_else(|e| panic!("{v}: {e}: {bytes:02x?}"));
    assert_eq!(used, bytes.len(), "{v}: trailing bytes");
    msg
}

#[test]
fn group_header() {
    for v in Version::ALL {
        let got: GroupHeader = decode_all(&theirs(LiteSample::Group, v), v);
        assert_eq!(
            got,
            GroupHeader {
                subscribe: 3,
                sequence: 1234,
                frame_start: 0
            },
            "{v}"
        );
    }
}

#[test]
fn subscribe() {
    for v in Version::ALL {
        let got: Subscribe = decode_all(&theirs(LiteSample::Subscribe, v), v);
        let want = Subscribe {
            id: 3,
            broadcast: Path::new("room/alice").unwrap(),
            track: "video".into(),
            priority: 2,
            ordered: false,
            max_latency: Duration::from_secs(10),
            range: Range::default(),
        };
        assert_eq!(got, want, "{v}");
        // And our encoding is byte-identical to theirs.
        assert_eq!(want.to_vec(v).unwrap(), theirs(LiteSample::Subscribe, v), "{v}");
    }
}

/// lite-01/02: the same samples, in the layouts without hops, latency or range.
#[test]
fn in_band_samples() {
    for v in Version::IN_BAND {
        let got: GroupHeader = decode_all(&theirs(LiteSample::Group, v), v);
        assert_eq!((got.subscribe, got.sequence), (3, 1234), "{v}");
        let got: Subscribe = decode_all(&theirs(LiteSample::Subscribe, v), v);
        let want = Subscribe {
            id: 3,
            broadcast: Path::new("room/alice").unwrap(),
            track: "video".into(),
            priority: 2,
            ..Default::default()
        };
        assert_eq!(got, want, "{v}");
        assert_eq!(want.to_vec(v).unwrap(), theirs(LiteSample::Subscribe, v), "{v}");
    }
}

#[test]
fn datagram() {
    for v in [Version::Lite05, Version::Lite06] {
        let bytes = theirs(LiteSample::Datagram, v);
        let got = Datagram::decode(&mut &bytes[..], v).unwrap();
        assert_eq!(
            (got.subscribe, got.sequence, got.timestamp),
            (3, 1234, 1_234_567_890)
        );
        assert!(got.payload.is_empty());
    }
}

#[test]
fn setup() {
    for v in [Version::Lite05, Version::Lite06] {
        let got: Setup = decode_all(&theirs(LiteSample::Setup, v), v);
        assert_eq!(got.probe, ProbeLevel::Report, "{v}");
        assert_eq!(got.cost, Some(1), "{v}");
        assert_eq!(got.origin, Some(0x1d_2c3b_4a59_6877), "{v}");
        assert_eq!((got.path, got.role), (None, None), "{v}");
        assert!(got.unknown.is_empty(), "{v}");
    }
}

#[test]
fn frame_headers() {
    // 60 video frame headers: keyframe (delta 0, 60000 bytes), then 33333us deltas.
    for v in [Version::Lite05, Version::Lite06] {
        let bytes = theirs(LiteSample::Video, v);
        let mut cursor = &bytes[..];
        let mut frames = Vec::new();
        while !cursor.is_empty() {
            frames.push(FrameHeader::decode(&mut cursor, v).unwrap());
        }
        assert_eq!(frames.len(), 60);
        assert_eq!(
            frames[0],
            FrameHeader {
                timestamp_delta: 0,
                size: 60_000
            }
        );
        assert_eq!(
            frames[10],
            FrameHeader {
                timestamp_delta: 33_333,
                size: 17_000
            }
        );
        assert_eq!(
            frames[1],
            FrameHeader {
                timestamp_delta: 33_333,
                size: 8_000
            }
        );
    }
}

#[test]
fn lite06_announce_stream() {
    let hop = |id| moq_net::Hop::new(id).unwrap();
    let hops =
        |ids: &[u64]| moq_net::Hops::try_from(ids.iter().map(|id| hop(*id)).collect::<Vec<_>>()).unwrap();
    let stream = encode_announces(
        &[
            Announced::Start(moq_net::Path::new("room/alice").to_owned(), hops(&[7, 9])),
            Announced::Update(0, hops(&[11])),
            Announced::End(0),
        ],
        false,
    );
    let mut cursor = &stream[..];
    let mut got = Vec::new();
    while !cursor.is_empty() {
        got.push(Announce::decode(&mut cursor, Version::Lite06).unwrap());
    }
    assert_eq!(
        got,
        [
            Announce::Active {
                suffix: Path::new("room/alice").unwrap(),
                hops: Hops::from_ids(vec![7, 9]).unwrap(),
                cost: Cost::default(),
            },
            Announce::Restart {
                id: 0,
                hops: Hops::from_ids(vec![11]).unwrap(),
                cost: Cost::default(),
            },
            Announce::EndedId { id: 0 },
        ]
    );
}
