//! Track Properties ("Track Extensions" in draft-16) and object properties
//! ("extension headers" before draft-17): Key-Value-Pair lists that relays
//! forward without understanding them.
//!
//! Track Properties end SUBSCRIBE_OK, PUBLISH, FETCH_OK (draft-16+) and
//! REQUEST_OK (draft-18+) with no count: they run to the end of the message.
//! Object properties sit in a length-prefixed block in front of each object's
//! payload; the codec hands that block over as bytes, and [`object_properties`]
//! parses it when a caller wants to look inside.

use bytes::Bytes;

use super::{KeyValuePairs, Version};
use crate::DecodeError;

/// Track Properties: a Key-Value-Pair list, sorted by type.
pub type TrackProperties = KeyValuePairs;

/// DELIVERY_TIMEOUT track property (milliseconds).
pub const PROPERTY_DELIVERY_TIMEOUT: u64 = 0x02;
/// MAX_CACHE_DURATION track property (milliseconds).
pub const PROPERTY_MAX_CACHE_DURATION: u64 = 0x04;
/// TIMESCALE (units per second of object timestamps), from the MOQ Properties
/// registry shared with draft-ietf-moq-loc.
pub const PROPERTY_TIMESCALE: u64 = 0x08;
/// IMMUTABLE_PROPERTIES: a nested list that relays must not change.
pub const PROPERTY_IMMUTABLE: u64 = 0x0B;
/// DEFAULT_PUBLISHER_PRIORITY: the priority of subgroups whose header omits it.
pub const PROPERTY_DEFAULT_PUBLISHER_PRIORITY: u64 = 0x0E;
/// TIMESTAMP object property (draft-ietf-moq-loc), in the track's timescale.
pub const PROPERTY_TIMESTAMP: u64 = 0x10;
/// DEFAULT_PUBLISHER_GROUP_ORDER: 1 ascending, 2 descending.
pub const PROPERTY_DEFAULT_GROUP_ORDER: u64 = 0x22;
/// DYNAMIC_GROUPS: 1 when the publisher honours NEW_GROUP_REQUEST.
pub const PROPERTY_DYNAMIC_GROUPS: u64 = 0x30;

/// Parse an object's properties block (the bytes after its length prefix).
///
/// Types are absolute in draft-14/15 and delta-encoded from draft-16, like
/// every other Key-Value-Pair list.
pub fn object_properties(block: &Bytes, version: Version) -> Result<KeyValuePairs, DecodeError> {
    let mut body = &block[..];
    KeyValuePairs::decode_to_end(&mut body, version, "object properties")
        .map_err(|e| e.within("object properties"))
}

/// Encode a properties list as the bytes of an object's properties block.
pub fn object_properties_block(props: &KeyValuePairs, version: Version) -> Result<Bytes, crate::EncodeError> {
    let mut out = Vec::new();
    props.encode_to_end(&mut out, version, "object properties")?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ietf::KvValue;

    #[test]
    fn object_property_block() {
        let mut props = KeyValuePairs::new();
        props.push(PROPERTY_TIMESTAMP, KvValue::Varint(1000)).unwrap();
        props
            .push(0x4d, KvValue::Bytes(Bytes::from_static(b"trace")))
            .unwrap();
        for v in [Version::Draft14, Version::Draft16, Version::Draft18] {
            let block = object_properties_block(&props, v).unwrap();
            assert_eq!(object_properties(&block, v).unwrap(), props, "{v}");
        }
        // A block cut short inside a pair is malformed, not "need more bytes".
        assert_eq!(
            object_properties(&Bytes::from_static(&[0x10]), Version::Draft16),
            Err(DecodeError::Truncated {
                what: "object properties"
            })
        );
    }
}
