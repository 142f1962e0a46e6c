//! Notices inline app calls that outlive the request timeout. Such a call
//! blocks its runtime thread, so no timer on that thread can fire: each
//! runtime thread instead marks, in a slot of its own, which request it is
//! inside, and a watchdog thread looks at the slots a few times a second.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::OnStuck;

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(100);

/// One runtime thread's current inline call.
#[derive(Default)]
struct Slot {
    /// When the call began, in ms since [`epoch`] plus one; 0 when idle.
    since: AtomicU64,
    /// `METHOD /path`, for the log.
    request: Mutex<String>,
}

/// Every runtime thread's slot.
static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot::default());
        SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
        slot
    };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Marks this thread as inside an inline call until dropped.
pub struct InlineCall(());

impl InlineCall {
    /// Marks the start of an inline call for `method path`.
    pub fn enter(method: &str, path: &str) -> InlineCall {
        SLOT.with(|slot| {
            let mut request = slot.request.lock().unwrap_or_else(|e| e.into_inner());
            request.clear();
            request.push_str(method);
            request.push(' ');
            request.push_str(path);
            slot.since.store(now_ms(), Relaxed);
        });
        InlineCall(())
    }
}

impl Drop for InlineCall {
    fn drop(&mut self) {
        SLOT.with(|slot| slot.since.store(0, Relaxed));
    }
}

/// Starts the watchdog thread (once per process): a call inside the app
/// for longer than `timeout` is logged and `on_stuck` runs, once per call.
pub fn watch(timeout: Duration, on_stuck: OnStuck) {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("stuck-calls".into())
            .spawn(move || patrol(timeout, &on_stuck));
        if let Err(e) = spawned {
            log::error!("cannot start the stuck-call watchdog: {e}; inline calls are not timed");
        }
    });
}

fn patrol(timeout: Duration, on_stuck: &OnStuck) {
    let timeout_ms = timeout.as_millis() as u64;
    // The start time of the last call reported per slot: each once.
    let mut reported: Vec<u64> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        let slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        reported.resize(slots.len(), 0);
        let now = now_ms();
        for (slot, reported) in slots.iter().zip(reported.iter_mut()) {
            let since = slot.since.load(Relaxed);
            if since == 0 || since == *reported || now - since <= timeout_ms {
                continue;
            }
            *reported = since;
            let request = slot.request.lock().unwrap_or_else(|e| e.into_inner()).clone();
            log::error!(
                "{request} is still inside the app after the request timeout ({}s, option --timeout) in worker pid {}; it runs inline, so its runtime thread is blocked",
                timeout.as_secs_f64(),
                std::process::id()
            );
            on_stuck();
        }
    }
}
