//! TLS material: PEM files, self-signed development certificates, fingerprints, and the
//! certificate verifiers the client can use.

use std::{
    collections::HashMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime, pem::PemObject,
};
use sha2::{Digest, Sha256};

use crate::Error;

/// How long a generated development certificate is valid, counted from its `notBefore`.
///
/// Chrome accepts a certificate pinned with `serverCertificateHashes` only if its whole
/// validity period is at most 14 days and its key is ECDSA (WebTransport spec, "compute a
/// certificate hash"); stay a day under the limit so clock skew cannot push us over.
pub const GENERATED_VALIDITY: Duration = Duration::from_secs(13 * 24 * 60 * 60);

/// How far in the past a generated certificate's `notBefore` is set, to tolerate clients
/// whose clock is behind ours.
const GENERATED_BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The lowercase hex SHA-256 of a certificate's DER encoding.
///
/// This is the value a relay serves at `/certificate.sha256` and that browsers pass as
/// `serverCertificateHashes`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Parse a SHA-256 fingerprint written as hex, optionally with `:` separators
/// (`AB:CD:...`, as browsers and `openssl x509 -fingerprint` print it) or whitespace
/// around it. Case does not matter.
pub fn parse_fingerprint(value: &str) -> Result<[u8; 32], Error> {
    let cleaned: String = value.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&cleaned).map_err(|err| Error::Fingerprint {
        value: value.to_string(),
        detail: err.to_string(),
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| Error::Fingerprint {
        value: value.to_string(),
        detail: format!("{} bytes", bytes.len()),
    })
}

/// The crypto provider: the process default if one was installed, otherwise ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// A self-signed certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Generated {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM. Never log it.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key, DER. Never log it.
    pub key_der: Vec<u8>,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generated")
            .field("fingerprint", &fingerprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

/// Generate a self-signed development certificate for `names`.
///
/// ECDSA P-256 with SHA-256, valid from an hour ago for [`GENERATED_VALIDITY`] (under
/// Chrome's 14-day limit for pinned certificates). Subject alternative names are the
/// given names (IP literals become IP SANs) plus `127.0.0.1` and `::1` when `localhost`
/// is among them, so `https://127.0.0.1:…` and `https://[::1]:…` verify too.
pub fn generate(names: &[String]) -> Result<Generated, Error> {
    let fail = |source| Error::Generate {
        names: names.to_vec(),
        source,
    };

    let mut sans: Vec<String> = Vec::new();
    for name in names {
        if !sans.contains(name) {
            sans.push(name.clone());
        }
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case("localhost")) {
        for ip in ["127.0.0.1", "::1"] {
            if !sans.iter().any(|s| s == ip) {
                sans.push(ip.to_string());
            }
        }
    }

    let mut params = rcgen::CertificateParams::new(sans).map_err(fail)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let now = time::OffsetDateTime::now_utc();
    // An hour before and two weeks after the present stay far inside the ±9999 years
    // an OffsetDateTime covers.
    #[allow(clippy::arithmetic_side_effects)]
    {
        params.not_before = now - GENERATED_BACKDATE;
        params.not_after = params.not_before + GENERATED_VALIDITY;
    }

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;

    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// Read every certificate in a PEM file.
pub(crate) fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::Pem {
            what,
            path: path.to_path_buf(),
            detail: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            what,
            path: path.to_path_buf(),
            detail: "no CERTIFICATE block found".to_string(),
        });
    }
    Ok(certs)
}

/// Read the private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let what = "private key";
    let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|err| Error::Pem {
        what,
        path: path.to_path_buf(),
        detail: match err {
            rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".to_string(),
            err => err.to_string(),
        },
    })
}

/// One certificate chain with its signing key, ready to serve.
#[derive(Debug)]
pub(crate) struct Cert {
    key: Arc<CertifiedKey>,
    fingerprint: String,
}

impl Cert {
    pub(crate) fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<Self, rustls::Error> {
        let fingerprint = chain.first().map(|c| fingerprint(c)).unwrap_or_default();
        let signer = provider.key_provider.load_private_key(key)?;
        let key = CertifiedKey::new(chain, signer);
        match key.keys_match() {
            // Some signing keys cannot report their public key; nothing to compare then.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(err) => return Err(err),
        }
        Ok(Self {
            key: Arc::new(key),
            fingerprint,
        })
    }

    fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Self, Error> {
        let chain = read_certs(cert, "certificate")?;
        let der = read_key(key)?;
        Self::new(chain, der, provider).map_err(|err| Error::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            detail: err.to_string(),
        })
    }

    fn generated(names: &[String], provider: &CryptoProvider) -> Result<Self, Error> {
        let generated = generate(names)?;
        let chain = vec![CertificateDer::from(generated.cert_der)];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_der));
        Self::new(chain, key, provider).map_err(|err| Error::Tls(err.to_string()))
    }

    /// The chain, leaf first.
    pub(crate) fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// The leaf's SHA-256 fingerprint, lowercase hex.
    pub(crate) fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether this certificate's leaf is valid for `name`.
    pub(crate) fn serves(&self, name: &ServerName<'_>) -> bool {
        let Ok(leaf) = self.key.end_entity_cert() else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
    }
}

/// The server's certificates, chosen per handshake by SNI and replaceable at run time.
///
/// Three sources, in this order: the certificate an ACME client manages
/// ([`Certs::set_managed`]), the PEM files (re-read by [`Certs::reload`]), and the
/// generated development certificate. TLS-ALPN-01 challenge certificates
/// ([`Certs::set_challenge`]) are answered only to a ClientHello whose sole ALPN is
/// `acme-tls/1` (RFC 8737 §3), never to an ordinary client.
#[derive(Debug)]
pub(crate) struct Certs {
    files: Vec<(PathBuf, PathBuf)>,
    generated: Vec<Arc<Cert>>,
    provider: Arc<CryptoProvider>,
    /// What [`Certs::reload`] and [`Certs::set_managed`] change, behind one lock so
    /// neither loses the other's update.
    sources: Mutex<Sources>,
    /// The list handshakes read: managed, files, generated.
    current: RwLock<Arc<Vec<Arc<Cert>>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Whether TLS-ALPN-01 challenges are answered (TCP listeners then offer `acme-tls/1`).
    alpn_challenges: bool,
}

/// The replaceable certificate sources.
#[derive(Debug, Default)]
struct Sources {
    managed: Option<Arc<Cert>>,
    files: Vec<Arc<Cert>>,
}

impl Certs {
    /// Load the certificate/key files and generate the development certificate, if any.
    /// With `acme` (an ACME client will provide the certificate) the set may start
    /// empty: handshakes fail until [`Certs::set_managed`] installs one.
    pub(crate) fn load(
        cert: &[PathBuf],
        key: &[PathBuf],
        generate: &[String],
        acme: Option<&crate::acme::Config>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let managed = acme.is_some();
        if cert.len() != key.len() {
            return Err(Error::CertKeyCount {
                certs: cert.len(),
                keys: key.len(),
            });
        }
        if cert.is_empty() && generate.is_empty() && !managed {
            return Err(Error::NoCertificate);
        }

        let files: Vec<_> = cert.iter().cloned().zip(key.iter().cloned()).collect();
        let generated = if generate.is_empty() {
            Vec::new()
        } else {
            let cert = Cert::generated(generate, &provider)?;
            tracing::warn!(
                names = ?generate,
                fingerprint = %cert.fingerprint,
                "generated a self-signed development certificate; clients must pin its fingerprint"
            );
            vec![Arc::new(cert)]
        };

        let certs = Self {
            current: RwLock::new(Arc::new(Vec::new())),
            files,
            generated,
            provider,
            sources: Mutex::new(Sources::default()),
            challenges: RwLock::new(HashMap::new()),
            alpn_challenges: acme.is_some_and(|c| c.challenge == crate::acme::Challenge::TlsAlpn01),
        };
        certs.reload()?;
        Ok(certs)
    }

    /// The crypto provider keys are loaded with.
    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Re-read the certificate and key files; on any error the old set stays in place.
    /// Generated certificates are kept as they are, so their fingerprints do not change,
    /// and so is the managed (ACME) certificate.
    pub(crate) fn reload(&self) -> Result<(), Error> {
        let mut files = Vec::with_capacity(self.files.len());
        for (cert, key) in &self.files {
            files.push(Arc::new(Cert::load(cert, key, &self.provider)?));
        }
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.files = files;
        self.publish(&sources);
        Ok(())
    }

