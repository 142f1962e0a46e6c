//! The routes this worker must not call its app for: the master
//! quarantines a route (mount and path) whose requests keep crashing
//! workers, and each worker answers it 503 until the quarantine ends.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A request route: the mount's prefix and the path inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// The mount prefix (`/` for the app at the root).
    pub mount: String,
    /// `PATH_INFO`.
    pub path: String,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mount.as_str() {
            "/" => write!(f, "{}", self.path),
            mount => write!(f, "{mount}{}", self.path),
        }
    }
}

/// The quarantined routes and when each quarantine ends.
#[derive(Debug, Default)]
pub struct Quarantined {
    /// Whether any route is listed: the check on every request is one load.
    any: AtomicBool,
    routes: RwLock<HashMap<Route, Instant>>,
}

impl Quarantined {
    /// Lists `route` until `until`.
    pub fn add(&self, route: Route, until: Instant) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.insert(route, until);
        self.any.store(true, Ordering::Release);
    }

    /// Takes `route` off the list.
    pub fn remove(&self, route: &Route) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.remove(route);
        self.any.store(!routes.is_empty(), Ordering::Release);
    }

    /// How much longer `mount` + `path` is quarantined, if it is.
    pub fn remaining(&self, mount: &str, path: &str, now: Instant) -> Option<Duration> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .find(|(route, _)| route.mount == mount && route.path == path)
            .map(|(_, until)| until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_routes_are_refused_until_removed_or_over() {
        let list = Quarantined::default();
        let now = Instant::now();
        assert_eq!(list.remaining("/", "/a", now), None);
        let route = Route {
            mount: "/".into(),
            path: "/a".into(),
        };
        list.add(route.clone(), now + Duration::from_secs(5));
        assert_eq!(list.remaining("/", "/a", now), Some(Duration::from_secs(5)));
        assert_eq!(list.remaining("/x", "/a", now), None);
        assert_eq!(list.remaining("/", "/a", now + Duration::from_secs(6)), None);
        list.remove(&route);
        assert_eq!(list.remaining("/", "/a", now), None);
    }
}
