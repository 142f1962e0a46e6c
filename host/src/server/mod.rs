//! The HTTP server: hyper on tokio, serving the static site and the apps
//! over HTTP/1.1 and HTTP/2, in cleartext or TLS.
//!
//! - [`connection`]: listeners and per-connection facts; [`http1`] and
//!   [`http2`]: a connection in each version; [`tls`]: HTTPS.
//! - [`handler`]: one request, from the strict checks to its response.
//! - [`strict`]: the HTTP rules hyper leaves to the application.
//! - [`router`]: the seeds' routing rule and mounts.
//! - [`static_site`]: the static site, its lookups and file responses.
//! - [`app_gateway`]: apps over HTTP; [`call_policy`] decides where a
//!   call runs, [`stuck_calls`] notices inline calls past the timeout.
//! - [`access_log`], [`metrics`], [`body`], [`responses`]: what every
//!   response needs.
//! - [`forwarded`]: the client behind a trusted proxy (and
//!   [`proxy_protocol`] behind a TCP balancer); [`request_id`]: every
//!   request's id.
//! - [`drain`]: stopping without dropping requests; [`memory`]: giving
//!   memory back after floods.
//! - [`startup`]: what a serving process does before its first request.
//! - [`zero_copy`]: large files sent with `sendfile`; [`coalesced`]: small
//!   HTTP/2 writes gathered; [`rewound`]: bytes read ahead, put back.

pub mod access_log;
pub mod app_gateway;
pub mod body;
pub mod call_policy;
pub mod client_cert;
pub mod coalesced;
pub mod connection;
pub mod drain;
pub mod forwarded;
pub mod handler;
pub mod header_list;
pub mod http1;
pub mod http2;
pub mod memory;
pub mod metrics;
pub mod proxy_protocol;
pub mod quarantined;
pub mod request_id;
pub mod responses;
pub mod rewound;
pub mod router;
pub mod startup;
pub mod static_site;
pub mod strict;
pub mod stuck_calls;
pub mod tls;
pub mod zero_copy;

use std::sync::Arc;

use tokio::sync::watch;

use self::access_log::AccessLog;
use self::connection::Listener;
use self::drain::Drain;
use self::router::Router;
use crate::config::Limits;

/// Everything a request handler needs, shared by all connections.
pub struct ServerState {
    /// The routing table.
    pub router: Router,
    /// The limits in force.
    pub limits: Limits,
    /// The access log.
    pub access_log: Arc<AccessLog>,
    /// The request counters `/metrics` shows.
    pub metrics: metrics::ServerMetrics,
    /// Whose forwarding headers are believed.
    pub proxies: forwarded::TrustedProxies,
    /// Connections start with a PROXY protocol header (`--proxy-protocol`).
    pub proxy_protocol: bool,
    /// Connections are TLS (`--certfile`, `--keyfile`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// HTTP/2 is served (by ALPN over TLS, with prior knowledge in
    /// cleartext); off with `--no-http2`.
    pub http2: bool,
    /// Open connections, and the drain when stopping.
    pub drain: Arc<Drain>,
    /// Retires this process (a request stuck in the app, a recycling
    /// limit reached), with the reason.
    pub retire: Retire,
    /// Requests this process serves before it retires (`--max-requests`
    /// and its jitter), and how many it has begun.
    pub request_budget: RequestBudget,
    /// Routes answered 503 without calling the app (the master's quarantines).
    pub quarantined: Arc<quarantined::Quarantined>,
    /// The threads app calls run on.
    pub app_threads: app_gateway::threads::AppThreads,
}

/// The reaction to a request stuck in the app (a native call cannot be
/// interrupted) or a recycling limit, given the reason: in a worker, a
/// replacement starts and this one drains; in one process, a warning.
pub type Retire = Arc<dyn Fn(&str) + Send + Sync>;

/// `--max-requests`: how many requests a worker begins before it retires.
#[derive(Debug, Default)]
pub struct RequestBudget {
    limit: Option<u64>,
    begun: std::sync::atomic::AtomicU64,
}

impl RequestBudget {
    /// A budget of `limit` requests (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> RequestBudget {
        RequestBudget {
            limit,
            begun: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts a request; `Some(limit)` for the one that spends the budget.
    pub fn spend(&self) -> Option<u64> {
        let limit = self.limit?;
        let begun = self.begun.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (begun == limit).then_some(limit)
    }
}

impl ServerState {
    /// A request is over: counts it and writes its access-log line.
    pub fn finished(&self, mount: &str, entry: &access_log::Entry<'_>) {
        self.metrics.observe(mount, entry.status, entry.bytes, entry.duration);
        self.access_log.record(entry);
    }

    /// The counters, and the gauges of this moment.
    pub fn snapshot(&self) -> metrics::Snapshot {
        let (static_cache_hits, static_cache_misses) = self.router.site().map_or((0, 0), |site| site.cache_counts());
        metrics::Snapshot {
            static_cache_hits,
            static_cache_misses,
            connections: self.drain.open() as u64,
            app_threads_busy: self.app_threads.busy() as u64,
            app_threads_queued: self.app_threads.queued() as u64,
            rss_bytes: metrics::resident_bytes().unwrap_or(0),
            stuck_calls: stuck_calls::stuck_reports(),
            ..self.metrics.snapshot()
        }
    }
}

/// How hard the server is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    /// Keep serving.
    Run,
    /// Stop accepting, finish in-flight requests (up to the graceful timeout).
    Graceful,
    /// Stop now.
    Immediate,
}

