//! The relay's lifecycle: every task it spawns is tracked here, draining is announced
//! here (sessions send GOAWAY when it turns on), and one cancellation token stops
//! whatever is left. Shutdown waits for the tracker, so nothing outlives the relay.

use std::{future::Future, time::Duration};

use prometheus_client::{metrics::gauge::Gauge, registry::Registry};
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Owner of the relay's tasks and its drain and shutdown signals. Clones share them.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    tasks: TaskTracker,
    draining: watch::Sender<bool>,
    shutdown: CancellationToken,
    /// 1 while the relay serves (after start-up, before draining).
    ready: Gauge,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            tasks: TaskTracker::new(),
            draining: watch::channel(false).0,
            shutdown: CancellationToken::new(),
            ready: Gauge::default(),
        }
    }
}

impl Lifecycle {
    /// A lifecycle. (`moq_relay_ready` is exported by the readiness collector in
    /// `http::admin`, so that it agrees with `/ready`.)
    pub fn new(_metrics: &mut Registry) -> Self {
        Self::default()
    }

    /// Start-up is done: the relay serves.
    pub fn set_ready(&self) {
        self.ready.set(1);
    }

    /// Whether start-up is done (and draining has not begun).
    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    /// Run `task` until it ends or the relay shuts down.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }

    /// Run `task`, which watches [`Lifecycle::shutdown_token`] itself and winds down
    /// gracefully (an HTTP listener finishing its requests); shutdown waits for it.
    pub fn spawn_graceful<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Keep shutdown waiting while the returned token lives (for work started outside
    /// [`Lifecycle::spawn`], such as an upgraded HTTP connection).
    pub fn track(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.tasks.token()
    }

    /// Whether the relay is draining.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Turns true when the relay starts draining: sessions tell their peers to go away.
    pub fn draining(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Start draining.
    pub fn drain(&self) {
        self.ready.set(0);
        self.draining.send_replace(true);
    }

    /// The token that ends every task.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancel every task and wait up to `timeout` for them to finish. Returns whether
    /// they all did.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(timeout, self.tasks.wait()).await.is_ok()
    }

    /// Tasks still running.
    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_ends_tracked_tasks() {
        let lifecycle = Lifecycle::default();
        lifecycle.spawn(std::future::pending());
        lifecycle.spawn(async {});
        let mut draining = lifecycle.draining();
        lifecycle.drain();
        assert!(*draining.borrow_and_update() && lifecycle.is_draining());
        assert!(lifecycle.shutdown(Duration::from_secs(5)).await);
        assert_eq!(lifecycle.tasks(), 0);
    }
}
