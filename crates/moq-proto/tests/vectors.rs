//! Byte-exact vectors for every message in every version.
//!
//! Each vector is checked both ways: our encoder must produce exactly these
//! bytes, and our decoder must read them back to the same message, consuming
//! all of them; every strict prefix must report `Short` (need more bytes).
//! Section names refer to draft-lcurley-moq-lite (§Messages unless noted);
//! field presence per version follows moq-net 0.3.18, which the ecosystem's
//! tools run.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.

use std::{fmt::Debug, time::Duration};

use bytes::Bytes;
use moq_proto::*;

use Version::{Lite01, Lite02, Lite03, Lite04, Lite05, Lite06};

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn path(s: &str) -> Path {
    Path::new(s).unwrap()
}

fn hops(ids: &[u64]) -> Hops {
    Hops::from_ids(ids.to_vec()).unwrap()
}

/// Encode must match `wire`; decoding `wire` must give `msg` back exactly.
#[track_caller]
fn vector<T: Decode + Encode + PartialEq + Debug>(msg: &T, versions: &[Version], wire: &str) {
    let wire = hex(wire);
    for &v in versions {
        assert_eq!(
            hex::encode(msg.to_vec(v).unwrap()),
            hex::encode(&wire),
            "encode {msg:?} in {v}"
        );
        decodes_to(msg, v, &wire);
    }
}

/// Decoding `wire` gives `msg`, uses every byte, and every strict prefix is `Short`.
#[track_caller]
fn decodes_to<T: Decode + PartialEq + Debug>(msg: &T, v: Version, wire: &[u8]) {
    let (got, used) = decode_slice::<T>(wire, v).unwrap_or_else(|e| panic!("decode in {v}: {e}"));
    assert_eq!(&got, msg, "decode in {v}");
    assert_eq!(
        used,
        wire.len(),
        "decode in {v} used {used} of {} bytes",
        wire.len()
    );
    for cut in 0..wire.len() {
        let err = decode_slice::<T>(&wire[..cut], v).unwrap_err();
        assert_eq!(err, DecodeError::Short, "prefix of {cut} bytes in {v}");
    }
}

#[track_caller]
fn not_in_version<T: Encode + Debug>(msg: &T, versions: &[Version]) {
    for &v in versions {
        let err = msg.to_vec(v).unwrap_err();
        assert!(
            matches!(err, EncodeError::NotInVersion { .. }),
            "{msg:?} in {v}: {err}"
        );
    }
}

// §STREAM_TYPE: bidirectional control streams.
#[test]
fn control_stream_types() {
    vector(&ControlStream::Announce, &Version::ALL, "01");
    vector(&ControlStream::Subscribe, &Version::ALL, "02");
    vector(&ControlStream::Fetch, &Version::ALL, "03");
    vector(&ControlStream::Probe, &Version::ALL, "04");
    vector(&ControlStream::Goaway, &[Lite04, Lite05, Lite06], "05");
    vector(&ControlStream::Track, &[Lite05, Lite06], "06");
    not_in_version(&ControlStream::Goaway, &[Lite03]);
    not_in_version(&ControlStream::Track, &[Lite03, Lite04]);
    // Type 0 was the lite-01/02 session stream; unknown types reset only that stream.
    for (wire, value) in [("00", 0), ("07", 7), ("4100", 256)] {
        let err = decode_slice::<ControlStream>(&hex(wire), Lite06).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownType {
                what: "control stream",
                value
            }
        );
    }
    let err = decode_slice::<ControlStream>(&hex("06"), Lite04).unwrap_err();
    assert!(matches!(err, DecodeError::NotInVersion { .. }));
}

// §Unidirectional Streams: group and (lite-05+) setup streams.
#[test]
fn data_stream_types() {
    vector(&DataStream::Group, &Version::ALL, "00");
    vector(&DataStream::Setup, &[Lite05, Lite06], "01");
    not_in_version(&DataStream::Setup, &[Lite03, Lite04]);
    let err = decode_slice::<DataStream>(&hex("02"), Lite05).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownType {
            what: "data stream",
            value: 2
        }
    );
}

