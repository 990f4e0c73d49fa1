//! The qmux frame codec: QUIC frames (RFC 9000 §19) plus the QMux additions
//! (`QX_TRANSPORT_PARAMETERS`, `QX_PING`), as `@moq/qmux` 0.3 and the `qmux`
//! crate put them on the wire.
//!
//! A WebSocket binary message is one QMux record: on qmux-01 one or more frames
//! back to back, on qmux-00 exactly one frame. This file is sans-IO: it turns
//! bytes into [`Frame`]s and back, and never panics on what a peer sends.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use moq_proto::coding::{MAX_VARINT, get_varint, put_varint, varint_len};

/// `PADDING`: one byte, ignored.
const PADDING: u64 = 0x00;
/// `RESET_STREAM`: stream id, error code, final size.
const RESET_STREAM: u64 = 0x04;
/// `STOP_SENDING`: stream id, error code.
const STOP_SENDING: u64 = 0x05;
/// `STREAM` frames are 0x08..=0x0f; the low bits say which fields follow.
const STREAM: u64 = 0x08;
const STREAM_OFF: u64 = 0x04;
const STREAM_LEN: u64 = 0x02;
const STREAM_FIN: u64 = 0x01;
const MAX_DATA: u64 = 0x10;
const MAX_STREAM_DATA: u64 = 0x11;
const MAX_STREAMS_BIDI: u64 = 0x12;
const MAX_STREAMS_UNI: u64 = 0x13;
const DATA_BLOCKED: u64 = 0x14;
const STREAM_DATA_BLOCKED: u64 = 0x15;
const STREAMS_BLOCKED_BIDI: u64 = 0x16;
const STREAMS_BLOCKED_UNI: u64 = 0x17;
/// `CONNECTION_CLOSE` (transport error): code, causing frame type, reason.
const CONNECTION_CLOSE: u64 = 0x1c;
/// `CONNECTION_CLOSE` (application): code, reason. Called APPLICATION_CLOSE by the ecosystem.
const APPLICATION_CLOSE: u64 = 0x1d;
/// `RESET_STREAM_AT` (draft-ietf-quic-reliable-stream-reset), legal only where
/// the receiver advertised `reset_stream_at` (we never do).
const RESET_STREAM_AT: u64 = 0x24;
/// `DATAGRAM` without a length: the payload runs to the end of the record.
const DATAGRAM: u64 = 0x30;
/// `DATAGRAM` with a length.
const DATAGRAM_LEN: u64 = 0x31;
/// `QX_TRANSPORT_PARAMETERS`: the first frame each side sends.
const TRANSPORT_PARAMETERS: u64 = 0x3f51_5330_0d0a_0d0a;
/// `QX_PING` request and response (qmux-01): a sequence number, echoed.
const PING_REQUEST: u64 = 0x348c_6752_9ef8_c7bd;
const PING_RESPONSE: u64 = 0x348c_6752_9ef8_c7be;

/// Transport parameter ids (RFC 9000 §18.2 and the QMux draft).
const PARAM_IDLE_TIMEOUT: u64 = 0x01;
const PARAM_MAX_DATA: u64 = 0x04;
const PARAM_STREAM_DATA_BIDI_LOCAL: u64 = 0x05;
const PARAM_STREAM_DATA_BIDI_REMOTE: u64 = 0x06;
const PARAM_STREAM_DATA_UNI: u64 = 0x07;
const PARAM_STREAMS_BIDI: u64 = 0x08;
const PARAM_STREAMS_UNI: u64 = 0x09;
const PARAM_MAX_DATAGRAM_FRAME: u64 = 0x20;
const PARAM_RESET_STREAM_AT: u64 = 0x1d;
const PARAM_MAX_RECORD_SIZE: u64 = 0x0571_c594_29cd_0845;
/// In-band ALPN, only for transports without their own (TCP); never valid over WebSocket.
const PARAM_APPLICATION_PROTOCOLS: u64 = 0x3d4f_9c2a_8b1e_6075;

