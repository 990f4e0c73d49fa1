//! A deliberately tiny HTTP/1.1 client for one job: `GET /certificate.sha256` from a
//! development relay, so an `http://` URL can pin the relay's self-signed certificate.
//!
//! Plain TCP, bounded in time and size; no TLS, redirects or keep-alive.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
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

    let body = parse_response(&response).map_err(&fail)?;
    let text = std::str::from_utf8(body).map_err(|_| fail("the body is not text".to_string()))?;
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

/// Connect to the first address that accepts TCP, send the request, read the response.
async fn get(target: &Target, authority: &str) -> Result<Vec<u8>, String> {
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
    let Some(mut stream) = stream else {
        return Err(format!(
            "cannot connect over TCP ({}); is the relay's HTTP listener on TCP port {}?",
            failures.join("; "),
            target.port
        ));
    };

    let request = format!(
        "GET /certificate.sha256 HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: moq-native\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| err.to_string())?;

    let mut response = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|err| err.to_string())?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if response.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        // A server that ignores `Connection: close` still ends a sized response.
        if parse_response(&response).is_ok() {
            break;
        }
    }
    Ok(response)
}

/// The body of a complete `200` response, or why there is none (yet).
fn parse_response(response: &[u8]) -> Result<&[u8], String> {
    let header_end = find(response, b"\r\n\r\n").ok_or("incomplete response headers")?;
    let (head, rest) = response.split_at(header_end);
    let body = rest.get(4..).unwrap_or_default();
    let head = std::str::from_utf8(head).map_err(|_| "response headers are not text")?;

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (proto, status) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if !proto.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    if status != "200" {
        return Err(format!(
            "the server answered {:?}; is this a relay with a generated development certificate?",
            status_line
        ));
    }

    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    if chunked {
        return dechunk(body);
    }
    match length {
        Some(length) => body.get(..length).ok_or_else(|| "incomplete body".to_string()),
        // Without a length the body runs to the end of the connection.
        None => Ok(body),
    }
}

/// Decode a chunked body that must consist of exactly one data chunk (or none) and the
/// terminating zero chunk: enough for a 64-byte fingerprint.
fn dechunk(mut body: &[u8]) -> Result<&[u8], String> {
    let mut data: Option<&[u8]> = None;
    loop {
        let line_end = find(body, b"\r\n").ok_or("incomplete chunk")?;
        let size_line =
            std::str::from_utf8(body.get(..line_end).unwrap_or_default()).map_err(|_| "bad chunk size")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size")?;
        let rest = body.get(line_end.saturating_add(2)..).unwrap_or_default();
        if size == 0 {
            return Ok(data.unwrap_or_default());
        }
        if data.is_some() {
            return Err("unexpected multi-chunk body".to_string());
        }
        data = Some(rest.get(..size).ok_or("incomplete chunk")?);
        body = size
            .checked_add(2)
            .and_then(|end| rest.get(end..))
            .ok_or("incomplete chunk")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sized_chunked_and_unsized_bodies() {
        let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_response(sized).unwrap(), b"abc");

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"abc");

        let until_eof = b"HTTP/1.0 200 OK\r\n\r\nabc";
        assert_eq!(parse_response(until_eof).unwrap(), b"abc");

        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        assert!(parse_response(partial).is_err());

        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_response(missing).unwrap_err().contains("404"));

        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn hostile_chunk_sizes_are_incomplete_chunks() {
        // Data all there, but not the CRLF after it.
        assert_eq!(dechunk(b"3\r\nabc"), Err("incomplete chunk".to_string()));
        let huge = format!("{:x}\r\nabc\r\n0\r\n\r\n", usize::MAX);
        assert_eq!(dechunk(huge.as_bytes()), Err("incomplete chunk".to_string()));
    }
}
