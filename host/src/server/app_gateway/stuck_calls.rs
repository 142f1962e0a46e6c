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
//! A slot's life: [`InlineCall::enter`] writes a *mark* (the call's start
//! and a per-slot sequence number) into the slot of the thread it runs on;
//! dropping the guard clears that slot only if it still holds that mark,
//! whichever thread drops it. So a guard dropped on another thread, or
//! after a newer call began on the same thread, can neither leave a stale
//! start behind nor end someone else's call. The watchdog's judgement
//! ([`Patrol::inspect`]) is a pure function of the marks and a clock, and
//! a call that began after the watchdog read its clock is never "older"
//! than zero.
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
use crate::server::state::Retire;

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

/// Bits of a mark that hold the slot's call sequence number; the rest hold
/// the call's start, in ms since [`epoch`] plus one.
const SEQ_BITS: u32 = 16;

/// App calls found still inside the app past the request timeout (inline
/// or on the pool), for `/metrics`.
static STUCK_REPORTS: AtomicU64 = AtomicU64::new(0);

/// Counts an app call found past the request timeout.
pub fn count_stuck() {
    STUCK_REPORTS.fetch_add(1, Relaxed);
}

/// How many app calls were found past the request timeout.
pub fn stuck_reports() -> u64 {
    STUCK_REPORTS.load(Relaxed)
}

/// One runtime thread's current inline call.
struct Slot {
    /// The runtime thread's id, to read its state.
    tid: libc::pid_t,
    /// The current call's mark ([`mark`]); 0 when idle.
    mark: AtomicU64,
    /// The last sequence number used, so each call's mark is unique.
    seq: AtomicU64,
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

/// A call's mark: its start (ms since [`epoch`], plus one) and its slot's
/// sequence number, so two calls never share one.
fn mark(start_ms: u64, seq: u64) -> u64 {
    (start_ms + 1) << SEQ_BITS | (seq & ((1 << SEQ_BITS) - 1))
}

/// When the call with `mark` began (ms since [`epoch`]).
fn start_of(mark: u64) -> u64 {
    (mark >> SEQ_BITS) - 1
}

/// The slots of one process's runtime threads.
#[derive(Default)]
struct Slots(Mutex<Vec<Arc<Slot>>>);

impl Slots {
    fn add(&self, tid: libc::pid_t) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            tid,
            mark: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            call: Mutex::default(),
        });
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
        slot
    }

    fn snapshot(&self) -> Vec<Arc<Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn any_busy(&self) -> bool {
        let slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().any(|slot| slot.mark.load(SeqCst) != 0)
    }
}

/// Every runtime thread's slot.
static SLOTS: OnceLock<Slots> = OnceLock::new();

fn slots() -> &'static Slots {
    SLOTS.get_or_init(Slots::default)
}

/// The watchdog thread, once started.
static WATCHDOG: OnceLock<Thread> = OnceLock::new();

/// Set while the watchdog is parked (or about to park): the next call to
/// start must wake it.
static PARKED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SLOT: Arc<Slot> = {
        // SAFETY: gettid has no preconditions and cannot fail.
        slots().add(unsafe { libc::gettid() })
    };
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Marks a thread as inside an inline call until dropped (on any thread).
#[must_use = "the call counts as running until this is dropped"]
pub struct InlineCall {
    slot: Arc<Slot>,
    mark: u64,
}

impl InlineCall {
    /// Marks the start of an inline call (or a poll of an async app's
    /// future) for `method path` on this thread; `route`, the mount's
    /// policy and the route's record in it, is demoted if it runs long.
    pub fn enter(method: &str, path: &str, route: Option<(&Arc<CallPolicy>, RouteId)>) -> InlineCall {
        InlineCall::enter_at(Instant::now(), method, path, route)
    }

    /// [`InlineCall::enter`] for a call that began `at` (a reading of the
    /// clock the caller already has).
    pub fn enter_at(at: Instant, method: &str, path: &str, route: Option<(&Arc<CallPolicy>, RouteId)>) -> InlineCall {
        let at_ms = at.saturating_duration_since(epoch()).as_millis() as u64;
        let call = SLOT.with(|slot| InlineCall::begin(slot, method, path, route, at_ms));
        if PARKED.load(SeqCst) && PARKED.swap(false, SeqCst) {
            if let Some(watchdog) = WATCHDOG.get() {
                watchdog.unpark();
            }
        }
        call
    }

    fn begin(
        slot: &Arc<Slot>,
        method: &str,
        path: &str,
        route: Option<(&Arc<CallPolicy>, RouteId)>,
        now_ms: u64,
    ) -> InlineCall {
        let mut call = slot.call.lock().unwrap_or_else(|e| e.into_inner());
        call.request.clear();
        call.request.push_str(method);
        call.request.push(' ');
        call.request.push_str(path);
        match (&mut call.route, route) {
            // The same mount as last time on this thread: no refcount traffic.
            (Some((known, id)), Some((policy, route))) if Arc::ptr_eq(known, policy) => *id = route,
            (other, route) => *other = route.map(|(policy, route)| (policy.clone(), route)),
        }
        let mark = mark(now_ms, slot.seq.fetch_add(1, Relaxed) + 1);
        // SeqCst with the watchdog's own store-then-load of PARKED and the
        // marks: either it sees this call, or this sees it parked.
        slot.mark.store(mark, SeqCst);
        InlineCall {
            slot: slot.clone(),
            mark,
        }
    }
}

