//! [`AppThreads`]: the bound on app calls running on blocking threads in
//! one worker (`--threads`), with a bounded wait for a free one
//! (`--max-queued`, `--queue-timeout`). When every thread is busy a request
//! waits in a queue of known size for a known time, then gets 503: never
//! an unbounded stall, never an unbounded number of threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The app threads of a worker.
#[derive(Debug)]
pub struct AppThreads {
    permits: Arc<Semaphore>,
    threads: usize,
    queued: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
}

/// Why no thread was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The queue is full.
    QueueFull,
    /// The request waited the whole queue timeout.
    Waited,
}

impl AppThreads {
    /// `threads` threads; at most `max_queued` requests wait, each at most
    /// `queue_timeout`.
    pub fn new(threads: usize, max_queued: usize, queue_timeout: Duration) -> AppThreads {
        AppThreads {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            threads: threads.max(1),
            queued: AtomicUsize::new(0),
            max_queued,
            queue_timeout,
        }
    }

    /// A thread for one app call, held until the permit is dropped.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy::QueueFull);
        }
        let waited = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Busy::Waited),
        }
    }

    /// How many threads there are.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// How long a request may wait for a thread.
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// How many threads run an app call now.
    pub fn busy(&self) -> usize {
        self.threads - self.permits.available_permits()
    }

    /// How many requests wait now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_pool_queues_a_bounded_number_for_a_bounded_time() {
        let threads = Arc::new(AppThreads::new(1, 1, Duration::from_secs(5)));
        let held = threads.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let threads = threads.clone();
            async move { threads.acquire().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert_eq!(threads.queued(), 1);
        assert_eq!(threads.acquire().await.unwrap_err(), Busy::QueueFull);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(waiting.await.unwrap(), Err(Busy::Waited));
        drop(held);
        assert!(threads.acquire().await.is_ok());
    }
}
