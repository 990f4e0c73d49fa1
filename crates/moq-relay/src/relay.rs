//! The relay: a QUIC/WebTransport listener and an HTTP listener in front of
//! one shared origin, with a gate that decides what each session may do.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use moq_core::{
    Origin,
    model::cache::{Cache, CacheConfig},
    session::{self, Permissions},
};
use moq_native::{Transport, adapter::MoqSession, server};
use moq_proto::Path;
use tracing::Instrument;

use crate::{config::Config, web};

/// How long a raw-QUIC client has to send its SETUP (which carries its path).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Anonymous access, as absolute path prefixes.
#[derive(Debug, Clone, Default)]
pub struct Public {
    /// Prefixes anyone may subscribe to.
    pub subscribe: Vec<Path>,
    /// Prefixes anyone may publish under.
    pub publish: Vec<Path>,
}

/// Turn a configured prefix (`""`, `anon`, or a 0.17-style glob `anon/**`) into a path.
fn prefix(raw: &str) -> anyhow::Result<Path> {
    let trimmed = raw.trim_end_matches("**").trim_end_matches('/');
    if trimmed.contains('*') {
        anyhow::bail!("public prefix '{raw}': only a trailing '/**' wildcard is supported");
    }
    Path::new(trimmed).with_context(|| format!("public prefix '{raw}'"))
}

impl Public {
    /// From the `[auth] public` setting.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let Some(public) = &config.auth.public else {
            return Ok(Self::default());
        };
        Ok(Self {
            subscribe: public
                .subscribe
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
            publish: public
                .publish
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// What an anonymous session rooted at `root` may do, relative to `root`.
    pub fn permissions(&self, root: &Path) -> Permissions {
        Permissions {
            publish: relative(&self.publish, root),
            subscribe: relative(&self.subscribe, root),
        }
    }

    /// Whether anyone may subscribe to this absolute path.
    pub fn can_subscribe(&self, path: &Path) -> bool {
        self.subscribe.iter().any(|p| path.has_prefix(p))
    }
}

/// Re-express absolute prefixes relative to `root`, dropping unrelated ones.
fn relative(prefixes: &[Path], root: &Path) -> Vec<Path> {
    let mut out = Vec::new();
    for prefix in prefixes {
        if root.has_prefix(prefix) {
            // The whole root is inside the prefix.
            return vec![Path::empty()];
        }
        if let Some(rest) = prefix.strip_prefix(root)
            && let Ok(rest) = Path::new(rest)
        {
            out.push(rest);
        }
    }
    out
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Shared {
    /// The broadcast table.
    pub origin: Origin,
    /// Anonymous access.
    pub public: Public,
    /// This relay's hop id (0 = none).
    pub hop: u64,
}

/// A bound relay, ready to [`run`](Relay::run).
pub struct Relay {
    /// The configuration it was built from.
    pub config: Config,
    /// State shared with every session.
    pub shared: Arc<Shared>,
    /// The QUIC + WebTransport listener.
    pub quic: server::Server,
    /// The HTTP listener (certificate fingerprint, announced, fetch, health).
    pub web: Option<web::Web>,
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

impl Relay {
    /// Bind the listeners described by `config`.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let bind = config
            .server
            .quic_bind()
            .context("no QUIC listen address: set [server] listen (e.g. \"[::]:443\")")?;
        let bind = *bind
            .resolve()
            .with_context(|| format!("cannot resolve listen address {}:{}", bind.host, bind.port))?
            .first()
            .context("listen address resolved to nothing")?;
        let tls = &config.server.tls;
        let quic = server::Server::bind(server::Config {
            bind,
            tls: server::TlsConfig {
                cert: tls.cert.clone(),
                key: tls.key.clone(),
                generate: tls.generate.clone(),
            },
            versions: config.server.version.clone(),
            ..Default::default()
        })
        .context("cannot start the QUIC listener")?;

        let cache = Cache::new(CacheConfig {
            capacity: config.cache.capacity.map(|c| c.resolve(total_memory())),
            duration: config.cache.duration,
        });
        let linger = config.cluster.linger.unwrap_or(Duration::from_secs(5));
        let shared = Arc::new(Shared {
            origin: Origin::new(cache, linger),
            public: Public::from_config(&config)?,
            hop: config.cluster.id.unwrap_or(0),
        });

        let web = match &config.web.http.listen {
            Some(listen) => {
                let addr = *listen
                    .resolve()
                    .with_context(|| {
                        format!("cannot resolve [web.http] listen {}:{}", listen.host, listen.port)
                    })?
                    .first()
                    .context("[web.http] listen resolved to nothing")?;
                // Port 0 follows the QUIC port, so one ephemeral port serves both.
                let addr = match addr.port() {
                    0 if bind.port() == 0 => SocketAddr::new(addr.ip(), quic.local_addr()?.port()),
                    _ => addr,
                };
                Some(web::Web::bind(addr, shared.clone(), quic.fingerprints()).await?)
            }
            None => None,
        };
        Ok(Self {
            config,
            shared,
            quic,
            web,
        })
    }

    /// The QUIC listener's address.
    pub fn quic_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.quic.local_addr()?)
    }

    /// The HTTP listener's address, if there is one.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().and_then(|w| w.local_addr().ok())
    }

    /// Serve until the listener closes.
    pub async fn run(self) -> anyhow::Result<()> {
        let web = self.web.map(|web| tokio::spawn(web.run()));
        let mut next_id = 0u64;
        while let Some(incoming) = self.quic.accept().await {
            next_id += 1;
            let span = tracing::info_span!("conn", id = next_id, peer = %incoming.remote_addr());
            tokio::spawn(serve(self.shared.clone(), incoming).instrument(span));
        }
        if let Some(web) = web {
            web.abort();
        }
        Ok(())
    }
}

