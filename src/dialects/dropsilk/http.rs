//! DropSilk's HTTP side, on the dialect's port: the WebSocket upgrade on every path, the room
//! API the web client polls, and the service endpoints (`/`, `/keep-alive`, `/stats`,
//! `/api/status`, `/api/turn-credentials`).
//!
//! Every request from an `Origin` that is not allowed gets 403 before anything runs; allowed
//! origins get their CORS headers on every answer. `/api/*` and `/stats` count against the
//! client's REST rate, and every room lookup by code is a guess counted like the main port's
//! join codes.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use hyper::upgrade::OnUpgrade;
use serde::Serialize;
use serde_json::{Map, Value, json};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::api::body::bounded_bytes;
use crate::api::{ApiError, client_ip, get_or_head, with_state};
use crate::db::dropsilk::{Change, Changed, Joined, NewParticipant};
use crate::db::{StoreError, now_millis};
use crate::limits::client::ClientKey;
use crate::limits::guess::GuessTicket;
use crate::signaling::upgrade::{self, UpgradeError, websocket_config_for};
use crate::telemetry::{Refusal, process};
use crate::turn::TurnError;

use super::wire::{self, Issues, RoomSummary, http_errors};
use super::{CODE_ATTEMPTS, DropSilk, MAX_FRAME_BYTES, RoomKind, room_kind, session};

/// The `GET /` answer (the original's).
pub const ROOT_MESSAGE: &str = "Server is alive and waiting for WebSocket connections.";

/// Methods allowed in cross-origin requests (the rooms API and status).
const CORS_METHODS: &str = "GET, POST, OPTIONS";
/// Headers allowed in cross-origin requests: the client sends JSON.
const CORS_HEADERS: &str = "Content-Type";

/// A request refused before its route ran.
#[derive(Debug)]
struct OriginNotAllowed;

impl warp::reject::Reject for OriginNotAllowed {}

/// Every route of the dialect's port.
pub fn routes(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    let open = websocket(ds.clone())
        .or(preflight())
        .unify()
        .or(root())
        .unify()
        .or(keep_alive())
        .unify()
        .boxed();
    let limited = stats(ds.clone())
        .or(status(ds.clone()))
        .unify()
        .or(turn_credentials(ds.clone()))
        .unify()
        .or(uploadthing())
        .unify()
        .or(rooms(ds.clone()))
        .unify()
        .boxed();
    let limited = rest_rate_limit(ds.clone()).and(limited);
    let cors = ds.clone();
    origin_guard(ds)
        .and(open.or(limited).unify())
        .recover(recover)
        .unify()
        .and(warp::header::optional::<String>("origin"))
        .map(move |response, origin: Option<String>| with_cors(&cors, response, origin))
        .boxed()
}

/// 403 for a request whose `Origin` is present and not allowed (WebSocket or HTTP, any path).
fn origin_guard(ds: Arc<DropSilk>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and_then(move |origin: Option<String>| {
            let refused = origin.is_some_and(|o| !ds.origin_allowed(&o));
            if refused {
                ds.state().metrics().refused(Refusal::Origin);
                log::info!("dropsilk: request refused: origin not allowed");
            }
            async move {
                if refused {
                    Err(warp::reject::custom(OriginNotAllowed))
                } else {
                    Ok(())
                }
            }
        })
        .untuple_one()
}

/// CORS headers for an allowed origin (the original echoes it; no `Origin`, no headers).
fn with_cors(ds: &DropSilk, mut response: Response, origin: Option<String>) -> Response {
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin.filter(|o| ds.origin_allowed(o))
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(CORS_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_HEADERS),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Every rejection as an answer: ours, the core's errors, and 404 `Not Found` for the rest.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if rejection.find::<OriginNotAllowed>().is_some() {
        return Ok(ApiError::OriginNotAllowed.to_response());
    }
    if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.to_response());
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(ApiError::PayloadTooLarge.to_response());
    }
    Ok(warp::reply::with_status("Not Found", StatusCode::NOT_FOUND).into_response())
}

