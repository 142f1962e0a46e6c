//! Async apps (since plugin-api 1.2): an app that awaits its request body,
//! upstream calls or timers without holding a thread, and may accept a
//! WebSocket.
//!
//! ```
//! use plugin_api::{export_async_app, AppError, Request};
//!
//! async fn application(mut request: Request) -> Result<(), AppError> {
//!     let body = request.body().await?;
//!     let mut response = request.start("200 OK", &[("Content-Type", "text/plain")])?;
//!     response.send(format!("{} bytes to {}\n", body.len(), request.path_info())).await?;
//!     Ok(())
//! }
//!
//! export_async_app!(application);
//! ```
//!
//! The host polls the app's future on its own threads; the app's own I/O
//! (tokio timers, sockets, HTTP clients, database pools) runs on a small
//! runtime of the plugin's, started on first use (see [`crate`]'s
//! "Async apps" notes). Every send waits until the client has taken the
//! previous chunk. A client that goes away drops (cancels) the future.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use abi_stable::std_types::{RNone, RResult, RSome, RStr, RString, RVec};

use super::{AppError, Environ, ResponseError};
use crate::abi::{RawEnviron, RawHeader, RawPoll, RawWsEvent, RawWsMessage, SharedAsyncGateway};
use crate::waker;

/// An async web app: called once per request, possibly many at once.
///
/// Every `async fn(Request) -> Result<(), E>` (with `E` an error) is an
/// `AsyncApp`; a struct holding state built once implements it by hand.
pub trait AsyncApp: Send + Sync + 'static {
    /// Handles one request: read it, start the response, send the body.
    fn call(&self, request: Request) -> AppFuture;
}

/// The future an [`AsyncApp`] returns for one request.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<(), AppError>> + Send + 'static>>;

impl<F, Fut, E> AsyncApp for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<AppError> + 'static,
{
    fn call(&self, request: Request) -> AppFuture {
        let future = self(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// One request to an async app: its environ, its body, and the means to
/// answer it (a response, or a WebSocket). A clone is another handle on
/// the same request (e.g. one reads the body while another answers).
#[derive(Clone)]
pub struct Request {
    gateway: SharedAsyncGateway,
    /// The environ and the extra variables: memory the host keeps as long
    /// as `gateway` (held here) lives; handed out only borrowed from self.
    raw: &'static RawEnviron<'static>,
    extra: &'static [RawHeader<'static>],
}

impl Request {
    pub(crate) fn new(gateway: SharedAsyncGateway) -> Request {
        let raw: *const RawEnviron<'_> = gateway.environ();
        let extra = gateway.extra_vars();
        let (extra_ptr, extra_len) = (extra.as_slice().as_ptr(), extra.len());
        // SAFETY: the host keeps the environ and the extra variables alive
        // and unmoved as long as any handle on the gateway lives (the
        // AsyncGateway contract); this Request holds one, and hands them out
        // only borrowed from itself.
        let (raw, extra) = unsafe {
            (
                &*raw.cast::<RawEnviron<'static>>(),
                std::slice::from_raw_parts(extra_ptr.cast::<RawHeader<'static>>(), extra_len),
            )
        };
        Request { gateway, raw, extra }
    }

    /// The request's environ: PEP 3333's variables and the headers, as a
    /// sync app sees them. (Its `input()` is not for async apps: read the
    /// body with [`chunk`](Self::chunk) or [`body`](Self::body). Keep it
    /// within a statement, not across an `.await`: it is not `Send`.)
    pub fn environ(&self) -> Environ<'_> {
        Environ::without_input(self.raw, self.extra)
    }

    /// `REQUEST_METHOD`, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.raw.request_method.as_str()
    }

    /// `PATH_INFO`: the path below the mount point, percent-decoded.
    pub fn path_info(&self) -> &str {
        self.raw.path_info.as_str()
    }

    /// `QUERY_STRING`: the part after `?`, still percent-encoded.
    pub fn query_string(&self) -> &str {
        self.raw.query_string.as_str()
    }

    /// The first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.environ().header(name)
    }

