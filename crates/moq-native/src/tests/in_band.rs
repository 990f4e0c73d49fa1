//! In-band version negotiation (moq-lite-01/02) over real QUIC on loopback:
//! WebTransport without a protocol, as Firefox's is, and raw QUIC with ALPN
//! `moql`, for callers that opt in with `Request::ok_unnegotiated`; callers
//! that do not keep the refusal.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use moq_core::{
    BroadcastProducer, Frame, Origin, TrackInfo, TrackProducer,
    model::cache::Cache,
    session::{self, ClientParameters},
};
use web_transport_quinn::proto::ConnectRequest;

use super::{bounded, dev_config, raw_config, url};
use crate::{Error, Session, Transport, Version, adapter::MoqSession, server, tls};

const NEGOTIATION: Duration = Duration::from_secs(5);

/// A bound server and a client endpoint that dials it with `alpn`, verifying nothing.
fn dial(server: &server::Server, alpn: &[u8]) -> quinn::Connecting {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let verifier = Arc::new(tls::NoVerifier(tls::provider()));
    endpoint
        .connect_with(
            raw_config(verifier, alpn),
            server.local_addr().unwrap(),
            "localhost",
        )
        .unwrap()
}

/// Accept the next connection and hand back its request.
async fn next_request(server: &server::Server) -> server::Request {
    let incoming = bounded(server.accept()).await.unwrap();
    bounded(incoming.accept()).await.unwrap()
}

/// What the opted-in server side does: accept without a version, negotiate, then
/// publish a `clock` broadcast with one group of two frames on track `seconds`.
async fn serve_clock(request: server::Request) -> Result<(), moq_core::Error> {
    let transport = request.transport();
    let allowed = request.in_band_versions().to_vec();
    let session = MoqSession::new(request.ok_unnegotiated().await.unwrap(), transport);
    let negotiated = session::accept_in_band(&session, &allowed, NEGOTIATION).await?;

    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let track = broadcast.create_track(TrackProducer::with_info(
        "seconds",
        TrackInfo::default(),
        Cache::default(),
    ));
    let _publication = origin.publish(
        moq_proto::Path::new("clock").unwrap(),
        broadcast.consume(),
        moq_proto::Hops::new(),
    );
    let mut config = session::Config::new(negotiated.version());
    config.publish = Some(origin);
    let writer = async {
        // A group every 50 ms until the viewer has had one.
        for seq in 0.. {
            let mut group = track.create_group(seq).unwrap();
            for frame in ["12:00:", "00"] {
                group.write(Frame {
                    timestamp: 0,
                    payload: Bytes::from_static(frame.as_bytes()),
                });
            }
            group.finish();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        result = session::run_in_band(session.clone(), config, negotiated) => result,
        () = writer => Ok(()),
    }
}

/// Our client side: negotiate in-band, then read one whole group of the clock.
async fn watch_clock(session: MoqSession) -> Version {
    let negotiated = session::connect_in_band(
        &session,
        &Version::IN_BAND,
        ClientParameters::default(),
        NEGOTIATION,
    )
    .await
    .unwrap();
    let version = negotiated.version();
    let viewer = Origin::default();
    let mut config = session::Config::new(version);
    config.consume = Some(viewer.clone());
    let driver = tokio::spawn(session::run_in_band(session.clone(), config, negotiated));
    let path = moq_proto::Path::new("clock").unwrap();
    let broadcast = bounded(viewer.wait_for(&path, Duration::from_secs(10)))
        .await
        .expect("the clock was never announced");
    let mut track = broadcast.subscribe("seconds").unwrap();
    let mut group = bounded(track.next_group()).await.unwrap().unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = bounded(group.next_frame()).await.unwrap() {
        frames.push(frame.payload);
    }
    // Joined mid-group or not, the group ends with its last frame.
    assert_eq!(frames.last().map(|f| &f[..]), Some(&b"00"[..]));
    moq_core::transport::Session::close(&session, 0, "done");
    driver.abort();
    version
}

/// Firefox's WebTransport offers no protocol: the opted-in server answers 200
/// without `WT-Protocol`, and lite-02 is chosen by the SETUP.
#[tokio::test]
async fn webtransport_without_a_protocol_negotiates_in_band() {
    let server = Arc::new(server::Server::bind(dev_config("127.0.0.1:0", &[])).unwrap());
    assert_eq!(server.in_band_versions(), Version::IN_BAND);
    let connecting = dial(&server, b"h3");
    // The CONNECT arrives only once the client sends it: accept alongside.
    let accepting = server.clone();
    let serving = tokio::spawn(async move {
        let request = next_request(&accepting).await;
        assert_eq!(request.transport(), Transport::WebTransport);
        assert_eq!((request.version(), request.protocols().len()), (None, 0));
        assert_eq!(request.in_band_versions(), Version::IN_BAND);
        serve_clock(request).await
    });

    let conn = bounded(connecting).await.unwrap();
    let target = url(&format!(
        "https://localhost:{}/anon",
        server.local_addr().unwrap().port()
    ));
    let session = bounded(Session::connect(conn, ConnectRequest::new(target)))
        .await
        .unwrap();
    assert_eq!(session.protocol(), None, "answered without WT-Protocol");
    let version = watch_clock(MoqSession::new(session, Transport::WebTransport)).await;
    assert_eq!(version, Version::Lite02);
    serving.abort();
}

/// Raw QUIC with ALPN `moql`: no version until the SETUP picks one.
#[tokio::test]
async fn raw_quic_moql_negotiates_in_band() {
    let server = server::Server::bind(dev_config("127.0.0.1:0", &[])).unwrap();
    let connecting = dial(&server, b"moql");
    let request = next_request(&server).await;
    assert_eq!((request.transport(), request.version()), (Transport::Quic, None));
    assert_eq!(request.in_band_versions(), Version::IN_BAND);
    let serving = tokio::spawn(serve_clock(request));

    let conn = bounded(connecting).await.unwrap();
    let version = watch_clock(MoqSession::new(Session::raw(conn), Transport::Quic)).await;
    assert_eq!(version, Version::Lite02);
    serving.abort();
}

/// A caller that does not opt in keeps the refusal: `ok()` closes a `moql`
/// connection with the version code (WebTransport keeps its 406, see
/// `no_common_version_over_webtransport_is_a_clear_error`).
#[tokio::test]
async fn raw_quic_moql_without_opt_in_is_refused_with_the_version_code() {
    let server = server::Server::bind(dev_config("127.0.0.1:0", &[])).unwrap();
    let connecting = dial(&server, b"moql");
    let request = next_request(&server).await;
    let conn = bounded(connecting).await.unwrap();
    let err = bounded(request.ok()).await.unwrap_err();
    assert!(matches!(err, Error::NoClientVersion { .. }), "{err}");
    assert!(err.to_string().contains("offered: moql"), "{err}");
    match bounded(conn.closed()).await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(0x15));
        }
        other => panic!("closed with {other}"),
    }
}

