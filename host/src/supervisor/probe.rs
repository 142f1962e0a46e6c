//! Probes: an app is loaded and checked in a throw-away process
//! (`host check --in-process`) before the master lets workers load it, and
//! whenever `host check` runs. Loading runs the library's constructors,
//! which may crash, hang, or flood their output; here that costs one child
//! process, killed (with its process group) at the time limit, and the
//! verdict is one line.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::process::{describe_exit, signal_name};
use crate::error::Failure;
use crate::plugin::app_spec::AppSpec;

/// The most of a probe's stdout or stderr kept (a constructor may print
/// without end).
const OUTPUT_LIMIT: usize = 64 << 10;

/// What a probe found.
#[derive(Debug)]
pub struct Probe {
    /// `Ok`: the probe's report (what `host check` prints). `Err`: the
    /// refusal as one line: the app's own load error, or the crash, exit or
    /// hang of the process that loaded it.
    pub verdict: Result<String, Failure>,
    /// What the probe logged besides its verdict (bounded).
    pub log: String,
}

/// Loads `spec` in a probe process, which logs at `log_level` (`None`: as
/// `RUST_LOG` says). The probe has `HOST_PROBE=1` in its environment, so an
/// app can skip side effects (connecting to a database, …) while it is
/// only checked.
pub async fn run(
    exe: &Path,
    spec: &AppSpec,
    plugin_dirs: &[PathBuf],
    timeout: Duration,
    log_level: Option<&str>,
) -> Probe {
    let mut command = Command::new(exe);
    command
        .arg("check")
        .arg("--in-process")
        .arg(spec.to_string())
        .args(plugin_dirs.iter().flat_map(|dir| [Path::new("--plugin-dir"), dir]))
        .env("HOST_PROBE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(level) = log_level {
        command.env("RUST_LOG", level);
    }
    super::process::die_with_parent(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return Probe {
                verdict: Err(Failure::internal(format!(
                    "cannot start a probe process for {spec}: {e}"
                ))),
                log: String::new(),
            }
        }
    };
    // Timed out or given up (the future dropped): the probe and anything
    // its library started go.
    let mut group = KillGroupOnDrop(child.id());
    let stdout = tokio::spawn(read_bounded(child.stdout.take()));
    let stderr = tokio::spawn(read_bounded(child.stderr.take()));
    let status = tokio::time::timeout(timeout, child.wait()).await;
    if matches!(status, Ok(Ok(_))) {
        group.0 = None; // it ended by itself; its group id may be reused
    }
    drop(group);
    let stdout = stdout.await.unwrap_or_default();
    let mut log = stderr.await.unwrap_or_default();
    let verdict = match status {
        Err(_) => Err(Failure::input(format!(
            "cannot load app {spec}: loading it took over {} (a library constructor that never returns?); fix the library",
            crate::config::Seconds(timeout)
        ))),
        Ok(Err(e)) => Err(Failure::internal(format!("waiting for the probe of {spec} failed: {e}"))),
        Ok(Ok(status)) if status.success() => Ok(stdout),
        Ok(Ok(status)) => Err(refusal(spec, status, &mut log)),
    };
    Probe { verdict, log }
}

/// Why a probe that ended with `status` refused `spec`; its own error line
/// is taken out of `log`.
fn refusal(spec: &AppSpec, status: std::process::ExitStatus, log: &mut String) -> Failure {
    if let Some(signal) = status.signal() {
        return Failure::input(format!(
            "cannot load app {spec}: the library crashed while loading: {}{}",
            signal_name(signal),
            crash_hint(signal)
        ));
    }
    let line = log
        .lines()
        .rev()
        .find(|line| line.starts_with("error: "))
        .map(str::to_owned);
    match line {
        Some(line) if status.code() == Some(2) => {
            *log = log.replacen(&format!("{line}\n"), "", 1);
            Failure::input(line.trim_start_matches("error: "))
        }
        _ => Failure::input(format!(
            "cannot load app {spec}: the library ended the process while loading ({})",
            describe_exit(status)
        )),
    }
}

/// [`run`] for a caller without a runtime (`host check`), logging as
/// `RUST_LOG` says.
pub fn run_blocking(exe: &Path, spec: &AppSpec, plugin_dirs: &[PathBuf], timeout: Duration) -> Result<Probe, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the runtime: {e}")))?;
    Ok(runtime.block_on(run(exe, spec, plugin_dirs, timeout, None)))
}

/// Kills a probe's process group when dropped, unless disarmed (`None`).
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            super::process::send_signal_to_group(pgid, libc::SIGKILL);
        }
    }
}

/// What a crash signal while loading usually means.
fn crash_hint(signal: i32) -> &'static str {
    match signal {
        libc::SIGBUS => " — a truncated or damaged file?",
        libc::SIGSEGV => " — a bug in the library's initialisation code?",
        libc::SIGABRT => " — the library aborted while initialising",
        libc::SIGILL => " — built for another CPU?",
        _ => "",
    }
}

/// Reads `pipe` to its end, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(count) = pipe.read(&mut buf).await {
        if count == 0 {
            break;
        }
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..count.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
