//! End-to-end tests over real UDP sockets on the loopback interfaces.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};
use url::Url;

use crate::{Error, Session, Transport, Version, client, quic, server, tls};

mod in_band;
mod websocket;

/// Every test finishes well within this, or fails.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("test timed out")
}

fn dev_config(bind: &str, versions: &[Version]) -> server::Config {
    server::Config {
        bind: bind.parse().unwrap(),
        tls: server::TlsConfig {
            generate: vec!["localhost".to_string()],
            root: vec![],
            ..Default::default()
        },
        versions: versions.to_vec(),
        ..Default::default()
    }
}

/// What the server saw of one session.
#[derive(Debug)]
struct Seen {
    transport: Transport,
    version: Option<Version>,
    url: Option<Url>,
}

/// A running server that accepts every session it can and echoes each bidi stream.
struct Running {
    addr: SocketAddr,
    fingerprints: Vec<String>,
    seen: mpsc::UnboundedReceiver<Result<Seen, String>>,
    server: Arc<server::Server>,
}

impl Running {
    fn start(config: server::Config) -> Self {
        Self::start_with(config, None)
    }

    /// `reject`: answer every session with this status instead of accepting it.
    fn start_with(config: server::Config, reject: Option<u16>) -> Self {
        let server = Arc::new(server::Server::bind(config).unwrap());
        let addr = server.local_addr().unwrap();
        let fingerprints = server.fingerprints();
        let (tx, seen) = mpsc::unbounded_channel();

        let accepting = server.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let request = match incoming.accept().await {
                        Ok(request) => request,
                        Err(err) => return drop(tx.send(Err(err.to_string()))),
                    };
                    let seen = Seen {
                        transport: request.transport(),
                        version: request.version(),
                        url: request.url().cloned(),
                    };
                    if let Some(status) = reject {
                        request.reject(status).await.unwrap();
                        return drop(tx.send(Ok(seen)));
                    }
                    match request.ok().await {
                        Ok(session) => {
                            let _ = tx.send(Ok(seen));
                            echo(session).await;
                        }
                        Err(err) => drop(tx.send(Err(err.to_string()))),
                    }
                });
            }
        });

        Self {
            addr,
            fingerprints,
            seen,
            server,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    async fn next(&mut self) -> Result<Seen, String> {
        bounded(self.seen.recv()).await.expect("server task ended")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.close();
    }
}

async fn echo(session: Session) {
    while let Ok((mut send, mut recv)) = session.accept_bi().await {
        tokio::spawn(async move {
            let data = recv.read_to_end(1 << 20).await.unwrap();
            send.write_all(&data).await.unwrap();
            send.finish().unwrap();
            let _ = send.stopped().await;
        });
    }
}

async fn round_trip(session: &Session) {
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    send.write_all(b"hello moq").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(1024).await.unwrap();
    assert_eq!(got, b"hello moq");
}

fn pinned(fingerprints: &[String], versions: &[Version]) -> client::Client {
    client::Client::new(client::Config {
        tls: client::ClientTls {
            fingerprints: fingerprints.to_vec(),
            system_roots: false,
            ..Default::default()
        },
        versions: versions.to_vec(),
        ..Default::default()
    })
    .unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// The QUIC session of a connection that must be one.
fn quic(connected: &client::Connected) -> &Session {
    connected.session.quic().expect("a QUIC connection")
}

#[tokio::test]
async fn raw_quic_round_trip() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = pinned(&server.fingerprints, &[]);

    let connected = bounded(client.connect(&url(&format!("moqt://127.0.0.1:{}/anon", server.port()))))
        .await
        .unwrap();
    assert_eq!(connected.transport, Transport::Quic);
    assert_eq!(connected.version, Version::Lite06, "newest version wins");
    assert_eq!(quic(&connected).protocol(), Some("moq-lite-06"));

    let seen = server.next().await.unwrap();
    assert_eq!(seen.transport, Transport::Quic);
    assert_eq!(seen.version, Some(connected.version));
    assert_eq!(seen.url, None, "raw QUIC carries no URL");

    bounded(round_trip(quic(&connected))).await;
    quic(&connected).close(0, b"done");
}

