//! In-band version negotiation: moq-lite-01/02 chosen by the legacy SETUP.
//!
//! A client whose transport negotiated no protocol (WebTransport without
//! `WT-Protocol`, as Firefox's is) or the shared ALPN `moql` opens a
//! bidirectional stream and sends a legacy CLIENT_SETUP naming the versions it
//! speaks by code ([`moq_proto::legacy`]). The server answers with the one it
//! picked, and that stream stays open as the lite-01/02 Session stream, carrying
//! SESSION_INFO until the session ends; ending it ends the session.
//!
//! [`accept_in_band`] is the server's step and [`connect_in_band`] the
//! client's; either returns a [`Negotiated`] to hand to [`super::run_in_band`].
//! Only moq-lite-01/02 can be chosen here: draft-14 also negotiates this way,
//! but it has no session driver in this crate, so it is never picked.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use moq_proto::{
    DecodeError, Version, ietf,
    legacy::{LegacyClientSetup, LegacyServerSetup, LegacyVersion, SetupKind},
    limits::MAX_SETUP_SIZE,
};

use super::{Reader, Writer};
use crate::{
    Error, Result,
    transport::{RecvStream, Session},
};

/// Largest read while waiting for a SETUP.
const CHUNK: usize = 4096;

/// Most bytes buffered before a SETUP must have decoded: its type, a u16 or
/// varint size, and the largest body we accept.
const MAX_BUFFERED: usize = MAX_SETUP_SIZE.saturating_add(16);

/// The parameters a client's legacy SETUP carried, besides its versions. Only
/// the draft-14 framing (type 0x20, what every current client sends) has a
/// parameter format we read; the older framings' parameters are left unread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientParameters {
    /// PATH: the request path and query, for transports without a URL (raw
    /// QUIC with ALPN `moql`). A WebTransport client's URL is authoritative.
    pub path: Option<String>,
    /// AUTHORIZATION_TOKEN, raw: a Token structure
    /// ([`moq_proto::ietf::AuthToken`]).
    pub authorization: Option<Bytes>,
    /// AUTHORITY: the URI authority, for transports without a URL.
    pub authority: Option<String>,
    /// MOQT_IMPLEMENTATION: the client's name for itself (`moq-lite-js`), for
    /// logs. Not UTF-8 checked beyond a lossy conversion.
    pub implementation: Option<String>,
}

impl ClientParameters {
    fn from_options(options: ietf::SetupOptions) -> Self {
        Self {
            path: options.path,
            authorization: options.authorization_token,
            authority: options.authority,
            implementation: options
                .implementation
                .map(|name| String::from_utf8_lossy(&name).into_owned()),
        }
    }

    fn to_options(&self) -> ietf::SetupOptions {
        ietf::SetupOptions {
            path: self.path.clone(),
            authorization_token: self.authorization.clone(),
            authority: self.authority.clone(),
            implementation: self
                .implementation
                .as_ref()
                .map(|name| Bytes::copy_from_slice(name.as_bytes())),
            ..Default::default()
        }
    }
}

/// A session whose version was chosen in-band: the version, what the client
/// said, and the open Session stream. Pass it to [`super::run_in_band`];
/// dropping it resets the Session stream, which ends the session for the peer.
pub struct Negotiated<S: Session> {
    version: Version,
    kind: SetupKind,
    offered: Vec<u64>,
    parameters: ClientParameters,
    pub(super) stream: SessionStream<S>,
}

/// Both halves of the Session stream.
pub(super) struct SessionStream<S: Session> {
    /// Kept open for the session's life; we send no SESSION_INFO.
    pub(super) _writer: Writer<S::SendStream>,
    pub(super) reader: Reader<S::RecvStream>,
}

impl<S: Session> std::fmt::Debug for Negotiated<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Negotiated")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("offered", &self.offered)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl<S: Session> Negotiated<S> {
    /// The version both sides will speak (lite-01 or lite-02).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The framing the client's SETUP used (and our reply's).
    pub fn kind(&self) -> SetupKind {
        self.kind
    }

    /// The version codes the client offered, most preferred first (on the
    /// client side: what we offered).
    pub fn offered(&self) -> &[u64] {
        &self.offered
    }

    /// What the client's SETUP carried (on the client side: what we sent).
    pub fn parameters(&self) -> &ClientParameters {
        &self.parameters
    }
}

/// The in-band versions among `allowed`, as legacy versions.
fn supported(allowed: &[Version]) -> Vec<LegacyVersion> {
    Version::IN_BAND
        .into_iter()
        .filter(|v| allowed.contains(v))
        .filter_map(LegacyVersion::from_lite)
        .collect()
}

