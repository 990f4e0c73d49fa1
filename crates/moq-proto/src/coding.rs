//! Primitive encodings shared by every message: QUIC variable-length integers
//! (RFC 9000 §16), length-prefixed strings, optional group numbers, and the
//! length-prefixed message framing used by every moq-lite control message.

use bytes::{Buf, BufMut};

use crate::{DecodeError, EncodeError, Version};

/// Largest value a QUIC varint can hold: 2^62 - 1.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Decodes a value of a given version from the front of a buffer.
pub trait Decode: Sized {
    /// Read one value from `buf`.
    ///
    /// On [`DecodeError::Short`] the buffer may have been partly consumed:
    /// decode from a copy of the cursor (`&mut &bytes[..]`, or [`decode_slice`])
    /// and retry from the same start once more bytes arrive.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError>;
}

/// Encodes a value for a given version.
pub trait Encode {
    /// Append the encoding of `self` to `buf`.
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError>;

    /// Encode into a fresh vector.
    fn to_vec(&self, version: Version) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::new();
        self.encode(&mut buf, version)?;
        Ok(buf)
    }
}

/// Decode one value from the front of `bytes` without consuming anything on
/// failure. Returns the value and how many bytes it used.
pub fn decode_slice<T: Decode>(bytes: &[u8], version: Version) -> Result<(T, usize), DecodeError> {
    let mut cursor = bytes;
    let value = T::decode(&mut cursor, version)?;
    // `cursor` is what is left of `bytes`, so never longer.
    Ok((value, bytes.len().saturating_sub(cursor.len())))
}

/// Number of bytes the varint encoding of `v` takes (`v` must be ≤ [`MAX_VARINT`]).
pub fn varint_len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

/// Read a QUIC varint.
pub fn get_varint<B: Buf>(buf: &mut B) -> Result<u64, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::Short);
    }
    let first = buf.chunk().first().copied().ok_or(DecodeError::Short)?;
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return Err(DecodeError::Short);
    }
    let mut value = u64::from(first & 0x3f);
    buf.advance(1);
    for _ in 1..len {
        value = (value << 8) | u64::from(buf.get_u8());
    }
    Ok(value)
}

/// Write `v` as a QUIC varint in its shortest form.
pub fn put_varint<B: BufMut>(buf: &mut B, v: u64, what: &'static str) -> Result<(), EncodeError> {
    match v {
        0..=0x3f => buf.put_u8(v as u8),
        0x40..=0x3fff => buf.put_u16(0x4000 | v as u16),
        0x4000..=0x3fff_ffff => buf.put_u32(0x8000_0000 | v as u32),
        0x4000_0000..=MAX_VARINT => buf.put_u64(0xc000_0000_0000_0000 | v),
        _ => {
            return Err(EncodeError::VarintRange {
                what,
                value: u128::from(v),
            });
        }
    }
    Ok(())
}

/// Read a varint that must fit a `usize` no larger than `max`.
pub(crate) fn get_len<B: Buf>(buf: &mut B, what: &'static str, max: usize) -> Result<usize, DecodeError> {
    let size = get_varint(buf)?;
    if size > max as u64 {
        return Err(DecodeError::TooLarge {
            what,
            size,
            max: max as u64,
        });
    }
    // `size <= max`, and `max` is a usize.
    Ok(size as usize)
}

/// Read a single byte.
pub(crate) fn get_u8<B: Buf>(buf: &mut B) -> Result<u8, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::Short);
    }
    Ok(buf.get_u8())
}

/// Read a length-prefixed UTF-8 string of at most `max` bytes.
pub(crate) fn get_string<B: Buf>(buf: &mut B, what: &'static str, max: usize) -> Result<String, DecodeError> {
    let len = get_len(buf, what, max)?;
    if buf.remaining() < len {
        return Err(DecodeError::Short);
    }
    let mut bytes = vec![0; len];
    buf.copy_to_slice(&mut bytes);
    String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { what })
}

