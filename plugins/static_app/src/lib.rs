//! `static_app`: a demo app that serves the files of one folder itself.
//!
//! A port of seed 000's `app.py` (`python wsgiserver.py app:run`): `/` is
//! `index.html`; `.css`, `.js` and `.html` files get their content type;
//! anything else is `text/plain` sent as an attachment named after the file;
//! a missing file gets the folder's `404.html`. Unlike the seed, a missing
//! file is answered with status `404 Not Found` (the seed said `200 OK`), and
//! no request can read outside the folder: paths with a `..` segment, a
//! backslash or a NUL are refused, and the file finally opened must lie
//! inside the folder after every symlink is resolved. Files go out as a
//! file body ([`Body::file`], WSGI's `wsgi.file_wrapper`), which the host
//! sends from the page cache.
//!
//! The folder is `$STATIC_APP_ROOT`, or else `./html` below the directory the
//! host was started in, resolved once when the host loads the app.
//!
//! Exported as `run`, the seed's name: `host ./libstatic_app.so:run`.

use std::io;
use std::path::{Path, PathBuf};
use std::{env, fs};

use plugin_api::{export_app, App, AppError, Body, Environ, StartResponse};

/// The environment variable naming the folder to serve.
const ROOT_VAR: &str = "STATIC_APP_ROOT";

/// The folder served when [`ROOT_VAR`] is not set, relative to the current
/// directory.
const DEFAULT_ROOT: &str = "html";

/// The page sent with every 404, looked up in the served folder.
const NOT_FOUND_PAGE: &str = "404.html";

/// The body of a 404 when the folder has no `404.html` either.
const FALLBACK_NOT_FOUND: &str = "<!DOCTYPE html>\n<title>404 Not Found</title>\n<h1>404 Not Found</h1>\n";

/// Serves the files below one folder.
pub struct StaticFiles {
    /// The folder, canonicalized; or why it could not be, reported with
    /// every request.
    root: Result<PathBuf, String>,
}

impl StaticFiles {
    /// Serves the folder `root` (which must exist).
    pub fn new(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        let root = fs::canonicalize(root).map_err(|error| {
            format!(
                "static_app cannot serve {}: {error} (set {ROOT_VAR} to the folder to serve)",
                root.display()
            )
        });
        Self { root }
    }

    /// Serves `$STATIC_APP_ROOT`, or else `./html`.
    pub fn from_env() -> Self {
        match env::var_os(ROOT_VAR) {
            Some(root) if !root.is_empty() => Self::new(PathBuf::from(root)),
            _ => Self::new(DEFAULT_ROOT),
        }
    }

    /// What to answer for `path_info`.
    pub fn respond(&self, path_info: &str) -> Result<Response, AppError> {
        let root = self.root.as_deref().map_err(|error| error.clone())?;
        let Some(name) = relative_path(path_info) else {
            return not_found(root);
        };
        match open_inside(root, &name)? {
            Some(file) => Ok(Response {
                status: "200 OK",
                content_type: content_type(&name),
                disposition: disposition(&name),
                body: Content::File(file),
            }),
            None => not_found(root),
        }
    }
}

impl App for StaticFiles {
    fn call(&self, environ: &Environ<'_>, start_response: &mut StartResponse<'_>) -> Result<Body, AppError> {
        let response = self.respond(environ.path_info())?;
        let content_length = response.body.byte_count()?.to_string();
        let mut headers = vec![
            ("Content-Type", response.content_type),
            ("Content-Length", content_length.as_str()),
        ];
        if let Some(disposition) = &response.disposition {
            headers.push(("Content-Disposition", disposition));
        }
        start_response.start(response.status, &headers)?;
        Ok(match response.body {
            Content::File(file) => Body::file(file)?,
            Content::Page(page) => page.into(),
        })
    }
}

