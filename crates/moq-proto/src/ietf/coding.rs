//! Primitive encodings for moq-transport: the two varint forms, fixed-width
//! integers, length-prefixed strings and bytes, Locations, and the
//! `[type][u16 length][payload]` framing every control message uses.
//!
//! Draft-14 … -16 use the QUIC varint (RFC 9000 §16: a 2-bit length tag,
//! values below 2^62). Draft-17+ use the "leading ones" varint of draft-17
//! §1.4.1: the count of leading 1 bits in the first byte gives the length
//! (1–9 bytes), values span the full 64 bits, and draft-17 alone reserves the
//! 7-byte form `1111110x`.

use bytes::{Buf, BufMut, Bytes};

use super::Version;
use crate::{DecodeError, EncodeError, coding::MAX_VARINT};

/// Decodes a moq-transport value of a given draft from the front of a buffer.
pub trait Decode: Sized {
    /// Read one value from `buf`.
    ///
    /// On [`DecodeError::Short`] the buffer may have been partly consumed:
    /// decode from a copy of the cursor (or with [`decode_slice`]) and retry
    /// from the same start once more bytes arrive.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError>;
}

/// Encodes a moq-transport value for a given draft.
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

/// The largest integer a varint can carry in `version`.
pub fn max_varint(version: Version) -> u64 {
    match version.leading_ones_varint() {
        true => u64::MAX,
        false => MAX_VARINT,
    }
}

/// Number of bytes the varint encoding of `v` takes in `version` (`v` must
/// fit, see [`max_varint`]).
pub fn varint_len(v: u64, version: Version) -> usize {
    if !version.leading_ones_varint() {
        return crate::coding::varint_len(v);
    }
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        0x1000_0000..0x8_0000_0000 => 5,
        0x8_0000_0000..0x400_0000_0000 => 6,
        // The 7-byte form is skipped on purpose: draft-17 forbids it, and the
        // 8-byte form is valid in every draft.
        0x400_0000_0000..0x100_0000_0000_0000 => 8,
        _ => 9,
    }
}

/// Read a varint in the encoding `version` uses.
pub fn get_varint<B: Buf>(buf: &mut B, version: Version) -> Result<u64, DecodeError> {
    if !version.leading_ones_varint() {
        return crate::coding::get_varint(buf);
    }
    let first = buf.chunk().first().copied().ok_or(DecodeError::Short)?;
    let ones = first.leading_ones() as usize;
    if ones == 6 && version.rejects_seven_byte_varint() {
        // draft-17 §1.4.1: 11111100 is an invalid code point.
        return Err(DecodeError::InvalidValue {
            what: "varint",
            value: u64::from(first),
        });
    }
    // n ones (0 to 8): n + 1 bytes.
    let len = ones.saturating_add(1);
    if buf.remaining() < len {
        return Err(DecodeError::Short);
    }
    buf.advance(1);
    // The bits of the first byte below its length marker.
    let mut value = match ones {
        0..=6 => u64::from(first & (0x7f >> ones)),
        _ => 0,
    };
    for _ in 1..len {
        value = (value << 8) | u64::from(buf.get_u8());
    }
    Ok(value)
}

/// Write `v` as a varint in the encoding `version` uses, in its shortest form
/// (never the 7-byte leading-ones form, see [`varint_len`]).
pub fn put_varint<B: BufMut>(
    buf: &mut B,
    v: u64,
    version: Version,
    what: &'static str,
) -> Result<(), EncodeError> {
    if !version.leading_ones_varint() {
        return crate::coding::put_varint(buf, v, what);
    }
    let len = varint_len(v, version);
    match len {
        1 => buf.put_u8(v as u8),
        9 => {
            buf.put_u8(0xff);
            buf.put_u64(v);
        }
        _ => {
            // `len - 1` leading ones, a zero, then the value's high bits.
            // `varint_len` gave 2 to 8 here: 1 to 7 ones, shifts below 64.
            let ones = len.saturating_sub(1);
            let marker = !(0xffu8 >> ones);
            let high = (v >> ones.saturating_mul(8)) as u8;
            buf.put_u8(marker | high);
            for i in (0..ones).rev() {
                buf.put_u8((v >> i.saturating_mul(8)) as u8);
            }
        }
    }
    Ok(())
}

/// Read a varint that must fit a `usize` no larger than `max`.
pub(crate) fn get_len<B: Buf>(
    buf: &mut B,
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let size = get_varint(buf, version)?;
    if size > max as u64 {
        return Err(DecodeError::TooLarge {
            what,
            size,
            max: max as u64,
        });
    }
    Ok(size as usize)
}

