//! Stream headers: the varint type that opens every QUIC stream.
//!
//! moq-lite §Streams: bidirectional streams are control streams opened by the
//! side that wants something (subscribe, announce interest, fetch ...);
//! unidirectional streams carry data (groups) and, from lite-05, SETUP.
//! An unknown type is not fatal: the receiver resets that stream only.

use bytes::{Buf, BufMut};

use crate::{
    DecodeError, EncodeError, Version,
    coding::{Decode, Encode, get_varint, put_varint},
};

/// The type of a bidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlStream {
    /// The Session stream (type 0, lite-01/02 only): opened by the client with
    /// the legacy SETUP, then carries SESSION_INFO for the session's life. On
    /// the wire it is the stream the legacy SETUP arrives on; a second one is a
    /// protocol violation.
    Session,
    /// Announce interest in a prefix and receive ANNOUNCEs (type 1).
    Announce,
    /// Subscribe to a track (type 2).
    Subscribe,
    /// Fetch one group of a track (type 3).
    Fetch,
    /// Bitrate and RTT probing (type 4).
    Probe,
    /// Graceful shutdown notice (type 5, lite-04+).
    Goaway,
    /// Ask for a track's fixed properties (type 6, lite-05+).
    Track,
}

impl ControlStream {
    /// The wire value.
    pub fn code(self) -> u64 {
        match self {
            Self::Session => 0,
            Self::Announce => 1,
            Self::Subscribe => 2,
            Self::Fetch => 3,
            Self::Probe => 4,
            Self::Goaway => 5,
            Self::Track => 6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Session => "session stream",
            Self::Announce => "announce stream",
            Self::Subscribe => "subscribe stream",
            Self::Fetch => "fetch stream",
            Self::Probe => "probe stream",
            Self::Goaway => "goaway stream",
            Self::Track => "track stream",
        }
    }

    /// Whether this stream exists in `version`.
    pub fn exists_in(self, version: Version) -> bool {
        match self {
            Self::Session => version.is_in_band(),
            Self::Announce | Self::Subscribe => true,
            Self::Fetch => version.has_fetch(),
            Self::Probe => version.has_probe(),
            Self::Goaway => version.has_goaway(),
            Self::Track => version.has_track_stream(),
        }
    }
}

impl Decode for ControlStream {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        let kind = match get_varint(buf)? {
            // The lite-01/02 session stream; from lite-03 type 0 is unknown.
            0 if version.is_in_band() => Self::Session,
            1 => Self::Announce,
            2 => Self::Subscribe,
            3 => Self::Fetch,
            4 => Self::Probe,
            5 => Self::Goaway,
            6 => Self::Track,
            value => {
                return Err(DecodeError::UnknownType {
                    what: "control stream",
                    value,
                });
            }
        };
        if !kind.exists_in(version) {
            return Err(DecodeError::NotInVersion {
                what: kind.name(),
                version,
            });
        }
        Ok(kind)
    }
}

impl Encode for ControlStream {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if !self.exists_in(version) {
            return Err(EncodeError::NotInVersion {
                what: self.name(),
                version,
            });
        }
        put_varint(buf, self.code(), "stream type")
    }
}

/// The type of a unidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataStream {
    /// A GROUP header followed by frames (type 0).
    Group,
    /// One SETUP message, then FIN (type 1, lite-05+).
    Setup,
}

impl DataStream {
    /// The wire value.
    pub fn code(self) -> u64 {
        match self {
            Self::Group => 0,
            Self::Setup => 1,
        }
    }
}

impl Decode for DataStream {
    fn decode<B: Buf>(buf: &mut B, version: Version) -> Result<Self, DecodeError> {
        match get_varint(buf)? {
            0 => Ok(Self::Group),
            1 if version.has_setup_stream() => Ok(Self::Setup),
            1 => Err(DecodeError::NotInVersion {
                what: "setup stream",
                version,
            }),
            value => Err(DecodeError::UnknownType {
                what: "data stream",
                value,
            }),
        }
    }
}

impl Encode for DataStream {
    fn encode<B: BufMut>(&self, buf: &mut B, version: Version) -> Result<(), EncodeError> {
        if *self == Self::Setup && !version.has_setup_stream() {
            return Err(EncodeError::NotInVersion {
                what: "setup stream",
                version,
            });
        }
        put_varint(buf, self.code(), "stream type")
    }
}
