//! Watches inline app calls, which block their runtime thread (so no timer
//! on that thread can fire): each runtime thread marks, in a slot of its
//! own, which request and route it is inside, and a watchdog thread looks
//! at the slots every few milliseconds. A call running longer than
//! [`LONG_INLINE`] sends its route back to the blocking pool at once (the
//! route's next calls must not pile onto the other runtime threads) and
//! wakes an idle runtime thread: the blocked one may have been the last to
//! poll for I/O, and tokio hands the I/O driver on only when a thread parks,
//! so without the nudge every connection would wait for the call. A call
//! past the request timeout is logged and its worker retired.
//!
//! An idle worker costs nothing: after [`LINGER`] without an inline call
//! the watchdog parks, and the next call to start wakes it (one flag read
//! per call; a wake-up at most once per park).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::call_policy::{CallPolicy, RouteId};
use super::Retire;

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(5);

/// How long the watchdog keeps looking after the last inline call before
/// it parks.
const LINGER: Duration = Duration::from_secs(1);

/// An inline call waiting (its thread asleep: I/O, a lock, a timer) this
/// long demotes its route.
pub const LONG_INLINE: Duration = Duration::from_millis(5);

/// An inline call whose thread is running (computing, or preempted by the
/// OS on a busy machine, which must not count) demotes its route after this.
pub const LONG_RUNNING_INLINE: Duration = Duration::from_millis(50);

/// One runtime thread's current inline call.
struct Slot {
    /// The runtime thread's id, to read its state.
    tid: libc::pid_t,
    /// When the call began, in ms since [`epoch`] plus one; 0 when idle.
    since: AtomicU64,
    /// What it is, for the log and for demoting its route.
    call: Mutex<CallInfo>,
}

#[derive(Default)]
struct CallInfo {
    /// `METHOD /path`.
    request: String,
    /// The mount's policy and the route's record in it.
    route: Option<(Arc<CallPolicy>, RouteId)>,
}

/// Every runtime thread's slot.
static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// The watchdog thread, once started.
static WATCHDOG: OnceLock<Thread> = OnceLock::new();

/// Set while the watchdog is parked (or about to park): the next call to
/// start must wake it.
static PARKED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot {
            // SAFETY: gettid has no preconditions and cannot fail.
            tid: unsafe { libc::gettid() },
            since: AtomicU64::new(0),
            call: Mutex::default(),
        });
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
    /// Marks the start of an inline call for `method path` on `route`.
    pub fn enter(method: &str, path: &str, policy: &Arc<CallPolicy>, route: RouteId) -> InlineCall {
        SLOT.with(|slot| {
            let mut call = slot.call.lock().unwrap_or_else(|e| e.into_inner());
            call.request.clear();
            call.request.push_str(method);
            call.request.push(' ');
            call.request.push_str(path);
            match &mut call.route {
                // The same mount as last time on this thread: no refcount traffic.
                Some((known, id)) if Arc::ptr_eq(known, policy) => *id = route,
                other => *other = Some((policy.clone(), route)),
            }
            // SeqCst with the watchdog's own store-then-load of PARKED and
            // `since`: either it sees this call, or this sees it parked.
            slot.since.store(now_ms(), SeqCst);
        });
        if PARKED.load(SeqCst) && PARKED.swap(false, SeqCst) {
            if let Some(watchdog) = WATCHDOG.get() {
                watchdog.unpark();
            }
        }
        InlineCall(())
    }
}

impl Drop for InlineCall {
    fn drop(&mut self) {
        SLOT.with(|slot| slot.since.store(0, Relaxed));
    }
}

/// Starts the watchdog thread (once per process) for the calls made on
/// `runtime`: a call inside the app for longer than `timeout` is logged
/// and `retire` runs, once per call.
pub fn watch(runtime: Handle, timeout: Duration, retire: Retire) {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("stuck-calls".into())
            .spawn(move || patrol(&runtime, timeout, &retire));
        match spawned {
            Ok(handle) => {
                let _ = WATCHDOG.set(handle.thread().clone());
            }
            Err(e) => log::error!("cannot start the stuck-call watchdog: {e}; inline calls are not timed"),
        }
    });
}

fn patrol(runtime: &Handle, timeout: Duration, retire: &Retire) {
    let (long_ms, running_ms) = (LONG_INLINE.as_millis() as u64, LONG_RUNNING_INLINE.as_millis() as u64);
    let timeout_ms = timeout.as_millis() as u64;
    // Per slot, the start of the call last demoted and last reported:
    // each call is acted on once.
    let (mut demoted, mut reported): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut last_busy = Instant::now();
    loop {
        std::thread::sleep(TICK);
        if any_inline_call() {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= LINGER {
            park_until_a_call();
            last_busy = Instant::now();
            continue;
        }
        let slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
        demoted.resize(slots.len(), 0);
        reported.resize(slots.len(), 0);
        let now = now_ms();
        for (i, slot) in slots.iter().enumerate() {
            let since = slot.since.load(Relaxed);
            if since == 0 || now - since < long_ms || (since == demoted[i] && since == reported[i]) {
                continue;
            }
            let call = slot.call.lock().unwrap_or_else(|e| e.into_inner());
            if slot.since.load(Relaxed) != since {
                continue; // it ended meanwhile
            }
            if demoted[i] != since && (now - since >= running_ms || !is_running(slot.tid)) {
                demoted[i] = since;
                if let Some((policy, route)) = &call.route {
                    policy.demote(*route);
                    log::debug!(
                        "{}: inline for over {LONG_INLINE:?}; its route goes back to the pool",
                        call.request
                    );
                }
                // A task from outside wakes a parked runtime thread, which
                // takes the I/O driver over when it parks again.
                drop(runtime.spawn(async {}));
            }
            if reported[i] != since && now - since > timeout_ms {
                reported[i] = since;
                log::error!(
                    "{} is still inside the app after the request timeout ({}s, option --timeout) in pid {}; it runs inline, so its runtime thread is blocked and no 504 can be sent",
                    call.request,
                    timeout.as_secs_f64(),
                    std::process::id()
                );
                drop(call);
                retire("a request is stuck inside the app (it runs inline)");
            }
        }
    }
}

/// Whether some runtime thread is inside an inline call.
fn any_inline_call() -> bool {
    let slots = SLOTS.lock().unwrap_or_else(|e| e.into_inner());
    slots.iter().any(|slot| slot.since.load(SeqCst) != 0)
}

/// Parks the watchdog until [`InlineCall::enter`] wakes it.
fn park_until_a_call() {
    PARKED.store(true, SeqCst);
    if any_inline_call() {
        PARKED.store(false, SeqCst); // one started as we were about to park
        return;
    }
    log::trace!("no inline calls for {LINGER:?}: the watchdog parks");
    while PARKED.load(SeqCst) {
        std::thread::park();
    }
}

/// Whether a thread of this process is running or waiting for a CPU
/// (state `R` in `/proc/self/task/<tid>/stat`), as opposed to asleep.
fn is_running(tid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // "tid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        == Some('R')
}
