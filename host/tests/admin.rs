//! The admin listener (`--admin-bind`): health and readiness flip as a
//! stop begins, and `/metrics` parses as Prometheus text and moves as
//! requests are served, swaps happen and workers die.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::fleet::*;

/// A free port on 127.0.0.1 (bound and released: loopback only).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn admin(addr: SocketAddr, path: &str) -> Answer {
    try_get(addr, path, Duration::from_secs(5))
}

/// The samples of `/metrics`, parsed by a Prometheus text parser.
fn scrape_metrics(addr: SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = admin(addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"))
}

/// The sum of `name`'s samples whose labels include `with`.
fn total(scrape: &prometheus_parse::Scrape, name: &str, with: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn metrics_move_and_health_flips_during_a_stop() {
    let _serial = one_at_a_time();
    let admin_addr = free_addr();
    let mut server = start(
        &echo(),
        &[
            "--admin-bind",
            &admin_addr.to_string(),
            "--mount",
            &format!(
                "/time={}",
                common::app_spec(&common::plugin_lib("ctime"), "application")
            ),
        ],
    );
    assert!(says(&admin(admin_addr, "/healthz"), "ok\n"));
    let ready = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        says(&admin(admin_addr, "/readyz"), "ready\n").then_some(())
    });
    assert!(
        ready.is_some(),
        "/readyz never said ready: {:?}",
        admin(admin_addr, "/readyz")
    );
    assert!(matches!(admin(admin_addr, "/nope"), Ok((404, _))));

    // Requests show up in the workers' next reports (each second).
    for _ in 0..30 {
        assert!(matches!(try_get(server.addr, "/hello", REQUEST_TIMEOUT), Ok((200, _))));
    }
    for _ in 0..5 {
        assert!(matches!(try_get(server.addr, "/time/x", REQUEST_TIMEOUT), Ok((200, _))));
    }
    assert!(matches!(
        try_get(server.addr, "/status/503", REQUEST_TIMEOUT),
        Ok((503, _))
    ));
    let moved = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let scrape = scrape_metrics(admin_addr);
        (total(&scrape, "host_requests_total", &[("mount", "/"), ("status", "2xx")]) >= 30.0
            && total(&scrape, "host_requests_total", &[("mount", "/time"), ("status", "2xx")]) >= 5.0
            && total(&scrape, "host_requests_total", &[("status", "5xx")]) >= 1.0)
            .then_some(scrape)
    });
    let scrape = moved.unwrap_or_else(|| {
        panic!(
            "the request counters did not move:\n{:?}",
            admin(admin_addr, "/metrics")
        )
    });
    let count = total(&scrape, "host_request_duration_seconds_count", &[]);
    assert!(count >= 36.0, "{count} requests in the histogram");
    let inf: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "host_request_duration_seconds")
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        })
        .sum();
    assert_eq!(inf, count, "the +Inf bucket holds every request");
    assert!(total(&scrape, "host_worker_resident_memory_bytes", &[]) > 0.0);
    let calls = total(&scrape, "host_app_calls_total", &[]);
    assert!(calls >= 36.0, "{calls} app calls counted");
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "host_static_cache_lookups_total"),
        "no static cache counters"
    );
    assert!(scrape.samples.iter().any(|s| s.metric == "host_requests_in_flight"));
    assert_eq!(total(&scrape, "host_worker_starts_total", &[]), 2.0);
    assert_eq!(total(&scrape, "host_ready", &[]), 1.0);

    // A swap and a crash are counted.
    server.signal("HUP");
    let swapped = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        (total(&scrape_metrics(admin_addr), "host_swaps_total", &[("outcome", "ok")]) == 1.0).then_some(())
    });
    assert!(
        swapped.is_some(),
        "the swap is not counted:\n{:?}\n{}",
        admin(admin_addr, "/metrics"),
        server.log()
    );
    let _ = try_get(server.addr, "/panic", REQUEST_TIMEOUT);
    let worker = worker_pids(server.pid())[0];
    kill("KILL", worker);
    let crashed = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        (total(
            &scrape_metrics(admin_addr),
            "host_worker_exits_total",
            &[("how", "crash")],
        ) >= 1.0)
            .then_some(())
    });
    assert!(
        crashed.is_some(),
        "the crash is not counted:\n{:?}",
        admin(admin_addr, "/metrics")
    );
    assert_eq!(total(&scrape_metrics(admin_addr), "host_generation", &[]), 2.0);

    // A stop: /readyz says 503 while the workers drain, /healthz stays 200.
    let mut slow = common::server::Conn::open(server.addr);
    slow.send(&common::server::request_bytes("GET", "/sleep/4000", &[], b""));
    // The stop comes once the request is in a worker: its reports (every
    // second) count it in flight; it sleeps 4 s in the app.
    let in_flight = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        (total(&scrape_metrics(admin_addr), "host_requests_in_flight", &[]) >= 1.0).then_some(())
    });
    assert!(
        in_flight.is_some(),
        "GET /sleep/4000 never showed in flight:\n{:?}",
        admin(admin_addr, "/metrics")
    );
    server.signal("TERM");
    let draining = poll(Duration::from_secs(2), Duration::from_millis(20), || {
        matches!(admin(admin_addr, "/readyz"), Ok((503, ref body)) if body == "stopping\n").then_some(())
    });
    assert!(
        draining.is_some(),
        "/readyz did not say 503 stopping: {:?}",
        admin(admin_addr, "/readyz")
    );
    assert!(says(&admin(admin_addr, "/healthz"), "ok\n"));
    assert_eq!(slow.read_response().status, 200);
    server
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits after the drain");
}