/// The `max_record_size` a peer is assumed to have until it says otherwise, and the
/// smallest it may advertise (QMux draft-01).
pub const DEFAULT_MAX_RECORD_SIZE: u64 = 16382;

/// One QMux frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream data at `offset`; `fin` ends the stream after it.
    Stream {
        /// The stream id (RFC 9000 §2.1 layout).
        id: u64,
        /// The offset of `data` in the stream.
        offset: u64,
        /// The payload, possibly empty.
        data: Bytes,
        /// Whether this is the last data of the stream.
        fin: bool,
    },
    /// The sender abandoned a stream.
    ResetStream {
        /// The stream id.
        id: u64,
        /// The application error code.
        code: u64,
        /// How many bytes the sender had sent.
        final_size: u64,
    },
    /// The receiver wants no more data on a stream.
    StopSending {
        /// The stream id.
        id: u64,
        /// The application error code.
        code: u64,
    },
    /// Connection-level receive credit (cumulative bytes).
    MaxData(u64),
    /// Stream-level receive credit (cumulative bytes).
    MaxStreamData {
        /// The stream id.
        id: u64,
        /// The new limit.
        max: u64,
    },
    /// How many bidirectional streams the peer may open in total.
    MaxStreamsBidi(u64),
    /// How many unidirectional streams the peer may open in total.
    MaxStreamsUni(u64),
    /// Informational: the sender is blocked on connection credit.
    DataBlocked(u64),
    /// Informational: the sender is blocked on a stream's credit.
    StreamDataBlocked {
        /// The stream id.
        id: u64,
        /// The limit it hit.
        limit: u64,
    },
    /// Informational: the sender cannot open more bidirectional streams.
    StreamsBlockedBidi(u64),
    /// Informational: the sender cannot open more unidirectional streams.
    StreamsBlockedUni(u64),
    /// The sender closed the connection because of a transport error.
    ConnectionClose {
        /// The transport error code (the ecosystem sends 1002 for a protocol violation).
        code: u64,
        /// The frame type that caused it (0 when unknown).
        frame_type: u64,
        /// Why, for people.
        reason: Bytes,
    },
    /// The application closed the connection.
    ApplicationClose {
        /// The application's code.
        code: u64,
        /// Why, for people.
        reason: Bytes,
    },
    /// The sender's transport parameters.
    TransportParameters(TransportParams),
    /// A keep-alive request; the receiver echoes the sequence.
    PingRequest(u64),
    /// The echo of a keep-alive request.
    PingResponse(u64),
    /// An unreliable datagram.
    Datagram(Bytes),
}

/// Why a record could not be decoded. Every variant is fatal to the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame ended before one of its fields.
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    /// A frame type this implementation does not know.
    #[error("unknown frame type 0x{0:x}")]
    UnknownFrame(u64),
    /// `RESET_STREAM_AT` arrived, but we never advertised `reset_stream_at`.
    #[error("RESET_STREAM_AT without the reset_stream_at transport parameter")]
    ResetStreamAt,
    /// The transport parameters were malformed or not allowed.
    #[error("transport parameters: {0}")]
    Params(String),
}

/// The transport parameters a side announces in `QX_TRANSPORT_PARAMETERS`.
///
/// Zero values are not encoded (they are the defaults); `max_record_size` decodes to
/// [`DEFAULT_MAX_RECORD_SIZE`] when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportParams {
    /// Milliseconds of silence after which the sender drops the connection (0: none).
    pub max_idle_timeout: u64,
    /// Connection receive credit, bytes.
    pub initial_max_data: u64,
    /// Receive credit on bidirectional streams the sender opens, bytes.
    pub initial_max_stream_data_bidi_local: u64,
    /// Receive credit on bidirectional streams the peer opens, bytes.
    pub initial_max_stream_data_bidi_remote: u64,
    /// Receive credit on unidirectional streams the peer opens, bytes.
    pub initial_max_stream_data_uni: u64,
    /// Bidirectional streams the peer may open.
    pub initial_max_streams_bidi: u64,
    /// Unidirectional streams the peer may open.
    pub initial_max_streams_uni: u64,
    /// The largest DATAGRAM frame the sender accepts (0: no datagrams).
    pub max_datagram_frame_size: u64,
    /// The largest record (WebSocket message) the sender accepts.
    pub max_record_size: u64,
    /// The sender accepts `RESET_STREAM_AT`.
    pub reset_stream_at: bool,
}

