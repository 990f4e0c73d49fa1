//! ACME against a real CA: Debian's `pebble` (Let's Encrypt's test CA), started by each
//! test on loopback with its validation ports pointed at the relay under test.
//!
//! - a fresh cache: not ready while the CA is down, then issuance over TLS-ALPN-01, the
//!   certificate verified against pebble's root on QUIC (WebTransport), HTTPS and WSS,
//!   and by the `moq` CLI and the ecosystem's `moq-clock` with `--tls-root`;
//! - HTTP-01 on its own port, which redirects everything else to HTTPS;
//! - external account binding, required by the CA;
//! - a restart that reuses the cache and orders nothing;
//! - renewal of a short-lived certificate while a subscriber receives every frame;
//! - failures that keep the relay serving and say why: the CA down, a refused challenge
//!   (with and without a certificate to keep serving).
//!
//! Without `pebble` on the PATH (Debian package `pebble`) each test prints SKIPPED.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path as FsPath, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moq_native::{Version, client};
use moq_relay::{Relay, config::Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

mod common;
use common::{LOCALHOST, SOON, TestRelay, free_port, http_get, init_tracing, poll, sample};

/// How long an issuance may take on a busy machine (pebble validates at once).
const ISSUE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// pebble
// ---------------------------------------------------------------------------------------

/// The pebble binary, or `None` (after saying so) when it is not installed.
fn pebble_binary() -> Option<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin"])
    {
        let path = FsPath::new(dir).join("pebble");
        if path.is_file() {
            return Some(path);
        }
    }
    eprintln!(
        "pebble is not installed (Debian: apt-get install pebble; .ci/run installs it): ACME test SKIPPED"
    );
    None
}

/// A CA and a certificate for `localhost` / 127.0.0.1 that it signed, for pebble's own
/// HTTPS (the Debian package ships no test certificate): (ca.pem, cert.pem, key.pem).
fn pebble_pki(dir: &FsPath) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble HTTPS test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("pebble-ca.pem"),
        dir.join("pebble.pem"),
        dir.join("pebble.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Where a pebble listens, and how it validates.
#[derive(Clone)]
struct PebbleSpec {
    /// The ACME directory port (HTTPS).
    port: u16,
    /// The management port (HTTPS): roots, intermediates.
    management: u16,
    /// Where it connects for TLS-ALPN-01 (the relay's HTTPS port).
    tls_port: u16,
    /// Where it connects for HTTP-01.
    http_port: u16,
    /// Lifetime of the certificates it issues, in seconds (0: pebble's default, 5 years).
    validity: u64,
    /// Require external account binding with key id `kid-1`.
    eab: bool,
}

/// The MAC key pebble knows as `kid-1` when EAB is required (base64url).
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// A pebble process; killed when dropped.
struct Pebble {
    child: Child,
    spec: PebbleSpec,
    log: PathBuf,
    https_ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Start pebble in `dir` (which holds its HTTPS certificate from [`pebble_pki`]) and
    /// wait until its directory answers.
    async fn start(binary: &FsPath, dir: &FsPath, spec: PebbleSpec) -> Self {
        let https_ca = dir.join("pebble-ca.pem");
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", spec.port),
                "managementListenAddress": format!("127.0.0.1:{}", spec.management),
                "certificate": dir.join("pebble.pem"),
                "privateKey": dir.join("pebble.key"),
                "httpPort": spec.http_port,
                "tlsPort": spec.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": spec.eab,
                "externalAccountMACKeys": { "kid-1": EAB_KEY },
                "certificateValidityPeriod": spec.validity,
            }
        });
        let config_path = dir.join(format!("pebble-{}.json", spec.port));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.join(format!("pebble-{}-{}.log", spec.port, spec.tls_port));
        let child = Command::new(binary)
            .arg("-config")
            .arg(&config_path)
            .arg("-strict=false")
            // Validate at once, always ask for a fresh validation (so renewals answer
            // challenges too), and never refuse a good nonce (fewer retries to wait for).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut pebble = Self {
            child,
            spec,
            log,
            https_ca,
        };
        let port = pebble.spec.port;
        let child = &mut pebble.child;
        poll("pebble to listen", SOON, async || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("pebble exited at start: {status}");
            }
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
        .await;
        pebble
    }

    /// The root that signs the certificates this pebble issues (regenerated at every
    /// start), written to `path`.
    async fn root(&self, path: &FsPath) -> PathBuf {
        let (status, body) = https_get(
            SocketAddr::new(LOCALHOST, self.spec.management),
            "localhost",
            "/roots/0",
            &self.https_ca,
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
        std::fs::write(path, body).unwrap();
        path.to_path_buf()
    }

    /// How many orders pebble has been asked for.
    fn orders(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// TLS clients verifying against a root
// ---------------------------------------------------------------------------------------

fn client_config(root: &FsPath) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(root).unwrap();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: rustls_pki_types::CertificateDer<'static> = cert.unwrap();
        roots.add(cert).unwrap();
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A verified TLS handshake with `addr` for `name`: the leaf's SHA-256, or why it failed.
async fn verified_leaf(addr: SocketAddr, name: &str, root: &FsPath) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(root)));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| err.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|err| err.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    Ok(moq_native::tls::fingerprint(&leaf))
}

