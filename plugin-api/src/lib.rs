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
//! # Modules
//! - [`app`]: what plugin authors use (re-exported at the crate root).
//! - [`host`]: what the host uses to check and call a plugin.
//! - [`abi`]: the types that cross the boundary, all in one place.
//!
//! All use of abi_stable is confined to this crate.

pub mod abi;
pub mod app;
mod export;
pub mod host;
mod host_log;
mod runtime;

pub use app::{App, AppError, AppOutput, Body, Environ, ErrorStream, Input, ResponseError, StartResponse, Writer};

/// The version of this interface (the crate version). A plugin built against
/// another major version, or a newer minor one, is refused; see
/// [`abi`] for the rule.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Used by [`export_app!`]'s expansion; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{AppModule, AppModule_Ref, GatewayRef, HostServices, RawEnviron, RawOutcome};
    pub use crate::runtime::{call, init, AppSlot};
    pub use abi_stable::library::{__call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult};
    pub use abi_stable::prefix_type::WithMetadata;
    pub use abi_stable::std_types::{RResult, RString};
}
