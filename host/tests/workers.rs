//! Worker processes under a master, end to end: the real `host` binary with
//! `--workers 2` on 127.0.0.1, faulty apps that kill their worker, SIGKILL,
//! hot swaps (SIGHUP and `--reload`) under load, refused swaps, graceful
//! stop and crash-loop back-off.
//!
//! Run `cargo build --release --workspace` first (echo and faulty are loaded
//! from the host binary's folder); the `swap` fixture is built here, once
//! per `SWAP_VERSION`.
//!
//! The tests run one at a time (see [`one_at_a_time`]): each starts a master,
//! two workers and up to four client threads, and on a two-core machine
//! several at once would starve each other. Every wait is bounded; the
//! assertions are on counts and ordering, never on how fast something was.
//! Measured numbers are printed (`--nocapture` shows them).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::server::{Server, TempDir};
use common::{app_spec, fixture_lib, plugin_lib, swap_lib};

// ---------------------------------------------------------------- helpers

/// Serializes the tests of this file (the guard is held for a whole test).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long one client request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A response's status and body (lossy text), or why there was none.
type Answer = Result<(u16, String), String>;

/// `GET path` on a new connection with `Connection: close`; never panics.
fn try_get(addr: SocketAddr, path: &str, timeout: Duration) -> Answer {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket options: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        return Err(format!("read: {e} (after {} bytes)", bytes.len()));
    }
    parse_response(&bytes)
}

/// Parses one whole response (Content-Length, chunked, or to the end).
fn parse_response(bytes: &[u8]) -> Answer {
    if bytes.is_empty() {
        return Err("closed without a response".to_owned());
    }
    let lossy = || String::from_utf8_lossy(bytes).into_owned();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response head: {:?}", lossy()))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line: {:?}", lossy()))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = &bytes[end + 4..];
    let text = if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| format!("truncated chunked body: {:?}", lossy()))?;
            let size = String::from_utf8_lossy(&body[..line_end]);
            let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| format!("bad chunk size: {:?}", lossy()))?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            if body.len() < size + 2 {
                return Err(format!("truncated chunk: {:?}", lossy()));
            }
            out.extend_from_slice(&body[..size]);
            body = &body[size + 2..];
        }
        String::from_utf8_lossy(&out).into_owned()
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length: {:?}", lossy()))?;
        if body.len() < length {
            return Err(format!("body {} bytes short: {:?}", length - body.len(), lossy()));
        }
        String::from_utf8_lossy(&body[..length]).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    Ok((status, text))
}

/// Whether `answer` is a 200 with body `text`.
fn says(answer: &Answer, text: &str) -> bool {
    matches!(answer, Ok((200, body)) if body == text)
}

