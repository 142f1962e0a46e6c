//! The fast paths, end to end: app routes proven quick are called inline on
//! the runtime thread (and must still stream, write, answer HEAD and time
//! out correctly there), and the static site's cached lookups are checked
//! against the disk again after a second.
//!
//! Run `make test` (or `cargo build --profile test-release --workspace` first): echo is loaded from the
//! host binary's folder. Every wait is bounded; timings are compared with
//! each other (which finished first), never with absolute budgets.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::fleet::poll;
use common::server::{request_bytes, Conn, Response, Server, TempDir};
use common::{app_spec, plugin_lib, read_by_server, repo_root};

// ---------------------------------------------------------------- helpers

/// The echo demo plugin's `LIB:SYMBOL`.
fn echo() -> String {
    app_spec(&plugin_lib("echo"), "application")
}

/// What echo's `/mixed` answers without a query string.
const WHOLE: &str = "mixed whole\n";

/// Quick, whole calls a route needs before its first inline call
/// (`call_policy::PROVEN`); each time an inline call turns out slow or
/// streaming, twice as many.
const PROVEN: usize = 16;

/// The debug line `call_policy` logs when an inline call sends its route
/// back to the blocking pool: proof that the call ran inline.
const DEMOTED: &str = "/mixed: an inline call took";

/// Shows `call_policy`'s debug lines (see [`DEMOTED`]).
const LOG_DEMOTIONS: &str = "info,host::server::app_gateway::call_policy=debug";

/// `/mixed`'s `n` chunks, as `?stream=<n>` sends them.
fn chunks(n: usize) -> String {
    (0..n).map(|i| format!("chunk{i}\n")).collect()
}

/// Sends `count` keep-alive `GET /mixed` on `conn`, each a 200 with the
/// whole body: enough of them in a row and the route is called inline.
fn prove_quick(conn: &mut Conn, count: usize) {
    for i in 0..count {
        let response = conn.get("/mixed");
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, WHOLE),
            "GET /mixed #{i}: {response:?}"
        );
    }
}

/// The request's bytes for `method target` (keep-alive).
fn request(method: &str, target: &str) -> Vec<u8> {
    request_bytes(method, target, &[], b"")
}

/// Runs `method target` once `/mixed` is proven quick, so that it is called
/// inline, and checks its answer with `check`. The proof is the debug line
/// [`DEMOTED`] (the streaming or writing call sends the route back to the
/// pool); a noisy machine can break a streak of quick calls, so up to three
/// tries. `demotions` counts the route's demotions so far (each doubles the
/// proof needed). `on` runs the request: on the proving connection, or not.
fn inline_call(
    server: &Server,
    proving: &mut Conn,
    demotions: &mut usize,
    what: &str,
    mut on: impl FnMut(&mut Conn) -> Response,
    check: impl Fn(&Response),
) {
    for attempt in 1..=3 {
        prove_quick(proving, 2 * (PROVEN << *demotions));
        let response = on(proving);
        check(&response);
        // The line is logged before the answer is sent; generous grace for
        // a loaded machine (it only waits when the call ran on the pool).
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut demoted = server.log().matches(DEMOTED).count() > *demotions;
        while !demoted && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
            demoted = server.log().matches(DEMOTED).count() > *demotions;
        }
        if demoted {
            *demotions += 1;
            println!(
                "{what}: ran inline (try {attempt}), answered {} correctly",
                response.status
            );
            return;
        }
        println!("{what}: try {attempt} ran on the blocking pool (a quick streak was broken); again");
    }
    panic!("{what} never ran inline in three tries:\n{}", server.log());
}

/// Asserts a 200 `text/plain` whose body is `body`, chunked (the app gave
/// no length for a streamed or written body).
fn assert_chunked(response: &Response, body: &str, what: &str) {
    assert_eq!(response.status, 200, "{what}: {response:?}");
    assert_eq!(response.text(), body, "{what}: the body");
    assert!(response.is_chunked(), "{what}: not chunked: {response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"), "{what}");
}

/// Asserts a bodiless 200 to a HEAD (the next response on the connection
/// would be garbled by any body bytes sent).
fn assert_head(response: &Response, what: &str) {
    assert_eq!(response.status, 200, "{what}: {response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"), "{what}");
    assert!(response.body.is_empty(), "{what}: a body: {response:?}");
}

/// `method target` on a new connection (`Connection: close`).
fn fresh(server: &Server, method: &str, target: &str) -> Response {
    server.request(method, target, &[], b"")
}

// ------------------------------------------------------------------ tests

