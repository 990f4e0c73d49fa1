//! `[client]` (also spelled `[connect]`): how the relay dials out (cluster peers, auth service).

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use serde_with::{DisplayFromStr, OneOrMany};

use super::{
    quic::ClientQuic,
    value::{Address, Fingerprint, HumanDuration, parse_version},
};

/// `[client]` / `[connect]`: settings for outgoing connections.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Client {
    /// Local UDP address to dial from (key also spelled `listen`).
    #[arg(
        id = "client-bind",
        long = "client-bind",
        env = "MOQ_CLIENT_BIND",
        value_name = "ADDR",
        alias = "connect-bind"
    )]
    #[serde(alias = "listen")]
    pub bind: Option<Address>,

    /// Offer only these moq-lite versions, e.g. "moq-lite-04" (default: all we speak).
    #[arg(
        id = "client-version",
        long = "client-version",
        env = "MOQ_CLIENT_VERSION",
        value_name = "VERSION",
        value_delimiter = ',',
        value_parser = parse_version,
        alias = "connect-version",
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub version: Vec<moq_proto::Version>,

    /// `[client.tls]`.
    #[command(flatten)]
    pub tls: ClientTls,

    /// `[client.quic]`.
    #[command(flatten)]
    pub quic: ClientQuic,

    /// `[client.websocket]`.
    #[command(flatten)]
    pub websocket: ClientWebsocket,
}

/// `[client.websocket]`: cluster links over qmux/WebSocket (TCP) when QUIC does not
/// connect, for relays across networks that block UDP. Off unless enabled; a `wss://`
/// peer URL always uses WebSocket.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ClientWebsocket {
    /// Fall back to a WebSocket when QUIC has not connected within `delay` (default false).
    #[arg(
        id = "client-websocket-enabled",
        long = "client-websocket-enabled",
        env = "MOQ_CLIENT_WEBSOCKET_ENABLED",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: Option<bool>,

    /// QUIC's head start before the WebSocket attempt begins (default 500ms).
    #[arg(
        id = "client-websocket-delay",
        long = "client-websocket-delay",
        env = "MOQ_CLIENT_WEBSOCKET_DELAY",
        value_name = "DURATION",
        value_parser = moq_units::parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub delay: Option<std::time::Duration>,
}

/// `[client.tls]`: how the relay verifies servers it dials, and its own client certificate.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// CA PEM file(s) to trust for peers, in addition to (or instead of) the system roots.
    #[arg(
        id = "client-tls-root",
        long = "client-tls-root",
        env = "MOQ_CLIENT_TLS_ROOT",
        value_name = "FILE",
        value_delimiter = ',',
        alias = "connect-tls-root"
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub root: Vec<PathBuf>,

    /// Trust the operating system's CA store (default true unless `root` is set).
    #[arg(
        id = "client-tls-system-roots",
        long = "client-tls-system-roots",
        env = "MOQ_CLIENT_TLS_SYSTEM_ROOTS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        alias = "connect-tls-system-roots",
    )]
    pub system_roots: Option<bool>,

    /// Accept a server whose certificate has one of these SHA-256 fingerprints (hex).
    #[arg(
        id = "client-tls-fingerprint",
        long = "client-tls-fingerprint",
        env = "MOQ_CLIENT_TLS_FINGERPRINT",
        value_name = "SHA256",
        value_delimiter = ',',
        alias = "connect-tls-fingerprint"
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub fingerprint: Vec<Fingerprint>,

    /// Client certificate chain PEM for mTLS to peers.
    #[arg(
        id = "client-tls-cert",
        long = "client-tls-cert",
        env = "MOQ_CLIENT_TLS_CERT",
        value_name = "FILE",
        alias = "connect-tls-cert"
    )]
    pub cert: Option<PathBuf>,

    /// Private key PEM for `cert`.
    #[arg(
        id = "client-tls-key",
        long = "client-tls-key",
        env = "MOQ_CLIENT_TLS_KEY",
        value_name = "FILE",
        alias = "connect-tls-key"
    )]
    pub key: Option<PathBuf>,

    /// Skip server certificate verification (development only; key also spelled `insecure`).
    #[arg(
        id = "client-tls-disable-verify",
        long = "client-tls-disable-verify",
        env = "MOQ_CLIENT_TLS_DISABLE_VERIFY",
        value_name = "BOOL",
        alias = "client-tls-insecure",
        alias = "tls-disable-verify",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        alias = "connect-tls-insecure",
    )]
    #[serde(alias = "insecure")]
    pub disable_verify: Option<bool>,
}