// §SETUP and §Setup Parameters (lite-05+).
#[test]
fn setup() {
    let full = Setup {
        probe: ProbeLevel::Report,
        path: Some("anon?jwt=x".into()),
        role: Some(Role::Subscriber),
        cost: Some(100),
        origin: Some(7),
        unknown: vec![],
    };
    // len 26, 5 params: probe=1, path="anon?jwt=x", role=2, cost=100 (2-byte varint), origin=7
    vector(
        &full,
        &[Lite05, Lite06],
        "1a 05 010101 020a616e6f6e3f6a77743d78 030102 04024064 050107",
    );
    vector(&Setup::default(), &[Lite05, Lite06], "01 00");
    let unknown = Setup {
        unknown: vec![(0x21, Bytes::from_static(b"\xab"))],
        ..Default::default()
    };
    vector(&unknown, &[Lite06], "04 01 2101ab");
    not_in_version(&Setup::default(), &[Lite03, Lite04]);

    // Parameters arrive in any order; unknown role and probe values are tolerated.
    let reordered = hex("07 02 030105 010109");
    let got = decode_slice::<Setup>(&reordered, Lite05).unwrap().0;
    assert_eq!(got.role, None);
    assert_eq!(got.probe, ProbeLevel::Increase);
    // Origin 0 means "no identity".
    assert_eq!(
        decode_slice::<Setup>(&hex("04 01 050100"), Lite06)
            .unwrap()
            .0
            .origin,
        None
    );
}

// §ANNOUNCE_REQUEST: prefix, plus Exclude Hop on lite-04/05.
#[test]
fn announce_request() {
    let msg = AnnounceRequest {
        prefix: path("room"),
        exclude_hop: 0,
    };
    vector(&msg, &[Lite03, Lite06], "05 04726f6f6d");
    let msg = AnnounceRequest {
        prefix: path("room"),
        exclude_hop: 9,
    };
    vector(&msg, &[Lite04, Lite05], "06 04726f6f6d 09");
    // The root prefix.
    vector(&AnnounceRequest::default(), &[Lite06], "01 00");
}

// §ANNOUNCE_OK (lite-05+): publisher hop id, initial active count.
#[test]
fn announce_ok() {
    let msg = AnnounceOk {
        origin: 0x1234,
        active: 3,
    };
    vector(&msg, &[Lite05, Lite06], "03 5234 03");
    not_in_version(&msg, &[Lite03, Lite04]);
}

// §ANNOUNCE, status-byte form (lite-03..05).
#[test]
fn announce_legacy() {
    // lite-03 carries only the hop count, which decodes as unknown (0) ids.
    let active = Announce::Active {
        suffix: path("cam"),
        hops: hops(&[0, 0]),
        cost: Cost::UNKNOWN,
    };
    vector(&active, &[Lite03], "06 01 0363616d 02");
    let active = Announce::Active {
        suffix: path("cam"),
        hops: hops(&[1, 2]),
        cost: Cost::UNKNOWN,
    };
    vector(&active, &[Lite04, Lite05], "08 01 0363616d 020102");
    let ended = Announce::Ended {
        suffix: path("cam"),
        hops: hops(&[1, 2]),
    };
    vector(&ended, &[Lite04, Lite05], "08 00 0363616d 020102");
    // lite-05 restart (status 2) replaces the route, like a repeated active.
    decodes_to(&active, Lite05, &hex("08 02 0363616d 020102"));
    let err = decode_slice::<Announce>(&hex("08 02 0363616d 020102"), Lite04).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidValue {
            what: "announce status",
            value: 2
        }
    );
    not_in_version(&Announce::EndedId { id: 1 }, &[Lite03, Lite04, Lite05]);
}

