//! The master process: owns the listening sockets and carries out what the
//! [`Arbiter`] decides: it prepares generations (staging and probing the
//! apps in tasks off its event loop), starts worker processes (each with
//! an in-flight board), signals them, relays quarantines, and tells
//! systemd. It never loads app code, and nothing it does blocks its loop:
//! signals are obeyed and dead workers replaced while a probe runs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

use super::admin::AdminView;
use super::arbiter::{Action, Arbiter, Death, Event, Exit, InflightRequest, Policy, SystemdState, WorkerId};
use super::notify::{self, reloading_message, sd_notify, MasterMessage, WorkerMessage};
use super::probe;
use super::process::{send_signal, spawn_worker, Spawned};
use super::quarantine::QuarantinePolicy;
use super::staging::{Stage, StageError};
use crate::config::{BindAddr, Options};
use crate::error::Failure;
use crate::inflight::{self, Board};
use crate::plugin::app_spec::LibraryRef;
use crate::plugin::loader::{self, LoadError, LoadErrorKind};
use crate::server::net::listener::{bind_socket, inherited_sockets, socket_url, Listener};
use crate::server::observe::access_log::{AccessLog, Entry};
use crate::server::observe::Outcome;
use crate::server::static_site::StaticSite;
use crate::signals::{Event as Signal, Signals};

/// Slots of a worker's in-flight board: one per thread that may be inside
/// a sync app at once, and one per async request in flight (a slot is
/// about 870 bytes; only the pages in use are resident).
const BOARD_SLOTS: u32 = 16 * 1024;

/// How long after a worker's exit its last messages may still arrive.
const LAST_MESSAGES: Duration = Duration::from_secs(1);