    /// Serve `cert` (an ACME-issued certificate) in front of the file and generated
    /// ones, replacing the previous managed certificate. New handshakes use it at once;
    /// established connections keep the certificate they started with.
    pub(crate) fn set_managed(&self, cert: Arc<Cert>) {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        sources.managed = Some(cert);
        self.publish(&sources);
    }

    /// The managed (ACME) certificate being served, if any.
    pub(crate) fn managed(&self) -> Option<Arc<Cert>> {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .managed
            .clone()
    }

    /// Make `sources` (plus the generated certificate) what handshakes see.
    fn publish(&self, sources: &Sources) {
        let list = sources
            .managed
            .iter()
            .chain(&sources.files)
            .chain(&self.generated)
            .cloned()
            .collect();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(list);
    }

    /// Answer TLS-ALPN-01 validation for `domain` with `key` until
    /// [`Certs::clear_challenge`].
    pub(crate) fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(domain.to_ascii_lowercase(), key);
    }

    /// Stop answering TLS-ALPN-01 validation for `domain`.
    pub(crate) fn clear_challenge(&self, domain: &str) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&domain.to_ascii_lowercase());
    }

    /// The challenge certificate for a TLS-ALPN-01 validation of `domain`, if one is pending.
    fn challenge(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    fn current(&self) -> Arc<Vec<Arc<Cert>>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The fingerprint of each certificate's leaf, in configuration order.
    pub(crate) fn fingerprints(&self) -> Vec<String> {
        self.current().iter().map(|c| c.fingerprint.clone()).collect()
    }

    /// The earliest `notAfter` of the leaf certificates in use, in Unix seconds.
    pub(crate) fn not_after(&self) -> Option<i64> {
        self.current()
            .iter()
            .filter_map(|c| c.key.cert.first())
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert.validity().not_after.timestamp())
            .min()
    }

    /// The certificate and key files being served (empty for a generated certificate).
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .flat_map(|(c, k)| [c.clone(), k.clone()])
            .collect()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // An ACME validator offers `acme-tls/1` and nothing else (RFC 8737 §3); it gets
        // the challenge certificate for its SNI or no certificate at all.
        if is_acme_validation(&hello) {
            return hello.server_name().and_then(|name| self.challenge(name));
        }
        let list = self.current();
        // Clients dialling an IP address send no SNI; they get the first certificate.
        if let Some(name) = hello.server_name().and_then(|sni| ServerName::try_from(sni).ok())
            && let Some(cert) = list.iter().find(|c| c.serves(&name))
        {
            return Some(cert.key.clone());
        }
        list.first().map(|c| c.key.clone())
    }
}

/// Whether a ClientHello is an ACME TLS-ALPN-01 validation: its only ALPN is `acme-tls/1`.
fn is_acme_validation(hello: &ClientHello<'_>) -> bool {
    let Some(mut alpn) = hello.alpn() else {
        return false;
    };
    alpn.next() == Some(crate::acme::ALPN_ACME_TLS) && alpn.next().is_none()
}

/// TLS for an HTTPS / WSS listener on TCP: the web endpoints and the qmux WebSocket
/// fallback on TCP 443.
///
/// Made from the QUIC server's own certificates ([`Server::tcp_tls`]), it shares
/// their resolver, so [`Server::reload_certificates`] swaps the certificate here too;
/// or from its own files ([`TcpTls::load`], `[web.https] cert/key`), reloaded with
/// [`TcpTls::reload`]. Either way a reload affects new handshakes only: established
/// connections keep the certificate they started with.
///
/// The ALPN list is `h2`, `http/1.1` (browsers open WebSockets over HTTP/1.1; a server
/// that only speaks HTTP/1.1 uses [`TcpTls::with_alpn`]). TLS 1.2 and 1.3 are accepted.
///
/// [`Server::tcp_tls`]: crate::server::Server::tcp_tls
/// [`Server::reload_certificates`]: crate::server::Server::reload_certificates
#[derive(Debug, Clone)]
pub struct TcpTls {
    certs: Arc<Certs>,
    roots: Vec<PathBuf>,
    config: Arc<rustls::ServerConfig>,
}