#[tokio::test]
async fn moql_scheme_is_raw_quic() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = pinned(&server.fingerprints, &[]);
    let connected = bounded(client.connect(&url(&format!("moql://localhost:{}/", server.port()))))
        .await
        .unwrap();
    assert_eq!(connected.transport, Transport::Quic);
    assert_eq!(server.next().await.unwrap().version, Some(connected.version));
}

#[tokio::test]
async fn webtransport_round_trip_with_fingerprint() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = pinned(&server.fingerprints, &[]);

    let target = url(&format!("https://localhost:{}/anon/room?jwt=abc", server.port()));
    let connected = bounded(client.connect(&target)).await.unwrap();
    assert_eq!(connected.transport, Transport::WebTransport);
    assert_eq!(connected.version, Version::Lite06);

    let seen = server.next().await.unwrap();
    assert_eq!(seen.transport, Transport::WebTransport);
    assert_eq!(seen.version, Some(connected.version));
    let seen_url = seen.url.unwrap();
    assert_eq!(seen_url.path(), "/anon/room");
    assert_eq!(seen_url.query(), Some("jwt=abc"));

    bounded(round_trip(quic(&connected))).await;
    quic(&connected).close(0, b"done");
}

/// Serve `/certificate.sha256` on TCP `port` of 127.0.0.1 like a relay's web listener,
/// reporting each request line.
async fn fingerprint_server(port: u16, body: String) -> mpsc::UnboundedReceiver<String> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let request = String::from_utf8(request).unwrap();
            let _ = tx.send(request.lines().next().unwrap_or_default().to_string());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    rx
}

#[tokio::test]
async fn http_url_fetches_the_fingerprint() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let mut requests = fingerprint_server(server.port(), format!("{}\n", server.fingerprints[0])).await;

    // Default client: no pinned fingerprint, and possibly no system roots at all here.
    let client = client::Client::new(client::Config::default()).unwrap();
    let connected = bounded(client.connect(&url(&format!("http://localhost:{}/anon", server.port()))))
        .await
        .unwrap();
    assert_eq!(connected.transport, Transport::WebTransport);

    let line = bounded(requests.recv()).await.unwrap();
    assert_eq!(line, "GET /certificate.sha256 HTTP/1.1");

    let seen = server.next().await.unwrap();
    assert_eq!(seen.version, Some(connected.version));
    // The CONNECT itself is https: WebTransport has no plaintext form.
    assert_eq!(
        seen.url.unwrap().as_str(),
        format!("https://localhost:{}/anon", server.port())
    );

    bounded(round_trip(quic(&connected))).await;
}