/// Write a length-prefixed string, refusing one longer than `max` bytes.
pub(crate) fn put_string<B: BufMut>(
    buf: &mut B,
    s: &str,
    what: &'static str,
    max: usize,
) -> Result<(), EncodeError> {
    if s.len() > max {
        return Err(EncodeError::TooLarge {
            what,
            size: s.len() as u64,
            max: max as u64,
        });
    }
    put_varint(buf, s.len() as u64, what)?;
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Read an optional value encoded as `0` for absent and `value + 1` otherwise.
pub(crate) fn get_optional<B: Buf>(buf: &mut B) -> Result<Option<u64>, DecodeError> {
    Ok(get_varint(buf)?.checked_sub(1))
}

/// Write an optional value as `0` for absent and `value + 1` otherwise.
pub(crate) fn put_optional<B: BufMut>(
    buf: &mut B,
    v: Option<u64>,
    what: &'static str,
) -> Result<(), EncodeError> {
    match v {
        None => put_varint(buf, 0, what),
        Some(v) if v >= MAX_VARINT => Err(EncodeError::VarintRange {
            what,
            value: u128::from(v) + 1,
        }),
        // Below MAX_VARINT (the arm above), so the sum is exact.
        Some(v) => put_varint(buf, v.saturating_add(1), what),
    }
}

/// Read a duration carried as a varint number of milliseconds.
pub(crate) fn get_millis<B: Buf>(buf: &mut B) -> Result<std::time::Duration, DecodeError> {
    Ok(std::time::Duration::from_millis(get_varint(buf)?))
}

/// Write a duration as a varint number of whole milliseconds.
pub(crate) fn put_millis<B: BufMut>(
    buf: &mut B,
    d: std::time::Duration,
    what: &'static str,
) -> Result<(), EncodeError> {
    let ms = d.as_millis();
    let ms = u64::try_from(ms)
        .ok()
        .filter(|ms| *ms <= MAX_VARINT)
        .ok_or(EncodeError::VarintRange { what, value: ms })?;
    put_varint(buf, ms, what)
}

/// Map a signed integer onto an unsigned one so small magnitudes stay small:
/// 0, -1, 1, -2, 2 ... become 0, 1, 2, 3, 4 ...
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
pub fn zigzag_decode(v: u64) -> i64 {
    ((v >> 1) as i64) ^ ((v & 1) as i64).wrapping_neg()
}

/// The body of a message that travels as `[length:varint][body]`.
///
/// Implementors describe the body; framing, size limits and the checks that
/// the body is consumed exactly live here once.
pub(crate) trait Body: Sized {
    /// Human-readable message name, used in errors.
    const NAME: &'static str;
    /// Largest body this receiver accepts.
    const MAX_SIZE: usize = crate::limits::MAX_MESSAGE_SIZE;

    /// Decode the body from a slice holding exactly the body's bytes.
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError>;

    /// Append the body (without its length prefix).
    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError>;
}

/// Decode a body whose length was already read and is fully buffered.
pub(crate) fn decode_exact<T: Body>(mut body: &[u8], version: Version) -> Result<T, DecodeError> {
    let msg = T::decode_body(&mut body, version).map_err(|e| e.within(T::NAME))?;
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what: T::NAME,
            extra: body.len(),
        });
    }
    Ok(msg)
}

/// Read a `[length][body]` message, enforcing `T::MAX_SIZE` before buffering.
pub(crate) fn decode_framed<T: Body, B: Buf>(buf: &mut B, version: Version) -> Result<T, DecodeError> {
    let size = get_len(buf, T::NAME, T::MAX_SIZE)?;
    decode_sized::<T, B>(buf, size, version)
}

/// Decode a body of `size` bytes from the front of `buf`.
pub(crate) fn decode_sized<T: Body, B: Buf>(
    buf: &mut B,
    size: usize,
    version: Version,
) -> Result<T, DecodeError> {
    if buf.remaining() < size {
        return Err(DecodeError::Short);
    }
    let msg = match buf.chunk().get(..size) {
        Some(body) => decode_exact::<T>(body, version)?,
        // The body straddles chunks: gather it (bounded by MAX_SIZE).
        None => {
            let mut body = vec![0; size];
            let mut reader = (&mut *buf).take(size);
            reader.copy_to_slice(&mut body);
            let msg = decode_exact::<T>(&body, version)?;
            return Ok(msg);
        }
    };
    buf.advance(size);
    Ok(msg)
}

/// Write `[length][body]`, refusing a body the receiver would reject.
pub(crate) fn encode_framed<T: Body, B: BufMut>(
    msg: &T,
    buf: &mut B,
    version: Version,
) -> Result<(), EncodeError> {
    let mut body = Vec::with_capacity(32);
    msg.encode_body(&mut body, version)?;
    put_body::<T, B>(buf, &body)
}