impl TcpTls {
    /// The default ALPN list: HTTP/2, then HTTP/1.1.
    pub const ALPN: [&'static [u8]; 2] = [b"h2", b"http/1.1"];

    /// Load a separate certificate source: PEM files paired by position, a generated
    /// development certificate, and optional client CAs (mTLS), as for the QUIC server.
    pub fn load(config: &crate::server::TlsConfig) -> Result<Self, Error> {
        let provider = provider();
        let certs = Arc::new(Certs::load(
            &config.cert,
            &config.key,
            &config.generate,
            None,
            provider,
        )?);
        Self::new(certs, config.root.clone(), &Self::ALPN)
    }

    pub(crate) fn new(certs: Arc<Certs>, roots: Vec<PathBuf>, alpn: &[&[u8]]) -> Result<Self, Error> {
        let provider = certs.provider.clone();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| Error::Tls(err.to_string()))?;
        let builder = match roots.is_empty() {
            true => builder.with_no_client_auth(),
            false => builder.with_client_cert_verifier(client_verifier(&roots, provider)?),
        };
        let mut config = builder.with_cert_resolver(certs.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // TLS-ALPN-01 validators connect to TCP 443 offering only `acme-tls/1`; browsers
        // never offer it, so listing it last changes nothing for them.
        if certs.alpn_challenges {
            config.alpn_protocols.push(crate::acme::ALPN_ACME_TLS.to_vec());
        }
        Ok(Self {
            certs,
            roots,
            config: Arc::new(config),
        })
    }

    /// The same certificates with another ALPN list (for example only `http/1.1`).
    pub fn with_alpn(&self, alpn: &[&[u8]]) -> Result<Self, Error> {
        Self::new(self.certs.clone(), self.roots.clone(), alpn)
    }

    /// The rustls configuration, for a listener built on it.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// An acceptor for TCP connections: `acceptor.accept(tcp).await` yields the TLS
    /// stream to serve HTTP on. Bound the handshake with a timeout.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// Re-read the certificate and key files; on error the previous ones stay in use.
    /// (For a shared configuration this reloads the QUIC server's certificates too.)
    pub fn reload(&self) -> Result<(), Error> {
        self.certs.reload()
    }

    /// Lowercase hex SHA-256 of each served leaf certificate.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.fingerprints()
    }

    /// The certificate and key files served, to watch for changes.
    pub fn certificate_files(&self) -> Vec<PathBuf> {
        self.certs.files()
    }
}

/// Accepts exactly the certificates whose SHA-256 is pinned, skipping CA validation.
///
/// The handshake signature is still verified, so the peer must hold the pinned
/// certificate's private key.
#[derive(Debug)]
pub(crate) struct FingerprintVerifier {
    provider: Arc<CryptoProvider>,
    fingerprints: Vec<[u8; 32]>,
}

impl FingerprintVerifier {
    pub(crate) fn new(provider: Arc<CryptoProvider>, fingerprints: Vec<[u8; 32]>) -> Self {
        Self {
            provider,
            fingerprints,
        }
    }
}

/// The reason a pinned certificate was refused, carried through rustls to the error.
#[derive(Debug)]
struct Mismatch(String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server presented a certificate with SHA-256 {}", self.0)
    }
}

impl std::error::Error for Mismatch {}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hash: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.fingerprints.contains(&hash) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(Mismatch(hex::encode(hash))))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts any certificate: development only. The handshake signature is still checked.
#[derive(Debug)]
pub(crate) struct NoVerifier(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A verifier of client certificates chaining to the CA certificates in
/// `roots` (mTLS). Clients without a certificate are still let in (they may
/// present a token instead); a certificate that does not verify is refused.
pub(crate) fn client_verifier(
    roots: &[std::path::PathBuf],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, Error> {
    let mut store = rustls::RootCertStore::empty();
    for path in roots {
        for cert in read_certs(path, "client CA certificate")? {
            store.add(cert).map_err(|err| Error::Pem {
                what: "client CA certificate",
                path: path.clone(),
                detail: err.to_string(),
            })?;
        }
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|err| Error::Tls(format!("client CA certificates: {err}")))
}

/// The `notAfter` of a DER certificate, in Unix seconds.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// A certificate's first DNS name (else its common name) and its issuer's distinguished
/// name, when it parses.
pub(crate) fn names(der: &[u8]) -> (Option<String>, Option<String>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (None, None);
    };
    let dns = cert.subject_alternative_name().ok().flatten().and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
    });
    let common = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
    };
    (dns.or_else(common), Some(cert.issuer().to_string()))
}
