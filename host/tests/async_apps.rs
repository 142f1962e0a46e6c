//! Async apps (plugin-api 1.2): waiting holds no thread, a tokio-using
//! plugin's own I/O works, a client that goes away cancels the app's
//! future, `--timeout` answers 504 without replacing a worker (and waits
//! for the client do not count), a blocking poll is caught by the
//! stuck-call watchdog, and panics in a poll or a drop cost no worker.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::fleet::{lines_with, poll, try_get, wait_for_count, worker_pids, REQUEST_TIMEOUT};
use common::server::{request_bytes, Server};
use common::{app_spec, plugin_lib};

fn async_echo() -> String {
    app_spec(&plugin_lib("echo"), "async_application")
}

fn faults() -> String {
    app_spec(&plugin_lib("faulty"), "async_faults")
}

fn text(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path, REQUEST_TIMEOUT).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn waiting_holds_no_thread() {
    // Two app threads: 200 sync sleeps of 500 ms would take 50 s.
    let server = Server::builder()
        .arg(async_echo())
        .args(["--no-static", "-w", "1", "--threads", "2"])
        .start();
    let started = Instant::now();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let addr = server.addr;
            thread::spawn(move || try_get(addr, "/sleep/500", Duration::from_secs(30)))
        })
        .collect();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let elapsed = started.elapsed();
    let slept = answers
        .iter()
        .filter(|a| matches!(a, Ok((200, body)) if body == "slept 500"))
        .count();
    assert_eq!(slept, 200, "{:?}", answers.iter().find(|a| !matches!(a, Ok((200, _)))));
    assert!(elapsed < Duration::from_secs(20), "200 sleeps took {elapsed:?}");
    assert!(!server.log().contains(" 503 "), "{}", server.log());
}

#[test]
fn a_plugin_s_own_timers_and_sockets_work() {
    // An upstream the plugin calls with its own tokio TcpStream.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    thread::spawn(move || {
        for stream in upstream.incoming().take(10) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let server = Server::builder()
        .arg(async_echo())
        .args(["--no-static", "-w", "1"])
        .start();
    for round in 0..5 {
        let (status, body) = text(server.addr, &format!("/tokio?addr={upstream_addr}"));
        assert_eq!(
            (status, body.as_str()),
            (200, "upstream said HTTP/1.1 204 No Content\n"),
            "round {round}\n{}",
            server.log()
        );
    }
    assert!(!server.log().contains("no reactor"), "{}", server.log());
}

#[test]
fn a_client_that_goes_away_cancels_the_app_s_future() {
    let server = Server::builder().arg(faults()).args(["--no-static", "-w", "1"]).start();
    let mut gone = Vec::new();
    for _ in 0..5 {
        let mut conn = TcpStream::connect(server.addr).unwrap();
        conn.write_all(&request_bytes("GET", "/hold/30000", &[], b"")).unwrap();
        gone.push(conn);
    }
    thread::sleep(Duration::from_millis(300));
    drop(gone);
    let cancelled = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        (text(server.addr, "/cancelled").1 == "5").then_some(())
    });
    assert!(cancelled.is_some(), "cancelled: {}", text(server.addr, "/cancelled").1);
    // Each has its access line; no head went out (status 0).
    let log = wait_for_count(&server, "\"GET /hold/30000 HTTP/1.1\" 0 ", 5, Duration::from_secs(5));
    assert_eq!(lines_with(&log, "/hold/30000").len(), 5, "{log}");
}

#[test]
fn the_timeout_drops_the_future_answers_504_and_keeps_the_worker() {
    let mut server = Server::builder()
        .arg(faults())
        .args(["--no-static", "-w", "1", "--timeout", "1s"])
        .start();
    let worker = worker_pids(server.pid());
    for round in 0..3 {
        let started = Instant::now();
        let (status, body) = text(server.addr, "/hold/5000");
        assert_eq!(status, 504, "round {round}: {body}");
        assert!(body.contains("--timeout"), "{body}");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    }
    let cancelled = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        (text(server.addr, "/cancelled").1 == "3").then_some(())
    });
    assert!(cancelled.is_some(), "the timed-out futures were dropped");
    assert_eq!(worker_pids(server.pid()), worker, "no worker was replaced");
    assert!(!server.log().contains(" retires"), "{}", server.log());
    server.stop();
}

