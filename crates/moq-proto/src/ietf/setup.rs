//! The SETUP exchange and its options.
//!
//! - draft-14: CLIENT_SETUP (0x20) `{versions count, versions…, options}`
//!   and SERVER_SETUP (0x21) `{selected version, options}` on the first
//!   bidirectional stream, which then stays the control stream.
//! - draft-15, -16: the same messages without versions (ALPN chose one).
//! - draft-17+: SETUP (0x2F00), the same for both sides, first on each side's
//!   unidirectional control stream; options run to the end of the message
//!   with no count.
//!
//! Options are Key-Value-Pairs (so unknown ones are skipped): 0x01 PATH,
//! 0x02 MAX_REQUEST_ID (draft-14 … -16), 0x03 AUTHORIZATION_TOKEN,
//! 0x04 MAX_AUTH_TOKEN_CACHE_SIZE, 0x05 AUTHORITY, 0x07 MOQT_IMPLEMENTATION.
//! The moq-dev extensions HOP_ID, RELAY_COST, SOLICIT and HIDDEN ride in
//! [`SetupOptions::other`].

use bytes::{Buf, BufMut, Bytes};

use super::{
    KeyValuePairs, KvValue, Version,
    coding::{Body, get_count, get_varint, put_varint},
};
use crate::{DecodeError, EncodeError, limits::MAX_SETUP_VERSIONS};

/// PATH option: the request path (and query) on transports without a URL.
pub const OPTION_PATH: u64 = 0x01;
/// MAX_REQUEST_ID option (draft-14 … -16).
pub const OPTION_MAX_REQUEST_ID: u64 = 0x02;
/// AUTHORIZATION_TOKEN option: a Token structure ([`AuthToken`]).
pub const OPTION_AUTHORIZATION_TOKEN: u64 = 0x03;
/// MAX_AUTH_TOKEN_CACHE_SIZE option.
pub const OPTION_MAX_AUTH_TOKEN_CACHE_SIZE: u64 = 0x04;
/// AUTHORITY option: the URI authority on transports without a URL.
pub const OPTION_AUTHORITY: u64 = 0x05;
/// MOQT_IMPLEMENTATION option: the sender's implementation name.
pub const OPTION_IMPLEMENTATION: u64 = 0x07;
/// HOP_ID (MoQ Cluster extension): the sender's relay id; negotiates the
/// extension (draft-17+).
pub const OPTION_HOP_ID: u64 = 0x40B54;
/// RELAY_COST (MoQ Cluster extension): what subscribing from the sender costs.
pub const OPTION_RELAY_COST: u64 = 0x40B56;
/// SOLICIT (MoQ Solicit extension): advertisements must be solicited first.
pub const OPTION_SOLICIT: u64 = 0x40B5A;
/// HIDDEN (MoQ Hidden extension): the sender understands the HIDDEN parameter.
pub const OPTION_HIDDEN: u64 = 0x40B5C;

/// Longest option value we accept for PATH / AUTHORITY (they carry a token
/// in the query, so not small).
const MAX_OPTION_STRING: usize = crate::limits::MAX_KVP_VALUE;

/// The setup options both sides send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetupOptions {
    /// PATH: the request path and query (client only).
    pub path: Option<String>,
    /// MAX_REQUEST_ID: the initial request-id limit (draft-14 … -16).
    pub max_request_id: Option<u64>,
    /// AUTHORIZATION_TOKEN: a Token structure, see [`AuthToken`].
    pub authorization_token: Option<Bytes>,
    /// MAX_AUTH_TOKEN_CACHE_SIZE in bytes.
    pub max_auth_token_cache_size: Option<u64>,
    /// AUTHORITY: the URI authority (client only).
    pub authority: Option<String>,
    /// MOQT_IMPLEMENTATION: a free-form implementation name.
    pub implementation: Option<Bytes>,
    /// Every other option, including the moq-dev extensions, kept as sent.
    pub other: KeyValuePairs,
}

fn known(key: u64, version: Version) -> bool {
    match key {
        OPTION_PATH
        | OPTION_AUTHORIZATION_TOKEN
        | OPTION_MAX_AUTH_TOKEN_CACHE_SIZE
        | OPTION_AUTHORITY
        | OPTION_IMPLEMENTATION => true,
        OPTION_MAX_REQUEST_ID => !version.has_unified_setup(),
        _ => false,
    }
}

fn utf8(bytes: Bytes, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what })
}

