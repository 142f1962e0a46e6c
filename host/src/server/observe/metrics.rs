//! What a serving process counts for `/metrics`: requests by mount and
//! status class, a latency histogram with fixed buckets, response bytes,
//! requests in flight, and app calls by where they ran.
//! Plain atomics on the request path (a handful of relaxed adds); a
//! worker sends a [`Snapshot`] to its master every second, and the master
//! serves the sum (see `supervisor::admin`).

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::Outcome;

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// The mount label of requests no app answered (static files, refusals).
pub const NO_MOUNT: &str = "";

/// Which mount's counters a request counts in: an index into the mounts
/// the counters were made for ([`MountIndex::NONE`]: no app answered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountIndex(usize);

impl MountIndex {
    /// Requests no app answered.
    pub const NONE: MountIndex = MountIndex(0);
}

/// A process's request counters.
#[derive(Debug)]
pub struct ServerMetrics {
    /// Mount labels, [`NO_MOUNT`] first.
    mounts: Vec<String>,
    /// Per mount, requests by status class (1xx … 5xx; index 0: none sent).
    requests: Vec<[AtomicU64; 6]>,
    /// Per bucket (and one for `+Inf`), requests that took at most its bound.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
    response_bytes: AtomicU64,
    /// Requests begun and not yet finished.
    in_flight: AtomicI64,
    /// App calls made inline, on an app thread, and async apps started.
    app_calls: [AtomicU64; 3],
    /// WebSockets open now.
    websockets: AtomicI64,
    /// WebSocket messages received from clients, and sent to them.
    ws_messages: [AtomicU64; 2],
}

/// Where an app call ran, for [`ServerMetrics::app_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallSite {
    /// On the runtime thread that read the request.
    Inline,
    /// On an app thread.
    Pool,
    /// An async app's future, polled by the runtime.
    Async,
}

/// Which way a WebSocket message went, for [`ServerMetrics::ws_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client.
    In,
    /// To the client.
    Out,
}

/// A WebSocket counted as open until dropped.
#[must_use = "the socket counts as open until this is dropped"]
pub struct OpenSocket<'m>(&'m ServerMetrics);

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Relaxed);
    }
}

/// A request counted in flight until dropped.
#[must_use = "the request counts as in flight until this is dropped"]
pub struct InFlight<'m>(&'m ServerMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A process's figures at one moment, as its master receives them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Per mount: requests by status class (`[none, 1xx, 2xx, 3xx, 4xx, 5xx]`).
    pub requests: Vec<(String, [u64; 6])>,
    /// Requests per latency bucket (not cumulative; the last is `+Inf`).
    pub latency: Vec<u64>,
    /// Total time of all requests, in seconds.
    pub latency_seconds: f64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// Requests begun and not yet answered.
    pub in_flight: u64,
    /// App calls made inline (on a runtime thread).
    pub inline_calls: u64,
    /// App calls made on an app thread.
    pub pool_calls: u64,
    /// Async app requests started.
    pub async_calls: u64,
    /// WebSocket messages received from clients.
    pub ws_messages_in: u64,
    /// WebSocket messages sent to clients.
    pub ws_messages_out: u64,
    /// WebSockets open now.
    pub websockets: u64,
    /// Static-site lookups answered from the cache.
    pub static_cache_hits: u64,
    /// Static-site lookups that went to the disk.
    pub static_cache_misses: u64,
    /// App calls found still inside the app past the request timeout.
    pub stuck_calls: u64,
    /// Connections open now.
    pub connections: u64,
    /// App threads busy now, and requests waiting for one.
    pub app_threads_busy: u64,
    /// See [`Snapshot::app_threads_busy`].
    pub app_threads_queued: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

impl ServerMetrics {
    /// Counters for these mount prefixes.
    pub fn new<'m>(mounts: impl IntoIterator<Item = &'m str>) -> ServerMetrics {
        let mounts: Vec<String> = std::iter::once(NO_MOUNT).chain(mounts).map(str::to_owned).collect();
        ServerMetrics {
            requests: mounts.iter().map(|_| Default::default()).collect(),
            mounts,
            latency: Default::default(),
            latency_micros: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            app_calls: Default::default(),
            websockets: AtomicI64::new(0),
            ws_messages: Default::default(),
        }
    }

    /// Counts a request as in flight while the guard lives.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self)
    }

    /// Counts an app call made at `site`.
    pub fn app_call(&self, site: CallSite) {
        self.app_calls[site as usize].fetch_add(1, Relaxed);
    }

    /// Counts a WebSocket as open while the guard lives.
    pub fn websocket(&self) -> OpenSocket<'_> {
        self.websockets.fetch_add(1, Relaxed);
        OpenSocket(self)
    }

    /// Counts a WebSocket message going `direction`.
    pub fn ws_message(&self, direction: Direction) {
        self.ws_messages[direction as usize].fetch_add(1, Relaxed);
    }

    /// The counters of the mount at `prefix` ([`MountIndex::NONE`] for one
    /// they were not made for).
    pub fn mount_index(&self, prefix: &str) -> MountIndex {
        MountIndex(self.mounts.iter().position(|m| m == prefix).unwrap_or(0))
    }

    /// Counts one finished request.
    pub fn observe(&self, mount: MountIndex, outcome: &Outcome) {
        let class = usize::from(outcome.status / 100).min(5);
        self.requests[mount.0][class].fetch_add(1, Relaxed);
        let (duration, bytes) = (outcome.duration, outcome.bytes);
        let seconds = duration.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_micros.fetch_add(duration.as_micros() as u64, Relaxed);
        self.response_bytes.fetch_add(bytes, Relaxed);
    }

    /// The counters now (the gauges are the caller's to fill in).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self
                .mounts
                .iter()
                .zip(&self.requests)
                .map(|(mount, counts)| (mount.clone(), counts.each_ref().map(|c| c.load(Relaxed))))
                .collect(),
            latency: self.latency.iter().map(|c| c.load(Relaxed)).collect(),
            latency_seconds: self.latency_micros.load(Relaxed) as f64 / 1e6,
            response_bytes: self.response_bytes.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed).max(0) as u64,
            inline_calls: self.app_calls[CallSite::Inline as usize].load(Relaxed),
            pool_calls: self.app_calls[CallSite::Pool as usize].load(Relaxed),
            async_calls: self.app_calls[CallSite::Async as usize].load(Relaxed),
            ws_messages_in: self.ws_messages[Direction::In as usize].load(Relaxed),
            ws_messages_out: self.ws_messages[Direction::Out as usize].load(Relaxed),
            websockets: self.websockets.load(Relaxed).max(0) as u64,
            ..Snapshot::default()
        }
    }
}

