//! The two-stage pairing API: client1 creates a code, client2 accepts it, client1 polls until the
//! room exists. Plus the room lookups, deletion and purge that close live sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::body::{json_object, json_object_or_error, optional_json_object};
use super::error::ApiError;
use super::{client_key, rate_refusal, with_state};
use crate::db::{
    Acceptance, Accepted, Checked, Created, Creator, Desk, Guard, Guarded, RoomLookup, Store,
    StoreError,
};
use crate::limits::Limiters;
use crate::limits::client::ClientKey;
use crate::protocol::rest::{
    self, AcceptCode, CheckCode, CreatePending, CreatedBody, DeletedBody, Object, PurgedBody,
    RoomBody, RoomIdBody,
};
use crate::signaling::native;
use crate::telemetry::story::RoomEnd;
use crate::telemetry::{PairingOutcome, Refusal};

/// What the pairing handlers share.
#[derive(Clone)]
pub struct Pairing {
    /// Creates, accepts and checks, each counted against its client's limits.
    pub desk: Desk,
    /// The pairing store, for the rest.
    pub store: Store,
    /// Live sessions, closed when their room is deleted or their device purged.
    pub signaling: Arc<crate::signaling::Signaling>,
    /// Guess limits (and the client address they count against).
    pub limits: Arc<Limiters>,
    /// Longest lifetime of a pending code.
    pub max_pending_ttl: Duration,
    /// Live codes one client may hold.
    pub max_pending_per_client: u32,
    /// Largest capacity a code's room may be given.
    pub max_room_capacity: u32,
}

impl Pairing {
    /// The desk's answer, or the refusal it is answered with: over the REST rate, or locked
    /// out for guessing (both 429 with `Retry-After`). A lock-out this request started is
    /// logged.
    fn admitted<T>(
        &self,
        key: ClientKey,
        answer: Result<Guarded<T>, StoreError>,
        operation: &'static str,
    ) -> Result<T, ApiError> {
        let metrics = self.signaling.metrics();
        match answer.map_err(ApiError::store(operation))? {
            Guarded::RateLimited(wait) => Err(rate_refusal(metrics, key, wait)),
            Guarded::LockedOut(wait) => {
                metrics.pairing(PairingOutcome::RateLimited);
                metrics.refused(Refusal::Rate);
                log::debug!("join-code guess refused: {key} is locked out");
                Err(ApiError::TooManyRequests(wait))
            }
            Guarded::Answered { outcome, lockout } => {
                if let Some(block) = lockout {
                    log::warn!(
                        "join-code guessing: {key} locked out for {}s",
                        block.as_secs()
                    );
                }
                Ok(outcome)
            }
        }
    }

    /// The request `parse` reads from `body`, or its refusal. A request refused before it
    /// reaches the desk counts against the REST rate all the same, here, so malformed requests
    /// spend the budget like any other.
    async fn parsed<T>(
        &self,
        key: ClientKey,
        body: Result<Object, ApiError>,
        parse: impl FnOnce(&Object) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let error = match body.and_then(|body| parse(&body)) {
            Ok(request) => return Ok(request),
            Err(e) => e,
        };
        match self.limits.rest().check(key).await {
            Ok(()) => Err(error),
            Err(wait) => Err(rate_refusal(self.signaling.metrics(), key, wait)),
        }
    }
}

/// The pairing requests that count against their client's REST rate themselves, in the same
/// step as their store work (see [`crate::db::desk`]): create, accept and check. They answer
/// every POST to their paths, so no other filter counts those requests again.
pub fn counted_routes(state: Pairing) -> BoxedFilter<(Response,)> {
    create(state.clone())
        .or(accept(state.clone()))
        .unify()
        .or(check(state))
        .unify()
        .boxed()
}

/// Every other pairing route (behind the REST rate filter). Paths are matched before methods,
/// so a known path with the wrong method answers 405 and an unknown path 404.
pub fn routes(state: Pairing) -> BoxedFilter<(Response,)> {
    get_room(state.clone())
        .or(delete_room(state.clone()))
        .unify()
        .or(purge(state))
        .unify()
        .or(legacy())
        .unify()
        .boxed()
}

fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.to_response())
}

