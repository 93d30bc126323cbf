//! Operator endpoints: bearer-token access, and the room list.

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use std::sync::Arc;

use super::client_key;
use super::error::ApiError;
use crate::config::Secret;
use crate::limits::Limiters;
use crate::limits::client::ClientKey;
use crate::state::AppState;

/// Passes requests carrying `Authorization: Bearer <token>`. Without a configured token the
/// endpoint does not exist (404), so an unconfigured server exposes nothing. A wrong token
/// counts as a failed guess of the client's (see [`verify`]).
pub fn require_admin(
    token: Option<Secret>,
    limits: Arc<Limiters>,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(client_key(limits.clone()))
        .and_then(move |auth: Option<String>, key: ClientKey| {
            let token = token.clone();
            let limits = limits.clone();
            async move {
                let Some(token) = token else {
                    return Err(warp::reject::not_found());
                };
                let presented = auth.as_deref().and_then(bearer);
                verify(&limits, key, presented.is_some(), || {
                    presented.is_some_and(|p| token.matches(p))
                })
                .await
                .map_err(warp::reject::custom)
            }
        })
        .untuple_one()
}

/// Checks credentials presented to an operator endpoint. A request without any is simply
/// unauthorized; a wrong one counts as a failed guess, exactly like a join code that is not
/// live, so the same lock-out ends token guessing; a locked-out client gets 429 whatever it
/// presents.
pub async fn verify(
    limits: &Limiters,
    key: ClientKey,
    presented: bool,
    matches: impl FnOnce() -> bool,
) -> Result<(), ApiError> {
    if !presented {
        return Err(ApiError::Unauthorized);
    }
    let ticket = limits.reserve_guess(key).await.map_err(|wait| {
        log::info!("operator endpoint refused: {key} is locked out");
        ApiError::TooManyRequests(wait)
    })?;
    if matches() {
        ticket.succeeded();
        Ok(())
    } else {
        log::info!("operator endpoint refused: wrong token or key ({key})");
        if let Some(block) = ticket.failed().await {
            log::warn!("token guessing: {key} locked out for {}s", block.as_secs());
        }
        Err(ApiError::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomEntry {
    room_id: String,
    /// `signalpost`, or the dialect the room belongs to.
    protocol: &'static str,
    user_count: usize,
    /// Null for rooms without a limit of their own.
    capacity: Option<u32>,
    full: bool,
}

/// The name operators know a room space by.
fn protocol_name(space: &str) -> &'static str {
    match space {
        crate::signaling::native::SPACE => "signalpost",
        // A dialect's rooms are named by the dialect, as in the metrics.
        dialect => crate::telemetry::metrics::dialect_label(dialect),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomList {
    rooms: Vec<RoomEntry>,
    total_rooms: usize,
}

/// GET /rooms
pub fn rooms(state: AppState) -> BoxedFilter<(Response,)> {
    let token = state.config().admin_token.clone();
    warp::path!("rooms")
        .and(warp::get())
        .and(require_admin(token, state.limits().clone()))
        .and(super::with_state(state))
        .then(|state: AppState| async move { room_list(&state) })
        .boxed()
}

fn room_list(state: &AppState) -> Response {
    let rooms: Vec<RoomEntry> = state
        .signaling()
        .rooms()
        .list()
        .into_iter()
        .map(|room| RoomEntry {
            room_id: room.room.id().to_owned(),
            protocol: protocol_name(room.room.space()),
            user_count: room.members.len(),
            capacity: room.capacity.limit(),
            full: room.capacity.is_full(room.members.len()),
        })
        .collect();
    let body = RoomList {
        total_rooms: rooms.len(),
        rooms,
    };
    warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively_by_scheme() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