#[tokio::test]
async fn http_url_with_wrong_served_fingerprint_fails_clearly() {
    let server = Running::start(dev_config("127.0.0.1:0", &[]));
    let _requests = fingerprint_server(server.port(), "ab".repeat(32)).await;
    let client = client::Client::new(client::Config::default()).unwrap();
    let err = bounded(client.connect(&url(&format!("http://127.0.0.1:{}/", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::FingerprintMismatch { .. }), "{err}");
    assert!(err.to_string().contains("/certificate.sha256"), "{err}");
}

#[tokio::test]
async fn http_url_without_web_listener_names_the_url() {
    let server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = client::Client::new(client::Config::default()).unwrap();
    // Nothing listens on TCP at the server's port.
    let err = bounded(client.connect(&url(&format!("http://127.0.0.1:{}/", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::FingerprintFetch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("http://127.0.0.1:{}/certificate.sha256", server.port())),
        "{msg}"
    );
    assert!(msg.contains("TCP port"), "{msg}");
}

#[tokio::test]
async fn server_version_restriction_picks_the_allowed_version() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[Version::Lite04]));
    let client = pinned(&server.fingerprints, &[]);

    for scheme in ["moqt", "https"] {
        let connected = bounded(client.connect(&url(&format!("{scheme}://localhost:{}/", server.port()))))
            .await
            .unwrap();
        assert_eq!(connected.version, Version::Lite04, "{scheme}");
        assert_eq!(
            server.next().await.unwrap().version,
            Some(Version::Lite04),
            "{scheme}"
        );
        bounded(round_trip(quic(&connected))).await;
    }
}

#[tokio::test]
async fn client_version_restriction_picks_the_offered_version() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = pinned(&server.fingerprints, &[Version::Lite03, Version::Lite05]);

    for scheme in ["moqt", "https"] {
        let connected = bounded(client.connect(&url(&format!("{scheme}://localhost:{}/", server.port()))))
            .await
            .unwrap();
        assert_eq!(
            connected.version,
            Version::Lite05,
            "{scheme}: newest common version"
        );
        assert_eq!(
            server.next().await.unwrap().version,
            Some(Version::Lite05),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn no_common_version_over_raw_quic_is_a_clear_error() {
    let server = Running::start(dev_config("127.0.0.1:0", &[Version::Lite04]));
    let client = pinned(&server.fingerprints, &[Version::Lite06]);
    let err = bounded(client.connect(&url(&format!("moqt://127.0.0.1:{}/", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::NoServerVersion { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("offered no moq-lite version we speak"), "{msg}");
    assert!(msg.contains("moq-lite-06"), "{msg}");
}

#[tokio::test]
async fn no_common_version_over_webtransport_is_a_clear_error() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[Version::Lite04]));
    let client = pinned(&server.fingerprints, &[Version::Lite06]);
    let err = bounded(client.connect(&url(&format!("https://127.0.0.1:{}/", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::NoServerVersion { .. }), "{err}");
    assert!(err.to_string().contains("moq-lite-06"), "{err}");

    // The server saw no usable version and refused the session itself.
    let server_err = server.next().await.unwrap_err();
    assert!(
        server_err.contains("offered no moq-lite version this server allows"),
        "{server_err}"
    );
    assert!(server_err.contains("moq-lite-06"), "{server_err}");
}

#[tokio::test]
async fn wrong_fingerprint_is_a_clear_error() {
    let server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = pinned(&["00".repeat(32)], &[]);
    for scheme in ["moqt", "https"] {
        let err = bounded(client.connect(&url(&format!("{scheme}://localhost:{}/", server.port()))))
            .await
            .unwrap_err();
        eprintln!("{err}");
        assert!(
            matches!(err, Error::FingerprintMismatch { .. }),
            "{scheme}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("certificate for localhost does not match"), "{msg}");
        // The message names the certificate actually presented, so it can be compared.
        assert!(msg.contains(&server.fingerprints[0]), "{msg}");
    }
}

/// A CA and a leaf signed by it, both as PEM.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
    leaf_der: Vec<u8>,
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "moq-native test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    Pki {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[tokio::test]
async fn untrusted_certificate_says_what_to_do() {
    let server = Running::start(dev_config("127.0.0.1:0", &[]));
    let dir = tempfile::tempdir().unwrap();
    // Trust some unrelated CA only, so the generated certificate cannot verify.
    let other = write(dir.path(), "other-ca.pem", &pki(&["localhost"]).ca_pem);
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            roots: vec![other],
            system_roots: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();

    for scheme in ["https", "moqt"] {
        let err = bounded(client.connect(&url(&format!("{scheme}://localhost:{}/", server.port()))))
            .await
            .unwrap_err();
        eprintln!("{err}");
        assert!(
            matches!(err, Error::CertificateNotTrusted { .. }),
            "{scheme}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("certificate for localhost is not trusted"),
            "{msg}"
        );
        assert!(
            msg.contains("--tls-root CA.pem, --tls-fingerprint HEX, or use an http:// URL"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn no_roots_at_all_says_what_to_do() {
    let server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            system_roots: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let err = bounded(client.connect(&url(&format!("https://localhost:{}/", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::NoRoots { .. }), "{err}");
    assert!(err.to_string().contains("--tls-root"), "{err}");
}

#[tokio::test]
async fn insecure_accepts_any_certificate() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            insecure: true,
            system_roots: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let connected = bounded(client.connect(&url(&format!("https://localhost:{}/", server.port()))))
        .await
        .unwrap();
    assert_eq!(server.next().await.unwrap().version, Some(connected.version));
}

#[tokio::test]
async fn pem_files_load_and_verify_against_their_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["localhost", "127.0.0.1"]);
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem);
    // A chain file may hold the leaf followed by intermediates; here leaf + CA.
    let cert = write(dir.path(), "cert.pem", &format!("{}{}", pki.leaf_pem, pki.ca_pem));
    let key = write(dir.path(), "key.pem", &pki.leaf_key_pem);

    let mut server = Running::start(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec![cert],
            key: vec![key],
            generate: vec![],
            root: vec![],
            acme: None,
        },
        ..Default::default()
    });
    assert_eq!(server.fingerprints, vec![tls::fingerprint(&pki.leaf_der)]);

    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            roots: vec![ca],
            system_roots: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    for target in [
        format!("https://localhost:{}/", server.port()),
        format!("moqt://127.0.0.1:{}/", server.port()),
    ] {
        let connected = bounded(client.connect(&url(&target))).await.unwrap();
        assert_eq!(
            server.next().await.unwrap().version,
            Some(connected.version),
            "{target}"
        );
        bounded(round_trip(quic(&connected))).await;
    }
}

#[tokio::test]
async fn missing_key_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&["localhost"]);
    let cert = write(dir.path(), "cert.pem", &pki.leaf_pem);
    let key = dir.path().join("missing-key.pem");

    let err = server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec![cert],
            key: vec![key.clone()],
            generate: vec![],
            root: vec![],
            acme: None,
        },
        ..Default::default()
    })
    .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::ReadFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&key.display().to_string()), "{msg}");
    assert!(msg.contains("private key"), "{msg}");
}

