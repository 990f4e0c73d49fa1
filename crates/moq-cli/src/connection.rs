//! A session to the relay that outlives the relay it started on.
//!
//! - GOAWAY (a relay draining for a restart): connect at once to the URI it names, or to
//!   the same URL again (where DNS or a load balancer now points elsewhere), and only
//!   then let the old session go: make before break. If the new connection fails, the
//!   old session is let go anyway (the relay is waiting for us to leave) and we retry.
//! - A lost session (a relay that died, a network that dropped us): reconnect with a
//!   short backoff until `--reconnect-timeout`.
//! - Refusals end it with their reason: an HTTP 401/403, a close with code UNAUTHORIZED
//!   (`token expired`), a prefix the relay will not list, broadcasts it will not take.
//!
//! Every session shares the command's origins, so nothing above notices a move: a
//! viewer's tracks are re-bound to the new session and resume after the last group
//! they completed (moq-core's origin asks the new route for it), and a publisher's
//! broadcasts are announced again.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use moq_core::{
    Error as CoreError, Origin,
    session::{self, Config as SessionConfig, Events},
    transport::Session as _,
};
use moq_native::{adapter::MoqSession, client};
use moq_proto::{Path, Role};
use tokio::{sync::watch, task::JoinHandle};
use url::Url;

use crate::redact;

/// How long the old session keeps serving once the new one is up, so the new session
/// learns what the old one carries before the old one goes.
const HANDOVER: Duration = Duration::from_millis(500);

