//! Operator endpoints for probes, dashboards and scrapers: health, stats, Prometheus metrics
//! and the recent log lines.
//!
//! `/health`, `/keep-alive` and `/stats` are open (counts only, no ids); `/metrics` asks for
//! `METRICS_TOKEN` when one is set; `/logs` exists only when `ADMIN_TOKEN` or `LOG_ACCESS_KEY` is
//! set, and asks for one of them.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use std::sync::Arc;

use super::admin::{bearer, verify};
use super::error::ApiError;
use super::with_state;
use super::{client_key, get_or_head};
use crate::config::Secret;
use crate::limits::Limiters;
use crate::limits::client::ClientKey;
use crate::state::AppState;
use crate::telemetry::metrics::{self, ClusterLive, Live};
use crate::telemetry::{PairingOutcome, Refusal, logging, process};

/// How long `/health` waits for the database before calling the server degraded: a healthy
/// SQLite answers in microseconds; 700 ms leaves room for a busy disk, and with the rest of the
/// request the answer still comes within a second, inside every usual probe timeout (Docker,
/// Kubernetes and load balancers default to a few seconds).
pub const HEALTH_DB_TIMEOUT: Duration = Duration::from_millis(700);

/// The `/keep-alive` answer.
pub const KEEP_ALIVE: &str = "OK";

/// Every operator route but [`keep_alive`] (which does no work worth limiting).
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    health(state.clone())
        .or(stats(state.clone()))
        .unify()
        .or(metrics_route(state.clone()))
        .unify()
        .or(logs(state))
        .unify()
        .boxed()
}

/// Counts refusals answered by the one error mapping that no handler saw (bodies over the limit
/// are refused by a filter before any handler runs).
pub fn count_refusals(state: AppState) -> impl Fn(Response) -> Response + Clone {
    move |response: Response| {
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            log::debug!("request refused: body over the limit");
            state.metrics().refused(Refusal::Oversize);
        }
        response
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    db: &'static str,
    /// `redis` in cluster mode (the pairing store and rooms are there); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    /// This node's name, in cluster mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    uptime_secs: u64,
    version: &'static str,
}

/// GET /health
fn health(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("health")
        .and(get_or_head())
        .and(with_state(state))
        .then(|state: AppState| async move { health_answer(&state).await })
        .boxed()
}

async fn health_answer(state: &AppState) -> Response {
    let db = match state.store() {
        None => "disabled",
        Some(store) => match tokio::time::timeout(HEALTH_DB_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                log::error!("health: database failed: {e}");
                "unavailable"
            }
            Err(_) => {
                log::error!("health: database did not answer within {HEALTH_DB_TIMEOUT:?}");
                "unavailable"
            }
        },
    };
    let healthy = db != "unavailable";
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        db,
        store: state.cluster().map(|_| "redis"),
        node: state.cluster().map(|c| c.name.clone()),
        uptime_secs: state.started().elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

