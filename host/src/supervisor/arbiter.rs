//! The master's decisions as a plain state machine: [`Event`]s in (a
//! signal, a generation prepared, a worker's message or death, time
//! passing), [`Action`]s out (prepare, spawn, signal, tell, exit). It does
//! no I/O and reads no clock: [`super::master`] carries the actions out and
//! passes `now` in, so every decision is unit-tested without processes.
//!
//! - **Generations.** Start and every reload prepare a generation (stage and
//!   probe the apps, off the master's loop), start its workers, and promote
//!   it once all are ready: the previous generation then drains. A refused
//!   build, or a new worker that dies before it is ready, abandons the new
//!   generation; the serving one is untouched.
//! - **Crashes.** A worker that was ready and dies is replaced at once: a
//!   crash must never empty the server. Back-off (100 ms doubling to 10 s)
//!   applies only to replacements that die before they are ready (a build
//!   that cannot start). The request a worker died in is named, and a route
//!   that keeps killing workers is quarantined ([`super::quarantine`]).
//! - **Stop.** Graceful: every worker drains, then is killed at the
//!   graceful timeout. Immediate: killed now.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::notify::MasterMessage;
use super::quarantine::{Quarantine, QuarantinePolicy};
use crate::error::Failure;

/// Crashes remembered for back-off and crash-loop reports.
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Crashes within the window reported as a crash loop.
const CRASH_LOOP: usize = 5;
/// How often a crash loop is reported at most.
const CRASH_LOOP_REPORT_EVERY: Duration = Duration::from_secs(10);
/// The first back-off before restarting a worker that died starting.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Extra time after the graceful timeout before workers are killed.
const STOP_SLACK: Duration = Duration::from_secs(1);

/// A worker process, as the arbiter names it (the master maps it to a pid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

/// What the arbiter is told.
#[derive(Debug)]
pub enum Event {
    /// The master started: prepare the first generation.
    Start,
    /// Swap in the apps again (SIGHUP, `--reload`).
    Reload(&'static str),
    /// A generation's apps were staged and probed (or refused).
    Prepared(u64, Result<(), Failure>),
    /// A worker process was started with this pid.
    Spawned(WorkerId, u32),
    /// A worker process could not be started.
    SpawnFailed(WorkerId, String),
    /// A worker loaded its apps and accepts.
    Ready(WorkerId),
    /// A worker has a request stuck in its app and drains.
    Retire(WorkerId),
    /// A worker process ended.
    Exited(WorkerId, Death),
    /// Stop: drain (graceful) or kill (immediate).
    Stop {
        /// Kill now instead of draining.
        immediate: bool,
    },
    /// Time passed (a deadline from [`Arbiter::next_deadline`]).
    Tick,
}

/// How a worker process ended, and what it was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// Exit code or signal.
    pub exit: Exit,
    /// The requests it was running inside an app.
    pub inflight: Vec<InflightRequest>,
    /// Which of them the crash happened in, when the worker could tell.
    pub culprit: Option<usize>,
}

/// An exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

/// The exit code of a worker that retired because a request got stuck.
pub const EXIT_RETIRED: i32 = 75;

impl Exit {
    /// Whether this is how a worker ends when asked to (drained, retired).
    pub fn is_clean(self) -> bool {
        matches!(self, Exit::Code(0 | EXIT_RETIRED))
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(signal) => write!(f, "signal {signal} ({})", super::process::signal_name(*signal)),
        }
    }
}

/// A request a worker was running inside an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightRequest {
    /// The request method.
    pub method: String,
    /// The mount prefix (`/` for the app at the root).
    pub mount: String,
    /// `PATH_INFO`.
    pub path: String,
    /// How long it had been inside the app.
    pub running_for: Duration,
}

impl fmt::Display for InflightRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script_name = crate::server::app_gateway::mount::script_name(&self.mount);
        write!(
            f,
            "{} {script_name}{} (mount {}, {:.0} ms in the app)",
            self.method,
            self.path,
            self.mount,
            self.running_for.as_secs_f64() * 1e3
        )
    }
}

/// What the master is to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Stage and probe the apps for `generation` (off the event loop); the
    /// result comes back as [`Event::Prepared`].
    Prepare(u64),
    /// Give up the preparation in progress.
    CancelPrepare,
    /// Start a worker of `generation`.
    Spawn(WorkerId, u64),
    /// SIGTERM: stop accepting, drain, exit.
    Drain(WorkerId),
    /// SIGKILL.
    Kill(WorkerId),
    /// Send one worker a message.
    Tell(WorkerId, MasterMessage),
    /// Send every live worker a message.
    TellAll(MasterMessage),
    /// Tell systemd (`READY=1`, …).
    Notify(SystemdState),
    /// The first generation serves: say where.
    Announce,
    /// Close the listening sockets (stopping).
    CloseSockets,
    /// The master is done.
    Exit(Result<(), Failure>),
}

