//! The live sessions: who is connected, since when, over what. A session is listed by
//! [`Registry::register`] and removed when the returned guard drops, however the session
//! ends. Feeds `/sessions`, the QUIC sampler, the session gauges and drain.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use moq_native::{Transport, Version, quinn};
use moq_proto::Path;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry as Metrics,
};
use tokio::sync::watch;

/// Labels of session metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    /// `quic` or `webtransport`.
    pub transport: &'static str,
    /// The negotiated version's ALPN.
    pub version: &'static str,
}

impl SessionLabels {
    fn new(transport: Transport, version: Version) -> Self {
        Self {
            transport: transport.as_str(),
            version: version.name(),
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Connection id (as in the log span).
    pub id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    /// The session root.
    pub root: Path,
    /// Negotiated version.
    pub version: Version,
    /// How the session is carried.
    pub transport: Transport,
    /// When it was accepted.
    pub since: Instant,
    /// The QUIC connection, for its statistics (none for transports without one).
    pub connection: Option<quinn::Connection>,
    /// What the session was granted, to re-check when keys change.
    pub grant: Arc<crate::gate::Grant>,
    /// Cancelled to end the session (its grant was revoked).
    pub revoke: tokio_util::sync::CancellationToken,
    /// Notified to have the auth server re-check the session, when one admitted it.
    pub nudge: Option<Arc<tokio::sync::Notify>>,
    /// The id the auth server knows the session by, when one admitted it.
    pub service_id: Option<String>,
}

impl SessionInfo {
    /// How an operator names the session: the auth server's id, else the connection id.
    pub fn label(&self) -> String {
        self.service_id.clone().unwrap_or_else(|| self.id.to_string())
    }
}

/// Every live session.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashMap<u64, SessionInfo>>,
    count: watch::Sender<usize>,
    active: Family<SessionLabels, Gauge>,
    total: Family<SessionLabels, Counter>,
}

impl Registry {
    /// An empty registry whose gauges are registered in `metrics`.
    pub fn new(metrics: &mut Metrics) -> Arc<Self> {
        let active = Family::<SessionLabels, Gauge>::default();
        let total = Family::<SessionLabels, Counter>::default();
        metrics.register("moq_relay_sessions_active", "Sessions open now", active.clone());
        metrics.register("moq_relay_sessions", "Sessions accepted", total.clone());
        Arc::new(Self {
            sessions: Mutex::default(),
            count: watch::channel(0).0,
            active,
            total,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, SessionInfo>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// List a session until the returned guard drops.
    pub fn register(self: &Arc<Self>, info: SessionInfo) -> Registration {
        let labels = SessionLabels::new(info.transport, info.version);
        self.total.get_or_create(&labels).inc();
        self.active.get_or_create(&labels).inc();
        let id = info.id;
        let mut sessions = self.lock();
        sessions.insert(id, info);
        self.count.send_replace(sessions.len());
        Registration {
            registry: self.clone(),
            id,
            labels,
        }
    }

    /// The sessions open now.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().values().cloned().collect()
    }

    /// How many sessions are open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once no session is open.
    pub async fn emptied(&self) {
        let mut count = self.count.subscribe();
        // The sender lives in self, so the channel cannot close while we wait.
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// Keeps a session listed; dropping it removes the session.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
    labels: SessionLabels,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self.registry.lock();
        sessions.remove(&self.id);
        self.registry.count.send_replace(sessions.len());
        drop(sessions);
        self.registry.active.get_or_create(&self.labels).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: u64) -> SessionInfo {
        SessionInfo {
            id,
            peer: "127.0.0.1:1".parse().unwrap(),
            root: Path::new("anon").unwrap(),
            version: Version::Lite05,
            transport: Transport::Quic,
            since: Instant::now(),
            connection: None,
            grant: Arc::new(crate::gate::Grant {
                root: Path::new("anon").unwrap(),
                permissions: moq_core::session::Permissions::all(),
                claims: None,
                token: None,
                client_certificate: false,
                peer: false,
                expires: None,
            }),
            revoke: Default::default(),
            nudge: None,
            service_id: None,
        }
    }

    #[tokio::test]
    async fn a_session_is_listed_while_its_guard_lives() {
        let registry = Registry::new(&mut Metrics::default());
        let a = registry.register(info(1));
        let b = registry.register(info(2));
        assert_eq!(registry.len(), 2);
        drop(a);
        assert_eq!(registry.list().iter().map(|s| s.id).collect::<Vec<_>>(), vec![2]);
        let emptied = tokio::spawn({
            let registry = registry.clone();
            async move { registry.emptied().await }
        });
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(5), emptied)
            .await
            .unwrap()
            .unwrap();
        assert!(registry.is_empty());
    }
}