/// Calls `check` every `every` until it gives `Some` or `within` passes.
fn poll<T>(within: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// Retries `GET path` (50 ms apart) until it answers 200, for at most
/// `within`; the tries it took and the time.
fn until_ok(addr: SocketAddr, path: &str, within: Duration) -> (usize, Duration) {
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let left = within.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
        let answer = try_get(addr, path, left.min(REQUEST_TIMEOUT));
        if matches!(answer, Ok((200, _))) {
            return (tries, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "GET {path} did not answer 200 within {within:?} ({tries} tries); last: {answer:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The live worker processes of `master`: its children whose command line
/// has the `worker` subcommand (not probes), zombies excluded. Found by
/// scanning /proc (this kernel has no /proc/PID/task/TID/children).
fn worker_pids(master: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(master) && state != Some("Z") && is_worker(pid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Whether `pid` is a live `host worker` process (a zombie's command line
/// is empty).
fn is_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .any(|arg| arg == b"worker")
}

/// Sends `signal` (e.g. `KILL`) to `pid` with kill(1).
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Whether the master process is still running.
fn alive(server: &mut Server) -> bool {
    server.wait_exit(Duration::ZERO).is_none()
}

/// The log lines that contain `needle`.
fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// Polls the log until `needle` occurs at least `count` times (≤ `within`).
fn wait_for_count(server: &Server, needle: &str, count: usize, within: Duration) -> String {
    let mut log = String::new();
    let found = poll(within, Duration::from_millis(20), || {
        log = server.log();
        (log.matches(needle).count() >= count).then_some(())
    });
    assert!(
        found.is_some(),
        "the log did not mention {needle:?} {count} time(s) within {within:?}:\n{log}"
    );
    log
}

/// Puts a copy of `from` at `to` atomically: copy beside it, then rename
/// (a new inode, as a build or `make` would produce).
fn install(from: &Path, to: &Path) {
    let partial = to.with_extension("so.partial");
    std::fs::copy(from, &partial).unwrap_or_else(|e| panic!("copy {} → {}: {e}", from.display(), partial.display()));
    std::fs::rename(&partial, to).unwrap_or_else(|e| panic!("rename over {}: {e}", to.display()));
}

/// A host serving `app` at `/` with two workers and no static site, plus
/// `extra` flags.
fn start(app: &str, extra: &[&str]) -> Server {
    Server::builder()
        .arg(app)
        .args(["--no-static", "--workers", "2"])
        .args(extra)
        .start()
}

/// The echo demo plugin's `LIB:SYMBOL`.
fn echo() -> String {
    app_spec(&plugin_lib("echo"), "application")
}

// ------------------------------------------------------------------- load

/// One request of a load loop.
#[derive(Clone, Debug)]
struct Record {
    started: Instant,
    done: Instant,
    answer: Answer,
}

impl Record {
    fn ok(&self) -> bool {
        matches!(self.answer, Ok((200, _)))
    }
}

/// Client threads sending `GET path`, one request per connection, until
/// stopped; every request is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, path: &str, threads: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, records, path) = (stop.clone(), records.clone(), path.to_owned());
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let answer = try_get(addr, &path, REQUEST_TIMEOUT);
                        let record = Record {
                            started,
                            done: Instant::now(),
                            answer,
                        };
                        records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
                        if !pause.is_zero() {
                            thread::sleep(pause);
                        }
                    }
                })
            })
            .collect();
        Load { stop, records, threads }
    }

    /// Runs `f` on the records so far.
    fn with<T>(&self, f: impl FnOnce(&[Record]) -> T) -> T {
        f(&self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops the threads and returns every record.
    fn finish(mut self) -> Vec<Record> {
        self.halt();
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The failed records, summarized (at most 10).
fn failures(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !r.ok())
        .take(10)
        .map(|r| format!("{:?}", r.answer))
        .collect()
}

// ------------------------------------------------------------------ tests

#[test]
fn faults_take_down_only_their_worker() {
    let _serial = one_at_a_time();
    let faulty = plugin_lib("faulty");
    let mut extra: Vec<String> = ["--timeout", "1s"].map(str::to_owned).to_vec();
    for (prefix, symbol) in [
        ("/segv", "segfault"),
        ("/abort", "abort"),
        ("/exit", "exit"),
        ("/panic", "panic"),
        ("/hang", "hang"),
    ] {
        extra.push("--mount".to_owned());
        extra.push(format!("{prefix}={}", app_spec(&faulty, symbol)));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut server = start(&echo(), &extra);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");

    // A panic is caught inside the worker: 500, and nobody dies.
    let answer = try_get(server.addr, "/panic", REQUEST_TIMEOUT);
    assert!(matches!(answer, Ok((500, _))), "/panic: {answer:?}");
    until_ok(server.addr, "/", Duration::from_secs(5));
    assert_eq!(worker_pids(master), workers, "a panic cost a worker");
    assert!(
        !server.log().contains("died"),
        "a panic killed a worker:\n{}",
        server.log()
    );
    println!("/panic: 500, workers unchanged {workers:?}");

    for (path, death) in [
        ("/segv", "died: signal 11 (SIGSEGV)"),
        ("/abort", "died: signal 6 (SIGABRT)"),
        ("/exit", "died: exit code 3"),
    ] {
        let before = worker_pids(master);
        assert_eq!(before.len(), 2, "two workers before {path}: {before:?}");
        let answer = try_get(server.addr, path, REQUEST_TIMEOUT);
        assert!(
            !matches!(answer, Ok((status, _)) if status < 500),
            "{path} must fail, got {answer:?}"
        );
        let log = server.wait_for_log(death, Duration::from_secs(5));
        assert!(log.contains(death), "no {death:?} in the log after {path}:\n{log}");
        let (tries, took) = until_ok(server.addr, "/", Duration::from_secs(5));
        assert!(alive(&mut server), "the master died after {path}:\n{}", server.log());
        // Exactly one worker was replaced: the other one never stopped.
        let after = poll(Duration::from_secs(5), Duration::from_millis(20), || {
            let now = worker_pids(master);
            (now.len() == 2 && now != before).then_some(now)
        })
        .unwrap_or_else(|| {
            panic!(
                "no replacement worker after {path}: {:?}\n{}",
                worker_pids(master),
                server.log()
            )
        });
        let survivors = after.iter().filter(|pid| before.contains(pid)).count();
        assert_eq!(survivors, 1, "{path}: workers {before:?} → {after:?}");
        println!(
            "{path}: {answer:?}; GET / answered 200 after {tries} tries, {:.0} ms; workers {before:?} → {after:?}",
            took.as_secs_f64() * 1e3
        );
    }

    // A hung request: 504 at the deadline, and its worker retires.
    let before = worker_pids(master);
    let started = Instant::now();
    let answer = try_get(server.addr, "/hang", Duration::from_secs(10));
    let took = started.elapsed();
    assert!(matches!(answer, Ok((504, _))), "/hang: {answer:?}");
    let log = server.wait_for_log("retires", Duration::from_secs(5));
    assert!(log.contains("retires"), "no retirement in the log:\n{log}");
    assert!(
        log.contains("--timeout"),
        "the 504's log line does not name --timeout:\n{log}"
    );
    let (tries, _) = until_ok(server.addr, "/", Duration::from_secs(5));
    let after = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        let now = worker_pids(master);
        (now.len() == 2 && now.iter().filter(|pid| before.contains(pid)).count() == 1).then_some(now)
    })
    .unwrap_or_else(|| {
        panic!(
            "the stuck worker was not replaced: {:?}\n{}",
            worker_pids(master),
            server.log()
        )
    });
    assert!(alive(&mut server), "the master died:\n{}", server.log());
    println!(
        "/hang: {} after {:.0} ms (--timeout 1s); GET / ok after {tries} tries; workers {before:?} → {after:?}",
        answer.map(|(status, _)| status).unwrap_or_default(),
        took.as_secs_f64() * 1e3
    );
    for line in lines_with(&server.log(), "died")
        .iter()
        .chain(&lines_with(&server.log(), "retire"))
    {
        println!("  log: {line}");
    }
    server.stop();
}

#[test]
fn sigkill_costs_only_in_flight_requests() {
    let _serial = one_at_a_time();
    let mut server = start(&echo(), &[]);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");

    const CLIENTS: usize = 4;
    let load = Load::start(server.addr, "/sleep/20", CLIENTS, Duration::ZERO);
    let began = Instant::now();
    thread::sleep(Duration::from_millis(700));
    let victim = workers[0];
    let killed_at = Instant::now();
    kill("KILL", victim);
    thread::sleep(Duration::from_millis(2200).saturating_sub(began.elapsed()));
    let records = load.finish();

    let sent = records.len();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let settled = killed_at + Duration::from_secs(1);
    let late: Vec<&Record> = records.iter().filter(|r| r.started >= settled).collect();
    let late_failed = late.iter().filter(|r| !r.ok()).count();
    println!(
        "SIGKILL to worker {victim}: {sent} requests sent, {failed} failed (at most {CLIENTS} in flight); {} sent \
         after kill + 1 s, {late_failed} failed",
        late.len()
    );
    for failure in failures(&records) {
        println!("  failed: {failure}");
    }
    assert!(
        failed <= CLIENTS,
        "{failed} of {sent} requests failed; only the in-flight ones (≤ {CLIENTS}) may: {:?}",
        failures(&records)
    );
    assert!(!late.is_empty(), "no requests were sent after the kill settled");
    assert_eq!(
        late_failed,
        0,
        "requests after kill + 1 s failed: {:?}",
        failures(&late.into_iter().cloned().collect::<Vec<_>>())
    );
    let log = server.wait_for_log("died: signal 9 (SIGKILL)", Duration::from_secs(5));
    assert!(
        log.contains("died: signal 9 (SIGKILL)"),
        "the kill is not in the log:\n{log}"
    );
    assert!(alive(&mut server), "the master died:\n{log}");
    let replaced = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        let now = worker_pids(master);
        (now.len() == 2 && !now.contains(&victim)).then_some(now)
    });
    assert!(
        replaced.is_some(),
        "worker {victim} was not replaced: {:?}",
        worker_pids(master)
    );
    println!("workers {workers:?} → {:?}", replaced.unwrap_or_default());
    server.stop();
}

