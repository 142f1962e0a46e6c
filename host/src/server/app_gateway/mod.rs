//! Serving a request with an app over HTTP. The body is read first (up to
//! `--body-buffer-size`, [`input`]); the app is then called inline on the
//! runtime thread or on one of the worker's app threads, as
//! [`call_policy`] decides; its answer goes back through an
//! [`HttpSink`](sink::HttpSink). An inline call borrows the request's
//! context and returns its response directly; only a call that leaves the
//! connection's task (an app thread, an async app's body, a WebSocket)
//! owns its request ([`AppCall`]). A request gets 504 once it has been
//! inside the app for `--timeout` by its [`AppClock`](clock::AppClock),
//! which does not count time spent waiting for the client.
//!
//! - [`mount`]: an app at a prefix, and `SCRIPT_NAME`; [`environ`]: the
//!   environ, borrowed from the request.
//! - [`input`]: `wsgi.input`, buffered then streamed, with its refusals.
//! - [`sink`]: the response, held (inline) or sent through channels.
//! - [`clock`]: time in the app; [`stuck_calls`]: inline calls past it.
//! - [`async_call`], [`async_exchange`], [`owned_environ`]: async apps;
//!   [`websocket`]: their sockets.

pub mod async_call;
pub mod async_exchange;
pub mod call_policy;
pub mod clock;
pub mod environ;
pub mod input;
pub mod mount;
pub mod owned_environ;
pub mod sink;
pub mod stuck_calls;
pub mod websocket;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use plugin_api::host::ResponseBody;
use tokio::sync::oneshot;

use self::call_policy::{CallReport, Placement, RouteId};
use self::clock::AppClock;
use self::environ::with_environ;
use self::input::{BodyLimits, BodyReader, Input};
use self::mount::{script_name, MountedApp, PathInfo};
use self::sink::HttpSink;
use self::stuck_calls::InlineCall;
use crate::inflight;
use crate::plugin::exchange::{self, Exchange, Refusal, Summary};
use crate::server::http::body::Body;
use crate::server::http::context::RequestContext;
use crate::server::http::responses;
use crate::server::observe::metrics::CallSite;
use crate::server::observe::Outcome;
use crate::server::state::app_threads::Busy;
use crate::server::state::ServerState;

/// Where a request goes: the app's mount and its `PATH_INFO`.
pub struct AppTarget<'a> {
    /// The server.
    pub state: &'a Arc<ServerState>,
    /// The mount.
    pub mount: &'a Arc<MountedApp>,
    /// `PATH_INFO`, percent-decoded.
    pub path_info: PathInfo,
}

/// One app request, borrowed: what the environ, the call and the log read.
#[derive(Clone, Copy)]
pub struct AppRequest<'a> {
    /// The server (limits, log, app threads).
    pub state: &'a ServerState,
    /// The app's mount.
    pub mount: &'a MountedApp,
    /// This request's route record in the mount's policy.
    pub route: RouteId,
    /// `PATH_INFO`, percent-decoded.
    pub path_info: &'a str,
    /// The request.
    pub ctx: &'a RequestContext,
}

/// One app request, owned: for a call that leaves the connection's task.
pub struct AppCall {
    /// The server.
    pub state: Arc<ServerState>,
    /// The app's mount.
    pub mount: Arc<MountedApp>,
    /// This request's route record in the mount's policy.
    pub route: RouteId,
    /// `PATH_INFO`, percent-decoded.
    pub path_info: PathInfo,
    /// The request.
    pub ctx: RequestContext,
}

impl AppCall {
    fn new(target: AppTarget<'_>, route: RouteId, ctx: RequestContext) -> AppCall {
        AppCall {
            state: target.state.clone(),
            mount: target.mount.clone(),
            route,
            path_info: target.path_info,
            ctx,
        }
    }

    /// The request, borrowed.
    pub fn request(&self) -> AppRequest<'_> {
        AppRequest {
            state: &self.state,
            mount: &self.mount,
            route: self.route,
            path_info: self.path_info.as_str(self.ctx.head.uri.path()),
            ctx: &self.ctx,
        }
    }
}

