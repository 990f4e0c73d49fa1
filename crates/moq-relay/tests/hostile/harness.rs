//! The relay under attack as its own process (ours or the reference `moq-relay`
//! 0.17.10), its memory, its counters and its log; and the record each attack
//! leaves (`HOSTILE_REPORT`, one JSON line per attack and relay).

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use moq_native::{Version, client};
use url::Url;

use crate::common::http_get;

/// Which relay the suite runs against: `HOSTILE_RELAY=ours` (default) or `reference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// This repository's `moq-relay` (`HOSTILE_OURS_BIN` overrides the binary).
    Ours,
    /// The ecosystem's `moq-relay` 0.17.10 from `$MOQ_UPSTREAM/bin` (default
    /// `~/.cache/moq-upstream/bin`, installed by `interop/install.sh`).
    Reference,
}

impl Kind {
    /// The relay selected by the environment.
    pub(crate) fn from_env() -> Self {
        match std::env::var("HOSTILE_RELAY").as_deref() {
            Ok("reference") | Ok("theirs") => Self::Reference,
            _ => Self::Ours,
        }
    }

    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Reference => "reference",
        }
    }
}

/// Where the reference tools live.
pub(crate) fn upstream_bin(name: &str) -> PathBuf {
    let root = std::env::var("MOQ_UPSTREAM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/moq-upstream")
        });
    root.join("bin").join(name)
}

/// How a relay is started for one attack.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The address everything listens on.
    pub ip: IpAddr,
    /// The QUIC and HTTP port (a free one if `None`).
    pub port: Option<u16>,
    /// Anonymous access (`public = ""` / `"**"`) unless a key is given.
    pub auth: Auth,
    /// Extra TOML for our relay (its defaults otherwise: the point is the default config).
    pub ours: String,
    /// Extra TOML for the reference relay.
    pub reference: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ip: "127.0.0.1".parse().expect("literal"),
            port: None,
            auth: Auth::Anonymous,
            ours: String::new(),
            reference: String::new(),
        }
    }
}

/// Who may do what on the relay.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// Everyone may publish and subscribe everywhere.
    Anonymous,
    /// Tokens signed by this JWK file; `anon/` stays public (for the victim).
    Key(PathBuf),
}

