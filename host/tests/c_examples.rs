//! The example apps in other languages, `c-apps/`, served by the real host:
//! the C ports of the seeds' `ctime` and `hello`, the C++ `mini_frame` and
//! the Go echo. Each is built on first use (see `common/foreign.rs`); a
//! missing C++ or Go toolchain skips its tests with the reason.

mod common;

use std::path::{Path, PathBuf};

use common::fleet::lines_with;
use common::foreign::{c_lib, foreign_lib, Language};
use common::server::{request_bytes, Response, Server};
use common::{app_spec, describe, run_host, stdout_text};

/// Requests sent one after another on one kept-alive connection.
const IN_A_ROW: usize = 200;
/// The Go echo's cap on a request body (`maxBody` in echo.go).
const ECHO_CAP: usize = 1 << 20;

fn ctime_c() -> PathBuf {
    c_lib("c-apps/ctime.c", "ctime_c", &[])
}

fn hello_c() -> PathBuf {
    c_lib("c-apps/hello.c", "hello_c", &[])
}

/// The C++ mini_frame, or `None` (after saying why) without a C++ compiler.
fn mini_frame_cpp() -> Option<PathBuf> {
    skip_unless(foreign_lib(
        Language::Cxx,
        "c-apps/mini_frame.cpp",
        "mini_frame_cpp",
        &[],
    ))
}

/// The Go echo, or `None` (after saying why) without Go.
fn echo_go() -> Option<PathBuf> {
    skip_unless(foreign_lib(Language::Go, "c-apps/go-echo", "echo_go", &[]))
}

fn skip_unless(built: Result<PathBuf, String>) -> Option<PathBuf> {
    built.map_err(|reason| eprintln!("skipped: {reason}")).ok()
}

/// A host serving `library:application` at `/`, without the static site (so
/// every path reaches the app), with its default two workers.
fn serve(library: &Path) -> Server {
    Server::builder()
        .arg(app_spec(library, "application"))
        .arg("--no-static")
        .start()
}

/// `host check` accepts the app and names its interface.
fn assert_checks_as_c_app(library: &Path) {
    let output = run_host(&["check".to_owned(), app_spec(library, "application")], &[], b"");
    assert!(output.status.success(), "host check failed:\n{}", describe(&output));
    let stdout = stdout_text(&output);
    assert!(stdout.starts_with("ok: "), "{}", describe(&output));
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("  interface (app):") && line.trim_end().ends_with("C interface 1.0")),
        "no `interface (app): C interface 1.0` line:\n{}",
        describe(&output)
    );
}

/// Stops the host (it must exit 0), then asserts that no worker died while
/// it served: no death or crash loop in its log, no replacement worker
/// started, and both workers drained with exit code 0.
fn stop_with_no_worker_death(mut server: Server) {
    server.stop();
    let log = server.log();
    for needle in [" died", "crash loop", "quarantine:"] {
        let lines = lines_with(&log, needle);
        assert!(lines.is_empty(), "the log has {needle:?}: {lines:#?}\n--- log:\n{log}");
    }
    let ready = lines_with(&log, "] worker pid ")
        .into_iter()
        .filter(|l| l.ends_with(" ready"))
        .count();
    assert_eq!(
        ready, 2,
        "workers started (2 expected, more means a replacement):\n{log}"
    );
    let drained = lines_with(&log, "finished draining (exit code 0)").len();
    assert_eq!(drained, 2, "workers that drained with exit code 0:\n{log}");
}

