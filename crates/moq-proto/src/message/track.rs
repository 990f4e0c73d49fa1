//! The Track stream (type 6, lite-05+): TRACK asks for a track's fixed
//! properties; the publisher answers with one TRACK_INFO and closes.

use std::time::Duration;

use crate::{
    DecodeError, EncodeError, Path, Version,
    coding::{
        Body, framed_message, get_millis, get_string, get_u8, get_varint, put_millis, put_string, put_varint,
    },
    limits::MAX_NAME_BYTES,
};

fn require(version: Version, what: &'static str) -> Result<(), DecodeError> {
    match version.has_track_stream() {
        true => Ok(()),
        false => Err(DecodeError::NotInVersion { what, version }),
    }
}

fn require_encode(version: Version, what: &'static str) -> Result<(), EncodeError> {
    match version.has_track_stream() {
        true => Ok(()),
        false => Err(EncodeError::NotInVersion { what, version }),
    }
}

/// TRACK: which track's properties are wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackRequest {
    /// Broadcast path, relative to the session root.
    pub broadcast: Path,
    /// Track name.
    pub track: String,
}

impl Body for TrackRequest {
    const NAME: &'static str = "TRACK";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        require(version, Self::NAME)?;
        Ok(Self {
            broadcast: Path::decode(body, "broadcast")?,
            track: get_string(body, "track name", MAX_NAME_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        require_encode(version, Self::NAME)?;
        self.broadcast.encode(buf, "broadcast")?;
        put_string(buf, &self.track, "track name", MAX_NAME_BYTES)
    }
}

framed_message!(TrackRequest);

/// TRACK_INFO: a track's properties, fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Publisher priority.
    pub priority: u8,
    /// Ordering byte (lite-05 only; always written as sent).
    pub ordered: bool,
    /// Publisher max latency: how long non-latest groups stay cached.
    pub max_latency: Duration,
    /// Units per second of frame timestamps. Never zero.
    pub timescale: u64,
}

impl Default for TrackInfo {
    fn default() -> Self {
        Self {
            priority: 0,
            ordered: false,
            max_latency: Duration::ZERO,
            timescale: 1_000_000,
        }
    }
}

impl Body for TrackInfo {
    const NAME: &'static str = "TRACK_INFO";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        require(version, Self::NAME)?;
        let priority = get_u8(body)?;
        let ordered = version.has_ordered() && get_u8(body)? != 0;
        let max_latency = get_millis(body)?;
        let timescale = get_varint(body)?;
        if timescale == 0 {
            return Err(DecodeError::InvalidValue {
                what: "timescale",
                value: 0,
            });
        }
        Ok(Self {
            priority,
            ordered,
            max_latency,
            timescale,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        require_encode(version, Self::NAME)?;
        if self.timescale == 0 {
            return Err(EncodeError::Invalid {
                what: Self::NAME,
                reason: "timescale must not be zero",
            });
        }
        buf.push(self.priority);
        if version.has_ordered() {
            buf.push(u8::from(self.ordered));
        }
        put_millis(buf, self.max_latency, "max latency")?;
        put_varint(buf, self.timescale, "timescale")
    }
}

framed_message!(TrackInfo);
