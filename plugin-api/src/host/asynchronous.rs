//! The host's side of an async app (since 1.2): the request operations the
//! host implements ([`HostAsyncGateway`]), offered to the plugin through
//! the checked interface, and the app's future as a std future
//! ([`RunningApp`]). Wakers cross with every poll, without an allocation.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSlice, RSome, RStr, RString, RVec};

use super::{Header, PluginBytes, RequestVars};
use crate::abi::{AsyncGateway, BoxedAppFuture, FfiWaker, RawEnviron, RawPoll, RawWsEvent, RawWsMessage};
use crate::waker;

/// What the host does for one async request. Every method may be called
/// from any thread (the app's own runtime included), and must not panic (a
/// panic is caught and reported to the app as an error). The environ and
/// the header slices must stay where they are as long as the gateway lives.
pub trait HostAsyncGateway: Send + Sync + 'static {
    /// PEP 3333's variables.
    fn vars(&self) -> RequestVars<'_>;
    /// The request headers.
    fn headers(&self) -> &[Header<'_>];
    /// Variables beyond PEP 3333's and the headers (`SSL_CLIENT_*`).
    fn extra_vars(&self) -> &[Header<'_>];
    /// The next piece of the request body (`None` at its end).
    fn poll_body(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, String>>;
    /// Whether the client is known to be gone.
    fn client_gone(&self) -> bool;
    /// Sets the response's status line and headers.
    fn start(&self, status: &str, headers: &[Header<'_>]) -> Result<(), String>;
    /// Ready when the response can take another chunk.
    fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>>;
    /// One body chunk, in the plugin's memory (freed by the plugin).
    fn send(&self, chunk: PluginBytes) -> Result<(), String>;
    /// Whether the request asks for a WebSocket.
    fn websocket_offered(&self) -> bool;
    /// Accepts the WebSocket.
    fn accept_websocket(&self, protocol: Option<&str>, headers: &[Header<'_>]) -> Result<(), String>;
    /// The next WebSocket event.
    fn poll_ws_recv(&self, cx: &mut Context<'_>) -> Poll<WsEvent>;
    /// Ready when the socket can take another message.
    fn poll_ws_send_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), String>>;
    /// Sends one message.
    fn ws_send(&self, message: WsOutgoing) -> Result<(), String>;
    /// Begins the close handshake.
    fn ws_close(&self, code: u16, reason: &str) -> Result<(), String>;
}

/// A WebSocket event for the app.
#[derive(Debug)]
pub enum WsEvent {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// The client closes, with this code and reason.
    Close(u16, String),
    /// The socket is gone.
    Gone,
}

/// A WebSocket message from the app.
pub enum WsOutgoing {
    /// Text.
    Text(String),
    /// Bytes, in the plugin's memory.
    Binary(PluginBytes),
}

/// An async app's work on one request, as a std future: polls the plugin's
/// future with the caller's waker. `Err` when the app failed or panicked.
/// Dropping it cancels the request (the plugin drops its future).
pub struct RunningApp {
    pub(super) future: Option<BoxedAppFuture>,
}

// The plugin's future sits behind a pointer of its own: moving an RunningApp
// never moves it.
impl Unpin for RunningApp {}

impl Future for RunningApp {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let polled = waker::lend(cx.waker(), |ffi| future.poll(ffi));
        match polled {
            RawPoll::Pending => Poll::Pending,
            RawPoll::Ready(result) => {
                this.future = None;
                Poll::Ready(result.into_result().map_err(RString::into_string))
            }
        }
    }
}

/// A [`HostAsyncGateway`] offered to the plugin: the environ built once
/// (it points into the gateway, which the `Arc` keeps in place), every
/// call guarded against panics.
pub(super) struct AsyncAdapter<G> {
    gateway: Arc<G>,
    environ: RawEnviron<'static>,
}

impl<G> Clone for AsyncAdapter<G> {
    fn clone(&self) -> Self {
        AsyncAdapter {
            gateway: self.gateway.clone(),
            environ: self.environ,
        }
    }
}

impl<G: HostAsyncGateway> AsyncAdapter<G> {
    pub(super) fn new(gateway: Arc<G>) -> AsyncAdapter<G> {
        let environ = super::raw_environ(&gateway.vars(), gateway.headers());
        // SAFETY: the environ borrows the gateway's memory, which stays where
        // it is (inside the Arc) as long as the gateway lives (the
        // HostAsyncGateway contract); this adapter holds the Arc, and hands
        // the environ out only borrowed from itself.
        let environ = unsafe { std::mem::transmute::<RawEnviron<'_>, RawEnviron<'static>>(environ) };
        AsyncAdapter { gateway, environ }
    }
}

/// Runs `f`, turning a panic into an error for the app.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(message)) => RErr(message.into()),
        Err(_) => RErr(format!("the host failed in {what}").into()),
    }
}

/// Polls `f` with the plugin's waker, turning a panic into an error.
fn polled<T>(
    ffi: &FfiWaker,
    what: &str,
    f: impl FnOnce(&mut Context<'_>) -> Poll<Result<T, String>>,
) -> RawPoll<RResult<T, RString>> {
    let outcome = waker::with_waker(ffi, |waker| {
        panic::catch_unwind(AssertUnwindSafe(|| f(&mut Context::from_waker(waker))))
    });
    match outcome {
        Ok(Poll::Pending) => RawPoll::Pending,
        Ok(Poll::Ready(Ok(value))) => RawPoll::Ready(ROk(value)),
        Ok(Poll::Ready(Err(message))) => RawPoll::Ready(RErr(message.into())),
        Err(_) => RawPoll::Ready(RErr(format!("the host failed in {what}").into())),
    }
}

impl<G: HostAsyncGateway> AsyncGateway for AsyncAdapter<G> {
    fn environ(&self) -> &RawEnviron<'_> {
        &self.environ
    }

    fn extra_vars(&self) -> RSlice<'_, Header<'_>> {
        self.gateway.extra_vars().into()
    }

    fn poll_body(&self, ffi: &FfiWaker) -> RawPoll<RResult<ROption<RVec<u8>>, RString>> {
        match polled(ffi, "reading the body", |cx| self.gateway.poll_body(cx)) {
            RawPoll::Ready(ROk(chunk)) => RawPoll::Ready(ROk(match chunk {
                Some(bytes) => RSome(RVec::from(bytes)),
                None => RNone,
            })),
            RawPoll::Ready(RErr(e)) => RawPoll::Ready(RErr(e)),
            RawPoll::Pending => RawPoll::Pending,
        }
    }

    fn client_gone(&self) -> bool {
        panic::catch_unwind(AssertUnwindSafe(|| self.gateway.client_gone())).unwrap_or(true)
    }

    fn start(&self, status: RStr<'_>, headers: RSlice<'_, Header<'_>>) -> RResult<(), RString> {
        guarded("start", || self.gateway.start(status.as_str(), headers.as_slice()))
    }

    fn poll_send_ready(&self, ffi: &FfiWaker) -> RawPoll<RResult<(), RString>> {
        polled(ffi, "sending", |cx| self.gateway.poll_send_ready(cx))
    }

    fn send(&self, chunk: RVec<u8>) -> RResult<(), RString> {
        guarded("send", || self.gateway.send(PluginBytes::rust(chunk)))
    }

    fn websocket_offered(&self) -> bool {
        panic::catch_unwind(AssertUnwindSafe(|| self.gateway.websocket_offered())).unwrap_or(false)
    }

    fn accept_websocket(&self, protocol: ROption<RStr<'_>>, headers: RSlice<'_, Header<'_>>) -> RResult<(), RString> {
        guarded("accept_websocket", || {
            self.gateway
                .accept_websocket(protocol.into_option().map(|p| p.as_str()), headers.as_slice())
        })
    }

    fn poll_ws_recv(&self, ffi: &FfiWaker) -> RawPoll<RawWsEvent> {
        let outcome = waker::with_waker(ffi, |waker| {
            panic::catch_unwind(AssertUnwindSafe(|| {
                self.gateway.poll_ws_recv(&mut Context::from_waker(waker))
            }))
        });
        match outcome {
            Ok(Poll::Pending) => RawPoll::Pending,
            Ok(Poll::Ready(event)) => RawPoll::Ready(match event {
                WsEvent::Text(text) => RawWsEvent::Message(RawWsMessage::Text(text.into())),
                WsEvent::Binary(bytes) => RawWsEvent::Message(RawWsMessage::Binary(bytes.into())),
                WsEvent::Close(code, reason) => RawWsEvent::Close {
                    code,
                    reason: reason.into(),
                },
                WsEvent::Gone => RawWsEvent::Gone,
            }),
            Err(_) => RawPoll::Ready(RawWsEvent::Gone),
        }
    }

    fn poll_ws_send_ready(&self, ffi: &FfiWaker) -> RawPoll<RResult<(), RString>> {
        polled(ffi, "sending a WebSocket message", |cx| {
            self.gateway.poll_ws_send_ready(cx)
        })
    }

    fn ws_send(&self, message: RawWsMessage) -> RResult<(), RString> {
        guarded("sending a WebSocket message", || {
            self.gateway.ws_send(match message {
                RawWsMessage::Text(text) => WsOutgoing::Text(text.into_string()),
                RawWsMessage::Binary(bytes) => WsOutgoing::Binary(PluginBytes::rust(bytes)),
            })
        })
    }

    fn ws_close(&self, code: u16, reason: RStr<'_>) -> RResult<(), RString> {
        guarded("closing a WebSocket", || self.gateway.ws_close(code, reason.as_str()))
    }
}
