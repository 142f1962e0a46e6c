//! One request to an async app as the host keeps it while the app runs:
//! the operations the app calls back ([`HostAsyncGateway`]) on state it
//! shares with the task that delivers the response. Every operation may
//! come from any thread (the plugin's runtime included) and never blocks.
//!
//! - The request body is read from the connection as the app asks for it,
//!   under `--body-timeout` and `--body-min-rate`; waits for the client are
//!   off the app's clock.
//! - The response: `start` sets the head (checked as `start_response`'s);
//!   each body chunk waits in a one-chunk slot until the connection takes
//!   it, which is the app's backpressure.
//! - A WebSocket: offered when the handshake was valid, accepted by the
//!   app, then the queues between the app and the task that runs the
//!   protocol (`websocket::Queues`).

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use plugin_api::host::{Header, HostAsyncGateway, PluginBytes, RequestVars, WsEvent, WsOutgoing};
use tokio::runtime::Handle;

use super::clock::AppClock;
use super::input::{self, BodyLimits, Pace, Wait};
use super::owned_environ::OwnedEnviron;
use super::websocket::Queues;
use crate::header_list::HeaderList;
use crate::plugin::exchange::Refusal;
use crate::plugin::response_head::{HeadState, ResponseHead};
use crate::server::http::strict::wire::Verdicts;

/// One async request's shared state.
pub struct AsyncExchange {
    environ: OwnedEnviron,
    extra: Option<Arc<HeaderList>>,
    /// The host's runtime, entered for timers on the plugin's threads.
    runtime: Handle,
    clock: Arc<AppClock>,
    state: Mutex<State>,
    /// The task delivering the response, woken when a chunk is handed over.
    delivery: AtomicWaker,
}

struct State {
    body: IncomingBody,
    head: HeadState,
    /// A body chunk handed over, not yet taken by the connection.
    chunk: Option<Bytes>,
    /// The app, waiting for the slot to empty.
    sender: Option<Waker>,
    /// Why sends fail from now on (the client left, the request timed out).
    over: Option<&'static str>,
    ws: Ws,
}

/// The request body, read as the app asks.
struct IncomingBody {
    incoming: Option<Incoming>,
    pace: Pace,
    wait: Option<Wait>,
    received: u64,
    max: u64,
    verdicts: Arc<Verdicts>,
    /// The rule the body broke: answered instead of the app.
    refusal: Option<Refusal>,
}

/// Where the request's WebSocket is.
enum Ws {
    /// Not asked for.
    None,
    /// Asked for with a valid handshake, offering these subprotocols.
    Offered(Vec<String>),
    /// Accepted by the app: the ends the protocol task takes.
    Accepted(Box<Accepted>),
    /// Accepted and handed to the protocol task: the queues between them.
    Open(Arc<Queues>),
}

/// An accepted WebSocket, until the protocol task takes it.
pub struct Accepted {
    /// The subprotocol chosen.
    pub protocol: Option<String>,
    /// The app's extra response headers, checked.
    pub head: ResponseHead,
}

