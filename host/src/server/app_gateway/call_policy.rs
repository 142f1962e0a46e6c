//! Where an app call runs: inline, on the runtime thread that serves the
//! connection (no hand-off between threads: the cheapest), or on the
//! blocking pool (a slow call then holds only its own thread).
//!
//! Routes (`PATH_INFO`s, hashed into a few buckets per mount) start on the
//! pool. A route whose calls keep returning within [`INLINE_BUDGET`] with
//! their whole body at once moves inline; one slow or streaming call sends
//! it back to the pool, and each time it was inline when that happened, it
//! must prove itself for twice as long before it returns. An inline call
//! that runs long is noticed while it runs ([`super::stuck_calls`] calls
//! [`CallPolicy::demote`]), so the route's next calls go to the pool even
//! before it returns; what cannot be undone is the runtime thread it holds.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// The longest an inline call may take and stay inline: while it runs, the
/// other connections of its runtime thread wait.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// Quick, whole calls a route needs before its first inline call.
const PROVEN: u32 = 16;

/// Cap on the doubling: at most `PROVEN << 10` quick calls to return.
const MAX_DEMOTIONS: u32 = 10;

/// Buckets per mount; routes that share one share their record.
const ROUTES: usize = 64;

/// Where one call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On the connection's runtime thread.
    Inline,
    /// On the blocking pool.
    Pool,
}

/// How one call went, for [`CallPolicy::record`].
#[derive(Clone, Copy, Debug)]
pub struct CallReport {
    /// Where it ran.
    pub placement: Placement,
    /// How long the call itself took (without pulling a streamed body).
    pub took: Duration,
    /// Whether the body came back whole, not streamed or written in parts.
    pub whole: bool,
}

/// One of a mount's route records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteId(usize);

/// The placement records of one mount's routes.
pub struct CallPolicy {
    routes: [RouteRecord; ROUTES],
}

#[derive(Default)]
struct RouteRecord {
    /// Quick, whole calls in a row.
    streak: AtomicU32,
    /// Slow inline calls in a row (one can be the OS preempting the thread).
    strikes: AtomicU32,
    /// Times the route was sent back to the pool from inline.
    demotions: AtomicU32,
}

impl RouteRecord {
    fn needed(&self) -> u32 {
        PROVEN << self.demotions.load(Relaxed).min(MAX_DEMOTIONS)
    }
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            routes: std::array::from_fn(|_| RouteRecord::default()),
        }
    }
}

impl CallPolicy {
    /// Where the next call on `route` runs.
    pub fn place(&self, route: RouteId) -> Placement {
        let route = &self.routes[route.0];
        if route.streak.load(Relaxed) >= route.needed() {
            Placement::Inline
        } else {
            Placement::Pool
        }
    }

    /// Which record `path_info` shares, for [`CallPolicy::demote`].
    pub fn route_of(&self, path_info: &str) -> RouteId {
        RouteId(fnv1a(path_info.as_bytes()) as usize % ROUTES)
    }

    /// Sends a route back to the pool now: one of its inline calls is
    /// taking long.
    pub fn demote(&self, route: RouteId) {
        let record = &self.routes[route.0];
        if record.streak.swap(0, Relaxed) != 0 {
            record.demotions.fetch_add(1, Relaxed);
        }
    }

    /// Records how a call on `route` (for `path_info`, named in the log) went. An inline call that took
    /// long (but came back whole) counts only if the one before it on this
    /// route did too: on a busy machine the OS preempts a quick call now
    /// and then.
    pub fn record(&self, route: RouteId, path_info: &str, report: CallReport) {
        let route = &self.routes[route.0];
        let quick = report.whole && report.took <= INLINE_BUDGET;
        // Once proven, a route's record is only read: no cache line
        // bouncing between the runtime threads on the hot path.
        if quick {
            if route.strikes.load(Relaxed) != 0 {
                route.strikes.store(0, Relaxed);
            }
            if route.streak.load(Relaxed) < route.needed() {
                route.streak.fetch_add(1, Relaxed);
            }
            return;
        }
        let first_strike = route.strikes.fetch_add(1, Relaxed) == 0;
        if report.placement == Placement::Inline && report.whole && first_strike {
            return;
        }
        if route.streak.swap(0, Relaxed) == 0 {
            return; // already back on the pool (or demoted while it ran)
        }
        if report.placement == Placement::Inline {
            let demotions = route.demotions.fetch_add(1, Relaxed) + 1;
            log::debug!(
                "{path_info}: an inline call took {:?} (whole body: {}); back to the blocking pool until {} quick calls",
                report.took,
                report.whole,
                PROVEN << demotions.min(MAX_DEMOTIONS)
            );
        }
    }
}

