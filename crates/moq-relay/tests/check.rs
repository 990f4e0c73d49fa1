//! `moq-relay --check`: runs the built binary on the example configs and on broken ones,
//! and checks exit codes, the summary line, and that env vars and flags override the file.
#![allow(clippy::unwrap_used)] // Test code.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(name)
}

/// A directory holding every file the example configs name by a relative path
/// (certificates, keys, the CA, token keys, the cluster token), as an operator's working
/// directory would: `--check` opens them all.
fn example_files() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let generated = moq_native::tls::generate(&["localhost".to_string()]).expect("a certificate");
        for name in ["leaf0", "leaf1", "root"] {
            std::fs::write(dir.path().join(format!("{name}.crt")), &generated.cert_pem).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), &generated.key_pem).unwrap();
        }
        std::fs::write(dir.path().join("ca.pem"), &generated.cert_pem).unwrap();
        std::fs::write(dir.path().join("fullchain.pem"), &generated.cert_pem).unwrap();
        std::fs::write(dir.path().join("privkey.pem"), &generated.key_pem).unwrap();
        let key = moq_auth::Key::generate(moq_auth::Algorithm::HS256, None).unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        key.write_file(dir.path().join("root.jwk")).unwrap();
        key.write_file(dir.path().join("dev/root.jwk")).unwrap();
        let mut claims = moq_auth::Claims::new("");
        claims.put = vec![String::new()];
        claims.get = vec![String::new()];
        std::fs::write(dir.path().join("dev/root.jwt"), key.sign(&claims).unwrap()).unwrap();
        dir
    })
    .path()
}