/// `GET path` over verified HTTPS/1.0 (so the body is neither chunked nor kept alive).
async fn https_get(addr: SocketAddr, name: &str, path: &str, root: &FsPath) -> Result<(u16, String), String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(root)));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| err.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|err| err.to_string())?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .map_err(|err| err.to_string())?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Ok((status, body.to_string()))
}

// ---------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------

/// The configuration of a relay with ACME for `localhost` from the pebble at
/// `pebble_port`. `acme` is more of `[server.tls.acme]`; `extra` more TOML after it.
fn relay_config(tmp: &FsPath, cache: &FsPath, pebble_port: u16, acme: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[server.tls.acme]
domains = ["localhost"]
directory = "https://127.0.0.1:{pebble_port}/dir"
directory_root = "{ca}"
cache_dir = "{cache}"
retry = "1s"
{acme}
[internal]
listen = "127.0.0.1:0"
[auth]
public = ""
[limits]
connections_per_second_per_ip = 100000
sessions_per_ip = 100000
{extra}
"#,
        ca = tmp.join("pebble-ca.pem").display(),
        cache = cache.display(),
    );
    init_tracing();
    let config = Config::from_toml(&text, FsPath::new("acme.toml")).unwrap();
    config.validate().unwrap();
    config
}

/// [`relay_config`], bound but not running.
async fn bind_relay(tmp: &FsPath, cache: &FsPath, pebble_port: u16, acme: &str, extra: &str) -> Relay {
    Relay::bind(relay_config(tmp, cache, pebble_port, acme, extra))
        .await
        .unwrap()
}

/// [`bind_relay`] with HTTPS on `https_port`, the port pebble validates TLS-ALPN-01 on,
/// retried while a relay that just shut down is still releasing it.
async fn bind_relay_on(tmp: &FsPath, cache: &FsPath, pebble_port: u16, acme: &str, https_port: u16) -> Relay {
    let extra = format!("[web.https]\nlisten = \"127.0.0.1:{https_port}\"");
    let config = relay_config(tmp, cache, pebble_port, acme, &extra);
    poll("the HTTPS port to be free again", SOON, async || {
        Relay::bind(config.clone())
            .await
            .map_err(|err| format!("{err:#}"))
    })
    .await
}

/// The relay's HTTPS listener (`[web.https]` on 127.0.0.1, any port).
const HTTPS: &str = "[web.https]\nlisten = \"127.0.0.1:0\"";

/// `/ready` on the internal listener: (status, body).
async fn ready(internal: SocketAddr) -> (u16, String) {
    http_get(&format!("http://{internal}/ready")).await
}

