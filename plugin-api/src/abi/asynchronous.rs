//! Since 1.2: what crosses the boundary for an async app.
//!
//! The host owns the only executor: it polls the app's [`AppFuture`], and
//! the app calls back into the request's [`AsyncGateway`] (body, response,
//! WebSocket), whose operations that may wait are polls too. A waker
//! crosses with every poll, in either direction, as an [`FfiWaker`]: a C
//! vtable of its own, since std's `Waker` has no stable layout. abi_stable
//! checks every type here like the rest of the interface.

use abi_stable::{
    sabi_trait,
    std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use super::{RawEnviron, RawHeader};

/// A waker crossing the boundary, in either direction: `data` means
/// something only to the functions of `vtable`, which the side that made
/// it compiled. Passed by reference it is borrowed for the call; to keep
/// it, call `clone` and, once done with the copy, `drop` it exactly once.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiWaker {
    /// The waker's state, owned or borrowed as `vtable` knows.
    pub data: *const (),
    /// What can be done with it.
    pub vtable: &'static FfiWakerVTable,
}

// SAFETY: an `FfiWaker` stands for a `std::task::Waker` (Send + Sync), and
// its functions may be called from any thread, as a Waker's may.
unsafe impl Send for FfiWaker {}
// SAFETY: as above.
unsafe impl Sync for FfiWaker {}

/// The functions of an [`FfiWaker`]; none of them unwinds.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiWakerVTable {
    /// An owned copy, to be dropped with its own `drop`.
    pub clone: extern "C" fn(data: *const ()) -> FfiWaker,
    /// Wakes the task, keeping the waker.
    pub wake_by_ref: extern "C" fn(data: *const ()),
    /// Releases an owned copy (does nothing for a borrowed one).
    pub drop: extern "C" fn(data: *const ()),
}

/// The outcome of a poll.
#[repr(u8)]
#[derive(StableAbi, Debug, PartialEq, Eq)]
pub enum RawPoll<T> {
    /// Done, with this.
    Ready(T),
    /// Not yet: the waker passed to the poll is woken when it is worth
    /// polling again.
    Pending,
}

/// An async app's work for one request, living in the plugin. The plugin
/// kit catches every panic (a panicking poll is `Ready(RErr(..))`, a
/// panicking drop is logged), so none of this unwinds into the host.
/// Dropping it cancels the request.
#[sabi_trait]
pub trait AppFuture: Send {
    /// Polls the app; `Ready(RErr(..))` when it failed or panicked.
    #[sabi(last_prefix_field)]
    fn poll(&mut self, waker: &FfiWaker) -> RawPoll<RResult<(), RString>>;
}

/// The owned form of an [`AppFuture`] trait object.
pub type BoxedAppFuture = AppFuture_TO<'static, RBox<()>>;

/// A WebSocket message, either way.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum RawWsMessage {
    /// A text message (UTF-8, checked by the host).
    Text(RString),
    /// A binary message.
    Binary(RVec<u8>),
}

/// What an app's WebSocket receives.
#[repr(u8)]
#[derive(StableAbi, Debug)]
pub enum RawWsEvent {
    /// A whole message from the client (fragments put together).
    Message(RawWsMessage),
    /// The client began the close handshake with this code and reason.
    Close {
        /// The close code (1005 when the client gave none).
        code: u16,
        /// The reason it gave.
        reason: RString,
    },
    /// The socket is gone: closed, failed, or never opened.
    Gone,
}

/// The host's half of one async request: the environ, the request body,
/// the response, and the WebSocket if the app accepts one. Implemented by
/// the host; shared (reference-counted) so the app's objects may outlive
/// each other, and every call fails cleanly once the request is over. No
/// method unwinds.
#[sabi_trait]
pub trait AsyncGateway: Send + Sync + Clone {
    /// The request's environ, as long as this gateway lives.
    fn environ(&self) -> &RawEnviron<'_>;

    /// The environ's variables beyond PEP 3333's and the headers (see
    /// `Gateway::extra_vars`).
    fn extra_vars(&self) -> RSlice<'_, RawHeader<'_>>;

    /// The next piece of the request body: `Ready(ROk(RNone))` at its end,
    /// `Ready(RErr(..))` if it broke a rule or the client failed.
    fn poll_body(&self, waker: &FfiWaker) -> RawPoll<RResult<ROption<RVec<u8>>, RString>>;

    /// Whether the client is known to be gone.
    fn client_gone(&self) -> bool;

    /// Sets the response's status line (`"200 OK"`) and headers, checked
    /// as `start_response`'s; once only.
    fn start(&self, status: RStr<'_>, headers: RSlice<'_, RawHeader<'_>>) -> RResult<(), RString>;

    /// Ready when the response can take another body chunk (the client
    /// has taken the last one): backpressure.
    fn poll_send_ready(&self, waker: &FfiWaker) -> RawPoll<RResult<(), RString>>;

    /// Hands over one body chunk, after `poll_send_ready` said ready.
    fn send(&self, chunk: RVec<u8>) -> RResult<(), RString>;

    /// Whether the request asks for a WebSocket (the host checked the
    /// handshake).
    fn websocket_offered(&self) -> bool;

    /// Accepts the WebSocket, with a subprotocol and extra headers; the
    /// host answers the handshake and runs the protocol from then on.
    fn accept_websocket(&self, protocol: ROption<RStr<'_>>, headers: RSlice<'_, RawHeader<'_>>)
        -> RResult<(), RString>;

    /// The next WebSocket event.
    fn poll_ws_recv(&self, waker: &FfiWaker) -> RawPoll<RawWsEvent>;

    /// Ready when the socket can take another message.
    fn poll_ws_send_ready(&self, waker: &FfiWaker) -> RawPoll<RResult<(), RString>>;

    /// Sends one message, after `poll_ws_send_ready` said ready.
    fn ws_send(&self, message: RawWsMessage) -> RResult<(), RString>;

    /// Begins the close handshake with `code` and `reason`.
    #[sabi(last_prefix_field)]
    fn ws_close(&self, code: u16, reason: RStr<'_>) -> RResult<(), RString>;
}

/// The shared form of an [`AsyncGateway`] trait object.
pub type SharedAsyncGateway = AsyncGateway_TO<'static, RArc<()>>;
