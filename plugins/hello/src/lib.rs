//! `hello`: a demo app that says which HTTP method the request used.
//!
//! A port of seed 001's first WSGI example, "the callable is a function":
//!
//! ```python
//! def application(environ, start_response):
//!     response_body = 'The request method was %s' % environ['REQUEST_METHOD']
//!     response_headers = [('Content-Type', 'text/plain'),
//!                         ('Content-Length', str(len(response_body)))]
//!     start_response('200 OK', response_headers)
//!     return [response_body]
//! ```
//!
//! Exported as `application`: `host ./libhello.so:application`.

use plugin_api::{export_app, Environ, ResponseError, StartResponse};

/// The app: `The request method was GET` (or whichever method), as
/// `text/plain` with a `Content-Length`.
fn application(environ: &Environ, start_response: &mut StartResponse) -> Result<String, ResponseError> {
    let response_body = format!("The request method was {}", environ.method());
    let content_length = response_body.len().to_string();
    start_response.start(
        "200 OK",
        &[("Content-Type", "text/plain"), ("Content-Length", &content_length)],
    )?;
    Ok(response_body)
}

export_app!(application);
