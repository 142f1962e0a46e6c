//! The static site: safe lookup under the root, Content-Type, ETag /
//! Last-Modified with 304, single byte ranges (206 / 416), HEAD, and large
//! files streamed from a reader thread.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use super::body::{Body, BodyFrame};
use super::responses;

/// Files up to this size are read in one go; larger ones are streamed.
const WHOLE_FILE_LIMIT: u64 = 256 << 10;
/// The read size when streaming a large file.
const STREAM_CHUNK: usize = 256 << 10;

/// A folder served as a web site.
pub struct StaticSite {
    root: PathBuf,
}

/// What a request path names in the site.
#[derive(Debug)]
pub enum Lookup {
    /// A regular file inside the root.
    File(PathBuf, Metadata),
    /// A folder named without its trailing slash: redirect here.
    AddSlash,
    /// Nothing servable (missing, outside the root, or refused).
    Missing,
}

impl StaticSite {
    /// A site rooted at `root`, which must be an existing folder.
    pub fn new(root: &Path) -> Result<Self, String> {
        let root = root.canonicalize().map_err(|e| {
            format!(
                "static folder {} cannot be used: {e}; pass --static-dir DIR or --no-static",
                root.display()
            )
        })?;
        if !root.is_dir() {
            return Err(format!(
                "static folder {} is not a folder; pass --static-dir DIR",
                root.display()
            ));
        }
        Ok(StaticSite { root })
    }

    /// Resolves a percent-decoded request path. `..` segments, backslashes,
    /// NUL and symlinks leading out of the root never resolve.
    pub fn lookup(&self, path: &str) -> Lookup {
        if path.contains(['\\', '\0']) {
            return Lookup::Missing;
        }
        let mut candidate = self.root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
            if segment == ".." {
                return Lookup::Missing;
            }
            candidate.push(segment);
        }
        let Ok(real) = candidate.canonicalize() else {
            return Lookup::Missing;
        };
        if !real.starts_with(&self.root) {
            log::warn!(
                "refused {path}: it leads outside the static folder (symlink to {})",
                real.display()
            );
            return Lookup::Missing;
        }
        match std::fs::metadata(&real) {
            Ok(meta) if meta.is_file() => Lookup::File(real, meta),
            Ok(meta) if meta.is_dir() && !path.ends_with('/') => Lookup::AddSlash,
            Ok(meta) if meta.is_dir() => match std::fs::metadata(real.join("index.html")) {
                Ok(index) if index.is_file() => Lookup::File(real.join("index.html"), index),
                _ => Lookup::Missing,
            },
            _ => Lookup::Missing,
        }
    }

    /// The site's `404.html` with status 404 (a plain text one if absent).
    pub async fn not_found(&self, method: &Method) -> Response<Body> {
        let page = self.root.join("404.html");
        match tokio::fs::read(&page).await {
            Ok(html) => {
                let length = HeaderValue::from(html.len());
                let mut response = Response::new(if method == Method::HEAD {
                    Body::Empty
                } else {
                    Body::full(html)
                });
                *response.status_mut() = StatusCode::NOT_FOUND;
                response.headers_mut().insert(header::CONTENT_LENGTH, length);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            Err(_) => responses::error(StatusCode::NOT_FOUND, "no such page"),
        }
    }
}

/// Serves `path` for a GET or HEAD with the request's conditional and
/// range headers.
pub async fn serve_file(method: &Method, request: &HeaderMap, path: PathBuf, meta: Metadata) -> Response<Body> {
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let etag = entity_tag(&meta, modified);
    let last_modified = httpdate::fmt_http_date(modified);

    let mut response = Response::new(Body::Empty);
    let headers = response.headers_mut();
    insert(headers, header::ETAG, &etag);
    insert(headers, header::LAST_MODIFIED, &last_modified);
    if not_modified(request, &etag, modified) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    insert(headers, header::CONTENT_TYPE, &content_type(&path));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let range = match requested_range(request, &etag, &last_modified, len) {
        RangeRequest::Whole => 0..len,
        RangeRequest::Part(range) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            insert(response.headers_mut(), header::CONTENT_RANGE, &content_range);
            range
        }
        RangeRequest::Unsatisfiable => {
            let mut refused = responses::error(StatusCode::RANGE_NOT_SATISFIABLE, "the range lies outside the file");
            insert(refused.headers_mut(), header::CONTENT_RANGE, &format!("bytes */{len}"));
            return refused;
        }
    };
    let count = range.end - range.start;
    insert(response.headers_mut(), header::CONTENT_LENGTH, &count.to_string());
    if method == Method::HEAD || count == 0 {
        return response;
    }
    match file_body(path, range).await {
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

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// nginx-style `"mtime-size"`, in hex.
fn entity_tag(meta: &Metadata, modified: SystemTime) -> String {
    let secs = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("\"{secs:x}-{:x}\"", meta.len())
}

fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON;
    if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// RFC 9110 §13.1.2–3: If-None-Match wins; else If-Modified-Since.
fn not_modified(request: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(tags) = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match since {
        Some(since) => {
            let modified_secs = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let since_secs = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            modified_secs <= since_secs
        }
        None => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range, honouring If-Range; several ranges are answered
/// with the whole file (RFC 9110 allows ignoring Range).
fn requested_range(request: &HeaderMap, etag: &str, last_modified: &str, len: u64) -> RangeRequest {
    let Some(spec) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    if let Some(validator) = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if validator != etag && validator != last_modified {
            return RangeRequest::Whole;
        }
    }
    parse_range(spec, len)
}

fn parse_range(spec: &str, len: u64) -> RangeRequest {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Whole;
    };
    if ranges.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeRequest::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(len),
        (Ok(start), Err(_)) if last.is_empty() => start..len,
        (Err(_), Ok(suffix)) if first.is_empty() => len.saturating_sub(suffix)..len,
        _ => return RangeRequest::Whole,
    };
    if range.start >= len || range.is_empty() {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Part(range)
    }
}

/// Small files in one read; large ones streamed by a reader thread.
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
    Ok(Body::Channel(rx))
}

fn read_exact_at(file: &File, offset: u64, count: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(count);
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf.freeze())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Part(90..100));
        assert_eq!(parse_range("bytes=50-500", 100), RangeRequest::Part(50..100));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Whole);
        assert_eq!(parse_range("bytes=9-2", 100), RangeRequest::Whole);
    }

    #[test]
    fn lookups_never_leave_the_root() {
        let root = std::env::temp_dir().join(format!("static-site-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), "x").unwrap();
        std::fs::write(root.join("a.txt"), "x").unwrap();
        let site = StaticSite::new(&root).unwrap();
        assert!(matches!(site.lookup("/a.txt"), Lookup::File(..)));
        assert!(matches!(site.lookup("/sub"), Lookup::AddSlash));
        assert!(matches!(site.lookup("/sub/"), Lookup::File(..)));
        for bad in ["/../etc/passwd", "/sub/../../x", "/a.txt\0", "/..\\a.txt", "/nope"] {
            assert!(matches!(site.lookup(bad), Lookup::Missing), "{bad}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }
}
