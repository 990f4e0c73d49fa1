//! `moq auth`: an auth server for relays (`serve`, the contract the moq-dev relay 0.15+
//! speaks with `[auth] url`), and asking a relay to re-check its sessions
//! (`revalidate`); `generate`, `sign` and `verify` are `moq token`'s.
//!
//! `moq auth serve` answers `POST /` with the reference server's policy
//! ([`moq_auth::service::Policy`]): a JWT (`?jwt=` or a SETUP token) is its own grant,
//! else a verified client certificate gets the `--mtls-*` rules, else the `--public-*`
//! rules apply; rules are patterns rooted at `/`. A grant says when it expires and
//! how often to re-check it (`--expires`, `--revalidate`). `--limit-token` and
//! `--limit-remote` cap live sessions per token and per address, counted from the
//! relay's `connect` and `end` events (a relay that dies without `end` holds its slots
//! until they miss two re-checks).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use moq_auth::{
    KeySet, Pattern,
    service::{Event, Policy, Refusal, Request},
};

use crate::token::TokenCommand;

/// Arguments of `moq auth`.
#[derive(clap::Args, Debug)]
pub(crate) struct AuthArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// The `moq auth` subcommands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuthCommand {
    /// Answer a relay's auth requests (`[auth] url`) with keys, public rules, an mTLS
    /// grant, tiers and session limits.
    Serve(ServeArgs),
    /// Ask a relay (its internal listener) to re-check matching sessions now.
    Revalidate(RevalidateArgs),
    /// Keys and tokens, as `moq token`.
    #[command(flatten)]
    Token(TokenCommand),
}

/// Arguments of `moq auth serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Where to answer (a socket address).
    #[arg(long, default_value = "127.0.0.1:4440", value_name = "ADDR")]
    pub listen: String,
    /// Allow a non-loopback address: the server has no authentication of its own.
    #[arg(long)]
    pub listen_public: bool,
    /// The key file a `jwt` is verified with (its `kid` is not checked).
    #[arg(long, value_name = "FILE", conflicts_with = "key_dir")]
    pub key: Option<PathBuf>,
    /// A directory of `{kid}.jwk` files, picked by the token's `kid`.
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// A pattern anonymous sessions may publish, rooted at `/` (`anon/**`; repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub public_publish: Vec<Pattern>,
    /// A pattern anonymous sessions may subscribe to, rooted at `/` (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub public_subscribe: Vec<Pattern>,
    /// A pattern sessions with a verified client certificate may publish (repeatable);
    /// none refuses certificates.
    #[arg(long, value_name = "PATTERN")]
    pub mtls_publish: Vec<Pattern>,
    /// A pattern sessions with a verified client certificate may subscribe to (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub mtls_subscribe: Vec<Pattern>,
    /// The tier label stamped on every grant.
    #[arg(long)]
    pub tier: Option<String>,
    /// How often the relay re-checks each grant (`30s`, `5m`); needs `--expires`.
    #[arg(long, value_name = "DURATION", value_parser = moq_units::parse_duration)]
    pub revalidate: Option<Duration>,
    /// How long a grant with no bound of its own lasts (anonymous sessions, tokens
    /// without `exp`, certificates without one).
    #[arg(long, value_name = "DURATION", value_parser = moq_units::parse_duration)]
    pub expires: Option<Duration>,
    /// The most live sessions presenting one token; needs `--revalidate`.
    #[arg(long, value_name = "N")]
    pub limit_token: Option<usize>,
    /// The most live sessions from one remote address; needs `--revalidate`.
    #[arg(long, value_name = "N")]
    pub limit_remote: Option<usize>,
}

