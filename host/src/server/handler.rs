//! One request, from its first check to its response: the wire verdict
//! for it and the request rules ([`super::strict`]), the target's length,
//! the decoded path, then the route: a static file, a redirect, a method
//! the static site does not allow, the 404 page, a quarantined route, or
//! an app. Every response the server makes itself is logged here; an app's
//! is logged by the app gateway.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SERVER};
use hyper::{Method, Request, Response, StatusCode, Version};
use tokio::sync::Notify;

use super::access_log::{target_of, Entry, RequestFacts};
use super::app_gateway::{self, environ::protocol};
use super::body::Body;
use super::connection::ConnInfo;
use super::router::Route;
use super::strict::request::SERVER_METHODS;
use super::strict::wire::Verdicts;
use super::{metrics, request_id, responses, static_site, strict, ServerState};

const SERVER_HEADER: &str = concat!("host/", env!("CARGO_PKG_VERSION"));

/// What the server keeps per connection.
pub struct Connection {
    /// The facts an app sees.
    pub info: Arc<ConnInfo>,
    /// The wire scanner's refusals.
    pub verdicts: Arc<Verdicts>,
    /// Requests begun so far.
    requests: AtomicU64,
    /// Requests whose response head is out, or that the client gave up.
    answered: AtomicU64,
    /// Wakes whoever waits for the first request.
    first_request: Notify,
}

/// Counts its request as answered when dropped.
struct Answered<'a>(&'a Connection);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
    }
}

impl Connection {
    /// A new connection's state.
    pub fn new(info: ConnInfo, verdicts: Arc<Verdicts>) -> Connection {
        Connection {
            info: Arc::new(info),
            verdicts,
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            first_request: Notify::new(),
        }
    }

    /// Whether a request has arrived on this connection yet.
    pub fn has_requests(&self) -> bool {
        self.requests() > 0
    }

    /// How many requests have begun on this connection.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How many requests are waiting for their response head.
    pub fn in_flight(&self) -> u64 {
        self.requests().saturating_sub(self.answered.load(Ordering::Relaxed))
    }

    /// Waits until the first request has begun.
    pub async fn first_request(&self) {
        let notified = self.first_request.notified();
        if self.has_requests() {
            return;
        }
        notified.await;
    }
}

/// Serves one request.
pub async fn handle(
    state: Arc<ServerState>,
    conn: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let _in_flight = state.metrics.begin();
    let id = request_id::of(request.headers(), conn.info.trusted_proxy);
    let facts = state.access_log.facts(request.headers(), id);
    let number = conn.requests.fetch_add(1, Ordering::Relaxed);
    if number == 0 {
        conn.first_request.notify_waiters();
    }
    let _answered = Answered(&conn);
    if let Some(limit) = state.request_budget.spend() {
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
            record(&state, &conn, &request, &response, started, &facts);
            response
        }
        None => match route(&state, &conn, request, started, &facts).await {
            (response, None) => response,
            (response, Some(request)) => {
                record(&state, &conn, &request, &response, started, &facts);
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
    state: &Arc<ServerState>,
    conn: &Connection,
    request: Request<Incoming>,
    started: Instant,
    facts: &RequestFacts,
) -> Routed {
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
    let response = match state.router.route(&method, &path) {
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
        Route::NotFound => match state.router.site() {
            Some(site) => site.not_found(&method, sendfile),
            None => responses::error(StatusCode::NOT_FOUND, "no app or file here"),
        },
        Route::App { mount, path_info } => match state.quarantined.remaining(&mount.prefix, &path_info, started) {
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
