//! The Announce stream (type 1): the subscriber sends ANNOUNCE_REQUEST for a
//! prefix; the publisher answers (lite-05+) with ANNOUNCE_OK, then one
//! ANNOUNCE per broadcast that starts or ends under that prefix.
//!
//! ANNOUNCE forms per version:
//! - lite-01/02: the reply opens with ANNOUNCE_INIT `[len][count][suffix…]`,
//!   the broadcasts already active; then `[len][status:u8][suffix]` with no
//!   hop list, status 0 ended, 1 active.
//! - lite-03..05: `[len][status:u8][suffix][hops]`, status 0 ended, 1 active,
//!   2 restart (lite-05 only, treated as a repeated active). lite-03 hops are a
//!   bare count; lite-04+ a count and the ids.
//! - lite-06: typed `[type][len][body]`: 0 START `suffix hops warm cold`,
//!   1 END `id`, 2 RESTART `id hops warm cold`. Each START takes the next
//!   per-stream announce id, counting from 0. Unknown types are skipped by
//!   length so the stream survives a newer peer.

use crate::{
    DecodeError, EncodeError, Hops, Path, Version,
    coding::{
        Body, Decode, Encode, MAX_VARINT, decode_framed, decode_sized, framed_message, get_len, get_u8,
        get_varint, put_body, put_varint,
    },
    limits::{MAX_ANNOUNCE_INIT, MAX_MESSAGE_SIZE},
};

/// ANNOUNCE_REQUEST: "tell me about broadcasts under this prefix".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The prefix, relative to the session root.
    pub prefix: Path,
    /// lite-04/05 only: the subscriber's hop id, so the publisher can skip
    /// routes that already pass through it. 0 means none; ignored elsewhere.
    pub exclude_hop: u64,
}

impl Body for AnnounceRequest {
    const NAME: &'static str = "ANNOUNCE_REQUEST";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let prefix = Path::decode(body, "announce prefix")?;
        let exclude_hop = if version.has_exclude_hop() {
            get_varint(body)?
        } else {
            0
        };
        Ok(Self { prefix, exclude_hop })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        self.prefix.encode(buf, "announce prefix")?;
        if version.has_exclude_hop() {
            put_varint(buf, self.exclude_hop, "exclude hop")?;
        }
        Ok(())
    }
}

framed_message!(AnnounceRequest);

/// ANNOUNCE_OK (lite-05+): the first message on an announce stream's reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnnounceOk {
    /// The publisher's own hop id (0 if it has none). It is the implicit last
    /// hop of every announcement that follows.
    pub origin: u64,
    /// How many ANNOUNCEs follow as the initial set of active broadcasts.
    pub active: u64,
}

impl Body for AnnounceOk {
    const NAME: &'static str = "ANNOUNCE_OK";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_announce_ok() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(Self {
            origin: get_varint(body)?,
            active: get_varint(body)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_announce_ok() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        put_varint(buf, self.origin, "origin")?;
        put_varint(buf, self.active, "active count")
    }
}

framed_message!(AnnounceOk);

/// ANNOUNCE_INIT (lite-01/02): the first message of an announce reply, naming
/// the broadcasts active under the prefix when the request arrived. Each suffix
/// appears once; at most [`MAX_ANNOUNCE_INIT`] of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceInit {
    /// Paths relative to the requested prefix.
    pub suffixes: Vec<Path>,
}

impl Body for AnnounceInit {
    const NAME: &'static str = "ANNOUNCE_INIT";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_announce_init() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let count = get_varint(body)?;
        if count > MAX_ANNOUNCE_INIT as u64 {
            return Err(DecodeError::TooMany {
                what: Self::NAME,
                count,
                max: MAX_ANNOUNCE_INIT as u64,
            });
        }
        // Every suffix takes at least one byte, so the body bounds the count too.
        let mut suffixes = Vec::with_capacity((count as usize).min(body.len()));
        let mut seen = std::collections::HashSet::with_capacity(suffixes.capacity());
        for _ in 0..count {
            let suffix = Path::decode(body, "announce suffix")?;
            if !seen.insert(suffix.clone()) {
                return Err(DecodeError::Invalid {
                    what: Self::NAME,
                    reason: "a suffix appears twice",
                });
            }
            suffixes.push(suffix);
        }
        Ok(Self { suffixes })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_announce_init() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        if self.suffixes.len() > MAX_ANNOUNCE_INIT {
            return Err(EncodeError::TooMany {
                what: Self::NAME,
                count: self.suffixes.len() as u64,
                max: MAX_ANNOUNCE_INIT as u64,
            });
        }
        let mut seen = std::collections::HashSet::with_capacity(self.suffixes.len());
        if !self.suffixes.iter().all(|s| seen.insert(s)) {
            return Err(EncodeError::Invalid {
                what: Self::NAME,
                reason: "a suffix appears twice",
            });
        }
        put_varint(buf, self.suffixes.len() as u64, "announce init count")?;
        for suffix in &self.suffixes {
            suffix.encode(buf, "announce suffix")?;
        }
        Ok(())
    }
}

