//! What `--check` looks at beyond the configuration's own consistency: every file the
//! relay would open at start (certificates, keys, CA roots, token keys, the cluster token),
//! and settings that are fine for development but unsafe on a production host. Problems
//! are reported all at once; warnings are advice.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::config::{Address, Config};

/// How soon before expiry the cluster token is warned about.
const TOKEN_WARNING: Duration = Duration::from_secs(7 * 86_400);

impl Config {
    /// Every file the relay would open at start that cannot be read or used, each with
    /// the setting that names it.
    pub fn file_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Files whose pairing is already wrong are reported by `validate`.
        let tls = &self.server.tls;
        if !tls.cert.is_empty() && tls.cert.len() == tls.key.len() {
            let files = moq_native::server::TlsConfig {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                generate: Vec::new(),
                root: tls.root.clone(),
                acme: None,
            };
            if let Err(err) = moq_native::tls::TcpTls::load(&files) {
                problems.push(format!("server.tls: {err}"));
            }
        }
        let https = &self.web.https;
        if !https.cert.is_empty() && https.cert.len() == https.key.len() {
            let files = moq_native::server::TlsConfig {
                cert: https.cert.clone(),
                key: https.key.clone(),
                generate: Vec::new(),
                root: https.root.clone(),
                acme: None,
            };
            if let Err(err) = moq_native::tls::TcpTls::load(&files) {
                problems.push(format!("web.https: {err}"));
            }
        }
        let client = &self.client.tls;
        for root in &client.root {
            pem_problem(&mut problems, "client.tls.root", root, "CERTIFICATE");
        }
        if let Some(cert) = &client.cert {
            pem_problem(&mut problems, "client.tls.cert", cert, "CERTIFICATE");
        }
        if let Some(key) = &client.key {
            pem_problem(&mut problems, "client.tls.key", key, "PRIVATE KEY");
        }
        if let Err(err) = crate::gate::Gate::from_config(&self.auth) {
            problems.push(format!("{err:#}"));
        }
        if let Some(token) = &self.cluster.token
            && let Err(err) = std::fs::read_to_string(token)
        {
            problems.push(format!("cluster.token {}: cannot read: {err}", token.display()));
        }
        problems
    }

    /// Settings that work but are unsafe where the relay looks like a production one
    /// (certificate files rather than a generated certificate), and a cluster token that
    /// has expired or soon will.
    pub fn safety_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let production = !self.server.tls.cert.is_empty();
        if let Some(listen) = &self.internal.listen
            && !private(listen)
        {
            warnings.push(format!(
                "internal.listen is {listen}: /metrics, /nodes and /sessions have no authentication; bind \
                 it to a private or loopback address"
            ));
        }
        if production {
            if self
                .auth
                .public
                .as_ref()
                .is_some_and(|p| p.publish.iter().any(String::is_empty))
            {
                warnings.push(
                    "auth.public lets anyone publish anywhere (\"\"), with production certificates: limit it \
                     to a prefix such as \"anon\", or require tokens"
                        .to_string(),
                );
            }
            if let Some(listen) = &self.web.http.listen
                && !private(listen)
            {
                warnings.push(format!(
                    "web.http.listen is {listen}: plain HTTP on a public address carries ?jwt= tokens in \
                     clear; serve [web.https] instead"
                ));
            }
        }
        if self.client.tls.disable_verify == Some(true) {
            warnings.push(
                "client.tls.disable_verify = true: cluster links accept any certificate (development \
                 only); trust the cluster's CA with client.tls.root"
                    .to_string(),
            );
        }
        if let Some(generated) = self
            .server
            .tls
            .generate
            .iter()
            .find(|n| !n.eq_ignore_ascii_case("localhost"))
        {
            warnings.push(format!(
                "server.tls.generate makes a self-signed certificate for '{generated}': browsers and \
                 clients will not trust it; use certificate files in production"
            ));
        }
        if let Some(file) = &self.cluster.token
            && let Ok(token) = std::fs::read_to_string(file)
        {
            warnings.extend(token_warning(file, token.trim(), SystemTime::now()));
        }
        warnings
    }
}

