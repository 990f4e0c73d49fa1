//! The in-band legacy SETUP: what a peer that offered no ALPN (or WebTransport
//! protocol), or the shared `moql` ALPN, sends first on its first
//! bidirectional stream, and the choice of version it leads to.
//!
//! The client's message names versions by code: moq-lite-01/02 (0xff0dad01,
//! 0xff0dad02) or moq-transport draft-14 (0xff00000e). Three framings exist,
//! told apart by the first varint:
//!
//! - 0x20 (draft-14 CLIENT_SETUP): `0x20 [size:u16] versions params`; the
//!   server answers `0x21 [size:u16] version params`. This is what every
//!   current moq-net client sends, for lite-01/02 as well as draft-14.
//! - 0x00 (the moq-lite "session" stream type of lite-01/02 era clients):
//!   `0x00 [size:varint] versions params`; the server answers
//!   `[size:varint] version params` with no type.
//! - 0x40 (draft-7 … -10 CLIENT_SETUP): `0x40 [size:varint] versions params`;
//!   the server answers `0x41 [size:varint] version params`.
//!
//! `versions` is a varint count and varint codes (QUIC varints); the
//! parameters stay raw bytes, because their encoding depends on the version
//! chosen (draft-14 options: [`crate::ietf::SetupOptions::decode_list`]).

use bytes::{Buf, BufMut, Bytes};

use crate::{
    DecodeError, EncodeError, Version,
    coding::{get_varint, put_varint},
    limits::{MAX_SETUP_SIZE, MAX_SETUP_VERSIONS},
};

/// A version reachable through the legacy SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyVersion {
    /// moq-lite-01 (0xff0dad01).
    Lite01,
    /// moq-lite-02 (0xff0dad02).
    Lite02,
    /// moq-transport draft-14 (0xff00000e).
    Draft14,
}

impl LegacyVersion {
    /// Every legacy version.
    pub const ALL: [LegacyVersion; 3] = [Self::Lite02, Self::Lite01, Self::Draft14];

    /// The version code.
    pub fn code(self) -> u64 {
        match self {
            Self::Lite01 => 0xff0d_ad01,
            Self::Lite02 => 0xff0d_ad02,
            Self::Draft14 => 0xff00_000e,
        }
    }

    /// The legacy version for a code, if any.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The moq-lite version this is, or `None` for draft-14 (moq-transport).
    pub fn lite(self) -> Option<Version> {
        match self {
            Self::Lite01 => Some(Version::Lite01),
            Self::Lite02 => Some(Version::Lite02),
            Self::Draft14 => None,
        }
    }

    /// The legacy version for a moq-lite version chosen in-band (lite-01/02).
    pub fn from_lite(version: Version) -> Option<Self> {
        match version {
            Version::Lite01 => Some(Self::Lite01),
            Version::Lite02 => Some(Self::Lite02),
            _ => None,
        }
    }
}

/// The version to run: the client's most preferred offer that we support
/// (the client's order wins, as in the reference server), or `None` when
/// nothing overlaps, which closes the session with a version error.
pub fn choose_version(offered: &[u64], supported: &[LegacyVersion]) -> Option<LegacyVersion> {
    offered
        .iter()
        .filter_map(|code| LegacyVersion::from_code(*code))
        .find(|v| supported.contains(v))
}

/// Which framing a legacy SETUP used; the server replies in the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SetupKind {
    /// Type 0x20 / 0x21, u16 size (draft-14 framing).
    #[default]
    Ietf14,
    /// Type 0x00 / none, varint size (lite-01/02 era session stream).
    Lite,
    /// Type 0x40 / 0x41, varint size (draft-7 … -10 framing).
    Ietf7,
}

impl SetupKind {
    fn client_type(self) -> u64 {
        match self {
            Self::Ietf14 => 0x20,
            Self::Lite => 0x00,
            Self::Ietf7 => 0x40,
        }
    }

