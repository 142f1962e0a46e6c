//! Serving a request with an app over HTTP. The body is read first (up to
//! `--body-buffer-size`, [`input`]); the app is then called inline on the
//! runtime thread or on one of the worker's app threads ([`threads`]), as
//! [`call_policy`](crate::server::app_gateway::call_policy) decides; its answer goes back
//! through an [`HttpSink`](sink::HttpSink). A request gets 504 once it has
//! been inside the app for `--timeout` by its [`AppClock`](clock::AppClock),
//! which does not count time spent waiting for the client.
//!
//! - [`environ`]: the environ, borrowed from the request.
//! - [`input`]: `wsgi.input`, buffered then streamed, with its refusals.
//! - [`sink`]: the response, held (inline) or sent through channels.
//! - [`clock`]: time in the app; [`threads`]: the bounded app threads.

pub mod async_call;
pub mod async_exchange;
pub mod call_policy;
pub mod clock;
pub mod environ;
pub mod input;
pub mod owned_environ;
pub mod sink;
pub mod stuck_calls;
pub mod websocket;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use self::clock::AppClock;
use self::environ::{protocol, with_environ};
use self::input::{BodyLimits, BodyReader};
use self::sink::{Delivery, HttpSink};
use crate::inflight;
use crate::plugin::exchange::{self, Called, Exchange, Refusal, Summary};
use crate::plugin::loader::LoadedApp;
use crate::server::app_gateway::call_policy::{CallPolicy, CallReport, Placement, RouteId};
use crate::server::app_gateway::stuck_calls::InlineCall;
use crate::server::http::body::Body;
use crate::server::http::responses;
use crate::server::http::strict::wire::Verdicts;
use crate::server::net::listener::ConnInfo;
use crate::server::observe::access_log::{target_of, Entry, RequestFacts};
use crate::server::observe::metrics::CallSite;
use crate::server::state::app_threads::Busy;
use crate::server::state::ServerState;

/// What one app request needs besides the request itself.
pub struct AppCall {
    /// The server (limits, log, app threads).
    pub state: Arc<ServerState>,
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
    /// That connection's wire verdicts.
    pub verdicts: Arc<Verdicts>,
    /// When the request arrived.
    pub started: Instant,
    /// Its id and what else its log line needs.
    pub facts: RequestFacts,
}

/// The exchange as the HTTP side runs it.
type HttpExchange = Exchange<HttpSink, BodyReader>;

/// The response to a request, or where it will come from.
pub enum Answer {
    /// Here it is.
    Ready(Response<Body>),
    /// A blocking thread sends it.
    Later(oneshot::Receiver<Response<Body>>),
}

/// Runs the app for `request` and returns the response as soon as its head
/// is known; a streamed body keeps coming from a blocking thread.
pub async fn serve(call: AppCall, request: Request<Incoming>) -> Response<Body> {
    if call.app.app.is_async() {
        return serve_async(call, request).await;
    }
    // HTTP/2's extended CONNECT opens a WebSocket: only async apps take one.
    if request.extensions().get::<hyper::ext::Protocol>().is_some() {
        let refusal = Refusal {
            status: 501,
            reason: "Not Implemented",
            detail: "this app takes no WebSockets (they are served by async apps)".to_owned(),
        };
        return refused(&call, &request, refusal);
    }
    let limits = BodyLimits::from(&call.state.limits);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max) {
        return refused(&call, &request, input::too_large(limits.max));
    }
    let (parts, body) = request.into_parts();
    let input = match input::buffer(body, &limits, &call.verdicts).await {
        Ok(input) => input,
        Err(refusal) => return refused(&call, &Request::from_parts(parts, ()), refusal),
    };
    // An inline call must never wait for the connection: only requests
    // whose whole body is in hand qualify.
    let placement = match input.is_complete() {
        true => call.policy.place(call.route),
        false => Placement::Pool,
    };
    let head_only = parts.method == Method::HEAD;
    let clock = Arc::new(AppClock::start());
    let reader = BodyReader::new(input, clock.clone(), limits);
    let sendfile = call.conn.sendfile(parts.version);
    let sink = |delivery| HttpSink::new(delivery, head_only, sendfile, clock.clone(), limits.idle);
    // For the access log of a 504, once `parts` went to the app's thread.
    let (method, uri, version) = (parts.method.clone(), parts.uri.clone(), parts.version);
    let response_rx = match placement {
        Placement::Inline => match call_inline(&call, &parts, Exchange::new(sink(Delivery::Held(None)), reader)) {
            Answer::Ready(response) => return response,
            Answer::Later(response_rx) => response_rx,
        },
        Placement::Pool => {
            let permit = match call.state.app_threads.acquire().await {
                Ok(permit) => permit,
                Err(busy) => return all_threads_busy(&call, &parts, busy),
            };
            let (response_tx, response_rx) = oneshot::channel();
            let exchange = Exchange::new(sink(Delivery::Send(Some(response_tx))), reader);
            on_pool(call.clone_ref(), parts, clock.clone(), 0, move |call, parts| {
                let called = call_app(call, parts, exchange, Placement::Pool);
                (called, Some(permit))
            });
            response_rx
        }
    };
    let deadline = call.state.limits.request_timeout.0;
    tokio::select! {
        response = response_rx => response.unwrap_or_else(|_| no_response()),
        () = clock.passed(deadline) => {
            clock.time_out();
            let mut response = responses::error(
                StatusCode::GATEWAY_TIMEOUT,
                "the app did not answer within the request timeout (server option --timeout)",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            record(&call, &method, &uri, version, &response);
            response
        }
    }
}