#[test]
fn a_bad_admin_address_is_refused_with_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let output = common::run_host(
        &[
            "--admin-bind",
            &taken.local_addr().unwrap().to_string(),
            "--bind",
            "127.0.0.1:0",
            &echo(),
        ],
        &[],
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{}", common::describe(&output));
    assert!(
        common::stderr_text(&output).contains("--admin-bind"),
        "{}",
        common::describe(&output)
    );
}

/// The sum of `host_requests_total` now.
fn requests_total(admin_addr: SocketAddr) -> f64 {
    total(&scrape_metrics(admin_addr), "host_requests_total", &[])
}

/// Polls until `host_requests_total` is `expected` (≤ 20 s); its last value.
fn wait_for_total(admin_addr: SocketAddr, expected: f64) -> f64 {
    let mut last = 0.0;
    let reached = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        last = requests_total(admin_addr);
        (last == expected).then_some(())
    });
    assert!(reached.is_some(), "host_requests_total is {last}, not {expected}");
    last
}

/// `count` GETs of `/hello` on fresh connections, each answered 200.
fn hellos(server: &common::server::Server, count: usize) {
    for i in 0..count {
        let answer = try_get(server.addr, "/hello", REQUEST_TIMEOUT);
        assert!(matches!(answer, Ok((200, _))), "request {i}: {answer:?}");
    }
}

#[test]
fn request_counters_survive_recycled_swapped_and_crashed_workers() {
    let _serial = one_at_a_time();
    let admin_addr = free_addr();
    let server = start(
        &echo(),
        &["--admin-bind", &admin_addr.to_string(), "--max-requests", "50"],
    );
    let first = worker_pids(server.pid());

    // Every worker is replaced (at most 50 requests each): what each served
    // is in the totals once it has exited, exactly.
    const RECYCLED: usize = 400;
    hellos(&server, RECYCLED);
    let replaced = poll(Duration::from_secs(20), Duration::from_millis(50), || {
        let now = worker_pids(server.pid());
        (now.len() == 2 && first.iter().all(|pid| !now.contains(pid))).then_some(())
    });
    assert!(replaced.is_some(), "the first workers still serve");
    wait_for_total(admin_addr, RECYCLED as f64);
    let logged = |server: &common::server::Server| lines_with(&server.log(), "\"GET /hello HTTP/1.1\" 200").len();
    let logged_all = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        (logged(&server) == RECYCLED).then_some(())
    });
    assert!(
        logged_all.is_some(),
        "{} access-log lines, not {RECYCLED}",
        logged(&server)
    );
    let starts = total(&scrape_metrics(admin_addr), "host_worker_starts_total", &[]);
    assert!(starts >= (RECYCLED / 50) as f64, "{starts} workers started");
    // Per-worker gauges: one series per live worker, by slot, never by pid.
    let scrape = scrape_metrics(admin_addr);
    let slots: Vec<&String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "host_connections")
        .filter_map(|s| s.labels.get("slot").map(|_| &s.metric))
        .collect();
    assert!(slots.len() <= 4, "{} slots for 2 workers", slots.len());
    assert!(
        scrape.samples.iter().all(|s| s.labels.get("worker").is_none()),
        "a series is labelled by pid"
    );

    // A swap: the old generation's last reports arrive as it exits.
    hellos(&server, 20);
    server.signal("HUP");
    wait_for_count(&server, "generation 2 serving", 1, Duration::from_secs(20));
    hellos(&server, 20);
    wait_for_total(admin_addr, (RECYCLED + 40) as f64);

    // A crash: counts only grow (the dead worker's last second may be lost).
    let before = requests_total(admin_addr);
    kill("KILL", worker_pids(server.pid())[0]);
    let mut seen = before;
    let mut answered = 0;
    for _ in 0..20 {
        if matches!(try_get(server.addr, "/hello", REQUEST_TIMEOUT), Ok((200, _))) {
            answered += 1;
        }
        let now = requests_total(admin_addr);
        assert!(now >= seen, "host_requests_total went back from {seen} to {now}");
        seen = now;
        // Spread over a second, so that reports (every second) and the
        // dead worker's exit come in between (time passing is the point).
        std::thread::sleep(Duration::from_millis(50));
    }
    // What was answered after the kill is counted once reported.
    assert!(answered > 0, "no request answered after the kill");
    let counted = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        (requests_total(admin_addr) >= before + answered as f64).then_some(())
    });
    assert!(
        counted.is_some(),
        "host_requests_total is {}, not at least {before} + {answered}",
        requests_total(admin_addr)
    );
}
