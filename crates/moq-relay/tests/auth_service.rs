//! `[auth] url` end to end on loopback: a scripted auth server decides the relay's
//! sessions over raw QUIC, WebTransport and HTTP; a re-check narrows a live session
//! (its subscription ends, the session goes on) or ends it; `POST /sessions/revalidate`
//! asks again at once; a server that does not answer in time refuses (fail closed,
//! counted); each session's end is reported with what it moved.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::{Router, extract::State, response::IntoResponse, routing::post};
use moq_auth::service::{Event, Request};
use moq_core::{Origin, session, transport::Session as _};
use moq_native::adapter::MoqSession;
use moq_proto::Path;
use url::Url;

mod common;
use common::{
    SOON, TestRelay, connect, eventually, http_get, poll, publisher_at, read_groups, sample, start_relay,
    write_group,
};

/// What the scripted server answers a request with: status and body, after a delay.
type Script = dyn Fn(&Request) -> (u16, String, Duration) + Send + Sync;

/// An auth server on loopback whose answers can be changed while it runs.
#[derive(Clone)]
struct Fake {
    url: String,
    log: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<Arc<Script>>>,
}

impl Fake {
    async fn start() -> Self {
        let fake = Self {
            url: String::new(),
            log: Arc::default(),
            script: Arc::new(Mutex::new(Arc::new(|_: &Request| {
                (403, "not yet".to_string(), Duration::ZERO)
            }))),
        };
        let app = Router::new()
            .route(
                "/",
                post(|State(fake): State<Fake>, body: axum::body::Bytes| async move {
                    let request: Request = serde_json::from_slice(&body).unwrap();
                    fake.log.lock().unwrap().push(request.clone());
                    let script = fake.script.lock().unwrap().clone();
                    let (status, body, delay) = script(&request);
                    tokio::time::sleep(delay).await;
                    (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response()
                }),
            )
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, ..fake }
    }

