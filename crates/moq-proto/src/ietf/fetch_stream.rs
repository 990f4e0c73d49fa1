//! Fetch streams: the unidirectional stream answering a FETCH (or, in
//! draft-20+, a subscription's FILL_PARAMETERS).
//!
//! FETCH_HEADER: `0x05 request_id`, then objects until FIN.
//!
//! Objects:
//! - draft-14: `group subgroup object priority:u8 properties_block size
//!   [status if size is 0] payload`, every field present.
//! - draft-15+: `flags [group] [subgroup] [object] [priority:u8]
//!   [properties_block] size [status if size is 0, draft-15 only] payload`.
//!   Flags: 0x03 subgroup (0 zero, 1 previous, 2 previous + 1, 3 written),
//!   0x04 object present (absent = previous + 1), 0x08 group present (absent
//!   = previous), 0x10 priority present (absent = previous), 0x20 properties
//!   present, 0x40 a datagram object (no subgroup). Values from 0x80 up are
//!   End of Range markers (0x8C none exist, 0x10C unknown, 0x20C timed out)
//!   followed by a group and an object and no payload.
//!   From draft-18 a present group field is a delta from the previous
//!   object's group (plus one, in the requested order); before that it is
//!   the Group ID. The first object must write everything.

use bytes::{Buf, BufMut, Bytes};

use super::{
    Version,
    coding::{Decode, Encode, check_varint, get_bytes, get_u8, get_varint, put_bytes, put_varint},
};
use crate::{
    DecodeError, EncodeError,
    limits::{MAX_FRAME_SIZE, MAX_OBJECT_PROPERTIES},
};

/// The FETCH_HEADER stream type.
pub const FETCH_HEADER: u64 = 0x05;

/// FETCH_HEADER.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchHeader {
    /// The FETCH (or subscription, for a fill) this stream answers.
    pub request_id: u64,
}

impl FetchHeader {
    /// Read the header after its type, which the caller already read.
    pub fn decode_after_type<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            request_id: get_varint(buf, version)?,
        })
    }
}

impl Decode for FetchHeader {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        match get_varint(buf, version)? {
            FETCH_HEADER => Self::decode_after_type(buf, version),
            value => Err(DecodeError::UnknownType {
                what: "fetch header type",
                value,
            }),
        }
    }
}

impl Encode for FetchHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        check_varint(self.request_id, version, "request id")?;
        put_varint(buf, FETCH_HEADER, version, "stream type")?;
        put_varint(buf, self.request_id, version, "request id")
    }
}

/// How a fetch object names its Subgroup ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FetchSubgroup {
    /// Subgroup 0.
    #[default]
    Zero,
    /// The previous object's subgroup.
    Prior,
    /// One past the previous object's subgroup.
    PriorPlusOne,
    /// Written on the wire.
    Explicit(u64),
    /// The object was published as a datagram and has no subgroup.
    Datagram,
}

/// Why a range of a fetch has no objects (End of Range markers, draft-16+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOfRange {
    /// 0x8C: the objects do not exist.
    NonExistent,
    /// 0x10C: the publisher does not know.
    Unknown,
    /// 0x20C: retrieving them timed out.
    TimedOut,
}

impl EndOfRange {
    fn code(self) -> u64 {
        match self {
            Self::NonExistent => 0x8c,
            Self::Unknown => 0x10c,
            Self::TimedOut => 0x20c,
        }
    }
}

/// The header of one object (or End of Range marker) on a fetch stream. An
/// object's `size` payload bytes follow; the caller reads them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchObject {
    /// An object header.
    Object {
        /// The Group ID (draft-14 … -17) or Group ID delta (draft-18+);
        /// `None` = the previous object's group (draft-15+).
        group: Option<u64>,
        /// The Subgroup ID.
        subgroup: FetchSubgroup,
        /// The Object ID, or (draft-15+) its delta when the group is absent;
        /// `None` = the previous object plus one.
        object: Option<u64>,
        /// Publisher priority; `None` = the previous object's (draft-15+).
        priority: Option<u8>,
        /// The properties block; always present in draft-14 (maybe empty).
        properties: Option<Bytes>,
        /// Payload length, at most [`MAX_FRAME_SIZE`].
        size: u64,
        /// Object Status of an empty object (draft-14 and -15 only).
        status: u64,
    },
    /// An End of Range marker (draft-15+).
    EndOfRange {
        /// Why the range is empty.
        reason: EndOfRange,
        /// The group field, as for an object.
        group: u64,
        /// The object field, as for an object.
        object: u64,
    },
}

