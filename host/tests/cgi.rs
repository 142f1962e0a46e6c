//! `host cgi LIB:SYMBOL`: every demo plugin run once as a CGI script, with a
//! CGI environment (and nothing else) and a request body on stdin; the
//! `Status:` line, headers and body on stdout are checked.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;

/// A CGI request: the variables a web server would set, and the body.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    content_type: Option<&'a str>,
    /// `CONTENT_LENGTH`; `None` for no body.
    content_length: Option<usize>,
    /// Extra variables, e.g. `HTTP_*` headers or `MINI_FRAME_TEMPLATES`.
    extra: Vec<(&'a str, &'a str)>,
    /// What stdin holds (may be longer than `CONTENT_LENGTH`).
    stdin: &'a [u8],
    /// The host's working folder: a neutral one unless a test chooses.
    dir: PathBuf,
}

impl<'a> Request<'a> {
    fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            query: "",
            content_type: None,
            content_length: None,
            extra: Vec::new(),
            stdin: b"",
            dir: std::env::temp_dir(),
        }
    }

    fn post(path: &'a str, content_type: &'a str, body: &'a [u8]) -> Self {
        Self {
            method: "POST",
            content_type: Some(content_type),
            content_length: Some(body.len()),
            stdin: body,
            ..Self::get(path)
        }
    }

    fn env(mut self, name: &'a str, value: &'a str) -> Self {
        self.extra.push((name, value));
        self
    }

    fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = dir.to_path_buf();
        self
    }

    /// Runs `host cgi` on `library:symbol` for this request.
    fn run(&self, library: &Path, symbol: &str) -> CgiResponse {
        let content_length = self.content_length.map(|n| n.to_string());
        let mut env: Vec<(&str, &str)> = vec![
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_SOFTWARE", "host-tests"),
            ("SERVER_NAME", "example.test"),
            ("SERVER_PORT", "8080"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_PORT", "54321"),
            ("SCRIPT_NAME", ""),
            ("REQUEST_METHOD", self.method),
            ("PATH_INFO", self.path),
            ("QUERY_STRING", self.query),
            ("HTTP_HOST", "example.test:8080"),
            ("HTTP_USER_AGENT", "host-tests/1"),
        ];
        if let Some(content_type) = self.content_type {
            env.push(("CONTENT_TYPE", content_type));
        }
        if let Some(length) = &content_length {
            env.push(("CONTENT_LENGTH", length));
        }
        env.extend(self.extra.iter().copied());
        let output = run_host_in(&self.dir, &["cgi", &app_spec(library, symbol)], &env, self.stdin);
        CgiResponse::parse(output)
    }
}

/// `host cgi`'s output, split into the CGI response parts.
struct CgiResponse {
    output: Output,
    /// The `Status:` line's value, e.g. `200 OK`.
    status: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl CgiResponse {
    fn parse(output: Output) -> Self {
        let stdout = &output.stdout;
        let Some(end) = stdout.windows(4).position(|w| w == b"\r\n\r\n") else {
            panic!("no blank line ends the CGI head\n{}", describe(&output));
        };
        let head = std::str::from_utf8(&stdout[..end]).expect("the head is UTF-8");
        let body = stdout[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let Some(status) = first.strip_prefix("Status: ") else {
            panic!(
                "the response starts with {first:?}, not a Status: line\n{}",
                describe(&output)
            );
        };
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("malformed header line {line:?}"));
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Self {
            status: status.to_owned(),
            headers,
            body,
            output,
        }
    }

    /// The one value of header `name` (case-insensitive), if present.
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "header {name} sent twice\n{}", self.describe());
        value
    }

    fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("the body is UTF-8")
    }

    fn stderr(&self) -> String {
        stderr_text(&self.output)
    }

    fn describe(&self) -> String {
        describe(&self.output)
    }

    /// Asserts the host exited 0 with `status`, and the content type.
    #[track_caller]
    fn assert_ok(&self, status: &str, content_type: &str) {
        assert_eq!(self.output.status.code(), Some(0), "{}", self.describe());
        assert_eq!(self.status, status, "{}", self.describe());
        assert_eq!(self.header("Content-Type"), Some(content_type), "{}", self.describe());
        if let Some(length) = self.header("Content-Length") {
            assert_eq!(
                length,
                self.body.len().to_string(),
                "Content-Length\n{}",
                self.describe()
            );
        }
    }

    /// Asserts nothing was logged (RUST_LOG is unset: errors only).
    #[track_caller]
    fn assert_quiet(&self) {
        assert!(self.output.stderr.is_empty(), "{}", self.describe());
    }
}

