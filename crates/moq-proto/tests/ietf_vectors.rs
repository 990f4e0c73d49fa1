//! Byte-exact moq-transport vectors, per message and per draft family.
//!
//! Each vector is checked both ways: our encoder must produce exactly these
//! bytes, and our decoder must read them back to the same value using all of
//! them, with every strict prefix reporting `Short`. The bytes are worked out
//! by hand from the message layouts of draft-ietf-moq-transport-14 … -19 (and,
//! for drafts 20–22, moq-net 0.3.18); the comments spell each field out.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.

use std::fmt::Debug;

use bytes::Bytes;
use moq_proto::{
    DecodeError,
    ietf::{params as p, *},
    legacy::{LegacyClientSetup, LegacyServerSetup, LegacyVersion, SetupKind, choose_version},
};

use Version::{Draft14 as D14, Draft15 as D15, Draft16 as D16, Draft17 as D17, Draft18 as D18};
use Version::{Draft19 as D19, Draft20 as D20, Draft21 as D21, Draft22 as D22};

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

#[track_caller]
fn vector<T: Decode + Encode + PartialEq + Debug>(msg: &T, versions: &[Version], wire: &str) {
    let wire = hex(wire);
    for &v in versions {
        assert_eq!(
            hex::encode(msg.to_vec(v).unwrap()),
            hex::encode(&wire),
            "encode {msg:?} in {v}"
        );
        let (got, used) = decode_slice::<T>(&wire, v).unwrap_or_else(|e| panic!("decode in {v}: {e}"));
        assert_eq!(&got, msg, "decode in {v}");
        assert_eq!(used, wire.len(), "decode in {v}");
        for cut in 0..wire.len() {
            assert_eq!(
                decode_slice::<T>(&wire[..cut], v).unwrap_err(),
                DecodeError::Short,
                "prefix of {cut} bytes in {v}"
            );
        }
    }
}

/// For a datagram, whose payload runs to its end: both directions, but a
/// shorter datagram is a different (shorter) payload, not a prefix.
#[track_caller]
fn datagram_vector(msg: &ObjectDatagram, versions: &[Version], wire: &str) {
    let wire = hex(wire);
    for &v in versions {
        assert_eq!(
            hex::encode(msg.to_vec(v).unwrap()),
            hex::encode(&wire),
            "encode {msg:?} in {v}"
        );
        assert_eq!(
            decode_slice::<ObjectDatagram>(&wire, v).unwrap(),
            (msg.clone(), wire.len()),
            "in {v}"
        );
    }
}

#[track_caller]
fn not_in_draft<T: Encode + Debug>(msg: &T, versions: &[Version]) {
    for &v in versions {
        let err = msg.to_vec(v).unwrap_err();
        assert!(
            matches!(err, moq_proto::EncodeError::NotInDraft { .. }),
            "{msg:?} in {v}: {err}"
        );
    }
}

fn ns(fields: &[&str]) -> Namespace {
    Namespace::new(fields.iter().copied())
}

fn token() -> Bytes {
    AuthToken::UseValue {
        kind: 0,
        value: Bytes::from_static(b"tok"),
    }
    .to_bytes(D14)
    .unwrap()
}

// ---- SETUP ----

#[test]
fn client_setup() {
    // draft-14 §9.3: type 0x20, length u16, one version (0xff00000e as an
    // 8-byte varint), 2 options: PATH (0x01) "/a", MAX_REQUEST_ID (0x02) 100.
    let msg = Message::ClientSetup(ClientSetup {
        versions: vec![D14.code()],
        options: SetupOptions {
            path: Some("/a".into()),
            max_request_id: Some(100),
            ..Default::default()
        },
    });
    vector(&msg, &[D14], "20 0011 01 c0000000ff00000e 02 01 02 2f61 02 4064");

    // draft-16: no version list; option types are deltas (1, +1, +5).
    let msg = Message::ClientSetup(ClientSetup {
        versions: vec![],
        options: SetupOptions {
            path: Some("/a".into()),
            max_request_id: Some(100),
            implementation: Some(Bytes::from_static(b"x")),
            ..Default::default()
        },
    });
    vector(&msg, &[D16], "20 000b 03 01 02 2f61 01 4064 05 01 78");
    // draft-15 writes the same options with absolute types.
    vector(&msg, &[D15], "20 000b 03 01 02 2f61 02 4064 07 01 78");
    not_in_draft(&msg, &[D17, D22]);
}

#[test]
fn server_setup() {
    let msg = Message::ServerSetup(ServerSetup {
        version: Some(D14.code()),
        options: SetupOptions {
            max_request_id: Some(100),
            ..Default::default()
        },
    });
    vector(&msg, &[D14], "21 000c c0000000ff00000e 01 02 4064");
    let msg = Message::ServerSetup(ServerSetup {
        version: None,
        options: SetupOptions::default(),
    });
    vector(&msg, &[D15, D16], "21 0001 00");
}

#[test]
fn unified_setup() {
    // draft-17 §9.3: type 0x2F00 (leading-ones: af 00), length u16, options to
    // the end: PATH "/a", MOQT_IMPLEMENTATION (+6) "x", HOP_ID (0x40b54, a
    // delta of 0x40b4d: 3-byte form c4 0b 4d) 5.
    let mut other = KeyValuePairs::new();
    other.push(setup::OPTION_HOP_ID, KvValue::Varint(5)).unwrap();
    let msg = Message::Setup(Setup {
        options: SetupOptions {
            path: Some("/a".into()),
            implementation: Some(Bytes::from_static(b"x")),
            other,
            ..Default::default()
        },
    });
    vector(&msg, &[D17, D18, D22], "af00 000b 01 02 2f61 06 01 78 c40b4d 05");
    not_in_draft(&msg, &[D14, D16]);
    // The same SETUP opens the control stream.
    let Message::Setup(setup) = msg else {
        unreachable!()
    };
    vector(
        &UniStream::Setup(setup),
        &[D17],
        "af00 000b 01 02 2f61 06 01 78 c40b4d 05",
    );
}