/// How long a GOAWAY waits for the new session before letting the old one go anyway
/// (the draining relay is waiting for us to leave).
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How long one reconnection attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a relay may take to ask a publishing session for its broadcasts (it does so
/// as the session starts) before we conclude it never will.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// First pause between reconnection attempts; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the session's token comes from (never the command line: `ps` shows that).
#[derive(Debug, Clone)]
pub(crate) enum Token {
    /// No token: anonymous.
    None,
    /// The URL's own `?jwt=` (taken out of it, so it follows a GOAWAY to another URL).
    Inline(String),
    /// `--token-file`: read at every connection, so replacing the file rotates it.
    File(PathBuf),
    /// `MOQ_TOKEN`.
    Env(String),
}

impl Token {
    /// The token to present now, if any.
    fn read(&self) -> anyhow::Result<Option<String>> {
        let token = match self {
            Self::None => return Ok(None),
            Self::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?,
            Self::Env(token) | Self::Inline(token) => token.clone(),
        };
        let token = token.trim().to_string();
        if token.is_empty() {
            bail!("the token is empty");
        }
        redact::secret(&token);
        Ok(Some(token))
    }
}

/// Split the token out of a URL's `?jwt=`, warning that it is visible there.
pub(crate) fn take_inline_token(url: &mut Url) -> Option<String> {
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "jwt")
        .map(|(_, v)| v.into_owned())?;
    redact::secret(&token);
    tracing::warn!(
        "the token in the URL is visible to other users of this machine (ps); \
         prefer --token-file FILE or the MOQ_TOKEN environment variable"
    );
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "jwt")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match kept.is_empty() {
        true => url.set_query(None),
        false => {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Some(token)
}

/// What every connection of a command shares: the client, the relay URL and the token.
pub(crate) struct Endpoint {
    /// The QUIC/WebTransport/WebSocket client.
    pub client: client::Client,
    /// Where the token comes from.
    pub token: Token,
    /// How long to keep trying to reconnect after losing the relay; zero never retries.
    pub reconnect: Duration,
}

impl Endpoint {
    /// `url` with the token added as `?jwt=` (unless it carries one): for WebTransport
    /// and WebSocket it travels in the URL, for raw QUIC in SETUP's path.
    fn authorize(&self, url: &Url) -> anyhow::Result<(Url, Option<String>)> {
        // A GOAWAY URI that carries a token of its own.
        if let Some((_, token)) = url.query_pairs().find(|(k, _)| k == "jwt") {
            redact::secret(&token);
            return Ok((url.clone(), Some(token.into_owned())));
        }
        let Some(token) = self.token.read()? else {
            return Ok((url.clone(), None));
        };
        let mut url = url.clone();
        url.query_pairs_mut().append_pair("jwt", &token);
        Ok((url, Some(token)))
    }
}

/// What the sessions of a command carry.
#[derive(Clone)]
pub(crate) struct Roles {
    /// Broadcasts we publish.
    pub publish: Option<Origin>,
    /// Where the relay's broadcasts go.
    pub consume: Option<Origin>,
    /// Which of the relay's broadcasts to ask for (a prefix; empty for all).
    pub discover: Path,
}

/// One live session.
struct Live {
    session: MoqSession,
    driver: JoinHandle<moq_core::Result<()>>,
    events: Events,
    /// The URL dialled (without the token).
    url: Url,
    /// The token presented, to tell a rotated token file from the same one.
    token: Option<String>,
}

impl Live {
    fn close(&self, reason: &str) {
        self.session.close(0, reason);
    }
}

/// Why connecting failed: whether trying again could help, and what to tell the user.
struct DialError {
    error: anyhow::Error,
    refused: bool,
}

/// Dial `url` and start a session carrying `roles`.
async fn dial(endpoint: &Endpoint, roles: &Roles, url: &Url) -> Result<Live, DialError> {
    let shown = redact::text(url.as_str());
    let (target, token) = endpoint
        .authorize(url)
        .map_err(|error| DialError { error, refused: true })?;
    let connected = match endpoint.client.connect(&target).await {
        Ok(connected) => connected,
        Err(err) => {
            let refused = matches!(err, moq_native::Error::Rejected { .. });
            let error = match &err {
                moq_native::Error::Rejected { status, .. } => {
                    // WebTransport refusals carry only a status: what our token says (read
                    // here, not verified) often tells why.
                    let why = token.as_deref().and_then(|t| {
                        token_hint(
                            t,
                            moq_auth::unix_seconds(std::time::SystemTime::now()),
                            target.path(),
                        )
                    });
                    match why {
                        Some(why) => anyhow!("{} ({why})", rejected(*status)),
                        None => anyhow!(rejected(*status)),
                    }
                }
                _ => anyhow::Error::from(err),
            };
            return Err(DialError {
                error: error.context(format!("could not connect to {shown}")),
                refused,
            });
        }
    };
    tracing::info!(url = %shown, version = %connected.version, transport = ?connected.transport, "connected");
    let mut config = SessionConfig::new(connected.version.lite().unwrap_or(moq_proto::Version::Lite06));
    config.setup.role = match (&roles.publish, &roles.consume) {
        (Some(_), None) => Some(Role::Publisher),
        (None, Some(_)) => Some(Role::Subscriber),
        _ => None,
    };
    config.publish = roles.publish.clone();
    config.consume = roles.consume.clone();
    config.discover = roles.discover.clone();
    config.setup.path = connected.setup_path(&target);
    let events = config.events.clone();
    let session = MoqSession::new(connected.session, connected.transport);
    // moq-lite, or moq-transport when `--connect-version moq-transport-NN` chose a draft.
    let driver = tokio::spawn(moq_core::ietf::run_client(
        session.clone(),
        connected.version,
        config,
    ));
    Ok(Live {
        session,
        driver,
        events,
        url: url.clone(),
        token,
    })
}

/// [`dial`], given up after [`ATTEMPT_TIMEOUT`]: a relay that stopped accepting may
/// just not answer, and QUIC would wait out its whole handshake timeout.
async fn attempt(endpoint: &Endpoint, roles: &Roles, url: &Url) -> Result<Live, DialError> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, dial(endpoint, roles, url)).await {
        Ok(result) => result,
        Err(_) => Err(DialError {
            error: anyhow!(
                "could not connect to {}: no answer within {ATTEMPT_TIMEOUT:?}",
                redact::text(url.as_str())
            ),
            refused: false,
        }),
    }
}

