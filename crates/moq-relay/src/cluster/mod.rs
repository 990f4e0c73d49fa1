//! Clustering: links to other relays, and the directory kept by root relays.
//!
//! **Links** ([`link`]). `[cluster] connect` lists the relays this one dials. A link is an
//! ordinary moq-lite session in both directions over the relay's one origin: each side
//! announces what it has, with hop lists, and subscribes on demand. The session drivers
//! drop announcements that already passed through us, and the origin picks one route per
//! broadcast (cost, then hops, then a stable hash), so any topology, cycles included,
//! delivers each frame once per relay. Links are redialled forever with capped
//! exponential backoff and jitter.
//!
//! **Directory** ([`directory`]). `[cluster] root` names one or more root relays. Every
//! relay opens a directory session to each root at the reserved path
//! [`DIRECTORY_PATH`], over a separate origin that holds only names:
//! - `node/<id>/<hex of the node URL>`: a relay and where to dial it;
//! - `origin/<id>/<broadcast path>`: a broadcast that relay originates.
//!
//! Roots pass each relay's entries on to every other (hop lists stop them from coming
//! back), so every relay knows which relay originates which broadcast. For a broadcast it
//! has no link route to, a relay announces a placeholder at a prohibitive cost; a viewer
//! subscribing to it makes the relay dial the originating relay directly, and the real
//! route, being cheaper, replaces the placeholder before any media flows. With several
//! roots listed, each relay registers with all of them, so losing one loses nothing;
//! losing every root only stops discovery of new broadcasts.
//!
//! The directory's policy (who may open a directory session) is this module's
//! [`session::Hook`](crate::session::Hook), so the session layer knows nothing of it.

mod allow;
mod directory;
mod link;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use moq_core::{Origin, model::cache::Cache, session};
use moq_native::client;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry as Metrics,
};
use tokio::task::JoinSet;

pub use allow::AllowList;
pub use directory::DirectoryHook;
use link::Link;

use crate::{config, lifecycle::Lifecycle, media::Media};

/// The session path at which every relay serves the cluster directory.
pub const DIRECTORY_PATH: &str = ".cluster";

/// The price of a route learned only from the directory: dearer than any
/// real link, so a real route always wins.
pub const PLACEHOLDER_COST: u64 = 1 << 40;

/// The price of a link without `?cost=`: one per link, like a hop count.
pub const DEFAULT_LINK_COST: u64 = 1;

/// A link silent this long is dead (`[client.quic] idle_timeout` overrides): a killed
/// peer is noticed within a second, so viewers downstream barely pause.
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Links ping after this much quiet (`[client.quic] keep_alive` overrides): five pings,
/// each retransmitted on loss, per idle timeout, so lossy paths (5%) are not declared
/// dead by a few unlucky packets.
pub const LINK_KEEP_ALIVE: Duration = Duration::from_millis(200);

/// Longest wait between two dials of the same peer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Subscriptions and announcements a relay peer may hold on one link.
const LINK_LIMIT: usize = 1 << 20;

/// What kind of link a dial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Listed in `[cluster] connect`.
    Static,
    /// A directory session to a root.
    Root,
    /// Dialled to reach a broadcast found in the directory.
    OnDemand,
}

impl LinkKind {
    const ALL: [Self; 3] = [Self::Static, Self::Root, Self::OnDemand];

    /// The name used in `/nodes` and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Root => "root",
            Self::OnDemand => "on-demand",
        }
    }
}

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Dialling.
    Connecting,
    /// The session is up.
    Up,
    /// The last attempt or session failed; a redial is scheduled.
    Down,
}

impl LinkState {
    const ALL: [Self; 3] = [Self::Connecting, Self::Up, Self::Down];

    /// The name used in `/nodes` and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// The state of one link, for `/nodes` and the metrics.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    /// The URL dialled, token removed.
    pub url: String,
    /// Static, root or on-demand.
    pub kind: LinkKind,
    /// Price of the link.
    pub cost: u64,
    /// Where the link is in its life.
    pub state: LinkState,
    /// When the current state began.
    pub since: SystemTime,
    /// Sessions established so far.
    pub connects: u64,
    /// Why the last attempt or session ended.
    pub last_error: Option<String>,
}

