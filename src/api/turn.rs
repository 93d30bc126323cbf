//! Short-lived TURN credentials (the TURN REST API scheme that coturn's `use-auth-secret`
//! verifies), so no long-lived TURN password is ever handed to browsers.

use std::collections::HashMap;
use std::time::SystemTime;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::error::ApiError;
use super::with_state;
use crate::state::AppState;
use crate::turn::{TurnError, TurnSettings};

/// GET /api/turn-credentials and GET /api/ice-servers (an alias), with an optional `?deviceId=`.
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let settings = crate::turn::TurnSettings::from_config(state.config());
    let credentials = warp::path!("api" / "turn-credentials");
    let ice_servers = warp::path!("api" / "ice-servers");
    credentials
        .or(ice_servers)
        .unify()
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state))
        .map(move |query: HashMap<String, String>, state: AppState| {
            issue(&settings, &state, query.get("deviceId").map(String::as_str))
                .unwrap_or_else(|e| e.to_response())
        })
        .boxed()
}

fn issue(
    settings: &TurnSettings,
    state: &AppState,
    device: Option<&str>,
) -> Result<Response, ApiError> {
    let device = device.filter(|d| !d.is_empty());
    match settings.ice_servers(device, SystemTime::now()) {
        Ok(servers) => {
            if settings.turn_enabled() {
                state.metrics().turn_issued();
                log::debug!("TURN credentials issued (ttl {}s)", servers.ttl);
            }
            Ok(
                warp::reply::with_status(warp::reply::json(&servers), StatusCode::OK)
                    .into_response(),
            )
        }
        Err(TurnError::InvalidLabel) => Err(ApiError::Field(
            crate::protocol::rest::FieldError::Invalid("deviceId"),
        )),
        Err(TurnError::NotConfigured) => Err(ApiError::TurnNotConfigured),
        Err(TurnError::ClockBeforeEpoch) => Err(ApiError::Internal("turn_failed")),
    }
}
