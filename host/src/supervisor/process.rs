//! Starting our own binary as a worker: fork + exec (never fork alone:
//! after fork in a threaded process only async-signal-safe calls are
//! allowed until exec), with the listening sockets and a notification
//! socket passed as fds 3, 4, …; and signals to the processes we started.

use crate::inherited;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;

use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// A started worker process and our end of the socket pair to it (its end
/// is fd 3 + listeners).
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// What the worker says.
    pub from_worker: UnixStream,
    /// What we tell it: non-blocking, so a worker that does not read can
    /// never stall the master.
    pub to_worker: std::os::unix::net::UnixStream,
}

/// The most file descriptors passed to a worker.
const MAX_PASSED_FDS: usize = 64;

/// Starts `exe worker --config CONFIG` with `sockets` as fds 3.., then the
/// notification socket, then the in-flight `board`.
pub fn spawn_worker(exe: &Path, config: &Path, sockets: &[OwnedFd], board: RawFd) -> io::Result<Spawned> {
    // Checked here: the child may not allocate between fork and exec.
    if sockets.len() + 2 > MAX_PASSED_FDS {
        return Err(io::Error::other(format!(
            "{} listening sockets: at most {} can be passed to a worker",
            sockets.len(),
            MAX_PASSED_FDS - 2
        )));
    }
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut inherited: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    inherited.push(theirs.as_raw_fd());
    inherited.push(board);
    let mut command = Command::new(exe);
    command
        .arg("worker")
        .arg("--config")
        .arg(config)
        .env(inherited::LISTEN_FDS_VAR, sockets.len().to_string())
        .env(inherited::NOTIFY_FD_VAR, (3 + sockets.len()).to_string())
        .env(inherited::INFLIGHT_FD_VAR, (4 + sockets.len()).to_string())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
    for name in crate::config::options::env_names() {
        command.env_remove(name);
    }
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (fcntl, dup2, prctl) on
    // descriptors the parent keeps open until `spawn` returns.
    unsafe {
        command.pre_exec(move || place_fds(&inherited));
    }
    let child = command.spawn()?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok(Spawned {
        child,
        to_worker: ours.try_clone()?,
        from_worker: UnixStream::from_std(ours)?,
    })
}

/// In the child: moves `fds` to 3, 4, … (without close-on-exec) and asks
/// for SIGTERM if the master dies.
fn place_fds(fds: &[RawFd]) -> io::Result<()> {
    const SCRATCH_FLOOR: RawFd = 1000;
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    };
    // First move every fd out of the way (they may already sit at 3, 4, …),
    // then put each in place; the scratch copies are close-on-exec.
    let mut scratch = [0 as RawFd; MAX_PASSED_FDS];
    for (slot, fd) in scratch.iter_mut().zip(fds) {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open fd is async-signal-safe.
        *slot = check(unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, SCRATCH_FLOOR) })?;
    }
    for (target, fd) in (3..).zip(&scratch[..fds.len()]) {
        // SAFETY: dup2 is async-signal-safe; the copy at `target` is not close-on-exec.
        check(unsafe { libc::dup2(*fd, target) })?;
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) is a plain system call.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) })?;
    Ok(())
}

/// "exit code 3", "signal 11 (SIGSEGV)", …
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal} ({})", signal_name(signal)),
        _ => "unknown status".to_owned(),
    }
}

/// The usual name of a signal number, e.g. `SIGBUS`.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "another signal",
    }
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a stale pid only
    // yields ESRCH, which is ignored (the process already exited).
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Sends `signal` to process group `pgid` (a probe and what it started).
pub fn send_signal_to_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: as for `send_signal`; a negative pid names a process group.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// Makes the child get SIGKILL when this process dies (a probe must not
/// outlive a master that was killed).
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes one
    // async-signal-safe system call.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
