//! Small responses the server makes itself: errors and redirects.

use std::time::Duration;

use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::body::Body;
use crate::plugin::exchange::Refusal;

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

/// A 503 for a quarantined route, with `Retry-After` (whole seconds, at
/// least one).
pub fn quarantined(left: Duration) -> Response<Body> {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "requests to this URL crashed the server's workers repeatedly; it is refused for {seconds} more seconds (server option --quarantine-after)"
        ),
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A request refused for breaking a rule: its status and detail, and the
/// connection closed (what follows it on the connection is not trusted).
pub fn refusal(refusal: &Refusal) -> Response<Body> {
    let mut response = error(refusal.status, &refusal.detail);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `status` (204 for OPTIONS, 405) with `Allow: methods`.
pub fn allow(status: StatusCode, methods: &'static str) -> Response<Body> {
    let mut response = if status == StatusCode::NO_CONTENT {
        let mut empty = Response::new(Body::Empty);
        *empty.status_mut() = status;
        empty
    } else {
        error(status, &format!("this resource allows {methods}"))
    };
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(methods));
    response
}