/// Runs the master until SIGINT/SIGTERM (graceful) or SIGQUIT (immediate).
pub fn run(options: Options) -> Result<(), Failure> {
    crate::server::startup::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(async {
        let mut master = Master::new(options)?;
        master.run().await
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// What reaches the master's loop from its tasks.
enum Incoming {
    Message(WorkerId, WorkerMessage),
    Exited(WorkerId, ExitStatus),
    Prepared(u64, Result<PathBuf, Failure>),
    LibraryChanged,
}

/// A running worker process.
struct Process {
    pid: u32,
    /// Its slot in `/metrics` (see [`super::admin`]).
    slot: usize,
    to_worker: std::os::unix::net::UnixStream,
    board: Board,
}

struct Master {
    options: Arc<Options>,
    exe: PathBuf,
    sockets: Vec<OwnedFd>,
    owned_unix_paths: Vec<PathBuf>,
    stage: Arc<Stage>,
    arbiter: Arbiter,
    processes: HashMap<WorkerId, Process>,
    /// Each generation's worker config file.
    configs: BTreeMap<u64, PathBuf>,
    preparing: Option<JoinHandle<()>>,
    incoming_tx: mpsc::UnboundedSender<Incoming>,
    incoming_rx: mpsc::UnboundedReceiver<Incoming>,
    /// What the admin endpoints report.
    admin: Arc<AdminView>,
    /// Where the lines of requests lost with their worker go.
    access_log: AccessLog,
}

impl Master {
    fn new(options: Options) -> Result<Master, Failure> {
        let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find our own binary: {e}")))?;
        if let Some(dir) = options.static_root() {
            StaticSite::new(dir).map_err(Failure::input)?;
        }
        check_tls_files(&options)?;
        let (sockets, owned_unix_paths) = match inherited_sockets() {
            Some(sockets) => (sockets, Vec::new()),
            None => {
                let sockets = options
                    .bind
                    .iter()
                    .map(bind_socket)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(Failure::input)?;
                let unix = options
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
        let apps: Vec<String> = options.apps().iter().map(|m| m.app.to_string()).collect();
        let arbiter = Arbiter::new(Policy {
            workers: options.workers,
            start_timeout: options.load_timeout.0,
            graceful_timeout: options.limits.graceful_timeout.0,
            quarantine: QuarantinePolicy {
                after: options.quarantine_after,
                window: options.quarantine_window.0,
                cool_off: options.quarantine_for.0,
            },
            apps: if apps.is_empty() {
                "the static site".to_owned()
            } else {
                apps.join(", ")
            },
        });
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let admin = Arc::new(AdminView::default());
        if let Some(addr) = &options.admin_bind {
            let listener = Listener::bind(addr).map_err(|e| Failure::input(format!("{e} (option --admin-bind)")))?;
            tokio::spawn(super::admin::serve(listener, admin.clone()));
        }
        let access_log = AccessLog::new(options.access_log_format);
        Ok(Master {
            options: Arc::new(options),
            exe,
            sockets,
            owned_unix_paths,
            stage: Arc::new(stage),
            arbiter,
            processes: HashMap::new(),
            configs: BTreeMap::new(),
            preparing: None,
            incoming_tx,
            incoming_rx,
            admin,
            access_log,
        })
    }

    async fn run(&mut self) -> Result<(), Failure> {
        let mut signals = Signals::install().map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))?;
        if self.options.reload {
            self.watch_libraries();
        }
        let mut events = VecDeque::from([Event::Start]);
        loop {
            while let Some(event) = events.pop_front() {
                for action in self.arbiter.handle(event, Instant::now()) {
                    if let Some(result) = self.perform(action, &mut events) {
                        return result;
                    }
                }
            }
            let serving = self.arbiter.serving();
            self.configs.retain(|generation, _| *generation >= serving);
            let deadline = self.arbiter.next_deadline();
            let event = tokio::select! {
                signal = signals.next() => Some(match signal {
                    Signal::GracefulStop => Event::Stop { immediate: false },
                    Signal::ImmediateStop => Event::Stop { immediate: true },
                    Signal::Reload => Event::Reload("SIGHUP"),
                }),
                Some(incoming) = self.incoming_rx.recv() => self.receive(incoming),
                () = sleep_until(deadline.unwrap_or_else(Instant::now).into()), if deadline.is_some() => Some(Event::Tick),
            };
            events.extend(event);
        }
    }

    /// `--reload`: a task that reports rebuilt library files.
    fn watch_libraries(&self) {
        let files: Vec<PathBuf> = self
            .options
            .apps()
            .iter()
            .filter_map(|m| m.app.library.resolve(self.options.plugin_dirs()).ok())
            .collect();
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(super::watch::watch(files, tx));
        let incoming = self.incoming_tx.clone();
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                if incoming.send(Incoming::LibraryChanged).is_err() {
                    return;
                }
            }
        });
    }

    /// Turns what a task reported into an arbiter event.
    fn receive(&mut self, incoming: Incoming) -> Option<Event> {
        match incoming {
            Incoming::Message(worker, WorkerMessage::Ready) => Some(Event::Ready(worker)),
            Incoming::Message(worker, WorkerMessage::Retire) => {
                self.admin.worker_retiring();
                Some(Event::Retire(worker))
            }
            Incoming::Message(worker, WorkerMessage::Metrics(snapshot)) => {
                if let Some(process) = self.processes.get(&worker) {
                    self.admin.worker_reported(process.pid, *snapshot);
                }
                None
            }
            Incoming::LibraryChanged => Some(Event::Reload("--reload: a library file changed")),
            Incoming::Prepared(generation, result) => {
                self.preparing = None;
                Some(Event::Prepared(
                    generation,
                    result.map(|config| {
                        self.configs.insert(generation, config);
                    }),
                ))
            }
            Incoming::Exited(worker, status) => {
                let process = self.processes.remove(&worker)?;
                let snapshot = process.board.read();
                log_lost_requests(&self.access_log, &snapshot);
                let death = death(status, snapshot);
                self.admin.worker_exited(process.pid, death.exit.is_clean());
                Some(Event::Exited(worker, death))
            }
        }
    }

    /// Carries out one action; `Some` when the master is done.
    fn perform(&mut self, action: Action, events: &mut VecDeque<Event>) -> Option<Result<(), Failure>> {
        match action {
            Action::Prepare(generation) => self.prepare(generation),
            Action::CancelPrepare => {
                if let Some(task) = self.preparing.take() {
                    task.abort(); // drops the probe, which kills its process
                }
            }
            Action::Spawn(worker, generation) => events.push_back(self.spawn(worker, generation)),
            Action::Drain(worker) => self.signal(worker, libc::SIGTERM),
            Action::Kill(worker) => self.signal(worker, libc::SIGKILL),
            Action::Tell(worker, message) => {
                if let Some(process) = self.processes.get(&worker) {
                    tell(process, &message);
                }
            }
            Action::TellAll(message) => {
                match &message {
                    MasterMessage::Quarantine { scope, .. } => self.admin.quarantine_began(scope.path.is_none()),
                    MasterMessage::Release { .. } => self.admin.quarantine_ended(),
                    MasterMessage::Synced => {}
                }
                for process in self.processes.values() {
                    tell(process, &message);
                }
            }
            Action::Notify(state) => {
                self.admin.notified(state, self.arbiter.serving());
                sd_notify(&match state {
                    SystemdState::Ready => "READY=1".to_owned(),
                    SystemdState::Reloading => reloading_message(),
                    SystemdState::Stopping => "STOPPING=1".to_owned(),
                });
            }
            Action::Announce => {
                for socket in &self.sockets {
                    let url =
                        crate::server::net::tls::public_url(socket_url(socket), self.options.tls_files().is_some());
                    log::info!("serving on {url} with {} workers", self.options.workers);
                    println!("Serving on {url}");
                }
            }
            // The workers close theirs as they stop accepting, so new
            // connections are refused.
            Action::CloseSockets => self.sockets.clear(),
            Action::Exit(result) => {
                for process in self.processes.values() {
                    send_signal(process.pid, libc::SIGKILL);
                }
                return Some(result);
            }
        }
        None
    }

    fn signal(&self, worker: WorkerId, signal: libc::c_int) {
        if let Some(process) = self.processes.get(&worker) {
            send_signal(process.pid, signal);
        }
    }

    /// Stages and probes the apps for `generation` in a task.
    fn prepare(&mut self, generation: u64) {
        let (options, exe, stage) = (self.options.clone(), self.exe.clone(), self.stage.clone());
        let incoming = self.incoming_tx.clone();
        self.preparing = Some(tokio::spawn(async move {
            let result = prepare_generation(&options, &exe, stage, generation).await;
            let _ = incoming.send(Incoming::Prepared(generation, result));
        }));
    }

    /// Starts a worker; the event that says how it went.
    fn spawn(&mut self, worker: WorkerId, generation: u64) -> Event {
        let Some(config) = self.configs.get(&generation) else {
            return Event::SpawnFailed(worker, format!("generation {generation} has no config"));
        };
        let board = match Board::create(BOARD_SLOTS) {
            Ok(board) => board,
            Err(e) => return Event::SpawnFailed(worker, format!("cannot create its in-flight board: {e}")),
        };
        let Spawned {
            mut child,
            from_worker,
            to_worker,
        } = match spawn_worker(&self.exe, config, &self.sockets, board.raw_fd()) {
            Ok(spawned) => spawned,
            Err(e) => return Event::SpawnFailed(worker, e.to_string()),
        };
        let Some(pid) = child.id() else {
            return Event::SpawnFailed(worker, "it exited at once".to_owned());
        };
        let slot = (0..)
            .find(|slot| self.processes.values().all(|p| p.slot != *slot))
            .unwrap_or_default();
        self.admin.worker_started(pid, slot);
        let incoming = self.incoming_tx.clone();
        tokio::spawn(async move {
            // Every message the worker sent, its last report included,
            // comes before the news of its exit.
            let mut lines = tokio::io::BufReader::new(from_worker).lines();
            let read_all = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(message) = notify::parse::<WorkerMessage>(&line) {
                        let _ = incoming.send(Incoming::Message(worker, message));
                    }
                }
            };
            tokio::pin!(read_all);
            let mut all_read = false;
            let status = tokio::select! {
                status = child.wait() => status,
                () = &mut read_all => {
                    all_read = true;
                    child.wait().await
                }
            };
            if !all_read {
                // The socket ends with the process, unless a child the app
                // forked holds it: then not waiting long.
                let _ = tokio::time::timeout(LAST_MESSAGES, read_all).await;
            }
            if let Ok(status) = status {
                let _ = incoming.send(Incoming::Exited(worker, status));
            }
        });
        self.processes.insert(
            worker,
            Process {
                pid,
                slot,
                to_worker,
                board,
            },
        );
        Event::Spawned(worker, pid)
    }
}