/// A server configured without lite-01/02 offers no `moql`, and an opted-in caller
/// still refuses a WebTransport client without a common version.
#[tokio::test]
async fn a_server_without_in_band_versions_refuses_them() {
    let server = Arc::new(server::Server::bind(dev_config("127.0.0.1:0", &[Version::Lite05])).unwrap());
    assert!(server.in_band_versions().is_empty());
    let connecting = dial(&server, b"moql");
    let incoming = bounded(server.accept()).await.unwrap();
    let (accepted, dialled) = bounded(async { tokio::join!(incoming.accept(), connecting) }).await;
    assert!(accepted.is_err() && dialled.is_err(), "no common ALPN");

    // lite-02 alone is a valid configuration: `moql` only.
    let legacy = server::Server::bind(dev_config("127.0.0.1:0", &[Version::Lite02])).unwrap();
    assert!(legacy.versions().is_empty());
    assert_eq!(legacy.in_band_versions(), [Version::Lite02]);

    let connecting = dial(&server, b"h3");
    let accepting = server.clone();
    let refused = tokio::spawn(async move {
        let request = next_request(&accepting).await;
        assert!(request.in_band_versions().is_empty());
        request.ok_unnegotiated().await
    });
    let conn = bounded(connecting).await.unwrap();
    let target = url(&format!(
        "https://localhost:{}/",
        server.local_addr().unwrap().port()
    ));
    let err = bounded(Session::connect(conn, ConnectRequest::new(target)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("406"), "{err}");
    let err = bounded(refused).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::NoClientVersion { .. }), "{err}");
}