// ---- Session control ----

#[test]
fn goaway() {
    let msg = Message::GoAway(GoAway {
        uri: "x".into(),
        ..Default::default()
    });
    vector(&msg, &[D14, D15, D16], "10 0002 01 78");
    // draft-17 adds a timeout: 5000 ms (leading-ones 93 88).
    let msg = Message::GoAway(GoAway {
        uri: String::new(),
        timeout: 5000,
        request_id: None,
    });
    vector(&msg, &[D17, D19, D22], "10 0003 00 9388");
    not_in_draft(&msg, &[D14]);
    // draft-18 may end with the last Request ID.
    let msg = Message::GoAway(GoAway {
        uri: String::new(),
        timeout: 5000,
        request_id: Some(4),
    });
    vector(&msg, &[D18], "10 0004 00 9388 04");
    not_in_draft(&msg, &[D17, D19]);
}

#[test]
fn request_flow_control() {
    vector(
        &Message::MaxRequestId(RequestId(100)),
        &[D14, D15, D16],
        "15 0002 4064",
    );
    vector(
        &Message::RequestsBlocked(RequestId(64)),
        &[D14, D16],
        "1a 0002 4040",
    );
    not_in_draft(&Message::MaxRequestId(RequestId(1)), &[D17, D22]);
}

// ---- SUBSCRIBE and TRACK_STATUS ----

fn subscribe() -> Subscribe {
    Subscribe {
        request_id: 1,
        required_request_id_delta: 0,
        namespace: ns(&["room"]),
        name: "cam".into(),
        priority: Some(0x80),
        group_order: Some(GroupOrder::Ascending),
        forward: Some(true),
        filter: Some(Filter::NextObject),
        params: Parameters::new().with(p::AUTHORIZATION_TOKEN, Value::Bytes(token())),
    }
}

#[test]
fn subscribe_draft14() {
    // request 1, ("room"), "cam", priority 0x80, Ascending, forward 1,
    // LargestObject (2), 1 parameter: AUTHORIZATION_TOKEN (3) = USE_VALUE(3)
    // type 0 "tok".
    let msg = Message::Subscribe(subscribe());
    vector(
        &msg,
        &[D14],
        "03 0017 01 01 04 726f6f6d 03 63616d 80 01 01 02 01 03 05 03 00 746f6b",
    );
}

#[test]
fn subscribe_draft15_16() {
    // The fixed fields become parameters: token (0x03), FORWARD (0x10),
    // SUBSCRIBER_PRIORITY (0x20, a varint here: 40 80), SUBSCRIPTION_FILTER
    // (0x21, length 1, tag 2), GROUP_ORDER (0x22). draft-16 writes deltas.
    let msg = Message::Subscribe(subscribe());
    vector(
        &msg,
        &[D16],
        "03 001d 01 01 04 726f6f6d 03 63616d 05 03 05 0300746f6b 0d 01 10 4080 01 01 02 01 01",
    );
    vector(
        &msg,
        &[D15],
        "03 001d 01 01 04 726f6f6d 03 63616d 05 03 05 0300746f6b 10 01 20 4080 21 01 02 22 01",
    );
}

#[test]
fn subscribe_draft17_19() {
    // draft-17 adds the Required Request ID Delta (0) and writes a uint8
    // parameter as one byte.
    let msg = Message::Subscribe(subscribe());
    vector(
        &msg,
        &[D17],
        "03 001d 01 00 01 04 726f6f6d 03 63616d 05 03 05 0300746f6b 0d 01 10 80 01 01 02 01 01",
    );
    vector(
        &msg,
        &[D18, D19],
        "03 001c 01 01 04 726f6f6d 03 63616d 05 03 05 0300746f6b 0d 01 10 80 01 01 02 01 01",
    );
}

#[test]
fn subscribe_draft20_22() {
    let msg = Message::Subscribe(Subscribe {
        filter: Some(Filter::Absolute {
            start: Location::new(5, 0),
            end: None,
        }),
        group_order: Some(GroupOrder::Descending),
        params: Parameters::new(),
        ..subscribe()
    });
    // LOCATION_FILTER as a field list [5, 0] (length 2) … (the same bytes,
    // by coincidence, as draft-22's type 2 followed by {5, 0})
    vector(
        &msg,
        &[D20, D21],
        "03 0016 01 01 04 726f6f6d 03 63616d 04 10 01 10 80 01 02 0500 01 02",
    );
    // … and as Location Filter Type 2 (absolute start) with no length.
    vector(
        &msg,
        &[D22],
        "03 0016 01 01 04 726f6f6d 03 63616d 04 10 01 10 80 01 020500 01 02",
    );
}