/// Serves on `listeners` until `stop` says so, then drains: no new
/// connections, in-flight requests finish (up to the graceful timeout), and
/// kept-alive connections close without losing a request ([`drain`]).
pub async fn serve(listeners: Vec<Listener>, state: Arc<ServerState>, mut stop: watch::Receiver<StopLevel>) {
    stuck_calls::watch(
        tokio::runtime::Handle::current(),
        state.limits.request_timeout.0,
        state.retire.clone(),
    );
    let drain = state.drain.clone();
    let trimmer = tokio::spawn(memory::trim_after_floods(drain.clone()));
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, state.clone(), drain.clone())))
        .collect();
    let _ = stop.wait_for(|level| *level >= StopLevel::Graceful).await;
    log::info!(
        "shutting down: no new connections; draining {} connections",
        drain.open()
    );
    drain.start();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    let timeout = state.limits.graceful_timeout.0;
    tokio::select! {
        () = drain.all_closed() => log::info!("all requests finished; exiting"),
        () = tokio::time::sleep(timeout) => log::warn!(
            "graceful_timeout ({}s) passed with {} connections still open; exiting anyway",
            timeout.as_secs(),
            drain.open()
        ),
        _ = stop.wait_for(|level| *level == StopLevel::Immediate) => log::warn!("asked to stop now: not waiting for requests"),
    }
    trimmer.abort();
    state.access_log.flush();
}

async fn accept_loop(listener: Listener, state: Arc<ServerState>, drain: Arc<Drain>) {
    let builders = Arc::new(Builders {
        http1: http1::builder(&state.limits),
        http2: http2::builder(&state.limits),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.began() => return,
        };
        let (stream, info) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::error!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let tracked = drain.track();
        let (state, builders) = (state.clone(), builders.clone());
        tokio::spawn(async move {
            let _tracked = tracked;
            let Some((stream, info)) = proxied(stream, info, &state).await else {
                return;
            };
            let Some((stream, info, protocol)) = negotiated(stream, info, &state).await else {
                return;
            };
            match protocol {
                Protocol::Http1 => http1::serve(stream, info, state, &builders.http1).await,
                Protocol::Http2 => http2::serve(stream, info, state, &builders.http2).await,
            }
        });
    }
}

/// With `--proxy-protocol`, reads the PROXY header of a trusted peer's
/// connection and takes the client's address from it; `None` (the
/// connection is closed) for an untrusted peer or a bad header.
async fn proxied(
    stream: Box<dyn connection::Stream>,
    mut info: connection::ConnInfo,
    state: &ServerState,
) -> Option<(Box<dyn connection::Stream>, connection::ConnInfo)> {
    if !state.proxy_protocol {
        info.trusted_proxy = state.proxies.trusts_peer(&info.remote_addr);
        return Some((stream, info));
    }
    if !state.proxies.trusts_peer(&info.remote_addr) {
        log::warn!(
            "closed a connection from {}: PROXY headers are taken only from --forwarded-allow-ips",
            info.remote_addr
        );
        return None;
    }
    let mut stream = stream;
    match proxy_protocol::read_header(&mut stream, state.limits.header_timeout.0).await {
        Ok((source, rest)) => {
            if let proxy_protocol::Source::Client(client) = source {
                info.remote_addr = client.ip().to_string();
                info.remote_port = client.port().to_string();
            }
            // The client's own forwarding headers are believed only if it
            // is itself a trusted proxy.
            info.trusted_proxy = state.proxies.trusts_peer(&info.remote_addr);
            Some((Box::new(rewound::Rewound::new(rest, stream)), info))
        }
        Err(e) => {
            log::warn!(
                "closed a connection from {}: {e} (option --proxy-protocol)",
                info.remote_addr
            );
            None
        }
    }
}

/// The servers for each HTTP version, set up once per listener.
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: http2::Builder,
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// With `--certfile`, the TLS handshake (within the header timeout), and
/// the HTTP version the client chose by ALPN; in cleartext, HTTP/2 if the
/// client starts with its preface. `None` (the connection is closed) if
/// the handshake fails or the client says nothing in time.
async fn negotiated(
    stream: Box<dyn connection::Stream>,
    mut info: connection::ConnInfo,
    state: &ServerState,
) -> Option<(Box<dyn connection::Stream>, connection::ConnInfo, Protocol)> {
    let header_timeout = state.limits.header_timeout.0;
    let Some(acceptor) = &state.tls else {
        if !state.http2 {
            return Some((stream, info, Protocol::Http1));
        }
        let (stream, is_http2) = http2::sniff(stream, header_timeout).await?;
        let protocol = if is_http2 { Protocol::Http2 } else { Protocol::Http1 };
        return Some((stream, info, protocol));
    };
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            info.https = true;
            if let Some(leaf) = stream.get_ref().1.peer_certificates().and_then(<[_]>::first) {
                info.client_cert = Some(Arc::new(client_cert::environ_of(leaf)));
            }
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(tls::ALPN_HTTP2) => Protocol::Http2,
                _ => Protocol::Http1,
            };
            Some((Box::new(stream), info, protocol))
        }
        Ok(Err(e)) => {
            log::debug!("TLS handshake with {} failed: {e}", info.remote_addr);
            None
        }
        Err(_) => {
            log::debug!("TLS handshake with {} timed out", info.remote_addr);
            None
        }
    }
}
