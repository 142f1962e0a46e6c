//! The master: owns the listening sockets, runs generations of worker
//! processes, replaces dead workers with back-off, and swaps in new app
//! builds without dropping requests. It never loads app code: apps are
//! staged (copied) here and checked in throw-away probe processes.
//!
//! A swap (SIGHUP, or `--reload` noticing a rebuilt file): stage → probe →
//! start a new generation → wait until every new worker is ready → only then
//! tell the old generation to stop accepting and drain. The listening
//! sockets are shared by all generations, so no connection waits on a
//! worker that is going away. If the probe refuses the build or a new worker
//! dies before it is ready, the old generation keeps serving.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::notify::{reloading_message, sd_notify, WorkerMessage};
use super::probe;
use super::process::{describe_exit, send_signal, spawn_worker, Spawned};
use super::staging::Stage;
use super::worker::EXIT_RETIRED;
use crate::app_spec::LibraryRef;
use crate::config::{BindAddr, Options};
use crate::error::Failure;
use crate::server::connection::{bind_socket, inherited_sockets, socket_url};
use crate::server::static_files::StaticSite;
use crate::signals::{Event, Signals};

/// How long a new generation may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Crashes remembered for back-off and crash-loop detection.
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// Crashes within the window that count as a crash loop.
const CRASH_LOOP: usize = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Runs the master until SIGINT/SIGTERM (graceful) or SIGQUIT (immediate).
pub fn run(settings: Options) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let mut master = Master::new(settings)?;
        master.run().await
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Draining,
}

struct Worker {
    generation: u64,
    phase: Phase,
    /// For a replacement: which worker died and when.
    replaces: Option<(u32, Instant)>,
}

/// A generation that is starting and not yet serving.
struct Pending {
    generation: u64,
    config: PathBuf,
    /// What asked for it and when, for the log.
    trigger: &'static str,
    since: Instant,
    deadline: Instant,
}

enum MasterEvent {
    Message(u32, WorkerMessage),
    Exited(u32, ExitStatus),
    LibraryChanged,
}

struct Master {
    settings: Options,
    exe: PathBuf,
    sockets: Vec<OwnedFd>,
    owned_unix_paths: Vec<PathBuf>,
    stage: Stage,
    workers: HashMap<u32, Worker>,
    /// The serving generation (0: none yet) and its worker config.
    generation: u64,
    config: PathBuf,
    next_generation: u64,
    pending: Option<Pending>,
    restarts: Vec<(Instant, Option<(u32, Instant)>)>,
    crashes: VecDeque<Instant>,
    events_tx: mpsc::Sender<MasterEvent>,
    events_rx: mpsc::Receiver<MasterEvent>,
}