/// Sends `IN_A_ROW` requests on one kept-alive connection, the `i`th being
/// `request(i)` = (method, path, body), and checks each answer with
/// `check(i, response)`; then that no worker died.
fn keep_alive_in_a_row(
    library: &Path,
    request: impl Fn(usize) -> (&'static str, String, Vec<u8>),
    check: impl Fn(usize, &Response),
) {
    let server = serve(library);
    let mut conn = server.connect();
    let mut answered = 0;
    for i in 0..IN_A_ROW {
        let (method, path, body) = request(i);
        conn.send(&request_bytes(method, &path, &[], &body));
        let response = conn.read_response_for(method);
        assert_ne!(
            response.header("connection").map(str::to_ascii_lowercase).as_deref(),
            Some("close"),
            "request {i} ({method} {path}) closed the connection: {response:?}"
        );
        check(i, &response);
        answered += 1;
    }
    assert_eq!(answered, IN_A_ROW);
    assert!(
        conn.leftover().is_empty(),
        "bytes after the last response: {:?}",
        conn.leftover()
    );
    drop(conn);
    stop_with_no_worker_death(server);
}

/// Whether `text` is shaped like Python's `time.ctime()`: `Sun Jun  7 23:07:04 2015`.
fn looks_like_ctime(text: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [day, month, date, time, year] = parts[..] else {
        return false;
    };
    let time_ok = time.len() == 8
        && time
            .char_indices()
            .all(|(i, c)| if i == 2 || i == 5 { c == ':' } else { c.is_ascii_digit() });
    text.len() == 24
        && DAYS.contains(&day)
        && MONTHS.contains(&month)
        && date.parse::<u8>().is_ok_and(|d| (1..=31).contains(&d))
        && text.get(8..10) == Some(format!("{date:>2}").as_str())
        && time_ok
        && year.len() == 4
        && year.parse::<u16>().is_ok()
}

/// `len` bytes that are not all the same (a simple LCG), to catch a body
/// that comes back shifted or truncated.
fn patterned(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

fn assert_ctime_answer(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain"), "{response:?}");
    assert!(
        looks_like_ctime(&response.text()),
        "not ctime-shaped: {:?}",
        response.text()
    );
}

fn assert_hello_answer(response: &Response, method: &str) {
    let expected = format!("The request method was {method}");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), expected);
    assert_eq!(
        response.header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    assert_eq!(response.header("content-type"), Some("text/plain"), "{response:?}");
}

/// The mini_frame page for `path`: its status, and a text the body holds.
fn mini_frame_expects(path: &str) -> (u16, &'static str, &'static str) {
    match path {
        "/index.py" => (200, "text/html;charset=utf-8", "<p>本月详细信息分析如下...</p>"),
        "/center.py" => (200, "text/html;charset=utf-8", "<p>数据来源于数据库...</p>"),
        _ => (404, "text/plain;charset=utf-8", "not found you page...."),
    }
}

fn assert_mini_frame_answer(path: &str, response: &Response) {
    let (status, content_type, text) = mini_frame_expects(path);
    assert_eq!(response.status, status, "{path}: {response:?}");
    assert_eq!(response.header("content-type"), Some(content_type), "{path}");
    let body = response.text();
    assert!(body.contains(text), "{path}: {body:?}");
    assert!(!body.contains("{%content%}"), "{path}: placeholder left in {body:?}");
    assert_eq!(
        response.header("content-length"),
        Some(response.body.len().to_string().as_str()),
        "{path}"
    );
}

fn assert_echo_greeting(path: &str, response: &Response) {
    assert_eq!(response.status, 200, "{path}: {response:?}");
    assert_eq!(response.text(), format!("Hello from Go! You asked for {path}\n"));
    assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
}

fn assert_echoed(sent: &[u8], response: &Response) {
    assert_eq!(response.status, 200, "{} bytes sent: {response:?}", sent.len());
    assert_eq!(response.header("content-length"), Some(sent.len().to_string().as_str()));
    assert_eq!(response.body.len(), sent.len(), "echoed length");
    assert!(response.body == sent, "the echoed body differs from the one sent");
}

// ------------------------------------------------------------------- C

#[test]
fn c_ctime_checks_and_answers_in_ctime_form() {
    let library = ctime_c();
    assert_checks_as_c_app(&library);
    let server = serve(&library);
    for path in ["/", "/ctime.py", "/any/where?x=1"] {
        assert_ctime_answer(&server.get(path));
    }
    stop_with_no_worker_death(server);
}

#[test]
fn c_hello_names_the_method_with_a_content_length() {
    let library = hello_c();
    assert_checks_as_c_app(&library);
    let server = serve(&library);
    assert_hello_answer(&server.get("/"), "GET");
    assert_hello_answer(&server.get("/hello.py"), "GET");
    assert_hello_answer(&server.request("POST", "/form", &[], b"name=value"), "POST");
    assert_hello_answer(&server.request("POST", "/empty", &[], b""), "POST");
    stop_with_no_worker_death(server);
}

#[test]
fn c_ctime_answers_200_requests_in_a_row_on_one_connection() {
    keep_alive_in_a_row(
        &ctime_c(),
        |i| ("GET", format!("/ctime.py?n={i}"), Vec::new()),
        |_, response| assert_ctime_answer(response),
    );
}

#[test]
fn c_hello_answers_200_requests_in_a_row_on_one_connection() {
    // Every other request is a POST with a body hello never reads: the
    // host must skip it to keep the connection.
    let method = |i: usize| if i % 2 == 0 { "GET" } else { "POST" };
    keep_alive_in_a_row(
        &hello_c(),
        |i| {
            let body = if i % 2 == 0 {
                Vec::new()
            } else {
                format!("n={i}").into_bytes()
            };
            (method(i), format!("/n/{i}"), body)
        },
        |i, response| assert_hello_answer(response, method(i)),
    );
}

// ----------------------------------------------------------------- C++

#[test]
fn cpp_mini_frame_routes_its_pages_and_answers_404_otherwise() {
    let Some(library) = mini_frame_cpp() else { return };
    assert_checks_as_c_app(&library);
    let server = serve(&library);
    for path in [
        "/index.py",
        "/center.py",
        "/",
        "/login.py",
        "/index.py/x",
        "/nothing/here",
    ] {
        assert_mini_frame_answer(path, &server.get(path));
    }
    stop_with_no_worker_death(server);
}

#[test]
fn cpp_mini_frame_answers_200_requests_in_a_row_on_one_connection() {
    let Some(library) = mini_frame_cpp() else { return };
    const PATHS: [&str; 3] = ["/index.py", "/center.py", "/missing.py"];
    keep_alive_in_a_row(
        &library,
        |i| ("GET", PATHS[i % PATHS.len()].to_owned(), Vec::new()),
        |i, response| assert_mini_frame_answer(PATHS[i % PATHS.len()], response),
    );
}

// ------------------------------------------------------------------ Go

#[test]
fn go_echo_greets_gets_echoes_posts_and_refuses_bodies_past_its_cap() {
    let Some(library) = echo_go() else { return };
    assert_checks_as_c_app(&library);
    let server = serve(&library);

    assert_echo_greeting("/", &server.get("/"));
    assert_echo_greeting("/some/where", &server.get("/some/where"));

    // 100 KiB: larger than one read_body call's 64 KiB buffer.
    let body = patterned(100 << 10);
    assert_echoed(&body, &server.request("POST", "/echo", &[], &body));
    // Exactly the cap is echoed; one byte more is refused.
    let body = patterned(ECHO_CAP);
    assert_echoed(&body, &server.request("POST", "/echo", &[], &body));
    for len in [ECHO_CAP + 1, 2 * ECHO_CAP] {
        let mut conn = server.connect();
        let request = request_bytes("POST", "/echo", &[("Connection", "close")], &patterned(len));
        // The host may stop reading once the app has answered.
        let _ = conn.try_send(&request);
        let response = conn.read_response();
        assert_eq!(response.status, 413, "{len} bytes: {response:?}");
        assert_eq!(response.text(), "request body over 1 MiB\n");
    }
    // An empty POST echoes nothing.
    let empty = server.request("POST", "/echo", &[("Content-Length", "0")], b"");
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.header("content-length"), Some("0"));
    assert!(empty.body.is_empty());
    stop_with_no_worker_death(server);
}

#[test]
fn go_echo_answers_200_requests_in_a_row_on_one_connection() {
    let Some(library) = echo_go() else { return };
    let posted = |i: usize| patterned(1 + i * 97);
    keep_alive_in_a_row(
        &library,
        |i| match i % 2 {
            0 => ("GET", format!("/get/{i}"), Vec::new()),
            _ => ("POST", format!("/post/{i}"), posted(i)),
        },
        |i, response| match i % 2 {
            0 => assert_echo_greeting(&format!("/get/{i}"), response),
            _ => assert_echoed(&posted(i), response),
        },
    );
}
