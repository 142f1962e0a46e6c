//! `echo`: a test app that shows what the host hands an app, and that can
//! be asked to use every part of the interface (or to misbehave).
//!
//! It ports no single seed: it is seed 001's `run_with_cgi` turned inside
//! out, an app that reports the `environ` dict, the `wsgi.input` body and
//! exercises `start_response`, the write callable and streamed bodies, for the
//! host's integration tests.
//!
//! By `PATH_INFO`:
//!
//! | path | answer |
//! | --- | --- |
//! | `/stream` | `text/plain`, streamed as `chunk0\n` … `chunk4\n`, no `Content-Length` |
//! | `/write` | `written-by-write\n` through the write callable, then `returned\n` returned |
//! | `/status/<code>` | status `<code> <reason>` (`Unknown` for codes not in its table), body `status <code>` |
//! | `/sleep/<ms>` | sleeps `<ms>` milliseconds (at most 60 000), then `slept <ms>` (`?pid`: `slept <ms> in pid <pid>`) |
//! | `/big/<n>` | `n` bytes of `x` (at most 64 MiB), with `Content-Length` |
//! | `/mixed` | one route, quick or not on demand, by query string: none, `mixed whole\n`; `stream=<n>`, `chunk0\n` … `chunk<n-1>\n` streamed; `write=<n>`, the same chunks through the write callable, then `returned\n` returned; `sleep=<ms>`, as `/sleep/<ms>` |
//! | `/panic` | panics |
//! | `/error` | returns an error (the host answers 500) |
//! | anything else | `application/json`: `{"environ": {…}, "body": "…", "body_length": n}` |
//!
//! A malformed number in `/status/`, `/sleep/` or `/big/`, and any other
//! query string on `/mixed`, gets `400 Bad Request`.
//!
//! Exported as `application`: `host ./libecho.so:application`.

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use plugin_api::{export_app, AppError, Body, Environ, StartResponse};
use serde_json::{json, Map, Value};

/// The longest `/sleep/<ms>` sleeps, in milliseconds.
const MAX_SLEEP_MS: u64 = 60_000;

/// The largest `/big/<n>` body, in bytes.
const MAX_BIG: u64 = 64 * 1024 * 1024;

/// The most chunks `/mixed?stream=<n>` and `/mixed?write=<n>` send.
const MAX_CHUNKS: usize = 10_000;

/// The app: dispatches on `PATH_INFO` as the crate docs describe.
fn application(environ: &Environ, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let path = environ.path_info();
    if let Some(code) = path.strip_prefix("/status/") {
        return status(code, start_response);
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        return sleep(ms, environ.query_string() == "pid", start_response);
    }
    if let Some(size) = path.strip_prefix("/big/") {
        return big(size, start_response);
    }
    match path {
        "/stream" => stream(5, start_response),
        "/write" => write(["written-by-write\n".to_owned()], start_response),
        "/mixed" => mixed(environ.query_string(), start_response),
        "/panic" => panic!("echo was asked to panic"),
        "/error" => Err("echo was asked to fail".into()),
        _ => echo(environ, start_response),
    }
}

/// The JSON report of the environ and the request body.
fn echo(environ: &Environ, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let mut body = Vec::new();
    environ.input().read_to_end(&mut body)?;
    let vars: Map<String, Value> = environ
        .vars()
        .into_iter()
        .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
        .collect();
    let report = json!({
        "environ": vars,
        "body": String::from_utf8_lossy(&body),
        "body_length": body.len(),
    });
    let mut text = serde_json::to_vec_pretty(&report)?;
    text.push(b'\n');
    start_response.start("200 OK", &[("Content-Type", "application/json")])?;
    Ok(text.into())
}

/// `/stream`: `count` chunks, `chunk0\n` …, streamed.
fn stream(count: usize, start_response: &mut StartResponse) -> Result<Body, AppError> {
    start_response.start("200 OK", &[("Content-Type", "text/plain")])?;
    Ok(Body::stream((0..count).map(chunk)))
}

/// The `i`th chunk of `/stream` and `/mixed`: `chunk<i>\n`.
fn chunk(i: usize) -> String {
    format!("chunk{i}\n")
}

/// `/write`: each of `chunks` through the write callable, then `returned\n`
/// returned.
fn write(chunks: impl IntoIterator<Item = String>, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let mut write = start_response.start("200 OK", &[("Content-Type", "text/plain")])?;
    for chunk in chunks {
        write.write_all(chunk.as_bytes())?;
    }
    Ok("returned\n".into())
}

/// `/mixed`: one `PATH_INFO` that answers quickly and whole, or streams,
/// writes or sleeps, as its query string asks.
fn mixed(query: &str, start_response: &mut StartResponse) -> Result<Body, AppError> {
    if query.is_empty() {
        start_response.start("200 OK", &[("Content-Type", "text/plain")])?;
        return Ok("mixed whole\n".into());
    }
    if let Some(ms) = query.strip_prefix("sleep=") {
        return sleep(ms, false, start_response);
    }
    let chunks = |count: &str| count.parse::<usize>().ok().map(|count| count.min(MAX_CHUNKS));
    if let Some(count) = query.strip_prefix("stream=").and_then(chunks) {
        return stream(count, start_response);
    }
    if let Some(count) = query.strip_prefix("write=").and_then(chunks) {
        return write((0..count).map(chunk), start_response);
    }
    bad_request(
        "/mixed takes no query string, stream=<n>, write=<n> or sleep=<ms>",
        start_response,
    )
}

/// `/status/<code>`: that status, with a reason phrase from a small table.
fn status(code: &str, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let Some(code) = code.parse::<u16>().ok().filter(|code| (100..=999).contains(code)) else {
        return bad_request("/status/ takes a status code from 100 to 999", start_response);
    };
    let status = format!("{code} {}", reason(code));
    start_response.start(&status, &[("Content-Type", "text/plain")])?;
    Ok(format!("status {code}").into())
}

/// `/sleep/<ms>`: sleeps, then says how long (`?pid`: and in which
/// process).
fn sleep(ms: &str, with_pid: bool, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let Ok(ms) = ms.parse::<u64>() else {
        return bad_request("/sleep/ takes a number of milliseconds", start_response);
    };
    let ms = ms.min(MAX_SLEEP_MS);
    thread::sleep(Duration::from_millis(ms));
    start_response.start("200 OK", &[("Content-Type", "text/plain")])?;
    if with_pid {
        return Ok(format!("slept {ms} in pid {}", std::process::id()).into());
    }
    Ok(format!("slept {ms}").into())
}

/// `/big/<n>`: `n` bytes of `x`.
fn big(size: &str, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let Ok(size) = size.parse::<u64>() else {
        return bad_request("/big/ takes a number of bytes", start_response);
    };
    let size = size.min(MAX_BIG);
    let content_length = size.to_string();
    start_response.start(
        "200 OK",
        &[("Content-Type", "text/plain"), ("Content-Length", &content_length)],
    )?;
    // `size` is at most MAX_BIG, which fits any usize of 32 bits or more.
    let size = usize::try_from(size)?;
    Ok(vec![b'x'; size].into())
}

/// A `400 Bad Request` saying what was expected.
fn bad_request(message: &str, start_response: &mut StartResponse) -> Result<Body, AppError> {
    start_response.start("400 Bad Request", &[("Content-Type", "text/plain")])?;
    Ok(format!("{message}\n").into())
}

/// The reason phrase for `code`, or `Unknown`.
fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

export_app!(application);

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn reason_phrases() {
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(503), "Service Unavailable");
        assert_eq!(reason(299), "Unknown");
    }
}
