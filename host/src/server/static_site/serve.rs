//! The response for a static file: headers, 304 / 206 / 416, the bytes
//! from memory or the disk, large files streamed by a reader thread.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use super::conditional::{not_modified, requested_range, RangeRequest};
use super::file::{header_value, read_exact_at, StaticFile, WHOLE_FILE_LIMIT};
use crate::server::body::{Body, BodyFrame};
use crate::server::responses;

/// The read size when streaming a large file.
const STREAM_CHUNK: usize = 256 << 10;

/// Serves `file` for a GET or HEAD with the request's conditional and
/// range headers.
pub async fn serve_file(method: &Method, request: &HeaderMap, file: &StaticFile) -> Response<Body> {
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
    let body = match &file.content {
        Some(content) => Ok(Body::full(content.slice(range.start as usize..range.end as usize))),
        None => file_body(file.path.clone(), range).await,
    };
    match body {
        Ok(body) => {
            *response.body_mut() = body;
            response
        }
        Err(e) => {
            log::error!("reading a static file failed: {e}");
            responses::error(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be read")
        }
    }
}

/// A range of a file not held in memory: one read if small, else
/// streamed by a reader thread.
async fn file_body(path: PathBuf, range: std::ops::Range<u64>) -> io::Result<Body> {
    let file = tokio::task::spawn_blocking(move || File::open(path))
        .await
        .map_err(io::Error::other)??;
    let count = range.end - range.start;
    if count <= WHOLE_FILE_LIMIT {
        let bytes = tokio::task::spawn_blocking(move || read_exact_at(&file, range.start, count as usize))
            .await
            .map_err(io::Error::other)??;
        return Ok(Body::full(bytes));
    }
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || stream_file(&file, range, &tx));
    Ok(Body::channel(rx))
}

fn stream_file(file: &File, range: std::ops::Range<u64>, tx: &mpsc::Sender<BodyFrame>) {
    let mut offset = range.start;
    while offset < range.end {
        let count = (range.end - offset).min(STREAM_CHUNK as u64) as usize;
        let frame = read_exact_at(file, offset, count);
        let failed = frame.is_err();
        if tx.blocking_send(frame).is_err() || failed {
            return; // client gone, or the error was passed on (aborts the response)
        }
        offset += count as u64;
    }
}