#[test]
fn track_status() {
    // The SUBSCRIBE layout, without delivery parameters.
    let msg = Message::TrackStatus(Subscribe {
        request_id: 4,
        namespace: ns(&["a"]),
        name: "b".into(),
        ..Default::default()
    });
    vector(&msg, &[D16], "0d 0007 04 01 0161 0162 00");
    vector(&msg, &[D18, D22], "0d 0007 04 01 0161 0162 00");
    // draft-14 answers with TRACK_STATUS_OK, the SUBSCRIBE_OK layout.
    let ok = Message::TrackStatusOk(SubscribeOk {
        request_id: 4,
        group_order: Some(GroupOrder::Ascending),
        ..Default::default()
    });
    vector(&ok, &[D14], "0e 0006 04 00 00 01 00 00");
    not_in_draft(&ok, &[D15, D16]);
    let err = Message::TrackStatusError(RequestError {
        request_id: 4,
        code: 4,
        ..Default::default()
    });
    vector(&err, &[D14], "0f 0003 04 04 00");
}

// ---- SUBSCRIBE replies, updates, ends ----

#[test]
fn subscribe_ok() {
    // draft-14: request 1, alias 2, expires 0, Descending, content exists, {5, 3}, 0 params.
    let msg = Message::SubscribeOk(SubscribeOk {
        request_id: 1,
        track_alias: 2,
        group_order: Some(GroupOrder::Descending),
        largest: Some(Location::new(5, 3)),
        ..Default::default()
    });
    vector(&msg, &[D14], "04 0008 01 02 00 02 01 05 03 00");

    // draft-16: LARGEST_OBJECT (0x09) wrapped in a length, then Track
    // Extensions: DEFAULT_PUBLISHER_PRIORITY (0x0e) = 1.
    let mut properties = TrackProperties::new();
    properties
        .push(
            properties::PROPERTY_DEFAULT_PUBLISHER_PRIORITY,
            KvValue::Varint(1),
        )
        .unwrap();
    let msg = Message::SubscribeOk(SubscribeOk {
        request_id: 1,
        track_alias: 2,
        largest: Some(Location::new(5, 3)),
        properties: properties.clone(),
        ..Default::default()
    });
    vector(&msg, &[D16], "04 0009 01 02 01 09 02 0503 0e 01");
    // draft-17+: no Request ID; the Location is two bare varints.
    let msg17 = Message::SubscribeOk(SubscribeOk {
        request_id: 0,
        ..match msg {
            Message::SubscribeOk(ok) => ok,
            _ => unreachable!(),
        }
    });
    vector(&msg17, &[D17, D22], "04 0007 02 01 09 0503 0e 01");
    // Track properties do not exist in draft-15.
    not_in_draft(&msg17, &[D15]);
}

#[test]
fn subscribe_errors() {
    let err = RequestError {
        request_id: 1,
        code: 4,
        retry_interval: 0,
        reason: "no".into(),
    };
    vector(
        &Message::SubscribeError(err.clone()),
        &[D14],
        "05 0005 01 04 02 6e6f",
    );
    vector(
        &Message::RequestError(err.clone()),
        &[D15],
        "05 0005 01 04 02 6e6f",
    );
    not_in_draft(&Message::SubscribeError(err), &[D15]);
    // draft-16 adds the Retry Interval (1000 ms); draft-17 drops the Request ID.
    let err = RequestError {
        request_id: 1,
        code: 0x10,
        retry_interval: 1000,
        reason: "no".into(),
    };
    vector(
        &Message::RequestError(err.clone()),
        &[D16],
        "05 0007 01 10 43e8 02 6e6f",
    );
    let err = RequestError { request_id: 0, ..err };
    vector(
        &Message::RequestError(err),
        &[D18, D22],
        "05 0006 10 83e8 02 6e6f",
    );
}

#[test]
fn request_ok() {
    let msg = Message::RequestOk(RequestOk {
        request_id: 3,
        ..Default::default()
    });
    vector(&msg, &[D15, D16], "07 0002 03 00");
    // draft-18+: no Request ID, and Track Properties (TIMESCALE 0x08 = 90000, c1 5f 90).
    let mut properties = TrackProperties::new();
    properties
        .push(properties::PROPERTY_TIMESCALE, KvValue::Varint(90_000))
        .unwrap();
    let msg = Message::RequestOk(RequestOk {
        request_id: 0,
        params: Parameters::new(),
        properties,
    });
    vector(&msg, &[D18, D22], "07 0005 00 08 c15f90");
    not_in_draft(&msg, &[D17]);
    // draft-14's PUBLISH_NAMESPACE_OK shares the type number.
    vector(&Message::PublishNamespaceOk(RequestId(0)), &[D14], "07 0001 00");
}

#[test]
fn subscribe_update() {
    // draft-14: request 3, subscription 1, start {5, 0}, end group 0, priority 1, forward 0, 0 params.
    let msg = Message::RequestUpdate(RequestUpdate {
        request_id: 3,
        existing_request_id: 1,
        start: Some(Location::new(5, 0)),
        end_group: Some(0),
        priority: Some(1),
        forward: Some(false),
        ..Default::default()
    });
    vector(&msg, &[D14], "02 0008 03 01 05 00 00 01 00 00");
    // draft-15/16: request 3, existing 1, SUBSCRIBER_PRIORITY = 1.
    let msg = Message::RequestUpdate(RequestUpdate {
        request_id: 3,
        existing_request_id: 1,
        priority: Some(1),
        ..Default::default()
    });
    vector(&msg, &[D15, D16], "02 0005 03 01 01 20 01");
    // draft-17: the Required Request ID Delta instead; draft-18+: nothing.
    let msg = Message::RequestUpdate(RequestUpdate {
        request_id: 3,
        priority: Some(1),
        ..Default::default()
    });
    vector(&msg, &[D17], "02 0005 03 00 01 20 01");
    vector(&msg, &[D18, D22], "02 0004 03 01 20 01");
}

