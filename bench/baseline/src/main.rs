//! The benchmark's native baseline: the physical limit of our stack. The
//! same hyper HTTP/1.1 server on the same tokio runtime as `host`, with the
//! benchmark's workloads compiled in (no plugin, no routing table, no
//! access log) and the static files held in memory.
//!
//! `baseline --bind 127.0.0.1:8080 --static-dir DIR`
//!
//! | path | answers |
//! |---|---|
//! | `/hello` | `Hello world!` |
//! | `/ctime` | the local time as Python's `time.ctime()` |
//! | `/sleep` | `Hello world!` after a 10 ms timer |
//! | `/<name>` | the file `DIR/<name>`, read once at start |

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Files by request path (`/name`).
type Files = HashMap<String, Bytes>;

fn main() {
    let (bind, static_dir) = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("baseline: {message}; usage: baseline --bind HOST:PORT --static-dir DIR");
            std::process::exit(2);
        }
    };
    let files = match read_files(&static_dir) {
        Ok(files) => Arc::new(files),
        Err(e) => {
            eprintln!("baseline: cannot read --static-dir {static_dir}: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(serve(bind, files));
}

fn parse_args() -> Result<(SocketAddr, String), String> {
    let mut args = std::env::args().skip(1);
    let (mut bind, mut static_dir) = (None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bind" => bind = Some(value.parse().map_err(|e| format!("--bind {value}: {e}"))?),
            "--static-dir" => static_dir = Some(value),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok((
        bind.ok_or("--bind is required")?,
        static_dir.ok_or("--static-dir is required")?,
    ))
}

fn read_files(dir: &str) -> std::io::Result<Files> {
    let mut files = Files::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = format!("/{}", entry.file_name().to_string_lossy());
            files.insert(name, Bytes::from(std::fs::read(entry.path())?));
        }
    }
    Ok(files)
}

async fn serve(bind: SocketAddr, files: Arc<Files>) {
    let listener = TcpListener::bind(bind).await.expect("bind --bind");
    println!("Serving on http://{}", listener.local_addr().expect("local address"));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let files = files.clone();
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |request| answer(files.clone(), request)),
        );
        tokio::spawn(connection);
    }
}

async fn answer(
    files: Arc<Files>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (content_type, body) = match request.uri().path() {
        "/hello" => ("text/plain", Bytes::from_static(b"Hello world!")),
        "/ctime" => ("text/plain", Bytes::from(ctime())),
        "/sleep" => {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ("text/plain", Bytes::from_static(b"Hello world!"))
        }
        path => match files.get(path) {
            Some(bytes) => ("application/octet-stream", bytes.clone()),
            None => {
                let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                *response.status_mut() = StatusCode::NOT_FOUND;
                return Ok(response);
            }
        },
    };
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(SERVER, HeaderValue::from_static("baseline"));
    Ok(response)
}

/// `time.ctime()`: the same format as the `ctime` plugin.
fn ctime() -> String {
    chrono::Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}
