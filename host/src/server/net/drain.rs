//! Draining without dropping a request. When a worker stops (a swap, a
//! retirement, SIGTERM) it stops accepting, and each of its connections
//! finishes what it is doing; the next response on a kept-alive connection
//! carries `Connection: close`, so the client opens a new connection (to a
//! worker that is not going away) for the request after it. A connection
//! that stays idle is closed only after [`IDLE_GRACE`]: closing it at once
//! would race a request the client is already sending (HTTP/1.1 gives a
//! client no way to tell), which is how keep-alive clients lose requests on
//! other servers' reloads. A connection that has not sent its first request
//! yet (accepted moments ago, perhaps still in a TLS handshake when the
//! drain began) gets the header timeout instead: it was accepted, so its
//! first request is answered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long a kept-alive connection may stay idle once draining began
/// before it is closed.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// Whether the server is draining, and how many connections it still has.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    began: Notify,
    open: AtomicUsize,
    /// The most connections open at once since [`Drain::take_peak`].
    peak: AtomicUsize,
    closed: Notify,
}

impl Drain {
    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
        self.began.notify_waiters();
    }

    /// Whether draining has begun: responses then close their connection.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Waits until draining begins.
    pub async fn began(&self) {
        let notified = self.began.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> Tracked {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
        Tracked(self.clone())
    }

    /// Waits until every tracked connection is closed.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The most connections open at once since the last call (or start),
    /// starting over from the number open now.
    pub fn take_peak(&self) -> usize {
        self.peak.swap(self.open(), Ordering::Relaxed)
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// An open connection, counted by its [`Drain`].
pub struct Tracked(Arc<Drain>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn all_closed_waits_for_the_last_connection() {
        let drain = Arc::new(Drain::default());
        let first = drain.track();
        let second = drain.track();
        assert_eq!(drain.open(), 2);
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.all_closed().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.unwrap();
        assert!(!drain.is_draining());
        drain.start();
        drain.began().await;
        assert!(drain.is_draining());
    }
}
