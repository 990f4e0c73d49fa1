//! qmux over real WebSockets on loopback: a tokio-tungstenite server built from the
//! subprotocol helper, our client on `ws://`, `wss://` and the `https://` / `http://`
//! fallback, moq-core sessions across it, and the TLS-over-TCP configuration.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use moq_core::transport::{RecvStream as _, SendStream as _, Session as _};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::{
    handshake::server::{ErrorResponse, Request as WsRequest, Response as WsResponse},
    http::{HeaderValue, StatusCode, header::SEC_WEBSOCKET_PROTOCOL},
};

use super::{Running, bounded, dev_config, pki, url, write};
use crate::{Error, Transport, Version, adapter::MoqSession, client, qmux, server, tls};

/// What the WebSocket server saw of one upgrade.
#[derive(Debug, Clone)]
struct Seen {
    /// Path and query of the upgrade request.
    target: String,
    /// The subprotocol we answered, or the refusal.
    answer: Result<String, String>,
}

/// What the server does with each accepted session.
#[derive(Clone, Copy)]
enum Serve {
    /// Echo every bidirectional stream.
    Echo,
    /// Publish a broadcast `clock` with track `seconds` through moq-core.
    Clock,
}

/// A WebSocket server on loopback: `allow` versions, plain or TLS.
struct WsServer {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl WsServer {
    async fn start(allow: &[Version], tls: Option<tls::TcpTls>, serve: Serve) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), allow, tls, serve)
    }

    fn on(listener: TcpListener, allow: &[Version], tls: Option<tls::TcpTls>, serve: Serve) -> Self {
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let allow = allow.to_vec();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (tx, allow, tls) = (tx.clone(), allow.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.acceptor().accept(tcp).await else {
                                return;
                            };
                            upgrade(stream, allow, tx, serve).await;
                        }
                        None => upgrade(tcp, allow, tx, serve).await,
                    }
                });
            }
        });
        Self { addr, seen }
    }

    async fn next(&mut self) -> Seen {
        bounded(self.seen.recv()).await.expect("server task ended")
    }
}

async fn upgrade<S>(stream: S, allow: Vec<Version>, tx: mpsc::UnboundedSender<Seen>, serve: Serve)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let chosen = Arc::new(Mutex::new(None));
    let record = chosen.clone();
    // tungstenite's callback type, not ours.
    #[allow(clippy::result_large_err)]
    let callback =
        move |request: &WsRequest, mut response: WsResponse| -> Result<WsResponse, ErrorResponse> {
            let offered = request
                .headers()
                .get_all(SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>();
            let target = request.uri().to_string();
            let allow: Vec<crate::Protocol> = allow.iter().map(|&v| v.into()).collect();
            match qmux::subprotocol::select(offered, &allow) {
                Ok(negotiated) => {
                    response.headers_mut().insert(
                        SEC_WEBSOCKET_PROTOCOL,
                        HeaderValue::from_str(&negotiated.subprotocol).unwrap(),
                    );
                    *record.lock().unwrap() = Some((target, Ok(negotiated)));
                    Ok(response)
                }
                Err(refusal) => {
                    *record.lock().unwrap() = Some((target, Err(refusal.to_string())));
                    let mut reply = ErrorResponse::new(Some(refusal.to_string()));
                    *reply.status_mut() = StatusCode::from_u16(refusal.status()).unwrap();
                    Err(reply)
                }
            }
        };
    let result =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(qmux::websocket_config()))
            .await;
    let decided = chosen.lock().unwrap().take();
    let Some((target, decision)) = decided else { return };
    let _ = tx.send(Seen {
        target,
        answer: decision
            .as_ref()
            .map(|n| n.subprotocol.clone())
            .map_err(Clone::clone),
    });
    let (Ok(socket), Ok(negotiated)) = (result, decision) else {
        return;
    };
    let session = qmux::Session::new(
        qmux::Ws(socket),
        qmux::Role::Server,
        negotiated.wire,
        qmux::Config::default(),
    );
    match serve {
        Serve::Echo => echo(session).await,
        Serve::Clock => clock(session, negotiated.version.lite().unwrap()).await,
    }
}

