//! The response for a static file: the precompressed form the client
//! takes, headers, 304 / 206 / 416, and the bytes (from memory, or the
//! open file: `sendfile` or chunks read as sent).

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::conditional::{not_modified, requested_range, RangeRequest};
use super::encoded;
use super::file::{header_value, StaticFile};
use crate::open_file::FileContent;
use crate::server::http::body::{Body, FileBody};
use crate::server::http::responses;

/// Serves `file` for a GET or HEAD with the request's conditional and
/// range headers, precompressed if the client accepts a form of it there
/// is (ranges then count the encoded bytes). `sendfile`: the connection
/// sends a large file's mapped slices with `sendfile` (cleartext HTTP/1).
pub fn serve_file(method: &Method, request: &HeaderMap, file: &StaticFile, sendfile: bool) -> Response<Body> {
    if file.variants.is_empty() {
        return serve_one(method, request, file, sendfile);
    }
    let available = file.variants.iter().map(|(encoding, _)| *encoding);
    let chosen = encoded::choose(request.get(header::ACCEPT_ENCODING), available);
    let mut response = match chosen.and_then(|e| file.variant(e).map(|v| (e, v))) {
        Some((encoding, variant)) => {
            let mut response = serve_one(method, request, variant, sendfile);
            if matches!(response.status(), StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
            }
            response
        }
        None => serve_one(method, request, file, sendfile),
    };
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// Serves one form of a file.
fn serve_one(method: &Method, request: &HeaderMap, file: &StaticFile, sendfile: bool) -> Response<Body> {
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
    *response.body_mut() = match &file.content {
        FileContent::InMemory(bytes) => Body::full(bytes.slice(range.start as usize..range.end as usize)),
        FileContent::Open(open) => Body::File(FileBody::new(open.clone(), range, sendfile)),
    };
    response
}
