//! GROUP: the header of a unidirectional group stream (after the stream type
//! 0). FRAMEs follow until FIN.
//!
//! Wire: `[len] subscribe_id sequence` plus, on lite-06, `frame_start` (the
//! index of the first frame on the stream; 0 when it starts at the top).

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Body, framed_message, get_varint, put_varint},
};

/// GROUP header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupHeader {
    /// The subscription this group answers.
    pub subscribe: u64,
    /// Group sequence number.
    pub sequence: u64,
    /// Index of the first frame on this stream (lite-06; 0 before).
    pub frame_start: u64,
}

impl Body for GroupHeader {
    const NAME: &'static str = "GROUP";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self {
            subscribe: get_varint(body)?,
            sequence: get_varint(body)?,
            frame_start: if version.has_frame_bounds() {
                get_varint(body)?
            } else {
                0
            },
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.subscribe, "subscribe id")?;
        put_varint(buf, self.sequence, "group sequence")?;
        if version.has_frame_bounds() {
            put_varint(buf, self.frame_start, "frame start")?;
        } else if self.frame_start != 0 {
            // The peer would number frames from 0 and misalign the group.
            return Err(EncodeError::NotInVersion {
                what: "GROUP frame start",
                version,
            });
        }
        Ok(())
    }
}

framed_message!(GroupHeader);
