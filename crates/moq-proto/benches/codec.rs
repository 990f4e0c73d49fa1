//! Encode and decode cost of each moq-lite message, plus a GROUP header and FRAMEs of
//! 1 KiB and 64 KiB, at lite-06 (an older version for the messages lite-06 dropped);
//! and of the moq-transport messages a relay handles per subscription or per object,
//! at draft-14, -16 and -18 (the two varint forms and the three parameter forms).
//!
//! `cargo bench -p moq-proto`; numbers and how to read them are in bench/README.md.

use std::{hint::black_box, time::Duration};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use moq_proto::{
    Announce, AnnounceOk, AnnounceRequest, ControlStream, Cost, DataStream, Datagram, Decode, Encode, Fetch,
    FrameHeader, GroupHeader, Hops, Path, Range, Setup, Subscribe, SubscribeOk, SubscribeResponse,
    SubscribeUpdate, TrackInfo, TrackRequest, Version, decode_slice,
};

fn path(s: &str) -> Path {
    Path::new(s).expect("a valid path")
}

fn encoded<T: Encode>(msg: &T, version: Version) -> Vec<u8> {
    let mut buf = Vec::new();
    msg.encode(&mut buf, version).expect("the message encodes");
    buf
}

/// Benchmark encoding `msg` into a reused buffer and decoding it back.
fn message<T: Encode + Decode>(c: &mut Criterion, name: &str, version: Version, msg: T) {
    let wire = encoded(&msg, version);
    let mut group = c.benchmark_group(format!("message/{name}"));
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut buf = Vec::with_capacity(wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg)
                .encode(&mut buf, version)
                .expect("the message encodes");
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode_slice::<T>(black_box(&wire), version).expect("the message decodes"))
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    let v6 = Version::Lite06;
    let v5 = Version::Lite05;
    let mut hops = Hops::new();
    hops.push(7).expect("room for a hop");
    hops.push(11).expect("room for a hop");

    message(c, "setup", v6, Setup::default());
    message(c, "control_stream", v6, ControlStream::Subscribe);
    message(c, "data_stream", v6, DataStream::Group);
    message(
        c,
        "announce_request",
        v6,
        AnnounceRequest {
            prefix: path("room/42"),
            exclude_hop: 0,
        },
    );
    message(c, "announce_ok", v6, AnnounceOk { origin: 7, active: 3 });
    message(
        c,
        "announce_active",
        v6,
        Announce::Active {
            suffix: path("alice/camera"),
            hops: hops.clone(),
            cost: Cost::new(12),
        },
    );
    message(
        c,
        "announce_ended",
        v5,
        Announce::Ended {
            suffix: path("alice/camera"),
            hops: Hops::new(),
        },
    );
    message(
        c,
        "subscribe",
        v6,
        Subscribe {
            id: 3,
            broadcast: path("room/42/alice"),
            track: "video".to_string(),
            priority: 128,
            ordered: false,
            max_latency: Duration::from_millis(500),
            range: Range::default(),
        },
    );
    message(
        c,
        "subscribe_update",
        v6,
        SubscribeUpdate {
            priority: 64,
            ..Default::default()
        },
    );
    message(
        c,
        "subscribe_ok",
        Version::Lite04,
        SubscribeResponse::Ok(SubscribeOk::default()),
    );
    message(c, "subscribe_start", v6, SubscribeResponse::Start { group: 1234 });
    message(
        c,
        "fetch",
        v6,
        Fetch {
            broadcast: path("room/42/alice"),
            track: "video".to_string(),
            priority: 0,
            group: 1234,
            start_frame: 0,
            end_frame: None,
        },
    );
    message(
        c,
        "track_request",
        v6,
        TrackRequest {
            broadcast: path("room/42/alice"),
            track: "video".to_string(),
        },
    );
    message(
        c,
        "track_info",
        v6,
        TrackInfo {
            priority: 1,
            ordered: false,
            max_latency: Duration::from_millis(500),
            timescale: 1_000_000,
        },
    );
    message(
        c,
        "datagram",
        v6,
        Datagram {
            subscribe: 3,
            sequence: 1234,
            timestamp: 5_000_000,
            payload: Bytes::from(vec![0u8; 200]),
        },
    );
    message(
        c,
        "group_header",
        v6,
        GroupHeader {
            subscribe: 3,
            sequence: 1234,
            frame_start: 0,
        },
    );
}

