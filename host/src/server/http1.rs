//! HTTP/1.1 connections: hyper's HTTP/1 server behind the wire scanner
//! ([`super::strict::wire`]), which refuses what hyper would let through.
//! When draining, responses carry `Connection: close` (the handler adds
//! it), and an idle kept-alive connection is closed after a grace
//! ([`super::drain`]).

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::connection::{ConnInfo, Stream};
use super::drain;
use super::handler::{self, Connection};
use super::strict::wire::{Guarded, Scanner, Verdicts};
use super::ServerState;
use crate::config::Limits;

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

/// Serves HTTP/1.1 on one accepted connection until it closes or the
/// drain ends it.
pub async fn serve(stream: Box<dyn Stream>, info: ConnInfo, state: Arc<ServerState>, builder: &http1::Builder) {
    let verdicts = Arc::new(Verdicts::default());
    let scanner = Scanner::new(
        state.limits.max_body_size.0,
        state.limits.max_header_size.0 as usize,
        state.limits.max_headers,
        verdicts.clone(),
    );
    let stream = Guarded::new(stream, scanner);
    let connection = Arc::new(Connection::new(info, verdicts));
    let conn_state = connection.clone();
    let header_timeout = state.limits.header_timeout.0;
    let drain = state.drain.clone();
    let service = service_fn(move |request| handler::handle(state.clone(), connection.clone(), request));
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