framed_message!(AnnounceInit);

/// The cost of pulling a broadcast over a route (lite-06), compared `warm`
/// first, then `cold`; lower wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    /// What one more subscription costs given what is already cached.
    pub warm: u64,
    /// The same route priced as if nothing were cached.
    pub cold: u64,
}

impl Cost {
    /// What a peer whose version has no cost field is taken to advertise: free
    /// to reach (so hop count decides) with an unknown cold path.
    pub const UNKNOWN: Cost = Cost {
        warm: 0,
        cold: MAX_VARINT,
    };

    /// Both halves set to `cost`.
    pub const fn new(cost: u64) -> Self {
        Self {
            warm: cost,
            cold: cost,
        }
    }
}

/// One announcement on the Announce stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// A broadcast is available (lite-03..05 status 1, lite-06 START).
    /// On lite-06 it takes the next announce id of the stream.
    Active {
        /// Path relative to the requested prefix.
        suffix: Path,
        /// Relays crossed so far.
        hops: Hops,
        /// Route cost; [`Cost::UNKNOWN`] before lite-06.
        cost: Cost,
    },
    /// A broadcast is gone, named by path (lite-03..05 status 0).
    Ended {
        /// Path relative to the requested prefix.
        suffix: Path,
        /// Relays crossed (as sent; normally the same as when announced).
        hops: Hops,
    },
    /// A broadcast is gone, named by announce id (lite-06 END).
    EndedId {
        /// The id its START was given.
        id: u64,
    },
    /// Replace an announcement's route in place (lite-06 RESTART).
    Restart {
        /// The id its START was given.
        id: u64,
        /// The new hop list.
        hops: Hops,
        /// The new route cost.
        cost: Cost,
    },
    /// A lite-06 announcement type this implementation does not know. Its body
    /// was skipped; it does not take an announce id.
    Unknown {
        /// The type received.
        kind: u64,
    },
}

const START: u64 = 0;
const END: u64 = 1;
const RESTART: u64 = 2;

/// Framing and decoding of the status-byte (lite-03..05) form.
struct Legacy(Announce);

/// Framing and decoding of one typed (lite-06) body, given its type.
struct Typed<const KIND: u64>(Announce);

fn decode_cost(body: &mut &[u8], version: Version) -> Result<Cost, DecodeError> {
    if !version.has_route_cost() {
        return Ok(Cost::UNKNOWN);
    }
    Ok(Cost {
        warm: get_varint(body)?,
        cold: get_varint(body)?,
    })
}

fn encode_cost(buf: &mut Vec<u8>, cost: &Cost, version: Version) -> Result<(), EncodeError> {
    if version.has_route_cost() {
        put_varint(buf, cost.warm, "warm cost")?;
        put_varint(buf, cost.cold, "cold cost")?;
    }
    Ok(())
}

fn encode_legacy(msg: &Announce, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
    let (status, suffix, hops) = match msg {
        Announce::Active { suffix, hops, .. } => (1u8, suffix, hops),
        Announce::Ended { suffix, hops } => (0u8, suffix, hops),
        Announce::EndedId { .. } | Announce::Restart { .. } => {
            return Err(EncodeError::NotInVersion {
                what: "ANNOUNCE by id",
                version,
            });
        }
        Announce::Unknown { .. } => return Err(UNKNOWN_NOT_SENDABLE),
    };
    buf.push(status);
    suffix.encode(buf, "announce suffix")?;
    hops.encode(buf, version)
}

