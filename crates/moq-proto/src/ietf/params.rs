//! Message parameters: the `Number of Parameters` list carried by requests and
//! their responses.
//!
//! - draft-14, -15: Key-Value-Pairs with absolute types; parity gives the
//!   framing, so unknown types are skipped (and kept here).
//! - draft-16: the same with delta-encoded types.
//! - draft-17+: `{Type Delta, Value}` where each type defines its own value
//!   encoding (varint, one byte, a Location, length-prefixed bytes …) and
//!   there is no Length, so an unknown type cannot be skipped: draft-17 §9.2
//!   makes it a PROTOCOL_VIOLATION, and decoding fails.
//!
//! Values are stored by meaning ([`Value`]), so the same list encodes in any
//! draft that defines its types: a `uint8` is a varint in draft-16 and one
//! raw byte in draft-17, a Location is wrapped in a length in draft-16 and two
//! bare varints in draft-17.
//!
//! Types defined here (and the drafts that define them as message parameters;
//! in draft-14 … -16 any other type still decodes as a raw pair):
//!
//! | type | name | value | drafts |
//! |---|---|---|---|
//! | 0x02 | DELIVERY_TIMEOUT / OBJECT_DELIVERY_TIMEOUT | varint (ms) | all |
//! | 0x03 | AUTHORIZATION_TOKEN (may repeat) | bytes | all |
//! | 0x04 | MAX_CACHE_DURATION (≤16) / RENDEZVOUS_TIMEOUT (17+) | varint | all |
//! | 0x06 | SUBGROUP_DELIVERY_TIMEOUT | varint | 18+ |
//! | 0x08 | EXPIRES | varint | 15+ |
//! | 0x09 | LARGEST_OBJECT | Location | 15+ |
//! | 0x0A | FILL_TIMEOUT | varint | 18+ |
//! | 0x0E | PUBLISHER_PRIORITY (a draft-15 parameter, still written by @moq/net) | uint8 | 17+ (a raw pair before) |
//! | 0x10 | FORWARD | bool | 15+ |
//! | 0x20 | SUBSCRIBER_PRIORITY | uint8 | 15+ |
//! | 0x21 | SUBSCRIPTION_FILTER / LOCATION_FILTER | [`Filter`] | 15+ |
//! | 0x22 | GROUP_ORDER | uint8 | 15+ |
//! | 0x23 | FILL_PARAMETERS | bytes | 20+ |
//! | 0x25–0x29 | Range Filters (may repeat) | bytes | 19+ |
//! | 0x32 | NEW_GROUP_REQUEST | varint | 15+ |
//! | 0x34 | TRACK_NAMESPACE_PREFIX | namespace | 18+ |
//! | 0x35 | INCLUDE_PROPERTIES | bool | 20+ |
//! | 0x40B57 | HOP_PATH (MoQ Cluster) | bytes | 17+ |
//! | 0x40B58 | ROUTE_COST (MoQ Cluster) | varint | 17+ |
//! | 0x40B5E | HIDDEN (MoQ Hidden) | varint | all |

use bytes::{Buf, BufMut, Bytes};

use super::{
    Filter, Namespace, Version,
    coding::{Location, get_bytes, get_count, get_u8, get_varint, put_bytes, put_varint},
    kvp::{read_type, write_type},
};
use crate::{
    DecodeError, EncodeError,
    limits::{MAX_KVP_VALUE, MAX_PARAMETERS},
};

