//! Serving a request with an app over HTTP: the environ built from the
//! hyper request, the app run on a blocking thread, `wsgi.input` streamed
//! from the connection, the body streamed back through a channel.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use plugin_api::host::{Header, RequestVars};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::access_log::{AccessLog, Entry};
use super::body::{Body, BodyFrame};
use super::connection::ConnInfo;
use super::responses;
use crate::exchange::{Chunk, Exchange, Refusal, RequestBody, ResponseSink};
use crate::loader::LoadedApp;
use crate::response_head::ResponseHead;

/// Response chunks buffered between the app's thread and the connection.
const BODY_CHANNEL_DEPTH: usize = 8;

/// What one app request needs besides the request itself.
pub struct AppCall {
    /// The app.
    pub app: Arc<LoadedApp>,
    /// `SCRIPT_NAME`.
    pub script_name: String,
    /// `PATH_INFO`, percent-decoded.
    pub path_info: String,
    /// The connection it came on.
    pub conn: Arc<ConnInfo>,
    /// The body size limit, in bytes.
    pub max_body_size: u64,
    /// Where to record the request when it is done.
    pub access_log: Arc<AccessLog>,
    /// When the request arrived.
    pub started: Instant,
    /// How long the app may take (`--timeout`).
    pub deadline: std::time::Duration,
    /// Called when a request outlives its deadline inside the app.
    pub on_stuck: super::OnStuck,
}

/// Runs the app for `request` and returns the response as soon as its head
/// is known; the body keeps streaming from the app's thread.
pub async fn serve(call: AppCall, request: Request<Incoming>) -> Response<Body> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > call.max_body_size) {
        return too_large(call.max_body_size);
    }
    let (head_tx, head_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let handle = Handle::current();
    let deadline = call.deadline;
    let on_stuck = call.on_stuck.clone();
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let (parts, body) = request.into_parts();
    tokio::task::spawn_blocking(move || {
        let sink = HttpSink {
            head_tx: Some(head_tx),
            body_tx: None,
            head_only: parts.method == Method::HEAD,
            remaining: None,
        };
        let input = BodyReader {
            body,
            handle,
            pending: Bytes::new(),
            received: 0,
            limit: call.max_body_size,
            exceeded: false,
            finished: false,
        };
        run_exchange(&call, &parts, sink, input);
        let _ = done_tx.send(());
    });
    tokio::spawn(async move {
        if tokio::time::timeout(deadline, done_rx).await.is_err() {
            log::error!(
                "{method} {} is still inside the app after the request timeout ({}s, option --timeout) in worker pid {}: answered 504",
                uri.path(),
                deadline.as_secs_f64(),
                std::process::id()
            );
            on_stuck();
        }
    });
    match tokio::time::timeout(deadline, head_rx).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => responses::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app's thread ended without a response",
        ),
        Err(_) => {
            let mut response = responses::error(
                StatusCode::GATEWAY_TIMEOUT,
                "the app did not answer within the request timeout (server option --timeout)",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

fn too_large(limit: u64) -> Response<Body> {
    log::warn!("refused a request body over max_body_size ({limit} bytes); raise it with --max-body-size");
    responses::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body exceeds {limit} bytes (server option --max-body-size)"),
    )
}

/// Builds the environ from the request and runs the exchange (blocking).
fn run_exchange(call: &AppCall, parts: &hyper::http::request::Parts, sink: HttpSink, input: BodyReader) {
    // Header values are passed as UTF-8; the rare value that is not gets a
    // lossy copy (no allocation when every value is fine).
    let repaired: Vec<String> = parts
        .headers
        .values()
        .filter(|v| std::str::from_utf8(v.as_bytes()).is_err())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut repaired = repaired.iter();
    let headers: Vec<Header<'_>> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => text,
                Err(_) => repaired.next().map_or("", String::as_str),
            };
            Header::new(name.as_str(), value)
        })
        .collect();
    let conn = &call.conn;
    let vars = RequestVars {
        method: parts.method.as_str(),
        script_name: &call.script_name,
        path_info: &call.path_info,
        query_string: parts.uri.query().unwrap_or_default(),
        server_name: &conn.server_name,
        server_port: &conn.server_port,
        server_protocol: protocol(parts.version),
        remote_addr: &conn.remote_addr,
        remote_port: &conn.remote_port,
        url_scheme: "http",
        multithread: true,
        multiprocess: false,
        run_once: false,
    };
    let summary = Exchange::new(sink, input).run(&call.app, &vars, &headers);
    call.access_log.record(&Entry {
        remote: &conn.remote_addr,
        method: parts.method.as_str(),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        protocol: vars.server_protocol,
        status: summary.status.unwrap_or(0),
        bytes: summary.bytes,
        duration: call.started.elapsed(),
    });
}