/// Split `path?query` into a normalised path.
fn request_path(raw: &str) -> Result<Path, String> {
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    let path = percent_decode(path)?;
    Path::new(&path).map_err(|e| format!("bad path '{raw}': {e}"))
}

/// Decode `%XX` escapes; a malformed escape or non-UTF-8 result is refused.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in '{s}'"))?;
                out.push(hex);
                i += 3;
            }
            Some(&b) => {
                out.push(b);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).map_err(|_| format!("path '{s}' is not UTF-8"))
}

async fn serve(shared: Arc<Shared>, incoming: server::Incoming) {
    let request = match incoming.accept().await {
        Ok(request) => request,
        Err(err) => {
            tracing::debug!(%err, "handshake failed");
            return;
        }
    };
    let Some(version) = request.version() else {
        tracing::info!(offered = ?request.protocols(), "refused: no common moq-lite version");
        let _ = request.reject(406).await;
        return;
    };
    let transport = request.transport();

    // WebTransport carries the path in its URL: decide before accepting.
    let (session, root, peer_setup) = match transport {
        Transport::WebTransport => {
            let raw = request.url().map(|u| u.path().to_string()).unwrap_or_default();
            let root = match request_path(&raw) {
                Ok(root) => root,
                Err(reason) => {
                    tracing::info!(%reason, "refused");
                    let _ = request.reject(400).await;
                    return;
                }
            };
            if shared.public.permissions(&root).publish.is_empty()
                && shared.public.permissions(&root).subscribe.is_empty()
            {
                tracing::info!(path = %root, reason = "no token and the path is not public", "refused");
                let _ = request.reject(401).await;
                return;
            }
            match request.ok().await {
                Ok(session) => (MoqSession(session), root, None),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            }
        }
        // Raw QUIC: lite-05+ sends the path in SETUP; older versions have no path.
        _ => {
            let session = match request.ok().await {
                Ok(session) => MoqSession(session),
                Err(err) => {
                    tracing::debug!(%err, "accept failed");
                    return;
                }
            };
            if version.has_setup_stream() {
                let setup = match tokio::time::timeout(SETUP_TIMEOUT, session::read_setup(&session, version))
                    .await
                {
                    Ok(Ok(setup)) => setup,
                    Ok(Err(err)) => {
                        tracing::info!(%err, "refused: bad SETUP");
                        moq_core::transport::Session::close(&session, err.session_code(), &err.to_string());
                        return;
                    }
                    Err(_) => {
                        tracing::info!("refused: no SETUP within {SETUP_TIMEOUT:?}");
                        moq_core::transport::Session::close(&session, 0x11, "no SETUP");
                        return;
                    }
                };
                let root = match request_path(setup.path.as_deref().unwrap_or("")) {
                    Ok(root) => root,
                    Err(reason) => {
                        moq_core::transport::Session::close(&session, 0x3, &reason);
                        return;
                    }
                };
                (session, root, Some(setup))
            } else {
                (session, Path::empty(), None)
            }
        }
    };

    let permissions = shared.public.permissions(&root);
    if permissions.publish.is_empty() && permissions.subscribe.is_empty() {
        tracing::info!(path = %root, reason = "no token and the path is not public", "refused");
        moq_core::transport::Session::close(
            &session,
            0x2,
            "unauthorized: no token and the path is not public",
        );
        return;
    }
    tracing::info!(%version, %transport, path = %root, "session accepted");
    let mut config = session::Config::new(version);
    config.publish = (!permissions.subscribe.is_empty()).then(|| shared.origin.clone());
    config.consume = (!permissions.publish.is_empty()).then(|| shared.origin.clone());
    config.root = root;
    config.permissions = permissions;
    config.hop = shared.hop;
    config.peer_setup = peer_setup;
    match session::run(session, config).await {
        Ok(()) => tracing::info!("session closed"),
        Err(err) => tracing::info!(%err, "session ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::new(s).unwrap()
    }

    #[test]
    fn public_prefixes_are_relative_to_the_root() {
        let public = Public {
            subscribe: vec![p("anon"), p("demo/view")],
            publish: vec![p("anon")],
        };
        assert_eq!(public.permissions(&p("anon/room")).subscribe, vec![p("")]);
        assert_eq!(public.permissions(&p("demo")).subscribe, vec![p("view")]);
        assert_eq!(public.permissions(&p("")).publish, vec![p("anon")]);
        assert!(public.permissions(&p("secret")).subscribe.is_empty());
        assert!(public.permissions(&p("anonymous")).subscribe.is_empty());
    }

    #[test]
    fn globs_and_paths() {
        assert_eq!(prefix("anon/**").unwrap(), p("anon"));
        assert_eq!(prefix("**").unwrap(), p(""));
        assert!(prefix("a/*/b").is_err());
        assert_eq!(request_path("/anon/room?jwt=x").unwrap(), p("anon/room"));
        assert_eq!(request_path("/a%2Fb").unwrap(), p("a/b"));
        assert!(request_path("/a%zz").is_err());
        assert!(request_path("/a%ff").is_err());
    }
}
