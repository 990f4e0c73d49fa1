//! Arbitrary bytes into every decoder, in every version: no panic, no reading
//! past the input, bounded allocation, and anything accepted re-encodes to
//! something that decodes to the same message.
//!
//! A counting allocator checks the "bounded allocation" part: decoding any
//! input must never allocate more than a fixed budget, however large the
//! lengths it declares.
#![allow(clippy::unwrap_used)] // Test helpers, not network code.
#![allow(unsafe_code)] // The test-only allocator below.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    fmt::Debug,
};

use moq_proto::*;
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

/// Most bytes any single decode may hold at once: the largest message body
/// (64 KiB) gathered once, plus the decoded copy of its fields.
const ALLOCATION_BUDGET: usize = 3 * limits::MAX_MESSAGE_SIZE;

/// Run `f`, returning its result and the peak bytes it allocated.
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
        // Encoding may legitimately refuse a value a lenient decode accepted
        // (e.g. a duration that does not fit back), but what it writes must read back.
        if let Ok(wire) = msg.to_vec(v) {
            let (again, used) =
                decode_slice::<T>(&wire, v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, msg);
            prop_assert_eq!(used, wire.len());
        }
    }
    Ok(())
}

fn every_decoder(input: &[u8], v: Version) -> Result<(), TestCaseError> {
    check::<ControlStream>(input, v)?;
    check::<DataStream>(input, v)?;
    check::<Setup>(input, v)?;
    check::<AnnounceRequest>(input, v)?;
    check::<AnnounceOk>(input, v)?;
    check::<AnnounceInit>(input, v)?;
    check::<SessionInfo>(input, v)?;
    check::<Announce>(input, v)?;
    check::<Subscribe>(input, v)?;
    check::<SubscribeUpdate>(input, v)?;
    check::<SubscribeResponse>(input, v)?;
    check::<TrackRequest>(input, v)?;
    check::<TrackInfo>(input, v)?;
    check::<Fetch>(input, v)?;
    check::<GroupHeader>(input, v)?;
    check::<FrameHeader>(input, v)?;
    check::<Datagram>(input, v)?;
    check::<Probe>(input, v)?;
    check::<Goaway>(input, v)?;
    Ok(())
}

fn any_version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::EVERY.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(v in any_version(), input in prop::collection::vec(any::<u8>(), 0..256)) {
        every_decoder(&input, v)?;
    }

    /// Inputs that start with a plausible small length, so decoders get past
    /// the framing and into the fields far more often than with pure noise.
    #[test]
    fn framed_noise(
        v in any_version(),
        kind in 0u8..8,
        body in prop::collection::vec(prop_oneof![0u8..8, any::<u8>()], 0..64),
    ) {
        let mut input = vec![body.len() as u8];
        input.extend_from_slice(&body);
        every_decoder(&input, v)?;
        let mut typed = vec![kind, body.len() as u8];
        typed.extend_from_slice(&body);
        every_decoder(&typed, v)?;
    }
}

/// Lengths that claim gigabytes are refused from the prefix, before buffering.
#[test]
fn huge_declared_lengths_allocate_nothing_large() {
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
    for v in Version::EVERY {
        for prefix in [&[][..], &[0][..], &[1, 0][..], &[0, 0, 0][..]] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&huge);
            every_decoder(&input, v).unwrap();
        }
    }
    // The limits themselves produce clear errors.
    let err = decode_slice::<Subscribe>(&[0x80, 0x01, 0x00, 0x01], Version::Lite06).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SUBSCRIBE: length 65537 exceeds the limit of 65536 bytes"
    );
}

/// The budget check above only means something if the counter sees allocations.
#[test]
fn allocator_is_counting() {
    let (v, peak) = measured(|| vec![0u8; 100_000]);
    assert_eq!(v.len(), 100_000);
    assert!(peak >= 100_000, "counted {peak}");
}
