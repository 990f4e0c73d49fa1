//! A counting global allocator with a hard cap, for the stateful targets.
//!
//! A target installs it with
//! `#[global_allocator] static A: moq_proto_fuzz::alloc::Counting = moq_proto_fuzz::alloc::Counting;`.
//! Every allocation is counted; one that would take the live total over
//! [`CAP`] fails, which Rust turns into "memory allocation of N bytes failed"
//! and an abort, i.e. a crash libFuzzer records. Targets that do not install it
//! read zeros from [`live`] and [`peak`].

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

/// Most bytes live at once: 256 MiB.
pub const CAP: usize = 256 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Bytes allocated and not yet freed, now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most bytes live at once since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Start measuring the peak from now.
pub fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

/// The system allocator, counted and capped at [`CAP`].
pub struct Counting;

impl Counting {
    /// Count `size` more bytes, or refuse them (leaving the count as it was).
    fn take(size: usize) -> bool {
        let before = LIVE.fetch_add(size, Ordering::Relaxed);
        let now = before.saturating_add(size);
        if now > CAP {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        PEAK.fetch_max(now, Ordering::Relaxed);
        true
    }

    fn give(size: usize) {
        LIVE.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` with the same layout and pointer; the
// counters only decide whether to forward an allocation at all.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout contract is passed through unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if ptr.is_null() {
            Self::give(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::take(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if ptr.is_null() {
            Self::give(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        Self::give(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::take(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; `new_size` is the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        match (new.is_null(), new_size > old) {
            // Failed: the old block is still live at its old size.
            (true, true) => Self::give(new_size - old),
            (true, false) => {}
            (false, true) => {}
            (false, false) => Self::give(old - new_size),
        }
        new
    }
}
