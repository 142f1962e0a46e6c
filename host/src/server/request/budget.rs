//! `--max-requests`: how many requests a worker begins before it retires
//! (jitter drawn by its master).

use std::sync::atomic::{AtomicU64, Ordering};

/// How many requests a process begins before it retires.
#[derive(Debug, Default)]
pub struct RequestBudget {
    limit: Option<u64>,
    begun: AtomicU64,
}

impl RequestBudget {
    /// A budget of `limit` requests (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> RequestBudget {
        RequestBudget {
            limit,
            begun: AtomicU64::new(0),
        }
    }

    /// Counts a request; `Some(limit)` for the one that spends the budget.
    pub fn spend(&self) -> Option<u64> {
        let limit = self.limit?;
        let begun = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        (begun == limit).then_some(limit)
    }
}
