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

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use plugin_api::host::{WsEvent, WsOutgoing};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::async_call::Running;
use super::async_exchange::TaskEnds;
use crate::exchange::Refusal;
use crate::server::body::Body;
use crate::server::metrics::{Direction, ServerMetrics};
use crate::server::responses;

/// The WebSocket protocol version this server speaks.
const VERSION: &str = "13";

/// How long the server waits for the client's reply to its close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How much before the end of `--graceful-timeout` open sockets get their
/// 1001, so it goes out before the process ends.
const CLOSE_BEFORE_STOP: Duration = Duration::from_secs(1);

/// What a request asks of WebSockets.
pub enum Handshake {
    /// Nothing: an ordinary request.
    None,
    /// A valid handshake.
    Valid(Offer),
    /// A handshake the server refuses (400, 426 with the version it speaks,
    /// 501), without calling the app.
    Invalid(Response<Body>),
}

/// A valid handshake's particulars.
pub struct Offer {
    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`).
    pub protocols: Vec<String>,
    /// HTTP/1.1's `Sec-WebSocket-Key` (HTTP/2 has none).
    key: Option<String>,
}

/// Whether `request` asks for a WebSocket, and if so whether its handshake
/// is valid.
pub fn handshake<B>(request: &Request<B>) -> Handshake {
    let headers = request.headers();
    let wants = if request.version() == Version::HTTP_2 {
        match request.extensions().get::<hyper::ext::Protocol>() {
            None => return Handshake::None,
            Some(protocol) if !protocol.as_str().eq_ignore_ascii_case("websocket") => {
                return Handshake::Invalid(refused(
                    501,
                    "the only protocol extended CONNECT serves here is websocket",
                ));
            }
            Some(_) => true,
        }
    } else {
        has_token(headers, header::UPGRADE, "websocket")
    };
    if !wants {
        return Handshake::None;
    }
    let key = if request.version() == Version::HTTP_2 {
        None
    } else {
        if request.version() != Version::HTTP_11 {
            return Handshake::Invalid(refused(400, "a WebSocket handshake needs HTTP/1.1 (or HTTP/2)"));
        }
        if request.method() != Method::GET {
            return Handshake::Invalid(refused(400, "a WebSocket handshake is a GET request"));
        }
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Handshake::Invalid(refused(400, "a WebSocket handshake needs Connection: Upgrade"));
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY).and_then(|k| k.to_str().ok());
        let decodes_to_16 = key.is_some_and(|key| {
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .is_ok_and(|bytes| bytes.len() == 16)
        });
        if !decodes_to_16 {
            return Handshake::Invalid(refused(
                400,
                "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 §4.1)",
            ));
        }
        key.map(|key| key.trim().to_owned())
    };
    let version = headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes);
    if version != Some(VERSION.as_bytes()) {
        let mut response = responses::error(
            StatusCode::UPGRADE_REQUIRED,
            "this server speaks WebSocket version 13 (Sec-WebSocket-Version)",
        );
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static(VERSION));
        return Handshake::Invalid(response);
    }
    let protocols = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Handshake::Valid(Offer { protocols, key })
}

/// A refusal's response (the connection closed after it).
fn refused(status: u16, detail: &str) -> Response<Body> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    responses::refusal(&Refusal {
        status,
        reason,
        detail: detail.to_owned(),
    })
}

/// Whether header `name` lists `token` (case-insensitively).
fn has_token(headers: &hyper::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Answers the handshake of the WebSocket the app accepted and starts the
/// task that runs it, with the app's future.
pub fn open(mut running: Running, offer: Offer, on_upgrade: OnUpgrade) -> Response<Body> {
    let Some((accepted, ends)) = running.exchange().take_accepted() else {
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
            running.call().verdicts.switch_protocols();
        }
        // HTTP/2 (RFC 8441): a 200 opens the stream's tunnel.
        None => *response.status_mut() = StatusCode::OK,
    }
    if let Some(protocol) = accepted.protocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
        response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    running.answered(response.status().as_u16());
    tokio::spawn(session(running, on_upgrade, ends));
    response
}

/// The server's limits for one socket.
struct Limits {
    ping_every: Option<Duration>,
    ping_timeout: Duration,
    max_message: usize,
    idle: Option<Duration>,
    graceful: Duration,
}

/// Runs one socket: the protocol with the client, the queues to and from
/// the app, the app's future, pings, limits, and the close handshake.
async fn session(mut running: Running, on_upgrade: OnUpgrade, ends: TaskEnds) {
    let state = running.call().state.clone();
    let limits = {
        let l = &state.limits;
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Limits {
            ping_every: nonzero(l.ws_ping_interval.0),
            ping_timeout: l.ws_ping_timeout.0,
            max_message: usize::try_from(l.ws_max_message.0).unwrap_or(usize::MAX),
            idle: nonzero(l.ws_idle_timeout.0),
            graceful: l.graceful_timeout.0,
        }
    };
    let _open = state.drain.track();
    let _counted = state.metrics.websocket();
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            log::debug!("a WebSocket handshake did not complete: {e}");
            return;
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message));
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let TaskEnds {
        inbox,
        mut outbox,
        close: mut app_close,
    } = ends;
    let (mut sink, mut stream) = ws.split();
    let mut socket = Socket::default();
    let mut ping = limits
        .ping_every
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let pong_deadline = tokio::time::sleep_until(far);
    let idle_deadline = tokio::time::sleep_until(limits.idle.map_or(far, |idle| Instant::now() + idle));
    let close_deadline = tokio::time::sleep_until(far);
    tokio::pin!(pong_deadline, idle_deadline, close_deadline);
    let drain = state.drain.clone();
    let stopping = async {
        drain.began().await;
        tokio::time::sleep(limits.graceful.saturating_sub(CLOSE_BEFORE_STOP)).await;
    };
    tokio::pin!(stopping);
    let mut app_close_open = true;
    let mut outbox_open = true;
    loop {
        let close: Option<(u16, &'static str)> = tokio::select! {
            outcome = std::future::poll_fn(|cx| running.poll_app(cx)), if running.outcome().is_none() => {
                let failed = outcome.is_err();
                running.set_outcome(outcome);
                match (socket.closing, socket.peer_closed, failed) {
                    (_, true, _) => break,
                    (Some(_), _, _) => None,
                    (None, _, true) => Some((1011, "the app failed")),
                    (None, _, false) => Some((1000, "")),
                }
            }
            read = next_read(&inbox, &mut stream), if !socket.peer_closed && socket.error.is_none() => {
                match read {
                    None => break,
                    Some((permit, Ok(message))) => {
                        if limits.idle.is_some() && matches!(message, Message::Text(_) | Message::Binary(_)) {
                            idle_deadline.as_mut().reset(Instant::now() + limits.idle.unwrap_or_default());
                        }
                        match socket.deliver(message, permit, &state.metrics) {
                            Received::Nothing => None,
                            Received::Pong => {
                                pong_deadline.as_mut().reset(far);
                                None
                            }
                            Received::Close => {
                                // tungstenite queued the reply: send it.
                                let _ = sink.flush().await;
                                if socket.closing.is_some() || running.outcome().is_some() {
                                    break;
                                }
                                None
                            }
                        }
                    }
                    Some((_, Err(error))) => {
                        let (code, reason) = close_for(&error);
                        socket.error = Some(code);
                        if code == 0 {
                            break; // the connection itself failed
                        }
                        log::debug!("closing a WebSocket with {code}: {error}");
                        Some((code, reason))
                    }
                }
            }
            message = outbox.recv(), if outbox_open => match message {
                Some(message) => {
                    let message = match message {
                        WsOutgoing::Text(text) => Message::Text(text.into()),
                        WsOutgoing::Binary(bytes) => Message::Binary(Bytes::from_owner(bytes)),
                    };
                    let len = message.len() as u64;
                    if sink.send(message).await.is_err() {
                        break;
                    }
                    running.count_sent(len);
                    state.metrics.ws_message(Direction::Out);
                    if limits.idle.is_some() {
                        idle_deadline.as_mut().reset(Instant::now() + limits.idle.unwrap_or_default());
                    }
                    None
                }
                None => {
                    outbox_open = false;
                    None
                }
            },
            requested = &mut app_close, if app_close_open => {
                app_close_open = false;
                let requested: Option<(u16, String)> = requested.ok().filter(|_| socket.closing.is_none());
                if let Some((code, reason)) = requested {
                    socket.closing = Some(code);
                    let _ = sink.send(Message::Close(Some(close_frame(code, &reason)))).await;
                    if socket.peer_closed {
                        break;
                    }
                    close_deadline.as_mut().reset(Instant::now() + CLOSE_WAIT);
                }
                None
            }
            _ = tick(&mut ping) => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
                if pong_deadline.deadline() == far {
                    pong_deadline.as_mut().reset(Instant::now() + limits.ping_timeout);
                }
                None
            }
            () = &mut pong_deadline => Some((1011, "no answer to a ping")),
            () = &mut idle_deadline => {
                idle_deadline.as_mut().reset(far);
                Some((1001, "idle"))
            }
            () = &mut stopping, if socket.closing.is_none() => Some((1001, "the server is restarting")),
            () = &mut close_deadline => break,
        };
        if let Some((code, reason)) = close {
            if socket.closing.is_none() {
                socket.closing = Some(code);
                let _ = sink.send(Message::Close(Some(close_frame(code, reason)))).await;
                close_deadline.as_mut().reset(Instant::now() + CLOSE_WAIT);
            }
            if socket.peer_closed || socket.error.is_some() {
                break;
            }
        }
    }
    let _ = sink.close().await;
    running.exchange().end("the WebSocket is closed");
    running.count_received(socket.received);
    log::debug!(
        "WebSocket closed: {} bytes of messages received, close {:?}",
        socket.received,
        socket.closing
    );
}

/// What the session knows of the socket.
#[derive(Default)]
struct Socket {
    /// The close code the server sent, once it did.
    closing: Option<u16>,
    /// The client sent its close.
    peer_closed: bool,
    /// The close code of a read error (0: the connection failed).
    error: Option<u16>,
    /// Bytes of the messages received.
    received: u64,
}

/// What a message from the client meant.
enum Received {
    Nothing,
    Pong,
    Close,
}

impl Socket {
    /// Hands a message from the client to the app (`permit`: room in its
    /// queue, if it still listens).
    fn deliver(
        &mut self,
        message: Message,
        permit: Option<mpsc::Permit<'_, WsEvent>>,
        metrics: &ServerMetrics,
    ) -> Received {
        let event = match message {
            Message::Text(text) => {
                self.received += text.len() as u64;
                WsEvent::Text(text.as_str().to_owned())
            }
            Message::Binary(bytes) => {
                self.received += bytes.len() as u64;
                WsEvent::Binary(bytes.to_vec())
            }
            Message::Ping(_) | Message::Frame(_) => return Received::Nothing,
            Message::Pong(_) => return Received::Pong,
            Message::Close(frame) => {
                self.peer_closed = true;
                let (code, reason) = match frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_owned()),
                    None => (1005, String::new()),
                };
                if let Some(permit) = permit {
                    permit.send(WsEvent::Close(code, reason));
                }
                return Received::Close;
            }
        };
        metrics.ws_message(Direction::In);
        if let Some(permit) = permit {
            permit.send(event);
        }
        Received::Nothing
    }
}

/// The next message from the client, once the app's queue has room (so a
/// slow app slows the reading down); without a queue (the app stopped
/// listening), messages are read and dropped.
async fn next_read<'a, S>(
    inbox: &'a mpsc::Sender<WsEvent>,
    stream: &mut S,
) -> Option<(Option<mpsc::Permit<'a, WsEvent>>, Result<Message, WsError>)>
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
    let permit = inbox.reserve().await.ok();
    let message = stream.next().await?;
    Some((permit, message))
}

/// The next ping, if pings are on.
async fn tick(ping: &mut Option<tokio::time::Interval>) {
    match ping {
        Some(ping) => {
            ping.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The close code for a read error (0: the connection itself failed).
fn close_for(error: &WsError) -> (u16, &'static str) {
    match error {
        WsError::Protocol(_) => (1002, "protocol error"),
        WsError::Utf8(_) => (1007, "invalid UTF-8 in a text message"),
        WsError::Capacity(_) => (1009, "message too big (server option --ws-max-message)"),
        _ => (0, ""),
    }
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, method: Method, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/ws").version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    /// What `handshake` makes of `request`: None, 101 (valid) or the refusal's status.
    fn status(request: Request<()>) -> Option<u16> {
        match handshake(&request) {
            Handshake::None => None,
            Handshake::Valid(_) => Some(101),
            Handshake::Invalid(response) => Some(response.status().as_u16()),
        }
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];

    #[test]
    fn handshakes_are_checked_as_rfc_6455_asks() {
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &GOOD)), Some(101));
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &[])), None, "not asked");
        assert_eq!(status(request(Version::HTTP_11, Method::POST, &GOOD)), Some(400));
        assert_eq!(status(request(Version::HTTP_10, Method::GET, &GOOD)), Some(400));
        let mut short_key = GOOD;
        short_key[2].1 = "c2hvcnQ=";
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &short_key)), Some(400));
        let mut old = GOOD;
        old[3].1 = "8";
        assert_eq!(status(request(Version::HTTP_11, Method::GET, &old)), Some(426));
        let no_connection = [GOOD[0], GOOD[2], GOOD[3]];
        assert_eq!(
            status(request(Version::HTTP_11, Method::GET, &no_connection)),
            Some(400)
        );
    }
}
