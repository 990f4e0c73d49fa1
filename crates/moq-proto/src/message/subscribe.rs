//! The Subscribe stream (type 2): SUBSCRIBE, then SUBSCRIBE_UPDATEs from the
//! subscriber; typed responses from the publisher.
//!
//! Field layout (moq-lite §SUBSCRIBE, as implemented by moq-net 0.3.18):
//! - lite-01/02: `id broadcast track priority:u8` and nothing more: no
//!   latency, no range (the publisher starts at the latest group).
//! - lite-03..05: `id broadcast track priority:u8 ordered:u8 max_latency(ms)
//!   start(optional) end(optional)`, where optional means 0 = none, else n+1,
//!   and an absent start means "the latest group".
//! - lite-06: no `ordered` byte; the start group is a raw floor (0 and absent
//!   are the same); `start_frame end_frame(optional)` follow.
//!
//! Responses: lite-01/02 one untyped SUBSCRIBE_OK `[len]` whose body is the
//! publisher priority (lite-01) or empty (lite-02); no SUBSCRIBE_UPDATE, no
//! SUBSCRIBE_DROP. lite-03/04 `[type][len][body]` with 0 SUBSCRIBE_OK, 1
//! SUBSCRIBE_DROP; lite-05/06 0 SUBSCRIBE_START, 1 SUBSCRIBE_END, 2
//! SUBSCRIBE_DROP. A rejected subscription is a stream reset, not a message.

use std::time::Duration;

use crate::{
    DecodeError, EncodeError, Path, Version,
    coding::{
        Body, Decode, Encode, decode_framed, framed_message, get_millis, get_optional, get_string, get_u8,
        get_varint, put_body, put_millis, put_optional, put_string, put_varint,
    },
    limits::MAX_NAME_BYTES,
};

/// The part of SUBSCRIBE and SUBSCRIBE_UPDATE that says which groups and
/// frames to deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// First group to deliver. `None` means the latest group (lite-03..05) or
    /// "no floor: start from what max latency allows" (lite-06).
    pub start_group: Option<u64>,
    /// Last group to deliver (inclusive), or `None` for no end.
    pub end_group: Option<u64>,
    /// First frame within `start_group` (lite-06; 0 is the whole group).
    pub start_frame: u64,
    /// Last frame within `end_group`, inclusive (lite-06), or `None` for all.
    pub end_frame: Option<u64>,
}

impl Range {
    fn decode(body: &mut &[u8], version: Version, what: &'static str) -> Result<Self, DecodeError> {
        let start_group = if version.has_raw_start_group() {
            Some(get_varint(body)?)
        } else {
            get_optional(body)?
        };
        let end_group = get_optional(body)?;
        let (start_frame, end_frame) = if version.has_frame_bounds() {
            (get_varint(body)?, get_optional(body)?)
        } else {
            (0, None)
        };
        if (start_frame != 0 && start_group.is_none()) || (end_frame.is_some() && end_group.is_none()) {
            return Err(DecodeError::Invalid {
                what,
                reason: "a frame bound needs the group it qualifies",
            });
        }
        // lite-06: a floor of 0 with no frame offset constrains nothing.
        let start_group = match (start_group, start_frame) {
            (Some(0), 0) if version.has_raw_start_group() => None,
            (start, _) => start,
        };
        Ok(Self {
            start_group,
            end_group,
            start_frame,
            end_frame,
        })
    }

    fn encode(&self, buf: &mut Vec<u8>, version: Version, what: &'static str) -> Result<(), EncodeError> {
        if (self.start_frame != 0 && self.start_group.is_none())
            || (self.end_frame.is_some() && self.end_group.is_none())
        {
            return Err(EncodeError::Invalid {
                what,
                reason: "a frame bound needs the group it qualifies",
            });
        }
        if version.has_raw_start_group() {
            put_varint(buf, self.start_group.unwrap_or(0), "start group")?;
        } else {
            put_optional(buf, self.start_group, "start group")?;
        }
        put_optional(buf, self.end_group, "end group")?;
        if version.has_frame_bounds() {
            put_varint(buf, self.start_frame, "start frame")?;
            put_optional(buf, self.end_frame, "end frame")?;
        } else if self.start_frame != 0 || self.end_frame.is_some() {
            // Silently widening to whole groups would deliver frames the caller excluded.
            return Err(EncodeError::NotInVersion {
                what: "frame bounds",
                version,
            });
        }
        Ok(())
    }
}

fn get_ordered(body: &mut &[u8], version: Version) -> Result<bool, DecodeError> {
    // Peers write 0; any non-zero value reads as "ordered".
    Ok(version.has_ordered() && get_u8(body)? != 0)
}

fn put_ordered(buf: &mut Vec<u8>, ordered: bool, version: Version) {
    if version.has_ordered() {
        buf.push(u8::from(ordered));
    }
}

