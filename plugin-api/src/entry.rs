//! The plugin side of every call the host makes: builds the app once, turns
//! each call's result (or panic) into ABI values, polls an async app's
//! future in the plugin's own runtime, forwards logging.
//!
//! Only [`crate::export_app!`] and [`crate::export_async_app!`] use this
//! module; nothing here may unwind across the ABI, so every entry catches
//! panics.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::task::{Context, Poll};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RString, RVec};

use crate::abi::{
    AppFuture, AppFuture_TO, BodyStream, BodyStream_TO, BoxedAppFuture, FfiWaker, GatewayRef, HostServices, RawBody,
    RawEnviron, RawOutcome, RawPoll, SharedAsyncGateway,
};
use crate::app::{App, AsyncApp, BodyKind, Environ, Request, StartResponse};
use crate::{async_runtime, host_log, waker};

thread_local! {
    /// The message of the last panic on this thread, kept by our panic hook
    /// so a caught panic can be reported in one line with its location.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One exported app (`dyn App` or `dyn AsyncApp`): built by `init`, then
/// called for every request.
pub struct AppSlot<A: ?Sized> {
    app: OnceLock<Box<A>>,
}

impl<A: ?Sized> AppSlot<A> {
    /// An app not built yet.
    pub const fn new() -> Self {
        Self { app: OnceLock::new() }
    }
}

impl<A: ?Sized> Default for AppSlot<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// `AppModule::init`: hooks logging and panics to the host, then builds the app.
pub fn init<A: ?Sized>(slot: &AppSlot<A>, make: fn() -> Box<A>, host: HostServices) -> RResult<(), RString> {
    if host_log::install(host) {
        panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string().replace('\n', " ")));
        }));
    }
    match catch(|| {
        slot.app.get_or_init(make);
    }) {
        Ok(()) => ROk(()),
        Err(panic) => RErr(format!("building the app {panic}").into()),
    }
}

/// `AppModule::call`: one request, with every panic turned into `Failed`.
pub fn call<'a>(slot: &AppSlot<dyn App>, raw: &'a RawEnviron<'a>, gateway: GatewayRef<'a>) -> RawOutcome {
    let Some(app) = slot.app.get() else {
        return RawOutcome::Failed("the app was called before init".into());
    };
    let result = catch(|| {
        let extra = gateway.extra_vars();
        let environ = Environ::new(raw, extra.as_slice(), &gateway);
        let mut start_response = StartResponse::new(&gateway);
        app.call(&environ, &mut start_response)
    });
    match result {
        Ok(Ok(body)) => outcome(body.0, &gateway),
        Ok(Err(error)) => RawOutcome::Failed(format!("the app returned an error: {error}").into()),
        Err(panic) => RawOutcome::Failed(format!("the app {panic}").into()),
    }
}

/// `AppModule::call` of an async app, which the host never makes.
pub fn call_sync_refused() -> RawOutcome {
    RawOutcome::Failed("this app is async: it is called through call_async, not call".into())
}

/// `AppModule::call_async`: the app's future for one request, polled in
/// the plugin's runtime, every panic caught.
pub fn call_async(slot: &AppSlot<dyn AsyncApp>, gateway: SharedAsyncGateway) -> BoxedAppFuture {
    let future = match slot.app.get() {
        None => Err("the app was called before init".to_owned()),
        Some(app) => {
            let _runtime = async_runtime::enter();
            catch(|| app.call(Request::new(gateway))).map_err(|panic| format!("the app {panic}"))
        }
    };
    AppFuture_TO::from_value(FutureAdapter { future: Some(future) }, TD_Opaque)
}

/// `AppModule::shutdown`: stops the plugin's async runtime.
pub fn shutdown() {
    if let Err(panic) = catch(async_runtime::shutdown) {
        log::error!("stopping the plugin's async runtime {panic}");
    }
}

/// An async app's future crossing the ABI. Every poll and its drop run in
/// the plugin's runtime, with panics caught: a panicking poll ends the
/// future with an error; a panicking drop is logged.
struct FutureAdapter {
    /// The app's future; `Err` if making it failed. `None` once over.
    future: Option<Result<crate::app::AppFuture, String>>,
}