#[test]
fn unsubscribe_and_publish_done() {
    vector(&Message::Unsubscribe(RequestId(1)), &[D14, D16], "0a 0001 01");
    not_in_draft(&Message::Unsubscribe(RequestId(1)), &[D17]);
    // status TRACK_ENDED (2), 5 streams, empty reason.
    let msg = Message::PublishDone(PublishDone {
        request_id: 1,
        status: 2,
        stream_count: 5,
        reason: String::new(),
    });
    vector(&msg, &[D14, D16], "0b 0004 01 02 05 00");
    let msg = Message::PublishDone(PublishDone {
        request_id: 0,
        status: 2,
        stream_count: 5,
        reason: String::new(),
    });
    vector(&msg, &[D17, D22], "0b 0003 02 05 00");
}

// ---- PUBLISH ----

#[test]
fn publish() {
    // draft-14: request 0, ("a"), "b", alias 1, Ascending, content exists {3, 0}, forward 1, 0 params.
    let msg = Message::Publish(Publish {
        request_id: 0,
        namespace: ns(&["a"]),
        name: "b".into(),
        track_alias: 1,
        group_order: Some(GroupOrder::Ascending),
        largest: Some(Location::new(3, 0)),
        forward: Some(true),
        ..Default::default()
    });
    vector(&msg, &[D14], "1d 000d 00 01 0161 0162 01 01 01 0300 01 00");
    // draft-16: LARGEST_OBJECT (0x09, length 2) and FORWARD (+7).
    let msg = Message::Publish(Publish {
        group_order: None,
        ..match msg {
            Message::Publish(p) => p,
            _ => unreachable!(),
        }
    });
    vector(&msg, &[D16], "1d 000e 00 01 0161 0162 01 02 09 02 0300 07 01");
    // draft-17: Required Request ID Delta, bare Location, byte boolean.
    vector(&msg, &[D17], "1d 000e 00 00 01 0161 0162 01 02 09 0300 07 01");
}

#[test]
fn publish_ok_and_error() {
    // draft-14: request 0, forward 1, priority 0x80, Descending, NextGroupStart (1), 0 params.
    let msg = Message::PublishOk(PublishOk {
        request_id: 0,
        forward: Some(true),
        priority: Some(0x80),
        group_order: Some(GroupOrder::Descending),
        filter: Some(Filter::Relative(0)),
        params: Parameters::new(),
    });
    vector(&msg, &[D14], "1e 0006 00 01 80 02 01 00");
    let msg = Message::PublishOk(PublishOk {
        request_id: 0,
        forward: Some(true),
        ..Default::default()
    });
    vector(&msg, &[D16], "1e 0004 00 01 10 01");
    vector(&msg, &[D18], "1e 0003 01 10 01");
    not_in_draft(&msg, &[D19, D22]);
    let err = Message::PublishError(RequestError {
        request_id: 0,
        code: 4,
        ..Default::default()
    });
    vector(&err, &[D14], "1f 0003 00 04 00");
}

// ---- FETCH ----

#[test]
fn fetch() {
    // draft-14 standalone: request 2, priority 0x80, Ascending, type 1, ("a"),
    // "b", {1, 0} to {2, 0}, 0 params.
    let msg = Message::Fetch(Fetch {
        request_id: 2,
        priority: Some(0x80),
        group_order: Some(GroupOrder::Ascending),
        kind: FetchKind::Standalone {
            namespace: ns(&["a"]),
            name: "b".into(),
            start: Location::new(1, 0),
            end: Location::new(2, 0),
        },
        ..Default::default()
    });
    vector(&msg, &[D14], "16 000e 02 80 01 01 01 0161 0162 0100 0200 00");
    // draft-16 relative joining: request 2, type 2, joining 0, offset 1,
    // SUBSCRIBER_PRIORITY 0x80.
    let msg = Message::Fetch(Fetch {
        request_id: 2,
        priority: Some(0x80),
        kind: FetchKind::RelativeJoining {
            joining_request_id: 0,
            offset: 1,
        },
        ..Default::default()
    });
    vector(&msg, &[D15, D16], "16 0008 02 02 00 01 01 20 4080");
    vector(&msg, &[D18, D19], "16 0007 02 02 00 01 01 20 80");
    not_in_draft(&msg, &[D20, D22]);
    // draft-20: the track up front, LOCATION_FILTER [1] (one group back).
    let msg = Message::Fetch(Fetch {
        request_id: 2,
        priority: Some(0x80),
        kind: FetchKind::Track {
            namespace: ns(&["a"]),
            name: "b".into(),
        },
        filter: Some(Filter::Relative(1)),
        ..Default::default()
    });
    vector(&msg, &[D20, D21], "16 000c 02 01 0161 0162 02 20 80 01 01 01");
    vector(&msg, &[D22], "16 000c 02 01 0161 0162 02 20 80 01 01 01");
    not_in_draft(&msg, &[D19]);
}

#[test]
fn fetch_replies() {
    let msg = Message::FetchOk(FetchOk {
        request_id: 2,
        group_order: Some(GroupOrder::Ascending),
        end_of_track: false,
        end: Location::new(3, 4),
        ..Default::default()
    });
    vector(&msg, &[D14], "18 0006 02 01 00 03 04 00");
    let msg = Message::FetchOk(FetchOk {
        request_id: 2,
        end_of_track: true,
        end: Location::new(3, 4),
        ..Default::default()
    });
    vector(&msg, &[D15, D16], "18 0005 02 01 03 04 00");
    let msg = Message::FetchOk(FetchOk {
        request_id: 0,
        end_of_track: true,
        end: Location::new(3, 4),
        ..Default::default()
    });
    vector(&msg, &[D17, D22], "18 0004 01 03 04 00");
    vector(&Message::FetchCancel(RequestId(2)), &[D14, D16], "17 0001 02");
    let err = Message::FetchError(RequestError {
        request_id: 2,
        code: 3,
        ..Default::default()
    });
    vector(&err, &[D14], "19 0003 02 03 00");
}