/// SUBSCRIBE: the first message on a Subscribe stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribe {
    /// Subscriber-chosen id, echoed in GROUP headers and datagrams.
    pub id: u64,
    /// Broadcast path, relative to the session root.
    pub broadcast: Path,
    /// Track name.
    pub track: String,
    /// Subscriber priority: higher is delivered first.
    pub priority: u8,
    /// Deliver groups in ascending order (lite-03..05 only; lite-06 dropped it).
    pub ordered: bool,
    /// How old a group may get before it is skipped (0 = only the latest).
    pub max_latency: Duration,
    /// Which groups and frames to deliver.
    pub range: Range,
}

impl Body for Subscribe {
    const NAME: &'static str = "SUBSCRIBE";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        let mut subscribe = Self {
            id: get_varint(body)?,
            broadcast: Path::decode(body, "broadcast")?,
            track: get_string(body, "track name", MAX_NAME_BYTES)?,
            priority: get_u8(body)?,
            ..Default::default()
        };
        if version.has_subscribe_range() {
            subscribe.ordered = get_ordered(body, version)?;
            subscribe.max_latency = get_millis(body)?;
            subscribe.range = Range::decode(body, version, Self::NAME)?;
        }
        Ok(subscribe)
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.id, "subscribe id")?;
        self.broadcast.encode(buf, "broadcast")?;
        put_string(buf, &self.track, "track name", MAX_NAME_BYTES)?;
        buf.push(self.priority);
        if !version.has_subscribe_range() {
            // Latency and order are preferences the peer may ignore; a range is
            // not: dropping it would deliver groups the caller excluded.
            if self.range != Range::default() {
                return Err(EncodeError::NotInVersion {
                    what: "subscribe range",
                    version,
                });
            }
            return Ok(());
        }
        put_ordered(buf, self.ordered, version);
        put_millis(buf, self.max_latency, "max latency")?;
        self.range.encode(buf, version, Self::NAME)
    }
}

framed_message!(Subscribe);

/// SUBSCRIBE_UPDATE: change a live subscription's preferences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeUpdate {
    /// New subscriber priority.
    pub priority: u8,
    /// New ordering preference (lite-03..05 only).
    pub ordered: bool,
    /// New max latency.
    pub max_latency: Duration,
    /// New range.
    pub range: Range,
}

impl Body for SubscribeUpdate {
    const NAME: &'static str = "SUBSCRIBE_UPDATE";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_range() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        Ok(Self {
            priority: get_u8(body)?,
            ordered: get_ordered(body, version)?,
            max_latency: get_millis(body)?,
            range: Range::decode(body, version, Self::NAME)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_subscribe_range() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        buf.push(self.priority);
        put_ordered(buf, self.ordered, version);
        put_millis(buf, self.max_latency, "max latency")?;
        self.range.encode(buf, version, Self::NAME)
    }
}

framed_message!(SubscribeUpdate);

/// SUBSCRIBE_OK (lite-01 to lite-04): the publisher accepts and states its
/// view. lite-01 carries only the priority and lite-02 nothing: the other
/// fields decode as their defaults there and are not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOk {
    /// Publisher priority for the track (lite-01, lite-03/04).
    pub priority: u8,
    /// Publisher ordering (lite-03/04).
    pub ordered: bool,
    /// Publisher max latency (lite-03/04).
    pub max_latency: Duration,
    /// Resolved first group, if known (lite-03/04).
    pub start_group: Option<u64>,
    /// Resolved last group, if known (lite-03/04).
    pub end_group: Option<u64>,
}

impl Body for SubscribeOk {
    const NAME: &'static str = "SUBSCRIBE_OK";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        match version {
            Version::Lite01 => {
                return Ok(Self {
                    priority: get_u8(body)?,
                    ..Default::default()
                });
            }
            Version::Lite02 => return Ok(Self::default()),
            _ => {}
        }
        Ok(Self {
            priority: get_u8(body)?,
            ordered: get_ordered(body, version)?,
            max_latency: get_millis(body)?,
            start_group: get_optional(body)?,
            end_group: get_optional(body)?,
        })
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        match version {
            Version::Lite01 => {
                buf.push(self.priority);
                return Ok(());
            }
            Version::Lite02 => return Ok(()),
            _ => {}
        }
        buf.push(self.priority);
        put_ordered(buf, self.ordered, version);
        put_millis(buf, self.max_latency, "max latency")?;
        put_optional(buf, self.start_group, "start group")?;
        put_optional(buf, self.end_group, "end group")
    }
}

/// SUBSCRIBE_DROP: groups `start..=end` will not be delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeDrop {
    /// First dropped group.
    pub start: u64,
    /// Last dropped group (inclusive).
    pub end: u64,
    /// Application error code; 0 means the groups are simply unavailable.
    pub error: u64,
}

