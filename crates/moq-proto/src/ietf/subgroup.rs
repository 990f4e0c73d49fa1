//! Subgroup streams: a unidirectional stream carrying one subgroup of a
//! subscription's track.
//!
//! SUBGROUP_HEADER: `type track_alias group [subgroup] [priority:u8]`.
//! The type is a set of bits on a base of 0x10:
//!
//! - 0x01: objects carry a properties (extensions) block;
//! - 0x06: the Subgroup ID: 0b00 zero, 0b01 (0x02) the first Object ID,
//!   0b10 (0x04) written in the header, 0b11 invalid;
//! - 0x08: the stream's FIN ends the group;
//! - base 0x30 instead of 0x10 (draft-15+): no priority field; the
//!   subscription's publisher priority applies;
//! - 0x40 (draft-18+): FIRST_OBJECT, the stream starts at the subgroup's
//!   first object.
//!
//! Then objects until FIN: `id_delta [properties block] size [status if size
//! is 0] payload`. The first object's delta is its Object ID; later ones are
//! the previous ID plus the delta plus one.

use bytes::{Buf, BufMut, Bytes};

use super::{
    Version,
    coding::{Decode, Encode, check_varint, get_bytes, get_u8, get_varint, put_bytes, put_varint},
};
use crate::{
    DecodeError, EncodeError,
    limits::{MAX_FRAME_SIZE, MAX_OBJECT_PROPERTIES},
};

/// How a subgroup header names its Subgroup ID.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubgroupId {
    /// Subgroup 0.
    #[default]
    Zero,
    /// The first object's ID.
    FirstObject,
    /// Written in the header.
    Explicit(u64),
}

/// SUBGROUP_HEADER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubgroupHeader {
    /// The subscription's track alias.
    pub track_alias: u64,
    /// Group ID.
    pub group: u64,
    /// Subgroup ID.
    pub subgroup: SubgroupId,
    /// Publisher priority, or `None` to use the subscription's (draft-15+).
    pub priority: Option<u8>,
    /// Objects carry a properties block.
    pub properties: bool,
    /// The stream's FIN ends the group.
    pub end_of_group: bool,
    /// The stream starts at the subgroup's first object (the FIRST_OBJECT bit
    /// of draft-18+; always true when decoded from earlier drafts, and not
    /// written there).
    pub first_object: bool,
}

impl Default for SubgroupHeader {
    fn default() -> Self {
        Self {
            track_alias: 0,
            group: 0,
            subgroup: SubgroupId::Zero,
            priority: Some(128),
            properties: false,
            end_of_group: true,
            first_object: true,
        }
    }
}

const PROPERTIES: u64 = 0x01;
const SUBGROUP_FIRST_OBJECT: u64 = 0x02;
const SUBGROUP_EXPLICIT: u64 = 0x04;
const END_OF_GROUP: u64 = 0x08;
const NO_PRIORITY: u64 = 0x20;
const FIRST_OBJECT: u64 = 0x40;

impl SubgroupHeader {
    /// Whether `kind` is a SUBGROUP_HEADER type in `version`.
    pub fn is_type(kind: u64, version: Version) -> bool {
        Self::flags(kind, version).is_ok()
    }

    /// The stream type for this header in `version`.
    pub fn stream_type(&self, version: Version) -> Result<u64, EncodeError> {
        let mut kind = 0x10;
        if self.properties {
            kind |= PROPERTIES;
        }
        kind |= match self.subgroup {
            SubgroupId::Zero => 0,
            SubgroupId::FirstObject => SUBGROUP_FIRST_OBJECT,
            SubgroupId::Explicit(_) => SUBGROUP_EXPLICIT,
        };
        if self.end_of_group {
            kind |= END_OF_GROUP;
        }
        if self.priority.is_none() {
            if !version.has_default_priority() {
                return Err(EncodeError::NotInDraft {
                    what: "a subgroup header without a priority",
                    version,
                });
            }
            kind |= NO_PRIORITY;
        }
        // Before draft-18 there is no way to say a stream starts mid-subgroup.
        if self.first_object && version.has_first_object_bit() {
            kind |= FIRST_OBJECT;
        }
        Ok(kind)
    }