impl AsyncExchange {
    /// The state of a request with this environ and body, the app's time
    /// measured on `clock`; `websocket`: the subprotocols a valid WebSocket
    /// handshake offers (`None`: no WebSocket asked for).
    pub fn new(
        environ: OwnedEnviron,
        extra: Option<Arc<HeaderList>>,
        body: Incoming,
        limits: BodyLimits,
        verdicts: Arc<Verdicts>,
        clock: Arc<AppClock>,
        websocket: Option<Vec<String>>,
    ) -> AsyncExchange {
        use http_body::Body as _;
        let ended = body.is_end_stream();
        AsyncExchange {
            environ,
            extra,
            runtime: Handle::current(),
            clock,
            state: Mutex::new(State {
                body: IncomingBody {
                    incoming: (!ended).then_some(body),
                    pace: Pace::new(limits),
                    wait: None,
                    received: 0,
                    max: limits.max,
                    verdicts,
                    refusal: None,
                },
                head: HeadState::default(),
                chunk: None,
                sender: None,
                over: None,
                ws: websocket.map_or(Ws::None, Ws::Offered),
            }),
            delivery: AtomicWaker::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The head the app set, to send now (once).
    pub fn take_head(&self) -> Option<Result<ResponseHead, String>> {
        let mut state = self.state();
        if state.head.is_sent() || !state.head.is_started() {
            return None;
        }
        state.head.take_for_sending().transpose()
    }

    /// Whether the app set a head that has not gone out yet.
    pub fn head_waiting(&self) -> bool {
        let state = self.state();
        state.head.is_started() && !state.head.is_sent()
    }

    /// The chunk the app handed over, if any; the app may send the next.
    pub fn take_chunk(&self) -> Option<Bytes> {
        let mut state = self.state();
        let chunk = state.chunk.take();
        if chunk.is_some() {
            if let Some(sender) = state.sender.take() {
                sender.wake();
            }
        }
        chunk
    }

    /// Whether the app handed over a chunk not yet taken.
    pub fn has_chunk(&self) -> bool {
        self.state().chunk.is_some()
    }

    /// The task delivering the response wants to be woken by the next chunk.
    pub fn register_delivery(&self, waker: &Waker) {
        self.delivery.register(waker);
    }

    /// The rule the request body broke, if it broke one.
    pub fn refusal(&self) -> Option<Refusal> {
        self.state().body.refusal.clone()
    }

    /// From now on the app's sends fail with `why`; a waiting send wakes.
    pub fn end(&self, why: &'static str) {
        let mut state = self.state();
        state.over.get_or_insert(why);
        if let Some(sender) = state.sender.take() {
            sender.wake();
        }
    }

    /// The WebSocket the app accepted, and the queues between the app and
    /// the protocol task (once).
    pub fn take_accepted(&self) -> Option<(Accepted, Arc<Queues>)> {
        let mut state = self.state();
        let Ws::Accepted(_) = state.ws else {
            return None;
        };
        let queues = Arc::new(Queues::default());
        let Ws::Accepted(accepted) = std::mem::replace(&mut state.ws, Ws::Open(queues.clone())) else {
            unreachable!("checked above");
        };
        // An app waiting on the socket before it opened tries again.
        if let Some(waiting) = state.sender.take() {
            waiting.wake();
        }
        Some((*accepted, queues))
    }

    /// Whether the app accepted a WebSocket that is not handed on yet.
    pub fn websocket_accepted(&self) -> bool {
        matches!(self.state().ws, Ws::Accepted(_))
    }

    /// The time the app has spent (waits for the client excluded).
    pub fn clock(&self) -> &Arc<AppClock> {
        &self.clock
    }
}

impl HostAsyncGateway for AsyncExchange {
    fn vars(&self) -> RequestVars<'_> {
        self.environ.vars()
    }

    fn headers(&self) -> &[Header<'_>] {
        self.environ.headers()
    }

    fn extra_vars(&self) -> &[Header<'_>] {
        self.extra.as_ref().map_or(&[][..], |extra| extra.pairs())
    }

    fn poll_body(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, String>> {
        // Timers of the host's runtime, also on the plugin's threads.
        let _runtime = self.runtime.enter();
        let mut state = self.state();
        let body = &mut state.body;
        if let Some(refusal) = &body.refusal {
            return Poll::Ready(Err(refusal.detail.clone()));
        }
        loop {
            let Some(incoming) = body.incoming.as_mut() else {
                return Poll::Ready(Ok(None));
            };
            let polled = body.pace.poll_frame(incoming, body.received, &mut body.wait, cx);
            let frame = match polled {
                Poll::Pending => {
                    self.clock.begin_wait();
                    return Poll::Pending;
                }
                Poll::Ready(frame) => {
                    self.clock.end_wait();
                    frame
                }
            };
            let refusal = match frame {
                Ok(None) => {
                    body.incoming = None;
                    return Poll::Ready(Ok(None));
                }
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        body.received += data.len() as u64;
                        if body.received <= body.max {
                            return Poll::Ready(Ok(Some(data.to_vec())));
                        }
                        input::too_large(body.max)
                    }
                    Err(_) => continue, // trailers: not part of the body
                },
                Ok(Some(Err(e))) => input::malformed(&e, &body.verdicts),
                Err(refusal) => refusal,
            };
            body.incoming = None;
            let detail = refusal.detail.clone();
            body.refusal = Some(refusal);
            return Poll::Ready(Err(detail));
        }
    }

    fn client_gone(&self) -> bool {
        self.state().over.is_some()
    }

