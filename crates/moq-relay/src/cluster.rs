//! Clustering: links to other relays, and the directory kept by root relays.
//!
//! **Links.** `[cluster] connect` lists the relays this one dials. A link is an
//! ordinary moq-lite session in both directions over the relay's one origin:
//! each side announces what it has, with hop lists, and subscribes on demand.
//! The session drivers drop announcements that already passed through us, and
//! the origin picks one route per broadcast (cost, then hops, then a stable
//! hash), so any topology, cycles included, delivers each frame once per relay.
//! Links are redialled forever with capped exponential backoff and jitter.
//!
//! **Directory.** `[cluster] root` names one or more root relays. Every relay
//! opens a directory session to each root at the reserved path
//! [`DIRECTORY_PATH`], over a separate origin that holds only names:
//! - `node/<id>/<hex of the node URL>`: a relay and where to dial it;
//! - `origin/<id>/<broadcast path>`: a broadcast that relay originates.
//!
//! Roots pass each relay's entries on to every other (hop lists stop them
//! from coming back), so every relay knows which relay originates which
//! broadcast. For a broadcast it has no link route to, a relay announces a
//! placeholder at a prohibitive cost; a viewer subscribing to it makes the
//! relay dial the originating relay directly, and the real route, being
//! cheaper, replaces the placeholder before any media flows. With several
//! roots listed, each relay registers with all of them, so losing one loses
//! nothing; losing every root only stops discovery of new broadcasts.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasher, Hasher},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use moq_core::{
    BroadcastProducer, Error as CoreError, Origin,
    model::{Publication, cache::Cache},
    session::{self, Permissions},
};
use moq_native::{adapter::MoqSession, client};
use moq_proto::{Hops, Path};
use tokio::task::JoinSet;
use url::Url;

use crate::relay::Shared;

/// The session path at which every relay serves the cluster directory.
pub const DIRECTORY_PATH: &str = ".cluster";

/// The price of a route learned only from the directory: dearer than any
/// real link, so a real route always wins.
pub const PLACEHOLDER_COST: u64 = 1 << 40;

/// The price of a link without `?cost=`: one per link, like a hop count.
pub const DEFAULT_LINK_COST: u64 = 1;

/// A link silent this long is dead (`[client.quic] idle_timeout` overrides).
pub const LINK_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Links ping after this much quiet (`[client.quic] keep_alive` overrides).
pub const LINK_KEEP_ALIVE: Duration = Duration::from_millis(750);

/// First redial delay; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);

/// Longest wait between two dials of the same peer.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How long a viewer of a placeholder waits for the real route.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(5);

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
    /// The name used in `/nodes` and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Root => "root",
            Self::OnDemand => "on-demand",
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
    /// `connecting`, `up` or `down`.
    pub state: &'static str,
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
            "state": self.state,
            "since": since,
            "connects": self.connects,
            "last_error": self.last_error,
        })
    }
}

/// Cluster state shared with the listener (directory sessions) and `/nodes`.
#[derive(Debug)]
pub struct ClusterState {
    /// The directory origin: names only, never media.
    pub directory: Origin,
    /// Every link by key (`static <url>`, `root <url>`, `node <id>`).
    links: Mutex<BTreeMap<String, LinkStatus>>,
    /// Node URLs learned from the directory, by hop id.
    nodes: Mutex<HashMap<u64, String>>,
}

