//! Everything moq-proto encodes, the reference implementation decodes.
//!
//! `moq_net::fuzz::lite_wire` takes `[version index][message kind][bytes]`,
//! decodes with moq-net's own decoder for that message, and returns whether it
//! accepted the bytes (it also re-encodes and re-decodes what it read). We
//! feed it our encodings of generated messages, in every version.
#![allow(clippy::unwrap_used)] // Test code.

#[path = "../../moq-proto/tests/common/mod.rs"]
mod common;

use moq_proto::{Encode, Version};
use proptest::prelude::*;

/// moq-net's index for a version in its fuzz dispatcher (lite-01 is 0).
fn index(v: Version) -> u8 {
    match v {
        Version::Lite01 => 0,
        Version::Lite02 => 1,
        Version::Lite03 => 2,
        Version::Lite04 => 3,
        Version::Lite05 => 4,
        Version::Lite06 => 5,
        other => panic!("no moq-net index for {other}"),
    }
}

/// moq-net's fuzz dispatcher message kinds.
mod kind {
    pub(crate) const SETUP: u8 = 0;
    pub(crate) const SESSION_INFO: u8 = 1;
    pub(crate) const ANNOUNCE_INIT: u8 = 2;
    pub(crate) const ANNOUNCE_REQUEST: u8 = 3;
    pub(crate) const ANNOUNCE_OK: u8 = 4;
    pub(crate) const ANNOUNCE: u8 = 5;
    pub(crate) const SUBSCRIBE: u8 = 6;
    pub(crate) const SUBSCRIBE_UPDATE: u8 = 10;
    pub(crate) const SUBSCRIBE_RESPONSE: u8 = 12;
    pub(crate) const FETCH: u8 = 13;
    pub(crate) const GROUP: u8 = 14;
    pub(crate) const GOAWAY: u8 = 15;
    pub(crate) const TRACK: u8 = 16;
    pub(crate) const TRACK_INFO: u8 = 17;
    pub(crate) const PROBE: u8 = 18;
    pub(crate) const DATAGRAM: u8 = 19;
}

fn accepted<T: Encode + std::fmt::Debug>(msg: &T, v: Version, kind: u8) -> Result<(), TestCaseError> {
    let body = msg.to_vec(v).unwrap();
    let mut input = vec![index(v), kind];
    input.extend_from_slice(&body);
    prop_assert!(
        moq_net::fuzz::lite_wire(&input),
        "moq-net rejected our {} encoding of {:?}: {:02x?}",
        v,
        msg,
        body
    );
    Ok(())
}

const ALL: [Version; 4] = Version::ALL;
const IN_BAND: [Version; 2] = Version::IN_BAND;
const FROM_04: [Version; 3] = [Version::Lite04, Version::Lite05, Version::Lite06];
const FROM_05: [Version; 2] = [Version::Lite05, Version::Lite06];

macro_rules! accepted_by_reference {
    ($($name:ident: $kind:expr, $versions:expr => |$v:ident| $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            $(
                #[test]
                fn $name((msg, $v) in prop::sample::select($versions.to_vec())
                    .prop_flat_map(|$v| ($strategy, Just($v))))
                {
                    accepted(&msg, $v, $kind)?;
                }
            )*
        }
    };
}

accepted_by_reference! {
    setup: kind::SETUP, FROM_05 => |_v| common::setup();
    announce_request: kind::ANNOUNCE_REQUEST, ALL => |v| common::announce_request(v);
    announce_ok: kind::ANNOUNCE_OK, FROM_05 => |_v| common::announce_ok();
    announce: kind::ANNOUNCE, ALL => |v| common::announce(v);
    subscribe: kind::SUBSCRIBE, ALL => |v| common::subscribe(v);
    subscribe_update: kind::SUBSCRIBE_UPDATE, ALL => |v| common::subscribe_update(v);
    subscribe_response: kind::SUBSCRIBE_RESPONSE, ALL => |v| common::subscribe_response(v);
    fetch: kind::FETCH, ALL => |v| common::fetch(v);
    group: kind::GROUP, ALL => |v| common::group_header(v);
    goaway: kind::GOAWAY, FROM_04 => |_v| common::goaway();
    track: kind::TRACK, FROM_05 => |_v| common::track_request();
    track_info: kind::TRACK_INFO, FROM_05 => |v| common::track_info(v);
    probe: kind::PROBE, ALL => |v| common::probe(v);
    datagram: kind::DATAGRAM, FROM_05 => |_v| common::datagram();
}

// lite-01/02, chosen in-band by the legacy SETUP.
accepted_by_reference! {
    in_band_announce_request: kind::ANNOUNCE_REQUEST, IN_BAND => |v| common::announce_request(v);
    in_band_announce_init: kind::ANNOUNCE_INIT, IN_BAND => |_v| common::announce_init();
    in_band_announce: kind::ANNOUNCE, IN_BAND => |v| common::announce(v);
    in_band_subscribe: kind::SUBSCRIBE, IN_BAND => |v| common::subscribe(v);
    in_band_subscribe_response: kind::SUBSCRIBE_RESPONSE, IN_BAND => |v| common::subscribe_response(v);
    in_band_group: kind::GROUP, IN_BAND => |v| common::group_header(v);
    in_band_session_info: kind::SESSION_INFO, IN_BAND => |_v| common::session_info();
}

/// The dispatcher really decodes: a body cut short is refused. Without this,
/// a dispatcher that accepted anything would make every test above pass.
#[test]
fn reference_rejects_truncated_input() {
    let msg = moq_proto::Subscribe {
        id: 1,
        broadcast: moq_proto::Path::new("room/cam").unwrap(),
        track: "video".into(),
        ..Default::default()
    };
    for v in Version::EVERY {
        let body = msg.to_vec(v).unwrap();
        let mut input = vec![index(v), kind::SUBSCRIBE];
        input.extend_from_slice(&body[..body.len() - 1]);
        assert!(!moq_net::fuzz::lite_wire(&input), "{v}");
        // And a message from another version's layout is refused too.
    }
    let lite03 = msg.to_vec(Version::Lite03).unwrap();
    let mut input = vec![index(Version::Lite06), kind::SUBSCRIBE];
    input.extend_from_slice(&lite03);
    assert!(!moq_net::fuzz::lite_wire(&input));
}
