//! Quarantine: a path of a mount whose requests crashed workers `after`
//! times within `window` is answered 503 by the workers, without calling
//! the app, for `cool_off`. One client repeating a crashing request then
//! costs a worker `after` times, not forever. A client that varies the path
//! (`/f/1`, `/f/2`, …) cannot walk around it: `after` crashes within the
//! window on two or more paths of one mount quarantine the whole mount
//! (the static site and other mounts are unaffected). The master keeps the
//! counts (it sees the crashes); workers only hold the list it sends them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use crate::server::request::quarantine_list::Scope;

/// When routes are quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Crashes that start a quarantine; 0 turns quarantine off.
    pub after: u32,
    /// The window those crashes must fall in.
    pub window: Duration,
    /// How long a quarantine lasts.
    pub cool_off: Duration,
}

/// A quarantine that a crash began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Began {
    /// What it covers.
    pub scope: Scope,
    /// When it ends.
    pub until: Instant,
    /// The crashes within the window that began it.
    pub crashes: usize,
}

/// Crash counts per path and per mount, and the scopes in quarantine.
#[derive(Debug)]
pub struct Quarantine {
    policy: QuarantinePolicy,
    /// Recent crashes per mount: when, and on which path.
    crashes: HashMap<String, VecDeque<(Instant, String)>>,
    active: BTreeMap<Scope, Instant>,
}

impl Quarantine {
    /// Nothing counted, nothing quarantined.
    pub fn new(policy: QuarantinePolicy) -> Self {
        Quarantine {
            policy,
            crashes: HashMap::new(),
            active: BTreeMap::new(),
        }
    }

    /// Counts a crash in a request to `mount` + `path` at `now`; the
    /// quarantine it begins, if any: of the path, when `after` crashes in
    /// the window fell on it; else of the whole mount, when they fell on
    /// several of its paths.
    pub fn record_crash(&mut self, mount: &str, path: &str, now: Instant) -> Option<Began> {
        if self.policy.after == 0 {
            return None;
        }
        let window = self.policy.window;
        let recent = self.crashes.entry(mount.to_owned()).or_default();
        while recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
        {
            recent.pop_front();
        }
        recent.push_back((now, path.to_owned()));
        let after = self.policy.after as usize;
        let on_path = recent.iter().filter(|(_, p)| p == path).count();
        let scope = if on_path >= after {
            Scope {
                mount: mount.to_owned(),
                path: Some(path.to_owned()),
            }
        } else if recent.len() >= after {
            Scope {
                mount: mount.to_owned(),
                path: None,
            }
        } else {
            return None;
        };
        let whole = Scope {
            mount: mount.to_owned(),
            path: None,
        };
        if self.active.contains_key(&scope) || self.active.contains_key(&whole) {
            return None;
        }
        let crashes = if scope.path.is_some() { on_path } else { recent.len() };
        let until = now + self.policy.cool_off;
        self.active.insert(scope.clone(), until);
        Some(Began { scope, until, crashes })
    }

    /// The quarantines over at `now`, removed.
    pub fn expire(&mut self, now: Instant) -> Vec<Scope> {
        let over: Vec<Scope> = self
            .active
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(scope, _)| scope.clone())
            .collect();
        for scope in &over {
            self.active.remove(scope);
        }
        // Old counts go too, so the map stays as small as the recent crashes.
        let window = self.policy.window;
        self.crashes.retain(|_, recent| {
            recent
                .back()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) <= window)
        });
        over
    }

    /// The scopes in quarantine and until when.
    pub fn active(&self) -> impl Iterator<Item = (&Scope, Instant)> {
        self.active.iter().map(|(scope, until)| (scope, *until))
    }

    /// When the next quarantine ends.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.active.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(after: u32) -> QuarantinePolicy {
        QuarantinePolicy {
            after,
            window: Duration::from_secs(60),
            cool_off: Duration::from_secs(30),
        }
    }

    fn path(mount: &str, path: &str) -> Scope {
        Scope {
            mount: mount.to_owned(),
            path: Some(path.to_owned()),
        }
    }

    #[test]
    fn the_third_crash_on_a_path_quarantines_the_path_until_it_ends() {
        let t0 = Instant::now();
        let mut q = Quarantine::new(policy(3));
        assert_eq!(q.record_crash("/", "/a", t0), None);
        assert_eq!(q.record_crash("/x", "/b", t0), None);
        assert_eq!(q.record_crash("/", "/a", t0 + Duration::from_secs(1)), None);
        let began = q.record_crash("/", "/a", t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(
            began,
            Began {
                scope: path("/", "/a"),
                until: t0 + Duration::from_secs(32),
                crashes: 3
            }
        );
        assert_eq!(q.next_expiry(), Some(began.until));
        assert!(q.expire(t0 + Duration::from_secs(31)).is_empty());
        assert_eq!(q.expire(began.until), vec![path("/", "/a")]);
        assert_eq!(q.active().count(), 0);
    }

    #[test]
    fn crashes_that_wander_from_path_to_path_quarantine_the_mount() {
        let t0 = Instant::now();
        let mut q = Quarantine::new(policy(3));
        assert_eq!(q.record_crash("/f", "/1", t0), None);
        assert_eq!(q.record_crash("/f", "/2", t0 + Duration::from_secs(1)), None);
        let began = q.record_crash("/f", "/3", t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(
            began.scope,
            Scope {
                mount: "/f".into(),
                path: None
            }
        );
        assert_eq!(began.crashes, 3);
        // Nothing more begins while the mount is quarantined.
        assert_eq!(q.record_crash("/f", "/4", t0 + Duration::from_secs(3)), None);
        assert_eq!(q.record_crash("/f", "/4", t0 + Duration::from_secs(3)), None);
        // Another mount counts on its own.
        assert_eq!(q.record_crash("/g", "/1", t0), None);
    }

    #[test]
    fn crashes_outside_the_window_do_not_count_and_zero_turns_it_off() {
        let t0 = Instant::now();
        let mut q = Quarantine::new(policy(2));
        q.record_crash("/", "/a", t0);
        assert_eq!(q.record_crash("/", "/b", t0 + Duration::from_secs(61)), None);
        assert!(q.record_crash("/", "/a", t0 + Duration::from_secs(62)).is_some());
        let mut off = Quarantine::new(policy(0));
        for i in 0..10 {
            assert_eq!(off.record_crash("/", "/a", t0 + Duration::from_millis(i)), None);
        }
    }
}