/// A relay process; killed (by PID) when dropped.
pub(crate) struct Relay {
    /// Ours or the reference.
    pub kind: Kind,
    /// QUIC (UDP) and HTTP (TCP) address.
    pub addr: SocketAddr,
    /// The internal listener (`/metrics`, `/health`).
    pub internal: SocketAddr,
    /// Hex SHA-256 of the relay's certificate.
    pub fingerprint: String,
    child: Child,
    /// An auth server the reference relay asks (token attacks only).
    auth_server: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.auth_server.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port on `ip` for both UDP and TCP (best effort).
pub(crate) fn free_port(ip: IpAddr) -> u16 {
    loop {
        let Ok(udp) = std::net::UdpSocket::bind((ip, 0)) else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if std::net::TcpListener::bind((ip, addr.port())).is_ok() {
            return addr.port();
        }
    }
}

fn bracket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl Relay {
    /// Start the relay `HOSTILE_RELAY` selects; `None` (after saying why) when it is not
    /// installed, so the caller can skip.
    pub(crate) async fn start(options: Options) -> Option<Self> {
        Self::start_kind(Kind::from_env(), options).await
    }

    /// Start a relay of `kind`.
    pub(crate) async fn start_kind(kind: Kind, options: Options) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip = options.ip;
        let port = options.port.unwrap_or_else(|| free_port(ip));
        let internal = SocketAddr::new(ip, free_port(ip));
        let host = bracket(ip);
        let mut auth_server = None;
        let (binary, config) = match kind {
            Kind::Ours => {
                let binary = std::env::var("HOSTILE_OURS_BIN")
                    .map(PathBuf::from)
                    .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_moq-relay")));
                let auth = match &options.auth {
                    Auth::Anonymous => "[auth]\npublic = \"\"\n".to_string(),
                    Auth::Key(key) => format!("[auth]\nkey = \"{}\"\npublic = \"anon\"\n", key.display()),
                };
                let config = format!(
                    "[server]\nlisten = \"{host}:{port}\"\n[server.tls]\ngenerate = [\"localhost\"]\n\
                     [web.http]\nlisten = \"{host}:{port}\"\n[internal]\nlisten = \"{internal}\"\n{auth}{}\n",
                    options.ours
                );
                (binary, config)
            }
            Kind::Reference => {
                let binary = upstream_bin("moq-relay");
                if !binary.exists() {
                    eprintln!(
                        "skipped: the reference relay is not installed at {} (run interop/install.sh)",
                        binary.display()
                    );
                    return None;
                }
                let auth = match &options.auth {
                    Auth::Anonymous => "[auth]\npublic = \"**\"\n".to_string(),
                    Auth::Key(key) => {
                        // 0.17.10 verifies no token itself: it asks an auth server, and the
                        // reference one is `moq auth serve`.
                        let moq = upstream_bin("moq");
                        if !moq.exists() {
                            eprintln!("skipped: `moq` (moq-cli) is not installed at {}", moq.display());
                            return None;
                        }
                        let auth_addr = SocketAddr::new(ip, free_port(ip));
                        let log = std::fs::File::create(dir.path().join("auth.log")).expect("log");
                        let child = Command::new(moq)
                            .args(["auth", "serve", "--listen", &auth_addr.to_string(), "--key"])
                            .arg(key)
                            .args(["--public-publish", "anon/**", "--public-subscribe", "anon/**"])
                            .stdout(Stdio::null())
                            .stderr(log)
                            .spawn()
                            .expect("moq auth serve");
                        auth_server = Some(child);
                        wait_tcp(auth_addr).await;
                        format!("[auth]\nurl = \"http://{auth_addr}\"\n")
                    }
                };
                let config = format!(
                    "[listen]\nbind = \"{host}:{port}\"\ntls.generate = [\"localhost\"]\n\
                     [web.http]\nlisten = \"{host}:{port}\"\n[internal]\nlisten = \"{internal}\"\n{auth}{}\n",
                    options.reference
                );
                (binary, config)
            }
        };
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, config).expect("config");
        let log = dir.path().join("relay.log");
        let child = Command::new(binary)
            .arg(&file)
            // As an operator runs it: a panic costs what it costs without a backtrace.
            .env_remove("RUST_BACKTRACE")
            .env(
                "RUST_LOG",
                std::env::var("HOSTILE_RELAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("relay process");
        let addr = SocketAddr::new(ip, port);
        let mut relay = Self {
            kind,
            addr,
            internal,
            fingerprint: String::new(),
            child,
            auth_server,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("relay exited at start ({status}):\n{}", relay.log());
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let (status, body) = http_get(&format!("http://{}/certificate.sha256", relay.web())).await;
                if status == 200 {
                    relay.fingerprint = body.trim().to_string();
                    break;
                }
            }
            assert!(Instant::now() < deadline, "relay did not start:\n{}", relay.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_tcp(internal).await;
        Some(relay)
    }

    /// `host:port` of the HTTP listener.
    pub(crate) fn web(&self) -> String {
        format!("{}:{}", bracket(self.addr.ip()), self.addr.port())
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A URL on the relay: `scheme://ip:port/path`.
    pub(crate) fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{}/{path}", self.web())).expect("url")
    }

    /// A client bound to `bind` that pins the relay's certificate.
    pub(crate) fn client(&self, bind: IpAddr, versions: &[Version]) -> client::Client {
        client::Client::new(client::Config {
            bind: SocketAddr::new(bind, 0),
            tls: client::ClientTls {
                fingerprints: vec![self.fingerprint.clone()],
                ..Default::default()
            },
            versions: versions.iter().map(|&v| v.into()).collect(),
            websocket: client::WebSocketConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("client")
    }

    /// The relay's log so far.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Lines in the log so far.
    pub(crate) fn log_lines(&self) -> usize {
        self.log().lines().count()
    }

    /// Panics in the log so far.
    pub(crate) fn panics(&self) -> usize {
        self.log().matches("panicked").count()
    }

    /// Whether the process runs and answers on HTTP within 5 s.
    pub(crate) async fn alive(&mut self) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return false;
        }
        let url = format!("http://{}/certificate.sha256", self.web());
        matches!(
            tokio::time::timeout(Duration::from_secs(5), http_status(&url)).await,
            Ok(Some(200))
        )
    }

    /// Every sample of `/metrics`, by `name{labels}`.
    pub(crate) async fn metrics(&self) -> BTreeMap<String, f64> {
        let url = format!("http://{}/metrics", self.internal);
        let Ok(text) = tokio::time::timeout(Duration::from_secs(10), http_body(&url)).await else {
            return BTreeMap::new();
        };
        parse_metrics(&text.unwrap_or_default())
    }

    /// Wait (up to 10 s) until the relay lists `anon/<name>` as announced.
    pub(crate) async fn wait_announced(&self, name: &str) {
        let url = format!("http://{}/announced/anon", self.web());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((200, body)) = http_request(&url).await
                && body.lines().any(|l| l == name)
            {
                return;
            }
            assert!(Instant::now() < deadline, "anon/{name} never announced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The resident set now and its high-water mark, in bytes.
    pub(crate) fn memory(&self) -> Memory {
        memory(self.pid())
    }
}

async fn wait_tcp(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET whose failure is an answer (`None`), unlike the shared test helper.
async fn http_request(url: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = Url::parse(url).ok()?;
    let addr = format!("{}:{}", url.host_str()?, url.port()?);
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        url.path()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The status of a GET, `None` if there was no answer.
pub(crate) async fn http_status(url: &str) -> Option<u16> {
    http_request(url).await.map(|(status, _)| status)
}

async fn http_body(url: &str) -> Option<String> {
    http_request(url).await.map(|(_, body)| body)
}

/// Prometheus text to `name{labels}` → value (chunked bodies have their size lines,
/// which parse as nothing).
pub(crate) fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Series that count refusals: any whose metric name says refused, rejected, limited,
/// denied or failures (`moq_relay_sessions_refused_total{reason=...}`,
/// `moq_relay_auth_failures_total{reason=...}`, and whatever the hardening adds under
/// such names).
pub(crate) fn is_refusal_series(series: &str) -> bool {
    let name = series.split('{').next().unwrap_or_default();
    ["refus", "reject", "limit", "denied", "failure"]
        .iter()
        .any(|word| name.contains(word))
}

/// Refusal series that grew between two scrapes, with by how much.
pub(crate) fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    after
        .iter()
        .filter(|(series, _)| is_refusal_series(series))
        .filter_map(|(series, value)| {
            let delta = value - before.get(series).copied().unwrap_or(0.0);
            (delta > 0.0).then(|| (series.clone(), delta))
        })
        .collect()
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS since the process started), bytes.
    pub peak: u64,
}

/// Read VmRSS and VmHWM of `pid`.
pub(crate) fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Memory {
        rss: field("VmRSS:"),
        peak: field("VmHWM:"),
    }
}

/// Mebibytes, for reports.
pub(crate) fn mib(bytes: u64) -> f64 {
    (bytes as f64 / (1 << 20) as f64 * 10.0).round() / 10.0
}

/// What the victim saw.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct VictimReport {
    /// Groups the publisher wrote while the viewer watched.
    pub groups: u64,
    /// Frames the viewer should have received.
    pub expected: u64,
    /// Frames it received intact.
    pub received: u64,
    /// Frames it never received (or received wrong).
    pub lost: u64,
}

/// One attack against one relay: what happened, for the report and the assertions.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Outcome {
    /// The attack's name (the test's).
    pub attack: &'static str,
    /// `ours` or `reference`.
    pub relay: &'static str,
    /// The relay process survived and still answered.
    pub alive: bool,
    /// What the victim viewer saw.
    pub victim: VictimReport,
    /// RSS just before the attack, MiB.
    pub rss_before_mib: f64,
    /// Peak RSS (VmHWM) at the end, MiB.
    pub peak_rss_mib: f64,
    /// RSS at the end of the attack, MiB.
    pub rss_after_mib: f64,
    /// Whether the attacker saw a refusal (stream stopped, session closed, HTTP error,
    /// connection refused); `None` where the attack cannot tell.
    pub refused: Option<bool>,
    /// Refusal counters that grew during the attack.
    pub counted: Vec<(String, f64)>,
    /// Log lines the relay wrote during the attack.
    pub log_lines: usize,
    /// Panics the relay logged during the attack (a task died on hostile input).
    pub panics: usize,
    /// The attack's own numbers.
    pub details: String,
}

impl Outcome {
    /// Append this outcome to `$HOSTILE_REPORT` (if set) and print it.
    pub(crate) fn report(&self) {
        let line = serde_json::to_string(self).unwrap_or_default();
        eprintln!("hostile outcome: {line}");
        if let Ok(path) = std::env::var("HOSTILE_REPORT")
            && let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }

    /// The assertions every attack makes on our relay: alive, the victim lost no frame,
    /// peak RSS under `bound_mib`, refused and counted.
    pub(crate) fn assert_refused_within(&self, bound_mib: f64) {
        self.assert_survived_within(bound_mib);
        assert_eq!(self.refused, Some(true), "the attack was not refused: {self:#?}");
        assert!(
            !self.counted.is_empty(),
            "no refusal counter moved during the attack: {self:#?}"
        );
    }

    /// Alive, the victim lost no frame, peak RSS under `bound_mib`.
    pub(crate) fn assert_survived_within(&self, bound_mib: f64) {
        assert!(self.alive, "the relay died: {self:#?}");
        assert_eq!(self.panics, 0, "the relay panicked: {self:#?}");
        assert!(self.victim.expected > 0, "the victim saw nothing: {self:#?}");
        assert_eq!(self.victim.lost, 0, "the victim lost frames: {self:#?}");
        assert!(
            self.peak_rss_mib < bound_mib,
            "peak RSS {} MiB over the bound of {bound_mib} MiB: {self:#?}",
            self.peak_rss_mib
        );
    }
}

/// Measures one attack: memory and counters before, everything after.
pub(crate) struct Measure {
    before: Memory,
    metrics: BTreeMap<String, f64>,
    log_lines: usize,
    panics: usize,
}

impl Measure {
    /// Snapshot before the attack.
    pub(crate) async fn start(relay: &Relay) -> Self {
        Self {
            before: relay.memory(),
            metrics: relay.metrics().await,
            log_lines: relay.log_lines(),
            panics: relay.panics(),
        }
    }

