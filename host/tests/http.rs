//! The HTTP server end to end: the real `host` binary on 127.0.0.1 with an
//! ephemeral port, driven by a raw-socket client. Run
//! `make test` (or `cargo build --profile test-release --workspace` first): the demo plugins are loaded
//! from the host binary's folder.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::server::{request_bytes, Conn, Response, Server, TempDir};
use common::{app_spec, plugin_lib, repo_root, run_host, stderr_text, stdout_text};
use serde_json::Value;

// ---------------------------------------------------------------- helpers

/// `LIB:SYMBOL` for the demo plugin `name`.
fn spec(name: &str, symbol: &str) -> String {
    app_spec(&plugin_lib(name), symbol)
}

/// A host serving `./html` with echo at `/`, plus `extra` flags.
fn echo_server(extra: &[&str]) -> Server {
    Server::builder().arg(spec("echo", "application")).args(extra).start()
}

/// A file of the demo site.
fn html_file(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("html").join(name)).expect("read a file of html/")
}

/// The JSON echo sends back.
fn echo_json(response: &Response) -> Value {
    assert_eq!(response.status, 200, "echo failed: {response:?}");
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("echo's body is not JSON ({e}): {}", response.text()))
}

/// `environ[key]` from echo's report.
fn environ<'v>(report: &'v Value, key: &str) -> &'v str {
    report["environ"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in the environ: {report:#}"))
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

fn assert_content_type(response: &Response, expected: &str) {
    assert_eq!(
        response.header("content-type"),
        Some(expected),
        "Content-Type of {} {}",
        response.status,
        response.text()
    );
}

// ---------------------------------------------------------- demo plugins

#[test]
fn ctime_app_answers_with_the_local_time() {
    let server = Server::start([spec("ctime", "application")]);
    let response = server.get("/ctime.py");
    assert_eq!(response.status, 200);
    assert_content_type(&response, "text/plain");
    assert!(
        looks_like_ctime(&response.text()),
        "not ctime-shaped: {:?}",
        response.text()
    );
    // The static site still wins for files.
    let index = server.get("/");
    assert_eq!(index.body, html_file("index.html"));
}

#[test]
fn mini_frame_serves_every_seed_page() {
    let server = Server::start([spec("mini_frame", "application")]);
    let html = "text/html;charset=utf-8";

    let index = server.get("/index.py");
    assert_eq!(index.status, 200);
    assert_content_type(&index, html);
    assert!(index.text().contains("本月详细信息分析如下..."), "{}", index.text());
    assert!(
        !index.text().contains("{%content%}"),
        "placeholder left: {}",
        index.text()
    );

    let center = server.get("/center.py");
    assert_eq!(center.status, 200);
    assert_content_type(&center, html);
    assert!(center.text().contains("数据来源于数据库..."), "{}", center.text());

    for (path, prefix) in [
        ("/login.py", "i----login--welcome hahahh to our website.......time:"),
        (
            "/register.py",
            "-----register---welcome hahahh to our website.......time:",
        ),
        (
            "/profile.py",
            "-----profile----welcome hahahh to our website.......time:",
        ),
    ] {
        let page = server.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert_content_type(&page, html);
        let text = page.text();
        let stamp = text.strip_prefix(prefix).unwrap_or_else(|| panic!("{path}: {text:?}"));
        assert!(looks_like_ctime(stamp), "{path}: time stamp {stamp:?}");
    }

    for path in ["/other.py", "/nothing/here", "/index.py/x"] {
        let page = server.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert_content_type(&page, html);
        assert_eq!(page.text(), "Hello World! 我爱你中国....", "{path}");
    }
}

#[test]
fn hello_app_names_the_method() {
    let server = Server::start([spec("hello", "application")]);
    let get = server.get("/hello");
    assert_eq!(get.status, 200);
    assert_content_type(&get, "text/plain");
    assert_eq!(get.text(), "The request method was GET");
    assert_eq!(get.header("content-length"), Some("26"));
    let post = server.request("POST", "/", &[], b"ignored");
    assert_eq!(post.text(), "The request method was POST");
    let delete = server.request("DELETE", "/x", &[], b"");
    assert_eq!(delete.text(), "The request method was DELETE");
}

#[test]
fn static_app_serves_seed_000_without_the_static_site() {
    let server = Server::start([spec("static_app", "run").as_str(), "--no-static"]);
    let index = server.get("/");
    assert_eq!(index.status, 200);
    assert_content_type(&index, "text/html");
    assert_eq!(index.body, html_file("index.html"));

    let css = server.get("/style.css");
    assert_eq!(css.status, 200);
    assert_content_type(&css, "text/css");
    assert_eq!(css.body, html_file("style.css"));

    let js = server.get("/script.js");
    assert_content_type(&js, "text/javascript");

    let missing = server.get("/missing.html");
    assert_eq!(missing.status, 404);
    assert_content_type(&missing, "text/html");
    assert_eq!(missing.body, html_file("404.html"));
}

#[test]
fn static_app_sends_large_files_as_file_bodies_on_kept_alive_connections() {
    let dir = TempDir::new("static-app-files");
    let content: Vec<u8> = (0..2_000_003u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    std::fs::write(dir.join("big.txt"), &content).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>small</h1>").unwrap();
    let server = Server::builder()
        .arg(spec("static_app", "run"))
        .arg("--no-static")
        .env("STATIC_APP_ROOT", dir.path())
        .start();
    let mut conn = server.connect();
    for round in 0..10 {
        let big = conn.get("/big.txt");
        assert_eq!(big.status, 200, "round {round}");
        assert_eq!(big.header("content-length"), Some(content.len().to_string().as_str()));
        assert!(big.body == content, "round {round}: the bytes differ");
        let small = conn.get("/");
        assert_eq!(small.text(), "<h1>small</h1>");
    }
    assert!(conn.leftover().is_empty());
}

#[test]
fn plugins_built_against_older_minors_load_and_serve() {
    let dir = TempDir::new("older-minors");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let file = dir.join("f.bin");
    std::fs::write(&file, &content).unwrap();
    for minor in ["1.0", "1.1"] {
        let library = common::fixture_lib(&format!("built-with-{}", minor.replace('.', "-")));
        let server = Server::builder()
            .arg(app_spec(&library, "application"))
            .arg("--no-static")
            .start();
        let mut conn = server.connect();
        for round in 0..10 {
            conn.send(&request_bytes("POST", &format!("/r/{round}"), &[], b"sent"));
            let response = conn.read_response();
            assert_eq!(response.status, 200, "{minor}, round {round}: {}", response.text());
            assert_eq!(
                response.text(),
                format!("built against plugin-api {minor}.0\npath /r/{round}\nbody sent\n")
            );
        }
        if minor == "1.1" {
            // What 1.1 added: the file body.
            let path = file.to_str().unwrap();
            for round in 0..3 {
                conn.send(&request_bytes("GET", "/file", &[("X-File", path)], b""));
                let response = conn.read_response();
                assert_eq!(response.status, 200, "round {round}: {}", response.text());
                assert!(response.body == content, "round {round}: the file body differs");
            }
        }
        let log = server.log();
        assert!(!log.contains("refus"), "{log}");
        assert!(log.contains(&format!("plugin-api {minor}.0")), "{log}");
    }
}

#[test]
fn mounts_route_by_prefix_and_split_the_path() {
    let server = Server::start([
        "--mount".to_owned(),
        format!("/time={}", spec("ctime", "application")),
        "--mount".to_owned(),
        format!("/echo={}", spec("echo", "application")),
    ]);
    let time = server.get("/time");
    assert_eq!(time.status, 200);
    assert!(looks_like_ctime(&time.text()), "{:?}", time.text());
    assert!(looks_like_ctime(&server.get("/time/now").text()));

    // `/timer` is not under `/time`: nothing serves it.
    let timer = server.get("/timer");
    assert_eq!(timer.status, 404, "{}", timer.text());
    assert_eq!(timer.body, html_file("404.html"));

    let report = echo_json(&server.get("/echo/x"));
    assert_eq!(environ(&report, "SCRIPT_NAME"), "/echo");
    assert_eq!(environ(&report, "PATH_INFO"), "/x");
    assert_eq!(environ(&report, "QUERY_STRING"), "");

    let report = echo_json(&server.get("/echo"));
    assert_eq!(environ(&report, "SCRIPT_NAME"), "/echo");
    assert_eq!(environ(&report, "PATH_INFO"), "");

    let report = echo_json(&server.get("/echo/a%20b/%E4%B8%AD?q=%20x&y=%2F"));
    assert_eq!(environ(&report, "PATH_INFO"), "/a b/中");
    assert_eq!(environ(&report, "QUERY_STRING"), "q=%20x&y=%2F");
    assert_eq!(environ(&report, "REQUEST_METHOD"), "GET");
    assert_eq!(environ(&report, "SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(environ(&report, "SERVER_PORT"), server.addr.port().to_string());
    assert_eq!(environ(&report, "REMOTE_ADDR"), "127.0.0.1");
}

/// The seeds' layout: only paths ending in `.py` go to the app (with the
/// whole path as `PATH_INFO`), files are served from disk, and any other
/// missing path gets the 404 page; a suffix pattern wins over a prefix.
#[test]
fn a_suffix_mount_takes_only_its_paths_as_the_seeds_do() {
    let server = Server::start([
        "--mount".to_owned(),
        format!("*.py={}", spec("echo", "application")),
        "--mount".to_owned(),
        format!("/time={}", spec("ctime", "application")),
    ]);
    let report = echo_json(&server.get("/a/index.py?x=1"));
    assert_eq!(environ(&report, "SCRIPT_NAME"), "");
    assert_eq!(environ(&report, "PATH_INFO"), "/a/index.py");
    assert_eq!(environ(&report, "QUERY_STRING"), "x=1");
    assert_eq!(
        environ(&echo_json(&server.get("/time/x.py")), "PATH_INFO"),
        "/time/x.py"
    );
    assert!(looks_like_ctime(&server.get("/time/now").text()));
    for missing in ["/nope", "/index.pyc", "/py"] {
        let response = server.get(missing);
        assert_eq!(response.status, 404, "{missing}: {}", response.text());
        assert_eq!(response.body, html_file("404.html"), "{missing}");
    }
    assert_eq!(server.get("/").body, html_file("index.html"));
}

/// Forwarding headers count from a trusted proxy (127.0.0.1 by default)
/// and from nobody else.
#[test]
fn forwarded_headers_count_only_from_trusted_proxies() {
    let forwarded = [
        ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
    ];
    let trusted = echo_server(&[]);
    let report = echo_json(&trusted.request("GET", "/who", &forwarded, b""));
    assert_eq!(environ(&report, "REMOTE_ADDR"), "203.0.113.7");
    assert_eq!(environ(&report, "wsgi.url_scheme"), "https");
    let report = echo_json(&trusted.request(
        "GET",
        "/who",
        &[("Forwarded", "for=\"[2001:db8::1]:99\";proto=http")],
        b"",
    ));
    assert_eq!(environ(&report, "REMOTE_ADDR"), "2001:db8::1");
    assert_eq!(environ(&report, "wsgi.url_scheme"), "http");

    let untrusted = echo_server(&["--forwarded-allow-ips", "10.0.0.0/8"]);
    let report = echo_json(&untrusted.request("GET", "/who", &forwarded, b""));
    assert_eq!(environ(&report, "REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(environ(&report, "wsgi.url_scheme"), "http");
}

#[test]
fn proxy_protocol_headers_name_the_client_on_kept_alive_connections() {
    let server = echo_server(&["--proxy-protocol"]);
    // v1, then two requests on the same connection.
    let mut conn = server.connect();
    conn.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n");
    for _ in 0..2 {
        conn.send(&request_bytes("GET", "/who", &[], b""));
        let report = echo_json(&conn.read_response());
        assert_eq!(environ(&report, "REMOTE_ADDR"), "203.0.113.7");
        assert_eq!(environ(&report, "REMOTE_PORT"), "51234");
    }
    // v2 (PROXY, TCP over IPv6) in the same packet as the request.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x1f, 0x90, 0x00, 0x50]);
    v2.extend_from_slice(&request_bytes("GET", "/who", &[], b""));
    let mut conn = server.connect();
    conn.send(&v2);
    let report = echo_json(&conn.read_response());
    assert_eq!(environ(&report, "REMOTE_ADDR"), "2001:db8::1");
    assert_eq!(environ(&report, "REMOTE_PORT"), "8080");
    // The client behind the proxy is not a trusted proxy itself: its
    // X-Forwarded-For is ignored.
    let mut conn = server.connect();
    conn.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n");
    conn.send(&request_bytes("GET", "/who", &[("X-Forwarded-For", "6.6.6.6")], b""));
    assert_eq!(environ(&echo_json(&conn.read_response()), "REMOTE_ADDR"), "203.0.113.7");
    // Ten connections without a header, or with a broken one: each is
    // closed without a response, and the server keeps serving.
    for attempt in 0..10 {
        let mut conn = server.connect();
        let sent: &[u8] = match attempt % 2 {
            0 => b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n",
            _ => b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
        };
        conn.send(sent);
        let closed = conn.closed_within(Duration::from_secs(10));
        assert!(
            closed.is_ok() && conn.leftover().is_empty(),
            "attempt {attempt}: {closed:?}, {:?}",
            conn.leftover()
        );
    }
    let mut conn = server.connect();
    conn.send(b"PROXY UNKNOWN\r\n");
    conn.send(&request_bytes("GET", "/who", &[], b""));
    assert_eq!(environ(&echo_json(&conn.read_response()), "REMOTE_ADDR"), "127.0.0.1");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines_with_text(&server.log(), "(option --proxy-protocol)") < 10 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = server.log();
    assert_eq!(lines_with_text(&log, "(option --proxy-protocol)"), 10, "{log}");

    // From a peer outside --forwarded-allow-ips, no header is believed.
    let untrusted = echo_server(&["--proxy-protocol", "--forwarded-allow-ips", "10.0.0.0/8"]);
    let mut conn = untrusted.connect();
    // The server may close before the second write arrives: a refused
    // write is the expected outcome too.
    let _ = conn.try_send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n");
    let _ = conn.try_send(&request_bytes("GET", "/who", &[], b""));
    assert!(conn.closed_within(Duration::from_secs(10)).is_ok());
    assert!(conn.leftover().is_empty(), "{:?}", conn.leftover());
    let log = untrusted.wait_for_log("only from --forwarded-allow-ips", Duration::from_secs(5));
    assert!(log.contains("only from --forwarded-allow-ips"), "{log}");
}

fn lines_with_text(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

// ---------------------------------------------------------- static files

#[test]
fn static_files_get_their_content_type() {
    let server = Server::start::<&str>([]);
    for (path, file, expected) in [
        ("/index.html", "index.html", "text/html; charset=utf-8"),
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
        ("/404.html", "404.html", "text/html; charset=utf-8"),
    ] {
        let response = server.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_content_type(&response, expected);
        assert_eq!(response.body, html_file(file), "{path}");
        assert_eq!(
            response.header("content-length"),
            Some(html_file(file).len().to_string().as_str())
        );
    }
    let js = server.get("/script.js");
    assert_eq!(js.status, 200);
    let js_type = js.header("content-type").unwrap_or_default();
    assert!(js_type.contains("javascript"), "script.js served as {js_type}");
    assert_eq!(js.body, html_file("script.js"));
}

#[test]
fn a_folder_without_its_slash_is_redirected() {
    let server = Server::start::<&str>([]);
    let response = server.get("/templates");
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/templates/"));
    let response = server.get("/templates?x=1");
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/templates/?x=1"));
}

#[test]
fn a_folder_redirect_never_leaves_the_site() {
    // `Location: //templates/` would be a scheme-relative URL: the browser
    // would go to the host named `templates` (an open redirect).
    let server = Server::start::<&str>([]);
    for target in ["//templates", "///templates", "//templates?x=1"] {
        let response = server.get(target);
        assert!(matches!(response.status, 301 | 404), "{target}: {}", response.status);
        if let Some(location) = response.header("location") {
            assert!(
                location.starts_with('/') && !location.starts_with("//"),
                "{target} redirects off the site: Location: {location}"
            );
        }
    }
}

#[test]
fn missing_files_get_the_404_page_when_no_app_is_mounted() {
    let server = Server::start::<&str>([]);
    for (method, path) in [("GET", "/nope.html"), ("GET", "/a/b/c"), ("POST", "/nope.html")] {
        let response = server.request(method, path, &[], b"");
        assert_eq!(response.status, 404, "{method} {path}");
        assert_content_type(&response, "text/html; charset=utf-8");
        assert_eq!(response.body, html_file("404.html"), "{method} {path}");
    }
    // A file of the site, with a method the site does not serve.
    let response = server.request("POST", "/index.html", &[], b"x");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    let response = server.request("OPTIONS", "/index.html", &[], b"");
    assert_eq!(
        (response.status, response.header("allow")),
        (204, Some("GET, HEAD, OPTIONS"))
    );
}

#[test]
fn conditional_requests_get_304() {
    let server = Server::start::<&str>([]);
    let mut conn = server.connect();
    let first = conn.get("/style.css");
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let last_modified = first.header("last-modified").expect("a Last-Modified").to_owned();

    conn.send(&request_bytes("GET", "/style.css", &[("If-None-Match", &etag)], b""));
    let cached = conn.read_response();
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));

    conn.send(&request_bytes(
        "GET",
        "/style.css",
        &[("If-None-Match", "\"other\"")],
        b"",
    ));
    assert_eq!(conn.read_response().status, 200, "a different tag gets the file");

    conn.send(&request_bytes(
        "GET",
        "/style.css",
        &[("If-Modified-Since", &last_modified)],
        b"",
    ));
    assert_eq!(conn.read_response().status, 304);

    conn.send(&request_bytes(
        "GET",
        "/style.css",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        b"",
    ));
    let modified = conn.read_response();
    assert_eq!(modified.status, 200);
    assert_eq!(modified.body, html_file("style.css"));
}

#[test]
fn ranges_get_206_or_416() {
    let server = Server::start::<&str>([]);
    let file = html_file("index.html");
    let len = file.len();
    let mut conn = server.connect();

    conn.send(&request_bytes("GET", "/index.html", &[("Range", "bytes=0-9")], b""));
    let part = conn.read_response();
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some(format!("bytes 0-9/{len}").as_str()));
    assert_eq!(part.body, &file[..10]);

    conn.send(&request_bytes("GET", "/index.html", &[("Range", "bytes=-5")], b""));
    let tail = conn.read_response();
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, &file[len - 5..]);

    let beyond = format!("bytes={len}-");
    conn.send(&request_bytes("GET", "/index.html", &[("Range", &beyond)], b""));
    let refused = conn.read_response();
    assert_eq!(refused.status, 416);
    assert_eq!(refused.header("content-range"), Some(format!("bytes */{len}").as_str()));
}

#[test]
fn large_files_are_sent_whole_and_in_ranges_on_kept_alive_connections() {
    let dir = TempDir::new("large-files");
    let content: Vec<u8> = (0..3_000_017u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), &content).unwrap();
    std::fs::write(dir.join("shrinks.bin"), &content).unwrap();
    let server = Server::builder()
        .args(["--static-dir", dir.path().to_str().unwrap()])
        .start();
    let len = content.len();
    let mut conn = server.connect();
    for round in 0..10 {
        let whole = conn.get("/big.bin");
        assert_eq!(whole.status, 200, "round {round}");
        assert!(whole.body == content, "round {round}: the bytes differ");
        let start = 70_000 * round + 1;
        let range = format!("bytes={start}-{}", start + 99_999);
        conn.send(&request_bytes("GET", "/big.bin", &[("Range", &range)], b""));
        let part = conn.read_response();
        assert_eq!(part.status, 206);
        assert!(
            part.body == content[start..start + 100_000],
            "round {round}: the range differs"
        );
        conn.send(&request_bytes("HEAD", "/big.bin", &[], b""));
        let head = conn.read_response_for("HEAD");
        assert_eq!(head.header("content-length"), Some(len.to_string().as_str()));
    }
    assert!(conn.leftover().is_empty());

    // A file cut short after it was looked up: the response cannot keep
    // its promised length, so the connection ends early; the server
    // keeps serving.
    let mut conn = server.connect();
    assert_eq!(conn.get("/shrinks.bin").status, 200);
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("shrinks.bin"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    conn.send(&request_bytes("GET", "/shrinks.bin", &[], b""));
    assert!(
        conn.closed_within(Duration::from_secs(10)).is_ok(),
        "the cut response did not end"
    );
    let fresh = server.get("/big.bin");
    assert!(fresh.status == 200 && fresh.body == content);
}

#[test]
fn precompressed_files_go_to_clients_that_accept_them() {
    let dir = TempDir::new("precompressed");
    let plain = "body { color: red }\n".repeat(200);
    std::fs::write(dir.join("site.css"), &plain).unwrap();
    // Stand-ins for compressed bytes: the server sends what is on disk.
    let gz: Vec<u8> = (0..300u32).map(|i| (i % 7) as u8).collect();
    let br: Vec<u8> = (0..200u32).map(|i| (i % 5) as u8).collect();
    std::fs::write(dir.join("site.css.gz"), &gz).unwrap();
    std::fs::write(dir.join("site.css.br"), &br).unwrap();
    std::fs::write(dir.join("only.txt"), "plain only").unwrap();
    let server = Server::builder()
        .args(["--static-dir", dir.path().to_str().unwrap()])
        .start();
    let mut conn = server.connect();
    let mut get = |accept: Option<&str>, extra: &[(&str, &str)]| {
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(accept) = accept {
            headers.push(("Accept-Encoding", accept));
        }
        conn.send(&request_bytes("GET", "/site.css", &headers, b""));
        conn.read_response()
    };
    let identity = get(None, &[]);
    assert_eq!((identity.status, identity.text()), (200, plain.clone()));
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(identity.header("vary"), Some("Accept-Encoding"));

    let brotli = get(Some("gzip, deflate, br"), &[]);
    assert_eq!(brotli.body, br);
    assert_eq!(brotli.header("content-encoding"), Some("br"));
    assert_eq!(brotli.header("content-type"), identity.header("content-type"));
    assert_eq!(brotli.header("vary"), Some("Accept-Encoding"));

    let gzip = get(Some("gzip, br;q=0"), &[]);
    assert_eq!(gzip.body, gz);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    let etags: Vec<String> = [&identity, &brotli, &gzip]
        .iter()
        .map(|r| r.header("etag").expect("an etag").to_owned())
        .collect();
    assert!(
        etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2],
        "{etags:?}"
    );

    // A range counts the encoded bytes; validators are per encoding.
    let part = get(Some("br"), &[("Range", "bytes=10-19")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &br[10..20]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 10-19/{}", br.len()).as_str())
    );
    assert_eq!(part.header("content-encoding"), Some("br"));
    let cached = get(Some("br"), &[("If-None-Match", etags[1].as_str())]);
    assert_eq!(cached.status, 304);
    let stale = get(Some("gzip"), &[("If-None-Match", etags[1].as_str())]);
    assert_eq!((stale.status, stale.body.clone()), (200, gz.clone()));
    assert!(conn.leftover().is_empty());

    // A file without precompressed forms varies on nothing.
    let only = server.request("GET", "/only.txt", &[("Accept-Encoding", "gzip, br")], b"");
    assert_eq!((only.text().as_str(), only.header("vary")), ("plain only", None));
    // The compressed files themselves are still files of the site.
    assert_eq!(server.get("/site.css.gz").body, gz);
}

#[test]
fn head_sends_headers_without_a_body() {
    let server = Server::start::<&str>([]);
    let mut conn = server.connect();
    conn.send(&request_bytes("HEAD", "/index.html", &[], b""));
    let head = conn.read_response_for("HEAD");
    assert_eq!(head.status, 200);
    let len = html_file("index.html").len().to_string();
    assert_eq!(head.header("content-length"), Some(len.as_str()));
    assert_content_type(&head, "text/html; charset=utf-8");
    // Had a body followed, this response would not parse.
    let next = conn.get("/style.css");
    assert_eq!(next.status, 200);
    assert_eq!(next.body, html_file("style.css"));
    assert!(conn.leftover().is_empty());
}

// ------------------------------------------------------------ connections

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = echo_server(&[]);
    let mut conn = server.connect();
    let first = conn.get("/index.html");
    assert_eq!(first.status, 200);
    assert_eq!(first.body, html_file("index.html"));
    let second = conn.get("/status/201");
    assert_eq!((second.status, second.text().as_str()), (201, "status 201"));
    let third = conn.get("/write");
    assert_eq!(third.status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = echo_server(&[]);
    let mut conn = server.connect();
    let mut batch = request_bytes("GET", "/sleep/300", &[], b"");
    batch.extend(request_bytes("GET", "/status/202", &[], b""));
    batch.extend(request_bytes("GET", "/style.css", &[], b""));
    batch.extend(request_bytes("POST", "/p", &[], b"posted"));
    conn.send(&batch);
    let first = conn.read_response();
    assert_eq!((first.status, first.text().as_str()), (200, "slept 300"));
    let second = conn.read_response();
    assert_eq!((second.status, second.text().as_str()), (202, "status 202"));
    let third = conn.read_response();
    assert_eq!(third.body, html_file("style.css"));
    let fourth = echo_json(&conn.read_response());
    assert_eq!(fourth["body"], "posted");
}

#[test]
fn chunked_request_bodies_reach_the_app() {
    let server = echo_server(&[]);
    let mut conn = server.connect();
    conn.send(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    conn.send(b"5\r\nhello\r\n");
    thread::sleep(Duration::from_millis(50));
    conn.send(b"6;ext=1\r\n world\r\n0\r\n\r\n");
    let report = echo_json(&conn.read_response());
    assert_eq!(report["body"], "hello world");
    assert_eq!(report["body_length"], 11);
}

#[test]
fn streamed_responses_are_chunked() {
    let server = echo_server(&[]);
    let response = server.connect().get("/stream");
    assert_eq!(response.status, 200);
    assert!(response.is_chunked(), "{:?}", response.headers);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
    assert!(!response.chunks.is_empty());
    eprintln!("/stream came in {} chunk(s)", response.chunks.len());
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = echo_server(&[]);
    let mut conn = server.connect();
    conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = conn.read_head();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(interim.version, "HTTP/1.1");
    conn.send(b"hello");
    let report = echo_json(&conn.read_response());
    assert_eq!(report["body"], "hello");
    assert_eq!(environ(&report, "HTTP_EXPECT"), "100-continue");
}

#[test]
fn large_bodies_go_through_both_ways() {
    let server = echo_server(&[]);
    let body = vec![b'a'; 5 << 20];
    let mut conn = server.connect();
    conn.send(&request_bytes("POST", "/large", &[], &body));
    let report = echo_json(&conn.read_response());
    assert_eq!(report["body_length"], 5 << 20);
    assert_eq!(environ(&report, "CONTENT_LENGTH"), (5 << 20).to_string());

    let big = conn.get("/big/3000000");
    assert_eq!(big.status, 200);
    assert_eq!(big.header("content-length"), Some("3000000"));
    assert_eq!(big.body.len(), 3_000_000);
    assert!(big.body.iter().all(|&b| b == b'x'));
}

#[test]
fn the_write_callable_comes_before_the_returned_body() {
    let server = echo_server(&[]);
    let response = server.get("/write");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "written-by-write\nreturned\n");
}

// ----------------------------------------------------------------- limits

fn limited_server() -> Server {
    echo_server(&[
        "--max-body-size",
        "1KiB",
        "--max-headers",
        "10",
        "--max-header-size",
        "4KiB",
        "--max-uri-length",
        "1KiB",
    ])
}

#[test]
fn a_declared_body_over_the_limit_gets_413() {
    let server = limited_server();
    let mut conn = server.connect();
    conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n");
    let response = conn.read_response();
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.text().contains("--max-body-size"), "{}", response.text());
    let log = server.wait_for_log("--max-body-size", Duration::from_secs(5));
    assert!(
        log.lines()
            .any(|l| l.contains("max_body_size") && l.contains("--max-body-size")),
        "no log line names the option:\n{log}"
    );
    // At the limit is fine.
    let report = echo_json(&server.request("POST", "/", &[], &[b'y'; 1024]));
    assert_eq!(report["body_length"], 1024);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let server = limited_server();
    let mut conn = server.connect();
    let chunk = format!("258\r\n{}\r\n", "z".repeat(600));
    let mut request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(chunk.as_bytes());
    request.extend_from_slice(chunk.as_bytes());
    request.extend_from_slice(b"0\r\n\r\n");
    conn.send(&request);
    let response = conn.read_response();
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.text().contains("--max-body-size"), "{}", response.text());
}

#[test]
fn too_many_headers_get_431() {
    let server = limited_server();
    let headers: Vec<(String, String)> = (0..20).map(|i| (format!("X-Header-{i}"), "v".to_owned())).collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut conn = server.connect();
    conn.send(&request_bytes("GET", "/", &headers, b""));
    let response = conn.read_response();
    assert_eq!(response.status, 431);
    // Under the limit is fine.
    let report = echo_json(&server.request("GET", "/ok", &headers[..5], b""));
    assert_eq!(environ(&report, "HTTP_X_HEADER_4"), "v");
}

#[test]
fn a_header_over_the_size_limit_gets_431() {
    let server = limited_server();
    let value = "v".repeat(8 << 10);
    let mut conn = server.connect();
    conn.send(&request_bytes("GET", "/", &[("X-Big", &value)], b""));
    let response = conn.read_response();
    assert_eq!(response.status, 431);
    let value = "v".repeat(2 << 10);
    let report = echo_json(&server.request("GET", "/ok", &[("X-Big", &value)], b""));
    assert_eq!(environ(&report, "HTTP_X_BIG").len(), 2 << 10);
}

#[test]
fn a_request_target_over_the_limit_gets_414() {
    let server = limited_server();
    let target = format!("/{}", "a".repeat(2000));
    let response = server.get(&target);
    assert_eq!(response.status, 414);
    assert!(response.text().contains("--max-uri-length"), "{}", response.text());
    let target = format!("/{}", "a".repeat(1000));
    assert_eq!(server.get(&target).status, 200);
}

#[test]
fn a_slow_request_head_is_cut_off() {
    let server = echo_server(&["--header-timeout", "1s"]);
    let mut conn = server.connect();
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    match conn.closed_within(Duration::from_secs(6)) {
        Ok(after) => {
            eprintln!(
                "closed after {after:?}; sent first: {:?}",
                String::from_utf8_lossy(conn.leftover())
            );
            assert!(after >= Duration::from_millis(500), "closed too early: {after:?}");
        }
        Err(sent) => panic!(
            "the connection was still open 6 s after a partial head (header timeout 1 s); sent {:?}",
            String::from_utf8_lossy(&sent)
        ),
    }
    // An idle keep-alive connection is closed too.
    let mut idle = server.connect();
    assert_eq!(idle.get("/status/200").status, 200);
    assert!(
        idle.closed_within(Duration::from_secs(6)).is_ok(),
        "idle connection kept open"
    );
}

#[test]
fn malformed_requests_get_400() {
    let server = echo_server(&[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
    ] {
        let mut conn = server.connect();
        conn.send(raw);
        let response = conn.read_response();
        assert_eq!(response.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    assert_eq!(server.get("/status/200").status, 200, "still serving");
}

// -------------------------------------------------------------- traversal

const TRAVERSALS: [&str; 12] = [
    "/../Cargo.toml",
    "/%2e%2e/Cargo.toml",
    "/%2e%2e%2fCargo.toml",
    "/..%2fCargo.toml",
    "/..%5cCargo.toml",
    "/..\\Cargo.toml",
    "/%2E%2E/%2E%2E/html/../Cargo.toml",
    "/style.css/../../Cargo.toml",
    "/./../Cargo.toml",
    "//../Cargo.toml",
    "/a%00b",
    "/index.html%00.css",
];

fn assert_no_traversal(server: &Server, what: &str) {
    for target in TRAVERSALS {
        let response = server.get(target);
        assert!(
            matches!(response.status, 400 | 404),
            "{what}: {target} answered {} {}",
            response.status,
            response.text()
        );
        assert!(
            !response.text().contains("[workspace]"),
            "{what}: {target} leaked Cargo.toml"
        );
    }
}

#[test]
fn traversal_targets_never_reach_outside_the_static_folder() {
    assert_no_traversal(&Server::start::<&str>([]), "static site");
}

#[test]
fn traversal_targets_never_reach_outside_static_app_folder() {
    assert_no_traversal(
        &Server::start([spec("static_app", "run").as_str(), "--no-static"]),
        "static_app",
    );
}

#[test]
fn symlinks_out_of_the_static_folder_are_not_followed() {
    let base = TempDir::new("symlink");
    let site = base.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>inside</h1>").unwrap();
    std::fs::write(base.join("secret.txt"), "top secret 8472").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(base.path(), site.join("up")).unwrap();
    std::os::unix::fs::symlink(site.join("index.html"), site.join("alias.html")).unwrap();

    let server = Server::builder().arg("--static-dir").arg(&site).start();
    assert_eq!(server.get("/").text(), "<h1>inside</h1>");
    assert_eq!(
        server.get("/alias.html").text(),
        "<h1>inside</h1>",
        "a symlink inside is fine"
    );
    for target in ["/leak.txt", "/up/secret.txt", "/up/site/../secret.txt", "/up/"] {
        let response = server.get(target);
        assert!(matches!(response.status, 400 | 404), "{target}: {}", response.status);
        assert!(!response.text().contains("top secret"), "{target} leaked the file");
    }
}

// ----------------------------------------------------------------- errors

#[test]
fn a_panicking_app_gets_500_and_the_server_keeps_serving() {
    let server = echo_server(&[]);
    let mut conn = server.connect();
    let response = conn.get("/panic");
    assert_eq!(response.status, 500);
    assert!(!response.body.is_empty(), "a 500 without a body");
    assert_eq!(conn.get("/status/200").status, 200, "same connection after a panic");
    assert_eq!(server.get("/status/200").status, 200, "new connection after a panic");
    let log = server.wait_for_log("panic", Duration::from_secs(2));
    assert!(log.contains("echo was asked to panic"), "{log}");
}

#[test]
fn a_failing_app_gets_500() {
    let server = echo_server(&[]);
    let response = server.get("/error");
    assert_eq!(response.status, 500);
    assert!(!response.body.is_empty());
    assert!(server.log().contains("echo was asked to fail"));
}

#[test]
fn an_invalid_status_from_the_app_gets_500() {
    let server = echo_server(&[]);
    for code in ["600", "999"] {
        let response = server.get(&format!("/status/{code}"));
        assert_eq!(response.status, 500, "/status/{code}: {}", response.text());
    }
    let teapot = server.get("/status/418");
    assert_eq!((teapot.status, teapot.reason.as_str()), (418, "I'm a teapot"));
    let odd = server.get("/status/299");
    assert_eq!((odd.status, odd.reason.as_str()), (299, "Unknown"));
}

#[test]
fn an_interim_status_from_the_app_gets_500() {
    // 1xx codes are not final responses: 101 in particular tells the client
    // the connection now speaks another protocol, which no app asked for.
    let server = echo_server(&[]);
    for code in ["100", "101", "103"] {
        let response = server.get(&format!("/status/{code}"));
        assert_eq!(
            response.status,
            500,
            "/status/{code} answered {} {} {:?} {:?}",
            response.status,
            response.reason,
            response.headers,
            response.text()
        );
    }
}

// ------------------------------------------------------------ concurrency

#[test]
fn a_slow_request_does_not_block_a_fast_one() {
    let server = echo_server(&[]);
    let addr = server.addr;
    let (done_tx, done_rx) = mpsc::channel();
    let slow_tx = done_tx.clone();
    let slow = thread::spawn(move || {
        let response = Conn::open(addr).get("/sleep/2000");
        let _ = slow_tx.send("slow");
        response
    });
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let fast = server.get("/status/204");
    let fast_took = started.elapsed();
    done_tx.send("fast").unwrap();
    assert_eq!(fast.status, 204);
    let first = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, "fast", "the fast request waited for the slow one");
    let slow = slow.join().expect("slow request thread");
    assert_eq!(slow.text(), "slept 2000");
    eprintln!("fast request took {fast_took:?} while a 2 s request ran");
}

#[test]
fn many_concurrent_requests_all_succeed() {
    let server = echo_server(&[]);
    let addr = server.addr;
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| thread::spawn(move || Conn::open(addr).get("/sleep/100")))
        .collect();
    for worker in workers {
        let response = worker.join().expect("request thread");
        assert_eq!((response.status, response.text().as_str()), (200, "slept 100"));
    }
    eprintln!("64 concurrent /sleep/100 requests took {:?}", started.elapsed());
}

// ------------------------------------------------------------- access log

/// Every request has an id: a trusted proxy's `X-Request-Id` (127.0.0.1
/// is trusted by default), else a new one; the app sees it and the log
/// records it. The combined format is Apache's, Referer and User-Agent
/// included.
#[test]
fn request_ids_reach_the_app_and_the_log() {
    let server = echo_server(&[]);
    let report = echo_json(&server.request("GET", "/who", &[("X-Request-Id", "proxy-abc-123")], b""));
    assert_eq!(environ(&report, "HTTP_X_REQUEST_ID"), "proxy-abc-123");
    let made = environ(&echo_json(&server.get("/who")), "HTTP_X_REQUEST_ID").to_owned();
    assert!(
        made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made:?}"
    );
    let other = environ(&echo_json(&server.get("/who")), "HTTP_X_REQUEST_ID").to_owned();
    assert_ne!(made, other, "ids are unique");
    let untrusted = echo_server(&["--forwarded-allow-ips", "10.0.0.0/8"]);
    let report = echo_json(&untrusted.request("GET", "/who", &[("X-Request-Id", "forged")], b""));
    assert_ne!(environ(&report, "HTTP_X_REQUEST_ID"), "forged");
    for id in ["proxy-abc-123", made.as_str()] {
        let log = server.wait_for_log(&format!("id={id}"), Duration::from_secs(5));
        assert!(log.contains(&format!("id={id}")), "no access line with id {id}:\n{log}");
    }

    let combined = echo_server(&["--access-log-format", "combined"]);
    let response = combined.request(
        "GET",
        "/who?x=1",
        &[
            ("Referer", "http://example.com/a"),
            ("User-Agent", "curl/8.0 \"quoted\""),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    let needle = "\"GET /who?x=1 HTTP/1.1\" 200";
    let log = combined.wait_for_log(needle, Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no combined line:\n{log}"));
    let entry = &line[line.find(" access] ").expect("a log prefix") + 9..];
    // 127.0.0.1 - - [01/Dec/2026:13:01:52 +0000] "GET /who?x=1 HTTP/1.1" 200 345 "http://…" "curl/8.0 \"quoted\""
    assert!(entry.starts_with("127.0.0.1 - - ["), "{entry}");
    assert!(entry.contains(" +0000] \"GET /who?x=1 HTTP/1.1\" 200 "), "{entry}");
    assert!(
        entry.ends_with(" \"http://example.com/a\" \"curl/8.0 \\\"quoted\\\"\""),
        "{entry}"
    );
}

#[test]
fn json_access_log_lines_are_valid_json() {
    let server = echo_server(&["--access-log-format", "json"]);
    // Raw `"` and `\` are refused (400, before any app) but still logged:
    // the JSON must escape them.
    let targets = [
        ("/log%22quote?q=%22%5C&r=a\\b", 400),
        ("/log\\path\\?x=\\\\", 400),
        ("/index.html", 200),
        ("/status/404", 404),
    ];
    for (target, status) in targets {
        assert_eq!(server.get(target).status, status, "{target}");
    }
    // Workers may write their lines in any order: wait for all of them.
    let access_entries = |log: &str| -> Vec<Value> {
        log.lines()
            .filter(|line| line.contains(" access]"))
            .map(|line| {
                let json = &line[line.find("] ").expect("a log prefix") + 2..];
                serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = server.log();
    while access_entries(&log).len() < targets.len() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        log = server.log();
    }
    let entries = access_entries(&log);
    assert_eq!(entries.len(), targets.len(), "one access line per request:\n{log}");
    for (target, status) in targets {
        let entry = entries
            .iter()
            .find(|entry| entry["path"] == target)
            .unwrap_or_else(|| panic!("no access line with path {target:?}:\n{log}"));
        assert_eq!(entry["status"], status, "{entry}");
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["protocol"], "HTTP/1.1");
        assert_eq!(entry["remote"], "127.0.0.1");
        assert!(entry["bytes"].is_u64() && entry["duration_ms"].is_number(), "{entry}");
        if target == "/index.html" {
            assert_eq!(entry["bytes"], html_file("index.html").len());
        }
    }
}

// ---------------------------------------------------------- graceful stop

/// Tries a new connection: `None` if it is refused (what a stopping server
/// should do), else what a request on it got (a status, or what went wrong).
fn try_late_connection(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return None;
    };
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = stream.write_all(b"GET /status/200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let outcome = match stream.read_to_end(&mut answer) {
        Ok(_) if answer.is_empty() => "closed without a response".to_owned(),
        Ok(_) => format!(
            "answered {:?}",
            String::from_utf8_lossy(&answer).lines().next().unwrap_or_default()
        ),
        Err(e) => format!("{e} after {} bytes", answer.len()),
    };
    Some(outcome)
}

/// SIGTERM during a 6 s request: it finishes with 200, new connections
/// are refused meanwhile, and the host exits 0.
fn graceful_stop(extra: &[&str]) {
    let mut server = echo_server(extra);
    let mut conn = server.connect();
    conn.send(&request_bytes("GET", "/sleep/6000", &[], b""));
    thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    server.signal("TERM");

    // The listener goes at once; a loaded machine gets until the in-flight
    // request is nearly done (5 of its 6 s) before that counts as a failure.
    let mut late = try_late_connection(server.addr);
    while late.is_some() && signalled.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
        late = try_late_connection(server.addr);
    }

    let response = conn.read_response();
    assert_eq!((response.status, response.text().as_str()), (200, "slept 6000"));
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("host still running 5 s after the request ended");
    assert!(status.success(), "exit status {status}\n{}", server.log());
    eprintln!("host exited {:?} after SIGTERM", signalled.elapsed());
    if let Some(outcome) = late {
        panic!(
            "a connection opened after SIGTERM, while a request was draining, was accepted ({outcome}); it should be \
             refused"
        );
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    graceful_stop(&[]);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_in_process() {
    graceful_stop(&["--workers", "0"]);
}

#[test]
fn sigint_stops_an_idle_server() {
    let mut server = echo_server(&[]);
    assert_eq!(server.get("/status/200").status, 200);
    server.signal("INT");
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("host still running after SIGINT");
    assert!(status.success(), "exit status {status}");
}

// ------------------------------------------------------------ config file

#[test]
fn a_config_file_sets_bind_static_dir_and_mounts() {
    let dir = TempDir::new("config");
    let config = dir.join("host.toml");
    let text = format!(
        "bind = [\"127.0.0.1:0\"]\nstatic_dir = {static_dir:?}\naccess_log_format = \"json\"\n\n[mounts]\n\"/time\" = \
         {time:?}\n\"/echo\" = {echo:?}\n\n[limits]\nmax_body_size = \"1KiB\"\n",
        static_dir = repo_root().join("html").display().to_string(),
        time = spec("ctime", "application"),
        echo = spec("echo", "application"),
    );
    std::fs::write(&config, text).unwrap();
    // Run from elsewhere: the config file's paths are all that count.
    let server = Server::builder()
        .no_bind()
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .start();
    assert!(looks_like_ctime(&server.get("/time").text()));
    assert_eq!(server.get("/").body, html_file("index.html"));
    assert_eq!(echo_json(&server.get("/echo/x"))["environ"]["SCRIPT_NAME"], "/echo");
    assert_eq!(server.request("POST", "/echo", &[], &[b'b'; 2000]).status, 413);
    let log = server.wait_for_log("\"path\":\"/time\"", Duration::from_secs(2));
    assert!(
        log.contains("\"path\":\"/time\""),
        "json access log from the config:\n{log}"
    );
}

#[test]
fn print_config_shows_the_effective_settings() {
    let output = run_host(
        &[
            "--print-config",
            "--max-body-size",
            "1MiB",
            "--mount",
            "/time=ctime:application",
        ],
        &[],
        b"",
    );
    assert!(output.status.success(), "{}", stderr_text(&output));
    let text = stdout_text(&output);
    assert!(text.contains("max_body_size = \"1MiB\""), "{text}");
    for key in [
        "bind",
        "static_dir",
        "max_headers",
        "header_timeout",
        "graceful_timeout",
        "/time",
    ] {
        assert!(text.contains(key), "{key} missing from:\n{text}");
    }

    // What it prints is a config file the host accepts.
    let dir = TempDir::new("printed");
    let config = dir.join("printed.toml");
    std::fs::write(&config, &text).unwrap();
    let again = run_host(
        &["--print-config".as_ref(), "--config".as_ref(), config.as_os_str()],
        &[],
        b"",
    );
    assert!(again.status.success(), "{}", stderr_text(&again));
    assert_eq!(stdout_text(&again), text, "printing the printed config changes it");
}

#[test]
fn an_unknown_config_key_exits_2_with_one_line() {
    let dir = TempDir::new("badconfig");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "bind = [\"127.0.0.1:0\"]\ncolour = \"blue\"\n").unwrap();
    let output = run_host(&["--config".as_ref(), config.as_os_str()], &[], b"");
    assert_eq!(output.status.code(), Some(2), "{}", stderr_text(&output));
    let stderr = stderr_text(&output);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line:\n{stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    assert!(lines[0].contains("colour"), "the key is not named: {stderr}");
    assert!(lines[0].contains("bad.toml"), "the file is not named: {stderr}");
    assert!(stdout_text(&output).is_empty());
}