#[tokio::test]
async fn mismatched_key_and_bad_pem_are_reported_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = pki(&["localhost"]);
    let b = pki(&["localhost"]);
    let cert = write(dir.path(), "cert.pem", &a.leaf_pem);
    let other_key = write(dir.path(), "other-key.pem", &b.leaf_key_pem);
    let not_pem = write(dir.path(), "not-pem.pem", "hello\n");

    let bind = |cert: &Path, key: &Path| {
        server::Server::bind(server::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            tls: server::TlsConfig {
                cert: vec![cert.to_path_buf()],
                key: vec![key.to_path_buf()],
                generate: vec![],
                root: vec![],
                acme: None,
            },
            ..Default::default()
        })
        .unwrap_err()
    };

    let err = bind(&cert, &other_key);
    eprintln!("{err}");
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("other-key.pem"), "{err}");

    let err = bind(&not_pem, &other_key);
    eprintln!("{err}");
    assert!(matches!(err, Error::Pem { .. }), "{err}");
    assert!(err.to_string().contains("not-pem.pem"), "{err}");

    let err = bind(&cert, &not_pem);
    eprintln!("{err}");
    assert!(matches!(err, Error::Pem { .. }), "{err}");
    assert!(err.to_string().contains("not-pem.pem"), "{err}");
}

#[tokio::test]
async fn no_certificate_says_what_to_set() {
    let err = server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, Error::NoCertificate), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("tls.cert") && msg.contains("tls.key") && msg.contains("tls.generate"),
        "{msg}"
    );

    let err = server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec!["a.pem".into()],
            key: vec![],
            generate: vec![],
            root: vec![],
            acme: None,
        },
        ..Default::default()
    })
    .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::CertKeyCount { certs: 1, keys: 0 }), "{err}");
}

#[test]
fn generated_certificate_is_short_lived_ecdsa_p256() {
    use x509_parser::{extensions::GeneralName, prelude::*};

    let generated = tls::generate(&["localhost".to_string(), "relay.test".to_string()]).unwrap();
    let (_, cert) = X509Certificate::from_der(&generated.cert_der).unwrap();

    let validity = cert.validity();
    let period = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert!(period <= 14 * 24 * 3600, "validity {period} s exceeds 14 days");
    assert!(period >= 7 * 24 * 3600, "validity {period} s is needlessly short");
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(validity.not_before.timestamp() <= now && now < validity.not_after.timestamp());

    let spki = cert.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let curve = spki.algorithm.parameters.as_ref().unwrap().as_oid().unwrap();
    assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    assert_eq!(
        cert.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );

    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["localhost", "relay.test", "127.0.0.1", "::1"]);

    // The fingerprint is the SHA-256 of the DER, lowercase hex.
    let fp = tls::fingerprint(&generated.cert_der);
    assert_eq!(fp.len(), 64);
    assert_eq!(fp, fp.to_lowercase());
    // The Debug form shows the fingerprint and never the key.
    let debug = format!("{generated:?}");
    assert!(debug.contains(&fp) && !debug.contains("PRIVATE"), "{debug}");
}

