//! [`StaticFile`]: a file of the site as found on disk, with what serving
//! it needs (validators, Content-Type) and its bytes: read into memory when
//! small, kept open when large (see [`crate::open_file`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;

use super::encoded::Encoding;
use crate::open_file::FileContent;

/// A file of the site as found on disk: its validators, type and bytes.
#[derive(Debug)]
pub struct StaticFile {
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) modified: SystemTime,
    /// Device, inode, size and mtime: a change to any means a new file.
    pub(super) identity: (u64, u64, u64, i64, i64),
    pub(super) etag: HeaderValue,
    pub(super) last_modified: HeaderValue,
    pub(super) content_type: HeaderValue,
    /// Its bytes: in memory when small, else the open file.
    pub(super) content: FileContent,
    /// Precompressed forms found beside it (`x.br`, `x.zst`, `x.gz`).
    pub(super) variants: Vec<(Encoding, std::sync::Arc<StaticFile>)>,
}

impl StaticFile {
    /// Reads what serving `path` needs: the bytes of a small file are read,
    /// a large one is kept open, unless `previous` is the same file with
    /// its bytes already in hand.
    pub(super) fn open(
        path: PathBuf,
        meta: &std::fs::Metadata,
        previous: Option<&StaticFile>,
    ) -> io::Result<StaticFile> {
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let identity = (meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let content = match previous.filter(|p| p.identity == identity && p.path == path) {
            Some(previous) => previous.content.clone(),
            None => FileContent::of(File::open(&path)?, meta.len())?,
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
            variants: Vec::new(),
        })
    }

    /// This file as the `encoding` form of `original`: the original's
    /// Content-Type, and an ETag of its own that names the encoding.
    pub(super) fn into_variant_of(mut self, original: &StaticFile, encoding: Encoding) -> StaticFile {
        self.content_type = original.content_type.clone();
        let etag = self.etag.to_str().unwrap_or("\"\"").trim_end_matches('"');
        self.etag = header_value(&format!("{etag}-{}\"", encoding.token()));
        self
    }

    /// The precompressed form in `encoding`, if there is one.
    pub(super) fn variant(&self, encoding: Encoding) -> Option<&std::sync::Arc<StaticFile>> {
        self.variants.iter().find(|(e, _)| *e == encoding).map(|(_, file)| file)
    }

    /// Bytes held in memory for this file and its precompressed forms (an
    /// open file's are the page cache's).
    pub fn cached_bytes(&self) -> usize {
        self.content.memory() + self.variants.iter().map(|(_, v)| v.cached_bytes()).sum::<usize>()
    }
}

/// A header value from text we built (always valid; empty if not).
pub(super) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

/// The Content-Type for `path`'s extension (UTF-8 for text).
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
