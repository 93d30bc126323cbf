//! PrivyDrop's HTTP API on its listener, and the guard around everything served there.
//!
//! The routes answer as the original Express server does (status codes, bodies, exact
//! strings), with signalpost's per-client REST rate over all of them. [`Guarded`] wraps the whole
//! listener, Socket.IO included: it refuses origins not in `ALLOWED_ORIGINS` (the original
//! accepted WebSockets from any page), answers CORS preflights, and grants CORS with credentials,
//! which the PrivyDrop client sends (`credentials: "include"`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, Request, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{PrivyDrop, SPACE, wire};
use crate::api::body::optional_json_object;
use crate::api::{ApiError, client_key, get_or_head, with_state};
use crate::config::origins::AllowedOrigins;
use crate::limits::client::ClientKey;
use crate::protocol::rest::Object;
use crate::signaling::rooms::RoomKey;
use crate::telemetry::{Metrics, Refusal};

/// Longest referrer counted, in characters; longer ones are cut. Referrers are page names or
/// hosts.
pub const MAX_REFERRER_CHARS: usize = 128;

/// Distinct referrers counted per day; visits from further ones count as one `(other)`. Bounds
/// what a client inventing referrers can make the server store, at a size a dashboard can show.
pub const MAX_REFERRERS_PER_DAY: u32 = 1000;

/// Days of referrer counts kept and shown (the original's 30).
pub const REFERRER_DAYS: u32 = 30;

/// Longest client log message logged, in characters; the rest is cut.
pub const MAX_CLIENT_LOG_CHARS: usize = 2000;

/// How long `/health/detailed` waits for the database (as the main port's `/health`).
const HEALTH_DB_TIMEOUT: Duration = crate::api::ops::HEALTH_DB_TIMEOUT;

/// Methods and headers the original allows in cross-origin requests.
const CORS_ALLOW_METHODS: &str = "GET, POST, OPTIONS";
const CORS_ALLOW_HEADERS: &str = "Content-Type, Authorization";

/// Every route of the API, each request counted against its client's REST rate first.
pub fn routes(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    let api = get_room(dialect.clone())
        .or(create_room(dialect.clone()))
        .unify()
        .or(check_room(dialect.clone()))
        .unify()
        .or(leave_room(dialect.clone()))
        .unify()
        .or(set_track(dialect.clone()))
        .unify()
        .or(logs_debug())
        .unify()
        .or(health(dialect.clone()))
        .unify()
        .or(health_detailed(dialect.clone()))
        .unify();
    rest_rate_limit(dialect)
        .and(api)
        .recover(crate::api::error::recover)
        .unify()
        .boxed()
}

fn rest_rate_limit(
    dialect: Arc<PrivyDrop>,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    client_key(dialect.limits.clone())
        .and_then(move |key: ClientKey| {
            let dialect = dialect.clone();
            async move {
                dialect.limits.rest().check(key).await.map_err(|wait| {
                    dialect.signaling.metrics().refused(Refusal::Rate);
                    log::info!("rate limited: {key} (PrivyDrop API)");
                    warp::reject::custom(ApiError::TooManyRequests(wait))
                })
            }
        })
        .untuple_one()
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn ok(body: Value) -> Response {
    json_reply(StatusCode::OK, &body)
}

/// The original's answer to any failure of its store.
fn internal_error() -> Response {
    json_reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({"error": "Internal server error"}),
    )
}

/// A body field that is a non-empty string (Express reads a missing body as `{}`).
fn text<'a>(body: &'a Option<Object>, field: &str) -> Option<&'a str> {
    body.as_ref()?
        .get(field)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The length JavaScript gives a string (UTF-16 code units), which the original compares.
fn js_length(s: &str) -> usize {
    s.encode_utf16().count()
}

fn too_long(room_id: &str) -> bool {
    room_id.chars().count() > wire::MAX_ROOM_ID_CHARS
}

/// PrivyDrop: GET /api/get_room
fn get_room(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "get_room")
        .and(get_or_head())
        .and(with_state(dialect))
        .then(|dialect: Arc<PrivyDrop>| async move {
            match dialect.registry.create_generated().await {
                Ok(Some(room_id)) => ok(json!({ "roomId": room_id })),
                Ok(None) => {
                    log::error!("privydrop: get_room found no free room id");
                    internal_error()
                }
                Err(e) => {
                    log::error!("privydrop: get_room failed: {e}");
                    internal_error()
                }
            }
        })
        .boxed()
}

