//! One link to another relay: dial, run the session both ways, redial with backoff.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use moq_core::{
    Error as CoreError,
    session::{Config, Events, Permissions},
    stats::Upstream,
    transport::Session as _,
};
use moq_native::{Protocol, adapter::MoqSession, client::Connected};
use tokio::sync::oneshot;
use url::Url;

use super::{
    Context, DEFAULT_LINK_COST, DIRECTORY_PATH, LinkKind, LinkState, LinkStatus, MAX_BACKOFF, lock,
    random_u64, redact,
};

/// First redial delay; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);

/// A link that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(5);

/// The price of a route over an on-demand link: dearer than any static path through the
/// tiers (so routes move back to them once they recover), cheaper than a placeholder.
pub(super) const ON_DEMAND_COST: u64 = 1000;

/// An on-demand link with no upstream subscription for this long closes.
pub(super) const ON_DEMAND_IDLE: Duration = Duration::from_secs(30);

/// After a GOAWAY, how long the old session keeps serving once the new one is up, so
/// the new one learns the peer's broadcasts before the old routes go.
const HANDOVER: Duration = Duration::from_millis(500);

/// After a GOAWAY, how long the old session waits for the new one before leaving anyway
/// (the draining relay is waiting for us to go).
const GOAWAY_GRACE: Duration = Duration::from_secs(2);

/// How long the dial that follows a GOAWAY may take: a relay that stopped accepting
/// may not answer at all.
const GOAWAY_DIAL: Duration = Duration::from_secs(3);

/// How a link session ended without an error.
enum Ended {
    /// The peer or the relay closed it.
    Closed,
    /// An on-demand link nobody used.
    Idle,
    /// The peer sent GOAWAY: dial again at once (its new URI, or the same URL) while
    /// the old session keeps serving until `leaving` is released (or dropped).
    GoingAway { uri: String, leaving: Leaving },
}

/// The old session after a GOAWAY: released (sent) when the new session is up; dropped
/// when the dial failed.
type Leaving = oneshot::Sender<()>;

/// Keep `session` (driven by `driver`) serving until `release` fires (plus
/// [`HANDOVER`]), is dropped, or [`GOAWAY_GRACE`] passes; then close it.
fn leave(
    session: MoqSession,
    driver: tokio::task::JoinHandle<Result<(), CoreError>>,
    shown: String,
) -> Leaving {
    let (release, released) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            result = released => if result.is_ok() {
                tokio::time::sleep(HANDOVER).await;
            },
            () = tokio::time::sleep(GOAWAY_GRACE) => {
                tracing::info!(url = %shown, "the new link is slow to come up; leaving the old one now");
            }
        }
        session.close(0, "going away");
        let _ = driver.await;
    });
    release
}

/// Resolves once `count` has been zero for `idle` straight (checked every second).
async fn unused_for(count: &Upstream, idle: Duration) {
    let mut unused_since = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        if count.get() > 0 {
            unused_since = tokio::time::Instant::now();
        } else if unused_since.elapsed() >= idle {
            return;
        }
    }
}

/// A link and how to redial it.
pub(super) struct Link {
    context: Context,
    kind: LinkKind,
    key: String,
    url: String,
    /// The relay an on-demand link reaches: it ends once that relay leaves the directory.
    node: Option<u64>,
}

impl Link {
    /// A link of `kind` to `url`, listed under `key`.
    pub(super) fn new(context: Context, kind: LinkKind, key: String, url: String, node: Option<u64>) -> Self {
        Self {
            context,
            kind,
            key,
            url,
            node,
        }
    }

