//! Request bodies: read with a hard size bound, parsed as one JSON object.

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use warp::{Filter, Rejection};

use super::error::ApiError;
use crate::protocol::rest::Object;

/// Largest request body accepted. Pairing bodies are a few hundred bytes; a purge of 100 ids of
/// 128 characters fits with room to spare. Larger bodies get 413 `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The body as a JSON object; an empty body is `None`.
///
/// Unlike `warp::body::content_length_limit`, this bounds chunked bodies too (which carry no
/// `Content-Length`) instead of refusing them with 411.
pub fn optional_json_object() -> impl Filter<Extract = (Option<Object>,), Error = Rejection> + Clone
{
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(|length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(warp::reject::custom(ApiError::PayloadTooLarge));
            }
            let bytes = read_limited(body).await.map_err(warp::reject::custom)?;
            parse_object(&bytes).map_err(warp::reject::custom)
        })
}

/// The body's bytes, bounded like every body (413 `payload_too_large` beyond
/// [`MAX_BODY_BYTES`]), for a protocol that parses and answers them its own way (a dialect).
pub fn bounded_bytes() -> impl Filter<Extract = (Vec<u8>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(|length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(warp::reject::custom(ApiError::PayloadTooLarge));
            }
            read_limited(body).await.map_err(warp::reject::custom)
        })
}

/// The body as a JSON object, required.
pub fn json_object() -> impl Filter<Extract = (Object,), Error = Rejection> + Clone {
    json_object_or_error().and_then(|body: Result<Object, ApiError>| async move {
        body.map_err(warp::reject::custom)
    })
}

/// The body as a JSON object, or why it is not one, for a handler that must see every request
/// that reaches its route (one that counts it against a limit whatever the body).
pub fn json_object_or_error()
-> impl Filter<Extract = (Result<Object, ApiError>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .then(|length: Option<u64>, body| async move {
            if length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
                return Err(ApiError::PayloadTooLarge);
            }
            let bytes = read_limited(body).await?;
            parse_object(&bytes)?.ok_or(ApiError::InvalidJson)
        })
}

async fn read_limited<S, B>(body: S) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        // A body cut off mid-way is not JSON.
        let mut chunk = chunk.map_err(|_| ApiError::InvalidJson)?;
        if bytes.len() + chunk.remaining() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            bytes.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(bytes)
}

/// `None` for an empty (or all-whitespace) body; an object, or `invalid_json`.
fn parse_object(bytes: &[u8]) -> Result<Option<Object>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(Some(object)),
        _ => Err(ApiError::InvalidJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_objects_are_bodies() {
        assert!(parse_object(br#"{"a":1}"#).unwrap().is_some());
        assert!(parse_object(b"  ").unwrap().is_none());
        for bad in [&b"[1]"[..], b"\"s\"", b"null", b"{", b"\xff\xfe"] {
            assert!(matches!(parse_object(bad), Err(ApiError::InvalidJson)));
        }
    }
}
