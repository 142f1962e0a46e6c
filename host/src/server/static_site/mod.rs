//! The static site: request paths resolved safely under the root
//! ([`StaticSite::lookup`]), and the files found there served with their
//! validators and ranges ([`serve_file`]).
//!
//! - [`file`]: a file as found on disk (validators, type, small files' bytes);
//! - [`cache`]: what paths resolved to, checked against the disk again
//!   once a second old;
//! - [`conditional`]: `If-None-Match` / `If-Modified-Since` (304) and
//!   single byte ranges (206 / 416);
//! - [`encoded`]: precompressed forms (`x.br`, `x.zst`, `x.gz`) and
//!   `Accept-Encoding`;
//! - [`serve`]: the response (small files from memory, large ones sent
//!   with `sendfile` or read as they go out).

mod cache;
mod conditional;
mod encoded;
mod file;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use hyper::header::{self, HeaderMap};
use hyper::{Method, Response, StatusCode};

use crate::server::http::body::Body;
use crate::server::http::responses;
use cache::SiteCache;
pub use file::StaticFile;
pub use serve::serve_file;

/// A folder served as a web site.
pub struct StaticSite {
    /// The folder as configured (absolute): perhaps a symlink that a
    /// deploy switches, as in `current -> releases/42`.
    configured: PathBuf,
    /// Where it led when last resolved: every path served lies inside.
    root: RwLock<PathBuf>,
    /// When (ms after `created`) the folder is next resolved again.
    next_root_check: AtomicU64,
    created: Instant,
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

impl StaticSite {
    /// A site rooted at `root`, which must be an existing folder.
    pub fn new(root: &Path) -> Result<Self, String> {
        let configured = std::path::absolute(root).map_err(|e| {
            format!(
                "static folder {} cannot be used: {e}; pass --static-dir DIR or --no-static",
                root.display()
            )
        })?;
        let resolved = resolve_root(&configured)?;
        Ok(StaticSite {
            configured,
            root: RwLock::new(resolved),
            next_root_check: AtomicU64::new(cache::FRESH_FOR.as_millis() as u64),
            created: Instant::now(),
            cache: SiteCache::default(),
        })
    }

    /// Resolves a percent-decoded request path, from the cache when it was
    /// checked less than a second before `now` (the request's own reading
    /// of the clock).
    pub fn lookup(&self, path: &str, now: Instant) -> Lookup {
        self.follow_root(now);
        self.cache
            .get_or_resolve(path, now, |previous| self.resolve(path, previous))
    }

    /// At most once per [`cache::FRESH_FOR`], resolves the configured
    /// folder again, as nginx does at each open: when a deploy switched
    /// its symlink to another release, that release is served from then
    /// on, and nothing of the old one is remembered.
    fn follow_root(&self, now: Instant) {
        let at = now.saturating_duration_since(self.created).as_millis() as u64;
        let due = self.next_root_check.load(Ordering::Relaxed);
        let next = at + cache::FRESH_FOR.as_millis() as u64;
        if at < due
            || self
                .next_root_check
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return; // not due, or another thread does it
        }
        let resolved = match resolve_root(&self.configured) {
            Ok(resolved) => resolved,
            Err(e) => {
                log::error!("{e}; still serving the folder it led to before");
                return;
            }
        };
        let mut root = self.root.write().unwrap_or_else(|e| e.into_inner());
        if *root != resolved {
            log::info!(
                "static folder {} now leads to {} (it led to {}): serving that",
                self.configured.display(),
                resolved.display(),
                root.display()
            );
            *root = resolved;
            self.cache.clear();
        }
    }

