//! systemd integration: `Type=notify` readiness and the watchdog, spoken
//! directly over `$NOTIFY_SOCKET` (a Unix datagram socket). Does nothing when
//! not started by systemd.

use std::{os::unix::net::UnixDatagram, time::Duration};

fn socket_path() -> Option<std::ffi::OsString> {
    std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())
}

/// Send a state line (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=...`).
pub fn notify(state: &str) {
    let Some(path) = socket_path() else { return };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = match bytes.strip_prefix(b"@") {
        // An abstract socket (Linux).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(err) = result {
        tracing::debug!(%err, "systemd notify failed");
    }
}

/// The watchdog interval systemd asked for, if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec))
}

/// Ping the watchdog at half its interval, forever.
pub async fn watchdog(interval: Duration) {
    let mut ticker = tokio::time::interval(interval / 2);
    loop {
        ticker.tick().await;
        notify("WATCHDOG=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        temp_env(&path, || notify("READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    fn temp_env(path: &std::path::Path, f: impl FnOnce()) {
        // Only this test touches NOTIFY_SOCKET; the process is single-purpose.
        #[allow(unsafe_code)]
        // SAFETY: no other thread reads or writes this variable during the test.
        unsafe {
            std::env::set_var("NOTIFY_SOCKET", path);
        }
        f();
        #[allow(unsafe_code)]
        // SAFETY: as above.
        unsafe {
            std::env::remove_var("NOTIFY_SOCKET");
        }
    }
}
