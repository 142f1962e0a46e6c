//! The app paths this worker must not call its app for: the master
//! quarantines a path whose requests keep crashing workers (or a whole
//! mount, when the crashes wander from path to path), and each worker
//! answers it 503 until the quarantine ends.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a quarantine covers: one path of a mount, or all of the mount.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    /// The mount prefix (`/` for the app at the root).
    pub mount: String,
    /// One `PATH_INFO`; `None` for every path of the mount.
    pub path: Option<String>,
}

impl Scope {
    /// Whether a request to `mount` with `PATH_INFO` `path` falls in it.
    pub fn covers(&self, mount: &str, path: &str) -> bool {
        self.mount == mount && self.path.as_deref().is_none_or(|own| own == path)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mount.as_str(), &self.path) {
            ("/", Some(path)) => write!(f, "{path}"),
            (mount, Some(path)) => write!(f, "{mount}{path}"),
            (mount, None) => write!(f, "every path of the app at {mount}"),
        }
    }
}

/// The quarantined scopes and when each quarantine ends.
#[derive(Debug, Default)]
pub struct QuarantineList {
    /// Whether any scope is listed: the check on every request is one load.
    any: AtomicBool,
    scopes: RwLock<HashMap<Scope, Instant>>,
}

impl QuarantineList {
    /// Lists `scope` until `until`.
    pub fn add(&self, scope: Scope, until: Instant) {
        let mut scopes = self.scopes.write().unwrap_or_else(|e| e.into_inner());
        scopes.insert(scope, until);
        self.any.store(true, Ordering::Release);
    }

    /// Takes `scope` off the list.
    pub fn remove(&self, scope: &Scope) {
        let mut scopes = self.scopes.write().unwrap_or_else(|e| e.into_inner());
        scopes.remove(scope);
        self.any.store(!scopes.is_empty(), Ordering::Release);
    }

    /// How much longer a request to `mount` + `path` is quarantined, if it is.
    pub fn remaining(&self, mount: &str, path: &str, now: Instant) -> Option<Duration> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let scopes = self.scopes.read().unwrap_or_else(|e| e.into_inner());
        scopes
            .iter()
            .filter(|(scope, _)| scope.covers(mount, path))
            .map(|(_, until)| until.saturating_duration_since(now))
            .max()
            .filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(mount: &str, path: Option<&str>) -> Scope {
        Scope {
            mount: mount.into(),
            path: path.map(Into::into),
        }
    }

    #[test]
    fn listed_scopes_are_refused_until_removed_or_over() {
        let list = QuarantineList::default();
        let now = Instant::now();
        assert_eq!(list.remaining("/", "/a", now), None);
        let path = scope("/", Some("/a"));
        list.add(path.clone(), now + Duration::from_secs(5));
        assert_eq!(list.remaining("/", "/a", now), Some(Duration::from_secs(5)));
        assert_eq!(list.remaining("/", "/b", now), None);
        assert_eq!(list.remaining("/x", "/a", now), None);
        assert_eq!(list.remaining("/", "/a", now + Duration::from_secs(6)), None);
        list.remove(&path);
        assert_eq!(list.remaining("/", "/a", now), None);
    }

    #[test]
    fn a_whole_mount_covers_every_path_of_it_and_nothing_else() {
        let list = QuarantineList::default();
        let now = Instant::now();
        list.add(scope("/f", None), now + Duration::from_secs(5));
        for path in ["", "/1", "/2/deeper"] {
            assert_eq!(list.remaining("/f", path, now), Some(Duration::from_secs(5)), "{path}");
        }
        assert_eq!(list.remaining("/", "/f/1", now), None, "another mount");
        assert_eq!(scope("/f", None).to_string(), "every path of the app at /f");
        assert_eq!(scope("/f", Some("/1")).to_string(), "/f/1");
    }
}