impl FutureAdapter {
    /// Drops the app's future (in the runtime, catching a panic).
    fn end(&mut self) {
        let future = self.future.take();
        let _runtime = async_runtime::enter();
        if let Err(panic) = catch(move || drop(future)) {
            log::error!("dropping the app's future {panic}");
        }
    }
}

impl AppFuture for FutureAdapter {
    fn poll(&mut self, ffi: &FfiWaker) -> RawPoll<RResult<(), RString>> {
        let future = match self.future.as_mut() {
            None => return RawPoll::Ready(ROk(())),
            Some(Err(problem)) => {
                let problem = std::mem::take(problem);
                self.future = None;
                return RawPoll::Ready(RErr(problem.into()));
            }
            Some(Ok(future)) => future,
        };
        let polled = {
            let _runtime = async_runtime::enter();
            waker::with_waker(ffi, |waker| {
                catch(|| future.as_mut().poll(&mut Context::from_waker(waker)))
            })
        };
        let outcome = match polled {
            Ok(Poll::Pending) => return RawPoll::Pending,
            Ok(Poll::Ready(Ok(()))) => ROk(()),
            Ok(Poll::Ready(Err(error))) => RErr(format!("the app returned an error: {error}").into()),
            Err(panic) => RErr(format!("the app {panic}").into()),
        };
        self.end();
        RawPoll::Ready(outcome)
    }
}

impl Drop for FutureAdapter {
    fn drop(&mut self) {
        self.end();
    }
}

/// Hands a file body to the host, which takes its own descriptor; the
/// app's file closes when this returns.
fn send_file(gateway: &GatewayRef<'_>, file: &std::fs::File, range: std::ops::Range<u64>) -> RawOutcome {
    use std::os::fd::AsRawFd;
    let len = range.end.saturating_sub(range.start);
    match gateway.send_file(file.as_raw_fd(), range.start, len).into_result() {
        Ok(()) => RawOutcome::Body(RawBody::Empty),
        Err(e) => RawOutcome::Failed(format!("the file body was refused: {e}").into()),
    }
}

/// What the host gets for the body the app returned.
fn outcome(kind: BodyKind, gateway: &GatewayRef<'_>) -> RawOutcome {
    RawOutcome::Body(match kind {
        BodyKind::Empty => RawBody::Empty,
        BodyKind::Static(bytes) => RawBody::Static(bytes.into()),
        BodyKind::Bytes(bytes) => RawBody::Bytes(bytes.into()),
        BodyKind::Stream(chunks) => RawBody::Stream(BodyStream_TO::from_value(
            StreamAdapter { chunks: Some(chunks) },
            TD_Opaque,
        )),
        BodyKind::File(file, range) => return send_file(gateway, &file, range),
    })
}

/// Runs `f`, turning a panic into "panicked at FILE:LINE: message".
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let hooked = LAST_PANIC.with(|last| last.borrow_mut().take());
        hooked.unwrap_or_else(|| format!("panicked: {}", payload_text(payload.as_ref())))
    })
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(non-string panic payload)"
    }
}

/// A streamed body crossing the ABI; the iterator's `Drop` is `close()`.
struct StreamAdapter {
    chunks: Option<Box<dyn Iterator<Item = Vec<u8>> + Send>>,
}

impl StreamAdapter {
    /// Drops the iterator, catching a panic in its `Drop`.
    fn drop_chunks(&mut self) -> Result<(), String> {
        let chunks = self.chunks.take();
        catch(move || drop(chunks))
    }
}

impl BodyStream for StreamAdapter {
    fn next_chunk(&mut self) -> RResult<ROption<RVec<u8>>, RString> {
        let Some(chunks) = self.chunks.as_mut() else {
            return ROk(RNone);
        };
        match catch(|| chunks.next()) {
            Ok(Some(chunk)) => ROk(RSome(chunk.into())),
            Ok(None) => ROk(RNone),
            Err(panic) => {
                let _ = self.drop_chunks();
                RErr(format!("the app's body stream {panic}").into())
            }
        }
    }

    fn close(&mut self) -> RResult<(), RString> {
        match self.drop_chunks() {
            Ok(()) => ROk(()),
            Err(panic) => RErr(format!("closing the app's body {panic}").into()),
        }
    }
}

impl Drop for StreamAdapter {
    fn drop(&mut self) {
        let _ = self.drop_chunks();
    }
}
