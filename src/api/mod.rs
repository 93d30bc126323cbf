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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

pub use error::ApiError;

use crate::config::origins::AllowedOrigins;
use crate::limits::Limiters;
use crate::limits::client::ClientKey;
use crate::limits::slots::Slot;
use crate::server::listener::PeerAddr;
use crate::signaling::upgrade::{self, UpgradeError};
use crate::state::AppState;
use crate::telemetry::Refusal;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
    client_ip(limits).map(ClientKey::of)
}

/// The address of the request's client: the socket peer, or, from a trusted proxy, the
/// right-most untrusted `X-Forwarded-For` entry (see [`crate::limits::client`]).
pub fn client_ip(
    limits: Arc<Limiters>,
) -> impl Filter<Extract = (IpAddr,), Error = Infallible> + Clone {
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
            limits.client_ip(peer, forwarded.as_deref())
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
        .or(web::routes())
        .unify()
        .or(ops::keep_alive())
        .unify()
        .boxed();
    // Everything an operator or a REST client calls counts against the client's REST rate.
    let mut limited = turn::routes(state.clone())
        .or(ops::routes(state.clone()))
        .unify()
        .or(admin::rooms(state.clone()))
        .unify()
        .boxed();
    if let (Some(store), Some(desk)) = (state.store(), state.desk()) {
        let pairing = pairing::Pairing {
            desk: desk.clone(),
            store: store.clone(),
            signaling: state.signaling().clone(),
            limits: state.limits().clone(),
            max_pending_ttl: state.config().max_pending_ttl(),
            max_pending_per_client: state.config().limits.max_pending_per_client,
            max_room_capacity: state.config().max_room_capacity,
        };
        // Create, accept and check count the REST rate in their own store step.
        routes = routes
            .or(pairing::counted_routes(pairing.clone()))
            .unify()
            .boxed();
        limited = limited.or(pairing::routes(pairing)).unify().boxed();
    }
    let limited = rest_rate_limit(state.clone()).and(limited);
    routes = routes.or(limited).unify().boxed();
    let origins = state.config().allowed_origins.clone();
    request_guard(state.clone())
        .and(routes)
        .recover(error::recover)
        .unify()
        .map(ops::count_refusals(state.clone()))
        .and(warp::header::optional::<String>("origin"))
        .map(move |response, origin: Option<String>| {
            with_headers(response, origin.as_deref(), origins.as_ref())
        })
        .boxed()
}

/// GET, and HEAD answered like it without the body (hyper leaves the body out): uptime monitors
/// probe with HEAD.
pub fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// Paths whose every request counts against the client's REST rate: the API and the operator
/// endpoints (which would otherwise be a free lever: a database probe or a token guess each).
/// The pairing routes that count it themselves ([`pairing::counted_routes`]) come first, so
/// their requests never reach the filter.
fn is_rate_limited(path: &str) -> bool {
    path.starts_with("/api/")
        || matches!(path, "/health" | "/stats" | "/metrics" | "/rooms" | "/logs")
}

/// Refuses, before anything else runs, what a hostile page could make a visitor's browser send:
/// a request from an origin not in `ALLOWED_ORIGINS` (403, whatever the path), and a POST or
/// DELETE whose `Content-Type` is not JSON (415), which a page can send without a CORS
/// preflight. A missing `Origin` (native apps, curl) or `Content-Type` (some native clients)
/// is accepted.
fn request_guard(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let allowed = state.config().allowed_origins.clone();
    let metrics = state.metrics().clone();
    warp::method()
        .and(warp::header::optional::<String>("origin"))
        .and(warp::header::optional::<String>("content-type"))
        .and_then(
            move |method: Method, origin: Option<String>, content_type: Option<String>| {
                let refusal = match (&allowed, origin) {
                    (Some(allowed), Some(origin)) if !allowed.allows(&origin) => {
                        metrics.refused(Refusal::Origin);
                        log::info!("request refused: origin not allowed");
                        Some(ApiError::OriginNotAllowed)
                    }
                    _ if (method == Method::POST || method == Method::DELETE)
                        && content_type.as_deref().is_some_and(|t| !is_json(t)) =>
                    {
                        log::debug!("request refused: not JSON");
                        Some(ApiError::UnsupportedMediaType)
                    }
                    _ => None,
                };
                async move {
                    match refusal {
                        Some(e) => Err(warp::reject::custom(e)),
                        None => Ok(()),
                    }
                }
            },
        )
        .untuple_one()
}

