//! Bad library files of every kind, against `host check`, a master starting
//! up and a master swapping: a FIFO, `/dev/zero`, a folder, truncated
//! copies of a real plugin, and libraries whose constructor segfaults,
//! aborts, exits or never returns (the `on-load` fixture). Each is refused
//! in one line with exit code 2 or, on a swap, leaves the serving
//! generation untouched; the master never blocks on one (it still replaces
//! crashed workers and obeys SIGTERM while a probe hangs) and staging never
//! fills the disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::server::{Server, TempDir};
use common::{app_spec, plugin_lib, run_host_in, stderr_text};

/// The `on-load` fixture, copied into `dir` as `lib.so`, with its mode file
/// (what its constructor does) set to `mode`.
fn on_load_copy(dir: &TempDir, mode: &str) -> PathBuf {
    set_mode(dir, mode);
    let lib = dir.join("lib.so");
    install(&plugin_lib("on_load"), &lib);
    lib
}

fn set_mode(dir: &TempDir, mode: &str) {
    std::fs::write(dir.join("mode"), mode).expect("write the mode file");
}

/// `host ARGS` in `dir` with the fixture's mode file in the environment.
fn host(dir: &TempDir, args: &[&str]) -> Output {
    let mode = dir.join("mode");
    run_host_in(
        dir.path(),
        args,
        &[("HOST_FIXTURE_ON_LOAD", mode.to_str().unwrap())],
        b"",
    )
}

/// The one `error:` line of a refused run, after checking there is one.
fn refusal(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{}", stderr_text(output));
    let stderr = stderr_text(output);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    errors[0].to_owned()
}