/// Why a relay may have refused `token` for `path`, from the token's own claims (read,
/// not verified): expired, not valid yet, or for another root. `None` when it says nothing
/// against itself (or cannot be read).
fn token_hint(token: &str, now: u64, path: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let seconds = |name: &str| claims.get(name).and_then(serde_json::Value::as_u64);
    if let Some(exp) = seconds("exp")
        && exp <= now
    {
        return Some(format!("the token expired {}s ago", now.saturating_sub(exp)));
    }
    if let Some(nbf) = seconds("nbf")
        && nbf > now
    {
        return Some(format!(
            "the token is not valid for another {}s",
            nbf.saturating_sub(now)
        ));
    }
    let root = claims
        .get("root")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let root = root.trim_matches('/');
    let path = path.trim_matches('/');
    let under = root.is_empty() || path == root || path.starts_with(&format!("{root}/"));
    (!under).then(|| format!("the token is for '{root}', not '{path}'"))
}

/// A refusal over HTTP, said so a person knows what to change.
fn rejected(status: u16) -> String {
    let hint = match status {
        401 => {
            "Unauthorized: no token, or one that has expired or does not cover this path; \
             give one with --token-file FILE or MOQ_TOKEN"
        }
        403 => "Forbidden: the token does not allow this path",
        404 => "Not Found: nothing is served at this path",
        429 => "Too Many Requests: try again later",
        _ => "",
    };
    match hint.is_empty() {
        true => format!("the relay refused the session (HTTP {status})"),
        false => format!("the relay refused the session (HTTP {status} {hint})"),
    }
}

/// What the peer refused, if anything, as the error to end with.
fn refusal(events: &session::PeerEvents, roles: &Roles) -> Option<anyhow::Error> {
    if let Some(err) = &events.publish_refused {
        return Some(anyhow!(
            "the relay refused our broadcasts ({}): this session may not publish there; \
             use a token that grants publishing (--token-file FILE or MOQ_TOKEN)",
            code_name(err)
        ));
    }
    if let Some(err) = &events.discover_refused {
        let prefix = match roles.discover.is_empty() {
            true => "the session root".to_string(),
            false => format!("'{}'", roles.discover),
        };
        return Some(anyhow!(
            "the relay refused to list the broadcasts under {prefix} ({}): \
             this session may not subscribe there",
            code_name(err)
        ));
    }
    None
}

/// A stream error as a person reads it.
fn code_name(err: &CoreError) -> String {
    match err {
        CoreError::Reset(code) if *code == CoreError::Unauthorized(String::new()).stream_code() => {
            format!("unauthorized, code {code:#x}")
        }
        CoreError::Reset(code) => format!("code {code:#x}"),
        err => err.to_string(),
    }
}

/// How a session ended, and whether that ends the command.
enum Ended {
    /// Gone for a reason reconnecting would not change: the error to exit with.
    Fatal(anyhow::Error),
    /// Lost (or closed with nothing wrong): reconnecting may help.
    Lost(String),
}

fn ended(result: Result<moq_core::Result<()>, tokio::task::JoinError>) -> Ended {
    match result {
        Ok(Ok(())) => Ended::Lost("the session ended".into()),
        Ok(Err(CoreError::Closed { code, reason })) => {
            let reason = match reason.is_empty() {
                true => format!("code {code:#x}"),
                false => format!("{reason} (code {code:#x})"),
            };
            match code {
                // A clean close (a relay shutting down without GOAWAY): come back.
                0 => Ended::Lost(format!("the relay closed the session: {reason}")),
                // UNAUTHORIZED (a token refused, expired or revoked), a protocol error,
                // no common version: the same again would fail the same way.
                0x2 | 0x3 | 0x15 => Ended::Fatal(anyhow!("the relay closed the session: {reason}")),
                _ => Ended::Lost(format!("the relay closed the session: {reason}")),
            }
        }
        Ok(Err(err @ (CoreError::Protocol(_) | CoreError::Decode(_) | CoreError::Version(_)))) => {
            Ended::Fatal(anyhow!("the session failed: {err}"))
        }
        Ok(Err(err)) => Ended::Lost(err.to_string()),
        Err(err) => Ended::Fatal(anyhow!("the session task failed: {err}")),
    }
}

