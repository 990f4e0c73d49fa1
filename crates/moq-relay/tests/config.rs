#![allow(clippy::unwrap_used)] // Test code.

//! Loading, merging, error messages and validation. Fixtures live in `tests/config/`.
//!
//! These call [`Config::load`] in-process, so they read the process environment: run them
//! without `MOQ_*` variables set (the env-var tests run the binary instead, in `tests/check.rs`).

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::CommandFactory;

use moq_relay::config::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(name)
}

/// `Config::load` with the program name prepended.
fn load(args: &[&str]) -> Result<Config, ConfigError> {
    Config::load(std::iter::once("moq-relay").chain(args.iter().copied()))
}

fn load_fixture(name: &str, flags: &[&str]) -> Config {
    let path = fixture(name);
    let path = path.to_str().unwrap();
    let config = load(&[&[path], flags].concat()).unwrap();
    config.validate().unwrap_or_else(|err| panic!("{name}: {err}"));
    config
}

/// A temporary file holding `text`; keep the handle alive while it is used.
fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load_text(text: &str, flags: &[&str]) -> Result<Config, ConfigError> {
    let file = file(text);
    let path = file.path().to_str().unwrap().to_string();
    let mut config = load(&[&[path.as_str()], flags].concat())?;
    config.file = None; // temp names differ between calls
    Ok(config)
}

/// Parse as if read from `relay.toml`, returning the error's message.
fn error(text: &str) -> String {
    match Config::from_toml(text, Path::new("relay.toml")) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

fn addr(s: &str) -> Option<Address> {
    Some(s.parse().unwrap())
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---- the reference's example files -------------------------------------------------------

#[test]
fn example_localhost() {
    let config = load_fixture("demo/localhost.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4443"));
    assert_eq!(config.server.tls.generate, ["localhost"]);
    assert_eq!(config.web.http.listen, addr("[::]:4443"));
    assert_eq!(config.auth.public, Some(Public::everything()));
    assert!(!config.development);
    // [stats] and [iroh] load, each with one warning that it does nothing here.
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(
        config.warnings[0].contains("'iroh' has no effect"),
        "{:?}",
        config.warnings
    );
    assert!(
        config.warnings[1].contains("'stats' has no effect"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn example_root() {
    let config = load_fixture("demo/root.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4443"));
    assert_eq!(config.server.tls.cert, paths(&["root.crt"]));
    assert_eq!(config.server.tls.key, paths(&["root.key"]));
    assert_eq!(config.server.tls.root, paths(&["ca.pem"]));
    assert_eq!(config.web.http.listen, addr("[::]:4443"));
    assert_eq!(config.auth.public, Some(Public::everything()));
    assert!(!config.cluster.is_enabled());
}

#[test]
fn example_leaf0() {
    let config = load_fixture("demo/leaf0.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4444"));
    assert_eq!(config.server.tls.root, paths(&["ca.pem"]));
    assert_eq!(config.client.tls.cert, Some(PathBuf::from("leaf0.crt")));
    assert_eq!(config.client.tls.key, Some(PathBuf::from("leaf0.key")));
    assert_eq!(config.client.tls.root, paths(&["ca.pem"]));
    assert_eq!(config.cluster.connect, ["https://localhost:4443/"]);
    assert_eq!(config.cluster.peers(), ["https://localhost:4443/"]);
    // No [auth] at all: peers get in by client certificate (server.tls.root).
    assert_eq!(config.auth, Auth::default());
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with("line 16: 'stats' has no effect"));
}

#[test]
fn example_leaf1() {
    let config = load_fixture("demo/leaf1.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4445"));
    assert_eq!(
        config.cluster.peers(),
        ["https://localhost:4443/", "https://localhost:4444/"]
    );
}

#[test]
fn example_prod() {
    let config = load_fixture("demo/prod.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:443"));
    assert_eq!(config.server.tls.cert, paths(&["/etc/moq-relay/fullchain.pem"]));
    assert_eq!(config.server.tls.key, paths(&["/etc/moq-relay/privkey.pem"]));
    assert_eq!(config.web.https.listen, addr("[::]:443"));
    assert_eq!(config.web.https.cert, config.server.tls.cert);
    assert_eq!(config.web.https.key, config.server.tls.key);
    assert_eq!(config.web.http.listen, None);
    assert_eq!(config.auth.key, Some(PathBuf::from("root.jwk")));
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: strings(&["anon", "demo"]),
            publish: strings(&["anon", "demo/viewer"])
        })
    );
}

#[test]
fn example_dev_relay() {
    let config = load_fixture("dev/relay.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4443"));
    assert_eq!(config.server.tls.generate, ["localhost"]);
    assert_eq!(config.web.http.listen, addr("[::]:4443"));
    assert_eq!(config.auth.public, Some(Public::everything()));
}

#[test]
fn example_dev_root() {
    let config = load_fixture("dev/root.toml", &[]);
    assert_eq!(config.auth.key, Some(PathBuf::from("dev/root.jwk")));
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: strings(&["anon"]),
            publish: strings(&["anon"])
        })
    );
}

#[test]
fn example_dev_leaf0() {
    let config = load_fixture("dev/leaf0.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4444"));
    assert_eq!(config.cluster.connect, ["localhost:4443"]);
    assert_eq!(config.cluster.peers(), ["https://localhost:4443/"]);
    assert_eq!(config.cluster.token, Some(PathBuf::from("dev/root.jwt")));
    assert_eq!(config.cluster.node.as_deref(), Some("localhost:4444"));
    assert_eq!(config.client.tls.disable_verify, Some(true));
    assert_eq!(config.auth.key, Some(PathBuf::from("dev/root.jwk")));
    // The bare host:port peer loads, with a hint to write the URL.
    let advice = config.advice();
    assert_eq!(advice.len(), 1, "{advice:?}");
    assert!(advice[0].contains("https://localhost:4443/"), "{advice:?}");
}

#[test]
fn compat_advertise_and_prefix_migrate_with_hints() {
    let config = load_fixture("compat/advertise.toml", &[]);
    assert_eq!(config.cluster.node.as_deref(), Some("localhost:4444"));
    let warnings = config.warnings.join("\n");
    assert!(
        warnings.contains("'cluster.advertise' was renamed: write node = \"localhost:4444\""),
        "{warnings}"
    );
    assert!(
        warnings.contains("'cluster.prefix'") && warnings.contains("delete the key"),
        "{warnings}"
    );
}

#[test]
fn compat_v017_spellings() {
    let config = load_fixture("compat/v017.toml", &[]);
    assert_eq!(config.server.bind, addr("[::]:4443"));
    assert_eq!(config.client.tls.disable_verify, Some(true));
    assert_eq!(config.web.http.listen, addr("[::]:4443"));
    assert_eq!(config.quic.idle_timeout, Some(Duration::from_secs(10)));
    assert_eq!(config.quic.congestion_control, Some(CongestionControl::Delay));
    assert_eq!(config.drain_timeout, Some(Duration::from_secs(20)));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("'cluster.mesh' has no effect"))
    );
    assert_eq!(config.auth.public.unwrap().subscribe, ["anon/**"]);
}

