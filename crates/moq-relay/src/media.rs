//! The media plane that client sessions and cluster links share: one origin (the
//! broadcast table and its cache), the number of upstream subscriptions held, the media
//! counters, and this relay's hop id. Cheap to clone; every clone is the same plane.
//!
//! Also here: the memory the cache's budget is sized from, and the task that sweeps the
//! cache so quiet tracks age out too.

use std::{sync::Arc, time::Duration};

use moq_core::{
    Origin,
    model::cache::Cache,
    session,
    stats::{Stats, Upstream},
};

/// How often the cache is swept (groups past their age, and the byte budget).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
use moq_proto::Version;

/// The shared media plane.
#[derive(Debug, Clone)]
pub struct Media {
    /// The broadcast table.
    pub origin: Origin,
    /// Upstream subscriptions held now, across every session and link.
    pub upstream: Arc<Upstream>,
    /// Media counters, updated by the session drivers.
    pub stats: Arc<Stats>,
    /// This relay's hop id: announcements carrying it are loops and are dropped.
    pub hop: u64,
}

impl Media {
    /// An empty origin over `cache`; broadcasts linger `linger` after their publisher left.
    pub fn new(cache: Cache, linger: Duration, hop: u64) -> Self {
        Self {
            origin: Origin::new(cache, linger),
            upstream: Arc::default(),
            stats: Arc::default(),
            hop,
        }
    }

    /// Upstream subscriptions held now (one per track in use).
    pub fn upstream_subscriptions(&self) -> usize {
        self.upstream.get()
    }

    /// A session configuration wired to this plane: our hop id, the shared counters and
    /// the upstream subscription count. The caller sets what it may publish and consume.
    pub fn session_config(&self, version: Version) -> session::Config {
        let mut config = session::Config::new(version);
        config.hop = self.hop;
        config.stats = self.stats.clone();
        config.upstream = self.upstream.clone();
        config
    }
}

/// Sweep `cache` every [`SWEEP_INTERVAL`], forever: groups past their age leave even on
/// tracks that receive nothing new.
pub async fn sweep(cache: Cache) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        cache.sweep();
    }
}

/// The memory this relay may use: its cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) where there is one, else the host's total (8 GiB if neither
/// can be read).
pub fn total_memory() -> u64 {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/proc/self/cgroup").and_then(|cgroups| cgroup_limit(&cgroups, read));
    let host = <procfs::Meminfo as procfs::Current>::current()
        .map(|m| m.mem_total)
        .ok();
    match (cgroup, host) {
        (Some(limit), Some(host)) => limit.min(host),
        (Some(limit), None) => limit,
        (None, Some(host)) => host,
        (None, None) => 8 << 30,
    }
}

/// The memory limit of the cgroup `cgroups` (the text of `/proc/self/cgroup`) names,
/// reading its files with `read`; `None` when unlimited or unknown. Inside a container the
/// cgroup's own directory is usually mounted at the root, so that is tried too.
fn cgroup_limit(cgroups: &str, read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let path = path.trim_end_matches('/');
        let files = if controllers.is_empty() {
            [
                format!("/sys/fs/cgroup{path}/memory.max"),
                "/sys/fs/cgroup/memory.max".to_string(),
            ]
        } else if controllers.split(',').any(|c| c == "memory") {
            [
                format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"),
                "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
            ]
        } else {
            continue;
        };
        if let Some(limit) = files
            .iter()
            .find_map(|file| read(file).and_then(|t| parse_limit(&t)))
        {
            return Some(limit);
        }
    }
    None
}

/// A cgroup memory limit: `max` (v2) and v1's "no limit" (a page-rounded `i64::MAX`) are none.
fn parse_limit(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|&limit| limit < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let entries: Vec<(String, String)> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |path| entries.iter().find(|(k, _)| k == path).map(|(_, v)| v.clone())
    }

    #[test]
    fn cgroup_v2_limit_of_our_own_group_or_the_mounted_root() {
        let ours = files(&[("/sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n")]);
        assert_eq!(cgroup_limit("0::/kubepods/pod1\n", ours), Some(512 << 20));
        let root = files(&[("/sys/fs/cgroup/memory.max", "1073741824\n")]);
        assert_eq!(cgroup_limit("0::/\n", root), Some(1 << 30));
        let unlimited = files(&[("/sys/fs/cgroup/memory.max", "max\n")]);
        assert_eq!(cgroup_limit("0::/\n", unlimited), None);
    }

    #[test]
    fn cgroup_v1_limit_and_its_unlimited_value() {
        let cgroups = "9:name=systemd:/\n4:cpu,memory:/docker/abc\n0::/\n";
        let limited = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "268435456",
        )]);
        assert_eq!(cgroup_limit(cgroups, limited), Some(256 << 20));
        let unlimited = files(&[(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712",
        )]);
        assert_eq!(cgroup_limit(cgroups, unlimited), None);
        assert_eq!(cgroup_limit("garbage", files(&[])), None);
    }

    #[test]
    fn total_memory_is_a_real_number() {
        let total = total_memory();
        assert!(total > 16 << 20 && total < 1 << 50, "{total}");
    }
}
