//! Network-namespace labs for tests: namespaces joined by veth pairs, a `tbf` bottleneck and
//! `nftables` random loss on an interface, processes started inside a namespace, and cleanup
//! of all of it when the [`Lab`] is dropped (also when a test panics).
//!
//! A lab only ever touches what it created: namespaces named `mqn-<pid>-<n>-<name>`, and the
//! interfaces, qdiscs and nft tables inside them. Traffic in a lab stays in its namespaces. The
//! host's own interfaces and rulesets are never changed. Namespaces left behind by a process that
//! was killed before it could clean up (its pid no longer exists) are removed by the next
//! [`Lab::new`].
//!
//! Needs root, `ip` (iproute2) with `ip netns`, and for the impairments `tc` and `nft`.
//! [`LabError::is_unavailable`] tells a test to skip rather than fail.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Prefix of every namespace a lab creates.
pub const PREFIX: &str = "mqn-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why a lab could not be set up or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
    #[error("network namespaces need root; running as uid {0}")]
    NotRoot(u32),
    /// A tool is not installed.
    #[error("`{0}` is not installed (apt-get install iproute2 nftables)")]
    Missing(&'static str),
    /// The kernel or container refuses namespaces.
    #[error("cannot create a network namespace: {0}")]
    NoNetns(String),
    /// The kernel lacks a qdisc or an nftables feature a lab needs.
    #[error("this kernel cannot {what}: {stderr}")]
    Unsupported {
        /// What was tried.
        what: &'static str,
        /// What the tool said.
        stderr: String,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LabError {
    /// True when the machine lacks a facility (not root, a tool missing, no namespaces): a test
    /// should print the reason and skip, not fail.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::NotRoot(_) | Self::Missing(_) | Self::NoNetns(_) | Self::Unsupported { .. }
        )
    }
}

/// The effective user id, from `/proc/self/status` (no libc call needed).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn tool_exists(tool: &str) -> bool {
    Command::new(tool)
        .arg(if tool == "nft" { "--version" } else { "-V" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A tc or nft failure that means "this kernel cannot", not "this command is wrong".
fn unsupported(what: &'static str) -> impl FnOnce(LabError) -> LabError {
    move |e| match e {
        LabError::Command { stderr, .. }
            if [
                "unknown",
                "not supported",
                "No such file",
                "Could not process rule",
            ]
            .iter()
            .any(|needle| stderr.contains(needle)) =>
        {
            LabError::Unsupported { what, stderr }
        }
        other => other,
    }
}

/// Kill every process in a namespace (they were started by the lab that owns it) and delete it.
fn remove_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// Remove namespaces of labs whose process no longer exists.
fn sweep_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// A set of namespaces and what runs in them, removed on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    links: u32,
}

/// One end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The namespace it lives in.
    pub ns: String,
    /// Its interface name inside that namespace.
    pub dev: String,
    /// Its IPv4 address (without the prefix length).
    pub addr: String,
}

