//! The static site: safe lookup under the root, Content-Type, ETag /
//! Last-Modified with 304, single byte ranges (206 / 416), HEAD, and large
//! files streamed from a reader thread. Lookups, and the bytes of small
//! files, are kept in a [`SiteCache`] and checked against the disk again
//! once they are a second old.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use super::body::{Body, BodyFrame};
use super::responses;
use super::site_cache::SiteCache;

/// Files up to this size are read in one go (and kept in the cache);
/// larger ones are streamed.
pub const WHOLE_FILE_LIMIT: u64 = 1 << 20;
/// The read size when streaming a large file.
const STREAM_CHUNK: usize = 256 << 10;

/// A folder served as a web site.
pub struct StaticSite {
    root: PathBuf,
    cache: SiteCache,
}

/// What a request path names in the site.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A regular file inside the root.
    File(Arc<StaticFile>),
    /// A folder named without its trailing slash: redirect here.
    AddSlash,
    /// Nothing servable (missing, outside the root, or refused).
    Missing,
}

/// A file of the site as found on disk: its validators, type and (when
/// small) its bytes.
#[derive(Debug)]
pub struct StaticFile {
    path: PathBuf,
    len: u64,
    modified: SystemTime,
    /// Device, inode, size and mtime: a change to any means a new file.
    identity: (u64, u64, u64, i64, i64),
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_type: HeaderValue,
    /// The whole file, when it is at most [`WHOLE_FILE_LIMIT`].
    content: Option<Bytes>,
}

impl StaticFile {
    /// Reads what serving `path` needs; the bytes of a small file are read
    /// unless `previous` is the same file with its bytes already in hand.
    fn open(path: PathBuf, meta: &std::fs::Metadata, previous: Option<&StaticFile>) -> io::Result<StaticFile> {
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let identity = (meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let content = match previous.filter(|p| p.identity == identity && p.path == path) {
            Some(previous) => previous.content.clone(),
            None if meta.len() <= WHOLE_FILE_LIMIT => Some(read_exact_at(&File::open(&path)?, 0, meta.len() as usize)?),
            None => None,
        };
        let secs = modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(StaticFile {
            etag: header_value(&format!("\"{secs:x}-{:x}\"", meta.len())),
            last_modified: header_value(&httpdate::fmt_http_date(modified)),
            content_type: header_value(&content_type(&path)),
            content,
            path,
            len: meta.len(),
            modified,
            identity,
        })
    }

    /// Bytes held in memory for this file.
    pub fn cached_bytes(&self) -> usize {
        self.content.as_ref().map_or(0, Bytes::len)
    }
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
        Ok(StaticSite {
            root,
            cache: SiteCache::default(),
        })
    }

    /// Resolves a percent-decoded request path, from the cache when it was
    /// checked less than a second ago.
    pub fn lookup(&self, path: &str) -> Lookup {
        self.cache.get_or_resolve(path, |previous| self.resolve(path, previous))
    }

    /// Resolves a path on disk. `..` segments, backslashes, NUL and
    /// symlinks leading out of the root never resolve.
    fn resolve(&self, path: &str, previous: Option<&StaticFile>) -> Lookup {
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
        let (file, meta) = match std::fs::metadata(&real) {
            // `/a.txt/` names a folder that is not there.
            Ok(meta) if meta.is_file() && !path.ends_with('/') => (real, meta),
            Ok(meta) if meta.is_dir() && !path.ends_with('/') => return Lookup::AddSlash,
            Ok(meta) if meta.is_dir() => match std::fs::metadata(real.join("index.html")) {
                Ok(index) if index.is_file() => (real.join("index.html"), index),
                _ => return Lookup::Missing,
            },
            _ => return Lookup::Missing,
        };
        match StaticFile::open(file, &meta, previous) {
            Ok(file) => Lookup::File(Arc::new(file)),
            Err(e) => {
                log::error!("cannot read static file {path}: {e}");
                Lookup::Missing
            }
        }
    }

    /// The site's `404.html` with status 404 (a plain text one if absent).
    pub async fn not_found(&self, method: &Method) -> Response<Body> {
        let Lookup::File(page) = self.lookup("/404.html") else {
            return responses::error(StatusCode::NOT_FOUND, "no such page");
        };
        let mut response = serve_file(method, &HeaderMap::new(), &page).await;
        if response.status() == StatusCode::OK {
            *response.status_mut() = StatusCode::NOT_FOUND;
            for validator in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES] {
                response.headers_mut().remove(validator);
            }
        }
        response
    }
}

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

