//! What every request of a serving process shares, whatever answers it:
//! the limits, the access log and the counters, the drain, the app
//! threads ([`app_threads`]), and how the process retires.

pub mod app_threads;

use std::sync::Arc;

use crate::config::Limits;
use crate::server::http::context::RequestContext;
use crate::server::http::forwarded;
use crate::server::net::drain::Drain;
use crate::server::observe::access_log::AccessLog;
use crate::server::observe::metrics::{self, MountIndex};
use crate::server::observe::Outcome;

/// What every request shares, across all connections.
pub struct ServerState {
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
    /// The threads app calls run on.
    pub app_threads: app_threads::AppThreads,
}

/// The reaction to a request stuck in the app (a native call cannot be
/// interrupted) or a recycling limit, given the reason: in a worker, a
/// replacement starts and this one drains; in one process, a warning.
pub type Retire = Arc<dyn Fn(&str) + Send + Sync>;

impl ServerState {
    /// The request of `ctx`, answered through `mount` ([`MountIndex::NONE`]
    /// when no app answered), ended as `outcome`: counts it and writes its
    /// access-log line. Every request a worker serves is recorded here.
    pub fn finished(&self, ctx: &RequestContext, mount: MountIndex, outcome: &Outcome) {
        self.metrics.observe(mount, outcome);
        self.access_log.request(ctx, outcome);
    }
}
