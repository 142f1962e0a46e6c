//! What a serving process tells about itself: one access-log line per
//! request ([`access_log`]) and the counters `/metrics` shows
//! ([`metrics`]).

pub mod access_log;
pub mod metrics;