/// Whether `text` has the shape of Python's `time.ctime()`:
/// `Sun Jun  7 23:07:04 2015` (day of the month space-padded).
fn is_ctime_shaped(text: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let number = |s: &str, range: std::ops::RangeInclusive<u32>| {
        s.bytes().all(|b| b.is_ascii_digit()) && s.parse().is_ok_and(|n| range.contains(&n))
    };
    text.is_ascii() && text.len() == 24 && {
        let (weekday, month, day) = (&text[0..3], &text[4..7], &text[8..10]);
        let (time, year) = (&text[11..19], &text[20..24]);
        let spaces = [3, 7, 10, 19].iter().all(|&i| text.as_bytes()[i] == b' ');
        let day_ok = match day.strip_prefix(' ') {
            Some(single) => number(single, 1..=9),
            None => number(day, 10..=31),
        };
        let hms: Vec<&str> = time.split(':').collect();
        let time_ok = hms.len() == 3
            && hms.iter().all(|part| part.len() == 2)
            && number(hms[0], 0..=23)
            && number(hms[1], 0..=59)
            && number(hms[2], 0..=60);
        spaces && DAYS.contains(&weekday) && MONTHS.contains(&month) && day_ok && time_ok && number(year, 1970..=9999)
    }
}

#[track_caller]
fn assert_ctime_shape(text: &str) {
    assert!(
        is_ctime_shaped(text),
        "not shaped like time.ctime() (e.g. `Sun Jun  7 23:07:04 2015`): {text:?}"
    );
}

#[test]
fn ctime_shape_check_knows_good_from_bad() {
    assert_ctime_shape("Sun Jun  7 23:07:04 2015");
    assert_ctime_shape("Sat Nov 21 08:41:05 2026");
    for bad in [
        "Sun Jun 7 23:07:04 2015",
        "Sun Jun 07 23:07:04 2015",
        "Sun Jun  7 24:07:04 2015",
        "Sun Jun  7 23:07:04 2015\n",
        "Foo Jun  7 23:07:04 2015",
    ] {
        assert!(!is_ctime_shaped(bad), "{bad:?}");
    }
}

#[test]
fn ctime_answers_the_local_time_as_plain_text() {
    let response = Request::get("/").run(&plugin_lib("ctime"), "application");
    response.assert_ok("200 OK", "text/plain");
    response.assert_quiet();
    assert_ctime_shape(response.body_text());
}

#[test]
fn hello_names_the_request_method() {
    let response = Request::post("/", "text/plain", b"ignored").run(&plugin_lib("hello"), "application");
    response.assert_ok("200 OK", "text/plain");
    response.assert_quiet();
    assert_eq!(response.body_text(), "The request method was POST");
    assert_eq!(response.header("Content-Length"), Some("27"));

    let response = Request::get("/").run(&plugin_lib("hello"), "application");
    response.assert_ok("200 OK", "text/plain");
    assert_eq!(response.body_text(), "The request method was GET");
    assert_eq!(response.header("Content-Length"), Some("26"));
}

fn templates_dir() -> String {
    repo_root().join("html").join("templates").display().to_string()
}

#[test]
fn mini_frame_renders_the_index_template() {
    let templates = templates_dir();
    let response = Request::get("/index.py")
        .env("MINI_FRAME_TEMPLATES", &templates)
        .run(&plugin_lib("mini_frame"), "application");
    response.assert_ok("200 OK", "text/html;charset=utf-8");
    response.assert_quiet();
    let template = std::fs::read_to_string(repo_root().join("html/templates/index.html")).expect("read template");
    assert!(template.contains("{%content%}"), "the template has a placeholder");
    assert_eq!(
        response.body_text(),
        template.replace("{%content%}", "本月详细信息分析如下...")
    );
}

