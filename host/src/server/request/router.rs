//! Which handler a request goes to: the seeds' rule (a GET or HEAD naming a
//! file under the static folder is served from disk), then the most
//! specific app: one mounted at exactly the request's path, else one at a
//! matching suffix pattern such as `*.py`, else at the longest matching
//! prefix (nginx orders its `location = /x`, regex and prefix locations
//! the same way); else the 404 page.

use std::sync::Arc;
use std::time::Instant;

use hyper::Method;

use crate::server::app_gateway::mount::MountedApp;
use crate::server::static_site::{Lookup, StaticFile, StaticSite};

/// The routing table.
pub struct Router {
    mounts: Vec<Arc<MountedApp>>,
    site: Option<StaticSite>,
}

/// Where one request goes (`'r`: the router's, `'p`: the path's).
pub enum Route<'r, 'p> {
    /// A file of the static site.
    File(Arc<StaticFile>),
    /// A folder asked for without its trailing slash.
    AddSlash,
    /// An app, with the path split into `SCRIPT_NAME` and `PATH_INFO`.
    App {
        /// The mount.
        mount: &'r Arc<MountedApp>,
        /// `PATH_INFO`.
        path_info: &'p str,
    },
    /// A file or folder of the static site, with a method it does not
    /// serve (and no app mounted there): 405, or the `Allow` of OPTIONS.
    StaticOnly,
    /// Nothing: the 404 page.
    NotFound,
}

impl Router {
    /// A router; a prefix naming the whole path wins, then suffix patterns
    /// are tried (longest first), then prefixes, longest first.
    pub fn new(mut mounts: Vec<Arc<MountedApp>>, site: Option<StaticSite>) -> Self {
        sort_mounts(&mut mounts, |m| &m.prefix);
        Router { mounts, site }
    }

    /// The static site, if one is served.
    pub fn site(&self) -> Option<&StaticSite> {
        self.site.as_ref()
    }

    /// Routes a request by method and percent-decoded path; `now` is the
    /// request's reading of the clock (the static cache's freshness).
    pub fn route<'r, 'p>(&'r self, method: &Method, path: &'p str, now: Instant) -> Route<'r, 'p> {
        let readable = method == Method::GET || method == Method::HEAD;
        if let (Some(site), true) = (&self.site, readable) {
            match site.lookup(path, now) {
                Lookup::File(file) => return Route::File(file),
                Lookup::AddSlash => return Route::AddSlash,
                Lookup::Missing => {}
            }
        }
        if let Some((mount, path_info)) = choose(&self.mounts, |m| &m.prefix, path) {
            return Route::App { mount, path_info };
        }
        let on_site = |site: &StaticSite| !matches!(site.lookup(path, now), Lookup::Missing);
        if !readable && self.site.as_ref().is_some_and(on_site) {
            return Route::StaticOnly;
        }
        Route::NotFound
    }
}

/// Suffix patterns first (longest first), then prefixes, longest first.
fn sort_mounts<T>(mounts: &mut [T], prefix: impl Fn(&T) -> &str) {
    mounts.sort_by_key(|m| (!prefix(m).starts_with('*'), std::cmp::Reverse(prefix(m).len())));
}

/// The mount that takes `path` (of `mounts`, in [`sort_mounts`]' order),
/// and its `PATH_INFO`: one mounted at exactly `path` first, then the
/// first that matches.
fn choose<'m, 'p, T>(mounts: &'m [T], prefix: impl Fn(&T) -> &str, path: &'p str) -> Option<(&'m T, &'p str)> {
    let exact = mounts.iter().find(|m| prefix(m) == path);
    exact
        .into_iter()
        .chain(mounts)
        .find_map(|m| Some((m, strip_mount(prefix(m), path)?)))
}

/// `PATH_INFO` if `path` lies under `prefix` on a segment boundary, or
/// ends with the suffix of a `*` pattern (then the whole path).
fn strip_mount<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    if let Some(suffix) = prefix.strip_prefix('*') {
        return path.ends_with(suffix).then_some(path);
    }
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::app_gateway::mount::script_name;

    #[test]
    fn mounts_match_on_segment_boundaries() {
        assert_eq!(strip_mount("/time", "/time"), Some(""));
        assert_eq!(strip_mount("/time", "/time/now"), Some("/now"));
        assert_eq!(strip_mount("/time", "/timer"), None);
        assert_eq!(strip_mount("/", "/anything"), Some("/anything"));
        assert_eq!(script_name("/"), "");
        assert_eq!(script_name("/time"), "/time");
        assert_eq!(strip_mount("*.py", "/index.py"), Some("/index.py"));
        assert_eq!(strip_mount("*.py", "/index.pyc"), None);
        assert_eq!(script_name("*.py"), "");
    }

    #[test]
    fn a_mount_naming_the_whole_path_beats_a_suffix_pattern_which_beats_prefixes() {
        let mut mounts = ["/", "*.py", "/ctime.py", "/docs"];
        sort_mounts(&mut mounts, |m| m);
        let routed = |path: &str| match choose(&mounts, |m| m, path) {
            Some((mount, path_info)) => format!("{mount} {path_info}"),
            None => "none".to_owned(),
        };
        assert_eq!(routed("/ctime.py"), "/ctime.py ");
        assert_eq!(routed("/index.py"), "*.py /index.py");
        assert_eq!(routed("/docs/a.py"), "*.py /docs/a.py");
        assert_eq!(routed("/docs/a"), "/docs /a");
        assert_eq!(routed("/x"), "/ /x");
    }

    proptest::proptest! {
        /// `SCRIPT_NAME + PATH_INFO` is the path, and a mount takes a path
        /// exactly when the path is the prefix or goes on below it.
        #[test]
        fn script_name_and_path_info_rebuild_the_path(
            prefix in "(/[a-c]{1,3}){0,2}",
            path in "(/[a-c]{0,3}){0,4}/?",
        ) {
            let prefix = if prefix.is_empty() { "/".to_owned() } else { prefix };
            let below = path == prefix || path.starts_with(&format!("{prefix}/")) || prefix == "/";
            match strip_mount(&prefix, &path) {
                Some(path_info) => {
                    proptest::prop_assert!(below);
                    proptest::prop_assert_eq!(format!("{}{path_info}", script_name(&prefix)), path.clone());
                    proptest::prop_assert!(path_info.is_empty() || path_info.starts_with('/'));
                }
                None => proptest::prop_assert!(!below, "{} not under {}", path, prefix),
            }
        }
    }
}
