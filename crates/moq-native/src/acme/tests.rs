//! The certificate manager without a CA: the cache at start-up, failures that keep the
//! served certificate, and TLS-ALPN-01 answers from the shared resolver. Issuance
//! against a real CA (pebble) is tested by the relay (`crates/moq-relay/tests/acme.rs`).

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::{server, tls};

const DAY: Duration = Duration::from_secs(86_400);

/// A CA and a leaf for `names` valid from `from` to `to` (relative to now), as the PEM
/// bundle the cache holds (chain, then key).
fn bundle(names: &[&str], from: i64, to: i64) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(to);
    let leaf = params.signed_by(&key, &ca).unwrap();
    (
        format!("{}{}{}", leaf.pem(), ca.pem(), key.serialize_pem()),
        tls::fingerprint(leaf.der()),
    )
}

fn config(dir: &Path, domains: &[&str]) -> Config {
    let mut config = Config::new(domains.iter().map(|d| d.to_string()).collect(), dir.to_path_buf());
    // Nothing listens there: any attempt to reach the CA fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.directory = format!("https://{closed}/dir");
    config.retry = Duration::from_secs(1);
    config
}

fn bind(config: Config) -> Result<server::Server, crate::Error> {
    server::Server::bind(server::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls: server::TlsConfig {
            acme: Some(config),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Put `bundle` where the manager for `config` looks for its certificate.
fn cache(config: &Config, bundle: &str) {
    let cache = cache::Cache::open(&config.cache).unwrap();
    let path = cache.certificate(&config.directory, &config.domains);
    cache.write(&path, bundle.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_valid_cached_certificate_is_served_at_once_and_ordered_for_later() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), &["relay.test", "edge.relay.test"]);
    let (pem, fingerprint) = bundle(&["relay.test", "edge.relay.test"], -3600, 90 * 86_400 - 3600);
    cache(&config, &pem);
    let server = bind(config).unwrap();
    assert_eq!(server.fingerprints(), std::slice::from_ref(&fingerprint));
    let status = server.acme().unwrap().status();
    let issued = status.certificate.unwrap();
    assert_eq!(issued.fingerprint, fingerprint);
    assert_eq!(status.attempts, 0, "nothing ordered");
    // Renewal between day 55 and day 60 of the 90-day lifetime.
    let after = issued.renew_at.duration_since(issued.not_before).unwrap();
    assert!(after > DAY * 55 && after <= DAY * 60, "{after:?}");
    assert_eq!(status.next_attempt, Some(issued.renew_at));
    assert!(server.certificate_expiry().is_some());
}

#[tokio::test]
async fn expired_foreign_or_garbled_cached_certificates_are_not_served() {
    for (names, from, to, garble) in [
        (&["relay.test"][..], -90 * 86_400, -60, false),
        (&["other.test"][..], -60, 86_400, false),
        (&["relay.test"][..], -60, 86_400, true),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(tmp.path(), &["relay.test"]);
        let (mut pem, _) = bundle(names, from, to);
        if garble {
            pem = pem.replace("PRIVATE KEY", "PUBLIC KEY");
        }
        cache(&config, &pem);
        let server = bind(config).unwrap();
        assert!(server.fingerprints().is_empty(), "{names:?} {from} {to} {garble}");
        assert_eq!(server.acme().unwrap().status().certificate, None);
        assert_eq!(server.certificate_expiry(), None);
    }
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ip = config(tmp.path(), &["127.0.0.1"]);
    assert!(
        bind(ip.clone())
            .unwrap_err()
            .to_string()
            .contains("not a DNS name")
    );
    ip.domains.clear();
    assert!(bind(ip).unwrap_err().to_string().contains("no domains"));
    let mut eab = config(tmp.path(), &["relay.test"]);
    eab.external_account = Some(ExternalAccount {
        kid: "kid-1".into(),
        hmac_key: "not base64url!".into(),
    });
    let err = bind(eab.clone()).unwrap_err().to_string();
    assert!(err.contains("HMAC key"), "{err}");
    assert!(
        !format!("{:?}", eab.external_account).contains("not base64url"),
        "the key is redacted"
    );
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = bind(config(&file, &["relay.test"])).unwrap_err().to_string();
    assert!(err.contains("ACME cache"), "{err}");
    let mut roots = config(tmp.path(), &["relay.test"]);
    roots.directory_roots = vec![tmp.path().join("missing.pem")];
    assert!(
        bind(roots)
            .unwrap_err()
            .to_string()
            .contains("ACME directory root")
    );
    // A valid key decodes, with or without padding.
    let key = ExternalAccount {
        kid: "k".into(),
        hmac_key: "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".into(),
    };
    assert_eq!(key.key().unwrap().len(), 48);
}

#[tokio::test]
async fn an_unreachable_ca_keeps_the_served_certificate_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), &["relay.test"]);
    // Past two thirds of its life: due for renewal now.
    let (pem, fingerprint) = bundle(&["relay.test"], -80 * 86_400, 10 * 86_400);
    cache(&config, &pem);
    let server = bind(config).unwrap();
    let acme = server.acme().unwrap().clone();
    let mut status = acme.subscribe();
    let run = tokio::spawn(acme.clone().run());
    let failed = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.consecutive_failures >= 2),
    )
    .await
    .expect("two failed attempts within 20 s")
    .unwrap()
    .clone();
    run.abort();
    assert_eq!(failed.last_reason, Some("ca_unreachable"), "{failed:?}");
    assert!(
        failed.last_error.as_deref().unwrap().contains("cannot connect"),
        "{failed:?}"
    );
    assert_eq!(failed.failures.get("ca_unreachable"), Some(&2));
    assert_eq!(failed.issued, 0);
    assert!(failed.attempts >= 2);
    assert!(failed.next_attempt.unwrap() > SystemTime::now() - Duration::from_secs(5));
    assert_eq!(failed.certificate.unwrap().fingerprint, fingerprint);
    assert_eq!(server.fingerprints(), [fingerprint], "still served");
}