impl Snapshot {
    /// Adds `other`'s counters to these (its gauges, a moment's values,
    /// are not added): what the master keeps of a worker that exited.
    pub fn add_counters(&mut self, other: &Snapshot) {
        for (mount, classes) in &other.requests {
            let at = match self.requests.iter().position(|(m, _)| m == mount) {
                Some(at) => at,
                None => {
                    self.requests.push((mount.clone(), [0; 6]));
                    self.requests.len() - 1
                }
            };
            for (sum, count) in self.requests[at].1.iter_mut().zip(classes) {
                *sum += count;
            }
        }
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (sum, count) in self.latency.iter_mut().zip(&other.latency) {
            *sum += count;
        }
        self.latency_seconds += other.latency_seconds;
        self.response_bytes += other.response_bytes;
        self.inline_calls += other.inline_calls;
        self.pool_calls += other.pool_calls;
        self.async_calls += other.async_calls;
        self.ws_messages_in += other.ws_messages_in;
        self.ws_messages_out += other.ws_messages_out;
        self.static_cache_hits += other.static_cache_hits;
        self.static_cache_misses += other.static_cache_misses;
        self.stuck_calls += other.stuck_calls;
    }
}

/// This process's resident set size, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Counts a request with `status`, `bytes` and `duration` at `mount`.
    fn observe(metrics: &ServerMetrics, mount: &str, status: u16, bytes: u64, duration: Duration) {
        let outcome = Outcome {
            status,
            bytes,
            received: None,
            duration,
        };
        metrics.observe(metrics.mount_index(mount), &outcome);
    }

    #[test]
    fn requests_land_in_their_mount_class_and_bucket() {
        let metrics = ServerMetrics::new(["/time"]);
        observe(&metrics, "/time", 200, 10, Duration::from_micros(300));
        observe(&metrics, "/time", 503, 5, Duration::from_millis(2));
        observe(&metrics, NO_MOUNT, 404, 1, Duration::from_secs(60));
        metrics.app_call(CallSite::Pool);
        let in_flight = metrics.begin();
        assert_eq!(metrics.snapshot().in_flight, 1);
        drop(in_flight);
        let snapshot = metrics.snapshot();
        assert_eq!(
            (snapshot.in_flight, snapshot.inline_calls, snapshot.pool_calls),
            (0, 0, 1)
        );
        assert_eq!(snapshot.requests[1], ("/time".to_owned(), [0, 0, 1, 0, 0, 1]));
        assert_eq!(snapshot.requests[0], (String::new(), [0, 0, 0, 0, 1, 0]));
        assert_eq!(snapshot.latency[0], 1);
        assert_eq!(snapshot.latency[2], 1);
        assert_eq!(snapshot.latency[LATENCY_BUCKETS.len()], 1);
        assert_eq!(snapshot.response_bytes, 16);
        assert!(resident_bytes().is_some_and(|rss| rss > 0));
    }

    #[test]
    fn counters_add_up_across_workers_and_gauges_do_not() {
        let one = ServerMetrics::new(["/a"]);
        observe(&one, "/a", 200, 3, Duration::from_micros(100));
        let two = ServerMetrics::new(["/b"]);
        observe(&two, "/b", 404, 4, Duration::from_secs(2));
        observe(&two, NO_MOUNT, 200, 1, Duration::from_micros(100));
        let mut sum = Snapshot::default();
        for metrics in [&one, &two] {
            let mut snapshot = metrics.snapshot();
            snapshot.connections = 7;
            sum.add_counters(&snapshot);
        }
        let count = |mount: &str| sum.requests.iter().find(|(m, _)| m == mount).map(|(_, c)| *c);
        assert_eq!(count("/a"), Some([0, 0, 1, 0, 0, 0]));
        assert_eq!(count("/b"), Some([0, 0, 0, 0, 1, 0]));
        assert_eq!(count(NO_MOUNT), Some([0, 0, 1, 0, 0, 0]));
        assert_eq!(sum.latency.iter().sum::<u64>(), 3);
        assert_eq!((sum.response_bytes, sum.connections), (8, 0));
    }
}
