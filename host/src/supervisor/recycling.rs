//! Worker recycling, gunicorn's way: a worker is replaced after
//! `--max-requests` (plus a per-worker share of `--max-requests-jitter`, so
//! workers started together do not all go at once) or once its resident
//! memory passes `--max-worker-memory`. Replacing goes through the worker's
//! retire path: the master starts a new worker, this one drains.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::server::observe::metrics::resident_bytes;
use crate::server::state::Retire;

/// How often resident memory is looked at (only with a limit set).
const MEMORY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// This worker's request limit: `max` plus a draw from `0..=jitter`;
/// `None` when `max` is 0.
pub fn request_limit(max: u64, jitter: u64) -> Option<u64> {
    if max == 0 {
        return None;
    }
    let draw = match jitter {
        0 => 0,
        jitter => {
            // RandomState is seeded from the OS per process: a fair draw.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            hasher.finish() % (jitter + 1)
        }
    };
    Some(max.saturating_add(draw))
}

/// Retires the worker once its resident memory passes `limit` bytes.
pub async fn watch_memory(limit: u64, retire: Retire) {
    loop {
        tokio::time::sleep(MEMORY_CHECK_EVERY).await;
        match resident_bytes() {
            Some(rss) if rss > limit => {
                retire(&format!(
                    "its resident memory is {} MiB, over --max-worker-memory ({} MiB)",
                    rss >> 20,
                    limit >> 20
                ));
                return;
            }
            Some(_) => {}
            None => {
                log::warn!("cannot read this worker's memory use: --max-worker-memory is not enforced");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_drawn_within_the_jitter() {
        assert_eq!(request_limit(0, 10), None);
        assert_eq!(request_limit(100, 0), Some(100));
        for _ in 0..100 {
            let limit = request_limit(100, 10).unwrap();
            assert!((100..=110).contains(&limit), "{limit}");
        }
    }
}
