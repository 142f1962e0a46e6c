//! Serving a request with an async app (plugin-api 1.2). The app's future
//! is polled by the connection's own task, first until the response's head
//! is known, then by the response body as the connection takes each chunk
//! (so backpressure is the connection's, and a client that goes away drops
//! the future). No thread waits for the app.
//!
//! - `--timeout` is measured on the app's clock, which waits for the
//!   client (its body, a slow reader) do not move: past it, the future is
//!   dropped and the client gets a 504 (or its response ends early). Nothing
//!   is stuck, so no worker is replaced.
//! - A poll that blocks its thread (a CPU loop, a blocking call in async
//!   code) is seen by the stuck-call watchdog as an inline call is.
//! - Each request sits on the in-flight board while it runs, naming the
//!   thread that polls it, so a crash in a poll is pinned on it.
//! - A WebSocket the app accepts is handed, with the future, to a task of
//!   its own ([`super::websocket`]) once its handshake is answered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Response, StatusCode};
use plugin_api::host::RunningApp;

use super::async_exchange::AsyncExchange;
use super::clock::AppClock;
use super::environ::with_environ;
use super::input::{self, BodyLimits};
use super::owned_environ::OwnedEnviron;
use super::sink::build_response;
use super::AppCall;
use crate::inflight;
use crate::plugin::exchange::Refusal;
use crate::plugin::response_head::ResponseHead;
use crate::server::app_gateway::stuck_calls::InlineCall;
use crate::server::http::body::Body;
use crate::server::http::responses;
use crate::server::observe::metrics::CallSite;
use crate::server::observe::Outcome;

/// What an async app made of a request: a response (its head, the body to
/// come), or a WebSocket it accepted, to open.
pub enum Answer {
    /// The response.
    Response(Response<Body>),
    /// The app accepted the WebSocket the request offered.
    WebSocket(Box<Running>),
}

/// Runs the async app for the request of `call` (which offers a WebSocket
/// with these subprotocols, if `websocket` is given); the response comes as
/// soon as its head is known, and its body as the app sends it.
pub async fn serve(call: AppCall, body: Incoming, websocket: Option<Vec<String>>) -> Answer {
    let request = call.request();
    let limits = BodyLimits::from(&request.state.limits);
    let declared = request
        .ctx
        .head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max) {
        let refusal = responses::refusal(&input::too_large(limits.max));
        return Answer::Response(request.answered(refusal));
    }
    let environ = with_environ(&request, |vars, headers, _| OwnedEnviron::copy_of(vars, headers));
    let clock = Arc::new(AppClock::start());
    let conn = &request.ctx.conn;
    let exchange = Arc::new(AsyncExchange::new(
        environ,
        conn.info.client_cert.clone(),
        body,
        limits,
        conn.verdicts.clone(),
        clock.clone(),
        websocket,
    ));
    request.state.metrics.app_call(CallSite::Async);
    let board = request.with_board_facts(0, inflight::enter_task);
    if let Some(marked) = board.marked() {
        clock.on_board(marked);
    }
    let Some(app) = request.mount.app.app.call_async(exchange.clone()) else {
        unreachable!("serve_async is only called for async apps");
    };
    let timeout = request.state.limits.request_timeout.0;
    let head_only = request.ctx.head.method == Method::HEAD;
    let running = Running {
        app: Some(app),
        exchange,
        board,
        timeout,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        head_only,
        call,
        status: 0,
        sent: 0,
        remaining: None,
        outcome: None,
        received: None,
        logged: false,
    };
    (HeadFuture { running: Some(running) }).await
}

/// The response to a WebSocket handshake, with the app's extra headers
/// (the caller sets the status and the protocol's own headers).
pub fn handshake_response(head: ResponseHead) -> Response<Body> {
    build_response(head, Body::Empty)
}

/// An async app at work on one request, and what its log line needs.
pub struct Running {
    /// The app's future; `None` once done (or dropped).
    app: Option<RunningApp>,
    exchange: Arc<AsyncExchange>,
    board: inflight::Task,
    timeout: Duration,
    /// When the request's time in the app may be up.
    deadline: Pin<Box<tokio::time::Sleep>>,
    head_only: bool,
    call: AppCall,
    /// The status sent (0: none yet).
    status: u16,
    /// Body bytes handed to the connection.
    sent: u64,
    /// Bytes the app's Content-Length still allows.
    remaining: Option<u64>,
    /// How the app's future ended, once it has.
    outcome: Option<Result<(), String>>,
    /// A WebSocket's message bytes received, for its log line.
    received: Option<u64>,
    logged: bool,
}

