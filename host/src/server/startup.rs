//! What a serving process (a worker, or the single process of
//! `--workers 0`) does before its first request: load the apps, open the
//! static site, take its listening sockets, start its runtime. Everything
//! that can fail because of bad input fails here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::access_log::AccessLog;
use super::connection::{inherited_sockets, Listener};
use super::router::{MountedApp, Router};
use super::static_files::StaticSite;
use super::{OnStuck, ServerState};
use crate::app_spec::LibraryRef;
use crate::config::{default_workers, Options};
use crate::error::Failure;
use crate::loader::{self, LoadedApp};

/// Runs `future` on a runtime with its share of the cores when `processes`
/// serve side by side (one thread per core in all: fewer cross-thread
/// wake-ups than every process using every core); threads still stuck
/// inside an app when it finishes are abandoned rather than waited for.
pub fn block_on_runtime<T>(processes: usize, future: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    let threads = (default_workers() / processes.max(1)).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name("host-io")
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// The listening sockets: inherited ones (systemd, the master) or bound here.
pub fn listen(options: &Options) -> Result<Vec<Listener>, Failure> {
    match inherited_sockets() {
        Some(sockets) => sockets
            .into_iter()
            .map(|fd| Listener::from_socket(fd, None))
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::internal(format!("an inherited listening socket is unusable: {e}"))),
        None => options
            .bind
            .iter()
            .map(Listener::bind)
            .collect::<Result<_, _>>()
            .map_err(Failure::input),
    }
}

/// Loads the apps and opens the static site.
pub fn server_state(options: &Options, on_stuck: OnStuck) -> Result<ServerState, Failure> {
    let mut loaded: HashMap<String, Arc<LoadedApp>> = HashMap::new();
    let mut mounts = Vec::new();
    for mount in options.apps() {
        let key = mount.app.to_string();
        let app = match loaded.get(&key) {
            Some(app) => app.clone(),
            None => {
                let app = Arc::new(loader::load(&mount.app, options.plugin_dirs()).map_err(Failure::input)?);
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
            prefix: mount.prefix.as_str().into(),
            app,
            policy: Arc::default(),
        });
    }
    let site = options
        .static_root()
        .map(StaticSite::new)
        .transpose()
        .map_err(Failure::input)?;
    Ok(ServerState {
        router: Router::new(mounts, site),
        limits: options.limits.clone(),
        access_log: Arc::new(AccessLog::new(options.access_log_format)),
        on_stuck,
        quarantined: Arc::default(),
    })
}
