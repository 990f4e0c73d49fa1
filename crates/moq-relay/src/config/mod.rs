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
//! `auth.public.api`) are migrated with a warning saying what to write instead. Keys and
//! flags the ecosystem has removed and this relay does not read either (`[auth] domains`,
//! `--auth-mtls-tier`, `[connect] reconnect`...) stop loading with the ecosystem's
//! "renamed" message naming each replacement (see [`renamed`]).
//!
//! Flag `--SECTION-KEY` and env var `MOQ_SECTION_KEY` for `[section] key`, nested tables
//! joined the same way: `[server.tls] cert` is `--server-tls-cert` / `MOQ_SERVER_TLS_CERT`.
//! Lists take repeated flags or commas; booleans take `--flag` or `--flag=false`.
//!
//! Loading never touches the network or the certificate files: it only reads the config
//! file. [`Config::validate`] reads nothing either, except that with `[server.tls.acme]`
//! it checks that the cache directory is writable (a probe file, created and removed).

mod auth;
mod cache;
mod client;
mod cluster;
mod error;
mod inert;
mod limits;
mod load;
mod log;
mod quic;
pub mod renamed;
mod server;
mod value;
mod web;

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{CommandFactory, FromArgMatches, Parser, parser::ValueSource};
use serde::Deserialize;

pub use auth::{Auth, Public};
pub use cache::{Cache, DEFAULT_CACHE_SHARE, MIN_CACHE_CAPACITY, cache_budget};
pub use client::{Client, ClientTls, ClientWebsocket};
pub use cluster::{Cluster, DEFAULT_LINGER, MAX_ID, MAX_JS_SAFE_ID, peer_url};
pub use error::{ConfigError, Location};
pub use inert::{INERT, warning as inert_warning};
pub use limits::{
    DEFAULT_ANNOUNCE_REQUESTS_PER_SESSION, DEFAULT_ANNOUNCEMENTS_PER_SESSION,
    DEFAULT_CONNECTIONS_PER_SECOND_PER_IP, DEFAULT_FETCHES_PER_SESSION, DEFAULT_GROUP_FRAMES,
    DEFAULT_GROUP_SIZE, DEFAULT_GROUPS_PER_SESSION, DEFAULT_MAX_SESSIONS,
    DEFAULT_PENDING_STREAMS_PER_SESSION, DEFAULT_SESSIONS_PER_IP, DEFAULT_STREAM_HEADER_TIMEOUT,
    DEFAULT_SUBSCRIPTIONS_PER_SESSION, DEFAULT_TRACK_REQUESTS_PER_SESSION, Limits,
};
pub use load::closest;
pub use log::{LEVELS, Log, LogFormat};
pub use quic::{
    ClientQuic, CongestionControl, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_STREAMS,
    MAX_STREAMS_LIMIT, Quic, QuicSettings, ServerQuic,
};
pub use server::{
    Acme, AcmeChallenge, DEFAULT_ACME_CACHE, DEFAULT_ACME_HTTP_LISTEN, DEFAULT_BIND, Secret, Server,
    ServerTls,
};
pub use value::{
    Address, Fingerprint, MemoryLimit, format_bytes, format_duration, parse_bytes, parse_duration,
};
pub use web::{Internal, Web, WebHttp, WebHttps};

use value::HumanDuration;

/// How long SIGTERM waits for sessions to leave after GOAWAY, when `drain_timeout` is unset.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The port of the development relay (QUIC on UDP and HTTP on TCP).
pub const DEVELOPMENT_PORT: u16 = 4443;

/// The whole relay configuration: one field per TOML section.
///
/// Build it with [`Config::load`] (file + flags + env) or [`Config::development`]; then call
/// [`Config::validate`] before starting anything.
#[serde_with::serde_as]
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

    /// On SIGTERM: send GOAWAY, then wait this long for sessions to leave (default 10s).
    #[arg(
        id = "drain-timeout",
        long = "drain-timeout",
        env = "MOQ_DRAIN_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
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
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut matches = with_renamed_flags(Self::command()).try_get_matches_from(&args)?;
        // The 0.15+ env spellings (`MOQ_LISTEN_*`, `MOQ_CONNECT_*`) become the flags they
        // stand for, unless the flag or the canonical env var is given: parse again.
        let aliased = env_alias_args(&matches, |name| std::env::var_os(name));
        if !aliased.is_empty() {
            matches =
                with_renamed_flags(Self::command()).try_get_matches_from(args.iter().chain(&aliased))?;
        }
        let renamed = renamed_flags(&matches);
        if !renamed.is_empty() {
            return Err(ConfigError::Renamed {
                origin: "(flags and environment)".to_string(),
                settings: renamed,
            });
        }
        let file = matches.get_one::<PathBuf>("file").cloned();
        let mut config = match &file {
            Some(path) => Self::from_file(path)?,
            None if !configures_relay(&matches) => Self::development(),
            None => Self::default(),
        };
        config.update_from_arg_matches(&matches)?;
        config.auth.apply_flags();
        config.apply_defaults();
        // A development relay moved to another address keeps HTTP on the QUIC port.
        if config.development
            && flag_given(&matches, "server-bind")
            && !flag_given(&matches, "web-http-listen")
        {
            config.web.http.listen = config.server.bind.clone();
        }
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
        let (mut config, mut warnings) = load::parse(text, file)?;
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
    }

    /// Where the settings came from, for messages.
    pub fn origin(&self) -> String {
        match &self.file {
            Some(file) => file.display().to_string(),
            None if self.development => "(development defaults)".to_string(),
            None => "(flags and environment)".to_string(),
        }
    }

    /// QUIC settings for accepted connections: `[server.quic]`, else `[quic]`.
    pub fn server_quic(&self) -> QuicSettings {
        self.server.quic.settings().or(self.quic.settings())
    }

    /// QUIC settings for connections the relay dials: `[client.quic]`, else `[quic]`.
    pub fn client_quic(&self) -> QuicSettings {
        self.client.quic.settings().or(self.quic.settings())
    }
}

