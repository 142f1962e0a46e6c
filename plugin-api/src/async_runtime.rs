//! The plugin's own async runtime. Tokio keeps its runtime context in
//! thread-locals, and every cdylib links its own copy of tokio: the host's
//! runtime is invisible to the plugin's tokio, so a plugin calling
//! `tokio::time::sleep` or connecting a `TcpStream` on the host's threads
//! would panic with "there is no reactor running". So each plugin library
//! gets a small runtime of its own (one worker thread, the time and I/O
//! drivers its tokio features compile in), started on the first async
//! call, and every poll of an app future runs inside its context: the
//! app's timers and sockets register there, and their wake-ups wake the
//! host's task through the waker the host lent. The host shuts it down
//! when the worker stops (`AppModule::shutdown`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::runtime::{Builder, EnterGuard, Handle, Runtime};

/// The runtime's handle, once started (`None`: it could not start).
static HANDLE: OnceLock<Option<Handle>> = OnceLock::new();

/// The runtime itself, until it is shut down.
static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Set once the runtime is shut down.
static SHUT_DOWN: AtomicBool = AtomicBool::new(false);

/// How long a shutdown waits for the runtime's tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Enters the plugin's runtime on this thread until the guard drops,
/// starting it on first use.
pub(crate) fn enter() -> Option<EnterGuard<'static>> {
    // Once shut down, polls run without a runtime (and a tokio call in
    // them fails, as a panic the kit catches).
    if SHUT_DOWN.load(Ordering::Acquire) {
        return None;
    }
    let handle = HANDLE.get_or_init(start).as_ref()?;
    Some(handle.enter())
}

fn start() -> Option<Handle> {
    let built = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("plugin-async")
        .enable_all()
        .build();
    match built {
        Ok(runtime) => {
            let handle = runtime.handle().clone();
            *RUNTIME.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime);
            Some(handle)
        }
        Err(e) => {
            log::error!("cannot start the plugin's async runtime: {e}; its apps' own I/O will fail");
            None
        }
    }
}

/// Stops the runtime (its tasks get [`SHUTDOWN_GRACE`]); later polls run
/// without one.
pub(crate) fn shutdown() {
    SHUT_DOWN.store(true, Ordering::Release);
    let runtime = RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(runtime) = runtime {
        runtime.shutdown_timeout(SHUTDOWN_GRACE);
    }
}
