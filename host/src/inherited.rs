//! What a parent hands this process in its environment: listening sockets
//! (systemd's `LISTEN_FDS` / `LISTEN_PID`, the master's `HOST_LISTEN_FDS`),
//! the master's socket (`HOST_NOTIFY_FD`) and in-flight board
//! (`HOST_INFLIGHT_FD`), systemd's `NOTIFY_SOCKET`.
//!
//! [`take_from_env`] reads them once, first thing in `main` while the
//! process has a single thread, and removes the descriptor variables (an
//! app's own child processes must not take the sockets for theirs):
//! changing the environment while other threads may read it is undefined
//! behaviour in C. Everything else asks this module.

use std::os::fd::RawFd;
use std::sync::{Mutex, OnceLock};

/// The variables, as found at start.
#[derive(Debug, Default)]
struct Inherited {
    /// How many listening sockets start at fd 3.
    listen_fds: Option<usize>,
    notify_fd: Option<RawFd>,
    inflight_fd: Option<RawFd>,
    notify_socket: Option<String>,
}

static INHERITED: OnceLock<Mutex<Inherited>> = OnceLock::new();

/// The master's variables for a worker's listening sockets, its socket to
/// the master and the in-flight board.
pub const LISTEN_FDS_VAR: &str = "HOST_LISTEN_FDS";
/// See [`LISTEN_FDS_VAR`].
pub const NOTIFY_FD_VAR: &str = "HOST_NOTIFY_FD";
/// See [`LISTEN_FDS_VAR`].
pub const INFLIGHT_FD_VAR: &str = "HOST_INFLIGHT_FD";

/// Reads the variables and removes the descriptor ones. Call once, before
/// any thread is started.
pub fn take_from_env() {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<i32>().ok());
    let ours = number(LISTEN_FDS_VAR);
    let systemd = number("LISTEN_FDS").filter(|_| number("LISTEN_PID") == i32::try_from(std::process::id()).ok());
    let inherited = Inherited {
        listen_fds: ours
            .or(systemd)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0),
        notify_fd: number(NOTIFY_FD_VAR),
        inflight_fd: number(INFLIGHT_FD_VAR),
        notify_socket: std::env::var("NOTIFY_SOCKET").ok(),
    };
    // Ours alone: a process an app starts must not inherit the listening
    // sockets, the master's socket (whose end would then never close) or
    // the board.
    let listening = (0..inherited.listen_fds.unwrap_or(0)).map(|i| 3 + i as RawFd);
    for fd in listening.chain(inherited.notify_fd).chain(inherited.inflight_fd) {
        // SAFETY: fcntl on a descriptor number only changes its flags; one
        // that is not open makes it fail, which is ignored.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    for name in [
        "LISTEN_FDS",
        "LISTEN_PID",
        LISTEN_FDS_VAR,
        NOTIFY_FD_VAR,
        INFLIGHT_FD_VAR,
    ] {
        std::env::remove_var(name);
    }
    let _ = INHERITED.set(Mutex::new(inherited));
}

fn with<R>(f: impl FnOnce(&mut Inherited) -> R) -> R {
    let cell = INHERITED.get_or_init(Mutex::default);
    f(&mut cell.lock().unwrap_or_else(|e| e.into_inner()))
}

/// How many listening sockets were passed (at fd 3, 4, …); the first
/// caller takes them, later ones get `None`.
pub fn take_listen_fds() -> Option<usize> {
    with(|i| i.listen_fds.take())
}

/// The master's socket, for the first caller.
pub fn take_notify_fd() -> Option<RawFd> {
    with(|i| i.notify_fd.take())
}

/// The in-flight board, for the first caller.
pub fn take_inflight_fd() -> Option<RawFd> {
    with(|i| i.inflight_fd.take())
}

/// systemd's notification socket, if started with one.
pub fn notify_socket() -> Option<String> {
    with(|i| i.notify_socket.clone())
}