// §ANNOUNCE_START / §ANNOUNCE_END / §ANNOUNCE_RESTART (lite-06): typed, with
// announce ids and route cost.
#[test]
fn announce_typed() {
    let start = Announce::Active {
        suffix: path("cam"),
        hops: hops(&[1, 2]),
        cost: Cost { warm: 5, cold: 10 },
    };
    vector(&start, &[Lite06], "00 09 0363616d 020102 05 0a");
    vector(&Announce::EndedId { id: 4 }, &[Lite06], "01 01 04");
    let restart = Announce::Restart {
        id: 4,
        hops: hops(&[3]),
        cost: Cost { warm: 1, cold: 2 },
    };
    vector(&restart, &[Lite06], "02 05 04 0103 01 02");
    // Unknown types are skipped by their length, leaving the stream usable.
    decodes_to(&Announce::Unknown { kind: 7 }, Lite06, &hex("07 02 aabb"));
    not_in_version(
        &Announce::Ended {
            suffix: path("cam"),
            hops: Hops::new(),
        },
        &[Lite06],
    );
}

// §SUBSCRIBE.
#[test]
fn subscribe() {
    let mut msg = Subscribe {
        id: 1,
        broadcast: path("room/cam"),
        track: "video".into(),
        priority: 0x80,
        ordered: false,
        max_latency: Duration::from_millis(500),
        range: Range::default(),
    };
    vector(
        &msg,
        &[Lite03, Lite04, Lite05],
        "16 01 08726f6f6d2f63616d 05766964656f 80 00 41f4 00 00",
    );
    vector(
        &msg,
        &[Lite06],
        "17 01 08726f6f6d2f63616d 05766964656f 80 41f4 00 00 00 00",
    );

    msg.ordered = true;
    msg.range.start_group = Some(5);
    msg.range.end_group = Some(9);
    vector(
        &msg,
        &[Lite03, Lite04, Lite05],
        "16 01 08726f6f6d2f63616d 05766964656f 80 01 41f4 06 0a",
    );
    msg.ordered = false;
    msg.range.start_frame = 2;
    msg.range.end_frame = Some(3);
    vector(
        &msg,
        &[Lite06],
        "17 01 08726f6f6d2f63616d 05766964656f 80 41f4 05 0a 02 04",
    );
    not_in_version(&msg, &[Lite05]);
}

// §SUBSCRIBE_UPDATE.
#[test]
fn subscribe_update() {
    let msg = SubscribeUpdate {
        priority: 1,
        ordered: false,
        max_latency: Duration::ZERO,
        range: Range {
            end_group: Some(2),
            ..Default::default()
        },
    };
    vector(&msg, &[Lite03, Lite04, Lite05], "05 01 00 00 00 03");
    vector(&msg, &[Lite06], "06 01 00 00 03 00 00");
}

// §SUBSCRIBE_OK / §SUBSCRIBE_DROP (lite-03/04) and §SUBSCRIBE_START /
// §SUBSCRIBE_END / §SUBSCRIBE_DROP (lite-05+): `[type][len][body]`.
#[test]
fn subscribe_responses() {
    let ok = SubscribeResponse::Ok(SubscribeOk {
        priority: 0x10,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: Some(4),
        end_group: None,
    });
    vector(&ok, &[Lite03, Lite04], "00 05 10 00 00 05 00");
    let drop = SubscribeDrop {
        start: 3,
        end: 5,
        error: 0,
    };
    vector(&SubscribeResponse::Drop(drop), &[Lite03, Lite04], "01 03 030500");
    vector(&SubscribeResponse::Drop(drop), &[Lite05, Lite06], "02 03 030500");
    vector(
        &SubscribeResponse::Start { group: 7 },
        &[Lite05, Lite06],
        "00 01 07",
    );
    vector(
        &SubscribeResponse::End { group: 9 },
        &[Lite05, Lite06],
        "01 01 09",
    );
    not_in_version(&ok, &[Lite05, Lite06]);
    not_in_version(&SubscribeResponse::Start { group: 7 }, &[Lite03, Lite04]);
    let err = decode_slice::<SubscribeResponse>(&hex("03 01 00"), Lite06).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnknownType {
            what: "subscribe response",
            value: 3
        }
    );
    let err = decode_slice::<SubscribeResponse>(&hex("02 03 050300"), Lite06).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
}

