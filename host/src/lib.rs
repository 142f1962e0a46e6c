//! The `host` application server as a library; `main.rs` is a thin shell.
//!
//! - [`app_spec`]: the `LIB:SYMBOL` argument and the plugin path.
//! - [`loader`]: opening a library and checking its app (refusals included).
//! - [`response_head`]: `start_response`'s rules.
//! - [`exchange`]: one request/response with an app, over any transport.
//! - [`cgi`]: CGI mode.
//! - [`config`]: settings from defaults, the config file and flags.
//! - [`server`]: the HTTP server; [`serve`]: the serving command.
//! - [`supervisor`]: the master and its worker processes.
//! - [`signals`]: what each signal means, in one place.
//! - [`cli`]: the command line.

pub mod app_spec;
pub mod cgi;
pub mod cli;
pub mod config;
pub mod exchange;
pub mod loader;
pub mod logging;
pub mod response_head;
pub mod serve;
pub mod server;
pub mod signals;
pub mod supervisor;