#[test]
fn a_route_proven_quick_still_streams_and_writes_correctly() {
    let server = Server::builder()
        .arg(echo())
        .args(["-w", "0"])
        .env("RUST_LOG", LOG_DEMOTIONS)
        .start();
    let mut conn = server.connect();
    prove_quick(&mut conn, 40);
    let mut demotions = 0;

    // Streamed and written bodies from inline calls, on the proving
    // keep-alive connection; it must still work after each.
    let stream = chunks(5);
    let written = format!("{}returned\n", chunks(5));
    for (target, body) in [("/mixed?stream=5", &stream), ("/mixed?write=5", &written)] {
        inline_call(
            &server,
            &mut conn,
            &mut demotions,
            &format!("keep-alive GET {target}"),
            |conn| conn.get(target),
            |response| assert_chunked(response, body, target),
        );
        prove_quick(&mut conn, 1);
    }
    for target in ["/mixed?stream=5", "/mixed?write=5"] {
        inline_call(
            &server,
            &mut conn,
            &mut demotions,
            &format!("keep-alive HEAD {target}"),
            |conn| {
                conn.send(&request("HEAD", target));
                conn.read_response_for("HEAD")
            },
            |response| assert_head(response, &format!("HEAD {target}")),
        );
        // Any body bytes after the HEAD's head would come before this answer.
        prove_quick(&mut conn, 1);
        assert!(
            conn.leftover().is_empty(),
            "HEAD {target}: stray bytes {:?}",
            conn.leftover()
        );
    }

    // Inline calls answered on fresh connections.
    inline_call(
        &server,
        &mut conn,
        &mut demotions,
        "fresh GET /mixed?stream=5",
        |_| fresh(&server, "GET", "/mixed?stream=5"),
        |response| assert_chunked(response, &stream, "fresh /mixed?stream=5"),
    );
    inline_call(
        &server,
        &mut conn,
        &mut demotions,
        "fresh GET /mixed?write=5",
        |_| fresh(&server, "GET", "/mixed?write=5"),
        |response| assert_chunked(response, &written, "fresh /mixed?write=5"),
    );

    // The route is on the pool now (just demoted): the same answers there.
    assert_chunked(
        &fresh(&server, "GET", "/mixed?stream=5"),
        &stream,
        "pool /mixed?stream=5",
    );
    assert_chunked(
        &fresh(&server, "GET", "/mixed?write=5"),
        &written,
        "pool /mixed?write=5",
    );
    assert_head(&fresh(&server, "HEAD", "/mixed?stream=5"), "pool HEAD /mixed?stream=5");
    assert_head(&fresh(&server, "HEAD", "/mixed?write=5"), "pool HEAD /mixed?write=5");
    let again = fresh(&server, "GET", "/mixed");
    assert_eq!((again.status, again.text().as_str()), (200, WHOLE), "{again:?}");
    prove_quick(&mut conn, 5);
    println!("{demotions} inline calls checked; every answer right, the keep-alive connection still serving");
}

#[test]
fn an_inline_call_past_the_timeout_is_reported_and_its_worker_replaced() {
    let mut server = Server::builder()
        .arg(echo())
        .args(["-w", "1", "--timeout", "1s"])
        .start();
    let mut conn = server.connect();
    prove_quick(&mut conn, 40);

    let addr = server.addr;
    let sent = Instant::now();
    let stuck = thread::spawn(move || {
        let mut conn = Conn::open(addr);
        conn.send(&request_bytes(
            "GET",
            "/mixed?sleep=2500",
            &[("Connection", "close")],
            b"",
        ));
        let response = conn.read_response();
        (response, sent.elapsed())
    });

    const INLINE: &str = "it runs inline, so its runtime thread is blocked";
    let log = server.wait_for_log(INLINE, Duration::from_secs(3));
    let reported = sent.elapsed();
    let line = log
        .lines()
        .find(|line| line.contains(INLINE))
        .unwrap_or_else(|| panic!("no {INLINE:?} in the log within 3 s of the request:\n{log}"));
    assert!(
        line.contains("GET /mixed"),
        "the report does not name the request: {line}"
    );
    assert!(line.contains("--timeout"), "the report does not name --timeout: {line}");

    // The worker retires and the master starts its replacement, which
    // reports serving in place of the old pid.
    const RETIRES: &str = "retires after a stuck request; starting its replacement";
    let log = server.wait_for_log(RETIRES, Duration::from_secs(5));
    let old = log
        .lines()
        .find(|line| line.contains(RETIRES))
        .and_then(|line| line.split("worker pid ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the master did not start a replacement:\n{log}"))
        .to_owned();
    let replaced = format!("replaced pid {old}:");
    let log = server.wait_for_log(&replaced, Duration::from_secs(10));
    assert!(log.contains(&replaced), "no worker replaced pid {old}:\n{log}");

    for i in 0..10 {
        let path = if i % 2 == 0 { "/mixed" } else { "/" };
        let response = server.get(path);
        assert_eq!(response.status, 200, "GET {path} after the replacement: {response:?}");
    }
    let (response, took) = stuck.join().expect("the stuck request's thread");
    println!(
        "GET /mixed?sleep=2500 (inline, --timeout 1s): reported after {:.0} ms; answered {} {:?} after {:.0} ms",
        reported.as_secs_f64() * 1e3,
        response.status,
        response.text(),
        took.as_secs_f64() * 1e3
    );
    // It cannot get a 504 at the deadline (its runtime thread is inside the
    // app), but the draining worker must still answer it.
    assert!(
        response.status == 504 || (response.status, response.text().as_str()) == (200, "slept 2500"),
        "the stuck request: {response:?}"
    );
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the master died:\n{}",
        server.log()
    );
    server.stop();
}

