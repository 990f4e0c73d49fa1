//! Who may do what, end to end on loopback: public prefixes for anonymous sessions,
//! JWTs on both transports (in the URL and in SETUP) and over HTTP, token expiry, and
//! client certificates from a configured CA standing in for a token.
#![allow(clippy::unwrap_used)] // Test code.

use std::time::Duration;

use moq_core::{
    BroadcastProducer, Origin, TrackInfo, TrackProducer,
    model::cache::Cache,
    session::{self, Config as SessionConfig},
};
use moq_native::{adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use url::Url;

mod common;
use common::{
    SOON, TestRelay, client_pki, connect, eventually, http_get, publisher, publisher_at, read_groups, sample,
    spawn_relay, start_relay, write_group,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_access_is_limited_to_public_prefixes() {
    let relay = start_relay("[auth]\npublic = \"anon\"").await;
    let client = relay.client(&[]);
    // Inside the public prefix: works.
    let _ok = publisher(&relay, &client, "moqt", "live").await;
    // Outside it: refused with a reason (WebTransport: HTTP 401 at CONNECT).
    let err = client.connect(&relay.url("https", "secret")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Raw QUIC: the path arrives in SETUP, so the refusal is a close with code 2.
    let connected = client.connect(&relay.url("moqt", "secret")).await.unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    let mut config = SessionConfig::new(connected.version.lite().expect("moq-lite"));
    config.setup.path = Some("/secret".into());
    config.consume = Some(Origin::default());
    let result = tokio::time::timeout(Duration::from_secs(5), session::run(session, config))
        .await
        .unwrap();
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("unauthorized") || err.contains("code 2") || err.contains("not public"),
        "{err}"
    );
}

/// A relay that requires tokens signed by a fresh key; returns the key too.
async fn token_relay(extra: &str) -> (TestRelay, moq_auth::Key, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    let path = dir.path().join("root.jwk");
    key.write_file(&path).unwrap();
    let relay = start_relay(&format!("[auth]\nkey = \"{}\"\n{extra}", path.display())).await;
    (relay, key, dir)
}

fn token(key: &moq_auth::Key, root: &str, put: &[&str], get: &[&str], exp: Option<u64>) -> String {
    let mut claims = moq_auth::Claims::new(root);
    claims.put = put.iter().map(|s| s.to_string()).collect();
    claims.get = get.iter().map(|s| s.to_string()).collect();
    claims.exp = exp;
    key.sign(&claims).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_exactly_their_scope_on_both_transports() {
    let (relay, key, _dir) = token_relay("[internal]\nlisten = \"127.0.0.1:0\"").await;
    let client = relay.client(&[]);
    let publish = token(&key, "room", &["cam"], &[], None);
    let watch = token(&key, "room", &[], &["cam"], None);

    // A publisher with a publish-only token, over raw QUIC (token in SETUP) ...
    let origin = Origin::default();
    let broadcast = BroadcastProducer::new(Cache::default());
    let track = broadcast.create_track(TrackProducer::with_info(
        "video",
        TrackInfo::default(),
        Cache::default(),
    ));
    let _p = origin.publish(Path::new("cam").unwrap(), broadcast.consume(), Hops::new());
    let url = Url::parse(&format!(
        "moqt://localhost:{}/room?jwt={publish}",
        relay.quic.port()
    ))
    .unwrap();
    let connected = client.connect(&url).await.unwrap();
    let mut config = SessionConfig::new(connected.version.lite().expect("moq-lite"));
    config.publish = Some(origin.clone());
    config.setup.path = Some(format!("/room?jwt={publish}"));
    tokio::spawn(session::run(
        MoqSession::new(connected.session, connected.transport),
        config,
    ));

    // ... and a viewer with a subscribe-only token, over WebTransport (token in the URL).
    let viewer = Origin::default();
    let url = Url::parse(&format!(
        "https://localhost:{}/room?jwt={watch}",
        relay.quic.port()
    ))
    .unwrap();
    let (_viewer, _) = connect(&client, &url, None, Some(viewer.clone())).await;
    let cam = viewer
        .wait_for(&Path::new("cam").unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut video = cam.subscribe("video").unwrap();
    eventually(
        "the relay to subscribe to the publisher's track",
        SOON,
        async || track.consumers() >= 1,
    )
    .await;
    write_group(&track, 0, 2, 10);
    assert_eq!(read_groups(&mut video, 1).await[0].0, 0);

    // No token, a forged token, a token for another root: refused and counted by reason.
    let forged = token(
        &moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap(),
        "room",
        &[],
        &["cam"],
        None,
    );
    for (query, _) in [
        ("", "token_required"),
        (&format!("?jwt={forged}")[..], "bad_signature"),
    ] {
        let url = Url::parse(&format!("https://localhost:{}/room{query}", relay.quic.port())).unwrap();
        let err = client.connect(&url).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
    let url = Url::parse(&format!(
        "https://localhost:{}/other?jwt={watch}",
        relay.quic.port()
    ))
    .unwrap();
    assert!(client.connect(&url).await.is_err());

    let (_, text) = http_get(&format!("http://{}/metrics", relay.internal.unwrap())).await;
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"token_required\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"bad_signature\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "moq_relay_auth_failures_total{reason=\"wrong_root\"}"),
        Some(1.0),
        "{text}"
    );

    // HTTP obeys the same rules.
    assert_eq!(
        http_get(&format!("http://{}/announced/room", relay.web)).await.0,
        401
    );
    let (status, body) = http_get(&format!("http://{}/announced/room?jwt={watch}", relay.web)).await;
    assert_eq!((status, body.as_str()), (200, "cam\n"));
    let (status, _) = http_get(&format!(
        "http://{}/fetch/room/cam/video?group=0&jwt={publish}",
        relay.web
    ))
    .await;
    assert_eq!(status, 401, "a publish-only token may not read");
    let (status, body) = http_get(&format!(
        "http://{}/fetch/room/cam/video?group=0&jwt={watch}",
        relay.web
    ))
    .await;
    assert_eq!((status, body.len()), (200, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closes_within_a_second_of_token_expiry() {
    let (relay, key, _dir) = token_relay("").await;
    let client = relay.client(&[]);
    let exp = now() + 2;
    let watch = token(&key, "", &[], &[""], Some(exp));
    let url = Url::parse(&format!("https://localhost:{}/?jwt={watch}", relay.quic.port())).unwrap();
    let (session, _) = connect(&client, &url, None, Some(Origin::default())).await;
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        moq_core::transport::Session::closed(&session),
    )
    .await
    .expect("closed at expiry");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(at < exp as f64 + 1.0, "closed {:.2}s after exp", at - exp as f64);
    assert!(at >= exp as f64 - 0.05, "closed before exp");
    assert!(closed.to_string().contains("expired"), "{closed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_configured_ca_stands_in_for_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_pki(dir.path(), "peer");
    let (_, stranger_cert, stranger_key) = client_pki(dir.path(), "stranger");
    let relay = start_relay(&format!(
        "tls.root = [\"{}\"]\n[auth]\npublic = \"anon\"",
        ca.display()
    ))
    .await;
    let with_cert = |cert: &std::path::PathBuf, key: &std::path::PathBuf| {
        client::Client::new(client::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: client::ClientTls {
                fingerprints: vec![relay.fingerprint.clone()],
                cert: Some(cert.clone()),
                key: Some(key.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap()
    };

    // A peer with a certificate from the CA: full access within its path, no token.
    let peer = with_cert(&cert, &key);
    let publisher = publisher_at(&relay, &peer, "https", "secret", "live").await;
    let viewer = Origin::default();
    let (_v, _) = connect(&peer, &relay.url("moqt", "secret"), None, Some(viewer.clone())).await;
    let broadcast = viewer
        .wait_for(&Path::new("live").unwrap(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut track = broadcast.subscribe("video").unwrap();
    publisher.wait_subscribed().await;
    write_group(&publisher.track, 0, 1, 10);
    assert_eq!(read_groups(&mut track, 1).await[0].0, 0);

    // Without a certificate (and no token) the same path is refused.
    let err = relay
        .client(&[])
        .connect(&relay.url("https", "secret"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // A certificate from another CA fails the TLS handshake.
    assert!(
        with_cert(&stranger_cert, &stranger_key)
            .connect(&relay.url("https", "secret"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_key_ends_the_sessions_it_authorised() {
    let (relay, key, dir) = token_relay("").await;
    let client = relay.client(&[]);
    let old = token(&key, "", &[], &[""], None);
    let url = Url::parse(&format!("https://localhost:{}/?jwt={old}", relay.quic.port())).unwrap();
    let (session, _) = connect(&client, &url, None, Some(Origin::default())).await;
    relay.wait_sessions(1).await;

    // Unchanged keys keep the session.
    let sessions = &relay.state().sessions;
    sessions.gate.reload().unwrap();
    assert_eq!(sessions.revalidate(), 0);

    // A new key replaces the old one: the session it authorised ends, with the reason.
    let new = moq_auth::Key::generate(moq_auth::Algorithm::ES256, None).unwrap();
    new.write_file(dir.path().join("root.jwk")).unwrap();
    sessions.gate.reload().unwrap();
    assert_eq!(sessions.revalidate(), 1);
    let closed = tokio::time::timeout(SOON, moq_core::transport::Session::closed(&session))
        .await
        .expect("closed on revocation");
    assert!(closed.to_string().contains("revoked"), "{closed}");
    assert_eq!(
        relay
            .metric("moq_relay_auth_failures_total{reason=\"revoked\"}")
            .await,
        1.0
    );

    // Tokens of the new key work; the old token no longer connects.
    let fresh = token(&new, "", &[], &[""], None);
    let url = Url::parse(&format!("https://localhost:{}/?jwt={fresh}", relay.quic.port())).unwrap();
    connect(&client, &url, None, Some(Origin::default())).await;
    let url = Url::parse(&format!("https://localhost:{}/?jwt={old}", relay.quic.port())).unwrap();
    assert!(client.connect(&url).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_a_key_file_is_deleted_ends_its_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let kid = moq_auth::KeyId::new("k1").unwrap();
    let key = moq_auth::Key::generate(moq_auth::Algorithm::EdDSA, Some(kid)).unwrap();
    key.to_public()
        .unwrap()
        .write_file(dir.path().join("k1.jwk"))
        .unwrap();
    let process = spawn_relay(&["--auth-key-dir", dir.path().to_str().unwrap()]).await;
    let relay = &process.relay;
    let client = relay.client(&[]);
    let jwt = token(&key, "", &[], &[""], None);
    let url = Url::parse(&format!("https://localhost:{}/?jwt={jwt}", relay.quic.port())).unwrap();
    let (session, _) = connect(&client, &url, None, Some(Origin::default())).await;

    std::fs::remove_file(dir.path().join("k1.jwk")).unwrap();
    // The directory is listed at most once a second: wait that out, then SIGHUP.
    tokio::time::sleep(moq_auth::LISTING_INTERVAL).await;
    process.signal("HUP");
    let closed = tokio::time::timeout(SOON, moq_core::transport::Session::closed(&session))
        .await
        .expect("closed after SIGHUP");
    assert!(closed.to_string().contains("revoked"), "{closed}");
}
