//! The C interface (`plugin-api/c/host_app.h`) at its boundary: every
//! checkable mistake a C app makes gets the answer a Rust app's equivalent
//! gets (a 500 and one log line) or the documented code returned to the
//! app; a crash is contained; a fuzz run of random calls, codes and lengths
//! costs no worker; one library may hold apps of both kinds. (Refusals of
//! version-bumped C apps are in `refusals.rs`.)

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::fleet::lines_with;
use common::foreign::c_lib;
use common::server::{request_bytes, Server};
use common::{app_spec, env_number, fixture_lib, worker_deaths};

/// One worker serving the C fixture `name` (`fixtures/c/<name>.c`).
fn serve_fixture(name: &str) -> Server {
    let library = c_lib(&format!("fixtures/c/{name}.c"), &format!("{name}_c"), &[]);
    Server::builder()
        .args(["-w", "1"])
        .arg(app_spec(&library, "application"))
        .start()
}

/// The status of one request on a fresh connection, or `None` if the
/// connection closed without a complete head (a crash, a cut response).
fn status_of(addr: SocketAddr, method: &str, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let request = request_bytes(method, target, &[("Connection", "close")], b"body");
    stream.write_all(&request).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let head = String::from_utf8_lossy(&answer);
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    head.contains("\r\n\r\n").then_some(status)
}

#[test]
fn each_checkable_mistake_gets_a_rust_apps_answer() {
    let server = serve_fixture("misbehaving");
    // (path, status, the one ERROR line's text)
    let cases = [
        ("/bad-status", 500, "invalid status \"20 OK\""),
        ("/crlf-header", 500, "header x-bad contains CR, LF or NUL"),
        ("/twice", 500, "start_response called twice without exc_info"),
        ("/no-start", 500, "the app did not call start_response"),
        ("/error-code", 500, "the app returned error code -7"),
        ("/unknown-kind", 500, "the app returned a response of unknown kind 7"),
        ("/null-body", 500, "the response body is NULL with a length of 5"),
        (
            "/huge-body",
            500,
            "the response body's length 18446744073709551615 is past the interface's cap",
        ),
        (
            "/stream-without-next",
            500,
            "the app returned a stream without a next function",
        ),
    ];
    for (path, status, logged) in cases {
        let response = server.get(path);
        assert_eq!(response.status, status, "{path}: {}", response.text());
        assert!(
            response.text().contains("the server log says why"),
            "{path}: {}",
            response.text()
        );
        let errors = lines_with(&server.log(), logged);
        assert_eq!(
            errors.len(),
            1,
            "{path}: one log line with {logged:?}\n{}",
            server.log()
        );
    }

    // A stream is pulled to its end; one that fails is cut short (its head
    // may already be on the wire), as is a response whose app fails after
    // writing: never a response that looks complete.
    let stream = server.get("/stream");
    assert_eq!((stream.status, stream.text().as_str()), (200, "chunk\nchunk\nchunk\n"));
    for (path, logged) in [
        ("/stream-fails", "the app's stream failed with code -9"),
        ("/write-then-fail", "the app returned error code -3"),
    ] {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        stream.write_all(&request_bytes("GET", path, &[], b"")).expect("send");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 200"),
            "{path}: {answer}"
        );
        assert!(!answer.ends_with("0\r\n\r\n"), "{path}: looks complete: {answer}");
        assert_eq!(lines_with(&server.log(), logged).len(), 1, "{path}\n{}", server.log());
    }

    // The codes the header documents, returned to the app.
    let codes = server.get("/codes");
    assert_eq!(codes.status, 200, "{}", codes.text());
    let reported: BTreeMap<String, String> = codes
        .text()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let expected = [
        ("write_before_start", "-2"),
        ("null_status", "-1"),
        ("huge_status", "-1"),
        ("null_headers", "-1"),
        ("null_header_name", "-1"),
        ("too_many_headers", "-1"),
        ("non_utf8_value", "-1"),
        ("crlf_value", "-2"),
        ("nul_name", "-2"),
        ("bad_status", "-2"),
        ("null_write", "-1"),
        ("negative_write", "-1"),
        ("null_read", "-1"),
        ("huge_read", "-1"),
        ("bad_fd", "-1"),
        ("closed_fd", "-1"),
        ("null_gateway_write", "-1"),
        ("valid_start", "0"),
        ("last_error_after", "0"),
    ];
    for (name, code) in expected {
        assert_eq!(
            reported.get(name).map(String::as_str),
            Some(code),
            "{name}\n{}",
            codes.text()
        );
    }
    assert!(
        reported["last_error"].contains("descriptor 9999 is not usable"),
        "{}",
        codes.text()
    );
    assert!(worker_deaths(&server.log()).is_empty(), "{}", server.log());
}