/// A list of offered codes for an error message: names where we know them.
fn describe(codes: &[u64]) -> String {
    let names: Vec<String> = codes
        .iter()
        .map(
            |&code| match (Version::from_code(code), LegacyVersion::from_code(code)) {
                (Some(v), _) => v.to_string(),
                (None, Some(LegacyVersion::Draft14)) => "moq-transport-14".to_string(),
                _ => format!("{code:#x}"),
            },
        )
        .collect();
    match names.is_empty() {
        true => "nothing".to_string(),
        false => names.join(", "),
    }
}

/// Read one legacy message off `recv` with `decode`, buffering at most
/// [`MAX_BUFFERED`] bytes. Returns it and whatever arrived after it.
async fn read_setup<R: RecvStream, T>(
    recv: &mut R,
    decode: impl Fn(&mut &[u8]) -> std::result::Result<T, DecodeError>,
) -> Result<(T, BytesMut)> {
    let mut buf = BytesMut::new();
    loop {
        if !buf.is_empty() {
            let mut cursor = &buf[..];
            match decode(&mut cursor) {
                Ok(msg) => {
                    let used = buf.len().saturating_sub(cursor.remaining());
                    buf.advance(used);
                    return Ok((msg, buf));
                }
                Err(DecodeError::Short) if buf.len() < MAX_BUFFERED => {}
                // Unreachable with the size check in the decoder, but never buffer more.
                Err(DecodeError::Short) => return Err(Error::Limit("legacy SETUP size")),
                Err(err) => return Err(err.into()),
            }
        }
        match recv.read_chunk(CHUNK).await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Err(Error::Protocol("the SETUP stream ended before its SETUP".into())),
        }
    }
}

/// Server side: read the client's legacy SETUP from its first bidirectional
/// stream, choose a version among `allowed` (only lite-01/02 count), answer with
/// SERVER_SETUP in the client's framing, and return the result.
///
/// The whole exchange must finish within `timeout` ([`Error::Timeout`]). A SETUP
/// larger than [`MAX_SETUP_SIZE`] or malformed ([`Error::Decode`], including
/// unreadable draft-14 parameters), a stream that ends first
/// ([`Error::Protocol`]) or an offer with nothing we allow ([`Error::Version`])
/// fails, and the session is closed with the error's
/// [`session_code`](Error::session_code) (0x15 for no common version) before
/// this returns.
///
/// The client's order decides among the versions we allow, as in the reference
/// server. Call it before anything else accepts bidirectional streams.
pub async fn accept_in_band<S: Session>(
    session: &S,
    allowed: &[Version],
    timeout: Duration,
) -> Result<Negotiated<S>> {
    let result = match tokio::time::timeout(timeout, accept(session, allowed)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout),
    };
    if let Err(err) = &result {
        session.close(err.session_code(), &format!("in-band SETUP: {err}"));
    }
    result
}

async fn accept<S: Session>(session: &S, allowed: &[Version]) -> Result<Negotiated<S>> {
    let (send, mut recv) = session.accept_bi().await?;
    let (setup, rest) = read_setup(&mut recv, |buf| LegacyClientSetup::decode(buf)).await?;
    let supported = supported(allowed);
    let version = setup
        .choose(&supported)
        .and_then(LegacyVersion::lite)
        .ok_or_else(|| {
            Error::Version(format!(
                "the client offered {}; this server allows {}",
                describe(&setup.versions),
                describe(&supported.iter().map(|v| v.code()).collect::<Vec<_>>()),
            ))
        })?;
    let parameters = match setup.kind {
        SetupKind::Ietf14 => ClientParameters::from_options(ietf::SetupOptions::decode_list(
            &setup.parameters,
            ietf::Version::Draft14,
        )?),
        SetupKind::Lite | SetupKind::Ietf7 => ClientParameters::default(),
    };
    let mut writer = Writer::new(send, version);
    let reply = LegacyServerSetup {
        kind: setup.kind,
        version: version.code(),
        // An empty parameter list, as the reference server sends.
        parameters: Bytes::from_static(&[0]),
    };
    writer.raw(|buf| reply.encode(buf))?;
    writer.flush().await?;
    tracing::debug!(
        %version,
        offered = %describe(&setup.versions),
        implementation = parameters.implementation.as_deref().unwrap_or(""),
        "negotiated in-band"
    );
    Ok(Negotiated {
        version,
        kind: setup.kind,
        offered: setup.versions,
        parameters,
        stream: SessionStream {
            _writer: writer,
            reader: Reader::with_buffered(recv, version, rest),
        },
    })
}

