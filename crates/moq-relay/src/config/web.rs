//! `[web]` (public HTTP/HTTPS on TCP) and `[internal]` (the private operations listener).

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use serde_with::{DisplayFromStr, OneOrMany};

use super::value::Address;

/// `[web]`: HTTP endpoints (`/certificate.sha256`, `/announced`, `/fetch`) and the WebSocket
/// fallback, on TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    /// Accept WebSocket upgrades on the web listeners (default true).
    #[arg(
        id = "web-ws",
        long = "web-ws",
        env = "MOQ_WEB_WS",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub ws: Option<bool>,

    /// `[web.http]`.
    #[command(flatten)]
    pub http: WebHttp,

    /// `[web.https]`.
    #[command(flatten)]
    pub https: WebHttps,
}

/// `[web.http]`: plain HTTP (and WebSocket) listener; off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct WebHttp {
    /// TCP address, e.g. "[::]:4443" (key also spelled `bind`).
    #[arg(
        id = "web-http-listen",
        long = "web-http-listen",
        env = "MOQ_WEB_HTTP_LISTEN",
        value_name = "ADDR",
        alias = "web-http-bind"
    )]
    #[serde(alias = "bind")]
    pub listen: Option<Address>,
}

/// `[web.https]`: HTTPS (and secure WebSocket) listener; off unless `listen` is set.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct WebHttps {
    /// TCP address, e.g. "[::]:443" (key also spelled `bind`).
    #[arg(
        id = "web-https-listen",
        long = "web-https-listen",
        env = "MOQ_WEB_HTTPS_LISTEN",
        value_name = "ADDR",
        alias = "web-https-bind"
    )]
    #[serde(alias = "bind")]
    pub listen: Option<Address>,

    /// Certificate chain PEM file(s); one per `key`.
    #[arg(
        id = "web-https-cert",
        long = "web-https-cert",
        env = "MOQ_WEB_HTTPS_CERT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub cert: Vec<PathBuf>,

    /// Private key PEM file(s), matching `cert` by position.
    #[arg(
        id = "web-https-key",
        long = "web-https-key",
        env = "MOQ_WEB_HTTPS_KEY",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub key: Vec<PathBuf>,

    /// CA PEM file(s) for client certificates (mTLS).
    #[arg(
        id = "web-https-root",
        long = "web-https-root",
        env = "MOQ_WEB_HTTPS_ROOT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub root: Vec<PathBuf>,
}

/// `[internal]`: `/metrics`, `/health`, `/ready`, `/nodes` on plain HTTP. Off by default;
/// bind it to loopback or a private network, never the internet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Internal {
    /// TCP address, e.g. "127.0.0.1:9090" (key also spelled `bind`).
    #[arg(
        id = "internal-listen",
        long = "internal-listen",
        env = "MOQ_INTERNAL_LISTEN",
        value_name = "ADDR",
        alias = "internal-bind"
    )]
    #[serde(alias = "bind")]
    pub listen: Option<Address>,
}
