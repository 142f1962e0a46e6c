//! Serving a request with an app over HTTP: the environ built from the
//! hyper request, the app called inline or on a blocking thread (as
//! [`call_policy`](super::call_policy) decides), `wsgi.input` streamed from
//! the connection, a streamed body sent back through a channel.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Version};
use plugin_api::host::{Header, RequestVars};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::access_log::{AccessLog, Entry};
use super::body::{Body, BodyFrame};
use super::call_policy::{CallPolicy, CallReport, Placement, RouteId};
use super::connection::ConnInfo;
use super::responses;
use super::router;
use super::stuck_calls::InlineCall;
use crate::exchange::{self, Called, Chunk, Exchange, Refusal, RequestBody, ResponseSink, Summary};
use crate::inflight;
use crate::loader::LoadedApp;
use crate::response_head::{self, ResponseHead};

/// Response chunks buffered between the app's thread and the connection.
const BODY_CHANNEL_DEPTH: usize = 8;

/// What one app request needs besides the request itself.
pub struct AppCall {
    /// The app.
    pub app: Arc<LoadedApp>,
    /// Where the mount's calls run.
    pub policy: Arc<CallPolicy>,
    /// This request's route record in `policy` (from `path_info`).
    pub route: RouteId,
    /// The mount's prefix (`SCRIPT_NAME` is this, or empty at `/`).
    pub mount: Arc<str>,
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
    pub deadline: Duration,
    /// Called when a request outlives its deadline inside the app.
    pub on_stuck: super::OnStuck,
}

/// The exchange as the HTTP side runs it.
type HttpExchange = Exchange<HttpSink, BodyReader>;

/// Runs the app for `request` and returns the response as soon as its head
/// is known; a streamed body keeps coming from a blocking thread.
pub async fn serve(call: AppCall, request: Request<Incoming>) -> Response<Body> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > call.max_body_size) {
        return too_large(call.max_body_size);
    }
    let (parts, body) = request.into_parts();
    // An inline call must never wait for the connection: only bodiless
    // requests qualify.
    let placement = match body.is_end_stream() {
        true => call.policy.place(call.route),
        false => Placement::Pool,
    };
    let head_only = parts.method == Method::HEAD;
    let input = BodyReader::new(body, call.max_body_size);
    let deadline = call.deadline;
    let response_rx = match placement {
        Placement::Inline => {
            let exchange = Exchange::new(HttpSink::new(Delivery::Held(None), head_only), input);
            match call_inline(call, parts, exchange) {
                Answer::Ready(response) => return response,
                Answer::Later(response_rx) => response_rx,
            }
        }
        Placement::Pool => {
            let (response_tx, response_rx) = oneshot::channel();
            let exchange = Exchange::new(HttpSink::new(Delivery::Send(Some(response_tx)), head_only), input);
            on_pool(call, parts, move |call, parts| {
                call_app(call, parts, exchange, Placement::Pool)
            });
            response_rx
        }
    };
    match tokio::time::timeout(deadline, response_rx).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => no_response(),
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

/// The response to a request, or where it will come from.
enum Answer {
    /// Here it is.
    Ready(Response<Body>),
    /// A blocking thread sends it.
    Later(oneshot::Receiver<Response<Body>>),
}

/// Calls the app on this runtime thread. A whole body is sent from here; a
/// streamed one is pulled on the blocking pool.
fn call_inline(call: AppCall, parts: Parts, exchange: HttpExchange) -> Answer {
    let _inflight = inflight::enter(parts.method.as_str(), &call.mount, &call.path_info);
    let mut called = {
        let _inline = InlineCall::enter(parts.method.as_str(), parts.uri.path(), &call.policy, call.route);
        call_app(&call, &parts, exchange, Placement::Inline)
    };
    if called.streams() {
        let answer = called.sink_mut().hand_off();
        on_pool(call, parts, move |_, _| called);
        return answer;
    }
    Answer::Ready(
        finish(&call, &parts, called)
            .take_response()
            .unwrap_or_else(no_response),
    )
}

fn no_response() -> Response<Body> {
    responses::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the app's thread ended without a response",
    )
}