/// PrivyDrop: POST /api/create_room
fn create_room(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "create_room")
        .and(warp::post())
        .and(optional_json_object())
        .and(with_state(dialect))
        .then(|body: Option<Object>, dialect: Arc<PrivyDrop>| async move {
            let Some(room_id) = text(&body, "roomId") else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "Room ID is required"}),
                );
            };
            if too_long(room_id) {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "Room ID is too long"}),
                );
            }
            match dialect.registry.create(room_id).await {
                Ok(true) => ok(json!({"success": true, "message": "create room success"})),
                // Long ids are chosen by people to come back to: the original lets them
                // "create" theirs again.
                Ok(false) if js_length(room_id) >= 8 => {
                    ok(json!({"success": true, "message": "room exists (rejoin allowed)"}))
                }
                Ok(false) => ok(json!({"success": false, "message": "roomId is already exists"})),
                Err(e) => {
                    log::error!("privydrop: create_room failed: {e}");
                    internal_error()
                }
            }
        })
        .boxed()
}

/// PrivyDrop: POST /api/check_room
fn check_room(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "check_room")
        .and(warp::post())
        .and(optional_json_object())
        .and(with_state(dialect))
        .then(|body: Option<Object>, dialect: Arc<PrivyDrop>| async move {
            let Some(room_id) = text(&body, "roomId") else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "Room ID is required"}),
                );
            };
            if too_long(room_id) {
                // It could not be created either.
                return ok(json!({"available": false}));
            }
            match dialect.registry.exists(room_id).await {
                Ok(exists) => ok(json!({ "available": !exists })),
                Err(e) => {
                    log::error!("privydrop: check_room failed: {e}");
                    internal_error()
                }
            }
        })
        .boxed()
}

/// PrivyDrop: POST /api/leave_room
fn leave_room(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "leave_room")
        .and(warp::post())
        .and(optional_json_object())
        .and(with_state(dialect))
        .then(|body: Option<Object>, dialect: Arc<PrivyDrop>| async move {
            let (Some(room_id), Some(socket_id)) = (text(&body, "roomId"), text(&body, "socketId"))
            else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "Room ID and Socket ID are required"}),
                );
            };
            let exists = if too_long(room_id) {
                Ok(false)
            } else {
                dialect.registry.exists(room_id).await
            };
            match exists {
                Ok(true) => {}
                Ok(false) => {
                    return ok(json!({"success": true, "message": "Room does not exist."}));
                }
                Err(e) => {
                    log::error!("privydrop: leave_room failed: {e}");
                    return internal_error();
                }
            }
            let rooms = dialect.signaling.rooms();
            let key = RoomKey::new(SPACE, room_id);
            match rooms.remove_peer(&key, socket_id).await {
                Ok(true) => dialect.registry.left(rooms, room_id).await,
                Ok(false) => {
                    log::debug!(
                        "privydrop: leave_room of a socket not in {}",
                        key.redacted()
                    );
                }
                Err(e) => {
                    log::error!("privydrop: leave_room failed: {e}");
                    return internal_error();
                }
            }
            ok(json!({"success": true, "message": "Successfully left the room"}))
        })
        .boxed()
}

/// Whether a `set_track` timestamp is one JavaScript's `new Date()` would read: a number, or an
/// ISO 8601 / RFC 2822 date.
fn is_timestamp(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        Value::String(s) => {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::DateTime::parse_from_rfc2822(s).is_ok()
                || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        _ => false,
    }
}