/// Run the relay with `args` and exactly the `MOQ_*` env vars in `env` (others removed, so
/// the developer's environment cannot leak in), in the directory of [`example_files`].
fn relay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moq-relay"));
    command.args(args).current_dir(example_files());
    for (key, _) in std::env::vars_os().filter(|(key, _)| key.to_string_lossy().starts_with("MOQ_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().expect("run moq-relay")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn check(name: &str, flags: &[&str], env: &[(&str, &str)]) -> Output {
    let path = fixture(name);
    relay(
        &[&["--check", path.to_str().expect("UTF-8 path")], flags].concat(),
        env,
    )
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("relay")
        .suffix(".toml")
        .tempfile()
        .expect("create a temp file");
    file.write_all(text.as_bytes()).expect("write the temp file");
    file
}

#[test]
fn check_accepts_every_example() {
    for name in [
        "demo/localhost.toml",
        "demo/root.toml",
        "demo/leaf0.toml",
        "demo/leaf1.toml",
        "demo/prod.toml",
        "dev/relay.toml",
        "dev/root.toml",
        "dev/leaf0.toml",
        "compat/advertise.toml",
        "compat/v017.toml",
        "compat/auth-server.toml",
    ] {
        // prod.toml names files under /etc: point it at ours.
        let files = example_files();
        let (cert, key) = (files.join("fullchain.pem"), files.join("privkey.pem"));
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let flags: &[&str] = match name {
            "demo/prod.toml" => &[
                "--server-tls-cert",
                cert,
                "--server-tls-key",
                key,
                "--web-https-cert",
                cert,
                "--web-https-key",
                key,
            ],
            _ => &[],
        };
        let output = check(name, flags, &[]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let out = stdout(&output);
        assert_eq!(out.lines().count(), 1, "{name}: one line: {out}");
        assert!(out.contains(&format!("{name}: ok: quic ")), "{name}: {out}");
    }
}

#[test]
fn check_prints_legacy_warnings_on_stderr() {
    let output = check("compat/advertise.toml", &[], &[]);
    assert_eq!(output.status.code(), Some(0));
    let err = stderr(&output);
    assert!(
        err.contains("warning: config ") && err.contains("'cluster.advertise' was renamed"),
        "{err}"
    );
}

#[test]
fn check_without_file_is_the_development_relay() {
    let output = relay(&["--check"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).trim(),
        "(development defaults): ok: quic [::]:4443 (self-signed for localhost), http+ws [::]:4443, \
         auth public subscribe [\"\"] publish [\"\"], no cluster, cache 25% of memory"
    );
}

#[test]
fn env_only_configuration_is_not_the_development_relay() {
    // A deployment configured by env vars alone must not fall back to anonymous access.
    let output = relay(
        &["--check"],
        &[
            ("MOQ_SERVER_BIND", "[::]:443"),
            ("MOQ_SERVER_TLS_GENERATE", "relay"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("nobody could connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn env_overrides_file() {
    let output = check(
        "demo/localhost.toml",
        &[],
        &[
            ("MOQ_SERVER_BIND", "127.0.0.1:5000"),
            ("MOQ_CACHE_CAPACITY", "1GiB"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("quic 127.0.0.1:5000 "), "{out}");
    assert!(out.contains("cache 1.0 GiB"), "{out}");
    // Untouched keys keep the file's values.
    assert!(out.contains("http+ws [::]:4443"), "{out}");
}

#[test]
fn env_list_and_public_override_file() {
    let output = check(
        "demo/leaf1.toml",
        &[],
        &[
            ("MOQ_CLUSTER_CONNECT", "https://x/,https://y/,https://z/"),
            ("MOQ_AUTH_PUBLIC", ""),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains("cluster 3 peer(s)"), "{out}");
    assert!(
        out.contains("auth public subscribe [\"\"] publish [\"\"]"),
        "{out}"
    );
}

#[test]
fn flag_overrides_env_and_file() {
    let output = check(
        "demo/localhost.toml",
        &["--server-bind", "127.0.0.1:6000"],
        &[("MOQ_SERVER_BIND", "127.0.0.1:5000")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("quic 127.0.0.1:6000 "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_env_value_is_a_usage_error() {
    let output = check("demo/localhost.toml", &[], &[("MOQ_CACHE_DURATION", "30")]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("--cache-duration") && err.contains("'30' has no unit"),
        "{err}"
    );
}

#[test]
fn check_unknown_key_exits_1_with_suggestion() {
    let file = temp_config("[cluster]\nroots = [\"https://root/\"]\n");
    let output = relay(&["--check", file.path().to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr(&output).trim(),
        format!(
            "error: config {}:2: unknown key 'cluster.roots' (did you mean 'cluster.root'?)",
            file.path().display()
        )
    );
}

#[test]
fn listen_and_connect_env_spellings_configure_the_relay() {
    let output = relay(
        &["--check"],
        &[
            ("MOQ_LISTEN", "[::]:5000"),
            ("MOQ_LISTEN_TLS_GENERATE", "localhost"),
            ("MOQ_CONNECT_TLS_INSECURE", "true"),
            ("MOQ_AUTH_PUBLIC", ""),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("quic [::]:5000 (self-signed for localhost)"),
        "{}",
        stdout(&output)
    );
    // Known names: no "not a moq-relay setting" warning (only the safety warning for the
    // insecure link setting).
    let err = stderr(&output);
    assert!(!err.contains("not a moq-relay setting"), "{err}");
    assert!(err.contains("client.tls.disable_verify = true"), "{err}");
    // The canonical variable wins over the alias.
    let output = relay(
        &["--check", "--auth-public="],
        &[
            ("MOQ_LISTEN", "[::]:5000"),
            ("MOQ_SERVER_BIND", "[::]:5001"),
            ("MOQ_LISTEN_TLS_GENERATE", "x"),
        ],
    );
    assert!(stdout(&output).contains("quic [::]:5001"), "{}", stdout(&output));
}

#[test]
fn removed_env_var_exits_1_naming_its_replacement() {
    let output = relay(&["--check", "--auth-public="], &[("MOQ_AUTH_MTLS_TIER", "peer")]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "error: config (flags and environment): these settings were renamed and are no longer applied; \
         update them and try again:\n  --auth-mtls-tier / MOQ_AUTH_MTLS_TIER -> --auth-url to `moq auth serve --tier`"
    );
}

#[test]
fn check_invalid_config_exits_1() {
    let file = temp_config("[server]\nbind = \"[::]:443\"\ntls.cert = \"a.crt\"\n");
    let output = relay(&["--check", file.path().to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("2 problems:"), "{err}");
    assert!(
        err.contains("server.tls.cert is set without server.tls.key"),
        "{err}"
    );
    assert!(err.contains("nobody could connect"), "{err}");
}

#[test]
fn check_bad_values_exit_1() {
    for (text, expected) in [
        ("[cache]\nduration = \"30\"\n", "cache.duration: '30' has no unit"),
        (
            "[cache]\ncapacity = \"8 gigs\"\n",
            "cache.capacity: '8 gigs': unknown unit 'gigs'",
        ),
        ("[server\n", "TOML syntax error"),
    ] {
        let file = temp_config(text);
        let output = relay(&["--check", file.path().to_str().unwrap()], &[]);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(stderr(&output).contains(expected), "{text}: {}", stderr(&output));
    }
}

#[test]
fn check_missing_file_exits_1() {
    let output = relay(&["--check", "/nonexistent/relay.toml"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("config /nonexistent/relay.toml: file not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = relay(&["--no-such-flag"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unexpected argument '--no-such-flag'"),
        "{}",
        stderr(&output)
    );

    let output = relay(&["--check", "a.toml", "b.toml"], &[]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn help_exits_0_and_lists_env_vars() {
    let output = relay(&["--help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let out = stdout(&output);
    assert!(
        out.contains("--cache-capacity <SIZE>") && out.contains("MOQ_CACHE_CAPACITY"),
        "{out}"
    );
}

#[test]
fn without_check_the_relay_starts_and_reports_bad_files() {
    // A certificate file that does not exist is only found at startup (not by --check).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n[auth]\npublic = \"\"\n",
    )
    .unwrap();
    let output = relay(&[config.to_str().unwrap()], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("missing.pem"), "{}", stderr(&output));
}

/// Issue 14 (first contact): moving the development relay to another port takes one flag,
/// and HTTP follows it.
#[test]
fn one_flag_moves_the_development_relay() {
    let output = relay(&["--check", "--server-bind", "[::]:5000"], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        out.starts_with("(development defaults): ok: quic [::]:5000"),
        "{out}"
    );
    assert!(out.contains("http+ws [::]:5000"), "{out}");
    assert!(out.contains("public subscribe [\"\"]"), "{out}");
}

/// Issue 14 (first contact, logs for machines): a busy port is reported as busy (not as
/// "IPv6 unavailable"), once, and as JSON under `--log-format json`.
#[test]
fn a_busy_port_says_so_once_and_in_json_when_asked() {
    let busy = std::net::UdpSocket::bind("[::]:0").expect("bind a UDP port");
    let port = busy.local_addr().unwrap().port();
    let bind = format!("[::]:{port}");
    let output = relay(&["--server-bind", &bind], &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("the port is already in use"), "{err}");
    assert!(!err.contains("IPv6 unavailable"), "{err}");
    assert_eq!(err.matches("os error 98").count(), 1, "the OS error once: {err}");
    let output = relay(&["--server-bind", &bind, "--log-format", "json"], &[]);
    let last = stderr(&output).lines().last().unwrap_or_default().to_string();
    let line: serde_json::Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(line["level"], "ERROR", "{line}");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("already in use"),
        "{line}"
    );
}

/// Issue 14: `--check` opens every file the relay would open and reports every problem
/// at once, so "ok" means the relay would start.
#[test]
fn check_opens_every_file_and_reports_every_problem() {
    let output = check("demo/prod.toml", &[], &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("problems:"), "{err}");
    assert!(
        err.contains("server.tls: cannot read certificate file /etc/moq-relay/fullchain.pem"),
        "{err}"
    );
    assert!(
        err.contains("web.https: cannot read certificate file /etc/moq-relay/fullchain.pem"),
        "{err}"
    );
}

#[test]
fn acme_configured_by_env_alone_checks_its_cache() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let cache = tmp.path().join("acme");
    let cache = cache.to_str().expect("UTF-8 path");
    let env = |cache: &str| {
        vec![
            (
                "MOQ_SERVER_TLS_ACME_DOMAINS",
                "relay.example.com,edge.example.com".to_string(),
            ),
            ("MOQ_SERVER_TLS_ACME_CACHE_DIR", cache.to_string()),
            ("MOQ_SERVER_TLS_ACME_EAB_KID", "kid-1".to_string()),
            (
                "MOQ_SERVER_TLS_ACME_EAB_HMAC_KEY",
                "c2VjcmV0LWhtYWMta2V5".to_string(),
            ),
            ("MOQ_WEB_HTTPS_LISTEN", "[::]:443".to_string()),
            ("MOQ_AUTH_PUBLIC", "anon".to_string()),
        ]
    };
    let run = |env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        relay(&["--check"], &env)
    };
    let output = run(env(cache));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains(
            "quic [::]:443 (ACME for relay.example.com, edge.example.com from letsencrypt by tls-alpn-01)"
        ),
        "{out}"
    );
    // The probe leaves nothing behind, and creates no directory.
    assert!(!Path::new(cache).exists());
    assert!(
        !stderr(&output).contains("c2VjcmV0"),
        "the HMAC key is never printed"
    );

    // A cache the relay cannot write fails the check, saying where and why.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").expect("write a file");
    let output = run(env(file.to_str().expect("UTF-8 path")));
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("server.tls.acme.cache_dir"), "{err}");
    assert!(err.contains("not a directory"), "{err}");
}