/// DELIVERY_TIMEOUT (OBJECT_DELIVERY_TIMEOUT from draft-18), milliseconds.
pub const DELIVERY_TIMEOUT: u64 = 0x02;
/// AUTHORIZATION_TOKEN: a Token structure (see [`super::AuthToken`]).
pub const AUTHORIZATION_TOKEN: u64 = 0x03;
/// MAX_CACHE_DURATION (draft-14/15), RENDEZVOUS_TIMEOUT (draft-17+).
pub const MAX_CACHE_DURATION: u64 = 0x04;
/// RENDEZVOUS_TIMEOUT (draft-17+), milliseconds.
pub const RENDEZVOUS_TIMEOUT: u64 = 0x04;
/// SUBGROUP_DELIVERY_TIMEOUT (draft-18+), milliseconds.
pub const SUBGROUP_DELIVERY_TIMEOUT: u64 = 0x06;
/// EXPIRES, milliseconds.
pub const EXPIRES: u64 = 0x08;
/// LARGEST_OBJECT.
pub const LARGEST_OBJECT: u64 = 0x09;
/// FILL_TIMEOUT (draft-18+), milliseconds.
pub const FILL_TIMEOUT: u64 = 0x0A;
/// PUBLISHER_PRIORITY (draft-15's message parameter; @moq/net's codec still
/// frames it as a uint8 from draft-17, so it is read rather than refused).
pub const PUBLISHER_PRIORITY: u64 = 0x0E;
/// FORWARD.
pub const FORWARD: u64 = 0x10;
/// SUBSCRIBER_PRIORITY (lower is more urgent).
pub const SUBSCRIBER_PRIORITY: u64 = 0x20;
/// SUBSCRIPTION_FILTER (LOCATION_FILTER from draft-19).
pub const FILTER: u64 = 0x21;
/// GROUP_ORDER.
pub const GROUP_ORDER: u64 = 0x22;
/// FILL_PARAMETERS (draft-20+), a nested parameter scope kept as bytes.
pub const FILL_PARAMETERS: u64 = 0x23;
/// SUBGROUP_FILTER (draft-19+), first of the Range Filters 0x25–0x29.
pub const SUBGROUP_FILTER: u64 = 0x25;
/// TRACK_PROPERTY_FILTER (draft-19+), last of the Range Filters.
pub const TRACK_PROPERTY_FILTER: u64 = 0x29;
/// NEW_GROUP_REQUEST.
pub const NEW_GROUP_REQUEST: u64 = 0x32;
/// TRACK_NAMESPACE_PREFIX (draft-18+).
pub const TRACK_NAMESPACE_PREFIX: u64 = 0x34;
/// INCLUDE_PROPERTIES (draft-20+).
pub const INCLUDE_PROPERTIES: u64 = 0x35;
/// HOP_PATH, from the MoQ Cluster extension (draft-lcurley-moq-cluster).
pub const HOP_PATH: u64 = 0x40B57;
/// ROUTE_COST, from the MoQ Cluster extension.
pub const ROUTE_COST: u64 = 0x40B58;
/// HIDDEN, from the MoQ Hidden extension (SUBSCRIBE_NAMESPACE).
pub const HIDDEN: u64 = 0x40B5E;

/// The order groups are delivered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupOrder {
    /// 0x0: the publisher's choice (only where a draft allows it).
    Publisher,
    /// 0x1: oldest group first.
    Ascending,
    /// 0x2: newest group first.
    Descending,
}

impl GroupOrder {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Self::Publisher => 0,
            Self::Ascending => 1,
            Self::Descending => 2,
        }
    }

    /// The order for a wire value.
    pub fn from_code(code: u64) -> Result<Self, DecodeError> {
        match code {
            0 => Ok(Self::Publisher),
            1 => Ok(Self::Ascending),
            2 => Ok(Self::Descending),
            value => Err(DecodeError::InvalidValue {
                what: "group order",
                value,
            }),
        }
    }

    pub(crate) fn decode_byte<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        Self::from_code(u64::from(get_u8(buf)?))
    }
}

/// A parameter value, by meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A varint.
    Varint(u64),
    /// A `uint8`.
    U8(u8),
    /// A boolean (a `uint8` restricted to 0 and 1).
    Bool(bool),
    /// A group order (a `uint8`).
    Order(GroupOrder),
    /// A Location.
    Location(Location),
    /// A subscription filter.
    Filter(Filter),
    /// A namespace tuple.
    Namespace(Namespace),
    /// Length-prefixed bytes.
    Bytes(Bytes),
}