impl Body for SubscribeDrop {
    const NAME: &'static str = "SUBSCRIBE_DROP";

    fn decode_body(body: &mut &[u8], version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_range() {
            return Err(DecodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        let drop = Self {
            start: get_varint(body)?,
            end: get_varint(body)?,
            error: get_varint(body)?,
        };
        if drop.end < drop.start {
            return Err(DecodeError::Invalid {
                what: Self::NAME,
                reason: "range ends before it starts",
            });
        }
        Ok(drop)
    }

    fn encode_body(&self, buf: &mut Vec<u8>, version: Version) -> Result<(), EncodeError> {
        if !version.has_subscribe_range() {
            return Err(EncodeError::NotInVersion {
                what: Self::NAME,
                version,
            });
        }
        if self.end < self.start {
            return Err(EncodeError::Invalid {
                what: Self::NAME,
                reason: "range ends before it starts",
            });
        }
        put_varint(buf, self.start, "drop start")?;
        put_varint(buf, self.end, "drop end")?;
        put_varint(buf, self.error, "drop error")
    }
}

/// A group number body (SUBSCRIBE_START / SUBSCRIBE_END).
struct GroupBody<const END: bool>(u64);

impl<const END: bool> Body for GroupBody<END> {
    const NAME: &'static str = if END { "SUBSCRIBE_END" } else { "SUBSCRIBE_START" };

    fn decode_body(body: &mut &[u8], _: Version) -> Result<Self, DecodeError> {
        Ok(Self(get_varint(body)?))
    }

    fn encode_body(&self, buf: &mut Vec<u8>, _: Version) -> Result<(), EncodeError> {
        put_varint(buf, self.0, "group")
    }
}

/// A publisher's message on a Subscribe stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeResponse {
    /// SUBSCRIBE_OK (lite-01 to lite-04; untyped on lite-01/02).
    Ok(SubscribeOk),
    /// SUBSCRIBE_START (lite-05+): the resolved absolute first group.
    Start {
        /// The first group that will be delivered.
        group: u64,
    },
    /// SUBSCRIBE_END (lite-05+): no group at or after `group` will come.
    End {
        /// The exclusive end.
        group: u64,
    },
    /// SUBSCRIBE_DROP (lite-03+).
    Drop(SubscribeDrop),
}

impl SubscribeResponse {
    fn name(&self) -> &'static str {
        match self {
            Self::Ok(_) => SubscribeOk::NAME,
            Self::Start { .. } => "SUBSCRIBE_START",
            Self::End { .. } => "SUBSCRIBE_END",
            Self::Drop(_) => SubscribeDrop::NAME,
        }
    }

    /// The wire type in `version`, if the message exists there.
    fn kind(&self, version: Version) -> Option<u64> {
        match (self, version.has_track_stream()) {
            (Self::Ok(_), false) => Some(0),
            (Self::Drop(_), false) => Some(1),
            (Self::Start { .. }, true) => Some(0),
            (Self::End { .. }, true) => Some(1),
            (Self::Drop(_), true) => Some(2),
            _ => None,
        }
    }
}

impl Decode for SubscribeResponse {
    fn decode<B: bytes::Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        if !version.has_subscribe_range() {
            return Ok(Self::Ok(decode_framed::<SubscribeOk, B>(buf, version)?));
        }
        let kind = get_varint(buf)?;
        let modern = version.has_track_stream();
        Ok(match (kind, modern) {
            (0, false) => Self::Ok(decode_framed::<SubscribeOk, B>(buf, version)?),
            (1, false) | (2, true) => Self::Drop(decode_framed::<SubscribeDrop, B>(buf, version)?),
            (0, true) => Self::Start {
                group: decode_framed::<GroupBody<false>, B>(buf, version)?.0,
            },
            (1, true) => Self::End {
                group: decode_framed::<GroupBody<true>, B>(buf, version)?.0,
            },
            (value, _) => {
                return Err(DecodeError::UnknownType {
                    what: "subscribe response",
                    value,
                });
            }
        })
    }
}

impl Encode for SubscribeResponse {
    fn encode<B: bytes::BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if !version.has_subscribe_range() {
            return match self {
                Self::Ok(ok) => crate::coding::encode_framed(ok, buf, version),
                _ => Err(EncodeError::NotInVersion {
                    what: self.name(),
                    version,
                }),
            };
        }
        let kind = self.kind(version).ok_or(EncodeError::NotInVersion {
            what: self.name(),
            version,
        })?;
        let mut body = Vec::with_capacity(16);
        match self {
            Self::Ok(ok) => ok.encode_body(&mut body, version)?,
            Self::Drop(drop) => drop.encode_body(&mut body, version)?,
            Self::Start { group } | Self::End { group } => put_varint(&mut body, *group, "group")?,
        }
        put_varint(buf, kind, "subscribe response type")?;
        put_body::<SubscribeOk, B>(buf, &body)
    }
}