const SUBGROUP_MASK: u64 = 0x03;
const OBJECT: u64 = 0x04;
const GROUP: u64 = 0x08;
const PRIORITY: u64 = 0x10;
const PROPERTIES: u64 = 0x20;
const DATAGRAM: u64 = 0x40;

fn get_size<B: Buf>(buf: &mut B, version: Version) -> Result<u64, DecodeError> {
    let size = get_varint(buf, version)?;
    match size > MAX_FRAME_SIZE {
        true => Err(DecodeError::TooLarge {
            what: "object",
            size,
            max: MAX_FRAME_SIZE,
        }),
        false => Ok(size),
    }
}

fn get_status<B: Buf>(buf: &mut B, version: Version, size: u64) -> Result<u64, DecodeError> {
    match size == 0 && version.has_fetch_status() {
        true => get_varint(buf, version),
        false => Ok(0),
    }
}

impl Decode for FetchObject {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        if !version.has_serialization_flags() {
            let group = get_varint(buf, version)?;
            let subgroup = get_varint(buf, version)?;
            let object = get_varint(buf, version)?;
            let priority = get_u8(buf)?;
            let properties = get_bytes(buf, version, "object properties", MAX_OBJECT_PROPERTIES)?;
            let size = get_size(buf, version)?;
            return Ok(Self::Object {
                group: Some(group),
                subgroup: FetchSubgroup::Explicit(subgroup),
                object: Some(object),
                priority: Some(priority),
                properties: Some(properties),
                size,
                status: get_status(buf, version, size)?,
            });
        }
        let flags = get_varint(buf, version)?;
        if flags >= 0x80 {
            let reason = match flags {
                0x8c => EndOfRange::NonExistent,
                0x10c => EndOfRange::Unknown,
                0x20c => EndOfRange::TimedOut,
                value => {
                    return Err(DecodeError::UnknownType {
                        what: "fetch serialization flags",
                        value,
                    });
                }
            };
            return Ok(Self::EndOfRange {
                reason,
                group: get_varint(buf, version)?,
                object: get_varint(buf, version)?,
            });
        }
        let group = match flags & GROUP {
            0 => None,
            _ => Some(get_varint(buf, version)?),
        };
        let subgroup = match (flags & DATAGRAM, flags & SUBGROUP_MASK) {
            (DATAGRAM, _) => FetchSubgroup::Datagram,
            (_, 0) => FetchSubgroup::Zero,
            (_, 1) => FetchSubgroup::Prior,
            (_, 2) => FetchSubgroup::PriorPlusOne,
            _ => FetchSubgroup::Explicit(get_varint(buf, version)?),
        };
        let object = match flags & OBJECT {
            0 => None,
            _ => Some(get_varint(buf, version)?),
        };
        let priority = match flags & PRIORITY {
            0 => None,
            _ => Some(get_u8(buf)?),
        };
        let properties = match flags & PROPERTIES {
            0 => None,
            _ => Some(get_bytes(
                buf,
                version,
                "object properties",
                MAX_OBJECT_PROPERTIES,
            )?),
        };
        let size = get_size(buf, version)?;
        Ok(Self::Object {
            group,
            subgroup,
            object,
            priority,
            properties,
            size,
            status: get_status(buf, version, size)?,
        })
    }
}