#[test]
fn fingerprints_parse_in_common_spellings() {
    let hex = "ab".repeat(32);
    let upper_colons = vec!["AB"; 32].join(":");
    assert_eq!(tls::parse_fingerprint(&hex).unwrap(), [0xab; 32]);
    assert_eq!(
        tls::parse_fingerprint(&format!(" {upper_colons}\n")).unwrap(),
        [0xab; 32]
    );

    let err = tls::parse_fingerprint("abcd").unwrap_err();
    assert!(err.to_string().contains("2 bytes"), "{err}");
    assert!(tls::parse_fingerprint("zz").is_err());
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let mut server = Running::start(dev_config("[::1]:0", &[]));
    assert!(server.addr.is_ipv6());
    let client = pinned(&server.fingerprints, &[]);
    for scheme in ["moqt", "https"] {
        let connected = bounded(client.connect(&url(&format!("{scheme}://[::1]:{}/x", server.port()))))
            .await
            .unwrap();
        let seen = server.next().await.unwrap();
        assert_eq!(seen.version, Some(connected.version), "{scheme}");
        bounded(round_trip(quic(&connected))).await;
    }
}

#[tokio::test]
async fn ipv6_wildcard_is_dual_stack() {
    let mut server = Running::start(dev_config("[::]:0", &[]));
    let client = pinned(&server.fingerprints, &[]);
    for host in ["127.0.0.1", "[::1]", "localhost"] {
        let connected = bounded(client.connect(&url(&format!("moqt://{host}:{}/", server.port()))))
            .await
            .unwrap();
        assert_eq!(
            server.next().await.unwrap().version,
            Some(connected.version),
            "{host}"
        );
        bounded(round_trip(quic(&connected))).await;
    }
}

#[tokio::test]
async fn ipv4_client_socket_reaches_ipv4_server() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let client = client::Client::new(client::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: client::ClientTls {
            fingerprints: server.fingerprints.clone(),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let connected = bounded(client.connect(&url(&format!("https://localhost:{}/", server.port()))))
        .await
        .unwrap();
    assert_eq!(server.next().await.unwrap().version, Some(connected.version));
}

#[tokio::test]
async fn webtransport_reject_reaches_the_client_as_a_status() {
    let mut server = Running::start_with(dev_config("127.0.0.1:0", &[]), Some(403));
    let client = pinned(&server.fingerprints, &[]);
    let err = bounded(client.connect(&url(&format!("https://localhost:{}/secret", server.port()))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Rejected { status: 403, .. }), "{err}");
    assert!(err.to_string().contains("HTTP 403"), "{err}");
    assert_eq!(server.next().await.unwrap().transport, Transport::WebTransport);
}

#[tokio::test]
async fn raw_quic_reject_closes_with_a_code_and_reason() {
    let mut server = Running::start_with(dev_config("127.0.0.1:0", &[]), Some(403));
    let client = pinned(&server.fingerprints, &[]);
    let connected = bounded(client.connect(&url(&format!("moqt://localhost:{}/", server.port()))))
        .await
        .unwrap();
    assert_eq!(server.next().await.unwrap().transport, Transport::Quic);

    let err = bounded(quic(&connected).closed()).await;
    let (code, reason) = web_transport_quinn::generic::Error::session_error(&err).unwrap();
    assert_eq!(code, server::status_to_code(403));
    assert_eq!(code, 0x2, "moq-lite UNAUTHORIZED");
    assert_eq!(reason, "403 Forbidden");
}

#[tokio::test]
async fn unreachable_server_names_the_addresses() {
    // Bind a socket and leave it silent: the handshake can only time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            insecure: true,
            ..Default::default()
        },
        quic: quic::Config {
            handshake_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let err = bounded(client.connect(&url(&format!("moqt://localhost:{port}/"))))
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains(&format!("UDP port {port}")), "{msg}");
}

