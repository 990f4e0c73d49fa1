//! Property round-trips for the moq-transport codec: every message, header
//! and datagram, in every draft it exists in, encodes and decodes back to
//! itself using exactly the bytes written, and two back to back decode as two.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.

mod common;

use std::fmt::Debug;

use bytes::Buf;
use common::ietf as strat;
use moq_proto::{
    DecodeError,
    ietf::{Decode, Encode, *},
    legacy::{LegacyClientSetup, LegacyServerSetup, SetupKind},
};
use proptest::prelude::*;

fn round_trip<T: Decode + Encode + PartialEq + Debug>(msg: &T, v: Version) -> Result<Vec<u8>, TestCaseError> {
    let wire = msg
        .to_vec(v)
        .map_err(|e| TestCaseError::fail(format!("encode {msg:?} in {v}: {e}")))?;
    let (back, used) =
        decode_slice::<T>(&wire, v).map_err(|e| TestCaseError::fail(format!("decode in {v}: {e}")))?;
    prop_assert_eq!(&back, msg, "in {}", v);
    prop_assert_eq!(used, wire.len(), "in {}", v);
    Ok(wire)
}

/// Also check two messages back to back, and the same bytes split across two chunks.
fn stream_round_trip<T: Decode + Encode + PartialEq + Debug>(
    msg: &T,
    v: Version,
    split: usize,
) -> Result<(), TestCaseError> {
    let wire = round_trip(msg, v)?;
    let mut two = wire.clone();
    two.extend_from_slice(&wire);
    let mut cursor = &two[..];
    prop_assert_eq!(&T::decode(&mut cursor, v).unwrap(), msg);
    prop_assert_eq!(&T::decode(&mut cursor, v).unwrap(), msg);
    prop_assert!(cursor.is_empty());
    let split = split % (wire.len() + 1);
    let (a, b) = wire.split_at(split);
    let mut chained = a.chain(b);
    prop_assert_eq!(&T::decode(&mut chained, v).unwrap(), msg, "split at {}", split);
    prop_assert_eq!(chained.remaining(), 0);
    // Every strict prefix asks for more bytes.
    for cut in [0, wire.len() / 2, wire.len().saturating_sub(1)] {
        if cut < wire.len() {
            prop_assert_eq!(
                decode_slice::<T>(&wire[..cut], v).unwrap_err(),
                DecodeError::Short,
                "prefix {}",
                cut
            );
        }
    }
    Ok(())
}

fn any_version() -> impl Strategy<Value = Version> {
    strat::version()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn control_messages((v, msg) in any_version().prop_flat_map(|v| (Just(v), strat::message(v))), split in any::<usize>()) {
        stream_round_trip(&msg, v, split)?;
    }

    #[test]
    fn subgroup_headers((v, h) in any_version().prop_flat_map(|v| (Just(v), strat::subgroup_header(v))), split in any::<usize>()) {
        stream_round_trip(&h, v, split)?;
    }

    #[test]
    fn uni_streams((v, s) in any_version().prop_flat_map(|v| (Just(v), strat::uni_stream(v))), split in any::<usize>()) {
        stream_round_trip(&s, v, split)?;
    }

    #[test]
    fn fetch_objects((v, o) in any_version().prop_flat_map(|v| (Just(v), strat::fetch_object(v))), split in any::<usize>()) {
        stream_round_trip(&o, v, split)?;
    }

    #[test]
    fn fetch_headers(v in any_version(), id in any::<u32>()) {
        stream_round_trip(&FetchHeader { request_id: u64::from(id) }, v, 1)?;
    }

    // A datagram's payload runs to its end, so it is checked alone.
    #[test]
    fn datagrams((v, d) in any_version().prop_flat_map(|v| (Just(v), strat::datagram(v)))) {
        round_trip(&d, v)?;
    }

    #[test]
    fn subgroup_objects((v, props, o) in any_version().prop_flat_map(|v| any::<bool>().prop_flat_map(move |p| (Just(v), Just(p), strat::subgroup_object(v, p))))) {
        let wire = o.to_vec(v).unwrap();
        let mut two = wire.clone();
        two.extend_from_slice(&wire);
        let mut cursor = &two[..];
        prop_assert_eq!(&SubgroupObject::decode(&mut cursor, v, props).unwrap(), &o);
        prop_assert_eq!(&SubgroupObject::decode(&mut cursor, v, props).unwrap(), &o);
        prop_assert!(cursor.is_empty());
    }

    #[test]
    fn setup_option_lists((v, options) in prop::sample::select(vec![Version::Draft14, Version::Draft15, Version::Draft16])
        .prop_flat_map(|v| (Just(v), strat::setup_options(v))))
    {
        let list = options.encode_list(v).unwrap();
        prop_assert_eq!(SetupOptions::decode_list(&list, v).unwrap(), options);
    }

    #[test]
    fn legacy_setups(
        kind in prop::sample::select(vec![SetupKind::Ietf14, SetupKind::Lite, SetupKind::Ietf7]),
        versions in prop::collection::vec(0..=moq_proto::coding::MAX_VARINT, 0..5),
        version in 0..=moq_proto::coding::MAX_VARINT,
        parameters in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let client = LegacyClientSetup { kind, versions, parameters: parameters.clone().into() };
        let mut wire = Vec::new();
        client.encode(&mut wire).unwrap();
        let mut cursor = &wire[..];
        prop_assert_eq!(LegacyClientSetup::decode(&mut cursor).unwrap(), client);
        prop_assert!(cursor.is_empty());
        let server = LegacyServerSetup { kind, version, parameters: parameters.into() };
        let mut wire = Vec::new();
        server.encode(&mut wire).unwrap();
        let mut cursor = &wire[..];
        prop_assert_eq!(LegacyServerSetup::decode(&mut cursor, kind).unwrap(), server);
        prop_assert!(cursor.is_empty());
    }
}

/// The same message reads differently (or not at all) in drafts whose layouts
/// differ, so a version mix-up cannot pass silently.
#[test]
fn drafts_are_not_interchangeable() {
    let msg = Message::Subscribe(Subscribe {
        request_id: 2,
        namespace: Namespace::new(["a"]),
        name: "t".into(),
        priority: Some(1),
        group_order: Some(GroupOrder::Ascending),
        forward: Some(true),
        filter: Some(Filter::NextObject),
        ..Default::default()
    });
    let d14 = msg.to_vec(Version::Draft14).unwrap();
    let d16 = msg.to_vec(Version::Draft16).unwrap();
    assert_ne!(d14, d16);
    assert_ne!(
        decode_slice::<Message>(&d14, Version::Draft16).ok().map(|m| m.0),
        Some(msg.clone())
    );
    assert_ne!(
        decode_slice::<Message>(&d16, Version::Draft14).ok().map(|m| m.0),
        Some(msg)
    );
}
