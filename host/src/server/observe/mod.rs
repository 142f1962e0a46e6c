//! What a serving process tells about itself: one access-log line per
//! request ([`access_log`]) and the counters `/metrics` shows
//! ([`metrics`]), both from a request's context and its [`Outcome`].

pub mod access_log;
pub mod metrics;

use std::time::Duration;

/// How a request ended, for its log line and the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The status sent (0: none, the connection was cut first).
    pub status: u16,
    /// Body bytes sent (a WebSocket's: the bytes of its messages sent).
    pub bytes: u64,
    /// A WebSocket's: the bytes of the messages received.
    pub received: Option<u64>,
    /// From arrival to the end of the response.
    pub duration: Duration,
}