#[tokio::test]
async fn without_any_certificate_handshakes_fail_and_failures_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let server = bind(config(tmp.path(), &["relay.test"])).unwrap();
    let acme = server.acme().unwrap().clone();
    let mut status = acme.subscribe();
    let run = tokio::spawn(acme.clone().run());
    let failed = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.consecutive_failures >= 1),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    run.abort();
    assert_eq!(failed.certificate, None);
    assert_eq!(failed.last_reason, Some("ca_unreachable"));

    // The HTTPS side refuses ordinary clients: there is nothing to present.
    let (addr, _task) = serve(server.tcp_tls().unwrap()).await;
    assert!(handshake(addr, "relay.test", &[b"h2"]).await.is_err());
}

/// Accept TLS connections with `tls` on loopback, forever.
async fn serve(tls: tls::TcpTls) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.acceptor();
    let task = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(socket).await;
            });
        }
    });
    (addr, task)
}

/// Accepts any certificate without parsing it: webpki refuses the challenge
/// certificate's critical acmeIdentifier extension, which only a validator understands.
#[derive(Debug)]
struct AcceptAll;

impl rustls::client::danger::ServerCertVerifier for AcceptAll {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Handshake with SNI `name` offering `alpn`; the leaf presented and the ALPN chosen.
async fn handshake(
    addr: SocketAddr,
    name: &str,
    alpn: &[&[u8]],
) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let mut config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAll))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .map_err(|err| err.to_string())?;
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    Ok((leaf, session.alpn_protocol().map(<[u8]>::to_vec)))
}

#[tokio::test]
async fn tls_alpn_01_is_answered_only_to_the_validator_and_only_while_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), &["relay.test"]);
    let (pem, fingerprint) = bundle(&["relay.test"], -60, 86_400);
    cache(&config, &pem);
    let server = bind(config).unwrap();
    let (addr, _task) = serve(server.tcp_tls().unwrap()).await;

    // Nothing pending: the validator gets no certificate at all.
    assert!(handshake(addr, "relay.test", &[ALPN_ACME_TLS]).await.is_err());

    let digest = [7u8; 32];
    let key = challenge_key("relay.test", &digest, server.certs()).unwrap();
    server.certs().set_challenge("Relay.Test", key);

    let (leaf, alpn) = handshake(addr, "relay.test", &[ALPN_ACME_TLS]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(ALPN_ACME_TLS));
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let acme = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("the acmeIdentifier extension");
    assert!(acme.critical);
    // DER OCTET STRING of the 32-byte digest.
    assert_eq!(acme.value, [&[0x04, 0x20][..], &digest].concat());

    // Ordinary clients, and a validator for another name, never see it.
    let (leaf, alpn) = handshake(addr, "relay.test", &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls::fingerprint(&leaf), fingerprint);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (leaf, _) = handshake(addr, "relay.test", &[b"h2", ALPN_ACME_TLS])
        .await
        .unwrap();
    assert_eq!(tls::fingerprint(&leaf), fingerprint);
    assert!(handshake(addr, "other.test", &[ALPN_ACME_TLS]).await.is_err());

    server.certs().clear_challenge("relay.test");
    assert!(handshake(addr, "relay.test", &[ALPN_ACME_TLS]).await.is_err());
}

#[test]
fn acme_errors_are_classified() {
    let problem = |kind: &str| {
        instant_acme::Error::Api(
            serde_json::from_value(serde_json::json!({
                "type": kind, "detail": "because", "status": 400
            }))
            .unwrap(),
        )
    };
    let rate = Error::from_acme(
        "placing the order",
        problem("urn:ietf:params:acme:error:rateLimited"),
    );
    assert_eq!(rate.reason(), "rate_limited");
    assert!(rate.to_string().contains("because"));
    let gone = Error::from_acme(
        "placing the order",
        problem("urn:ietf:params:acme:error:accountDoesNotExist"),
    );
    assert!(gone.account_gone());
    assert_eq!(gone.reason(), "refused");
    let other = Error::from_acme(
        "placing the order",
        problem("urn:ietf:params:acme:error:rejectedIdentifier"),
    );
    assert!(!other.account_gone());
    assert_eq!(
        Error::from_acme("x", instant_acme::Error::Timeout(None)).reason(),
        "protocol"
    );
    for reason in Error::REASONS {
        assert!(!reason.is_empty());
    }
    assert!(
        challenge_key(
            "relay.test",
            &[0; 31],
            &tls::Certs::load(&[], &[], &["x".into()], None, tls::provider()).unwrap()
        )
        .is_err()
    );
}
