//! The WebSocket fallback: qmux over a WebSocket upgrade on any path of the public HTTP
//! and HTTPS listeners, for viewers that cannot use WebTransport (Safari, Firefox before
//! 153, networks that block UDP). It is one handshake step in front of the same session
//! gate as QUIC: admission, then the subprotocol (which names the moq-lite or moq-transport version),
//! then the URL path and `?jwt=` exactly as over WebTransport, then the shared session.

use std::sync::Arc;

use axum::{
    Extension,
    extract::{
        State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use moq_native::{Protocol, Transport, adapter::MoqSession, qmux};
use tracing::Instrument;

use super::Peer;
use crate::session::{Accepted, Sessions};

/// What the upgrade needs: the sessions and the versions allowed.
#[derive(Debug, Clone)]
pub struct Upgrades {
    /// Client sessions.
    pub sessions: Arc<Sessions>,
    /// Versions accepted (empty: all, moq-lite and moq-transport).
    pub versions: Arc<[Protocol]>,
    /// qmux limits and timers.
    pub qmux: qmux::Config,
}

/// Upgrade a request to a qmux session, or answer why not. Requests that are not a
/// WebSocket upgrade get 404, as any unknown path.
pub async fn upgrade(
    State(upgrades): State<Option<Upgrades>>,
    peer: Option<Extension<Peer>>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (Some(upgrades), Ok(ws), Some(Extension(Peer(peer)))) = (upgrades, ws, peer) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let sessions = upgrades.sessions.clone();
    // Draining: as over QUIC, no new sessions (a client moving on GOAWAY must not land here).
    if sessions.lifecycle.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let Some(ticket) = sessions.admit(peer) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many sessions\n").into_response();
    };
    let negotiated = match subprotocol(&upgrades, &headers, peer) {
        Ok(negotiated) => negotiated,
        Err(response) => return *response,
    };
    let facts = facts(&uri, &headers, peer, &negotiated);
    let (grant, lease) = match sessions.decide(facts).await {
        Ok(decided) => decided,
        Err(refusal) => {
            sessions.record(&refusal, peer);
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::UNAUTHORIZED);
            return (status, format!("{}\n", refusal.close_reason())).into_response();
        }
    };
    let id = sessions.next_id();
    let version = negotiated.version;
    let span = tracing::info_span!("conn", id, %peer, path = tracing::field::Empty, version = version.name());
    // The upgraded connection outlives this request: keep the relay's shutdown waiting for it.
    let tracked = sessions.lifecycle.track();
    ws.protocols([negotiated.subprotocol.clone()])
        .max_message_size(qmux::MAX_MESSAGE_SIZE)
        .max_frame_size(qmux::MAX_MESSAGE_SIZE)
        .read_buffer_size(qmux::READ_BUFFER_SIZE)
        .on_upgrade(move |socket| {
            async move {
                let _tracked = tracked;
                let session = qmux::Session::new(
                    qmux::Ws(socket),
                    qmux::Role::Server,
                    negotiated.wire,
                    upgrades.qmux,
                );
                let accepted = Accepted {
                    session: MoqSession::new(session, Transport::WebSocket),
                    peer,
                    version,
                    transport: Transport::WebSocket,
                    grant,
                    peer_setup: None,
                    connection: None,
                    in_band: None,
                    lease,
                    ietf: None,
                };
                sessions.run(accepted, ticket, id).await;
            }
            .instrument(span)
        })
}

/// The subprotocol (the moq-lite or moq-transport version) to answer with, or the
/// refusal (counted) when the client offers none we allow.
fn subprotocol(
    upgrades: &Upgrades,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> Result<qmux::subprotocol::Negotiated, Box<Response>> {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    qmux::subprotocol::select(offered, &upgrades.versions).map_err(|refusal| {
        tracing::info!(%peer, %refusal, "WebSocket refused: no common subprotocol");
        upgrades.sessions.refusals.refused("version");
        let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Box::new((status, format!("{refusal}\n")).into_response())
    })
}

/// What the gate (and an auth server) decides a WebSocket session by.
fn facts(
    uri: &Uri,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    negotiated: &qmux::subprotocol::Negotiated,
) -> crate::auth_service::Facts {
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    crate::auth_service::Facts {
        transport: Some(moq_auth::service::Transport::WebSocket),
        target,
        remote: Some(peer),
        local: None,
        server_name: host(headers),
        alpn: Some(negotiated.subprotocol.clone()),
        role: None,
        certificate: None,
    }
}

/// The host the request addressed (`Host`), without its port, lowercased.
fn host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let authority: axum::http::uri::Authority = host.parse().ok()?;
    Some(authority.host().trim_matches(['[', ']']).to_ascii_lowercase()).filter(|h| !h.is_empty())
}