// §TRACK and §TRACK_INFO (lite-05+).
#[test]
fn track() {
    let req = TrackRequest {
        broadcast: path("room/cam"),
        track: "video".into(),
    };
    vector(&req, &[Lite05, Lite06], "0f 08726f6f6d2f63616d 05766964656f");
    not_in_version(&req, &[Lite03, Lite04]);
    let info = TrackInfo {
        priority: 2,
        ordered: false,
        max_latency: Duration::from_secs(5),
        timescale: 1_000_000,
    };
    vector(&info, &[Lite05], "08 02 00 5388 800f4240");
    vector(&info, &[Lite06], "07 02 5388 800f4240");
    not_in_version(&info, &[Lite03, Lite04]);
    let err = decode_slice::<TrackInfo>(&hex("03 02 00 00"), Lite06).unwrap_err();
    assert_eq!(
        err,
        DecodeError::InvalidValue {
            what: "timescale",
            value: 0
        }
    );
}

// §FETCH.
#[test]
fn fetch() {
    let mut msg = Fetch {
        broadcast: path("a"),
        track: "b".into(),
        priority: 0,
        group: 42,
        start_frame: 0,
        end_frame: None,
    };
    vector(&msg, &[Lite03, Lite04, Lite05], "06 0161 0162 00 2a");
    vector(&msg, &[Lite06], "08 0161 0162 00 2a 00 00");
    msg.start_frame = 1;
    msg.end_frame = Some(4);
    vector(&msg, &[Lite06], "08 0161 0162 00 2a 01 05");
    not_in_version(&msg, &[Lite05]);
    let err = decode_slice::<Fetch>(&hex("08 0161 0162 00 2a 05 02"), Lite06).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
}

// §GROUP.
#[test]
fn group() {
    let msg = GroupHeader {
        subscribe: 1,
        sequence: 300,
        frame_start: 0,
    };
    vector(&msg, &[Lite03, Lite04, Lite05], "03 01 412c");
    vector(&msg, &[Lite06], "04 01 412c 00");
    let tail = GroupHeader {
        frame_start: 3,
        ..msg
    };
    vector(&tail, &[Lite06], "04 01 412c 03");
    not_in_version(&tail, &[Lite05]);
}

// §FRAME: size only (lite-03/04); zigzag timestamp delta then size (lite-05+).
#[test]
fn frame() {
    vector(
        &FrameHeader {
            timestamp_delta: 0,
            size: 5,
        },
        &[Lite03, Lite04],
        "05",
    );
    vector(
        &FrameHeader {
            timestamp_delta: 33,
            size: 5,
        },
        &[Lite05, Lite06],
        "4042 05",
    );
    vector(
        &FrameHeader {
            timestamp_delta: -1,
            size: 300,
        },
        &[Lite05, Lite06],
        "01 412c",
    );
    // The size limit is enforced from the header alone, before any payload.
    let err = decode_slice::<FrameHeader>(&hex("00 c000000010000000"), Lite06).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { what: "FRAME", .. }),
        "{err}"
    );

    let mut send = TimestampCursor::new();
    let mut recv = TimestampCursor::new();
    for ts in [1000u64, 1033, 1066, 1050] {
        let delta = send.delta_to(ts).unwrap();
        assert_eq!(recv.apply(delta), Some(ts));
    }
    assert_eq!(TimestampCursor::new().apply(-1), None);
}

// §Datagrams (lite-05+).
#[test]
fn datagram() {
    let msg = Datagram {
        subscribe: 2,
        sequence: 3,
        timestamp: 1000,
        payload: Bytes::from_static(b"hi"),
    };
    for v in [Lite05, Lite06] {
        assert_eq!(hex::encode(msg.to_vec(v).unwrap()), "020343e86869");
        let got = Datagram::decode(&mut Bytes::from(hex("020343e86869")), v).unwrap();
        assert_eq!(got, msg);
    }
    not_in_version(&msg, &[Lite03, Lite04]);
    let err = Datagram::decode(&mut &hex("0203")[..], Lite05).unwrap_err();
    assert_eq!(err, DecodeError::Truncated { what: "DATAGRAM" });
}

