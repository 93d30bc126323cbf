//! The HTTP surface: the pairing API, the WebSocket upgrade, CORS, and the error answers.
//!
//! - [`pairing`]: the REST pairing routes.
//! - [`body`]: bounded JSON bodies.
//! - [`error`]: [`ApiError`] and the one mapping of errors to status codes.

pub mod body;
pub mod error;
pub mod pairing;

use std::convert::Infallible;

use hyper::upgrade::OnUpgrade;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};

pub use error::ApiError;

use crate::signaling::upgrade::{self, UpgradeError};
use crate::state::AppState;

/// The `GET /` answer that health probes look for.
pub const ROOT_MESSAGE: &str = "signalpost signaling server active";

/// Headers allowed in cross-origin requests.
const CORS_ALLOW_HEADERS: &str = "Origin, X-Requested-With, Content-Type, Accept, Authorization";
/// Methods allowed in cross-origin requests.
const CORS_ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";

/// Hands a clone of `value` to each request.
pub fn with_state<T: Clone + Send + Sync + 'static>(
    value: T,
) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// Every route of the server, with errors answered and CORS headers on every answer.
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
        .boxed();
    if let Some(store) = state.store() {
        let pairing = pairing::Pairing {
            store: store.clone(),
            signaling: state.signaling().clone(),
            max_pending_ttl: state.config().max_pending_ttl(),
        };
        routes = routes.or(pairing::routes(pairing)).unify().boxed();
    }
    routes
        .recover(error::recover)
        .unify()
        .map(with_cors)
        .boxed()
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
        .map(move |ws_path: bool, headers: HeaderMap, on_upgrade| {
            if upgrade::is_upgrade_request(&headers) {
                let signaling = state.signaling().clone();
                return match upgrade::accept(&headers, on_upgrade, signaling) {
                    Ok(response) => response,
                    Err(UpgradeError::UnsupportedVersion) => {
                        ApiError::UnsupportedWebSocketVersion.to_response()
                    }
                    Err(UpgradeError::BadHandshake | UpgradeError::NotUpgradable) => {
                        ApiError::UpgradeRequired.to_response()
                    }
                };
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
        })
        .boxed()
}

fn with_cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    response
}
