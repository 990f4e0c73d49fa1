//! Key-Value-Pairs: the self-describing `{type, [length], value}` list used by
//! setup options, Track Properties (draft-16 "Track Extensions") and object
//! properties (extension headers). An even type carries one varint, an odd
//! type a length-prefixed byte string (at most 2^16 - 1 bytes), so a receiver
//! can skip types it does not know.
//!
//! Draft-14 and -15 write each type in full; draft-16+ write the first type in
//! full and every later one as a delta from the previous, which forces
//! ascending order (draft-16 §1.4.2). Lists are kept sorted by type (stably,
//! so repeats keep their order) so that decoding a draft-14 list written in
//! any order and encoding it back is stable.

use bytes::{Buf, BufMut, Bytes};

use super::{
    Version,
    coding::{get_bytes, get_count, get_varint, put_bytes, put_varint},
};
use crate::{DecodeError, EncodeError, limits::MAX_KVP_VALUE};

/// The value of one Key-Value-Pair; its kind must match the type's parity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvValue {
    /// The value of an even type.
    Varint(u64),
    /// The value of an odd type.
    Bytes(Bytes),
}

/// An ordered list of Key-Value-Pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValuePairs {
    entries: Vec<(u64, KvValue)>,
}

impl KeyValuePairs {
    /// An empty list.
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs, sorted by type.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, KvValue)> {
        self.entries.iter()
    }

    /// The first value of type `key`.
    pub fn get(&self, key: u64) -> Option<&KvValue> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The first varint value of (even) type `key`.
    pub fn get_varint(&self, key: u64) -> Option<u64> {
        match self.get(key) {
            Some(KvValue::Varint(v)) => Some(*v),
            _ => None,
        }
    }

    /// The first byte value of (odd) type `key`.
    pub fn get_bytes(&self, key: u64) -> Option<&Bytes> {
        match self.get(key) {
            Some(KvValue::Bytes(v)) => Some(v),
            _ => None,
        }
    }

    /// Add a pair after any others of the same type. Fails when the value's
    /// kind does not match the type's parity.
    pub fn push(&mut self, key: u64, value: KvValue) -> Result<(), EncodeError> {
        check_parity(key, &value)?;
        let at = self.entries.partition_point(|(k, _)| *k <= key);
        self.entries.insert(at, (key, value));
        Ok(())
    }

    /// Replace every pair of type `key` with one holding `value`.
    pub fn set(&mut self, key: u64, value: KvValue) -> Result<(), EncodeError> {
        check_parity(key, &value)?;
        self.remove(key);
        self.push(key, value)
    }

    /// Remove every pair of type `key`, returning the first value.
    pub fn remove(&mut self, key: u64) -> Option<KvValue> {
        let first = self.entries.iter().position(|(k, _)| *k == key)?;
        let (_, value) = self.entries.remove(first);
        self.entries.retain(|(k, _)| *k != key);
        Some(value)
    }

    /// Read `count` pairs.
    fn decode_pairs<B: Buf>(
        buf: &mut B,
        version: Version,
        count: Option<usize>,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        let mut entries = Vec::with_capacity(count.unwrap_or(0));
        let mut prev = 0u64;
        while count.map_or(buf.has_remaining(), |count| entries.len() < count) {
            if entries.len() >= crate::limits::MAX_PARAMETERS {
                return Err(DecodeError::TooMany {
                    what,
                    count: (entries.len() as u64).saturating_add(1),
                    max: crate::limits::MAX_PARAMETERS as u64,
                });
            }
            let key = read_type(buf, version, &mut prev, entries.is_empty())?;
            let value = match key % 2 {
                0 => KvValue::Varint(get_varint(buf, version)?),
                _ => KvValue::Bytes(get_bytes(buf, version, what, MAX_KVP_VALUE)?),
            };
            entries.push((key, value));
        }
        entries.sort_by_key(|(k, _)| *k);
        Ok(Self { entries })
    }

    /// Read a count, then that many pairs (setup parameters in draft-14 … -16).
    pub(crate) fn decode_counted<B: Buf>(
        buf: &mut B,
        version: Version,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        let count = get_count(buf, version, what, crate::limits::MAX_PARAMETERS)?;
        Self::decode_pairs(buf, version, Some(count), what)
    }

    /// Read pairs until `buf` is empty (draft-17+ SETUP, Track Properties,
    /// object properties).
    pub(crate) fn decode_to_end<B: Buf>(
        buf: &mut B,
        version: Version,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        Self::decode_pairs(buf, version, None, what)
    }

    /// Write a count, then the pairs.
    pub(crate) fn encode_counted<B: BufMut>(
        &self,
        buf: &mut B,
        version: Version,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        self.check_count(what)?;
        put_varint(buf, self.entries.len() as u64, version, what)?;
        self.encode_to_end(buf, version, what)
    }

    /// Write the pairs with no count.
    pub(crate) fn encode_to_end<B: BufMut>(
        &self,
        buf: &mut B,
        version: Version,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        self.check_count(what)?;
        let mut prev = 0u64;
        for (key, value) in &self.entries {
            write_type(buf, version, *key, &mut prev)?;
            match value {
                KvValue::Varint(v) => put_varint(buf, *v, version, what)?,
                KvValue::Bytes(b) => put_bytes(buf, b, version, what, MAX_KVP_VALUE)?,
            }
        }
        Ok(())
    }

    fn check_count(&self, what: &'static str) -> Result<(), EncodeError> {
        match self.entries.len() > crate::limits::MAX_PARAMETERS {
            true => Err(EncodeError::TooMany {
                what,
                count: self.entries.len() as u64,
                max: crate::limits::MAX_PARAMETERS as u64,
            }),
            false => Ok(()),
        }
    }
}