/// Arguments of `moq auth revalidate`.
#[derive(clap::Args, Debug)]
pub(crate) struct RevalidateArgs {
    /// The relay's internal listener (`[internal] listen`), e.g. `127.0.0.1:9090` (also
    /// spelled `--internal-url http://127.0.0.1:9090`, as the ecosystem's CLI writes it).
    #[arg(long, value_name = "ADDR", alias = "internal-url")]
    pub internal: String,
    /// Only the session with this id (the auth server's or the relay's).
    #[arg(long)]
    pub id: Option<String>,
    /// Only sessions whose root matches this pattern.
    #[arg(long, value_name = "PATTERN")]
    pub path: Option<String>,
    /// Only sessions from this address or network.
    #[arg(long, value_name = "IP|CIDR")]
    pub remote: Option<String>,
}

/// Run `moq auth ...`.
pub(crate) async fn run(args: AuthArgs) -> anyhow::Result<()> {
    match args.command {
        AuthCommand::Serve(args) => serve(args).await,
        AuthCommand::Revalidate(args) => revalidate(args).await,
        AuthCommand::Token(command) => crate::token::run(crate::token::TokenArgs { command }),
    }
}

/// The policy and limits `args` describe, checked the way the reference server checks them.
fn server(args: &ServeArgs) -> anyhow::Result<Server> {
    if args.revalidate.is_some() && args.expires.is_none() {
        bail!("--revalidate needs --expires: a grant re-checked must say how long it lasts");
    }
    if args.revalidate.is_some_and(|r| r.as_secs() == 0) {
        bail!("--revalidate must be at least 1s");
    }
    let limited = args.limit_token.is_some() || args.limit_remote.is_some();
    if limited && args.revalidate.is_none() {
        bail!("--limit-token and --limit-remote need --revalidate, which ages out a dead relay's sessions");
    }
    if args
        .expires
        .is_some_and(|bound| SystemTime::now().checked_add(bound).is_none())
    {
        bail!("--expires reaches past what the clock can hold");
    }
    let keys = match (&args.key, &args.key_dir) {
        (Some(file), _) => Some(KeySet::single(
            moq_auth::Key::from_file(file).with_context(|| format!("--key {}", file.display()))?,
        )?),
        (None, Some(dir)) => Some(KeySet::dir(dir).with_context(|| format!("--key-dir {}", dir.display()))?),
        (None, None) => None,
    };
    let policy = Policy {
        keys,
        public: (args.public_publish.clone(), args.public_subscribe.clone()),
        mtls: (args.mtls_publish.clone(), args.mtls_subscribe.clone()),
        tier: args.tier.clone(),
        revalidate: args.revalidate,
        expires: args.expires,
    };
    if policy.keys.is_none()
        && policy.public.0.is_empty()
        && policy.public.1.is_empty()
        && policy.mtls.0.is_empty()
        && policy.mtls.1.is_empty()
    {
        bail!("this server would refuse everyone: give --key or --key-dir, --public-*, or --mtls-*");
    }
    Ok(Server {
        policy: Arc::new(policy),
        limits: Limits {
            token: args.limit_token,
            remote: args.limit_remote,
            cadence: args.revalidate,
        },
        live: Arc::default(),
    })
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server = server(&args)?;
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen '{}' is not a socket address", args.listen))?;
    if !addr.ip().is_loopback() && !args.listen_public {
        bail!(
            "--listen {addr} is not a loopback address; the server has no authentication of its own, so \
             pass --listen-public to mean it"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("moq auth serve: answering on http://{}/", listener.local_addr()?);
    axum::serve(listener, server.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the auth server failed")
}

/// Live-session caps.
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    token: Option<usize>,
    remote: Option<usize>,
    /// The relay's re-check cadence: a session silent for two is gone.
    cadence: Option<Duration>,
}

/// One live session's share of the limits.
#[derive(Debug)]
struct Slot {
    token: Option<u64>,
    remote: Option<IpAddr>,
    seen: Instant,
}

/// The policy behind `POST /`, and the live sessions the limits count.
#[derive(Debug, Clone)]
struct Server {
    policy: Arc<Policy>,
    limits: Limits,
    live: Arc<Mutex<HashMap<String, Slot>>>,
}

impl Server {
    fn router(self) -> Router {
        Router::new().route("/", post(answer)).with_state(self)
    }

    /// Answer one event: a grant (connect, revalidate), nothing (end), or a refusal.
    fn answer(&self, request: &Request) -> Result<Option<moq_auth::service::Grant>, String> {
        if matches!(request.event, Event::End { .. }) {
            self.slots().remove(&request.id);
            return Ok(None);
        }
        let grant = self
            .policy
            .decide(request, SystemTime::now())
            .map_err(|refusal: Refusal| refusal.to_string())?;
        let Some(cadence) = self.limits.cadence.filter(|_| self.limited()) else {
            return Ok(Some(grant));
        };
        let mut slots = self.slots();
        let now = Instant::now();
        slots.retain(|_, slot| now.saturating_duration_since(slot.seen) < cadence.saturating_mul(2));
        let token = request.jwt().ok().flatten().map(|jwt| hash(&jwt));
        let remote = request.remote.map(|addr| addr.ip().to_canonical());
        if let Some(slot) = slots.get_mut(&request.id) {
            slot.seen = now;
            return Ok(Some(grant));
        }
        // A revalidate re-registers a session lost to a restart; only a connect is capped.
        if request.event == Event::Connect {
            let count = |same: &dyn Fn(&Slot) -> bool| slots.values().filter(|slot| same(slot)).count();
            if let (Some(cap), Some(token)) = (self.limits.token, token)
                && count(&|slot| slot.token == Some(token)) >= cap
            {
                return Err("too many live sessions for this token".to_string());
            }
            if let (Some(cap), Some(remote)) = (self.limits.remote, remote)
                && count(&|slot| slot.remote == Some(remote)) >= cap
            {
                return Err("too many live sessions from this address".to_string());
            }
        }
        slots.insert(
            request.id.clone(),
            Slot {
                token,
                remote,
                seen: now,
            },
        );
        Ok(Some(grant))
    }

    fn limited(&self) -> bool {
        self.limits.token.is_some() || self.limits.remote.is_some()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A token's identity in the session table, without keeping the token.
fn hash(token: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

async fn answer(State(server): State<Server>, body: axum::body::Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, format!("not an auth request: {err}")).into_response(),
    };
    match server.answer(&request) {
        Ok(Some(grant)) => match serde_json::to_string(&grant) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        },
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        // The reason rides in the body, for the relay's log; never the token.
        Err(reason) => {
            tracing::debug!(id = %request.id, path = %request.path, %reason, "refused");
            (StatusCode::FORBIDDEN, reason).into_response()
        }
    }
}

/// `moq auth revalidate`: POST the relay's `/sessions/revalidate` and print its answer.
async fn revalidate(args: RevalidateArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [("id", &args.id), ("path", &args.path), ("remote", &args.remote)] {
        if let Some(value) = value {
            query.append_pair(key, value);
        }
    }
    let query = query.finish();
    let target = match query.is_empty() {
        true => "/sessions/revalidate".to_string(),
        false => format!("/sessions/revalidate?{query}"),
    };
    let internal = internal_address(&args.internal)?;
    let mut stream = tokio::net::TcpStream::connect(internal)
        .await
        .with_context(|| format!("cannot reach the relay's internal listener at {internal}"))?;
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {internal}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .context("the relay did not answer within 10s")??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if !status.starts_with('2') {
        bail!("the relay answered {status}: {}", body.trim());
    }
    println!("{}", body.trim());
    Ok(())
}

/// The internal listener's `host:port`, given bare or as an `http://` URL (plain HTTP is
/// all that listener speaks).
fn internal_address(raw: &str) -> anyhow::Result<&str> {
    if let Some(rest) = raw.strip_prefix("https://") {
        bail!("the internal listener speaks plain HTTP: use http://{rest}");
    }
    let address = raw.strip_prefix("http://").unwrap_or(raw).trim_end_matches('/');
    if address.is_empty() || address.contains('/') {
        bail!("--internal wants host:port (e.g. 127.0.0.1:9090), not '{raw}'");
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn internal_listener_bare_or_as_a_url() {
        assert_eq!(internal_address("127.0.0.1:9090").unwrap(), "127.0.0.1:9090");
        assert_eq!(
            internal_address("http://127.0.0.1:9090/").unwrap(),
            "127.0.0.1:9090"
        );
        assert_eq!(internal_address("http://[::1]:9090").unwrap(), "[::1]:9090");
        assert!(
            internal_address("https://127.0.0.1:9090")
                .unwrap_err()
                .to_string()
                .contains("plain HTTP")
        );
        assert!(internal_address("http://127.0.0.1:9090/sessions").is_err());
        assert!(internal_address("http://").is_err());
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(list: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(list.iter().copied()))
            .unwrap()
            .serve
    }

    fn request(path: &str, remote: &str) -> Request {
        let mut request = Request::connect("relay", moq_auth::service::Transport::Quic, path);
        request.remote = Some(remote.parse().unwrap());
        request
    }

    #[test]
    fn flags_are_checked_like_the_reference_server() {
        assert!(server(&args(&[])).is_err(), "refuses everyone");
        assert!(server(&args(&["--public-subscribe", "anon/**", "--revalidate", "30s"])).is_err());
        assert!(server(&args(&["--public-subscribe", "anon/**", "--limit-remote", "2"])).is_err());
        assert!(Cli::try_parse_from(["serve", "--public-subscribe", "a//b"]).is_err());
        server(&args(&[
            "--public-subscribe",
            "anon/**",
            "--revalidate",
            "30s",
            "--expires",
            "1h",
        ]))
        .unwrap();
    }

    #[test]
    fn grants_refusals_and_limits() {
        let server = server(&args(&[
            "--public-publish",
            "anon/**",
            "--public-subscribe",
            "anon/**",
            "--revalidate",
            "30s",
            "--expires",
            "1h",
            "--limit-remote",
            "1",
        ]))
        .unwrap();
        let first = request("/anon/room", "192.0.2.1:1000");
        let grant = server.answer(&first).unwrap().unwrap();
        assert_eq!(grant.revalidate, Some(30));
        assert!(grant.expires.is_some());
        assert_eq!(
            serde_json::to_value(&grant).unwrap()["publish"],
            serde_json::json!(["**"])
        );
        assert!(server.answer(&request("/private", "192.0.2.9:1")).is_err());
        // The same address again is over the cap; another is not; a revalidate of the
        // first keeps its slot.
        let err = server
            .answer(&request("/anon/room", "192.0.2.1:2000"))
            .unwrap_err();
        assert!(err.contains("too many live sessions from this address"), "{err}");
        server.answer(&request("/anon/room", "192.0.2.2:1000")).unwrap();
        let mut again = first.clone();
        again.event = Event::Revalidate;
        server.answer(&again).unwrap();
        // Its end frees the slot.
        let mut end = first.clone();
        end.event = Event::End {
            reason: "closed".into(),
            duration: 1.0,
            bytes: Default::default(),
        };
        assert!(server.answer(&end).unwrap().is_none());
        server.answer(&request("/anon/room", "192.0.2.1:3000")).unwrap();
    }

    #[tokio::test]
    async fn serves_the_contract_over_http() {
        let server = server(&args(&["--public-subscribe", "anon/**"])).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, server.router()).await });
        let post = |body: String| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8(response).unwrap()
        };
        let ok = post(serde_json::to_string(&request("/anon", "127.0.0.1:1")).unwrap()).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with(r#"{"subscribe":["**"]}"#), "{ok}");
        let no = post(serde_json::to_string(&request("/secret", "127.0.0.1:1")).unwrap()).await;
        assert!(no.starts_with("HTTP/1.1 403"), "{no}");
        let bad = post("{}".to_string()).await;
        assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    }
}
