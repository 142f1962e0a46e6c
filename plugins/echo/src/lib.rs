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
//! Exported twice: `application`, a sync app (`host ./libecho.so:application`),
//! and `async_application`, the same answers from an async app (plugin-api
//! 1.2) whose `/sleep/<ms>` awaits a timer (no thread held) and which also
//! answers:
//!
//! | path | answer |
//! | --- | --- |
//! | `/ws` | accepts a WebSocket and echoes each message as it came (text as text, binary as binary); a client's close is answered with the same code |
//! | `/tokio` | awaits a tokio timer and a TCP connection of the plugin's own runtime to `?addr=<host:port>`, sends `GET /` there and answers with the upstream's status line |

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use plugin_api::{export_app, export_async_app, AppError, Body, Environ, Message, Request, StartResponse};
use serde_json::{json, Map, Value};

/// The longest `/sleep/<ms>` sleeps, in milliseconds.
const MAX_SLEEP_MS: u64 = 60_000;

/// The largest `/big/<n>` body, in bytes.
const MAX_BIG: u64 = 64 * 1024 * 1024;

/// The most chunks `/mixed?stream=<n>` and `/mixed?write=<n>` send.
const MAX_CHUNKS: usize = 10_000;

/// What a request asks for.
enum Plan {
    /// An answer known at once.
    Reply(Reply),
    /// Sleep this many milliseconds, then say so (and the pid).
    Sleep { ms: u64, with_pid: bool },
    /// Panic.
    Panic,
    /// Fail with an error.
    Fail,
    /// The JSON report of the environ and the body.
    Echo,
}

/// An answer: status line, headers, and how the body goes out.
struct Reply {
    status: String,
    headers: Vec<(&'static str, String)>,
    body: Delivery,
}

/// How a body goes out.
enum Delivery {
    /// One buffer.
    Whole(Vec<u8>),
    /// Chunk by chunk (a stream).
    Stream(Vec<String>),
    /// Through the write callable, then one more chunk returned.
    Written { written: Vec<String>, returned: String },
}

impl Reply {
    fn text(status: &str, body: impl Into<String>) -> Reply {
        Reply {
            status: status.to_owned(),
            headers: vec![("Content-Type", "text/plain".to_owned())],
            body: Delivery::Whole(body.into().into_bytes()),
        }
    }
}

/// What `path` and `query` ask for, as the crate docs describe.
fn plan(path: &str, query: &str) -> Plan {
    if let Some(code) = path.strip_prefix("/status/") {
        return status(code);
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        return match ms.parse::<u64>() {
            Ok(ms) => Plan::Sleep {
                ms: ms.min(MAX_SLEEP_MS),
                with_pid: query == "pid",
            },
            Err(_) => bad_request("/sleep/ takes a number of milliseconds"),
        };
    }
    if let Some(size) = path.strip_prefix("/big/") {
        return big(size);
    }
    match path {
        "/stream" => stream(5),
        "/write" => Plan::Reply(written(vec!["written-by-write\n".to_owned()])),
        "/mixed" => mixed(query),
        "/panic" => Plan::Panic,
        "/error" => Plan::Fail,
        _ => Plan::Echo,
    }
}

/// The sync app: dispatches on `PATH_INFO` as the crate docs describe.
fn application(environ: &Environ, start_response: &mut StartResponse) -> Result<Body, AppError> {
    let reply = match plan(environ.path_info(), environ.query_string()) {
        Plan::Reply(reply) => reply,
        Plan::Sleep { ms, with_pid } => {
            thread::sleep(Duration::from_millis(ms));
            slept(ms, with_pid)
        }
        Plan::Panic => panic!("echo was asked to panic"),
        Plan::Fail => return Err("echo was asked to fail".into()),
        Plan::Echo => {
            let mut body = Vec::new();
            environ.input().read_to_end(&mut body)?;
            echo(environ, &body)?
        }
    };
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut write = start_response.start(&reply.status, &headers)?;
    Ok(match reply.body {
        Delivery::Whole(bytes) => bytes.into(),
        Delivery::Stream(chunks) => Body::stream(chunks),
        Delivery::Written { written, returned } => {
            for chunk in written {
                write.write_all(chunk.as_bytes())?;
            }
            returned.into()
        }
    })
}

/// The async app: the same answers, awaiting its sleeps, and `/ws`.
async fn async_application(mut request: Request) -> Result<(), AppError> {
    if request.path_info() == "/ws" {
        return websocket_echo(request).await;
    }
    if request.path_info() == "/tokio" {
        return upstream(request).await;
    }
    let reply = match plan(request.path_info(), request.query_string()) {
        Plan::Reply(reply) => reply,
        Plan::Sleep { ms, with_pid } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            slept(ms, with_pid)
        }
        Plan::Panic => panic!("echo was asked to panic"),
        Plan::Fail => return Err("echo was asked to fail".into()),
        Plan::Echo => {
            let body = request.body().await?;
            echo(&request.environ(), &body)?
        }
    };
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let mut sender = request.start(&reply.status, &headers)?;
    match reply.body {
        Delivery::Whole(bytes) => sender.send(bytes).await?,
        Delivery::Stream(chunks) => {
            for chunk in chunks {
                sender.send(chunk).await?;
            }
        }
        Delivery::Written { written, returned } => {
            for chunk in written.into_iter().chain([returned]) {
                sender.send(chunk).await?;
            }
        }
    }
    Ok(())
}