    /// The next piece of the request body as it arrives; `None` at its
    /// end. Waiting for the client holds no thread (and does not count
    /// towards the host's `--timeout`).
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ResponseError> {
        poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// [`chunk`](Self::chunk) as a poll (for adapters such as
    /// `http_body::Body`).
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, ResponseError>> {
        waker::lend(cx.waker(), |ffi| match self.gateway.poll_body(ffi) {
            RawPoll::Ready(result) => Poll::Ready(
                result
                    .into_result()
                    .map(|chunk| chunk.into_option().map(RVec::into_vec))
                    .map_err(|e| ResponseError(e.into_string())),
            ),
            RawPoll::Pending => Poll::Pending,
        })
    }

    /// The whole request body.
    pub async fn body(&mut self) -> Result<Vec<u8>, ResponseError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Whether the client is known to have gone away.
    pub fn client_gone(&self) -> bool {
        self.gateway.client_gone()
    }

    /// Starts the response: `status` is e.g. `"200 OK"`; the headers are
    /// checked as `start_response`'s. Once only. Returns what sends the
    /// body; the response ends when the app's future completes.
    pub fn start(&self, status: &str, headers: &[(&str, &str)]) -> Result<BodySender, ResponseError> {
        with_raw_headers(headers, |raw| self.gateway.start(status.into(), raw.into()))
            .into_result()
            .map_err(|e| ResponseError(e.into_string()))?;
        Ok(BodySender {
            gateway: self.gateway.clone(),
        })
    }

    /// Whether the client asks for a WebSocket (the host checked its
    /// handshake). Answer it with [`accept_websocket`](Self::accept_websocket),
    /// or refuse it with any response from [`start`](Self::start).
    pub fn is_websocket(&self) -> bool {
        self.gateway.websocket_offered()
    }

    /// Accepts the WebSocket the client asks for, with a subprotocol (one
    /// of those it offered, in `Sec-WebSocket-Protocol`) and extra response
    /// headers. The host runs the protocol (framing, pings, limits, the
    /// close handshake); the app gets whole messages.
    pub fn accept_websocket(
        &self,
        protocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<WebSocket, ResponseError> {
        let protocol = match protocol {
            Some(name) => RSome(RStr::from(name)),
            None => RNone,
        };
        with_raw_headers(headers, |raw| self.gateway.accept_websocket(protocol, raw.into()))
            .into_result()
            .map_err(|e| ResponseError(e.into_string()))?;
        Ok(WebSocket {
            gateway: self.gateway.clone(),
        })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path_info", &self.path_info())
            .finish_non_exhaustive()
    }
}

/// Sends a started response's body.
pub struct BodySender {
    gateway: SharedAsyncGateway,
}

impl BodySender {
    /// Sends `data` once the client has taken what was sent before.
    pub async fn send(&mut self, data: impl Into<Vec<u8>>) -> Result<(), ResponseError> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        ready(&self.gateway, |gateway, ffi| gateway.poll_send_ready(ffi)).await?;
        self.gateway
            .send(RVec::from(data))
            .into_result()
            .map_err(|e| ResponseError(e.into_string()))
    }
}

/// A WebSocket message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Text (UTF-8).
    Text(String),
    /// Bytes.
    Binary(Vec<u8>),
    /// The close handshake: a code (RFC 6455 §7.4; 1000 is a normal close)
    /// and a reason. Received when the client closes; sent to close.
    Close {
        /// The close code.
        code: u16,
        /// Why, in a few words.
        reason: String,
    },
}

/// An accepted WebSocket.
pub struct WebSocket {
    gateway: SharedAsyncGateway,
}

impl WebSocket {
    /// The next message; `None` once the socket is gone (after the close
    /// handshake, or if the client went away).
    pub async fn recv(&mut self) -> Option<Message> {
        let event = poll_fn(|cx| {
            waker::lend(cx.waker(), |ffi| match self.gateway.poll_ws_recv(ffi) {
                RawPoll::Ready(event) => Poll::Ready(event),
                RawPoll::Pending => Poll::Pending,
            })
        })
        .await;
        match event {
            RawWsEvent::Message(RawWsMessage::Text(text)) => Some(Message::Text(text.into_string())),
            RawWsEvent::Message(RawWsMessage::Binary(bytes)) => Some(Message::Binary(bytes.into_vec())),
            RawWsEvent::Close { code, reason } => Some(Message::Close {
                code,
                reason: reason.into_string(),
            }),
            RawWsEvent::Gone => None,
        }
    }

    /// Sends `message` once the socket can take it; a `Close` begins the
    /// close handshake.
    pub async fn send(&mut self, message: Message) -> Result<(), ResponseError> {
        let raw = match message {
            Message::Text(text) => RawWsMessage::Text(text.into()),
            Message::Binary(bytes) => RawWsMessage::Binary(bytes.into()),
            Message::Close { code, reason } => {
                return self
                    .gateway
                    .ws_close(code, reason.as_str().into())
                    .into_result()
                    .map_err(|e| ResponseError(e.into_string()));
            }
        };
        ready(&self.gateway, |gateway, ffi| gateway.poll_ws_send_ready(ffi)).await?;
        self.gateway
            .ws_send(raw)
            .into_result()
            .map_err(|e| ResponseError(e.into_string()))
    }
}

/// Waits until `poll` says the gateway is ready.
async fn ready(
    gateway: &SharedAsyncGateway,
    poll: impl Fn(&SharedAsyncGateway, &crate::abi::FfiWaker) -> RawPoll<RResult<(), RString>>,
) -> Result<(), ResponseError> {
    poll_fn(|cx| {
        waker::lend(cx.waker(), |ffi| match poll(gateway, ffi) {
            RawPoll::Ready(result) => Poll::Ready(result.into_result().map_err(|e| ResponseError(e.into_string()))),
            RawPoll::Pending => Poll::Pending,
        })
    })
    .await
}

/// Runs `f` with `headers` as the interface's header slice.
fn with_raw_headers<R>(headers: &[(&str, &str)], f: impl FnOnce(&[RawHeader<'_>]) -> R) -> R {
    let raw: Vec<RawHeader<'_>> = headers
        .iter()
        .map(|(name, value)| RawHeader {
            name: RStr::from(*name),
            value: RStr::from(*value),
        })
        .collect();
    f(&raw)
}