/// Sends `message` to a worker without ever waiting: a worker that does not
/// read its socket loses the message, not the master its loop.
fn tell(process: &Process, message: &MasterMessage) {
    use std::io::Write;
    let line = notify::line(message);
    match (&process.to_worker).write(line.as_bytes()) {
        Ok(written) if written == line.len() => {}
        result => log::warn!(
            "could not tell worker pid {} {message:?}: {}",
            process.pid,
            result.map_or_else(|e| e.to_string(), |n| format!("only {n} bytes fit"))
        ),
    }
}

/// Writes the access-log lines of the requests a dead worker held inside
/// an app (it could not), with the status their clients got: 0 when the
/// connection was cut before a response head. A request the worker
/// already answered 504 was logged by it.
fn log_lost_requests(access_log: &AccessLog, snapshot: &inflight::Snapshot) {
    for request in snapshot.requests.iter().filter(|r| !r.logged) {
        access_log.write(&Entry {
            remote: &request.remote,
            method: &request.method,
            target: &request.target,
            protocol: &request.protocol,
            id: &request.id,
            referer: None,
            user_agent: None,
            outcome: &Outcome {
                status: request.status,
                bytes: 0,
                received: None,
                duration: request.running_for,
            },
        });
    }
}

/// How a worker ended and what its board says it was doing.
fn death(status: ExitStatus, snapshot: inflight::Snapshot) -> Death {
    use std::os::unix::process::ExitStatusExt;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        _ => Exit::Code(-1),
    };
    if snapshot.overflow > 0 {
        log::debug!("{} requests were not on the in-flight board", snapshot.overflow);
    }
    Death {
        exit,
        inflight: snapshot
            .requests
            .into_iter()
            .map(|r| InflightRequest {
                method: r.method,
                mount: r.mount,
                path: r.path,
                running_for: r.running_for,
            })
            .collect(),
        culprit: snapshot.culprit,
    }
}