/// What systemd is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemdState {
    /// `READY=1`.
    Ready,
    /// `RELOADING=1`.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
}

/// The arbiter's settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Workers per generation.
    pub workers: usize,
    /// How long a new generation may take to become ready.
    pub start_timeout: Duration,
    /// How long draining workers get when stopping.
    pub graceful_timeout: Duration,
    /// When routes are quarantined.
    pub quarantine: QuarantinePolicy,
    /// The apps served, for log lines.
    pub apps: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Loading its apps.
    Starting,
    /// Accepting.
    Ready,
    /// Asked to stop accepting and drain (SIGTERM sent).
    Draining,
    /// Draining on its own after a stuck request.
    Retiring,
}

#[derive(Debug)]
struct Worker {
    generation: u64,
    phase: Phase,
    pid: u32,
    /// For a replacement: the worker it replaces and when that one stopped.
    replaces: Option<(u32, Instant)>,
}

#[derive(Debug)]
struct Pending {
    generation: u64,
    trigger: &'static str,
    since: Instant,
    deadline: Instant,
}

#[derive(Debug)]
struct Preparing {
    generation: u64,
    trigger: &'static str,
    since: Instant,
}

/// A delayed replacement.
#[derive(Debug)]
struct Restart {
    at: Instant,
    replaces: (u32, Instant),
}

/// The master's state.
#[derive(Debug)]
pub struct Arbiter {
    policy: Policy,
    workers: BTreeMap<WorkerId, Worker>,
    /// The serving generation; 0 before the first is ready.
    serving: u64,
    preparing: Option<Preparing>,
    pending: Option<Pending>,
    /// A reload asked for while another was under way: done after it.
    queued_reload: Option<&'static str>,
    /// When stopping: when the workers left get killed.
    stopping: Option<Instant>,
    restarts: Vec<Restart>,
    /// Deaths before ready, for back-off.
    early_deaths: VecDeque<Instant>,
    /// All crashes, for crash-loop reports.
    crashes: VecDeque<Instant>,
    last_crash_loop_report: Option<Instant>,
    quarantine: Quarantine,
    next_worker: u64,
    next_generation: u64,
}

impl Arbiter {
    /// An arbiter with no workers; send it [`Event::Start`].
    pub fn new(policy: Policy) -> Self {
        Arbiter {
            quarantine: Quarantine::new(policy.quarantine),
            policy,
            workers: BTreeMap::new(),
            serving: 0,
            preparing: None,
            pending: None,
            queued_reload: None,
            stopping: None,
            restarts: Vec::new(),
            early_deaths: VecDeque::new(),
            crashes: VecDeque::new(),
            last_crash_loop_report: None,
            next_worker: 1,
            next_generation: 1,
        }
    }

    /// The serving generation (0: none yet).
    pub fn serving(&self) -> u64 {
        self.serving
    }