#[test]
fn swap_v1_to_v2_drops_nothing() {
    let _serial = one_at_a_time();
    let v1 = swap_lib("v1");
    let v2 = swap_lib("v2");
    let dir = TempDir::new("swap");
    let lib = dir.join("libswap.so");
    install(&v1, &lib);
    let mut server = start(&app_spec(&lib, "application"), &[]);
    let master = server.pid();
    let first = try_get(server.addr, "/", REQUEST_TIMEOUT);
    assert!(says(&first, "v1"), "before any swap: {first:?}");

    const CLIENTS: usize = 4;
    let load = Load::start(server.addr, "/", CLIENTS, Duration::ZERO);
    thread::sleep(Duration::from_millis(200));
    let mut latencies = Vec::new();
    const SWAPS: usize = 10;
    for (round, (version, file)) in (0..SWAPS)
        .map(|i| if i % 2 == 0 { ("v2", &v2) } else { ("v1", &v1) })
        .enumerate()
    {
        let old = worker_pids(master);
        assert_eq!(old.len(), 2, "swap {}: two workers before: {old:?}", round + 1);
        install(file, &lib);
        let hup = Instant::now();
        server.signal("HUP");

        // The first answer from the new build.
        let first_new = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            load.with(|records| {
                records
                    .iter()
                    .filter(|r| r.done >= hup && says(&r.answer, version))
                    .map(|r| r.done)
                    .min()
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "swap {}: no {version} answer within 10 s of SIGHUP\n{}",
                round + 1,
                server.log()
            )
        });
        let latency = first_new - hup;
        latencies.push(latency);

        // The old generation drains and exits; whatever is asked after that
        // can only be answered by the new build.
        let gone = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            let now = worker_pids(master);
            (!old.iter().any(|pid| now.contains(pid))).then(Instant::now)
        })
        .unwrap_or_else(|| {
            panic!(
                "swap {}: the old workers {old:?} did not exit\n{}",
                round + 1,
                server.log()
            )
        });
        let later = poll(Duration::from_secs(10), Duration::from_millis(10), || {
            let later: Vec<Answer> = load.with(|records| {
                records
                    .iter()
                    .filter(|r| r.started > gone)
                    .map(|r| r.answer.clone())
                    .collect()
            });
            (later.len() >= 20).then_some(later)
        })
        .unwrap_or_else(|| panic!("swap {}: the load stopped after the old workers left", round + 1));
        let stale: Vec<&Answer> = later.iter().filter(|a| !says(a, version)).collect();
        assert!(
            stale.is_empty(),
            "swap {}: after the old workers exited, {} of {} answers were not {version}: {:?}",
            round + 1,
            stale.len(),
            later.len(),
            &stale[..stale.len().min(5)]
        );
        let new = worker_pids(master);
        println!(
            "swap {} → {version}: first {version} answer {:.1} ms after SIGHUP; old workers {old:?} gone {:.1} ms \
             after SIGHUP; new workers {new:?}",
            round + 1,
            latency.as_secs_f64() * 1e3,
            (gone - hup).as_secs_f64() * 1e3
        );
    }
    let records = load.finish();
    let sent = records.len();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let max = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{SWAPS} swaps under load ({CLIENTS} clients, one request per connection): {sent} requests sent, {failed} failed; \
         SIGHUP → first new answer: {:?} ms, max {:.1} ms",
        latencies
            .iter()
            .map(|l| format!("{:.1}", l.as_secs_f64() * 1e3))
            .collect::<Vec<_>>(),
        max.as_secs_f64() * 1e3
    );
    for line in lines_with(&server.log(), " serving, ") {
        println!("  log: {line}");
    }
    assert_eq!(failed, 0, "requests failed during swaps: {:?}", failures(&records));
    assert_eq!(
        server.log().matches(" serving, ").count(),
        SWAPS,
        "one new generation per swap:\n{}",
        server.log()
    );
    server.stop();
}