#[test]
fn a_crashing_c_app_is_contained_ten_times_over() {
    let server = serve_fixture("misbehaving");
    let addr = server.addr;
    let mut answered = 0;
    for _ in 0..10 {
        // A crash closes the connection or is answered 502/503 (quarantine);
        // never a 200.
        if let Some(status) = status_of(addr, "GET", "/crash") {
            assert!(matches!(status, 502 | 503), "{status}");
            answered += 1;
        }
        assert_eq!(server.get("/ok").status, 200, "{}", server.log());
    }
    let deaths = worker_deaths(&server.log());
    assert!(
        !deaths.is_empty() && deaths.iter().all(|d| d.contains("signal 11 (SIGSEGV) in GET /crash")),
        "{deaths:#?}"
    );
    // Quarantine stops the crashes: the later ones are answered, not fatal.
    assert!(
        deaths.len() + answered >= 10 && deaths.len() < 10,
        "{} deaths, {answered} answered",
        deaths.len()
    );
}

#[test]
fn random_calls_codes_and_lengths_cost_no_worker() {
    let server = serve_fixture("fuzz");
    let addr = server.addr;
    // A fixed count of fixed seeds in make test; more with the variables.
    let inputs = env_number("HOST_FUZZ_INPUTS", 1500);
    let first = env_number("HOST_FUZZ_SEED", 0);
    eprintln!("fuzzing the C boundary: HOST_FUZZ_SEED={first} HOST_FUZZ_INPUTS={inputs} (seeds {first}..)");
    let mut statuses = BTreeMap::new();
    for seed in first..first + inputs {
        let status = status_of(addr, "POST", &format!("/fuzz?{seed}"));
        *statuses.entry(status).or_insert(0u64) += 1;
    }
    eprintln!("statuses: {statuses:?}");
    // Some seeds answer, some fail (500), some cut a streamed answer.
    assert!(
        statuses.get(&Some(500)).is_some_and(|n| *n > inputs / 4),
        "{statuses:?}"
    );
    assert!(
        statuses.keys().any(|s| matches!(s, Some(200 | 201 | 404))),
        "{statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| matches!(s, None | Some(200 | 201 | 404 | 500))),
        "{statuses:?}"
    );
    assert!(
        worker_deaths(&server.log()).is_empty(),
        "{:#?}",
        worker_deaths(&server.log())
    );
    assert_eq!(server.get("/ok").status, 200);
}

#[test]
fn one_library_holds_apps_of_both_kinds() {
    let library = fixture_lib("both-kinds");
    let rust = format!("/rust={}", app_spec(&library, "rust_app"));
    let c = format!("/c={}", app_spec(&library, "c_app"));
    let server = Server::builder()
        .args(["-w", "1", "--mount", &rust, "--mount", &c])
        .start();
    assert_eq!(server.get("/rust/").text(), "rust app\n");
    assert_eq!(server.get("/c/").text(), "c app\n");
    let log = server.log();
    assert!(log.contains("rust_app (plugin-api "), "{log}");
    assert!(log.contains("c_app (C interface 1.0"), "{log}");
}

#[test]
fn a_worker_holds_one_go_runtime() {
    let library = match common::foreign::foreign_lib(common::foreign::Language::Go, "c-apps/go-echo", "echo_go", &[]) {
        Ok(library) => library,
        Err(why) => return eprintln!("{why}"),
    };
    // The same Go library at two mounts: one runtime, served.
    let first = format!("/a={}", app_spec(&library, "application"));
    let second = format!("/b={}", app_spec(&library, "application"));
    let server = Server::builder()
        .args(["-w", "1", "--mount", &first, "--mount", &second])
        .start();
    assert!(server.get("/a/x").text().contains("Hello from Go"));
    assert!(server.get("/b/x").text().contains("Hello from Go"));
    drop(server);

    // A second Go library (another build: another file) is refused at
    // start, in one line naming both, before any worker loads it.
    let dir = common::server::TempDir::new("go-twice");
    let other = dir.join("libother_go.so");
    let mut bytes = std::fs::read(&library).expect("read the Go library");
    bytes.extend_from_slice(b"another build");
    std::fs::write(&other, bytes).expect("write the copy");
    let second = format!("/b={}", app_spec(&other, "application"));
    let output = common::run_host(
        &["--mount", &first, "--mount", &second, "--bind", "127.0.0.1:0"],
        &[],
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{}", common::describe(&output));
    let stderr = common::stderr_text(&output);
    let refusal: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(refusal.len(), 1, "{stderr}");
    for needle in [
        "a process holds one Go runtime",
        &other.display().to_string(),
        &library.display().to_string(),
    ] {
        assert!(refusal[0].contains(needle), "expected {needle:?} in {}", refusal[0]);
    }
}
