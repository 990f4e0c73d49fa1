//! FRAME: the header before each payload on a group or fetch stream. Frames
//! are not length-prefixed messages; the header is followed directly by
//! `size` payload bytes, which the caller reads (or forwards) itself.
//!
//! Wire: lite-03/04 `size`; lite-05+ `timestamp_delta(zigzag) size`, where
//! the delta is from the previous frame of the group (the first from 0), in
//! the track's timescale.

use bytes::{Buf, BufMut};

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Decode, Encode, get_varint, put_varint, zigzag_decode, zigzag_encode},
    limits::MAX_FRAME_SIZE,
};

/// A frame header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameHeader {
    /// Timestamp change from the previous frame (lite-05+). Older versions have
    /// no timestamps: the field decodes as 0 and is not written.
    pub timestamp_delta: i64,
    /// Payload length in bytes, at most [`MAX_FRAME_SIZE`].
    pub size: u64,
}

impl Decode for FrameHeader {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let timestamp_delta = match version.has_frame_timestamps() {
            true => zigzag_decode(get_varint(buf)?),
            false => 0,
        };
        let size = get_varint(buf)?;
        if size > MAX_FRAME_SIZE {
            return Err(DecodeError::TooLarge {
                what: "FRAME",
                size,
                max: MAX_FRAME_SIZE,
            });
        }
        Ok(Self {
            timestamp_delta,
            size,
        })
    }
}

impl Encode for FrameHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if self.size > MAX_FRAME_SIZE {
            return Err(EncodeError::TooLarge {
                what: "FRAME",
                size: self.size,
                max: MAX_FRAME_SIZE,
            });
        }
        if version.has_frame_timestamps() {
            let zz = zigzag_encode(self.timestamp_delta);
            // Check before writing so a failure leaves `buf` untouched.
            if zz > crate::coding::MAX_VARINT {
                return Err(EncodeError::VarintRange {
                    what: "timestamp delta",
                    value: zz.into(),
                });
            }
            put_varint(buf, zz, "timestamp delta")?;
        }
        put_varint(buf, self.size, "frame size")
    }
}

/// Turns absolute frame timestamps into deltas and back, per group.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampCursor {
    prev: u64,
}

impl TimestampCursor {
    /// Start a new group (the first delta is from 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The delta to send for a frame stamped `timestamp`, advancing the cursor.
    /// `None` if the change does not fit in an `i64`.
    pub fn delta_to(&mut self, timestamp: u64) -> Option<i64> {
        let delta = i128::from(timestamp).checked_sub(i128::from(self.prev))?;
        let delta = i64::try_from(delta).ok()?;
        self.prev = timestamp;
        Some(delta)
    }

    /// The absolute timestamp of a received frame, advancing the cursor.
    /// `None` if it would fall below 0 or overflow.
    pub fn apply(&mut self, delta: i64) -> Option<u64> {
        let next = self.prev.checked_add_signed(delta)?;
        self.prev = next;
        Some(next)
    }
}