fn json_with_status<T: serde::Serialize>(body: &T, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// POST /api/rooms
fn create(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms")
        .and(warp::post())
        .and(client_key(state.limits.clone()))
        .and(with_state(state))
        .and(json_object_or_error())
        .then(|key, state: Pairing, body| async move {
            answer(create_pending(state, key, body).await)
        })
        .boxed()
}

async fn create_pending(
    state: Pairing,
    key: ClientKey,
    body: Result<Object, ApiError>,
) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let (ttl, capacity) = (state.max_pending_ttl, state.max_room_capacity);
    let req = state
        .parsed(key, body, |body| {
            Ok(CreatePending::parse(body, now, ttl, capacity)?)
        })
        .await?;
    // A code of the client's choosing that turns out live is a guess that hit: it tells the
    // client the code exists, so it counts like a 404 of accept or check.
    let guard = Guard {
        client: key,
        guess: req.joinid.is_some(),
    };
    let creator = Creator {
        client1: req.client1,
        client_key: key.to_string(),
        max_pending: state.max_pending_per_client,
        capacity: req.capacity,
    };
    let exp = req.exp.timestamp_millis();
    let created = state.desk.create(guard, req.joinid, creator, exp).await;
    let metrics = state.signaling.metrics();
    match state.admitted(key, created, "create_failed")? {
        Created::Ok(pending) => {
            metrics.pairing(PairingOutcome::Created);
            log::info!(
                "pending code created, expires {}",
                rest::format_instant(req.exp)
            );
            let body = CreatedBody {
                ok: true,
                joinid: pending.joinid.to_string(),
                exp: rest::format_instant(req.exp),
            };
            Ok(json_with_status(&body, StatusCode::CREATED))
        }
        Created::Conflict => {
            log::debug!("create refused: the code is live");
            metrics.pairing(PairingOutcome::Conflict);
            Err(ApiError::Conflict)
        }
        Created::TooManyPending { next_expiry } => {
            log::info!("create refused: {key} holds its maximum of live codes");
            metrics.pairing(PairingOutcome::RateLimited);
            metrics.refused(Refusal::Rate);
            let wait = u64::try_from(next_expiry - crate::db::now_millis()).unwrap_or(0);
            Err(ApiError::TooManyPending(Duration::from_millis(wait)))
        }
        Created::Exhausted => {
            log::error!("no free join code after several tries: too many live codes");
            Err(ApiError::NoCodeAvailable)
        }
    }
}

/// POST /api/rooms/accept
fn accept(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / "accept")
        .and(warp::post())
        .and(client_key(state.limits.clone()))
        .and(with_state(state))
        .and(json_object_or_error())
        .then(
            |key, state: Pairing, body| async move { answer(accept_code(state, key, body).await) },
        )
        .boxed()
}

async fn accept_code(
    state: Pairing,
    key: ClientKey,
    body: Result<Object, ApiError>,
) -> Result<Response, ApiError> {
    let req = state
        .parsed(key, body, |body| Ok(AcceptCode::parse(body)?))
        .await?;
    let guard = Guard {
        client: key,
        guess: true,
    };
    let accepted = state.desk.accept(guard, req.joinid, req.client2).await;
    let Acceptance {
        outcome: accepted,
        created_at,
    } = state.admitted(key, accepted, "accept_failed")?;
    let metrics = state.signaling.metrics();
    match accepted {
        Accepted::Room(roomid) => {
            if let Some(created_at) = created_at {
                let waited = u64::try_from(crate::db::now_millis() - created_at).unwrap_or(0);
                metrics.pairing(PairingOutcome::Accepted);
                metrics.accepted_after(Duration::from_millis(waited));
            }
            log::info!("code accepted, room {}", roomid.redacted());
            let body = RoomIdBody {
                roomid: roomid.to_string(),
            };
            Ok(json_with_status(&body, StatusCode::OK))
        }
        Accepted::NotFound => {
            log::debug!("accept refused: no live code");
            metrics.pairing(PairingOutcome::NotFound);
            Err(ApiError::NotFoundOrExpired)
        }
        Accepted::Conflict => {
            log::debug!("accept refused: accepted by another device");
            metrics.pairing(PairingOutcome::Conflict);
            Err(ApiError::Conflict)
        }
    }
}

/// POST /api/rooms/check
fn check(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms" / "check")
        .and(warp::post())
        .and(client_key(state.limits.clone()))
        .and(with_state(state))
        .and(json_object_or_error())
        .then(|key, state: Pairing, body| async move { answer(check_code(state, key, body).await) })
        .boxed()
}

async fn check_code(
    state: Pairing,
    key: ClientKey,
    body: Result<Object, ApiError>,
) -> Result<Response, ApiError> {
    let req = state
        .parsed(key, body, |body| Ok(CheckCode::parse(body)?))
        .await?;
    let guard = Guard {
        client: key,
        guess: true,
    };
    let checked = state.desk.check(guard, req.joinid, req.client1).await;
    match state.admitted(key, checked, "check_failed")? {
        Checked::Room(roomid) => Ok(json_with_status(
            &RoomIdBody {
                roomid: roomid.to_string(),
            },
            StatusCode::OK,
        )),
        Checked::Waiting => Ok(StatusCode::NO_CONTENT.into_response()),
        Checked::NotFound => {
            log::debug!("check refused: no live code");
            state.signaling.metrics().pairing(PairingOutcome::NotFound);
            Err(ApiError::NotFoundOrExpired)
        }
    }
}

