//! `[server]` (also spelled `[listen]`): the QUIC / WebTransport listener and its TLS.

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;
use serde::Deserialize;
use serde_with::{DisplayFromStr, OneOrMany};

use super::{
    quic::ServerQuic,
    value::{Address, HumanDuration, parse_duration, parse_version},
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

    /// Accept only these moq-lite versions, e.g. "moq-lite-04" (default: all we speak).
    #[arg(
        id = "server-version",
        long = "server-version",
        env = "MOQ_SERVER_VERSION",
        value_name = "VERSION",
        value_delimiter = ',',
        value_parser = parse_version,
        alias = "listen-version",
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub version: Vec<moq_proto::Version>,

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
        alias = "tls-cert",
        alias = "listen-tls-cert"
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
        alias = "tls-key",
        alias = "listen-tls-key"
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
        alias = "tls-generate",
        alias = "listen-tls-generate"
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub generate: Vec<String>,

    /// CA PEM file(s) for client certificates (mTLS: cluster peers authenticate with these).
    #[arg(
        id = "server-tls-root",
        long = "server-tls-root",
        env = "MOQ_SERVER_TLS_ROOT",
        value_name = "FILE",
        value_delimiter = ',',
        alias = "listen-tls-root"
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub root: Vec<PathBuf>,

    /// `[server.tls.acme]`.
    #[command(flatten)]
    pub acme: Acme,
}

impl ServerTls {
    /// Whether a certificate is configured (files, generated, or from ACME).
    pub fn has_certificate(&self) -> bool {
        !self.cert.is_empty() || !self.key.is_empty() || !self.generate.is_empty() || self.acme.is_enabled()
    }
}

/// Where the ACME account key and certificate are kept when `cache_dir` is unset: the
/// systemd unit's state directory.
pub const DEFAULT_ACME_CACHE: &str = "/var/lib/moq-relay/acme";

/// Where the HTTP-01 listener binds when `http_listen` is unset.
pub const DEFAULT_ACME_HTTP_LISTEN: &str = "[::]:80";

/// How the CA validates the domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum AcmeChallenge {
    /// On the HTTPS listener (`[web.https]`, TCP 443): ALPN `acme-tls/1`.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
    /// On a plain HTTP listener (`http_listen`, TCP 80) that redirects everything else to HTTPS.
    #[serde(rename = "http-01")]
    #[value(name = "http-01")]
    Http01,
}

impl fmt::Display for AcmeChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Http01 => "http-01",
        })
    }
}

/// A value kept out of `Debug` output and logs (an EAB HMAC key).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// `[server.tls.acme]`: a certificate from an ACME CA (Let's Encrypt by default), obtained
/// at start, renewed at two thirds of its lifetime, served on QUIC, HTTPS and WSS. On when
/// `domains` is set.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Acme {
    /// DNS names to certify, e.g. "relay.example.com" (one certificate covers them all).
    #[arg(
        id = "server-tls-acme-domains",
        long = "server-tls-acme-domains",
        env = "MOQ_SERVER_TLS_ACME_DOMAINS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub domains: Vec<String>,

    /// Contact for the CA's notices, e.g. "mailto:ops@example.com" (a bare address gets mailto:).
    #[arg(
        id = "server-tls-acme-contact",
        long = "server-tls-acme-contact",
        env = "MOQ_SERVER_TLS_ACME_CONTACT",
        value_name = "URI",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub contact: Vec<String>,

    /// The CA: "letsencrypt" (default), "letsencrypt-staging", or an https:// directory URL.
    #[arg(
        id = "server-tls-acme-directory",
        long = "server-tls-acme-directory",
        env = "MOQ_SERVER_TLS_ACME_DIRECTORY",
        value_name = "URL"
    )]
    pub directory: Option<String>,

    /// CA PEM file(s) to trust for the directory's HTTPS (a private CA), on top of the system's.
    #[arg(
        id = "server-tls-acme-directory-root",
        long = "server-tls-acme-directory-root",
        env = "MOQ_SERVER_TLS_ACME_DIRECTORY_ROOT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub directory_root: Vec<PathBuf>,

    /// Directory for the account key and the certificate (default /var/lib/moq-relay/acme).
    #[arg(
        id = "server-tls-acme-cache-dir",
        long = "server-tls-acme-cache-dir",
        env = "MOQ_SERVER_TLS_ACME_CACHE_DIR",
        value_name = "DIR"
    )]
    pub cache_dir: Option<PathBuf>,

    /// How the CA checks the domains: tls-alpn-01 (TCP 443, default) or http-01 (TCP 80).
    #[arg(
        id = "server-tls-acme-challenge",
        long = "server-tls-acme-challenge",
        env = "MOQ_SERVER_TLS_ACME_CHALLENGE",
        value_name = "CHALLENGE"
    )]
    pub challenge: Option<AcmeChallenge>,

    /// TCP address of the http-01 listener, e.g. "[::]:80" (the default); it redirects to HTTPS.
    #[arg(
        id = "server-tls-acme-http-listen",
        long = "server-tls-acme-http-listen",
        env = "MOQ_SERVER_TLS_ACME_HTTP_LISTEN",
        value_name = "ADDR"
    )]
    pub http_listen: Option<Address>,

    /// External account binding key id (commercial CAs).
    #[arg(
        id = "server-tls-acme-eab-kid",
        long = "server-tls-acme-eab-kid",
        env = "MOQ_SERVER_TLS_ACME_EAB_KID",
        value_name = "KID"
    )]
    pub eab_kid: Option<String>,

    /// External account binding HMAC key, base64url as the CA gives it (prefer the env var).
    #[arg(
        id = "server-tls-acme-eab-hmac-key",
        long = "server-tls-acme-eab-hmac-key",
        env = "MOQ_SERVER_TLS_ACME_EAB_HMAC_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub eab_hmac_key: Option<Secret>,

    /// First wait after a failed order; doubles per failure up to an hour (default 2m).
    #[arg(
        id = "server-tls-acme-retry",
        long = "server-tls-acme-retry",
        env = "MOQ_SERVER_TLS_ACME_RETRY",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub retry: Option<Duration>,
}