impl AppRequest<'_> {
    /// Counts and logs the request, which ended as `outcome`.
    pub fn finished(&self, outcome: &Outcome) {
        self.state.finished(self.ctx, self.mount.counters, outcome);
    }

    /// Logs a response the server made itself in the app's place, and
    /// gives it back.
    pub fn answered(&self, response: Response<Body>) -> Response<Body> {
        self.finished(&Outcome {
            status: response.status().as_u16(),
            bytes: http_body::Body::size_hint(response.body()).exact().unwrap_or(0),
            received: None,
            duration: self.ctx.started.elapsed(),
        });
        response
    }

    /// What a failure is logged with: the request and the app.
    pub fn describe(&self) -> String {
        let method = self.ctx.method().as_str();
        exchange::describe(method, script_name(&self.mount.prefix), self.path_info, &self.mount.app)
    }

    /// Puts the request on the in-flight board while the app has it, with
    /// the status its client was already `sent` (0: none).
    fn on_board(&self, sent: u16) -> inflight::Entered {
        self.with_board_facts(sent, inflight::enter)
    }

    /// Runs `f` with what the in-flight board shows of the request, its
    /// client already `sent` a head with that status (0: none).
    pub fn with_board_facts<R>(&self, sent: u16, f: impl FnOnce(&inflight::Facts<'_>) -> R) -> R {
        f(&inflight::Facts {
            method: self.ctx.method().as_str(),
            mount: &self.mount.prefix,
            path: self.path_info,
            target: &self.ctx.target(),
            remote: self.ctx.client(),
            protocol: self.ctx.protocol(),
            id: self.ctx.id.as_str(),
            status: sent,
        })
    }
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

/// Runs the app for the request of `ctx` and returns the response as soon
/// as its head is known; a streamed body keeps coming from a blocking
/// thread.
pub async fn serve(target: AppTarget<'_>, ctx: RequestContext, body: Incoming) -> Response<Body> {
    let route = target
        .mount
        .policy
        .route_of(target.path_info.as_str(ctx.head.uri.path()));
    if target.mount.app.app.is_async() {
        return serve_async(AppCall::new(target, route, ctx), body).await;
    }
    let request = AppRequest {
        state: target.state,
        mount: target.mount,
        route,
        path_info: target.path_info.as_str(ctx.head.uri.path()),
        ctx: &ctx,
    };
    // HTTP/2's extended CONNECT opens a WebSocket: only async apps take one.
    if ctx.head.extensions.get::<hyper::ext::Protocol>().is_some() {
        let refusal = Refusal::new(
            StatusCode::NOT_IMPLEMENTED,
            "this app takes no WebSockets (they are served by async apps)",
        );
        return request.answered(responses::refusal(&refusal));
    }
    let limits = BodyLimits::from(&target.state.limits);
    let declared = ctx
        .head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max) {
        return request.answered(responses::refusal(&input::too_large(limits.max)));
    }
    // A request with no body waits for nothing: its call starts as it came.
    let no_body = http_body::Body::is_end_stream(&body);
    let input = match input::buffer(body, &limits, &ctx.conn.verdicts).await {
        Ok(input) => input,
        Err(refusal) => return request.answered(responses::refusal(&refusal)),
    };
    // An inline call must never wait for the connection: only requests
    // whose whole body is in hand qualify.
    let placement = match input.is_complete() {
        true => target.mount.policy.place(route),
        false => Placement::Pool,
    };
    let on_pool = match placement {
        Placement::Inline => match call_inline(&request, input, if no_body { ctx.started } else { Instant::now() }) {
            Inline::Done(response) => return response,
            Inline::Stream(exchange, result) => hand_off(AppCall::new(target, route, ctx), exchange, result),
        },
        Placement::Pool => {
            let call = Arc::new(AppCall::new(target, route, ctx));
            match call_on_pool(call.clone(), input, limits).await {
                Ok(on_pool) => on_pool,
                Err(busy) => return all_threads_busy(&call.request(), busy),
            }
        }
    };
    match on_pool.answer {
        Answer::Ready(response) => response,
        Answer::Later(response) => awaited(&on_pool.call, &on_pool.clock, response).await,
    }
}

/// A call handed to an app thread: its answer (or where it will come
/// from), its request, and its clock.
struct OnPool {
    answer: Answer,
    call: Arc<AppCall>,
    clock: Arc<AppClock>,
}

