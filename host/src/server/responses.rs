//! Small responses the server makes itself: errors and redirects.

use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Response, StatusCode};

use super::body::Body;

/// `STATUS` with a one-line plain-text body saying what happened and,
/// for limits, which option raises them.
pub fn error(status: StatusCode, detail: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let text = if detail.is_empty() {
        format!("{} {reason}\n", status.as_u16())
    } else {
        format!("{} {reason}: {detail}\n", status.as_u16())
    };
    let mut response = Response::new(Body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// A 301 to `location` (a directory asked for without its trailing slash).
pub fn moved_permanently(location: &str) -> Response<Body> {
    let mut response = error(StatusCode::MOVED_PERMANENTLY, location);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