impl Default for ClusterState {
    fn default() -> Self {
        Self {
            directory: Origin::new(Cache::default(), Duration::ZERO),
            links: Mutex::default(),
            nodes: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterState {
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

    /// Whether this relay can reach the rest of the cluster: false when it has
    /// static links and none is up (an edge cut off from every upstream
    /// should be taken out of rotation).
    pub fn connected(&self) -> bool {
        let links = lock(&self.links);
        let mut configured = links.values().filter(|l| l.kind == LinkKind::Static).peekable();
        configured.peek().is_none()
            || links
                .values()
                .any(|l| l.kind == LinkKind::Static && l.state == "up")
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut LinkStatus)) {
        if let Some(status) = lock(&self.links).get_mut(key) {
            f(status);
        }
    }
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
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A link's URL: its `?cost=` removed (and returned), and the cluster token
/// added as `?jwt=` unless the URL carries one.
fn prepare(raw: &str, token: Option<&str>) -> Result<(Url, u64), String> {
    let mut url = Url::parse(raw).map_err(|e| format!("invalid peer URL '{}': {e}", redact(raw)))?;
    let mut cost = DEFAULT_LINK_COST;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        if k == "cost" {
            cost = v
                .parse()
                .map_err(|_| format!("peer URL '{}': cost must be a whole number", redact(raw)))?;
        } else {
            kept.push((k.into_owned(), v.into_owned()));
        }
    }
    if let Some(token) = token
        && !kept.iter().any(|(k, _)| k == "jwt")
    {
        kept.push(("jwt".to_string(), token.to_string()));
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url, cost))
}

/// A URL fit for logs: any `jwt=` value hidden.
pub fn redact(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.query().is_some() => {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "jwt" {
                        "…".to_string()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => raw.split('?').next().unwrap_or_default().to_string(),
    }
}

/// The cluster token for outbound dials: `MOQ_CLUSTER_JWT`, else the file
/// named by `[cluster] token` (read at every dial, so it can be rotated).
fn token(file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    if let Ok(jwt) = std::env::var("MOQ_CLUSTER_JWT")
        && !jwt.trim().is_empty()
    {
        return Ok(Some(jwt.trim().to_string()));
    }
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the cluster token {}: {e}", file.display()))?;
    Ok(Some(text.trim().to_string()))
}

/// Limits for a session with another relay of the cluster (a link we dial,
/// a directory session, a peer with a cluster certificate): a relay carries
/// every broadcast of the cluster, far more than one client should.
pub fn link_limits(session: &session::Limits) -> session::Limits {
    session::Limits {
        max_subscriptions: session.max_subscriptions.max(LINK_LIMIT),
        max_announcements: session.max_announcements.max(LINK_LIMIT),
        ..session.clone()
    }
}

/// Subscriptions and announcements a relay peer may hold on one link.
const LINK_LIMIT: usize = 1 << 20;

/// The client settings for dialling peers, from `[client]`.
pub fn client_config(config: &crate::config::Config) -> client::Config {
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
    out.quic.idle_timeout = c.quic.idle_timeout.unwrap_or(LINK_IDLE_TIMEOUT);
    out.quic.keep_alive = Some(c.quic.keep_alive.unwrap_or(LINK_KEEP_ALIVE));
    out
}

/// Everything the cluster tasks need.
pub struct Cluster {
    shared: Arc<Shared>,
    client: Arc<client::Client>,
    config: crate::config::Cluster,
    tasks: JoinSet<()>,
}

impl Cluster {
    /// Prepare the cluster tasks (dialling starts in [`run`](Self::run)).
    pub fn new(shared: Arc<Shared>, client: client::Client, config: crate::config::Cluster) -> Self {
        Self {
            shared,
            client: Arc::new(client),
            config,
            tasks: JoinSet::new(),
        }
    }

    /// Run every link and the directory tasks until dropped.
    pub async fn run(mut self) {
        let own_node = self.config.node.clone();
        for url in self.config.peers() {
            self.spawn_link(LinkKind::Static, format!("static {}", redact(&url)), url, None);
        }
        for url in self.config.roots() {
            self.spawn_link(LinkKind::Root, format!("root {}", redact(&url)), url, None);
        }
        self.tasks.spawn(register(self.shared.clone(), own_node));
        self.tasks.spawn(follow_directory(
            self.shared.clone(),
            self.client.clone(),
            self.config.token.clone(),
        ));
        while self.tasks.join_next().await.is_some() {}
    }

    fn spawn_link(&mut self, kind: LinkKind, key: String, url: String, node: Option<u64>) {
        let link = Link {
            shared: self.shared.clone(),
            client: self.client.clone(),
            token_file: self.config.token.clone(),
            kind,
            key,
            url,
            node,
        };
        self.tasks.spawn(link.run());
    }
}

struct Link {
    shared: Arc<Shared>,
    client: Arc<client::Client>,
    token_file: Option<std::path::PathBuf>,
    kind: LinkKind,
    key: String,
    url: String,
    /// The relay an on-demand link reaches: it ends once that relay leaves the directory.
    node: Option<u64>,
}

impl Link {
    async fn run(self) {
        let cluster = &self.shared.cluster;
        let shown = redact(&self.url);
        lock(&cluster.links).insert(
            self.key.clone(),
            LinkStatus {
                url: shown.clone(),
                kind: self.kind,
                cost: match self.kind {
                    LinkKind::Root => 0,
                    _ => prepare(&self.url, None).map_or(DEFAULT_LINK_COST, |(_, c)| c),
                },
                state: "connecting",
                since: SystemTime::now(),
                connects: 0,
                last_error: None,
            },
        );
        self.shared.metrics.cluster_links_changed(&cluster.links());
        let mut backoff = MIN_BACKOFF;
        loop {
            if *self.shared.draining.borrow() {
                break;
            }
            let started = Instant::now();
            let error = match self.session().await {
                Ok(()) => "session closed".to_string(),
                Err(err) => err,
            };
            tracing::warn!(url = %shown, kind = self.kind.as_str(), error = %error, "cluster link down; will retry");
            cluster.update(&self.key, |s| {
                s.state = "down";
                s.since = SystemTime::now();
                s.last_error = Some(error.clone());
            });
            self.shared.metrics.cluster_links_changed(&cluster.links());
            if let Some(node) = self.node
                && !lock(&cluster.nodes).contains_key(&node)
            {
                tracing::info!(url = %shown, "relay left the directory; dropping its on-demand link");
                break;
            }
            if started.elapsed() > STABLE {
                backoff = MIN_BACKOFF;
            }
            // Full jitter on the upper half, so relays restarted together spread out.
            let jitter = Duration::from_millis(random_u64() % (backoff.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(backoff / 2 + jitter).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        lock(&cluster.links).remove(&self.key);
        self.shared.metrics.cluster_links_changed(&cluster.links());
    }

    /// One dial and, if it works, the session until it ends.
    async fn session(&self) -> Result<(), String> {
        let shared = &self.shared;
        let cluster = &shared.cluster;
        let token = token(self.token_file.as_deref())?;
        let (mut url, cost) = prepare(&self.url, token.as_deref())?;
        if self.kind == LinkKind::Root {
            url.set_path(&format!("/{DIRECTORY_PATH}"));
        }
        cluster.update(&self.key, |s| {
            s.state = "connecting";
            s.since = SystemTime::now();
        });
        shared.metrics.cluster_links_changed(&cluster.links());
        let connected = self
            .client
            .connect(&url)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut config = session::Config::new(connected.version);
        let origin = match self.kind {
            LinkKind::Root => cluster.directory.clone(),
            _ => shared.origin.clone(),
        };
        config.publish = Some(origin.clone());
        config.consume = Some(origin);
        config.permissions = Permissions::all();
        config.hop = shared.hop;
        config.cost = match self.kind {
            LinkKind::Root => 0,
            _ => cost,
        };
        config.stats = shared.stats.clone();
        config.upstream = shared.upstream.clone();
        config.shutdown = Some(shared.draining.subscribe());
        config.limits = link_limits(&shared.limits.session);
        config.setup.path = connected.setup_path(&url);
        let session = MoqSession::new(connected.session, connected.transport);
        let version = connected.version;
        let driver = session::run(session.clone(), config);
        tokio::pin!(driver);
        tracing::info!(url = %redact(url.as_str()), kind = self.kind.as_str(), %version, "cluster link up");
        cluster.update(&self.key, |s| {
            s.state = "up";
            s.since = SystemTime::now();
            s.connects += 1;
            s.last_error = None;
        });
        shared.metrics.cluster_links_changed(&cluster.links());
        let result = driver.await;
        moq_core::transport::Session::close(&session, 0, "link closed");
        match result {
            Ok(()) => Ok(()),
            Err(CoreError::Transport(detail)) => Err(detail),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Keep this relay's entries in the directory: its node URL, and every
/// broadcast published here by a client (routes with no hops).
async fn register(shared: Arc<Shared>, node: Option<String>) {
    let directory = &shared.cluster.directory;
    let hop = shared.hop;
    // Without a URL nobody could dial us for our broadcasts: list none.
    let Some(url) = node else { return };
    let Ok(path) = Path::new(&format!("node/{hop}/{}", hex(url.as_bytes()))) else {
        tracing::warn!("cluster.node is too long to register with the root");
        return;
    };
    let _node = Name::publish(directory, path);
    let mut own: HashMap<Path, Name> = HashMap::new();
    let mut announced = shared.origin.announced(Path::empty());
    while let Some(event) = announced.next().await {
        let local = event.broadcast.is_some() && event.hops.is_empty();
        if !local {
            if let Some(name) = own.remove(&event.suffix) {
                name.finish();
            }
            continue;
        }
        if own.contains_key(&event.suffix) {
            continue;
        }
        let Ok(path) = Path::new(&format!("origin/{hop}/{}", event.suffix)) else {
            continue;
        };
        own.insert(event.suffix, Name::publish(directory, path));
    }
}

/// A directory entry: an empty broadcast whose path is the information.
struct Name {
    publication: Publication,
    /// Kept alive with the entry: a dropped producer ends the broadcast.
    _broadcast: BroadcastProducer,
}

impl Name {
    fn publish(directory: &Origin, path: Path) -> Self {
        let broadcast = BroadcastProducer::new(Cache::default());
        let publication = directory.publish(path, broadcast.consume(), Hops::new());
        Self {
            publication,
            _broadcast: broadcast,
        }
    }

    /// Withdraw the entry now (no linger).
    fn finish(self) {
        self.publication.finish();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// Parse `<id>/<rest>`.
fn split_id(suffix: &Path) -> Option<(u64, &str)> {
    let (id, rest) = suffix.as_str().split_once('/')?;
    Some((id.parse().ok()?, rest))
}

/// Follow the directory: learn node URLs, and offer a placeholder route for
/// every broadcast another relay originates.
async fn follow_directory(
    shared: Arc<Shared>,
    client: Arc<client::Client>,
    token_file: Option<std::path::PathBuf>,
) {
    let directory = shared.cluster.directory.clone();
    let mut announced = directory.announced(Path::empty());
    let mut placeholders: HashMap<(u64, Path), Placeholder> = HashMap::new();
    let mut on_demand: JoinSet<()> = JoinSet::new();
    let (wanted_tx, mut wanted_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut dialled: HashMap<u64, tokio::task::AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { break };
                let present = event.broadcast.is_some();
                let mut segments = event.suffix.as_str().splitn(2, '/');
                let kind = segments.next().unwrap_or_default();
                let Some(rest) = segments.next().and_then(|r| Path::new(r).ok()) else { continue };
                let Some((id, tail)) = split_id(&rest) else { continue };
                if id == shared.hop {
                    continue;
                }
                match kind {
                    "node" => {
                        let mut nodes = lock(&shared.cluster.nodes);
                        match (present, unhex(tail)) {
                            (true, Some(url)) => {
                                if nodes.insert(id, url.clone()).as_ref() != Some(&url) {
                                    tracing::info!(node = id, %url, "relay joined the directory");
                                }
                            }
                            (false, _) => {
                                if nodes.remove(&id).is_some() {
                                    tracing::info!(node = id, "relay left the directory");
                                }
                            }
                            (true, None) => tracing::debug!(suffix = %event.suffix, "malformed node entry"),
                        }
                    }
                    "origin" => {
                        let Ok(path) = Path::new(tail) else { continue };
                        let key = (id, path);
                        if present {
                            if let std::collections::hash_map::Entry::Vacant(slot) = placeholders.entry(key) {
                                let path = slot.key().1.clone();
                                slot.insert(Placeholder::new(&shared, id, path, wanted_tx.clone()));
                            }
                        } else if let Some(placeholder) = placeholders.remove(&key) {
                            placeholder.end();
                        }
                    }
                    _ => {}
                }
            }
            Some(id) = wanted_rx.recv() => {
                if dialled.get(&id).is_some_and(|h| !h.is_finished()) {
                    continue;
                }
                let Some(url) = lock(&shared.cluster.nodes).get(&id).cloned() else {
                    tracing::info!(node = id, "a viewer wants a broadcast of a relay whose URL is unknown");
                    continue;
                };
                tracing::info!(node = id, url = %redact(&url), "dialling the originating relay on demand");
                let link = Link {
                    shared: shared.clone(),
                    client: client.clone(),
                    token_file: token_file.clone(),
                    kind: LinkKind::OnDemand,
                    key: format!("node {id}"),
                    url,
                    node: Some(id),
                };
                dialled.insert(id, on_demand.spawn(link.run()));
            }
            Some(_) = on_demand.join_next() => {}
        }
    }
}

/// A route to a broadcast known only from the directory.
struct Placeholder {
    publication: Publication,
    task: tokio::task::JoinHandle<()>,
}

impl Placeholder {
    fn new(shared: &Shared, node: u64, path: Path, wanted: tokio::sync::mpsc::UnboundedSender<u64>) -> Self {
        let mut broadcast = BroadcastProducer::dynamic(shared.origin.cache().clone());
        let hops = Hops::from_ids(vec![node]).unwrap_or_default();
        let publication = shared
            .origin
            .publish_route(path, broadcast.consume(), hops, PLACEHOLDER_COST);
        let task = tokio::spawn(async move {
            let mut waiting = JoinSet::new();
            loop {
                tokio::select! {
                    track = broadcast.requested_track() => {
                        let Some(track) = track else { break };
                        let _ = wanted.send(node);
                        // Hold the request: once the real route is up the origin
                        // switches to it and drops this one. If it never comes,
                        // the viewer hears "not found".
                        waiting.spawn(async move {
                            tokio::select! {
                                _ = track.unused() => {}
                                _ = tokio::time::sleep(RESOLVE_TIMEOUT) => track.abort(CoreError::NotFound),
                            }
                        });
                    }
                    Some(_) = waiting.join_next() => {}
                }
            }
        });
        Self { publication, task }
    }

    fn end(self) {
        self.task.abort();
        self.publication.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_and_token_are_read_from_the_url() {
        let (url, cost) = prepare("https://peer:4443/?cost=7", Some("tok")).unwrap();
        assert_eq!(cost, 7);
        assert_eq!(url.as_str(), "https://peer:4443/?jwt=tok");
        let (url, cost) = prepare("https://peer:4443/?jwt=inline", Some("tok")).unwrap();
        assert_eq!(cost, DEFAULT_LINK_COST);
        assert_eq!(url.as_str(), "https://peer:4443/?jwt=inline");
        let (url, _) = prepare("https://peer:4443/", None).unwrap();
        assert_eq!(url.as_str(), "https://peer:4443/");
        assert!(
            prepare("https://peer/?cost=cheap", None)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(prepare("not a url", None).is_err());
    }

    #[test]
    fn tokens_never_reach_logs() {
        assert_eq!(
            redact("https://p:1/?jwt=secret&cost=2"),
            "https://p:1/?jwt=%E2%80%A6&cost=2"
        );
        assert!(!redact("nonsense?jwt=secret").contains("secret"));
    }

    #[test]
    fn node_urls_round_trip_through_a_path_segment() {
        let url = "https://relay.example.com:4443/some/path?x=1";
        assert_eq!(unhex(&hex(url.as_bytes())).as_deref(), Some(url));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn random_ids_are_valid_hop_ids() {
        for _ in 0..100 {
            let id = random_id();
            assert!(id > 0 && id < (1 << 53));
        }
    }
}
