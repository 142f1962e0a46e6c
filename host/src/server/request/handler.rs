//! One request, from its first check to its response: the wire verdict
//! for it and the request rules ([`crate::server::http::strict`]), the target's length,
//! the decoded path, then the route: a static file, a redirect, a method
//! the static site does not allow, the 404 page, a quarantined route, or
//! an app. Every response the server makes itself is logged here; an app's
//! is logged by the app gateway.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SERVER};
use hyper::{Method, Request, Response, StatusCode, Version};

use super::budget::RequestBudget;
use super::quarantined::Quarantined;
use super::router::Route;
use super::router::Router;
use crate::server::app_gateway::stuck_calls;
use crate::server::app_gateway::{self, environ::protocol};
use crate::server::http::body::Body;
use crate::server::http::connection::Connection;
use crate::server::http::request_id;
use crate::server::http::responses;
use crate::server::http::strict;
use crate::server::http::strict::request::SERVER_METHODS;
use crate::server::observe::access_log::{target_of, Entry, RequestFacts};
use crate::server::observe::metrics;
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
    pub quarantined: Arc<Quarantined>,
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
    let state = &handler.state;
    let started = Instant::now();
    let _in_flight = state.metrics.begin();
    let id = request_id::of(request.headers(), conn.info.trusted_proxy);
    let facts = state.access_log.facts(request.headers(), id);
    let (number, _answered) = conn.begin();
    if let Some(limit) = handler.budget.spend() {
        (state.retire)(&format!("served its {limit} requests (option --max-requests)"));
    }
    let version = request.version();
    let refusal = conn
        .verdicts
        .for_request(number)
        .or_else(|| strict::request::check(&request).err());
    let mut response = match refusal {
        Some(refusal) => {
            let response = responses::refusal(&refusal);
            record(state, &conn, &request, &response, started, &facts);
            response
        }
        None => match route(&handler, &conn, request, started, &facts).await {
            (response, None) => response,
            (response, Some(request)) => {
                record(state, &conn, &request, &response, started, &facts);
                response
            }
        },
    };
    add_server_header(&mut response);
    // A draining HTTP/1 connection asks its client to go (HTTP/2 has
    // GOAWAY for that, and no Connection header).
    if version != Version::HTTP_2 && state.drain.is_draining() {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// Where a request ended up: the response, and the request when the
/// server answered it itself (to be logged; an app's answer is logged by
/// the app gateway).
type Routed = (Response<Body>, Option<Request<()>>);

async fn route(
    handler: &Handler,
    conn: &Connection,
    request: Request<Incoming>,
    started: Instant,
    facts: &RequestFacts,
) -> Routed {
    let state = &handler.state;
    let server = |response, request: Request<Incoming>| (response, Some(request.map(|_| ())));
    let method = request.method().clone();
    let target_len = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len as u64 > state.limits.max_uri_length.0 {
        log::warn!("refused a {target_len}-byte request target over max_uri_length; raise it with --max-uri-length");
        let detail = format!(
            "the request target exceeds {} bytes (server option --max-uri-length)",
            state.limits.max_uri_length.0
        );
        return server(responses::error(StatusCode::URI_TOO_LONG, &detail), request);
    }
    // hyper counts HTTP/1 headers as it parses; HTTP/2's arrive decoded.
    if request.headers().len() > state.limits.max_headers {
        log::warn!("refused a request with more than max_headers headers; raise it with --max-headers");
        let detail = format!(
            "the request has more than {} headers (server option --max-headers)",
            state.limits.max_headers
        );
        return server(
            responses::error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &detail),
            request,
        );
    }
    if request.uri().path() == "*" {
        return server(responses::allow(StatusCode::NO_CONTENT, SERVER_METHODS), request);
    }
    let path = match strict::request::decoded_path(request.uri().path()) {
        Ok(path) => path,
        Err(refusal) => return server(responses::refusal(&refusal), request),
    };
    let sendfile = conn.info.sendfile(request.version());
    let response = match handler.router.route(&method, &path) {
        Route::File(file) => static_site::serve_file(&method, request.headers(), &file, sendfile),
        Route::AddSlash => {
            // One leading slash: "//name/" would send the browser to another host.
            let path = request.uri().path().trim_start_matches('/');
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
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
            Some(site) => site.not_found(&method, sendfile),
            None => responses::error(StatusCode::NOT_FOUND, "no app or file here"),
        },
        Route::App { mount, path_info } => match handler.quarantined.remaining(&mount.prefix, &path_info, started) {
            Some(left) => responses::quarantined(left),
            None => {
                let call = app_gateway::AppCall {
                    state: state.clone(),
                    app: mount.app.clone(),
                    policy: mount.policy.clone(),
                    route: mount.policy.route_of(&path_info),
                    mount: mount.prefix.clone(),
                    path_info,
                    conn: conn.info.clone(),
                    verdicts: conn.verdicts.clone(),
                    started,
                    facts: facts.clone(),
                };
                return (app_gateway::serve(call, request).await, None);
            }
        },
    };
    server(response, request)
}

/// A 400 for a path that decodes to something no route may see.
/// RFC 9110's methods and PATCH: the others get 501 where no app takes them.
const STANDARD_METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"];

/// What the static site allows on its files.
const STATIC_METHODS: &str = "GET, HEAD, OPTIONS";

fn record<B>(
    state: &ServerState,
    conn: &Connection,
    request: &Request<B>,
    response: &Response<Body>,
    started: Instant,
    facts: &RequestFacts,
) {
    state.finished(
        metrics::NO_MOUNT,
        &Entry {
            remote: &conn.info.remote_addr,
            method: request.method().as_str(),
            target: &target_of(request.version(), request.uri()),
            protocol: protocol(request.version()),
            status: response.status().as_u16(),
            bytes: http_body::Body::size_hint(response.body()).exact().unwrap_or(0),
            received: None,
            duration: started.elapsed(),
            facts,
        },
    );
}

fn add_server_header(response: &mut Response<Body>) {
    response
        .headers_mut()
        .entry(SERVER)
        .or_insert(HeaderValue::from_static(SERVER_HEADER));
}
