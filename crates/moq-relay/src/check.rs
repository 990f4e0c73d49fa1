//! The `--check` gate: every problem with a merged configuration at once (contradictions,
//! a relay nobody could use), and the one-line summary of what it will serve. Loading
//! ([`crate::config`]) only parses; deciding whether the result is usable happens here.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use clap::CommandFactory;

use crate::config::{
    Acme, Config, ConfigError, DEFAULT_CACHE_SHARE, DEFAULT_IDLE_TIMEOUT, INERT, LEVELS, MAX_ID,
    MAX_JS_SAFE_ID, MAX_STREAMS_LIMIT, MemoryLimit, QuicSettings, closest, inert_warning, peer_url,
};
use crate::redact;

impl Config {
    /// Advice about a configuration that loads and validates but is probably not what was
    /// meant (each says what to change). `--check` and start-up print it with the warnings.
    pub fn advice(&self) -> Vec<String> {
        let mut warnings = Vec::new();
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
                    redact::url(peer),
                    redact::url(&peer_url(peer))
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
        for domain in &self.server.tls.acme.domains {
            if !domain.contains('.') {
                warnings.push(format!(
                    "server.tls.acme.domains: '{domain}' has no dot; public CAs only certify registered domain \
                     names (fine for a private CA or a test one)"
                ));
            }
        }
        let https = &self.web.https;
        if https.listen.is_none() && (!https.cert.is_empty() || !https.key.is_empty()) {
            warnings
                .push("web.https.cert/key are set but web.https.listen is not: HTTPS stays off".to_string());
        }
        warnings.extend(env_warnings(
            std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
        ));
        warnings
    }

