//! `host cgi LIB:SYMBOL`: one request through an app as a CGI script.

use std::path::PathBuf;

use crate::cgi;
use crate::error::Failure;
use crate::plugin::app_spec::AppSpec;
use crate::plugin::loader;

/// Loads the app and answers the CGI request in the environment; exit 0
/// even when the app failed (the client got a 500).
pub fn run(spec: &AppSpec, plugin_dirs: &[PathBuf]) -> Result<u8, Failure> {
    let loaded = loader::load(spec, plugin_dirs).map_err(|e| {
        // A CGI script that cannot start still answers, so the web server
        // in front shows a 500 rather than a broken gateway.
        print!("Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n500 Internal Server Error: the app could not be loaded.\n");
        Failure::input(e)
    })?;
    let env = std::env::vars().collect();
    let summary = cgi::run(&loaded, &env, std::io::stdin().lock(), std::io::stdout().lock());
    log::debug!("cgi {spec}: {summary:?}");
    Ok(0)
}
