//! The SETUP exchange, per draft family.
//!
//! - draft-14 … -16: the client opens the first bidirectional stream with CLIENT_SETUP
//!   (draft-14 lists the versions it speaks); the server answers SERVER_SETUP (draft-14
//!   names the one it chose) and the stream stays open as the control stream.
//! - draft-17+: each side opens a unidirectional stream whose first message is its
//!   SETUP; the stream stays open and later carries that side's GOAWAY.
//!
//! The server reads the client's SETUP in [`accept`] (it carries the path and token a
//! raw-QUIC server authenticates) and answers only when the session runs, so a refused
//! session never got a SERVER_SETUP.

use std::time::Duration;

use moq_proto::ietf::{ClientSetup, Message, Setup, SetupOptions, UniStream, Version};

use super::{
    control::{Role, Window},
    stream::{Reader, Writer},
};
use crate::{
    Error, Result,
    transport::{RecvStream, SendStream, Session},
};

/// What identifies us in SETUP (MOQT_IMPLEMENTATION).
const IMPLEMENTATION: &str = concat!("moq-rs/", env!("CARGO_PKG_VERSION"));

/// A session whose SETUP exchange is done (or, on the server, whose client SETUP was
/// read and awaits our answer). Hand it to [`super::run`].
pub struct Established<S: Session> {
    pub(super) version: Version,
    pub(super) role: Role,
    pub(super) peer: SetupOptions,
    pub(super) control: Control<S>,
}

impl<S: Session> std::fmt::Debug for Established<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("version", &self.version)
            .field("role", &self.role)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<S: Session> Established<S> {
    /// The draft both sides speak.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether we dialled or accepted.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What the peer's SETUP carried: its PATH (with the query, where a token may ride),
    /// AUTHORITY, AUTHORIZATION_TOKEN and implementation.
    pub fn peer(&self) -> &SetupOptions {
        &self.peer
    }
}

/// The control streams a handshake leaves open.
pub(super) enum Control<S: Session> {
    /// draft-14 … -16: the bidirectional control stream. On the server, SERVER_SETUP is
    /// still to be sent.
    Bidi {
        writer: Writer<S::SendStream>,
        reader: Reader<S::RecvStream>,
        reply: bool,
    },
    /// draft-17+: our SETUP stream (`None` on the server until it runs) and the peer's.
    Uni {
        ours: Option<Writer<S::SendStream>>,
        theirs: Reader<S::RecvStream>,
    },
}

/// The SETUP options a side sends: `base` plus our implementation name and, up to
/// draft-16, the Request IDs we grant.
pub(super) fn our_options(mut base: SetupOptions, role: Role, version: Version) -> SetupOptions {
    if !version.has_unified_setup() {
        base.max_request_id = Some(Window::new(role).granted());
    }
    if base.implementation.is_none() {
        base.implementation = Some(bytes::Bytes::from_static(IMPLEMENTATION.as_bytes()));
    }
    base
}

/// Server: read the client's SETUP, within `timeout`. Fails with [`Error::Version`] when
/// a draft-14 client does not offer draft-14, [`Error::Timeout`] when the SETUP does
/// not arrive in time, and [`Error::Protocol`] / [`Error::Decode`] when something else
/// arrives first; the caller closes the session with the error's code.
pub async fn accept<S: Session>(session: &S, version: Version, timeout: Duration) -> Result<Established<S>> {
    tokio::time::timeout(timeout, accept_inner(session, version))
        .await
        .map_err(|_| Error::Timeout)?
}