/// `SERVER_PROTOCOL` for a hyper version.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    }
}

/// Sends the app's response to the connection task.
struct HttpSink {
    head_tx: Option<oneshot::Sender<Response<Body>>>,
    body_tx: Option<mpsc::Sender<BodyFrame>>,
    head_only: bool,
    /// Bytes still allowed by the app's Content-Length, if it set one.
    remaining: Option<u64>,
}

const CLIENT_GONE: &str = "the client went away";

impl HttpSink {
    fn send_response(&mut self, head: ResponseHead, body: Body) -> Result<(), String> {
        let response = build_response(head, body);
        self.head_tx
            .take()
            .ok_or("response head sent twice")?
            .send(response)
            .map_err(|_| CLIENT_GONE.to_owned())
    }

    /// Cuts `bytes` to what the app's Content-Length still allows.
    fn cut(&mut self, mut bytes: Bytes) -> Bytes {
        if let Some(remaining) = self.remaining.as_mut() {
            bytes.truncate((*remaining).min(bytes.len() as u64) as usize);
            *remaining -= bytes.len() as u64;
        }
        bytes
    }
}

impl ResponseSink for HttpSink {
    fn head(&mut self, head: ResponseHead) -> Result<(), String> {
        self.remaining = declared_length(&head);
        if self.head_only {
            return self.send_response(head, Body::Empty);
        }
        let (tx, rx) = mpsc::channel(BODY_CHANNEL_DEPTH);
        self.body_tx = Some(tx);
        self.send_response(head, Body::Channel(rx))
    }

    fn data(&mut self, chunk: Chunk) -> Result<(), String> {
        let bytes = self.cut(chunk_bytes(chunk));
        match &self.body_tx {
            _ if bytes.is_empty() => Ok(()),
            Some(tx) => tx.blocking_send(Ok(bytes)).map_err(|_| CLIENT_GONE.to_owned()),
            None => Ok(()), // HEAD: the body is discarded
        }
    }

    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), String> {
        self.remaining = declared_length(&head);
        let bytes = body.map(|chunk| self.cut(chunk_bytes(chunk)));
        let body = match bytes {
            Some(bytes) if !self.head_only => Body::full(bytes),
            _ => Body::Empty,
        };
        self.send_response(head, body)
    }

    fn abort(&mut self) {
        if let Some(tx) = self.body_tx.take() {
            let _ = tx.blocking_send(Err(io::Error::other("the app failed mid-response")));
        }
    }
}

fn declared_length(head: &ResponseHead) -> Option<u64> {
    head.header("content-length").and_then(|v| v.trim().parse().ok())
}

fn chunk_bytes(chunk: Chunk) -> Bytes {
    match chunk {
        Chunk::Static(bytes) => Bytes::from_static(bytes),
        Chunk::Plugin(bytes) => Bytes::from_owner(bytes),
        Chunk::Copied(bytes) => Bytes::from(bytes),
    }
}

/// Hop-by-hop headers belong to the server, not the app (PEP 3333).
fn is_hop_by_hop(name: &str) -> bool {
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    ];
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn build_response(head: ResponseHead, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let canonical = response.status().canonical_reason().unwrap_or_default();
    if !head.reason.is_empty() && head.reason != canonical {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(head.reason.into_bytes()) {
            response.extensions_mut().insert(reason);
        }
    }
    let headers = response.headers_mut();
    headers.reserve(head.headers.len());
    for (name, value) in head.headers {
        if is_hop_by_hop(&name) {
            log::debug!("dropped the app's hop-by-hop header {name}");
            continue;
        }
        // Validated by `response_head` already; skip rather than panic.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    response
}

/// `wsgi.input` over the connection: pulls body frames from hyper (which
/// sends `100 Continue` on the first pull) and enforces the size limit.
struct BodyReader {
    body: Incoming,
    handle: Handle,
    pending: Bytes,
    received: u64,
    limit: u64,
    exceeded: bool,
    finished: bool,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            let frame = self.handle.block_on(self.body.frame());
            match frame {
                None => self.finished = true,
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.received += data.len() as u64;
                    if self.received > self.limit {
                        self.exceeded = true;
                        return Err(io::Error::other(format!(
                            "request body exceeds max_body_size ({} bytes)",
                            self.limit
                        )));
                    }
                    self.pending = data;
                }
            }
        }
        let count = buf.len().min(self.pending.len());
        buf[..count].copy_from_slice(&self.pending[..count]);
        self.pending.advance(count);
        Ok(count)
    }
}

impl RequestBody for BodyReader {
    fn refusal(&self) -> Option<Refusal> {
        self.exceeded.then(|| Refusal {
            status: 413,
            reason: "Payload Too Large",
            detail: format!("the body exceeds {} bytes (server option --max-body-size)", self.limit),
        })
    }
}