#[tokio::test]
async fn bad_urls_are_refused_with_the_url() {
    let client = pinned(&["00".repeat(32)], &[]);
    let err = client.connect(&url("ftp://localhost/x")).await.unwrap_err();
    assert!(err.to_string().contains("unsupported scheme 'ftp'"), "{err}");
    let err = client.connect(&url("moqt:relative")).await.unwrap_err();
    assert!(err.to_string().contains("no host"), "{err}");
}

#[tokio::test]
async fn handshake_timeout_drops_a_silent_webtransport_client() {
    // A client that completes QUIC with ALPN h3 but never sends the CONNECT.
    let server = server::Server::bind(server::Config {
        quic: quic::Config {
            handshake_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..dev_config("127.0.0.1:0", &[])
    })
    .unwrap();
    let addr = server.local_addr().unwrap();

    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let verifier = Arc::new(tls::NoVerifier(tls::provider()));
    let connecting = endpoint
        .connect_with(raw_config(verifier, b"h3"), addr, "localhost")
        .unwrap();

    // The server starts the handshake only when it accepts the incoming connection.
    let incoming = bounded(server.accept()).await.unwrap();
    let (result, conn) = bounded(async { tokio::join!(incoming.accept(), connecting) }).await;
    let _conn = conn.unwrap();
    let err = result.unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn reload_picks_up_new_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki(&["localhost"]);
    let cert = write(dir.path(), "cert.pem", &first.leaf_pem);
    let key = write(dir.path(), "key.pem", &first.leaf_key_pem);
    let server = server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec![cert.clone()],
            key: vec![key.clone()],
            generate: vec![],
            root: vec![],
            acme: None,
        },
        ..Default::default()
    })
    .unwrap();
    assert_eq!(server.fingerprints(), [tls::fingerprint(&first.leaf_der)]);

    // A broken file leaves the old certificate in place.
    std::fs::write(&key, "garbage").unwrap();
    assert!(server.reload_certificates().is_err());
    assert_eq!(server.fingerprints(), [tls::fingerprint(&first.leaf_der)]);

    let second = pki(&["localhost"]);
    std::fs::write(&cert, &second.leaf_pem).unwrap();
    std::fs::write(&key, &second.leaf_key_pem).unwrap();
    server.reload_certificates().unwrap();
    assert_eq!(server.fingerprints(), [tls::fingerprint(&second.leaf_der)]);
}

#[tokio::test]
async fn sni_selects_the_matching_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = pki(&["a.test"]);
    let b = pki(&["b.test"]);
    let mut server = Running::start(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            cert: vec![
                write(dir.path(), "a.pem", &a.leaf_pem),
                write(dir.path(), "b.pem", &b.leaf_pem),
            ],
            key: vec![
                write(dir.path(), "a.key", &a.leaf_key_pem),
                write(dir.path(), "b.key", &b.leaf_key_pem),
            ],
            generate: vec![],
            root: vec![],
            acme: None,
        },
        ..Default::default()
    });

    // Pin only b's certificate and present the name b.test (which does not resolve, so
    // dial the address directly): only picking the certificate by SNI can pass.
    let verifier = Arc::new(tls::FingerprintVerifier::new(
        tls::provider(),
        vec![tls::parse_fingerprint(&tls::fingerprint(&b.leaf_der)).unwrap()],
    ));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = bounded(
        endpoint
            .connect_with(raw_config(verifier, b"moq-lite-05"), server.addr, "b.test")
            .unwrap(),
    )
    .await
    .unwrap();
    let session = Session::raw(conn);
    assert_eq!(session.protocol(), Some("moq-lite-05"));
    assert_eq!(server.next().await.unwrap().version, Some(Version::Lite05));
    bounded(round_trip(&session)).await;
}