impl Default for TransportParams {
    fn default() -> Self {
        Self {
            max_idle_timeout: 0,
            initial_max_data: 0,
            initial_max_stream_data_bidi_local: 0,
            initial_max_stream_data_bidi_remote: 0,
            initial_max_stream_data_uni: 0,
            initial_max_streams_bidi: 0,
            initial_max_streams_uni: 0,
            max_datagram_frame_size: 0,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            reset_stream_at: false,
        }
    }
}

impl TransportParams {
    /// Append the parameter list (without the frame header).
    fn encode_body(&self, buf: &mut BytesMut) {
        for (id, value) in [
            (PARAM_IDLE_TIMEOUT, self.max_idle_timeout),
            (PARAM_MAX_DATA, self.initial_max_data),
            (
                PARAM_STREAM_DATA_BIDI_LOCAL,
                self.initial_max_stream_data_bidi_local,
            ),
            (
                PARAM_STREAM_DATA_BIDI_REMOTE,
                self.initial_max_stream_data_bidi_remote,
            ),
            (PARAM_STREAM_DATA_UNI, self.initial_max_stream_data_uni),
            (PARAM_STREAMS_BIDI, self.initial_max_streams_bidi),
            (PARAM_STREAMS_UNI, self.initial_max_streams_uni),
            (PARAM_MAX_DATAGRAM_FRAME, self.max_datagram_frame_size),
            (PARAM_MAX_RECORD_SIZE, self.max_record_size),
        ] {
            if value == 0 {
                continue;
            }
            let value = value.min(MAX_VARINT);
            put(buf, id);
            put(buf, varint_len(value) as u64);
            put(buf, value);
        }
        if self.reset_stream_at {
            put(buf, PARAM_RESET_STREAM_AT);
            put(buf, 0);
        }
    }

