//! Worker processes under a master, end to end: the real `host` binary with
//! `--workers 2` on 127.0.0.1, faulty apps that kill their worker, SIGKILL,
//! hot swaps (SIGHUP and `--reload`) under load, refused swaps, graceful
//! stop and crash-loop back-off.
//!
//! Run `make test` (or `cargo build --profile test-release --workspace` first): echo and faulty are loaded
//! from the host binary's folder; the `swap` fixture is built here, once
//! per `SWAP_VERSION`.
//!
//! The tests run one at a time (see [`one_at_a_time`]): each starts a master,
//! two workers and up to four client threads, and on a two-core machine
//! several at once would starve each other. Every wait is bounded; the
//! assertions are on counts and ordering, never on how fast something was.
//! Measured numbers are printed (`--nocapture` shows them).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::fleet::*;
use common::server::TempDir;
use common::{app_spec, fixture_lib, plugin_lib, swap_lib};

/// A free port on 127.0.0.1 for `--admin-bind` (bound and released).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The sum of metric `name`'s samples on the admin listener's `/metrics`
/// (0 if it has none or does not answer). The workers report every second.
fn metric(admin: SocketAddr, name: &str) -> f64 {
    let Ok((200, text)) = try_get(admin, "/metrics", REQUEST_TIMEOUT) else {
        return 0.0;
    };
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Polls `/metrics` until metric `name` is at least `at_least` (≤ 10 s).
fn wait_for_metric(server: &common::server::Server, admin: SocketAddr, name: &str, at_least: f64) {
    let seen = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        (metric(admin, name) >= at_least).then_some(())
    });
    assert!(
        seen.is_some(),
        "{name} did not reach {at_least} within 10 s: {}\n{}",
        metric(admin, name),
        server.log()
    );
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
        // The worker could not log the request; its master did, with the
        // status the client got (none) and the request's id.
        // (Polled until the whole line is in: the log is read while the
        // master may still be writing it.)
        let lost = format!("\"GET {path} HTTP/1.1\" 0 0 ");
        let logged = poll(Duration::from_secs(5), Duration::from_millis(20), || {
            let lines = lines_with(&server.log(), &lost);
            lines.iter().any(|line| line.contains(" id=")).then_some(lines)
        });
        let lines = logged.unwrap_or_else(|| panic!("no whole access line for {path}:\n{}", server.log()));
        assert_eq!(lines.len(), 1, "one access line for {path}: {lines:?}");
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
    // The worker logged its 504; the master, which finds the request still
    // on the board when the worker is killed, does not log it again.
    let hung = lines_with(&server.log(), "\"GET /hang HTTP/1.1\"");
    assert_eq!(hung.len(), 1, "one access line for /hang: {hung:?}");
    assert!(hung[0].contains("\" 504 "), "{}", hung[0]);
}