#[test]
fn mini_frame_finds_its_templates_below_the_working_folder() {
    let root = repo_root();
    let response = Request::get("/center.py")
        .in_dir(&root)
        .run(&plugin_lib("mini_frame"), "application");
    response.assert_ok("200 OK", "text/html;charset=utf-8");
    assert!(
        response.body_text().contains("数据来源于数据库..."),
        "{}",
        response.describe()
    );
    assert!(!response.body_text().contains("{%content%}"), "{}", response.describe());
}

#[test]
fn mini_frame_without_templates_answers_500_and_logs_why() {
    let response = Request::get("/index.py")
        .env("MINI_FRAME_TEMPLATES", "/nonexistent/templates")
        .run(&plugin_lib("mini_frame"), "application");
    assert_eq!(response.output.status.code(), Some(0), "{}", response.describe());
    assert!(response.status.starts_with("500 "), "{}", response.describe());
    let stderr = response.stderr();
    assert_eq!(stderr.lines().count(), 1, "{}", response.describe());
    assert!(stderr.contains("/nonexistent/templates/index.html"), "{stderr}");
    assert!(stderr.contains("MINI_FRAME_TEMPLATES"), "{stderr}");
}

#[test]
fn mini_frame_login_and_fallback_routes() {
    let templates = templates_dir();
    let login = Request::get("/login.py")
        .env("MINI_FRAME_TEMPLATES", &templates)
        .run(&plugin_lib("mini_frame"), "application");
    login.assert_ok("200 OK", "text/html;charset=utf-8");
    login.assert_quiet();
    let prefix = "i----login--welcome hahahh to our website.......time:";
    let time = login
        .body_text()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}", login.describe()));
    assert_ctime_shape(time);

    let other = Request::get("/other")
        .env("MINI_FRAME_TEMPLATES", &templates)
        .run(&plugin_lib("mini_frame"), "application");
    other.assert_ok("200 OK", "text/html;charset=utf-8");
    assert_eq!(other.body_text(), "Hello World! 我爱你中国....");
}

#[test]
fn static_app_serves_the_html_folder() {
    let root = repo_root();
    let library = plugin_lib("static_app");
    let file = |name: &str| std::fs::read(root.join("html").join(name)).expect("read html file");

    let index = Request::get("/").in_dir(&root).run(&library, "run");
    index.assert_ok("200 OK", "text/html");
    index.assert_quiet();
    assert_eq!(index.body, file("index.html"));
    assert_eq!(
        index.header("Content-Length"),
        Some(file("index.html").len().to_string().as_str())
    );

    let css = Request::get("/style.css").in_dir(&root).run(&library, "run");
    css.assert_ok("200 OK", "text/css");
    assert_eq!(css.body, file("style.css"));

    for missing in ["/no-such-page.html", "/../Cargo.toml", "/templates/../../Cargo.toml"] {
        let response = Request::get(missing).in_dir(&root).run(&library, "run");
        response.assert_ok("404 Not Found", "text/html");
        assert_eq!(response.body, file("404.html"), "{missing}");
    }
}

