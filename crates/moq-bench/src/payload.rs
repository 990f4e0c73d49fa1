//! The synthetic frame payload: a fixed header followed by zero padding.
//!
//! Header (big-endian): send time (u64, microseconds since the Unix epoch),
//! frame number within the broadcast (u64), group sequence (u64), index within
//! the group (u32), frames in the group (u32).

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes taken by the header; smaller target sizes are rounded up to this.
pub(crate) const HEADER_LEN: usize = 32;

/// What every frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Send time, microseconds since the Unix epoch.
    pub sent_micros: u64,
    /// Frame number within the broadcast, from 0.
    pub frame: u64,
    /// Group sequence.
    pub group: u64,
    /// Index within the group, from 0.
    pub index: u32,
    /// How many frames the publisher puts in this group.
    pub group_len: u32,
}

/// Encode `header` padded with zeros to `size` bytes (at least [`HEADER_LEN`]).
pub(crate) fn encode(header: &Header, size: usize) -> Bytes {
    let size = size.max(HEADER_LEN);
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u64(header.sent_micros);
    buf.put_u64(header.frame);
    buf.put_u64(header.group);
    buf.put_u32(header.index);
    buf.put_u32(header.group_len);
    buf.resize(size, 0);
    buf.freeze()
}

/// Decode the header; `None` if the payload is too short to hold one.
pub(crate) fn decode(payload: &[u8]) -> Option<Header> {
    let head = payload.get(..HEADER_LEN)?;
    let u64_at =
        |at: usize| -> Option<u64> { Some(u64::from_be_bytes(head.get(at..at + 8)?.try_into().ok()?)) };
    let u32_at =
        |at: usize| -> Option<u32> { Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?)) };
    Some(Header {
        sent_micros: u64_at(0)?,
        frame: u64_at(8)?,
        group: u64_at(16)?,
        index: u32_at(24)?,
        group_len: u32_at(28)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let header = Header {
            sent_micros: 1_700_000_000_123_456,
            frame: 12345,
            group: 77,
            index: 59,
            group_len: 60,
        };
        let bytes = encode(&header, 3000);
        assert_eq!(bytes.len(), 3000);
        assert!(bytes[HEADER_LEN..].iter().all(|&b| b == 0));
        assert_eq!(decode(&bytes), Some(header));
        // The send time is the first 8 bytes, big-endian.
        assert_eq!(&bytes[..8], &header.sent_micros.to_be_bytes());
    }

    #[test]
    fn small_target_is_rounded_up_and_short_payload_rejected() {
        let header = Header {
            sent_micros: 1,
            frame: 2,
            group: 3,
            index: 4,
            group_len: 5,
        };
        let bytes = encode(&header, 1);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(decode(&bytes), Some(header));
        assert_eq!(decode(&bytes[..HEADER_LEN - 1]), None);
        assert_eq!(decode(b""), None);
    }
}