/// Read a varint that names a count of at most `max` entries.
pub(crate) fn get_count<B: Buf>(
    buf: &mut B,
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let count = get_varint(buf, version)?;
    if count > max as u64 {
        return Err(DecodeError::TooMany {
            what,
            count,
            max: max as u64,
        });
    }
    Ok(count as usize)
}

/// Read a single byte.
pub(crate) fn get_u8<B: Buf>(buf: &mut B) -> Result<u8, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::Short);
    }
    Ok(buf.get_u8())
}

/// Read a big-endian u16.
pub(crate) fn get_u16<B: Buf>(buf: &mut B) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError::Short);
    }
    Ok(buf.get_u16())
}

/// Read a one-byte boolean: 0 or 1, anything else is a protocol violation.
pub(crate) fn get_bool<B: Buf>(buf: &mut B, what: &'static str) -> Result<bool, DecodeError> {
    match get_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::InvalidValue {
            what,
            value: u64::from(value),
        }),
    }
}

/// Read length-prefixed bytes of at most `max` bytes.
pub(crate) fn get_bytes<B: Buf>(
    buf: &mut B,
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<Bytes, DecodeError> {
    let len = get_len(buf, version, what, max)?;
    if buf.remaining() < len {
        return Err(DecodeError::Short);
    }
    Ok(buf.copy_to_bytes(len))
}

/// Write length-prefixed bytes, refusing more than `max`.
pub(crate) fn put_bytes<B: BufMut>(
    buf: &mut B,
    bytes: &[u8],
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<(), EncodeError> {
    if bytes.len() > max {
        return Err(EncodeError::TooLarge {
            what,
            size: bytes.len() as u64,
            max: max as u64,
        });
    }
    put_varint(buf, bytes.len() as u64, version, what)?;
    buf.put_slice(bytes);
    Ok(())
}

/// Read a length-prefixed UTF-8 string of at most `max` bytes.
pub(crate) fn get_string<B: Buf>(
    buf: &mut B,
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    let bytes = get_bytes(buf, version, what, max)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what })
}

/// Write a length-prefixed string, refusing more than `max` bytes.
pub(crate) fn put_string<B: BufMut>(
    buf: &mut B,
    s: &str,
    version: Version,
    what: &'static str,
    max: usize,
) -> Result<(), EncodeError> {
    put_bytes(buf, s.as_bytes(), version, what, max)
}

/// Refuse a value the target draft's varint cannot carry before anything is
/// written.
pub(crate) fn check_varint(v: u64, version: Version, what: &'static str) -> Result<(), EncodeError> {
    match v <= max_varint(version) {
        true => Ok(()),
        false => Err(EncodeError::VarintRange {
            what,
            value: u128::from(v),
        }),
    }
}

/// A position in a track: a group and an object within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// Group ID.
    pub group: u64,
    /// Object ID within the group.
    pub object: u64,
}

impl Location {
    /// A location from its parts.
    pub const fn new(group: u64, object: u64) -> Self {
        Self { group, object }
    }

    pub(crate) fn decode_from<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            group: get_varint(buf, version)?,
            object: get_varint(buf, version)?,
        })
    }

    pub(crate) fn encode_to<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.group, version, "location group")?;
        put_varint(buf, self.object, version, "location object")
    }
}

/// The body of a control message, framed as `[type][length:u16][body]`.
pub(crate) trait Body: Sized {
    /// Decode from a slice holding exactly the body's bytes.
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError>;

    /// Append the body.
    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError>;
}

/// Decode a body that must use every byte of `body`.
pub(crate) fn decode_exact<T: Body>(
    mut body: &[u8],
    version: Version,
    what: &'static str,
) -> Result<T, DecodeError> {
    let msg = T::decode_body(&mut body, version).map_err(|e| e.within(what))?;
    if !body.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: body.len(),
        });
    }
    Ok(msg)
}

/// Read `[type][length:u16]` and hand the body, contiguous, to `f`; the
/// buffer advances past the body only when `f` succeeds.
pub(crate) fn decode_frame<B: Buf, T>(
    buf: &mut B,
    version: Version,
    f: impl FnOnce(u64, &[u8]) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let kind = get_varint(buf, version)?;
    let size = usize::from(get_u16(buf)?);
    if buf.remaining() < size {
        return Err(DecodeError::Short);
    }
    if let Some(body) = buf.chunk().get(..size) {
        let msg = f(kind, body)?;
        buf.advance(size);
        return Ok(msg);
    }
    // The body straddles chunks: gather it (at most 64 KiB, the u16 range).
    let mut body = vec![0; size];
    buf.copy_to_slice(&mut body);
    f(kind, &body)
}