#[test]
fn broken_swaps_keep_the_old_generation() {
    let _serial = one_at_a_time();
    let v1 = swap_lib("v1");
    let v2 = swap_lib("v2");
    let crash = swap_lib("crash-in-worker");
    let layout = fixture_lib("layout-change");
    let dir = TempDir::new("broken-swaps");
    let lib = dir.join("libswap.so");
    install(&v1, &lib);
    let mut server = start(&app_spec(&lib, "application"), &[]);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    let load = Load::start(server.addr, "/", 2, Duration::from_millis(1));

    // Each direct check: five fresh requests all answer `version`.
    let all_say = |version: &str| {
        for _ in 0..5 {
            let answer = try_get(server.addr, "/", REQUEST_TIMEOUT);
            assert!(
                says(&answer, version),
                "expected {version}: {answer:?}\n{}",
                server.log()
            );
        }
    };

    // (a) Not a shared library at all; (b) a library whose interface types
    // differ: the probe refuses both, no worker is started.
    let junk = dir.join("junk.so");
    std::fs::write(&junk, b"this is not a shared library\n").expect("write junk");
    for (case, (what, file)) in [
        ("a", ("a non-ELF file", &junk)),
        ("b", ("the layout-change fixture", &layout)),
    ] {
        install(file, &lib);
        let refusals = server.log().matches("not swapping").count();
        server.signal("HUP");
        let log = wait_for_count(&server, "not swapping", refusals + 1, Duration::from_secs(10));
        all_say("v1");
        assert_eq!(worker_pids(master), workers, "({case}) the workers changed");
        let refusal = lines_with(&log, "not swapping").pop().unwrap_or_default();
        println!("({case}) {what}: still v1, workers unchanged; log: {refusal}");
    }

    // (c) Passes the probe, but aborts in every worker that loads it: the new
    // generation is abandoned before it ever accepts.
    install(&crash, &lib);
    server.signal("HUP");
    let log = server.wait_for_log("abandoned", Duration::from_secs(10));
    assert!(
        log.contains("abandoned"),
        "(c) the crashing generation was not abandoned:\n{log}"
    );
    all_say("v1");
    let settled = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        (worker_pids(master) == workers).then_some(())
    });
    assert!(settled.is_some(), "(c) workers {workers:?} → {:?}", worker_pids(master));
    println!("(c) crash-in-worker: still v1, workers unchanged");
    for line in lines_with(&log, "of the new generation")
        .iter()
        .chain(&lines_with(&log, "abandoned"))
    {
        println!("  log: {line}");
    }

    // (d) And a good build still swaps in afterwards.
    install(&v2, &lib);
    server.signal("HUP");
    let swapped = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        says(&try_get(server.addr, "/", REQUEST_TIMEOUT), "v2").then_some(())
    });
    assert!(
        swapped.is_some(),
        "(d) v2 did not swap in after the broken ones\n{}",
        server.log()
    );
    println!("(d) v2 swapped in after the broken builds");

    let records = load.finish();
    let failed = records.iter().filter(|r| !r.ok()).count();
    println!(
        "light load through all of it: {} requests sent, {failed} failed",
        records.len()
    );
    assert_eq!(failed, 0, "requests failed: {:?}", failures(&records));
    assert!(alive(&mut server), "the master died:\n{}", server.log());
    server.stop();
}