/// GET /keep-alive
pub fn keep_alive() -> BoxedFilter<(Response,)> {
    warp::path!("keep-alive")
        .and(get_or_head())
        .map(|| plain_text(KEEP_ALIVE.to_owned()))
        .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    uptime_secs: u64,
    connections: usize,
    rooms: usize,
    rooms_ready: usize,
    /// Null when SQLite is off or did not answer.
    pendings: Option<u64>,
    pairings: PairingStats,
    messages_relayed: u64,
    bytes_relayed: u64,
    memory: Memory,
    timestamp: String,
    /// Cluster mode: this node's name and the counts over every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterStats>,
    /// What the running dialects show, each under its name.
    #[serde(flatten)]
    dialects: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterStats {
    node: String,
    /// Nodes alive; null when Redis did not answer.
    nodes: Option<usize>,
    rooms: Option<usize>,
    rooms_ready: Option<usize>,
    /// Live codes of the whole cluster (the same as `pendings`: the store is shared).
    pendings: Option<u64>,
}

#[derive(Serialize)]
struct PairingStats {
    created: u64,
    accepted: u64,
    expired: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    rss_bytes: Option<u64>,
}

/// GET /stats
fn stats(state: AppState) -> BoxedFilter<(Response,)> {
    warp::path!("stats")
        .and(get_or_head())
        .and(with_state(state))
        .then(|state: AppState| async move {
            let live = live(&state).await;
            let m = state.metrics();
            let (messages_relayed, bytes_relayed) = m.relayed_totals();
            let body = Stats {
                uptime_secs: live.uptime_secs,
                connections: live.connections,
                rooms: live.rooms,
                rooms_ready: live.rooms_ready,
                pendings: live.pendings,
                pairings: PairingStats {
                    created: m.pairings(PairingOutcome::Created),
                    accepted: m.pairings(PairingOutcome::Accepted),
                    expired: m.pairings(PairingOutcome::Expired),
                },
                messages_relayed,
                bytes_relayed,
                memory: Memory {
                    rss_bytes: process::rss_bytes(),
                },
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                cluster: state.cluster().map(|c| ClusterStats {
                    node: c.name.clone(),
                    nodes: live.cluster.map(|l| l.nodes),
                    rooms: live.cluster.map(|l| l.rooms),
                    rooms_ready: live.cluster.map(|l| l.rooms_ready),
                    pendings: live.pendings,
                }),
                dialects: crate::dialects::stats(&state).await,
            };
            no_store(warp::reply::json(&body).into_response())
        })
        .boxed()
}

/// The live counts of the hub and the store.
async fn live(state: &AppState) -> Live {
    let signaling = state.signaling();
    let counts = signaling.rooms().counts();
    let connections = signaling.delivery().sessions();
    let pendings = match state.store() {
        None => None,
        Some(store) => {
            match tokio::time::timeout(HEALTH_DB_TIMEOUT, store.count_live_pendings()).await {
                Ok(Ok(n)) => Some(n),
                Ok(Err(e)) => {
                    log::error!("counting pending codes failed: {e}");
                    None
                }
                Err(_) => {
                    log::error!("counting pending codes: no answer in {HEALTH_DB_TIMEOUT:?}");
                    None
                }
            }
        }
    };
    let cluster = match state.cluster() {
        None => None,
        Some(cluster) => {
            let counts = async {
                let nodes: usize = cluster
                    .redis
                    .query(&redis::cmd("SCARD").arg("sp:nodes").clone())
                    .await
                    .ok()?;
                let rooms = cluster.rooms.cluster_counts().await.ok()?;
                Some(ClusterLive {
                    nodes,
                    rooms: rooms.rooms,
                    rooms_ready: rooms.rooms_ready,
                })
            };
            tokio::time::timeout(HEALTH_DB_TIMEOUT, counts)
                .await
                .ok()
                .flatten()
        }
    };
    Live {
        connections,
        rooms: counts.rooms,
        rooms_ready: counts.rooms_ready,
        pendings,
        uptime_secs: state.started().elapsed().as_secs(),
        cluster,
    }
}

/// GET /metrics
fn metrics_route(state: AppState) -> BoxedFilter<(Response,)> {
    let token = state.config().metrics_token.clone();
    warp::path!("metrics")
        .and(get_or_head())
        .and(optional_bearer(token, state.limits().clone()))
        .and(with_state(state))
        .then(|state: AppState| async move {
            let live = live(&state).await;
            let text = state.metrics().render(&live);
            let mut response = Response::new(text.into());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            no_store(response)
        })
        .boxed()
}

/// Passes requests with `Authorization: Bearer <token>` when a token is set, and every request
/// when none is. A wrong token counts as a failed guess (see [`super::admin::verify`]).
fn optional_bearer(
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
                    return Ok(());
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

/// GET /logs
fn logs(state: AppState) -> BoxedFilter<(Response,)> {
    let admin = state.config().admin_token.clone();
    let key = state.config().log_access_key.clone();
    let limits = state.limits().clone();
    warp::path!("logs")
        .and(get_or_head())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .and(client_key(limits.clone()))
        .then(
            move |auth: Option<String>, query: HashMap<String, String>, client: ClientKey| {
                let (admin, key, limits) = (admin.clone(), key.clone(), limits.clone());
                async move {
                    let presented = Presented {
                        bearer: auth.as_deref().and_then(bearer),
                        key: query.get("key").map(String::as_str),
                    };
                    if admin.is_none() && key.is_none() {
                        return ApiError::NotFound.to_response();
                    }
                    let offered = presented.bearer.is_some() || presented.key.is_some();
                    let access = verify(&limits, client, offered, || {
                        logs_access(admin.as_ref(), key.as_ref(), &presented).is_ok()
                    })
                    .await;
                    match access {
                        Ok(()) => no_store(plain_text(logging::recent())),
                        Err(e) => e.to_response(),
                    }
                }
            },
        )
        .boxed()
}

/// What a `/logs` request offered as credentials.
struct Presented<'a> {
    bearer: Option<&'a str>,
    key: Option<&'a str>,
}

/// Whether a `/logs` request may read: with neither secret configured the route does not exist;
/// otherwise the admin token as bearer or the access key as `?key=` opens it.
fn logs_access(
    admin: Option<&Secret>,
    key: Option<&Secret>,
    presented: &Presented<'_>,
) -> Result<(), ApiError> {
    if admin.is_none() && key.is_none() {
        return Err(ApiError::NotFound);
    }
    let by_token = matches!((admin, presented.bearer), (Some(t), Some(p)) if t.matches(p));
    let by_key = matches!((key, presented.key), (Some(k), Some(p)) if k.matches(p));
    if by_token || by_key {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn plain_text(text: String) -> Response {
    let mut response = Response::new(text.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Operator answers are live readings: a cache in between must not keep them.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        s.parse().unwrap()
    }

    fn presented<'a>(bearer: Option<&'a str>, key: Option<&'a str>) -> Presented<'a> {
        Presented { bearer, key }
    }

    #[test]
    fn logs_do_not_exist_without_a_configured_secret() {
        let r = logs_access(None, None, &presented(Some("x"), Some("y")));
        assert!(matches!(r, Err(ApiError::NotFound)));
    }

    #[test]
    fn logs_open_to_the_admin_token_or_the_access_key_and_nothing_else() {
        let (admin, key) = (secret("admin-t"), secret("log-k"));
        let check = |b, k| logs_access(Some(&admin), Some(&key), &presented(b, k)).is_ok();
        assert!(check(Some("admin-t"), None));
        assert!(check(None, Some("log-k")));
        assert!(!check(None, None));
        assert!(!check(Some("log-k"), None), "the key is not a bearer token");
        assert!(!check(None, Some("admin-t")), "the token is not a key");
        assert!(!check(Some("admin-"), Some("log-")));
    }

    #[test]
    fn the_access_key_alone_opens_logs_when_no_admin_token_is_set() {
        let key = secret("log-k");
        assert!(logs_access(None, Some(&key), &presented(None, Some("log-k"))).is_ok());
        assert!(matches!(
            logs_access(None, Some(&key), &presented(Some("log-k"), None)),
            Err(ApiError::Unauthorized)
        ));
    }
}