#[test]
fn echo_reports_the_environ_and_exactly_content_length_bytes_of_body() {
    let mut request = Request::post("/some/path", "application/x-www-form-urlencoded", b"name=value&x=1")
        .env("HTTP_X_TEST", "yes, really")
        .env("HTTPS", "on");
    request.query = "a=1&b=2";
    // stdin holds more than CONTENT_LENGTH: the rest is not the body.
    request.stdin = b"name=value&x=1 TRAILING BYTES THAT ARE NOT THE BODY";
    let response = request.run(&plugin_lib("echo"), "application");
    response.assert_ok("200 OK", "application/json");
    response.assert_quiet();

    let report: serde_json::Value = serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("echo's body is not JSON ({e})\n{}", response.describe()));
    let environ = &report["environ"];
    let var = |name: &str| {
        environ[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {environ:#}"))
    };
    assert_eq!(var("REQUEST_METHOD"), "POST");
    assert_eq!(var("PATH_INFO"), "/some/path");
    assert_eq!(var("QUERY_STRING"), "a=1&b=2");
    assert_eq!(var("CONTENT_TYPE"), "application/x-www-form-urlencoded");
    assert_eq!(var("CONTENT_LENGTH"), "14");
    assert_eq!(var("HTTP_X_TEST"), "yes, really");
    assert_eq!(var("HTTP_USER_AGENT"), "host-tests/1");
    assert_eq!(var("SERVER_NAME"), "example.test");
    assert_eq!(var("SERVER_PORT"), "8080");
    assert_eq!(var("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(var("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(var("wsgi.url_scheme"), "https");
    assert_eq!(report["body"], "name=value&x=1");
    assert_eq!(report["body_length"], 14);
}

#[test]
fn echo_without_content_length_reads_no_body() {
    let mut request = Request::get("/");
    request.stdin = b"stdin that no CONTENT_LENGTH announced";
    let response = request.run(&plugin_lib("echo"), "application");
    response.assert_ok("200 OK", "application/json");
    let report: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(report["body"], "");
    assert_eq!(report["environ"]["REQUEST_METHOD"], "GET");
}

#[test]
fn echo_panic_is_a_500_and_one_log_line() {
    let response = Request::get("/panic").run(&plugin_lib("echo"), "application");
    assert_eq!(response.output.status.code(), Some(0), "{}", response.describe());
    assert_eq!(response.status, "500 Internal Server Error", "{}", response.describe());
    let stderr = response.stderr();
    assert_eq!(stderr.lines().count(), 1, "{}", response.describe());
    assert!(stderr.contains("echo was asked to panic"), "{stderr}");
    assert!(stderr.contains("ERROR"), "{stderr}");
}

#[test]
fn echo_error_is_a_500_and_one_log_line() {
    let response = Request::get("/error").run(&plugin_lib("echo"), "application");
    assert_eq!(response.output.status.code(), Some(0), "{}", response.describe());
    assert_eq!(response.status, "500 Internal Server Error", "{}", response.describe());
    let stderr = response.stderr();
    assert_eq!(stderr.lines().count(), 1, "{}", response.describe());
    assert!(stderr.contains("echo was asked to fail"), "{stderr}");
}

#[test]
fn echo_stream_sends_every_chunk() {
    let response = Request::get("/stream").run(&plugin_lib("echo"), "application");
    response.assert_ok("200 OK", "text/plain");
    response.assert_quiet();
    assert_eq!(response.body_text(), "chunk0\nchunk1\nchunk2\nchunk3\nchunk4\n");
}

#[test]
fn echo_write_callable_comes_before_the_returned_body() {
    let response = Request::get("/write").run(&plugin_lib("echo"), "application");
    response.assert_ok("200 OK", "text/plain");
    response.assert_quiet();
    assert_eq!(response.body_text(), "written-by-write\nreturned\n");
}

#[test]
fn echo_status_sleep_and_big() {
    let echo = plugin_lib("echo");
    let teapot = Request::get("/status/418").run(&echo, "application");
    teapot.assert_ok("418 I'm a teapot", "text/plain");
    assert_eq!(teapot.body_text(), "status 418");

    let created = Request::get("/status/201").run(&echo, "application");
    created.assert_ok("201 Created", "text/plain");

    let slept = Request::get("/sleep/20").run(&echo, "application");
    slept.assert_ok("200 OK", "text/plain");
    assert_eq!(slept.body_text(), "slept 20");

    let big = Request::get("/big/100000").run(&echo, "application");
    big.assert_ok("200 OK", "text/plain");
    assert_eq!(big.header("Content-Length"), Some("100000"));
    assert!(big.body.len() == 100_000 && big.body.iter().all(|&b| b == b'x'));

    let bad = Request::get("/status/abc").run(&echo, "application");
    bad.assert_ok("400 Bad Request", "text/plain");
}

#[test]
fn a_refused_app_still_answers_500_as_a_cgi_script() {
    let dir = std::env::temp_dir().join(format!("host-cgi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    let junk = dir.join("libjunk.so");
    std::fs::write(&junk, "not a library\n").expect("write");
    let response = Request::get("/").run(&junk, "application");
    assert_eq!(response.output.status.code(), Some(2), "{}", response.describe());
    assert_eq!(response.status, "500 Internal Server Error", "{}", response.describe());
    let stderr = response.stderr();
    assert_eq!(stderr.lines().count(), 1, "{}", response.describe());
    assert!(stderr.contains("not a shared library"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