/// Returns the lite-06 type of `msg` after appending its body.
fn encode_typed(msg: &Announce, buf: &mut Vec<u8>, version: Version) -> Result<u64, EncodeError> {
    match msg {
        Announce::Active { suffix, hops, cost } => {
            suffix.encode(buf, "announce suffix")?;
            hops.encode(buf, version)?;
            encode_cost(buf, cost, version)?;
            Ok(START)
        }
        Announce::EndedId { id } => {
            put_varint(buf, *id, "announce id")?;
            Ok(END)
        }
        Announce::Restart { id, hops, cost } => {
            put_varint(buf, *id, "announce id")?;
            hops.encode(buf, version)?;
            encode_cost(buf, cost, version)?;
            Ok(RESTART)
        }
        Announce::Ended { .. } => Err(EncodeError::NotInVersion {
            what: "ANNOUNCE by path",
            version,
        }),
        Announce::Unknown { .. } => Err(UNKNOWN_NOT_SENDABLE),
    }
}

const UNKNOWN_NOT_SENDABLE: EncodeError = EncodeError::Invalid {
    what: "ANNOUNCE",
    reason: "an unknown announcement type cannot be sent",
};

impl Body for Legacy {
    const NAME: &'static str = "ANNOUNCE";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let status = get_u8(body)?;
        let suffix = Path::decode(body, "announce suffix")?;
        let hops = Hops::decode(body, version)?;
        Ok(Self(match status {
            0 => Announce::Ended { suffix, hops },
            1 => Announce::Active {
                suffix,
                hops,
                cost: Cost::UNKNOWN,
            },
            // lite-05's restart re-announces a path that may already be active:
            // the receiver replaces the route, exactly as for a repeated active.
            2 if version.has_announce_restart_status() => Announce::Active {
                suffix,
                hops,
                cost: Cost::UNKNOWN,
            },
            value => {
                return Err(DecodeError::InvalidValue {
                    what: "announce status",
                    value: value.into(),
                });
            }
        }))
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        encode_legacy(&self.0, buf, version)
    }
}

impl<const KIND: u64> Body for Typed<KIND> {
    const NAME: &'static str = "ANNOUNCE";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        Ok(Self(match KIND {
            START => Announce::Active {
                suffix: Path::decode(body, "announce suffix")?,
                hops: Hops::decode(body, version)?,
                cost: decode_cost(body, version)?,
            },
            END => Announce::EndedId {
                id: get_varint(body)?,
            },
            _ => Announce::Restart {
                id: get_varint(body)?,
                hops: Hops::decode(body, version)?,
                cost: decode_cost(body, version)?,
            },
        }))
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        encode_typed(&self.0, buf, version).map(|_| ())
    }
}

impl Decode for Announce {
    fn decode<B: bytes::Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        if !version.has_announce_ids() {
            return decode_framed::<Legacy, B>(buf, version).map(|l| l.0);
        }
        let kind = get_varint(buf)?;
        let size = get_len(buf, "ANNOUNCE", MAX_MESSAGE_SIZE)?;
        Ok(match kind {
            START => decode_sized::<Typed<START>, B>(buf, size, version)?.0,
            END => decode_sized::<Typed<END>, B>(buf, size, version)?.0,
            RESTART => decode_sized::<Typed<RESTART>, B>(buf, size, version)?.0,
            // Skipped by length so a newer peer's additions do not kill the stream.
            _ => {
                if buf.remaining() < size {
                    return Err(DecodeError::Short);
                }
                buf.advance(size);
                Announce::Unknown { kind }
            }
        })
    }
}

impl Encode for Announce {
    fn encode<B: bytes::BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        let mut body = Vec::with_capacity(32);
        if !version.has_announce_ids() {
            encode_legacy(self, &mut body, version)?;
            return put_body::<Legacy, B>(buf, &body);
        }
        let kind = encode_typed(self, &mut body, version)?;
        // Check the size before writing the type, so a failure leaves `buf` untouched.
        if body.len() > MAX_MESSAGE_SIZE {
            return Err(EncodeError::TooLarge {
                what: "ANNOUNCE",
                size: body.len() as u64,
                max: MAX_MESSAGE_SIZE as u64,
            });
        }
        put_varint(buf, kind, "announce type")?;
        put_body::<Typed<START>, B>(buf, &body)
    }
}