async fn accept_inner<S: Session>(session: &S, version: Version) -> Result<Established<S>> {
    if version.has_unified_setup() {
        let mut theirs = Reader::new(session.accept_uni().await?, version);
        let setup = match theirs.decode::<UniStream>().await? {
            UniStream::Setup(setup) => setup,
            _ => {
                return Err(Error::Protocol(
                    "the first unidirectional stream is not SETUP".into(),
                ));
            }
        };
        return Ok(Established {
            version,
            role: Role::Server,
            peer: setup.options,
            control: Control::Uni { ours: None, theirs },
        });
    }
    let (send, recv) = session.accept_bi().await?;
    let writer = Writer::new(send, version);
    let mut reader = Reader::new(recv, version);
    let setup = match reader.decode::<Message>().await? {
        Message::ClientSetup(setup) => setup,
        other => {
            return Err(Error::Protocol(format!(
                "expected CLIENT_SETUP, got {:?}",
                other.message_type()
            )));
        }
    };
    if version.has_setup_versions() && !setup.versions.contains(&version.code()) {
        return Err(Error::Version(format!(
            "the client offered {:x?}, not {version} ({:#x})",
            setup.versions,
            version.code()
        )));
    }
    Ok(Established {
        version,
        role: Role::Server,
        peer: setup.options,
        control: Control::Bidi {
            writer,
            reader,
            reply: true,
        },
    })
}

/// Client: send our SETUP with `options` (PATH, AUTHORITY, AUTHORIZATION_TOKEN as the
/// transport needs) and wait for the server's, within `timeout`.
pub async fn connect<S: Session>(
    session: &S,
    version: Version,
    options: SetupOptions,
    timeout: Duration,
) -> Result<Established<S>> {
    let options = our_options(options, Role::Client, version);
    tokio::time::timeout(timeout, connect_inner(session, version, options))
        .await
        .map_err(|_| Error::Timeout)?
}

async fn connect_inner<S: Session>(
    session: &S,
    version: Version,
    options: SetupOptions,
) -> Result<Established<S>> {
    if version.has_unified_setup() {
        let mut ours = Writer::new(session.open_uni().await?, version);
        ours.encode(&UniStream::Setup(Setup { options })).await?;
        let mut theirs = Reader::new(session.accept_uni().await?, version);
        let setup = match theirs.decode::<UniStream>().await? {
            UniStream::Setup(setup) => setup,
            _ => return Err(Error::Protocol("the server's first stream is not SETUP".into())),
        };
        return Ok(Established {
            version,
            role: Role::Client,
            peer: setup.options,
            control: Control::Uni {
                ours: Some(ours),
                theirs,
            },
        });
    }
    let (send, recv) = session.open_bi().await?;
    let mut writer = Writer::new(send, version);
    let mut reader = Reader::new(recv, version);
    let versions = match version.has_setup_versions() {
        true => vec![version.code()],
        false => Vec::new(),
    };
    writer
        .encode(&Message::ClientSetup(ClientSetup { versions, options }))
        .await?;
    let setup = match reader.decode::<Message>().await? {
        Message::ServerSetup(setup) => setup,
        other => {
            return Err(Error::Protocol(format!(
                "expected SERVER_SETUP, got {:?}",
                other.message_type()
            )));
        }
    };
    if version.has_setup_versions() && setup.version != Some(version.code()) {
        return Err(Error::Version(format!(
            "the server chose {:?}, we offered {version}",
            setup.version
        )));
    }
    Ok(Established {
        version,
        role: Role::Client,
        peer: setup.options,
        control: Control::Bidi {
            writer,
            reader,
            reply: false,
        },
    })
}

/// Read the peer's draft-17+ SETUP stream after its SETUP: GOAWAY is the only message
/// it may carry. Returns the GOAWAY, or `None` when the stream ended without one.
pub(super) async fn read_goaway<R: RecvStream>(
    reader: &mut Reader<R>,
) -> Result<Option<moq_proto::ietf::GoAway>> {
    match reader.decode_maybe::<Message>().await? {
        None => Ok(None),
        Some(Message::GoAway(goaway)) => Ok(Some(goaway)),
        Some(other) => Err(Error::Protocol(format!(
            "{:?} on the SETUP stream (only GOAWAY may follow SETUP)",
            other.message_type()
        ))),
    }
}

/// Write a GOAWAY on our draft-17+ SETUP stream.
pub(super) async fn write_goaway<W: SendStream>(
    writer: &mut Writer<W>,
    goaway: moq_proto::ietf::GoAway,
) -> Result<()> {
    writer.encode(&Message::GoAway(goaway)).await
}
