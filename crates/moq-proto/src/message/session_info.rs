//! SESSION_INFO (lite-01/02): what a peer sends on the Session stream after
//! the legacy SETUP, for the life of the session. Wire: `[len][bitrate]`,
//! where a bitrate of 0 means unknown.

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Body, framed_message, get_varint, put_varint},
};

/// SESSION_INFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The sender's estimated bitrate in bits per second, if known. `Some(0)`
    /// is sent as 1, since 0 means unknown.
    pub bitrate: Option<u64>,
}

impl Body for SessionInfo {
    const NAME: &'static str = "SESSION_INFO";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.is_in_band() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(Self {
            bitrate: Some(get_varint(body)?).filter(|v| *v != 0),
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.is_in_band() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        put_varint(buf, self.bitrate.map_or(0, |v| v.max(1)), "bitrate")
    }
}

framed_message!(SessionInfo);