impl SetupOptions {
    fn from_pairs(pairs: KeyValuePairs, version: Version) -> Result<Self, DecodeError> {
        let mut options = Self::default();
        let mut seen: Vec<u64> = Vec::new();
        for (key, value) in pairs.iter() {
            if !known(*key, version) {
                // Unknown options may repeat (draft-14 §9.3); keep them all.
                options
                    .other
                    .push(*key, value.clone())
                    .map_err(|_| DecodeError::Invalid {
                        what: "setup options",
                        reason: "value does not match its type's parity",
                    })?;
                continue;
            }
            if seen.contains(key) {
                return Err(DecodeError::Duplicate {
                    what: "setup options",
                    id: *key,
                });
            }
            seen.push(*key);
            match (*key, value.clone()) {
                (OPTION_PATH, KvValue::Bytes(b)) => options.path = Some(utf8(b, "setup path")?),
                (OPTION_AUTHORITY, KvValue::Bytes(b)) => {
                    options.authority = Some(utf8(b, "setup authority")?)
                }
                (OPTION_AUTHORIZATION_TOKEN, KvValue::Bytes(b)) => options.authorization_token = Some(b),
                (OPTION_IMPLEMENTATION, KvValue::Bytes(b)) => options.implementation = Some(b),
                (OPTION_MAX_REQUEST_ID, KvValue::Varint(v)) => options.max_request_id = Some(v),
                (OPTION_MAX_AUTH_TOKEN_CACHE_SIZE, KvValue::Varint(v)) => {
                    options.max_auth_token_cache_size = Some(v)
                }
                // Parity is what frames a pair, so a known type always has its kind.
                _ => {}
            }
        }
        Ok(options)
    }

    fn to_pairs(&self, version: Version) -> Result<KeyValuePairs, EncodeError> {
        let mut pairs = KeyValuePairs::new();
        for (key, _) in self.other.iter() {
            if known(*key, version) {
                return Err(EncodeError::Invalid {
                    what: "setup options",
                    reason: "an option in `other` has its own field",
                });
            }
        }
        if self.max_request_id.is_some() && version.has_unified_setup() {
            return Err(EncodeError::NotInDraft {
                what: "MAX_REQUEST_ID",
                version,
            });
        }
        let string = |s: &Option<String>| {
            s.as_ref()
                .map(|s| KvValue::Bytes(Bytes::copy_from_slice(s.as_bytes())))
        };
        for (key, value) in [
            (OPTION_PATH, string(&self.path)),
            (OPTION_MAX_REQUEST_ID, self.max_request_id.map(KvValue::Varint)),
            (
                OPTION_AUTHORIZATION_TOKEN,
                self.authorization_token.clone().map(KvValue::Bytes),
            ),
            (
                OPTION_MAX_AUTH_TOKEN_CACHE_SIZE,
                self.max_auth_token_cache_size.map(KvValue::Varint),
            ),
            (OPTION_AUTHORITY, string(&self.authority)),
            (
                OPTION_IMPLEMENTATION,
                self.implementation.clone().map(KvValue::Bytes),
            ),
        ] {
            if let Some(value) = value {
                if let KvValue::Bytes(b) = &value
                    && b.len() > MAX_OPTION_STRING
                {
                    return Err(EncodeError::TooLarge {
                        what: "setup option",
                        size: b.len() as u64,
                        max: MAX_OPTION_STRING as u64,
                    });
                }
                pairs.push(key, value)?;
            }
        }
        for (key, value) in self.other.iter() {
            pairs.push(*key, value.clone())?;
        }
        Ok(pairs)
    }

    /// Parse a counted option list (the draft-14 … -16 form) that fills
    /// `bytes` exactly, e.g. the parameters of a legacy in-band SETUP.
    pub fn decode_list(bytes: &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut body = bytes;
        let options = Self::decode_counted(&mut body, version).map_err(|e| e.within("setup options"))?;
        match body.is_empty() {
            true => Ok(options),
            false => Err(DecodeError::TrailingBytes {
                what: "setup options",
                extra: body.len(),
            }),
        }
    }

    /// Encode as a counted option list (the draft-14 … -16 form).
    pub fn encode_list(&self, version: Version) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_counted(&mut out, version)?;
        Ok(out)
    }

    /// Options as a counted list (draft-14 … -16).
    fn decode_counted(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Self::from_pairs(
            KeyValuePairs::decode_counted(body, version, "setup options")?,
            version,
        )
    }

    fn encode_counted(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.to_pairs(version)?
            .encode_counted(buf, version, "setup options")
    }
}

/// CLIENT_SETUP (0x20, draft-14 … -16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSetup {
    /// Offered version codes, most preferred first (draft-14 only; empty in
    /// later drafts, where the ALPN chose the version).
    pub versions: Vec<u64>,
    /// The client's options.
    pub options: SetupOptions,
}