/// A listen address reachable only from a private network (or this host).
fn private(address: &Address) -> bool {
    match address.socket_addr().map(|a: SocketAddr| a.ip().to_canonical()) {
        Some(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Some(IpAddr::V6(ip)) => ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local(),
        // A host name: whoever named it knows; no advice.
        None => !address.host.is_empty(),
    }
}

/// Check that `file` is readable PEM holding a `label` block (`CERTIFICATE`, `PRIVATE KEY`).
fn pem_problem(problems: &mut Vec<String>, key: &str, file: &Path, label: &str) {
    match std::fs::read_to_string(file) {
        Err(err) => problems.push(format!("{key} {}: cannot read: {err}", file.display())),
        Ok(text) if !text.contains(&format!("{label}-----")) => {
            problems.push(format!("{key} {}: no PEM {label} in it", file.display()))
        }
        Ok(_) => {}
    }
}

/// A warning when the cluster token in `file` has expired, or expires within a week.
fn token_warning(file: &Path, token: &str, now: SystemTime) -> Option<String> {
    let exp = moq_auth::unverified_expiry(token)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    let file = file.display();
    if exp <= now {
        return Some(format!(
            "cluster.token {file} expired {} ago: every link will be refused; mint a new one",
            moq_units::format_duration(Duration::from_secs(now - exp))
        ));
    }
    let left = Duration::from_secs(exp - now);
    (left < TOKEN_WARNING).then(|| {
        format!(
            "cluster.token {file} expires in {}: replace it before then (links are refused after)",
            moq_units::format_duration(left)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, Path::new("relay.toml")).unwrap()
    }

    #[test]
    fn missing_and_broken_files_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem").unwrap();
        let text = format!(
            "[server.tls]\ncert = \"{g}\"\nkey = \"{g}\"\n[client.tls]\nroot = [\"{g}\", \"/nonexistent.pem\"]\n\
             [auth]\nkey = \"/nonexistent.jwk\"\n[cluster]\ntoken = \"/nonexistent.jwt\"\n",
            g = garbage.display()
        );
        let problems = config(&text).file_problems();
        assert!(
            problems.iter().any(|p| p.starts_with("server.tls:")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("no PEM CERTIFICATE")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/nonexistent.pem: cannot read")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("[auth] key /nonexistent.jwk")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("cluster.token /nonexistent.jwt")),
            "{problems:?}"
        );
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn unsafe_settings_on_a_production_host_are_warned() {
        let text = "[server.tls]\ncert = \"a\"\nkey = \"a\"\n[internal]\nlisten = \"0.0.0.0:9090\"\n\
                    [web.http]\nlisten = \"[::]:80\"\n[auth]\npublic = \"\"\n[client.tls]\ndisable_verify = true\n";
        let warnings = config(text).safety_warnings();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        // The same on a development relay (generated certificate, loopback) says nothing.
        let quiet = "[server.tls]\ngenerate = [\"localhost\"]\n[internal]\nlisten = \"127.0.0.1:9090\"\n\
                     [web.http]\nlisten = \"[::]:4443\"\n[auth]\npublic = \"\"\n";
        assert_eq!(config(quiet).safety_warnings(), Vec::<String>::new());
    }

    #[test]
    fn cluster_token_expiry_is_read_and_warned() {
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        let mut claims = moq_auth::Claims::new("");
        claims.put = vec![String::new()];
        claims.exp = Some(1_000_000);
        let token = key.sign(&claims).unwrap();
        assert_eq!(moq_auth::unverified_expiry(&token), Some(1_000_000));
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let file = Path::new("cluster.jwt");
        assert!(
            token_warning(file, &token, at(2_000_000))
                .unwrap()
                .contains("expired")
        );
        assert!(
            token_warning(file, &token, at(1_000_000 - 3600))
                .unwrap()
                .contains("expires in 1h")
        );
        assert_eq!(token_warning(file, &token, at(1)), None);
        assert_eq!(moq_auth::unverified_expiry("not a token"), None);
    }
}