/// A bare quinn client configuration with one ALPN, for tests that bypass [`client::Client`].
fn raw_config(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    alpn: &[u8],
) -> quinn::ClientConfig {
    let mut crypto = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

#[test]
fn versions_are_newest_first_and_deduplicated() {
    assert_eq!(crate::versions(&[]), Version::PREFERRED.to_vec());
    assert_eq!(
        crate::versions(&[Version::Lite03, Version::Lite05, Version::Lite03]),
        vec![Version::Lite05, Version::Lite03]
    );
}

#[test]
fn quic_config_rejects_useless_keep_alive() {
    let config = quic::Config {
        keep_alive: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    assert!(config.transport().unwrap_err().to_string().contains("keep-alive"));
    assert!(quic::Config::default().transport().is_ok());
}

#[tokio::test]
async fn addresses_are_raced_so_a_dead_first_address_costs_little() {
    let mut server = Running::start(dev_config("127.0.0.1:0", &[]));
    let port = server.port();
    let client = client::Client::new(client::Config {
        tls: client::ClientTls {
            fingerprints: server.fingerprints.clone(),
            ..Default::default()
        },
        quic: quic::Config {
            handshake_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();

    // What `localhost` resolves to on a typical dual-stack host, while the relay only
    // listens on IPv4: ::1 first (nothing answers there), then 127.0.0.1.
    let target = client::Target::parse(&url(&format!("moqt://localhost:{port}/"))).unwrap();
    let addrs: Vec<SocketAddr> = vec![
        format!("[::1]:{port}").parse().unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
    ];
    let config = client
        .quinn_config(client.verifier(&target).unwrap(), vec![b"moq-lite-06".to_vec()])
        .unwrap();

    let start = tokio::time::Instant::now();
    let conn = bounded(client.race(&target, &addrs, config, client::Check::Pinned))
        .await
        .unwrap();
    // quinn reports IPv4 peers of a dual-stack socket as IPv4-mapped IPv6.
    assert_eq!(conn.remote_address().ip().to_canonical(), addrs[1].ip());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(server.next().await.unwrap().version, Some(Version::Lite06));
}

#[tokio::test]
async fn webtransport_handshake_errors_keep_their_detail() {
    // A client that opens HTTP/3 and then closes: the server error must say why.
    let server = server::Server::bind(dev_config("127.0.0.1:0", &[])).unwrap();
    let addr = server.local_addr().unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let verifier = Arc::new(tls::NoVerifier(tls::provider()));
    let connecting = endpoint
        .connect_with(raw_config(verifier, b"h3"), addr, "localhost")
        .unwrap();
    // The server starts the handshake only when it accepts the incoming connection.
    let incoming = bounded(server.accept()).await.unwrap();
    let accept = tokio::spawn(incoming.accept());
    let conn = bounded(connecting).await.unwrap();
    conn.close(7u32.into(), b"bye");
    let err = bounded(accept).await.unwrap().unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, Error::WebTransportAccept { .. }), "{err}");
    assert!(err.to_string().contains("bye"), "{err}");
}

/// Accept one session with `config`, take `uni` unidirectional then `bi` bidirectional
/// streams from the peer and keep them all open; report each count as it is reached.
async fn hold_streams(
    config: server::Config,
    uni: usize,
    bi: usize,
) -> (Holding, mpsc::UnboundedReceiver<usize>) {
    use moq_core::transport::Session as _;

    let quic = config.quic.clone();
    let server = Arc::new(server::Server::bind(config).unwrap());
    let addr = server.local_addr().unwrap();
    let fingerprints = server.fingerprints();
    let (tx, rx) = mpsc::unbounded_channel();
    let accepting = server.clone();
    tokio::spawn(async move {
        let request = accepting.accept().await.unwrap().accept().await.unwrap();
        let transport = request.transport();
        let session = crate::adapter::MoqSession::with_config(request.ok().await.unwrap(), transport, &quic);
        let mut held = Vec::new();
        for _ in 0..uni {
            held.push(session.accept_uni().await.unwrap());
        }
        tx.send(held.len()).unwrap();
        let mut held_bi = Vec::new();
        for _ in 0..bi {
            held_bi.push(session.accept_bi().await.unwrap());
        }
        tx.send(held_bi.len()).unwrap();
        let _ = session.closed().await;
    });
    (
        Holding {
            addr,
            fingerprints,
            server,
        },
        rx,
    )
}

struct Holding {
    addr: SocketAddr,
    fingerprints: Vec<String>,
    server: Arc<server::Server>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.server.close();
    }
}

fn small_credit(initial: u32, max: u32) -> server::Config {
    server::Config {
        quic: quic::Config {
            initial_streams: initial,
            max_uni_streams: max,
            max_bidi_streams: max,
            ..Default::default()
        },
        ..dev_config("127.0.0.1:0", &[])
    }
}

#[tokio::test]
async fn stream_credit_grows_while_the_peer_keeps_streams_open() {
    for scheme in ["moqt", "https"] {
        // quinn would hold the peer at 4 open streams per direction without the growth.
        let (server, mut counts) = hold_streams(small_credit(4, 64), 40, 40).await;
        let client = pinned(&server.fingerprints, &[]);
        let connected =
            bounded(client.connect(&url(&format!("{scheme}://localhost:{}/", server.addr.port()))))
                .await
                .unwrap();
        let session = quic(&connected).clone();

        let mut open = Vec::new();
        for _ in 0..40 {
            let mut send = bounded(session.open_uni()).await.unwrap();
            send.write_all(b"x").await.unwrap();
            open.push(send);
        }
        assert_eq!(bounded(counts.recv()).await, Some(40), "{scheme}");
        let mut open_bi = Vec::new();
        for _ in 0..40 {
            let (mut send, recv) = bounded(session.open_bi()).await.unwrap();
            send.write_all(b"x").await.unwrap();
            open_bi.push((send, recv));
        }
        assert_eq!(bounded(counts.recv()).await, Some(40), "{scheme}");
    }
}

#[tokio::test]
async fn stream_credit_stops_growing_at_the_maximum() {
    let (server, mut counts) = hold_streams(small_credit(2, 8), 9, 0).await;
    let client = pinned(&server.fingerprints, &[]);
    let connected = bounded(client.connect(&url(&format!("moqt://localhost:{}/", server.addr.port()))))
        .await
        .unwrap();
    let session = quic(&connected).clone();

    let mut open = Vec::new();
    for _ in 0..8 {
        let mut send = bounded(session.open_uni()).await.unwrap();
        send.write_all(b"x").await.unwrap();
        open.push(send);
    }
    // The ninth must wait for one of the eight to close.
    let ninth = tokio::time::timeout(Duration::from_millis(500), session.open_uni()).await;
    assert!(
        ninth.is_err(),
        "the peer got a ninth stream past max_uni_streams = 8"
    );
    assert!(counts.try_recv().is_err());
}

/// A peer's close code and reason reach the moq-core session as they were sent, over raw
/// QUIC and WebTransport (how a client tells "token expired" from a lost link); our own
/// close is not reported as the peer's.
#[tokio::test]
async fn the_peers_close_code_and_reason_reach_the_session() {
    use moq_core::transport::Session as _;

    use crate::adapter::MoqSession;

    let server = Arc::new(server::Server::bind(dev_config("127.0.0.1:0", &[])).unwrap());
    let port = server.local_addr().unwrap().port();
    let client = pinned(&server.fingerprints(), &[]);
    let accepting = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                let request = incoming.accept().await.unwrap();
                let transport = request.transport();
                let session = MoqSession::new(request.ok().await.unwrap(), transport);
                session.close(0x2, "unauthorized: token expired");
            });
        }
    });
    for scheme in ["moqt", "https"] {
        let connected = bounded(client.connect(&url(&format!("{scheme}://localhost:{port}/anon"))))
            .await
            .unwrap();
        let session = MoqSession::new(connected.session, connected.transport);
        bounded(session.closed()).await;
        assert_eq!(
            session.peer_close(),
            Some((0x2, "unauthorized: token expired".to_string())),
            "{scheme}"
        );
    }
    let connected = bounded(client.connect(&url(&format!("moqt://localhost:{port}/anon"))))
        .await
        .unwrap();
    let session = MoqSession::new(connected.session, connected.transport);
    session.close(0, "done");
    assert_eq!(session.peer_close(), None, "a local close is ours");
    server.close();
}
