//! The interface between the `host` server and its app plugins, and the kit
//! for writing those plugins.
//!
//! An app is an ordinary Rust function (or a stateful object) compiled into a
//! `cdylib` and exported under any symbol name with [`export_app!`]. The
//! host opens the library, finds the symbol and, before running any plugin
//! code, checks through abi_stable that the plugin was built against a
//! compatible version of this crate with identical type layouts. It then
//! calls the app once per request with an [`Environ`] (PEP 3333's `environ`)
//! and a [`StartResponse`] (PEP 3333's `start_response`).
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "greet"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! plugin-api = { path = "../../plugin-api" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use plugin_api::{export_app, Environ, StartResponse};
//!
//! fn application(environ: &Environ, start_response: &mut StartResponse) -> String {
//!     start_response.start("200 OK", &[("Content-Type", "text/plain")]).unwrap();
//!     format!("Hello from {}\n", environ.path_info())
//! }
//!
//! export_app!(application);
//! ```
//!
//! Then `host ./plugins/libgreet.so:application` serves it. See [`App`] for
//! stateful apps and [`Body::stream`] for streamed bodies.
//!
//! # Async apps (since 1.2)
//!
//! An app that waits (a database, an upstream call, a timer) without
//! holding a thread, or that speaks WebSocket, is async:
//!
//! ```
//! use std::time::Duration;
//! use plugin_api::{export_async_app, AppError, Message, Request};
//!
//! async fn application(request: Request) -> Result<(), AppError> {
//!     if request.is_websocket() {
//!         // Echo every message; answer a close with the same code.
//!         let mut socket = request.accept_websocket(None, &[])?;
//!         while let Some(message) = socket.recv().await {
//!             socket.send(message).await?;
//!         }
//!         return Ok(());
//!     }
//!     // A timer of the plugin's own runtime: no thread waits for it.
//!     tokio::time::sleep(Duration::from_millis(100)).await;
//!     let mut body = request.start("200 OK", &[("Content-Type", "text/plain")])?;
//!     body.send("slept 100 ms\n").await?;
//!     Ok(())
//! }
//!
//! export_async_app!(application);
//! ```
//!
//! The host polls the app's future on its own threads. The app's own I/O
//! runs on a small tokio runtime the plugin starts on first use (every
//! cdylib links its own tokio, whose runtime the host's threads cannot
//! see), so tokio-based crates (timers, sockets, hyper or reqwest clients,
//! sqlx pools) work inside a plugin as anywhere else; add `tokio` to the
//! plugin's dependencies with the features its code uses (`time`, `net`,
//! …). A client that goes away, and the host's `--timeout`, drop the
//! future; waits for the client do not count towards the timeout.
//!
//! # Modules
//! - [`app`]: what plugin authors use (re-exported at the crate root).
//! - [`host`]: what the host uses to check and call a plugin.
//! - [`abi`]: the types that cross the boundary, all in one place.
//!
//! All use of abi_stable is confined to this crate.

pub mod abi;
pub mod app;
mod async_runtime;
mod entry;
mod export;
pub mod host;
mod host_log;
mod waker;

pub use app::{
    App, AppError, AppFuture, AppOutput, AsyncApp, Body, BodySender, Environ, ErrorStream, Input, Message, Request,
    ResponseError, StartResponse, WebSocket, Writer,
};

/// The version of this interface (the crate version). A plugin built against
/// another major version, or a newer minor one, is refused; see
/// [`abi`] for the rule.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Used by [`export_app!`]'s expansion; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{
        AppModule, AppModule_Ref, BoxedAppFuture, GatewayRef, HostServices, RawEnviron, RawOutcome, SharedAsyncGateway,
    };
    pub use crate::entry::{call, call_async, call_sync_refused, init, shutdown, AppSlot};
    pub use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};
    pub use abi_stable::prefix_type::WithMetadata;
    pub use abi_stable::std_types::{RResult, RString};
}
