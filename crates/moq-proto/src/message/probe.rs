//! PROBE (stream type 4, lite-03+): the publisher reports its estimated
//! bitrate and, from lite-04, RTT. On the wire 0 means unknown.

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Body, framed_message, get_varint, put_varint},
};

/// PROBE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    /// Estimated bitrate in bits per second, if known. `Some(0)` is sent as 1.
    pub bitrate: Option<u64>,
    /// Smoothed RTT in milliseconds, if known (lite-04+). `Some(0)` is sent as 1.
    pub rtt_ms: Option<u64>,
}

impl Body for Probe {
    const NAME: &'static str = "PROBE";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_probe() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let bitrate = Some(get_varint(body)?).filter(|v| *v != 0);
        let rtt_ms = match version.has_probe_rtt() {
            true => Some(get_varint(body)?).filter(|v| *v != 0),
            false => None,
        };
        Ok(Self { bitrate, rtt_ms })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_probe() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        // 0 is reserved for "unknown", so a measured 0 rounds up to 1.
        put_varint(buf, self.bitrate.map_or(0, |v| v.max(1)), "bitrate")?;
        if version.has_probe_rtt() {
            put_varint(buf, self.rtt_ms.map_or(0, |v| v.max(1)), "rtt")?;
        }
        Ok(())
    }
}

framed_message!(Probe);
