//! One accepted connection, from the accept to its HTTP version: the
//! PROXY header of a trusted balancer, the TLS handshake, and HTTP/1.1 or
//! HTTP/2 (by ALPN, or by the cleartext preface).

use std::sync::Arc;

use crate::server::http::{http1, http2};
use crate::server::net::drain::Drain;
use crate::server::net::listener::{ConnInfo, Listener};
use crate::server::net::{client_cert, proxy_protocol, tls};
use crate::server::request::handler::{self, Handler};
use crate::server::state::ServerState;
use crate::server::streams::{rewound, Stream};

/// Accepts connections on `listener` until the drain begins, serving each
/// on a task of its own.
pub async fn accept_loop(listener: Listener, handler: Arc<Handler>, drain: Arc<Drain>) {
    let state = &handler.state;
    let builders = Arc::new(Builders {
        http1: http1::builder(&state.limits),
        http2: http2::builder(&state.limits),
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.began() => return,
        };
        let (stream, info) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::error!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let tracked = drain.track();
        let (handler, builders) = (handler.clone(), builders.clone());
        tokio::spawn(async move {
            let _tracked = tracked;
            let state = &handler.state;
            let Some((stream, info)) = proxied(stream, info, state).await else {
                return;
            };
            let Some((stream, info, protocol)) = negotiated(stream, info, state).await else {
                return;
            };
            let (limits, drain) = (&state.limits, &state.drain);
            let handle = {
                let handler = handler.clone();
                move |conn, request| handler::handle(handler.clone(), conn, request)
            };
            match protocol {
                Protocol::Http1 => http1::serve(stream, info, &builders.http1, limits, drain, handle).await,
                Protocol::Http2 => http2::serve(stream, info, &builders.http2, limits, drain, handle).await,
            }
        });
    }
}

/// With `--proxy-protocol`, reads the PROXY header of a trusted peer's
/// connection and takes the client's address from it; `None` (the
/// connection is closed) for an untrusted peer or a bad header.
async fn proxied(
    stream: Box<dyn Stream>,
    mut info: ConnInfo,
    state: &ServerState,
) -> Option<(Box<dyn Stream>, ConnInfo)> {
    if !state.proxy_protocol {
        info.trusted_proxy = state.proxies.trusts_peer(&info.remote_addr);
        return Some((stream, info));
    }
    if !state.proxies.trusts_peer(&info.remote_addr) {
        log::warn!(
            "closed a connection from {}: PROXY headers are taken only from --forwarded-allow-ips",
            info.remote_addr
        );
        return None;
    }
    let mut stream = stream;
    match proxy_protocol::read_header(&mut stream, state.limits.header_timeout.0).await {
        Ok((source, rest)) => {
            if let proxy_protocol::Source::Client(client) = source {
                info.remote_addr = client.ip().to_string();
                info.remote_port = client.port().to_string();
            }
            // The client's own forwarding headers are believed only if it
            // is itself a trusted proxy.
            info.trusted_proxy = state.proxies.trusts_peer(&info.remote_addr);
            Some((Box::new(rewound::Rewound::new(rest, stream)), info))
        }
        Err(e) => {
            log::warn!(
                "closed a connection from {}: {e} (option --proxy-protocol)",
                info.remote_addr
            );
            None
        }
    }
}

/// The servers for each HTTP version, set up once per listener.
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: http2::Builder,
}

/// Which HTTP a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// With `--certfile`, the TLS handshake (within the header timeout), and
/// the HTTP version the client chose by ALPN; in cleartext, HTTP/2 if the
/// client starts with its preface. `None` (the connection is closed) if
/// the handshake fails or the client says nothing in time.
async fn negotiated(
    stream: Box<dyn Stream>,
    mut info: ConnInfo,
    state: &ServerState,
) -> Option<(Box<dyn Stream>, ConnInfo, Protocol)> {
    let header_timeout = state.limits.header_timeout.0;
    let Some(acceptor) = &state.tls else {
        if !state.http2 {
            return Some((stream, info, Protocol::Http1));
        }
        let (stream, is_http2) = http2::sniff(stream, header_timeout).await?;
        let protocol = if is_http2 { Protocol::Http2 } else { Protocol::Http1 };
        return Some((stream, info, protocol));
    };
    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            info.https = true;
            if let Some(leaf) = stream.get_ref().1.peer_certificates().and_then(<[_]>::first) {
                info.client_cert = Some(Arc::new(client_cert::environ_of(leaf)));
            }
            let protocol = match stream.get_ref().1.alpn_protocol() {
                Some(tls::ALPN_HTTP2) => Protocol::Http2,
                _ => Protocol::Http1,
            };
            Some((Box::new(stream), info, protocol))
        }
        Ok(Err(e)) => {
            log::debug!("TLS handshake with {} failed: {e}", info.remote_addr);
            None
        }
        Err(_) => {
            log::debug!("TLS handshake with {} timed out", info.remote_addr);
            None
        }
    }
}
