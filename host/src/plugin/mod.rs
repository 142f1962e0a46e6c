//! The plugin side of the host: everything that deals with an app's
//! library, whatever the transport.
//!
//! - [`app_spec`]: the `LIB:SYMBOL` argument and the plugin path.
//! - [`library_file`]: checks on a library file before it is copied or opened.
//! - [`loader`]: opening a library and checking its app (refusals included).
//! - [`response_head`]: `start_response`'s rules.
//! - [`exchange`]: one request/response with an app, over any transport.

pub mod app_spec;
pub mod exchange;
pub(crate) mod library_file;
pub mod loader;
pub mod response_head;
