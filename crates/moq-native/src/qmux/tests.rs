//! Session tests over an in-memory message pipe: two of our sessions talking, the
//! moq-core session drivers on top, and a hand-played (sometimes hostile) peer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use moq_core::transport::{RecvStream as _, SendStream as _, Session as _};
use tokio::sync::mpsc;

use super::{
    Config, Role, Session, Wire,
    socket::{Incoming, mem},
    wire::{Frame, Frames, TransportParams, encode_record},
};

const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
}

/// Two of our sessions connected by a pipe.
fn pair(wire: Wire, config: Config) -> (Session, Session) {
    let (a, b) = mem::pair();
    (
        Session::new(a, Role::Client, wire, config.clone()),
        Session::new(b, Role::Server, wire, config),
    )
}

async fn read_all(recv: &mut super::RecvStream) -> Result<Vec<u8>, moq_core::transport::TransportError> {
    let mut out = Vec::new();
    while let Some(chunk) = recv.read_chunk(usize::MAX).await? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[tokio::test]
async fn bidi_and_uni_streams_carry_data_both_ways() {
    for wire in Wire::PREFERRED {
        let (client, server) = pair(wire, Config::default());
        bounded(client.established()).await.unwrap();
        bounded(server.established()).await.unwrap();

        let (mut send, mut recv) = bounded(client.open_bi()).await.unwrap();
        // Bigger than one record, so it spans several STREAM frames.
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        send.write_all(&payload).await.unwrap();
        send.finish().unwrap();

        let (mut reply, mut incoming) = bounded(server.accept_bi()).await.unwrap();
        assert_eq!(incoming.id(), 0, "the client's first bidi stream");
        let got = bounded(read_all(&mut incoming)).await.unwrap();
        assert_eq!(got, payload, "{wire}");
        reply.write_chunk(Bytes::from_static(b"echo")).await.unwrap();
        reply.finish().unwrap();
        assert_eq!(bounded(read_all(&mut recv)).await.unwrap(), b"echo");

        let mut uni = bounded(server.open_uni()).await.unwrap();
        assert_eq!(uni.id(), 3, "the server's first uni stream");
        uni.write_all(b"group").await.unwrap();
        uni.finish().unwrap();
        let mut got = bounded(client.accept_uni()).await.unwrap();
        assert_eq!(bounded(read_all(&mut got)).await.unwrap(), b"group");
    }
}

#[tokio::test]
async fn finishing_twice_or_after_a_reset_is_an_error() {
    let (client, server) = pair(Wire::Qmux01, Config::default());
    let mut send = bounded(client.open_uni()).await.unwrap();
    send.finish().unwrap();
    assert!(send.finish().is_err());
    let mut other = bounded(client.open_uni()).await.unwrap();
    other.reset(1);
    assert!(other.finish().is_err());
    assert!(other.write_all(b"x").await.is_err());
    drop(server);
}

#[tokio::test]
async fn reset_and_stop_carry_codes() {
    let (client, server) = pair(Wire::Qmux01, Config::default());

    // RESET_STREAM: the reader sees the writer's code.
    let mut send = bounded(client.open_uni()).await.unwrap();
    send.write_all(b"partial").await.unwrap();
    bounded(async {
        // Wait until the data is on the server before resetting.
        let mut recv = server.accept_uni().await.unwrap();
        let first = recv.read_chunk(1024).await.unwrap();
        assert_eq!(first.as_deref(), Some(&b"partial"[..]));
        send.reset(42);
        let err = recv.read_chunk(1024).await.unwrap_err();
        assert_eq!(err.code, Some(42), "{err:?}");
    })
    .await;

    // STOP_SENDING: the writer's next write fails with the reader's code.
    let (mut send, _recv) = bounded(client.open_bi()).await.unwrap();
    send.write_all(b"hello").await.unwrap();
    let (_reply, mut incoming) = bounded(server.accept_bi()).await.unwrap();
    incoming.stop(7);
    let err = bounded(async {
        loop {
            if let Err(err) = send.write_all(b"more").await {
                return err;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(err.code, Some(7), "{err:?}");
}

#[tokio::test]
async fn close_reaches_the_peer_with_code_and_reason() {
    let (client, server) = pair(Wire::Qmux01, Config::default());
    bounded(client.established()).await.unwrap();
    client.close(5, "bye now");
    let err = bounded(server.closed()).await;
    assert!(
        err.message.contains("code 5") && err.message.contains("bye now"),
        "{err:?}"
    );
    assert!(bounded(server.accept_bi()).await.is_err());
    let local = bounded(client.closed()).await;
    assert!(local.message.contains("closed locally"), "{local:?}");
}

#[tokio::test]
async fn the_peers_close_is_told_apart_from_ours() {
    let (client, server) = pair(Wire::Qmux01, Config::default());
    bounded(client.established()).await.unwrap();
    client.close(0x2, "unauthorized: token expired");
    bounded(server.closed()).await;
    assert_eq!(
        server.peer_close(),
        Some((0x2, "unauthorized: token expired".to_string()))
    );
    assert_eq!(client.peer_close(), None, "our own close");
}

#[tokio::test]
async fn dropping_every_handle_closes_the_session() {
    let (client, server) = pair(Wire::Qmux00, Config::default());
    bounded(server.established()).await.unwrap();
    drop(client);
    let err = bounded(server.closed()).await;
    assert!(err.message.contains("closed by the peer with code 0"), "{err:?}");
}

#[tokio::test]
async fn stream_credit_is_returned_as_streams_close() {
    let config = Config {
        max_uni_streams: 2,
        max_bidi_streams: 1,
        ..Config::default()
    };
    let (client, server) = pair(Wire::Qmux01, config);
    // Ten streams through a limit of two: only possible if closed streams give their
    // credit back (MAX_STREAMS).
    let reader = tokio::spawn({
        let server = server.clone();
        async move {
            for i in 0..10u8 {
                let mut recv = server.accept_uni().await.unwrap();
                assert_eq!(read_all(&mut recv).await.unwrap(), vec![i]);
            }
        }
    });
    for i in 0..10u8 {
        let mut send = bounded(client.open_uni()).await.unwrap();
        send.write_all(&[i]).await.unwrap();
        send.finish().unwrap();
    }
    bounded(reader).await.unwrap();
}

#[tokio::test]
async fn a_slow_reader_holds_the_writer_back() {
    let config = Config {
        max_stream_data: 64 << 10,
        max_data: 128 << 10,
        send_buffer: 32 << 10,
        ..Config::default()
    };
    let (client, server) = pair(Wire::Qmux01, config);
    let mut send = bounded(client.open_uni()).await.unwrap();
    // The peer never reads: at most its window plus our send buffer can leave.
    let chunk = vec![7u8; 8 << 10];
    let mut written = 0usize;
    while let Ok(result) = tokio::time::timeout(Duration::from_secs(1), send.write_all(&chunk)).await {
        result.unwrap();
        written += chunk.len();
        assert!(
            written <= (64 + 32 + 8) << 10,
            "wrote {written} bytes into a stalled stream"
        );
    }
    assert!(written >= 64 << 10, "only {written} bytes before blocking");

    // Once the reader reads, the writer moves again.
    let mut recv = bounded(server.accept_uni()).await.unwrap();
    let reading = tokio::spawn(async move { read_all(&mut recv).await.unwrap().len() });
    bounded(send.write_all(&chunk)).await.unwrap();
    send.finish().unwrap();
    assert_eq!(bounded(reading).await.unwrap(), written + chunk.len());
}

// ------------------------------------------------------------- a hand-played peer

/// The other end of a pipe, played by the test.
struct Peer {
    tx: mpsc::UnboundedSender<Incoming>,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl Peer {
    /// Our session as `role`, the test as the other side.
    fn start(role: Role, wire: Wire, config: Config) -> (Session, Peer) {
        let (ours, theirs) = mem::pair();
        let session = Session::new(ours, role, wire, config);
        let (tx, rx) = theirs.into_raw();
        (session, Peer { tx, rx })
    }

    fn send(&self, frames: &[Frame]) {
        self.tx.send(Incoming::Binary(encode_record(frames))).unwrap();
    }

    fn send_raw(&self, message: Incoming) {
        self.tx.send(message).unwrap();
    }

    /// Transport parameters a generous peer sends.
    fn params() -> Frame {
        Frame::TransportParameters(TransportParams {
            max_idle_timeout: 30_000,
            initial_max_data: 1 << 20,
            initial_max_stream_data_bidi_local: 1 << 16,
            initial_max_stream_data_bidi_remote: 1 << 16,
            initial_max_stream_data_uni: 1 << 16,
            initial_max_streams_bidi: 10,
            initial_max_streams_uni: 10,
            ..TransportParams::default()
        })
    }

    /// The next message's frames (skipping keep-alive Pings).
    async fn frames(&mut self) -> Option<Vec<Frame>> {
        loop {
            match bounded(self.rx.recv()).await? {
                Incoming::Binary(record) => {
                    return Some(
                        Frames::new(record)
                            .collect::<Result<_, _>>()
                            .expect("we sent a bad record"),
                    );
                }
                Incoming::Control => continue,
                Incoming::Close | Incoming::Text => return None,
            }
        }
    }

    /// Frames until one matches, or the pipe ends.
    async fn until(&mut self, want: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(frames) = self.frames().await {
            if let Some(frame) = frames.into_iter().find(&want) {
                return Some(frame);
            }
        }
        None
    }

    /// The CONNECTION_CLOSE we sent, as (code, reason).
    async fn connection_close(&mut self) -> (u64, String) {
        match self.until(|f| matches!(f, Frame::ConnectionClose { .. })).await {
            Some(Frame::ConnectionClose { code, reason, .. }) => {
                (code, String::from_utf8_lossy(&reason).into_owned())
            }
            other => panic!("expected CONNECTION_CLOSE, got {other:?}"),
        }
    }
}

fn stream(id: u64, data: &[u8], fin: bool) -> Frame {
    Frame::Stream {
        id,
        offset: 0,
        data: Bytes::copy_from_slice(data),
        fin,
    }
}

#[tokio::test]
async fn transport_parameters_come_first() {
    for wire in Wire::PREFERRED {
        let (session, mut peer) = Peer::start(Role::Server, wire, Config::default());
        let first = peer.frames().await.unwrap();
        let Some(Frame::TransportParameters(params)) = first.first() else {
            panic!("first frame: {first:?}");
        };
        assert_eq!(params.max_record_size, 16382);
        assert_eq!(params.initial_max_streams_uni, 1024);
        assert_eq!(params.max_idle_timeout, 30_000);
        // Datagrams only exist on the record-framed wire format.
        assert_eq!(params.max_datagram_frame_size > 0, wire == Wire::Qmux01, "{wire}");
        drop(session);
    }
}

#[tokio::test]
async fn qmux_00_sends_one_frame_per_message() {
    let (session, mut peer) = Peer::start(Role::Client, Wire::Qmux00, Config::default());
    peer.send(&[Peer::params()]);
    bounded(session.established()).await.unwrap();
    for _ in 0..3 {
        let mut send = bounded(session.open_uni()).await.unwrap();
        send.write_all(b"abc").await.unwrap();
        send.finish().unwrap();
    }
    let mut streams = 0;
    while streams < 3 {
        let frames = peer.frames().await.unwrap();
        assert_eq!(frames.len(), 1, "{frames:?}");
        if matches!(frames[0], Frame::Stream { .. }) {
            streams += 1;
        }
    }
}

#[tokio::test]
async fn priority_decides_which_stream_sends_first() {
    let (session, mut peer) = Peer::start(Role::Client, Wire::Qmux01, Config::default());
    // No connection credit yet: everything queues.
    peer.send(&[Frame::TransportParameters(TransportParams {
        initial_max_data: 0,
        initial_max_stream_data_uni: 1 << 16,
        initial_max_streams_uni: 10,
        ..TransportParams::default()
    })]);
    bounded(session.established()).await.unwrap();

    let mut low = bounded(session.open_uni()).await.unwrap();
    let mut high = bounded(session.open_uni()).await.unwrap();
    let mut mid = bounded(session.open_uni()).await.unwrap();
    low.set_priority(1);
    high.set_priority(100);
    mid.set_priority(50);
    low.write_all(&[1; 10]).await.unwrap();
    high.write_all(&[2; 10]).await.unwrap();
    mid.write_all(&[3; 10]).await.unwrap();
    // A late priority change counts too: low becomes the most urgent.
    low.set_priority(200);

    let mut order = Vec::new();
    for _ in 0..3 {
        // Credit for exactly one stream's data at a time.
        peer.send(&[Frame::MaxData(10 * (order.len() as u64 + 1))]);
        match peer.until(|f| matches!(f, Frame::Stream { .. })).await {
            Some(Frame::Stream { id, data, .. }) => {
                assert_eq!(data.len(), 10);
                order.push(id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(order, vec![low.id(), high.id(), mid.id()]);
}

#[tokio::test]
async fn flow_control_violation_closes_with_1002() {
    let config = Config {
        max_stream_data: 100,
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    peer.send(&[Peer::params(), stream(2, &[0; 101], false)]);
    let (code, reason) = peer.connection_close().await;
    assert_eq!(code, 1002);
    assert!(
        reason.contains("flow control") && reason.contains("101"),
        "{reason}"
    );
    let err = bounded(session.closed()).await;
    assert!(err.message.contains("flow control"), "{err:?}");
}

#[tokio::test]
async fn connection_credit_is_enforced_across_streams() {
    let config = Config {
        max_stream_data: 1000,
        max_data: 1500,
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    peer.send(&[
        Peer::params(),
        stream(2, &[0; 1000], false),
        stream(6, &[0; 501], false),
    ]);
    let (code, reason) = peer.connection_close().await;
    assert_eq!(code, 1002);
    assert!(reason.contains("on the connection"), "{reason}");
    drop(session);
}

#[tokio::test]
async fn too_many_streams_close_the_session() {
    let config = Config {
        max_uni_streams: 3,
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    // Client uni stream index 3 (id 14) is the fourth: one past the limit.
    peer.send(&[Peer::params(), stream(14, b"x", false)]);
    let (code, reason) = peer.connection_close().await;
    assert_eq!(code, 1002);
    assert!(reason.contains("stream limit"), "{reason}");
    let err = bounded(session.closed()).await;
    assert!(err.message.contains("stream limit"), "{err:?}");
}

#[tokio::test]
async fn malformed_and_forbidden_messages_close_the_session() {
    let oversized = Incoming::Binary(Bytes::from(vec![0u8; 16383]));
    let cases: Vec<(&str, Incoming, &str)> = vec![
        (
            "unknown frame",
            Incoming::Binary(Bytes::from_static(&[0x02])),
            "unknown frame type",
        ),
        (
            "truncated",
            Incoming::Binary(Bytes::from_static(&[0x0e, 0x02, 0x00, 0x05, 0x01])),
            "truncated STREAM",
        ),
        ("text", Incoming::Text, "text message"),
        ("oversized", oversized, "record limit"),
        (
            "our own uni stream",
            Incoming::Binary(encode_record(&[stream(3, b"x", false)])),
            "only we send on",
        ),
        (
            "a stream we never opened",
            Incoming::Binary(encode_record(&[Frame::StopSending { id: 1, code: 0 }])),
            "never opened",
        ),
        (
            "parameters twice",
            Incoming::Binary(encode_record(&[Peer::params()])),
            "sent twice",
        ),
        (
            "a datagram too big",
            Incoming::Binary(encode_record(&[Frame::Datagram(Bytes::from(vec![0u8; 16382]))])),
            "record limit",
        ),
    ];
    for (name, message, want) in cases {
        let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
        peer.send(&[Peer::params()]);
        peer.send_raw(message);
        let (code, reason) = peer.connection_close().await;
        assert_eq!(code, 1002, "{name}");
        assert!(reason.contains(want), "{name}: {reason}");
        let err = bounded(session.closed()).await;
        assert!(err.message.contains(want), "{name}: {err:?}");
    }
}

#[tokio::test]
async fn small_max_record_size_is_refused() {
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    peer.send(&[Frame::TransportParameters(TransportParams {
        max_record_size: 1000,
        ..TransportParams::default()
    })]);
    let (_, reason) = peer.connection_close().await;
    assert!(reason.contains("max_record_size"), "{reason}");
    drop(session);
}

#[tokio::test]
async fn datagrams_are_delivered_on_qmux_01_only() {
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    peer.send(&[Peer::params(), Frame::Datagram(Bytes::from_static(b"dg"))]);
    assert_eq!(
        bounded(session.recv_datagram()).await.unwrap(),
        Bytes::from_static(b"dg")
    );

    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux00, Config::default());
    peer.send(&[Peer::params()]);
    peer.send(&[Frame::Datagram(Bytes::from_static(b"dg"))]);
    let (_, reason) = peer.connection_close().await;
    assert!(reason.contains("datagram"), "{reason}");
    assert!(bounded(session.recv_datagram()).await.is_err());
}

#[tokio::test]
async fn pings_are_answered_once_however_many_arrive() {
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    let pings: Vec<Frame> = (0..1000).map(Frame::PingRequest).collect();
    peer.send(&[Peer::params()]);
    peer.send(&pings);
    match peer.until(|f| matches!(f, Frame::PingResponse(_))).await {
        Some(Frame::PingResponse(seq)) => assert_eq!(seq, 999),
        other => panic!("{other:?}"),
    }
    drop(session);
}

#[tokio::test]
async fn late_frames_on_a_closed_stream_are_ignored() {
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    peer.send(&[Peer::params(), stream(2, b"one", true)]);
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(bounded(read_all(&mut recv)).await.unwrap(), b"one");
    drop(recv);
    // A retransmission-like late frame for the finished stream, then a new stream.
    peer.send(&[stream(2, b"again", true), stream(6, b"two", true)]);
    let mut next = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(next.id(), 6, "stream 2 must not come back");
    assert_eq!(bounded(read_all(&mut next)).await.unwrap(), b"two");
}

#[tokio::test]
async fn a_higher_stream_opens_the_lower_ones() {
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    // Index 3 first: indexes 0..3 are implicitly open and may still arrive.
    peer.send(&[Peer::params(), stream(14, b"d", true), stream(6, b"b", true)]);
    let first = bounded(session.accept_uni()).await.unwrap();
    let second = bounded(session.accept_uni()).await.unwrap();
    assert_eq!((first.id(), second.id()), (14, 6));
}

#[tokio::test]
async fn the_peer_reset_before_any_data_is_invisible_but_counted() {
    let config = Config {
        max_uni_streams: 1,
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    peer.send(&[
        Peer::params(),
        Frame::ResetStream {
            id: 2,
            code: 9,
            final_size: 10,
        },
    ]);
    // The credit comes back: MAX_STREAMS grows to 2.
    match peer.until(|f| matches!(f, Frame::MaxStreamsUni(_))).await {
        Some(Frame::MaxStreamsUni(max)) => assert_eq!(max, 2),
        other => panic!("{other:?}"),
    }
    peer.send(&[stream(6, b"ok", true)]);
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(recv.id(), 6);
    assert_eq!(bounded(read_all(&mut recv)).await.unwrap(), b"ok");
}

#[tokio::test]
async fn receive_credit_follows_reading() {
    let config = Config {
        max_stream_data: 1000,
        max_data: 10_000,
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    peer.send(&[Peer::params(), stream(2, &[1; 1000], false)]);
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    let mut got = 0;
    while got < 500 {
        got += bounded(recv.read_chunk(100)).await.unwrap().unwrap().len();
    }
    // Half the window consumed: the stream's credit moves to consumed + window.
    match peer.until(|f| matches!(f, Frame::MaxStreamData { .. })).await {
        Some(Frame::MaxStreamData { id, max }) => {
            assert_eq!(id, 2);
            assert_eq!(max, 500 + 1000);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stop_sending_is_answered_with_reset_stream() {
    let (session, mut peer) = Peer::start(Role::Client, Wire::Qmux01, Config::default());
    peer.send(&[Peer::params()]);
    let mut send = bounded(session.open_uni()).await.unwrap();
    send.write_all(b"abc").await.unwrap();
    let id = send.id();
    peer.until(|f| matches!(f, Frame::Stream { .. })).await.unwrap();
    peer.send(&[Frame::StopSending { id, code: 77 }]);
    match peer.until(|f| matches!(f, Frame::ResetStream { .. })).await {
        Some(Frame::ResetStream {
            id: got,
            code,
            final_size,
        }) => {
            assert_eq!((got, code, final_size), (id, 77, 3));
        }
        other => panic!("{other:?}"),
    }
    let err = bounded(send.write_all(b"more")).await.unwrap_err();
    assert_eq!(err.code, Some(77));
}

#[tokio::test]
async fn http3_mapped_codes_are_understood() {
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    let mapped = web_transport_quinn::proto::error_to_http3(42);
    peer.send(&[
        Peer::params(),
        stream(2, b"x", false),
        Frame::ResetStream {
            id: 2,
            code: mapped,
            final_size: 1,
        },
    ]);
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    let err = bounded(read_all(&mut recv)).await.unwrap_err();
    assert_eq!(err.code, Some(42));
}

#[tokio::test]
async fn silence_ends_the_session() {
    let config = Config {
        idle_timeout: Duration::from_millis(300),
        keep_alive: Some(Duration::from_millis(100)),
        ..Config::default()
    };
    let (session, _peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    let err = bounded(session.closed()).await;
    // The peer never sent its parameters either, but the idle timer is shorter.
    assert!(err.message.contains("no message from the peer"), "{err:?}");
}

#[tokio::test]
async fn missing_transport_parameters_end_the_session() {
    let config = Config {
        handshake_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    // Alive but never sending parameters.
    peer.send_raw(Incoming::Control);
    let err = bounded(session.established()).await.unwrap_err();
    assert!(err.message.contains("transport parameters"), "{err:?}");
}

#[tokio::test]
async fn keep_alive_pings_are_sent() {
    let config = Config {
        keep_alive: Some(Duration::from_millis(50)),
        ..Config::default()
    };
    let (session, mut peer) = Peer::start(Role::Server, Wire::Qmux01, config);
    peer.send(&[Peer::params()]);
    // A WebSocket Ping, and a QX_PING because nothing else was sent.
    let mut control = false;
    let mut qx_ping = false;
    while !(control && qx_ping) {
        match bounded(peer.rx.recv()).await.unwrap() {
            Incoming::Control => control = true,
            Incoming::Binary(record) => {
                qx_ping |= Frames::new(record).any(|f| matches!(f, Ok(Frame::PingRequest(_))));
            }
            other => panic!("{other:?}"),
        }
    }
    drop(session);
}

#[tokio::test]
async fn tiny_fragments_do_not_pin_whole_records() {
    let (session, peer) = Peer::start(Role::Server, Wire::Qmux01, Config::default());
    // One byte of stream data in a record padded to 16 KiB.
    let mut record = BytesMut::new();
    stream(2, b"x", false).encode(&mut record);
    record.resize(16000, 0);
    let record = record.freeze();
    let span = record.as_ptr() as usize..record.as_ptr() as usize + record.len();
    peer.send(&[Peer::params()]);
    peer.send_raw(Incoming::Binary(record));
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    let chunk = bounded(recv.read_chunk(10)).await.unwrap().unwrap();
    assert_eq!(chunk.as_ref(), b"x");
    // A copy, not a view into the 16 KiB record.
    assert!(
        !span.contains(&(chunk.as_ptr() as usize)),
        "the byte still points into the record"
    );

    // A fragment that is most of its record is kept as a view (no copy).
    let mut record = BytesMut::new();
    stream(6, &[5; 15000], false).encode(&mut record);
    let record = record.freeze();
    let span = record.as_ptr() as usize..record.as_ptr() as usize + record.len();
    peer.send_raw(Incoming::Binary(record));
    let mut recv = bounded(session.accept_uni()).await.unwrap();
    let chunk = bounded(recv.read_chunk(100_000)).await.unwrap().unwrap();
    assert_eq!(chunk.len(), 15000);
    assert!(span.contains(&(chunk.as_ptr() as usize)));
}

// ------------------------------------------------- moq-core sessions over qmux

mod moq {
    use super::*;
    use moq_core::{
        BroadcastProducer, Frame as MoqFrame, Origin, TrackInfo, TrackProducer,
        model::cache::Cache,
        session::{self, Config as SessionConfig},
    };
    use moq_proto::{Hops, Path, Version};

    fn path(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    /// A publisher and a subscriber session over qmux, each with moq-core's driver.
    async fn publish_and_subscribe(wire: Wire, version: Version) {
        let (client, server) = pair(wire, Config::default());

        let origin = Origin::default();
        let broadcast = BroadcastProducer::new(Cache::default());
        let info = TrackInfo {
            priority: 1,
            max_latency: Duration::from_secs(2),
            timescale: 1000,
        };
        let track = broadcast.create_track(TrackProducer::with_info("seconds", info, Cache::default()));
        let _publication = origin.publish(path("clock"), broadcast.consume(), Hops::new());

        let mut publisher = SessionConfig::new(version);
        publisher.publish = Some(origin);
        let viewer = Origin::default();
        let mut subscriber = SessionConfig::new(version);
        subscriber.consume = Some(viewer.clone());
        let a = tokio::spawn(session::run(server.clone(), publisher));
        let b = tokio::spawn(session::run(client.clone(), subscriber));

        let remote = bounded(viewer.wait_for(&path("clock"), LIMIT))
            .await
            .expect("the viewer never saw the broadcast");
        let mut consumer = remote.subscribe("seconds").unwrap();
        // Wait for the subscription to reach the publisher before writing.
        bounded(async {
            while track.consumers() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        // One group at a time (a subscriber that falls behind skips to the newest
        // group, which is moq-core's business, not the transport's).
        for seq in 0..3u64 {
            let mut group = track.create_group(seq).unwrap();
            for i in 0..3u64 {
                group.write(MoqFrame {
                    timestamp: seq * 1000 + i,
                    payload: Bytes::from(format!("{seq}:{i}")),
                });
            }
            group.finish();
            let mut group = bounded(consumer.next_group()).await.unwrap().unwrap();
            assert_eq!(group.sequence(), seq, "{wire} {version}");
            let mut frames = Vec::new();
            while let Some(frame) = bounded(group.next_frame()).await.unwrap() {
                frames.push(String::from_utf8(frame.payload.to_vec()).unwrap());
            }
            let want: Vec<String> = (0..3).map(|i| format!("{seq}:{i}")).collect();
            assert_eq!(frames, want, "{wire} {version}: group {seq} whole and in order");
        }

        client.close(0, "done");
        let _ = bounded(a).await;
        let _ = bounded(b).await;
    }

    #[tokio::test]
    async fn moq_lite_runs_over_qmux_on_every_version_and_wire() {
        for wire in Wire::PREFERRED {
            for version in Version::PREFERRED {
                publish_and_subscribe(wire, version).await;
            }
        }
    }
}
