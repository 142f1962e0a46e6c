//! Quarantine: a route (mount and path) whose requests crashed workers
//! `after` times within `window` is answered 503 by the workers, without
//! calling the app, for `cool_off`. One client repeating a crashing request
//! then costs a worker three times, not forever. The master keeps the
//! counts (it sees the crashes); workers only hold the list it sends them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use crate::server::quarantined::Route;

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

/// Crash counts per route and the routes in quarantine.
#[derive(Debug)]
pub struct Quarantine {
    policy: QuarantinePolicy,
    crashes: HashMap<Route, VecDeque<Instant>>,
    active: BTreeMap<Route, Instant>,
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

    /// Counts a crash of `route` at `now`; `Some(until)` if it starts a
    /// quarantine, with the crash count.
    pub fn record_crash(&mut self, route: &Route, now: Instant) -> Option<(Instant, usize)> {
        if self.policy.after == 0 {
            return None;
        }
        let window = self.policy.window;
        let times = self.crashes.entry(route.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            times.pop_front();
        }
        times.push_back(now);
        let count = times.len();
        if count < self.policy.after as usize || self.active.contains_key(route) {
            return None;
        }
        let until = now + self.policy.cool_off;
        self.active.insert(route.clone(), until);
        Some((until, count))
    }

    /// The quarantines over at `now`, removed.
    pub fn expire(&mut self, now: Instant) -> Vec<Route> {
        let over: Vec<Route> = self
            .active
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(route, _)| route.clone())
            .collect();
        for route in &over {
            self.active.remove(route);
        }
        // Old counts go too, so the map stays as small as the recent crashes.
        let window = self.policy.window;
        self.crashes.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) <= window)
        });
        over
    }

    /// The routes in quarantine and until when.
    pub fn active(&self) -> impl Iterator<Item = (&Route, Instant)> {
        self.active.iter().map(|(route, until)| (route, *until))
    }

    /// When the next quarantine ends.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.active.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        Route {
            mount: "/".to_owned(),
            path: path.to_owned(),
        }
    }

    fn policy(after: u32) -> QuarantinePolicy {
        QuarantinePolicy {
            after,
            window: Duration::from_secs(60),
            cool_off: Duration::from_secs(30),
        }
    }

    #[test]
    fn the_third_crash_in_the_window_starts_a_quarantine_that_ends() {
        let t0 = Instant::now();
        let mut q = Quarantine::new(policy(3));
        assert_eq!(q.record_crash(&route("/a"), t0), None);
        assert_eq!(q.record_crash(&route("/b"), t0), None);
        assert_eq!(q.record_crash(&route("/a"), t0 + Duration::from_secs(1)), None);
        let (until, count) = q.record_crash(&route("/a"), t0 + Duration::from_secs(2)).unwrap();
        assert_eq!((until, count), (t0 + Duration::from_secs(32), 3));
        assert_eq!(q.next_expiry(), Some(until));
        assert!(q.expire(t0 + Duration::from_secs(31)).is_empty());
        assert_eq!(q.expire(until), vec![route("/a")]);
        assert_eq!(q.active().count(), 0);
    }

    #[test]
    fn crashes_outside_the_window_do_not_count_and_zero_turns_it_off() {
        let t0 = Instant::now();
        let mut q = Quarantine::new(policy(2));
        q.record_crash(&route("/a"), t0);
        assert_eq!(q.record_crash(&route("/a"), t0 + Duration::from_secs(61)), None);
        assert!(q.record_crash(&route("/a"), t0 + Duration::from_secs(62)).is_some());
        let mut off = Quarantine::new(policy(0));
        for i in 0..10 {
            assert_eq!(off.record_crash(&route("/a"), t0 + Duration::from_millis(i)), None);
        }
    }
}