/// What a response sends.
#[derive(Debug)]
pub enum Content {
    /// A file of the folder, opened.
    File(fs::File),
    /// A built-in page.
    Page(&'static str),
}

impl Content {
    /// Its length in bytes.
    pub fn byte_count(&self) -> io::Result<u64> {
        match self {
            Content::File(file) => Ok(file.metadata()?.len()),
            Content::Page(page) => Ok(page.len() as u64),
        }
    }
}

/// A response, before it is handed to `start_response`.
#[derive(Debug)]
pub struct Response {
    /// The status line, e.g. `200 OK`.
    pub status: &'static str,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The `Content-Disposition`, for files sent as downloads.
    pub disposition: Option<String>,
    /// What to send.
    pub body: Content,
}

/// The 404 response: the folder's `404.html`, or a built-in page.
fn not_found(root: &Path) -> Result<Response, AppError> {
    let body = open_inside(root, NOT_FOUND_PAGE)?.map_or(Content::Page(FALLBACK_NOT_FOUND), Content::File);
    Ok(Response {
        status: "404 Not Found",
        content_type: "text/html",
        disposition: None,
        body,
    })
}

/// Turns `PATH_INFO` into a path relative to the served folder (`index.html`
/// for `/` and for any path ending in `/`), or `None` for a path that might
/// reach outside it: one with a `..` segment, a backslash or a NUL.
fn relative_path(path_info: &str) -> Option<String> {
    if path_info.contains(['\\', '\0']) {
        return None;
    }
    let mut segments = Vec::new();
    for segment in path_info.split('/') {
        match segment {
            ".." => return None,
            "" | "." => {}
            segment => segments.push(segment),
        }
    }
    if path_info.is_empty() || path_info.ends_with('/') {
        segments.push("index.html");
    }
    Some(segments.join("/"))
}

/// Opens `root/name` (`root` being canonical), or `None` if there is no such
/// regular file inside `root`: a path that cannot be resolved, or that leads
/// outside `root` through a symlink, counts as missing. A file that exists
/// but cannot be read is an error (so a 500, not a misleading 404).
fn open_inside(root: &Path, name: &str) -> Result<Option<fs::File>, AppError> {
    let Ok(path) = fs::canonicalize(root.join(name)) else {
        return Ok(None);
    };
    if !path.starts_with(root) || !path.is_file() {
        return Ok(None);
    }
    match fs::File::open(&path) {
        Ok(file) => Ok(Some(file)),
        // Removed since it was resolved.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("static_app cannot read {}: {error}", path.display()).into()),
    }
}

/// The seed's content types, chosen by the file name's ending.
fn content_type(name: &str) -> &'static str {
    if name.ends_with(".css") {
        "text/css"
    } else if name.ends_with(".js") {
        "text/javascript"
    } else if name.ends_with(".html") {
        "text/html"
    } else {
        "text/plain"
    }
}