// §PROBE: bitrate (lite-03), plus RTT (lite-04+); 0 means unknown.
#[test]
fn probe() {
    let msg = Probe {
        bitrate: Some(1_000_000),
        rtt_ms: None,
    };
    vector(&msg, &[Lite03], "04 800f4240");
    let msg = Probe {
        bitrate: Some(1_000_000),
        rtt_ms: Some(25),
    };
    vector(&msg, &[Lite04, Lite05, Lite06], "05 800f4240 19");
    vector(&Probe::default(), &[Lite06], "02 00 00");
}

// §GOAWAY (lite-04+).
#[test]
fn goaway() {
    let msg = Goaway {
        uri: "https://b/".into(),
    };
    vector(&msg, &[Lite04, Lite05, Lite06], "0b 0a 68747470733a2f2f622f");
    vector(&Goaway::default(), &[Lite04], "01 00");
    not_in_version(&msg, &[Lite03]);
}

// lite-01/02 (negotiated in-band by the legacy SETUP). The Firefox capture in
// interop/browser/README.md: after SETUP, `01 01 00` (announce please for the
// root) is answered `07 01 05 "clock"` (ANNOUNCE_INIT), and `02 10 00 05
// "clock" 07 "seconds" 00` (subscribe) is answered `00` (lite-02 SUBSCRIBE_OK).
#[test]
fn lite01_02_streams() {
    vector(&ControlStream::Session, &[Lite01, Lite02], "00");
    vector(&ControlStream::Announce, &[Lite01, Lite02], "01");
    vector(&ControlStream::Subscribe, &[Lite01, Lite02], "02");
    not_in_version(&ControlStream::Session, &Version::ALL);
    for kind in [
        ControlStream::Fetch,
        ControlStream::Probe,
        ControlStream::Goaway,
        ControlStream::Track,
    ] {
        not_in_version(&kind, &[Lite01, Lite02]);
    }
    let err = decode_slice::<ControlStream>(&hex("03"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::NotInVersion { .. }), "{err}");
    vector(&DataStream::Group, &[Lite01, Lite02], "00");
    not_in_version(&DataStream::Setup, &[Lite01, Lite02]);
}