impl Body for ClientSetup {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut versions = Vec::new();
        if version.has_setup_versions() {
            let count = get_count(body, version, "setup versions", MAX_SETUP_VERSIONS)?;
            versions.reserve(count);
            for _ in 0..count {
                versions.push(get_varint(body, version)?);
            }
        }
        Ok(Self {
            versions,
            options: SetupOptions::decode_counted(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if version.has_setup_versions() {
            if self.versions.len() > MAX_SETUP_VERSIONS {
                return Err(EncodeError::TooMany {
                    what: "setup versions",
                    count: self.versions.len() as u64,
                    max: MAX_SETUP_VERSIONS as u64,
                });
            }
            put_varint(buf, self.versions.len() as u64, version, "setup versions")?;
            for v in &self.versions {
                put_varint(buf, *v, version, "setup version")?;
            }
        } else if !self.versions.is_empty() {
            return Err(EncodeError::NotInDraft {
                what: "a CLIENT_SETUP version list",
                version,
            });
        }
        self.options.encode_counted(buf, version)
    }
}

/// SERVER_SETUP (0x21, draft-14 … -16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSetup {
    /// The selected version code (draft-14 only, where it is required).
    pub version: Option<u64>,
    /// The server's options.
    pub options: SetupOptions,
}

impl Body for ServerSetup {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let selected = match version.has_setup_versions() {
            true => Some(get_varint(body, version)?),
            false => None,
        };
        Ok(Self {
            version: selected,
            options: SetupOptions::decode_counted(body, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match (version.has_setup_versions(), self.version) {
            (true, Some(v)) => put_varint(buf, v, version, "setup version")?,
            (false, None) => {}
            (true, None) => {
                return Err(EncodeError::Invalid {
                    what: "SERVER_SETUP",
                    reason: "draft-14 needs the selected version",
                });
            }
            (false, Some(_)) => {
                return Err(EncodeError::NotInDraft {
                    what: "a SERVER_SETUP version",
                    version,
                });
            }
        }
        self.options.encode_counted(buf, version)
    }
}

/// SETUP (0x2F00, draft-17+), sent by both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// The sender's options.
    pub options: SetupOptions,
}

impl Body for Setup {
    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let pairs = KeyValuePairs::decode_to_end(body, version, "setup options")?;
        Ok(Self {
            options: SetupOptions::from_pairs(pairs, version)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.options
            .to_pairs(version)?
            .encode_to_end(buf, version, "setup options")
    }
}

/// The Token structure carried by AUTHORIZATION_TOKEN (setup option and
/// message parameter alike): an Alias Type, then the fields it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthToken {
    /// 0x0 DELETE: retire a registered alias.
    Delete {
        /// The alias.
        alias: u64,
    },
    /// 0x1 REGISTER: register an alias for this token and use it.
    Register {
        /// The alias.
        alias: u64,
        /// The Token Type (0 = negotiated out of band, e.g. a JWT).
        kind: u64,
        /// The token.
        value: Bytes,
    },
    /// 0x2 USE_ALIAS: use a registered token.
    UseAlias {
        /// The alias.
        alias: u64,
    },
    /// 0x3 USE_VALUE: the token, inline.
    UseValue {
        /// The Token Type (0 = negotiated out of band, e.g. a JWT).
        kind: u64,
        /// The token.
        value: Bytes,
    },
}

impl AuthToken {
    /// Parse a Token structure from an option or parameter value.
    pub fn decode(value: &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut buf = value;
        let body = &mut buf;
        let token = match get_varint(body, version).map_err(|e| e.within("token"))? {
            0x0 => Self::Delete {
                alias: get_varint(body, version).map_err(|e| e.within("token"))?,
            },
            0x1 => Self::Register {
                alias: get_varint(body, version).map_err(|e| e.within("token"))?,
                kind: get_varint(body, version).map_err(|e| e.within("token"))?,
                value: Bytes::copy_from_slice(body.chunk()),
            },
            0x2 => Self::UseAlias {
                alias: get_varint(body, version).map_err(|e| e.within("token"))?,
            },
            0x3 => Self::UseValue {
                kind: get_varint(body, version).map_err(|e| e.within("token"))?,
                value: Bytes::copy_from_slice(body.chunk()),
            },
            value => {
                return Err(DecodeError::UnknownType {
                    what: "token alias type",
                    value,
                });
            }
        };
        if matches!(token, Self::Delete { .. } | Self::UseAlias { .. }) && !body.is_empty() {
            return Err(DecodeError::TrailingBytes {
                what: "token",
                extra: body.len(),
            });
        }
        Ok(token)
    }