/// Polls the app until the response's head is known (or it accepted a
/// WebSocket).
struct HeadFuture {
    running: Option<Running>,
}

impl Future for HeadFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let running = self.running.as_mut().expect("polled after it answered");
        if running.outcome.is_none() {
            running.exchange.register_delivery(cx.waker());
            if let Poll::Ready(outcome) = running.poll_app(cx) {
                running.outcome = Some(outcome);
            }
        }
        if running.exchange.websocket_accepted() {
            return Poll::Ready(Answer::WebSocket(Box::new(self.running.take().expect("checked above"))));
        }
        if running.outcome.is_some() {
            return Poll::Ready(Answer::Response(running.respond_whole()));
        }
        if running.exchange.head_waiting() {
            let running = self.running.take().expect("checked above");
            return Poll::Ready(Answer::Response(running.respond_streaming()));
        }
        if running.poll_deadline(cx) {
            return Poll::Ready(Answer::Response(running.respond_timeout()));
        }
        Poll::Pending
    }
}

impl Running {
    /// Polls the app's future once, marked for the stuck-call watchdog and
    /// on the in-flight board.
    pub fn poll_app(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let Some(app) = self.app.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = {
            let ctx = &self.call.ctx;
            let _inline = InlineCall::enter(ctx.method().as_str(), ctx.head.uri.path(), None);
            let _polling = self.board.polling();
            Pin::new(app).poll(cx)
        };
        if polled.is_ready() {
            self.app = None;
        }
        polled
    }

    /// Whether the request's time in the app is up; else the deadline is
    /// armed for when it may be.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let left = self.timeout.saturating_sub(self.exchange.clock().in_app());
            if left.is_zero() {
                return true;
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            // Waits for the client did not count: time is left yet.
            self.deadline.as_mut().reset(tokio::time::Instant::now() + left);
        }
    }

    /// The whole response of an app that finished before its head went out.
    fn respond_whole(&mut self) -> Response<Body> {
        let outcome = self.outcome.clone().unwrap_or(Ok(()));
        if let Some(refusal) = self.exchange.refusal() {
            self.log_problem(&format!("{}; the app's answer is discarded", refusal.detail));
            return self.answer_refusal(&refusal);
        }
        let head = match (outcome, self.exchange.take_head()) {
            (Err(problem), _) => Err(problem),
            (Ok(()), None) => Err("the app finished without starting a response".to_owned()),
            (Ok(()), Some(head)) => head,
        };
        match head {
            Ok(head) => {
                let body = self.exchange.take_chunk().map(|chunk| self.cut(chunk));
                let body = match body {
                    Some(bytes) if !self.head_only => Body::full(bytes),
                    _ => Body::Empty,
                };
                let response = self.respond(head, body);
                self.log_access();
                response
            }
            Err(problem) => {
                self.log_problem(&problem);
                self.answer_refusal(&Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the app failed; the server log says why",
                ))
            }
        }
    }

    /// The head of a response whose body the app is still sending.
    fn respond_streaming(mut self) -> Response<Body> {
        match self.exchange.take_head() {
            Some(Ok(head)) => {
                let (parts, _) = self.respond(head, Body::Empty).into_parts();
                Response::from_parts(parts, Body::Boxed(Box::pin(AppBody { running: self })))
            }
            // The head is checked when it is set; this is not reached.
            _ => self.respond_whole(),
        }
    }

    /// A response with the app's `head`, noting its status.
    fn respond(&mut self, head: ResponseHead, body: Body) -> Response<Body> {
        self.status = head.status().as_u16();
        self.remaining = head.content_length();
        if let Some(marked) = self.board.marked() {
            marked.head_sent(self.status);
        }
        build_response(head, body)
    }

    /// 504: the app did not answer within `--timeout`; its future is dropped.
    fn respond_timeout(&mut self) -> Response<Body> {
        self.app = None;
        self.exchange.end("the request timed out");
        log::warn!(
            "{}: no answer within the request timeout ({}, option --timeout): answered 504 and dropped the app's future",
            self.describe(),
            crate::config::Seconds(self.timeout)
        );
        if let Some(marked) = self.board.marked() {
            marked.answered_by_server(504);
        }
        let response = responses::error(
            StatusCode::GATEWAY_TIMEOUT,
            "the app did not answer within the request timeout (server option --timeout)",
        );
        self.status = 504;
        self.sent = http_body::Body::size_hint(response.body()).exact().unwrap_or(0);
        self.log_access();
        response
    }

    /// The server's own answer in place of the app's.
    fn answer_refusal(&mut self, refusal: &Refusal) -> Response<Body> {
        let response = responses::refusal(refusal);
        self.status = refusal.status.as_u16();
        self.sent = http_body::Body::size_hint(response.body()).exact().unwrap_or(0);
        self.log_access();
        response
    }
}