#[test]
fn lite01_02_announce() {
    vector(&AnnounceRequest::default(), &[Lite01, Lite02], "01 00");
    let init = AnnounceInit {
        suffixes: vec![path("clock")],
    };
    vector(&init, &[Lite01, Lite02], "07 01 05636c6f636b");
    vector(&AnnounceInit::default(), &[Lite02], "01 00");
    not_in_version(&init, &Version::ALL);
    let err = decode_slice::<AnnounceInit>(&hex("05 02 0161 0161"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    let twice = AnnounceInit {
        suffixes: vec![path("a"), path("a")],
    };
    assert!(matches!(
        twice.to_vec(Lite02).unwrap_err(),
        EncodeError::Invalid { .. }
    ));
    // The count is checked before any suffix is read.
    let err = decode_slice::<AnnounceInit>(&hex("03 4401 00"), Lite01).unwrap_err();
    assert!(matches!(err, DecodeError::TooMany { count: 1025, .. }), "{err}");
    let many = AnnounceInit {
        suffixes: (0..=limits::MAX_ANNOUNCE_INIT)
            .map(|i| path(&i.to_string()))
            .collect(),
    };
    assert!(matches!(
        many.to_vec(Lite02).unwrap_err(),
        EncodeError::TooMany { .. }
    ));
    // A count larger than the body holds is malformed, not short.
    let err = decode_slice::<AnnounceInit>(&hex("01 05"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");

    // ANNOUNCE: status and suffix, no hop list.
    let active = Announce::Active {
        suffix: path("cam"),
        hops: Hops::new(),
        cost: Cost::UNKNOWN,
    };
    vector(&active, &[Lite01, Lite02], "05 01 0363616d");
    let ended = Announce::Ended {
        suffix: path("cam"),
        hops: Hops::new(),
    };
    vector(&ended, &[Lite01, Lite02], "05 00 0363616d");
    // Hops have no place on the wire: left out, not an error.
    let routed = Announce::Active {
        suffix: path("cam"),
        hops: hops(&[1, 2]),
        cost: Cost::UNKNOWN,
    };
    assert_eq!(routed.to_vec(Lite02).unwrap(), hex("05 01 0363616d"));
    // No restart status, and a trailing byte (a hop count) is refused.
    let err = decode_slice::<Announce>(&hex("05 02 0363616d"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidValue { value: 2, .. }), "{err}");
    let err = decode_slice::<Announce>(&hex("06 01 0363616d 00"), Lite01).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err}");
}

#[test]
fn lite01_02_subscribe() {
    let msg = Subscribe {
        id: 0,
        broadcast: path("clock"),
        track: "seconds".into(),
        ..Default::default()
    };
    vector(&msg, &[Lite01, Lite02], "10 00 05636c6f636b 077365636f6e6473 00");
    // Latency and order are preferences, left out; a range is not.
    let preferences = Subscribe {
        max_latency: Duration::from_secs(1),
        ordered: true,
        ..msg.clone()
    };
    assert_eq!(preferences.to_vec(Lite02).unwrap(), msg.to_vec(Lite02).unwrap());
    let ranged = Subscribe {
        range: Range {
            start_group: Some(3),
            ..Default::default()
        },
        ..msg.clone()
    };
    not_in_version(&ranged, &[Lite01, Lite02]);
    let err =
        decode_slice::<Subscribe>(&hex("11 00 05636c6f636b 077365636f6e6473 00 00"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err}");
    not_in_version(&SubscribeUpdate::default(), &[Lite01, Lite02]);
    let err = decode_slice::<SubscribeUpdate>(&hex("01 00"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::NotInVersion { .. }), "{err}");

    // SUBSCRIBE_OK, untyped: the priority on lite-01, nothing on lite-02.
    let ok = SubscribeResponse::Ok(SubscribeOk {
        priority: 0x10,
        ..Default::default()
    });
    vector(&ok, &[Lite01], "01 10");
    vector(&SubscribeResponse::Ok(SubscribeOk::default()), &[Lite02], "00");
    // lite-02 drops the priority when encoding.
    assert_eq!(ok.to_vec(Lite02).unwrap(), hex("00"));
    let err = decode_slice::<SubscribeResponse>(&hex("01 10"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err}");
    let drop = SubscribeResponse::Drop(SubscribeDrop {
        start: 1,
        end: 1,
        error: 0,
    });
    not_in_version(&drop, &[Lite01, Lite02]);
    not_in_version(&SubscribeResponse::Start { group: 1 }, &[Lite01, Lite02]);
}

#[test]
fn lite01_02_data_and_session() {
    let group = GroupHeader {
        subscribe: 1,
        sequence: 300,
        frame_start: 0,
    };
    vector(&group, &[Lite01, Lite02], "03 01 412c");
    let frame = FrameHeader {
        timestamp_delta: 0,
        size: 5,
    };
    vector(&frame, &[Lite01, Lite02], "05");
    vector(&SessionInfo { bitrate: Some(1000) }, &[Lite01, Lite02], "02 43e8");
    vector(&SessionInfo::default(), &[Lite02], "01 00");
    not_in_version(&SessionInfo::default(), &Version::ALL);
    not_in_version(&Probe::default(), &[Lite01, Lite02]);
    not_in_version(&Goaway::default(), &[Lite01, Lite02]);
    not_in_version(
        &Fetch {
            broadcast: path("a"),
            track: "b".into(),
            ..Default::default()
        },
        &[Lite01, Lite02],
    );
    let err = decode_slice::<Fetch>(&hex("06 0161 0162 00 2a"), Lite02).unwrap_err();
    assert!(matches!(err, DecodeError::NotInVersion { .. }), "{err}");
}