/// A day as referrer counts name it.
fn day(date: chrono::NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The first day of referrer counts kept and shown.
pub fn first_referrer_day() -> String {
    let today = chrono::Utc::now().date_naive();
    day(today - chrono::Days::new(u64::from(REFERRER_DAYS - 1)))
}

/// PrivyDrop: POST /api/set_track
///
/// Counted under the server's UTC day: the client's timestamp is only checked, as the original
/// did, so a client cannot write into days of its choosing.
fn set_track(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "set_track")
        .and(warp::post())
        .and(optional_json_object())
        .and(with_state(dialect))
        .then(|body: Option<Object>, dialect: Arc<PrivyDrop>| async move {
            let failed = || {
                json_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"success": false, "error": "Failed to track referrer"}),
                )
            };
            let timestamp = body.as_ref().and_then(|b| b.get("timestamp"));
            let (Some(referrer), true) = (text(&body, "ref"), timestamp.is_some_and(is_timestamp))
            else {
                return failed();
            };
            let referrer: String = referrer.chars().take(MAX_REFERRER_CHARS).collect();
            let today = day(chrono::Utc::now().date_naive());
            let store = &dialect.store;
            match store
                .count_referrer(today, referrer, MAX_REFERRERS_PER_DAY)
                .await
            {
                Ok(()) => ok(json!({"success": true})),
                Err(e) => {
                    log::error!("privydrop: set_track failed: {e}");
                    failed()
                }
            }
        })
        .boxed()
}

/// PrivyDrop: POST /api/logs_debug
fn logs_debug() -> BoxedFilter<(Response,)> {
    warp::path!("api" / "logs_debug")
        .and(warp::post())
        .and(optional_json_object())
        .map(|body: Option<Object>| {
            let message = match body.as_ref().and_then(|b| b.get("message")) {
                Some(Value::String(s)) => s.chars().take(MAX_CLIENT_LOG_CHARS).collect(),
                Some(other) => other
                    .to_string()
                    .chars()
                    .take(MAX_CLIENT_LOG_CHARS)
                    .collect(),
                None => String::new(),
            };
            // Debug formatting escapes line breaks: a client cannot forge log lines.
            log::debug!("privydrop client log: {message:?}");
            ok(json!({"success": true}))
        })
        .boxed()
}

fn health_body(dialect: &PrivyDrop, status: &str) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("status".into(), status.into());
    body.insert(
        "timestamp".into(),
        chrono::Utc::now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    body.insert(
        "uptime".into(),
        dialect.started.elapsed().as_secs_f64().into(),
    );
    body.insert("service".into(), "signalpost".into());
    body.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    body.insert("environment".into(), "production".into());
    body
}

/// PrivyDrop: GET /health and GET /api/health
fn health(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    let path = warp::path!("health")
        .or(warp::path!("api" / "health"))
        .unify();
    path.and(get_or_head())
        .and(with_state(dialect))
        .map(|dialect: Arc<PrivyDrop>| ok(Value::Object(health_body(&dialect, "healthy"))))
        .boxed()
}

/// PrivyDrop: GET /health/detailed
fn health_detailed(dialect: Arc<PrivyDrop>) -> BoxedFilter<(Response,)> {
    warp::path!("health" / "detailed")
        .and(get_or_head())
        .and(with_state(dialect))
        .then(|dialect: Arc<PrivyDrop>| async move {
            let started = std::time::Instant::now();
            let db = match tokio::time::timeout(HEALTH_DB_TIMEOUT, dialect.store.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {HEALTH_DB_TIMEOUT:?}")),
            };
            let response_time = started.elapsed().as_millis() as u64;
            let healthy = db.is_none();
            let mut body = health_body(&dialect, if healthy { "healthy" } else { "unhealthy" });
            body.insert(
                "dependencies".into(),
                json!({
                    "database": {
                        "status": if healthy { "connected" } else { "disconnected" },
                        "responseTime": response_time,
                    },
                    "socketio": {
                        "status": "running",
                        "connections": dialect.open.load(Ordering::Relaxed),
                    },
                }),
            );
            body.insert(
                "system".into(),
                json!({
                    "memory": { "rss": crate::telemetry::process::rss_bytes() },
                    "uptime": dialect.started.elapsed().as_secs_f64(),
                    "platform": std::env::consts::OS,
                    "arch": std::env::consts::ARCH,
                }),
            );
            if let Some(e) = db {
                log::error!("privydrop: health: database failed: {e}");
                body.insert("errors".into(), json!(["database unavailable"]));
                return json_reply(StatusCode::SERVICE_UNAVAILABLE, &Value::Object(body));
            }
            ok(Value::Object(body))
        })
        .boxed()
}

