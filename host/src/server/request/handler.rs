//! One request, from its first check to its response: the wire verdict
//! for it and the request rules ([`crate::server::http::strict`]), the target's length,
//! the decoded path, then the route: a static file, a redirect, a method
//! the static site does not allow, the 404 page, a quarantined route, or
//! an app. The request's context is built once, here, and borrowed (or,
//! for an app, handed over) from then on. Every response the server makes
//! itself is logged here; an app's is logged by the app gateway.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SERVER};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::budget::RequestBudget;
use super::quarantine_list::QuarantineList;
use super::router::Route;
use super::router::Router;
use crate::server::app_gateway::mount::PathInfo;
use crate::server::app_gateway::{self, stuck_calls, AppTarget};
use crate::server::http::body::Body;
use crate::server::http::connection::Connection;
use crate::server::http::context::RequestContext;
use crate::server::http::strict::request::SERVER_METHODS;
use crate::server::http::{request_id, responses, strict};
use crate::server::observe::metrics::{self, MountIndex};
use crate::server::observe::Outcome;
use crate::server::state::ServerState;
use crate::server::static_site;

const SERVER_HEADER: &str = concat!("host/", env!("CARGO_PKG_VERSION"));

/// What every request is served with: the shared state, the routing
/// table, the quarantined mounts, and the request budget.
pub struct Handler {
    /// What every request shares.
    pub state: Arc<ServerState>,
    /// The routing table.
    pub router: Router,
    /// Mounts answered 503 without calling the app (the master's quarantines).
    pub quarantined: Arc<QuarantineList>,
    /// Requests this process serves before it retires (`--max-requests`
    /// and its jitter), and how many it has begun.
    pub budget: RequestBudget,
}

impl Handler {
    /// The counters, and the gauges of this moment.
    pub fn snapshot(&self) -> metrics::Snapshot {
        let (static_cache_hits, static_cache_misses) = self.router.site().map_or((0, 0), |site| site.cache_counts());
        metrics::Snapshot {
            static_cache_hits,
            static_cache_misses,
            connections: self.state.drain.open() as u64,
            app_threads_busy: self.state.app_threads.busy() as u64,
            app_threads_queued: self.state.app_threads.queued() as u64,
            rss_bytes: metrics::resident_bytes().unwrap_or(0),
            stuck_calls: stuck_calls::stuck_reports(),
            ..self.state.metrics.snapshot()
        }
    }
}

/// Serves one request.
pub async fn handle(
    handler: Arc<Handler>,
    conn: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let state = &handler.state;
    let _in_flight = state.metrics.begin();
    let (number, _answered) = conn.begin();
    if let Some(limit) = handler.budget.spend() {
        (state.retire)(&format!("served its {limit} requests (option --max-requests)"));
    }
    let (head, body) = request.into_parts();
    let id = request_id::of(&head.headers, conn.info.trusted_proxy);
    let ctx = RequestContext {
        head,
        conn,
        id,
        started,
    };
    let http2 = ctx.head.version == Version::HTTP_2;
    let refusal = ctx
        .conn
        .verdicts
        .for_request(number)
        .or_else(|| strict::request::check(&ctx.head).err());
    let mut response = match refusal {
        Some(refusal) => answered(state, &ctx, responses::refusal(&refusal)),
        None => route(&handler, ctx, body).await,
    };
    add_server_header(&mut response);
    // A draining HTTP/1 connection asks its client to go (HTTP/2 has
    // GOAWAY for that, and no Connection header).
    if !http2 && state.drain.is_draining() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// The response to a request that passed the request rules: the server's
/// own (logged here), or an app's (the app gateway logs it).
async fn route(handler: &Handler, ctx: RequestContext, body: Incoming) -> Response<Body> {
    let state = &handler.state;
    let target_len = ctx.head.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len as u64 > state.limits.max_uri_length.0 {
        log::warn!("refused a {target_len}-byte request target over max_uri_length; raise it with --max-uri-length");
        let detail = format!(
            "the request target exceeds {} bytes (server option --max-uri-length)",
            state.limits.max_uri_length.0
        );
        return answered(state, &ctx, responses::error(StatusCode::URI_TOO_LONG, &detail));
    }
    // hyper counts HTTP/1 headers as it parses; HTTP/2's arrive decoded.
    if ctx.head.headers.len() > state.limits.max_headers {
        log::warn!("refused a request with more than max_headers headers; raise it with --max-headers");
        let detail = format!(
            "the request has more than {} headers (server option --max-headers)",
            state.limits.max_headers
        );
        let response = responses::error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &detail);
        return answered(state, &ctx, response);
    }
    if ctx.head.uri.path() == "*" {
        return answered(state, &ctx, responses::allow(StatusCode::NO_CONTENT, SERVER_METHODS));
    }
    let path = match strict::request::decoded_path(ctx.head.uri.path()) {
        Ok(path) => path,
        Err(refusal) => return answered(state, &ctx, responses::refusal(&refusal)),
    };
    let method = ctx.method();
    let response = match handler.router.route(method, &path, ctx.started) {
        Route::File(file) => static_site::serve_file(method, &ctx.head.headers, &file, ctx.sendfile()),
        Route::AddSlash => {
            // One leading slash: "//name/" would send the browser to another host.
            let path = ctx.head.uri.path().trim_start_matches('/');
            let query = ctx.head.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            responses::moved_permanently(&format!("/{path}/{query}"))
        }
        Route::StaticOnly if method == Method::OPTIONS => responses::allow(StatusCode::NO_CONTENT, STATIC_METHODS),
        Route::StaticOnly => responses::allow(StatusCode::METHOD_NOT_ALLOWED, STATIC_METHODS),
        Route::NotFound if !STANDARD_METHODS.contains(&method.as_str()) => responses::error(
            StatusCode::NOT_IMPLEMENTED,
            &format!(
                "the method {} is not implemented here (methods are case-sensitive)",
                method.as_str()
            ),
        ),
        Route::NotFound => match handler.router.site() {
            Some(site) => site.not_found(method, ctx.sendfile(), ctx.started),
            None => responses::error(StatusCode::NOT_FOUND, "no app or file here"),
        },
        Route::App { mount, path_info } => match handler.quarantined.remaining(&mount.prefix, path_info, ctx.started) {
            Some(left) => responses::quarantined(left),
            None => {
                let path_info = PathInfo::of(path_info, matches!(path, Cow::Borrowed(_)));
                let target = AppTarget {
                    state,
                    mount,
                    path_info,
                };
                return app_gateway::serve(target, ctx, body).await;
            }
        },
    };
    answered(state, &ctx, response)
}

/// A 400 for a path that decodes to something no route may see.
/// RFC 9110's methods and PATCH: the others get 501 where no app takes them.
const STANDARD_METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"];

/// What the static site allows on its files.
const STATIC_METHODS: &str = "GET, HEAD, OPTIONS";

/// Logs and counts a response the server made itself, and gives it back.
fn answered(state: &ServerState, ctx: &RequestContext, response: Response<Body>) -> Response<Body> {
    let outcome = Outcome {
        status: response.status().as_u16(),
        bytes: http_body::Body::size_hint(response.body()).exact().unwrap_or(0),
        received: None,
        duration: ctx.started.elapsed(),
    };
    state.finished(ctx, MountIndex::NONE, &outcome);
    response
}

fn add_server_header(response: &mut Response<Body>) {
    response
        .headers_mut()
        .entry(SERVER)
        .or_insert(HeaderValue::from_static(SERVER_HEADER));
}