impl Lab {
    /// Check the machine and start an empty lab. Fails with an [`LabError::is_unavailable`]
    /// error when namespaces cannot be used here.
    pub fn new() -> Result<Self, LabError> {
        match euid() {
            Some(0) => {}
            Some(uid) => return Err(LabError::NotRoot(uid)),
            None => return Err(LabError::NotRoot(u32::MAX)),
        }
        if !tool_exists("ip") {
            return Err(LabError::Missing("ip"));
        }
        sweep_stale();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            prefix: format!("{PREFIX}{}-{n}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            links: 0,
        })
    }

    /// Fail with [`LabError::Missing`] unless `tc` and `nft` are installed.
    pub fn require_impairments() -> Result<(), LabError> {
        for tool in ["tc", "nft"] {
            if !tool_exists(tool) {
                return Err(LabError::Missing(if tool == "tc" { "tc" } else { "nft" }));
            }
        }
        Ok(())
    }

    /// Create the namespace `<prefix>-<name>` with its loopback up; returns its full name.
    pub fn namespace(&mut self, name: &str) -> Result<String, LabError> {
        let full = format!("{}-{name}", self.prefix);
        // The first namespace failing means this machine cannot have them; a later one failing
        // is a bug (e.g. the same name twice).
        let first = self.namespaces.is_empty();
        run("ip", &["netns", "add", &full]).map_err(|e| match e {
            LabError::Command { stderr, .. } if first => LabError::NoNetns(stderr),
            other => other,
        })?;
        self.namespaces.push(full.clone());
        run("ip", &["-n", &full, "link", "set", "lo", "up"])?;
        Ok(full)
    }

    /// Join two namespaces with a veth pair, `a_addr` and `b_addr` in CIDR form
    /// (`10.77.1.1/24`). The pair is created inside the namespaces, never in the host's.
    pub fn veth(&mut self, a: &str, a_addr: &str, b: &str, b_addr: &str) -> Result<(End, End), LabError> {
        let i = self.links;
        self.links += 1;
        let (a_dev, b_dev) = (format!("veth{i}a"), format!("veth{i}b"));
        run(
            "ip",
            &[
                "-n", a, "link", "add", &a_dev, "type", "veth", "peer", "name", &b_dev, "netns", b,
            ],
        )?;
        for (ns, dev, addr) in [(a, &a_dev, a_addr), (b, &b_dev, b_addr)] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", dev])?;
            run("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        let host = |cidr: &str| cidr.split('/').next().unwrap_or(cidr).to_string();
        Ok((
            End {
                ns: a.to_string(),
                dev: a_dev,
                addr: host(a_addr),
            },
            End {
                ns: b.to_string(),
                dev: b_dev,
                addr: host(b_addr),
            },
        ))
    }

    /// Limit what leaves `end` to `rate` bits/s with a token bucket of `burst` bytes and a queue
    /// of `limit` bytes (tail drop beyond it).
    pub fn tbf(&self, end: &End, rate: u64, burst: usize, limit: usize) -> Result<(), LabError> {
        let (rate, burst, limit) = (format!("{rate}bit"), burst.to_string(), limit.to_string());
        self.exec(
            &end.ns,
            "tc",
            &[
                "qdisc", "replace", "dev", &end.dev, "root", "tbf", "rate", &rate, "burst", &burst, "limit",
                &limit,
            ],
        )
        .map(drop)
        .map_err(unsupported("shape with tc tbf"))
    }

    /// Drop the fraction `loss` (0 to 1) of the packets leaving `end`, at random (nftables
    /// `numgen random`, in parts per million).
    pub fn loss(&self, end: &End, loss: f64) -> Result<(), LabError> {
        let ppm = (loss.clamp(0.0, 1.0) * 1e6).round() as u64;
        let mut script = String::new();
        // One table per lab namespace; adding it again is harmless.
        let _ = writeln!(script, "table inet netem {{");
        let _ = writeln!(
            script,
            "  chain egress {{ type filter hook postrouting priority 0; policy accept; }}"
        );
        let _ = writeln!(script, "}}");
        let _ = writeln!(
            script,
            "add rule inet netem egress oifname \"{}\" numgen random mod 1000000 < {ppm} counter drop",
            end.dev
        );
        let path = std::env::temp_dir().join(format!("{}-{}.nft", self.prefix, end.dev));
        std::fs::write(&path, script).map_err(|source| LabError::Spawn {
            command: format!("write {}", path.display()),
            source,
        })?;
        let result = self.exec(&end.ns, "nft", &["-f", &path.to_string_lossy()]);
        let _ = std::fs::remove_file(&path);
        result
            .map(drop)
            .map_err(unsupported("drop at random with nftables numgen"))
    }

    /// Packets the loss rule on `end` has dropped so far.
    pub fn loss_count(&self, end: &End) -> Result<u64, LabError> {
        let out = self.exec(&end.ns, "nft", &["list", "chain", "inet", "netem", "egress"])?;
        let needle = format!("oifname \"{}\"", end.dev);
        let line = out.lines().find(|l| l.contains(&needle)).unwrap_or_default();
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                return Ok(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
            }
        }
        Ok(0)
    }

    /// Run a command to completion inside a namespace; returns its stdout.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that will run inside a namespace (`ip netns exec NS program`); pass it to
    /// [`Lab::spawn`] to have the lab stop it, or run it to completion yourself.
    pub fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Start a long-running command; the lab kills it when dropped. Returns its index for
    /// [`Lab::child`].
    pub fn spawn(&mut self, mut cmd: Command) -> Result<usize, LabError> {
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: format!("{cmd:?}"),
            source,
        })?;
        self.children.push(child);
        Ok(self.children.len() - 1)
    }

    /// A process started with [`Lab::spawn`].
    pub fn child(&mut self, index: usize) -> Option<&mut Child> {
        self.children.get_mut(index)
    }

    /// The names of the namespaces created so far.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            remove_namespace(&ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's own namespaces vanish on drop, even when the owner panics.
    #[test]
    fn namespaces_are_removed_on_drop_and_panic() {
        let mut lab = match Lab::new() {
            Ok(l) => l,
            Err(e) if e.is_unavailable() => return eprintln!("skipped: {e}"),
            Err(e) => panic!("{e}"),
        };
        let ns = lab.namespace("drop").unwrap();
        assert!(run("ip", &["netns", "list"]).unwrap().contains(&ns));
        drop(lab);
        assert!(!run("ip", &["netns", "list"]).unwrap().contains(&ns));

        let name = std::sync::Mutex::new(String::new());
        let result = std::panic::catch_unwind(|| {
            let mut lab = Lab::new().unwrap();
            *name.lock().unwrap() = lab.namespace("panic").unwrap();
            panic!("a failing test");
        });
        assert!(result.is_err());
        let ns = name.lock().unwrap().clone();
        assert!(!ns.is_empty());
        assert!(
            !run("ip", &["netns", "list"]).unwrap().contains(&ns),
            "{ns} left behind"
        );
    }

    #[test]
    fn stale_namespaces_of_dead_processes_are_swept() {
        if Lab::new().is_err() {
            return eprintln!("skipped: no namespaces here");
        }
        // A pid far above pid_max cannot be alive.
        let stale = format!("{PREFIX}99999999-0-stale");
        run("ip", &["netns", "add", &stale]).unwrap();
        let _lab = Lab::new().unwrap();
        assert!(!run("ip", &["netns", "list"]).unwrap().contains(&stale));
    }

    #[test]
    fn a_failing_command_is_a_typed_error() {
        let mut lab = match Lab::new() {
            Ok(l) => l,
            Err(e) => return eprintln!("skipped: {e}"),
        };
        let ns = lab.namespace("err").unwrap();
        let err = lab
            .exec(&ns, "ip", &["link", "set", "nosuchdev", "up"])
            .unwrap_err();
        assert!(matches!(err, LabError::Command { .. }), "{err}");
        assert!(!err.is_unavailable());
        // The same namespace twice is a bug in the test, not a missing facility.
        let err = lab.namespace("err").unwrap_err();
        assert!(matches!(err, LabError::Command { .. }), "{err}");
        assert!(!err.is_unavailable());
        assert!(LabError::NotRoot(1000).is_unavailable());
        // A kernel without a qdisc is a missing facility; a wrong device is a bug.
        let kernel = unsupported("shape")(LabError::Command {
            command: "tc".into(),
            stderr: "Error: Specified qdisc kind is unknown.".into(),
        });
        assert!(kernel.is_unavailable(), "{kernel}");
        let bug = lab
            .tbf(
                &End {
                    ns: ns.clone(),
                    dev: "nosuchdev".into(),
                    addr: String::new(),
                },
                1_000_000,
                4000,
                8000,
            )
            .unwrap_err();
        assert!(!bug.is_unavailable(), "{bug}");
        assert!(LabError::Missing("nft").is_unavailable());
    }
}