impl LinkStatus {
    /// JSON for `/nodes`.
    pub fn to_json(&self) -> serde_json::Value {
        let since = self
            .since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "url": self.url,
            "kind": self.kind.as_str(),
            "cost": self.cost,
            "state": self.state.as_str(),
            "since": since,
            "connects": self.connects,
            "last_error": self.last_error,
        })
    }
}

/// Labels of the cluster link gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabels {
    kind: &'static str,
    state: &'static str,
}

/// What the cluster knows, shared with the directory hook and the admin endpoints.
#[derive(Debug)]
pub struct Cluster {
    /// The directory origin: names only, never media.
    pub directory: Origin,
    /// This relay's public URL, if configured.
    pub node: Option<String>,
    /// Every link by key (`static <url>`, `root <url>`, `node <id>`).
    links: Mutex<BTreeMap<String, LinkStatus>>,
    /// Node URLs learned from the directory, by hop id.
    nodes: Mutex<HashMap<u64, String>>,
    gauge: Family<LinkLabels, Gauge>,
    /// Directory entries refused, by reason.
    refused: Family<crate::metrics::ReasonLabels, prometheus_client::metrics::counter::Counter>,
    /// Which directory session writes each relay id's entries (while it lives).
    claims: Mutex<HashMap<u64, std::sync::Weak<()>>>,
    /// When the cluster token in use expires (Unix seconds; 0 without one or an `exp`).
    token_expiry: Gauge,
    /// Links that went down, by kind: a link flapping shows as a fast-growing count.
    downs: Family<LinkLabels, prometheus_client::metrics::counter::Counter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// Empty cluster state whose link gauge is registered in `metrics`; every
    /// kind × state series exists from the start, at zero.
    pub fn new(node: Option<String>, metrics: &mut Metrics) -> Arc<Self> {
        let gauge = Family::<LinkLabels, Gauge>::default();
        metrics.register(
            "moq_relay_cluster_links",
            "Cluster links by kind and state",
            gauge.clone(),
        );
        let refused = Family::default();
        metrics.register(
            "moq_relay_cluster_directory_refused",
            "Cluster directory entries refused, by reason",
            refused.clone(),
        );
        let token_expiry = Gauge::default();
        metrics.register(
            "moq_relay_cluster_token_expiry_timestamp_seconds",
            "When the cluster token the relay dials with expires (Unix seconds; 0: none or no exp)",
            token_expiry.clone(),
        );
        let downs = Family::default();
        metrics.register(
            "moq_relay_cluster_link_downs",
            "Cluster links that went down (a session ended or a dial failed), by kind",
            downs.clone(),
        );
        let this = Self {
            directory: Origin::new(Cache::default(), Duration::ZERO),
            node,
            links: Mutex::default(),
            nodes: Mutex::default(),
            gauge,
            refused,
            claims: Mutex::default(),
            token_expiry,
            downs,
        };
        for kind in LinkKind::ALL {
            this.downs
                .get_or_create(&LinkLabels {
                    kind: kind.as_str(),
                    state: LinkState::Down.as_str(),
                })
                .inc_by(0);
        }
        this.recount(&BTreeMap::new());
        this.refuse_count("url_not_allowed", 0);
        this.refuse_count("not_the_writer", 0);
        Arc::new(this)
    }

    /// Every link, sorted by key.
    pub fn links(&self) -> Vec<LinkStatus> {
        lock(&self.links).values().cloned().collect()
    }

    /// Known relays of the cluster: hop id and URL.
    pub fn nodes(&self) -> Vec<(u64, String)> {
        let mut nodes: Vec<_> = lock(&self.nodes).iter().map(|(k, v)| (*k, v.clone())).collect();
        nodes.sort();
        nodes
    }

    /// Whether this relay can reach the rest of the cluster: true without configured
    /// links, or while *some* link is up (a static one, a root, or an on-demand link to an
    /// origin), so losing one tier does not take every edge out of rotation at once.
    pub fn connected(&self) -> bool {
        let links = lock(&self.links);
        let configured = links
            .values()
            .any(|l| matches!(l.kind, LinkKind::Static | LinkKind::Root));
        !configured || links.values().any(|l| l.state == LinkState::Up)
    }

