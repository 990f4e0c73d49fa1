//! DATAGRAM (lite-05+): a single-frame group carried in one QUIC datagram.
//!
//! Wire: `subscribe_id sequence timestamp payload...`; no length prefix, the
//! payload runs to the end of the datagram.

use bytes::{Buf, BufMut, Bytes};

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Decode, Encode, get_varint, put_varint, varint_len},
    limits::MAX_DATAGRAM_SIZE,
};

/// A datagram body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Datagram {
    /// The subscription it answers.
    pub subscribe: u64,
    /// Group sequence.
    pub sequence: u64,
    /// Absolute timestamp in the track's timescale.
    pub timestamp: u64,
    /// The frame payload (shared, not copied, when decoded from `Bytes`).
    pub payload: Bytes,
}

impl Decode for Datagram {
    /// `buf` must hold exactly one whole datagram.
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        if !version.has_datagrams() {
            return Err(DecodeError::NotInVersion {
                what: "DATAGRAM",
                version,
            });
        }
        if buf.remaining() > MAX_DATAGRAM_SIZE {
            return Err(DecodeError::TooLarge {
                what: "DATAGRAM",
                size: buf.remaining() as u64,
                max: MAX_DATAGRAM_SIZE as u64,
            });
        }
        let subscribe = get_varint(buf).map_err(|e| e.within("DATAGRAM"))?;
        let sequence = get_varint(buf).map_err(|e| e.within("DATAGRAM"))?;
        let timestamp = get_varint(buf).map_err(|e| e.within("DATAGRAM"))?;
        let payload = buf.copy_to_bytes(buf.remaining());
        Ok(Self {
            subscribe,
            sequence,
            timestamp,
            payload,
        })
    }
}

impl Encode for Datagram {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if !version.has_datagrams() {
            return Err(EncodeError::NotInVersion {
                what: "DATAGRAM",
                version,
            });
        }
        let size = varint_len(self.subscribe)
            .saturating_add(varint_len(self.sequence))
            .saturating_add(varint_len(self.timestamp))
            .saturating_add(self.payload.len());
        if size > MAX_DATAGRAM_SIZE {
            return Err(EncodeError::TooLarge {
                what: "DATAGRAM",
                size: size as u64,
                max: MAX_DATAGRAM_SIZE as u64,
            });
        }
        put_varint(buf, self.subscribe, "subscribe id")?;
        put_varint(buf, self.sequence, "group sequence")?;
        put_varint(buf, self.timestamp, "timestamp")?;
        buf.put_slice(&self.payload);
        Ok(())
    }
}