/// Write `[type][length:u16][body]`, refusing a body longer than a u16.
pub(crate) fn put_frame<B: BufMut>(
    buf: &mut B,
    kind: u64,
    body: &[u8],
    version: Version,
    what: &'static str,
) -> Result<(), EncodeError> {
    let size = u16::try_from(body.len()).map_err(|_| EncodeError::TooLarge {
        what,
        size: body.len() as u64,
        max: u64::from(u16::MAX),
    })?;
    put_varint(buf, kind, version, "message type")?;
    buf.put_u16(size);
    buf.put_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D14: Version = Version::Draft14;
    const D17: Version = Version::Draft17;
    const D18: Version = Version::Draft18;

    fn enc(v: u64, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v, version, "t").unwrap();
        out
    }

    // draft-17 §1.4.1 Table 2 (leaving out the 494,878,333 example, which the
    // draft itself got wrong: moq-transport PR #1521).
    #[test]
    fn leading_ones_draft_examples() {
        let cases: &[(&str, u64)] = &[
            ("25", 37),
            ("bbbd", 15_293),
            ("faa1a0e403d8", 2_893_212_287_960),
            ("fefa318fa8e3ca11", 70_423_237_261_249_041),
            ("ffffffffffffffffff", u64::MAX),
        ];
        for (hex, value) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(get_varint(&mut &bytes[..], D18).unwrap(), *value, "{hex}");
            assert_eq!(hex::encode(enc(*value, D18)), *hex);
            assert_eq!(varint_len(*value, D18), bytes.len());
        }
        // A non-minimal form still decodes.
        assert_eq!(get_varint(&mut &[0x80, 0x25][..], D17).unwrap(), 37);
    }

    #[test]
    fn leading_ones_boundaries() {
        for (value, len) in [
            (0x7f, 1),
            (0x80, 2),
            (0x3fff, 2),
            (0x4000, 3),
            (0x1f_ffff, 3),
            (0x20_0000, 4),
            (0xfff_ffff, 4),
            (0x1000_0000, 5),
            (0x7_ffff_ffff, 5),
            (0x8_0000_0000, 6),
            (0x3ff_ffff_ffff, 6),
            (0x400_0000_0000, 8),
            (0xff_ffff_ffff_ffff, 8),
            (0x100_0000_0000_0000, 9),
            (u64::MAX, 9),
        ] {
            let wire = enc(value, D17);
            assert_eq!(wire.len(), len, "{value:#x}");
            assert_eq!(get_varint(&mut &wire[..], D17).unwrap(), value);
            for cut in 0..wire.len() {
                assert_eq!(get_varint(&mut &wire[..cut], D17), Err(DecodeError::Short));
            }
        }
    }

    #[test]
    fn seven_byte_form_only_after_draft_17() {
        let wire = [0xfd, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd];
        assert_eq!(get_varint(&mut &wire[..], D18).unwrap(), 0x1_2345_6789_abcd);
        assert_eq!(
            get_varint(&mut &wire[..], D17),
            Err(DecodeError::InvalidValue {
                what: "varint",
                value: 0xfd
            })
        );
    }

    #[test]
    fn quic_form_before_draft_17() {
        assert_eq!(enc(37, D14), [0x25]);
        assert_eq!(enc(15_293, D14), [0x7b, 0xbd]);
        // A leading-ones value above 2^62 has no QUIC encoding.
        let err = put_varint(&mut Vec::new(), MAX_VARINT + 1, D14, "t").unwrap_err();
        assert!(matches!(err, EncodeError::VarintRange { .. }));
        assert!(check_varint(u64::MAX, D14, "t").is_err());
        assert!(check_varint(u64::MAX, D17, "t").is_ok());
    }

    #[test]
    fn frame_limits() {
        let mut out = Vec::new();
        let err = put_frame(&mut out, 3, &vec![0; 65_536], D14, "X").unwrap_err();
        assert!(matches!(err, EncodeError::TooLarge { .. }));
        assert!(out.is_empty());
        put_frame(&mut out, 0x2f00, &[1, 2], D17, "X").unwrap();
        assert_eq!(out, [0xaf, 0x00, 0x00, 0x02, 1, 2]);
    }

    #[test]
    fn strict_bool() {
        assert!(get_bool(&mut &[1][..], "b").unwrap());
        assert_eq!(
            get_bool(&mut &[2][..], "b"),
            Err(DecodeError::InvalidValue { what: "b", value: 2 })
        );
    }
}
