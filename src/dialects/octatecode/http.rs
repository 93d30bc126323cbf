//! OctateCode's HTTP API, on the WebSocket's port: the lean backend's `GET /`, `GET /api/health`
//! and room listings, and the token endpoint of its README. Unknown paths answer 404
//! `{"error":"Not found"}` (the original answered 500).

use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use super::{MemberData, NAME, SPACE, Shared, now_millis, room_key, session, token, wire};
use crate::api::{self, ApiError, UpgradeRequest, admin, body, with_state};
use crate::protocol::rest::Object;
use crate::signaling::MAX_MESSAGE_BYTES;
use crate::signaling::rooms::RoomSummary;
use crate::signaling::upgrade::websocket_config_for;
use crate::state::AppState;

/// What `GET /` says of where to signal.
const DOCS: &str = "WebSocket signaling on this port, any path";

/// What the token answer tells the client to do with it (the original's words).
const TOKEN_MESSAGE: &str = "Use this token when connecting to WebSocket signaling server";

/// Every route of the listener, guarded, with errors answered and headers set.
pub fn routes(state: AppState, shared: Arc<Shared>) -> BoxedFilter<(Response,)> {
    let mut http = root(state.clone())
        .or(health(state.clone()))
        .unify()
        .or(rooms(state.clone()))
        .unify()
        .or(room(state.clone()))
        .unify()
        .boxed();
    if let Some(tokens) = &shared.tokens {
        http = http.or(issue_token(tokens.clone())).unify().boxed();
    }
    // Every HTTP request counts against the client's REST rate, as on the main port.
    let http = api::rest_rate(state.clone()).and(http);
    let routes = websocket(state.clone(), shared)
        .or(preflight())
        .unify()
        .or(http)
        .unify()
        .boxed();
    api::dialect_routes(state, routes, recover)
}

/// OctateCode: the lean WebSocket protocol, on any path.
fn websocket(state: AppState, shared: Arc<Shared>) -> BoxedFilter<(Response,)> {
    api::upgrade_request(&state)
        .and(with_state(state))
        .and(with_state(shared))
        .then(
            |request: UpgradeRequest, state: AppState, shared: Arc<Shared>| async move {
                let config = websocket_config_for(MAX_MESSAGE_BYTES);
                let signaling = state.signaling().clone();
                api::dialect_websocket(&state, request, config, move |ws| async move {
                    let make = |id| session::OctateCode::new(signaling.clone(), id, shared.clone());
                    crate::dialects::run_session(NAME, signaling.clone(), ws, make).await;
                })
                .await
            },
        )
        .boxed()
}

/// A CORS preflight (`OPTIONS`, any path) answered 204, as the original's `cors()` did: the
/// CORS headers are added to every answer.
fn preflight() -> BoxedFilter<(Response,)> {
    warp::options()
        .map(|| StatusCode::NO_CONTENT.into_response())
        .boxed()
}

/// The rooms of this protocol, in key order.
fn our_rooms(state: &AppState) -> Vec<RoomSummary> {
    let mut rooms = state.signaling().rooms().list();
    rooms.retain(|room| room.room.space() == SPACE);
    rooms
}

/// OctateCode: GET /, the backend's name and its room count.
fn root(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path::end()
        .and(api::get_or_head())
        .map(move || {
            let body = json!({
                "name": "OctateCode P2P Backend",
                "status": "running",
                "rooms": our_rooms(&state).len(),
                "docs": DOCS,
            });
            warp::reply::json(&body).into_response()
        })
        .boxed()
}

/// OctateCode: GET /api/health, its host's health check: rooms and peers.
fn health(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "health")
        .and(api::get_or_head())
        .map(move || {
            let rooms = our_rooms(&state);
            let body = json!({
                "status": "ok",
                "timestamp": now_millis(),
                "rooms": rooms.len(),
                "totalPeers": rooms.iter().map(|r| r.members.len()).sum::<usize>(),
            });
            warp::reply::json(&body).into_response()
        })
        .boxed()
}

/// Passes room listings: with `ADMIN_TOKEN` set, only with its bearer token (they show peer
/// ids and names); without it, to anyone, as the original did.
fn listing_access(state: &AppState) -> BoxedFilter<()> {
    match &state.config().admin_token {
        Some(token) => admin::require_admin(Some(token.clone()), state.limits().clone()).boxed(),
        None => warp::any().boxed(),
    }
}