    /// Split a type into (properties, subgroup mode, end, priority, first).
    fn flags(kind: u64, version: Version) -> Result<(bool, u64, bool, bool, bool), DecodeError> {
        let invalid = DecodeError::UnknownType {
            what: "subgroup header type",
            value: kind,
        };
        let first_object = !version.has_first_object_bit() || kind & FIRST_OBJECT != 0;
        let base = match version.has_first_object_bit() {
            true => kind & !FIRST_OBJECT,
            false => kind,
        };
        let has_priority = match base {
            0x10..=0x1d => true,
            0x30..=0x3d if version.has_default_priority() => false,
            _ => return Err(invalid),
        };
        let mode = base & (SUBGROUP_FIRST_OBJECT | SUBGROUP_EXPLICIT);
        if mode == (SUBGROUP_FIRST_OBJECT | SUBGROUP_EXPLICIT) {
            return Err(invalid);
        }
        Ok((
            base & PROPERTIES != 0,
            mode,
            base & END_OF_GROUP != 0,
            has_priority,
            first_object,
        ))
    }

    /// Read the header after its type, which the caller already read.
    pub fn decode_after_type<B: Buf>(kind: u64, buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let (properties, mode, end_of_group, has_priority, first_object) = Self::flags(kind, version)?;
        let track_alias = get_varint(buf, version)?;
        let group = get_varint(buf, version)?;
        let subgroup = match mode {
            SUBGROUP_EXPLICIT => SubgroupId::Explicit(get_varint(buf, version)?),
            SUBGROUP_FIRST_OBJECT => SubgroupId::FirstObject,
            _ => SubgroupId::Zero,
        };
        let priority = match has_priority {
            true => Some(get_u8(buf)?),
            false => None,
        };
        Ok(Self {
            track_alias,
            group,
            subgroup,
            priority,
            properties,
            end_of_group,
            first_object,
        })
    }
}

impl Decode for SubgroupHeader {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let kind = get_varint(buf, version)?;
        Self::decode_after_type(kind, buf, version)
    }
}

impl Encode for SubgroupHeader {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let kind = self.stream_type(version)?;
        // Check every varint first so a refusal writes nothing.
        check_varint(self.track_alias, version, "track alias")?;
        check_varint(self.group, version, "group id")?;
        if let SubgroupId::Explicit(id) = self.subgroup {
            check_varint(id, version, "subgroup id")?;
        }
        put_varint(buf, kind, version, "stream type")?;
        put_varint(buf, self.track_alias, version, "track alias")?;
        put_varint(buf, self.group, version, "group id")?;
        if let SubgroupId::Explicit(id) = self.subgroup {
            put_varint(buf, id, version, "subgroup id")?;
        }
        if let Some(priority) = self.priority {
            buf.put_u8(priority);
        }
        Ok(())
    }
}

/// Object Status values.
pub mod status {
    /// A normal object (also what every object with a payload is).
    pub const NORMAL: u64 = 0x0;
    /// The object does not exist (draft-14).
    pub const DOES_NOT_EXIST: u64 = 0x1;
    /// No object at or after this one exists in the group.
    pub const END_OF_GROUP: u64 = 0x3;
    /// No object at or after this one exists in the track.
    pub const END_OF_TRACK: u64 = 0x4;
}

/// The header of one object on a subgroup stream. The `size` payload bytes
/// follow; the caller reads or forwards them itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubgroupObject {
    /// The Object ID delta (the Object ID itself for the first object).
    pub id_delta: u64,
    /// The properties block, present exactly when the stream's header says
    /// objects carry one (it may be empty).
    pub properties: Option<Bytes>,
    /// Payload length in bytes, at most [`MAX_FRAME_SIZE`].
    pub size: u64,
    /// Object Status; only on the wire (and only non-zero) when `size` is 0.
    pub status: u64,
}

impl SubgroupObject {
    /// Read an object header from a stream whose SUBGROUP_HEADER said
    /// whether objects carry properties.
    pub fn decode<B: Buf>(buf: &mut B, version: Version, has_properties: bool) -> Result<Self, DecodeError> {
        let id_delta = get_varint(buf, version)?;
        let properties = match has_properties {
            true => Some(get_bytes(
                buf,
                version,
                "object properties",
                MAX_OBJECT_PROPERTIES,
            )?),
            false => None,
        };
        let size = get_varint(buf, version)?;
        if size > MAX_FRAME_SIZE {
            return Err(DecodeError::TooLarge {
                what: "object",
                size,
                max: MAX_FRAME_SIZE,
            });
        }
        let status = match size {
            0 => get_varint(buf, version)?,
            _ => status::NORMAL,
        };
        Ok(Self {
            id_delta,
            properties,
            size,
            status,
        })
    }

