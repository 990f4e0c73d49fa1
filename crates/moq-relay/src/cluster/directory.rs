//! The cluster directory: this relay's entries in it, what it learns from it (node URLs
//! and placeholder routes for remote broadcasts, dialled on demand), and the policy for
//! directory sessions that other relays open to us.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
    time::Duration,
};

use moq_core::{
    BroadcastProducer, Error as CoreError, Origin,
    model::{Publication, cache::Cache},
    session::{self, Permissions},
};
use moq_proto::{Hops, Path};
use tokio::{sync::mpsc, task::JoinSet};

use super::{Cluster, Context, DIRECTORY_PATH, LinkKind, PLACEHOLDER_COST, link::Link, lock, redact};
use crate::{
    gate::{Grant, Refusal},
    session::Hook,
};

/// How long a viewer of a placeholder waits for the real route.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keep this relay's entries in the directory: its node URL, and every
/// broadcast published here by a client (routes with no hops).
pub(super) async fn register(context: Context) {
    let directory = &context.cluster.directory;
    let hop = context.media.hop;
    // Without a URL nobody could dial us for our broadcasts: list none.
    let Some(url) = &context.cluster.node else { return };
    let Ok(path) = Path::new(&format!("node/{hop}/{}", hex::encode(url))) else {
        tracing::warn!("cluster.node is too long to register with the root");
        return;
    };
    let _node = Name::publish(directory, path);
    let mut own: HashMap<Path, Name> = HashMap::new();
    let mut announced = context.media.origin.announced(Path::empty());
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

/// A node URL from its directory segment.
fn unhex(s: &str) -> Option<String> {
    String::from_utf8(hex::decode(s).ok()?).ok()
}

/// Parse `<id>/<rest>`.
fn split_id(suffix: &Path) -> Option<(u64, &str)> {
    let (id, rest) = suffix.as_str().split_once('/')?;
    Some((id.parse().ok()?, rest))
}

/// Follow the directory: learn node URLs, offer a placeholder route for every broadcast
/// another relay originates, and dial that relay when a viewer wants one.
pub(super) async fn follow(context: Context) {
    let mut announced = context.cluster.directory.announced(Path::empty());
    let (wanted, mut wanted_rx) = mpsc::unbounded_channel::<u64>();
    let mut follower = Follower {
        context,
        placeholders: HashMap::new(),
        wanted,
        on_demand: JoinSet::new(),
        dialled: HashMap::new(),
    };
    loop {
        tokio::select! {
            event = announced.next() => {
                let Some(event) = event else { break };
                follower.entry(&event.suffix, event.broadcast.is_some());
            }
            Some(id) = wanted_rx.recv() => follower.dial(id),
            Some(_) = follower.on_demand.join_next() => {}
        }
    }
}

struct Follower {
    context: Context,
    placeholders: HashMap<(u64, Path), Placeholder>,
    wanted: mpsc::UnboundedSender<u64>,
    on_demand: JoinSet<()>,
    dialled: HashMap<u64, tokio::task::AbortHandle>,
}

impl Follower {
    /// A directory entry appeared (`present`) or went away.
    fn entry(&mut self, suffix: &Path, present: bool) {
        let mut segments = suffix.as_str().splitn(2, '/');
        let kind = segments.next().unwrap_or_default();
        let Some(rest) = segments.next().and_then(|r| Path::new(r).ok()) else {
            return;
        };
        let Some((id, tail)) = split_id(&rest) else { return };
        if id == self.context.media.hop {
            return;
        }
        match kind {
            "node" => self.node(id, tail, present),
            "origin" => self.origin(id, tail, present),
            _ => {}
        }
    }

    fn node(&self, id: u64, tail: &str, present: bool) {
        let mut nodes = lock(&self.context.cluster.nodes);
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
            (true, None) => tracing::debug!(node = id, "malformed node entry"),
        }
    }

    fn origin(&mut self, id: u64, tail: &str, present: bool) {
        let Ok(path) = Path::new(tail) else { return };
        let key = (id, path);
        if present {
            if let Entry::Vacant(slot) = self.placeholders.entry(key) {
                let path = slot.key().1.clone();
                let placeholder = Placeholder::new(&self.context, id, path, self.wanted.clone());
                slot.insert(placeholder);
            }
        } else if let Some(placeholder) = self.placeholders.remove(&key) {
            placeholder.end();
        }
    }

    /// A viewer wants a broadcast of relay `id`: dial it, unless a dial is running.
    fn dial(&mut self, id: u64) {
        if self.dialled.get(&id).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some(url) = lock(&self.context.cluster.nodes).get(&id).cloned() else {
            tracing::info!(
                node = id,
                "a viewer wants a broadcast of a relay whose URL is unknown"
            );
            return;
        };
        if !url::Url::parse(&url).is_ok_and(|u| self.context.allow.allows(&u)) {
            tracing::warn!(
                node = id,
                url = %redact(&url),
                "not dialling a relay named by the directory: its host is not in [cluster] allow (add the host \
                 or its network there to let the cluster token go to it)"
            );
            self.context.cluster.refuse_count("url_not_allowed", 1);
            return;
        }
        tracing::info!(node = id, url = %redact(&url), "dialling the originating relay on demand");

        let link = Link::new(
            self.context.clone(),
            LinkKind::OnDemand,
            format!("node {id}"),
            url,
            Some(id),
        );
        self.dialled.insert(id, self.on_demand.spawn(link.run()));
    }
}

