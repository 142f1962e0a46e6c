//! HTTP/1.1 connections: hyper's HTTP/1 server behind the wire scanner
//! ([`super::strict::wire`]), which refuses what hyper would let through.
//! When draining, responses carry `Connection: close` (the handler adds
//! it), and an idle kept-alive connection is closed after a grace
//! ([`crate::server::net::drain`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::body::Body;
use super::connection::Connection;
use super::strict::wire::{Guarded, Scanner, Verdicts};
use crate::config::Limits;
use crate::server::net::drain::{self, Drain};
use crate::server::net::listener::ConnInfo;
use crate::server::streams::Stream;

/// hyper's own limit on request headers.
const HYPER_MAX_HEADERS: usize = 100;

/// hyper's HTTP/1 server, set to `limits`.
pub fn builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.0)
        .max_header_size(limits.max_header_size.0 as usize)
        .max_buf_size((limits.max_header_size.0 as usize).max(8192) + 8192)
        .keep_alive(true);
    // hyper zeroes a table of this many headers per request once it is
    // set; at its own default (100) it uses an uninitialised one.
    if limits.max_headers != HYPER_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    builder
}

/// Serves HTTP/1.1 on one accepted connection, each request with
/// `handle`, until it closes or the drain ends it.
pub async fn serve<H, F>(
    stream: Box<dyn Stream>,
    info: ConnInfo,
    builder: &http1::Builder,
    limits: &Limits,
    drain: &Drain,
    handle: H,
) where
    H: Fn(Arc<Connection>, Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let verdicts = Arc::new(Verdicts::default());
    let scanner = Scanner::new(
        limits.max_body_size.0,
        limits.max_header_size.0 as usize,
        limits.max_headers,
        verdicts.clone(),
    );
    let stream = Guarded::new(stream, scanner);
    let connection = Arc::new(Connection::new(info, verdicts));
    let conn_state = connection.clone();
    let header_timeout = limits.header_timeout.0;
    let service = service_fn(move |request| handle(connection.clone(), request));
    // Upgrades: a WebSocket an async app accepts takes the connection over.
    let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = drain.began() => {
            // A request may be on its way: give it the grace to arrive
            // (it is answered with `Connection: close`). A connection with
            // no request yet was accepted moments ago (it may have spent
            // them in a TLS handshake): its client gets the time any
            // client has to send a head.
            let grace = if conn_state.has_requests() { drain::IDLE_GRACE } else { header_timeout };
            tokio::select! {
                result = connection.as_mut() => result,
                () = tokio::time::sleep(grace) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(e) = result {
        log::debug!("connection ended with an error: {e}");
    }
}