// ---- development default -----------------------------------------------------------------

#[test]
fn no_arguments_is_the_development_relay() {
    let config = load(&[]).unwrap();
    assert_eq!(config, Config::development());
    assert!(config.development);
    config.validate().unwrap();
    assert_eq!(config.server.bind, addr("[::]:4443"));
    assert_eq!(config.server.tls.generate, ["localhost"]);
    assert_eq!(config.web.http.listen, addr("[::]:4443"));
    assert_eq!(config.auth.public, Some(Public::everything()));
    assert_eq!(config.drain_timeout, Some(DEFAULT_DRAIN_TIMEOUT));
}

#[test]
fn development_matches_the_localhost_example() {
    let mut example = load_fixture("demo/localhost.toml", &[]);
    example.warnings.clear();
    example.file = None;
    example.development = true;
    assert_eq!(example, Config::development());
}

#[test]
fn log_flags_keep_the_development_relay() {
    let config = load(&["--log-level", "debug", "--log-format", "json"]).unwrap();
    assert!(config.development);
    assert_eq!(config.log.level.as_deref(), Some("debug"));
    assert_eq!(config.log.format, Some(LogFormat::Json));
    assert_eq!(config.server.tls.generate, ["localhost"]);
}

#[test]
fn other_flags_turn_the_development_defaults_off() {
    let config = load(&[
        "--server-bind",
        "127.0.0.1:5000",
        "--server-tls-generate",
        "localhost",
    ])
    .unwrap();
    assert!(!config.development);
    assert_eq!(config.auth.public, None);
    assert_eq!(config.web.http.listen, None);
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.starts_with("config (flags and environment): nobody could connect"),
        "{err}"
    );

    let config = load(&[
        "--server-bind=127.0.0.1:5000",
        "--tls-generate=localhost",
        "--auth-public=",
    ])
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.auth.public, Some(Public::everything()));
}

// ---- spellings ---------------------------------------------------------------------------

#[test]
fn listen_and_server_spellings_give_the_same_config() {
    let old = r#"
        [server]
        listen = "[::]:4443"
        tls.generate = ["localhost"]
        [client]
        bind = "[::]:0"
        tls.disable_verify = true
        [web.http]
        listen = "[::]:4443"
        [web.https]
        listen = "[::]:443"
        cert = "a.crt"
        key = "a.key"
        [internal]
        listen = "127.0.0.1:9090"
        [auth]
        url = "http://auth/"
    "#;
    let new = r#"
        [listen]
        bind = "[::]:4443"
        tls.generate = ["localhost"]
        [connect]
        listen = "[::]:0"
        tls.insecure = true
        [web.http]
        bind = "[::]:4443"
        [web.https]
        bind = "[::]:443"
        cert = ["a.crt"]
        key = ["a.key"]
        [internal]
        bind = "127.0.0.1:9090"
        [auth]
        url = "http://auth/"
    "#;
    let old = load_text(old, &[]).unwrap();
    let new = load_text(new, &[]).unwrap();
    assert_eq!(old, new);
    assert_eq!(new.server.bind, addr("[::]:4443"));
    assert_eq!(new.client.tls.disable_verify, Some(true));
    assert_eq!(new.internal.listen, addr("127.0.0.1:9090"));
    assert_eq!(new.auth.url.as_deref(), Some("http://auth/"));
}

#[test]
fn both_spellings_at_once_is_an_error() {
    let err = error("[server]\nbind = \"[::]:1\"\n[listen]\nbind = \"[::]:2\"\n");
    assert!(err.contains("config relay.toml"), "{err}");
    assert!(
        err.contains("'server' and 'listen' are two spellings of the same key; keep one"),
        "{err}"
    );

    let err = error("[server]\nbind = \"[::]:1\"\nlisten = \"[::]:2\"\n");
    assert!(
        err.contains("server.bind: set twice: 'bind' and 'listen'"),
        "{err}"
    );
}

#[test]
fn listen_and_connect_flags_are_the_server_and_client_flags() {
    let fp = "ab".repeat(32);
    let new = load(&[
        "--listen=[::]:4443",
        "--listen-tls-generate=localhost",
        "--listen-tls-root=ca.pem",
        "--listen-version=moq-lite-04",
        "--connect-bind=[::]:0",
        "--connect-version=moq-lite-03",
        "--connect-tls-root=peers.pem",
        "--connect-tls-system-roots=false",
        &format!("--connect-tls-fingerprint={fp}"),
        "--connect-tls-cert=me.pem",
        "--connect-tls-key=me.key",
        "--connect-tls-insecure",
        "--auth-public=",
    ])
    .unwrap();
    let old = load(&[
        "--server-bind=[::]:4443",
        "--server-tls-generate=localhost",
        "--server-tls-root=ca.pem",
        "--server-version=moq-lite-04",
        "--client-bind=[::]:0",
        "--client-version=moq-lite-03",
        "--client-tls-root=peers.pem",
        "--client-tls-system-roots=false",
        &format!("--client-tls-fingerprint={fp}"),
        "--client-tls-cert=me.pem",
        "--client-tls-key=me.key",
        "--client-tls-disable-verify",
        "--auth-public=",
    ])
    .unwrap();
    assert_eq!(new, old);
    assert_eq!(new.server.bind, addr("[::]:4443"));
    assert_eq!(new.server.tls.root, [PathBuf::from("ca.pem")]);
    assert_eq!(new.client.bind, addr("[::]:0"));
    assert_eq!(new.client.tls.system_roots, Some(false));
    assert_eq!(new.client.tls.key, Some(PathBuf::from("me.key")));
    assert_eq!(new.client.tls.disable_verify, Some(true));
}

#[test]
fn removed_keys_stop_with_the_ecosystems_renamed_message() {
    let err = error(
        "[auth]\npublic = \"\"\ndomains = [\"cdn.example.com\"]\nmtls_tier = \"peer\"\n\
         [auth.tls]\nroot = [\"ca.pem\"]\n[connect]\nreconnect = false\nconnect = \"https://x/\"\n",
    );
    assert_eq!(
        err,
        "config relay.toml: these settings were renamed and are no longer applied; update them and try again:\n  \
         line 3: [auth] domains -> an auth server that reads `server_name`\n  \
         line 4: [auth] mtls_tier -> [auth] url to `moq auth serve --tier`\n  \
         line 5: [auth.tls] -> [connect.tls], which an https:// [auth] url presents (this relay speaks only \
         http:// on loopback to its auth server for now)\n  \
         line 8: [connect] reconnect -> once (inverted: reconnect = false is once = true)\n  \
         line 9: [connect] connect -> url"
    );
    // The older [client] spelling of the table is the same table.
    let err = error("[client]\nfailover_delay = \"250ms\"\n");
    assert!(
        err.ends_with("\n  line 2: [connect] failover_delay -> race"),
        "{err}"
    );
    // Their replacements, which this relay does not act on, load with a warning.
    let config = Config::from_toml(
        "[connect]\nurl = \"https://x/\"\nrace = \"1s\"\nonce = true\n",
        Path::new("relay.toml"),
    )
    .unwrap();
    assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
}