async fn echo(session: qmux::Session) {
    while let Ok((mut send, mut recv)) = session.accept_bi().await {
        tokio::spawn(async move {
            let mut data = Vec::new();
            while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX).await {
                data.extend_from_slice(&chunk);
            }
            let _ = send.write_all(&data).await;
            let _ = send.finish();
        });
    }
}

/// Serve a broadcast `clock` with track `seconds`: a group per second of frames.
async fn clock(session: qmux::Session, version: Version) {
    use moq_core::{BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer, model::cache::Cache};
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let info = TrackInfo {
        priority: 1,
        max_latency: Duration::from_secs(2),
        timescale: 1000,
    };
    let track = broadcast.create_track(TrackProducer::with_info("seconds", info, Cache::default()));
    let _publication = origin.publish(
        moq_proto::Path::new("clock").unwrap(),
        broadcast.consume(),
        moq_proto::Hops::new(),
    );
    let mut config = moq_core::session::Config::new(version);
    config.publish = Some(origin);
    let writer = async {
        for seq in 0.. {
            let mut group = track.create_group(seq).unwrap();
            for i in 0..5u64 {
                group.write(Frame {
                    timestamp: seq * 1000 + i * 100,
                    payload: Bytes::from(format!("{seq}.{i}")),
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            group.finish();
        }
    };
    tokio::select! {
        _ = moq_core::session::run(session, config) => {}
        () = writer => {}
    }
}

fn client_with(
    versions: &[Version],
    fingerprints: &[String],
    tweak: impl FnOnce(&mut client::Config),
) -> client::Client {
    let mut config = client::Config {
        tls: client::ClientTls {
            fingerprints: fingerprints.to_vec(),
            system_roots: false,
            ..Default::default()
        },
        versions: versions.iter().map(|&v| v.into()).collect(),
        ..Default::default()
    };
    tweak(&mut config);
    client::Client::new(config).unwrap()
}

async fn echo_round_trip(session: MoqSession) {
    let (mut send, mut recv) = moq_core::transport::Session::open_bi(&session).await.unwrap();
    send.write_all(b"hello qmux").await.unwrap();
    send.finish().unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = recv.read_chunk(1024).await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"hello qmux");
}

#[tokio::test]
async fn ws_url_connects_with_the_newest_version_on_qmux_01() {
    let mut server = WsServer::start(&[], None, Serve::Echo).await;
    let client = client_with(&[], &[], |_| {});
    let target = url(&format!(
        "ws://127.0.0.1:{}/anon/room?jwt=abc",
        server.addr.port()
    ));
    let connected = bounded(client.connect(&target)).await.unwrap();
    assert_eq!(connected.transport, Transport::WebSocket);
    assert_eq!(connected.version, Version::Lite06);
    assert_eq!(connected.setup_path(&target), None, "the path travels in the URL");
    let ws = connected.session.websocket().unwrap();
    assert_eq!(ws.wire(), qmux::Wire::Qmux01);
    assert!(connected.session.rtt().is_none(), "statistics are QUIC-only");

    let seen = server.next().await;
    assert_eq!(seen.target, "/anon/room?jwt=abc");
    assert_eq!(seen.answer, Ok("qmux-01.moq-lite-06".to_string()));

    let session = MoqSession::new(connected.session, connected.transport);
    assert_eq!(session.transport(), Transport::WebSocket);
    bounded(echo_round_trip(session)).await;
    client.close_and_wait(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_client_offers_only_the_versions_it_is_configured_with() {
    let mut server = WsServer::start(&[], None, Serve::Echo).await;
    let client = client_with(&[Version::Lite04], &[], |_| {});
    let connected = bounded(client.connect(&url(&format!("ws://127.0.0.1:{}/", server.addr.port()))))
        .await
        .unwrap();
    assert_eq!(connected.version, Version::Lite04);
    assert_eq!(server.next().await.answer, Ok("qmux-01.moq-lite-04".to_string()));
}

#[tokio::test]
async fn a_server_without_a_common_version_refuses_the_upgrade() {
    let mut server = WsServer::start(&[Version::Lite03], None, Serve::Echo).await;
    let client = client_with(&[Version::Lite05, Version::Lite06], &[], |_| {});
    let err = bounded(client.connect(&url(&format!("ws://127.0.0.1:{}/", server.addr.port()))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Rejected { status: 400, .. }), "{err}");
    let seen = server.next().await;
    assert!(
        seen.answer
            .unwrap_err()
            .contains("no moq version this server allows")
    );
}

#[tokio::test]
async fn a_server_that_picks_no_subprotocol_is_refused() {
    // A plain WebSocket server: upgrades without choosing any subprotocol.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _socket = tokio_tungstenite::accept_async(tcp).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let client = client_with(&[], &[], |_| {});
    let err = bounded(client.connect(&url(&format!("ws://127.0.0.1:{port}/"))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoServerVersion { .. }), "{err}");
}

#[tokio::test]
async fn nothing_listening_on_tcp_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_with(&[], &[], |_| {});
    let err = bounded(client.connect(&url(&format!("ws://127.0.0.1:{port}/"))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TcpUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("TCP port"), "{err}");
}

#[tokio::test]
async fn wss_checks_the_certificate_like_quic() {
    let tls = tls::TcpTls::load(&server::TlsConfig {
        generate: vec!["localhost".to_string()],
        ..Default::default()
    })
    .unwrap();
    let fingerprints = tls.fingerprints();
    let mut server = WsServer::start(&[], Some(tls), Serve::Echo).await;
    let target = url(&format!("wss://localhost:{}/anon", server.addr.port()));

    let client = client_with(&[], &fingerprints, |_| {});
    let connected = bounded(client.connect(&target)).await.unwrap();
    assert_eq!(connected.transport, Transport::WebSocket);
    assert_eq!(server.next().await.target, "/anon");
    bounded(echo_round_trip(MoqSession::new(
        connected.session,
        connected.transport,
    )))
    .await;

    // Another pin: refused before any upgrade.
    let wrong = client_with(&[], &[tls::fingerprint(b"something else")], |_| {});
    let err = bounded(wrong.connect(&target)).await.unwrap_err();
    assert!(matches!(err, Error::FingerprintMismatch { .. }), "{err}");

    // No roots at all: the same advice as for QUIC.
    let unverified = client_with(&[], &[], |_| {});
    let err = bounded(unverified.connect(&target)).await.unwrap_err();
    assert!(matches!(err, Error::NoRoots { .. }), "{err}");
}

#[tokio::test]
async fn https_falls_back_to_wss_when_quic_does_not_answer() {
    let tls = tls::TcpTls::load(&server::TlsConfig {
        generate: vec!["localhost".to_string()],
        ..Default::default()
    })
    .unwrap();
    let fingerprints = tls.fingerprints();
    // Only TCP listens on this port: UDP is silent, as behind a firewall.
    let mut server = WsServer::start(&[], Some(tls), Serve::Echo).await;
    let client = client_with(&[], &fingerprints, |c| {
        c.websocket.delay = Duration::from_millis(100);
    });
    let started = std::time::Instant::now();
    let target = url(&format!("https://localhost:{}/anon?jwt=t", server.addr.port()));
    let connected = bounded(client.connect(&target)).await.unwrap();
    assert_eq!(connected.transport, Transport::WebSocket);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the fallback waited for the QUIC timeout"
    );
    assert_eq!(server.next().await.target, "/anon?jwt=t");
    bounded(echo_round_trip(MoqSession::new(
        connected.session,
        connected.transport,
    )))
    .await;
}

#[tokio::test]
async fn http_falls_back_to_ws() {
    // No /certificate.sha256 and no QUIC: only the WebSocket works.
    let mut server = WsServer::start(&[], None, Serve::Echo).await;
    let client = client_with(&[], &[], |c| c.websocket.delay = Duration::from_millis(50));
    let connected = bounded(client.connect(&url(&format!("http://127.0.0.1:{}/x", server.addr.port()))))
        .await
        .unwrap();
    assert_eq!(connected.transport, Transport::WebSocket);
    assert_eq!(server.next().await.target, "/x");
}

#[tokio::test]
async fn without_the_fallback_a_silent_quic_port_fails() {
    let server = WsServer::start(&[], None, Serve::Echo).await;
    let client = client_with(&[], &[], |c| {
        c.websocket.enabled = false;
        c.quic.handshake_timeout = Duration::from_millis(300);
    });
    let err = bounded(client.connect(&url(&format!("http://127.0.0.1:{}/", server.addr.port()))))
        .await
        .unwrap_err();
    assert!(!matches!(err, Error::Fallback { .. }), "{err}");
}

#[tokio::test]
async fn both_failing_reports_both() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = client_with(&[], &[tls::fingerprint(b"x")], |c| {
        c.websocket.delay = Duration::from_millis(10);
        c.quic.handshake_timeout = Duration::from_millis(300);
    });
    let err = bounded(client.connect(&url(&format!("https://127.0.0.1:{port}/"))))
        .await
        .unwrap_err();
    let Error::Fallback { websocket, .. } = &err else {
        panic!("{err}")
    };
    assert!(matches!(**websocket, Error::TcpUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("WebSocket fallback failed too"), "{err}");
}

#[tokio::test]
async fn webtransport_wins_when_quic_answers() {
    let quic = Running::start(dev_config("127.0.0.1:0", &[]));
    // A WebSocket server on the same port number, TCP.
    let listener = TcpListener::bind(("127.0.0.1", quic.port())).await.unwrap();
    let mut ws = WsServer::on(listener, &[], None, Serve::Echo);
    let client = client_with(&[], &quic.fingerprints, |c| {
        c.websocket.delay = Duration::from_secs(5)
    });
    let connected = bounded(client.connect(&url(&format!("https://localhost:{}/", quic.port()))))
        .await
        .unwrap();
    assert_eq!(connected.transport, Transport::WebTransport);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.seen.recv())
            .await
            .is_err(),
        "no WebSocket attempt while WebTransport has its head start"
    );
}

#[tokio::test]
async fn a_decisive_webtransport_failure_ends_the_race() {
    let quic = Running::start(dev_config("127.0.0.1:0", &[]));
    let listener = TcpListener::bind(("127.0.0.1", quic.port())).await.unwrap();
    let mut ws = WsServer::on(listener, &[], None, Serve::Echo);
    // A wrong pin: the server answered, with a certificate we refuse; the WebSocket
    // would get the same certificate.
    let client = client_with(&[], &[tls::fingerprint(b"x")], |c| {
        c.websocket.delay = Duration::from_secs(5)
    });
    let err = bounded(client.connect(&url(&format!("https://localhost:{}/", quic.port()))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FingerprintMismatch { .. }), "{err}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), ws.seen.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn moq_lite_over_a_real_websocket() {
    for version in Version::PREFERRED {
        let server = WsServer::start(&[], None, Serve::Clock).await;
        let client = client_with(&[version], &[], |_| {});
        let target = url(&format!("ws://127.0.0.1:{}/", server.addr.port()));
        let connected = bounded(client.connect(&target)).await.unwrap();
        assert_eq!(connected.version, version);

        let viewer = moq_core::Origin::default();
        let mut config = moq_core::session::Config::new(version);
        config.consume = Some(viewer.clone());
        let session = MoqSession::new(connected.session, connected.transport);
        let driver = tokio::spawn(moq_core::session::run(session.clone(), config));

        let path = moq_proto::Path::new("clock").unwrap();
        let broadcast = bounded(viewer.wait_for(&path, Duration::from_secs(10)))
            .await
            .expect("no broadcast");
        let mut track = broadcast.subscribe("seconds").unwrap();
        let mut group = bounded(track.next_group()).await.unwrap().unwrap();
        let sequence = group.sequence();
        let mut frames = Vec::new();
        while let Some(frame) = bounded(group.next_frame()).await.unwrap() {
            frames.push(String::from_utf8(frame.payload.to_vec()).unwrap());
        }
        // Joined mid-group or not, the rest of the group arrives in order, to its end.
        assert!(
            frames.last().is_some_and(|f| f == &format!("{sequence}.4")),
            "{version}: {frames:?}"
        );
        moq_core::transport::Session::close(&session, 0, "done");
        let _ = bounded(driver).await;
    }
}

#[tokio::test]
async fn a_hostile_peer_is_closed_and_others_carry_on() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let server = WsServer::start(&[], None, Serve::Echo).await;
    let target = url(&format!("ws://127.0.0.1:{}/", server.addr.port()));
    let client = client_with(&[], &[], |_| {});
    let good = bounded(client.connect(&target)).await.unwrap();
    let good = MoqSession::new(good.session, good.transport);
    bounded(echo_round_trip(good.clone())).await;

    // A raw WebSocket that negotiates properly, then sends an unknown frame type.
    let mut request = target.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("qmux-01.moq-lite-05"),
    );
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut raw, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    raw.send(Message::Binary(Bytes::from_static(&[0x02])))
        .await
        .unwrap();
    let mut close = None;
    while let Some(Ok(message)) = bounded(raw.next()).await {
        if let Message::Binary(record) = message {
            close = qmux::wire::Frames::new(record)
                .filter_map(Result::ok)
                .find_map(|f| match f {
                    qmux::wire::Frame::ConnectionClose { code, reason, .. } => Some((code, reason)),
                    _ => None,
                })
                .or(close);
        }
    }
    let (code, reason) = close.expect("no CONNECTION_CLOSE before the socket closed");
    assert_eq!(code, 1002);
    assert!(String::from_utf8_lossy(&reason).contains("unknown frame type 0x2"));

    // The other session never noticed.
    bounded(echo_round_trip(good)).await;
}

