//! Serving over HTTP.

use crate::cli::{Fatal, ServeArgs};

/// Serves `args` until stopped.
pub fn run(args: ServeArgs) -> Result<(), Fatal> {
    let _ = args;
    Err(Fatal::usage(
        "HTTP serving is not built yet; use `host check` or `host cgi`",
    ))
}