#[test]
fn removed_flags_stop_with_the_ecosystems_renamed_message() {
    let err = load(&[
        "--auth-public=",
        "--auth-domain",
        "cdn.example.com",
        "--client-failover-delay=1s",
        "--auth-tls-root=ca.pem",
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "config (flags and environment): these settings were renamed and are no longer applied; update them \
         and try again:\n  \
         --auth-domain / MOQ_AUTH_DOMAIN -> an auth server that reads `server_name`\n  \
         --auth-tls-root / MOQ_AUTH_TLS_ROOT -> --connect-tls-*, which an https:// --auth-url presents\n  \
         --client-failover-delay / MOQ_CLIENT_FAILOVER_DELAY -> --connect-race / MOQ_CONNECT_RACE"
    );
    // Hidden: they are not offered in --help.
    let help = Config::command().render_long_help().to_string();
    assert!(!help.contains("auth-domain"), "{help}");
}

#[test]
fn inert_keys_are_found_under_listen_and_connect() {
    let config = load_text(
        "[listen]\nbind = \"[::]:4443\"\ntls.generate = [\"localhost\"]\nbackend = \"quinn\"\n\
         [listen.quic]\nqlog = \"/tmp/q\"\n[connect]\nbackoff = \"1s\"\n[auth]\npublic = \"\"\n",
        &[],
    )
    .unwrap();
    config.validate().unwrap();
    let warnings = config.warnings.join("\n");
    for key in ["'listen.backend'", "'listen.quic.qlog'", "'connect.backoff'"] {
        assert!(warnings.contains(key), "{key}: {warnings}");
    }
    assert_eq!(config.warnings.len(), 3, "{warnings}");
}

// ---- flags and env over the file ---------------------------------------------------------

const FILE: &str = r#"
    [server]
    bind = "[::]:4443"
    tls.generate = ["localhost"]
    [auth]
    public = "anon"
    [cache]
    capacity = "8GiB"
    duration = "30s"
    [cluster]
    connect = ["https://a/"]
    node = "https://me/"
    [client.tls]
    system_roots = true
"#;

#[test]
fn flag_overrides_file() {
    let config = load_text(
        FILE,
        &[
            "--server-bind",
            "127.0.0.1:5000",
            "--cache-capacity",
            "1GiB",
            "--cache-duration=1m",
            "--cluster-connect",
            "https://b/,https://c/",
            "--client-tls-system-roots=false",
        ],
    )
    .unwrap();
    assert_eq!(config.server.bind, addr("127.0.0.1:5000"));
    assert_eq!(config.cache.capacity, Some(MemoryLimit::Bytes(1 << 30)));
    assert_eq!(config.cache.duration, Some(Duration::from_secs(60)));
    assert_eq!(config.cluster.connect, ["https://b/", "https://c/"]);
    assert_eq!(config.client.tls.system_roots, Some(false));
}

#[test]
fn absent_flag_keeps_file_value() {
    let plain = load_text(FILE, &[]).unwrap();
    assert_eq!(plain.server.bind, addr("[::]:4443"));
    assert_eq!(plain.cache.capacity, Some(MemoryLimit::Bytes(8 << 30)));
    assert_eq!(plain.client.tls.system_roots, Some(true));

    // An unrelated flag changes that one value and nothing else.
    let mut flagged = load_text(FILE, &["--log-level", "debug"]).unwrap();
    assert_eq!(flagged.log.level.as_deref(), Some("debug"));
    flagged.log.level = None;
    assert_eq!(flagged, plain);

    // Flags for other keys of the same sections leave the file's keys alone.
    let config = load_text(
        FILE,
        &[
            "--cluster-linger",
            "9s",
            "--client-tls-fingerprint",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ],
    )
    .unwrap();
    assert_eq!(config.cache.capacity, Some(MemoryLimit::Bytes(8 << 30)));
    assert_eq!(config.cache.duration, Some(Duration::from_secs(30)));
    assert_eq!(config.cluster.connect, ["https://a/"]);
    assert_eq!(config.client.tls.system_roots, Some(true));
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: strings(&["anon"]),
            publish: strings(&["anon"])
        })
    );
    assert_eq!(config.cluster.linger, Some(Duration::from_secs(9)));
}

#[test]
fn bare_bool_flag_means_true() {
    let config = load_text(
        "[client.tls]\nsystem_roots = false\n",
        &["--client-tls-system-roots", "--auth-public", ""],
    )
    .unwrap();
    assert_eq!(config.client.tls.system_roots, Some(true));
}

#[test]
fn public_flags_override_the_file() {
    let text = "[auth.public]\nsubscribe = [\"a\"]\npublish = [\"b\"]\n";
    let config = load_text(text, &["--auth-public-subscribe", "x,y"]).unwrap();
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: strings(&["x", "y"]),
            publish: strings(&["b"])
        })
    );

    let config = load_text(text, &["--auth-public", ""]).unwrap();
    assert_eq!(config.auth.public, Some(Public::everything()));

    let config = load_text(text, &["--auth-public", "p", "--auth-public-publish", "q"]).unwrap();
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: strings(&["p"]),
            publish: strings(&["q"])
        })
    );
}

// ---- normalising values ------------------------------------------------------------------

#[test]
fn public_forms_normalise() {
    let public = |text: &str| {
        Config::from_toml(text, Path::new("relay.toml"))
            .unwrap()
            .auth
            .public
    };
    assert_eq!(public("[auth]\npublic = \"\""), Some(Public::everything()));
    assert_eq!(
        public("[auth]\npublic = \"anon\""),
        Some(Public {
            subscribe: strings(&["anon"]),
            publish: strings(&["anon"])
        })
    );
    assert_eq!(
        public("[auth]\npublic = [\"a\", \"b\"]"),
        Some(Public {
            subscribe: strings(&["a", "b"]),
            publish: strings(&["a", "b"])
        })
    );
    assert_eq!(
        public("[auth]\npublic = { subscribe = \"s\" }"),
        Some(Public {
            subscribe: strings(&["s"]),
            publish: vec![]
        })
    );
    assert_eq!(public("[auth]\nkey = \"k\""), None);
}

#[test]
fn the_014_auth_webhook_is_refused_with_its_replacement() {
    // `[auth.public] api` and `[auth] auth_api` named a GET webhook: sending its URL the
    // POST contract instead would fail every session, so both are refused saying what to set.
    let err = error("[auth.public]\napi = \"http://auth/\"\n");
    assert!(err.contains("replaced by auth.url"), "{err}");
    let config = Config::from_toml("[auth]\nauth_api = \"http://auth/\"\n", Path::new("relay.toml")).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("auth.auth_api") && err.contains("auth.url"), "{err}");
}