impl Master {
    fn new(settings: Options) -> Result<Master, Failure> {
        let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find our own binary: {e}")))?;
        if let Some(dir) = settings.static_root() {
            StaticSite::new(dir).map_err(Failure::input)?;
        }
        let (sockets, owned_unix_paths) = match inherited_sockets() {
            Some(sockets) => (sockets, Vec::new()),
            None => {
                let sockets = settings
                    .bind
                    .iter()
                    .map(bind_socket)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Failure::input)?;
                let unix = settings
                    .bind
                    .iter()
                    .filter_map(|b| match b {
                        BindAddr::Unix(path) => Some(path.clone()),
                        BindAddr::Tcp(_) => None,
                    })
                    .collect();
                (sockets, unix)
            }
        };
        let stage = Stage::create().map_err(|e| Failure::internal(format!("cannot create the staging folder: {e}")))?;
        let (events_tx, events_rx) = mpsc::channel(256);
        Ok(Master {
            settings,
            exe,
            sockets,
            owned_unix_paths,
            stage,
            workers: HashMap::new(),
            generation: 0,
            config: PathBuf::new(),
            next_generation: 1,
            pending: None,
            restarts: Vec::new(),
            crashes: VecDeque::new(),
            events_tx,
            events_rx,
        })
    }

    async fn run(&mut self) -> Result<(), Failure> {
        let mut signals = Signals::install().map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))?;
        self.start_generation("start").await.map_err(Failure::input)?;
        if self.settings.reload {
            let (tx, mut rx) = mpsc::channel(1);
            tokio::spawn(super::watch::watch(self.library_sources(), tx));
            let events = self.events_tx.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_some() {
                    if events.send(MasterEvent::LibraryChanged).await.is_err() {
                        return;
                    }
                }
            });
        }
        loop {
            let next_restart = self.restarts.first().map(|(at, _)| *at);
            let pending_deadline = self.pending.as_ref().map(|p| p.deadline);
            tokio::select! {
                event = signals.next() => match event {
                    Event::GracefulStop => return self.stop(&mut signals).await,
                    Event::ImmediateStop => {
                        self.kill_all();
                        return Ok(());
                    }
                    Event::Reload => self.reload("SIGHUP").await,
                },
                Some(event) = self.events_rx.recv() => self.on_event(event).await?,
                () = sleep_until(next_restart.unwrap_or_else(Instant::now).into()), if next_restart.is_some() => {
                    let (_, replaces) = self.restarts.remove(0);
                    self.restart_one(replaces);
                }
                () = sleep_until(pending_deadline.unwrap_or_else(Instant::now).into()), if pending_deadline.is_some() => {
                    self.abandon_pending(&format!("its workers were not ready within {}s", START_TIMEOUT.as_secs()))?;
                }
            }
        }
    }

    /// The user's library files, resolved (what `--reload` watches).
    fn library_sources(&self) -> Vec<PathBuf> {
        self.settings
            .apps()
            .iter()
            .filter_map(|m| m.app.library.resolve(self.settings.plugin_dirs()).ok())
            .collect()
    }

    /// Starts the first generation and waits until it serves: until then
    /// there is nothing to keep running if it fails.
    async fn start_generation(&mut self, trigger: &'static str) -> Result<(), String> {
        self.begin_generation(trigger).await?;
        while self.generation == 0 {
            let deadline = self.pending.as_ref().map_or_else(Instant::now, |p| p.deadline);
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.on_event(event).await.map_err(|f| f.message().to_owned())?,
                () = sleep_until(deadline.into()) => {
                    self.abandon_pending("its workers were not ready in time").map_err(|f| f.message().to_owned())?;
                }
            }
        }
        Ok(())
    }

    /// Stages and probes every app, writes the workers' config and starts a
    /// new generation; it serves once all its workers are ready.
    async fn begin_generation(&mut self, trigger: &'static str) -> Result<(), String> {
        let since = Instant::now();
        let generation = self.next_generation;
        self.next_generation += 1;
        let config = self.prepare(generation).await?;
        self.pending = Some(Pending {
            generation,
            config: config.clone(),
            trigger,
            since,
            deadline: since + START_TIMEOUT,
        });
        for _ in 0..self.settings.workers {
            if let Err(e) = self.spawn(generation, &config, None) {
                self.abandon_pending(&e).map_err(|f| f.message().to_owned())?;
                return Err(e);
            }
        }
        log::info!(
            "generation {generation}: started {} workers ({trigger})",
            self.settings.workers
        );
        Ok(())
    }

    async fn prepare(&mut self, generation: u64) -> Result<PathBuf, String> {
        let mut staged = self.settings.clone();
        let plugin_dirs = self.settings.plugin_dirs().to_vec();
        let mut probed: Vec<String> = Vec::new();
        for app in staged.app_specs_mut() {
            let source = app.library.resolve(&plugin_dirs).map_err(|looked| {
                let places: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
                format!(
                    "cannot load app {app}: library not found (looked for {}); build it first, or pass its path or --plugin-dir",
                    places.join(", ")
                )
            })?;
            let copy = self
                .stage
                .stage(&source)
                .map_err(|e| format!("cannot stage {}: {e}", source.display()))?;
            let original = app.to_string();
            app.library = LibraryRef::Path(copy.clone());
            let staged_spec = app.to_string();
            if !probed.contains(&staged_spec) {
                probe::run(&self.exe, app, &plugin_dirs, probe::PROBE_TIMEOUT, Some("error"))
                    .await
                    .verdict
                    .map_err(|reason| {
                        reason
                            .message()
                            .replace(&copy.display().to_string(), &source.display().to_string())
                    })
                    .map_err(|reason| format!("{reason} [checking {original}]"))?;
                probed.push(staged_spec);
            }
        }
        let text = staged.to_toml();
        let path = self.stage.dir().join(format!("generation-{generation}.toml"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    fn spawn(&mut self, generation: u64, config: &Path, replaces: Option<(u32, Instant)>) -> Result<u32, String> {
        let Spawned { mut child, notify } =
            spawn_worker(&self.exe, config, &self.sockets).map_err(|e| format!("cannot start a worker: {e}"))?;
        let pid = child.id().ok_or("a new worker vanished at once")?;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(notify).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(message) = WorkerMessage::parse(&line) {
                    let _ = events.send(MasterEvent::Message(pid, message)).await;
                }
            }
        });
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(MasterEvent::Exited(pid, status)).await;
            }
        });
        self.workers.insert(
            pid,
            Worker {
                generation,
                phase: Phase::Starting,
                replaces,
            },
        );
        Ok(pid)
    }

    async fn on_event(&mut self, event: MasterEvent) -> Result<(), Failure> {
        match event {
            MasterEvent::Message(pid, WorkerMessage::Ready) => self.on_ready(pid),
            MasterEvent::Message(pid, WorkerMessage::Retire) => {
                if let Some(worker) = self.workers.get_mut(&pid) {
                    worker.phase = Phase::Draining;
                    if worker.generation == self.generation {
                        log::warn!("worker pid {pid} retires after a stuck request; starting its replacement");
                        self.restart_one(Some((pid, Instant::now())));
                    }
                }
            }
            MasterEvent::Exited(pid, status) => self.on_exit(pid, status)?,
            MasterEvent::LibraryChanged => self.reload("--reload: a library file changed").await,
        }
        Ok(())
    }

    fn on_ready(&mut self, pid: u32) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        worker.phase = Phase::Ready;
        if let Some((dead, since)) = worker.replaces.take() {
            log::info!(
                "worker pid {pid} replaced pid {dead}: serving {:.0} ms after it stopped",
                since.elapsed().as_secs_f64() * 1e3
            );
        }
        let Some(pending) = &self.pending else { return };
        let generation = pending.generation;
        let ready = self
            .workers
            .values()
            .filter(|w| w.generation == generation && w.phase == Phase::Ready)
            .count();
        if ready >= self.settings.workers {
            self.promote();
        }
    }

    /// The pending generation is ready: it serves, the old one drains.
    fn promote(&mut self) {
        let Some(pending) = self.pending.take() else { return };
        let old = self.generation;
        for (pid, worker) in &mut self.workers {
            if worker.generation != pending.generation && worker.phase != Phase::Draining {
                worker.phase = Phase::Draining;
                send_signal(*pid, libc::SIGTERM);
            }
        }
        self.generation = pending.generation;
        self.config = pending.config;
        self.restarts.clear();
        let elapsed_ms = pending.since.elapsed().as_secs_f64() * 1e3;
        if old == 0 {
            for socket in &self.sockets {
                let url = socket_url(socket);
                log::info!("serving on {url} with {} workers", self.settings.workers);
                println!("Serving on {url}");
            }
        } else {
            log::info!(
                "generation {} serving, {elapsed_ms:.0} ms after {}; generation {old} drains",
                self.generation,
                pending.trigger
            );
        }
        sd_notify("READY=1");
    }

    fn abandon_pending(&mut self, why: &str) -> Result<(), Failure> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        for (pid, worker) in &mut self.workers {
            if worker.generation == pending.generation {
                // A ready worker may already be serving requests from the
                // shared sockets: let it finish them. One still starting has none.
                let signal = if worker.phase == Phase::Ready {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                };
                worker.phase = Phase::Draining;
                send_signal(*pid, signal);
            }
        }
        if self.generation == 0 {
            return Err(Failure::input(format!("the workers could not start: {why}")));
        }
        log::error!(
            "generation {} abandoned ({why}); generation {} keeps serving",
            pending.generation,
            self.generation
        );
        sd_notify("READY=1");
        Ok(())
    }

    async fn reload(&mut self, trigger: &'static str) {
        if self.pending.is_some() {
            log::warn!("{trigger}: a new generation is already starting; ignored");
            return;
        }
        sd_notify(&reloading_message());
        log::info!("{trigger}: validating the apps for a new generation");
        if let Err(reason) = self.begin_generation(trigger).await {
            log::error!(
                "{trigger}: not swapping, generation {} keeps serving: {reason}",
                self.generation
            );
            sd_notify("READY=1");
        }
    }

    fn on_exit(&mut self, pid: u32, status: ExitStatus) -> Result<(), Failure> {
        let Some(worker) = self.workers.remove(&pid) else {
            return Ok(());
        };
        let how = describe_exit(status);
        if worker.phase == Phase::Draining {
            let ended = if status.success() {
                "finished draining"
            } else {
                "stopped"
            };
            log::info!("worker pid {pid} (generation {}) {ended} ({how})", worker.generation);
            return Ok(());
        }
        if self.pending.as_ref().is_some_and(|p| p.generation == worker.generation) {
            log::error!("worker pid {pid} of the new generation died before it took over ({how})");
            return self.abandon_pending(&format!("worker pid {pid} died before it took over ({how})"));
        }
        if worker.generation != self.generation {
            return Ok(());
        }
        if status.code() == Some(i32::from(EXIT_RETIRED)) {
            log::info!("worker pid {pid} retired; replacing it");
            self.restart_one(Some((pid, Instant::now())));
            return Ok(());
        }
        log::error!("worker pid {pid} serving {} died: {how}", self.app_names());
        self.schedule_restart(pid);
        Ok(())
    }

    fn app_names(&self) -> String {
        let names: Vec<String> = self.settings.apps().iter().map(|m| m.app.to_string()).collect();
        if names.is_empty() {
            "the static site".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// Exponential back-off over the crashes of the last minute.
    fn schedule_restart(&mut self, dead: u32) {
        let now = Instant::now();
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        let crashes = self.crashes.len();
        let delay = FIRST_BACKOFF
            .saturating_mul(1 << (crashes - 1).min(16))
            .min(MAX_BACKOFF);
        if crashes >= CRASH_LOOP {
            log::error!(
                "crash loop: {crashes} worker crashes in the last {}s; next restart in {:.1}s (fix the app, then SIGHUP)",
                CRASH_WINDOW.as_secs(),
                delay.as_secs_f64()
            );
        } else {
            log::info!("replacing worker pid {dead} in {} ms", delay.as_millis());
        }
        self.restarts.push((now + delay, Some((dead, now))));
        self.restarts.sort_by_key(|(at, _)| *at);
    }

    /// Starts one worker of the serving generation if it is short of one.
    fn restart_one(&mut self, replaces: Option<(u32, Instant)>) {
        let serving = self
            .workers
            .values()
            .filter(|w| w.generation == self.generation && w.phase != Phase::Draining)
            .count();
        if serving >= self.settings.workers {
            return;
        }
        let config = self.config.clone();
        if let Err(e) = self.spawn(self.generation, &config, replaces) {
            log::error!("{e}; retrying");
            self.schedule_restart(replaces.map_or(0, |(pid, _)| pid));
        }
    }

    /// SIGTERM to every worker, wait for them (up to the graceful timeout),
    /// then SIGKILL what is left.
    async fn stop(&mut self, signals: &mut Signals) -> Result<(), Failure> {
        sd_notify("STOPPING=1");
        log::info!("stopping: draining {} workers", self.workers.len());
        // Our copies of the listening sockets go now; the workers close
        // theirs as they stop accepting, so new connections are refused.
        self.sockets.clear();
        self.pending = None;
        for (pid, worker) in &mut self.workers {
            worker.phase = Phase::Draining;
            send_signal(*pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + self.settings.limits.graceful_timeout.0 + Duration::from_secs(1);
        while !self.workers.is_empty() {
            tokio::select! {
                Some(event) = self.events_rx.recv() => {
                    if let MasterEvent::Exited(pid, status) = event {
                        self.on_exit(pid, status)?;
                    }
                }
                event = signals.next() => if event == Event::ImmediateStop {
                    break;
                },
                () = sleep_until(deadline.into()) => {
                    log::warn!("graceful_timeout passed with workers still busy");
                    break;
                }
            }
        }
        self.kill_all();
        log::info!("stopped");
        Ok(())
    }

    fn kill_all(&mut self) {
        for pid in self.workers.keys() {
            send_signal(*pid, libc::SIGKILL);
        }
        self.workers.clear();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        for path in &self.owned_unix_paths {
            let _ = std::fs::remove_file(path);
        }
    }
}