#[test]
fn reload_notices_a_rebuilt_file() {
    let _serial = one_at_a_time();
    let v1 = swap_lib("v1");
    let v2 = swap_lib("v2");
    let dir = TempDir::new("reload");
    let lib = dir.join("libswap.so");
    install(&v1, &lib);
    let mut server = start(&app_spec(&lib, "application"), &["--reload"]);
    let first = try_get(server.addr, "/", REQUEST_TIMEOUT);
    assert!(says(&first, "v1"), "before the rebuild: {first:?}");

    install(&v2, &lib);
    let replaced = Instant::now();
    let mut answers = 0;
    let swapped = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        let answer = try_get(server.addr, "/", REQUEST_TIMEOUT);
        answers += 1;
        assert!(
            says(&answer, "v1") || says(&answer, "v2"),
            "a request failed while reloading: {answer:?}"
        );
        says(&answer, "v2").then(|| replaced.elapsed())
    })
    .unwrap_or_else(|| panic!("--reload did not swap in v2 within 10 s\n{}", server.log()));
    let log = server.log();
    assert!(
        log.contains("--reload"),
        "the log does not say --reload swapped:\n{log}"
    );
    println!(
        "--reload: v2 answered {:.0} ms after the file was replaced ({answers} requests, none failed)",
        swapped.as_secs_f64() * 1e3
    );
    for line in lines_with(&log, "--reload") {
        println!("  log: {line}");
    }
    server.stop();
}