    /// When the arbiter next needs an [`Event::Tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.restarts.iter().map(|r| r.at).min(),
            self.pending.as_ref().map(|p| p.deadline),
            self.stopping,
            self.quarantine.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Decides what to do about `event`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Start => self.begin_prepare("start", now, &mut actions),
            Event::Reload(trigger) => self.reload(trigger, now, &mut actions),
            Event::Prepared(generation, result) => self.prepared(generation, result, now, &mut actions),
            Event::Spawned(worker, pid) => {
                if let Some(w) = self.workers.get_mut(&worker) {
                    w.pid = pid;
                }
            }
            Event::SpawnFailed(worker, error) => self.spawn_failed(worker, &error, now, &mut actions),
            Event::Ready(worker) => self.ready(worker, now, &mut actions),
            Event::Retire(worker) => self.retire(worker, now, &mut actions),
            Event::Exited(worker, death) => self.exited(worker, &death, now, &mut actions),
            Event::Stop { immediate } => self.stop(immediate, now, &mut actions),
            Event::Tick => self.tick(now, &mut actions),
        }
        if self.stopping.is_some() && self.workers.is_empty() && !matches!(actions.last(), Some(Action::Exit(_))) {
            log::info!("stopped");
            actions.push(Action::Exit(Ok(())));
        }
        actions
    }

    fn reload(&mut self, trigger: &'static str, now: Instant, actions: &mut Vec<Action>) {
        if self.stopping.is_some() {
            return;
        }
        if self.preparing.is_some() || self.pending.is_some() {
            log::info!("{trigger}: a new generation is already starting; validating again once it is done");
            self.queued_reload = Some(trigger);
            return;
        }
        actions.push(Action::Notify(SystemdState::Reloading));
        log::info!("{trigger}: validating the apps for a new generation");
        self.begin_prepare(trigger, now, actions);
    }

    fn begin_prepare(&mut self, trigger: &'static str, now: Instant, actions: &mut Vec<Action>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.preparing = Some(Preparing {
            generation,
            trigger,
            since: now,
        });
        actions.push(Action::Prepare(generation));
    }

    /// A reload asked for meanwhile starts now.
    fn run_queued_reload(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(trigger) = self.queued_reload.take() {
            self.reload(trigger, now, actions);
        }
    }

    fn prepared(&mut self, generation: u64, result: Result<(), Failure>, now: Instant, actions: &mut Vec<Action>) {
        let Some(preparing) = self.preparing.take_if(|p| p.generation == generation) else {
            return; // cancelled meanwhile
        };
        if let Err(failure) = result {
            if self.serving == 0 {
                actions.push(Action::Exit(Err(failure)));
                return;
            }
            log::error!(
                "{}: not swapping, generation {} keeps serving: {failure}",
                preparing.trigger,
                self.serving
            );
            actions.push(Action::Notify(SystemdState::Ready));
            self.run_queued_reload(now, actions);
            return;
        }
        self.pending = Some(Pending {
            generation,
            trigger: preparing.trigger,
            since: preparing.since,
            deadline: now + self.policy.start_timeout,
        });
        for _ in 0..self.policy.workers {
            self.spawn(generation, None, now, actions);
        }
        log::info!(
            "generation {generation}: started {} workers ({})",
            self.policy.workers,
            preparing.trigger
        );
    }

    fn spawn(&mut self, generation: u64, replaces: Option<(u32, Instant)>, now: Instant, actions: &mut Vec<Action>) {
        let worker = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.workers.insert(
            worker,
            Worker {
                generation,
                phase: Phase::Starting,
                pid: 0,
                replaces,
            },
        );
        actions.push(Action::Spawn(worker, generation));
        // A new worker learns the quarantines in force.
        for (scope, until) in self.quarantine.active() {
            let left = until.saturating_duration_since(now);
            actions.push(Action::Tell(
                worker,
                MasterMessage::Quarantine {
                    scope: scope.clone(),
                    for_ms: left.as_millis() as u64,
                },
            ));
        }
        actions.push(Action::Tell(worker, MasterMessage::Synced));
    }

    fn spawn_failed(&mut self, worker: WorkerId, error: &str, now: Instant, actions: &mut Vec<Action>) {
        let Some(dead) = self.workers.remove(&worker) else {
            return;
        };
        if self.pending.as_ref().is_some_and(|p| p.generation == dead.generation) {
            self.abandon(
                Failure::internal(format!("cannot start a worker: {error}")),
                now,
                actions,
            );
        } else if dead.generation == self.serving {
            log::error!("cannot start a worker: {error}; retrying");
            self.schedule_restart(dead.replaces.unwrap_or((0, now)), now);
        }
    }

    fn ready(&mut self, worker: WorkerId, now: Instant, actions: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&worker) else { return };
        if w.phase != Phase::Starting {
            return;
        }
        w.phase = Phase::Ready;
        if let Some((dead, since)) = w.replaces.take() {
            log::info!(
                "worker pid {} replaced pid {dead}: serving {:.0} ms after it stopped",
                w.pid,
                now.saturating_duration_since(since).as_secs_f64() * 1e3
            );
        }
        let Some(pending) = &self.pending else { return };
        let generation = pending.generation;
        let ready = self
            .workers
            .values()
            .filter(|w| w.generation == generation && w.phase == Phase::Ready)
            .count();
        if ready >= self.policy.workers {
            self.promote(now, actions);
        }
    }

    /// The pending generation is ready: it serves, the old one drains.
    fn promote(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(pending) = self.pending.take() else { return };
        for (id, worker) in &mut self.workers {
            if worker.generation != pending.generation && matches!(worker.phase, Phase::Starting | Phase::Ready) {
                worker.phase = Phase::Draining;
                actions.push(Action::Drain(*id));
            }
        }
        let old = self.serving;
        self.serving = pending.generation;
        self.restarts.clear();
        if old == 0 {
            log::info!("serving with {} workers", self.policy.workers);
            actions.push(Action::Announce);
        } else {
            log::info!(
                "generation {} serving, {:.0} ms after {}; generation {old} drains",
                self.serving,
                now.saturating_duration_since(pending.since).as_secs_f64() * 1e3,
                pending.trigger
            );
        }
        actions.push(Action::Notify(SystemdState::Ready));
        self.run_queued_reload(now, actions);
    }

    /// Gives up the pending generation: its ready workers drain (they may
    /// hold requests from the shared sockets), the others are killed.
    fn abandon(&mut self, why: Failure, now: Instant, actions: &mut Vec<Action>) {
        let Some(pending) = self.pending.take() else { return };
        for (id, worker) in &mut self.workers {
            if worker.generation != pending.generation || matches!(worker.phase, Phase::Draining | Phase::Retiring) {
                continue;
            }
            actions.push(if worker.phase == Phase::Ready {
                Action::Drain(*id)
            } else {
                Action::Kill(*id)
            });
            worker.phase = Phase::Draining;
        }
        if self.serving == 0 {
            let failure = match why {
                Failure::Input(why) => Failure::Input(format!("the workers could not start: {why}")),
                Failure::Internal(why) => Failure::Internal(format!("the workers could not start: {why}")),
            };
            actions.push(Action::Exit(Err(failure)));
            return;
        }
        log::error!(
            "generation {} abandoned ({why}); generation {} keeps serving",
            pending.generation,
            self.serving
        );
        actions.push(Action::Notify(SystemdState::Ready));
        self.run_queued_reload(now, actions);
    }

    fn retire(&mut self, worker: WorkerId, now: Instant, actions: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&worker) else { return };
        if !matches!(w.phase, Phase::Starting | Phase::Ready) {
            return;
        }
        w.phase = Phase::Retiring;
        let (generation, pid) = (w.generation, w.pid);
        let live = generation == self.serving || self.pending.as_ref().is_some_and(|p| p.generation == generation);
        if live && self.stopping.is_none() {
            log::warn!("worker pid {pid} retires after a stuck request; starting its replacement");
            self.spawn(generation, Some((pid, now)), now, actions);
        }
    }

    fn exited(&mut self, worker: WorkerId, death: &Death, now: Instant, actions: &mut Vec<Action>) {
        let Some(dead) = self.workers.remove(&worker) else {
            return;
        };
        let pid = dead.pid;
        // Ended by the signal we sent it (before it could handle it).
        let stopped = dead.phase == Phase::Draining
            && matches!(death.exit, Exit::Signal(libc::SIGTERM | libc::SIGKILL))
            && death.inflight.is_empty();
        if !death.exit.is_clean() && !stopped {
            self.crashed(pid, &dead, death, now, actions);
        } else if matches!(dead.phase, Phase::Draining | Phase::Retiring) {
            log::info!(
                "worker pid {pid} (generation {}) finished draining ({})",
                dead.generation,
                death.exit
            );
        }
        if self.stopping.is_some() {
            return;
        }
        let pending = self.pending.as_ref().is_some_and(|p| p.generation == dead.generation);
        match dead.phase {
            Phase::Draining | Phase::Retiring => {}
            Phase::Starting if pending => {
                log::error!(
                    "worker pid {pid} of the new generation died before it took over ({})",
                    death.exit
                );
                let why = format!("worker pid {pid} died before it took over ({})", death.exit);
                self.abandon(Failure::Input(why), now, actions);
            }
            // Ready, in the serving or the pending generation: never wait.
            Phase::Ready if pending || dead.generation == self.serving => {
                self.spawn(dead.generation, Some((pid, now)), now, actions);
            }
            Phase::Starting if dead.generation == self.serving => {
                self.schedule_restart((pid, now), now);
            }
            Phase::Ready | Phase::Starting => {}
        }
    }

    /// Logs a worker's death with the requests it held, counts it, and
    /// quarantines the route that caused it if it keeps doing so.
    fn crashed(&mut self, pid: u32, dead: &Worker, death: &Death, now: Instant, actions: &mut Vec<Action>) {
        let culprit = death.culprit.and_then(|i| death.inflight.get(i));
        let doing = match (culprit, death.inflight.len()) {
            (Some(request), _) => format!(" in {request}"),
            (None, 0) => " with no request inside an app".to_owned(),
            (None, n) => {
                let list: Vec<String> = death.inflight.iter().take(8).map(ToString::to_string).collect();
                format!(" with {n} requests inside an app: {}", list.join("; "))
            }
        };
        log::error!(
            "worker pid {pid} (generation {}) serving {} died: {}{doing}",
            dead.generation,
            self.policy.apps,
            death.exit
        );
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        let report_due = self
            .last_crash_loop_report
            .is_none_or(|t| now.saturating_duration_since(t) >= CRASH_LOOP_REPORT_EVERY);
        if self.crashes.len() >= CRASH_LOOP && report_due {
            self.last_crash_loop_report = Some(now);
            log::error!(
                "crash loop: {} worker crashes in the last {}s (fix the app, then SIGHUP)",
                self.crashes.len(),
                CRASH_WINDOW.as_secs()
            );
        }
        let Some(request) = culprit else { return };
        if let Some(began) = self.quarantine.record_crash(&request.mount, &request.path, now) {
            let cool_off = began.until.saturating_duration_since(now);
            let paths = if began.scope.path.is_some() {
                ""
            } else {
                " (on several paths)"
            };
            log::error!(
                "quarantine: requests to {} crashed workers {} times in {}s{paths}; answering them 503 for {}s without calling the app (option --quarantine-after)",
                began.scope,
                began.crashes,
                self.policy.quarantine.window.as_secs(),
                cool_off.as_secs()
            );
            actions.push(Action::TellAll(MasterMessage::Quarantine {
                scope: began.scope,
                for_ms: cool_off.as_millis() as u64,
            }));
        }
    }

    /// Back-off over the recent deaths of workers that never became ready.
    fn schedule_restart(&mut self, replaces: (u32, Instant), now: Instant) {
        while self
            .early_deaths
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > CRASH_WINDOW)
        {
            self.early_deaths.pop_front();
        }
        self.early_deaths.push_back(now);
        let doublings = (self.early_deaths.len() - 1).min(16) as u32;
        let delay = FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF);
        log::warn!(
            "a replacement worker died before it was ready: next try in {} ms ({} such deaths in the last {}s)",
            delay.as_millis(),
            self.early_deaths.len(),
            CRASH_WINDOW.as_secs()
        );
        self.restarts.push(Restart {
            at: now + delay,
            replaces,
        });
    }

    fn stop(&mut self, immediate: bool, now: Instant, actions: &mut Vec<Action>) {
        if immediate {
            for id in self.workers.keys() {
                actions.push(Action::Kill(*id));
            }
            self.workers.clear();
            actions.push(Action::Exit(Ok(())));
            return;
        }
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now + self.policy.graceful_timeout + STOP_SLACK);
        log::info!("stopping: draining {} workers", self.workers.len());
        actions.push(Action::Notify(SystemdState::Stopping));
        actions.push(Action::CloseSockets);
        if self.preparing.take().is_some() {
            actions.push(Action::CancelPrepare);
        }
        self.pending = None;
        self.queued_reload = None;
        self.restarts.clear();
        for (id, worker) in &mut self.workers {
            if worker.phase != Phase::Draining {
                worker.phase = Phase::Draining;
                actions.push(Action::Drain(*id));
            }
        }
    }

    fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if let Some(deadline) = self.stopping {
            if now >= deadline {
                log::warn!("graceful_timeout passed with workers still busy: killing them");
                for id in self.workers.keys() {
                    actions.push(Action::Kill(*id));
                }
                self.workers.clear();
                actions.push(Action::Exit(Ok(())));
            }
            return;
        }
        for scope in self.quarantine.expire(now) {
            log::info!("quarantine of {scope} is over: calling the app again");
            actions.push(Action::TellAll(MasterMessage::Release { scope }));
        }
        if self.pending.as_ref().is_some_and(|p| now >= p.deadline) {
            let why = format!(
                "its workers were not ready within {}s",
                self.policy.start_timeout.as_secs()
            );
            self.abandon(Failure::Input(why), now, actions);
        }
        let (due, later): (Vec<Restart>, Vec<Restart>) = self.restarts.drain(..).partition(|r| r.at <= now);
        self.restarts = later;
        for restart in due {
            if self.serving_count() < self.policy.workers {
                self.spawn(self.serving, Some(restart.replaces), now, actions);
            }
        }
    }

    /// Workers of the serving generation that are or will be accepting.
    fn serving_count(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.generation == self.serving && matches!(w.phase, Phase::Starting | Phase::Ready))
            .count()
    }
}

#[cfg(test)]
mod tests;