/// A route to a broadcast known only from the directory.
struct Placeholder {
    publication: Publication,
    task: tokio::task::JoinHandle<()>,
}

impl Placeholder {
    fn new(context: &Context, node: u64, path: Path, wanted: mpsc::UnboundedSender<u64>) -> Self {
        let origin = &context.media.origin;
        let mut broadcast = BroadcastProducer::dynamic(origin.cache().clone());
        let hops = Hops::from_ids(vec![node]).unwrap_or_default();
        let publication = origin.publish_route(path, broadcast.consume(), hops, PLACEHOLDER_COST);
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

/// The policy for directory sessions other relays open to us: they exchange names
/// (never media) and must be allowed to both publish and subscribe there. Directory
/// entries make relays dial URLs with the cluster token, so anonymous writers are
/// refused wherever tokens are in use.
#[derive(Debug)]
pub struct DirectoryHook {
    cluster: Arc<Cluster>,
    /// Our own hop id: no peer may write entries naming it.
    hop: u64,
    tokens_in_use: bool,
    quota: session::Quota,
}

impl DirectoryHook {
    /// The hook for `cluster`'s directory; `tokens_in_use` when the gate verifies tokens.
    pub fn new(cluster: Arc<Cluster>, hop: u64, tokens_in_use: bool, quota: session::Quota) -> Self {
        Self {
            cluster,
            hop,
            tokens_in_use,
            quota,
        }
    }
}

impl Hook for DirectoryHook {
    fn configure(&self, grant: &Grant, config: &mut session::Config) -> Option<Result<(), Refusal>> {
        if grant.root.as_str() != DIRECTORY_PATH {
            return None;
        }
        if grant.is_anonymous() && self.tokens_in_use {
            return Some(Err(Refusal::unauthorized(
                "cluster_anonymous",
                "cluster directory refused: no cluster token or client certificate",
            )));
        }
        let all = Path::empty();
        if !(grant.permissions.can_publish(&all) && grant.permissions.can_subscribe(&all)) {
            return Some(Err(Refusal::unauthorized(
                "cluster_scope",
                "cluster directory refused: the token does not cover publish and subscribe",
            )));
        }
        config.publish = Some(self.cluster.directory.clone());
        config.consume = Some(self.cluster.directory.clone());
        config.root = Path::empty();
        config.permissions = Permissions::all();
        config.quota = self.quota.clone();
        config.accept = Some(self.writer_only());
        Some(Ok(()))
    }
}

impl DirectoryHook {
    /// The filter for one directory session: it may write only entries that name
    /// itself (`node/<id>/…` and `origin/<id>/…` whose route is exactly `[id]`: the
    /// peer's own SETUP id), never our id, and only an id no other live directory session
    /// holds. Anything else is refused and counted; the first session to write an id
    /// keeps it while it lives.
    fn writer_only(&self) -> session::AnnounceFilter {
        let cluster = self.cluster.clone();
        let own = self.hop;
        let session = Arc::new(());
        session::AnnounceFilter(Arc::new(move |path: &Path, hops: &Hops| {
            // An entry the peer learned elsewhere (from another root): every relay
            // registers with every root itself, so it is not needed here, nor an attack.
            if hops.len() > 1 {
                return false;
            }
            let mut parts = path.as_str().splitn(3, '/');
            let kind = parts.next();
            let id = parts.next().and_then(|id| id.parse::<u64>().ok());
            let taken = match (kind, id) {
                (Some("node" | "origin"), Some(id)) => {
                    hops.ids() == [id] && id != own && cluster.claim(id, &session)
                }
                _ => false,
            };
            if !taken {
                cluster.refuse_count("not_the_writer", 1);
                tracing::debug!(%path, hops = ?hops.ids(), "directory entry refused: it does not name its writer");
            }
            taken
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_round_trip_through_a_path_segment() {
        let url = "https://relay.example.com:4443/some/path?x=1";
        assert_eq!(unhex(&hex::encode(url)).as_deref(), Some(url));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }
}
