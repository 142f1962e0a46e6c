//! Starting our own binary as a worker or a probe: fork + exec (never fork
//! alone: after fork in a threaded process only async-signal-safe calls are
//! allowed until exec), with the listening sockets and a notification
//! socket passed as fds 3, 4, ….

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// A started worker process.
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// Its end of the notification socket is fd 3 + listeners; this is ours.
    pub notify: UnixStream,
}

/// Starts `exe worker --config CONFIG` with `sockets` as fds 3.. and a
/// notification socket after them.
pub fn spawn_worker(exe: &Path, config: &Path, sockets: &[OwnedFd]) -> io::Result<Spawned> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut inherited: Vec<RawFd> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    inherited.push(theirs.as_raw_fd());
    let mut command = Command::new(exe);
    command
        .arg("worker")
        .arg("--config")
        .arg(config)
        .env("HOST_LISTEN_FDS", sockets.len().to_string())
        .env("HOST_NOTIFY_FD", (3 + sockets.len()).to_string())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
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
        notify: UnixStream::from_std(ours)?,
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
    let mut scratch = [0 as RawFd; 64];
    if fds.len() > scratch.len() {
        return Err(io::Error::other("too many listening sockets"));
    }
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

/// Runs `exe check LIB:SYMBOL` in a throw-away process: the app is loaded,
/// checked and initialised there, so a crash cannot hurt the master. The
/// probe has `HOST_PROBE=1` in its environment, so an app can skip side
/// effects (connecting to a database, …) while it is only being validated.
/// `Err` is the refusal (the probe's one-line message) or the crash.
pub async fn probe(exe: &Path, app: &str) -> Result<(), String> {
    let run = Command::new(exe)
        .arg("check")
        .arg(app)
        .env("RUST_LOG", "error")
        .env("HOST_PROBE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .map_err(|_| format!("checking {app} took over 30 s"))?
        .map_err(|e| format!("cannot start the probe for {app}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("error: "))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the probe for {app} died ({})", describe_exit(output.status)));
    Err(reason)
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

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        _ => "other",
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