    fn server_type(self) -> Option<u64> {
        match self {
            Self::Ietf14 => Some(0x21),
            Self::Lite => None,
            Self::Ietf7 => Some(0x41),
        }
    }
}

/// The client's legacy SETUP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyClientSetup {
    /// The framing used.
    pub kind: SetupKind,
    /// Offered version codes, most preferred first.
    pub versions: Vec<u64>,
    /// The parameters, raw.
    pub parameters: Bytes,
}

/// The server's reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyServerSetup {
    /// The framing (the client's).
    pub kind: SetupKind,
    /// The selected version code.
    pub version: u64,
    /// The parameters, raw.
    pub parameters: Bytes,
}

/// Read a size (u16 or varint by framing), refused above [`MAX_SETUP_SIZE`],
/// and return the body once it is buffered.
fn get_body<B: Buf>(buf: &mut B, kind: SetupKind) -> Result<Bytes, DecodeError> {
    let size = match kind {
        SetupKind::Ietf14 => {
            if buf.remaining() < 2 {
                return Err(DecodeError::Short);
            }
            u64::from(buf.get_u16())
        }
        SetupKind::Lite | SetupKind::Ietf7 => get_varint(buf)?,
    };
    if size > MAX_SETUP_SIZE as u64 {
        return Err(DecodeError::TooLarge {
            what: "legacy SETUP",
            size,
            max: MAX_SETUP_SIZE as u64,
        });
    }
    let size = size as usize;
    if buf.remaining() < size {
        return Err(DecodeError::Short);
    }
    Ok(buf.copy_to_bytes(size))
}

fn put_body<B: BufMut>(buf: &mut B, kind: SetupKind, body: &[u8]) -> Result<(), EncodeError> {
    if body.len() > MAX_SETUP_SIZE || (kind == SetupKind::Ietf14 && body.len() > usize::from(u16::MAX)) {
        return Err(EncodeError::TooLarge {
            what: "legacy SETUP",
            size: body.len() as u64,
            max: MAX_SETUP_SIZE.min(usize::from(u16::MAX)) as u64,
        });
    }
    match kind {
        SetupKind::Ietf14 => buf.put_u16(body.len() as u16),
        SetupKind::Lite | SetupKind::Ietf7 => put_varint(buf, body.len() as u64, "legacy SETUP size")?,
    }
    buf.put_slice(body);
    Ok(())
}

impl LegacyClientSetup {
    /// Decode the client's SETUP from the start of its first bidi stream.
    pub fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let kind = match get_varint(buf)? {
            0x20 => SetupKind::Ietf14,
            0x00 => SetupKind::Lite,
            0x40 => SetupKind::Ietf7,
            value => {
                return Err(DecodeError::UnknownType {
                    what: "legacy SETUP type",
                    value,
                });
            }
        };
        let body = get_body(buf, kind)?;
        let mut body = &body[..];
        let count = get_varint(&mut body).map_err(|e| e.within("legacy SETUP"))?;
        if count > MAX_SETUP_VERSIONS as u64 {
            return Err(DecodeError::TooMany {
                what: "setup versions",
                count,
                max: MAX_SETUP_VERSIONS as u64,
            });
        }
        let mut versions = Vec::with_capacity(count as usize);
        for _ in 0..count {
            versions.push(get_varint(&mut body).map_err(|e| e.within("legacy SETUP"))?);
        }
        Ok(Self {
            kind,
            versions,
            parameters: Bytes::copy_from_slice(body),
        })
    }

    /// Encode the client's SETUP.
    pub fn encode<B: BufMut>(&self, buf: &mut B) -> Result<(), EncodeError> {
        if self.versions.len() > MAX_SETUP_VERSIONS {
            return Err(EncodeError::TooMany {
                what: "setup versions",
                count: self.versions.len() as u64,
                max: MAX_SETUP_VERSIONS as u64,
            });
        }
        let mut body = Vec::with_capacity(self.parameters.len().saturating_add(16));
        put_varint(&mut body, self.versions.len() as u64, "setup versions")?;
        for v in &self.versions {
            put_varint(&mut body, *v, "setup version")?;
        }
        body.extend_from_slice(&self.parameters);
        let mut out = Vec::with_capacity(body.len().saturating_add(4));
        put_varint(&mut out, self.kind.client_type(), "legacy SETUP type")?;
        put_body(&mut out, self.kind, &body)?;
        buf.put_slice(&out);
        Ok(())
    }

    /// The version to run with our `supported` set (see [`choose_version`]).
    pub fn choose(&self, supported: &[LegacyVersion]) -> Option<LegacyVersion> {
        choose_version(&self.versions, supported)
    }
}

