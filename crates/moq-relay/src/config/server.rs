//! `[server]` (also spelled `[listen]`): the QUIC / WebTransport listener and its TLS.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::{
    quic::{Backend, ServerQuic},
    value::{Address, de_with, parse_version},
};

/// Where the QUIC listener binds when TLS is configured but `bind` is not.
pub const DEFAULT_BIND: &str = "[::]:443";

/// `[server]` / `[listen]`: the QUIC and WebTransport listener (UDP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// UDP address for QUIC and WebTransport, e.g. "[::]:443" (key also spelled `listen`).
    #[arg(
        id = "server-bind",
        long = "server-bind",
        env = "MOQ_SERVER_BIND",
        value_name = "ADDR",
        alias = "listen",
        alias = "server-listen"
    )]
    #[serde(alias = "listen")]
    pub bind: Option<Address>,

    /// QUIC implementation (quinn, noq, quiche); accepted for compatibility.
    #[arg(
        id = "server-backend",
        long = "server-backend",
        env = "MOQ_SERVER_BACKEND",
        value_name = "BACKEND"
    )]
    pub backend: Option<Backend>,

    /// Accept only these moq-lite versions, e.g. "moq-lite-04" (default: all we speak).
    #[arg(
        id = "server-version",
        long = "server-version",
        env = "MOQ_SERVER_VERSION",
        value_name = "VERSION",
        value_delimiter = ',',
        value_parser = parse_version
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub version: Vec<moq_proto::Version>,

    /// `[server.tls]`.
    #[command(flatten)]
    pub tls: ServerTls,

    /// `[server.quic]`.
    #[command(flatten)]
    pub quic: ServerQuic,

    /// `[server.tcp]`.
    #[command(flatten)]
    pub tcp: ServerTcp,

    /// `[server.unix]`.
    #[command(flatten)]
    pub unix: ServerUnix,
}

impl Server {
    /// The QUIC listener's address, if the relay listens on QUIC at all: `bind`, or
    /// [`DEFAULT_BIND`] when only TLS is configured.
    pub fn quic_bind(&self) -> Option<Address> {
        match &self.bind {
            Some(bind) => Some(bind.clone()),
            None if self.tls.has_certificate() => DEFAULT_BIND.parse().ok(),
            None => None,
        }
    }
}

/// `[server.tls]`: the certificate the QUIC listener presents, and optional client CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTls {
    /// Certificate chain PEM file(s); one per `key`, in the same order.
    #[arg(
        id = "server-tls-cert",
        long = "server-tls-cert",
        env = "MOQ_SERVER_TLS_CERT",
        value_name = "FILE",
        value_delimiter = ',',
        alias = "tls-cert"
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub cert: Vec<PathBuf>,

    /// Private key PEM file(s), matching `cert` by position.
    #[arg(
        id = "server-tls-key",
        long = "server-tls-key",
        env = "MOQ_SERVER_TLS_KEY",
        value_name = "FILE",
        value_delimiter = ',',
        alias = "tls-key"
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub key: Vec<PathBuf>,

    /// Host names to put in a generated self-signed certificate (development only).
    #[arg(
        id = "server-tls-generate",
        long = "server-tls-generate",
        env = "MOQ_SERVER_TLS_GENERATE",
        value_name = "HOST",
        value_delimiter = ',',
        alias = "tls-generate"
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub generate: Vec<String>,

    /// CA PEM file(s) for client certificates (mTLS: cluster peers authenticate with these).
    #[arg(
        id = "server-tls-root",
        long = "server-tls-root",
        env = "MOQ_SERVER_TLS_ROOT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "de_with::one_or_many")]
    pub root: Vec<PathBuf>,
}

impl ServerTls {
    /// Whether a certificate is configured (files or generated).
    pub fn has_certificate(&self) -> bool {
        !self.cert.is_empty() || !self.key.is_empty() || !self.generate.is_empty()
    }
}

/// `[server.tcp]`: plaintext qmux over TCP, for trusted networks only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTcp {
    /// TCP address for plaintext qmux.
    #[arg(
        id = "server-tcp-bind",
        long = "server-tcp-bind",
        env = "MOQ_SERVER_TCP_BIND",
        value_name = "ADDR"
    )]
    pub bind: Option<Address>,
}

/// `[server.unix]`: plaintext qmux over a Unix socket, gated by peer credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct ServerUnix {
    /// Unix socket path.
    #[arg(
        id = "server-unix-bind",
        long = "server-unix-bind",
        env = "MOQ_SERVER_UNIX_BIND",
        value_name = "PATH"
    )]
    pub bind: Option<PathBuf>,

    /// `[server.unix.allow]`.
    #[command(flatten)]
    pub allow: UnixAllow,
}

/// `[server.unix.allow]`: which local peers may use the Unix socket (SO_PEERCRED).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct UnixAllow {
    /// Allowed user ids.
    #[arg(
        id = "server-unix-allow-uid",
        long = "server-unix-allow-uid",
        env = "MOQ_SERVER_UNIX_ALLOW_UID",
        value_name = "UID",
        value_delimiter = ','
    )]
    pub uid: Vec<u32>,

    /// Allowed group ids.
    #[arg(
        id = "server-unix-allow-gid",
        long = "server-unix-allow-gid",
        env = "MOQ_SERVER_UNIX_ALLOW_GID",
        value_name = "GID",
        value_delimiter = ','
    )]
    pub gid: Vec<u32>,

    /// Allowed process ids.
    #[arg(
        id = "server-unix-allow-pid",
        long = "server-unix-allow-pid",
        env = "MOQ_SERVER_UNIX_ALLOW_PID",
        value_name = "PID",
        value_delimiter = ','
    )]
    pub pid: Vec<u32>,
}

/// `[runtime]`: thread-per-core QUIC (0.17); accepted and stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Runtime {
    /// Number of QUIC worker threads.
    #[arg(
        id = "runtime-workers",
        long = "runtime-workers",
        env = "MOQ_RUNTIME_WORKERS",
        value_name = "COUNT"
    )]
    pub workers: Option<usize>,

    /// Pin each worker thread to a core.
    #[arg(
        id = "runtime-pin",
        long = "runtime-pin",
        env = "MOQ_RUNTIME_PIN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub pin: Option<bool>,
}