/// The debug line the inline watchdog (`stuck_calls`) logs when it sends a
/// long inline call's route back to the pool while the call still runs.
const LONG_INLINE: &str = "inline for over";

/// Shows the watchdog's and `call_policy`'s debug lines (see
/// [`LONG_INLINE`] and [`DEMOTED`]).
const LOG_WATCHDOG: &str =
    "info,host::server::app_gateway::stuck_calls=debug,host::server::app_gateway::call_policy=debug";

/// An inline call that runs long sends its route back to the pool while it
/// still runs, so a burst of slow calls right after it does not pile onto
/// the runtime threads: quick requests on another connection keep flowing.
/// (The first slow call itself holds its runtime thread until it returns:
/// that is the price of calling inline.) Each step waits for the state it
/// needs, not for a time: the route demoted (the watchdog's log line), the
/// burst read by the server; then every quick request must be answered
/// before any slow call is.
#[test]
fn a_route_that_turns_slow_goes_back_to_the_pool_while_its_call_runs() {
    const SLOW: usize = 4;
    const SLEEP_MS: u64 = 2000;
    const QUICK: usize = 20;

    let server = Server::builder()
        .arg(echo())
        .args(["-w", "0"])
        .env("RUST_LOG", LOG_WATCHDOG)
        .start();
    let index = std::fs::read(repo_root().join("html").join("index.html")).expect("read html/index.html");
    let mut proving = server.connect();
    let mut quick = server.connect();
    assert_eq!(quick.get("/").body, index, "GET /");

    let addr = server.addr;
    let target = format!("/mixed?sleep={SLEEP_MS}");
    // Slow calls, each on its own connection, once the server has read
    // them all; their answers and when they came, from threads.
    let slow_calls = |count: usize| {
        let conns: Vec<Conn> = (0..count)
            .map(|_| {
                let mut conn = Conn::open(addr);
                conn.send(&request_bytes("GET", &target, &[("Connection", "close")], b""));
                conn
            })
            .collect();
        let clients: Vec<SocketAddr> = conns
            .iter()
            .map(|conn| conn.stream().local_addr().expect("local address"))
            .collect();
        let read = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            clients.iter().all(|client| read_by_server(addr, *client)).then_some(())
        });
        assert!(
            read.is_some(),
            "the server did not read {count} × GET {target} within 10 s: are its runtime threads held?\n{}",
            server.log()
        );
        conns
            .into_iter()
            .map(|mut conn| {
                thread::spawn(move || {
                    let response = conn.read_response();
                    (response, Instant::now())
                })
            })
            .collect::<Vec<_>>()
    };
    // The first slow call runs inline once the route is proven quick, and
    // the watchdog demotes its route within milliseconds. A noisy machine
    // can break the streak of quick calls (the call then runs on the pool
    // and nothing is demoted): up to three tries.
    let mut first = None;
    for attempt in 1..=3 {
        prove_quick(&mut proving, 40);
        let (watchdog, finished_inline) = (
            server.log().matches(LONG_INLINE).count(),
            server.log().matches(DEMOTED).count(),
        );
        let call = slow_calls(1).pop().expect("a slow call");
        let demoted = poll(Duration::from_secs(10), Duration::from_millis(5), || {
            let finished = call.is_finished();
            if server.log().matches(LONG_INLINE).count() > watchdog {
                Some(true)
            } else {
                finished.then_some(false)
            }
        });
        match demoted {
            Some(true) => {
                first = Some(call);
                break;
            }
            Some(false) => {
                let _ = call.join();
                let log = server.log();
                assert_eq!(
                    log.matches(DEMOTED).count(),
                    finished_inline,
                    "GET {target} ran inline to its end: the watchdog never sent its route back to the pool\n{log}"
                );
                println!("try {attempt}: the first slow call ran on the pool (a quick streak was broken); again");
            }
            None => panic!(
                "no demotion and no answer within 10 s of GET {target}\n{}",
                server.log()
            ),
        }
    }
    let first =
        first.unwrap_or_else(|| panic!("the first slow call never ran inline in three tries\n{}", server.log()));
    let began = Instant::now();
    // The burst, each call read by the server (so in the app, on the pool).
    let slow = slow_calls(SLOW);
    let mut quick_done = Vec::new();
    for i in 0..QUICK {
        let response = quick.get("/");
        assert_eq!(response.status, 200, "quick GET / #{i}: {response:?}");
        assert_eq!(response.body, index, "quick GET / #{i}");
        quick_done.push(Instant::now());
    }
    let mut slow_done = Vec::new();
    for handle in slow.into_iter().chain([first]) {
        let (response, done) = handle.join().expect("a slow request's thread");
        assert_eq!(
            (response.status, response.text()),
            (200, format!("slept {SLEEP_MS}")),
            "{response:?}"
        );
        slow_done.push(done);
    }
    let first_done = slow_done.pop().expect("the first slow call");
    let ms = |t: &Instant| (t.saturating_duration_since(began).as_secs_f64() * 1e3).round() as u64;
    let quick_ms: Vec<u64> = quick_done.iter().map(ms).collect();
    let slow_ms: Vec<u64> = slow_done.iter().map(ms).collect();
    println!(
        "first slow call done at {} ms; {SLOW} × {target} done at {slow_ms:?} ms; {QUICK} × GET / done at {quick_ms:?} ms",
        ms(&first_done)
    );
    // Ordering, not a time budget: held runtime threads would answer the
    // quick requests only as the slow calls return, after them.
    let first_slow = slow_done.iter().min().copied().expect("slow requests");
    let last_quick = quick_done.iter().max().copied().expect("quick requests");
    assert!(
        last_quick < first_slow,
        "the quick requests were held up by the slow ones: the last GET / finished at {} ms, the burst's first \
         {target} at {} ms (quick: {quick_ms:?}, slow: {slow_ms:?})\n{}",
        ms(&last_quick),
        ms(&first_slow),
        server.log()
    );
}

