//! `mini_frame`: the tiny web framework of seed 004, as a stateful app.
//!
//! Seed 004 ("Python3&WSGI") grows a `mini_frame.application` over four
//! versions; this crate ports the routes of all of them:
//!
//! - `/index.py` and `/center.py` render `index.html` / `center.html` from
//!   the templates folder, replacing every `{%content%}` with a line of text
//!   (the fourth version);
//! - `/login.py`, `/register.py` and `/profile.py` answer with a welcome line
//!   stamped with `time.ctime()` (the second version);
//! - anything else answers `Hello World! 我爱你中国....` (the third version).
//!
//! Every page is `text/html;charset=utf-8`. The templates folder is
//! `$MINI_FRAME_TEMPLATES`, or else `./html/templates` below the directory
//! the host was started in; it is fixed once, when the host loads the app
//! (seed 001's "the callable is an instance" form), and each template is read
//! again on every request, so edits show up without a restart. A missing
//! template makes the request fail, so the host answers 500 and logs which
//! file was missing.
//!
//! Exported as `application`: `host ./libmini_frame.so:application`.

use std::path::{Path, PathBuf};
use std::{env, fs};

use chrono::Local;
use plugin_api::{export_app, App, AppError, Body, Environ, StartResponse};

/// The environment variable naming the templates folder.
const TEMPLATES_VAR: &str = "MINI_FRAME_TEMPLATES";

/// The templates folder used when [`TEMPLATES_VAR`] is not set, relative to
/// the current directory.
const DEFAULT_TEMPLATES: &str = "html/templates";

/// The placeholder a template's content goes into.
const PLACEHOLDER: &str = "{%content%}";

/// Every page's content type, as in seed 004.
const CONTENT_TYPE: &str = "text/html;charset=utf-8";

/// The framework: knows where its templates are and routes by `PATH_INFO`.
pub struct MiniFrame {
    /// The folder holding `index.html` and `center.html`.
    templates: PathBuf,
}

impl MiniFrame {
    /// A framework reading its templates from `templates`.
    pub fn new(templates: impl Into<PathBuf>) -> Self {
        Self {
            templates: templates.into(),
        }
    }

    /// A framework reading its templates from `$MINI_FRAME_TEMPLATES`, or
    /// else from `./html/templates` (made absolute, so a later change of the
    /// current directory does not move it).
    pub fn from_env() -> Self {
        let templates = match env::var_os(TEMPLATES_VAR) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => env::current_dir()
                .map(|cwd| cwd.join(DEFAULT_TEMPLATES))
                .unwrap_or_else(|_| PathBuf::from(DEFAULT_TEMPLATES)),
        };
        Self::new(templates)
    }

    /// The page for `path` (a `PATH_INFO`), or why it could not be made.
    pub fn page(&self, path: &str) -> Result<String, AppError> {
        Ok(match path {
            "/index.py" => self.render("index.html", "本月详细信息分析如下...")?,
            "/center.py" => self.render("center.html", "数据来源于数据库...")?,
            "/login.py" => format!("i----login--welcome hahahh to our website.......time:{}", ctime()),
            "/register.py" => format!("-----register---welcome hahahh to our website.......time:{}", ctime()),
            "/profile.py" => format!("-----profile----welcome hahahh to our website.......time:{}", ctime()),
            _ => "Hello World! 我爱你中国....".to_owned(),
        })
    }

    /// Reads template `name` and puts `content` in place of `{%content%}`.
    fn render(&self, name: &str, content: &str) -> Result<String, AppError> {
        let path = self.templates.join(name);
        let template = fs::read_to_string(&path).map_err(|error| missing_template(&path, &error))?;
        Ok(template.replace(PLACEHOLDER, content))
    }
}

impl App for MiniFrame {
    fn call(&self, environ: &Environ<'_>, start_response: &mut StartResponse<'_>) -> Result<Body, AppError> {
        // Build the page first: a failure then leaves the response unstarted
        // and the host free to answer 500.
        let page = self.page(environ.path_info())?;
        start_response.start("200 OK", &[("Content-Type", CONTENT_TYPE)])?;
        Ok(page.into())
    }
}

/// The error for a template that could not be read, naming the file and how
/// to point the app at another folder.
fn missing_template(path: &Path, error: &std::io::Error) -> AppError {
    format!(
        "mini_frame cannot read template {}: {error} (set {TEMPLATES_VAR} to the folder holding index.html and center.html)",
        path.display()
    )
    .into()
}

/// The local time as Python's `time.ctime()` writes it.
fn ctime() -> String {
    Local::now().format("%a %b %e %H:%M:%S %Y").to_string()
}

export_app!(application = MiniFrame::from_env());

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty folder for one test.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = env::temp_dir().join(format!("mini_frame-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    #[test]
    fn renders_templates_with_content() {
        let dir = scratch_dir("render");
        fs::write(dir.join("index.html"), "<p>{%content%}</p><p>{%content%}</p>").expect("write template");
        fs::write(dir.join("center.html"), "<div>{%content%}</div>").expect("write template");
        let frame = MiniFrame::new(&dir);

        let index = frame.page("/index.py").expect("index renders");
        assert_eq!(index, "<p>本月详细信息分析如下...</p><p>本月详细信息分析如下...</p>");
        let center = frame.page("/center.py").expect("center renders");
        assert_eq!(center, "<div>数据来源于数据库...</div>");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_template_is_an_error_naming_path_and_variable() {
        let dir = scratch_dir("missing");
        let frame = MiniFrame::new(&dir);
        let error = frame.page("/center.py").expect_err("no template").to_string();
        assert!(
            error.contains(&dir.join("center.html").display().to_string()),
            "{error}"
        );
        assert!(error.contains(TEMPLATES_VAR), "{error}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn fixed_routes_need_no_templates() {
        let frame = MiniFrame::new("/nonexistent/templates");
        let login = frame.page("/login.py").expect("login");
        assert!(
            login.starts_with("i----login--welcome hahahh to our website.......time:"),
            "{login}"
        );
        assert!(frame
            .page("/register.py")
            .expect("register")
            .starts_with("-----register---"));
        assert!(frame
            .page("/profile.py")
            .expect("profile")
            .starts_with("-----profile----"));
        assert_eq!(
            frame.page("/other.py").expect("fallback"),
            "Hello World! 我爱你中国...."
        );
        assert_eq!(frame.page("/").expect("fallback"), "Hello World! 我爱你中国....");
    }
}
