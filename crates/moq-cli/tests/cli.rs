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
    // HTTP takes the QUIC port number on TCP, which another process may hold: try again.
    let mut tries = 0;
    let relay = loop {
        let config = Config::from_toml(text, std::path::Path::new("test.toml")).unwrap();
        match Relay::bind(config).await {
            Ok(relay) => break relay,
            Err(err) if tries < 10 => {
                tries += 1;
                eprintln!("bind: {err:#}; trying another port");
            }
            Err(err) => panic!("bind: {err:#}"),
        }
    };
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
    cmd.args(args)
        .env("RUST_LOG", std::env::var("MOQ_TEST_LOG").unwrap_or("warn".into()));
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

// ---------------------------------------------------------------------------------------
// Issue 14: clients that move on GOAWAY and say why
// ---------------------------------------------------------------------------------------

/// An in-process relay we can drain, as SIGTERM does.
struct Running {
    port: u16,
    handle: moq_relay::Handle,
    sessions: Arc<Sessions>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// A relay (self-signed, HTTP on the QUIC port) at `addr` with `extra` TOML; retries
    /// for a while when the address is still held by a relay that is going away.
    async fn start(addr: &str, extra: &str) -> Self {
        let text = format!(
            "[server]\nlisten = \"{addr}\"\ntls.generate = [\"localhost\"]\n[web.http]\nlisten = \"{addr}\"\n{extra}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let relay = loop {
            let config = Config::from_toml(&text, std::path::Path::new("test.toml")).unwrap();
            match Relay::bind(config).await {
                Ok(relay) => break relay,
                Err(err) if tokio::time::Instant::now() < deadline => {
                    eprintln!("bind {addr}: {err:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("bind {addr}: {err:#}"),
            }
        };
        let port = relay.quic_addr().unwrap().port();
        Self {
            port,
            handle: relay.handle(),
            sessions: relay.sessions.clone(),
            task: tokio::spawn(relay.run()),
        }
    }

    /// Drain as SIGTERM does (GOAWAY, wait up to `timeout` for sessions to leave), wait
    /// for the relay to stop and free its address; how long the drain took and how many
    /// sessions were still there at its end.
    async fn drain(self, timeout: Duration) -> (Duration, usize) {
        let started = std::time::Instant::now();
        let left = self.handle.drain(timeout).await;
        let took = started.elapsed();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the relay stopped after its drain")
            .unwrap()
            .unwrap();
        (took, left)
    }

    fn announced(&self, path: &str) -> bool {
        self.sessions
            .media
            .origin
            .consume(&moq_proto::Path::new(path).unwrap())
            .is_some()
    }
}

/// Seconds since midnight of a clock line `YYYY-MM-DD HH:MM:SS` (and its day).
fn clock_seconds(line: &str) -> (String, u32) {
    let (day, time) = line.split_once(' ').unwrap();
    let parts: Vec<u32> = time.split(':').map(|p| p.parse().unwrap()).collect();
    (day.to_string(), parts[0] * 3600 + parts[1] * 60 + parts[2])
}

/// `values` hold every number from the smallest to the largest once: nothing lost,
/// nothing twice (the order may differ after a reconnect: newer groups are sent first).
fn assert_contiguous(what: &str, mut values: Vec<u64>) {
    assert!(!values.is_empty(), "{what}: nothing received");
    values.sort_unstable();
    for pair in values.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{what}: a gap or a repeat in {values:?}");
    }
}

/// Issue 14, item 1: a rolling restart (SIGTERM's drain, then a new relay on the same
/// address) under load: two publishers and four viewers. Every client leaves the
/// draining relay at once, so the drain ends far inside drain_timeout; they reconnect to
/// the new relay and resume where they stood: no clock second and no numbered line lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_moves_every_client_and_viewers_lose_nothing() {
    if let Ok(filter) = std::env::var("MOQ_RELAY_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let auth = "[auth]\npublic = \"\"";
    let first = Running::start("127.0.0.1:0", auth).await;
    let port = first.port;
    let url = format!("http://localhost:{port}/anon");

    let mut clock_publisher = moq(&["publish", "clock", &url, "--broadcast", "clock"])
        .spawn()
        .unwrap();
    let mut lines_publisher = moq(&[
        "publish",
        "stdin",
        &url,
        "--broadcast",
        "numbers",
        "--track",
        "n",
        "--group-size",
        "5",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = lines_publisher.stdin.take().unwrap();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        // 50 lines a second: load, and a fine-grained check for losses.
        std::thread::spawn(move || {
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                if writeln!(stdin, "{n}").is_err() {
                    break;
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    eventually("both broadcasts announced", Duration::from_secs(10), || {
        first.announced("anon/clock") && first.announced("anon/numbers")
    })
    .await;

    let viewer = |args: &[&str]| {
        let mut cmd = moq(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let clocks: Vec<_> = (0..2)
        .map(|_| viewer(&["clock", &url, "--broadcast", "clock", "--count", "7"]))
        .collect();
    let subscribers: Vec<_> = (0..2)
        .map(|_| {
            viewer(&[
                "subscribe",
                &url,
                "--broadcast",
                "numbers",
                "--track",
                "n",
                "--count",
                "300",
            ])
        })
        .collect();
    let sessions = first.sessions.clone();
    eventually("six sessions", Duration::from_secs(10), || {
        sessions.registry.len() >= 6
    })
    .await;
    // Pacing, not waiting: let the viewers receive for a while before the restart.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (took, left) = first.drain(Duration::from_secs(20)).await;
    assert_eq!(left, 0, "every session left on its own");
    assert!(
        took < Duration::from_secs(4),
        "the drain took {took:?} with drain_timeout 20s: clients did not move on GOAWAY"
    );
    let second = Running::start(&format!("127.0.0.1:{port}"), auth).await;

    for (i, clock) in clocks.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(40), clock)
            .await
            .expect("the clock viewer finished")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "clock {i}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let times: Vec<(String, u32)> = text.lines().map(clock_seconds).collect();
        assert_eq!(times.len(), 7, "clock {i}: {text}");
        // (A test that runs across midnight compares seconds of two days; it fails loudly.)
        assert!(times.iter().all(|(day, _)| *day == times[0].0), "{text}");
        assert_contiguous(
            &format!("clock {i}"),
            times.iter().map(|(_, s)| u64::from(*s)).collect(),
        );
    }
    for (i, subscriber) in subscribers.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(40), subscriber)
            .await
            .expect("the subscriber finished")
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "subscriber {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let numbers: Vec<u64> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(numbers.len(), 300, "subscriber {i}");
        assert_contiguous(&format!("subscriber {i}"), numbers);
    }
    assert!(
        second.announced("anon/clock") && second.announced("anon/numbers"),
        "the publishers reconnected to the new relay"
    );
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = clock_publisher.kill();
    let _ = lines_publisher.kill();
    let _ = clock_publisher.wait();
    let _ = lines_publisher.wait();
    let _ = writer.join();
}

/// `moq token ...`: its stdout, trimmed; panics with its stderr when it fails.
async fn token(args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let out = output(moq(&all)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issue 14, items 5 and 6: every refusal ends the command with a non-zero exit and a
/// line that names the reason, and no token ever shows in what it prints: a session
/// refused for want of a token, a bad token inline in the URL, an anonymous publisher in
/// a subscribe-only prefix, and a viewer whose token (from --token-file) expires while it
/// watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_reason_exit_non_zero_and_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.jwk");
    let public = dir.path().join("public.jwk");
    let (key_s, public_s) = (key.to_str().unwrap(), public.to_str().unwrap());
    token(&["generate", "--out", key_s, "--public", public_s]).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls.generate = [\"localhost\"]\n[web.http]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nkey = {public_s:?}\npublic = {{ subscribe = [\"anon\"] }}\n"
    );
    let config = Config::from_toml(&text, std::path::Path::new("test.toml")).unwrap();
    let relay = Relay::bind(config).await.unwrap();
    let base = format!("http://localhost:{}", relay.quic_addr().unwrap().port());
    tokio::spawn(relay.run());

    let fails = |out: &std::process::Output, secret: &str| -> String {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            secret.is_empty() || !err.contains(secret),
            "the token shows: {err}"
        );
        // The reason: one line, last (warnings may come before it).
        let last = err.trim().lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("moq: "), "{err}");
        last
    };

    // No token where one is needed.
    let out = output(moq(&["announced", &format!("{base}/secret")])).await;
    let err = fails(&out, "");
    assert!(err.contains("401"), "{err}");

    // A bad token inline: refused, and hidden.
    let bogus = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl";
    let out = output(moq(&["announced", &format!("{base}/secret?jwt={bogus}")])).await;
    let err = fails(&out, bogus);
    assert!(err.contains("401"), "{err}");

    // A token for another root: the refusal says so (WebTransport carries only the 401).
    let elsewhere = token(&[
        "sign",
        "--key",
        key_s,
        "--root",
        "other",
        "--subscribe",
        "",
        "--expires",
        "1h",
    ])
    .await;
    let mut cmd = moq(&["announced", &format!("{base}/secret")]);
    cmd.env("MOQ_TOKEN", &elsewhere);
    let out = output(cmd).await;
    let err = fails(&out, &elsewhere);
    assert!(
        err.contains("401") && err.contains("the token is for 'other', not 'secret'"),
        "{err}"
    );

    // A token that may not list what is asked for: refused, not an empty list.
    let narrow = token(&[
        "sign",
        "--key",
        key_s,
        "--root",
        "secret",
        "--subscribe",
        "only",
        "--expires",
        "1h",
    ])
    .await;
    let mut cmd = moq(&["announced", &format!("{base}/secret"), "elsewhere"]);
    cmd.env("MOQ_TOKEN", &narrow);
    let out = output(cmd).await;
    let err = fails(&out, &narrow);
    assert!(err.contains("refused to list"), "{err}");

    // An anonymous publisher where anonymous users may only watch: told so at once.
    let started = std::time::Instant::now();
    let mut cmd = moq(&[
        "publish",
        "stdin",
        &format!("{base}/anon"),
        "--broadcast",
        "b",
        "--track",
        "t",
    ]);
    cmd.stdin(Stdio::piped());
    let out = output(cmd).await;
    let err = fails(&out, "");
    assert!(err.contains("refused our broadcasts"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    // A viewer whose token expires while it watches a clock.
    let forever = token(&[
        "sign",
        "--key",
        key_s,
        "--root",
        "secret",
        "--publish",
        "",
        "--subscribe",
        "",
        "--expires",
        "1h",
    ])
    .await;
    let short = token(&[
        "sign",
        "--key",
        key_s,
        "--root",
        "secret",
        "--subscribe",
        "",
        "--expires",
        "3s",
    ])
    .await;
    let short_file = dir.path().join("viewer.jwt");
    std::fs::write(&short_file, &short).unwrap();
    let url = format!("{base}/secret");
    let mut clock = moq(&["publish", "clock", &url, "--broadcast", "clock"])
        .env("MOQ_TOKEN", &forever)
        .spawn()
        .unwrap();
    let out = output(moq(&[
        "clock",
        &url,
        "--broadcast",
        "clock",
        "--token-file",
        short_file.to_str().unwrap(),
    ]))
    .await;
    let _ = clock.kill();
    let _ = clock.wait();
    let err = fails(&out, &short);
    assert!(err.contains("token expired"), "{err}");
}

/// Issue 14, item 1: a publisher stopped with SIGTERM (or Ctrl-C) closes its session on
/// the way out, so the relay drops its broadcast at once instead of holding it until the
/// connection times out (while viewers stare at a frozen clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_publisher_tells_the_relay_at_once() {
    let (base, sessions) = relay().await;
    let url = format!("{base}/anon");
    for signal in ["-TERM", "-INT"] {
        let mut publisher = moq(&["publish", "clock", &url, "--broadcast", "clock"])
            .spawn()
            .unwrap();
        let path = moq_proto::Path::new("anon/clock").unwrap();
        // (Its session is up: the signal handlers are in place by then.)
        eventually("the clock announced", Duration::from_secs(10), || {
            sessions.registry.len() == 1 && sessions.media.origin.consume(&path).is_some()
        })
        .await;
        let status = Command::new("kill")
            .args([signal, &publisher.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::task::spawn_blocking(move || publisher.wait().unwrap())
            .await
            .unwrap();
        assert!(exit.success(), "{signal}: {exit:?}");
        eventually(
            &format!("the session gone after {signal}"),
            Duration::from_secs(2),
            || sessions.registry.is_empty(),
        )
        .await;
    }
}

/// A `publish stdin` whose input is still open (a pipe nobody has closed) exits on SIGTERM
/// too: the thread blocked reading stdin must not keep the process alive (it did, and
/// the interop suite's publisher hung there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdin_publisher_exits_on_sigterm_while_its_input_is_open() {
    let (base, sessions) = relay().await;
    let url = format!("{base}/anon");
    let mut publisher = moq(&[
        "publish",
        "stdin",
        &url,
        "--broadcast",
        "data",
        "--track",
        "lines",
    ])
    .stdin(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let input = publisher.stdin.take().unwrap();
    let path = moq_proto::Path::new("anon/data").unwrap();
    eventually("the stdin broadcast announced", Duration::from_secs(10), || {
        sessions.registry.len() == 1 && sessions.media.origin.consume(&path).is_some()
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &publisher.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || publisher.wait().unwrap()),
    )
    .await
    .expect("moq publish stdin still running 5 s after SIGTERM")
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    drop(input);
}