/// Stages every app's library and probes each once; writes the workers'
/// config (the options, with every library pointing at its staged copy).
/// File work runs on blocking threads, bounded by the size limit.
async fn prepare_generation(
    options: &Options,
    exe: &std::path::Path,
    stage: Arc<Stage>,
    generation: u64,
) -> Result<PathBuf, Failure> {
    // The new workers read the certificate again: a bad renewal refuses
    // the swap here, and the old generation keeps serving.
    check_tls_files(options)?;
    let mut staged = options.clone();
    let plugin_dirs = options.plugin_dirs().to_vec();
    let limit = options.max_library_size.0;
    let mut probed = HashSet::new();
    // The Go library of this generation, if any: a worker holds one Go
    // runtime, so a second Go library is refused here, in one line, rather
    // than by every worker that would load it.
    let mut go_library: Option<(PathBuf, PathBuf)> = None; // (staged, the user's)
    for app in staged.app_specs_mut() {
        let spec = app.clone();
        let (dirs, stage_dir) = (plugin_dirs.clone(), stage.clone());
        let (source, copy) = tokio::task::spawn_blocking(move || stage_library(&spec, &dirs, &stage_dir, limit))
            .await
            .map_err(|e| Failure::internal(format!("staging failed: {e}")))??;
        let original = app.to_string();
        if loader::is_go_library(&copy) {
            match &go_library {
                Some((first, first_source)) if *first != copy => {
                    return Err(Failure::input(LoadError {
                        spec: app.clone(),
                        kind: Box::new(LoadErrorKind::SecondGoRuntime {
                            path: source,
                            loaded: first_source.clone(),
                        }),
                    }));
                }
                _ => go_library = Some((copy.clone(), source.clone())),
            }
        }
        app.library = LibraryRef::Path(copy.clone());
        if probed.insert(app.to_string()) {
            let (copy, source) = (copy.display().to_string(), source.display().to_string());
            probe::run(exe, app, &plugin_dirs, options.load_timeout.0, Some("error"))
                .await
                .verdict
                .map_err(|f| {
                    f.map_message(|m| {
                        let m = m.replace(&copy, &source);
                        // A bare name's message names the file; say which app it was.
                        if m.contains(&original) {
                            m
                        } else {
                            format!("{m} [checking {original}]")
                        }
                    })
                })?;
        }
    }
    let path = stage.dir().join(format!("generation-{generation}.toml"));
    let text = staged.to_toml();
    let write_to = path.clone();
    tokio::task::spawn_blocking(move || std::fs::write(&write_to, text))
        .await
        .map_err(|e| Failure::internal(format!("writing the workers' config failed: {e}")))?
        .map_err(|e| Failure::internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// Reads the certificate and key, if any, as a worker will.
fn check_tls_files(options: &Options) -> Result<(), Failure> {
    crate::server::net::tls::configured(options)
        .map(drop)
        .map_err(Failure::input)
}

/// Finds and stages one app's library: (the user's file, its staged copy).
fn stage_library(
    spec: &crate::plugin::app_spec::AppSpec,
    plugin_dirs: &[PathBuf],
    stage: &Stage,
    limit: u64,
) -> Result<(PathBuf, PathBuf), Failure> {
    let source = spec.library.resolve(plugin_dirs).map_err(|looked| {
        let places: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        Failure::input(format!(
            "cannot load app {spec}: library not found (looked for {}); build it first, or pass its path or --plugin-dir",
            places.join(", ")
        ))
    })?;
    match stage.stage(&source, limit) {
        Ok(copy) => Ok((source, copy)),
        Err(StageError::Refused(problem)) => Err(Failure::input(format!(
            "cannot load app {}:{}: {problem}",
            source.display(),
            spec.symbol
        ))),
        Err(StageError::Io(e)) => Err(Failure::internal(format!("cannot stage {}: {e}", source.display()))),
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        for path in &self.owned_unix_paths {
            let _ = std::fs::remove_file(path);
        }
    }
}