// ---- Namespaces ----

#[test]
fn publish_namespace() {
    let msg = Message::PublishNamespace(PublishNamespace {
        request_id: 0,
        namespace: ns(&["a", "b"]),
        ..Default::default()
    });
    vector(&msg, &[D14, D16], "06 0007 00 02 0161 0162 00");
    vector(&msg, &[D17], "06 0008 00 00 02 0161 0162 00");
    vector(&msg, &[D18, D22], "06 0007 00 02 0161 0162 00");
    let err = Message::PublishNamespaceError(RequestError {
        request_id: 0,
        code: 1,
        ..Default::default()
    });
    vector(&err, &[D14], "08 0003 00 01 00");
}

#[test]
fn publish_namespace_done_and_cancel() {
    let done = Message::PublishNamespaceDone(PublishNamespaceDone {
        target: RequestTarget::Namespace(ns(&["a"])),
    });
    vector(&done, &[D14, D15], "09 0003 01 0161");
    not_in_draft(&done, &[D16]);
    let done = Message::PublishNamespaceDone(PublishNamespaceDone {
        target: RequestTarget::Request(0),
    });
    vector(&done, &[D16], "09 0001 00");
    not_in_draft(&done, &[D15, D17]);
    let cancel = Message::PublishNamespaceCancel(PublishNamespaceCancel {
        target: RequestTarget::Namespace(ns(&["a"])),
        code: 1,
        reason: "x".into(),
    });
    vector(&cancel, &[D14, D15], "0c 0006 01 0161 01 01 78");
}

#[test]
fn subscribe_namespace() {
    let msg = SubscribeNamespace {
        request_id: 2,
        prefix: ns(&["a"]),
        ..Default::default()
    };
    vector(
        &Message::SubscribeNamespace(msg.clone()),
        &[D14, D15],
        "11 0005 02 01 0161 00",
    );
    // draft-16/17: Subscribe Options (1 = namespaces); draft-17 also the delta.
    let with_options = SubscribeNamespace {
        options: 1,
        ..msg.clone()
    };
    vector(
        &Message::SubscribeNamespace(with_options.clone()),
        &[D16],
        "11 0006 02 01 0161 01 00",
    );
    vector(
        &Message::SubscribeNamespace(with_options),
        &[D17],
        "11 0007 02 00 01 0161 01 00",
    );
    // draft-18 renumbers it 0x50 and adds SUBSCRIBE_TRACKS (0x51).
    vector(
        &Message::SubscribeNamespace(msg.clone()),
        &[D18, D22],
        "50 0005 02 01 0161 00",
    );
    vector(
        &Message::SubscribeTracks(msg.clone()),
        &[D18, D22],
        "51 0005 02 01 0161 00",
    );
    not_in_draft(&Message::SubscribeTracks(msg), &[D17]);
    // draft-14's replies.
    vector(&Message::SubscribeNamespaceOk(RequestId(2)), &[D14], "12 0001 02");
    let err = Message::SubscribeNamespaceError(RequestError {
        request_id: 2,
        code: 1,
        ..Default::default()
    });
    vector(&err, &[D14], "13 0003 02 01 00");
}

#[test]
fn unsubscribe_namespace() {
    let by_id = Message::UnsubscribeNamespace(UnsubscribeNamespace {
        target: RequestTarget::Request(2),
    });
    vector(&by_id, &[D14, D15], "14 0001 02");
    not_in_draft(&by_id, &[D16]);
    // draft-14's text names the prefix instead; both read back.
    let by_prefix = Message::UnsubscribeNamespace(UnsubscribeNamespace {
        target: RequestTarget::Namespace(ns(&["a"])),
    });
    vector(&by_prefix, &[D14], "14 0003 01 0161");
}

#[test]
fn namespace_messages() {
    let msg = Message::Namespace(NamespaceActive {
        suffix: ns(&["b"]),
        params: None,
    });
    vector(&msg, &[D16, D18, D22], "08 0003 01 0162");
    not_in_draft(&msg, &[D15]);
    // The MoQ Cluster form: HOP_PATH (0x40b57, c4 0b 57) [1, 2], ROUTE_COST (+1) 3.
    let mut params = Parameters::new().with(p::ROUTE_COST, Value::Varint(3));
    params.set_hop_path(&[1, 2], D18).unwrap();
    let msg = Message::Namespace(NamespaceActive {
        suffix: ns(&["b"]),
        params: Some(params),
    });
    vector(&msg, &[D18], "08 000c 01 0162 02 c40b57 02 0102 01 03");
    let done = Message::NamespaceDone(NamespaceDone { suffix: ns(&["b"]) });
    vector(&done, &[D16, D22], "0e 0003 01 0162");
    let blocked = Message::PublishBlocked(PublishBlocked {
        suffix: ns(&["b"]),
        name: "v".into(),
    });
    vector(&blocked, &[D17, D18, D19], "0f 0005 01 0162 01 76");
}

#[test]
fn unknown_message_types_stay_framed() {
    // 0x08 is not defined in draft-15 (it was PUBLISH_NAMESPACE_ERROR in 14
    // and becomes NAMESPACE in 16).
    let msg = Message::Unknown {
        kind: 0x08,
        body: Bytes::from_static(&[1, 2, 3]),
    };
    vector(&msg, &[D15], "08 0003 010203");
    let msg = Message::Unknown {
        kind: 0x1234,
        body: Bytes::new(),
    };
    vector(&msg, &[D16], "5234 0000");
    vector(&msg, &[D17], "9234 0000");
}