    /// Whether the directory session `session` may write entries for relay `id`: it may
    /// if no other live session writes them.
    fn claim(&self, id: u64, session: &Arc<()>) -> bool {
        let mut claims = lock(&self.claims);
        match claims.get(&id).and_then(std::sync::Weak::upgrade) {
            Some(holder) => Arc::ptr_eq(&holder, session),
            None => {
                claims.insert(id, Arc::downgrade(session));
                true
            }
        }
    }

    /// Count `n` refused directory entries for `reason`.
    fn refuse_count(&self, reason: &str, n: u64) {
        self.refused
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    fn insert(&self, key: &str, status: LinkStatus) {
        let mut links = lock(&self.links);
        links.insert(key.to_string(), status);
        self.recount(&links);
    }

    fn remove(&self, key: &str) {
        let mut links = lock(&self.links);
        links.remove(key);
        self.recount(&links);
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut LinkStatus)) {
        let mut links = lock(&self.links);
        if let Some(status) = links.get_mut(key) {
            let before = status.state;
            f(status);
            if status.state == LinkState::Down && before != LinkState::Down {
                self.downs
                    .get_or_create(&LinkLabels {
                        kind: status.kind.as_str(),
                        state: LinkState::Down.as_str(),
                    })
                    .inc();
            }
        }
        self.recount(&links);
    }

    /// Record the expiry of the cluster token just read.
    fn token_read(&self, token: Option<&str>) {
        let exp = token.and_then(moq_auth::unverified_expiry).unwrap_or(0);
        self.token_expiry.set(i64::try_from(exp).unwrap_or(i64::MAX));
    }

    fn recount(&self, links: &BTreeMap<String, LinkStatus>) {
        for kind in LinkKind::ALL {
            for state in LinkState::ALL {
                let n = links
                    .values()
                    .filter(|l| l.kind == kind && l.state == state)
                    .count();
                self.gauge
                    .get_or_create(&LinkLabels {
                        kind: kind.as_str(),
                        state: state.as_str(),
                    })
                    .set(n as i64);
            }
        }
    }
}

/// The quota for a session with another relay of the cluster (a link we dial, a directory
/// session, a peer with a cluster certificate): a relay carries every broadcast of the
/// cluster, far more than one client should.
///
/// The caps on one group's size and frames, and the stream header timeout, stay: a peer
/// relay forwards what its own publishers send, and those caps protect memory wherever the
/// group came from.
pub fn link_quota(session: &session::Quota) -> session::Quota {
    session::Quota {
        max_subscriptions: session.max_subscriptions.max(LINK_LIMIT),
        max_announcements: session.max_announcements.max(LINK_LIMIT),
        max_fetches: session.max_fetches.max(LINK_LIMIT),
        max_track_requests: session.max_track_requests.max(LINK_LIMIT),
        max_announce_requests: session.max_announce_requests.max(LINK_LIMIT),
        max_groups: session.max_groups.max(LINK_LIMIT),
        max_pending_streams: session.max_pending_streams.max(LINK_LIMIT),
        ..session.clone()
    }
}

/// The client settings for dialling peers, from `[client]`.
pub fn client_config(config: &config::Config) -> client::Config {
    let c = &config.client;
    let mut out = client::Config {
        tls: client::ClientTls {
            roots: c.tls.root.clone(),
            system_roots: c.tls.system_roots.unwrap_or(c.tls.root.is_empty()),
            fingerprints: c.tls.fingerprint.iter().map(|f| f.0.clone()).collect(),
            insecure: c.tls.disable_verify == Some(true),
            cert: c.tls.cert.clone(),
            key: c.tls.key.clone(),
        },
        versions: c.version.clone(),
        ..Default::default()
    };
    if let Some(bind) = c.bind.as_ref().and_then(|b| b.socket_addr()) {
        out.bind = bind;
    }
    // A dead peer is noticed by silence alone (a killed process sends nothing):
    // links use a short idle timeout so routes fail over within seconds.
    let link = config::QuicSettings {
        idle_timeout: Some(LINK_IDLE_TIMEOUT),
        keep_alive: Some(LINK_KEEP_ALIVE),
        ..Default::default()
    };
    out.quic = config.client_quic().or(link).apply(out.quic);
    // Links use QUIC only unless [client.websocket] enables the fallback.
    out.websocket.enabled = c.websocket.enabled == Some(true);
    if let Some(delay) = c.websocket.delay {
        out.websocket.delay = delay;
    }
    out
}

