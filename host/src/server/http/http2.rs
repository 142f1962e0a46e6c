//! HTTP/2 connections (RFC 9113): over TLS when the client picks `h2` by
//! ALPN, and in cleartext when it starts with the HTTP/2 preface (h2c with
//! prior knowledge; [`sniff`]). hyper's HTTP/2 server (the `h2` crate) does
//! the framing; every stream is one request, served by the same handler,
//! routing, limits and access log as HTTP/1.1.
//!
//! Limits, on by default:
//!
//! | limit | value | against |
//! |---|---|---|
//! | concurrent streams per connection | `--http2-max-streams` (100) | one connection taking every app thread |
//! | header list (HPACK-decoded) | `--max-header-size` | header bombs; CONTINUATION floods (CVE-2024-27316): `h2` also caps CONTINUATION frames per block |
//! | header count | `--max-headers` (431 beyond) | as HTTP/1.1 |
//! | streams the client resets before they are served | [`MAX_PENDING_RESETS`], then GOAWAY | rapid reset (CVE-2023-44487) |
//! | streams the server resets for the client's errors | [`MAX_ERROR_RESETS`], then GOAWAY | "MadeYouReset" (CVE-2025-8671) |
//! | flow-control windows | [`STREAM_WINDOW`] per stream, [`CONNECTION_WINDOW`] per connection | request bodies buffered unread |
//! | response bytes queued per stream | [`SEND_BUFFER`] | clients that do not read |
//! | idle connection | `--header-timeout` without a new stream, then GOAWAY | idle and never-speaking connections |
//!
//! Draining sends GOAWAY (the `h2` crate's two-step one, so a request
//! already on its way is either served or known to the client as not
//! served) and lets the open streams finish. A connection that has not
//! sent its first request yet gets the header timeout for it, as over
//! HTTP/1.1.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;

use super::body::Body;
use super::connection::Connection;
use super::strict::wire::Verdicts;
use crate::config::Limits;
use crate::server::net::drain::Drain;
use crate::server::net::listener::ConnInfo;
use crate::server::streams::coalesced::Coalesced;
use crate::server::streams::rewound::Rewound;
use crate::server::streams::Stream;

/// What a client sends first to speak HTTP/2 (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams the client may reset before the server takes them, then the
/// connection is closed with GOAWAY (`ENHANCE_YOUR_CALM`).
pub const MAX_PENDING_RESETS: usize = 20;

/// Streams the server may reset for the client's protocol errors, then
/// the connection is closed with GOAWAY.
pub const MAX_ERROR_RESETS: usize = 256;

/// The flow-control window of each stream: request body bytes a client
/// may send ahead of the app reading them.
pub const STREAM_WINDOW: u32 = 256 * 1024;

/// The flow-control window of a whole connection.
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Response bytes queued per stream for a client that reads slowly.
pub const SEND_BUFFER: usize = 64 * 1024;

/// The HTTP/2 server type.
pub type Builder = http2::Builder<TokioExecutor>;

/// hyper's HTTP/2 server, set to `limits`.
pub fn builder(limits: &Limits) -> Builder {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_size.0).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_ERROR_RESETS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buf_size(SEND_BUFFER)
        // RFC 8441: WebSockets over HTTP/2 (extended CONNECT).
        .enable_connect_protocol();
    builder
}

/// Reads the start of a cleartext connection (within `timeout`) to tell
/// HTTP/2 with prior knowledge (`true`) from HTTP/1; the bytes read are
/// read again by the server. `None` if the client closed or said nothing
/// in time.
pub async fn sniff(mut stream: Box<dyn Stream>, timeout: Duration) -> Option<(Box<dyn Stream>, bool)> {
    let mut first = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if stream.read_buf(&mut first).await.ok()? == 0 {
                return None;
            }
            let seen = first.len().min(PREFACE.len());
            if first.len() >= PREFACE.len() || first[..seen] != PREFACE[..seen] {
                return Some(first.starts_with(PREFACE));
            }
        }
    };
    let is_http2 = tokio::time::timeout(timeout, read).await.ok()??;
    Some((Box::new(Rewound::new(first.freeze(), stream)), is_http2))
}

/// Why a connection is being closed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// No new stream for the idle time.
    Idle,
    /// The server is draining.
    Drain,
}

/// Serves HTTP/2 on one accepted connection, each request with `handle`,
/// until it closes, stays idle, or the drain ends it.
pub async fn serve<H, F>(
    stream: Box<dyn Stream>,
    info: ConnInfo,
    builder: &Builder,
    limits: &Limits,
    drain: &Drain,
    handle: H,
) where
    H: Fn(Arc<Connection>, Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    // The wire scanner reads HTTP/1 framing; HTTP/2's is the h2 crate's.
    let connection = Arc::new(Connection::new(info, Arc::new(Verdicts::default())));
    let watched = connection.clone();
    let idle = limits.header_timeout.0;
    let service = service_fn(move |request| handle(connection.clone(), request));
    let serving = builder.serve_connection(TokioIo::new(Coalesced::new(stream)), service);
    tokio::pin!(serving);
    let mut seen = 0;
    let closing = loop {
        tokio::select! {
            result = serving.as_mut() => return ended(result),
            () = drain.began() => break Closing::Drain,
            () = tokio::time::sleep(idle) => {
                let begun = watched.requests();
                if begun == seen && watched.in_flight() == 0 {
                    break Closing::Idle;
                }
                seen = begun;
            }
        }
    };
    if closing == Closing::Drain && !watched.has_requests() {
        // Accepted moments before the drain: its first request is served.
        tokio::select! {
            result = serving.as_mut() => return ended(result),
            () = watched.first_request() => {}
            () = tokio::time::sleep(idle) => {}
        }
    }
    serving.as_mut().graceful_shutdown();
    // Open streams finish (the drain's own timeout bounds them); a
    // connection with none, perhaps still without its preface, gets the
    // idle time to take its GOAWAY.
    if closing == Closing::Idle || !watched.has_requests() {
        if let Ok(result) = tokio::time::timeout(idle, serving).await {
            ended(result);
        }
    } else {
        ended(serving.await);
    }
}

fn ended(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        log::debug!("HTTP/2 connection ended with an error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What `sniff` makes of a client that sends `parts` one by one.
    async fn sniffed(parts: &[&[u8]]) -> Option<(bool, Vec<u8>)> {
        let (client, server) = tokio::io::duplex(4096);
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            let mut client = client;
            for part in parts {
                client.write_all(&part).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let sniffed = sniff(Box::new(server), Duration::from_secs(1)).await;
        writer.await.unwrap();
        let (mut stream, is_http2) = sniffed?;
        let mut again = vec![0; 64];
        let n = stream.read(&mut again).await.unwrap();
        again.truncate(n);
        Some((is_http2, again))
    }

    #[tokio::test]
    async fn the_preface_tells_http2_from_http1_and_every_byte_is_read_again() {
        let (is_http2, again) = sniffed(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\n"]).await.unwrap();
        assert!(is_http2);
        assert!(again.starts_with(b"PRI * HTTP/2.0\r\n"), "{again:?}");
        let (is_http2, again) = sniffed(&[b"GET / HTTP/1.1\r\n"]).await.unwrap();
        assert!(!is_http2);
        assert_eq!(again, b"GET / HTTP/1.1\r\n");
        // "PRI" alone is not decided; "PRX" is HTTP/1 (and hyper's 400).
        assert!(!sniffed(&[b"PRX"]).await.unwrap().0);
        assert!(sniffed(&[b"PRI"]).await.is_none());
        assert!(sniffed(&[]).await.is_none());
    }
}