/// The response from a blocking thread, or a 504 once the app has had it
/// for `--timeout` (logged here; the app's own answer is then late).
async fn awaited(call: &AppCall, clock: &AppClock, response: oneshot::Receiver<Response<Body>>) -> Response<Body> {
    let deadline = call.state.limits.request_timeout.0;
    tokio::select! {
        response = response => response.unwrap_or_else(|_| no_response()),
        () = clock.passed(deadline) => {
            clock.time_out();
            let mut response = responses::error(
                StatusCode::GATEWAY_TIMEOUT,
                "the app did not answer within the request timeout (server option --timeout)",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            call.request().answered(response)
        }
    }
}

/// An async app's request: a WebSocket handshake checked first (a bad one
/// is refused without the app), then the app, then the socket it accepted.
async fn serve_async(mut call: AppCall, body: Incoming) -> Response<Body> {
    let offer = match websocket::handshake(&call.ctx.head) {
        websocket::Handshake::None => None,
        websocket::Handshake::Valid(offer) => Some(offer),
        websocket::Handshake::Invalid(refusal) => return call.request().answered(refusal),
    };
    let on_upgrade = offer
        .as_ref()
        .and_then(|_| call.ctx.head.extensions.remove::<hyper::upgrade::OnUpgrade>());
    let protocols = offer.as_ref().map(|offer| offer.protocols.clone());
    match async_call::serve(call, body, protocols).await {
        async_call::Answer::Response(response) => response,
        async_call::Answer::WebSocket(running) => match (offer, on_upgrade) {
            (Some(offer), Some(on_upgrade)) => websocket::open(*running, offer, on_upgrade),
            _ => unreachable!("a WebSocket is accepted only where one was offered"),
        },
    }
}

/// How an inline call ended.
enum Inline {
    /// With its whole response.
    Done(Response<Body>),
    /// With a stream to pull, which may take any time: on a blocking
    /// thread.
    Stream(Box<HttpExchange>, Result<ResponseBody, String>),
}

/// Calls the app on this runtime thread, with the request's whole body in
/// hand.
/// The call begins `started` (the request's arrival, when it came with no
/// body to wait for: no clock reading of its own).
fn call_inline(request: &AppRequest<'_>, input: Input, started: Instant) -> Inline {
    let _inflight = request.on_board(0);
    let limits = BodyLimits::from(&request.state.limits);
    let head_only = request.ctx.head.method == Method::HEAD;
    let mut exchange = Exchange::new(
        HttpSink::held(head_only, request.ctx.sendfile()),
        BodyReader::new(input, None, limits),
    );
    let (result, returned) = {
        let ctx = request.ctx;
        let route = Some((&request.mount.policy, request.route));
        let _inline = InlineCall::enter_at(started, ctx.method().as_str(), ctx.head.uri.path(), route);
        call_app(request, &exchange, Placement::Inline, started)
    };
    if exchange::is_stream(&result) {
        return Inline::Stream(Box::new(exchange), result);
    }
    let summary = exchange.finish(result, || request.describe());
    request.finished(&outcome(request.ctx, &summary, returned));
    Inline::Done(exchange.sink_mut().take_response().unwrap_or_else(no_response))
}

/// An inline call's stream, pulled on a blocking thread (without an
/// app-thread permit: inline calls are bounded by the runtime threads
/// already): what the call held goes out now.
fn hand_off(call: AppCall, mut exchange: Box<HttpExchange>, result: Result<ResponseBody, String>) -> OnPool {
    let call = Arc::new(call);
    let clock = Arc::new(AppClock::start());
    let answer = exchange
        .sink_mut()
        .hand_off(clock.clone(), call.state.limits.body_timeout.0);
    let sent = match &answer {
        Answer::Ready(response) => response.status().as_u16(),
        Answer::Later(_) => 0,
    };
    on_pool::<(), _>(call.clone(), clock.clone(), sent, move |_| (exchange, result, None));
    OnPool { answer, call, clock }
}

/// Calls the app on one of the worker's app threads, once one is free.
async fn call_on_pool(call: Arc<AppCall>, input: Input, limits: BodyLimits) -> Result<OnPool, Busy> {
    let permit = call.state.app_threads.acquire().await?;
    let clock = Arc::new(AppClock::start());
    let (response_tx, response_rx) = oneshot::channel();
    let head_only = call.ctx.head.method == Method::HEAD;
    let sink = HttpSink::sending(response_tx, head_only, call.ctx.sendfile(), clock.clone(), limits.idle);
    let exchange = Box::new(Exchange::new(sink, BodyReader::new(input, Some(clock.clone()), limits)));
    on_pool(call.clone(), clock.clone(), 0, move |call| {
        let (result, _) = call_app(&call.request(), &exchange, Placement::Pool, Instant::now());
        (exchange, result, Some(permit))
    });
    Ok(OnPool {
        answer: Answer::Later(response_rx),
        call,
        clock,
    })
}

fn no_response() -> Response<Body> {
    responses::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the app's thread ended without a response",
    )
}

