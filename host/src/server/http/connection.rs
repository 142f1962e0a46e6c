//! What the server keeps per HTTP connection: its facts, the wire
//! scanner's verdicts, and how many requests began and were answered
//! (the drain and HTTP/2's idle timeout read them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::server::http::strict::wire::Verdicts;
use crate::server::net::listener::ConnInfo;

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
pub struct Answered(Arc<Connection>);

impl Drop for Answered {
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

    /// Counts a request as begun: its number on the connection (from 0),
    /// and a guard that counts it answered when dropped.
    pub fn begin(self: &Arc<Self>) -> (u64, Answered) {
        let number = self.requests.fetch_add(1, Ordering::Relaxed);
        if number == 0 {
            self.first_request.notify_waiters();
        }
        (number, Answered(self.clone()))
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