/// A response body of the listener: Socket.IO's or the API's.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The PrivyDrop listener's service: the guard and CORS around Socket.IO and the API (`inner`).
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    origins: Option<AllowedOrigins>,
    metrics: Arc<Metrics>,
}

impl<S> Guarded<S> {
    /// `inner`, guarded for these origins (`None`: any).
    pub fn new(inner: S, origins: Option<AllowedOrigins>, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            origins,
            metrics,
        }
    }

    /// The answer to a request refused before it reaches Socket.IO or the API, or to a
    /// preflight.
    fn answer_early(&self, request: &Request<Incoming>, origin: Option<&str>) -> Option<Response> {
        if let (Some(allowed), Some(origin)) = (&self.origins, origin)
            && !allowed.allows(origin)
        {
            self.metrics.refused(Refusal::Origin);
            log::info!("privydrop: request refused: origin not allowed");
            return Some(ApiError::OriginNotAllowed.to_response());
        }
        if request.method() == Method::OPTIONS {
            let mut response = Response::default();
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Some(response);
        }
        // Socket.IO's polling transport posts text/plain; the API takes JSON only, so a page
        // cannot post to it without a preflight.
        let socket_io = is_socket_io(request.uri().path());
        let content_type = request.headers().get(header::CONTENT_TYPE);
        if request.method() == Method::POST
            && !socket_io
            && content_type.is_some_and(|t| !t.to_str().is_ok_and(is_json))
        {
            log::debug!("privydrop: request refused: not JSON");
            return Some(ApiError::UnsupportedMediaType.to_response());
        }
        None
    }
}

fn is_socket_io(path: &str) -> bool {
    path == "/socket.io" || path.starts_with("/socket.io/")
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// CORS on every answer: the request's origin, when allowed (any, without `ALLOWED_ORIGINS`),
/// with credentials.
fn with_cors<B>(
    mut response: warp::http::Response<B>,
    origin: Option<&str>,
    allowed: Option<&AllowedOrigins>,
) -> warp::http::Response<B> {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin.filter(|o| allowed.is_none_or(|a| a.allows(o)))
        && let Ok(value) = HeaderValue::from_str(origin)
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOW_HEADERS),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

impl<S, B> tower_service::Service<Request<Incoming>> for Guarded<S>
where
    S: tower_service::Service<
            Request<Incoming>,
            Response = warp::http::Response<B>,
            Error = Infallible,
            Future: Send + 'static,
        >,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = warp::http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let allowed = self.origins.clone();
        if let Some(early) = self.answer_early(&request, origin.as_deref()) {
            let response = with_cors(early, origin.as_deref(), allowed.as_ref());
            let response = response.map(|body| body.map_err(BoxError::from).boxed_unsync());
            return Box::pin(std::future::ready(Ok(response)));
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let response = with_cors(response, origin.as_deref(), allowed.as_ref());
            Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_what_javascript_dates_read() {
        for ok in [
            json!(1_700_000_000_000u64),
            json!(1.5),
            json!("2026-06-24T10:00:00.000Z"),
            json!("2026-06-24"),
            json!("Wed, 24 Jun 2026 10:00:00 GMT"),
        ] {
            assert!(is_timestamp(&ok), "{ok}");
        }
        for bad in [json!(null), json!("yesterday"), json!({}), json!(true)] {
            assert!(!is_timestamp(&bad), "{bad}");
        }
    }

    #[test]
    fn lengths_are_counted_as_javascript_counts_them() {
        assert_eq!(js_length("abcdefgh"), 8);
        assert_eq!(
            js_length("😀😀😀😀"),
            8,
            "four characters, eight code units"
        );
    }

    #[test]
    fn referrer_days_cover_the_last_thirty() {
        let first = first_referrer_day();
        let today = day(chrono::Utc::now().date_naive());
        assert!(first < today);
        let first = chrono::NaiveDate::parse_from_str(&first, "%Y-%m-%d").unwrap();
        let today = chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap();
        assert_eq!((today - first).num_days(), i64::from(REFERRER_DAYS) - 1);
    }

    #[test]
    fn only_the_api_demands_json() {
        assert!(is_socket_io("/socket.io/"));
        assert!(is_socket_io("/socket.io"));
        assert!(!is_socket_io("/socket.iox"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(!is_json("text/plain"));
    }
}
