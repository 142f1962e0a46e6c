//! The `host` application server as a library; `main.rs` is a thin shell.
//!
//! - [`app_spec`]: the `LIB:SYMBOL` argument and the plugin path.
//! - [`loader`]: opening a library and checking its app (refusals included).
//! - [`response_head`]: `start_response`'s rules.
//! - [`exchange`]: one request/response with an app, over any transport.
//! - [`cgi`]: CGI mode.
//! - [`cli`]: the command line.

pub mod app_spec;
pub mod cgi;
pub mod cli;
pub mod exchange;
pub mod loader;
pub mod logging;
pub mod response_head;
pub mod serve;