#[test]
fn static_files_are_revalidated_after_a_second() {
    const POLL_FOR: Duration = Duration::from_secs(3);
    const EVERY: Duration = Duration::from_millis(100);
    let site = TempDir::new("revalidate");
    let a = site.join("a.txt");
    let first = "first version\n";
    let second = "the second version, longer\n";
    std::fs::write(&a, first).expect("write a.txt");
    let server = Server::builder()
        .arg("--static-dir")
        .arg(site.path())
        .args(["-w", "0"])
        .start();
    let mut conn = server.connect();

    // Polls `GET path` on `conn` until `done` accepts an answer; every
    // answer passes `allowed` first. The answer and how long it took.
    let poll = |conn: &mut Conn, path: &str, allowed: &dyn Fn(&Response) -> bool, done: &dyn Fn(&Response) -> bool| {
        let started = Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            let response = conn.get(path);
            assert!(allowed(&response), "GET {path} (try {tries}): unexpected {response:?}");
            if done(&response) {
                return (response, started.elapsed());
            }
            assert!(
                started.elapsed() < POLL_FOR,
                "GET {path}: still {} {:?} after {POLL_FOR:?} ({tries} tries)",
                response.status,
                response.text()
            );
            thread::sleep(EVERY);
        }
    };

    // A modified file: the new body and a new ETag within about a second.
    let before = conn.get("/a.txt");
    assert_eq!((before.status, before.text().as_str()), (200, first), "{before:?}");
    let e1 = before.header("etag").expect("an ETag").to_owned();
    let cached = server.get("/a.txt");
    assert_eq!(
        (cached.text().as_str(), cached.header("etag")),
        (first, Some(e1.as_str()))
    );
    std::fs::write(&a, second).expect("rewrite a.txt");
    // In place: a request between truncation and write may see a prefix.
    let (after, took) = poll(
        &mut conn,
        "/a.txt",
        &|r| r.status == 200 && (r.text() == first || second.starts_with(&r.text())),
        &|r| r.text() == second,
    );
    let e2 = after.header("etag").expect("an ETag").to_owned();
    assert_ne!(e1, e2, "the rewritten file kept its ETag");
    println!(
        "a.txt rewritten: the new body was served {:.0} ms later",
        took.as_secs_f64() * 1e3
    );

    // Ranges and conditional requests on the cached file.
    let range = server.request("GET", "/a.txt", &[("Range", "bytes=1-3")], b"");
    assert_eq!(range.status, 206, "{range:?}");
    assert_eq!(range.body, &second.as_bytes()[1..4]);
    assert_eq!(
        range.header("content-range"),
        Some(format!("bytes 1-3/{}", second.len()).as_str())
    );
    conn.send(&request_bytes("GET", "/a.txt", &[("If-None-Match", &e2)], b""));
    let not_modified = conn.read_response();
    assert_eq!(not_modified.status, 304, "{not_modified:?}");
    assert!(not_modified.body.is_empty());
    let stale = server.request("GET", "/a.txt", &[("If-None-Match", &e1)], b"");
    assert_eq!((stale.status, stale.text().as_str()), (200, second), "{stale:?}");

    // A new file appears, and a deleted one disappears, within about a second.
    let new = site.join("new.txt");
    let missing = conn.get("/new.txt");
    assert_eq!(missing.status, 404, "{missing:?}");
    std::fs::write(&new, "new\n").expect("write new.txt");
    let (_, appeared) = poll(
        &mut conn,
        "/new.txt",
        &|r| r.status == 404 || (r.status == 200 && "new\n".starts_with(&r.text())),
        &|r| r.status == 200 && r.text() == "new\n",
    );
    std::fs::remove_file(&new).expect("delete new.txt");
    let (_, disappeared) = poll(
        &mut conn,
        "/new.txt",
        &|r| r.status == 404 || (r.status == 200 && r.text() == "new\n"),
        &|r| r.status == 404,
    );
    println!(
        "new.txt appeared {:.0} ms after it was created, disappeared {:.0} ms after it was deleted",
        appeared.as_secs_f64() * 1e3,
        disappeared.as_secs_f64() * 1e3
    );

    // A file over the cache's 1 MiB limit is streamed whole, twice.
    let big: Vec<u8> = (0..2usize << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(site.join("big.bin"), &big).expect("write big.bin");
    for round in 1..=2 {
        let response = conn.get("/big.bin");
        assert_eq!(response.status, 200, "big.bin #{round}");
        assert_eq!(response.header("content-length"), Some(big.len().to_string().as_str()));
        assert!(
            response.body == big,
            "big.bin #{round}: {} bytes, not the file",
            response.body.len()
        );
    }
    let range = server.request("GET", "/big.bin", &[("Range", "bytes=1048570-1048585")], b"");
    assert_eq!(range.status, 206, "{range:?}");
    assert_eq!(range.body, &big[1_048_570..1_048_586]);
    assert_eq!(
        conn.get("/a.txt").text(),
        second,
        "the keep-alive connection after big.bin"
    );
}