/// Runs `job` (which calls the app, or has) on a blocking thread, then
/// sends the body; a watchdog task notices if the request outlives the
/// deadline inside the app, by `clock`. The client was already `sent` a
/// head with that status (0: none).
fn on_pool<P, J>(call: Arc<AppCall>, clock: Arc<AppClock>, sent: u16, job: J)
where
    P: Send + 'static,
    J: FnOnce(&AppCall) -> (Box<HttpExchange>, Result<ResponseBody, String>, Option<P>) + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (deadline, retire) = (call.state.limits.request_timeout.0, call.state.retire.clone());
    let watched = call.clone();
    let board_clock = clock.clone();
    tokio::task::spawn_blocking(move || {
        let request = call.request();
        let inflight = request.on_board(sent);
        if let Some(marked) = inflight.marked() {
            board_clock.on_board(marked);
        }
        let (mut exchange, result, permit) = job(&call);
        let summary = exchange.finish(result, || request.describe());
        if board_clock.timed_out() {
            log::warn!(
                "{}: the app answered {} after the client got a 504",
                request.describe(),
                summary.status.unwrap_or(0)
            );
        } else {
            request.finished(&outcome(request.ctx, &summary, Instant::now()));
        }
        drop(permit);
        let _ = done_tx.send(());
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = done_rx => {}
            () = clock.passed(deadline) => {
                stuck_calls::count_stuck();
                log::error!(
                    "{} is still inside the app after the request timeout ({}, option --timeout) in pid {}: answered 504",
                    watched.request().describe(),
                    crate::config::Seconds(deadline),
                    std::process::id()
                );
                retire("a request is stuck inside the app");
            }
        }
    });
}

/// Calls the app and records how the call went with the mount's policy.
/// The call began `started`; the clock is read once more when it returns
/// (that reading is given back, for the log).
fn call_app(
    request: &AppRequest<'_>,
    exchange: &HttpExchange,
    placement: Placement,
    started: Instant,
) -> (Result<ResponseBody, String>, Instant) {
    request.state.metrics.app_call(match placement {
        Placement::Inline => CallSite::Inline,
        Placement::Pool => CallSite::Pool,
    });
    let app = &request.mount.app;
    let result = with_environ(request, |vars, headers, extra| exchange.call(app, vars, headers, extra));
    let returned = Instant::now();
    let whole = !exchange::is_stream(&result) && !exchange.sink().sent_in_parts();
    let report = CallReport {
        placement,
        took: returned.saturating_duration_since(started),
        whole,
    };
    request.mount.policy.record(request.route, request.path_info, report);
    (result, returned)
}

/// How an exchange ended (`at`), for the log and the counters.
fn outcome(ctx: &RequestContext, summary: &Summary, at: Instant) -> Outcome {
    Outcome {
        status: summary.status.unwrap_or(0),
        bytes: summary.bytes,
        received: None,
        duration: at.saturating_duration_since(ctx.started),
    }
}

/// 503: no app thread came free in time.
fn all_threads_busy(request: &AppRequest<'_>, busy: Busy) -> Response<Body> {
    let threads = &request.state.app_threads;
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
        request.ctx.method(),
        request.ctx.head.uri.path()
    );
    let mut response = responses::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the server is busy: {why} (server options --threads, --max-queued, --queue-timeout)"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    request.answered(response)
}
