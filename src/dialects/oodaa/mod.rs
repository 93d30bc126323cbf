//! The Oodaa messenger's protocol (`OODAA_PORT`): the raw WebSocket JSON server its current app
//! talks to. A WebSocket on any path: `connected` first, then `register` a user id, presence
//! pushes, `message`, `contact-request` and `contact-accepted` (and offer, answer, candidate)
//! relayed by user id, `get-online-users`, `ping`. `GET /health` and `GET /` answer a health
//! document; every other path 404.
//!
//! Presence is the core's: the online users are the members of one lobby of space `oodaa`
//! ([`lobby`]), so it works wherever rooms work, across nodes included.
//!
//! - [`wire`]: the messages.
//! - [`session`]: one connection's translation onto the lobby.

pub mod session;
pub mod wire;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::api::{self, ApiError, UpgradeRequest, with_state};
use crate::server::listener::HttpService;
use crate::signaling::MAX_MESSAGE_BYTES;
use crate::signaling::rooms::RoomKey;
use crate::signaling::upgrade::websocket_config_for;
use crate::state::AppState;

/// The listener's name in logs and metrics.
pub const NAME: &str = "oodaa";

/// The space of this protocol's rooms.
pub const SPACE: &str = "oodaa";

/// The `service` the health document names.
const SERVICE: &str = "Oodaa Signaling Server";

/// The lobby of everyone online: members are users, known by their user id.
pub fn lobby() -> RoomKey {
    RoomKey::new(SPACE, "online")
}

/// What every connection of the listener shares.
#[derive(Debug)]
pub struct Settings {
    /// `OODAA_MAX_USERINFO_BYTES`.
    pub max_user_info_bytes: usize,
}

/// The listener: its settings and its open connections.
#[derive(Clone)]
struct Listener {
    state: AppState,
    settings: Arc<Settings>,
    /// Connections open on this node (the health document's `clients`).
    clients: Arc<AtomicUsize>,
}

/// Counts a connection among the listener's `clients` while it lives.
struct Client(Arc<AtomicUsize>);

impl Client {
    fn open(clients: &Arc<AtomicUsize>) -> Self {
        clients.fetch_add(1, Ordering::Relaxed);
        Self(clients.clone())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The listener's HTTP service: the WebSocket on any path, the health document, 404.
pub fn service(state: &AppState) -> impl HttpService {
    let listener = Listener {
        state: state.clone(),
        settings: Arc::new(Settings {
            max_user_info_bytes: state.config().oodaa_max_userinfo_bytes as usize,
        }),
        clients: Arc::default(),
    };
    warp::service(routes(listener))
}

fn routes(listener: Listener) -> BoxedFilter<(Response,)> {
    let state = listener.state.clone();
    let routes = websocket(&listener).or(health(listener)).unify().boxed();
    api::dialect_routes(state, routes, recover)
}

/// Oodaa: an upgrade on any path, as the original's `ws` server took one.
fn websocket(listener: &Listener) -> BoxedFilter<(Response,)> {
    api::upgrade_request(&listener.state)
        .and(with_state(listener.clone()))
        .then(|request: UpgradeRequest, listener: Listener| async move {
            let config = websocket_config_for(MAX_MESSAGE_BYTES);
            let signaling = listener.state.signaling().clone();
            api::dialect_websocket(&listener.state, request, config, move |ws| async move {
                let _client = Client::open(&listener.clients);
                let settings = listener.settings.clone();
                let make = |session| session::Oodaa::new(signaling.clone(), session, settings);
                crate::dialects::run_session(NAME, signaling.clone(), ws, make).await;
            })
            .await
        })
        .boxed()
}

/// The health document.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
    /// Connections open on this node.
    clients: usize,
    /// Users online (on every node).
    users: usize,
    timestamp: String,
}

/// Oodaa: GET /health and GET / (any method, as the original), the health document its host's
/// health check reads.
fn health(listener: Listener) -> BoxedFilter<(Response,)> {
    let state = listener.state.clone();
    warp::path::end()
        .or(warp::path!("health"))
        .unify()
        .and(api::rest_rate(state))
        .and(with_state(listener))
        .then(|listener: Listener| async move { health_document(&listener).await })
        .boxed()
}

async fn health_document(listener: &Listener) -> Response {
    let users = match listener.state.signaling().rooms().members(&lobby()).await {
        Ok(summary) => summary.map_or(0, |s| s.members.len()),
        Err(e) => {
            log::error!("oodaa health: the online users cannot be counted: {e}");
            return ApiError::Internal("rooms_unavailable").to_response();
        }
    };
    let body = Health {
        status: "healthy",
        service: SERVICE,
        clients: listener.clients.load(Ordering::Relaxed),
        users,
        timestamp: iso_now(),
    };
    warp::reply::json(&body).into_response()
}

/// Now, as JavaScript's `toISOString()` writes it.
fn iso_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The main port's answers to its own refusals (origin, rate, connection slots); everything
/// else is the original's 404 `Not Found` in plain text.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.to_response());
    }
    let mut response = warp::reply::with_status("Not Found", StatusCode::NOT_FOUND).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}