/// GET /api/rooms?roomid=
fn get_room(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms")
        .and(warp::get())
        .and(with_state(state))
        .and(warp::query::<HashMap<String, String>>())
        .then(|state: Pairing, query| async move { answer(room(state, query).await) })
        .boxed()
}

async fn room(state: Pairing, query: HashMap<String, String>) -> Result<Response, ApiError> {
    let roomid = rest::parse_room_id(&query_object(query))?;
    let lookup = state
        .store
        .lookup_room(roomid)
        .await
        .map_err(ApiError::store("lookup_failed"))?;
    let RoomLookup::Paired(room) = lookup else {
        return Err(ApiError::NotFound);
    };
    let body = RoomBody {
        roomid: room.roomid.to_string(),
        client1: room.client1.to_string(),
        client2: room.client2.to_string(),
        capacity: room.capacity,
        members: room.members.iter().map(ToString::to_string).collect(),
    };
    Ok(json_with_status(&body, StatusCode::OK))
}

/// DELETE /api/rooms, with `{roomid}` in the body or `?roomid=`
fn delete_room(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "rooms")
        .and(warp::delete())
        .and(with_state(state))
        .and(warp::query::<HashMap<String, String>>())
        .and(optional_json_object())
        .then(|state: Pairing, query, body| async move { answer(delete(state, query, body).await) })
        .boxed()
}

async fn delete(
    state: Pairing,
    query: HashMap<String, String>,
    body: Option<Object>,
) -> Result<Response, ApiError> {
    let from_body = body.as_ref().map(rest::parse_room_id);
    let roomid = match from_body {
        Some(Ok(roomid)) => roomid,
        // A body without a roomid defers to the query, the way the old API read either.
        Some(Err(rest::FieldError::Missing(_))) | None => {
            rest::parse_room_id(&query_object(query))?
        }
        Some(Err(e)) => return Err(e.into()),
    };
    let deleted = state
        .store
        .delete_room(roomid.clone())
        .await
        .map_err(ApiError::store("delete_failed"))?;
    let closed = state
        .signaling
        .rooms()
        .close_room(&native::room_key(&roomid), RoomEnd::Deleted)
        .await
        .unwrap_or_else(|e| {
            log::warn!("closing the deleted room's sessions failed: {e}");
            0
        });
    log::info!(
        "room {} deleted ({deleted} row, {closed} live members)",
        roomid.redacted()
    );
    Ok(json_with_status(
        &DeletedBody { ok: true, deleted },
        StatusCode::OK,
    ))
}

/// POST /api/user/purge
fn purge(state: Pairing) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "user" / "purge")
        .and(warp::post())
        .and(with_state(state))
        .and(json_object())
        .then(
            |state: Pairing, body: Object| async move { answer(purge_devices(state, body).await) },
        )
        .boxed()
}

async fn purge_devices(state: Pairing, body: Object) -> Result<Response, ApiError> {
    let devices = rest::parse_purge(&body)?;
    let purged = state
        .store
        .purge_devices(devices.clone())
        .await
        .map_err(ApiError::store("purge_failed"))?;
    let rooms = state.signaling.rooms();
    for room in &purged.rooms {
        if let Err(e) = rooms
            .close_room(&native::room_key(room), RoomEnd::Purged)
            .await
        {
            log::warn!("closing a purged room's sessions failed: {e}");
        }
    }
    let mut sockets = 0;
    for device in &devices {
        match rooms.close_device(device).await {
            Ok(n) => sockets += n,
            Err(e) => log::warn!("closing a purged device's sessions failed: {e}"),
        }
    }
    log::info!(
        "purged {} device(s): {} rooms, {} pendings, {sockets} sockets closed",
        devices.len(),
        purged.rooms.len(),
        purged.pendings
    );
    let body = PurgedBody {
        ok: true,
        rooms_deleted: purged.rooms.len(),
        pendings_deleted: purged.pendings,
    };
    Ok(json_with_status(&body, StatusCode::OK))
}

/// POST /api/rooms/{roomid}/accept and GET /api/rooms/{roomid}: the old API, gone.
fn legacy() -> BoxedFilter<(Response,)> {
    let accept = warp::path!("api" / "rooms" / String / "accept")
        .and(warp::post())
        .map(|_| ());
    let get = warp::path!("api" / "rooms" / String)
        .and(warp::get())
        // The new endpoints' own paths answer 405 to GET rather than "use new endpoints".
        .and_then(|id: String| async move {
            if id == "accept" || id == "check" {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            }
        });
    accept
        .or(get)
        .unify()
        .map(|()| ApiError::UseNewEndpoints.to_response())
        .boxed()
}

fn query_object(query: HashMap<String, String>) -> Object {
    query
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect()
}