    fn start(&self, status: &str, headers: &[Header<'_>]) -> Result<(), String> {
        let mut state = self.state();
        if matches!(state.ws, Ws::Accepted(_) | Ws::Open(_)) {
            return Err("the WebSocket was accepted: there is no response to start".to_owned());
        }
        state
            .head
            .start_response(status, headers.iter().map(|h| (h.name(), h.value())), None)
    }

    fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.state();
        if let Some(why) = state.over {
            return Poll::Ready(Err(why.to_owned()));
        }
        if !state.head.is_started() {
            return Poll::Ready(Err("send before start: start the response first".to_owned()));
        }
        if state.chunk.is_none() {
            self.clock.end_wait();
            return Poll::Ready(Ok(()));
        }
        // The connection has not taken the last chunk: waiting for the client.
        self.clock.begin_wait();
        state.sender = Some(cx.waker().clone());
        Poll::Pending
    }

    fn send(&self, chunk: PluginBytes) -> Result<(), String> {
        let mut state = self.state();
        if let Some(why) = state.over {
            return Err(why.to_owned());
        }
        if state.chunk.is_some() {
            return Err("send before the last chunk was taken (await the send)".to_owned());
        }
        state.chunk = Some(Bytes::from_owner(chunk));
        drop(state);
        self.delivery.wake();
        Ok(())
    }

    fn websocket_offered(&self) -> bool {
        matches!(self.state().ws, Ws::Offered(_))
    }

    fn accept_websocket(&self, protocol: Option<&str>, headers: &[Header<'_>]) -> Result<(), String> {
        let mut state = self.state();
        let offered = match &state.ws {
            Ws::Offered(offered) => offered,
            Ws::None => return Err("the request does not ask for a WebSocket".to_owned()),
            Ws::Accepted(_) | Ws::Open(_) => return Err("the WebSocket was accepted already".to_owned()),
        };
        if let Some(chosen) = protocol {
            if !offered.iter().any(|p| p == chosen) {
                return Err(format!(
                    "the client did not offer the subprotocol {chosen:?} (it offered {offered:?})"
                ));
            }
        }
        if state.head.is_started() {
            return Err("a response was started: the WebSocket cannot be accepted".to_owned());
        }
        let head = crate::plugin::response_head::with_checked_headers(
            101,
            "Switching Protocols",
            headers.iter().map(|h| (h.name(), h.value())),
        )?;
        state.ws = Ws::Accepted(Box::new(Accepted {
            protocol: protocol.map(str::to_owned),
            head,
        }));
        Ok(())
    }

    fn poll_ws_recv(&self, cx: &mut Context<'_>) -> Poll<WsEvent> {
        let mut state = self.state();
        match &state.ws {
            Ws::Open(queues) => queues.poll_recv(cx),
            // Accepted, not yet handed to the protocol task: soon.
            Ws::Accepted(_) => {
                state.sender = Some(cx.waker().clone());
                Poll::Pending
            }
            Ws::None | Ws::Offered(_) => Poll::Ready(WsEvent::Gone),
        }
    }

    fn poll_ws_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.state();
        match &state.ws {
            Ws::Open(queues) => queues.poll_send_ready(cx).map_err(|e| e.to_string()),
            Ws::Accepted(_) => {
                state.sender = Some(cx.waker().clone());
                Poll::Pending
            }
            Ws::None | Ws::Offered(_) => Poll::Ready(Err("no WebSocket was accepted".to_owned())),
        }
    }

    fn ws_send(&self, message: WsOutgoing) -> Result<(), String> {
        match &self.state().ws {
            Ws::Open(queues) => queues.send(message).map_err(|e| e.to_string()),
            _ => Err("no WebSocket is open".to_owned()),
        }
    }

    fn ws_close(&self, code: u16, reason: &str) -> Result<(), String> {
        if !close_code_allowed(code) {
            return Err(format!(
                "{code} is not a close code an endpoint may send (RFC 6455 §7.4: 1000-1003, 1007-1014, 3000-4999)"
            ));
        }
        if reason.len() > 123 {
            return Err("a close reason is at most 123 bytes".to_owned());
        }
        match &self.state().ws {
            Ws::Open(queues) => queues.close(code, reason.to_owned()).map_err(|e| e.to_string()),
            _ => Err("no WebSocket is open".to_owned()),
        }
    }
}

/// RFC 6455 §7.4: the codes an endpoint may put in a Close frame.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_rfc_6455() {
        for code in [1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999] {
            assert!(close_code_allowed(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert!(!close_code_allowed(code), "{code}");
        }
    }
}
