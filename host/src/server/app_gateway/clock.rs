//! [`AppClock`]: how long a request has been inside the app, not counting
//! the time the app spent waiting for the client (reading a slow request
//! body, or handing a response to a client that reads slowly). `--timeout`
//! is measured on this clock, so a slow client never makes an app look
//! stuck. The clock also knows where the request sits on the in-flight
//! board, so the master knows a 504 was answered (and logged) already.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One request's time in the app.
#[derive(Debug)]
pub struct AppClock {
    started: Instant,
    /// Nanoseconds spent waiting for the client, finished waits only.
    waited_ns: AtomicU64,
    /// When the current wait began (ns since `started`, plus one); 0: none.
    waiting_since: AtomicU64,
    /// The client was already answered 504; the app's own answer is late.
    timed_out: AtomicBool,
    /// The request's place on the in-flight board, once on it.
    board: OnceLock<crate::inflight::Marked>,
}

impl AppClock {
    /// A clock that starts now.
    pub fn start() -> AppClock {
        AppClock {
            started: Instant::now(),
            waited_ns: AtomicU64::new(0),
            waiting_since: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
            board: OnceLock::new(),
        }
    }

    fn nanos_since_start(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Runs `wait` (a wait for the client) off the clock.
    pub fn waiting<R>(&self, wait: impl FnOnce() -> R) -> R {
        self.begin_wait();
        let result = wait();
        self.end_wait();
        result
    }

    /// From now on the request waits for the client (off the clock), until
    /// [`AppClock::end_wait`]; a wait already begun goes on.
    pub fn begin_wait(&self) {
        let now = self.nanos_since_start() + 1;
        let _ = self
            .waiting_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The wait for the client is over (if one was begun).
    pub fn end_wait(&self) {
        let since = self.waiting_since.swap(0, Ordering::AcqRel);
        if since != 0 {
            let waited = self.nanos_since_start().saturating_sub(since - 1);
            self.waited_ns.fetch_add(waited, Ordering::AcqRel);
        }
    }

    /// Time in the app so far.
    pub fn in_app(&self) -> Duration {
        let now = self.nanos_since_start();
        let current = match self.waiting_since.load(Ordering::Acquire) {
            0 => 0,
            since => now.saturating_sub(since - 1),
        };
        let waited = self.waited_ns.load(Ordering::Acquire) + current;
        Duration::from_nanos(now.saturating_sub(waited))
    }

    /// Resolves once the request has been in the app for `deadline`.
    pub async fn passed(&self, deadline: Duration) {
        loop {
            let left = deadline.saturating_sub(self.in_app());
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }

    /// Notes where the request sits on the in-flight board.
    pub fn on_board(&self, marked: crate::inflight::Marked) {
        let _ = self.board.set(marked);
    }

    /// Marks the request as answered 504 (here and on the board: the
    /// worker logs it, the master need not).
    pub fn time_out(&self) {
        self.timed_out.store(true, Ordering::Release);
        if let Some(marked) = self.board.get() {
            marked.answered_by_server(504);
        }
    }

    /// Whether the request was answered 504.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_client_are_off_the_clock() {
        let clock = AppClock::start();
        std::thread::sleep(Duration::from_millis(30));
        let before = clock.in_app();
        assert!(before >= Duration::from_millis(30));
        // Were the wait counted, the difference would be at least 200 ms.
        clock.waiting(|| std::thread::sleep(Duration::from_millis(200)));
        let after = clock.in_app();
        assert!(after < before + Duration::from_millis(200), "{before:?} → {after:?}");
        assert!(!clock.timed_out());
        clock.time_out();
        assert!(clock.timed_out());
    }
}