/// FNV-1a: a few cycles per byte, plenty for spreading paths over buckets.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `record` and `place` by path, as the server uses them.
    trait ByPath {
        fn record_path(&self, path: &str, report: CallReport);
        fn place_path(&self, path: &str) -> Placement;
    }

    impl ByPath for CallPolicy {
        fn record_path(&self, path: &str, report: CallReport) {
            self.record(self.route_of(path), path, report);
        }

        fn place_path(&self, path: &str) -> Placement {
            self.place(self.route_of(path))
        }
    }

    fn call(placement: Placement, micros: u64, whole: bool) -> CallReport {
        CallReport {
            placement,
            took: Duration::from_micros(micros),
            whole,
        }
    }

    #[test]
    fn a_route_moves_inline_after_quick_whole_calls_and_back_after_a_slow_one() {
        let policy = CallPolicy::default();
        for _ in 0..PROVEN {
            assert_eq!(policy.place_path("/a"), Placement::Pool);
            policy.record_path("/a", call(Placement::Pool, 10, true));
        }
        assert_eq!(policy.place_path("/a"), Placement::Inline);
        // One slow call may be the OS preempting the thread; two in a row are not.
        policy.record_path("/a", call(Placement::Inline, 10_000, true));
        assert_eq!(policy.place_path("/a"), Placement::Inline);
        policy.record_path("/a", call(Placement::Inline, 10, true));
        policy.record_path("/a", call(Placement::Inline, 10_000, true));
        assert_eq!(policy.place_path("/a"), Placement::Inline);
        policy.record_path("/a", call(Placement::Inline, 10_000, true));
        assert_eq!(policy.place_path("/a"), Placement::Pool);
        // The second time it takes twice as many quick calls.
        for _ in 0..2 * PROVEN - 1 {
            policy.record_path("/a", call(Placement::Pool, 10, true));
        }
        assert_eq!(policy.place_path("/a"), Placement::Pool);
        policy.record_path("/a", call(Placement::Pool, 10, true));
        assert_eq!(policy.place_path("/a"), Placement::Inline);
    }

    #[test]
    fn a_demotion_while_a_call_runs_counts_once() {
        let policy = CallPolicy::default();
        for _ in 0..PROVEN {
            policy.record_path("/b", call(Placement::Pool, 10, true));
        }
        assert_eq!(policy.place_path("/b"), Placement::Inline);
        policy.demote(policy.route_of("/b"));
        assert_eq!(policy.place_path("/b"), Placement::Pool);
        policy.record_path("/b", call(Placement::Inline, 50_000, true));
        for _ in 0..2 * PROVEN {
            policy.record_path("/b", call(Placement::Pool, 10, true));
        }
        assert_eq!(policy.place_path("/b"), Placement::Inline);
    }

    #[test]
    fn streamed_bodies_and_slow_pool_calls_keep_a_route_on_the_pool() {
        let policy = CallPolicy::default();
        for i in 0..10 * PROVEN {
            let report = call(Placement::Pool, 10, i % 4 != 0);
            policy.record_path("/stream", report);
            policy.record_path("/slow", call(Placement::Pool, 5_000, true));
        }
        assert_eq!(policy.place_path("/stream"), Placement::Pool);
        assert_eq!(policy.place_path("/slow"), Placement::Pool);
    }
}