/// How a type's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Varint,
    U8,
    Bool,
    Order,
    Location,
    Filter,
    Namespace,
    Bytes,
}

/// The value kind of `key` in `version`, or `None` when the draft does not
/// define it as a message parameter.
fn kind(key: u64, version: Version) -> Option<Kind> {
    let v = version;
    let since = |n: Version| v >= n;
    Some(match key {
        DELIVERY_TIMEOUT | MAX_CACHE_DURATION | HIDDEN => Kind::Varint,
        AUTHORIZATION_TOKEN => Kind::Bytes,
        SUBGROUP_DELIVERY_TIMEOUT | FILL_TIMEOUT if since(Version::Draft18) => Kind::Varint,
        PUBLISHER_PRIORITY if since(Version::Draft17) => Kind::U8,
        EXPIRES | NEW_GROUP_REQUEST if since(Version::Draft15) => Kind::Varint,
        LARGEST_OBJECT if since(Version::Draft15) => Kind::Location,
        FORWARD if since(Version::Draft15) => Kind::Bool,
        SUBSCRIBER_PRIORITY if since(Version::Draft15) => Kind::U8,
        FILTER if since(Version::Draft15) => Kind::Filter,
        GROUP_ORDER if since(Version::Draft15) => Kind::Order,
        FILL_PARAMETERS if since(Version::Draft20) => Kind::Bytes,
        SUBGROUP_FILTER..=TRACK_PROPERTY_FILTER if since(Version::Draft19) => Kind::Bytes,
        TRACK_NAMESPACE_PREFIX if since(Version::Draft18) => Kind::Namespace,
        INCLUDE_PROPERTIES if since(Version::Draft20) => Kind::Bool,
        HOP_PATH if since(Version::Draft17) => Kind::Bytes,
        ROUTE_COST if since(Version::Draft17) => Kind::Varint,
        _ => return None,
    })
}

/// Whether a type may appear more than once in one message.
fn repeatable(key: u64, known: bool) -> bool {
    !known || key == AUTHORIZATION_TOKEN || (SUBGROUP_FILTER..=TRACK_PROPERTY_FILTER).contains(&key)
}

fn value_kind(value: &Value) -> Kind {
    match value {
        Value::Varint(_) => Kind::Varint,
        Value::U8(_) => Kind::U8,
        Value::Bool(_) => Kind::Bool,
        Value::Order(_) => Kind::Order,
        Value::Location(_) => Kind::Location,
        Value::Filter(_) => Kind::Filter,
        Value::Namespace(_) => Kind::Namespace,
        Value::Bytes(_) => Kind::Bytes,
    }
}

/// A message's parameters, sorted by type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    entries: Vec<(u64, Value)>,
}