// ---- Data streams ----

#[test]
fn subgroup_headers() {
    // draft-14 Appendix example: type 0x14 (explicit subgroup), alias 2,
    // group 0, subgroup 0, priority 0.
    let h = SubgroupHeader {
        track_alias: 2,
        group: 0,
        subgroup: SubgroupId::Explicit(0),
        priority: Some(0),
        properties: false,
        end_of_group: false,
        first_object: true,
    };
    vector(&h, &[D14, D16, D17], "14 02 00 00 00");
    vector(&h, &[D18, D22], "54 02 00 00 00");
    // 0x39: properties, end of group, no priority (draft-15+); 0x79 with FIRST_OBJECT.
    let h = SubgroupHeader {
        track_alias: 2,
        group: 5,
        subgroup: SubgroupId::Zero,
        priority: None,
        properties: true,
        end_of_group: true,
        first_object: true,
    };
    vector(&h, &[D15, D16, D17], "39 02 05");
    vector(&h, &[D18], "79 02 05");
    let mid = SubgroupHeader {
        first_object: false,
        ..h
    };
    vector(&mid, &[D18], "39 02 05");
    // Subgroup = first object ID (0x02).
    let h = SubgroupHeader {
        subgroup: SubgroupId::FirstObject,
        priority: Some(7),
        properties: false,
        end_of_group: false,
        ..h
    };
    vector(&h, &[D14], "12 02 05 07");
    vector(&UniStream::Subgroup(h), &[D14], "12 02 05 07");
}

#[test]
fn subgroup_objects() {
    // Object 0 with a properties block (TIMESTAMP 0x10 = 5) and 4 payload bytes.
    let obj = SubgroupObject {
        id_delta: 0,
        properties: Some(Bytes::from_static(&[0x10, 0x05])),
        size: 4,
        status: 0,
    };
    assert_eq!(obj.to_vec(D16).unwrap(), hex("00 02 1005 04"));
    assert_eq!(
        SubgroupObject::decode(&mut &hex("00 02 1005 04")[..], D16, true).unwrap(),
        obj
    );
    // The next object (delta 0), empty, END_OF_GROUP.
    let end = SubgroupObject {
        id_delta: 0,
        properties: None,
        size: 0,
        status: status::END_OF_GROUP,
    };
    assert_eq!(end.to_vec(D14).unwrap(), hex("00 00 03"));
    assert_eq!(
        SubgroupObject::decode(&mut &hex("00 00 03")[..], D14, false).unwrap(),
        end
    );
    // A short header asks for more bytes.
    assert_eq!(
        SubgroupObject::decode(&mut &hex("00 00")[..], D14, false),
        Err(DecodeError::Short)
    );
}

#[test]
fn fetch_streams() {
    vector(&FetchHeader { request_id: 7 }, &[D14, D18], "05 07");
    vector(&UniStream::Fetch(FetchHeader { request_id: 7 }), &[D16], "05 07");
    // draft-14: group 1, subgroup 0, object 2, priority 0x80, no properties, 3 bytes.
    let obj = FetchObject::Object {
        group: Some(1),
        subgroup: FetchSubgroup::Explicit(0),
        object: Some(2),
        priority: Some(0x80),
        properties: Some(Bytes::new()),
        size: 3,
        status: 0,
    };
    vector(&obj, &[D14], "01 00 02 80 00 03");
    // draft-15+: Serialization Flags 0x1c (object, group, priority; subgroup 0).
    let first = FetchObject::Object {
        group: Some(1),
        subgroup: FetchSubgroup::Zero,
        object: Some(2),
        priority: Some(0x80),
        properties: None,
        size: 3,
        status: 0,
    };
    vector(&first, &[D15, D16, D18], "1c 01 02 80 03");
    // The next object inherits everything: flags 0.
    let next = FetchObject::Object {
        group: None,
        subgroup: FetchSubgroup::Zero,
        object: None,
        priority: None,
        properties: None,
        size: 3,
        status: 0,
    };
    vector(&next, &[D16, D22], "00 03");
    // End of Range, 0x8c: a QUIC varint (40 8c) before draft-17, leading-ones (80 8c) after.
    let end = FetchObject::EndOfRange {
        reason: EndOfRange::NonExistent,
        group: 1,
        object: 0,
    };
    vector(&end, &[D16], "408c 01 00");
    vector(&end, &[D18], "808c 01 00");
}

#[test]
fn datagrams() {
    // draft-14 type 0x00: alias 1, group 2, object 3, priority 0x80, payload "hi".
    let d = ObjectDatagram {
        track_alias: 1,
        group: 2,
        object: Some(3),
        priority: Some(0x80),
        end_of_group: false,
        properties: None,
        body: DatagramBody::Payload(Bytes::from_static(b"hi")),
    };
    datagram_vector(&d, &[D14, D16, D18], "00 01 02 03 80 6869");
    // 0x0e: end of group, object 0 omitted, default priority (draft-15+).
    let d = ObjectDatagram {
        track_alias: 1,
        group: 2,
        object: None,
        priority: None,
        end_of_group: true,
        properties: None,
        body: DatagramBody::Payload(Bytes::from_static(b"hi")),
    };
    datagram_vector(&d, &[D15, D16, D22], "0e 01 02 6869");
    not_in_draft(&d, &[D14]);
    // draft-14 status type 0x20: object 3, priority 0, END_OF_TRACK.
    let d = ObjectDatagram {
        track_alias: 1,
        group: 2,
        object: Some(3),
        priority: Some(0),
        end_of_group: false,
        properties: None,
        body: DatagramBody::Status(status::END_OF_TRACK),
    };
    datagram_vector(&d, &[D14, D17], "20 01 02 03 00 04");
    // 0x0d: properties (TIMESTAMP 5), object 0, default priority, payload "x".
    let d = ObjectDatagram {
        track_alias: 1,
        group: 2,
        object: None,
        priority: None,
        end_of_group: false,
        properties: Some(Bytes::from_static(&[0x10, 0x05])),
        body: DatagramBody::Payload(Bytes::from_static(b"x")),
    };
    datagram_vector(&d, &[D16, D18], "0d 01 02 02 1005 78");
}

