//! The HTTP surface: the pairing API, the WebSocket upgrade, operator endpoints, CORS and
//! security headers, and the error answers.
//!
//! - [`pairing`]: the REST pairing routes.
//! - [`admin`]: bearer-token operator endpoints.
//! - [`ops`]: health, stats, Prometheus metrics and the recent log lines.
//! - [`turn`]: short-lived TURN credentials.
//! - [`web`]: the embedded browser client and demo page.
//! - [`body`]: bounded JSON bodies.
//! - [`error`]: [`ApiError`] and the one mapping of errors to status codes.

pub mod admin;
pub mod body;
pub mod error;
pub mod ops;
pub mod pairing;
pub mod turn;
pub mod web;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

pub use error::ApiError;

use crate::limits::Limiters;
use crate::limits::client::ClientKey;
use crate::limits::origin::AllowedOrigins;
use crate::server::listener::PeerAddr;
use crate::signaling::upgrade::{self, UpgradeError};
use crate::state::AppState;
use crate::telemetry::Refusal;

/// The `GET /` answer that health probes look for.
pub const ROOT_MESSAGE: &str = "signalpost signaling server active";

/// Headers allowed in cross-origin requests.
const CORS_ALLOW_HEADERS: &str = "Origin, X-Requested-With, Content-Type, Accept, Authorization";
/// Methods allowed in cross-origin requests.
const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Content-Security-Policy of every answer that is not a page: nothing may load from it.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Hands a clone of `value` to each request.
pub fn with_state<T: Clone + Send + Sync + 'static>(
    value: T,
) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// The per-client key of the request's client (see [`crate::limits::client`]).
pub fn client_key(
    limits: Arc<Limiters>,
) -> impl Filter<Extract = (ClientKey,), Error = Infallible> + Clone {
    warp::ext::optional::<PeerAddr>()
        .and(warp::header::headers_cloned())
        .map(move |peer: Option<PeerAddr>, headers: HeaderMap| {
            let peer: Option<SocketAddr> = peer.map(|p| p.0);
            // Several X-Forwarded-For headers form one list, in order.
            let forwarded: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
            limits.client_key(peer, forwarded.as_deref())
        })
}

/// Every route of the server, with errors answered, and CORS and security headers on every
/// answer.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    // Not `warp::options()`: its 405 for other methods would outrank every route's 404.
    let preflight = warp::method().and_then(|method: Method| async move {
        if method == Method::OPTIONS {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(warp::reject::not_found())
        }
    });
    let mut routes = preflight
        .or(root_and_websocket(state.clone()))
        .unify()
        .or(admin::rooms(state.clone()))
        .unify()
        .or(web::routes())
        .unify()
        .or(ops::routes(state.clone()))
        .unify()
        .boxed();
    let mut api = turn::routes(state.clone());
    if let Some(store) = state.store() {
        let pairing = pairing::Pairing {
            store: store.clone(),
            signaling: state.signaling().clone(),
            limits: state.limits().clone(),
            max_pending_ttl: state.config().max_pending_ttl(),
            max_pending_per_client: state.config().limits.max_pending_per_client,
        };
        api = api.or(pairing::routes(pairing)).unify().boxed();
    }
    let api = rest_rate_limit(state.clone()).and(api);
    routes = routes.or(api).unify().boxed();
    let origins = state.config().allowed_origins.clone();
    routes
        .recover(error::recover)
        .unify()
        .map(ops::count_refusals(state.clone()))
        .and(warp::header::optional::<String>("origin"))
        .map(move |response, origin: Option<String>| {
            with_headers(response, origin.as_deref(), origins.as_ref())
        })
        .boxed()
}

/// Counts every `/api/` request against its client's REST rate.
fn rest_rate_limit(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let limits = state.limits().clone();
    let metrics = state.metrics().clone();
    warp::path::full()
        .and(client_key(limits.clone()))
        .and_then(move |path: warp::path::FullPath, key: ClientKey| {
            let limits = limits.clone();
            let metrics = metrics.clone();
            async move {
                if !path.as_str().starts_with("/api/") {
                    return Err(warp::reject::not_found());
                }
                limits.rest.check(key).map_err(|wait| {
                    metrics.refused(Refusal::Rate);
                    log::info!("rate limited: {key} (REST)");
                    warp::reject::custom(ApiError::TooManyRequests(wait))
                })
            }
        })
        .untuple_one()
}

/// GET / and GET /ws: the WebSocket upgrade; a plain GET / is the health message.
fn root_and_websocket(state: AppState) -> BoxedFilter<(Response,)> {
    let root = warp::path::end().map(|| false);
    let ws = warp::path!("ws").map(|| true);
    root.or(ws)
        .unify()
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(client_key(state.limits().clone()))
        .map(
            move |ws_path: bool, headers: HeaderMap, on_upgrade, key: ClientKey| {
                if upgrade::is_upgrade_request(&headers) {
                    return websocket(&state, &headers, on_upgrade, key)
                        .unwrap_or_else(|e| e.to_response());
                }
                if ws_path {
                    ApiError::UpgradeRequired.to_response()
                } else {
                    let mut response = Response::new(ROOT_MESSAGE.into());
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    response
                }
            },
        )
        .boxed()
}

/// Admission of a WebSocket: origin, upgrade rate, connection slots, then the handshake.
fn websocket(
    state: &AppState,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    key: ClientKey,
) -> Result<Response, ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if let (Some(allowed), Some(origin)) = (&state.config().allowed_origins, origin)
        && !allowed.allows(origin)
    {
        state.metrics().refused(Refusal::Origin);
        log::info!("websocket refused: origin not allowed ({key})");
        return Err(ApiError::OriginNotAllowed);
    }
    let limits = state.limits();
    limits.upgrades.check(key).map_err(|wait| {
        state.metrics().refused(Refusal::Rate);
        log::info!("rate limited: {key} (WebSocket upgrades)");
        ApiError::TooManyRequests(wait)
    })?;
    let slot = limits.connections.acquire(key).map_err(|refused| {
        state.metrics().refused(Refusal::Rate);
        log::info!("websocket refused: {refused:?} connection limit ({key})");
        match refused {
            crate::limits::slots::SlotRefused::PerClient => {
                ApiError::TooManyRequests(std::time::Duration::from_secs(1))
            }
            crate::limits::slots::SlotRefused::Global => ApiError::ServerFull,
        }
    })?;
    upgrade::accept(headers, on_upgrade, state.signaling().clone(), slot).map_err(|e| match e {
        UpgradeError::UnsupportedVersion => ApiError::UnsupportedWebSocketVersion,
        UpgradeError::BadHandshake | UpgradeError::NotUpgradable => ApiError::UpgradeRequired,
    })
}

/// CORS (reflecting an allowed origin when `ALLOWED_ORIGINS` is set, `*` otherwise) and the
/// security headers every answer carries.
fn with_headers(
    mut response: Response,
    origin: Option<&str>,
    allowed: Option<&AllowedOrigins>,
) -> Response {
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = response.headers_mut();
    match allowed {
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        Some(allowed) => {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
            if let Some(origin) = origin.filter(|o| allowed.allows(o))
                && let Ok(value) = HeaderValue::from_str(origin)
            {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
        }
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_page && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    response
}