#[test]
fn graceful_stop_finishes_in_flight_requests() {
    let _serial = one_at_a_time();
    let mut server = start(&echo(), &[]);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    let addr = server.addr;
    let request = thread::spawn(move || {
        let started = Instant::now();
        (try_get(addr, "/sleep/1000", Duration::from_secs(10)), started.elapsed())
    });
    // Let the request reach the app before the stop.
    thread::sleep(Duration::from_millis(300));
    let term = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15));
    let exit_took = term.elapsed();
    let (answer, request_took) = request.join().expect("the client thread");
    println!(
        "SIGTERM with /sleep/1000 in flight: {answer:?} after {:.0} ms; master exited {status:?} {:.0} ms after \
         SIGTERM",
        request_took.as_secs_f64() * 1e3,
        exit_took.as_secs_f64() * 1e3
    );
    assert!(
        says(&answer, "slept 1000"),
        "the in-flight request: {answer:?}\n{}",
        server.log()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the master did not exit 0 within 15 s: {status:?}\n{}",
        server.log()
    );
    let left = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        let left: Vec<u32> = workers.iter().copied().filter(|pid| is_worker(*pid)).collect();
        left.is_empty().then_some(())
    });
    assert!(left.is_some(), "workers outlived the master: {workers:?}");
    assert!(
        server.log().contains("stopped"),
        "no `stopped` in the log:\n{}",
        server.log()
    );
    let stage = Path::new("/tmp").join(format!("host-stage-{master}"));
    assert!(
        !stage.exists(),
        "the staging folder {} was left behind",
        stage.display()
    );
}

#[test]
fn crash_loop_is_reported_not_spun() {
    let _serial = one_at_a_time();
    let segv = format!("/segv={}", app_spec(&plugin_lib("faulty"), "segfault"));
    let mut server = start(&echo(), &["--mount", &segv]);
    let mut took = Vec::new();
    for round in 1..=6 {
        let started = Instant::now();
        let answer = try_get(server.addr, "/segv", Duration::from_secs(15));
        took.push(started.elapsed());
        assert!(
            !matches!(answer, Ok((status, _)) if status < 500),
            "/segv #{round} must fail, got {answer:?}"
        );
    }
    let log = server.wait_for_log("crash loop", Duration::from_secs(5));
    assert!(
        log.contains("crash loop"),
        "six crashes, no crash loop reported:\n{log}"
    );
    assert!(alive(&mut server), "the master died:\n{log}");
    let (tries, recovered) = until_ok(server.addr, "/", Duration::from_secs(15));
    assert!(alive(&mut server), "the master died:\n{}", server.log());
    let log = server.log();
    let restarts = log.matches("replaced pid").count();
    println!(
        "6 × /segv, each failing after {:?} ms; GET / answered 200 {:.0} ms later ({tries} tries); {restarts} \
         replacements so far",
        took.iter().map(|t| t.as_millis()).collect::<Vec<_>>(),
        recovered.as_secs_f64() * 1e3
    );
    for line in lines_with(&log, "crash loop")
        .iter()
        .chain(&lines_with(&log, "replacing worker"))
    {
        println!("  log: {line}");
    }
    server.stop();
}

/// Sends `signal` to each pid when dropped: a test that fails half-way must
/// not leave stopped workers behind.
struct SignalOnDrop(&'static str, Vec<u32>);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        for pid in self.1.drain(..) {
            let _ = Command::new("kill")
                .arg(format!("-{}", self.0))
                .arg(pid.to_string())
                .status();
        }
    }
}