impl LegacyServerSetup {
    /// Decode the server's reply to a SETUP sent with framing `kind`.
    pub fn decode<B: Buf>(buf: &mut B, kind: SetupKind) -> Result<Self, DecodeError> {
        if let Some(expected) = kind.server_type() {
            let got = get_varint(buf)?;
            if got != expected {
                return Err(DecodeError::UnknownType {
                    what: "legacy SETUP reply type",
                    value: got,
                });
            }
        }
        let body = get_body(buf, kind)?;
        let mut body = &body[..];
        let version = get_varint(&mut body).map_err(|e| e.within("legacy SETUP"))?;
        Ok(Self {
            kind,
            version,
            parameters: Bytes::copy_from_slice(body),
        })
    }

    /// Encode the server's reply in its framing.
    pub fn encode<B: BufMut>(&self, buf: &mut B) -> Result<(), EncodeError> {
        let mut body = Vec::with_capacity(self.parameters.len().saturating_add(8));
        put_varint(&mut body, self.version, "setup version")?;
        body.extend_from_slice(&self.parameters);
        let mut out = Vec::with_capacity(body.len().saturating_add(4));
        if let Some(kind) = self.kind.server_type() {
            put_varint(&mut out, kind, "legacy SETUP type")?;
        }
        put_body(&mut out, self.kind, &body)?;
        buf.put_slice(&out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft14_framing_matches_moq_net() {
        // moq-net 0.3.18's client: 0x20, u16 size, two versions, no parameters.
        let client = LegacyClientSetup {
            kind: SetupKind::Ietf14,
            versions: vec![0xff0d_ad02, 0xff00_000e],
            parameters: Bytes::from_static(&[0]),
        };
        let mut wire = Vec::new();
        client.encode(&mut wire).unwrap();
        assert_eq!(hex::encode(&wire), "20001202c0000000ff0dad02c0000000ff00000e00");
        assert_eq!(LegacyClientSetup::decode(&mut &wire[..]).unwrap(), client);
        for cut in 0..wire.len() {
            assert_eq!(
                LegacyClientSetup::decode(&mut &wire[..cut]),
                Err(DecodeError::Short)
            );
        }
        assert_eq!(client.choose(&LegacyVersion::ALL), Some(LegacyVersion::Lite02));
        assert_eq!(
            client.choose(&[LegacyVersion::Draft14]),
            Some(LegacyVersion::Draft14)
        );
        assert_eq!(client.choose(&[LegacyVersion::Lite01]), None);

        let server = LegacyServerSetup {
            kind: SetupKind::Ietf14,
            version: 0xff0d_ad02,
            parameters: Bytes::from_static(&[0]),
        };
        let mut wire = Vec::new();
        server.encode(&mut wire).unwrap();
        assert_eq!(hex::encode(&wire), "210009c0000000ff0dad0200");
        assert_eq!(
            LegacyServerSetup::decode(&mut &wire[..], SetupKind::Ietf14).unwrap(),
            server
        );
    }

    /// What @moq/net 0.3.4 in Firefox 153 sends when WebTransport negotiated no
    /// protocol (interop/browser/README.md), and the reference relay's answer.
    #[test]
    fn firefox_client_setup() {
        let wire = hex::decode(concat!(
            "200031",
            "03c0000000ff0dad02c0000000ff0dad01c0000000ff00000e",
            "03028000a45580040b5a01070b",
            "6d6f712d6c6974652d6a73"
        ))
        .unwrap();
        let client = LegacyClientSetup::decode(&mut &wire[..]).unwrap();
        assert_eq!(client.kind, SetupKind::Ietf14);
        assert_eq!(client.versions, [0xff0d_ad02, 0xff0d_ad01, 0xff00_000e]);
        let lite = [LegacyVersion::Lite02, LegacyVersion::Lite01];
        assert_eq!(client.choose(&lite), Some(LegacyVersion::Lite02));
        assert_eq!(
            client.choose(&[LegacyVersion::Lite01]),
            Some(LegacyVersion::Lite01)
        );
        assert_eq!(LegacyVersion::Lite02.lite(), Some(Version::Lite02));
        assert_eq!(LegacyVersion::Draft14.lite(), None);
        assert_eq!(
            LegacyVersion::from_lite(Version::Lite01),
            Some(LegacyVersion::Lite01)
        );
        assert_eq!(LegacyVersion::from_lite(Version::Lite05), None);
        let options =
            crate::ietf::SetupOptions::decode_list(&client.parameters, crate::ietf::Version::Draft14)
                .unwrap();
        assert_eq!(options.max_request_id, Some(42069));
        assert_eq!(options.implementation.as_deref(), Some(&b"moq-lite-js"[..]));
        assert_eq!(options.other.get_varint(0x40b5a), Some(1));
        assert_eq!(options.path, None);

        let reply = LegacyServerSetup {
            kind: client.kind,
            version: LegacyVersion::Lite02.code(),
            parameters: Bytes::from_static(&[0]),
        };
        let mut out = Vec::new();
        reply.encode(&mut out).unwrap();
        assert_eq!(hex::encode(out), "210009c0000000ff0dad0200");
    }

    #[test]
    fn lite_and_draft7_framings() {
        let client = LegacyClientSetup {
            kind: SetupKind::Lite,
            versions: vec![0xff0d_ad01],
            parameters: Bytes::new(),
        };
        let mut wire = Vec::new();
        client.encode(&mut wire).unwrap();
        assert_eq!(hex::encode(&wire), "000901c0000000ff0dad01");
        assert_eq!(LegacyClientSetup::decode(&mut &wire[..]).unwrap(), client);
        let server = LegacyServerSetup {
            kind: SetupKind::Lite,
            version: 0xff0d_ad01,
            parameters: Bytes::new(),
        };
        let mut wire = Vec::new();
        server.encode(&mut wire).unwrap();
        assert_eq!(hex::encode(&wire), "08c0000000ff0dad01");
        let draft7 = LegacyServerSetup {
            kind: SetupKind::Ietf7,
            ..server
        };
        let mut wire = Vec::new();
        draft7.encode(&mut wire).unwrap();
        assert_eq!(hex::encode(&wire), "404108c0000000ff0dad01");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            LegacyClientSetup::decode(&mut &[0x21, 0, 0][..]),
            Err(DecodeError::UnknownType {
                what: "legacy SETUP type",
                value: 0x21
            })
        );
        // A varint size past the limit, refused before buffering.
        assert!(matches!(
            LegacyClientSetup::decode(&mut &[0x00, 0x80, 0x01, 0x00, 0x01][..]),
            Err(DecodeError::TooLarge { .. })
        ));
        // Too many versions.
        assert!(matches!(
            LegacyClientSetup::decode(&mut &[0x20, 0, 2, 0x40, 0x41][..]),
            Err(DecodeError::TooMany { .. })
        ));
        // A body cut inside the version list is malformed, not short.
        assert_eq!(
            LegacyClientSetup::decode(&mut &[0x20, 0, 1, 2][..]),
            Err(DecodeError::Truncated { what: "legacy SETUP" })
        );
        assert!(LegacyServerSetup::decode(&mut &[0x20, 0, 1, 0][..], SetupKind::Ietf14).is_err());
    }
}