// ------------------------------------------------------------ TLS over TCP

/// Handshake with a TLS server on `port` and return the fingerprint it presented,
/// plus the stream to keep using.
async fn tls_handshake(port: u16) -> (String, tokio_rustls::client::TlsStream<TcpStream>) {
    let provider = tls::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls::NoVerifier(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, conn) = stream.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    (tls::fingerprint(&leaf), stream)
}

/// A TLS echo server on loopback using `acceptor`; returns its port.
async fn tls_echo(acceptor: tokio_rustls::TlsAcceptor) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = stream.flush().await;
                }
            });
        }
    });
    port
}

async fn echoes(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    stream.flush().await.unwrap();
    let mut got = vec![0u8; text.len()];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, text);
}

#[tokio::test]
async fn tcp_tls_reload_serves_new_handshakes_and_keeps_old_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki(&["localhost"]);
    let cert = write(dir.path(), "web.pem", &first.leaf_pem);
    let key = write(dir.path(), "web.key", &first.leaf_key_pem);
    let tls = tls::TcpTls::load(&server::TlsConfig {
        cert: vec![cert.clone()],
        key: vec![key.clone()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(tls.certificate_files(), vec![cert.clone(), key.clone()]);
    let port = tls_echo(tls.acceptor()).await;

    let (seen, mut old) = bounded(tls_handshake(port)).await;
    assert_eq!(seen, tls::fingerprint(&first.leaf_der));
    bounded(echoes(&mut old, b"before")).await;

    let second = pki(&["localhost"]);
    std::fs::write(&cert, &second.leaf_pem).unwrap();
    std::fs::write(&key, &second.leaf_key_pem).unwrap();
    tls.reload().unwrap();

    let (seen, mut new) = bounded(tls_handshake(port)).await;
    assert_eq!(
        seen,
        tls::fingerprint(&second.leaf_der),
        "a new handshake gets the new certificate"
    );
    bounded(echoes(&mut new, b"new")).await;
    bounded(echoes(&mut old, b"the old connection still works")).await;

    // A broken file keeps the current certificate.
    std::fs::write(&key, "garbage").unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(
        bounded(tls_handshake(port)).await.0,
        tls::fingerprint(&second.leaf_der)
    );
}

#[tokio::test]
async fn tcp_tls_shares_the_quic_servers_certificates_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki(&["localhost"]);
    let cert = write(dir.path(), "cert.pem", &first.leaf_pem);
    let key = write(dir.path(), "key.pem", &first.leaf_key_pem);
    let quic = server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec![cert.clone()],
            key: vec![key.clone()],
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let tcp_tls = quic.tcp_tls().unwrap();
    assert_eq!(
        tcp_tls.server_config().alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let port = tls_echo(tcp_tls.acceptor()).await;
    let (seen, mut old) = bounded(tls_handshake(port)).await;
    assert_eq!(seen, tls::fingerprint(&first.leaf_der));

    let second = pki(&["localhost"]);
    std::fs::write(&cert, &second.leaf_pem).unwrap();
    std::fs::write(&key, &second.leaf_key_pem).unwrap();
    // Reloading the QUIC server is enough: the resolver is shared.
    quic.reload_certificates().unwrap();
    let (seen, _) = bounded(tls_handshake(port)).await;
    assert_eq!(seen, tls::fingerprint(&second.leaf_der));
    assert_eq!(tcp_tls.fingerprints(), quic.fingerprints());
    bounded(echoes(&mut old, b"still here")).await;
}

#[tokio::test]
async fn tcp_tls_alpn_can_be_narrowed() {
    let tls = tls::TcpTls::load(&server::TlsConfig {
        generate: vec!["localhost".to_string()],
        ..Default::default()
    })
    .unwrap();
    let narrowed = tls.with_alpn(&[b"http/1.1"]).unwrap();
    assert_eq!(
        narrowed.server_config().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
    assert_eq!(narrowed.fingerprints(), tls.fingerprints());
    assert!(matches!(
        tls::TcpTls::load(&server::TlsConfig::default()),
        Err(Error::NoCertificate)
    ));
}

#[cfg(feature = "axum")]
mod axum_adapter {
    use super::*;
    use axum::{
        Router,
        extract::{WebSocketUpgrade, ws::rejection::WebSocketUpgradeRejection},
        http::HeaderMap,
        response::{IntoResponse, Response},
        routing::any,
    };

    async fn handler(
        ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
        headers: HeaderMap,
    ) -> Response {
        let Ok(ws) = ws else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let offered = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        match qmux::subprotocol::select(offered, &[]) {
            Err(refusal) => (
                StatusCode::from_u16(refusal.status()).unwrap(),
                refusal.to_string(),
            )
                .into_response(),
            Ok(negotiated) => ws
                .protocols([negotiated.subprotocol.clone()])
                .max_message_size(qmux::MAX_MESSAGE_SIZE)
                .max_frame_size(qmux::MAX_MESSAGE_SIZE)
                .on_upgrade(move |socket| async move {
                    let session = qmux::Session::new(
                        qmux::Ws(socket),
                        qmux::Role::Server,
                        negotiated.wire,
                        qmux::Config::default(),
                    );
                    echo(session).await;
                }),
        }
    }

    #[tokio::test]
    async fn qmux_runs_over_axum_websockets() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().route("/{*path}", any(handler));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let client = client_with(&[], &[], |_| {});
        let connected = bounded(client.connect(&url(&format!("ws://127.0.0.1:{port}/anon"))))
            .await
            .unwrap();
        assert_eq!(connected.version, Version::Lite06);
        bounded(echo_round_trip(MoqSession::new(
            connected.session,
            connected.transport,
        )))
        .await;

        // A client offering only bare wire formats gets the refusal's status.
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("ws://127.0.0.1:{port}/anon"),
        )
        .unwrap();
        request.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("qmux-01, webtransport"),
        );
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let err = tokio_tungstenite::client_async(request, tcp).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
            panic!("{err}")
        };
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}