#[test]
fn public_subscribe_and_public_publish_load() {
    let config = Config::from_toml(
        "[auth]\npublic_subscribe = [\"anon/**\", \"demo/**\"]\npublic_publish = \"anon/**\"\n",
        Path::new("relay.toml"),
    )
    .unwrap();
    assert_eq!(
        config.auth.public,
        Some(Public {
            subscribe: vec!["anon/**".into(), "demo/**".into()],
            publish: vec!["anon/**".into()],
        })
    );
    let err = error("[auth]\npublic_subscribe = \"a/**\"\n[auth.public]\nsubscribe = [\"b\"]\n");
    assert!(err.contains("keep one spelling"), "{err}");
}

#[test]
fn legacy_mesh_url_becomes_node() {
    let config = Config::from_toml("[cluster]\nmesh = \"https://me/\"\n", Path::new("relay.toml")).unwrap();
    assert_eq!(config.cluster.node.as_deref(), Some("https://me/"));
    assert!(
        config.warnings[0].contains("write node = \"https://me/\""),
        "{:?}",
        config.warnings
    );
}

#[test]
fn legacy_advertise_conflicting_with_node_is_an_error() {
    let err = error("[cluster]\nnode = \"a:1\"\nadvertise = \"b:1\"\n");
    assert_eq!(
        err,
        "config relay.toml: 'cluster.advertise' is the old name of 'cluster.node' and both are set: keep only 'node'"
    );
}

#[test]
fn warnings_never_show_tokens() {
    let config = load_text("[cluster]\nconnect = \"peer:443/?jwt=secret\"\n", &[]).unwrap();
    let warnings = config.advice().join("\n");
    assert!(
        warnings.contains("cluster peer 'peer:443/?jwt=%E2%80%A6' has no scheme"),
        "{warnings}"
    );
    assert!(!warnings.contains("secret"), "{warnings}");
}

#[test]
fn roots_are_registered_with_not_linked_and_never_self() {
    let text = "[cluster]\nroot = \"root.example.com:4443\"\nnode = \"root.example.com:4443\"\n";
    let config = load_text(text, &[]).unwrap();
    assert_eq!(config.cluster.roots(), Vec::<String>::new());
    assert_eq!(config.cluster.peers(), Vec::<String>::new());

    let text = "[cluster]\nroot = [\"root:4443\", \"https://root2:4443/\"]\nconnect = [\"https://b/\"]\n";
    let config = load_text(text, &[]).unwrap();
    assert_eq!(config.cluster.peers(), ["https://b/"]);
    assert_eq!(
        config.cluster.roots(),
        ["https://root:4443/", "https://root2:4443/"]
    );
    let advice = config.advice();
    assert!(
        advice.iter().any(|w| w.contains("'cluster.node' is not")),
        "{advice:?}"
    );
}

#[test]
fn capacity_forms() {
    let capacity = |value: &str| {
        Config::from_toml(&format!("[cache]\ncapacity = {value}\n"), Path::new("relay.toml"))
            .unwrap()
            .cache
            .capacity
    };
    assert_eq!(capacity("\"8GiB\""), Some(MemoryLimit::Bytes(8 << 30)));
    assert_eq!(capacity("\"512MB\""), Some(MemoryLimit::Bytes(512_000_000)));
    assert_eq!(capacity("\"512MiB\""), Some(MemoryLimit::Bytes(512 << 20)));
    assert_eq!(capacity("1073741824"), Some(MemoryLimit::Bytes(1 << 30)));
    assert_eq!(capacity("\"75%\""), Some(MemoryLimit::Fraction(0.75)));
}

#[test]
fn durations_take_units_or_whole_seconds() {
    let config = Config::from_toml(
        "drain_timeout = \"250ms\"\n[cluster]\nlinger = \"1m\"\n[quic]\nidle_timeout = 3\n[cache]\nduration = \"1h\"\n",
        Path::new("relay.toml"),
    )
    .unwrap();
    assert_eq!(config.drain_timeout, Some(Duration::from_millis(250)));
    assert_eq!(config.cluster.linger, Some(Duration::from_secs(60)));
    assert_eq!(config.quic.idle_timeout, Some(Duration::from_secs(3)));
    assert_eq!(config.cache.duration, Some(Duration::from_secs(3600)));
    let config = load(&["--drain-timeout", "1s"]).unwrap();
    assert_eq!(config.drain_timeout, Some(Duration::from_secs(1)));
}

#[test]
fn defaults_fill_in_linger_and_drain_timeout() {
    let config = load_text("[auth]\npublic = \"\"\n", &[]).unwrap();
    assert_eq!(config.cluster.linger, Some(Duration::from_secs(5)));
    assert_eq!(config.drain_timeout, Some(Duration::from_secs(10)));
}

#[test]
fn versions_are_checked() {
    let config = Config::from_toml(
        "[server]\nversion = [\"moq-lite-04\", \"moq-lite-03\"]\n",
        Path::new("r.toml"),
    )
    .unwrap();
    assert_eq!(
        config.server.version,
        [moq_proto::Version::Lite04, moq_proto::Version::Lite03]
    );
    let config = Config::from_toml("[client]\nversion = \"moq-lite-05\"\n", Path::new("r.toml")).unwrap();
    assert_eq!(config.client.version, [moq_proto::Version::Lite05]);

    // The in-band versions (Firefox's WebTransport) may be named too.
    let config = Config::from_toml("[server]\nversion = \"moq-lite-02\"\n", Path::new("r.toml")).unwrap();
    assert_eq!(config.server.version, [moq_proto::Version::Lite02]);
    let err = error("[server]\nversion = [\"moq-lite-00\"]\n");
    assert!(
        err.starts_with("config relay.toml:2: server.version: unknown version 'moq-lite-00'"),
        "{err}"
    );
    assert!(err.contains("moq-lite-03"), "{err}");

    let err = load(&["--server-version", "moq-transport-16"]).unwrap_err();
    assert!(matches!(err, ConfigError::Usage(_)));
    assert!(
        err.to_string().contains("unknown version 'moq-transport-16'"),
        "{err}"
    );
}

// ---- error messages ----------------------------------------------------------------------

#[test]
fn unknown_key_names_file_line_and_suggestion() {
    let err = error("[cluster]\nconnect = []\nroots = [\"x\"]\n");
    assert_eq!(
        err,
        "config relay.toml:3: unknown key 'cluster.roots' (did you mean 'cluster.root'?)"
    );
}