impl Drop for InlineCall {
    fn drop(&mut self) {
        // Only this call's own mark is cleared: a newer call on the slot
        // keeps its own.
        let _ = self.slot.mark.compare_exchange(self.mark, 0, SeqCst, Relaxed);
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
            .spawn(move || patrol_forever(&runtime, timeout, &retire));
        match spawned {
            Ok(handle) => {
                let _ = WATCHDOG.set(handle.thread().clone());
            }
            Err(e) => log::error!("cannot start the stuck-call watchdog: {e}; inline calls are not timed"),
        }
    });
}

fn patrol_forever(runtime: &Handle, timeout: Duration, retire: &Retire) {
    let mut patrol = Patrol::new(timeout);
    let mut last_busy = Instant::now();
    loop {
        std::thread::sleep(TICK);
        if slots().any_busy() {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= LINGER {
            park_until_a_call();
            last_busy = Instant::now();
            continue;
        }
        for finding in patrol.inspect(&slots().snapshot(), now_ms, is_running) {
            match finding {
                Finding::Long { request, route } => {
                    if let Some((policy, route)) = route {
                        policy.demote(route);
                        log::debug!("{request}: inline for over {LONG_INLINE:?}; its route goes back to the pool");
                    }
                    // A task from outside wakes a parked runtime thread, which
                    // takes the I/O driver over when it parks again.
                    drop(runtime.spawn(async {}));
                }
                Finding::Stuck { request } => {
                    count_stuck();
                    log::error!(
                        "{request} is still inside the app after the request timeout ({}s, option --timeout) in pid {}; it runs inline, so its runtime thread is blocked and no 504 can be sent",
                        timeout.as_secs_f64(),
                        std::process::id()
                    );
                    retire("a request is stuck inside the app (it runs inline)");
                }
            }
        }
    }
}

/// What the watchdog found about one call.
enum Finding {
    /// Inline for long: demote its route.
    Long {
        request: String,
        route: Option<(Arc<CallPolicy>, RouteId)>,
    },
    /// Inside the app past the request timeout.
    Stuck { request: String },
}

/// The watchdog's memory: per slot, the mark of the call last demoted and
/// last reported, so each call is acted on once.
struct Patrol {
    timeout_ms: u64,
    demoted: Vec<u64>,
    reported: Vec<u64>,
}

impl Patrol {
    fn new(timeout: Duration) -> Patrol {
        Patrol {
            timeout_ms: timeout.as_millis() as u64,
            demoted: Vec::new(),
            reported: Vec::new(),
        }
    }

    /// Looks at every slot once. `now` is read after each slot's mark, so
    /// a call is never judged against a clock read before it began.
    fn inspect(
        &mut self,
        slots: &[Arc<Slot>],
        now: impl Fn() -> u64,
        is_running: impl Fn(libc::pid_t) -> bool,
    ) -> Vec<Finding> {
        let (long_ms, running_ms) = (LONG_INLINE.as_millis() as u64, LONG_RUNNING_INLINE.as_millis() as u64);
        self.demoted.resize(slots.len(), 0);
        self.reported.resize(slots.len(), 0);
        let mut findings = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let mark = slot.mark.load(SeqCst);
            if mark == 0 || (mark == self.demoted[i] && mark == self.reported[i]) {
                continue;
            }
            let age = now().saturating_sub(start_of(mark));
            if age < long_ms {
                continue;
            }
            let call = slot.call.lock().unwrap_or_else(|e| e.into_inner());
            if slot.mark.load(SeqCst) != mark {
                continue; // it ended meanwhile
            }
            if self.demoted[i] != mark && (age >= running_ms || !is_running(slot.tid)) {
                self.demoted[i] = mark;
                findings.push(Finding::Long {
                    request: call.request.clone(),
                    route: call.route.clone(),
                });
            }
            if self.reported[i] != mark && age > self.timeout_ms {
                self.reported[i] = mark;
                findings.push(Finding::Stuck {
                    request: call.request.clone(),
                });
            }
        }
        findings
    }
}