/// Throughput of one qmux session over a loopback WebSocket, not a pass/fail test:
/// `cargo test --release -p moq-native --lib qmux_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn qmux_throughput() {
    let server = WsServer::start(&[], None, Serve::Echo).await;
    let client = client_with(&[], &[], |_| {});
    let connected = client
        .connect(&url(&format!("ws://127.0.0.1:{}/", server.addr.port())))
        .await
        .unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    for (streams, each) in [(1usize, 64usize << 20), (16, 4 << 20)] {
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                let (mut send, mut recv) = moq_core::transport::Session::open_bi(&session).await.unwrap();
                let chunk = Bytes::from(vec![1u8; 64 << 10]);
                let writer = async {
                    for _ in 0..each / chunk.len() {
                        send.write_chunk(chunk.clone()).await.unwrap();
                    }
                    send.finish().unwrap();
                };
                let reader = async {
                    let mut got = 0;
                    while let Some(c) = recv.read_chunk(usize::MAX).await.unwrap() {
                        got += c.len();
                    }
                    got
                };
                let ((), got) = tokio::join!(writer, reader);
                assert_eq!(got, each);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        // Each byte crosses the socket twice (echo).
        let mib = (2 * streams * each) as f64 / f64::from(1 << 20);
        eprintln!(
            "{streams} stream(s) x {} MiB echoed: {:.0} MiB/s",
            each >> 20,
            mib / secs
        );
    }
}