/// An async app's request: a WebSocket handshake checked first (a bad one
/// is refused without the app), then the app, then the socket it accepted.
async fn serve_async(call: AppCall, mut request: Request<Incoming>) -> Response<Body> {
    let offer = match websocket::handshake(&request) {
        websocket::Handshake::None => None,
        websocket::Handshake::Valid(offer) => Some(offer),
        websocket::Handshake::Invalid(refusal) => return async_call::refuse_early(&call, &request, refusal),
    };
    let on_upgrade = offer.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let protocols = offer.as_ref().map(|offer| offer.protocols.clone());
    match async_call::serve(call, request, protocols).await {
        async_call::Answer::Response(response) => response,
        async_call::Answer::WebSocket(running) => match (offer, on_upgrade) {
            (Some(offer), Some(on_upgrade)) => websocket::open(*running, offer, on_upgrade),
            _ => unreachable!("a WebSocket is accepted only where one was offered"),
        },
    }
}

impl AppCall {
    /// Another handle on the same request's facts (the pool job takes one).
    fn clone_ref(&self) -> AppCall {
        AppCall {
            state: self.state.clone(),
            app: self.app.clone(),
            policy: self.policy.clone(),
            route: self.route,
            mount: self.mount.clone(),
            path_info: self.path_info.clone(),
            conn: self.conn.clone(),
            verdicts: self.verdicts.clone(),
            started: self.started,
            facts: self.facts.clone(),
        }
    }
}

/// Calls the app on this runtime thread. A whole body is sent from here; a
/// streamed one is pulled on a blocking thread (without an app-thread
/// permit: inline calls are bounded by the runtime threads already).
fn call_inline(call: &AppCall, parts: &Parts, exchange: HttpExchange) -> Answer {
    let _inflight = on_board(call, parts, 0);
    let mut called = {
        let _inline = InlineCall::enter(
            parts.method.as_str(),
            parts.uri.path(),
            Some((&call.policy, call.route)),
        );
        call_app(call, parts, exchange, Placement::Inline)
    };
    if called.streams() {
        let answer = called.sink_mut().hand_off();
        let clock = called.sink_mut().clock();
        let sent = match &answer {
            Answer::Ready(response) => response.status().as_u16(),
            Answer::Later(_) => 0,
        };
        on_pool::<_, ()>(call.clone_ref(), parts.clone(), clock, sent, move |_, _| (called, None));
        return answer;
    }
    Answer::Ready(finish(call, parts, called).take_response().unwrap_or_else(no_response))
}

fn no_response() -> Response<Body> {
    responses::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the app's thread ended without a response",
    )
}

/// Puts the request on the in-flight board while the app has it, with the
/// status its client was already `sent` (0: none).
fn on_board(call: &AppCall, parts: &Parts, sent: u16) -> inflight::Entered {
    inflight::enter(&inflight::Facts {
        method: parts.method.as_str(),
        mount: &call.mount,
        path: &call.path_info,
        target: &target_of(parts.version, &parts.uri),
        remote: &call.conn.remote_addr,
        protocol: protocol(parts.version),
        id: call.facts.id.as_str(),
        status: sent,
    })
}

