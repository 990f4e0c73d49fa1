//! GOAWAY (stream type 5, lite-04+): the sender is shutting down; reconnect,
//! to `uri` if one is given.

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Body, framed_message, get_string, put_string},
    limits::MAX_URI_BYTES,
};

/// GOAWAY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Goaway {
    /// Where to reconnect; empty means "the same place, later".
    pub uri: String,
}

impl Body for Goaway {
    const NAME: &'static str = "GOAWAY";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_goaway() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(Self {
            uri: get_string(body, "goaway uri", MAX_URI_BYTES)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_goaway() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        put_string(buf, &self.uri, "goaway uri", MAX_URI_BYTES)
    }
}

framed_message!(Goaway);
