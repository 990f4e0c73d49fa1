//! OBJECT_DATAGRAM: one object in one QUIC datagram.
//!
//! `type track_alias group [object] [priority:u8] [properties_block]
//! [status | payload…]`. The type is a set of bits:
//! 0x01 properties present, 0x02 the object ends the group, 0x04 the Object
//! ID is omitted (it is 0), 0x08 the priority is omitted (draft-15+), 0x20 a
//! status instead of a payload (not together with 0x02). Draft-14 defines
//! 0x00–0x07, 0x20 and 0x21. The payload runs to the end of the datagram.

use bytes::{Buf, BufMut, Bytes};

use super::{
    Version,
    coding::{Decode, Encode, check_varint, get_bytes, get_u8, get_varint, put_bytes, put_varint},
};
use crate::{
    DecodeError, EncodeError,
    limits::{MAX_DATAGRAM_SIZE, MAX_OBJECT_PROPERTIES},
};

const PROPERTIES: u64 = 0x01;
const END_OF_GROUP: u64 = 0x02;
const ZERO_OBJECT_ID: u64 = 0x04;
const DEFAULT_PRIORITY: u64 = 0x08;
const STATUS: u64 = 0x20;

/// What follows a datagram's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramBody {
    /// The payload, up to the end of the datagram.
    Payload(Bytes),
    /// The Object Status of an object without a payload.
    Status(u64),
}

impl Default for DatagramBody {
    fn default() -> Self {
        Self::Payload(Bytes::new())
    }
}

/// OBJECT_DATAGRAM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectDatagram {
    /// The subscription's track alias.
    pub track_alias: u64,
    /// Group ID.
    pub group: u64,
    /// Object ID, or `None` when the type omits it (the object is 0).
    pub object: Option<u64>,
    /// Publisher priority, or `None` for the subscription's (draft-15+).
    pub priority: Option<u8>,
    /// No object after this one exists in the group.
    pub end_of_group: bool,
    /// The properties block (never empty when present).
    pub properties: Option<Bytes>,
    /// Payload or status.
    pub body: DatagramBody,
}

fn valid(kind: u64, version: Version) -> bool {
    match version.has_default_priority() {
        false => kind <= 0x07 || kind == 0x20 || kind == 0x21,
        true => {
            let all = PROPERTIES | END_OF_GROUP | ZERO_OBJECT_ID | DEFAULT_PRIORITY | STATUS;
            kind & !all == 0 && !(kind & STATUS != 0 && kind & END_OF_GROUP != 0)
        }
    }
}

impl ObjectDatagram {
    /// The datagram type for this object in `version`, if it has one.
    pub fn datagram_type(&self, version: Version) -> Result<u64, EncodeError> {
        let mut kind = 0;
        if self.properties.is_some() {
            kind |= PROPERTIES;
        }
        if self.end_of_group {
            kind |= END_OF_GROUP;
        }
        if self.object.is_none() {
            kind |= ZERO_OBJECT_ID;
        }
        if self.priority.is_none() {
            kind |= DEFAULT_PRIORITY;
        }
        if matches!(self.body, DatagramBody::Status(_)) {
            kind |= STATUS;
        }
        match valid(kind, version) {
            true => Ok(kind),
            false => Err(EncodeError::NotInDraft {
                what: "this combination of datagram flags",
                version,
            }),
        }
    }
}

impl Decode for ObjectDatagram {
    /// Decode a whole datagram: the payload takes every remaining byte.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let kind = get_varint(buf, version)?;
        if !valid(kind, version) {
            return Err(DecodeError::UnknownType {
                what: "datagram type",
                value: kind,
            });
        }
        let track_alias = get_varint(buf, version)?;
        let group = get_varint(buf, version)?;
        let object = match kind & ZERO_OBJECT_ID {
            0 => Some(get_varint(buf, version)?),
            _ => None,
        };
        let priority = match kind & DEFAULT_PRIORITY {
            0 => Some(get_u8(buf)?),
            _ => None,
        };
        let properties = match kind & PROPERTIES {
            0 => None,
            _ => {
                let props = get_bytes(buf, version, "object properties", MAX_OBJECT_PROPERTIES)?;
                if props.is_empty() {
                    return Err(DecodeError::Invalid {
                        what: "OBJECT_DATAGRAM",
                        reason: "the properties flag is set but the block is empty",
                    });
                }
                Some(props)
            }
        };
        let body = match kind & STATUS {
            0 => {
                if buf.remaining() > MAX_DATAGRAM_SIZE {
                    return Err(DecodeError::TooLarge {
                        what: "datagram payload",
                        size: buf.remaining() as u64,
                        max: MAX_DATAGRAM_SIZE as u64,
                    });
                }
                DatagramBody::Payload(buf.copy_to_bytes(buf.remaining()))
            }
            _ => {
                let status = get_varint(buf, version)?;
                // draft-17+: only a normal object may carry properties.
                if version.leading_ones_varint() && status != 0 && properties.is_some() {
                    return Err(DecodeError::Invalid {
                        what: "OBJECT_DATAGRAM",
                        reason: "a status object carries properties",
                    });
                }
                if buf.has_remaining() {
                    return Err(DecodeError::TrailingBytes {
                        what: "OBJECT_DATAGRAM",
                        extra: buf.remaining(),
                    });
                }
                DatagramBody::Status(status)
            }
        };
        Ok(Self {
            track_alias,
            group,
            object,
            priority,
            end_of_group: kind & END_OF_GROUP != 0,
            properties,
            body,
        })
    }
}