    /// Decode a parameter list. Unknown ids are skipped (RFC 9000 §18.1); known ones
    /// may appear once; QUIC-only ids and in-band ALPN are refused.
    fn decode_body(mut body: Bytes) -> Result<Self, WireError> {
        let bad = |detail: String| WireError::Params(detail);
        let mut params = Self::default();
        let mut seen: Vec<u64> = Vec::new();
        while body.has_remaining() {
            let id = get_varint(&mut body).map_err(|_| bad("truncated parameter id".into()))?;
            let len = get_varint(&mut body).map_err(|_| bad("truncated parameter length".into()))?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if body.remaining() < len {
                return Err(bad(format!("parameter 0x{id:x} is longer than the frame")));
            }
            let mut value = body.split_to(len);

            let known = matches!(
                id,
                PARAM_IDLE_TIMEOUT
                    | PARAM_MAX_DATA
                    | PARAM_STREAM_DATA_BIDI_LOCAL
                    | PARAM_STREAM_DATA_BIDI_REMOTE
                    | PARAM_STREAM_DATA_UNI
                    | PARAM_STREAMS_BIDI
                    | PARAM_STREAMS_UNI
                    | PARAM_MAX_DATAGRAM_FRAME
                    | PARAM_MAX_RECORD_SIZE
                    | PARAM_RESET_STREAM_AT
                    | PARAM_APPLICATION_PROTOCOLS
            );
            if known {
                if seen.contains(&id) {
                    return Err(bad(format!("parameter 0x{id:x} appears twice")));
                }
                seen.push(id);
            }
            match id {
                PARAM_APPLICATION_PROTOCOLS => {
                    return Err(bad(
                        "application_protocols is not allowed over WebSocket (the subprotocol is the ALPN)"
                            .into(),
                    ));
                }
                PARAM_RESET_STREAM_AT => {
                    if value.has_remaining() {
                        return Err(bad("reset_stream_at must be empty".into()));
                    }
                    params.reset_stream_at = true;
                    continue;
                }
                // QUIC-only parameters (connection ids, tokens, ack tuning, migration)
                // have no meaning in QMux, which forbids them.
                0x00 | 0x02 | 0x03 | 0x0a..=0x10 => {
                    return Err(bad(format!("QUIC-only parameter 0x{id:x}")));
                }
                _ if !known => continue,
                _ => {}
            }

            let v = get_varint(&mut value).map_err(|_| bad(format!("parameter 0x{id:x} is not a varint")))?;
            if value.has_remaining() {
                return Err(bad(format!("parameter 0x{id:x} has trailing bytes")));
            }
            match id {
                PARAM_IDLE_TIMEOUT => params.max_idle_timeout = v,
                PARAM_MAX_DATA => params.initial_max_data = v,
                PARAM_STREAM_DATA_BIDI_LOCAL => params.initial_max_stream_data_bidi_local = v,
                PARAM_STREAM_DATA_BIDI_REMOTE => params.initial_max_stream_data_bidi_remote = v,
                PARAM_STREAM_DATA_UNI => params.initial_max_stream_data_uni = v,
                PARAM_STREAMS_BIDI => params.initial_max_streams_bidi = v,
                PARAM_STREAMS_UNI => params.initial_max_streams_uni = v,
                PARAM_MAX_DATAGRAM_FRAME => params.max_datagram_frame_size = v,
                _ => params.max_record_size = v,
            }
        }
        Ok(params)
    }
}

/// Append a varint; values above 2^62 - 1 are clamped (callers never produce them).
fn put(buf: &mut BytesMut, value: u64) {
    // Cannot fail once clamped: the only error is a value out of range.
    let _ = put_varint(buf, value.min(MAX_VARINT), "qmux");
}

fn get(buf: &mut Bytes, frame: &'static str) -> Result<u64, WireError> {
    get_varint(buf).map_err(|_| WireError::Truncated(frame))
}

/// `len` bytes off the front of `buf`, refusing a length that runs past the end.
fn take(buf: &mut Bytes, len: u64, frame: &'static str) -> Result<Bytes, WireError> {
    let len = usize::try_from(len).map_err(|_| WireError::Truncated(frame))?;
    if buf.remaining() < len {
        return Err(WireError::Truncated(frame));
    }
    Ok(buf.split_to(len))
}

/// A varint length, then that many bytes.
fn get_prefixed(buf: &mut Bytes, frame: &'static str) -> Result<Bytes, WireError> {
    let len = get(buf, frame)?;
    take(buf, len, frame)
}

/// Append varints: a frame type and its fields.
fn put_all(buf: &mut BytesMut, values: &[u64]) {
    for value in values {
        put(buf, *value);
    }
}

