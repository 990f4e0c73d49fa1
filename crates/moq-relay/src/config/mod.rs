//! The relay's configuration: one TOML file, every key also a flag and an env var.
//!
//! [`Config::load`] is the entry point. It parses the command line, reads the TOML file
//! given as the positional argument (if any), then applies flags and `MOQ_*` env vars on
//! top: flags and env override the file. Every value is an `Option` (or a list left empty),
//! so a flag that is absent never clobbers what the file said. With no file and no flags
//! or env vars (other than `[log]` ones) the built-in [`Config::development`] relay is used.
//!
//! Keys follow the ecosystem's `moq-relay` so operators' files load unchanged: `[server]`
//! or `[listen]`, `[client]` or `[connect]`, `bind` or `listen`, `tls.disable_verify` or
//! `tls.insecure`. Unknown keys are rejected with the file, line and a "did you mean";
//! legacy keys (`cluster.advertise`, `cluster.prefix`, `cluster.mesh = "<url>"`,
//! `auth.public.api`) are migrated with a warning saying what to write instead.
//!
//! Flag `--SECTION-KEY` and env var `MOQ_SECTION_KEY` for `[section] key`, nested tables
//! joined the same way: `[server.tls] cert` is `--server-tls-cert` / `MOQ_SERVER_TLS_CERT`.
//! Lists take repeated flags or commas; booleans take `--flag` or `--flag=false`.
//!
//! Loading never touches the network or the certificate files: it only reads the config
//! file. [`Config::validate`] is pure as well.

mod auth;
mod cache;
mod client;
mod cluster;
mod error;
mod iroh;
mod limits;
mod load;
mod log;
mod quic;
mod server;
mod stats;
mod value;
mod web;

#[cfg(test)]
mod tests;

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{CommandFactory, FromArgMatches, Parser, parser::ValueSource};
use serde::Deserialize;

pub use auth::{Auth, Public};
pub use cache::Cache;
pub use client::{Client, ClientTls, ClientWebsocket, DEFAULT_CONNECT_TIMEOUT};
pub use cluster::{Cluster, ClusterLan, DEFAULT_LINGER, MAX_ID, MAX_JS_SAFE_ID};
pub use error::{ConfigError, Location};
pub use iroh::Iroh;
pub use limits::{
    DEFAULT_ANNOUNCEMENTS_PER_SESSION, DEFAULT_CONNECTIONS_PER_SECOND_PER_IP, DEFAULT_MAX_SESSIONS,
    DEFAULT_SESSIONS_PER_IP, DEFAULT_SUBSCRIPTIONS_PER_SESSION, Limits,
};
pub use log::{Log, LogFormat};
pub use quic::{
    Backend, ClientQuic, CongestionControl, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_STREAMS,
    Quic, ServerQuic,
};
pub use server::{DEFAULT_BIND, Runtime, Server, ServerTcp, ServerTls, ServerUnix, UnixAllow};
pub use stats::Stats;
pub use value::{
    Address, Fingerprint, MemoryLimit, format_bytes, format_duration, parse_bytes, parse_duration, redact_url,
};
pub use web::{Internal, Web, WebHttp, WebHttps};

use value::de_with;

/// How long SIGTERM waits for sessions to leave after GOAWAY, when `drain_timeout` is unset.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The port of the development relay (QUIC on UDP and HTTP on TCP).
pub const DEVELOPMENT_PORT: u16 = 4443;