/// Bad files, each with what its refusal must say.
fn bad_files(dir: &TempDir) -> Vec<(String, PathBuf, &'static str)> {
    let fifo = dir.join("fifo.so");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
    let bytes = std::fs::read(plugin_lib("ctime")).expect("read libctime.so");
    let mut files = vec![
        ("a FIFO".to_owned(), fifo, "a FIFO"),
        ("/dev/zero".to_owned(), PathBuf::from("/dev/zero"), "a character device"),
        ("a folder".to_owned(), dir.join("folder"), "a folder"),
    ];
    std::fs::create_dir_all(dir.join("folder")).unwrap();
    for cut in [4 << 10, 16 << 10, 64 << 10] {
        let path = dir.join(format!("cut-{cut}.so"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        files.push((format!("the first {} KiB of libctime.so", cut >> 10), path, "truncated"));
    }
    files
}

#[test]
fn check_refuses_bad_files_in_one_line() {
    let dir = TempDir::new("check-bad");
    let lib = on_load_copy(&dir, "none");
    for (what, path, says) in bad_files(&dir) {
        let line = refusal(&host(&dir, &["check", &app_spec(&path, "application")]));
        assert!(line.contains(says), "{what}: {line}");
        println!("{what}: {line}");
    }
    let spec = app_spec(&lib, "application");
    for (mode, says) in [
        ("segv", "crashed while loading: SIGSEGV"),
        ("abort", "crashed while loading: SIGABRT"),
        ("exit", "ended the process while loading (exit code 4)"),
    ] {
        set_mode(&dir, mode);
        // Ten times: a crash is refused the same way every time.
        for _ in 0..10 {
            let line = refusal(&host(&dir, &["check", &spec]));
            assert!(line.contains(says), "{mode}: {line}");
        }
        println!("constructor {mode} × 10: {says}");
    }
    set_mode(&dir, "sleep");
    let started = Instant::now();
    let line = refusal(&host(&dir, &["check", "--timeout", "1s", &spec]));
    assert!(line.contains("took over 1s"), "{line}");
    println!("constructor sleep: refused after {:?}: {line}", started.elapsed());
    set_mode(&dir, "none");
    let output = host(&dir, &["check", &spec]);
    assert!(output.status.success(), "{}", stderr_text(&output));
}

#[test]
fn a_master_refuses_bad_files_at_start() {
    let dir = TempDir::new("start-bad");
    let lib = on_load_copy(&dir, "none");
    for (what, path, says) in bad_files(&dir) {
        let line = refusal(&host(&dir, &["--bind", "127.0.0.1:0", &app_spec(&path, "application")]));
        assert!(line.contains(says), "{what}: {line}");
    }
    let spec = app_spec(&lib, "application");
    for (mode, says) in [("segv", "SIGSEGV"), ("sleep", "took over 1s")] {
        set_mode(&dir, mode);
        let line = refusal(&host(&dir, &["--bind", "127.0.0.1:0", "--load-timeout", "1s", &spec]));
        assert!(line.contains(says), "{mode}: {line}");
        println!("start with constructor {mode}: {line}");
    }
}

/// The probes `master` is running: its children whose command line is
/// `host check --in-process …` (see `supervisor::probe`).
fn probe_pids(master: u32) -> Vec<u32> {
    children_with_arg(master, "--in-process")
}

/// The size of a folder's files.
fn folder_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn bad_swaps_keep_the_old_generation_and_the_master_responsive() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("swap-bad");
    let lib = on_load_copy(&dir, "none");
    let mode = dir.join("mode");
    let mut server = Server::builder()
        .arg(app_spec(&lib, "application"))
        .args(["--no-static", "--workers", "2"])
        .env("HOST_FIXTURE_ON_LOAD", &mode)
        .start();
    let master = server.pid();
    let stage = Path::new("/tmp").join(format!("host-stage-{master}"));
    const CLIENTS: usize = 2;
    let load = Load::start(server.addr, "/", CLIENTS, Duration::from_millis(1));

    // Every bad file, twice, in place of the library: refused, still serving.
    let bad = bad_files(&dir);
    let mut refusals = 0;
    for round in 0..2 {
        for (what, path, says) in &bad {
            let _ = std::fs::remove_file(&lib);
            std::os::unix::fs::symlink(path, &lib).expect("symlink");
            server.signal("HUP");
            refusals += 1;
            let log = wait_for_count(&server, "not swapping", refusals, Duration::from_secs(10));
            let line = lines_with(&log, "not swapping").pop().unwrap_or_default();
            assert!(line.contains(says), "{what}: {line}");
            if round == 0 {
                println!("swap to {what}: {line}");
            }
        }
        for constructor in ["segv", "abort", "exit"] {
            install(&plugin_lib("on_load"), &lib);
            set_mode(&dir, constructor);
            server.signal("HUP");
            refusals += 1;
            wait_for_count(&server, "not swapping", refusals, Duration::from_secs(10));
        }
    }
    assert!(
        folder_bytes(&stage) < 64 << 20,
        "staging grew to {} bytes",
        folder_bytes(&stage)
    );

    // A probe that never returns: meanwhile a crashed worker is replaced,
    // and SIGTERM is obeyed long before the 30 s probe time limit.
    install(&plugin_lib("on_load"), &lib);
    set_mode(&dir, "probe-sleep");
    server.signal("HUP");
    let probe = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        probe_pids(master).first().copied()
    });
    let probe = probe.unwrap_or_else(|| panic!("no probe started after SIGHUP\n{}", server.log()));
    let victim = worker_pids(master)[0];
    kill("KILL", victim);
    let replaced = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let now = worker_pids(master);
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    assert!(
        replaced.is_some(),
        "no replacement while the probe hangs\n{}",
        server.log()
    );
    assert!(
        probe_pids(master).contains(&probe),
        "the probe {probe} ended before the replacement: it was not hanging\n{}",
        server.log()
    );
    let records = load.finish();
    let failed = records.iter().filter(|r| !r.ok()).count();
    println!(
        "{refusals} refused swaps under {CLIENTS} clients: {} requests, {failed} failed (≤ {CLIENTS} in flight on the killed worker may)",
        records.len()
    );
    assert!(failed <= CLIENTS, "{failed} failed: {:?}", failures(&records));
    let term = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10));
    println!(
        "SIGTERM while a probe hangs: exited {status:?} after {:?}",
        term.elapsed()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit within 10 s\n{}",
        server.log()
    );
    assert!(!stage.exists(), "the staging folder was left behind");
}