/// A peer of a room listing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerView<'a> {
    id: &'a str,
    name: &'a str,
    joined_at: i64,
}

/// A room of a room listing.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomView<'a> {
    id: &'a str,
    /// The `roomName` it was created with, else its id.
    name: String,
    peer_count: usize,
    created_at: i64,
    peers: Vec<PeerView<'a>>,
}

/// A room as the original listed it.
fn room_view(summary: &RoomSummary) -> RoomView<'_> {
    let first = summary.members.first().and_then(MemberData::of);
    let id = summary.room.id();
    let peers = summary
        .members
        .iter()
        .map(|member| PeerView {
            id: &member.peer,
            name: member.name.as_deref().unwrap_or_default(),
            joined_at: MemberData::of(member).map_or(0, |data| data.joined_at),
        })
        .collect();
    RoomView {
        id,
        name: first
            .as_ref()
            .and_then(|f| f.room_name.clone())
            .unwrap_or_else(|| id.to_owned()),
        peer_count: summary.members.len(),
        created_at: first.as_ref().map_or(0, |f| f.room_created_at),
        peers,
    }
}

/// OctateCode: GET /api/rooms, every room with its peers.
fn rooms(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms")
        .and(api::get_or_head())
        .and(listing_access(&state))
        .map(move || {
            let rooms = our_rooms(&state);
            let views: Vec<RoomView<'_>> = rooms.iter().map(room_view).collect();
            warp::reply::json(&views).into_response()
        })
        .boxed()
}

/// OctateCode: GET /api/rooms/{roomId}, one room, or 404 `Room not found`.
fn room(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / String)
        .and(api::get_or_head())
        .and(listing_access(&state))
        .and(with_state(state))
        .then(|id: String, state: AppState| async move {
            let Some(id) = percent_decode(&id) else {
                return not_found_room();
            };
            match state.signaling().rooms().members(&room_key(&id)).await {
                Ok(Some(summary)) if !summary.members.is_empty() => {
                    warp::reply::json(&room_view(&summary)).into_response()
                }
                Ok(_) => not_found_room(),
                Err(e) => {
                    log::error!("octatecode: reading a room failed: {e}");
                    ApiError::Internal("rooms_unavailable").to_response()
                }
            }
        })
        .boxed()
}

/// 404 `{"error":"Room not found"}`.
fn not_found_room() -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"error": "Room not found"})),
        StatusCode::NOT_FOUND,
    )
    .into_response()
}

/// A path segment with its `%XX` escapes decoded (room ids are the client's, any text); `None`
/// when an escape is malformed or the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// OctateCode: POST /api/auth/token `{userId, roomId}`, a token that lets `userId` auth into
/// `roomId` (as `from`) until it expires; 400 when either is missing.
fn issue_token(tokens: token::Tokens) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "auth" / "token")
        .and(warp::post())
        .and(body::optional_json_object())
        .map(move |body: Option<Object>| {
            let field = |name: &str| match body.as_ref().and_then(|b| b.get(name)) {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= wire::MAX_ID_BYTES => {
                    Some(s.clone())
                }
                _ => None,
            };
            let now = now_millis();
            let (Some(user_id), Some(room_id)) = (field("userId"), field("roomId")) else {
                let body = json!({
                    "error": "Missing required fields",
                    "required": ["userId", "roomId"],
                    "timestamp": now,
                });
                return warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST)
                    .into_response();
            };
            let body = json!({
                "status": "success",
                "token": tokens.issue(&user_id, &room_id, now),
                "userId": user_id,
                "roomId": room_id,
                "expiresIn": token::describe(tokens.ttl()),
                "message": TOKEN_MESSAGE,
                "timestamp": now,
            });
            warp::reply::json(&body).into_response()
        })
        .boxed()
}

/// The main port's answers to its own refusals (origin, rate, bearer token, body size);
/// everything else, a wrong method on a known path included, is 404 `{"error":"Not found"}`.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.to_response());
    }
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({"error": "Not found"})),
        StatusCode::NOT_FOUND,
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_in_paths_are_percent_decoded() {
        assert_eq!(
            percent_decode("room-7K3QX9A").as_deref(),
            Some("room-7K3QX9A")
        );
        assert_eq!(percent_decode("my%20room").as_deref(), Some("my room"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%", "%2", "%zz", "%FF", "%+1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