    fn root(&self) -> PathBuf {
        self.root.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lookups answered from the cache, and ones that went to the disk.
    pub fn cache_counts(&self) -> (u64, u64) {
        self.cache.counts()
    }

    /// Resolves a path on disk. `..` segments, backslashes, NUL and
    /// symlinks leading out of the root never resolve.
    fn resolve(&self, path: &str, previous: Option<&StaticFile>) -> Lookup {
        if path.contains(['\\', '\0']) {
            return Lookup::Missing;
        }
        let root = self.root();
        let mut candidate = root.clone();
        for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
            if segment == ".." {
                return Lookup::Missing;
            }
            candidate.push(segment);
        }
        let Ok(real) = candidate.canonicalize() else {
            return Lookup::Missing;
        };
        if !real.starts_with(&root) {
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
        match StaticFile::open(file.clone(), &meta, previous) {
            Ok(mut found) => {
                found.variants = variants(&root, &file, &found, previous);
                Lookup::File(Arc::new(found))
            }
            Err(e) => {
                log::error!("cannot read static file {path}: {e}");
                Lookup::Missing
            }
        }
    }

    /// The site's `404.html` with status 404 (a plain text one if absent).
    /// `now` is the request's reading of the clock.
    pub fn not_found(&self, method: &Method, sendfile: bool, now: Instant) -> Response<Body> {
        let Lookup::File(page) = self.lookup("/404.html", now) else {
            return responses::error(StatusCode::NOT_FOUND, "no such page");
        };
        let mut response = serve_file(method, &HeaderMap::new(), &page, sendfile);
        if response.status() == StatusCode::OK {
            *response.status_mut() = StatusCode::NOT_FOUND;
            for validator in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES] {
                response.headers_mut().remove(validator);
            }
        }
        response
    }
}

/// The precompressed forms of `original` (at `path`) found beside it,
/// inside the root; `previous` lends the bytes of unchanged ones.
fn variants(
    root: &Path,
    path: &Path,
    original: &StaticFile,
    previous: Option<&StaticFile>,
) -> Vec<(encoded::Encoding, Arc<StaticFile>)> {
    let mut found = Vec::new();
    for encoding in encoded::Encoding::ALL {
        let mut name = path.as_os_str().to_owned();
        name.push(encoding.suffix());
        let Ok(real) = Path::new(&name).canonicalize() else {
            continue;
        };
        let meta = match std::fs::metadata(&real) {
            Ok(meta) if meta.is_file() && real.starts_with(root) => meta,
            _ => continue,
        };
        let earlier = previous.and_then(|p| p.variant(encoding)).map(|v| &**v);
        match StaticFile::open(real, &meta, earlier) {
            Ok(variant) => found.push((encoding, Arc::new(variant.into_variant_of(original, encoding)))),
            Err(e) => log::error!("cannot read {}: {e}", Path::new(&name).display()),
        }
    }
    found
}

/// Where `configured` leads, which must be a folder.
fn resolve_root(configured: &Path) -> Result<PathBuf, String> {
    let root = configured.canonicalize().map_err(|e| {
        format!(
            "static folder {} cannot be used: {e}; pass --static-dir DIR or --no-static",
            configured.display()
        )
    })?;
    if !root.is_dir() {
        return Err(format!(
            "static folder {} is not a folder; pass --static-dir DIR",
            configured.display()
        ));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_never_leave_the_root() {
        let root = std::env::temp_dir().join(format!("static-site-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), "x").unwrap();
        std::fs::write(root.join("a.txt"), "x").unwrap();
        let site = StaticSite::new(&root).unwrap();
        assert!(matches!(site.lookup("/a.txt", Instant::now()), Lookup::File(..)));
        assert!(matches!(site.lookup("/sub", Instant::now()), Lookup::AddSlash));
        assert!(matches!(site.lookup("/sub/", Instant::now()), Lookup::File(..)));
        for bad in [
            "/../etc/passwd",
            "/sub/../../x",
            "/a.txt\0",
            "/..\\a.txt",
            "/nope",
            "/a.txt/",
        ] {
            assert!(matches!(site.lookup(bad, Instant::now()), Lookup::Missing), "{bad}");
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
                let got = match tree.site.lookup(&path, Instant::now()) {
                    Lookup::File(file) => {
                        proptest::prop_assert!(file.path.starts_with(tree.site.root()), "{path} left the root");
                        file.path.strip_prefix(tree.site.root()).unwrap().to_string_lossy().into_owned()
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