/// The whole relay configuration: one field per TOML section.
///
/// Build it with [`Config::load`] (file + flags + env) or [`Config::development`]; then call
/// [`Config::validate`] before starting anything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Parser)]
#[command(
    name = "moq-relay",
    version,
    about = "Media over QUIC relay",
    long_about = "Media over QUIC relay.\n\nConfigure it with a TOML file, flags, or MOQ_<SECTION>_<KEY> env \
                  vars; flags and env vars override the file. With none of these it runs a development \
                  relay on [::]:4443 (self-signed certificate, anonymous access)."
)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TOML config file (flags and MOQ_* env vars override it).
    #[arg(value_name = "FILE")]
    #[serde(skip)]
    pub file: Option<PathBuf>,

    /// Validate the configuration, print a one-line summary and exit (1 if invalid).
    #[arg(long = "check")]
    #[serde(skip)]
    pub check: bool,

    /// `[log]`.
    #[command(flatten)]
    pub log: Log,

    /// `[server]`, also spelled `[listen]`.
    #[command(flatten)]
    #[serde(alias = "listen")]
    pub server: Server,

    /// `[client]`, also spelled `[connect]`.
    #[command(flatten)]
    #[serde(alias = "connect")]
    pub client: Client,

    /// `[quic]`: QUIC settings shared by both directions.
    #[command(flatten)]
    pub quic: Quic,

    /// `[web]`.
    #[command(flatten)]
    pub web: Web,

    /// `[internal]`.
    #[command(flatten)]
    pub internal: Internal,

    /// `[auth]`.
    #[command(flatten)]
    pub auth: Auth,

    /// `[cluster]`.
    #[command(flatten)]
    pub cluster: Cluster,

    /// `[cache]`.
    #[command(flatten)]
    pub cache: Cache,

    /// `[limits]`: abuse protection.
    #[command(flatten)]
    pub limits: Limits,

    /// `[stats]`.
    #[command(flatten)]
    pub stats: Stats,

    /// `[iroh]`.
    #[command(flatten)]
    pub iroh: Iroh,

    /// `[runtime]`.
    #[command(flatten)]
    pub runtime: Runtime,

    /// On SIGTERM: send GOAWAY, then wait this long for sessions to leave (default 10s).
    #[arg(
        id = "drain-timeout",
        long = "drain-timeout",
        env = "MOQ_DRAIN_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde(deserialize_with = "de_with::duration")]
    pub drain_timeout: Option<Duration>,

    /// True when nothing configured the relay and the development defaults are in use.
    #[arg(skip)]
    #[serde(skip)]
    pub development: bool,

    /// Deprecated spellings and ignored settings found while loading, each saying what to
    /// write instead. Log them at startup.
    #[arg(skip)]
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Config {
    /// Parse `args` (including the program name, as from `std::env::args_os()`), read the
    /// file they name, and apply flags and `MOQ_*` env vars on top.
    ///
    /// Defaults for `drain_timeout`, `cluster.linger` and `web.ws` are filled in; the
    /// result is not validated: call [`Config::validate`].
    pub fn load<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let file = matches.get_one::<PathBuf>("file").cloned();
        let mut config = match &file {
            Some(path) => Self::from_file(path)?,
            None if !configures_relay(&matches) => Self::development(),
            None => Self::default(),
        };
        config.update_from_arg_matches(&matches)?;
        config.auth.apply_flags();
        config.apply_defaults();
        config.collect_warnings();
        Ok(config)
    }

    /// The built-in development relay: QUIC on `[::]:4443` with a self-signed certificate
    /// for `localhost`, HTTP on the same port over TCP (so clients can fetch
    /// `/certificate.sha256`), and anonymous publish and subscribe everywhere.
    pub fn development() -> Self {
        let address = Address {
            host: "::".to_string(),
            port: DEVELOPMENT_PORT,
        };
        let mut config = Self::default();
        config.server.bind = Some(address.clone());
        config.server.tls.generate = vec!["localhost".to_string()];
        config.web.http.listen = Some(address);
        config.auth = Auth::anonymous();
        config.development = true;
        config.apply_defaults();
        config
    }

    /// Read and parse a TOML file, migrating legacy keys (no flags, no defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ConfigError::NotFound {
                file: path.to_path_buf(),
            },
            _ => ConfigError::Read {
                file: path.to_path_buf(),
                source,
            },
        })?;
        Self::from_toml(&text, path)
    }

    /// Parse TOML text; `file` names it in error messages.
    pub fn from_toml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut config = load::parse(text, file)?;
        let mut warnings = Vec::new();
        config
            .auth
            .migrate(&mut warnings)
            .and_then(|()| config.cluster.migrate(&mut warnings))
            .map_err(|message| ConfigError::Legacy {
                at: Location {
                    file: file.to_path_buf(),
                    line: None,
                    column: None,
                },
                message,
            })?;
        config.file = Some(file.to_path_buf());
        config.warnings = warnings;
        Ok(config)
    }

    fn apply_defaults(&mut self) {
        self.drain_timeout.get_or_insert(DEFAULT_DRAIN_TIMEOUT);
        self.cluster.linger.get_or_insert(DEFAULT_LINGER);
        self.web.ws.get_or_insert(true);
    }

    /// Where the settings came from, for messages.
    pub fn origin(&self) -> String {
        match &self.file {
            Some(file) => file.display().to_string(),
            None if self.development => "(development defaults)".to_string(),
            None => "(flags and environment)".to_string(),
        }
    }

    fn collect_warnings(&mut self) {
        let mut warnings = Vec::new();
        if self.iroh.enabled == Some(true) {
            warnings
                .push("iroh is not supported by this relay: '[iroh] enabled = true' is ignored".to_string());
        }
        if !self.cluster.roots().is_empty() && self.cluster.node.is_none() {
            warnings.push(
                "'cluster.root' is set but 'cluster.node' is not: this relay finds broadcasts through the \
                 root, but other relays cannot dial it for its own broadcasts; set node to its URL"
                    .to_string(),
            );
        }
        for peer in self.cluster.connect.iter().chain(&self.cluster.root) {
            if !peer.contains("://") {
                warnings.push(format!(
                    "cluster peer '{}' has no scheme: dialling {} (bare host:port is deprecated; \
                     write the URL)",
                    redact_url(peer),
                    redact_url(&cluster::peer_url(peer))
                ));
            }
        }
        if let Some(id) = self.cluster.id
            && id > MAX_JS_SAFE_ID
            && id <= MAX_ID
        {
            warnings.push(format!(
                "cluster.id {id} is above 2^53: browsers cannot represent it exactly; pick a smaller id"
            ));
        }
        if self
            .auth
            .key_dir
            .as_ref()
            .is_some_and(|dir| dir.starts_with("http://") || dir.starts_with("https://"))
        {
            warnings.push("auth.key_dir as a URL is deprecated: use auth.url (an auth service)".to_string());
        }
        let https = &self.web.https;
        if https.listen.is_none() && (!https.cert.is_empty() || !https.key.is_empty()) {
            warnings
                .push("web.https.cert/key are set but web.https.listen is not: HTTPS stays off".to_string());
        }
        self.warnings.extend(warnings);
    }

    /// Check the merged configuration for contradictions and for a relay nobody could use.
    /// Every problem is reported at once, each saying why and what to set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let tls = &self.server.tls;
        pair_problems(&mut problems, "server.tls", &tls.cert, &tls.key);
        if !tls.cert.is_empty() && !tls.generate.is_empty() {
            problems.push(
                "server.tls.cert and server.tls.generate are both set: use certificate files in production \
                 or generate (self-signed, development only), not both"
                    .to_string(),
            );
        }
        if let Some(bind) = &self.server.bind
            && !tls.has_certificate()
        {
            problems.push(format!(
                "server.bind is {bind} but there is no TLS certificate (QUIC requires one): set \
                 server.tls.cert and server.tls.key, or server.tls.generate = [\"localhost\"] for development"
            ));
        }

        let https = &self.web.https;
        if https.listen.is_some() {
            if https.cert.is_empty() && https.key.is_empty() {
                problems.push(
                    "web.https.listen is set but there is no certificate: set web.https.cert and web.https.key \
                     (they may name the same files as server.tls)"
                        .to_string(),
                );
            } else {
                pair_problems(&mut problems, "web.https", &https.cert, &https.key);
            }
        }

        let client = &self.client.tls;
        match (&client.cert, &client.key) {
            (Some(_), None) => problems.push(
                "client.tls.cert is set without client.tls.key: set client.tls.key to its private key"
                    .to_string(),
            ),
            (None, Some(_)) => problems.push(
                "client.tls.key is set without client.tls.cert: set client.tls.cert to the certificate chain"
                    .to_string(),
            ),
            _ => {}
        }

        if self.server.quic_bind().is_none()
            && self.web.http.listen.is_none()
            && https.listen.is_none()
            && self.server.tcp.bind.is_none()
            && self.server.unix.bind.is_none()
        {
            problems.push(
                "nothing to listen on: set server.bind (QUIC and WebTransport, with server.tls), and/or \
                 web.http.listen / web.https.listen (HTTP and WebSocket)"
                    .to_string(),
            );
        }

        let auth = &self.auth;
        if !auth.is_configured() && tls.root.is_empty() {
            let why = match &auth.public {
                Some(_) => "auth.public grants nothing and there is no other way to authenticate",
                None => {
                    "no auth.key, auth.key_dir, auth.url or auth.public is set, and no server.tls.root for mTLS"
                }
            };
            problems.push(format!(
                "nobody could connect: {why}; set auth.key to a JWK file to require tokens, auth.public = \"\" \
                 to allow anonymous access everywhere (development), or server.tls.root to admit peers by \
                 client certificate"
            ));
        }
        if auth.url.is_some() {
            problems.push(
                "auth.url: an external auth service is not supported by this relay yet; verify tokens with \
                 auth.key (one JWK file) or auth.key_dir (a directory of {kid}.jwk files)"
                    .to_string(),
            );
        }
        if auth.url.is_some() && (auth.key.is_some() || auth.key_dir.is_some()) {
            problems.push(
                "auth.url (an auth service) verifies tokens itself: remove auth.key and auth.key_dir, or the url"
                    .to_string(),
            );
        }

        let cluster = &self.cluster;
        match cluster.id {
            Some(0) => {
                problems.push("cluster.id must not be 0: pick any other number below 2^53".to_string())
            }
            Some(id) if id > MAX_ID => problems.push(format!(
                "cluster.id {id} is too large: hop ids must be below 2^62 (2^53 for browsers)"
            )),
            _ => {}
        }
        if cluster.mesh == Some(true) && cluster.node.is_none() {
            problems.push(
                "cluster.mesh = true needs cluster.node: this relay's own URL, which the other relays will dial"
                    .to_string(),
            );
        }
        if cluster.node.as_ref().is_some_and(|node| node.contains("jwt=")) {
            problems.push(
                "cluster.node contains a token (jwt=): the node URL is gossiped and logged; put the token in \
                 cluster.token or in the peer URLs of cluster.connect"
                    .to_string(),
            );
        }
        if let Some(secret) = &cluster.lan.secret
            && (secret.len() != 64 || !secret.chars().all(|c| c.is_ascii_hexdigit()))
        {
            problems.push("cluster.lan.secret must be 64 hex digits (32 random bytes)".to_string());
        }
        if cluster.lan.enabled == Some(true) && cluster.lan.secret.is_none() {
            problems.push(
                "cluster.lan.enabled needs cluster.lan.secret: 64 hex digits shared by every relay of the cluster"
                    .to_string(),
            );
        }

        if let Some(level) = &self.log.level
            && !level.contains(['=', ','])
            && !log::LEVELS.contains(&level.trim().to_lowercase().as_str())
        {
            problems.push(format!(
                "log.level '{level}' is not a level: use off, error, warn, info, debug or trace (or a filter \
                 such as \"info,moq_relay=debug\")"
            ));
        }
        if self.stats.interval == Some(Duration::ZERO) {
            problems.push("stats.interval must be more than 0, e.g. \"1s\"".to_string());
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: self.origin(),
                problems,
            })
        }
    }

    /// One line saying what this configuration will do, for `--check`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match self.server.quic_bind() {
            Some(bind) => {
                let tls = &self.server.tls;
                let certificate = if !tls.generate.is_empty() {
                    format!("self-signed for {}", tls.generate.join(", "))
                } else {
                    format!("{} certificate(s)", tls.cert.len())
                };
                let mtls = if tls.root.is_empty() { "" } else { ", mTLS" };
                parts.push(format!("quic {bind} ({certificate}{mtls})"));
            }
            None => parts.push("quic off".to_string()),
        }
        if let Some(listen) = &self.web.http.listen {
            parts.push(format!("http {listen}"));
        }
        if let Some(listen) = &self.web.https.listen {
            parts.push(format!("https {listen}"));
        }
        if let Some(listen) = &self.internal.listen {
            parts.push(format!("internal {listen}"));
        }

        let auth = &self.auth;
        let mut access = Vec::new();
        if let Some(key) = &auth.key {
            access.push(format!("key {}", key.display()));
        }
        if let Some(dir) = &auth.key_dir {
            access.push(format!("key_dir {dir}"));
        }
        if let Some(url) = &auth.url {
            access.push(format!("service {}", redact_url(url)));
        }
        if let Some(public) = &auth.public {
            access.push(format!("public {public}"));
        }
        if access.is_empty() {
            access.push("mTLS only".to_string());
        }
        parts.push(format!("auth {}", access.join(", ")));

        let cluster = &self.cluster;
        if cluster.is_enabled() {
            let mut links = format!(
                "cluster {} peer(s), {} root(s)",
                cluster.peers().len(),
                cluster.roots().len()
            );
            if cluster.mesh == Some(true) {
                links.push_str(", mesh");
            }
            if let Some(node) = &cluster.node {
                links.push_str(&format!(" as {node}"));
            }
            parts.push(links);
        } else {
            parts.push("no cluster".to_string());
        }
        match &self.cache.capacity {
            Some(capacity) => parts.push(format!("cache {capacity}")),
            None => parts.push("cache unbounded".to_string()),
        }
        format!("{}: ok: {}", self.origin(), parts.join(", "))
    }
}

/// A certificate list and its key list must pair up one to one.
fn pair_problems(problems: &mut Vec<String>, table: &str, cert: &[PathBuf], key: &[PathBuf]) {
    match (cert.len(), key.len()) {
        (0, 0) => {}
        (_, 0) => problems.push(format!(
            "{table}.cert is set without {table}.key: set {table}.key to the certificate's private key"
        )),
        (0, _) => problems.push(format!(
            "{table}.key is set without {table}.cert: set {table}.cert to the certificate chain"
        )),
        (certs, keys) if certs != keys => problems.push(format!(
            "{table} has {certs} certificate(s) but {keys} key(s): list one key per certificate, in the same order"
        )),
        _ => {}
    }
}

/// Whether any flag or env var other than the file and `[log]` settings was given: those
/// turn off the development defaults, so that a deployment configured only by env vars
/// never ends up with a self-signed certificate and anonymous access.
fn configures_relay(matches: &clap::ArgMatches) -> bool {
    Config::command()
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_string())
        .any(|id| {
            !matches!(id.as_str(), "file" | "check" | "log-level" | "log-format")
                && matches!(
                    matches.value_source(&id),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
        })
}