    /// Dial and redial until the relay drains (or, for an on-demand link, until its
    /// relay leaves the directory).
    pub(super) async fn run(self) {
        let cluster = &self.context.cluster;
        let shown = redact(&self.url);
        cluster.insert(
            &self.key,
            LinkStatus {
                url: shown.clone(),
                kind: self.kind,
                cost: match self.kind {
                    LinkKind::Root => 0,
                    LinkKind::OnDemand => ON_DEMAND_COST,
                    LinkKind::Static => prepare(&self.url, None).map_or(DEFAULT_LINK_COST, |(_, c)| c),
                },
                state: LinkState::Connecting,
                since: SystemTime::now(),
                connects: 0,
                last_error: None,
            },
        );
        let mut backoff = MIN_BACKOFF;
        // After a GOAWAY: where to dial at once, and the old session to release.
        let mut moving: Option<(String, Leaving)> = None;
        while !self.context.lifecycle.is_draining() {
            let started = Instant::now();
            let error = match self.session(moving.take()).await {
                Ok(Ended::GoingAway { uri, leaving }) => {
                    tracing::info!(url = %shown, kind = self.kind.as_str(), to = %redact(&uri), "peer is going away; redialling at once");
                    cluster.update(&self.key, |s| {
                        s.state = LinkState::Connecting;
                        s.since = SystemTime::now();
                    });
                    moving = Some((uri, leaving));
                    continue;
                }
                Ok(Ended::Closed) => "session closed".to_string(),
                Ok(Ended::Idle) => {
                    tracing::info!(url = %shown, "on-demand link idle; closed (dialled again when a viewer needs it)");
                    break;
                }
                Err(err) => err,
            };
            tracing::warn!(url = %shown, kind = self.kind.as_str(), error = %error, "cluster link down; will retry");
            cluster.update(&self.key, |s| {
                s.state = LinkState::Down;
                s.since = SystemTime::now();
                s.last_error = Some(error.clone());
            });
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
        cluster.remove(&self.key);
    }

    /// One dial and, if it works, the session until it ends or the peer sends GOAWAY.
    /// `moving`: the GOAWAY we follow (its URI) and the old session, released once this
    /// one is up (dropped, so closed at once, when this dial fails).
    async fn session(&self, moving: Option<(String, Leaving)>) -> Result<Ended, String> {
        let cluster = &self.context.cluster;
        let (uri, leaving) = match moving {
            Some((uri, leaving)) => (Some(uri), Some(leaving)),
            None => (None, None),
        };
        let (url, cost) = self.target(uri.as_deref())?;
        cluster.update(&self.key, |s| {
            s.state = LinkState::Connecting;
            s.since = SystemTime::now();
        });
        let connected = self.dial(&url, leaving.is_some()).await?;
        let version = connected.version;
        let (config, in_use) = self.session_config(version, cost, connected.setup_path(&url));
        let session = MoqSession::new(connected.session, connected.transport);
        tracing::info!(url = %redact(url.as_str()), kind = self.kind.as_str(), %version, "cluster link up");
        cluster.update(&self.key, |s| {
            s.state = LinkState::Up;
            s.since = SystemTime::now();
            s.connects += 1;
            s.last_error = None;
        });
        // The new session is up: the old one (if we are moving) may go after a handover.
        if let Some(leaving) = leaving {
            let _ = leaving.send(());
        }
        self.drive(session, version, config, &in_use, &url).await
    }

    /// The URL to dial and the link's cost: the configured URL with the cluster token,
    /// or where a GOAWAY's `uri` sends it (refused outside `[cluster] allow`).
    fn target(&self, uri: Option<&str>) -> Result<(Url, u64), String> {
        let Context {
            cluster, token_file, ..
        } = &self.context;
        let token = token(token_file.as_deref())?;
        cluster.token_read(token.as_deref());
        let (mut url, cost) = prepare(&self.url, token.as_deref())?;
        if let Some(uri) = uri {
            url = redirect(&url, uri)?;
            if !self.context.allow.allows(&url) {
                return Err(format!(
                    "GOAWAY named {}, outside [cluster] allow: not dialled",
                    redact(url.as_str())
                ));
            }
        }
        if self.kind == LinkKind::Root {
            url.set_path(&format!("/{DIRECTORY_PATH}"));
        }
        Ok((url, cost))
    }

    /// Dial `url`; a dial that follows a GOAWAY (`bounded`) gives up after [`GOAWAY_DIAL`].
    async fn dial(&self, url: &Url, bounded: bool) -> Result<Connected, String> {
        let client = &self.context.client;
        if bounded {
            tokio::time::timeout(GOAWAY_DIAL, client.connect(url))
                .await
                .map_err(|_| format!("cannot connect: no answer within {GOAWAY_DIAL:?}"))?
        } else {
            client.connect(url).await
        }
        .map_err(|e| format!("cannot connect: {e}"))
    }

    /// What a link session carries: every broadcast both ways (the directory on a root
    /// link) at `cost`, with every permission. Also returns the link's own count of
    /// upstream subscriptions (part of the total), by which an on-demand link notices
    /// nothing uses it.
    fn session_config(
        &self,
        version: Protocol,
        cost: u64,
        setup_path: Option<String>,
    ) -> (Config, Arc<Upstream>) {
        let Context {
            cluster,
            media,
            quota,
            lifecycle,
            ..
        } = &self.context;
        let mut config = media.session_config(version);
        let origin = match self.kind {
            LinkKind::Root => cluster.directory.clone(),
            _ => media.origin.clone(),
        };
        config.publish = Some(origin.clone());
        config.consume = Some(origin);
        config.permissions = Permissions::all();
        config.cost = match self.kind {
            LinkKind::Root => 0,
            LinkKind::OnDemand => cost.max(ON_DEMAND_COST),
            LinkKind::Static => cost,
        };
        config.shutdown = Some(lifecycle.draining());
        config.quota = quota.clone();
        config.setup.path = setup_path;
        let in_use = Arc::new(Upstream::child(&media.upstream));
        config.upstream = in_use.clone();
        (config, in_use)
    }

    /// Run the link session until it ends, sits idle (on-demand links: no upstream
    /// subscription in `in_use` for [`ON_DEMAND_IDLE`]) or the peer sends GOAWAY (the
    /// session then keeps serving, see [`leave`]).
    async fn drive(
        &self,
        session: MoqSession,
        version: Protocol,
        config: Config,
        in_use: &Upstream,
        url: &Url,
    ) -> Result<Ended, String> {
        let events: Events = config.events.clone();
        let idle = async {
            match self.kind {
                LinkKind::OnDemand => unused_for(in_use, ON_DEMAND_IDLE).await,
                _ => std::future::pending().await,
            }
        };
        // moq-lite, or moq-transport with a relay that speaks only that.
        let mut driver = tokio::spawn(moq_core::ietf::run_client(session.clone(), version, config));
        let result = tokio::select! {
            joined = &mut driver => joined.unwrap_or(Err(CoreError::Cancelled)),
            () = idle => {
                session.close(0, "idle");
                return Ok(Ended::Idle);
            }
            uri = events.goaway() => {
                let leaving = leave(session, driver, redact(url.as_str()));
                return Ok(Ended::GoingAway { uri, leaving });
            }
        };
        session.close(0, "link closed");
        match result {
            Ok(()) => Ok(Ended::Closed),
            Err(CoreError::Transport(detail)) => Err(detail),
            Err(err) => Err(err.to_string()),
        }
    }
}

/// Where a GOAWAY sends a link: its URI resolved against the link's URL (empty: the same
/// URL again, where DNS or a load balancer may now point elsewhere), keeping the link's
/// query (its token) when the URI names none.
fn redirect(url: &Url, uri: &str) -> Result<Url, String> {
    if uri.is_empty() {
        return Ok(url.clone());
    }
    let mut target = url
        .join(uri)
        .map_err(|e| format!("GOAWAY named an invalid URI '{}': {e}", redact(uri)))?;
    if target.query().is_none() {
        target.set_query(url.query());
    }
    Ok(target)
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
    fn goaway_sends_a_link_to_the_same_url_or_the_uri_named() {
        let url = Url::parse("https://old:4443/?jwt=tok").unwrap();
        assert_eq!(redirect(&url, "").unwrap(), url);
        assert_eq!(
            redirect(&url, "https://new:4443/").unwrap().as_str(),
            "https://new:4443/?jwt=tok"
        );
        assert_eq!(
            redirect(&url, "https://new:4443/?jwt=other").unwrap().as_str(),
            "https://new:4443/?jwt=other"
        );
        assert_eq!(
            redirect(&url, "//other:4443/").unwrap().as_str(),
            "https://other:4443/?jwt=tok"
        );
        assert!(
            redirect(&url, "https://[bad/")
                .unwrap_err()
                .contains("invalid URI")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unused_on_demand_link_is_noticed_after_the_idle_time() {
        let total = Arc::new(Upstream::default());
        let link = Upstream::child(&total);
        // In use for a while: not idle.
        let watch = unused_for(&link, Duration::from_secs(30));
        tokio::pin!(watch);
        link.add();
        assert_eq!(total.get(), 1, "the total counts the link's subscription");
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut watch)
                .await
                .is_err()
        );
        // Released: idle 30 s later, not before.
        link.remove();
        let released = tokio::time::Instant::now();
        watch.await;
        let waited = released.elapsed();
        assert!(
            waited >= Duration::from_secs(29) && waited <= Duration::from_secs(32),
            "{waited:?}"
        );
        assert_eq!(total.get(), 0);
    }
}