    fn answer(&self, script: impl Fn(&Request) -> (u16, String, Duration) + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    fn events(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn ok(body: String) -> (u16, String, Duration) {
    (200, body, Duration::ZERO)
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// A relay deciding through `fake`, with an internal listener; answers are not cached
/// unless `extra` says so.
async fn relay(fake: &Fake, extra: &str) -> TestRelay {
    let cache = match extra.contains("cache") {
        true => "",
        false => "cache = \"0s\"\n",
    };
    start_relay(&format!(
        "[auth]\nurl = \"{}\"\n{cache}{extra}\n[internal]\nlisten = \"127.0.0.1:0\"",
        fake.url
    ))
    .await
}

/// Whether a session is still open (not closed within a short while).
async fn open(session: &MoqSession) -> bool {
    tokio::time::timeout(Duration::from_millis(300), session.closed())
        .await
        .is_err()
}

async fn http_post(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = Url::parse(url).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let request =
        format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(SOON, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_server_admits_refuses_narrows_and_ends_sessions() {
    let fake = Fake::start().await;
    let relay = relay(&fake, "").await;
    let client = relay.client(&[]);
    let expires = in_an_hour();
    // Publishers may publish; viewers (?role=viewer) may subscribe to `cam` and `mic`.
    // `deny` is refused outright.
    let grant = move |request: &Request| match (request.path.as_str(), request.query.as_deref()) {
        ("/deny", _) => (403, "this room is closed".to_string(), Duration::ZERO),
        (_, Some("role=viewer")) => ok(format!(
            r#"{{"subscribe":["cam","mic"],"expires":{expires},"revalidate":3600}}"#
        )),
        _ => ok(format!(
            r#"{{"publish":["**"],"expires":{expires},"revalidate":3600}}"#
        )),
    };
    fake.answer(grant);

    // A publisher over raw QUIC, a viewer over WebTransport.
    let cam = publisher_at(&relay, &client, "moqt", "room", "cam").await;
    let mic = publisher_at(&relay, &client, "moqt", "room", "mic").await;
    let viewer = Origin::default();
    let url = Url::parse(&format!(
        "https://localhost:{}/room?role=viewer",
        relay.quic.port()
    ))
    .unwrap();
    let (viewer_session, _) = connect(&client, &url, None, Some(viewer.clone())).await;
    let watched = viewer
        .wait_for(&Path::new("cam").unwrap(), SOON)
        .await
        .expect("cam announced");
    assert!(viewer.wait_for(&Path::new("mic").unwrap(), SOON).await.is_some());
    let mut video = watched.subscribe("video").unwrap();
    cam.wait_subscribed().await;
    write_group(&cam.track, 0, 2, 10);
    assert_eq!(read_groups(&mut video, 1).await[0].0, 0);

    // The facts the server saw.
    let connects: Vec<Request> = fake
        .events()
        .into_iter()
        .filter(|r| r.event == Event::Connect)
        .collect();
    assert_eq!(connects.len(), 3);
    let quic = connects.iter().find(|r| r.query.is_none()).unwrap();
    assert_eq!(quic.path, "/room");
    assert_eq!(quic.transport, moq_auth::service::Transport::Quic);
    assert!(
        quic.alpn.as_deref().is_some_and(|a| a.starts_with("moq-lite-")),
        "{quic:?}"
    );
    assert_eq!(quic.remote.unwrap().ip(), std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(quic.local.map(|l| l.port()), Some(relay.quic.port()));
    let wt = connects.iter().find(|r| r.query.is_some()).unwrap();
    assert_eq!(wt.server_name.as_deref(), Some("localhost"));

    // A refusal: 401 over WebTransport, with nothing admitted.
    let err = client
        .connect(&Url::parse(&format!("https://localhost:{}/deny", relay.quic.port())).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // The operator narrows viewers to `mic` and asks for a re-check of the viewer now.
    fake.answer(move |request: &Request| match request.query.as_deref() {
        Some("role=viewer") => ok(format!(
            r#"{{"subscribe":["mic"],"expires":{expires},"revalidate":3600}}"#
        )),
        _ => grant(request),
    });
    let internal = relay.internal.unwrap();
    let (status, body) = http_post(&format!("http://{internal}/sessions/revalidate?id={}", wt.id)).await;
    assert_eq!(status, 202, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ids"], serde_json::json!([wt.id]));
    assert_eq!(answer["asked"], 1);
    // The viewer loses `cam` (withdrawn, its subscription ended) and keeps `mic`.
    eventually("cam to be withdrawn from the viewer", SOON, async || {
        viewer.consume(&Path::new("cam").unwrap()).is_none()
    })
    .await;
    write_group(&cam.track, 1, 2, 10);
    let next = tokio::time::timeout(SOON, video.next_group()).await.unwrap();
    assert!(!matches!(next, Ok(Some(_))), "the subscription ended: {next:?}");
    assert!(viewer.consume(&Path::new("mic").unwrap()).is_some());
    assert!(open(&viewer_session).await, "the session goes on");
    assert!(open(&cam.session).await, "the publisher was not re-checked");

    // Then the server refuses the viewer: the session ends and its end is reported.
    fake.answer(move |request: &Request| match request.query.as_deref() {
        Some("role=viewer") => (403, "banned".to_string(), Duration::ZERO),
        _ => grant(request),
    });
    let (status, _) = http_post(&format!("http://{internal}/sessions/revalidate?path=room")).await;
    assert_eq!(status, 202);
    let closed = tokio::time::timeout(SOON, viewer_session.closed())
        .await
        .expect("the refused session is closed");
    assert!(closed.to_string().contains("banned"), "{closed}");
    let end = poll("the viewer's end to be reported", SOON, async || {
        fake.events()
            .into_iter()
            .find(|r| r.id == wt.id && matches!(r.event, Event::End { .. }))
            .ok_or_else(|| "no end yet".to_string())
    })
    .await;
    let Event::End { reason, bytes, .. } = end.event else {
        unreachable!()
    };
    assert_eq!(reason, "refused");
    assert!(bytes.sent > 0 && bytes.received > 0, "{bytes:?}");
    // The publishers were asked about again too (path=room), and kept their grant.
    assert!(open(&mic.session).await);

    let metrics = relay.metrics_text().await;
    for (labels, at_least) in [
        ("event=\"connect\",outcome=\"granted\"", 3.0),
        ("event=\"connect\",outcome=\"refused\"", 1.0),
        ("event=\"revalidate\",outcome=\"granted\"", 1.0),
        ("event=\"revalidate\",outcome=\"refused\"", 1.0),
    ] {
        let value = sample(
            &metrics,
            &format!("moq_relay_auth_service_requests_total{{{labels}}}"),
        )
        .unwrap_or(0.0);
        assert!(value >= at_least, "{labels}: {value}\n{metrics}");
    }
    assert_eq!(
        sample(
            &metrics,
            "moq_relay_auth_failures_total{reason=\"service_refused\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_answer_in_time_refuses_and_is_counted() {
    let fake = Fake::start().await;
    fake.answer(|_| {
        (
            200,
            r#"{"publish":["**"],"subscribe":["**"]}"#.to_string(),
            Duration::from_secs(30),
        )
    });
    let relay = relay(&fake, "timeout = \"500ms\"").await;
    let client = relay.client(&[]);
    let started = std::time::Instant::now();
    // WebTransport: the CONNECT is answered 502 (no usable answer), not left hanging.
    let err = client
        .connect(&Url::parse(&format!("https://localhost:{}/room", relay.quic.port())).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("502"), "{err}");
    // Raw QUIC: closed with the unauthorized code.
    let connected = client.connect(&relay.url("moqt", "room")).await.unwrap();
    let moq = MoqSession::new(connected.session, connected.transport);
    let mut config = session::Config::new(connected.version);
    config.setup.path = Some("/room".into());
    config.consume = Some(Origin::default());
    let result = tokio::time::timeout(SOON, session::run(moq, config))
        .await
        .unwrap();
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // HTTP too.
    assert_eq!(
        http_get(&format!("http://{}/announced/room", relay.web)).await.0,
        502
    );

    let metrics = relay.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            "moq_relay_auth_service_requests_total{event=\"connect\",outcome=\"timeout\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "moq_relay_auth_failures_total{reason=\"service_timeout\"}"
        ),
        Some(3.0)
    );
    assert!(relay.state().sessions.registry.is_empty(), "nothing was admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_one_shot_sessions_for_the_auth_server() {
    let fake = Fake::start().await;
    fake.answer(
        |request: &Request| match (request.transport, request.query.as_deref()) {
            (moq_auth::service::Transport::Http, Some("jwt=good")) => ok(r#"{"subscribe":["**"]}"#.into()),
            (moq_auth::service::Transport::Http, _) => (403, "no".into(), Duration::ZERO),
            _ => ok(r#"{"publish":["**"]}"#.into()),
        },
    );
    let relay = relay(&fake, "").await;
    let client = relay.client(&[]);
    let cam = publisher_at(&relay, &client, "moqt", "room", "cam").await;
    eventually("cam to be announced", SOON, async || {
        relay
            .state()
            .sessions
            .media
            .origin
            .consume(&Path::new("room/cam").unwrap())
            .is_some()
    })
    .await;
    write_group(&cam.track, 0, 1, 5);
    assert_eq!(
        http_get(&format!("http://{}/announced/room", relay.web)).await.0,
        401
    );
    let (status, body) = http_get(&format!("http://{}/announced/room?jwt=good", relay.web)).await;
    assert_eq!((status, body.as_str()), (200, "cam\n"));
    let (status, body) = http_get(&format!("http://{}/fetch/room/cam/video?jwt=good", relay.web)).await;
    assert_eq!((status, body.len()), (200, 5));
    let http: Vec<Request> = fake
        .events()
        .into_iter()
        .filter(|r| r.transport == moq_auth::service::Transport::Http)
        .collect();
    let fetch = http
        .iter()
        .find(|r| r.path == "/room/cam")
        .expect("the fetch asked about its broadcast");
    assert_eq!(fetch.query.as_deref(), Some("jwt=good"));
    poll("the fetch's end to be reported", SOON, async || {
        fake.events()
            .iter()
            .any(|r| r.id == fetch.id && matches!(&r.event, Event::End { reason, .. } if reason == "200"))
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
}