/// Voluntary context switches of this process's thread named `name` (its
/// wake-ups), if there is one.
fn wake_ups(pid: u32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        if comm.trim() != name {
            return None;
        }
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|n| n.trim().parse().ok())
    })
}

/// The watchdog of inline calls parks once they stop: an idle server
/// wakes no thread (it used to tick 200 times a second). Counts wake-ups
/// over two-second windows, so a loaded machine cannot fake or break it.
#[test]
fn an_idle_server_parks_the_inline_watchdog() {
    const WATCHDOG: &str = "stuck-calls";
    let server = Server::builder().arg(echo()).args(["-w", "0"]).start();
    let mut conn = server.connect();
    prove_quick(&mut conn, 2 * PROVEN);
    let window = |pid| {
        let before = wake_ups(pid, WATCHDOG).expect("the watchdog thread");
        // The test is about time passing: wake-ups over two idle seconds.
        thread::sleep(Duration::from_secs(2));
        wake_ups(pid, WATCHDOG).expect("the watchdog thread") - before
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let woke = window(server.pid());
        seen.push(woke);
        if woke <= 1 {
            println!("watchdog wake-ups per 2 s once idle: {seen:?}");
            // An inline call wakes it again, and it still does its job.
            prove_quick(&mut conn, 4);
            return;
        }
    }
    panic!("the inline watchdog kept waking on an idle server: {seen:?} wake-ups per 2 s");
}
