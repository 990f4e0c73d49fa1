//! Dialling moq over qmux over WebSocket: TCP (every resolved address, staggered),
//! TLS for `wss://` with the client's certificate checks, the WebSocket upgrade
//! offering `qmux-01.<alpn>` / `qmux-00.<alpn>`, then the qmux session.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream::FuturesUnordered};
use rustls::{client::danger::ServerCertVerifier, crypto::CryptoProvider};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{
    self,
    client::IntoClientRequest,
    http::{HeaderValue, header::SEC_WEBSOCKET_PROTOCOL},
};
use url::Url;

use crate::{
    Error, Protocol, alpn_list,
    client::{Check, Identity, Scheme, Target},
    qmux,
};

/// Everything a dial needs from the client.
pub(crate) struct Dial<'a> {
    pub(crate) versions: &'a [Protocol],
    pub(crate) provider: &'a Arc<CryptoProvider>,
    pub(crate) verifier: Option<Arc<dyn ServerCertVerifier>>,
    pub(crate) check: Check,
    pub(crate) identity: Option<&'a Identity>,
    pub(crate) timeout: Duration,
    pub(crate) attempt_delay: Duration,
    pub(crate) config: &'a qmux::Config,
}

/// Connect to a `ws://` or `wss://` URL; the result is a session whose peer
/// parameters have arrived, and the negotiated version.
pub(crate) async fn connect(
    url: &Url,
    target: &Target,
    dial: Dial<'_>,
) -> Result<(qmux::Session, Protocol), Error> {
    let timeout = dial.timeout;
    tokio::time::timeout(timeout, connect_inner(url, target, dial))
        .await
        .map_err(|_| Error::WebSocket {
            url: url.to_string(),
            detail: format!("no WebSocket session within {timeout:?}"),
        })?
}

async fn connect_inner(
    url: &Url,
    target: &Target,
    dial: Dial<'_>,
) -> Result<(qmux::Session, Protocol), Error> {
    let tcp = tcp(target, dial.attempt_delay).await?;
    let offered = qmux::subprotocol::list(dial.versions);

    let mut request = url.as_str().into_client_request().map_err(|err| Error::Url {
        url: url.to_string(),
        detail: err.to_string(),
    })?;
    let header = HeaderValue::from_str(&offered.join(", ")).map_err(|err| Error::Url {
        url: url.to_string(),
        detail: err.to_string(),
    })?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, header);
    let config = Some(qmux::websocket_config());

    let (session, chosen) = match Scheme::of(url)? {
        Scheme::Wss => {
            let verifier = dial.verifier.clone().ok_or_else(|| Error::NoRoots {
                host: target.host.clone(),
            })?;
            let tls = tls(&dial, verifier)?;
            let name =
                rustls_pki_types::ServerName::try_from(target.server_name().to_string()).map_err(|err| {
                    Error::Url {
                        url: url.to_string(),
                        detail: format!("invalid TLS server name: {err}"),
                    }
                })?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|err| tls_error(err, target, dial.check))?;
            let (socket, response) = tokio_tungstenite::client_async_with_config(request, stream, config)
                .await
                .map_err(|err| handshake_error(url, target, dial.versions, err))?;
            let (wire, version) = chosen(&response, target, dial.versions)?;
            let session = qmux::Session::new(qmux::Ws(socket), qmux::Role::Client, wire, dial.config.clone());
            (session, version)
        }
        _ => {
            let (socket, response) = tokio_tungstenite::client_async_with_config(request, tcp, config)
                .await
                .map_err(|err| handshake_error(url, target, dial.versions, err))?;
            let (wire, version) = chosen(&response, target, dial.versions)?;
            let session = qmux::Session::new(qmux::Ws(socket), qmux::Role::Client, wire, dial.config.clone());
            (session, version)
        }
    };

    session.established().await.map_err(|err| Error::WebSocket {
        url: url.to_string(),
        detail: err.message,
    })?;
    Ok((session, chosen))
}

/// The wire format and version the server chose; it must be one we offered.
fn chosen(
    response: &tungstenite::handshake::client::Response,
    target: &Target,
    versions: &[Protocol],
) -> Result<(qmux::Wire, Protocol), Error> {
    let answered = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match qmux::subprotocol::parse(answered) {
        Some((wire, Some(version))) if versions.contains(&version) => Ok((wire, version)),
        _ => Err(Error::NoServerVersion {
            server: target.to_string(),
            offered: alpn_list(versions),
            detail: if answered.is_empty() {
                "its WebSocket upgrade chose no subprotocol".to_string()
            } else {
                format!("its WebSocket upgrade chose {answered:?}")
            },
        }),
    }
}

/// The first TCP connection to any address of `target`, each attempt `delay` after the last.
async fn tcp(target: &Target, delay: Duration) -> Result<TcpStream, Error> {
    let addrs = target.resolve().await?;
    let mut attempts = FuturesUnordered::new();
    for (i, addr) in addrs.iter().copied().enumerate() {
        let wait = delay.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        attempts.push(async move {
            tokio::time::sleep(wait).await;
            (addr, TcpStream::connect(addr).await)
        });
    }
    let mut failures: Vec<String> = Vec::new();
    while let Some((addr, result)) = attempts.next().await {
        match result {
            Ok(stream) => {
                // Small messages (credit updates, control streams) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(err) => failures.push(format!("{}: {err}", crate::canonical(addr))),
        }
    }
    Err(Error::TcpUnreachable {
        target: target.to_string(),
        port: target.port,
        attempts: failures.join("; "),
    })
}

fn tls(dial: &Dial<'_>, verifier: Arc<dyn ServerCertVerifier>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(dial.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Tls(err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match dial.identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.0.clone(), identity.1.clone_key())
            .map_err(|err| Error::Tls(format!("client certificate: {err}")))?,
        None => builder.with_no_client_auth(),
    };
    // A WebSocket upgrade is an HTTP/1.1 request.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS handshake failure, worded like the QUIC ones.
fn tls_error(err: std::io::Error, target: &Target, check: Check) -> Error {
    let rustls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match rustls {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            let detail = cert.to_string();
            match check {
                Check::Pinned | Check::Fetched => Error::FingerprintMismatch {
                    host: target.host.clone(),
                    detail: format!("{detail}; expected one of the configured fingerprints"),
                },
                Check::Roots | Check::Insecure => Error::CertificateNotTrusted {
                    host: target.host.clone(),
                    detail,
                },
            }
        }
        _ => Error::WebSocket {
            url: target.to_string(),
            detail: format!("TLS handshake: {err}"),
        },
    }
}

/// A failed WebSocket upgrade.
fn handshake_error(url: &Url, target: &Target, versions: &[Protocol], err: tungstenite::Error) -> Error {
    use tungstenite::error::{Error as WsError, ProtocolError};
    match err {
        WsError::Http(response) => Error::Rejected {
            url: url.to_string(),
            status: response.status().as_u16(),
        },
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(sub)) => Error::NoServerVersion {
            server: target.to_string(),
            offered: alpn_list(versions),
            detail: format!("its WebSocket upgrade: {sub}"),
        },
        other => Error::WebSocket {
            url: url.to_string(),
            detail: other.to_string(),
        },
    }
}