/// What the cluster's tasks need, besides the shared [`Cluster`] state.
#[derive(Debug, Clone)]
pub struct Context {
    /// The shared cluster state.
    pub cluster: Arc<Cluster>,
    /// The media plane links carry.
    pub media: Media,
    /// Dials peers.
    pub client: Arc<client::Client>,
    /// The cluster token file (`[cluster] token`), read at every dial.
    pub token_file: Option<std::path::PathBuf>,
    /// The quota of link sessions.
    pub quota: session::Quota,
    /// Hosts the cluster token may be sent to.
    pub allow: Arc<AllowList>,
    /// Drain and shutdown signals.
    pub lifecycle: Lifecycle,
}

/// Run every link and the directory tasks until the relay shuts down.
pub async fn run(context: Context, config: config::Cluster) {
    let mut tasks = JoinSet::new();
    let spawn_link = |tasks: &mut JoinSet<()>, kind: LinkKind, url: String| {
        let key = format!("{} {}", kind.as_str(), redact(&url));
        tasks.spawn(Link::new(context.clone(), kind, key, url, None).run());
    };
    for url in config.peers() {
        spawn_link(&mut tasks, LinkKind::Static, url);
    }
    for url in config.roots() {
        spawn_link(&mut tasks, LinkKind::Root, url);
    }
    tasks.spawn(directory::register(context.clone()));
    tasks.spawn(directory::follow(context.clone()));
    while tasks.join_next().await.is_some() {}
}

/// A random non-zero hop id below 2^53 (exact in JavaScript).
pub fn random_id() -> u64 {
    loop {
        let id = random_u64() & ((1 << 53) - 1);
        if id != 0 {
            return id;
        }
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A URL fit for logs: any `jwt=` value hidden.
pub fn redact(raw: &str) -> String {
    crate::redact::url(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_logs() {
        assert!(!redact("https://p:1/?jwt=secret&cost=2").contains("secret"));
        assert!(!redact("nonsense?jwt=secret").contains("secret"));
    }

    #[test]
    fn random_ids_are_valid_hop_ids() {
        for _ in 0..100 {
            let id = random_id();
            assert!(id > 0 && id < (1 << 53));
        }
    }

    #[test]
    fn link_series_exist_before_any_link() {
        let mut registry = Metrics::default();
        let cluster = Cluster::new(None, &mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"moq_relay_cluster_links{kind="static",state="up"} 0"#),
            "{text}"
        );
        cluster.insert(
            "static x",
            LinkStatus {
                url: "x".into(),
                kind: LinkKind::Static,
                cost: 1,
                state: LinkState::Up,
                since: SystemTime::now(),
                connects: 1,
                last_error: None,
            },
        );
        assert!(cluster.connected());
        cluster.update("static x", |s| s.state = LinkState::Down);
        assert!(!cluster.connected());
        // An on-demand link that carries media keeps the relay in rotation (issue 14: a
        // regional outage must not pull every edge out at once).
        cluster.insert(
            "node 9",
            LinkStatus {
                url: "y".into(),
                kind: LinkKind::OnDemand,
                cost: 1000,
                state: LinkState::Up,
                since: SystemTime::now(),
                connects: 1,
                last_error: None,
            },
        );
        assert!(cluster.connected());
        cluster.remove("node 9");
        assert!(!cluster.connected());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"moq_relay_cluster_links{kind="static",state="down"} 1"#));
        assert!(text.contains(r#"moq_relay_cluster_links{kind="static",state="up"} 0"#));
    }
}