    /// Write the object header (not the payload).
    pub fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if self.size > MAX_FRAME_SIZE {
            return Err(EncodeError::TooLarge {
                what: "object",
                size: self.size,
                max: MAX_FRAME_SIZE,
            });
        }
        if self.size != 0 && self.status != status::NORMAL {
            return Err(EncodeError::Invalid {
                what: "object",
                reason: "only an empty object carries a status",
            });
        }
        check_varint(self.id_delta, version, "object id delta")?;
        check_varint(self.status, version, "object status")?;
        if let Some(props) = &self.properties
            && props.len() > MAX_OBJECT_PROPERTIES
        {
            return Err(EncodeError::TooLarge {
                what: "object properties",
                size: props.len() as u64,
                max: MAX_OBJECT_PROPERTIES as u64,
            });
        }
        put_varint(buf, self.id_delta, version, "object id delta")?;
        if let Some(props) = &self.properties {
            put_bytes(buf, props, version, "object properties", MAX_OBJECT_PROPERTIES)?;
        }
        put_varint(buf, self.size, version, "object size")?;
        if self.size == 0 {
            put_varint(buf, self.status, version, "object status")?;
        }
        Ok(())
    }

    /// Encode into a fresh vector.
    pub fn to_vec(&self, version: Version) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out, version)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bits() {
        let v14 = Version::Draft14;
        let v16 = Version::Draft16;
        let v18 = Version::Draft18;
        let h = SubgroupHeader {
            track_alias: 2,
            group: 0,
            subgroup: SubgroupId::Explicit(0),
            priority: Some(0),
            properties: false,
            end_of_group: false,
            first_object: true,
        };
        // The draft-14 appendix example: type 0x14, alias 2, group 0, subgroup 0, priority 0.
        assert_eq!(h.to_vec(v14).unwrap(), [0x14, 2, 0, 0, 0]);
        let no_priority = SubgroupHeader {
            priority: None,
            properties: true,
            ..h
        };
        // draft-16's example 0x35: properties, explicit subgroup, no priority.
        assert_eq!(no_priority.to_vec(v16).unwrap(), [0x35, 2, 0, 0]);
        assert!(no_priority.to_vec(v14).is_err());
        // draft-18 adds FIRST_OBJECT; earlier drafts read every stream as starting at it.
        assert_eq!(no_priority.to_vec(v18).unwrap(), [0x75, 2, 0, 0]);
        let mid = SubgroupHeader {
            first_object: false,
            ..no_priority
        };
        assert_eq!(mid.to_vec(v18).unwrap(), [0x35, 2, 0, 0]);
        for kind in [0x16u64, 0x17, 0x1e, 0x1f, 0x0f, 0x3e] {
            assert!(!SubgroupHeader::is_type(kind, v16), "{kind:#x}");
        }
        assert!(!SubgroupHeader::is_type(0x30, v14));
        assert!(!SubgroupHeader::is_type(0x50, v16));
        assert!(SubgroupHeader::is_type(0x50, v18));
        assert!(SubgroupHeader::is_type(0x7d, v18));
    }

    #[test]
    fn objects() {
        let v = Version::Draft16;
        let obj = SubgroupObject {
            id_delta: 0,
            properties: Some(Bytes::new()),
            size: 4,
            status: 0,
        };
        assert_eq!(obj.to_vec(v).unwrap(), [0, 0, 4]);
        assert_eq!(
            SubgroupObject::decode(&mut &[0u8, 0, 4][..], v, true).unwrap(),
            obj
        );
        let end = SubgroupObject {
            id_delta: 3,
            properties: None,
            size: 0,
            status: status::END_OF_GROUP,
        };
        assert_eq!(end.to_vec(v).unwrap(), [3, 0, 3]);
        assert_eq!(
            SubgroupObject::decode(&mut &[3u8, 0, 3][..], v, false).unwrap(),
            end
        );
        let bad = SubgroupObject {
            size: 1,
            status: 3,
            ..end
        };
        assert!(bad.to_vec(v).is_err());
        // A size past the limit is refused from the varint alone.
        assert!(matches!(
            SubgroupObject::decode(&mut &[0u8, 0x82, 0x00, 0x00, 0x01][..], v, false),
            Err(DecodeError::TooLarge { .. })
        ));
        let huge = SubgroupObject {
            size: MAX_FRAME_SIZE + 1,
            ..Default::default()
        };
        assert!(huge.to_vec(v).is_err());
    }
}