impl Encode for FetchObject {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        // Build into a scratch buffer so a refusal writes nothing.
        let mut out = Vec::with_capacity(32);
        match self {
            Self::EndOfRange {
                reason,
                group,
                object,
            } => put_end_of_range(&mut out, *reason, *group, *object, version)?,
            Self::Object {
                group,
                subgroup,
                object,
                priority,
                properties,
                size,
                status,
            } => ObjectFields {
                group: *group,
                subgroup: *subgroup,
                object: *object,
                priority: *priority,
                properties: properties.as_ref(),
                size: *size,
                status: *status,
            }
            .put(&mut out, version)?,
        }
        buf.put_slice(&out);
        Ok(())
    }
}

/// An End of Range marker: its code, then the group and object fields (draft-15+).
fn put_end_of_range(
    out: &mut Vec<u8>,
    reason: EndOfRange,
    group: u64,
    object: u64,
    version: Version,
) -> Result<(), EncodeError> {
    if !version.has_serialization_flags() {
        return Err(EncodeError::NotInDraft {
            what: "an End of Range marker",
            version,
        });
    }
    put_varint(out, reason.code(), version, "fetch flags")?;
    put_varint(out, group, version, "group")?;
    put_varint(out, object, version, "object")
}

/// The fields of [`FetchObject::Object`], borrowed for encoding.
struct ObjectFields<'a> {
    group: Option<u64>,
    subgroup: FetchSubgroup,
    object: Option<u64>,
    priority: Option<u8>,
    properties: Option<&'a Bytes>,
    size: u64,
    status: u64,
}

