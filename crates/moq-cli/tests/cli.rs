//! The `moq` binary against an in-process relay on loopback.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use moq_relay::{Relay, config::Config, session::Sessions};

const MOQ: &str = env!("CARGO_BIN_EXE_moq");

/// Start a relay (anonymous, self-signed) on ephemeral ports; returns the dev URL base
/// and the relay's sessions (to wait on).
async fn relay() -> (String, Arc<Sessions>) {
    let text = r#"
[server]
listen = "127.0.0.1:0"
tls.generate = ["localhost"]
[web.http]
listen = "127.0.0.1:0"
[auth]
public = ""
"#;
    let config = Config::from_toml(text, std::path::Path::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let port = relay.quic_addr().unwrap().port();
    assert_eq!(
        relay.web_addr().unwrap().port(),
        port,
        "HTTP follows the QUIC port"
    );
    let sessions = relay.sessions.clone();
    tokio::spawn(relay.run());
    (format!("http://localhost:{port}"), sessions)
}

/// Wait until `check` is true, for at most `timeout`; panics naming `what`. Polls
/// every 20 ms: no sleeping a fixed time and hoping the condition holds by then.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn moq(args: &[&str]) -> Command {
    let mut cmd = Command::new(MOQ);
    cmd.args(args).env("RUST_LOG", "warn");
    cmd
}

/// Run a blocking command off the runtime with a deadline.
async fn output(mut cmd: Command) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .expect("command finished in time")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_lines_round_trip() {
    let (base, _) = relay().await;
    let url = format!("{base}/anon");
    let mut subscriber = moq(&[
        "subscribe",
        &url,
        "--broadcast",
        "chat",
        "--track",
        "lines",
        "--count",
        "3",
    ]);
    subscriber.stdout(Stdio::piped());
    let subscriber = tokio::task::spawn_blocking(move || subscriber.output().unwrap());

    // One group holds every line, so a subscriber that joins late still gets them all.
    let mut publisher = moq(&[
        "publish",
        "stdin",
        &url,
        "--broadcast",
        "chat",
        "--track",
        "lines",
        "--group-size",
        "100",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    for line in ["first", "second", "third"] {
        writeln!(stdin, "{line}").unwrap();
        // Pacing, not waiting: lines typed over time each reach the subscriber while
        // stdin stays open, not all at once at end of input.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), subscriber)
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let _ = publisher.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\nthird\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_round_trip_over_raw_quic() {
    let (base, sessions) = relay().await;
    // Raw QUIC needs the certificate pinned: fetch it like the http:// mode does.
    let port = base.rsplit(':').next().unwrap();
    let fingerprint = {
        let out = output({
            let mut c = Command::new("curl");
            c.args(["-sf", &format!("{base}/certificate.sha256")]);
            c
        })
        .await;
        String::from_utf8(out.stdout).unwrap()
    };
    let url = format!("moqt://localhost:{port}/anon");
    let frames: Vec<Vec<u8>> = vec![
        vec![0u8, 1, 2],
        vec![],
        (0..=255u8).collect(),
        b"\n\nbinary\n".to_vec(),
    ];
    let mut input = Vec::new();
    for f in &frames {
        input.extend((f.len() as u32).to_be_bytes());
        input.extend(f);
    }

    let mut subscriber = moq(&[
        "--tls-fingerprint",
        &fingerprint,
        "subscribe",
        &url,
        "--broadcast",
        "bin",
        "--track",
        "raw",
        "--format",
        "binary",
        "--count",
        "4",
    ]);
    subscriber.stdout(Stdio::piped());
    let subscriber = tokio::task::spawn_blocking(move || subscriber.output().unwrap());
    // The subscriber is connected (and waiting for the broadcast) before the publisher starts.
    eventually("the subscriber to connect", Duration::from_secs(10), || {
        !sessions.registry.is_empty()
    })
    .await;
    let mut publisher = moq(&[
        "--tls-fingerprint",
        &fingerprint,
        "publish",
        "stdin",
        &url,
        "--broadcast",
        "bin",
        "--track",
        "raw",
        "--format",
        "binary",
        "--group-size",
        "100",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    stdin.flush().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), subscriber)
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let _ = publisher.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, input);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_publisher_and_subscriber() {
    let (base, _) = relay().await;
    let url = format!("{base}/anon");
    let mut publisher = moq(&["publish", "clock", &url, "--broadcast", "clock"])
        .spawn()
        .unwrap();
    let out = output(moq(&["clock", &url, "--broadcast", "clock", "--count", "2"])).await;
    let _ = publisher.kill();
    let _ = publisher.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        // YYYY-MM-DD HH:MM:SS
        assert_eq!(line.len(), 19, "{line}");
        assert_eq!(&line[4..5], "-");
        assert_eq!(&line[10..11], " ");
        assert_eq!(&line[16..17], ":");
    }

    let out = output(moq(&["announced", &url])).await;
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "clock\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do() {
    let (base, _) = relay().await;
    // A broadcast that never appears.
    let out = output(moq(&[
        "subscribe",
        &format!("{base}/anon"),
        "--broadcast",
        "nope",
        "--track",
        "t",
        "--wait",
        "1",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'nope' was not announced"), "{err}");

    // Nothing listening.
    let out = output(moq(&["announced", "http://127.0.0.1:9/anon"])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not connect to http://127.0.0.1:9/anon"),
        "{err}"
    );

    // An https:// URL to a self-signed relay, without a way to trust it.
    let https = base.replace("http://", "https://");
    let out = output(moq(&["announced", &format!("{https}/anon")])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fingerprint") || err.contains("tls-root"), "{err}");

    // A bad URL is a usage error.
    let out = output(moq(&["announced", "not a url"])).await;
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 13: a publisher and a viewer behind a UDP-blocking firewall use WebSocket over
/// TLS (`wss://`, the relay's `[web.https]` listener) and see the same lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_subscribe_over_wss() {
    let text = r#"
[server]
listen = "127.0.0.1:0"
tls.generate = ["localhost"]
[web.https]
listen = "127.0.0.1:0"
[auth]
public = ""
"#;
    let config = Config::from_toml(text, std::path::Path::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let https = relay.https_addr().unwrap().port();
    let fingerprint = relay.quic.fingerprints()[0].clone();
    let sessions = relay.sessions.clone();
    tokio::spawn(relay.run());
    let url = format!("wss://localhost:{https}/anon");

    let mut subscriber = moq(&[
        "--tls-fingerprint",
        &fingerprint,
        "subscribe",
        &url,
        "--broadcast",
        "chat",
        "--track",
        "lines",
        "--count",
        "2",
    ]);
    subscriber.stdout(Stdio::piped()).stderr(Stdio::piped());
    let subscriber = tokio::task::spawn_blocking(move || subscriber.output().unwrap());
    eventually("the wss subscriber to connect", Duration::from_secs(10), || {
        sessions
            .registry
            .list()
            .iter()
            .any(|s| s.transport == moq_native::Transport::WebSocket)
    })
    .await;
    let mut publisher = moq(&[
        "--tls-fingerprint",
        &fingerprint,
        "publish",
        "stdin",
        &url,
        "--broadcast",
        "chat",
        "--track",
        "lines",
        "--group-size",
        "100",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    for line in ["over", "websocket"] {
        writeln!(stdin, "{line}").unwrap();
        // Pacing the typed lines, as in stdin_lines_round_trip.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(30), subscriber)
        .await
        .unwrap()
        .unwrap();
    drop(stdin);
    let _ = publisher.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over\nwebsocket\n");
}