/// Runs `job` (which calls the app, or has) on the blocking pool, then
/// sends the body; a watchdog task notices if it outlives the deadline.
fn on_pool<F>(call: AppCall, parts: Parts, job: F)
where
    F: FnOnce(&AppCall, &Parts) -> Called<HttpSink, BodyReader> + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (deadline, on_stuck) = (call.deadline, call.on_stuck.clone());
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    tokio::task::spawn_blocking(move || {
        let _inflight = inflight::enter(parts.method.as_str(), &call.mount, &call.path_info);
        let called = job(&call, &parts);
        drop(finish(&call, &parts, called));
        let _ = done_tx.send(());
    });
    tokio::spawn(async move {
        if tokio::time::timeout(deadline, done_rx).await.is_err() {
            log::error!(
                "{method} {path} is still inside the app after the request timeout ({}s, option --timeout) in pid {}: answered 504",
                deadline.as_secs_f64(),
                std::process::id()
            );
            on_stuck();
        }
    });
}

/// Calls the app and records how the call went with the mount's policy.
fn call_app(
    call: &AppCall,
    parts: &Parts,
    exchange: HttpExchange,
    placement: Placement,
) -> Called<HttpSink, BodyReader> {
    let started = Instant::now();
    let mut called = with_environ(call, parts, |vars, headers| exchange.call(&call.app, vars, headers));
    let whole = !called.streams() && !called.sink_mut().streamed;
    let report = CallReport {
        placement,
        took: started.elapsed(),
        whole,
    };
    call.policy.record(call.route, &call.path_info, report);
    called
}

/// Sends the body and writes the access log line; gives the sink back.
fn finish(call: &AppCall, parts: &Parts, called: Called<HttpSink, BodyReader>) -> HttpSink {
    let method = parts.method.as_str();
    let script_name = router::script_name(&call.mount);
    let (summary, sink) = called.finish(|| exchange::describe(method, script_name, &call.path_info, &call.app));
    log_access(call, parts, &summary);
    sink
}

fn too_large(limit: u64) -> Response<Body> {
    log::warn!("refused a request body over max_body_size ({limit} bytes); raise it with --max-body-size");
    responses::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body exceeds {limit} bytes (server option --max-body-size)"),
    )
}

/// Builds the environ from the request and hands it to `f`.
fn with_environ<R>(call: &AppCall, parts: &Parts, f: impl FnOnce(&RequestVars<'_>, &[Header<'_>]) -> R) -> R {
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
        script_name: router::script_name(&call.mount),
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
    f(&vars, &headers)
}