#[test]
fn unknown_keys_at_every_depth() {
    assert_eq!(
        error("[clustr]\nid = 1\n"),
        "config relay.toml:1: unknown key 'clustr' (did you mean 'cluster'?)"
    );
    assert_eq!(
        error("[server.tls]\ncerts = \"a\"\n"),
        "config relay.toml:2: unknown key 'server.tls.certs' (did you mean 'server.tls.cert'?)"
    );
    assert_eq!(
        error("[listen]\ntls.genrate = [\"x\"]\n"),
        "config relay.toml:2: unknown key 'listen.tls.genrate' (did you mean 'listen.tls.generate'?)"
    );
    assert_eq!(
        error("[auth.public]\nsubscriber = []\n"),
        "config relay.toml:2: unknown key 'auth.public.subscriber' (did you mean 'auth.public.subscribe'?)"
    );
    assert_eq!(
        error("[auth]\nkey-dir = \"k\"\n"),
        "config relay.toml:2: unknown key 'auth.key-dir' (did you mean 'auth.key_dir'?)"
    );
    assert_eq!(
        error("[cache]\nbandwidth = 1\n"),
        "config relay.toml:2: unknown key 'cache.bandwidth'"
    );
    assert_eq!(
        error("drain = \"5s\"\n"),
        "config relay.toml:1: unknown key 'drain'"
    );
    // Legacy keys are accepted but never suggested for a typo; the same name elsewhere is.
    assert_eq!(
        error("[cluster]\nprefx = \"a\"\n"),
        "config relay.toml:2: unknown key 'cluster.prefx'"
    );
    assert_eq!(
        error("[cache]\ncapacty = \"a\"\n"),
        "config relay.toml:2: unknown key 'cache.capacty' (did you mean 'cache.capacity'?)"
    );
}

#[test]
fn moved_key_gets_a_hint() {
    assert_eq!(
        error("[tls]\ncert = \"a\"\n"),
        "config relay.toml:1: unknown key 'tls' (TLS settings live under [server.tls], or [client.tls] for dialing)"
    );
}

#[test]
fn bad_duration_messages() {
    assert_eq!(
        error("[cache]\nduration = \"30\"\n"),
        "config relay.toml:2: cache.duration: '30' has no unit: write '30s' for seconds or '30ms' for milliseconds"
    );
    assert_eq!(
        error("[cluster]\nlinger = \"5 parsecs\"\n"),
        "config relay.toml:2: cluster.linger: '5 parsecs': unknown unit 'parsecs' (use ms, s, m, h or d, e.g. '30s')"
    );
    let err = error("drain_timeout = -1\n");
    assert!(
        err.contains("drain_timeout: '-1': a duration can't be negative"),
        "{err}"
    );
    let err = load(&["--cache-duration", "soon"]).unwrap_err().to_string();
    assert!(err.contains("'soon' is not a duration"), "{err}");
}

#[test]
fn bad_size_messages() {
    assert_eq!(
        error("[cache]\ncapacity = \"8 gigs\"\n"),
        "config relay.toml:2: cache.capacity: '8 gigs': unknown unit 'gigs' (use B, KB, MB, GB, TB or KiB, MiB, \
         GiB, TiB, e.g. '8GiB')"
    );
    let err = error("[cache]\ncapacity = \"8G\"\n");
    assert!(
        err.contains("cache.capacity: '8G': unit 'G' is ambiguous: write '8GB'"),
        "{err}"
    );
    let err = error("[cache]\ncapacity = \"150%\"\n");
    assert!(
        err.contains("cache.capacity: '150%': a share of memory must be more than 0% and at most 100%"),
        "{err}"
    );
    let err = error("[cache]\ncapacity = 0.5\n");
    assert!(err.contains("ambiguous"), "{err}");
    let err = load(&["--cache-capacity", "lots"]).unwrap_err().to_string();
    assert!(err.contains("'lots' is not a size"), "{err}");
}

#[test]
fn wrong_type_messages() {
    assert_eq!(
        error("[client.tls]\nsystem_roots = \"yes\"\n"),
        "config relay.toml:2: client.tls.system_roots: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        error("[cluster]\nid = \"seven\"\n"),
        "config relay.toml:2: cluster.id: invalid type: string \"seven\", expected a non-negative whole number"
    );
    assert_eq!(
        error("cache = 5\n"),
        "config relay.toml:1: cache: invalid type: integer `5`, expected a table"
    );
    let err = error("[server]\nbind = 4443\n");
    assert!(
        err.starts_with("config relay.toml:2: server.bind: invalid type: integer `4443`, expected a string"),
        "{err}"
    );
    let err = error("[server]\nbind = \"localhost\"\n");
    assert!(
        err.contains("server.bind: 'localhost' has no port: write host:port"),
        "{err}"
    );
    let err = error("[server.tls]\ncert = [\"a\", 5]\n");
    assert!(
        err.contains("server.tls.cert: invalid type: integer `5`, expected a string"),
        "{err}"
    );
    let err = error("[server.tls]\ncert = 5\n");
    assert!(
        err.contains("server.tls.cert: invalid type: integer `5`, expected a string or a list of strings"),
        "{err}"
    );
}