/// `attachment; filename=…` for the files the seed sends as downloads (all
/// but `.css`, `.js` and `.html`). The name is quoted unless it is a plain
/// token, and characters that cannot appear in a quoted header value are
/// replaced by `_`.
fn disposition(name: &str) -> Option<String> {
    if content_type(name) != "text/plain" {
        return None;
    }
    let basename = name.rsplit('/').next().unwrap_or(name);
    let is_token = !basename.is_empty()
        && basename
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$&+-.^_`|~".contains(c));
    if is_token {
        return Some(format!("attachment; filename={basename}"));
    }
    let quoted: String = basename
        .chars()
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(format!("attachment; filename=\"{quoted}\""))
}

export_app!(run = StaticFiles::from_env());

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What a response's body holds.
    fn bytes(content: Content) -> Vec<u8> {
        match content {
            Content::File(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).expect("read the file");
                bytes
            }
            Content::Page(page) => page.as_bytes().to_vec(),
        }
    }

    /// A fresh folder for one test: `site/` with a few files, and a
    /// `secret.txt` beside it that must never be served.
    fn scratch_site(name: &str) -> (PathBuf, PathBuf) {
        let base = env::temp_dir().join(format!("static_app-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let site = base.join("site");
        fs::create_dir_all(site.join("docs")).expect("create scratch site");
        fs::write(site.join("index.html"), "<h1>home</h1>").expect("write");
        fs::write(site.join("404.html"), "<h1>404 Not Found</h1>").expect("write");
        fs::write(site.join("style.css"), "body {}").expect("write");
        fs::write(site.join("script.js"), "1;").expect("write");
        fs::write(site.join("docs/index.html"), "<h1>docs</h1>").expect("write");
        fs::write(site.join("notes.txt"), "notes").expect("write");
        fs::write(base.join("secret.txt"), "secret").expect("write");
        (base, site)
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("/").as_deref(), Some("index.html"));
        assert_eq!(relative_path("").as_deref(), Some("index.html"));
        assert_eq!(relative_path("/style.css").as_deref(), Some("style.css"));
        assert_eq!(relative_path("/docs/").as_deref(), Some("docs/index.html"));
        assert_eq!(relative_path("//etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(relative_path("/./a/./b").as_deref(), Some("a/b"));
        assert_eq!(relative_path("/../secret.txt"), None);
        assert_eq!(relative_path("/docs/../../secret.txt"), None);
        assert_eq!(relative_path("/..\\secret.txt"), None);
        assert_eq!(relative_path("/a\0b"), None);
    }

    #[test]
    fn serves_files_with_the_seeds_types() {
        let (base, site) = scratch_site("types");
        let app = StaticFiles::new(&site);

        let index = app.respond("/").expect("index");
        assert_eq!((index.status, index.content_type), ("200 OK", "text/html"));
        assert_eq!(bytes(index.body), b"<h1>home</h1>");
        assert_eq!(app.respond("/style.css").expect("css").content_type, "text/css");
        assert_eq!(app.respond("/script.js").expect("js").content_type, "text/javascript");
        assert_eq!(bytes(app.respond("/docs/").expect("docs").body), b"<h1>docs</h1>");

        let notes = app.respond("/notes.txt").expect("txt");
        assert_eq!((notes.status, notes.content_type), ("200 OK", "text/plain"));
        assert_eq!(notes.disposition.as_deref(), Some("attachment; filename=notes.txt"));
        assert_eq!(index.disposition, None);
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn missing_and_outside_files_are_404() {
        let (base, site) = scratch_site("outside");
        let app = StaticFiles::new(&site);
        for path in [
            "/nope.html",
            "/docs",
            "/../secret.txt",
            "/docs/../../secret.txt",
            "/..%2fsecret.txt",
            "/..\\secret.txt",
            "/index.html/x",
            "/secret.txt\0",
        ] {
            let response = app.respond(path).expect("a response");
            assert_eq!(response.status, "404 Not Found", "{path}");
            assert_eq!(bytes(response.body), b"<h1>404 Not Found</h1>", "{path}");
        }
        let _ = fs::remove_dir_all(&base);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_are_404() {
        let (base, site) = scratch_site("symlink");
        std::os::unix::fs::symlink(base.join("secret.txt"), site.join("link.txt")).expect("symlink");
        let app = StaticFiles::new(&site);
        assert_eq!(app.respond("/link.txt").expect("a response").status, "404 Not Found");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn without_404_page_a_built_in_one_is_used() {
        let (base, site) = scratch_site("no404");
        fs::remove_file(site.join("404.html")).expect("remove");
        let response = StaticFiles::new(&site).respond("/nope").expect("a response");
        assert_eq!(response.status, "404 Not Found");
        assert_eq!(bytes(response.body), FALLBACK_NOT_FOUND.as_bytes());
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn a_missing_root_is_an_error_naming_the_variable() {
        let error = StaticFiles::new("/nonexistent/static_app/root")
            .respond("/")
            .expect_err("no root");
        assert!(error.to_string().contains(ROOT_VAR), "{error}");
    }

    #[test]
    fn odd_download_names_are_quoted_and_cleaned() {
        assert_eq!(
            disposition("a b\"c\r\n.bin").as_deref(),
            Some("attachment; filename=\"a b_c__.bin\"")
        );
        assert_eq!(
            disposition("dir/报告.txt").as_deref(),
            Some("attachment; filename=\"__.txt\"")
        );
        assert_eq!(disposition("page.html"), None);
    }
}
