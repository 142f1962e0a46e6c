//! What a serving process (a worker, or the single process of
//! `--workers 0`) does before its first request: load the apps, open the
//! static site, take its listening sockets, start its runtime. Everything
//! that can fail because of bad input fails here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::request::budget::RequestBudget;
use super::request::handler::Handler;
use super::state::app_threads::AppThreads;
use super::state::{Retire, ServerState};
use super::static_site::StaticSite;
use crate::config::{default_workers, Options};
use crate::error::Failure;
use crate::plugin::app_spec::LibraryRef;
use crate::plugin::loader::{self, LoadedApp};
use crate::server::app_gateway::mount::MountedApp;
use crate::server::http::forwarded::TrustedProxies;
use crate::server::net::listener::{inherited_sockets, Listener};
use crate::server::observe::access_log::AccessLog;
use crate::server::observe::metrics::ServerMetrics;
use crate::server::request::router::Router;

/// At least this many runtime threads per process: an app call that runs
/// inline and turns slow holds one, and the other keeps every other
/// connection of the process served (the stuck-call watchdog hands it the
/// I/O driver).
const MIN_RUNTIME_THREADS: usize = 2;

/// Blocking threads besides the app threads: static file readers, and the
/// threads pulling streamed bodies of inline calls.
const BLOCKING_EXTRA: usize = 64;

/// Runs `future` on a runtime with its share of the cores when `processes`
/// serve side by side (one thread per core in all: fewer cross-thread
/// wake-ups than every process using every core); threads still stuck
/// inside an app when it finishes are abandoned rather than waited for.
pub fn block_on_runtime<T>(options: &Options, future: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    super::memory::limit_arenas();
    raise_open_files_limit();
    let threads = (default_workers() / options.workers.max(1)).max(MIN_RUNTIME_THREADS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        // The app threads (bounded by `AppThreads`), plus file readers.
        .max_blocking_threads(options.threads.max(1) + BLOCKING_EXTRA)
        .enable_all()
        .thread_name("host-io")
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// Raises this process's open-file limit to its hard limit: each
/// connection is a descriptor, and the soft limit is often 1024.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct; setrlimit reads one.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!("cannot raise the open-file limit: {}", std::io::Error::last_os_error());
            }
        }
    }
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

/// Loads the apps and opens the static site: what the process serves its
/// requests with; `request_limit` is its `--max-requests` (jitter drawn).
pub fn handler(options: &Options, retire: Retire, request_limit: Option<u64>) -> Result<Handler, Failure> {
    let metrics = ServerMetrics::new(options.apps().iter().map(|m| m.prefix.as_str()));
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
                    "loaded {}{from} ({}, {:.2} ms)",
                    mount.app,
                    app.app.interface(),
                    app.load_time.as_secs_f64() * 1e3
                );
                loaded.insert(key, app.clone());
                app
            }
        };
        mounts.push(Arc::new(MountedApp {
            prefix: mount.prefix.as_str().into(),
            app,
            policy: Arc::default(),
            counters: metrics.mount_index(mount.prefix.as_str()),
        }));
    }
    let site = options
        .static_root()
        .map(StaticSite::new)
        .transpose()
        .map_err(Failure::input)?;
    let state = ServerState {
        limits: options.limits.clone(),
        access_log: Arc::new(AccessLog::new(options.access_log_format)),
        drain: Arc::default(),
        proxies: TrustedProxies::new(&options.forwarded_allow_ips),
        proxy_protocol: options.proxy_protocol,
        tls: crate::server::net::tls::configured(options).map_err(Failure::input)?,
        http2: !options.no_http2,
        metrics,
        retire,
        app_threads: AppThreads::new(options.threads, options.max_queued, options.queue_timeout.0),
    };
    Ok(Handler {
        state: Arc::new(state),
        router: Router::new(mounts, site),
        quarantined: Arc::default(),
        budget: RequestBudget::new(request_limit),
    })
}