/// Parks the watchdog until [`InlineCall::enter`] wakes it.
fn park_until_a_call() {
    PARKED.store(true, SeqCst);
    if slots().any_busy() {
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;
    use crate::server::app_gateway::call_policy::{CallReport, Placement};

    /// A slot of a thread of its own (not the process's registry), and a
    /// policy with one route.
    fn setup() -> (Arc<Slot>, Arc<CallPolicy>, RouteId) {
        let slot = Slots::default().add(1);
        let policy = Arc::new(CallPolicy::default());
        let route = policy.route_of("/x");
        (slot, policy, route)
    }

    fn enter_at(slot: &Arc<Slot>, policy: &Arc<CallPolicy>, route: RouteId, at_ms: u64) -> InlineCall {
        InlineCall::begin(slot, "POST", "/echo/x", Some((policy, route)), at_ms)
    }

    /// What a patrol finds at `now_ms`: (demotions, stuck reports).
    fn inspect(patrol: &mut Patrol, slot: &Arc<Slot>, now_ms: u64) -> (usize, usize) {
        let found = patrol.inspect(std::slice::from_ref(slot), || now_ms, |_| false);
        let stuck = found.iter().filter(|f| matches!(f, Finding::Stuck { .. })).count();
        (found.len() - stuck, stuck)
    }

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn a_call_entered_and_left_leaves_an_idle_slot() {
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        drop(enter_at(&slot, &policy, route, 1_000));
        assert_eq!(slot.mark.load(SeqCst), 0);
        assert_eq!(inspect(&mut patrol, &slot, 100_000), (0, 0));
    }

    #[test]
    fn a_call_that_began_after_the_clock_was_read_is_not_ancient() {
        // The watchdog read its clock at 1 000 ms; a call began at 1 001.
        // Unsigned arithmetic once made its age 2^64 ms: stuck at once.
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        let _call = enter_at(&slot, &policy, route, 1_001);
        assert_eq!(inspect(&mut patrol, &slot, 1_000), (0, 0));
        assert_eq!(inspect(&mut patrol, &slot, 1_003), (0, 0));
        // Only a call that really runs long is acted on, once each.
        assert_eq!(inspect(&mut patrol, &slot, 1_010), (1, 0));
        assert_eq!(inspect(&mut patrol, &slot, 31_002), (0, 1));
        assert_eq!(inspect(&mut patrol, &slot, 40_000), (0, 0));
    }

    #[test]
    fn a_guard_dropped_on_another_thread_ends_its_own_call() {
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        let call = enter_at(&slot, &policy, route, 1_000);
        std::thread::spawn(move || drop(call)).join().unwrap();
        assert_eq!(slot.mark.load(SeqCst), 0, "the call's own slot is idle");
        assert_eq!(inspect(&mut patrol, &slot, 100_000), (0, 0));
    }

    #[test]
    fn a_stale_guard_never_ends_a_newer_call() {
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        let old = enter_at(&slot, &policy, route, 1_000);
        let new = enter_at(&slot, &policy, route, 1_000);
        drop(old);
        assert_ne!(slot.mark.load(SeqCst), 0, "the newer call still runs");
        assert_eq!(inspect(&mut patrol, &slot, 40_000), (1, 1));
        drop(new);
        assert_eq!(slot.mark.load(SeqCst), 0);
    }

    /// A future that enters an inline call, then waits (a guard held
    /// across a pending point), as a careless async poll would.
    struct HoldsAGuard<'a> {
        slot: &'a Arc<Slot>,
        policy: &'a Arc<CallPolicy>,
        route: RouteId,
        guard: Option<InlineCall>,
        polls: Cell<u32>,
    }

    impl Future for HoldsAGuard<'_> {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.polls.set(self.polls.get() + 1);
            let (slot, policy, route) = (self.slot, self.policy, self.route);
            self.guard.get_or_insert_with(|| enter_at(slot, policy, route, 2_000));
            Poll::Pending
        }
    }

    #[test]
    fn a_future_dropped_mid_call_leaves_no_stale_start() {
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        let mut future = Box::pin(HoldsAGuard {
            slot: &slot,
            policy: &policy,
            route,
            guard: None,
            polls: Cell::new(0),
        });
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        assert!(future.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        assert_ne!(slot.mark.load(SeqCst), 0);
        drop(future);
        assert_eq!(slot.mark.load(SeqCst), 0);
        assert_eq!(inspect(&mut patrol, &slot, 100_000), (0, 0));
    }

    #[test]
    fn a_route_moved_to_the_pool_mid_call_is_reported_once_and_then_forgotten() {
        let (slot, policy, route) = setup();
        let mut patrol = Patrol::new(TIMEOUT);
        for _ in 0..64 {
            policy.record(
                route,
                "/x",
                CallReport {
                    placement: Placement::Pool,
                    took: Duration::from_micros(10),
                    whole: true,
                },
            );
        }
        let call = enter_at(&slot, &policy, route, 5_000);
        let found = patrol.inspect(std::slice::from_ref(&slot), || 5_060, |_| true);
        assert_eq!(found.len(), 1, "demoted once");
        if let Finding::Long {
            route: Some((policy, id)),
            ..
        } = &found[0]
        {
            policy.demote(*id);
        }
        assert_eq!(policy.place(route), Placement::Pool, "the route left the inline path");
        drop(call);
        // Later, quick inline calls on the same slot: never stuck.
        for at in [10_000, 50_000, 90_000] {
            drop(enter_at(&slot, &policy, route, at));
            assert_eq!(inspect(&mut patrol, &slot, at + 40_000), (0, 0));
        }
    }
}