    /// Check the merged configuration for contradictions and for a relay nobody could use.
    /// Every problem is reported at once, each saying why and what to set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.tls_problems(&mut problems);
        self.acme_problems(&mut problems);
        self.listen_problems(&mut problems);
        self.auth_problems(&mut problems);
        quic_problems(&self.server_quic(), "server.quic", &mut problems);
        quic_problems(&self.client_quic(), "client.quic", &mut problems);
        self.cluster_problems(&mut problems);
        self.limits_problems(&mut problems);
        self.log_problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                origin: self.origin(),
                problems,
            })
        }
    }

    /// Limits and the cache: a limit of zero that would make the relay unusable (no
    /// frame, no group, no stream could get through) is refused. `fetches_per_session = 0`
    /// is allowed (FETCH off), and so are the older keys, whose zero has its own meaning.
    fn limits_problems(&self, problems: &mut Vec<String>) {
        let limits = &self.limits;
        let counts = [
            ("group_size", limits.group_size),
            ("group_frames", limits.group_frames),
            ("groups_per_session", limits.groups_per_session.map(u64::from)),
            (
                "track_requests_per_session",
                limits.track_requests_per_session.map(u64::from),
            ),
            (
                "announce_requests_per_session",
                limits.announce_requests_per_session.map(u64::from),
            ),
            (
                "pending_streams_per_session",
                limits.pending_streams_per_session.map(u64::from),
            ),
        ];
        for (key, value) in counts {
            if value == Some(0) {
                problems.push(format!(
                    "limits.{key} is 0, which refuses everything: remove it for the default, or set at least 1"
                ));
            }
        }
        if limits.stream_header_timeout == Some(Duration::ZERO) {
            problems.push("limits.stream_header_timeout must be more than 0, e.g. \"10s\"".to_string());
        }
        if self.cache.capacity == Some(MemoryLimit::Bytes(0)) {
            problems.push(
                "cache.capacity is 0: every group would be evicted as it arrives; remove it for the default \
                 (25% of memory) or set a size like \"1GiB\""
                    .to_string(),
            );
        }
    }

    /// Certificates and keys: pairs, and a certificate wherever TLS is served.
    fn tls_problems(&self, problems: &mut Vec<String>) {
        let tls = &self.server.tls;
        pair_problems(problems, "server.tls", &tls.cert, &tls.key);
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
            // Without files of its own, HTTPS serves the QUIC listener's certificate.
            if https.cert.is_empty() && https.key.is_empty() && !tls.has_certificate() {
                problems.push(
                    "web.https.listen is set but there is no certificate: set web.https.cert and web.https.key, \
                     or give the QUIC listener one (server.tls) to share"
                        .to_string(),
                );
            } else {
                pair_problems(problems, "web.https", &https.cert, &https.key);
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
    }

    /// `[server.tls.acme]`: names that a CA can certify, an https directory, a cache the
    /// relay can write (the one check here that touches the filesystem: it creates and
    /// removes a probe file), and a listener for the chosen challenge.
    fn acme_problems(&self, problems: &mut Vec<String>) {
        let tls = &self.server.tls;
        let acme = &tls.acme;
        if !acme.is_set() {
            return;
        }
        if !acme.is_enabled() {
            problems.push(
                "server.tls.acme is configured but has no domains: set server.tls.acme.domains to the names \
                 to certify, e.g. [\"relay.example.com\"], or remove the table"
                    .to_string(),
            );
            return;
        }
        for domain in &acme.domains {
            if let Err(why) = acme_domain(domain) {
                problems.push(format!("server.tls.acme.domains: '{domain}' {why}"));
            }
        }
        acme_account_problems(acme, problems);
        if !tls.cert.is_empty() || !tls.generate.is_empty() {
            problems.push(
                "server.tls.acme and server.tls.cert/generate are both set: the ACME certificate would be \
                 served first anyway; keep one source"
                    .to_string(),
            );
        }
        self.acme_challenge_problems(acme, problems);
    }

    /// `[server.tls.acme]`'s challenge: a listener the CA can reach for it, free to answer.
    fn acme_challenge_problems(&self, acme: &Acme, problems: &mut Vec<String>) {
        let https = &self.web.https;
        match acme.challenge.unwrap_or_default() {
            crate::config::AcmeChallenge::TlsAlpn01 => {
                if https.listen.is_none() {
                    problems.push(
                        "server.tls.acme.challenge is tls-alpn-01, which the CA checks on TCP port 443, but \
                         web.https.listen is not set: set web.https.listen = \"[::]:443\", or use challenge = \
                         \"http-01\" (TCP port 80)"
                            .to_string(),
                    );
                } else if !https.cert.is_empty() {
                    problems.push(
                        "server.tls.acme.challenge is tls-alpn-01 but web.https has certificate files of its \
                         own, so it cannot answer the CA: remove web.https.cert/key (HTTPS then shares the \
                         ACME certificate) or use challenge = \"http-01\""
                            .to_string(),
                    );
                }
                if acme.http_listen.is_some() {
                    problems.push(
                        "server.tls.acme.http_listen is only used with challenge = \"http-01\"".to_string(),
                    );
                }
            }
            crate::config::AcmeChallenge::Http01 => {
                if let (Some(http), Some(web)) = (acme.http_address(), &self.web.http.listen)
                    && http == *web
                {
                    problems.push(format!(
                        "server.tls.acme.http_listen and web.http.listen are both {http}: the http-01 listener \
                         needs its own port (80)"
                    ));
                }
            }
        }
    }

    /// Something to listen on.
    fn listen_problems(&self, problems: &mut Vec<String>) {
        let https = &self.web.https;
        if self.server.quic_bind().is_none() && self.web.http.listen.is_none() && https.listen.is_none() {
            problems.push(
                "nothing to listen on: set server.bind (QUIC and WebTransport, with server.tls), and/or \
                 web.http.listen / web.https.listen (HTTP and WebSocket)"
                    .to_string(),
            );
        }
    }

    /// Somebody can connect, and the auth settings agree.
    fn auth_problems(&self, problems: &mut Vec<String>) {
        let auth = &self.auth;
        if !auth.is_configured() && self.server.tls.root.is_empty() {
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
        if auth.auth_api.is_some() {
            problems.push(
                "auth.auth_api (--auth-api, the 0.14 GET auth webhook) was replaced by auth.url (--auth-url): an \
                 auth server answering one JSON POST per session event, e.g. `moq auth serve`; remove auth_api \
                 and set url"
                    .to_string(),
            );
        }
        if let Some(url) = &auth.url
            && let Err(problem) = crate::auth_service::Endpoint::parse(url)
        {
            problems.push(format!("auth.url {}: {problem}", redact::url(url)));
        }
        if auth.url.is_some() && (auth.key.is_some() || auth.key_dir.is_some()) {
            problems.push(
                "auth.url (an auth service) verifies tokens itself: remove auth.key and auth.key_dir, or the url"
                    .to_string(),
            );
        }
        if auth.url.is_some() && auth.public.as_ref().is_some_and(|p| !p.is_empty()) {
            problems.push(
                "auth.url and auth.public are both set: the auth server decides every session, anonymous ones \
                 included (moq auth serve --public-subscribe/--public-publish); remove auth.public, or the url"
                    .to_string(),
            );
        }
        if auth.timeout == Some(Duration::ZERO) {
            problems.push("auth.timeout must be more than 0, e.g. \"10s\"".to_string());
        }
        if auth.concurrency == Some(0) {
            problems.push(
                "auth.concurrency is 0, which refuses every session: remove it for the default (64)"
                    .to_string(),
            );
        }
    }

    /// A usable hop id, no token in the gossiped node URL, a valid allow-list.
    fn cluster_problems(&self, problems: &mut Vec<String>) {
        if let Err(problem) = crate::cluster::AllowList::from_config(&self.cluster) {
            problems.push(problem);
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
        if cluster.node.as_ref().is_some_and(|node| node.contains("jwt=")) {
            problems.push(
                "cluster.node contains a token (jwt=): the node URL is gossiped and logged; put the token in \
                 cluster.token or in the peer URLs of cluster.connect"
                    .to_string(),
            );
        }
    }

    /// A log level that is a level (or a filter).
    fn log_problems(&self, problems: &mut Vec<String>) {
        if let Some(level) = &self.log.level
            && !level.contains(['=', ','])
            && !LEVELS.contains(&level.trim().to_lowercase().as_str())
        {
            problems.push(format!(
                "log.level '{level}' is not a level: use off, error, warn, info, debug or trace (or a filter \
                 such as \"info,moq_relay=debug\")"
            ));
        }
    }

    /// One line saying what this configuration will do, for `--check`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match self.server.quic_bind() {
            Some(bind) => {
                let tls = &self.server.tls;
                let certificate = if tls.acme.is_enabled() {
                    let acme = &tls.acme;
                    format!(
                        "ACME for {} from {} by {}",
                        acme.domains.join(", "),
                        acme.directory.as_deref().unwrap_or("letsencrypt"),
                        acme.challenge.unwrap_or_default()
                    )
                } else if !tls.generate.is_empty() {
                    format!("self-signed for {}", tls.generate.join(", "))
                } else {
                    format!("{} certificate(s)", tls.cert.len())
                };
                let mtls = if tls.root.is_empty() { "" } else { ", mTLS" };
                parts.push(format!("quic {bind} ({certificate}{mtls})"));
            }
            None => parts.push("quic off".to_string()),
        }
        let ws = if self.web.ws == Some(false) { "" } else { "+ws" };
        if let Some(listen) = &self.web.http.listen {
            parts.push(format!("http{ws} {listen}"));
        }
        if let Some(listen) = &self.web.https.listen {
            parts.push(format!("https{ws} {listen}"));
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
            access.push(format!("service {}", redact::url(url)));
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
            if let Some(node) = &cluster.node {
                links.push_str(&format!(" as {node}"));
            }
            parts.push(links);
        } else {
            parts.push("no cluster".to_string());
        }
        let cache = match &self.cache.capacity {
            Some(capacity) => format!("cache {capacity}"),
            None => format!("cache {}% of memory", DEFAULT_CACHE_SHARE * 100.0),
        };
        match &self.cache.headroom {
            Some(headroom) => parts.push(format!("{cache} less {headroom} headroom")),
            None => parts.push(cache),
        }
        format!("{}: ok: {}", self.origin(), parts.join(", "))
    }
}

