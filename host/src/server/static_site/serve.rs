//! The response for a static file: headers, 304 / 206 / 416, and the
//! bytes (from memory, or a mapping sent with `sendfile`).

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::conditional::{not_modified, requested_range, RangeRequest};
use super::file::{header_value, StaticFile};
use crate::server::body::Body;
use crate::server::responses;

/// Serves `file` for a GET or HEAD with the request's conditional and
/// range headers.
pub fn serve_file(method: &Method, request: &HeaderMap, file: &StaticFile) -> Response<Body> {
    let len = file.len;
    let mut response = Response::new(Body::Empty);
    let headers = response.headers_mut();
    headers.reserve(8);
    headers.insert(header::ETAG, file.etag.clone());
    headers.insert(header::LAST_MODIFIED, file.last_modified.clone());
    if not_modified(request, &file.etag, file.modified) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    headers.insert(header::CONTENT_TYPE, file.content_type.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let range = match requested_range(request, &file.etag, &file.last_modified, len) {
        RangeRequest::Whole => 0..len,
        RangeRequest::Part(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, header_value(&content_range));
            range
        }
        RangeRequest::Unsatisfiable => {
            let mut refused = responses::error(StatusCode::RANGE_NOT_SATISFIABLE, "the range lies outside the file");
            refused
                .headers_mut()
                .insert(header::CONTENT_RANGE, header_value(&format!("bytes */{len}")));
            return refused;
        }
    };
    let count = range.end - range.start;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD || count == 0 {
        return response;
    }
    let bytes = file.content.bytes();
    *response.body_mut() = Body::full(bytes.slice(range.start as usize..range.end as usize));
    response
}