/// Wait until the relay's ACME manager has issued `n` certificates; its status then.
async fn issued(relay: &Arc<moq_native::server::Server>, n: u64) -> moq_native::acme::Status {
    let acme = relay.acme().unwrap().clone();
    poll(&format!("{n} certificate(s) issued"), ISSUE, async || {
        let status = acme.status();
        if status.issued >= n {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// Wait until the ACME manager's last failure is `reason`; its status then.
async fn failed(relay: &Arc<moq_native::server::Server>, reason: &str) -> moq_native::acme::Status {
    let acme = relay.acme().unwrap().clone();
    poll(&format!("an ACME failure: {reason}"), ISSUE, async || {
        let status = acme.status();
        if status.last_reason == Some(reason) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// A moq client that trusts only `root` (no system roots, no fingerprint).
fn verifying_client(root: &FsPath) -> client::Client {
    client::Client::new(client::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: client::ClientTls {
            roots: vec![root.to_path_buf()],
            system_roots: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

/// What the shared helpers need to talk to an in-process relay.
fn test_relay(relay: &Relay) -> TestRelay {
    let quic = relay.quic_addr().unwrap();
    TestRelay {
        quic,
        web: relay.https_addr().unwrap_or(quic),
        fingerprint: String::new(),
        internal: relay.internal_addr(),
        state: Some(common::RelayState {
            sessions: relay.sessions.clone(),
            metrics: relay.metrics.clone(),
        }),
    }
}

/// A TCP port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cache_waits_for_the_ca_then_serves_a_verified_certificate_everywhere() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let cache = tmp.path().join("acme");
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let relay = bind_relay(tmp.path(), &cache, port, "challenge = \"tls-alpn-01\"", HTTPS).await;
    let quic = relay.quic.clone();
    let https = relay.https_addr().unwrap();
    let internal = relay.internal_addr().unwrap();
    let test = test_relay(&relay);
    assert!(quic.fingerprints().is_empty(), "nothing to serve yet");
    tokio::spawn(relay.run());

    // The CA is not up yet: not ready, and the reason is known.
    let status = failed(&quic, "ca_unreachable").await;
    assert!(status.certificate.is_none());
    assert_eq!(
        ready(internal).await,
        (503, "not ready: waiting for the ACME certificate\n".to_string())
    );
    assert_eq!(http_get(&format!("http://{internal}/health")).await.0, 200);
    let text = test.metrics_text().await;
    assert_eq!(sample(&text, "moq_relay_ready"), Some(0.0), "{text}");
    assert!(sample(&text, "moq_relay_acme_orders_total{result=\"ca_unreachable\"}").unwrap() >= 1.0);
    assert_eq!(sample(&text, "moq_relay_certificate_expiry_seconds"), None);

    // The CA comes up: the next retry (1-2 s later) obtains the certificate.
    let pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            port,
            management,
            tls_port: https.port(),
            http_port: closed_port(),
            validity: 0,
            eab: false,
        },
    )
    .await;
    let root = pebble.root(&tmp.path().join("root.pem")).await;
    let status = issued(&quic, 1).await;
    let fingerprint = status.certificate.unwrap().fingerprint;
    assert_eq!(quic.fingerprints(), std::slice::from_ref(&fingerprint));
    assert_eq!(pebble.orders(), 1);
    poll("/ready", SOON, async || match ready(internal).await {
        (200, _) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    let text = test.metrics_text().await;
    assert_eq!(
        sample(&text, "moq_relay_acme_orders_total{result=\"issued\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "moq_relay_acme_consecutive_failures"), Some(0.0));
    assert!(sample(&text, "moq_relay_certificate_expiry_seconds").unwrap() > 86_400.0);
    assert_eq!(sample(&text, "moq_relay_ready"), Some(1.0));

    // The cache: a private directory holding the account and the certificate.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &FsPath| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    let mut files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{file:?}");
    }
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("account-127.0.0.1-")
    );
    assert!(
        files[1]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("localhost-")
    );

    // HTTPS: the certificate verifies against pebble's root, and is the one QUIC serves.
    assert_eq!(
        verified_leaf(https, "localhost", &root).await.unwrap(),
        fingerprint
    );
    // ... and not against another root.
    assert!(verified_leaf(https, "localhost", &pebble.https_ca).await.is_err());

    // QUIC (WebTransport and raw QUIC) and WSS, verified against pebble's root.
    let client = verifying_client(&root);
    let publisher = common::publisher(&test, &client, "https", "clock").await;
    let (mut track, _session) = common::subscriber(&test, &client, "moqt", "clock").await;
    publisher.wait_subscribed().await;
    common::write_group(&publisher.track, 0, 3, 100);
    let groups = common::read_groups(&mut track, 1).await;
    assert_eq!(groups[0].1.len(), 3);
    let wss = Url::parse(&format!("wss://localhost:{}/anon", https.port())).unwrap();
    let connected = client.connect(&wss).await.unwrap();
    assert_eq!(connected.transport, moq_native::Transport::WebSocket);
    // A client that trusts nothing but the system store refuses it (pebble is no public CA).
    let untrusting = client::Client::new(client::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        versions: vec![Version::Lite04],
        ..Default::default()
    })
    .unwrap();
    assert!(untrusting.connect(&test.url("moqt", "anon")).await.is_err());

    // The command-line clients, verifying with --tls-root (no --tls-insecure).
    clock_through_cli(&test, &root).await;
    drop(publisher);
}

/// `moq publish clock` and `moq clock` (ours, built beside the relay), then the
/// ecosystem's `moq-clock subscribe`, through the ACME certificate with `--tls-root`.
async fn clock_through_cli(test: &TestRelay, root: &FsPath) {
    let relay_binary = PathBuf::from(env!("CARGO_BIN_EXE_moq-relay"));
    let moq = relay_binary.with_file_name("moq");
    if !moq.is_file() {
        eprintln!(
            "{} is not built (cargo build -p moq-cli): the moq CLI part of this test SKIPPED",
            moq.display()
        );
        return;
    }
    let url = format!("https://localhost:{}/anon", test.quic.port());
    let root = root.to_str().unwrap();
    let mut publisher = KillOnDrop(
        Command::new(&moq)
            .args([
                "publish",
                "clock",
                &url,
                "--broadcast",
                "acme-clock",
                "--tls-root",
                root,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let line =
        first_line(Command::new(&moq).args(["clock", &url, "--broadcast", "acme-clock", "--tls-root", root]))
            .await;
    assert!(
        line.chars().any(|c| c.is_ascii_digit()),
        "moq clock printed {line:?}"
    );

    let upstream = std::env::var_os("HOME")
        .map(PathBuf::from)
        .map(|home| home.join(".cache/moq-upstream/bin/moq-clock"));
    match upstream.filter(|p| p.is_file()) {
        Some(moq_clock) => {
            let line = first_line(Command::new(moq_clock).args([
                "--url",
                &url,
                "--broadcast",
                "acme-clock",
                "--tls-root",
                root,
                "subscribe",
            ]))
            .await;
            assert!(
                line.chars().any(|c| c.is_ascii_digit()),
                "moq-clock printed {line:?}"
            );
        }
        None => eprintln!(
            "~/.cache/moq-upstream/bin/moq-clock is not installed (interop/install.sh): its part SKIPPED"
        ),
    }
    let _ = publisher.0.kill();
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `command` until it prints a non-empty line on stdout (20 s at most); that line.
async fn first_line(command: &mut Command) -> String {
    let mut child = KillOnDrop(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let stderr = child.0.stderr.take().unwrap();
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| !l.trim().is_empty())
    });
    let line = tokio::time::timeout(Duration::from_secs(20), line).await;
    drop(child);
    match line {
        Ok(Ok(Some(line))) => line,
        _ => panic!("no output; stderr: {}", errors.join().unwrap_or_default()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_on_port_80_which_redirects_everything_else() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let relay = bind_relay(
        tmp.path(),
        &tmp.path().join("acme"),
        port,
        "challenge = \"http-01\"\nhttp_listen = \"127.0.0.1:0\"",
        "",
    )
    .await;
    let quic = relay.quic.clone();
    let http = relay.acme_http_addr().unwrap();
    let test = test_relay(&relay);
    let pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            port,
            management,
            tls_port: closed_port(),
            http_port: http.port(),
            validity: 0,
            eab: false,
        },
    )
    .await;
    tokio::spawn(relay.run());
    issued(&quic, 1).await;
    let root = pebble.root(&tmp.path().join("root.pem")).await;

    // Anything but a pending challenge: 404 for an unknown token, a redirect otherwise,
    // to the certified name whatever Host said.
    assert_eq!(
        http_get(&format!("http://{http}/.well-known/acme-challenge/nope"))
            .await
            .0,
        404
    );
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.write_all(b"GET /anon?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://localhost/anon?x=1\r\n"),
        "{answer}"
    );

    // QUIC serves the certificate, verified against pebble's root.
    let client = verifying_client(&root);
    let publisher = common::publisher(&test, &client, "moqt", "live").await;
    let (mut track, _session) = common::subscriber(&test, &client, "https", "live").await;
    publisher.wait_subscribed().await;
    common::write_group(&publisher.track, 0, 2, 10);
    assert_eq!(common::read_groups(&mut track, 1).await[0].1.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_sent_when_configured() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    // Without the binding the CA refuses the account, and the relay says so.
    let refused = bind_relay(tmp.path(), &tmp.path().join("a"), port, "", HTTPS).await;
    let https_port = refused.https_addr().unwrap().port();
    let refused_quic = refused.quic.clone();
    let _pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            port,
            management,
            tls_port: https_port,
            http_port: closed_port(),
            validity: 0,
            eab: true,
        },
    )
    .await;
    let refused_handle = refused.handle();
    tokio::spawn(refused.run());
    let status = failed(&refused_quic, "refused").await;
    let why = status.last_error.unwrap();
    assert!(why.contains("creating the account"), "{why}");
    refused_handle.shutdown().await;
    drop(refused_quic);

    // With it, the account is created and the certificate issued.
    let eab = format!("eab_kid = \"kid-1\"\neab_hmac_key = \"{EAB_KEY}\"");
    let relay = bind_relay_on(tmp.path(), &tmp.path().join("b"), port, &eab, https_port).await;
    let quic = relay.quic.clone();
    tokio::spawn(relay.run());
    issued(&quic, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_cached_certificate_and_orders_nothing() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let cache = tmp.path().join("acme");
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let first = bind_relay(tmp.path(), &cache, port, "", HTTPS).await;
    let spec = PebbleSpec {
        port,
        management,
        tls_port: first.https_addr().unwrap().port(),
        http_port: closed_port(),
        validity: 0,
        eab: false,
    };
    let pebble = Pebble::start(&binary, tmp.path(), spec.clone()).await;
    let quic = first.quic.clone();
    let handle = first.handle();
    tokio::spawn(first.run());
    let fingerprint = issued(&quic, 1).await.certificate.unwrap().fingerprint;
    assert_eq!(pebble.orders(), 1);
    handle.shutdown().await;
    drop(quic);

    // The second relay serves it before running at all, and never asks the CA for more.
    let second = bind_relay_on(tmp.path(), &cache, port, "", spec.tls_port).await;
    assert_eq!(second.quic.fingerprints(), std::slice::from_ref(&fingerprint));
    let quic = second.quic.clone();
    let internal = second.internal_addr().unwrap();
    let https = second.https_addr().unwrap();
    tokio::spawn(second.run());
    assert_eq!(ready(internal).await.0, 200);
    let root = pebble.root(&tmp.path().join("root.pem")).await;
    assert_eq!(
        verified_leaf(https, "localhost", &root).await.unwrap(),
        fingerprint
    );
    // Give a mistaken order every chance to happen: the manager's first decisions are
    // taken at once, and a renewal of a five-year certificate is years away.
    let status = quic.acme().unwrap().status();
    assert_eq!((status.attempts, status.issued), (0, 0), "{status:?}");
    let renew_in = status
        .next_attempt
        .unwrap()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(renew_in > Duration::from_secs(365 * 86_400), "{renew_in:?}");
    assert_eq!(pebble.orders(), 1, "no new order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_load_swaps_the_certificate_and_loses_no_frame() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let relay = bind_relay(tmp.path(), &tmp.path().join("acme"), port, "", HTTPS).await;
    let quic = relay.quic.clone();
    let https = relay.https_addr().unwrap();
    let test = test_relay(&relay);
    // 18-second certificates: renewed after about 11-12 s (two thirds, less jitter).
    let pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            port,
            management,
            tls_port: https.port(),
            http_port: closed_port(),
            validity: 18,
            eab: false,
        },
    )
    .await;
    tokio::spawn(relay.run());
    let first = issued(&quic, 1).await.certificate.unwrap();
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert!(lifetime <= Duration::from_secs(18), "{lifetime:?}");
    let root = pebble.root(&tmp.path().join("root.pem")).await;

    // A subscriber on the first certificate, and frames every 20 ms.
    const FRAMES: u64 = 25;
    let client = verifying_client(&root);
    let publisher = common::publisher(&test, &client, "moqt", "live").await;
    let (mut track, _session) = common::subscriber(&test, &client, "https", "live").await;
    publisher.wait_subscribed().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let track = &publisher.track;
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut group = track.create_group(seq).unwrap();
                for index in 0..FRAMES {
                    group.write(common::frame(seq, index, 200));
                    // Pacing, like a camera; not a wait for a condition.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                group.finish();
                seq += 1;
            }
            (seq, publisher)
        }
    });
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Ok(Ok(Some(mut group))) =
            tokio::time::timeout(Duration::from_secs(10), track.next_group()).await
        {
            let mut frames = Vec::new();
            while let Ok(Ok(Some(frame))) =
                tokio::time::timeout(Duration::from_secs(10), group.next_frame()).await
            {
                frames.push(frame.payload);
            }
            received.push((group.sequence(), frames));
        }
        received
    });

    // The renewal: a new certificate in the resolver, seen by new handshakes.
    let renewed = issued(&quic, 2).await.certificate.unwrap();
    assert_ne!(renewed.fingerprint, first.fingerprint);
    assert!(
        renewed.not_before < first.not_after,
        "renewed before the first expired"
    );
    assert_eq!(
        verified_leaf(https, "localhost", &root).await.unwrap(),
        renewed.fingerprint
    );
    assert_eq!(quic.fingerprints(), std::slice::from_ref(&renewed.fingerprint));
    // A second viewer joins on the new certificate while the first keeps going.
    let (mut late, _late_session) = common::subscriber(&test, &client, "moqt", "live").await;
    // Keep writing a little past the swap, then stop and count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    tokio::time::sleep_until(deadline).await;
    stop.store(true, Ordering::Relaxed);
    let (written, publisher) = writer.await.unwrap();
    drop(publisher);
    let received = reader.await.unwrap();

    assert!(written >= 10, "{written} groups written");
    let sequences: Vec<u64> = received.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        sequences,
        (0..written).collect::<Vec<_>>(),
        "every group, in order"
    );
    for (seq, frames) in &received {
        let expected: Vec<String> = (0..FRAMES).map(|i| format!("{seq}:{i}:")).collect();
        let got: Vec<String> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f[..f.iter().position(|b| *b == b'x').unwrap()]).to_string())
            .collect();
        assert_eq!(got, expected, "group {seq}");
    }
    // The late viewer got at least the latest group through the new certificate.
    let group = tokio::time::timeout(Duration::from_secs(10), late.next_group())
        .await
        .unwrap()
        .unwrap();
    assert!(group.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_challenge_leaves_a_fresh_relay_up_unready_and_saying_why() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let relay = bind_relay(tmp.path(), &tmp.path().join("acme"), port, "", HTTPS).await;
    let quic = relay.quic.clone();
    let internal = relay.internal_addr().unwrap();
    let test = test_relay(&relay);
    // pebble checks TLS-ALPN-01 on a port where nothing answers.
    let _pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            port,
            management,
            tls_port: closed_port(),
            http_port: closed_port(),
            validity: 0,
            eab: false,
        },
    )
    .await;
    tokio::spawn(relay.run());
    let status = failed(&quic, "challenge_failed").await;
    let why = status.last_error.unwrap();
    assert!(
        why.contains("tls-alpn-01 challenge for localhost failed"),
        "{why}"
    );
    assert!(why.to_lowercase().contains("connect"), "pebble's reason: {why}");
    assert_eq!(
        ready(internal).await,
        (503, "not ready: waiting for the ACME certificate\n".to_string())
    );
    assert_eq!(http_get(&format!("http://{internal}/health")).await.0, 200);
    let text = test.metrics_text().await;
    assert!(sample(&text, "moq_relay_acme_orders_total{result=\"challenge_failed\"}").unwrap() >= 1.0);
    assert!(sample(&text, "moq_relay_acme_consecutive_failures").unwrap() >= 1.0);
    assert!(sample(&text, "moq_relay_acme_next_attempt_timestamp_seconds").unwrap() > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_renewals_keep_serving_the_old_certificate_ca_down_then_challenge_refused() {
    let Some(binary) = pebble_binary() else { return };
    let tmp = tempfile::tempdir().unwrap();
    pebble_pki(tmp.path());
    let (port, management) = (free_port(LOCALHOST), free_port(LOCALHOST));
    let relay = bind_relay(tmp.path(), &tmp.path().join("acme"), port, "", HTTPS).await;
    let quic = relay.quic.clone();
    let https = relay.https_addr().unwrap();
    let internal = relay.internal_addr().unwrap();
    let test = test_relay(&relay);
    // 15-second certificates: due for renewal about 10 s after issuance.
    let spec = PebbleSpec {
        port,
        management,
        tls_port: https.port(),
        http_port: closed_port(),
        validity: 15,
        eab: false,
    };
    let pebble = Pebble::start(&binary, tmp.path(), spec.clone()).await;
    tokio::spawn(relay.run());
    let served = issued(&quic, 1).await.certificate.unwrap();
    let root = pebble.root(&tmp.path().join("root.pem")).await;
    assert_eq!(
        verified_leaf(https, "localhost", &root).await.unwrap(),
        served.fingerprint
    );

    // The CA goes away before the renewal.
    drop(pebble);
    let status = failed(&quic, "ca_unreachable").await;
    assert!(status.last_error.unwrap().contains("unreachable"));
    assert_eq!(status.certificate.unwrap().fingerprint, served.fingerprint);
    assert_eq!(
        quic.fingerprints(),
        std::slice::from_ref(&served.fingerprint),
        "still served"
    );
    assert_eq!(ready(internal).await.0, 200, "still ready: it still serves");
    let text = test.metrics_text().await;
    assert!(sample(&text, "moq_relay_acme_orders_total{result=\"ca_unreachable\"}").unwrap() >= 1.0);
    assert!(sample(&text, "moq_relay_certificate_expiry_seconds").unwrap() <= 15.0);

    // A CA comes back (with its state lost: the cached account is unknown to it) but
    // cannot reach the relay to validate.
    let _pebble = Pebble::start(
        &binary,
        tmp.path(),
        PebbleSpec {
            tls_port: closed_port(),
            ..spec
        },
    )
    .await;
    let status = failed(&quic, "challenge_failed").await;
    assert!(status.last_error.unwrap().contains("localhost"));
    assert_eq!(status.certificate.unwrap().fingerprint, served.fingerprint);
    assert_eq!(quic.fingerprints(), [served.fingerprint], "still served");
}