/// `[server.tls.acme]`'s account: an https directory, email contacts, a cache the relay can
/// write (it creates and removes a probe file), a complete external account binding and a
/// sane retry.
fn acme_account_problems(acme: &Acme, problems: &mut Vec<String>) {
    let directory = acme.directory_url();
    match url::Url::parse(&directory) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => {}
        Ok(url) if url.scheme() == "http" => problems.push(format!(
            "server.tls.acme.directory '{directory}' is http: ACME directories are served over https"
        )),
        _ => problems.push(format!(
            "server.tls.acme.directory '{directory}' is not a directory URL: write \"letsencrypt\", \
             \"letsencrypt-staging\" or the CA's https:// directory URL"
        )),
    }
    for contact in acme.contact_uris() {
        let valid = contact.strip_prefix("mailto:").is_some_and(|address| {
            address
                .split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        });
        if !valid {
            problems.push(format!(
                "server.tls.acme.contact '{contact}' is not an email address: write e.g. \"ops@example.com\""
            ));
        }
    }
    let cache = acme.cache_dir();
    if let Err(why) = moq_native::acme::probe_cache(&cache) {
        problems.push(format!(
            "server.tls.acme.cache_dir {}: {why}; the relay keeps its ACME account key and certificate \
             there (set cache_dir to a directory it may write)",
            cache.display()
        ));
    }
    match (&acme.eab_kid, &acme.eab_hmac_key) {
        (Some(_), None) => problems.push(
            "server.tls.acme.eab_kid is set without eab_hmac_key: set both (the CA gives them together)"
                .to_string(),
        ),
        (None, Some(_)) => problems.push(
            "server.tls.acme.eab_hmac_key is set without eab_kid: set both (the CA gives them together)"
                .to_string(),
        ),
        (Some(kid), Some(key)) => {
            let external = moq_native::acme::ExternalAccount {
                kid: kid.clone(),
                hmac_key: key.0.clone(),
            };
            if let Err(err) = external.key() {
                problems.push(format!("server.tls.acme.eab_hmac_key: {err}"));
            }
        }
        (None, None) => {}
    }
    if acme.retry.is_some_and(|retry| retry < Duration::from_secs(1)) {
        problems.push("server.tls.acme.retry must be at least 1s, e.g. \"2m\"".to_string());
    }
}

