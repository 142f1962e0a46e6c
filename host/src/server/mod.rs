//! The HTTP server: hyper on tokio, serving the static site and the apps
//! over HTTP/1.1 and HTTP/2, in cleartext or TLS. Its layers, from the
//! top (each imports only from the layers below it; `tests/module_circles.rs`
//! checks it, and docs/design.md draws it):
//!
//! 1. this module ([`serve`]), [`accept`] (a connection from its accept to
//!    its HTTP version), [`startup`] (what a serving process does before
//!    its first request), [`memory`] (giving memory back after floods);
//! 2. [`request`]: one request from its first check to its response, and
//!    the routing table;
//! 3. [`app_gateway`] (apps) and [`static_site`] (files): what answers;
//! 4. [`state`]: what every request of the process shares;
//! 5. [`observe`]: the access log and the counters of `/metrics`;
//! 6. [`http`]: the protocol: versions, strictness, bodies, canned responses;
//! 7. [`net`]: listeners, PROXY, TLS, the drain;
//! 8. [`streams`]: byte streams under HTTP.

pub mod accept;
pub mod app_gateway;
pub mod http;
pub mod memory;
pub mod net;
pub mod observe;
pub mod request;
pub mod startup;
pub mod state;
pub mod static_site;
pub mod streams;

use std::sync::Arc;

use tokio::sync::watch;

use self::net::listener::Listener;
use self::request::handler::Handler;

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
pub async fn serve(listeners: Vec<Listener>, handler: Arc<Handler>, mut stop: watch::Receiver<StopLevel>) {
    let state = &handler.state;
    app_gateway::stuck_calls::watch(
        tokio::runtime::Handle::current(),
        state.limits.request_timeout.0,
        state.retire.clone(),
    );
    let drain = state.drain.clone();
    let trimmer = tokio::spawn(memory::trim_after_floods(drain.clone()));
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept::accept_loop(listener, handler.clone(), drain.clone())))
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
