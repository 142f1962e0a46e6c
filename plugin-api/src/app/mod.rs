//! The plugin author's side: the [`App`] trait (sync apps, WSGI's model)
//! and [`AsyncApp`] (async apps and WebSockets, since 1.2), and what an
//! app works with.

mod async_app;
mod body;
mod environ;
mod response;

pub use async_app::{AppFuture, AsyncApp, BodySender, Message, Request, WebSocket};
pub(crate) use body::BodyKind;
pub use body::{AppError, AppOutput, Body};
pub use environ::{Environ, ErrorStream, Input};
pub use response::{ResponseError, StartResponse, Writer};

/// A web app: called once per request, possibly from several threads at once.
///
/// Every `fn(&Environ, &mut StartResponse) -> impl AppOutput` is an `App`
/// (seed 001's "callable is a function"); a struct holding state built once at
/// load time implements it by hand (the "callable is an instance" form).
pub trait App: Send + Sync + 'static {
    /// Handles one request: call `start_response`, then return the body.
    fn call(&self, environ: &Environ<'_>, start_response: &mut StartResponse<'_>) -> Result<Body, AppError>;
}

impl<F, R> App for F
where
    F: Fn(&Environ<'_>, &mut StartResponse<'_>) -> R + Send + Sync + 'static,
    R: AppOutput,
{
    fn call(&self, environ: &Environ<'_>, start_response: &mut StartResponse<'_>) -> Result<Body, AppError> {
        self(environ, start_response).into_body()
    }
}