/// The env var spellings of the 0.15+ flags, which clap (one env var per flag) cannot
/// carry: (env var, the flag it sets). `MOQ_LISTEN` is `--listen`, i.e. `--server-bind`.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("MOQ_LISTEN", "server-bind"),
    ("MOQ_LISTEN_VERSION", "server-version"),
    ("MOQ_LISTEN_TLS_CERT", "server-tls-cert"),
    ("MOQ_LISTEN_TLS_KEY", "server-tls-key"),
    ("MOQ_LISTEN_TLS_GENERATE", "server-tls-generate"),
    ("MOQ_LISTEN_TLS_ROOT", "server-tls-root"),
    ("MOQ_CONNECT_BIND", "client-bind"),
    ("MOQ_CONNECT_VERSION", "client-version"),
    ("MOQ_CONNECT_TLS_ROOT", "client-tls-root"),
    ("MOQ_CONNECT_TLS_SYSTEM_ROOTS", "client-tls-system-roots"),
    ("MOQ_CONNECT_TLS_FINGERPRINT", "client-tls-fingerprint"),
    ("MOQ_CONNECT_TLS_CERT", "client-tls-cert"),
    ("MOQ_CONNECT_TLS_KEY", "client-tls-key"),
    ("MOQ_CONNECT_TLS_INSECURE", "client-tls-disable-verify"),
];

/// `--flag=value` for each [`ENV_ALIASES`] variable that `env` holds (non-empty) whose
/// flag was given neither on the command line nor by its canonical env var, which win.
fn env_alias_args(matches: &clap::ArgMatches, env: impl Fn(&str) -> Option<OsString>) -> Vec<OsString> {
    ENV_ALIASES
        .iter()
        .filter(|(_, flag)| {
            !matches!(
                matches.value_source(flag),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .filter_map(|(name, flag)| {
            let value = env(name).filter(|value| !value.is_empty())?;
            let mut arg = OsString::from(format!("--{flag}="));
            arg.push(value);
            Some(arg)
        })
        .collect()
}

/// `command` with the flags the ecosystem has removed (see [`renamed::RENAMED_FLAGS`])
/// accepted but hidden, so that giving one names its replacement.
fn with_renamed_flags(command: clap::Command) -> clap::Command {
    renamed::RENAMED_FLAGS
        .iter()
        .fold(command, |command, (flag, env, _)| {
            command.arg(
                clap::Arg::new(*flag)
                    .long(*flag)
                    .env(*env)
                    .hide(true)
                    .num_args(0..=1)
                    .action(clap::ArgAction::Append),
            )
        })
}

/// The removed flags (or their env vars) that were given, each with its replacement.
fn renamed_flags(matches: &clap::ArgMatches) -> Vec<String> {
    renamed::RENAMED_FLAGS
        .iter()
        .filter(|(flag, ..)| {
            matches!(
                matches.value_source(flag),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|(flag, env, new)| renamed::entry(&format!("--{flag} / {env}"), new, None))
        .collect()
}

/// Whether any flag or env var other than the file, `[log]` and listen addresses was given:
/// those turn off the development defaults, so that a deployment configured only by env
/// vars never ends up with a self-signed certificate and anonymous access.
fn configures_relay(matches: &clap::ArgMatches) -> bool {
    Config::command()
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_string())
        .any(|id| !KEEPS_DEVELOPMENT.contains(&id.as_str()) && flag_given(matches, &id))
}

/// Flags that leave a relay without a config file a development relay: where it listens
/// and how it logs (`moq-relay --server-bind [::]:5000` is the development relay on 5000).
const KEEPS_DEVELOPMENT: [&str; 6] = [
    "file",
    "check",
    "log-level",
    "log-format",
    "server-bind",
    "web-http-listen",
];

/// Whether the flag (or its env var) with this id was given.
fn flag_given(matches: &clap::ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code.

    use super::*;

    fn matches(args: &[&str]) -> clap::ArgMatches {
        Config::command()
            .try_get_matches_from(std::iter::once("moq-relay").chain(args.iter().copied()))
            .unwrap()
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn listen_and_connect_env_vars_stand_for_their_flags() {
        let args = env_alias_args(
            &matches(&[]),
            env(&[
                ("MOQ_LISTEN", "[::]:5000"),
                ("MOQ_LISTEN_TLS_GENERATE", "localhost"),
                ("MOQ_CONNECT_TLS_INSECURE", "true"),
                ("MOQ_CONNECT_TLS_ROOT", ""),
                ("MOQ_LISTENER", "x"),
            ]),
        );
        assert_eq!(
            args,
            [
                "--server-bind=[::]:5000",
                "--server-tls-generate=localhost",
                "--client-tls-disable-verify=true"
            ]
        );
        // Every alias names a flag the relay has.
        let ids: Vec<String> = Config::command()
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
        for (name, flag) in ENV_ALIASES {
            assert!(ids.iter().any(|id| id == flag), "{name}: --{flag}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_alias() {
        let given = matches(&["--listen=[::]:6000", "--server-tls-generate=a"]);
        let args = env_alias_args(
            &given,
            env(&[
                ("MOQ_LISTEN", "[::]:5000"),
                ("MOQ_LISTEN_TLS_GENERATE", "b"),
                ("MOQ_LISTEN_TLS_CERT", "c.pem"),
            ]),
        );
        assert_eq!(args, ["--server-tls-cert=c.pem"]);
    }
}