#[test]
fn sigkill_costs_only_in_flight_requests() {
    let _serial = one_at_a_time();
    let mut server = start(&echo(), &[]);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");

    const CLIENTS: usize = 4;
    /// Requests that must succeed before the kill and after the
    /// replacement is up (counts, not time windows: a loaded machine only
    /// makes the test slower).
    const BEFORE: usize = 40;
    const AFTER: usize = 100;
    let load = Load::start(server.addr, "/sleep/20", CLIENTS, Duration::ZERO);
    let ok_count = |load: &Load| load.with(|records| records.iter().filter(|r| r.ok()).count());
    poll(Duration::from_secs(30), Duration::from_millis(10), || {
        (ok_count(&load) >= BEFORE).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {BEFORE} requests succeeded before the kill\n{}",
            server.log()
        )
    });
    let victim = workers[0];
    kill("KILL", victim);
    let replaced = poll(Duration::from_secs(30), Duration::from_millis(10), || {
        let now = worker_pids(master);
        (now.len() == 2 && !now.contains(&victim) && now.iter().all(|pid| is_worker(*pid))).then_some(now)
    });
    let replaced_at = Instant::now();
    let replacement = replaced.unwrap_or_else(|| {
        panic!(
            "worker {victim} was not replaced within 30 s: {:?}\n{}",
            worker_pids(master),
            server.log()
        )
    });
    let after_replacement =
        |load: &Load| load.with(|records| records.iter().filter(|r| r.started >= replaced_at).count());
    poll(Duration::from_secs(30), Duration::from_millis(10), || {
        (after_replacement(&load) >= AFTER).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {AFTER} requests were sent after the replacement\n{}",
            server.log()
        )
    });
    let records = load.finish();

    let sent = records.len();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let late: Vec<&Record> = records.iter().filter(|r| r.started >= replaced_at).collect();
    let late_failed = late.iter().filter(|r| !r.ok()).count();
    println!(
        "SIGKILL to worker {victim}: {sent} requests sent, {failed} failed (at most {CLIENTS} in flight); {} sent \
         after the replacement was up, {late_failed} failed",
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
    assert_eq!(
        late_failed,
        0,
        "requests after the replacement failed: {:?}",
        failures(&late.into_iter().cloned().collect::<Vec<_>>())
    );
    let log = server.wait_for_log("died: signal 9 (SIGKILL)", Duration::from_secs(5));
    assert!(
        log.contains("died: signal 9 (SIGKILL)"),
        "the kill is not in the log:\n{log}"
    );
    assert!(alive(&mut server), "the master died:\n{log}");
    println!("workers {workers:?} → {replacement:?}");
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
    let running = poll(Duration::from_secs(10), Duration::from_millis(5), || {
        (load.with(|records| records.iter().filter(|r| r.ok()).count()) >= 20).then_some(())
    });
    assert!(running.is_some(), "the load did not get going\n{}", server.log());
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

/// The measure: 40 SIGHUPs 0.25 s apart under keep-alive and
/// fresh-connection clients, GET and POST. Draining workers answer the next
/// request on each kept-alive connection with `Connection: close` and give
/// an idle connection a grace before closing it, so no request is lost.
#[test]
fn rapid_swaps_drop_no_request_on_kept_alive_connections() {
    let _serial = one_at_a_time();
    let mut server = start(&echo(), &[]);
    let clients = mixed_clients();
    let load = Load::clients(server.addr, clients);
    const SWAPS: usize = 40;
    for _ in 0..SWAPS {
        server.signal("HUP");
        // The measure is a rate: SIGHUPs 250 ms apart, whatever state the
        // swaps are in (time passing is the point).
        thread::sleep(Duration::from_millis(250));
    }
    // The last swaps finish under load too.
    let promoted = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let log = server.log();
        (!log.contains("already starting") || log.matches(" serving, ").count() >= 2).then_some(())
    });
    assert!(promoted.is_some(), "{}", server.log());
    // And the load goes on after them: 100 more requests answered.
    let settled = Instant::now();
    let after = poll(Duration::from_secs(20), Duration::from_millis(20), || {
        (load.with(|records| records.iter().filter(|r| r.started >= settled).count()) >= 100).then_some(())
    });
    assert!(after.is_some(), "the load stopped after the swaps\n{}", server.log());
    let records = load.finish();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let log = server.log();
    let generations = log.matches(" serving, ").count();
    println!(
        "{SWAPS} SIGHUPs 250 ms apart, 4 kept-alive + 4 fresh-connection clients (GET and POST): {} requests, {failed} failed; {generations} new generations",
        records.len()
    );
    assert_eq!(failed, 0, "requests failed during swaps: {:?}", failures(&records));
    assert!(generations >= 10, "too few swaps happened:\n{log}");
    assert!(alive(&mut server), "the master died:\n{log}");
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
    let admin = free_addr();
    let mut server = start(&echo(), &["--admin-bind", &admin.to_string()]);
    let master = server.pid();
    let workers = worker_pids(master);
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    let addr = server.addr;
    let request = thread::spawn(move || {
        let started = Instant::now();
        (try_get(addr, "/sleep/2000", Duration::from_secs(10)), started.elapsed())
    });
    // The stop comes once the request is in a worker (its reports, every
    // second, count it; it sleeps 2 s in the app).
    wait_for_metric(&server, admin, "host_requests_in_flight", 1.0);
    let term = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(15));
    let exit_took = term.elapsed();
    let (answer, request_took) = request.join().expect("the client thread");
    println!(
        "SIGTERM with /sleep/2000 in flight: {answer:?} after {:.0} ms; master exited {status:?} {:.0} ms after \
         SIGTERM",
        request_took.as_secs_f64() * 1e3,
        exit_took.as_secs_f64() * 1e3
    );
    assert!(
        says(&answer, "slept 2000"),
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
fn crashing_routes_are_quarantined_and_never_empty_the_server() {
    let _serial = one_at_a_time();
    let faulty = plugin_lib("faulty");
    let mut extra = Vec::new();
    for (prefix, symbol) in [("/segv", "segfault"), ("/abort", "abort"), ("/exit", "exit")] {
        extra.push("--mount".to_owned());
        extra.push(format!("{prefix}={}", app_spec(&faulty, symbol)));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut server = start(&echo(), &extra);
    let master = server.pid();
    const CLIENTS: usize = 4;
    let load = Load::start(server.addr, "/", CLIENTS, Duration::ZERO);

    // Each faulty route, ten times: three crashes, then 503s naming the option.
    let mut outcomes = Vec::new();
    for path in ["/segv", "/abort", "/exit"] {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            let answer = try_get(server.addr, path, REQUEST_TIMEOUT);
            statuses.push(answer.as_ref().map(|(status, _)| *status).unwrap_or(0));
            if let Ok((503, body)) = &answer {
                assert!(body.contains("--quarantine-after"), "{path}: {body}");
            }
            // Before the next request, the master has counted this crash
            // (its log line), its replacement serves, and at the third the
            // quarantine has begun.
            let crashes = statuses.iter().filter(|s| **s == 0).count();
            if answer.is_err() {
                let died = format!(" in GET {path}");
                let dead = poll(Duration::from_secs(10), Duration::from_millis(10), || {
                    let log = server.log();
                    let deaths: Vec<String> = lines_with(&log, "died: ")
                        .into_iter()
                        .filter(|line| line.contains(&died))
                        .collect();
                    let line = deaths.get(crashes - 1)?;
                    Some(line.split("worker pid ").nth(1)?.split(' ').next()?.to_owned())
                })
                .unwrap_or_else(|| panic!("{path}: crash {crashes} not logged\n{}", server.log()));
                wait_for_count(&server, &format!("replaced pid {dead}:"), 1, Duration::from_secs(10));
                if crashes == 3 {
                    let began = format!("quarantine: requests to {path} crashed workers 3 times");
                    wait_for_count(&server, &began, 1, Duration::from_secs(10));
                    // The replacement applies the quarantine before it
                    // accepts (it reads the master's list up to `Synced`).
                }
            }
        }
        let crashed = statuses.iter().filter(|s| **s == 0).count();
        let refused = statuses.iter().filter(|s| **s == 503).count();
        println!("{path} × 10: {statuses:?}");
        assert_eq!((crashed, refused), (3, 7), "{path}: {statuses:?}\n{}", server.log());
        outcomes.push((path, statuses));
    }
    let records = load.finish();
    let failed = records.iter().filter(|r| !r.ok()).count();
    let log = server.log();
    let deaths = lines_with(&log, "died: ");
    println!(
        "healthy route under {CLIENTS} clients: {} requests, {failed} failed; {} worker deaths",
        records.len(),
        deaths.len()
    );
    for line in deaths.iter().chain(&lines_with(&log, "quarantine")) {
        println!("  log: {line}");
    }
    assert_eq!(deaths.len(), 9, "three deaths per faulty route:\n{log}");
    for (path, death) in [
        ("/segv", "died: signal 11 (SIGSEGV) in GET /segv"),
        ("/abort", "died: signal 6 (SIGABRT) in GET /abort"),
        ("/exit", "died: exit code 3 in GET /exit"),
    ] {
        assert_eq!(
            log.matches(death).count(),
            3,
            "{path}: the crash names its request:\n{log}"
        );
        assert!(
            log.contains(&format!("quarantine: requests to {path} crashed workers 3 times")),
            "{log}"
        );
    }
    // Only requests in flight on a dying worker may fail.
    assert!(
        failed <= 9 * CLIENTS,
        "{failed} healthy requests failed: {:?}",
        failures(&records)
    );
    let workers = poll(Duration::from_secs(5), Duration::from_millis(20), || {
        (worker_pids(master).len() == 2).then_some(())
    });
    assert!(workers.is_some(), "not two workers: {:?}", worker_pids(master));
    assert!(alive(&mut server), "the master died:\n{log}");
    server.stop();
}

#[test]
fn a_crash_that_varies_its_path_quarantines_its_whole_mount() {
    let _serial = one_at_a_time();
    let crasher = format!("/f={}", app_spec(&plugin_lib("faulty"), "segfault"));
    let mut server = start(&echo(), &["--mount", &crasher]);
    let load = Load::start(server.addr, "/", 2, Duration::ZERO);
    // Each crash on a path of its own: /f/1, /f/2, …
    let mut statuses = Vec::new();
    for n in 1..=10 {
        let answer = try_get(server.addr, &format!("/f/{n}"), REQUEST_TIMEOUT);
        statuses.push(answer.as_ref().map(|(status, _)| *status).unwrap_or(0));
        if let Ok((503, body)) = &answer {
            assert!(body.contains("--quarantine-after"), "/f/{n}: {body}");
        }
        // The probe, kept as it was: a client that walks the paths
        // 1.5 s apart, well inside the 60 s --quarantine-window (time
        // passing is the point).
        thread::sleep(Duration::from_millis(1500));
    }
    let records = load.finish();
    let log = server.log();
    let deaths = lines_with(&log, "died: ").len();
    println!("/f/1 … /f/10: {statuses:?}; {deaths} worker deaths");
    assert_eq!(deaths, 3, "at most --quarantine-after (3) deaths:\n{log}");
    assert_eq!(statuses[..3], [0, 0, 0], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 503), "then 503s: {statuses:?}");
    assert!(
        log.contains("quarantine: requests to every path of the app at /f crashed workers 3 times"),
        "{log}"
    );
    // The healthy app and the site are untouched by the mount's quarantine.
    assert!(records.iter().filter(|r| r.ok()).count() > 100);
    assert!(matches!(try_get(server.addr, "/hello", REQUEST_TIMEOUT), Ok((200, _))));
    assert!(alive(&mut server), "the master died:\n{log}");
    server.stop();
}

