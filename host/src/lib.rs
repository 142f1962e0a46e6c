//! The `host` application server as a library; `main.rs` is a thin shell.
//!
//! - [`app_spec`]: the `LIB:SYMBOL` argument and the plugin path.
//! - [`library_file`]: checks on a library file before it is copied or opened.
//! - [`loader`]: opening a library and checking its app (refusals included).
//! - [`inflight`]: which requests a worker runs, readable by its master.
//! - [`inherited`]: what a parent passed in the environment (sockets, fds).
//! - [`response_head`]: `start_response`'s rules.
//! - [`exchange`]: one request/response with an app, over any transport.
//! - [`open_file`]: files being served (in memory, read, or `sendfile`d).
//! - [`cgi`]: CGI mode.
//! - [`config`]: every option, declared once, and where values come from.
//! - [`server`]: the HTTP server.
//! - [`supervisor`]: the master and its worker processes.
//! - [`signals`]: what each signal means, in one place.
//! - [`error`]: failures and the exit codes they map to.
//! - [`commands`]: what each subcommand does; [`cli`]: the command line.

pub mod app_spec;
pub(crate) mod cgi;
pub mod cli;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod error;
pub mod exchange;
pub(crate) mod inflight;
pub(crate) mod inherited;
pub(crate) mod library_file;
pub mod loader;
pub(crate) mod logging;
pub(crate) mod open_file;
pub mod response_head;
pub(crate) mod server;
pub(crate) mod signals;
pub(crate) mod supervisor;