/// Client side: open the Session stream, offer `versions` (most preferred first;
/// only lite-01/02 are offered) with `parameters` in the draft-14 framing every
/// current server reads, and wait up to `timeout` for the server's choice.
///
/// Fails with [`Error::Version`] when `versions` holds no in-band version or the
/// server picks one we did not offer, [`Error::Timeout`], or a decode error; the
/// session is closed with the error's code before this returns.
pub async fn connect_in_band<S: Session>(
    session: &S,
    versions: &[Version],
    parameters: ClientParameters,
    timeout: Duration,
) -> Result<Negotiated<S>> {
    let result = match tokio::time::timeout(timeout, connect(session, versions, parameters)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout),
    };
    if let Err(err) = &result {
        session.close(err.session_code(), &format!("in-band SETUP: {err}"));
    }
    result
}

async fn connect<S: Session>(
    session: &S,
    versions: &[Version],
    parameters: ClientParameters,
) -> Result<Negotiated<S>> {
    let offered: Vec<u64> = versions
        .iter()
        .filter(|v| v.is_in_band())
        .map(|v| v.code())
        .collect();
    if offered.is_empty() {
        return Err(Error::Version(format!(
            "none of {} is negotiated in-band",
            describe(&versions.iter().map(|v| v.code()).collect::<Vec<_>>())
        )));
    }
    let options = parameters
        .to_options()
        .encode_list(ietf::Version::Draft14)
        .map_err(|err| Error::Protocol(format!("cannot encode SETUP parameters: {err}")))?;
    let setup = LegacyClientSetup {
        kind: SetupKind::Ietf14,
        versions: offered.clone(),
        parameters: Bytes::from(options),
    };
    let (send, mut recv) = session.open_bi().await?;
    // Written before the version is known: only raw bytes go through this
    // writer, and SESSION_INFO (all it could queue later) is the same in both.
    let mut writer = Writer::new(send, Version::Lite02);
    writer.raw(|buf| setup.encode(buf))?;
    writer.flush().await?;
    let (reply, rest) =
        read_setup(&mut recv, |buf| LegacyServerSetup::decode(buf, SetupKind::Ietf14)).await?;
    let version = Version::from_code(reply.version)
        .filter(|v| offered.contains(&v.code()))
        .ok_or_else(|| {
            Error::Version(format!(
                "the server chose {}, which we did not offer",
                describe(&[reply.version])
            ))
        })?;
    Ok(Negotiated {
        version,
        kind: SetupKind::Ietf14,
        offered,
        parameters,
        stream: SessionStream {
            _writer: writer,
            reader: Reader::with_buffered(recv, version, rest),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{mem, transport::SendStream as _};

    /// However a decoder behaves, no more than [`MAX_BUFFERED`] bytes are held.
    #[tokio::test]
    async fn setup_buffering_is_bounded_whatever_the_decoder_says() {
        let (client, server) = mem::pair();
        let (mut send, _recv) = client.open_bi().await.unwrap();
        send.write_all(&vec![0u8; MAX_BUFFERED + CHUNK]).await.unwrap();
        let (_send, mut recv) = server.accept_bi().await.unwrap();
        let result = read_setup(&mut recv, |_: &mut &[u8]| Err::<(), _>(DecodeError::Short)).await;
        assert_eq!(result.unwrap_err(), Error::Limit("legacy SETUP size"));
    }

    /// A SETUP the server would refuse as too large is not sent.
    #[tokio::test]
    async fn client_refuses_to_send_an_oversized_setup() {
        let (client, _server) = mem::pair();
        let parameters = ClientParameters {
            path: Some("p".repeat(MAX_SETUP_SIZE)),
            ..Default::default()
        };
        let err = connect_in_band(&client, &Version::IN_BAND, parameters, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert_eq!(client.close_reason().unwrap().0, 0x3);
    }

    /// A server that never answers: the client gives up at the deadline.
    #[tokio::test(start_paused = true)]
    async fn client_times_out_without_an_answer() {
        let (client, _server) = mem::pair();
        let started = tokio::time::Instant::now();
        let err = connect_in_band(
            &client,
            &[Version::Lite02],
            ClientParameters::default(),
            Duration::from_secs(3),
        )
        .await
        .unwrap_err();
        assert_eq!(err, Error::Timeout);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(client.close_reason().unwrap().0, 0x11);
    }
}
