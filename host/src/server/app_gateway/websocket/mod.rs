//! WebSockets for async apps: RFC 6455 over an HTTP/1.1 Upgrade, RFC 8441
//! over HTTP/2's extended CONNECT. The server owns the protocol: the
//! handshake ([`handshake`]: a malformed one is answered 400, a wrong
//! version 426, and never reaches the app), framing, masking, fragments,
//! UTF-8 checks and control frames (tokio-tungstenite), pings every
//! `--ws-ping-interval` with `--ws-ping-timeout` for the answer,
//! `--ws-max-message` (1009), `--ws-idle-timeout`, and the close handshake.
//! The app gets whole messages and sends whole messages.
//!
//! Close codes the server sends: 1002 for a protocol error by the client,
//! 1007 for invalid UTF-8 in a text message, 1009 for a message over the
//! limit (none of these reaches the app as a message), 1011 when the app
//! failed or a ping went unanswered, 1001 when the server stops or swaps
//! (after `--graceful-timeout`, less a second for the close to go out) or
//! the socket was idle, 1000 when the app finished without closing. A
//! socket is counted as an open connection, in `/metrics`, and in the
//! access log (one line when it ends: its handshake status, its time, and
//! the bytes of the messages sent).

mod handshake;
mod queues;
mod session;
mod wakes;

use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub use handshake::{handshake, Handshake, Offer};
pub use queues::Queues;

use super::async_call::Running;
use crate::server::http::body::Body;
use session::{Limits, Session};

/// Answers the handshake of the WebSocket the app accepted and starts the
/// task that runs it, with the app's future.
pub fn open(mut running: Running, offer: Offer, on_upgrade: OnUpgrade) -> Response<Body> {
    let Some((accepted, queues)) = running.exchange().take_accepted() else {
        unreachable!("open is called once the app accepted");
    };
    let mut response = super::async_call::handshake_response(accepted.head);
    match &offer.key {
        Some(key) => {
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            if let Ok(accept) = HeaderValue::from_str(&accept) {
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            // From here on the connection carries frames, not HTTP.
            running.call().ctx.conn.verdicts.switch_protocols();
        }
        // HTTP/2 (RFC 8441): a 200 opens the stream's tunnel.
        None => *response.status_mut() = StatusCode::OK,
    }
    if let Some(protocol) = accepted.protocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    running.answered(response.status().as_u16());
    tokio::spawn(run(running, on_upgrade, queues));
    response
}

/// Runs one socket once the client's side of the handshake is through.
async fn run(running: Running, on_upgrade: OnUpgrade, queues: Arc<Queues>) {
    let state = running.call().state.clone();
    let _open = state.drain.track();
    let _counted = state.metrics.websocket();
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            log::debug!("a WebSocket handshake did not complete: {e}");
            return;
        }
    };
    let max_message = usize::try_from(state.limits.ws_max_message.0).unwrap_or(usize::MAX);
    // Small buffers (a socket may sit idle for hours), frames written as
    // they are sent and flushed once per batch.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    Session::new(running, ws, queues, Limits::of(&state.limits)).run().await;
}