/// A whole FRAME: the header and its payload, the way the session drivers move it.
/// Encoding copies the payload into one buffer (what the writer does for payloads up to
/// 8 KiB); decoding slices it off a received chunk without copying.
fn frames(c: &mut Criterion) {
    let version = Version::Lite06;
    let mut group = c.benchmark_group("frame");
    for size in [1024usize, 64 * 1024] {
        let payload = Bytes::from(vec![0xa5u8; size]);
        let header = FrameHeader {
            timestamp_delta: 33_333,
            size: size as u64,
        };
        let mut wire = BytesMut::new();
        header.encode(&mut wire, version).expect("the header encodes");
        wire.extend_from_slice(&payload);
        let wire = wire.freeze();
        group.throughput(Throughput::Bytes(wire.len() as u64));

        let mut buf = BytesMut::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("encode", size), &payload, |b, payload| {
            b.iter(|| {
                buf.clear();
                black_box(&header)
                    .encode(&mut buf, version)
                    .expect("the header encodes");
                buf.extend_from_slice(black_box(payload));
                black_box(buf.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("decode", size), &wire, |b, wire| {
            b.iter(|| {
                let mut chunk = black_box(wire).clone();
                let (header, used) =
                    decode_slice::<FrameHeader>(&chunk, version).expect("the header decodes");
                let _ = chunk.split_to(used);
                let size = usize::try_from(header.size).expect("a small frame");
                black_box(chunk.split_to(size))
            })
        });
    }
    group.finish();
}

/// Benchmark a moq-transport value: encode into a reused buffer, decode back.
fn ietf_value<T: moq_proto::ietf::Encode + moq_proto::ietf::Decode>(
    c: &mut Criterion,
    name: &str,
    version: moq_proto::ietf::Version,
    msg: T,
) {
    let wire = msg.to_vec(version).expect("the message encodes");
    let mut group = c.benchmark_group(format!("ietf/{name}/{}", version.number()));
    group.throughput(Throughput::Bytes(wire.len() as u64));
    let mut buf = Vec::with_capacity(wire.len());
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg)
                .encode(&mut buf, version)
                .expect("the message encodes");
            black_box(buf.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| moq_proto::ietf::decode_slice::<T>(black_box(&wire), version).expect("the message decodes"))
    });
    group.finish();
}

fn ietf(c: &mut Criterion) {
    use moq_proto::ietf::{
        ClientSetup, DatagramBody, Filter, GroupOrder, Location, Message, Namespace, ObjectDatagram,
        Parameters, PublishNamespace, Setup, SetupOptions, SubgroupHeader, SubgroupId, SubgroupObject,
        Subscribe, SubscribeOk, Version,
    };

    let subscribe = Message::Subscribe(Subscribe {
        request_id: 12,
        required_request_id_delta: 0,
        namespace: Namespace::new(["room", "42", "alice"]),
        name: "video".into(),
        priority: Some(128),
        group_order: Some(GroupOrder::Descending),
        forward: Some(true),
        filter: Some(Filter::NextObject),
        params: Parameters::new(),
    });
    let ok = Message::SubscribeOk(SubscribeOk {
        request_id: 12,
        track_alias: 7,
        group_order: Some(GroupOrder::Descending),
        largest: Some(Location::new(1234, 5)),
        ..Default::default()
    });
    let announce = Message::PublishNamespace(PublishNamespace {
        request_id: 3,
        namespace: Namespace::new(["room", "42", "alice"]),
        ..Default::default()
    });
    for v in [Version::Draft14, Version::Draft16, Version::Draft18] {
        ietf_value(c, "subscribe", v, subscribe.clone());
        ietf_value(c, "subscribe_ok", v, ok.clone());
        ietf_value(c, "publish_namespace", v, announce.clone());
        ietf_value(
            c,
            "subgroup_header",
            v,
            SubgroupHeader {
                track_alias: 7,
                group: 1234,
                subgroup: SubgroupId::Zero,
                priority: Some(128),
                properties: true,
                end_of_group: true,
                first_object: true,
            },
        );
        ietf_value(
            c,
            "datagram",
            v,
            ObjectDatagram {
                track_alias: 7,
                group: 1234,
                object: Some(0),
                priority: Some(128),
                end_of_group: true,
                properties: None,
                body: DatagramBody::Payload(Bytes::from(vec![0u8; 200])),
            },
        );
    }
    let options = SetupOptions {
        path: Some("/room/42?jwt=eyJhbGciOiJIUzI1NiJ9.e30.signature".into()),
        max_request_id: Some(1 << 20),
        ..Default::default()
    };
    ietf_value(
        c,
        "client_setup",
        Version::Draft14,
        Message::ClientSetup(ClientSetup {
            versions: vec![Version::Draft14.code()],
            options: options.clone(),
        }),
    );
    ietf_value(
        c,
        "setup",
        Version::Draft18,
        Message::Setup(Setup {
            options: SetupOptions {
                max_request_id: None,
                ..options
            },
        }),
    );

    // The per-object header on a subgroup stream, which a relay reads for every frame.
    for v in [Version::Draft16, Version::Draft18] {
        let obj = SubgroupObject {
            id_delta: 0,
            properties: Some(Bytes::from_static(&[0x10, 0xc0, 0x01, 0x02])),
            size: 1024,
            status: 0,
        };
        let wire = obj.to_vec(v).expect("the object encodes");
        let mut group = c.benchmark_group(format!("ietf/subgroup_object/{}", v.number()));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = Vec::with_capacity(wire.len());
        group.bench_function("encode", |b| {
            b.iter(|| {
                buf.clear();
                black_box(&obj).encode(&mut buf, v).expect("the object encodes");
                black_box(buf.len())
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| SubgroupObject::decode(&mut black_box(&wire[..]), v, true).expect("the object decodes"))
        });
        group.finish();
    }
}

criterion_group!(benches, messages, frames, ietf);
criterion_main!(benches);