/// Why `domain` cannot be certified by ACME over TLS-ALPN-01 or HTTP-01, if it cannot.
fn acme_domain(domain: &str) -> Result<(), &'static str> {
    let domain = domain.trim();
    if domain.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address: ACME certifies DNS names here");
    }
    if domain.contains('*') {
        return Err("is a wildcard: wildcards need the DNS-01 challenge, which this relay does not do");
    }
    if domain.ends_with('.') {
        return Err("ends with a dot: write the name without it");
    }
    if domain.len() > 253 {
        return Err("is longer than 253 characters");
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if !labels_ok {
        return Err(
            "is not a DNS name: letters, digits and hyphens in dot-separated labels (IDNs in their xn-- form)",
        );
    }
    Ok(())
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

/// Problems with the settings of a QUIC table (`table` names it).
fn quic_problems(settings: &QuicSettings, table: &str, problems: &mut Vec<String>) {
    if let Some(n) = settings.max_streams
        && !(1..=MAX_STREAMS_LIMIT).contains(&n)
    {
        problems.push(format!(
            "{table}.max_streams must be between 1 and {MAX_STREAMS_LIMIT}, not {n}"
        ));
    }
    if settings.idle_timeout == Some(Duration::ZERO) {
        problems.push(format!("{table}.idle_timeout must be more than 0, e.g. \"30s\""));
    }
    let idle = settings.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
    if let Some(keep_alive) = settings.keep_alive
        && keep_alive >= idle
    {
        problems.push(format!(
            "{table}.keep_alive ({keep_alive:?}) must be shorter than the idle timeout ({idle:?}), or \
             nothing is kept alive"
        ));
    }
}

/// The config sections, as they start env var names.
const SECTIONS: &[&str] = &[
    "log", "server", "listen", "client", "connect", "quic", "web", "internal", "auth", "cluster", "cache",
    "limits",
];

/// Environment variables read by this relay that are not settings of a key.
const OTHER_ENV: &[&str] = &["MOQ_CLUSTER_JWT"];

/// Warnings for the `MOQ_*` variables among `vars` that name an inert key or nothing.
fn env_warnings(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    let known: BTreeSet<String> = Config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .chain(crate::config::ENV_ALIASES.iter().map(|(env, _)| env.to_string()))
        .collect();
    let vars: Vec<String> = vars.into_iter().collect();
    check_env(vars.iter().map(String::as_str), &known)
}

/// Warnings for `MOQ_*` variables in `vars` that name an inert key or nothing at all.
/// `known` holds the env var of every flag.
fn check_env<'a>(vars: impl IntoIterator<Item = &'a str>, known: &BTreeSet<String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for name in vars {
        let Some(rest) = name.strip_prefix("MOQ_") else {
            continue;
        };
        if known.contains(name) || OTHER_ENV.contains(&name) {
            continue;
        }
        let lower = rest.to_lowercase();
        if let Some((key, why)) = INERT
            .iter()
            .find(|(key, _)| lower.starts_with(&key.replace('.', "_")))
        {
            warnings.push(inert_warning(&format!("environment {name}"), key, why));
            continue;
        }
        // Scripts use MOQ_* names of their own (MOQ_UPSTREAM, ...): only a name under one
        // of our sections, or one close to a setting, is a likely typo.
        let lowered: Vec<String> = known.iter().map(|k| k.to_lowercase()).collect();
        let near = closest(name, lowered.iter().map(String::as_str));
        let section = SECTIONS.iter().any(|s| lower.starts_with(&format!("{s}_")));
        if near.is_none() && !section {
            continue;
        }
        let hint = near
            .map(|near| format!(" (did you mean {}?)", near.to_uppercase()))
            .unwrap_or_default();
        warnings.push(format!(
            "environment {name}: not a moq-relay setting{hint}; it is ignored"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_are_checked() {
        let known: BTreeSet<String> = ["MOQ_SERVER_BIND".to_string(), "MOQ_AUTH_KEY".to_string()].into();
        let warnings = check_env(
            [
                "MOQ_SERVER_BIND",
                "MOQ_STATS_ENABLED",
                "MOQ_SERVER_BNID",
                "MOQ_CLUSTER_JWT",
                "HOME",
                "MOQ_UPSTREAM",
                "MOQ_AUTH_PUBLC",
            ],
            &known,
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("'stats' has no effect"));
        assert!(
            warnings[1].contains("MOQ_SERVER_BNID: not a moq-relay setting (did you mean MOQ_SERVER_BIND?)")
        );
        // A name under a section is reported even without a near match; MOQ_UPSTREAM is not.
        assert!(
            warnings[2].contains("MOQ_AUTH_PUBLC: not a moq-relay setting"),
            "{warnings:?}"
        );
    }
}
