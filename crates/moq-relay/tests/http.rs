//! The relay's public HTTP listener end to end on loopback: certificate fingerprint,
//! health, announced, fetch and CORS, with a real publisher behind them.
#![allow(clippy::unwrap_used)] // Test code.

mod common;
use common::{SOON, http_get, poll, publisher, start_relay, write_group};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints() {
    let relay = start_relay("").await;
    let client = relay.client(&[]);
    let publisher = publisher(&relay, &client, "moqt", "live").await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", relay.web);
        async move { http_get(&url).await }
    };
    let (status, body) = get("/certificate.sha256").await;
    assert_eq!((status, body.as_str()), (200, relay.fingerprint.as_str()));
    assert_eq!(get("/health").await, (200, "ok\n".to_string()));
    // The publisher's announcement reaches the relay.
    let announced = poll(
        "the broadcast to be announced over HTTP",
        SOON,
        async || match get("/announced").await {
            (200, body) if !body.is_empty() => Ok((200, body)),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(announced, (200, "anon/live\n".to_string()));
    assert_eq!(get("/announced/anon").await, (200, "live\n".to_string()));
    assert_eq!(get("/announced/other").await, (200, String::new()));

    // No wait after writing: the fetch subscribes and waits for the group itself.
    write_group(&publisher.track, 0, 3, 4);
    let (status, body) = get("/fetch/anon/live/video?group=0").await;
    assert_eq!(status, 200);
    assert_eq!(body, "0:0:0:1:0:2:");
    let (status, _) = get("/fetch/anon/missing/video").await;
    assert_eq!(status, 404);

    // Browser pages on another origin may read the fingerprint (CORS).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(relay.web).await.unwrap();
    stream
        .write_all(b"GET /certificate.sha256 HTTP/1.1\r\nHost: x\r\nOrigin: http://example.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{response}"
    );
}