#[test]
fn waiting_for_a_slow_client_does_not_count_towards_the_timeout() {
    let server = Server::builder()
        .arg(async_echo())
        .args(["--no-static", "-w", "1", "--timeout", "1s"])
        .start();
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nConnection: close\r\n\r\n";
    conn.write_all(head.as_bytes()).unwrap();
    for byte in b"abcdef" {
        thread::sleep(Duration::from_millis(400));
        conn.write_all(&[*byte]).unwrap();
    }
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body\": \"abcdef\""), "{answer}");
}

#[test]
fn panics_in_a_poll_or_a_drop_cost_no_worker() {
    let mut server = Server::builder().arg(faults()).args(["--no-static", "-w", "1"]).start();
    let worker = worker_pids(server.pid());
    for round in 0..10 {
        // Before the head: a 500.
        let answer = try_get(server.addr, "/panic", REQUEST_TIMEOUT);
        assert!(matches!(answer, Ok((500, _))), "{answer:?}");
        // After the head: the response ends early (curl-like clients see a
        // cut chunked body).
        let mut conn = TcpStream::connect(server.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(&request_bytes("GET", "/panic-after-head", &[], b""))
            .unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "round {round}: {answer}");
        assert!(answer.contains("first chunk"), "{answer}");
        assert!(
            !answer.ends_with("0\r\n\r\n"),
            "the cut body must not look complete: {answer}"
        );
        // A panic as the future is dropped (its client went away): logged.
        let mut conn = TcpStream::connect(server.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(&request_bytes("GET", "/drop-panic", &[], b"")).unwrap();
        let mut first = [0u8; 64];
        let _ = conn.read(&mut first);
        drop(conn);
        wait_for_count(&server, "panicked in its drop", round + 1, Duration::from_secs(10));
    }
    let log = server.log();
    assert_eq!(lines_with(&log, "panicked before its head").len(), 10, "{log}");
    assert_eq!(lines_with(&log, "panicked after its head went out").len(), 10, "{log}");
    assert_eq!(lines_with(&log, "panicked in its drop").len(), 10, "{log}");
    assert_eq!(worker_pids(server.pid()), worker, "the worker lived");
    server.stop();
}

#[test]
fn a_poll_that_blocks_its_thread_is_caught_by_the_watchdog() {
    let server = Server::builder()
        .arg(faults())
        .args(["--no-static", "-w", "1", "--timeout", "1s"])
        .start();
    let first = worker_pids(server.pid());
    let blocked = thread::spawn({
        let addr = server.addr;
        move || try_get(addr, "/block/3000", Duration::from_secs(20))
    });
    let log = wait_for_count(
        &server,
        "is still inside the app after the request timeout",
        1,
        Duration::from_secs(15),
    );
    assert!(log.contains("GET /block/3000"), "{log}");
    wait_for_count(&server, " retires: ", 1, Duration::from_secs(5));
    let _ = blocked.join();
    let replaced = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let now = worker_pids(server.pid());
        (now.len() == 1 && now != first).then_some(())
    });
    assert!(replaced.is_some(), "the worker was not replaced:\n{}", server.log());
    assert_eq!(text(server.addr, "/cancelled").0, 200, "a new worker serves");
}

#[test]
fn a_crash_in_a_poll_is_contained_and_pinned_on_its_request() {
    let mut server = Server::builder()
        .arg(faults())
        .args(["--no-static", "-w", "1", "--quarantine-after", "0"])
        .start();
    for round in 1..=3 {
        assert!(try_get(server.addr, "/segv", REQUEST_TIMEOUT).is_err(), "round {round}");
        wait_for_count(
            &server,
            "died: signal 11 (SIGSEGV) in GET /segv",
            round,
            Duration::from_secs(10),
        );
        // The master logs the lost request for the dead worker.
        wait_for_count(&server, "\"GET /segv HTTP/1.1\" 0 ", round, Duration::from_secs(10));
        let served = poll(Duration::from_secs(10), Duration::from_millis(50), || {
            matches!(try_get(server.addr, "/cancelled", REQUEST_TIMEOUT), Ok((200, _))).then_some(())
        });
        assert!(served.is_some(), "no replacement serves");
    }
    server.stop();
}