    /// The Token structure's bytes.
    pub fn to_bytes(&self, version: Version) -> Result<Bytes, EncodeError> {
        let mut out = Vec::new();
        match self {
            Self::Delete { alias } => {
                put_varint(&mut out, 0x0, version, "token")?;
                put_varint(&mut out, *alias, version, "token alias")?;
            }
            Self::Register { alias, kind, value } => {
                put_varint(&mut out, 0x1, version, "token")?;
                put_varint(&mut out, *alias, version, "token alias")?;
                put_varint(&mut out, *kind, version, "token type")?;
                out.put_slice(value);
            }
            Self::UseAlias { alias } => {
                put_varint(&mut out, 0x2, version, "token")?;
                put_varint(&mut out, *alias, version, "token alias")?;
            }
            Self::UseValue { kind, value } => {
                put_varint(&mut out, 0x3, version, "token")?;
                put_varint(&mut out, *kind, version, "token type")?;
                out.put_slice(value);
            }
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ietf::coding::decode_exact;

    fn body<T: Body>(msg: &T, version: Version) -> Vec<u8> {
        let mut out = Vec::new();
        msg.encode_body(&mut out, version).unwrap();
        out
    }

    #[test]
    fn options_by_draft() {
        let options = SetupOptions {
            path: Some("/anon".into()),
            max_request_id: Some(100),
            ..Default::default()
        };
        let client = ClientSetup {
            versions: vec![Version::Draft14.code()],
            options: options.clone(),
        };
        let d14 = body(&client, Version::Draft14);
        assert_eq!(
            hex::encode(&d14),
            "01c0000000ff00000e02010 52f616e6f6e024064".replace(' ', "")
        );
        assert_eq!(
            decode_exact::<ClientSetup>(&d14, Version::Draft14, "X").unwrap(),
            client
        );
        // 15/16 have no versions; 16 delta-encodes the option types.
        let client = ClientSetup {
            versions: vec![],
            options,
        };
        assert_eq!(
            hex::encode(body(&client, Version::Draft16)),
            "0201052f616e6f6e014064"
        );
        assert!(matches!(
            body_err(&ClientSetup {
                versions: vec![1],
                ..Default::default()
            }),
            EncodeError::NotInDraft { .. }
        ));
    }

    fn body_err<T: Body>(msg: &T) -> EncodeError {
        msg.encode_body(&mut Vec::new(), Version::Draft15).unwrap_err()
    }

    #[test]
    fn unified_setup_has_no_max_request_id() {
        let setup = Setup {
            options: SetupOptions {
                max_request_id: Some(1),
                ..Default::default()
            },
        };
        assert!(matches!(
            setup.encode_body(&mut Vec::new(), Version::Draft17),
            Err(EncodeError::NotInDraft { .. })
        ));
        // On the wire in draft-17+ it is just an unknown even option.
        let got = decode_exact::<Setup>(&[0x02, 0x05], Version::Draft17, "SETUP").unwrap();
        assert_eq!(got.options.max_request_id, None);
        assert_eq!(got.options.other.get_varint(OPTION_MAX_REQUEST_ID), Some(5));
    }

    #[test]
    fn duplicate_known_options_are_refused() {
        // PATH twice (draft-16 delta 0 repeats the type).
        let wire = [2, 0x01, 1, b'a', 0x00, 1, b'b'];
        assert_eq!(
            decode_exact::<ClientSetup>(&wire, Version::Draft16, "CLIENT_SETUP"),
            Err(DecodeError::Duplicate {
                what: "setup options",
                id: 1
            })
        );
        // Unknown ones may repeat.
        let wire = [2, 0x21, 1, b'a', 0x00, 1, b'b'];
        let got = decode_exact::<ClientSetup>(&wire, Version::Draft16, "CLIENT_SETUP").unwrap();
        assert_eq!(got.options.other.len(), 2);
        // A path that is not UTF-8.
        assert_eq!(
            decode_exact::<Setup>(&[0x01, 1, 0xff], Version::Draft17, "SETUP"),
            Err(DecodeError::InvalidUtf8 { what: "setup path" })
        );
    }

    #[test]
    fn tokens() {
        let v = Version::Draft16;
        let jwt = AuthToken::UseValue {
            kind: 0,
            value: Bytes::from_static(b"eyJ"),
        };
        let bytes = jwt.to_bytes(v).unwrap();
        assert_eq!(&bytes[..], b"\x03\x00eyJ");
        assert_eq!(AuthToken::decode(&bytes, v).unwrap(), jwt);
        for token in [
            AuthToken::Delete { alias: 7 },
            AuthToken::UseAlias { alias: 300 },
            AuthToken::Register {
                alias: 1,
                kind: 1,
                value: Bytes::from_static(b"cat"),
            },
        ] {
            assert_eq!(AuthToken::decode(&token.to_bytes(v).unwrap(), v).unwrap(), token);
        }
        assert!(matches!(
            AuthToken::decode(&[4], v),
            Err(DecodeError::UnknownType { .. })
        ));
        assert_eq!(
            AuthToken::decode(&[3], v),
            Err(DecodeError::Truncated { what: "token" })
        );
        assert!(matches!(
            AuthToken::decode(&[0, 1, 2], v),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
}
