//! The default command: resolve the settings, then serve them either in
//! this process (`--workers 0`) or under a master with worker processes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app_spec::LibraryRef;
use crate::cli::{Fatal, ServeArgs};
use crate::config::{default_workers, FileConfig, Settings};
use crate::loader::{self, LoadedApp};
use crate::server::access_log::AccessLog;
use crate::server::connection::{inherited_sockets, Listener};
use crate::server::router::{MountedApp, Router};
use crate::server::static_files::StaticSite;
use crate::server::{self, OnStuck, ServerState, StopLevel};
use crate::signals::{Event, Signals};
use crate::supervisor;

/// Serves what `args` (and its config file) describe, until stopped.
pub fn run(args: ServeArgs) -> Result<(), Fatal> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path).map_err(Fatal::usage)?,
        None => FileConfig::default(),
    };
    let settings = args.settings(file).map_err(Fatal::usage)?;
    if args.print_config {
        let text = toml::to_string_pretty(&settings.to_config()).map_err(|e| Fatal::usage(e.to_string()))?;
        print!("{text}");
        return Ok(());
    }
    if settings.workers == 0 {
        run_single(&settings)
    } else {
        supervisor::master::run(settings)
    }
}

/// `--workers 0`: load the apps and serve in this process.
fn run_single(settings: &Settings) -> Result<(), Fatal> {
    if settings.reload {
        log::warn!("--reload needs worker processes: ignored with --workers 0");
    }
    let on_stuck: OnStuck = Arc::new(|| {
        log::warn!("with --workers 0 a stuck request cannot be stopped; its thread stays busy (use worker processes)")
    });
    let state = Arc::new(prepare(settings, on_stuck)?);
    block_on_runtime(1, async {
        let listeners = listen(settings)?;
        for listener in &listeners {
            log::info!("serving on {}", listener.url());
            println!("Serving on {}", listener.url());
        }
        let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
        let mut signals = Signals::install().map_err(|e| Fatal::internal(format!("cannot handle signals: {e}")))?;
        tokio::spawn(async move {
            loop {
                match signals.next().await {
                    Event::GracefulStop => stop_tx.send_replace(StopLevel::Graceful),
                    Event::ImmediateStop => stop_tx.send_replace(StopLevel::Immediate),
                    Event::Reload => {
                        log::warn!("SIGHUP: reloading needs worker processes (--workers 1 or more); ignored");
                        continue;
                    }
                };
            }
        });
        server::serve(listeners, state, stop_rx).await;
        Ok(())
    })
}

/// Runs `future` on a runtime with its share of the cores when `processes`
/// serve side by side (one thread per core in all: fewer cross-thread
/// wake-ups than every process using every core); threads still stuck
/// inside an app when it finishes are abandoned rather than waited for.
pub fn block_on_runtime<T>(processes: usize, future: impl Future<Output = Result<T, Fatal>>) -> Result<T, Fatal> {
    let threads = (default_workers() / processes.max(1)).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name("host-io")
        .build()
        .map_err(|e| Fatal::internal(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// The listening sockets: inherited ones (systemd, the master) or bound here.
pub fn listen(settings: &Settings) -> Result<Vec<Listener>, Fatal> {
    match inherited_sockets() {
        Some(sockets) => sockets
            .into_iter()
            .map(|fd| Listener::from_socket(fd, None))
            .collect::<Result<_, _>>()
            .map_err(|e| Fatal::internal(format!("an inherited listening socket is unusable: {e}"))),
        None => settings
            .binds
            .iter()
            .map(Listener::bind)
            .collect::<Result<_, _>>()
            .map_err(Fatal::usage),
    }
}

/// Loads the apps and opens the static site: everything that can fail
/// because of bad input fails here, before any request.
pub fn prepare(settings: &Settings, on_stuck: OnStuck) -> Result<ServerState, Fatal> {
    let mut loaded: HashMap<String, Arc<LoadedApp>> = HashMap::new();
    let mut mounts = Vec::new();
    for mount in &settings.mounts {
        let key = mount.app.to_string();
        let app = match loaded.get(&key) {
            Some(app) => app.clone(),
            None => {
                let app = Arc::new(loader::load(&mount.app, &settings.plugin_dirs).map_err(Fatal::usage)?);
                let from = match &mount.app.library {
                    LibraryRef::Name(_) => format!(" from {}", app.path.display()),
                    LibraryRef::Path(_) => String::new(),
                };
                log::info!(
                    "loaded {}{from} (plugin-api {}, {:.2} ms)",
                    mount.app,
                    app.app.interface_version(),
                    app.load_time.as_secs_f64() * 1e3
                );
                loaded.insert(key, app.clone());
                app
            }
        };
        mounts.push(MountedApp {
            prefix: mount.prefix.clone(),
            app,
            policy: Arc::default(),
        });
    }
    let site = settings
        .static_dir
        .as_deref()
        .map(StaticSite::new)
        .transpose()
        .map_err(Fatal::usage)?;
    if site.is_none() && mounts.is_empty() {
        return Err(Fatal::usage(
            "nothing to serve: name an app (LIB:SYMBOL) or a static folder (--static-dir DIR)",
        ));
    }
    Ok(ServerState {
        router: Router::new(mounts, site),
        limits: settings.limits.clone(),
        access_log: Arc::new(AccessLog::new(settings.access_log)),
        on_stuck,
    })
}