impl Encode for ObjectDatagram {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let kind = self.datagram_type(version)?;
        if self.properties.as_ref().is_some_and(Bytes::is_empty) {
            return Err(EncodeError::Invalid {
                what: "OBJECT_DATAGRAM",
                reason: "a properties block must not be empty",
            });
        }
        match &self.body {
            DatagramBody::Status(status)
                if version.leading_ones_varint() && *status != 0 && self.properties.is_some() =>
            {
                return Err(EncodeError::Invalid {
                    what: "OBJECT_DATAGRAM",
                    reason: "a status object carries properties",
                });
            }
            DatagramBody::Payload(p) if p.len() > MAX_DATAGRAM_SIZE => {
                return Err(EncodeError::TooLarge {
                    what: "datagram payload",
                    size: p.len() as u64,
                    max: MAX_DATAGRAM_SIZE as u64,
                });
            }
            _ => {}
        }
        let mut head = Vec::with_capacity(32);
        put_varint(&mut head, kind, version, "datagram type")?;
        put_varint(&mut head, self.track_alias, version, "track alias")?;
        put_varint(&mut head, self.group, version, "group id")?;
        if let Some(object) = self.object {
            put_varint(&mut head, object, version, "object id")?;
        }
        if let Some(priority) = self.priority {
            head.push(priority);
        }
        if let Some(props) = &self.properties {
            put_bytes(
                &mut head,
                props,
                version,
                "object properties",
                MAX_OBJECT_PROPERTIES,
            )?;
        }
        if let DatagramBody::Status(status) = &self.body {
            check_varint(*status, version, "object status")?;
            put_varint(&mut head, *status, version, "object status")?;
        }
        buf.put_slice(&head);
        if let DatagramBody::Payload(p) = &self.body {
            buf.put_slice(p);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_draft() {
        let d = ObjectDatagram {
            track_alias: 1,
            group: 2,
            object: None,
            priority: None,
            end_of_group: false,
            properties: None,
            body: DatagramBody::Payload(Bytes::from_static(b"hi")),
        };
        assert_eq!(d.to_vec(Version::Draft16).unwrap(), [0x0c, 1, 2, b'h', b'i']);
        // draft-14 always writes the priority.
        assert!(d.to_vec(Version::Draft14).is_err());
        let d14 = ObjectDatagram {
            priority: Some(7),
            object: Some(3),
            ..d.clone()
        };
        assert_eq!(
            d14.to_vec(Version::Draft14).unwrap(),
            [0x00, 1, 2, 3, 7, b'h', b'i']
        );
        let status_end = ObjectDatagram {
            body: DatagramBody::Status(3),
            end_of_group: true,
            ..d14.clone()
        };
        assert!(status_end.to_vec(Version::Draft16).is_err());
        assert!(matches!(
            ObjectDatagram::decode(&mut &[0x22u8, 1, 2, 3, 7, 3][..], Version::Draft16),
            Err(DecodeError::UnknownType { .. })
        ));
        assert!(matches!(
            ObjectDatagram::decode(&mut &[0x08u8, 1, 2, 3][..], Version::Draft14),
            Err(DecodeError::UnknownType { .. })
        ));
    }

    #[test]
    fn properties_and_status_rules() {
        // An empty properties block under the flag.
        assert!(ObjectDatagram::decode(&mut &[0x0du8, 1, 2, 0][..], Version::Draft16).is_err());
        // A status datagram with trailing bytes.
        assert!(matches!(
            ObjectDatagram::decode(&mut &[0x2cu8, 1, 2, 0, 9][..], Version::Draft16),
            Err(DecodeError::TrailingBytes { .. })
        ));
        // draft-17+: properties only on a normal object.
        let wire = [0x2du8, 1, 2, 1, 0x10, 3];
        assert!(ObjectDatagram::decode(&mut &wire[..], Version::Draft16).is_ok());
        assert!(ObjectDatagram::decode(&mut &wire[..], Version::Draft17).is_err());
    }
}