/// Write an already-encoded body with its length prefix.
pub(crate) fn put_body<T: Body, B: BufMut>(buf: &mut B, body: &[u8]) -> Result<(), EncodeError> {
    if body.len() > T::MAX_SIZE {
        return Err(EncodeError::TooLarge {
            what: T::NAME,
            size: body.len() as u64,
            max: T::MAX_SIZE as u64,
        });
    }
    put_varint(buf, body.len() as u64, T::NAME)?;
    buf.put_slice(body);
    Ok(())
}

/// Implement [`Decode`] and [`Encode`] for a [`Body`] as a length-prefixed message.
macro_rules! framed_message {
    ($ty:ty) => {
        impl $crate::coding::Decode for $ty {
            fn decode<B: bytes::Buf>(
                buf: &mut B,
                version: $crate::Version,
            ) -> Result<Self, $crate::DecodeError> {
                $crate::coding::decode_framed::<Self, B>(buf, version)
            }
        }

        impl $crate::coding::Encode for $ty {
            fn encode<B: bytes::BufMut>(
                &self,
                buf: &mut B,
                version: $crate::Version,
            ) -> Result<(), $crate::EncodeError> {
                $crate::coding::encode_framed(self, buf, version)
            }
        }
    };
}
pub(crate) use framed_message;

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9000 Appendix A.1 sample encodings.
    #[test]
    fn varint_rfc9000_vectors() {
        let cases: &[(&str, u64)] = &[
            ("c2197c5eff14e88c", 151_288_809_941_952_652),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
        ];
        for (hex, value) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(get_varint(&mut &bytes[..]).unwrap(), *value);
            let mut out = Vec::new();
            put_varint(&mut out, *value, "test").unwrap();
            assert_eq!(hex::encode(out), *hex);
        }
        // Non-minimal encodings are legal on the wire (RFC 9000 §16).
        assert_eq!(get_varint(&mut &[0x40, 0x25][..]).unwrap(), 37);
    }

    #[test]
    fn varint_boundaries() {
        for v in [
            0,
            63,
            64,
            16_383,
            16_384,
            1_073_741_823,
            1_073_741_824,
            MAX_VARINT,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v, "test").unwrap();
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(get_varint(&mut &out[..]).unwrap(), v);
        }
        let err = put_varint(&mut Vec::new(), MAX_VARINT + 1, "test").unwrap_err();
        assert!(matches!(err, EncodeError::VarintRange { .. }));
    }

    #[test]
    fn varint_short() {
        assert_eq!(get_varint(&mut &[][..]), Err(DecodeError::Short));
        assert_eq!(get_varint(&mut &[0x40][..]), Err(DecodeError::Short));
        assert_eq!(
            get_varint(&mut &[0xc0, 0, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::Short)
        );
    }

    #[test]
    fn zigzag() {
        for (signed, unsigned) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (i64::MAX, u64::MAX - 1),
        ] {
            assert_eq!(zigzag_encode(signed), unsigned);
            assert_eq!(zigzag_decode(unsigned), signed);
        }
        assert_eq!(zigzag_decode(zigzag_encode(i64::MIN)), i64::MIN);
    }

    #[test]
    fn optional() {
        let mut out = Vec::new();
        put_optional(&mut out, None, "t").unwrap();
        put_optional(&mut out, Some(0), "t").unwrap();
        put_optional(&mut out, Some(7), "t").unwrap();
        assert_eq!(out, [0, 1, 8]);
        let mut r = &out[..];
        assert_eq!(get_optional(&mut r).unwrap(), None);
        assert_eq!(get_optional(&mut r).unwrap(), Some(0));
        assert_eq!(get_optional(&mut r).unwrap(), Some(7));
        assert!(put_optional(&mut out, Some(MAX_VARINT), "t").is_err());
    }

    #[test]
    fn string_limits() {
        let mut out = Vec::new();
        put_string(&mut out, "héllo", "name", 16).unwrap();
        assert_eq!(get_string(&mut &out[..], "name", 16).unwrap(), "héllo");
        // The limit is checked from the length prefix alone, before any buffering.
        let huge = [0xbf, 0xff, 0xff, 0xff];
        assert_eq!(
            get_string(&mut &huge[..], "name", 16),
            Err(DecodeError::TooLarge {
                what: "name",
                size: 0x3fff_ffff,
                max: 16
            })
        );
        assert!(put_string(&mut out, &"x".repeat(17), "name", 16).is_err());
        assert_eq!(
            get_string(&mut &[2, 0xc3, 0x28][..], "name", 16),
            Err(DecodeError::InvalidUtf8 { what: "name" })
        );
    }
}
