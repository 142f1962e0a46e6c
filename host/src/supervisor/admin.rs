//! The admin listener (`--admin-bind`), served by the master (never by app
//! code, never on the public binds), for load balancers, orchestrators and
//! Prometheus:
//!
//! - `GET /healthz`: 200 while the master runs;
//! - `GET /readyz`: 200 once a generation of workers serves, 503 while the
//!   first one starts and once the server is stopping;
//! - `GET /metrics`: Prometheus text, the master's own counters (worker
//!   starts, exits, retirements, swaps, generation, quarantines) and what
//!   the workers report (every second, and once more as each exits).
//!   Request counters are the sum over every worker that ever ran: an
//!   exited worker's last report is folded into the totals, so a counter
//!   never goes backwards (a crashed worker's last second is lost). They
//!   are labelled by what an operator aggregates on (mount, status class),
//!   never by pid. Gauges are per worker *slot*, a small number a later
//!   worker reuses, so the set of series stays bounded under recycling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::arbiter::SystemdState;
use crate::server::http::body::Body;
use crate::server::net::listener::Listener;
use crate::server::observe::metrics::{Snapshot, LATENCY_BUCKETS};

/// Where the master stands, as the admin endpoints report it.
#[derive(Debug, Default)]
pub struct AdminView {
    state: Mutex<View>,
}

#[derive(Debug, Default)]
struct View {
    phase: Phase,
    generation: u64,
    worker_starts: u64,
    clean_exits: u64,
    crashes: u64,
    retirements: u64,
    swaps_ok: u64,
    swaps_refused: u64,
    quarantined: u64,
    /// Quarantines begun, of one path and of a whole mount.
    quarantines: [u64; 2],
    /// The counters of every worker that has exited, as it last reported
    /// them: what it served is never lost from the totals.
    exited: Snapshot,
    /// Each running worker's slot and latest report, by pid.
    workers: BTreeMap<u32, Live>,
}

/// A running worker, as `/metrics` sees it.
#[derive(Debug, Default)]
struct Live {
    /// Its slot: a small number a later worker reuses once this one has
    /// gone, so per-worker gauges keep a bounded set of series.
    slot: usize,
    /// What it last reported.
    snapshot: Snapshot,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Starting,
    Ready,
    Stopping,
}

impl AdminView {
    fn with<R>(&self, f: impl FnOnce(&mut View) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Worker process `pid` was started in `slot`.
    pub fn worker_started(&self, pid: u32, slot: usize) {
        self.with(|v| {
            v.worker_starts += 1;
            v.workers.insert(
                pid,
                Live {
                    slot,
                    snapshot: Snapshot::default(),
                },
            );
        });
    }

    /// Worker `pid` exited, cleanly (drained, retired) or not: what it last
    /// reported joins the totals.
    pub fn worker_exited(&self, pid: u32, clean: bool) {
        self.with(|v| {
            if let Some(live) = v.workers.remove(&pid) {
                v.exited.add_counters(&live.snapshot);
            }
            if clean {
                v.clean_exits += 1;
            } else {
                v.crashes += 1;
            }
        });
    }

    /// A worker asked to be replaced.
    pub fn worker_retiring(&self) {
        self.with(|v| v.retirements += 1);
    }

    /// Worker `pid`'s latest figures.
    pub fn worker_reported(&self, pid: u32, snapshot: Snapshot) {
        self.with(|v| {
            if let Some(live) = v.workers.get_mut(&pid) {
                live.snapshot = snapshot;
            }
        });
    }

    /// What the master told systemd; `generation` is the one serving.
    pub fn notified(&self, state: SystemdState, generation: u64) {
        self.with(|v| match state {
            SystemdState::Ready => {
                match v.phase {
                    Phase::Starting => {}
                    _ if generation != v.generation => v.swaps_ok += 1,
                    _ => v.swaps_refused += 1,
                }
                if v.phase != Phase::Stopping {
                    v.phase = Phase::Ready;
                }
                v.generation = generation;
            }
            SystemdState::Reloading => {}
            SystemdState::Stopping => v.phase = Phase::Stopping,
        });
    }

    /// A quarantine began (of a whole mount, or of one path).
    pub fn quarantine_began(&self, whole_mount: bool) {
        self.with(|v| {
            v.quarantined += 1;
            v.quarantines[usize::from(whole_mount)] += 1;
        });
    }

    /// A quarantine ended.
    pub fn quarantine_ended(&self) {
        self.with(|v| v.quarantined = v.quarantined.saturating_sub(1));
    }
}

/// Serves the admin endpoints on `listener` until the master exits.
pub async fn serve(listener: Listener, view: Arc<AdminView>) {
    log::info!("admin endpoints on {}", listener.url());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let view = view.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(&request, &view);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// The answer to one admin request.
fn respond<B>(request: &Request<B>, view: &Arc<AdminView>) -> Response<Body> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET and HEAD\n".to_owned());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".to_owned()),
        "/readyz" => match view.with(|v| v.phase) {
            Phase::Ready => text(StatusCode::OK, PLAIN, "ready\n".to_owned()),
            Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "starting\n".to_owned()),
            Phase::Stopping => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "stopping\n".to_owned()),
        },
        "/metrics" => {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(Collect(view.clone())));
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &registry) {
                Ok(()) => text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    format!("cannot encode: {e}\n"),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            "admin endpoints: /healthz, /readyz, /metrics\n".to_owned(),
        ),
    }
}