/// Whether a `Content-Type` is `application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Counts every request of a [rate-limited path](is_rate_limited) against its client's REST
/// rate.
fn rest_rate_limit(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            if is_rate_limited(path.as_str()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(rest_rate(state))
}

/// Counts the request against its client's REST rate: 429 with `Retry-After` beyond it. The
/// main port's API and the dialects' HTTP routes share the one budget per client.
pub fn rest_rate(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let limits = state.limits().clone();
    let metrics = state.metrics().clone();
    client_key(limits.clone())
        .and_then(move |key: ClientKey| {
            let limits = limits.clone();
            let metrics = metrics.clone();
            async move {
                limits
                    .rest()
                    .check(key)
                    .await
                    .map_err(|wait| warp::reject::custom(rate_refusal(&metrics, key, wait)))
            }
        })
        .untuple_one()
}

/// A request over its client's REST rate: counted, logged, and answered 429 with `Retry-After`.
pub fn rate_refusal(
    metrics: &crate::telemetry::Metrics,
    key: ClientKey,
    wait: std::time::Duration,
) -> ApiError {
    metrics.refused(Refusal::Rate);
    log::info!("rate limited: {key} (REST)");
    ApiError::TooManyRequests(wait)
}

/// GET / and GET /ws: the WebSocket upgrade; a plain GET / is the health message.
fn root_and_websocket(state: AppState) -> BoxedFilter<(Response,)> {
    let root = warp::path::end().map(|| false);
    let ws = warp::path!("ws").map(|| true);
    root.or(ws)
        .unify()
        .and(get_or_head())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(client_ip(state.limits().clone()))
        .then(
            move |ws_path: bool, headers: HeaderMap, on_upgrade, ip: IpAddr| {
                let state = state.clone();
                async move {
                    if upgrade::is_upgrade_request(&headers) {
                        return websocket(&state, &headers, on_upgrade, ip)
                            .await
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
                }
            },
        )
        .boxed()
}

/// Admission of a WebSocket: upgrade rate, connection slots, then the handshake.
async fn websocket(
    state: &AppState,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    ip: IpAddr,
) -> Result<Response, ApiError> {
    let key = ClientKey::of(ip);
    // The origin was checked for every request by the request guard.
    let slot = admit_websocket(state, key).await?;
    upgrade::accept(headers, on_upgrade, state.signaling().clone(), slot, ip).map_err(upgrade_error)
}

/// The answer to a refused handshake.
fn upgrade_error(e: UpgradeError) -> ApiError {
    match e {
        UpgradeError::UnsupportedVersion => ApiError::UnsupportedWebSocketVersion,
        UpgradeError::BadHandshake | UpgradeError::NotUpgradable => ApiError::UpgradeRequired,
    }
}

/// Answers a WebSocket upgrade on a dialect's listener as the main port does (the client's
/// upgrade rate, a connection slot, the handshake), then runs `session` on the connection,
/// which holds the slot until the session ends. Refusals are answered as on the main port.
pub async fn dialect_websocket<F, Fut>(
    state: &AppState,
    request: UpgradeRequest,
    config: WebSocketConfig,
    session: F,
) -> Response
where
    F: FnOnce(upgrade::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let UpgradeRequest {
        headers,
        on_upgrade,
        key,
    } = request;
    let slot = match admit_websocket(state, key).await {
        Ok(slot) => slot,
        Err(e) => return e.to_response(),
    };
    let sessions = state.signaling().sessions().clone();
    upgrade::accept_with(
        &headers,
        on_upgrade,
        &sessions,
        config,
        move |ws| async move {
            let _slot = slot;
            session(ws).await;
        },
    )
    .unwrap_or_else(|e| upgrade_error(e).to_response())
}

/// A request that asks for a WebSocket (`Upgrade: websocket`), on any path, with what its
/// upgrade needs; other requests are rejected (404) for the routes after it.
pub struct UpgradeRequest {
    headers: HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    key: ClientKey,
}

/// Passes requests that ask for a WebSocket, whatever their path (the dialects' servers accept
/// an upgrade on any path).
pub fn upgrade_request(
    state: &AppState,
) -> impl Filter<Extract = (UpgradeRequest,), Error = Rejection> + Clone + use<> {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<OnUpgrade>())
        .and(client_key(state.limits().clone()))
        .and_then(
            |headers: HeaderMap, on_upgrade: Option<OnUpgrade>, key: ClientKey| async move {
                if upgrade::is_upgrade_request(&headers) {
                    Ok(UpgradeRequest {
                        headers,
                        on_upgrade,
                        key,
                    })
                } else {
                    Err(warp::reject::not_found())
                }
            },
        )
}

/// A dialect listener's routes made ready to serve: the main port's request guard first
/// (origins outside `ALLOWED_ORIGINS`: 403; POST bodies that are not JSON: 415), `recover`
/// answering every rejection in the dialect's own way, and the main port's CORS and security
/// headers on every answer.
pub fn dialect_routes<R, Fut>(
    state: AppState,
    routes: BoxedFilter<(Response,)>,
    recover: R,
) -> BoxedFilter<(Response,)>
where
    R: Fn(Rejection) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let origins = state.config().allowed_origins.clone();
    request_guard(state)
        .and(routes)
        .recover(recover)
        .unify()
        .and(warp::header::optional::<String>("origin"))
        .map(move |response, origin: Option<String>| {
            with_headers(response, origin.as_deref(), origins.as_ref())
        })
        .boxed()
}

/// Admission of a WebSocket on any listener: the client's upgrade rate, then a connection slot
/// (held for as long as the session lives).
async fn admit_websocket(state: &AppState, key: ClientKey) -> Result<Slot, ApiError> {
    let limits = state.limits();
    limits.upgrades().check(key).await.map_err(|wait| {
        state.metrics().refused(Refusal::Rate);
        log::info!("rate limited: {key} (WebSocket upgrades)");
        ApiError::TooManyRequests(wait)
    })?;
    limits.connections().acquire(key).map_err(|refused| {
        state.metrics().refused(Refusal::Rate);
        log::info!("websocket refused: {refused:?} connection limit ({key})");
        match refused {
            crate::limits::slots::SlotRefused::PerClient => {
                ApiError::TooManyRequests(std::time::Duration::from_secs(1))
            }
            crate::limits::slots::SlotRefused::Global => ApiError::ServerFull,
        }
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
