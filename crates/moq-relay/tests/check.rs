//! `moq-relay --check`: runs the built binary on the example configs and on broken ones,
//! and checks exit codes, the summary line, and that env vars and flags override the file.

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

/// Run the relay with `args` and exactly the `MOQ_*` env vars in `env` (others removed, so
/// the developer's environment cannot leak in).
fn relay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moq-relay"));
    command.args(args);
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
    ] {
        let output = check(name, &[], &[]);
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
    // Known names: no "not a moq-relay setting" warning.
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
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