impl Parameters {
    /// No parameters.
    pub const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The parameters, sorted by type.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, Value)> {
        self.entries.iter()
    }

    /// The first value of type `key`.
    pub fn get(&self, key: u64) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether any parameter of type `key` is present.
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Every value of type `key`, in order.
    pub fn get_all(&self, key: u64) -> impl Iterator<Item = &Value> {
        self.entries
            .iter()
            .filter(move |(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Add a parameter after any others of the same type.
    pub fn push(&mut self, key: u64, value: Value) {
        let at = self.entries.partition_point(|(k, _)| *k <= key);
        self.entries.insert(at, (key, value));
    }

    /// Replace every parameter of type `key` with one holding `value`.
    pub fn set(&mut self, key: u64, value: Value) {
        self.remove(key);
        self.push(key, value);
    }

    /// Builder form of [`Self::set`].
    pub fn with(mut self, key: u64, value: Value) -> Self {
        self.set(key, value);
        self
    }

    /// Remove every parameter of type `key`, returning the first value.
    pub fn remove(&mut self, key: u64) -> Option<Value> {
        let first = self.entries.iter().position(|(k, _)| *k == key)?;
        let (_, value) = self.entries.remove(first);
        self.entries.retain(|(k, _)| *k != key);
        Some(value)
    }

    /// DELIVERY_TIMEOUT in milliseconds.
    pub fn delivery_timeout(&self) -> Option<u64> {
        match self.get(DELIVERY_TIMEOUT) {
            Some(Value::Varint(v)) => Some(*v),
            _ => None,
        }
    }

    /// Every AUTHORIZATION_TOKEN value (a Token structure each).
    pub fn authorization_tokens(&self) -> impl Iterator<Item = &Bytes> {
        self.get_all(AUTHORIZATION_TOKEN).filter_map(|v| match v {
            Value::Bytes(b) => Some(b),
            _ => None,
        })
    }

    /// HOP_PATH decoded as the hop ids it lists (MoQ Cluster extension).
    pub fn hop_path(&self, version: Version) -> Result<Option<Vec<u64>>, DecodeError> {
        let Some(Value::Bytes(bytes)) = self.get(HOP_PATH) else {
            return Ok(None);
        };
        let mut body = &bytes[..];
        let mut hops = Vec::new();
        while !body.is_empty() {
            if hops.len() >= crate::limits::MAX_HOPS {
                return Err(DecodeError::TooMany {
                    what: "hop path",
                    count: (hops.len() as u64).saturating_add(1),
                    max: crate::limits::MAX_HOPS as u64,
                });
            }
            hops.push(get_varint(&mut body, version).map_err(|e| e.within("hop path"))?);
        }
        Ok(Some(hops))
    }

    /// Set HOP_PATH to `hops` (MoQ Cluster extension, draft-17+).
    pub fn set_hop_path(&mut self, hops: &[u64], version: Version) -> Result<(), EncodeError> {
        if hops.len() > crate::limits::MAX_HOPS {
            return Err(EncodeError::TooMany {
                what: "hop path",
                count: hops.len() as u64,
                max: crate::limits::MAX_HOPS as u64,
            });
        }
        let mut value = Vec::with_capacity(hops.len().saturating_mul(8));
        for hop in hops {
            put_varint(&mut value, *hop, version, "hop id")?;
        }
        self.set(HOP_PATH, Value::Bytes(Bytes::from(value)));
        Ok(())
    }

    pub(crate) fn take_varint(&mut self, key: u64) -> Option<u64> {
        match self.remove(key)? {
            Value::Varint(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    pub(crate) fn take_u8(&mut self, key: u64) -> Option<u8> {
        match self.remove(key)? {
            Value::U8(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    pub(crate) fn take_bool(&mut self, key: u64) -> Option<bool> {
        match self.remove(key)? {
            Value::Bool(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    pub(crate) fn take_order(&mut self, key: u64) -> Option<GroupOrder> {
        match self.remove(key)? {
            Value::Order(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    pub(crate) fn take_location(&mut self, key: u64) -> Option<Location> {
        match self.remove(key)? {
            Value::Location(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    pub(crate) fn take_filter(&mut self, key: u64) -> Option<Filter> {
        match self.remove(key)? {
            Value::Filter(v) => Some(v),
            other => {
                self.push(key, other);
                None
            }
        }
    }

    /// Refuse a parameter that the message carries as a field of its own, so
    /// the value cannot be set twice.
    pub(crate) fn check_lifted(&self, keys: &[u64], what: &'static str) -> Result<(), EncodeError> {
        match self.entries.iter().any(|(k, _)| keys.contains(k)) {
            true => Err(EncodeError::Invalid {
                what,
                reason: "a parameter duplicates one of the message's own fields",
            }),
            false => Ok(()),
        }
    }

    /// These parameters plus the message's lifted fields, for encoding.
    pub(crate) fn merged(&self, extra: impl IntoIterator<Item = (u64, Option<Value>)>) -> Self {
        let mut merged = self.clone();
        for (key, value) in extra {
            if let Some(value) = value {
                merged.push(key, value);
            }
        }
        merged
    }

    /// Read `Number of Parameters` and the parameters.
    pub(crate) fn decode_from<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let count = get_count(buf, version, "message parameters", MAX_PARAMETERS)?;
        let mut entries: Vec<(u64, Value)> = Vec::with_capacity(count);
        let mut prev = 0u64;
        for i in 0..count {
            let key = read_type(buf, version, &mut prev, i == 0)?;
            let known = kind(key, version);
            if !repeatable(key, known.is_some()) && entries.iter().any(|(k, _)| *k == key) {
                return Err(DecodeError::Duplicate {
                    what: "message parameters",
                    id: key,
                });
            }
            let value = match known {
                Some(kind) => decode_value(buf, kind, version)?,
                // draft-14 … -16: parity frames an unknown pair, which is skipped (kept).
                None if !version.has_typed_parameters() => match key % 2 {
                    0 => Value::Varint(get_varint(buf, version)?),
                    _ => Value::Bytes(get_bytes(buf, version, "message parameter", MAX_KVP_VALUE)?),
                },
                // draft-17 §9.2: an unknown message parameter cannot be framed.
                None => {
                    return Err(DecodeError::UnknownType {
                        what: "message parameter",
                        value: key,
                    });
                }
            };
            entries.push((key, value));
        }
        entries.sort_by_key(|(k, _)| *k);
        Ok(Self { entries })
    }

    /// Write `Number of Parameters` and the parameters.
    pub(crate) fn encode_to<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if self.entries.len() > MAX_PARAMETERS {
            return Err(EncodeError::TooMany {
                what: "message parameters",
                count: self.entries.len() as u64,
                max: MAX_PARAMETERS as u64,
            });
        }
        // Validate everything before writing, so a refusal leaves no partial list.
        for (i, (key, value)) in self.entries.iter().enumerate() {
            let known = kind(*key, version);
            let expected = match known {
                Some(kind) => kind,
                None if version.has_typed_parameters() => {
                    return Err(EncodeError::NotInDraft {
                        what: "a message parameter type",
                        version,
                    });
                }
                None if key % 2 == 0 => Kind::Varint,
                None => Kind::Bytes,
            };
            if value_kind(value) != expected {
                return Err(EncodeError::Invalid {
                    what: "message parameters",
                    reason: "a value does not have the kind its type defines",
                });
            }
            let repeated = i
                .checked_sub(1)
                .and_then(|prev| self.entries.get(prev))
                .is_some_and(|(k, _)| k == key);
            if repeated && !repeatable(*key, known.is_some()) {
                return Err(EncodeError::Invalid {
                    what: "message parameters",
                    reason: "a parameter that may not repeat appears twice",
                });
            }
        }
        put_varint(buf, self.entries.len() as u64, version, "message parameters")?;
        let mut prev = 0u64;
        for (key, value) in &self.entries {
            write_type(buf, version, *key, &mut prev)?;
            encode_value(buf, value, version)?;
        }
        Ok(())
    }
}

fn decode_value<B: Buf>(buf: &mut B, kind: Kind, version: Version) -> Result<Value, DecodeError> {
    let typed = version.has_typed_parameters();
    // draft-14 … -16 write a uint8 or bool as a varint.
    let small = |buf: &mut B, what: &'static str, max: u64| -> Result<u64, DecodeError> {
        let value = match typed {
            true => u64::from(get_u8(buf)?),
            false => get_varint(buf, version)?,
        };
        match value <= max {
            true => Ok(value),
            false => Err(DecodeError::InvalidValue { what, value }),
        }
    };
    Ok(match kind {
        Kind::Varint => Value::Varint(get_varint(buf, version)?),
        Kind::U8 => Value::U8(small(buf, "uint8 parameter", 0xff)? as u8),
        Kind::Bool => Value::Bool(small(buf, "boolean parameter", 1)? == 1),
        Kind::Order => Value::Order(GroupOrder::from_code(small(buf, "group order", 0xff)?)?),
        Kind::Location if typed => Value::Location(Location::decode_from(buf, version)?),
        Kind::Location => {
            let bytes = get_bytes(buf, version, "location parameter", MAX_KVP_VALUE)?;
            let mut body = &bytes[..];
            let location =
                Location::decode_from(&mut body, version).map_err(|e| e.within("location parameter"))?;
            if !body.is_empty() {
                return Err(DecodeError::TrailingBytes {
                    what: "location parameter",
                    extra: body.len(),
                });
            }
            Value::Location(location)
        }
        Kind::Filter => Value::Filter(Filter::decode_param(buf, version)?),
        Kind::Namespace => Value::Namespace(Namespace::decode_from(buf, version)?),
        Kind::Bytes => Value::Bytes(get_bytes(buf, version, "message parameter", MAX_KVP_VALUE)?),
    })
}

fn encode_value<B: BufMut>(buf: &mut B, value: &Value, version: Version) -> Result<(), EncodeError> {
    let typed = version.has_typed_parameters();
    let small = |buf: &mut B, v: u8| -> Result<(), EncodeError> {
        match typed {
            true => {
                buf.put_u8(v);
                Ok(())
            }
            false => put_varint(buf, u64::from(v), version, "parameter"),
        }
    };
    match value {
        Value::Varint(v) => put_varint(buf, *v, version, "parameter"),
        Value::U8(v) => small(buf, *v),
        Value::Bool(v) => small(buf, u8::from(*v)),
        Value::Order(v) => small(buf, v.code()),
        Value::Location(l) if typed => l.encode_to(buf, version),
        Value::Location(l) => {
            let mut inner = Vec::with_capacity(16);
            l.encode_to(&mut inner, version)?;
            put_bytes(buf, &inner, version, "location parameter", MAX_KVP_VALUE)
        }
        Value::Filter(f) => f.encode_param(buf, version),
        Value::Namespace(ns) => ns.encode_to(buf, version),
        Value::Bytes(b) => put_bytes(buf, b, version, "message parameter", MAX_KVP_VALUE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(params: &Parameters, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        params.encode_to(&mut out, version).unwrap();
        let mut cursor = &out[..];
        assert_eq!(
            &Parameters::decode_from(&mut cursor, version).unwrap(),
            params,
            "{version}"
        );
        assert!(cursor.is_empty());
        out
    }

    #[test]
    fn value_encodings_by_draft() {
        let p = Parameters::new().with(SUBSCRIBER_PRIORITY, Value::U8(255));
        assert_eq!(wire(&p, Version::Draft16), [1, 0x20, 0x40, 0xff]);
        assert_eq!(wire(&p, Version::Draft17), [1, 0x20, 0xff]);

        let p = Parameters::new().with(LARGEST_OBJECT, Value::Location(Location::new(255, 128)));
        assert_eq!(
            wire(&p, Version::Draft16),
            [1, 0x09, 0x04, 0x40, 0xff, 0x40, 0x80]
        );
        assert_eq!(wire(&p, Version::Draft17), [1, 0x09, 0x80, 0xff, 0x80, 0x80]);

        // Absolute types in draft-15, deltas from draft-16.
        let p = Parameters::new()
            .with(FORWARD, Value::Bool(true))
            .with(SUBSCRIBER_PRIORITY, Value::U8(200))
            .with(GROUP_ORDER, Value::Order(GroupOrder::Descending));
        assert_eq!(wire(&p, Version::Draft15), [3, 0x10, 1, 0x20, 0x40, 200, 0x22, 2]);
        assert_eq!(wire(&p, Version::Draft16), [3, 0x10, 1, 0x10, 0x40, 200, 0x02, 2]);
        assert_eq!(wire(&p, Version::Draft18), [3, 0x10, 1, 0x10, 200, 0x02, 2]);
    }

    #[test]
    fn unknown_types() {
        // Skipped by parity (and kept) before draft-17 …
        let d16 = [2, 0x1c, 7, 0x01, 2, b'h', b'i'];
        let p = Parameters::decode_from(&mut &d16[..], Version::Draft16).unwrap();
        assert_eq!(p.get(0x1c), Some(&Value::Varint(7)));
        assert_eq!(p.get(0x1d), Some(&Value::Bytes(Bytes::from_static(b"hi"))));
        assert_eq!(wire(&p, Version::Draft16), d16);
        // … fatal from draft-17, which cannot frame them.
        assert_eq!(
            Parameters::decode_from(&mut &[1, 0x1c, 7][..], Version::Draft17),
            Err(DecodeError::UnknownType {
                what: "message parameter",
                value: 0x1c
            })
        );
        assert!(matches!(
            p.encode_to(&mut Vec::new(), Version::Draft17),
            Err(EncodeError::NotInDraft { .. })
        ));
        // @moq/net's PUBLISHER_PRIORITY is read (one byte) rather than refused.
        let p = Parameters::decode_from(&mut &[1, 0x0e, 0xff][..], Version::Draft18).unwrap();
        assert_eq!(p.get(PUBLISHER_PRIORITY), Some(&Value::U8(0xff)));
        // A type a later draft defines is unknown to an earlier one.
        assert!(Parameters::decode_from(&mut &[1, 0x06, 1][..], Version::Draft17).is_err());
        assert!(Parameters::decode_from(&mut &[1, 0x06, 1][..], Version::Draft18).is_ok());
    }

    #[test]
    fn duplicates_and_bad_values() {
        assert_eq!(
            Parameters::decode_from(&mut &[2, 0x10, 1, 0x00, 1][..], Version::Draft16),
            Err(DecodeError::Duplicate {
                what: "message parameters",
                id: 0x10
            })
        );
        // Tokens may repeat.
        let tokens = [2, 0x03, 1, 0xaa, 0x00, 1, 0xbb];
        let p = Parameters::decode_from(&mut &tokens[..], Version::Draft16).unwrap();
        assert_eq!(p.authorization_tokens().count(), 2);
        assert_eq!(wire(&p, Version::Draft16), tokens);
        // A boolean other than 0 or 1, a uint8 above 255, an unknown order.
        assert!(Parameters::decode_from(&mut &[1, 0x10, 2][..], Version::Draft18).is_err());
        assert!(Parameters::decode_from(&mut &[1, 0x20, 0x41, 0x00][..], Version::Draft16).is_err());
        assert!(Parameters::decode_from(&mut &[1, 0x22, 3][..], Version::Draft18).is_err());
        // Values must match their type's kind when encoding.
        let bad = Parameters::new().with(FORWARD, Value::Varint(1));
        assert!(matches!(
            bad.encode_to(&mut Vec::new(), Version::Draft16),
            Err(EncodeError::Invalid { .. })
        ));
        let mut twice = Parameters::new();
        twice.push(FORWARD, Value::Bool(true));
        twice.push(FORWARD, Value::Bool(false));
        assert!(twice.encode_to(&mut Vec::new(), Version::Draft16).is_err());
        // Too many.
        assert!(matches!(
            Parameters::decode_from(&mut &[0x40, 65][..], Version::Draft16),
            Err(DecodeError::TooMany { .. })
        ));
    }

    #[test]
    fn hop_path() {
        let mut p = Parameters::new();
        p.set_hop_path(&[1, 300], Version::Draft18).unwrap();
        assert_eq!(p.hop_path(Version::Draft18).unwrap(), Some(vec![1, 300]));
        assert_eq!(
            wire(&p, Version::Draft18),
            [1, 0xc4, 0x0b, 0x57, 3, 1, 0x81, 0x2c]
        );
        assert!(p.set_hop_path(&[1; 33], Version::Draft18).is_err());
    }
}