fn log_access(call: &AppCall, parts: &Parts, summary: &Summary) {
    call.access_log.record(&Entry {
        remote: &call.conn.remote_addr,
        method: parts.method.as_str(),
        target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        protocol: protocol(parts.version),
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

/// Where the response goes once its head is known.
enum Delivery {
    /// Inline: kept here until the call returns (the connection task is
    /// the one running the call).
    Held(Option<Response<Body>>),
    /// To the connection task, from a blocking thread.
    Send(Option<oneshot::Sender<Response<Body>>>),
}

/// Delivers the app's response, then feeds a streamed body through a
/// channel.
struct HttpSink {
    delivery: Delivery,
    body_tx: Option<mpsc::Sender<BodyFrame>>,
    /// Inline: the head and the body written so far, until the call returns.
    held: Option<(ResponseHead, VecDeque<BodyFrame>)>,
    head_only: bool,
    /// The head went out before the body was complete.
    streamed: bool,
    /// Bytes still allowed by the app's Content-Length, if it set one.
    remaining: Option<u64>,
}

const CLIENT_GONE: &str = "the client went away";

impl HttpSink {
    fn new(delivery: Delivery, head_only: bool) -> Self {
        HttpSink {
            delivery,
            body_tx: None,
            held: None,
            head_only,
            streamed: false,
            remaining: None,
        }
    }

    fn send_response(&mut self, head: ResponseHead, body: Body) -> Result<(), String> {
        let response = build_response(head, body);
        match &mut self.delivery {
            Delivery::Held(slot @ None) => {
                *slot = Some(response);
                Ok(())
            }
            Delivery::Send(tx) => tx
                .take()
                .ok_or("response head sent twice")?
                .send(response)
                .map_err(|_| CLIENT_GONE.to_owned()),
            Delivery::Held(Some(_)) => Err("response head sent twice".to_owned()),
        }
    }

    /// The response an inline call made.
    fn take_response(&mut self) -> Option<Response<Body>> {
        match &mut self.delivery {
            Delivery::Held(response) => response.take(),
            Delivery::Send(_) => None,
        }
    }

    /// From an inline call to a blocking thread (a stream is to be
    /// pulled): what was held goes out now, the rest through a channel.
    fn hand_off(&mut self) -> Answer {
        if let Some((head, queued)) = self.held.take() {
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_DEPTH);
            self.body_tx = Some(tx);
            return Answer::Ready(build_response(head, Body::Stream { queued, rx: Some(rx) }));
        }
        if let Some(response) = self.take_response() {
            return Answer::Ready(response); // HEAD: the stream is pulled and discarded
        }
        let (response_tx, response_rx) = oneshot::channel();
        self.delivery = Delivery::Send(Some(response_tx));
        Answer::Later(response_rx)
    }

    /// Cuts `bytes` to what the app's Content-Length still allows.
    fn cut(&mut self, mut bytes: Bytes) -> Bytes {
        if let Some(remaining) = self.remaining.as_mut() {
            bytes.truncate((*remaining).min(bytes.len() as u64) as usize);
            *remaining -= bytes.len() as u64;
        }
        bytes
    }

    fn push(&mut self, frame: BodyFrame) -> Result<(), String> {
        match (&self.body_tx, &mut self.held) {
            (Some(tx), _) => tx.blocking_send(frame).map_err(|_| CLIENT_GONE.to_owned()),
            (None, Some((_, queued))) => {
                queued.push_back(frame);
                Ok(())
            }
            (None, None) => Ok(()), // HEAD: the body is discarded
        }
    }
}

impl ResponseSink for HttpSink {
    fn head(&mut self, head: ResponseHead) -> Result<(), String> {
        self.remaining = head.content_length();
        self.streamed = true;
        if self.head_only {
            return self.send_response(head, Body::Empty);
        }
        if let Delivery::Held(_) = self.delivery {
            self.held = Some((head, VecDeque::new()));
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(BODY_CHANNEL_DEPTH);
        self.body_tx = Some(tx);
        self.send_response(head, Body::channel(rx))
    }

    fn data(&mut self, chunk: Chunk) -> Result<(), String> {
        let bytes = self.cut(chunk_bytes(chunk));
        if bytes.is_empty() {
            return Ok(());
        }
        self.push(Ok(bytes))
    }

    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), String> {
        self.remaining = head.content_length();
        let bytes = body.map(|chunk| self.cut(chunk_bytes(chunk)));
        let body = match bytes {
            Some(bytes) if !self.head_only => Body::full(bytes),
            _ => Body::Empty,
        };
        self.send_response(head, body)
    }

    fn abort(&mut self) {
        let _ = self.push(Err(io::Error::other("the app failed mid-response")));
        self.body_tx = None;
    }

    fn end(&mut self) {
        if let Some((head, queued)) = self.held.take() {
            let _ = self.send_response(head, Body::Stream { queued, rx: None });
        }
    }
}

fn chunk_bytes(chunk: Chunk) -> Bytes {
    match chunk {
        Chunk::Static(bytes) => Bytes::from_static(bytes),
        Chunk::Plugin(bytes) => Bytes::from_owner(bytes),
        Chunk::Copied(bytes) => Bytes::from(bytes),
    }
}

/// Hop-by-hop headers belong to the server, not the app (PEP 3333).
fn is_hop_by_hop(name: &[u8]) -> bool {
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
    HOP_BY_HOP.iter().any(|h| h.as_bytes().eq_ignore_ascii_case(name))
}

fn build_response(head: ResponseHead, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = head.reason();
    if !reason.is_empty() && Some(reason) != response.status().canonical_reason() {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec()) {
            response.extensions_mut().insert(reason);
        }
    }
    // Every value is a slice of the head's one buffer: no copies.
    let count = head.len();
    let text = Bytes::from(head.into_text());
    let headers = response.headers_mut();
    headers.reserve(count + 1); // and Server
    for (name, value) in response_head::header_spans(&text) {
        let name = &text[name];
        if is_hop_by_hop(name) {
            log::debug!("dropped the app's hop-by-hop header {}", String::from_utf8_lossy(name));
            continue;
        }
        // Validated by `response_head` already; skip rather than panic.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(text.slice(value)),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// `wsgi.input` over the connection: pulls body frames from hyper (which
/// sends `100 Continue` on the first pull) and enforces the size limit.
/// A bodiless request never touches the connection (so an inline call
/// can read it).
struct BodyReader {
    body: Incoming,
    handle: Handle,
    pending: Bytes,
    received: u64,
    limit: u64,
    exceeded: bool,
    finished: bool,
}

impl BodyReader {
    fn new(body: Incoming, limit: u64) -> Self {
        BodyReader {
            finished: body.is_end_stream(),
            body,
            handle: Handle::current(),
            pending: Bytes::new(),
            received: 0,
            limit,
            exceeded: false,
        }
    }
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
