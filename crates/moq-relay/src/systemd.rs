//! systemd integration through the `sd-notify` crate: `Type=notify` readiness, stopping,
//! and the watchdog. Does nothing when not started by systemd (no `$NOTIFY_SOCKET`).

use std::time::Duration;

pub use sd_notify::NotifyState;

/// Tell systemd about a state change; failures are logged at debug and otherwise ignored.
pub fn notify(state: NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::debug!(%err, "systemd notify failed");
    }
}

/// The watchdog interval systemd asked of this process, if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Ping the watchdog at half its interval, forever.
pub async fn watchdog(interval: Duration) {
    let mut ticker = tokio::time::interval(interval / 2);
    loop {
        ticker.tick().await;
        notify(NotifyState::Watchdog);
    }
}