/// A header value from text we built (always valid; empty if not).
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
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
fn not_modified(request: &HeaderMap, etag: &HeaderValue, modified: SystemTime) -> bool {
    if let Some(tags) = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t.as_bytes() == etag.as_bytes());
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
fn requested_range(request: &HeaderMap, etag: &HeaderValue, last_modified: &HeaderValue, len: u64) -> RangeRequest {
    let Some(spec) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Whole;
    };
    if let Some(validator) = request.get(header::IF_RANGE) {
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
        for bad in [
            "/../etc/passwd",
            "/sub/../../x",
            "/a.txt\0",
            "/..\\a.txt",
            "/nope",
            "/a.txt/",
        ] {
            assert!(matches!(site.lookup(bad), Lookup::Missing), "{bad}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    /// A site for the property below: `a.txt`, `sub/` with `index.html` and
    /// `b.txt`, `empty/`, `in` → `sub` (a link inside), `up` → a folder
    /// outside holding `secret.txt`.
    struct Tree {
        base: PathBuf,
        site: StaticSite,
    }

    impl Tree {
        fn new() -> Tree {
            let base = std::env::temp_dir().join(format!("static-tree-{}", std::process::id()));
            let root = base.join("root");
            std::fs::create_dir_all(root.join("sub")).unwrap();
            std::fs::create_dir_all(root.join("empty")).unwrap();
            std::fs::create_dir_all(base.join("outside")).unwrap();
            for file in [
                "root/a.txt",
                "root/sub/index.html",
                "root/sub/b.txt",
                "outside/secret.txt",
            ] {
                std::fs::write(base.join(file), file).unwrap();
            }
            std::os::unix::fs::symlink("sub", root.join("in")).unwrap();
            std::os::unix::fs::symlink("../outside", root.join("up")).unwrap();
            let site = StaticSite::new(&root).unwrap();
            Tree { base, site }
        }

        /// What `path` should be, from the layout above alone: the file's
        /// name relative to the root, "/" to redirect, "" for missing.
        fn expected(path: &str) -> String {
            if path.contains(['\\', '\0']) {
                return String::new();
            }
            let mut at = String::new(); // "" is the root, else "a.txt", "sub", …
            for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
                at = match (at.as_str(), segment) {
                    ("", "a.txt" | "sub" | "empty") => segment.to_owned(),
                    ("", "in") => "sub".to_owned(),
                    ("sub", "index.html" | "b.txt") => format!("sub/{segment}"),
                    _ => return String::new(), // `..`, `up`, or nothing there
                };
            }
            let is_folder = matches!(at.as_str(), "" | "sub" | "empty");
            match (is_folder, path.ends_with('/')) {
                (false, false) => at,
                (false, true) => String::new(), // a file named as a folder
                (true, false) => "/".to_owned(),
                (true, true) if at == "sub" => "sub/index.html".to_owned(),
                (true, true) => String::new(), // the root and empty/ have no index.html
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    proptest::proptest! {
        /// Any path built from the names in the tree, dot segments, empty
        /// segments and backslashes resolves to what the layout says, and
        /// never to a file outside the root.
        #[test]
        fn lookups_resolve_as_the_layout_says(
            segments in proptest::collection::vec(
                proptest::sample::select(vec!["a.txt", "sub", "empty", "in", "up", "index.html", "b.txt",
                                              "secret.txt", "..", ".", "", "x\\y", "nope"]),
                0..6,
            ),
            slash in proptest::bool::ANY,
        ) {
            thread_local!(static TREE: Tree = Tree::new());
            let path = format!("/{}{}", segments.join("/"), if slash { "/" } else { "" });
            TREE.with(|tree| {
                let got = match tree.site.lookup(&path) {
                    Lookup::File(file) => {
                        proptest::prop_assert!(file.path.starts_with(&tree.site.root), "{path} left the root");
                        file.path.strip_prefix(&tree.site.root).unwrap().to_string_lossy().into_owned()
                    }
                    Lookup::AddSlash => "/".to_owned(),
                    Lookup::Missing => String::new(),
                };
                proptest::prop_assert_eq!(got, Tree::expected(&path), "{}", path);
                Ok(())
            })?;
        }
    }
}