/// Runs `job` (which calls the app, or has) on a blocking thread, then
/// sends the body; a watchdog task notices if the request outlives the
/// deadline inside the app, by `clock`. The client was already `sent` a
/// head with that status (0: none).
fn on_pool<F, P>(call: AppCall, parts: Parts, clock: Arc<AppClock>, sent: u16, job: F)
where
    F: FnOnce(&AppCall, &Parts) -> (Called<HttpSink, BodyReader>, Option<P>) + Send + 'static,
    P: Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (deadline, retire) = (call.state.limits.request_timeout.0, call.state.retire.clone());
    let (method, path) = (parts.method.clone(), parts.uri.path().to_owned());
    let board_clock = clock.clone();
    tokio::task::spawn_blocking(move || {
        let inflight = on_board(&call, &parts, sent);
        if let Some(marked) = inflight.marked() {
            board_clock.on_board(marked);
        }
        let (called, permit) = job(&call, &parts);
        drop(finish(&call, &parts, called));
        drop(permit);
        let _ = done_tx.send(());
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = done_rx => {}
            () = clock.passed(deadline) => {
                crate::server::app_gateway::stuck_calls::count_stuck();
                log::error!(
                    "{method} {path} is still inside the app after the request timeout ({}, option --timeout) in pid {}: answered 504",
                    crate::config::Seconds(deadline),
                    std::process::id()
                );
                retire("a request is stuck inside the app");
            }
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
    call.state.metrics.app_call(match placement {
        Placement::Inline => CallSite::Inline,
        Placement::Pool => CallSite::Pool,
    });
    let mut called = with_environ(call, parts, |vars, headers, extra| {
        exchange.call(&call.app, vars, headers, extra)
    });
    let whole = !called.streams() && !called.sink_mut().streamed();
    let report = CallReport {
        placement,
        took: started.elapsed(),
        whole,
    };
    call.policy.record(call.route, &call.path_info, report);
    called
}

/// Sends the body and writes the access log line (unless the client was
/// answered 504 already); gives the sink back.
fn finish(call: &AppCall, parts: &Parts, called: Called<HttpSink, BodyReader>) -> HttpSink {
    let method = parts.method.as_str();
    let script_name = environ::script_name(&call.mount);
    let (summary, sink) = called.finish(|| exchange::describe(method, script_name, &call.path_info, &call.app));
    if sink.clock().timed_out() {
        log::warn!(
            "{method} {}: the app answered {} after the client got a 504",
            parts.uri.path(),
            summary.status.unwrap_or(0)
        );
    } else {
        log_access(call, parts, &summary);
    }
    sink
}

/// A refusal before the app was called: logged, and the connection closed
/// (its body may be unread or broken).
fn refused<B>(call: &AppCall, request: &Request<B>, refusal: Refusal) -> Response<Body> {
    let response = responses::refusal(&refusal);
    record(call, request.method(), request.uri(), request.version(), &response);
    response
}

/// 503: no app thread came free in time.
fn all_threads_busy(call: &AppCall, parts: &Parts, busy: Busy) -> Response<Body> {
    let threads = &call.state.app_threads;
    let why = match busy {
        Busy::QueueFull => format!(
            "all {} app threads are busy and {} requests wait",
            threads.threads(),
            threads.queued()
        ),
        Busy::Waited => format!(
            "no app thread came free within {}",
            crate::config::Seconds(threads.queue_timeout())
        ),
    };
    log::warn!(
        "{} {}: answered 503: {why} (options --threads, --max-queued, --queue-timeout)",
        parts.method,
        parts.uri.path()
    );
    let mut response = responses::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the server is busy: {why} (server options --threads, --max-queued, --queue-timeout)"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    record(call, &parts.method, &parts.uri, parts.version, &response);
    response
}

/// Writes the access log line of a response the server made itself.
fn record(call: &AppCall, method: &Method, uri: &hyper::Uri, version: hyper::Version, response: &Response<Body>) {
    call.state.finished(
        &call.mount,
        &Entry {
            remote: &call.conn.remote_addr,
            method: method.as_str(),
            target: &target_of(version, uri),
            protocol: protocol(version),
            status: response.status().as_u16(),
            bytes: http_body::Body::size_hint(response.body()).exact().unwrap_or(0),
            received: None,
            duration: call.started.elapsed(),
            facts: &call.facts,
        },
    );
}

fn log_access(call: &AppCall, parts: &Parts, summary: &Summary) {
    call.state.finished(
        &call.mount,
        &Entry {
            remote: &call.conn.remote_addr,
            method: parts.method.as_str(),
            target: &target_of(parts.version, &parts.uri),
            protocol: protocol(parts.version),
            status: summary.status.unwrap_or(0),
            bytes: summary.bytes,
            received: None,
            duration: call.started.elapsed(),
            facts: &call.facts,
        },
    );
}
