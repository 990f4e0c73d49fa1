//! What opens a unidirectional stream: a SUBGROUP_HEADER, a FETCH_HEADER, a
//! draft-17+ SETUP (the sender's control stream, which later carries its
//! GOAWAY), or draft-18+ padding. Any other type is a session error in every
//! draft (draft-14 §10.4 … draft-19 §6.4).
//!
//! Bidirectional streams need no classifier: in draft-14 … -16 the first one
//! carries CLIENT_SETUP and every control message after it, and in draft-17+
//! each one starts with the request message it was opened for; both are read
//! with [`super::Message`].

use bytes::{Buf, BufMut};

use super::{
    FetchHeader, Setup, SubgroupHeader, Version,
    coding::{Body, Decode, Encode, decode_exact, get_u16, get_varint, put_frame, put_varint},
    fetch_stream::FETCH_HEADER,
};
use crate::{DecodeError, EncodeError};

/// The SETUP message type, which is also the control stream's type (draft-17+).
pub const SETUP_TYPE: u64 = 0x2F00;

/// The PADDING stream type (draft-18+).
pub const PADDING_TYPE: u64 = 0x132B_3E28;

/// The header of a unidirectional stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UniStream {
    /// A subgroup of a subscription; objects follow.
    Subgroup(SubgroupHeader),
    /// A fetch response; objects follow.
    Fetch(FetchHeader),
    /// The peer's control stream and its SETUP (draft-17+); control messages
    /// (GOAWAY) may follow.
    Setup(Setup),
    /// Padding to discard (draft-18+).
    Padding,
}

impl Decode for UniStream {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let kind = get_varint(buf, version)?;
        if kind == SETUP_TYPE && version.has_unified_setup() {
            // The stream type is also the SETUP message type: its length and
            // body follow.
            let size = usize::from(get_u16(buf)?);
            if buf.remaining() < size {
                return Err(DecodeError::Short);
            }
            let setup = match buf.chunk().get(..size) {
                Some(body) => decode_exact(body, version, "SETUP")?,
                None => {
                    let mut body = vec![0; size];
                    (&mut *buf).take(size).copy_to_slice(&mut body);
                    return Ok(Self::Setup(decode_exact(&body, version, "SETUP")?));
                }
            };
            buf.advance(size);
            return Ok(Self::Setup(setup));
        }
        if SubgroupHeader::is_type(kind, version) {
            return Ok(Self::Subgroup(SubgroupHeader::decode_after_type(
                kind, buf, version,
            )?));
        }
        match kind {
            FETCH_HEADER => Ok(Self::Fetch(FetchHeader::decode_after_type(buf, version)?)),
            PADDING_TYPE if version.has_padding_stream() => Ok(Self::Padding),
            value => Err(DecodeError::UnknownType {
                what: "unidirectional stream type",
                value,
            }),
        }
    }
}

impl Encode for UniStream {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        match self {
            Self::Subgroup(h) => h.encode(buf, version),
            Self::Fetch(h) => h.encode(buf, version),
            Self::Setup(setup) => {
                if !version.has_unified_setup() {
                    return Err(EncodeError::NotInDraft {
                        what: "a SETUP stream",
                        version,
                    });
                }
                let mut body = Vec::with_capacity(64);
                setup.encode_body(&mut body, version)?;
                put_frame(buf, SETUP_TYPE, &body, version, "SETUP")
            }
            Self::Padding if version.has_padding_stream() => {
                put_varint(buf, PADDING_TYPE, version, "stream type")
            }
            Self::Padding => Err(EncodeError::NotInDraft {
                what: "a padding stream",
                version,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ietf::{SetupOptions, coding::decode_slice};

    #[test]
    fn classifies_streams() {
        let v = Version::Draft18;
        let setup = UniStream::Setup(Setup {
            options: SetupOptions {
                path: Some("/x".into()),
                ..Default::default()
            },
        });
        let wire = setup.to_vec(v).unwrap();
        assert_eq!(wire, [0xaf, 0x00, 0x00, 0x04, 0x01, 0x02, b'/', b'x']);
        assert_eq!(decode_slice::<UniStream>(&wire, v).unwrap(), (setup, wire.len()));
        // The same bytes split between two chunks.
        let (a, b) = wire.split_at(1);
        let mut chained = a.chain(b);
        assert!(matches!(
            UniStream::decode(&mut chained, v),
            Ok(UniStream::Setup(_))
        ));

        let pad = UniStream::Padding.to_vec(v).unwrap();
        assert_eq!(decode_slice::<UniStream>(&pad, v).unwrap().0, UniStream::Padding);
        assert!(UniStream::Padding.to_vec(Version::Draft17).is_err());
        assert!(decode_slice::<UniStream>(&pad, Version::Draft17).is_err());

        let fetch = UniStream::Fetch(FetchHeader { request_id: 4 });
        assert_eq!(fetch.to_vec(Version::Draft14).unwrap(), [0x05, 4]);
        assert_eq!(
            decode_slice::<UniStream>(&[0x06], Version::Draft14),
            Err(DecodeError::UnknownType {
                what: "unidirectional stream type",
                value: 6
            })
        );
        // SETUP rides the bidirectional stream before draft-17.
        assert!(decode_slice::<UniStream>(&[0x80, 0, 0x2f, 0, 0, 0], Version::Draft16).is_err());
    }
}