/// Where GOAWAY sends us: its URI (resolved against the current URL), or the current URL
/// when it names none.
fn goaway_target(current: &Url, uri: &str) -> anyhow::Result<Url> {
    if uri.is_empty() {
        return Ok(current.clone());
    }
    // A token the relay put in the URI wins; else ours is added when dialling.
    current
        .join(uri)
        .with_context(|| format!("GOAWAY named an invalid URI '{}'", redact::text(uri)))
}

/// A relay session that follows GOAWAY and survives losing the relay; see the module
/// documentation. The supervising task owns the current session.
pub(crate) struct Connection {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Connection {
    /// Connect to `url` once (an error here is final: nothing was working yet), then
    /// keep the session going in the background.
    pub(crate) async fn open(endpoint: Arc<Endpoint>, roles: Roles, url: &Url) -> anyhow::Result<Self> {
        let live = dial(&endpoint, &roles, url).await.map_err(|e| e.error)?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(endpoint, roles, live, stopped));
        Ok(Self {
            stop,
            task: Some(task),
        })
    }

    /// Resolves with the reason once the connection is given up for good (a refusal, or
    /// no relay for `--reconnect-timeout`); never while it works.
    pub(crate) async fn failed(&mut self) -> anyhow::Error {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        match result {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(err)) => err,
            Err(err) => anyhow!("the connection task failed: {err}"),
        }
    }

    /// Close the session (telling the relay we are done) and stop.
    pub(crate) async fn close(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Keep a session going: follow GOAWAY, reconnect when lost, stop when told or refused.
async fn supervise(
    endpoint: Arc<Endpoint>,
    roles: Roles,
    mut live: Live,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let mut events = live.events.subscribe();
        let refused = async {
            let seen = events.wait_for(|e| refusal(e, &roles).is_some()).await;
            seen.ok().and_then(|e| refusal(&e, &roles))
        };
        let goaway = live.events.clone();
        // A relay that takes broadcasts from this session asks for them at once.
        let unasked = async {
            let mut asked = live.events.subscribe();
            let wait = asked.wait_for(|e| e.announce_requested);
            if roles.publish.is_none() || tokio::time::timeout(ASK_TIMEOUT, wait).await.is_ok() {
                std::future::pending::<()>().await;
            }
        };
        let lost = tokio::select! {
            () = stopped(&mut stop) => {
                live.close("done");
                let _ = tokio::time::timeout(Duration::from_secs(1), &mut live.driver).await;
                return Ok(());
            }
            refused = refused => {
                live.close("refused");
                return Err(refused.unwrap_or_else(|| anyhow!("refused by the relay")));
            }
            () = unasked => {
                live.close("not asked for our broadcasts");
                return Err(anyhow!(
                    "the relay at {} did not ask for our broadcasts within {ASK_TIMEOUT:?}: this \
                     session may not publish there (anonymous access may be subscribe-only); \
                     use a token that grants publishing (--token-file FILE or MOQ_TOKEN)",
                    redact::text(live.url.as_str())
                ));
            }
            uri = goaway.goaway() => match follow_goaway(&endpoint, &roles, &mut live, &uri).await? {
                None => continue,
                Some(lost) => lost,
            },
            result = &mut live.driver => match ended(result) {
                Ended::Fatal(err) => match rotated(&endpoint, &live) {
                    // An expired token replaced in its file: carry on with the new one.
                    true => (live.url.clone(), format!("{err:#}; the token file has a new token")),
                    false => return Err(err),
                },
                Ended::Lost(why) => (live.url.clone(), why),
            },
        };
        live = reconnect(&endpoint, &roles, lost, &mut stop).await?;
    }
}