impl ObjectFields<'_> {
    fn put(&self, out: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.check(version)?;
        match version.has_serialization_flags() {
            false => self.put_every_field(out, version)?,
            true => self.put_flagged_fields(out, version)?,
        }
        put_varint(out, self.size, version, "object size")?;
        if self.size == 0 && version.has_fetch_status() {
            put_varint(out, self.status, version, "object status")?;
        }
        Ok(())
    }

    /// Refuse a size or status the version cannot carry.
    fn check(&self, version: Version) -> Result<(), EncodeError> {
        if self.size > MAX_FRAME_SIZE {
            return Err(EncodeError::TooLarge {
                what: "object",
                size: self.size,
                max: MAX_FRAME_SIZE,
            });
        }
        if self.status != 0 && (self.size != 0 || !version.has_fetch_status()) {
            return Err(EncodeError::Invalid {
                what: "fetch object",
                reason: "a status needs an empty object in draft-14 or -15",
            });
        }
        Ok(())
    }

    /// draft-14: group, subgroup, object, priority and properties, always.
    fn put_every_field(&self, out: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        let (Some(group), Some(object), Some(priority), Some(properties)) =
            (self.group, self.object, self.priority, self.properties)
        else {
            return Err(EncodeError::Invalid {
                what: "fetch object",
                reason: "draft-14 writes group, object, priority and properties",
            });
        };
        let subgroup = match self.subgroup {
            FetchSubgroup::Zero => 0,
            FetchSubgroup::Explicit(id) => id,
            _ => {
                return Err(EncodeError::NotInDraft {
                    what: "an implicit or datagram fetch subgroup",
                    version,
                });
            }
        };
        put_varint(out, group, version, "group")?;
        put_varint(out, subgroup, version, "subgroup")?;
        put_varint(out, object, version, "object")?;
        out.put_u8(priority);
        put_bytes(
            out,
            properties,
            version,
            "object properties",
            MAX_OBJECT_PROPERTIES,
        )
    }

    /// draft-15+: the serialization flags, then the fields they say are present.
    fn put_flagged_fields(&self, out: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(out, self.flags(), version, "fetch flags")?;
        if let Some(group) = self.group {
            put_varint(out, group, version, "group")?;
        }
        if let FetchSubgroup::Explicit(id) = self.subgroup {
            put_varint(out, id, version, "subgroup")?;
        }
        if let Some(object) = self.object {
            put_varint(out, object, version, "object")?;
        }
        if let Some(priority) = self.priority {
            out.put_u8(priority);
        }
        if let Some(properties) = self.properties {
            put_bytes(
                out,
                properties,
                version,
                "object properties",
                MAX_OBJECT_PROPERTIES,
            )?;
        }
        Ok(())
    }

    /// The serialization flags naming the subgroup form and the fields present.
    fn flags(&self) -> u64 {
        let subgroup = match self.subgroup {
            FetchSubgroup::Zero => 0,
            FetchSubgroup::Prior => 1,
            FetchSubgroup::PriorPlusOne => 2,
            FetchSubgroup::Explicit(_) => 3,
            FetchSubgroup::Datagram => DATAGRAM,
        };
        [
            (self.group.is_some(), GROUP),
            (self.object.is_some(), OBJECT),
            (self.priority.is_some(), PRIORITY),
            (self.properties.is_some(), PROPERTIES),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(subgroup, |acc, (_, bit)| acc | bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ietf::coding::decode_slice;

    fn round(obj: &FetchObject, v: Version) -> Vec<u8> {
        let wire = obj.to_vec(v).unwrap();
        assert_eq!(
            decode_slice::<FetchObject>(&wire, v).unwrap(),
            (obj.clone(), wire.len())
        );
        wire
    }

    #[test]
    fn draft14_writes_every_field() {
        let obj = FetchObject::Object {
            group: Some(5),
            subgroup: FetchSubgroup::Explicit(0),
            object: Some(1),
            priority: Some(128),
            properties: Some(Bytes::new()),
            size: 0,
            status: 3,
        };
        assert_eq!(round(&obj, Version::Draft14), [5, 0, 1, 0x80, 0, 0, 3]);
        let partial = FetchObject::Object {
            group: None,
            subgroup: FetchSubgroup::Zero,
            object: None,
            priority: None,
            properties: None,
            size: 1,
            status: 0,
        };
        assert!(partial.to_vec(Version::Draft14).is_err());
        // draft-15+ may leave them to the previous object.
        assert_eq!(round(&partial, Version::Draft16), [0, 1]);
    }

    #[test]
    fn flags_and_markers() {
        let v = Version::Draft18;
        let obj = FetchObject::Object {
            group: Some(7),
            subgroup: FetchSubgroup::Explicit(2),
            object: Some(0),
            priority: Some(1),
            properties: Some(Bytes::from_static(&[0x10, 5])),
            size: 3,
            status: 0,
        };
        assert_eq!(round(&obj, v), [0x3f, 7, 2, 0, 1, 2, 0x10, 5, 3]);
        let datagram = FetchObject::Object {
            group: None,
            subgroup: FetchSubgroup::Datagram,
            object: None,
            priority: None,
            properties: None,
            size: 0,
            status: 0,
        };
        assert_eq!(round(&datagram, v), [0x40, 0]);
        let end = FetchObject::EndOfRange {
            reason: EndOfRange::TimedOut,
            group: 1,
            object: 2,
        };
        assert_eq!(round(&end, v), [0x82, 0x0c, 1, 2]);
        assert!(end.to_vec(Version::Draft14).is_err());
        assert_eq!(
            decode_slice::<FetchObject>(&[0x80, 0x81], v),
            Err(DecodeError::UnknownType {
                what: "fetch serialization flags",
                value: 0x81
            })
        );
        // Only draft-14 and -15 carry a status after an empty object.
        let status = FetchObject::Object {
            group: Some(1),
            subgroup: FetchSubgroup::Zero,
            object: Some(0),
            priority: Some(0),
            properties: None,
            size: 0,
            status: 4,
        };
        assert_eq!(round(&status, Version::Draft15), [0x1c, 1, 0, 0, 0, 4]);
        assert!(status.to_vec(Version::Draft16).is_err());
    }

    #[test]
    fn header() {
        let h = FetchHeader { request_id: 300 };
        assert_eq!(h.to_vec(Version::Draft16).unwrap(), [0x05, 0x41, 0x2c]);
        assert_eq!(h.to_vec(Version::Draft17).unwrap(), [0x05, 0x81, 0x2c]);
        assert!(decode_slice::<FetchHeader>(&[0x04, 0], Version::Draft16).is_err());
    }
}
