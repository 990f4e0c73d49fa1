//! IETF moq-transport through the real relay on loopback: drafts 14, 16 and 22 (and the
//! rest) over raw QUIC, WebTransport and WebSocket, IETF publishers reaching moq-lite
//! viewers and back through one upstream subscription, the version restriction, tokens
//! in SETUP, and the per-version session metrics.
#![allow(clippy::unwrap_used)] // Test code.

use std::time::Duration;

use moq_native::{Protocol, Version};
use moq_proto::ietf;

mod common;
use common::{SOON, eventually, publisher, read_groups, sample, start_relay, subscriber, write_group};

fn draft(n: u8) -> Protocol {
    Protocol::Ietf(ietf::Version::ALL.into_iter().find(|v| v.number() == n).unwrap())
}

fn payloads(groups: &[(u64, Vec<moq_core::Frame>)]) -> Vec<(u64, Vec<Vec<u8>>)> {
    groups
        .iter()
        .map(|(seq, frames)| (*seq, frames.iter().map(|f| f.payload.to_vec()).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ietf_publishers_reach_lite_and_ietf_viewers_on_every_transport() {
    let relay = start_relay("[internal]\nlisten = \"127.0.0.1:0\"").await;
    let lite = relay.client(&[]);
    let cases = [
        (14, "moqt"),
        (16, "https"),
        (22, "moqt"),
        (17, "https"),
        (15, "moqt"),
        (18, "moqt"),
        (19, "https"),
        (20, "moqt"),
        (21, "https"),
    ];
    // Every session stays up to the end, so the live subscriptions add up.
    let mut kept = Vec::new();
    for (n, (number, scheme)) in cases.into_iter().enumerate() {
        let ietf_client = relay.client_for(&[draft(number)]);
        let name = format!("cam{number}");
        let publisher = publisher(&relay, &ietf_client, scheme, &name).await;
        let (mut ietf_view, _a) = subscriber(&relay, &ietf_client, scheme, &name).await;
        let (mut lite_view, _b) = subscriber(&relay, &lite, "moqt", &name).await;
        relay.wait_subscriptions(2 * (n + 1)).await;
        publisher.wait_subscribed().await;
        write_group(&publisher.track, 1, 3, 100);
        write_group(&publisher.track, 2, 2, 5000);
        let expected = [
            (
                1,
                (0..3)
                    .map(|i| common::frame(1, i, 100).payload.to_vec())
                    .collect(),
            ),
            (
                2,
                (0..2)
                    .map(|i| common::frame(2, i, 5000).payload.to_vec())
                    .collect(),
            ),
        ];
        assert_eq!(
            payloads(&read_groups(&mut ietf_view, 2).await),
            expected,
            "draft {number}"
        );
        assert_eq!(
            payloads(&read_groups(&mut lite_view, 2).await),
            expected,
            "draft {number}"
        );
        // Both viewers share one subscription to the IETF publisher.
        assert_eq!(publisher.track.consumers(), 1, "draft {number}");
        kept.push((publisher, ietf_view, lite_view, _a, _b));
    }
    // Sessions are labelled with their version.
    let text = relay.metrics_text().await;
    assert_eq!(
        sample(
            &text,
            "moq_relay_sessions_total{transport=\"quic\",version=\"moq-transport-14\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "moq_relay_sessions_total{transport=\"webtransport\",version=\"moq-transport-16\"}"
        )
        .is_some(),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lite_publisher_reaches_ietf_viewers_over_websocket_too() {
    let relay = start_relay("").await;
    let lite = relay.client(&[]);
    let publisher = publisher(&relay, &lite, "moqt", "talk").await;
    let mut viewers = Vec::new();
    for (number, scheme) in [(14, "ws"), (16, "ws"), (22, "ws"), (22, "moqt")] {
        let client = relay.client_for(&[draft(number)]);
        let url = relay.url(scheme, "anon");
        let url = match scheme {
            "ws" => url::Url::parse(&format!("ws://localhost:{}/anon", relay.web.port())).unwrap(),
            _ => url,
        };
        let origin = moq_core::Origin::default();
        let (session, version) = common::connect(&client, &url, None, Some(origin.clone())).await;
        assert_eq!(version, draft(number));
        let broadcast = origin
            .wait_for(&moq_proto::Path::new("talk").unwrap(), Duration::from_secs(10))
            .await
            .expect("announced");
        viewers.push((broadcast.subscribe("video").unwrap(), session));
    }
    relay.wait_subscriptions(viewers.len()).await;
    publisher.wait_subscribed().await;
    write_group(&publisher.track, 9, 2, 10);
    for (track, _) in &mut viewers {
        let got = read_groups(track, 1).await;
        assert_eq!(got[0].0, 9);
        assert_eq!(got[0].1.len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_version_list_restricts_moq_transport() {
    let relay = start_relay("server.version = [\"moq-lite-06\", \"moq-transport-16\"]").await;
    // Offered and allowed.
    let client = relay.client_for(&[draft(16)]);
    let (_session, version) = common::connect(&client, &relay.url("moqt", "anon"), None, None).await;
    assert_eq!(version, draft(16));
    // Not allowed: no common ALPN on raw QUIC, 406 on WebTransport.
    let client = relay.client_for(&[draft(14), draft(22)]);
    assert!(client.connect(&relay.url("moqt", "anon")).await.is_err());
    let err = client.connect(&relay.url("https", "anon")).await.unwrap_err();
    assert!(
        err.to_string().contains("406") || err.to_string().contains("version"),
        "{err}"
    );
    // moq-lite still works alongside.
    let client = relay.client(&[Version::Lite06]);
    let (_session, version) = common::connect(&client, &relay.url("moqt", "anon"), None, None).await;
    assert_eq!(version, Version::Lite06);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_quic_token_travels_in_the_setup_path() {
    let dir = tempfile::tempdir().unwrap();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let path = dir.path().join("root.jwk");
    key.write_file(&path).unwrap();
    let relay = start_relay(&format!("[auth]\nkey = \"{}\"", path.display())).await;
    let mut claims = moq_auth::Claims::new("room");
    claims.put = vec!["cam".into()];
    claims.get = vec!["cam".into()];
    let jwt = key.sign(&claims).unwrap();
    for number in [14, 16, 22] {
        let client = relay.client_for(&[draft(number)]);
        // With the token in the path: the session runs, and may publish.
        let origin = moq_core::Origin::default();
        let broadcast = moq_core::BroadcastProducer::new(moq_core::model::cache::Cache::default());
        let _publication = origin.publish(
            moq_proto::Path::new("cam").unwrap(),
            broadcast.consume(),
            moq_proto::Hops::new(),
        );
        let url = relay.url("moqt", &format!("room?jwt={jwt}"));
        let (session, _) = common::connect(&client, &url, Some(origin), None).await;
        let media = relay.state().sessions.media.origin.clone();
        eventually("the token's broadcast announced", SOON, async || {
            media
                .consume(&moq_proto::Path::new("room/cam").unwrap())
                .is_some()
        })
        .await;
        moq_core::transport::Session::close(&session, 0, "done");

        // Without one: closed with UNAUTHORIZED (2) once the SETUP is read.
        let (session, _) = common::connect(&client, &relay.url("moqt", "room"), None, None).await;
        let closed = tokio::time::timeout(
            Duration::from_secs(5),
            moq_core::transport::Session::closed(&session),
        )
        .await
        .unwrap();
        assert!(
            closed.message.contains("2") || closed.message.contains("unauthorized"),
            "draft {number}: {closed}"
        );
    }
}

/// A raw-QUIC session on `draft`'s ALPN, with no session driver: the test writes the bytes.
async fn raw_session(relay: &common::TestRelay, number: u8) -> moq_native::adapter::MoqSession {
    session_over(relay, number, "moqt").await
}

/// Like [`raw_session`], over `scheme` (`moqt` or `https`).
async fn session_over(
    relay: &common::TestRelay,
    number: u8,
    scheme: &str,
) -> moq_native::adapter::MoqSession {
    let client = relay.client_for(&[draft(number)]);
    let connected = client.connect(&relay.url(scheme, "anon")).await.unwrap();
    assert_eq!(connected.version, draft(number));
    moq_native::adapter::MoqSession::new(connected.session, connected.transport)
}

/// Wait until the relay closes `session`; its close reason.
async fn refused(session: &moq_native::adapter::MoqSession) -> String {
    tokio::time::timeout(
        Duration::from_secs(5),
        moq_core::transport::Session::closed(session),
    )
    .await
    .expect("the relay closes the session")
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_unversioned_setup_is_refused_and_counted() {
    use moq_core::transport::{SendStream as _, Session as _};
    use moq_proto::ietf::{ClientSetup, Encode, Message};

    let relay = start_relay("").await;
    let refusals = |reason: &'static str| {
        let relay = &relay;
        async move {
            sample(
                &relay.metrics_text().await,
                &format!("moq_relay_sessions_refused_total{{reason=\"{reason}\"}}"),
            )
            .unwrap_or(0.0)
        }
    };

    // Draft 14 and 16: garbage where CLIENT_SETUP belongs on the control stream.
    for number in [14, 16] {
        let before = refusals("bad_setup").await;
        let session = raw_session(&relay, number).await;
        let (mut send, _recv) = session.open_bi().await.unwrap();
        send.write_all(&[0x3f, 0x00, 0x02, 0xff, 0xff]).await.unwrap();
        let reason = refused(&session).await;
        assert!(!reason.is_empty(), "draft {number}");
        eventually("bad_setup counted", SOON, async || {
            refusals("bad_setup").await > before
        })
        .await;
    }

    // Over WebTransport the URL already passed the gate; the SETUP is read when the
    // session runs, and refused the same way.
    let before = refusals("bad_setup").await;
    let session = session_over(&relay, 16, "https").await;
    let (mut send, _recv) = session.open_bi().await.unwrap();
    send.write_all(&[0x3f, 0x00, 0x02, 0xff, 0xff]).await.unwrap();
    refused(&session).await;
    eventually("bad_setup counted over WebTransport", SOON, async || {
        refusals("bad_setup").await > before
    })
    .await;

    // Draft 22: garbage on the SETUP stream (a unidirectional one from draft 17).
    let before = refusals("bad_setup").await;
    let session = raw_session(&relay, 22).await;
    let mut send = session.open_uni().await.unwrap();
    send.write_all(&[0x2f, 0x00, 0x01, 0x02, 0x03]).await.unwrap();
    refused(&session).await;
    eventually("bad_setup counted for draft 22", SOON, async || {
        refusals("bad_setup").await > before
    })
    .await;

    // `moq-00` (draft 14 by ALPN) whose CLIENT_SETUP offers only draft 13: no common
    // version.
    let before = refusals("version").await;
    let session = raw_session(&relay, 14).await;
    let (mut send, _recv) = session.open_bi().await.unwrap();
    let setup = Message::ClientSetup(ClientSetup {
        versions: vec![0xff00_000d],
        options: Default::default(),
    });
    let bytes = setup.to_vec(ietf::Version::Draft14).unwrap();
    send.write_all(&bytes).await.unwrap();
    refused(&session).await;
    eventually("version refusal counted", SOON, async || {
        refusals("version").await > before
    })
    .await;
}
