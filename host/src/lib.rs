//! The `host` application server as a library; `main.rs` is a thin shell.
//!
//! - [`plugin`]: an app's library: finding, checking and loading it, and
//!   one request/response with it over any transport.
//! - [`inflight`]: which requests a worker runs, readable by its master.
//! - [`inherited`]: what a parent passed in the environment (sockets, fds).
//! - [`header_list`]: name/value pairs kept in one buffer.
//! - [`open_file`]: files being served (in memory, read, or `sendfile`d).
//! - [`cgi`]: CGI mode.
//! - [`config`]: every option, declared once, and where values come from.
//! - [`server`]: the HTTP server.
//! - [`supervisor`]: the master and its worker processes.
//! - [`signals`]: what each signal means, in one place.
//! - [`error`]: failures and the exit codes they map to.
//! - [`commands`]: what each subcommand does; [`cli`]: the command line.

pub(crate) mod cgi;
pub mod cli;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod header_list;
pub(crate) mod inflight;
pub(crate) mod inherited;
pub(crate) mod logging;
pub(crate) mod open_file;
pub mod plugin;
pub(crate) mod server;
pub(crate) mod signals;
pub(crate) mod supervisor;