#[test]
fn unknown_enum_value_suggests_the_nearest() {
    assert_eq!(
        error("[log]\nformat = \"jsn\"\n"),
        "config relay.toml:2: log.format: unknown value 'jsn' (expected 'human', 'json'); did you mean 'json'?"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = error("[server]\nbind = \"[::]:443\n");
    assert!(err.starts_with("config relay.toml:2:"), "{err}");
    assert!(err.contains("TOML syntax error"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn missing_and_unreadable_files() {
    let err = load(&["/nonexistent/relay.toml"]).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "config /nonexistent/relay.toml: file not found (give the path of a TOML file, or run with no arguments \
         for a development relay)"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = load(&[dir.path().to_str().unwrap()]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn error_names_the_file_as_given() {
    let file = file("[cluster]\nroots = 1\n");
    let err = load(&[file.path().to_str().unwrap()]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("config {}:2: unknown key", file.path().display())),
        "{err}"
    );
}

// ---- validation --------------------------------------------------------------------------

fn problems(text: &str) -> String {
    load_text(text, &[]).unwrap().validate().unwrap_err().to_string()
}

const OK_AUTH: &str = "[auth]\npublic = \"\"\n";

#[test]
fn validate_limits_that_would_refuse_everything() {
    let err = problems(&format!(
        "[limits]\ngroup_size = 0\npending_streams_per_session = 0\nstream_header_timeout = \"0s\"\n\
         [cache]\ncapacity = 0\n{OK_AUTH}"
    ));
    for expected in [
        "limits.group_size is 0, which refuses everything",
        "limits.pending_streams_per_session is 0",
        "limits.stream_header_timeout must be more than 0",
        "cache.capacity is 0",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    // The same keys with usable values are no problem (what is left: nothing to listen on),
    // and FETCH may be turned off.
    let err = problems(&format!(
        "[limits]\ngroup_size = \"1MiB\"\nfetches_per_session = 0\nstream_header_timeout = \"1s\"\n\
         [cache]\ncapacity = \"64MiB\"\nheadroom = \"10%\"\n{OK_AUTH}"
    ));
    assert!(!err.contains("limits.") && !err.contains("cache."), "{err}");
}

#[test]
fn validate_tls_pairs() {
    let err = problems(&format!(
        "[server]\nbind = \"[::]:443\"\ntls.cert = \"a.crt\"\n{OK_AUTH}"
    ));
    assert!(
        err.contains("server.tls.cert is set without server.tls.key: set server.tls.key"),
        "{err}"
    );
    let err = problems(&format!(
        "[server]\nbind = \"[::]:443\"\ntls.key = \"a.key\"\n{OK_AUTH}"
    ));
    assert!(
        err.contains("server.tls.key is set without server.tls.cert"),
        "{err}"
    );
    let err = problems(&format!(
        "[server.tls]\ncert = [\"a\", \"b\"]\nkey = \"a\"\n{OK_AUTH}"
    ));
    assert!(
        err.contains("server.tls has 2 certificate(s) but 1 key(s)"),
        "{err}"
    );
    let err = problems(&format!(
        "[server.tls]\ncert = \"a\"\nkey = \"a\"\ngenerate = [\"localhost\"]\n{OK_AUTH}"
    ));
    assert!(
        err.contains("server.tls.cert and server.tls.generate are both set"),
        "{err}"
    );
    let err = problems(&format!("[server]\nbind = \"[::]:443\"\n{OK_AUTH}"));
    assert!(
        err.contains("server.bind is [::]:443 but there is no TLS certificate"),
        "{err}"
    );
    let err = problems(&format!("[web.https]\nlisten = \"[::]:443\"\n{OK_AUTH}"));
    assert!(
        err.contains("web.https.listen is set but there is no certificate"),
        "{err}"
    );
    let err = problems(&format!(
        "[client.tls]\ncert = \"c\"\n[web.http]\nlisten = \"[::]:80\"\n{OK_AUTH}"
    ));
    assert!(
        err.contains("client.tls.cert is set without client.tls.key"),
        "{err}"
    );
}

#[test]
fn validate_someone_can_connect() {
    let err = problems("[server]\nbind = \"[::]:443\"\ntls.generate = [\"localhost\"]\n");
    assert!(
        err.contains("nobody could connect: no auth.key, auth.key_dir, auth.url or auth.public is set"),
        "{err}"
    );
    assert!(
        err.contains("set auth.key") && err.contains("auth.public = \"\"") && err.contains("server.tls.root")
    );
    let err =
        problems("[server]\nbind = \"[::]:443\"\ntls.generate = [\"localhost\"]\n[auth]\npublic = []\n");
    assert!(err.contains("auth.public grants nothing"), "{err}");

    // Each way in is enough on its own.
    let base = "[server]\nbind = \"[::]:443\"\n[server.tls]\ngenerate = [\"localhost\"]\n";
    for extra in [
        "[auth]\nkey = \"root.jwk\"\n",
        "[auth]\nkey_dir = \"keys\"\n",
        "[auth]\npublic = \"anon\"\n",
        "root = [\"ca.pem\"]\n",
    ] {
        load_text(&format!("{base}{extra}"), &[])
            .unwrap()
            .validate()
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
    // An external auth server on loopback is a way in too; a remote one over plain HTTP is not.
    for url in [
        "http://127.0.0.1:4440",
        "http://[::1]:4440/auth",
        "http://localhost:4440",
    ] {
        load_text(&format!("{base}[auth]\nurl = \"{url}\"\n"), &[])
            .unwrap()
            .validate()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let err = problems(&format!("{base}[auth]\nurl = \"http://auth/\"\n"));
    assert!(err.contains("only on a loopback address"), "{err}");
    let err = problems(&format!("{base}[auth]\nurl = \"https://auth.example/\"\n"));
    assert!(
        err.contains("https:// auth servers are not supported yet"),
        "{err}"
    );
    let err = problems(&format!(
        "{base}[auth]\nurl = \"http://127.0.0.1:4440\"\npublic = \"anon\"\ntimeout = \"0s\"\nconcurrency = 0\n"
    ));
    assert!(err.contains("auth.url and auth.public are both set"), "{err}");
    assert!(err.contains("auth.timeout must be more than 0"), "{err}");
    assert!(err.contains("auth.concurrency is 0"), "{err}");
}

#[test]
fn validate_nothing_to_listen_on() {
    let err = problems(OK_AUTH);
    assert!(err.contains("nothing to listen on"), "{err}");
    load_text(&format!("[web.http]\nlisten = \"[::]:80\"\n{OK_AUTH}"), &[])
        .unwrap()
        .validate()
        .unwrap();
    // TLS without bind listens on the default port.
    let config = load_text(
        &format!("[server.tls]\ncert = \"a\"\nkey = \"a\"\n{OK_AUTH}"),
        &[],
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.quic_bind(), addr(DEFAULT_BIND));
}

#[test]
fn validate_cluster() {
    let base = format!("[web.http]\nlisten = \"[::]:80\"\n{OK_AUTH}");
    let err = problems(&format!("{base}[cluster]\nid = 0\n"));
    assert!(err.contains("cluster.id must not be 0"), "{err}");
    let err = problems(&format!("{base}[cluster]\nid = {}\n", 1u64 << 62));
    assert!(err.contains("too large"), "{err}");
    let err = problems(&format!("{base}[cluster]\nnode = \"https://me/?jwt=abc\"\n"));
    assert!(err.contains("cluster.node contains a token"), "{err}");

    let config = load_text(&format!("{base}[cluster]\nid = {}\n", 1u64 << 60), &[]).unwrap();
    config.validate().unwrap();
    let advice = config.advice();
    assert!(advice.iter().any(|w| w.contains("above 2^53")), "{advice:?}");
}

#[test]
fn validate_log_level_and_auth_url() {
    let base = format!("[web.http]\nlisten = \"[::]:80\"\n{OK_AUTH}");
    let err = problems(&format!("{base}[log]\nlevel = \"infoo\"\n"));
    assert!(err.contains("log.level 'infoo' is not a level"), "{err}");
    load_text(&format!("{base}[log]\nlevel = \"info,moq_relay=trace\"\n"), &[])
        .unwrap()
        .validate()
        .unwrap();
    let err = problems(&format!("{base}url = \"http://a/\"\nkey = \"k.jwk\"\n"));
    assert!(
        err.contains("auth.url (an auth service) verifies tokens itself"),
        "{err}"
    );
}

#[test]
fn validate_lists_every_problem() {
    let err = problems("[server.tls]\ncert = \"a\"\ngenerate = [\"x\"]\n");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].ends_with(": 3 problems:"), "{err}");
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[1..].iter().all(|line| line.starts_with("  - ")), "{err}");
}

#[test]
fn inert_keys_load_with_one_warning_each() {
    let config = load_fixture_unvalidated("inert.toml");
    let text = std::fs::read_to_string(fixture("inert.toml")).unwrap();
    let mut tables = BTreeSet::new();
    for (key, _) in INERT {
        // Each entry of the table is exercised by the fixture, and warned about once.
        let warned: Vec<_> = config
            .warnings
            .iter()
            .filter(|w| w.contains(&format!("'{key}' has no effect")))
            .collect();
        assert_eq!(warned.len(), 1, "{key}: {:?}", config.warnings);
        let line: usize = warned[0]["line ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(text.lines().nth(line - 1).is_some(), "{key}: line {line}");
        tables.insert(*key);
    }
    assert_eq!(config.warnings.len(), INERT.len(), "{:?}", config.warnings);
    // The inert keys leave the typed configuration untouched.
    let mut expected = Config {
        file: config.file.clone(),
        warnings: config.warnings.clone(),
        drain_timeout: config.drain_timeout,
        ..Default::default()
    };
    expected.cluster.linger = config.cluster.linger;
    assert_eq!(config, expected);
}

#[test]
fn summary_says_what_will_run() {
    let summary = Config::development().summary();
    assert_eq!(
        summary,
        "(development defaults): ok: quic [::]:4443 (self-signed for localhost), http+ws [::]:4443, \
         auth public subscribe [\"\"] publish [\"\"], no cluster, cache 25% of memory"
    );
    let summary = load_fixture("demo/leaf1.toml", &["--cache-capacity", "75%"]).summary();
    assert!(
        summary.contains("quic [::]:4445 (1 certificate(s), mTLS)"),
        "{summary}"
    );
    assert!(summary.contains("cluster 2 peer(s)"), "{summary}");
    assert!(summary.contains("cache 75% of memory"), "{summary}");
    assert!(!summary.contains('\n'));
}

// ---- every key is a flag and an env var --------------------------------------------------

/// Dotted paths of every leaf value in a TOML table.
fn leaves(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaves(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

fn full_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(fixture("full.toml")).unwrap();
    let mut keys = BTreeSet::new();
    leaves(&text.parse().unwrap(), "", &mut keys);
    keys
}

fn flag_for(key: &str) -> String {
    match key {
        // The 0.14 key and flag were spelled this way; kept so both are refused by name.
        "auth.auth_api" => "auth-api".to_string(),
        key => key.replace(['.', '_'], "-"),
    }
}

/// Flags that are not a TOML key: the file itself, `--check`, and `--auth-public`, which
/// stands for `[auth] public = "..."` (the string form of the table `full.toml` uses).
const NOT_KEYS: [&str; 3] = ["file", "check", "auth-public"];

#[test]
fn every_key_is_a_flag_and_every_flag_a_key() {
    let command = Config::command();
    let flags: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["help", "version"].contains(long))
        .map(str::to_string)
        .collect();
    let keys = full_keys();
    let key_flags: BTreeSet<String> = keys.iter().map(|key| flag_for(key)).collect();
    let missing: Vec<_> = key_flags.difference(&flags).collect();
    assert!(missing.is_empty(), "keys without a flag: {missing:?}");
    let extra: Vec<_> = flags
        .difference(&key_flags)
        .filter(|f| !NOT_KEYS.contains(&f.as_str()))
        .collect();
    assert!(extra.is_empty(), "flags without a key in full.toml: {extra:?}");
}

#[test]
fn every_flag_has_an_env_var_and_an_id_named_after_it() {
    for arg in Config::command().get_arguments() {
        let id = arg.get_id().as_str();
        if ["file", "check", "help", "version"].contains(&id) {
            continue;
        }
        let long = arg.get_long().unwrap_or_else(|| panic!("{id} has no flag"));
        assert_eq!(id, long, "the arg id is the flag name");
        let env = arg.get_env().unwrap_or_else(|| panic!("--{long} has no env var"));
        assert_eq!(
            env.to_str().unwrap(),
            format!("MOQ_{}", long.to_uppercase().replace('-', "_"))
        );
    }
}

#[test]
fn full_fixture_sets_every_field() {
    let mut config = load_fixture_unvalidated("full.toml");
    config.warnings.clear();
    // Private raw fields (`public_file`, `mesh_file`, ...) are consumed at load.
    let consumed = [
        "public_file",
        "public_flag",
        "public_subscribe_flag",
        "public_publish_flag",
        "public_subscribe_file",
        "public_publish_file",
        "mesh_file",
        "advertise",
        "prefix",
        "warnings",
    ];
    let pretty = format!("{config:#?}");
    let empty: Vec<&str> = pretty
        .lines()
        .map(str::trim)
        .filter(|line| line.ends_with(": None,") || line.ends_with(": [],"))
        .filter_map(|line| line.split(':').next())
        .filter(|name| !consumed.contains(name))
        .collect();
    assert!(empty.is_empty(), "full.toml leaves these fields unset: {empty:?}");
    assert_eq!(config.quic.congestion_control, Some(CongestionControl::Loss));
    assert_eq!(
        config.client.quic.congestion_control,
        Some(CongestionControl::Delay)
    );
}

fn load_fixture_unvalidated(name: &str) -> Config {
    load(&[fixture(name).to_str().unwrap()]).unwrap()
}

#[test]
fn every_flag_overrides_full_fixture() {
    // Set each flag to a value and check the loaded config changed: a flag that parses but
    // is dropped by the merge would slip through the tests above.
    let base = load_fixture_unvalidated("full.toml");
    let values: &[(&str, &str)] = &[
        ("server-bind", "[::]:1"),
        ("server-tls-cert", "z.crt"),
        ("server-tls-acme-domains", "z.example.com"),
        ("server-tls-acme-challenge", "tls-alpn-01"),
        ("server-tls-acme-eab-hmac-key", "AAAA"),
        ("server-tls-acme-retry", "1s"),
        ("server-tls-acme-http-listen", "[::]:8080"),
        ("server-quic-max-streams", "1"),
        ("server-quic-idle-timeout", "1s"),
        ("client-tls-disable-verify", "true"),
        (
            "client-tls-fingerprint",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ),
        ("quic-congestion-control", "delay"),
        ("web-ws", "true"),
        ("web-https-root", "z.pem"),
        ("internal-listen", "127.0.0.1:1"),
        ("auth-key", "z.jwk"),
        ("auth-public-subscribe", "z"),
        ("cluster-id", "9"),
        ("cluster-root", "https://z/"),
        ("cache-capacity", "1MiB"),
        ("cache-headroom", "2GiB"),
        ("limits-group-size", "1MiB"),
        ("limits-pending-streams-per-session", "1"),
        ("limits-stream-header-timeout", "1s"),
        ("drain-timeout", "1s"),
        ("log-format", "human"),
    ];
    for (flag, value) in values {
        let path = fixture("full.toml");
        let flag_arg = format!("--{flag}={value}");
        let config = load(&[path.to_str().unwrap(), &flag_arg]).unwrap();
        assert_ne!(config, base, "{flag_arg} changed nothing");
    }
}

// ---- [server.tls.acme] -------------------------------------------------------------------

/// An ACME relay caching in `cache`: `[server.tls.acme]` with `acme` (and a domain
/// unless it names some), `[web.https]` listening with `https` keys unless `None`, then
/// `more` TOML.
fn acme_config(cache: &Path, acme: &str, https: Option<&str>, more: &str) -> String {
    let domains = match acme.contains("domains") {
        true => "",
        false => "domains = [\"relay.example.com\"]\n",
    };
    let https = https
        .map(|keys| format!("[web.https]\nlisten = \"[::]:443\"\n{keys}\n"))
        .unwrap_or_default();
    format!(
        "[server.tls.acme]\n{domains}cache_dir = \"{}\"\n{acme}\n{https}{more}\n{OK_AUTH}",
        cache.display()
    )
}

/// [`acme_config`] with a plain HTTPS listener.
fn acme_text(cache: &Path, acme: &str, more: &str) -> String {
    acme_config(cache, acme, Some(""), more)
}

#[test]
fn acme_defaults_names_and_spellings() {
    let tmp = tempfile::tempdir().unwrap();
    let config = load_text(&acme_text(tmp.path(), "", ""), &[]).unwrap();
    config.validate().unwrap();
    // QUIC defaults to [::]:443 once a certificate source exists.
    assert_eq!(config.server.quic_bind(), addr("[::]:443"));
    let native = config.server.tls.acme.native().unwrap();
    assert_eq!(native.domains, strings(&["relay.example.com"]));
    assert_eq!(native.directory, moq_native::acme::LETS_ENCRYPT);
    assert_eq!(native.challenge, moq_native::acme::Challenge::TlsAlpn01);
    assert_eq!(native.retry, moq_native::acme::DEFAULT_RETRY);
    assert_eq!(native.cache, tmp.path());
    assert!(native.external_account.is_none());
    assert_eq!(
        Acme::default().cache_dir(),
        PathBuf::from("/var/lib/moq-relay/acme")
    );

    let acme = |text: &str| {
        load_text(&acme_text(tmp.path(), text, ""), &[])
            .unwrap()
            .server
            .tls
            .acme
    };
    assert_eq!(
        acme("directory = \"letsencrypt-staging\"").directory_url(),
        moq_native::acme::LETS_ENCRYPT_STAGING
    );
    assert_eq!(
        acme("directory = \"https://acme.example/dir\"").directory_url(),
        "https://acme.example/dir"
    );
    assert_eq!(
        acme("contact = \"ops@example.com\"").contact_uris(),
        strings(&["mailto:ops@example.com"])
    );
    let http = acme("challenge = \"http-01\"");
    assert_eq!(http.http_address(), addr("[::]:80"));
    assert_eq!(
        http.native().unwrap().challenge,
        moq_native::acme::Challenge::Http01
    );
    // Flags override the file, lists take commas.
    let config = load_text(
        &acme_text(tmp.path(), "", ""),
        &[
            "--server-tls-acme-domains",
            "a.example.com,b.example.com",
            "--server-tls-acme-retry",
            "30s",
        ],
    )
    .unwrap();
    assert_eq!(
        config.server.tls.acme.domains,
        strings(&["a.example.com", "b.example.com"])
    );
    assert_eq!(config.server.tls.acme.retry, Some(Duration::from_secs(30)));
    // An unknown value names the choices; the HMAC key never shows in Debug output.
    let err = error("[server.tls.acme]\nchallenge = \"dns-01\"");
    assert!(err.contains("'tls-alpn-01', 'http-01'"), "{err}");
    let config = load_text(
        &acme_text(
            tmp.path(),
            "eab_kid = \"k\"\neab_hmac_key = \"c2VjcmV0LWhtYWMta2V5\"",
            "",
        ),
        &[],
    )
    .unwrap();
    config.validate().unwrap();
    assert!(!format!("{config:?}").contains("c2VjcmV0LWhtYWMta2V5"));
    let native = config.server.tls.acme.native().unwrap();
    assert_eq!(
        native.external_account.unwrap().key().unwrap(),
        b"secret-hmac-key"
    );
}

#[test]
fn validate_acme() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        (
            "domains = [\"10.0.0.1\"]",
            Some(""),
            "",
            "'10.0.0.1' is an IP address",
        ),
        ("domains = [\"*.example.com\"]", Some(""), "", "is a wildcard"),
        (
            "domains = [\"relay.example.com.\"]",
            Some(""),
            "",
            "ends with a dot",
        ),
        (
            "domains = [\"bad_name.example.com\"]",
            Some(""),
            "",
            "is not a DNS name",
        ),
        (
            "domains = [\"-x.example.com\"]",
            Some(""),
            "",
            "is not a DNS name",
        ),
        ("directory = \"http://acme.example/dir\"", Some(""), "", "is http"),
        (
            "directory = \"lets-encrypt\"",
            Some(""),
            "",
            "is not a directory URL",
        ),
        (
            "contact = \"mailto:nobody\"",
            Some(""),
            "",
            "is not an email address",
        ),
        (
            "eab_kid = \"k\"",
            Some(""),
            "",
            "eab_kid is set without eab_hmac_key",
        ),
        (
            "eab_hmac_key = \"AAAA\"",
            Some(""),
            "",
            "eab_hmac_key is set without eab_kid",
        ),
        (
            "eab_kid = \"k\"\neab_hmac_key = \"!!\"",
            Some(""),
            "",
            "not base64url",
        ),
        ("retry = \"0s\"", Some(""), "", "retry must be at least 1s"),
        (
            "http_listen = \"[::]:80\"",
            Some(""),
            "",
            "only used with challenge = \"http-01\"",
        ),
        (
            "",
            Some(""),
            "[server.tls]\ngenerate = [\"localhost\"]",
            "both set",
        ),
        ("", None, "", "web.https.listen is not set"),
        (
            "",
            Some("cert = \"a.crt\"\nkey = \"a.key\""),
            "",
            "has certificate files of its own",
        ),
        (
            "challenge = \"http-01\"\nhttp_listen = \"[::]:8080\"",
            None,
            "[web.http]\nlisten = \"[::]:8080\"",
            "needs its own port",
        ),
    ];
    for (acme, https, more, expected) in cases {
        let err = problems(&acme_config(tmp.path(), acme, *https, more));
        assert!(
            err.contains(expected),
            "{acme} / {https:?} / {more}: expected {expected:?} in {err}"
        );
    }
    // http-01 needs no HTTPS listener.
    load_text(&acme_config(tmp.path(), "challenge = \"http-01\"", None, ""), &[])
        .unwrap()
        .validate()
        .unwrap();

    // Half configured: keys but no domains.
    let err = problems(&format!(
        "[server.tls.acme]\ncontact = \"ops@example.com\"\n[web.http]\nlisten = \"[::]:80\"\n{OK_AUTH}"
    ));
    assert!(err.contains("has no domains"), "{err}");
    // A cache where nothing can be written.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = problems(&acme_text(&file, "", ""));
    assert!(err.contains("server.tls.acme.cache_dir"), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    let err = problems(&acme_text(&file.join("below"), "", ""));
    assert!(err.contains("server.tls.acme.cache_dir"), "{err}");
}

#[test]
fn acme_summary_and_advice() {
    let tmp = tempfile::tempdir().unwrap();
    let config = load_text(
        &acme_text(tmp.path(), "directory = \"letsencrypt-staging\"", ""),
        &[],
    )
    .unwrap();
    let summary = config.summary();
    assert!(
        summary
            .contains("quic [::]:443 (ACME for relay.example.com from letsencrypt-staging by tls-alpn-01)"),
        "{summary}"
    );
    assert!(config.advice().iter().all(|w| !w.contains("has no dot")));
    let config = load_text(
        &acme_text(tmp.path(), "", ""),
        &["--server-tls-acme-domains", "localhost"],
    )
    .unwrap();
    config.validate().unwrap();
    assert!(
        config
            .advice()
            .iter()
            .any(|w| w.contains("'localhost' has no dot")),
        "{:?}",
        config.advice()
    );
}