impl Running {
    /// `chunk` cut to what the app's Content-Length still allows.
    fn cut(&mut self, mut chunk: Bytes) -> Bytes {
        if let Some(remaining) = self.remaining.as_mut() {
            chunk.truncate((*remaining).min(chunk.len() as u64) as usize);
            *remaining -= chunk.len() as u64;
        }
        self.sent += chunk.len() as u64;
        chunk
    }

    fn describe(&self) -> String {
        self.call.request().describe()
    }

    fn log_problem(&self, problem: &str) {
        log::error!("{}: {problem}", self.describe());
    }

    /// Writes the request's access-log line (once).
    pub fn log_access(&mut self) {
        if std::mem::replace(&mut self.logged, true) {
            return;
        }
        self.call.request().finished(&Outcome {
            status: self.status,
            bytes: self.sent,
            received: self.received,
            duration: self.call.ctx.started.elapsed(),
        });
    }

    /// The shared state.
    pub fn exchange(&self) -> &Arc<AsyncExchange> {
        &self.exchange
    }

    /// The server's state and the connection's facts.
    pub fn call(&self) -> &AppCall {
        &self.call
    }

    /// Notes the handshake's answer: its status.
    pub fn answered(&mut self, status: u16) {
        self.status = status;
        if let Some(marked) = self.board.marked() {
            marked.head_sent(status);
        }
    }

    /// Notes the message bytes a WebSocket received, for its log line.
    pub fn count_received(&mut self, bytes: u64) {
        self.received = Some(bytes);
    }

    /// Counts `bytes` as sent to the client.
    pub fn count_sent(&mut self, bytes: u64) {
        self.sent += bytes;
    }

    /// Whether the app's future is done, and how.
    pub fn outcome(&self) -> Option<&Result<(), String>> {
        self.outcome.as_ref()
    }

    /// Records how the app's future ended.
    pub fn set_outcome(&mut self, outcome: Result<(), String>) {
        if let Err(problem) = &outcome {
            self.log_problem(problem);
        }
        self.outcome = Some(outcome);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.app.is_some() {
            // The client went away (or the server stops): the app's future
            // is dropped, which cancels it; its other handles now fail.
            self.exchange.end("the client went away");
            self.app = None;
        }
        self.log_access();
    }
}

/// The body of a response an async app is still sending: each poll takes
/// the chunk the app handed over, or polls the app for the next.
pub struct AppBody {
    running: Running,
}

impl AppBody {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let running = &mut self.running;
        loop {
            if let Some(chunk) = running.exchange.take_chunk() {
                let chunk = running.cut(chunk);
                if running.head_only || chunk.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            match running.outcome.take() {
                Some(Ok(())) => {
                    running.outcome = Some(Ok(()));
                    running.log_access();
                    return Poll::Ready(None);
                }
                Some(Err(problem)) => {
                    running.log_problem(&problem);
                    running.outcome = Some(Ok(())); // reported once
                    running.log_access();
                    return Poll::Ready(Some(Err(io::Error::other("the app failed mid-response"))));
                }
                None => {}
            }
            running.exchange.register_delivery(cx.waker());
            match running.poll_app(cx) {
                Poll::Ready(outcome) => running.outcome = Some(outcome),
                Poll::Pending if running.exchange.has_chunk() => {}
                Poll::Pending if running.poll_deadline(cx) => {
                    running.app = None;
                    running.exchange.end("the request timed out");
                    log::warn!(
                        "{}: still sending after the request timeout ({}, option --timeout): the response ends early",
                        running.describe(),
                        crate::config::Seconds(running.timeout)
                    );
                    running.log_access();
                    return Poll::Ready(Some(Err(io::Error::other("the app ran past the request timeout"))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl http_body::Body for AppBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.get_mut()
            .poll_next(cx)
            .map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        match self.running.remaining {
            Some(left) => SizeHint::with_exact(left),
            None => SizeHint::default(),
        }
    }
}