/// A new generation's workers accept on the shared sockets as soon as each
/// is ready, before the whole generation is promoted. If the generation is
/// then abandoned (another of its workers dies at start, or the start times
/// out), the requests its ready workers accepted must still be answered.
///
/// The setup is made deterministic with SIGSTOP: one new worker is frozen
/// before it is ready (so the generation stays pending), the old workers
/// are frozen for a moment so the next requests can only be accepted by the
/// new worker that is ready, then the frozen new worker is killed — to the
/// master, a worker that "died at start".
#[test]
fn abandoned_generation_finishes_requests_it_accepted() {
    let _serial = one_at_a_time();
    let v1 = swap_lib("v1");
    let v2 = swap_lib("v2");
    let dir = TempDir::new("abandon");
    let lib = dir.join("libswap.so");
    install(&v1, &lib);
    let echo_mount = format!("/echo={}", echo());
    let mut server = start(&app_spec(&lib, "application"), &["--mount", &echo_mount]);
    let master = server.pid();
    let old = worker_pids(master);
    assert_eq!(old.len(), 2, "two workers: {old:?}");

    // Freeze one new worker before it can report ready; retry if the race
    // to catch it starting is lost (the generation got promoted).
    let mut frozen = None;
    for (attempt, (version, file)) in [("v2", &v2), ("v1", &v1), ("v2", &v2)].into_iter().enumerate() {
        let serving = worker_pids(master);
        let promotions = server.log().matches(" serving, ").count();
        install(file, &lib);
        server.signal("HUP");
        let first_new = poll(Duration::from_secs(10), Duration::from_micros(200), || {
            worker_pids(master).into_iter().find(|pid| !serving.contains(pid))
        })
        .unwrap_or_else(|| panic!("no new worker after SIGHUP\n{}", server.log()));
        kill("STOP", first_new);
        let guard = SignalOnDrop("KILL", vec![first_new]);
        // The other new worker comes up and answers alongside the old ones.
        let seen = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            says(&try_get(server.addr, "/", REQUEST_TIMEOUT), version).then_some(())
        });
        assert!(
            seen.is_some(),
            "the new worker never answered {version}\n{}",
            server.log()
        );
        if server.log().matches(" serving, ").count() == promotions {
            frozen = Some((first_new, guard, serving, version));
            break;
        }
        println!(
            "attempt {}: both new workers were ready before one was frozen; again",
            attempt + 1
        );
        kill("CONT", first_new);
        std::mem::forget(guard);
        poll(Duration::from_secs(10), Duration::from_millis(10), || {
            worker_pids(master)
                .iter()
                .all(|pid| !serving.contains(pid))
                .then_some(())
        });
    }
    let (frozen, frozen_guard, serving, new_version) =
        frozen.unwrap_or_else(|| panic!("could not catch a new worker before it was ready (3 tries)"));
    let ready_new: Vec<u32> = worker_pids(master)
        .into_iter()
        .filter(|pid| !serving.contains(pid) && *pid != frozen)
        .collect();
    assert_eq!(ready_new.len(), 1, "one ready new worker: {ready_new:?}");

    // Only the ready new worker can accept now.
    for pid in &serving {
        kill("STOP", *pid);
    }
    let thawed = SignalOnDrop("CONT", serving.clone());
    let addr = server.addr;
    let requests: Vec<JoinHandle<Answer>> = (0..4)
        .map(|_| thread::spawn(move || try_get(addr, "/echo/sleep/1500", Duration::from_secs(10))))
        .collect();
    thread::sleep(Duration::from_millis(500));
    drop(thawed);
    // The frozen new worker "dies at start": the generation is abandoned.
    drop(frozen_guard);
    let log = server.wait_for_log("abandoned", Duration::from_secs(10));
    assert!(log.contains("abandoned"), "the generation was not abandoned:\n{log}");
    let answers: Vec<Answer> = requests
        .into_iter()
        .map(|r| r.join().expect("a client thread"))
        .collect();
    let dropped = answers.iter().filter(|a| !says(a, "slept 1500")).count();
    println!(
        "pending generation ({new_version}) abandoned while its ready worker {ready_new:?} had 4 requests in \
         flight: {dropped} of 4 dropped: {answers:?}"
    );
    for line in lines_with(&log, "of the new generation")
        .iter()
        .chain(&lines_with(&log, "abandoned"))
    {
        println!("  log: {line}");
    }
    let after = try_get(server.addr, "/", REQUEST_TIMEOUT);
    assert!(alive(&mut server), "the master died:\n{log}");
    // Stopped before the verdict, so even a failing run cleans up its
    // staging folder (a killed master cannot).
    server.stop();
    assert_eq!(
        dropped, 0,
        "abandoning a pending generation dropped {dropped} requests its ready worker had accepted (master.rs \
         abandon_pending sends SIGKILL to every worker of the generation, ready or not): {answers:?}"
    );
    assert!(
        !says(&after, new_version),
        "the abandoned build still answers: {after:?}"
    );
}
