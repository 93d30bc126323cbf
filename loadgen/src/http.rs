//! A minimal keep-alive HTTP/1.1 client: one connection per worker, one request at a time.
//!
//! Going through hyper's connection API directly (rather than a pooled client) keeps the client's
//! own overhead small and predictable, so the latencies measured are mostly the server's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::target::Target;

/// A transport failure: the request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    /// The HTTP exchange failed (connection closed, malformed response, ...).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// A response with its whole body read.
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The body bytes.
    pub body: Bytes,
}

/// One keep-alive connection to the target; reconnects after a transport failure.
pub struct Client {
    target: Target,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client that connects lazily on its first request.
    pub fn new(target: Target) -> Self {
        let host = target.host_header();
        Self {
            target,
            host,
            sender: None,
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&mut self, path: &str, body: String) -> Result<Response, HttpError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let result = self.send(request).await;
        if result.is_err() {
            // The connection is in an unknown state: start afresh next time.
            self.sender = None;
        }
        result
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response, HttpError> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            slot => slot.insert(self::connect(&self.target).await?),
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Response { status, body })
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, HttpError> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the sender is dropped or the server closes.
    tokio::spawn(connection);
    Ok(sender)
}
