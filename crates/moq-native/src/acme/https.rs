//! The HTTPS transport under the ACME client: one request per TLS connection over
//! hyper's HTTP/1.1 client, rustls with our crypto provider, the system roots plus the
//! configured directory roots, every exchange bounded in time and size.
//!
//! instant-acme brings its own transport (hyper-rustls with the platform verifier); this
//! one keeps the relay on a single TLS stack and lets an operator trust a private CA
//! (pebble in tests, step-ca, a corporate ACME server) for the directory alone.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::tls;

/// The largest response read from the CA: directories, orders and certificate chains are
/// a few kilobytes.
const MAX_RESPONSE: usize = 1024 * 1024;

/// Why an exchange with the CA failed before any ACME answer: the CA is unreachable
/// (refused, timed out, TLS failed). Carried inside `instant_acme::Error::Other` so
/// the manager can tell it from an answer it did not like.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {detail}")]
pub(crate) struct Unreachable {
    /// The URL requested.
    pub(crate) url: String,
    /// What went wrong.
    pub(crate) detail: String,
}

/// An HTTPS client for one ACME directory.
#[derive(Clone)]
pub(crate) struct Https {
    connector: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl Https {
    /// A client trusting the system roots and the CA certificates in `roots` (PEM files),
    /// giving up on an exchange after `timeout`.
    pub(crate) fn new(
        roots: &[PathBuf],
        provider: Arc<CryptoProvider>,
        timeout: Duration,
    ) -> Result<Self, crate::Error> {
        let mut store = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let _ = store.add_parsable_certificates(native.certs);
        for path in roots {
            for cert in tls::read_certs(path, "ACME directory root certificate")? {
                store.add(cert).map_err(|err| crate::Error::Pem {
                    what: "ACME directory root certificate",
                    path: path.clone(),
                    detail: err.to_string(),
                })?;
            }
        }
        if store.is_empty() {
            return Err(crate::Error::Tls(
                "no root certificates to verify the ACME directory with: the system store is empty; \
                 set the directory's CA with directory_root"
                    .to_string(),
            ));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| crate::Error::Tls(err.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    async fn exchange(&self, request: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, Unreachable> {
        let url = request.uri().to_string();
        let fail = |detail: String| Unreachable {
            url: url.clone(),
            detail,
        };
        let uri = request.uri().clone();
        if uri.scheme_str() != Some("https") {
            return Err(fail("ACME URLs must be https".to_string()));
        }
        let host = uri
            .host()
            .ok_or_else(|| fail("no host".to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.clone()).map_err(|err| fail(format!("host: {err}")))?;

        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|err| fail(format!("cannot connect to {host}:{port}: {err}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|err| fail(format!("TLS with {host}:{port}: {err}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| fail(err.to_string()))?;

        // HTTP/1.1 wants the origin form and a Host header.
        let (mut parts, body) = request.into_parts();
        let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or(host);
        parts.uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|err: http::uri::InvalidUri| fail(err.to_string()))?;
        let authority =
            header::HeaderValue::from_str(&authority).map_err(|err| fail(format!("host header: {err}")))?;
        parts.headers.insert(header::HOST, authority);
        let request = Request::from_parts(parts, body);

        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|err| err.to_string())?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|err| format!("reading the answer: {err}"))?
                .to_bytes();
            Ok::<_, String>(http::Response::from_parts(parts, Full::new(body)))
        };
        // The connection is driven here, not spawned: it ends with the exchange.
        let response = tokio::select! {
            response = exchange => response,
            Err(err) = connection => Err(err.to_string()),
        }
        .map_err(fail)?;
        Ok(BytesResponse::from(response))
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let url = request.uri().to_string();
            match tokio::time::timeout(this.timeout, this.exchange(request)).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(err)) => Err(instant_acme::Error::Other(Box::new(err))),
                Err(_) => Err(instant_acme::Error::Other(Box::new(Unreachable {
                    url,
                    detail: format!("no answer within {:?}", this.timeout),
                }))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn request(url: &str) -> Request<BodyWrapper<Bytes>> {
        Request::get(url).body(BodyWrapper::default()).unwrap()
    }

    fn unreachable(err: instant_acme::Error) -> String {
        match err {
            instant_acme::Error::Other(err) => err.downcast::<Unreachable>().unwrap().to_string(),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    fn client(timeout: Duration) -> Https {
        Https::new(&[], tls::provider(), timeout).unwrap()
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let Err(err) = client(Duration::from_secs(5))
            .request(request(&format!("https://127.0.0.1:{port}/dir")))
            .await
        else {
            panic!("a closed port answered");
        };
        let text = unreachable(err);
        assert!(text.contains("cannot connect"), "{text}");
    }

    #[tokio::test]
    async fn plain_http_is_refused() {
        let Err(err) = client(Duration::from_secs(5))
            .request(request("http://127.0.0.1:1/dir"))
            .await
        else {
            panic!("http was used");
        };
        assert!(unreachable(err).contains("must be https"));
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_an_untrusted_one_fails_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept and hold the connection without a word.
        let hold = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
            let _ = socket.write_all(b"late").await;
        });
        let started = std::time::Instant::now();
        let Err(err) = client(Duration::from_millis(300))
            .request(request(&format!("https://127.0.0.1:{port}/dir")))
            .await
        else {
            panic!("a silent server answered");
        };
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(unreachable(err).contains("no answer within"));
        hold.abort();

        // A server whose certificate no root vouches for.
        let certs =
            Arc::new(tls::Certs::load(&[], &[], &["localhost".to_string()], None, tls::provider()).unwrap());
        let tcp_tls = tls::TcpTls::new(certs, Vec::new(), &[b"http/1.1"]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tcp_tls.acceptor();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let _ = acceptor.accept(socket).await;
        });
        let Err(err) = client(Duration::from_secs(5))
            .request(request(&format!("https://localhost:{port}/dir")))
            .await
        else {
            panic!("an untrusted certificate was accepted");
        };
        let text = unreachable(err);
        assert!(text.contains("TLS with"), "{text}");
    }

    #[test]
    fn a_missing_root_file_is_an_error() {
        let err = Https::new(
            &[PathBuf::from("/nonexistent/root.pem")],
            tls::provider(),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("ACME directory root certificate"),
            "{err}"
        );
    }
}
