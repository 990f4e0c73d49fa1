//! `[client]` (also spelled `[connect]`): how the relay dials out (cluster peers, auth service).

use std::{path::PathBuf, time::Duration};

use clap::Args;
use serde::Deserialize;

use super::{
    quic::{Backend, ClientQuic},
    value::{Address, Fingerprint, de_with, parse_duration, parse_version},
};

/// Default connect timeout when `timeout` is unset.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// `[client]` / `[connect]`: settings for outgoing connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Client {
    /// A URL to connect to (used by clients; the relay ignores it).
    #[arg(
        id = "client-connect",
        long = "client-connect",
        env = "MOQ_CLIENT_CONNECT",
        value_name = "URL"
    )]
    pub connect: Option<String>,

    /// Local UDP address to dial from (key also spelled `listen`).
    #[arg(
        id = "client-bind",
        long = "client-bind",
        env = "MOQ_CLIENT_BIND",
        value_name = "ADDR"
    )]
    #[serde(alias = "listen")]
    pub bind: Option<Address>,

    /// QUIC implementation (quinn, noq, quiche); accepted for compatibility.
    #[arg(
        id = "client-backend",
        long = "client-backend",
        env = "MOQ_CLIENT_BACKEND",
        value_name = "BACKEND"
    )]
    pub backend: Option<Backend>,

    /// Give up a connection attempt after this long (default 30s; "0" waits forever).
    #[arg(
        id = "client-timeout",
        long = "client-timeout",
        env = "MOQ_CLIENT_TIMEOUT",
        value_name = "DURATION",
        alias = "client-connect-timeout",
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub timeout: Option<Duration>,

    /// Happy Eyeballs: wait this long before racing the next address (default 250ms).
    #[arg(
        id = "client-failover-delay",
        long = "client-failover-delay",
        env = "MOQ_CLIENT_FAILOVER_DELAY",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub failover_delay: Option<Duration>,

    /// Happy Eyeballs: wait this long for AAAA after A answers (default 50ms).
    #[arg(
        id = "client-resolution-delay",
        long = "client-resolution-delay",
        env = "MOQ_CLIENT_RESOLUTION_DELAY",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub resolution_delay: Option<Duration>,

    /// Offer only these moq-lite versions, e.g. "moq-lite-04" (default: all we speak).
    #[arg(
        id = "client-version",
        long = "client-version",
        env = "MOQ_CLIENT_VERSION",
        value_name = "VERSION",
        value_delimiter = ',',
        value_parser = parse_version
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
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

/// `[client.tls]`: how the relay verifies servers it dials, and its own client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTls {
    /// CA PEM file(s) to trust for peers, in addition to (or instead of) the system roots.
    #[arg(
        id = "client-tls-root",
        long = "client-tls-root",
        env = "MOQ_CLIENT_TLS_ROOT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
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
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub system_roots: Option<bool>,

    /// Accept a server whose certificate has one of these SHA-256 fingerprints (hex).
    #[arg(
        id = "client-tls-fingerprint",
        long = "client-tls-fingerprint",
        env = "MOQ_CLIENT_TLS_FINGERPRINT",
        value_name = "SHA256",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub fingerprint: Vec<Fingerprint>,

    /// Client certificate chain PEM for mTLS to peers.
    #[arg(
        id = "client-tls-cert",
        long = "client-tls-cert",
        env = "MOQ_CLIENT_TLS_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,

    /// Private key PEM for `cert`.
    #[arg(
        id = "client-tls-key",
        long = "client-tls-key",
        env = "MOQ_CLIENT_TLS_KEY",
        value_name = "FILE"
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
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    #[serde(alias = "insecure")]
    pub disable_verify: Option<bool>,

    /// Server name to verify instead of the URL's host.
    #[arg(
        id = "client-tls-host-name",
        long = "client-tls-host-name",
        env = "MOQ_CLIENT_TLS_HOST_NAME",
        value_name = "NAME"
    )]
    pub host_name: Option<String>,
}

/// `[client.websocket]`: WebSocket fallback when dialing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ClientWebsocket {
    /// Race a WebSocket connection against QUIC.
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

    /// Head start given to QUIC before the WebSocket attempt begins.
    #[arg(
        id = "client-websocket-delay",
        long = "client-websocket-delay",
        env = "MOQ_CLIENT_WEBSOCKET_DELAY",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub delay: Option<Duration>,
}