fn check_parity(key: u64, value: &KvValue) -> Result<(), EncodeError> {
    match (key % 2, value) {
        (0, KvValue::Varint(_)) | (1, KvValue::Bytes(_)) => Ok(()),
        _ => Err(EncodeError::Invalid {
            what: "key-value pair",
            reason: "even types carry a varint and odd types bytes",
        }),
    }
}

/// Read a type: absolute in draft-14/15, a delta from the previous type in
/// draft-16+ (the first one absolute).
pub(crate) fn read_type<B: Buf>(
    buf: &mut B,
    version: Version,
    prev: &mut u64,
    first: bool,
) -> Result<u64, DecodeError> {
    let raw = get_varint(buf, version)?;
    if !version.has_delta_parameters() || first {
        *prev = raw;
        return Ok(raw);
    }
    // draft-16 §1.4.2: a delta that overflows the type space is a protocol violation.
    let key = prev.checked_add(raw).ok_or(DecodeError::InvalidValue {
        what: "parameter type delta",
        value: raw,
    })?;
    *prev = key;
    Ok(key)
}

/// Write a type in the form [`read_type`] reads. Types must come in
/// ascending order (callers keep their lists sorted).
pub(crate) fn write_type<B: BufMut>(
    buf: &mut B,
    version: Version,
    key: u64,
    prev: &mut u64,
) -> Result<(), EncodeError> {
    let raw = match version.has_delta_parameters() {
        true => key.checked_sub(*prev).ok_or(EncodeError::Invalid {
            what: "parameters",
            reason: "types must be written in ascending order",
        })?,
        false => key,
    };
    put_varint(buf, raw, version, "parameter type")?;
    *prev = key;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyValuePairs {
        let mut kv = KeyValuePairs::new();
        kv.push(0x07, KvValue::Bytes(Bytes::from_static(b"x"))).unwrap();
        kv.push(0x02, KvValue::Varint(100)).unwrap();
        kv
    }

    #[test]
    fn absolute_then_delta_types() {
        let kv = sample();
        let mut d14 = Vec::new();
        kv.encode_counted(&mut d14, Version::Draft14, "kv").unwrap();
        assert_eq!(d14, [2, 0x02, 0x40, 100, 0x07, 1, b'x']);
        let mut d16 = Vec::new();
        kv.encode_counted(&mut d16, Version::Draft16, "kv").unwrap();
        assert_eq!(d16, [2, 0x02, 0x40, 100, 0x05, 1, b'x']);
        let mut d17 = Vec::new();
        kv.encode_to_end(&mut d17, Version::Draft17, "kv").unwrap();
        assert_eq!(d17, [0x02, 0x64, 0x05, 1, b'x']);
        assert_eq!(
            KeyValuePairs::decode_to_end(&mut &d17[..], Version::Draft17, "kv").unwrap(),
            kv
        );
        // draft-14 lists may come in any order; they read back sorted.
        let shuffled = [2, 0x07, 1, b'x', 0x02, 0x40, 100];
        assert_eq!(
            KeyValuePairs::decode_counted(&mut &shuffled[..], Version::Draft14, "kv").unwrap(),
            kv
        );
    }

    #[test]
    fn limits_and_errors() {
        let mut kv = KeyValuePairs::new();
        assert!(kv.push(0x02, KvValue::Bytes(Bytes::new())).is_err());
        assert!(kv.push(0x03, KvValue::Varint(1)).is_err());
        for key in 0..65 {
            kv.push(key * 2, KvValue::Varint(0)).unwrap();
        }
        assert!(matches!(
            kv.encode_to_end(&mut Vec::new(), Version::Draft17, "kv"),
            Err(EncodeError::TooMany { .. })
        ));
        assert!(matches!(
            KeyValuePairs::decode_counted(&mut &[0x40, 65][..], Version::Draft16, "kv"),
            Err(DecodeError::TooMany { .. })
        ));
        let many: Vec<u8> = (0..65).flat_map(|_| [0u8, 0]).collect();
        assert!(matches!(
            KeyValuePairs::decode_to_end(&mut &many[..], Version::Draft18, "kv"),
            Err(DecodeError::TooMany { .. })
        ));
        // A byte value longer than 2^16 - 1, refused from its length alone.
        assert!(matches!(
            KeyValuePairs::decode_to_end(&mut &[0x01, 0xc1, 0x00, 0x00][..], Version::Draft17, "kv"),
            Err(DecodeError::TooLarge { .. })
        ));
        // A delta past 2^64 - 1.
        let mut wire = vec![0x02, 0x00];
        put_varint(&mut wire, u64::MAX, Version::Draft17, "t").unwrap();
        wire.push(0);
        assert!(matches!(
            KeyValuePairs::decode_to_end(&mut &wire[..], Version::Draft17, "kv"),
            Err(DecodeError::InvalidValue { .. })
        ));
    }

    #[test]
    fn set_and_remove() {
        let mut kv = sample();
        kv.push(0x02, KvValue::Varint(7)).unwrap();
        assert_eq!(kv.len(), 3);
        assert_eq!(kv.get_varint(0x02), Some(100));
        kv.set(0x02, KvValue::Varint(9)).unwrap();
        assert_eq!(kv.len(), 2);
        assert_eq!(kv.get_varint(0x02), Some(9));
        assert_eq!(kv.get_bytes(0x07).map(|b| &b[..]), Some(&b"x"[..]));
        assert_eq!(kv.remove(0x07), Some(KvValue::Bytes(Bytes::from_static(b"x"))));
        assert!(kv.remove(0x07).is_none());
    }
}
