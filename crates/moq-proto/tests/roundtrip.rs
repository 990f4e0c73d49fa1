//! Property round-trips: every message, every version it exists in, encodes
//! and decodes back to itself, using exactly the bytes written.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.

mod common;

use std::fmt::Debug;

use moq_proto::*;
use proptest::prelude::*;

use Version::{Lite03, Lite04, Lite05, Lite06};

fn round_trip<T: Decode + Encode + PartialEq + Debug>(msg: &T, v: Version) -> Result<(), TestCaseError> {
    let wire = single(msg, v)?;
    // A stream carries messages back to back: a second message must not be eaten.
    let mut two = wire.clone();
    two.extend_from_slice(&wire);
    let mut cursor = &two[..];
    prop_assert_eq!(&T::decode(&mut cursor, v).unwrap(), msg);
    prop_assert_eq!(&T::decode(&mut cursor, v).unwrap(), msg);
    prop_assert!(cursor.is_empty());
    Ok(())
}

/// Encode then decode one message on its own; returns the encoding.
fn single<T: Decode + Encode + PartialEq + Debug>(msg: &T, v: Version) -> Result<Vec<u8>, TestCaseError> {
    let wire = msg
        .to_vec(v)
        .map_err(|e| TestCaseError::fail(format!("encode {msg:?} in {v}: {e}")))?;
    let (back, used) =
        decode_slice::<T>(&wire, v).map_err(|e| TestCaseError::fail(format!("decode in {v}: {e}")))?;
    prop_assert_eq!(&back, msg, "in {}", v);
    prop_assert_eq!(used, wire.len(), "in {}", v);
    Ok(wire)
}

const EVERY: [Version; 6] = Version::EVERY;
const ALL: [Version; 4] = Version::ALL;
const IN_BAND: [Version; 2] = Version::IN_BAND;
const FROM_04: [Version; 3] = [Lite04, Lite05, Lite06];
const FROM_05: [Version; 2] = [Lite05, Lite06];

macro_rules! round_trips {
    ($($name:ident: $versions:expr => |$v:ident| $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            $(
                #[test]
                fn $name((msg, $v) in prop::sample::select($versions.to_vec())
                    .prop_flat_map(|$v| ($strategy, Just($v))))
                {
                    round_trip(&msg, $v)?;
                }
            )*
        }
    };
}

round_trips! {
    setup: FROM_05 => |_v| common::setup();
    announce_request: EVERY => |v| common::announce_request(v);
    announce_init: IN_BAND => |_v| common::announce_init();
    session_info: IN_BAND => |_v| common::session_info();
    announce_ok: FROM_05 => |_v| common::announce_ok();
    announce: EVERY => |v| common::announce(v);
    subscribe: EVERY => |v| common::subscribe(v);
    subscribe_update: ALL => |v| common::subscribe_update(v);
    subscribe_response: EVERY => |v| common::subscribe_response(v);
    track_request: FROM_05 => |_v| common::track_request();
    track_info: FROM_05 => |v| common::track_info(v);
    fetch: ALL => |v| common::fetch(v);
    group_header: EVERY => |v| common::group_header(v);
    frame_header: EVERY => |v| common::frame_header(v);
    probe: ALL => |v| common::probe(v);
    goaway: FROM_04 => |_v| common::goaway();
}

proptest! {
    // A datagram's payload runs to the end of the datagram, so it is checked alone.
    #[test]
    fn datagram(msg in common::datagram(), v in prop::sample::select(FROM_05.to_vec())) {
        single(&msg, v)?;
    }
}

#[test]
fn versions_differ_where_the_spec_says() {
    // lite-03 and lite-06 SUBSCRIBE layouts differ, so bytes for one must not be
    // silently accepted as the same message by the other.
    let msg = Subscribe {
        id: 1,
        broadcast: Path::new("a").unwrap(),
        track: "t".into(),
        ..Default::default()
    };
    let wire = msg.to_vec(Lite03).unwrap();
    assert!(decode_slice::<Subscribe>(&wire, Lite06).is_err());
}