impl Acme {
    /// Whether ACME is on (`domains` is set).
    pub fn is_enabled(&self) -> bool {
        !self.domains.is_empty()
    }

    /// Whether any key of the table is set (to tell "on" from "half configured").
    pub fn is_set(&self) -> bool {
        *self != Self::default()
    }

    /// The directory URL: `letsencrypt` and `letsencrypt-staging` by name, else as written.
    pub fn directory_url(&self) -> String {
        match self.directory.as_deref().map(str::trim) {
            None | Some("letsencrypt" | "letsencrypt-production" | "production") => {
                moq_native::acme::LETS_ENCRYPT.to_string()
            }
            Some("letsencrypt-staging" | "staging") => moq_native::acme::LETS_ENCRYPT_STAGING.to_string(),
            Some(url) => url.to_string(),
        }
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ACME_CACHE))
    }

    /// The contacts as URIs (`mailto:` added to bare addresses).
    pub fn contact_uris(&self) -> Vec<String> {
        self.contact
            .iter()
            .map(|c| c.trim())
            .map(|c| match c.contains(':') {
                true => c.to_string(),
                false => format!("mailto:{c}"),
            })
            .collect()
    }

    /// The http-01 listener's address.
    pub fn http_address(&self) -> Option<Address> {
        match self.challenge.unwrap_or_default() {
            AcmeChallenge::Http01 => self
                .http_listen
                .clone()
                .or_else(|| DEFAULT_ACME_HTTP_LISTEN.parse().ok()),
            AcmeChallenge::TlsAlpn01 => None,
        }
    }

    /// The certificate manager's settings, when ACME is on.
    pub fn native(&self) -> Option<moq_native::acme::Config> {
        if !self.is_enabled() {
            return None;
        }
        Some(moq_native::acme::Config {
            domains: self
                .domains
                .iter()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            contact: self.contact_uris(),
            directory: self.directory_url(),
            directory_roots: self.directory_root.clone(),
            cache: self.cache_dir(),
            challenge: match self.challenge.unwrap_or_default() {
                AcmeChallenge::TlsAlpn01 => moq_native::acme::Challenge::TlsAlpn01,
                AcmeChallenge::Http01 => moq_native::acme::Challenge::Http01,
            },
            external_account: match (&self.eab_kid, &self.eab_hmac_key) {
                (Some(kid), Some(key)) => Some(moq_native::acme::ExternalAccount {
                    kid: kid.clone(),
                    hmac_key: key.0.clone(),
                }),
                _ => None,
            },
            retry: self.retry.unwrap_or(moq_native::acme::DEFAULT_RETRY),
        })
    }
}
