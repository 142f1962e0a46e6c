//! An app mounted at a URL prefix, an exact path or a suffix pattern, and
//! how its mount splits a path into `SCRIPT_NAME` and `PATH_INFO`.

use std::sync::Arc;

use super::call_policy::CallPolicy;
use crate::plugin::loader::LoadedApp;
use crate::server::observe::metrics::MountIndex;

/// An app at a URL prefix or suffix pattern.
pub struct MountedApp {
    /// `/`, e.g. `/time` (no trailing slash), or e.g. `*.py`.
    pub prefix: Arc<str>,
    /// The app.
    pub app: Arc<LoadedApp>,
    /// Where its calls run.
    pub policy: Arc<CallPolicy>,
    /// Its requests' counters.
    pub counters: MountIndex,
}

/// `SCRIPT_NAME` for a mount prefix (empty at the root and for suffix
/// patterns, whose app sees the whole path).
pub fn script_name(prefix: &str) -> &str {
    if prefix == "/" || prefix.starts_with('*') {
        ""
    } else {
        prefix
    }
}

/// `PATH_INFO`, without a copy where it can be had: the end of the
/// request's path as it came (most requests), or the path percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathInfo {
    /// The last this many bytes of the request's path.
    Tail(usize),
    /// A decoded path's.
    Decoded(Box<str>),
}

impl PathInfo {
    /// `path_info`, the end of the request's path: of the path as it
    /// came if `as_it_came` (nothing in it was percent-encoded), else of
    /// the decoded one.
    pub fn of(path_info: &str, as_it_came: bool) -> PathInfo {
        match as_it_came {
            true => PathInfo::Tail(path_info.len()),
            false => PathInfo::Decoded(path_info.into()),
        }
    }

    /// The text, given the request's path as it came.
    pub fn as_str<'a>(&'a self, target_path: &'a str) -> &'a str {
        match self {
            PathInfo::Tail(len) => &target_path[target_path.len().saturating_sub(*len)..],
            PathInfo::Decoded(text) => text,
        }
    }
}
