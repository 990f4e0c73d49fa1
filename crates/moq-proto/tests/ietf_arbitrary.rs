//! Arbitrary bytes into every moq-transport decoder (and the legacy SETUP), in
//! every draft: no panic, no reading past the input, bounded allocation, and
//! anything accepted re-encodes to bytes that decode to the same value.
//!
//! A counting allocator checks the "bounded allocation" part: decoding any
//! input must stay under a fixed budget, however large the lengths it declares.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.
#![allow(unsafe_code)] // The test-only allocator below.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    fmt::Debug,
};

use bytes::Bytes;
use moq_proto::{
    ietf::{self, *},
    legacy::{LegacyClientSetup, LegacyServerSetup, SetupKind},
    limits,
};
use proptest::prelude::*;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call forwards to `System` unchanged; the thread-local counters
// only observe sizes. Thread-locals with const initialisers never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + layout.size());
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(layout.size())));
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Most bytes any single decode may hold at once: a 64 KiB control message
/// (or legacy SETUP) gathered once, plus the decoded copy of its fields.
const ALLOCATION_BUDGET: usize = 3 * limits::MAX_MESSAGE_SIZE;

fn measured<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

fn check<T: Decode + Encode + PartialEq + Debug>(input: &[u8], v: Version) -> Result<(), TestCaseError> {
    let (result, peak) = measured(|| decode_slice::<T>(input, v));
    prop_assert!(peak <= ALLOCATION_BUDGET, "decoding allocated {} bytes", peak);
    if let Ok((msg, used)) = result {
        prop_assert!(used <= input.len());
        if let Ok(wire) = msg.to_vec(v) {
            let (again, used) =
                decode_slice::<T>(&wire, v).map_err(|e| TestCaseError::fail(format!("{msg:?}: {e}")))?;
            prop_assert_eq!(again, msg);
            prop_assert_eq!(used, wire.len());
        }
    }
    Ok(())
}

fn check_objects(input: &[u8], v: Version) -> Result<(), TestCaseError> {
    for props in [false, true] {
        let (result, peak) = measured(|| SubgroupObject::decode(&mut &input[..], v, props));
        prop_assert!(peak <= ALLOCATION_BUDGET);
        if let Ok(obj) = result
            && let Ok(wire) = obj.to_vec(v)
        {
            prop_assert_eq!(SubgroupObject::decode(&mut &wire[..], v, props).unwrap(), obj);
        }
    }
    Ok(())
}

fn check_setup_pieces(input: &[u8], v: Version) -> Result<(), TestCaseError> {
    let (result, peak) = measured(|| SetupOptions::decode_list(input, v));
    prop_assert!(peak <= ALLOCATION_BUDGET);
    if let Ok(options) = result
        && let Ok(list) = options.encode_list(v)
    {
        prop_assert_eq!(SetupOptions::decode_list(&list, v).unwrap(), options);
    }
    let (result, peak) = measured(|| AuthToken::decode(input, v));
    prop_assert!(peak <= ALLOCATION_BUDGET);
    if let Ok(token) = result {
        prop_assert_eq!(AuthToken::decode(&token.to_bytes(v).unwrap(), v).unwrap(), token);
    }
    let block = Bytes::copy_from_slice(input);
    let (result, peak) = measured(|| ietf::properties::object_properties(&block, v));
    prop_assert!(peak <= ALLOCATION_BUDGET);
    if let Ok(props) = result
        && let Ok(again) = ietf::properties::object_properties_block(&props, v)
    {
        prop_assert_eq!(ietf::properties::object_properties(&again, v).unwrap(), props);
    }
    Ok(())
}

fn check_legacy(input: &[u8]) -> Result<(), TestCaseError> {
    let (result, peak) = measured(|| LegacyClientSetup::decode(&mut &input[..]));
    prop_assert!(peak <= ALLOCATION_BUDGET);
    if let Ok(client) = result {
        let mut wire = Vec::new();
        client.encode(&mut wire).unwrap();
        prop_assert_eq!(LegacyClientSetup::decode(&mut &wire[..]).unwrap(), client);
    }
    for kind in [SetupKind::Ietf14, SetupKind::Lite, SetupKind::Ietf7] {
        let (result, peak) = measured(|| LegacyServerSetup::decode(&mut &input[..], kind));
        prop_assert!(peak <= ALLOCATION_BUDGET);
        if let Ok(server) = result {
            let mut wire = Vec::new();
            server.encode(&mut wire).unwrap();
            prop_assert_eq!(LegacyServerSetup::decode(&mut &wire[..], kind).unwrap(), server);
        }
    }
    Ok(())
}

fn every_decoder(input: &[u8], v: Version) -> Result<(), TestCaseError> {
    check::<Message>(input, v)?;
    check::<UniStream>(input, v)?;
    check::<SubgroupHeader>(input, v)?;
    check::<FetchHeader>(input, v)?;
    check::<FetchObject>(input, v)?;
    check::<ObjectDatagram>(input, v)?;
    check_objects(input, v)?;
    check_setup_pieces(input, v)?;
    check_legacy(input)
}

fn any_version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(v in any_version(), input in prop::collection::vec(any::<u8>(), 0..256)) {
        every_decoder(&input, v)?;
    }

    /// Inputs that start like a control message (a small type, a plausible
    /// u16 length), so decoders get past the framing and into the fields.
    #[test]
    fn framed_noise(
        v in any_version(),
        kind in prop_oneof![0u8..0x20, Just(0x50), Just(0x51)],
        body in prop::collection::vec(prop_oneof![0u8..8, any::<u8>()], 0..64),
    ) {
        let mut input = vec![kind, 0, body.len() as u8];
        input.extend_from_slice(&body);
        every_decoder(&input, v)?;
    }
}

/// Lengths that claim gigabytes are refused from the prefix, before buffering.
#[test]
fn huge_declared_lengths_allocate_nothing_large() {
    let huge = [0xff; 12];
    for v in Version::ALL {
        for prefix in [
            &[][..],
            &[0x03, 0xff, 0xff][..],
            &[0x00][..],
            &[0x10, 0x01, 0x01][..],
            &[0x20][..],
        ] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&huge);
            every_decoder(&input, v).unwrap();
        }
    }
    // A 64 KiB control message is the most ever gathered, and it is refused
    // from its length alone when the bytes are not there.
    let err = decode_slice::<Message>(&[0x03, 0xff, 0xff, 0x00], Version::Draft16).unwrap_err();
    assert!(err.is_short());
}

/// The budget check above only means something if the counter sees allocations.
#[test]
fn allocator_is_counting() {
    let (v, peak) = measured(|| vec![0u8; 100_000]);
    assert_eq!(v.len(), 100_000);
    assert!(peak >= 100_000, "counted {peak}");
}
