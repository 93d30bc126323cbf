//! Errors of the HTTP API, and the one place they become status codes and `{"error": ...}` bodies.

use std::convert::Infallible;

use warp::http::{HeaderValue, StatusCode, header};
use warp::reject::Rejection;
use warp::reply::{Reply, Response};

use crate::db::StoreError;
use crate::protocol::rest::{ErrorBody, FieldError};

/// A refused or failed HTTP request. Client errors are answered as they are; server errors are
/// logged with their cause and answered with an opaque code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field failed validation (`missing_*`, `invalid_*`).
    #[error("{}", .0.code())]
    Field(FieldError),
    /// The body is not a JSON object.
    #[error("invalid_json")]
    InvalidJson,
    /// The query string could not be decoded.
    #[error("invalid_query")]
    InvalidQuery,
    /// The body is over the limit.
    #[error("payload_too_large")]
    PayloadTooLarge,
    /// No live pending code matches.
    #[error("not_found_or_expired")]
    NotFoundOrExpired,
    /// No such resource or route.
    #[error("not_found")]
    NotFound,
    /// The code is live, or accepted by another device.
    #[error("conflict")]
    Conflict,
    /// A path of the old API.
    #[error("use_new_endpoints")]
    UseNewEndpoints,
    /// Known path, wrong method.
    #[error("method_not_allowed")]
    MethodNotAllowed,
    /// A plain GET on the WebSocket path, or an upgrade missing its handshake headers.
    #[error("upgrade_required")]
    UpgradeRequired,
    /// A WebSocket version other than 13.
    #[error("unsupported_websocket_version")]
    UnsupportedWebSocketVersion,
    /// Over a rate or guess limit; retry after this long.
    #[error("too_many_requests")]
    TooManyRequests(std::time::Duration),
    /// The client holds its maximum of live codes; retry after this long.
    #[error("too_many_pending")]
    TooManyPending(std::time::Duration),
    /// A request from an origin not in `ALLOWED_ORIGINS`.
    #[error("origin_not_allowed")]
    OriginNotAllowed,
    /// A POST or DELETE whose `Content-Type` is not JSON.
    #[error("unsupported_media_type")]
    UnsupportedMediaType,
    /// The server holds its maximum of WebSocket connections.
    #[error("server_full")]
    ServerFull,
    /// An operator endpoint without the right bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// No TURN secret and no STUN url are configured.
    #[error("turn_not_configured")]
    TurnNotConfigured,
    /// A server-side fault outside the database; the code names the operation.
    #[error("{0}")]
    Internal(&'static str),
    /// No server-generated code was free.
    #[error("no_code_available")]
    NoCodeAvailable,
    /// The store failed: `store_unavailable` (503) when it cannot be reached or is locked, else
    /// a code naming the operation (`create_failed`, ...; 500).
    #[error("{}", store_code(operation, source))]
    Store {
        /// Opaque code for the client.
        operation: &'static str,
        /// The cause, for the log only.
        #[source]
        source: StoreError,
    },
}

impl warp::reject::Reject for ApiError {}

/// The code a store failure is answered with.
fn store_code(operation: &'static str, source: &StoreError) -> &'static str {
    match source {
        StoreError::Unavailable(_) => "store_unavailable",
        StoreError::Internal(_) => operation,
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::Field(e)
    }
}

impl ApiError {
    /// Wraps a store failure under the operation's opaque code.
    pub fn store(operation: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |source| Self::Store { operation, source }
    }

    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Field(_) | Self::InvalidJson | Self::InvalidQuery => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFoundOrExpired | Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::UseNewEndpoints => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::UnsupportedWebSocketVersion => StatusCode::BAD_REQUEST,
            Self::TooManyRequests(_) | Self::TooManyPending(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::OriginNotAllowed => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoCodeAvailable | Self::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::TurnNotConfigured => StatusCode::NOT_IMPLEMENTED,
            Self::Store {
                source: StoreError::Unavailable(_),
                ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl ApiError {
    /// The answer: status, `{"error": code}`, and the cause in the log for server errors.
    pub fn to_response(&self) -> Response {
        if let Self::Store { operation, source } = self {
            log::error!("{operation}: {source}");
        }
        let body = ErrorBody {
            error: self.to_string(),
            message: None,
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status()).into_response();
        let headers = response.headers_mut();
        match self {
            Self::UnsupportedWebSocketVersion => {
                headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            Self::TooManyRequests(wait) | Self::TooManyPending(wait) => {
                // Whole seconds, rounded up: never tell a client to retry before it may.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            Self::ServerFull
            | Self::Store {
                source: StoreError::Unavailable(_),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        self.to_response()
    }
}

/// Turns every rejection into an answer: ours as they are, warp's own into the same body shape.
/// Nothing reaches the client as warp's default plain-text error.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.to_response());
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::InvalidQuery
    } else {
        log::warn!("unhandled rejection: {rejection:?}");
        ApiError::NotFound
    };
    Ok(error.into_response())
}