/// Follow the relay's GOAWAY to `uri` (or the same URL): dial the new session and hand
/// over to it (`live` then is the new one), or close the old one and say where to find a
/// relay again and why. A refusal of the new session is final.
async fn follow_goaway(
    endpoint: &Endpoint,
    roles: &Roles,
    live: &mut Live,
    uri: &str,
) -> anyhow::Result<Option<(Url, String)>> {
    let target = goaway_target(&live.url, uri).unwrap_or_else(|err| {
        tracing::warn!("{err:#}; reconnecting to the same URL");
        live.url.clone()
    });
    let shown = redact::text(target.as_str());
    tracing::info!(to = %shown, "the relay is going away; moving");
    let attempt = attempt(endpoint, roles, &target);
    tokio::pin!(attempt);
    // Make before break, but the draining relay waits for us to leave: past
    // GOAWAY_GRACE the old session goes while the new one is still dialling.
    let result = match tokio::time::timeout(GOAWAY_GRACE, &mut attempt).await {
        Ok(result) => result,
        Err(_) => {
            tracing::info!(to = %shown, "the new session is slow to come up; leaving the old one now");
            live.close("going away");
            attempt.await
        }
    };
    match result {
        Ok(next) => {
            let old = std::mem::replace(live, next);
            handover(old, live).await;
            Ok(None)
        }
        Err(err) if err.refused => {
            live.close("going away");
            Err(err.error.context("the relay went away (GOAWAY)"))
        }
        Err(err) => {
            // Let the draining relay finish; find a relay again below.
            live.close("going away");
            Ok(Some((
                target.clone(),
                format!("the relay went away (GOAWAY) and {:#}", err.error),
            )))
        }
    }
}

/// Resolves once the command asks the connection to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The command is gone without saying so: stop too.
    }
}

/// Whether the token file now holds a different token than the session presented.
fn rotated(endpoint: &Endpoint, live: &Live) -> bool {
    matches!(endpoint.token, Token::File(_))
        && endpoint
            .token
            .read()
            .ok()
            .flatten()
            .is_some_and(|token| Some(&token) != live.token.as_ref())
}

/// Let the new session take over: give it a moment to learn what the old one carries,
/// then close the old one (its relay is waiting for us to leave).
async fn handover(mut old: Live, new: &Live) {
    tracing::info!(from = %redact::text(old.url.as_str()), to = %redact::text(new.url.as_str()), "handing over to the new session");
    let _ = tokio::time::timeout(HANDOVER, &mut old.driver).await;
    old.close("moved to a new session");
}

