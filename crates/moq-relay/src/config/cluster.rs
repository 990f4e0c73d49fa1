//! `[cluster]`: links to other relays.

use std::{fmt, path::PathBuf, time::Duration};

use clap::Args;
use serde::{Deserialize, Deserializer, de};
use serde_with::{DisplayFromStr, OneOrMany};

use super::value::{HumanDuration, parse_duration};

/// How long a broadcast stays announced after its publisher vanishes abruptly.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// Hop ids are varints below 2^62.
pub const MAX_ID: u64 = (1 << 62) - 1;

/// Browsers read ids as JavaScript numbers, exact only below 2^53.
pub const MAX_JS_SAFE_ID: u64 = (1 << 53) - 1;

/// `[cluster]`: peers to dial, this relay's identity, gossip.
#[serde_with::serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Args)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// This relay's hop id: non-zero, below 2^62 (keep it below 2^53 for browsers); random if unset.
    #[arg(
        id = "cluster-id",
        long = "cluster-id",
        env = "MOQ_CLUSTER_ID",
        value_name = "ID"
    )]
    pub id: Option<u64>,

    /// Peer URLs to dial, e.g. "https://peer:443/?cost=2" (retried forever).
    #[arg(
        id = "cluster-connect",
        long = "cluster-connect",
        env = "MOQ_CLUSTER_CONNECT",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub connect: Vec<String>,

    /// This relay's own externally reachable URL (gossiped; never put a token in it).
    #[arg(
        id = "cluster-node",
        long = "cluster-node",
        env = "MOQ_CLUSTER_NODE",
        value_name = "URL",
        alias = "cluster-advertise"
    )]
    pub node: Option<String>,

    /// File holding the JWT used to dial peers whose URL has no `?jwt=`.
    #[arg(
        id = "cluster-token",
        long = "cluster-token",
        env = "MOQ_CLUSTER_TOKEN",
        value_name = "FILE"
    )]
    pub token: Option<PathBuf>,

    /// Keep a broadcast announced this long after its publisher vanishes (default 5s).
    #[arg(
        id = "cluster-linger",
        long = "cluster-linger",
        env = "MOQ_CLUSTER_LINGER",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    #[serde_as(as = "Option<HumanDuration>")]
    pub linger: Option<Duration>,

    /// Root relay(s) that keep the cluster directory: which relay originates which broadcast.
    #[arg(
        id = "cluster-root",
        long = "cluster-root",
        env = "MOQ_CLUSTER_ROOT",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub root: Vec<String>,

    /// Hosts the cluster token may be sent to when dialling a relay found in the directory:
    /// names (`relay.example.com`, `*.example.com`) or networks (`10.0.0.0/8`). Default:
    /// the hosts of `connect`, `root` and `node`.
    #[arg(
        id = "cluster-allow",
        long = "cluster-allow",
        env = "MOQ_CLUSTER_ALLOW",
        value_name = "HOST",
        value_delimiter = ','
    )]
    #[serde_as(as = "OneOrMany<DisplayFromStr>")]
    pub allow: Vec<String>,

    /// `mesh` as written: a bool, or (legacy) the node URL. Gossip is not implemented:
    /// only the legacy URL form does something (it sets `node`).
    #[arg(skip)]
    #[serde(rename = "mesh")]
    mesh_file: Option<MeshValue>,

    /// Legacy name of `node`.
    #[arg(skip)]
    advertise: Option<String>,

    /// Legacy (<= 0.10) announcement prefix; ignored.
    #[arg(skip)]
    prefix: Option<String>,
}

impl Cluster {
    /// Fold legacy spellings into the current fields (before flags apply).
    pub(super) fn migrate(&mut self, warnings: &mut Vec<String>) -> Result<(), String> {
        if let Some(advertise) = self.advertise.take() {
            if self.node.is_some() {
                return Err(
                    "'cluster.advertise' is the old name of 'cluster.node' and both are set: \
                            keep only 'node'"
                        .to_string(),
                );
            }
            warnings.push(format!(
                "'cluster.advertise' was renamed: write node = \"{advertise}\" under [cluster] instead"
            ));
            self.node = Some(advertise);
        }
        if let Some(prefix) = self.prefix.take() {
            warnings.push(format!(
                "'cluster.prefix' (\"{prefix}\") was removed in moq-relay 0.11: clusters no longer share \
                 an announcement prefix; delete the key (it is ignored)"
            ));
        }
        match self.mesh_file.take() {
            None | Some(MeshValue::Enabled(false)) => {}
            Some(MeshValue::Enabled(true)) => warnings.push(
                "'cluster.mesh' has no effect on this relay: gossip discovery is not implemented; list the \
                 relays to link to in 'cluster.connect', or register with a directory with 'cluster.root'"
                    .to_string(),
            ),
            Some(MeshValue::Node(url)) => {
                if self.node.as_ref().is_some_and(|node| *node != url) {
                    return Err(format!(
                        "'cluster.mesh' = \"{url}\" is the old way to set 'cluster.node', which is set to \
                         something else: keep one node"
                    ));
                }
                warnings.push(format!(
                    "'cluster.mesh' = \"{url}\" is the old spelling of the node URL: write node = \"{url}\""
                ));
                self.node = Some(url);
            }
        }
        Ok(())
    }

    /// The peers to link to (`connect`), without this relay's own `node` and without
    /// duplicates. A bare `host:port` (pre-0.11 spelling) becomes `https://host:port/`.
    pub fn peers(&self) -> Vec<String> {
        self.urls(&self.connect)
    }

    /// The roots to register with (`root`), without this relay's own `node` (a root
    /// relay may share the config of the others) and without duplicates.
    pub fn roots(&self) -> Vec<String> {
        self.urls(&self.root)
    }

    fn urls(&self, list: &[String]) -> Vec<String> {
        let own = self.node.as_deref().map(peer_url);
        let mut urls: Vec<String> = Vec::new();
        for url in list.iter().map(|p| peer_url(p)) {
            if Some(&url) != own.as_ref() && !urls.contains(&url) {
                urls.push(url);
            }
        }
        urls
    }

    /// Whether this relay takes part in a cluster at all.
    pub fn is_enabled(&self) -> bool {
        !self.peers().is_empty() || !self.roots().is_empty()
    }
}

/// `host:port` → `https://host:port/`; URLs are kept as written.
pub fn peer_url(peer: &str) -> String {
    if peer.contains("://") {
        peer.to_string()
    } else {
        format!("https://{peer}/")
    }
}

/// `[cluster] mesh` as written: a bool, or (legacy) the node URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MeshValue {
    Enabled(bool),
    Node(String),
}

impl<'de> Deserialize<'de> for MeshValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = MeshValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<MeshValue, E> {
                Ok(MeshValue::Enabled(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MeshValue, E> {
                Ok(MeshValue::Node(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}