#[test]
fn padding_stream() {
    // 0x132B3E28 is a 5-byte leading-ones varint.
    vector(&UniStream::Padding, &[D18, D22], "f0 132b3e28");
}

// ---- Legacy in-band SETUP ----

#[test]
fn legacy_setup() {
    // What moq-net 0.3.18 sends with no ALPN: 0x20, u16 size, lite-02,
    // lite-01, draft-14, then its draft-14 parameters (none here).
    let client = LegacyClientSetup {
        kind: SetupKind::Ietf14,
        versions: vec![0xff0d_ad02, 0xff0d_ad01, 0xff00_000e],
        parameters: Bytes::from_static(&[0]),
    };
    let wire = hex("20 001a 03 c0000000ff0dad02 c0000000ff0dad01 c0000000ff00000e 00");
    let mut out = Vec::new();
    client.encode(&mut out).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&wire));
    assert_eq!(LegacyClientSetup::decode(&mut &wire[..]).unwrap(), client);
    assert_eq!(client.choose(&LegacyVersion::ALL), Some(LegacyVersion::Lite02));
    assert_eq!(
        choose_version(&client.versions, &[LegacyVersion::Draft14]),
        Some(LegacyVersion::Draft14)
    );
    assert_eq!(choose_version(&[0xff00_000f], &LegacyVersion::ALL), None);
    // The draft-14 parameters parse as draft-14 setup options.
    assert_eq!(
        SetupOptions::decode_list(&client.parameters, D14).unwrap(),
        SetupOptions::default()
    );
    // The reply names the version.
    let server = LegacyServerSetup {
        kind: SetupKind::Ietf14,
        version: 0xff0d_ad02,
        parameters: Bytes::from_static(&[0]),
    };
    let mut out = Vec::new();
    server.encode(&mut out).unwrap();
    assert_eq!(hex::encode(out), "210009c0000000ff0dad0200");
}

// ---- Refusals: every encode and decode error the codec can raise ----

#[track_caller]
fn invalid<T: Encode + Debug>(msg: &T, v: Version) {
    let err = msg.to_vec(v).unwrap_err();
    assert!(
        matches!(err, moq_proto::EncodeError::Invalid { .. }),
        "{msg:?} in {v}: {err}"
    );
}

#[test]
fn draft14_needs_its_fixed_fields() {
    invalid(&Message::Subscribe(Subscribe::default()), D14);
    invalid(&Message::SubscribeOk(SubscribeOk::default()), D14);
    invalid(&Message::RequestUpdate(RequestUpdate::default()), D14);
    invalid(&Message::Publish(Publish::default()), D14);
    invalid(&Message::PublishOk(PublishOk::default()), D14);
    invalid(&Message::Fetch(Fetch::default()), D14);
    invalid(&Message::FetchOk(FetchOk::default()), D14);
    invalid(&Message::ServerSetup(ServerSetup::default()), D14);
    // A draft-14 SUBSCRIBE_UPDATE has no filter field.
    let update = RequestUpdate {
        start: Some(Location::new(0, 0)),
        end_group: Some(0),
        priority: Some(0),
        forward: Some(true),
        filter: Some(Filter::NextObject),
        ..Default::default()
    };
    invalid(&Message::RequestUpdate(update), D14);
}