/// Dial `lost.0` until it works, a refusal, `stop`, or `--reconnect-timeout` passes.
async fn reconnect(
    endpoint: &Endpoint,
    roles: &Roles,
    (url, why): (Url, String),
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Live> {
    let shown = redact::text(url.as_str());
    if endpoint.reconnect.is_zero() {
        bail!("lost the relay at {shown}: {why}");
    }
    tracing::warn!(url = %shown, "{why}; reconnecting");
    let deadline = Instant::now() + endpoint.reconnect;
    let mut backoff = MIN_BACKOFF;
    loop {
        let attempt = tokio::select! {
            () = stopped(stop) => bail!("stopped while reconnecting"),
            attempt = attempt(endpoint, roles, &url) => attempt,
        };
        let err = match attempt {
            Ok(live) => {
                tracing::info!(url = %shown, "reconnected");
                return Ok(live);
            }
            Err(err) if err.refused => return Err(err.error),
            Err(err) => err.error,
        };
        if Instant::now() + backoff > deadline {
            return Err(err.context(format!(
                "lost the relay ({why}) and could not reconnect within {:?}",
                endpoint.reconnect
            )));
        }
        tracing::debug!(error = %redact::text(&format!("{err:#}")), "reconnect attempt failed");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goaway_targets() {
        let current = Url::parse("https://relay-1.example:443/anon?x=1").unwrap();
        assert_eq!(goaway_target(&current, "").unwrap(), current);
        assert_eq!(
            goaway_target(&current, "https://relay-2.example/anon")
                .unwrap()
                .as_str(),
            "https://relay-2.example/anon"
        );
        assert_eq!(
            goaway_target(&current, "//relay-3.example:4443/anon")
                .unwrap()
                .as_str(),
            "https://relay-3.example:4443/anon"
        );
        assert_eq!(
            goaway_target(&current, "/other").unwrap().as_str(),
            "https://relay-1.example/other"
        );
        assert!(goaway_target(&current, "http://[::1").is_err());
    }

    #[test]
    fn closes_that_end_the_command_and_closes_that_do_not() {
        let closed = |code, reason: &str| {
            ended(Ok(Err(CoreError::Closed {
                code,
                reason: reason.into(),
            })))
        };
        match closed(0x2, "unauthorized: token expired") {
            Ended::Fatal(err) => assert_eq!(
                err.to_string(),
                "the relay closed the session: unauthorized: token expired (code 0x2)"
            ),
            Ended::Lost(why) => panic!("token expiry is final, not {why}"),
        }
        assert!(matches!(closed(0, "relay shutting down"), Ended::Lost(_)));
        assert!(matches!(ended(Ok(Ok(()))), Ended::Lost(_)));
        assert!(matches!(
            ended(Ok(Err(CoreError::Transport("timed out".into())))),
            Ended::Lost(_)
        ));
    }

    #[test]
    fn an_inline_token_is_taken_out_of_the_url() {
        let mut url = Url::parse("https://relay/anon?jwt=eyJa.eyJb.c2ln&x=1").unwrap();
        assert_eq!(take_inline_token(&mut url).as_deref(), Some("eyJa.eyJb.c2ln"));
        assert_eq!(url.as_str(), "https://relay/anon?x=1");
        let mut url = Url::parse("https://relay/anon?jwt=abc").unwrap();
        assert_eq!(take_inline_token(&mut url).as_deref(), Some("abc"));
        assert_eq!(url.as_str(), "https://relay/anon");
        let mut url = Url::parse("https://relay/anon").unwrap();
        assert_eq!(take_inline_token(&mut url), None);
    }

    #[test]
    fn http_refusals_say_what_to_do() {
        assert!(rejected(401).contains("--token-file"));
    }

    #[test]
    fn a_refused_token_says_what_is_wrong_with_it() {
        use base64::Engine as _;
        let token = |claims: &str| {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.sig", b64.encode(r#"{"alg":"EdDSA"}"#), b64.encode(claims))
        };
        let now = 1_000;
        assert_eq!(
            token_hint(&token(r#"{"root":"a","exp":990}"#), now, "/a").as_deref(),
            Some("the token expired 10s ago")
        );
        assert_eq!(
            token_hint(&token(r#"{"nbf":1005}"#), now, "/a").as_deref(),
            Some("the token is not valid for another 5s")
        );
        assert_eq!(
            token_hint(&token(r#"{"root":"other","exp":2000}"#), now, "/secret").as_deref(),
            Some("the token is for 'other', not 'secret'")
        );
        assert_eq!(token_hint(&token(r#"{"root":"a"}"#), now, "/a/b"), None);
        assert_eq!(
            token_hint(&token(r#"{"root":"ab"}"#), now, "/a").as_deref(),
            Some("the token is for 'ab', not 'a'")
        );
        assert_eq!(token_hint(&token(r#"{}"#), now, "/x"), None);
        // Not a JWT, or not JSON inside: nothing to say.
        assert_eq!(token_hint("garbage", now, "/x"), None);
        assert_eq!(token_hint("a.!!!.c", now, "/x"), None);
        assert_eq!(token_hint(&format!("a.{}.c", "bm90IGpzb24"), now, "/x"), None);
        assert_eq!(rejected(500), "the relay refused the session (HTTP 500)");
    }
}
