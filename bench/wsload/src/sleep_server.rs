//! `wsload sleep-server`: the limit of the `sleep` scenario. Plain hyper
//! (HTTP/1.1, keep-alive) on tokio, where a request for `/sleep/<ms>` awaits
//! a tokio timer and holds no thread while it waits.
//!
//! | path | answer |
//! |---|---|
//! | `/sleep/<ms>` | `slept <ms>` after `<ms>` milliseconds (at most 60,000) |
//! | anything else | 404 |

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// The longest sleep a request may ask for, in milliseconds (as the echo
/// plugin's).
const MAX_SLEEP_MS: u64 = 60_000;

/// The longest a client may take to send a request head, and the longest a
/// kept-alive connection may stay idle.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `wsload sleep-server` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The port to listen on, on 127.0.0.1 (0: a free one).
    #[arg(long)]
    port: u16,
    /// Runtime threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Serves until the process is stopped.
pub async fn run(options: Options) -> Result<(), String> {
    let listener = crate::listen::listen(options.port).await?;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    loop {
        // An accept error (such as too many open files) is passing: the
        // next accept may succeed.
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
        tokio::spawn(async move {
            // A connection that ends in an error concerns only its client.
            let _ = connection.await;
        });
    }
}

/// Answers one request.
async fn answer(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(ms) = sleep_ms(request.uri().path()) else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let mut response = Response::new(Full::new(Bytes::from(format!("slept {ms}"))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

/// The milliseconds a `/sleep/<ms>` path asks for, capped at
/// [`MAX_SLEEP_MS`]; `None` for any other path.
fn sleep_ms(path: &str) -> Option<u64> {
    let ms: u64 = path.strip_prefix("/sleep/")?.parse().ok()?;
    Some(ms.min(MAX_SLEEP_MS))
}

/// Unit tests of path parsing.
#[cfg(test)]
mod tests {
    use super::sleep_ms;

    /// Only `/sleep/<number>` asks for a sleep, capped at the maximum.
    #[test]
    fn sleep_paths() {
        assert_eq!(sleep_ms("/sleep/100"), Some(100));
        assert_eq!(sleep_ms("/sleep/99999999"), Some(60_000));
        assert_eq!(sleep_ms("/sleep/"), None);
        assert_eq!(sleep_ms("/sleep/x"), None);
        assert_eq!(sleep_ms("/other"), None);
    }
}
