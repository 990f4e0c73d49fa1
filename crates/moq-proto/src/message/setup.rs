//! SETUP (lite-05+): the single message on each side's unidirectional Setup
//! stream. Neither side waits for the peer's SETUP before opening streams.
//!
//! Wire: `[len] [count] { [id] [len] [value] }`, at most 64 parameters, no
//! duplicate ids. Known parameters: 0x1 Probe level, 0x2 Path (client only:
//! path and `?query` on transports without a URL), 0x3 Role (client only),
//! 0x4 Cost (the sender's link cost), 0x5 Origin (the sender's hop id).
//! Unknown parameters are kept so a relay can see, log or ignore them.

use bytes::Bytes;

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Body, framed_message, get_len, get_varint, put_varint},
    limits::{MAX_PARAMETERS, MAX_SETUP_SIZE},
};

const PROBE: u64 = 0x1;
const PATH: u64 = 0x2;
const ROLE: u64 = 0x3;
const COST: u64 = 0x4;
const ORIGIN: u64 = 0x5;

/// How much bandwidth probing an endpoint supports. Levels are ordered: a
/// higher one implies the lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum ProbeLevel {
    /// No probing (also what an absent parameter means).
    #[default]
    None,
    /// Can measure and report bitrate and RTT.
    Report,
    /// Can also pad the connection to probe for more bandwidth. Unknown future
    /// levels decode as this one.
    Increase,
}

/// The one direction a client means to use the session for; absent means both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The client will only publish.
    Publisher,
    /// The client will only subscribe.
    Subscriber,
}

/// The SETUP message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Probe capability. [`ProbeLevel::None`] is sent as an absent parameter.
    pub probe: ProbeLevel,
    /// Request path and query, for raw QUIC where no URL exists. Client only.
    pub path: Option<String>,
    /// The client's single intended direction, or `None` for both.
    pub role: Option<Role>,
    /// The sender's link cost (lite-06 semantics; `None` means 1).
    pub cost: Option<u64>,
    /// The sender's hop id; 0 on the wire decodes as `None`.
    pub origin: Option<u64>,
    /// Parameters this implementation does not interpret, by id.
    pub unknown: Vec<(u64, Bytes)>,
}

fn varint_value(id: u64, value: &[u8]) -> Result<u64, DecodeError> {
    let mut cursor = value;
    let v = get_varint(&mut cursor).map_err(|e| e.within("setup parameter"))?;
    if !cursor.is_empty() {
        return Err(DecodeError::InvalidValue {
            what: "setup parameter",
            value: id,
        });
    }
    Ok(v)
}

fn put_param(buf: &mut Vec<u8>, id: u64, value: &[u8]) -> Result<(), EncodeError> {
    put_varint(buf, id, "setup parameter id")?;
    put_varint(buf, value.len() as u64, "setup parameter")?;
    buf.extend_from_slice(value);
    Ok(())
}

fn put_varint_param(buf: &mut Vec<u8>, id: u64, value: u64) -> Result<(), EncodeError> {
    let mut v = Vec::with_capacity(8);
    put_varint(&mut v, value, "setup parameter")?;
    put_param(buf, id, &v)
}

impl Body for Setup {
    const NAME: &'static str = "SETUP";
    const MAX_SIZE: usize = MAX_SETUP_SIZE;

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_setup_stream() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let count = get_varint(body)?;
        if count > MAX_PARAMETERS as u64 {
            return Err(DecodeError::TooMany {
                what: "setup parameters",
                count,
                max: MAX_PARAMETERS as u64,
            });
        }
        let mut setup = Setup::default();
        let mut seen: Vec<u64> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = get_varint(body)?;
            if seen.contains(&id) {
                return Err(DecodeError::Duplicate {
                    what: "setup parameters",
                    id,
                });
            }
            seen.push(id);
            let len = get_len(body, "setup parameter", MAX_SETUP_SIZE)?;
            let (value, rest) = body.split_at_checked(len).ok_or(DecodeError::Short)?;
            *body = rest;
            match id {
                PROBE => {
                    setup.probe = match varint_value(id, value)? {
                        0 => ProbeLevel::None,
                        1 => ProbeLevel::Report,
                        _ => ProbeLevel::Increase,
                    }
                }
                PATH => {
                    let path = std::str::from_utf8(value)
                        .map_err(|_| DecodeError::InvalidUtf8 { what: "setup path" })?;
                    setup.path = Some(path.to_string());
                }
                // Unknown roles mean "both directions" (draft: a receiver that does
                // not recognise the value treats it as bidirectional).
                ROLE => {
                    setup.role = match varint_value(id, value)? {
                        1 => Some(Role::Publisher),
                        2 => Some(Role::Subscriber),
                        _ => None,
                    }
                }
                COST => setup.cost = Some(varint_value(id, value)?),
                ORIGIN => setup.origin = Some(varint_value(id, value)?).filter(|id| *id != 0),
                _ => setup.unknown.push((id, Bytes::copy_from_slice(value))),
            }
        }
        Ok(setup)
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_setup_stream() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let mut params = Vec::new();
        match self.probe {
            ProbeLevel::None => {}
            ProbeLevel::Report => put_varint_param(&mut params, PROBE, 1)?,
            ProbeLevel::Increase => put_varint_param(&mut params, PROBE, 2)?,
        }
        if let Some(path) = &self.path {
            put_param(&mut params, PATH, path.as_bytes())?;
        }
        if let Some(role) = self.role {
            let code = match role {
                Role::Publisher => 1,
                Role::Subscriber => 2,
            };
            put_varint_param(&mut params, ROLE, code)?;
        }
        if let Some(cost) = self.cost {
            put_varint_param(&mut params, COST, cost)?;
        }
        if let Some(origin) = self.origin {
            if origin == 0 {
                return Err(EncodeError::Invalid {
                    what: Self::NAME,
                    reason: "origin hop id 0 means none; use None",
                });
            }
            put_varint_param(&mut params, ORIGIN, origin)?;
        }
        let mut ids: Vec<u64> = Vec::with_capacity(self.unknown.len());
        for (id, value) in &self.unknown {
            if (PROBE..=ORIGIN).contains(id) || ids.contains(id) {
                return Err(EncodeError::Invalid {
                    what: Self::NAME,
                    reason: "unknown parameter reuses a known or repeated id",
                });
            }
            ids.push(*id);
            put_param(&mut params, *id, value)?;
        }
        let known = [
            self.probe != ProbeLevel::None,
            self.path.is_some(),
            self.role.is_some(),
            self.cost.is_some(),
            self.origin.is_some(),
        ];
        let count = known.iter().filter(|present| **present).count();
        let count = count.saturating_add(self.unknown.len()) as u64;
        if count > MAX_PARAMETERS as u64 {
            return Err(EncodeError::TooMany {
                what: "setup parameters",
                count,
                max: MAX_PARAMETERS as u64,
            });
        }
        put_varint(buf, count, "setup parameter count")?;
        buf.extend_from_slice(&params);
        Ok(())
    }
}

framed_message!(Setup);