#[test]
fn fields_of_other_drafts_are_refused() {
    // A parameter that duplicates a lifted field.
    let dup = Subscribe {
        priority: Some(1),
        params: Parameters::new().with(p::SUBSCRIBER_PRIORITY, Value::U8(2)),
        ..Default::default()
    };
    invalid(&Message::Subscribe(dup), D16);
    // draft-14's SUBSCRIBE_UPDATE start/end in later drafts.
    let update = RequestUpdate {
        start: Some(Location::new(1, 0)),
        ..Default::default()
    };
    not_in_draft(&Message::RequestUpdate(update), &[D16]);
    // An Existing Request ID after draft-16, a Required Request ID Delta outside draft-17.
    let update = RequestUpdate {
        existing_request_id: 5,
        ..Default::default()
    };
    not_in_draft(&Message::RequestUpdate(update), &[D17]);
    let sub = Subscribe {
        required_request_id_delta: 1,
        ..Default::default()
    };
    not_in_draft(&Message::Subscribe(sub), &[D16, D18]);
    // Subscribe Options outside draft-16/17.
    let sns = SubscribeNamespace {
        options: 1,
        ..Default::default()
    };
    not_in_draft(&Message::SubscribeNamespace(sns), &[D15, D18]);
    // A retry interval before draft-16.
    let err = RequestError {
        retry_interval: 1,
        ..Default::default()
    };
    not_in_draft(&Message::RequestError(err), &[D15]);
    // A FETCH filter before draft-20.
    let fetch = Fetch {
        kind: FetchKind::RelativeJoining {
            joining_request_id: 0,
            offset: 0,
        },
        filter: Some(Filter::NextObject),
        ..Default::default()
    };
    not_in_draft(&Message::Fetch(fetch), &[D19]);
    // A GOAWAY timeout before draft-17.
    let goaway = GoAway {
        timeout: 1,
        ..Default::default()
    };
    not_in_draft(&Message::GoAway(goaway), &[D16]);
    // A SERVER_SETUP version after draft-14.
    let server = ServerSetup {
        version: Some(1),
        ..Default::default()
    };
    not_in_draft(&Message::ServerSetup(server), &[D16]);
    // An option in `other` that has its own field.
    let mut other = KeyValuePairs::new();
    other
        .push(setup::OPTION_PATH, KvValue::Bytes(Bytes::from_static(b"/")))
        .unwrap();
    let setup = Setup {
        options: SetupOptions {
            other,
            ..Default::default()
        },
    };
    invalid(&Message::Setup(setup), D18);
    // UNSUBSCRIBE_NAMESPACE by an empty prefix (it would read back as a Request ID).
    let unsub = UnsubscribeNamespace {
        target: RequestTarget::Namespace(Namespace::empty()),
    };
    not_in_draft(&Message::UnsubscribeNamespace(unsub), &[D14]);
    // A draft-17+ status datagram with properties.
    let d = ObjectDatagram {
        properties: Some(Bytes::from_static(&[0x10, 1])),
        priority: Some(0),
        object: Some(0),
        body: DatagramBody::Status(4),
        ..Default::default()
    };
    invalid(&d, D17);
}

#[test]
fn limits_are_refused() {
    // A reason phrase over 1024 bytes, either way.
    let err = RequestError {
        reason: "x".repeat(1025),
        ..Default::default()
    };
    assert!(matches!(
        Message::RequestError(err).to_vec(D16),
        Err(moq_proto::EncodeError::TooLarge { .. })
    ));
    let mut wire = hex("05 0000 01 01 00 4401");
    wire.extend(std::iter::repeat_n(b'x', 0x401));
    let size = (wire.len() - 3) as u16;
    wire[1..3].copy_from_slice(&size.to_be_bytes());
    assert!(matches!(
        decode_slice::<Message>(&wire, D16),
        Err(DecodeError::TooLarge {
            what: "reason phrase",
            ..
        })
    ));
    // A GOAWAY URI over 8192 bytes.
    let goaway = GoAway {
        uri: "x".repeat(8193),
        ..Default::default()
    };
    assert!(Message::GoAway(goaway).to_vec(D14).is_err());
    // More than 64 parameters.
    let mut params = Parameters::new();
    for _ in 0..65 {
        params.push(p::AUTHORIZATION_TOKEN, Value::Bytes(Bytes::new()));
    }
    let msg = Message::PublishNamespace(PublishNamespace {
        params,
        ..Default::default()
    });
    assert!(matches!(
        msg.to_vec(D16),
        Err(moq_proto::EncodeError::TooMany { .. })
    ));
    // More than 64 offered versions.
    let client = ClientSetup {
        versions: vec![1; 65],
        ..Default::default()
    };
    assert!(matches!(
        Message::ClientSetup(client).to_vec(D14),
        Err(moq_proto::EncodeError::TooMany { .. })
    ));
}

#[test]
fn malformed_bodies_are_refused() {
    // The length says 3 but SUBSCRIBE's fields need more: malformed, not short.
    assert_eq!(
        decode_slice::<Message>(&hex("03 0003 01 01 01"), D16),
        Err(DecodeError::Truncated { what: "SUBSCRIBE" })
    );
    // Bytes left after the last field.
    assert_eq!(
        decode_slice::<Message>(&hex("15 0002 01 00"), D16),
        Err(DecodeError::TrailingBytes {
            what: "MAX_REQUEST_ID",
            extra: 1
        })
    );
    // draft-14 fixed fields: a group order of 3, a forward of 2.
    assert!(matches!(
        decode_slice::<Message>(&hex("03 0008 01 00 00 80 03 01 02 00"), D14),
        Err(DecodeError::InvalidValue {
            what: "group order",
            value: 3
        })
    ));
    assert!(matches!(
        decode_slice::<Message>(&hex("03 0008 01 00 00 80 01 02 02 00"), D14),
        Err(DecodeError::InvalidValue {
            what: "forward",
            value: 2
        })
    ));
    // An unknown filter tag, an unknown fetch type.
    assert!(matches!(
        decode_slice::<Message>(&hex("03 0008 01 00 00 80 01 01 07 00"), D14),
        Err(DecodeError::UnknownType {
            what: "filter type",
            value: 7
        })
    ));
    assert!(matches!(
        decode_slice::<Message>(&hex("16 0004 02 80 01 04"), D14),
        Err(DecodeError::UnknownType {
            what: "fetch type",
            value: 4
        })
    ));
    // An unknown message parameter from draft-17 on.
    assert!(matches!(
        decode_slice::<Message>(&hex("06 0006 00 00 00 01 1c 07"), D17),
        Err(DecodeError::UnknownType {
            what: "message parameter",
            value: 0x1c
        })
    ));
    // A SUBSCRIBE_OK content-exists flag of 2 (draft-14).
    assert!(matches!(
        decode_slice::<Message>(&hex("04 0005 01 02 00 02 02"), D14),
        Err(DecodeError::InvalidValue {
            what: "content exists",
            value: 2
        })
    ));
}