    /// Everything after the attack.
    pub(crate) async fn finish(
        self,
        attack: &'static str,
        relay: &mut Relay,
        victim: VictimReport,
        refused: Option<bool>,
        details: String,
    ) -> Outcome {
        let alive = relay.alive().await;
        let after = relay.memory();
        let metrics = relay.metrics().await;
        Outcome {
            attack,
            relay: relay.kind.name(),
            alive,
            victim,
            rss_before_mib: mib(self.before.rss),
            peak_rss_mib: mib(after.peak),
            rss_after_mib: mib(after.rss),
            refused,
            counted: grown(&self.metrics, &metrics),
            log_lines: relay.log_lines().saturating_sub(self.log_lines),
            panics: relay.panics().saturating_sub(self.panics),
            details,
        }
    }
}

/// Whether the suite asserts (ours) or only records (the reference).
pub(crate) fn asserting(relay: &Relay) -> bool {
    relay.kind == Kind::Ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_series_are_recognised_by_name() {
        assert!(is_refusal_series(
            "moq_relay_sessions_refused_total{reason=\"rate_limit\"}"
        ));
        assert!(is_refusal_series(
            "moq_relay_auth_failures_total{reason=\"expired\"}"
        ));
        assert!(!is_refusal_series("moq_relay_bytes_received_total"));
        let before = parse_metrics("# HELP x\nmoq_relay_sessions_refused_total{reason=\"a\"} 1\n");
        let after = parse_metrics(
            "moq_relay_sessions_refused_total{reason=\"a\"} 3\nmoq_relay_sessions_refused_total{reason=\"b\"} 0\n",
        );
        assert_eq!(
            grown(&before, &after),
            vec![("moq_relay_sessions_refused_total{reason=\"a\"}".to_string(), 2.0)]
        );
    }
}