/// A per-worker gauge: its name, help, and how to read it off a report.
type Gauge = (&'static str, &'static str, fn(&Snapshot) -> u64);

/// Encodes the view on each scrape.
#[derive(Debug)]
struct Collect(Arc<AdminView>);

type Labels = Vec<(String, String)>;

/// One metric family: name, help, type, and a value per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn no_labels<M>(value: M) -> [(Labels, M); 1] {
    [(Vec::new(), value)]
}

/// A histogram from a snapshot's bucket counts.
struct Latency<'s>(&'s Snapshot);

impl EncodeMetric for Latency<'_> {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        // Per-bucket counts: the encoder makes them cumulative.
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.latency.iter().copied()).collect();
        let count = self.0.latency.iter().sum();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.latency_seconds,
            count,
            &buckets,
            None,
        )
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Collect {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let view = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let counter = |value: u64| no_labels(ConstCounter::new(value));
        let gauge = |value: i64| no_labels(ConstGauge::new(value));
        let e = &mut encoder;
        family(
            e,
            "host_worker_starts",
            "Worker processes started.",
            MetricType::Counter,
            counter(view.worker_starts),
        )?;
        family(
            e,
            "host_worker_exits",
            "Worker processes that exited, by how.",
            MetricType::Counter,
            [("clean", view.clean_exits), ("crash", view.crashes)]
                .map(|(how, n)| (vec![("how".to_owned(), how.to_owned())], ConstCounter::new(n))),
        )?;
        family(
            e,
            "host_worker_retirements",
            "Workers that asked to be replaced (stuck request, recycling).",
            MetricType::Counter,
            counter(view.retirements),
        )?;
        family(
            e,
            "host_swaps",
            "Hot swaps, by outcome.",
            MetricType::Counter,
            [("ok", view.swaps_ok), ("refused", view.swaps_refused)]
                .map(|(outcome, n)| (vec![("outcome".to_owned(), outcome.to_owned())], ConstCounter::new(n))),
        )?;
        family(
            e,
            "host_generation",
            "The generation of workers serving.",
            MetricType::Gauge,
            gauge(view.generation as i64),
        )?;
        family(
            e,
            "host_quarantined_routes",
            "Quarantines in force (of a path, or of a whole mount): answered 503 for crashing workers.",
            MetricType::Gauge,
            gauge(view.quarantined as i64),
        )?;
        family(
            e,
            "host_ready",
            "1 when a generation serves and the server is not stopping.",
            MetricType::Gauge,
            gauge(i64::from(view.phase == Phase::Ready)),
        )?;

        family(
            e,
            "host_quarantines",
            "Quarantines begun, of one path or of a whole mount.",
            MetricType::Counter,
            [("path", view.quarantines[0]), ("mount", view.quarantines[1])]
                .map(|(scope, n)| (vec![("scope".to_owned(), scope.to_owned())], ConstCounter::new(n))),
        )?;

        // Counters: every worker that has exited, plus each running one.
        let mut sum = view.exited.clone();
        for live in view.workers.values() {
            sum.add_counters(&live.snapshot);
        }
        let mut requests = Vec::new();
        for (mount, classes) in &sum.requests {
            for (class, count) in classes.iter().enumerate().filter(|(_, n)| **n > 0) {
                let status = if class == 0 {
                    "none".to_owned()
                } else {
                    format!("{class}xx")
                };
                let labels = vec![("mount".to_owned(), mount.clone()), ("status".to_owned(), status)];
                requests.push((labels, ConstCounter::new(*count)));
            }
        }
        family(
            e,
            "host_requests",
            "Requests served, by mount (empty: no app) and status class (none: the connection was cut first).",
            MetricType::Counter,
            requests,
        )?;
        let latency = e.encode_descriptor(
            "host_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            None,
            MetricType::Histogram,
        )?;
        Latency(&sum).encode(latency)?;
        family(
            e,
            "host_response_bytes",
            "Response body bytes sent.",
            MetricType::Counter,
            counter(sum.response_bytes),
        )?;
        family(
            e,
            "host_stuck_calls",
            "App calls found still inside the app past --timeout.",
            MetricType::Counter,
            counter(sum.stuck_calls),
        )?;
        let pair = |label: &str, values: [(&str, u64); 2]| {
            values.map(|(value, n)| (vec![(label.to_owned(), value.to_owned())], ConstCounter::new(n)))
        };
        family(
            e,
            "host_app_calls",
            "App calls, by where they ran (inline: on a runtime thread; pool: on an app thread; async: an async app's future).",
            MetricType::Counter,
            [("inline", sum.inline_calls), ("pool", sum.pool_calls), ("async", sum.async_calls)]
                .map(|(site, n)| (vec![("site".to_owned(), site.to_owned())], ConstCounter::new(n))),
        )?;
        family(
            e,
            "host_websocket_messages",
            "WebSocket messages, by direction (in: from clients).",
            MetricType::Counter,
            pair("direction", [("in", sum.ws_messages_in), ("out", sum.ws_messages_out)]),
        )?;
        family(
            e,
            "host_static_cache_lookups",
            "Static-site lookups, by whether the cache answered them.",
            MetricType::Counter,
            pair(
                "result",
                [("hit", sum.static_cache_hits), ("miss", sum.static_cache_misses)],
            ),
        )?;

        // Gauges: each running worker's, by slot.
        let per_slot = |f: fn(&Snapshot) -> u64| {
            view.workers
                .values()
                .map(move |live| {
                    (
                        vec![("slot".to_owned(), live.slot.to_string())],
                        ConstGauge::new(f(&live.snapshot) as i64),
                    )
                })
                .collect::<Vec<_>>()
        };
        let gauges: [Gauge; 6] = [
            (
                "host_requests_in_flight",
                "Requests begun and not yet answered, per worker slot.",
                |s| s.in_flight,
            ),
            ("host_connections", "Connections open, per worker slot.", |s| {
                s.connections
            }),
            ("host_websockets", "WebSockets open, per worker slot.", |s| s.websockets),
            (
                "host_app_threads_busy",
                "App threads running a call, per worker slot.",
                |s| s.app_threads_busy,
            ),
            (
                "host_app_threads_queued",
                "Requests waiting for an app thread, per worker slot.",
                |s| s.app_threads_queued,
            ),
            (
                "host_worker_resident_memory_bytes",
                "Resident memory, per worker slot.",
                |s| s.rss_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            family(e, name, help, MetricType::Gauge, per_slot(value))?;
        }
        Ok(())
    }
}