/// JSON with a status.
fn json_reply<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// `{"error": message}` with a status.
fn error_reply(status: StatusCode, message: &str) -> Response {
    json_reply(status, &json!({ "error": message }))
}

/// 400 `{"error":"Invalid request","issues":[...]}`.
fn invalid(issues: Issues) -> Response {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({ "error": http_errors::INVALID_REQUEST, "issues": issues }),
    )
}

/// A store failure: logged, answered opaquely (503 when it may pass, else 500).
fn store_failed(e: StoreError) -> Response {
    ApiError::store("dropsilk_failed")(e).to_response()
}

/// DropSilk: OPTIONS on any path (a CORS preflight): 204.
fn preflight() -> BoxedFilter<(Response,)> {
    warp::method()
        .and_then(|method: Method| async move {
            if method == Method::OPTIONS {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .boxed()
}

/// DropSilk: GET / (and HEAD, which its status page sends).
fn root() -> BoxedFilter<(Response,)> {
    warp::path::end()
        .and(get_or_head())
        .map(|| text(ROOT_MESSAGE))
        .boxed()
}

/// DropSilk: GET /keep-alive (its host's idle-spin-down ping).
fn keep_alive() -> BoxedFilter<(Response,)> {
    warp::path!("keep-alive")
        .and(get_or_head())
        .map(|| text(crate::api::ops::KEEP_ALIVE))
        .boxed()
}

fn text(body: &'static str) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// DropSilk: the WebSocket, on any path: upgrade rate, connection slots, then the handshake.
fn websocket(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::get()
        .and(warp::header::headers_cloned())
        .and_then(|headers: HeaderMap| async move {
            if upgrade::is_upgrade_request(&headers) {
                Ok(headers)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .and(warp::ext::optional::<OnUpgrade>())
        .and(client_ip(ds.state().limits().clone()))
        .and(with_state(ds))
        .then(
            |headers: HeaderMap, on_upgrade: Option<OnUpgrade>, ip: IpAddr, ds: Arc<DropSilk>| async move {
                accept(ds, &headers, on_upgrade, ip)
                    .await
                    .unwrap_or_else(|e| e.to_response())
            },
        )
        .boxed()
}

async fn accept(
    ds: Arc<DropSilk>,
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    ip: IpAddr,
) -> Result<Response, ApiError> {
    let key = ClientKey::of(ip);
    let state = ds.state().clone();
    let limits = state.limits();
    limits.upgrades().check(key).await.map_err(|wait| {
        state.metrics().refused(Refusal::Rate);
        log::info!("rate limited: {key} (dropsilk WebSocket upgrades)");
        ApiError::TooManyRequests(wait)
    })?;
    let slot = limits.connections().acquire(key).map_err(|refused| {
        state.metrics().refused(Refusal::Rate);
        log::info!("dropsilk websocket refused: {refused:?} connection limit ({key})");
        match refused {
            crate::limits::slots::SlotRefused::PerClient => {
                ApiError::TooManyRequests(std::time::Duration::from_secs(1))
            }
            crate::limits::slots::SlotRefused::Global => ApiError::ServerFull,
        }
    })?;
    let sessions = state.signaling().sessions().clone();
    upgrade::accept_with(
        headers,
        on_upgrade,
        &sessions,
        websocket_config_for(MAX_FRAME_BYTES),
        move |ws| async move {
            // The connection holds its slot until the session ends.
            let _slot = slot;
            session::run(ds, ws, ip).await;
        },
    )
    .map_err(|e| match e {
        UpgradeError::UnsupportedVersion => ApiError::UnsupportedWebSocketVersion,
        UpgradeError::BadHandshake | UpgradeError::NotUpgradable => ApiError::UpgradeRequired,
    })
}

/// Counts `/api/*` and `/stats` against the client's REST rate (other paths pass by, to the
/// routes outside it).
fn rest_rate_limit(ds: Arc<DropSilk>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::full()
        .and(client_key(&ds))
        .and(with_state(ds))
        .and_then(
            |path: warp::path::FullPath, key: ClientKey, ds: Arc<DropSilk>| async move {
                let path = path.as_str();
                if !(path.starts_with("/api/") || path == "/stats") {
                    return Err(warp::reject::not_found());
                }
                ds.state().limits().rest().check(key).await.map_err(|wait| {
                    ds.state().metrics().refused(Refusal::Rate);
                    log::info!("rate limited: {key} (dropsilk REST)");
                    warp::reject::custom(ApiError::TooManyRequests(wait))
                })
            },
        )
        .untuple_one()
}

fn client_key(
    ds: &DropSilk,
) -> impl Filter<Extract = (ClientKey,), Error = Infallible> + Clone + use<> {
    client_ip(ds.state().limits().clone()).map(ClientKey::of)
}

// ---------------------------------------------------------------------------------------------
// Service endpoints

/// Seconds since the server started.
fn uptime(ds: &DropSilk) -> f64 {
    ds.state().started().elapsed().as_secs_f64()
}

/// `1d 2h 3m 4s`, leading zero units left out.
fn uptime_formatted(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// Flights now: legacy flights and rooms' transfer channels with a socket attached.
fn active_flights(ds: &DropSilk) -> usize {
    ds.state()
        .signaling()
        .rooms()
        .list()
        .iter()
        .filter(|r| matches!(room_kind(&r.room), Some((RoomKind::Flight, _))))
        .count()
}

fn open_sockets(ds: &DropSilk) -> usize {
    ds.counters.open.load(Ordering::Relaxed)
}

fn now_iso() -> String {
    wire::iso(now_millis())
}

/// DropSilk: GET /stats
fn stats(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("stats")
        .and(get_or_head())
        .and(with_state(ds))
        .map(|ds: Arc<DropSilk>| {
            // The process has no JavaScript heap: its resident memory stands for the original's
            // `process.memoryUsage()`.
            let rss = process::rss_bytes().unwrap_or_default();
            json_reply(
                StatusCode::OK,
                &json!({
                    "activeConnections": open_sockets(&ds),
                    "activeFlights": active_flights(&ds),
                    "memory": { "rss": rss, "heapTotal": rss, "heapUsed": rss },
                    "timestamp": now_iso(),
                    "uptime": uptime(&ds),
                }),
            )
        })
        .boxed()
}

/// DropSilk: GET /api/status (the client asks it after an unexpected close; the status page
/// reads its counters).
fn status(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "status")
        .and(get_or_head())
        .and(with_state(ds))
        .map(|ds: Arc<DropSilk>| {
            let mb = process::rss_bytes().unwrap_or_default() as f64 / (1024.0 * 1024.0);
            let mb = (mb * 100.0).round() / 100.0;
            let turn = if ds.turn.ice_servers(None, SystemTime::now()).is_ok() {
                "operational"
            } else {
                "not_configured"
            };
            let c = &ds.counters;
            let uptime = uptime(&ds);
            json_reply(
                StatusCode::OK,
                &json!({
                    "memory": { "heapTotalMB": mb, "heapUsedMB": mb, "rssMB": mb },
                    "services": {
                        "signaling": { "activeFlights": active_flights(&ds), "status": "operational" },
                        "turn": { "status": turn },
                        "websocket": { "activeConnections": open_sockets(&ds), "status": "operational" },
                    },
                    "stats": {
                        "totalConnections": c.connections.load(Ordering::Relaxed),
                        "totalDisconnections": c.disconnections.load(Ordering::Relaxed),
                        "totalFlightsCreated": c.flights_created.load(Ordering::Relaxed),
                        "totalFlightsJoined": c.flights_joined.load(Ordering::Relaxed),
                    },
                    "status": "operational",
                    "timestamp": now_iso(),
                    "uptime": uptime,
                    "uptimeFormatted": uptime_formatted(uptime as u64),
                    "version": env!("CARGO_PKG_VERSION"),
                }),
            )
        })
        .boxed()
}

/// DropSilk: GET /api/turn-credentials, from signalpost's own TURN and STUN settings (the
/// original fetched Cloudflare's).
fn turn_credentials(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "turn-credentials")
        .and(warp::get())
        .and(with_state(ds))
        .map(
            |ds: Arc<DropSilk>| match ds.turn.ice_servers(None, SystemTime::now()) {
                Ok(servers) => {
                    if ds.turn.turn_enabled() {
                        ds.state().metrics().turn_issued();
                    }
                    json_reply(StatusCode::OK, &servers)
                }
                Err(TurnError::NotConfigured) => error_reply(
                    StatusCode::NOT_IMPLEMENTED,
                    http_errors::TURN_NOT_CONFIGURED,
                ),
                Err(e) => {
                    log::error!("dropsilk: TURN credentials failed: {e}");
                    error_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Could not fetch TURN credentials.",
                    )
                }
            },
        )
        .boxed()
}

/// DropSilk: /api/uploadthing and below, any method: UploadThing (a third-party upload service
/// for previews) is not part of signaling: 501.
fn uploadthing() -> BoxedFilter<(Response,)> {
    warp::path("api")
        .and(warp::path("uploadthing"))
        .and(warp::path::tail())
        .map(|_| error_reply(StatusCode::NOT_IMPLEMENTED, "not_supported"))
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Rooms

/// Every `/api/rooms` route; any other path under it answers 404 `Room endpoint not found.`.
fn rooms(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    create(ds.clone())
        .or(summary(ds.clone()))
        .unify()
        .or(join(ds.clone()))
        .unify()
        .or(participant_action(ds))
        .unify()
        .or(warp::path("api")
            .and(warp::path("rooms"))
            .and(warp::path::tail())
            .map(|_| error_reply(StatusCode::NOT_FOUND, http_errors::NO_ENDPOINT)))
        .unify()
        .boxed()
}

/// A JSON body: the object, or the issues that it is not one.
fn body() -> impl Filter<Extract = (Result<Map<String, Value>, Issues>,), Error = Rejection> + Clone
{
    warp::header::optional::<String>("content-type")
        .and(bounded_bytes())
        .map(|content_type: Option<String>, bytes: Vec<u8>| {
            let json = content_type.as_deref().is_none_or(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
            if !json {
                return Err(vec![
                    "body: Expected Content-Type application/json".to_owned(),
                ]);
            }
            wire::parse_body(&bytes)
        })
}

/// Takes a guess ticket, or answers 429 while the client is locked out.
async fn reserve_guess(ds: &DropSilk, key: ClientKey) -> Result<GuessTicket, Response> {
    ds.state()
        .limits()
        .reserve_guess(key)
        .await
        .map_err(|wait| {
            ds.state().metrics().refused(Refusal::Rate);
            log::debug!("dropsilk: code guess refused: {key} is locked out");
            ApiError::TooManyRequests(wait).to_response()
        })
}

/// A failed lookup by code: counted, and a lock-out it starts logged.
async fn guess_failed(ticket: GuessTicket, key: ClientKey) {
    if let Some(block) = ticket.failed().await {
        log::warn!(
            "dropsilk: room-code guessing: {key} locked out for {}s",
            block.as_secs()
        );
    }
}

/// A summary for `participant`, with `status`.
fn summary_reply(
    status: StatusCode,
    room: &crate::db::dropsilk::Room,
    participant: &str,
) -> Response {
    match RoomSummary::of(room, participant) {
        Some(summary) => json_reply(status, &summary),
        None => error_reply(StatusCode::NOT_FOUND, http_errors::NOT_IN_ROOM),
    }
}

/// DropSilk: POST /api/rooms: a room with the caller as its host (not a guess).
fn create(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms")
        .and(warp::post())
        .and(body())
        .and(with_state(ds))
        .then(
            |body: Result<Map<String, Value>, Issues>, ds: Arc<DropSilk>| async move {
                let body = match body {
                    Ok(body) => body,
                    Err(issues) => return invalid(issues),
                };
                let mut issues = Issues::new();
                let Some(name) = wire::string_field(
                    body.get("name"),
                    "name",
                    1,
                    wire::MAX_NAME_CHARS,
                    &mut issues,
                ) else {
                    return invalid(issues);
                };
                let host = NewParticipant {
                    id: wire::new_participant_id(),
                    name,
                };
                for _ in 0..CODE_ATTEMPTS {
                    match ds
                        .store()
                        .dropsilk_create(wire::new_code(), host.clone(), ds.ttl())
                        .await
                    {
                        Ok(Some(room)) => {
                            ds.counters.flight_created();
                            return summary_reply(StatusCode::CREATED, &room, &host.id);
                        }
                        Ok(None) => continue,
                        Err(e) => return store_failed(e),
                    }
                }
                error_reply(StatusCode::BAD_REQUEST, http_errors::NO_CODE)
            },
        )
        .boxed()
}

/// DropSilk: GET /api/rooms/:code?participantId= (slides the room's expiry).
fn summary(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / String)
        .and(get_or_head())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(client_key(&ds))
        .and(with_state(ds))
        .then(
            |code: String, query: String, key: ClientKey, ds: Arc<DropSilk>| async move {
                let mut issues = Issues::new();
                let code = wire::code_param(&code, &mut issues);
                let participant = query_param(&query, "participantId");
                let participant = wire::participant_param(participant.as_deref(), &mut issues);
                let (Some(code), Some(participant)) = (code, participant) else {
                    return invalid(issues);
                };
                let ticket = match reserve_guess(&ds, key).await {
                    Ok(ticket) => ticket,
                    Err(refused) => return refused,
                };
                match ds
                    .store()
                    .dropsilk_room(code, participant.clone(), ds.ttl())
                    .await
                {
                    Ok(Some(room)) => {
                        ticket.succeeded();
                        summary_reply(StatusCode::OK, &room, &participant)
                    }
                    Ok(None) => {
                        guess_failed(ticket, key).await;
                        error_reply(StatusCode::NOT_FOUND, http_errors::NOT_IN_ROOM)
                    }
                    Err(e) => store_failed(e),
                }
            },
        )
        .boxed()
}

/// The first value of `name` in a query string, `+` and `%XX` decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (wire::percent_decode(&k.replace('+', " ")) == name)
            .then(|| wire::percent_decode(&v.replace('+', " ")))
    })
}

/// DropSilk: POST /api/rooms/:code/join: the caller becomes the guest.
fn join(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / String / "join")
        .and(warp::post())
        .and(body())
        .and(client_key(&ds))
        .and(with_state(ds))
        .then(
            |code: String,
             body: Result<Map<String, Value>, Issues>,
             key: ClientKey,
             ds: Arc<DropSilk>| async move {
                let mut issues = Issues::new();
                let code = wire::code_param(&code, &mut issues);
                let name = match &body {
                    Ok(body) => wire::string_field(
                        body.get("name"),
                        "name",
                        1,
                        wire::MAX_NAME_CHARS,
                        &mut issues,
                    ),
                    Err(body_issues) => {
                        issues.extend(body_issues.iter().cloned());
                        None
                    }
                };
                let (Some(code), Some(name)) = (code, name) else {
                    return invalid(issues);
                };
                let ticket = match reserve_guess(&ds, key).await {
                    Ok(ticket) => ticket,
                    Err(refused) => return refused,
                };
                let guest = NewParticipant {
                    id: wire::new_participant_id(),
                    name,
                };
                match ds
                    .store()
                    .dropsilk_join(code, guest.clone(), ds.ttl())
                    .await
                {
                    Ok(Joined::Room(room)) => {
                        ticket.succeeded();
                        ds.counters.flight_joined();
                        summary_reply(StatusCode::OK, &room, &guest.id)
                    }
                    Ok(Joined::Full) => {
                        ticket.succeeded();
                        error_reply(StatusCode::BAD_REQUEST, http_errors::ROOM_FULL)
                    }
                    Ok(Joined::NotFound) => {
                        guess_failed(ticket, key).await;
                        error_reply(StatusCode::BAD_REQUEST, http_errors::ROOM_GONE)
                    }
                    Err(e) => store_failed(e),
                }
            },
        )
        .boxed()
}

/// DropSilk: POST /api/rooms/:code/participants/:id/(ready|chat|screen-share)
fn participant_action(ds: Arc<DropSilk>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / String / "participants" / String / String)
        .and(warp::post())
        .and_then(
            |code: String, participant: String, action: String| async move {
                match action.as_str() {
                    "ready" | "chat" | "screen-share" => Ok((code, participant, action)),
                    _ => Err(warp::reject::not_found()),
                }
            },
        )
        .untuple_one()
        .and(body())
        .and(client_key(&ds))
        .and(with_state(ds))
        .then(
            |code: String,
             participant: String,
             action: String,
             body: Result<Map<String, Value>, Issues>,
             key: ClientKey,
             ds: Arc<DropSilk>| async move {
                let mut issues = Issues::new();
                let code = wire::code_param(&code, &mut issues);
                let participant = wire::participant_param(Some(&participant), &mut issues);
                let change = match &body {
                    Ok(body) => change(&action, body, &mut issues),
                    Err(body_issues) => {
                        issues.extend(body_issues.iter().cloned());
                        None
                    }
                };
                let (Some(code), Some(participant), Some(change)) = (code, participant, change)
                else {
                    return invalid(issues);
                };
                let ticket = match reserve_guess(&ds, key).await {
                    Ok(ticket) => ticket,
                    Err(refused) => return refused,
                };
                match ds
                    .store()
                    .dropsilk_change(code, participant.clone(), change, ds.ttl())
                    .await
                {
                    Ok(Changed::Room(room)) => {
                        ticket.succeeded();
                        summary_reply(StatusCode::OK, &room, &participant)
                    }
                    Ok(Changed::PeerSharing) => {
                        ticket.succeeded();
                        error_reply(StatusCode::BAD_REQUEST, http_errors::PEER_SHARING)
                    }
                    Ok(Changed::NotFound) => {
                        guess_failed(ticket, key).await;
                        error_reply(StatusCode::NOT_FOUND, http_errors::NOT_IN_ROOM)
                    }
                    Err(e) => store_failed(e),
                }
            },
        )
        .boxed()
}

/// The change a participant's action asks for, from its body.
fn change(action: &str, body: &Map<String, Value>, issues: &mut Issues) -> Option<Change> {
    match action {
        "ready" => {
            let file_count = wire::coerced_number(body.get("fileCount"), "fileCount", true, issues);
            let total_bytes =
                wire::coerced_number(body.get("totalBytes"), "totalBytes", false, issues);
            Some(Change::Ready {
                file_count: file_count? as u64,
                total_bytes: total_bytes?,
            })
        }
        "chat" => wire::bool_field(body.get("active"), "active", issues).map(Change::Chat),
        _ => wire::bool_field(body.get("active"), "active", issues).map(Change::ScreenShare),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_leaves_leading_zero_units_out() {
        assert_eq!(uptime_formatted(4), "4s");
        assert_eq!(uptime_formatted(184), "3m 4s");
        assert_eq!(uptime_formatted(7204), "2h 0m 4s");
        assert_eq!(uptime_formatted(93_784), "1d 2h 3m 4s");
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param("a=1&participantId=ab%20c", "participantId").as_deref(),
            Some("ab c")
        );
        assert_eq!(query_param("", "participantId"), None);
        assert_eq!(
            query_param("participantId", "participantId").as_deref(),
            Some("")
        );
    }

    #[test]
    fn a_participant_action_reads_its_body() {
        let mut issues = Issues::new();
        let body = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            change(
                "ready",
                &body(json!({"fileCount": "4", "totalBytes": "5000"})),
                &mut issues
            ),
            Some(Change::Ready {
                file_count: 4,
                total_bytes: 5000.0
            })
        );
        assert_eq!(
            change("chat", &body(json!({"active": true})), &mut issues),
            Some(Change::Chat(true))
        );
        assert!(issues.is_empty());
        assert_eq!(
            change("screen-share", &body(json!({"active": 1})), &mut issues),
            None
        );
        assert_eq!(change("chat", &body(json!({})), &mut issues), None);
        assert_eq!(
            issues,
            [
                "active: Expected boolean, received number",
                "active: Required"
            ]
        );
    }
}