/// `/ws`: every message back as it came; a close is answered in kind.
async fn websocket_echo(request: Request) -> Result<(), AppError> {
    if !request.is_websocket() {
        let mut sender = request.start("400 Bad Request", &[("Content-Type", "text/plain")])?;
        sender.send("/ws takes a WebSocket\n").await?;
        return Ok(());
    }
    let mut socket = request.accept_websocket(None, &[])?;
    while let Some(message) = socket.recv().await {
        let closing = matches!(message, Message::Close { .. });
        // A close goes back with its own code (the server sends the reply).
        let _ = socket.send(message).await;
        if closing {
            break;
        }
    }
    Ok(())
}

/// `/tokio?addr=HOST:PORT`: a timer and a socket of the plugin's own
/// runtime: `GET /` upstream, answered with the upstream's status line.
async fn upstream(request: Request) -> Result<(), AppError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = request
        .query_string()
        .strip_prefix("addr=")
        .ok_or("/tokio takes ?addr=HOST:PORT")?
        .to_owned();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut upstream = tokio::net::TcpStream::connect(&addr).await?;
    upstream
        .write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await?;
    let status_line = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut sender = request.start("200 OK", &[("Content-Type", "text/plain")])?;
    sender.send(format!("upstream said {status_line}\n")).await?;
    Ok(())
}

/// The JSON report of the environ and the request body.
fn echo(environ: &Environ, body: &[u8]) -> Result<Reply, AppError> {
    let vars: Map<String, Value> = environ
        .vars()
        .into_iter()
        .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
        .collect();
    let report = json!({
        "environ": vars,
        "body": String::from_utf8_lossy(body),
        "body_length": body.len(),
    });
    let mut text = serde_json::to_vec_pretty(&report)?;
    text.push(b'\n');
    Ok(Reply {
        status: "200 OK".to_owned(),
        headers: vec![("Content-Type", "application/json".to_owned())],
        body: Delivery::Whole(text),
    })
}

/// `/stream`: `count` chunks, `chunk0\n` …, streamed.
fn stream(count: usize) -> Plan {
    Plan::Reply(Reply {
        body: Delivery::Stream((0..count).map(chunk).collect()),
        ..Reply::text("200 OK", "")
    })
}

/// The `i`th chunk of `/stream` and `/mixed`: `chunk<i>\n`.
fn chunk(i: usize) -> String {
    format!("chunk{i}\n")
}

/// `/write`: each of `chunks` through the write callable, then `returned\n`
/// returned.
fn written(chunks: Vec<String>) -> Reply {
    Reply {
        body: Delivery::Written {
            written: chunks,
            returned: "returned\n".to_owned(),
        },
        ..Reply::text("200 OK", "")
    }
}

/// `/mixed`: one `PATH_INFO` that answers quickly and whole, or streams,
/// writes or sleeps, as its query string asks.
fn mixed(query: &str) -> Plan {
    if query.is_empty() {
        return Plan::Reply(Reply::text("200 OK", "mixed whole\n"));
    }
    if let Some(ms) = query.strip_prefix("sleep=") {
        return plan(&format!("/sleep/{ms}"), "");
    }
    let chunks = |count: &str| count.parse::<usize>().ok().map(|count| count.min(MAX_CHUNKS));
    if let Some(count) = query.strip_prefix("stream=").and_then(chunks) {
        return stream(count);
    }
    if let Some(count) = query.strip_prefix("write=").and_then(chunks) {
        return Plan::Reply(written((0..count).map(chunk).collect()));
    }
    bad_request("/mixed takes no query string, stream=<n>, write=<n> or sleep=<ms>")
}

/// `/status/<code>`: that status, with a reason phrase from a small table.
fn status(code: &str) -> Plan {
    let Some(code) = code.parse::<u16>().ok().filter(|code| (100..=999).contains(code)) else {
        return bad_request("/status/ takes a status code from 100 to 999");
    };
    Plan::Reply(Reply::text(
        &format!("{code} {}", reason(code)),
        format!("status {code}"),
    ))
}

/// `/sleep/<ms>`, once slept: says how long (`?pid`: and in which process).
fn slept(ms: u64, with_pid: bool) -> Reply {
    if with_pid {
        return Reply::text("200 OK", format!("slept {ms} in pid {}", std::process::id()));
    }
    Reply::text("200 OK", format!("slept {ms}"))
}

/// `/big/<n>`: `n` bytes of `x`.
fn big(size: &str) -> Plan {
    let Ok(size) = size.parse::<u64>() else {
        return bad_request("/big/ takes a number of bytes");
    };
    let size = size.min(MAX_BIG);
    Plan::Reply(Reply {
        status: "200 OK".to_owned(),
        headers: vec![
            ("Content-Type", "text/plain".to_owned()),
            ("Content-Length", size.to_string()),
        ],
        // `size` is at most MAX_BIG, which fits any usize of 32 bits or more.
        body: Delivery::Whole(vec![b'x'; size as usize]),
    })
}

/// A `400 Bad Request` saying what was expected.
fn bad_request(message: &str) -> Plan {
    Plan::Reply(Reply::text("400 Bad Request", format!("{message}\n")))
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
export_async_app!(async_application);

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
