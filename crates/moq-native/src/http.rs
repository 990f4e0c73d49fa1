//! One HTTP job, done with hyper's HTTP/1.1 client: `GET /certificate.sha256` from a
//! development relay, so an `http://` URL can pin the relay's self-signed certificate.
//!
//! Plain TCP, bounded in time and size; no TLS, redirects or keep-alive.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

use crate::{Error, client::Target, tls};

/// The largest response we read: a fingerprint is 64 bytes, headers a few hundred.
const MAX_RESPONSE: usize = 16 * 1024;

/// Fetch the hex SHA-256 fingerprints served at `/certificate.sha256` on the URL's host
/// and port (TCP), within `timeout`.
pub(crate) async fn fetch_fingerprints(
    url: &Url,
    target: &Target,
    timeout: Duration,
) -> Result<Vec<[u8; 32]>, Error> {
    let authority = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let location = format!("http://{authority}/certificate.sha256");
    let fail = |detail: String| Error::FingerprintFetch {
        url: location.clone(),
        detail,
    };

    let response = tokio::time::timeout(timeout, get(target, &authority))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(&fail)?;

    let text = std::str::from_utf8(&response).map_err(|_| fail("the body is not text".to_string()))?;
    let fingerprints = text
        .split_whitespace()
        .map(tls::parse_fingerprint)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(err.to_string()))?;
    if fingerprints.is_empty() {
        return Err(fail("the body is empty".to_string()));
    }
    Ok(fingerprints)
}

/// Connect to the first address that accepts TCP, send the request, read the body.
async fn get(target: &Target, authority: &str) -> Result<Bytes, String> {
    let addrs = target.resolve().await.map_err(|err| err.to_string())?;
    let mut failures = Vec::new();
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(err) => failures.push(format!("{addr}: {err}")),
        }
    }
    let Some(stream) = stream else {
        return Err(format!(
            "cannot connect over TCP ({}); is the relay's HTTP listener on TCP port {}?",
            failures.join("; "),
            target.port
        ));
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    let request = Request::get("/certificate.sha256")
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "moq-native")
        .header(header::ACCEPT, "text/plain")
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        read_body(response).await
    };
    // The connection is driven here, not spawned: it ends with the exchange.
    tokio::select! {
        body = exchange => body,
        Err(err) = connection => Err(err.to_string()),
    }
}

/// The body of a `200` response, at most [`MAX_RESPONSE`] bytes.
async fn read_body(response: hyper::Response<Incoming>) -> Result<Bytes, String> {
    let status = response.status();
    if status != StatusCode::OK {
        return Err(format!(
            "the server answered {status}; is this a relay with a generated development certificate?"
        ));
    }
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|err| format!("reading the body: {err}"))?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serve one canned HTTP response on loopback and fetch from it.
    async fn fetch_from(response: &'static [u8]) -> Result<Bytes, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(response).await;
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let target = Target::parse(&url).unwrap();
        get(&target, &format!("127.0.0.1:{port}")).await
    }

    #[tokio::test]
    async fn reads_sized_chunked_and_unsized_bodies() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(fetch_from(sized).await.unwrap(), "abc");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(fetch_from(chunked).await.unwrap(), "abc");
        let until_eof = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(fetch_from(until_eof).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn refuses_errors_garbage_and_huge_bodies() {
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(fetch_from(missing).await.unwrap_err().contains("404"));
        assert!(fetch_from(b"SSH-2.0-OpenSSH\r\n\r\n").await.is_err());
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(fetch_from(partial).await.is_err());
        let huge: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n{}",
                "a".repeat(20_000)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        assert!(
            fetch_from(huge).await.unwrap_err().contains("length limit"),
            "over the limit"
        );
    }
}