#[test]
fn crash_loops_are_reported_and_replaced_at_once_without_quarantine() {
    let _serial = one_at_a_time();
    let segv = format!("/segv={}", app_spec(&plugin_lib("faulty"), "segfault"));
    let mut server = start(&echo(), &["--mount", &segv, "--quarantine-after", "0"]);
    for round in 1..=6 {
        let answer = try_get(server.addr, "/segv", Duration::from_secs(15));
        assert!(answer.is_err(), "/segv #{round} must crash, got {answer:?}");
        // No back-off: the site keeps answering between crashes.
        until_ok(server.addr, "/", Duration::from_secs(5));
    }
    let log = wait_for_count(&server, "replaced pid", 6, Duration::from_secs(5));
    assert!(
        log.contains("crash loop"),
        "six crashes, no crash loop reported:\n{log}"
    );
    assert!(!log.contains("quarantine:"), "quarantine is off:\n{log}");
    assert!(alive(&mut server), "the master died:\n{log}");
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
    let admin = free_addr();
    let mut server = start(
        &app_spec(&lib, "application"),
        &["--mount", &echo_mount, "--admin-bind", &admin.to_string()],
    );
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
        .map(|_| thread::spawn(move || try_get(addr, "/echo/sleep/2500?pid", Duration::from_secs(10))))
        .collect();
    // All four in the app (the only worker that can take them reports them
    // in flight, every second; they sleep 2.5 s) before the thaw.
    wait_for_metric(&server, admin, "host_requests_in_flight", 4.0);
    drop(thawed);
    // The frozen new worker "dies at start": the generation is abandoned.
    drop(frozen_guard);
    let log = server.wait_for_log("abandoned", Duration::from_secs(10));
    assert!(log.contains("abandoned"), "the generation was not abandoned:\n{log}");
    let answers: Vec<Answer> = requests
        .into_iter()
        .map(|r| r.join().expect("a client thread"))
        .collect();
    // Every request was accepted, and answered, by the ready new worker.
    let by_ready_new = format!("slept 2500 in pid {}", ready_new[0]);
    let dropped = answers.iter().filter(|a| !says(a, &by_ready_new)).count();
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
        "{dropped} of 4 requests were not answered by the ready new worker {ready_new:?} (an old worker took \
         them while frozen, or abandoning the pending generation dropped what its ready worker had accepted): \
         {answers:?}"
    );
    assert!(
        !says(&after, new_version),
        "the abandoned build still answers: {after:?}"
    );
}

#[test]
fn a_connection_accepted_before_a_swap_gets_its_first_request_answered() {
    let _serial = one_at_a_time();
    let admin = free_addr();
    let mut server = common::server::Server::builder()
        .arg(echo())
        .args(["--no-static", "--workers", "1", "--admin-bind", &admin.to_string()])
        .start();
    let master = server.pid();
    let before = worker_pids(master);
    assert_eq!(before.len(), 1, "{before:?}");
    // Accepted by the only worker, which is then retired by a swap while
    // the client has sent nothing (a slow TLS handshake looks the same).
    let mut conn = server.connect();
    wait_for_metric(&server, admin, "host_connections", 1.0);
    server.signal("HUP");
    let swapped = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        worker_pids(master)
            .iter()
            .any(|pid| !before.contains(pid))
            .then_some(())
    });
    assert!(swapped.is_some(), "no new worker:\n{}", server.log());
    // Past the 1 s idle grace of kept-alive connections, well inside the
    // 10 s header timeout (time passing is the point).
    std::thread::sleep(Duration::from_millis(2500));
    conn.send(&common::server::request_bytes("GET", "/hello", &[], b""));
    let response = conn.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "a draining worker asks the client to go"
    );
    server.stop();
}