/// Append varints, then `bytes` with a varint length in front.
fn put_with_bytes(buf: &mut BytesMut, values: &[u64], bytes: &[u8]) {
    put_all(buf, values);
    put(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// The bytes of a STREAM frame header carrying `len` payload bytes.
pub(crate) fn stream_header_len(id: u64, offset: u64, len: usize) -> usize {
    varint_len(id)
        .saturating_add(varint_len(offset))
        .saturating_add(varint_len(len as u64))
        .saturating_add(1)
}

/// Append a STREAM frame header (OFF and LEN bits always set); the caller appends
/// exactly `len` payload bytes.
pub(crate) fn encode_stream_header(buf: &mut BytesMut, id: u64, offset: u64, len: usize, fin: bool) {
    let ty = STREAM | STREAM_OFF | STREAM_LEN | if fin { STREAM_FIN } else { 0 };
    put(buf, ty);
    put(buf, id);
    put(buf, offset);
    put(buf, len as u64);
}

impl Frame {
    /// Append this frame.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Self::Stream {
                id,
                offset,
                data,
                fin,
            } => {
                encode_stream_header(buf, *id, *offset, data.len(), *fin);
                buf.put_slice(data);
            }
            Self::ResetStream { id, code, final_size } => {
                put_all(buf, &[RESET_STREAM, *id, *code, *final_size])
            }
            Self::StopSending { id, code } => put_all(buf, &[STOP_SENDING, *id, *code]),
            Self::MaxData(max) => put_all(buf, &[MAX_DATA, *max]),
            Self::MaxStreamData { id, max } => put_all(buf, &[MAX_STREAM_DATA, *id, *max]),
            Self::MaxStreamsBidi(max) => put_all(buf, &[MAX_STREAMS_BIDI, *max]),
            Self::MaxStreamsUni(max) => put_all(buf, &[MAX_STREAMS_UNI, *max]),
            Self::DataBlocked(limit) => put_all(buf, &[DATA_BLOCKED, *limit]),
            Self::StreamDataBlocked { id, limit } => put_all(buf, &[STREAM_DATA_BLOCKED, *id, *limit]),
            Self::StreamsBlockedBidi(limit) => put_all(buf, &[STREAMS_BLOCKED_BIDI, *limit]),
            Self::StreamsBlockedUni(limit) => put_all(buf, &[STREAMS_BLOCKED_UNI, *limit]),
            Self::ConnectionClose {
                code,
                frame_type,
                reason,
            } => put_with_bytes(buf, &[CONNECTION_CLOSE, *code, *frame_type], reason),
            Self::ApplicationClose { code, reason } => {
                put_with_bytes(buf, &[APPLICATION_CLOSE, *code], reason)
            }
            Self::TransportParameters(params) => {
                let mut body = BytesMut::new();
                params.encode_body(&mut body);
                put_with_bytes(buf, &[TRANSPORT_PARAMETERS], &body);
            }
            Self::PingRequest(seq) => put_all(buf, &[PING_REQUEST, *seq]),
            Self::PingResponse(seq) => put_all(buf, &[PING_RESPONSE, *seq]),
            Self::Datagram(data) => put_with_bytes(buf, &[DATAGRAM_LEN], data),
        }
    }

    /// How many bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.len()
    }

    /// Decode the next frame from the front of `buf`; `Ok(None)` for PADDING.
    fn decode(buf: &mut Bytes) -> Result<Option<Self>, WireError> {
        let ty = get(buf, "frame type")?;
        let frame = match ty {
            PADDING => return Ok(None),
            STREAM..=0x0f => Self::decode_stream(buf, ty)?,
            RESET_STREAM => Self::ResetStream {
                id: get(buf, "RESET_STREAM")?,
                code: get(buf, "RESET_STREAM")?,
                final_size: get(buf, "RESET_STREAM")?,
            },
            RESET_STREAM_AT => return Err(WireError::ResetStreamAt),
            STOP_SENDING => Self::StopSending {
                id: get(buf, "STOP_SENDING")?,
                code: get(buf, "STOP_SENDING")?,
            },
            MAX_DATA => Self::MaxData(get(buf, "MAX_DATA")?),
            MAX_STREAM_DATA => Self::MaxStreamData {
                id: get(buf, "MAX_STREAM_DATA")?,
                max: get(buf, "MAX_STREAM_DATA")?,
            },
            MAX_STREAMS_BIDI => Self::MaxStreamsBidi(get(buf, "MAX_STREAMS")?),
            MAX_STREAMS_UNI => Self::MaxStreamsUni(get(buf, "MAX_STREAMS")?),
            DATA_BLOCKED => Self::DataBlocked(get(buf, "DATA_BLOCKED")?),
            STREAM_DATA_BLOCKED => Self::StreamDataBlocked {
                id: get(buf, "STREAM_DATA_BLOCKED")?,
                limit: get(buf, "STREAM_DATA_BLOCKED")?,
            },
            STREAMS_BLOCKED_BIDI => Self::StreamsBlockedBidi(get(buf, "STREAMS_BLOCKED")?),
            STREAMS_BLOCKED_UNI => Self::StreamsBlockedUni(get(buf, "STREAMS_BLOCKED")?),
            CONNECTION_CLOSE => Self::decode_connection_close(buf)?,
            APPLICATION_CLOSE => Self::decode_application_close(buf)?,
            TRANSPORT_PARAMETERS => {
                let body = get_prefixed(buf, "QX_TRANSPORT_PARAMETERS")?;
                Self::TransportParameters(TransportParams::decode_body(body)?)
            }
            PING_REQUEST => Self::PingRequest(get(buf, "QX_PING")?),
            PING_RESPONSE => Self::PingResponse(get(buf, "QX_PING")?),
            DATAGRAM => Self::Datagram(buf.split_to(buf.len())),
            DATAGRAM_LEN => Self::Datagram(get_prefixed(buf, "DATAGRAM")?),
            other => return Err(WireError::UnknownFrame(other)),
        };
        Ok(Some(frame))
    }

    /// A STREAM frame of type `ty` (0x08..=0x0f), whose low bits say which fields follow.
    fn decode_stream(buf: &mut Bytes, ty: u64) -> Result<Self, WireError> {
        let id = get(buf, "STREAM")?;
        let offset = match ty & STREAM_OFF {
            0 => 0,
            _ => get(buf, "STREAM")?,
        };
        let data = match ty & STREAM_LEN {
            0 => buf.split_to(buf.len()),
            _ => get_prefixed(buf, "STREAM")?,
        };
        Ok(Self::Stream {
            id,
            offset,
            data,
            fin: ty & STREAM_FIN != 0,
        })
    }

    fn decode_connection_close(buf: &mut Bytes) -> Result<Self, WireError> {
        let code = get(buf, "CONNECTION_CLOSE")?;
        let frame_type = get(buf, "CONNECTION_CLOSE")?;
        Ok(Self::ConnectionClose {
            code,
            frame_type,
            reason: get_prefixed(buf, "CONNECTION_CLOSE")?,
        })
    }

    fn decode_application_close(buf: &mut Bytes) -> Result<Self, WireError> {
        let code = get(buf, "APPLICATION_CLOSE")?;
        Ok(Self::ApplicationClose {
            code,
            reason: get_prefixed(buf, "APPLICATION_CLOSE")?,
        })
    }
}

