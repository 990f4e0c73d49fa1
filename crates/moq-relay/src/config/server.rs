//! `[server]` (also spelled `[listen]`): the QUIC / WebTransport listener and its TLS.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use serde_with::{DisplayFromStr, OneOrMany};

use super::{
    quic::ServerQuic,
    value::{Address, parse_version},
};

/// Where the QUIC listener binds when TLS is configured but `bind` is not.
pub const DEFAULT_BIND: &str = "[::]:443";

/// `[server]` / `[listen]`: the QUIC and WebTransport listener (UDP).
#[serde_with::serde_as]
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

    /// Accept only these versions, e.g. "moq-lite-04" or "moq-transport-16" (default: all
    /// we speak, moq-lite and moq-transport drafts 14-22).
    #[arg(
        id = "server-version",
        long = "server-version",
        env = "MOQ_SERVER_VERSION",
        value_name = "VERSION",
        value_delimiter = ',',
        value_parser = parse_version
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub version: Vec<moq_proto::Protocol>,

    /// `[server.tls]`.
    #[command(flatten)]
    pub tls: ServerTls,

    /// `[server.quic]`.
    #[command(flatten)]
    pub quic: ServerQuic,
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
#[serde_with::serde_as]
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
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
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
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
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
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub generate: Vec<String>,

    /// CA PEM file(s) for client certificates (mTLS: cluster peers authenticate with these).
    #[arg(
        id = "server-tls-root",
        long = "server-tls-root",
        env = "MOQ_SERVER_TLS_ROOT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub root: Vec<PathBuf>,
}

impl ServerTls {
    /// Whether a certificate is configured (files or generated).
    pub fn has_certificate(&self) -> bool {
        !self.cert.is_empty() || !self.key.is_empty() || !self.generate.is_empty()
    }
}
