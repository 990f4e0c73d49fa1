//! FETCH (stream type 3, lite-03+): one group of a track, by absolute sequence. The
//! reply is the group's FRAMEs on the same stream, then FIN.
//!
//! Wire: `[len] broadcast track priority:u8 group` plus, on lite-06,
//! `start_frame end_frame(optional)`.

use crate::{
    DecodeError, EncodeError, Path, Version,
    coding::{
        Body, framed_message, get_optional, get_string, get_u8, get_varint, put_optional, put_string,
        put_varint,
    },
    limits::MAX_NAME_BYTES,
};

/// FETCH: request one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetch {
    /// Broadcast path, relative to the session root.
    pub broadcast: Path,
    /// Track name.
    pub track: String,
    /// Subscriber priority.
    pub priority: u8,
    /// Group sequence.
    pub group: u64,
    /// First frame to return (lite-06; 0 is the start of the group).
    pub start_frame: u64,
    /// Last frame to return, inclusive (lite-06), or `None` for the rest.
    pub end_frame: Option<u64>,
}

impl Body for Fetch {
    const NAME: &'static str = "FETCH";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_fetch() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let mut fetch = Self {
            broadcast: Path::decode(body, "broadcast")?,
            track: get_string(body, "track name", MAX_NAME_BYTES)?,
            priority: get_u8(body)?,
            group: get_varint(body)?,
            ..Default::default()
        };
        if version.has_frame_bounds() {
            fetch.start_frame = get_varint(body)?;
            fetch.end_frame = get_optional(body)?;
            if fetch.end_frame.is_some_and(|end| end < fetch.start_frame) {
                return Err(DecodeError::Invalid {
                    what: Self::NAME,
                    reason: "frame range ends before it starts",
                });
            }
        }
        Ok(fetch)
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_fetch() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        self.broadcast.encode(buf, "broadcast")?;
        put_string(buf, &self.track, "track name", MAX_NAME_BYTES)?;
        buf.push(self.priority);
        put_varint(buf, self.group, "group")?;
        if version.has_frame_bounds() {
            if self.end_frame.is_some_and(|end| end < self.start_frame) {
                return Err(EncodeError::Invalid {
                    what: Self::NAME,
                    reason: "frame range ends before it starts",
                });
            }
            put_varint(buf, self.start_frame, "start frame")?;
            put_optional(buf, self.end_frame, "end frame")?;
        } else if self.start_frame != 0 || self.end_frame.is_some() {
            return Err(EncodeError::NotInVersion {
                what: "frame bounds",
                version,
            });
        }
        Ok(())
    }
}

framed_message!(Fetch);