/// The frames of one record, in order. PADDING is skipped; an empty record yields
/// nothing (the WebSocket binding allows it).
#[derive(Debug, Clone)]
pub struct Frames {
    buf: Bytes,
    failed: bool,
}

impl Frames {
    /// Iterate over the frames in `record`.
    pub fn new(record: Bytes) -> Self {
        Self {
            buf: record,
            failed: false,
        }
    }
}

impl Iterator for Frames {
    type Item = Result<Frame, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && self.buf.has_remaining() {
            match Frame::decode(&mut self.buf) {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) => continue,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
        None
    }
}

/// Encode `frames` as one record.
pub fn encode_record(frames: &[Frame]) -> Bytes {
    let mut buf = BytesMut::new();
    for frame in frames {
        frame.encode(&mut buf);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, WireError> {
        Frames::new(Bytes::copy_from_slice(bytes)).collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn stream_frame_bytes() {
        let frame = Frame::Stream {
            id: 4,
            offset: 0,
            data: Bytes::from_static(b"hi"),
            fin: true,
        };
        // type 0x0f (OFF|LEN|FIN), id 4, offset 0, length 2, "hi": as @moq/qmux encodes it.
        assert_eq!(
            encode_record(std::slice::from_ref(&frame)).as_ref(),
            hex("0f 04 00 02 6869")
        );
        assert_eq!(decode_all(&hex("0f 04 00 02 6869")).unwrap(), vec![frame]);
    }

    #[test]
    fn stream_frame_without_offset_or_length_runs_to_the_end() {
        // 0x08: no OFF, no LEN, no FIN; client uni stream 2.
        let got = decode_all(&hex("08 02 616263")).unwrap();
        assert_eq!(
            got,
            vec![Frame::Stream {
                id: 2,
                offset: 0,
                data: Bytes::from_static(b"abc"),
                fin: false
            }]
        );
    }

    #[test]
    fn control_frame_bytes() {
        let cases: Vec<(Frame, &str)> = vec![
            (
                Frame::ResetStream {
                    id: 3,
                    code: 7,
                    final_size: 300,
                },
                "04 03 07 412c",
            ),
            (Frame::StopSending { id: 1, code: 0x33 }, "05 01 33"),
            (Frame::MaxData(1 << 20), "10 80100000"),
            (Frame::MaxStreamData { id: 8, max: 100 }, "11 08 4064"),
            (Frame::MaxStreamsBidi(100), "12 4064"),
            (Frame::MaxStreamsUni(5), "13 05"),
            (Frame::DataBlocked(5), "14 05"),
            (Frame::StreamDataBlocked { id: 4, limit: 9 }, "15 04 09"),
            (Frame::StreamsBlockedBidi(3), "16 03"),
            (Frame::StreamsBlockedUni(2), "17 02"),
            (
                Frame::ApplicationClose {
                    code: 0,
                    reason: Bytes::from_static(b"bye"),
                },
                "1d 00 03 627965",
            ),
            (
                Frame::ConnectionClose {
                    code: 1002,
                    frame_type: 0,
                    reason: Bytes::from_static(b"x"),
                },
                "1c 43ea 00 01 78",
            ),
            (Frame::PingRequest(1), "f48c67529ef8c7bd 01"),
            (Frame::PingResponse(1), "f48c67529ef8c7be 01"),
            (Frame::Datagram(Bytes::from_static(b"d")), "31 01 64"),
        ];
        for (frame, bytes) in cases {
            let encoded = encode_record(std::slice::from_ref(&frame));
            assert_eq!(hex::encode(&encoded), hex::encode(hex(bytes)), "{frame:?}");
            assert_eq!(decode_all(&encoded).unwrap(), vec![frame]);
        }
    }

    #[test]
    fn transport_parameters_round_trip_and_bytes() {
        let params = TransportParams {
            max_idle_timeout: 30_000,
            initial_max_data: 1 << 20,
            initial_max_stream_data_bidi_local: 0,
            initial_max_stream_data_bidi_remote: 256,
            initial_max_stream_data_uni: 256,
            initial_max_streams_bidi: 100,
            initial_max_streams_uni: 100,
            max_datagram_frame_size: 0,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            reset_stream_at: false,
        };
        let frame = Frame::TransportParameters(params.clone());
        let encoded = encode_record(std::slice::from_ref(&frame));
        // The frame type is the 8-byte varint 0x3f5153300d0a0d0a ("?QS0\r\n\r\n" with
        // the varint prefix bits), then the body length.
        assert_eq!(&encoded[..8], &hex("ff5153300d0a0d0a")[..]);
        // idle timeout: id 1, length 4, 30000 as a 4-byte varint.
        assert_eq!(&encoded[9..15], &hex("01 04 80007530")[..]);
        assert_eq!(decode_all(&encoded).unwrap(), vec![frame]);
    }

    #[test]
    fn absent_parameters_take_their_defaults() {
        let got = decode_all(&hex("ff5153300d0a0d0a 00")).unwrap();
        assert_eq!(got, vec![Frame::TransportParameters(TransportParams::default())]);
        let Frame::TransportParameters(p) = &got[0] else {
            unreachable!()
        };
        assert_eq!(p.max_record_size, DEFAULT_MAX_RECORD_SIZE);
    }

    #[test]
    fn unknown_parameters_are_skipped() {
        // id 0x2a (unknown), length 3, any bytes; then max_data = 5.
        let got = decode_all(&hex("ff5153300d0a0d0a 08 2a 03 aabbcc 04 01 05")).unwrap();
        let Frame::TransportParameters(p) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(p.initial_max_data, 5);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let cases = [
            ("ff5153300d0a0d0a 06 04 01 05 04 01 06", "twice"),
            ("ff5153300d0a0d0a 03 00 01 00", "QUIC-only"),
            ("ff5153300d0a0d0a 03 04 01 40", "not a varint"),
            ("ff5153300d0a0d0a 04 04 02 0500", "trailing"),
            ("ff5153300d0a0d0a 03 1d 01 00", "empty"),
            ("ff5153300d0a0d0a 03 04 09 05", "longer than the frame"),
            (
                "ff5153300d0a0d0a 0c fd4f9c2a8b1e6075 03 02 6869",
                "application_protocols",
            ),
        ];
        for (bytes, why) in cases {
            match decode_all(&hex(bytes)) {
                Err(WireError::Params(detail)) => assert!(detail.contains(why), "{bytes}: {detail}"),
                other => panic!("{bytes}: expected a parameter error, got {other:?}"),
            }
        }
    }

    #[test]
    fn several_frames_and_padding_in_one_record() {
        let got = decode_all(&hex("00 00 10 05 00 13 07 00")).unwrap();
        assert_eq!(got, vec![Frame::MaxData(5), Frame::MaxStreamsUni(7)]);
        assert_eq!(decode_all(&[]).unwrap(), vec![]);
    }

    #[test]
    fn malformed_records_are_errors() {
        let cases: &[(&str, WireError)] = &[
            // A STREAM frame whose length runs past the record.
            ("0e 00 00 05 6869", WireError::Truncated("STREAM")),
            // A varint cut short.
            ("10 80", WireError::Truncated("MAX_DATA")),
            ("04 01 02", WireError::Truncated("RESET_STREAM")),
            ("1d 00 05 6869", WireError::Truncated("APPLICATION_CLOSE")),
            ("1c 00", WireError::Truncated("CONNECTION_CLOSE")),
            ("31 09 00", WireError::Truncated("DATAGRAM")),
            (
                "ff5153300d0a0d0a 10 00",
                WireError::Truncated("QX_TRANSPORT_PARAMETERS"),
            ),
            ("02", WireError::UnknownFrame(2)),
            ("4040", WireError::UnknownFrame(0x40)),
            ("24 00 00 00 00", WireError::ResetStreamAt),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode_all(&hex(bytes)), Err(want.clone()), "{bytes}");
        }
        // An error ends the iteration: nothing after it is decoded.
        let mut frames = Frames::new(Bytes::from(hex("02 10 05")));
        assert!(frames.next().unwrap().is_err());
        assert!(frames.next().is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap fuzz: every 3-byte prefix space sample, and some longer noise.
        let mut state = 0x1234_5678_u32;
        for _ in 0..20_000 {
            let len = (state % 24) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                bytes.push(state as u8);
            }
            let _ = decode_all(&bytes);
        }
    }

    #[test]
    fn stream_header_length_matches_the_encoding() {
        for (id, offset, len) in [(0, 0, 0), (4, 70, 63), (1 << 20, 1 << 40, 16352)] {
            let mut buf = BytesMut::new();
            encode_stream_header(&mut buf, id, offset, len, false);
            assert_eq!(buf.len(), stream_header_len(id, offset, len));
        }
    }
}
