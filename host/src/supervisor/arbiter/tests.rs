//! The arbiter's decisions, one scenario per test, on a fake clock.

use super::*;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const GRACEFUL: Duration = Duration::from_secs(5);

/// An arbiter for two workers, a clock, and the pids it handed out.
struct Harness {
    arbiter: Arbiter,
    now: Instant,
    next_pid: u32,
}

impl Harness {
    fn new() -> Self {
        Harness {
            arbiter: Arbiter::new(Policy {
                workers: 2,
                start_timeout: START_TIMEOUT,
                graceful_timeout: GRACEFUL,
                quarantine: QuarantinePolicy {
                    after: 3,
                    window: Duration::from_secs(60),
                    cool_off: Duration::from_secs(30),
                },
                apps: "test:app".to_owned(),
            }),
            now: Instant::now(),
            next_pid: 100,
        }
    }

    /// Sends `event`; the actions, with every Spawn answered by a pid.
    fn send(&mut self, event: Event) -> Vec<Action> {
        let actions = self.arbiter.handle(event, self.now);
        for action in &actions {
            if let Action::Spawn(worker, _) = action {
                self.next_pid += 1;
                let more = self.arbiter.handle(Event::Spawned(*worker, self.next_pid), self.now);
                assert!(more.is_empty(), "{more:?}");
            }
        }
        actions
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.send(Event::Tick)
    }

    /// Starts generation 1 and makes its workers ready; their ids.
    fn serving() -> (Harness, Vec<WorkerId>) {
        let mut h = Harness::new();
        assert_eq!(h.send(Event::Start), vec![Action::Prepare(1)]);
        let workers = spawned(&h.send(Event::Prepared(1, Ok(()))));
        assert_eq!(workers.len(), 2);
        assert!(h.send(Event::Ready(workers[0])).is_empty());
        let actions = h.send(Event::Ready(workers[1]));
        assert_eq!(actions, vec![Action::Announce, Action::Notify(SystemdState::Ready)]);
        assert_eq!(h.arbiter.serving(), 1);
        (h, workers)
    }

    /// A reload that prepares and spawns generation `generation`; its workers.
    fn reload_to(&mut self, generation: u64) -> Vec<WorkerId> {
        let actions = self.send(Event::Reload("SIGHUP"));
        assert_eq!(
            actions,
            vec![Action::Notify(SystemdState::Reloading), Action::Prepare(generation)]
        );
        spawned(&self.send(Event::Prepared(generation, Ok(()))))
    }
}

fn spawned(actions: &[Action]) -> Vec<WorkerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn(worker, _) => Some(*worker),
            _ => None,
        })
        .collect()
}

fn crash(signal: i32) -> Death {
    Death {
        exit: Exit::Signal(signal),
        inflight: Vec::new(),
        culprit: None,
    }
}

fn clean() -> Death {
    Death {
        exit: Exit::Code(0),
        inflight: Vec::new(),
        culprit: None,
    }
}

fn crash_in(path: &str) -> Death {
    Death {
        exit: Exit::Signal(libc::SIGSEGV),
        inflight: vec![
            InflightRequest {
                method: "GET".into(),
                mount: "/".into(),
                path: "/healthy".into(),
                running_for: Duration::from_millis(1),
            },
            InflightRequest {
                method: "GET".into(),
                mount: "/".into(),
                path: path.into(),
                running_for: Duration::from_millis(2),
            },
        ],
        culprit: Some(1),
    }
}

#[test]
fn start_refused_exits_with_the_refusal() {
    let mut h = Harness::new();
    h.send(Event::Start);
    let actions = h.send(Event::Prepared(1, Err(Failure::input("refusing app x"))));
    assert_eq!(actions, vec![Action::Exit(Err(Failure::input("refusing app x")))]);
}

#[test]
fn a_worker_that_cannot_start_at_start_is_an_internal_failure() {
    let mut h = Harness::new();
    h.send(Event::Start);
    let workers = spawned(&h.send(Event::Prepared(1, Ok(()))));
    let actions = h.send(Event::SpawnFailed(workers[0], "fork: out of memory".into()));
    assert!(matches!(actions.last(), Some(Action::Exit(Err(Failure::Internal(m)))) if m.contains("fork")));
}

#[test]
fn a_swap_promotes_the_new_generation_then_drains_the_old() {
    let (mut h, old) = Harness::serving();
    let new = h.reload_to(2);
    assert_eq!(new.len(), 2);
    assert!(
        h.send(Event::Ready(new[0])).is_empty(),
        "not promoted with one of two ready"
    );
    let actions = h.send(Event::Ready(new[1]));
    assert_eq!(
        actions,
        vec![
            Action::Drain(old[0]),
            Action::Drain(old[1]),
            Action::Notify(SystemdState::Ready)
        ]
    );
    assert_eq!(h.arbiter.serving(), 2);
    // The old workers finishing is no news.
    assert!(h.send(Event::Exited(old[0], clean())).is_empty());
    assert!(h.send(Event::Exited(old[1], clean())).is_empty());
}

#[test]
fn a_refused_build_keeps_the_old_generation_and_a_queued_reload_follows() {
    let (mut h, old) = Harness::serving();
    h.send(Event::Reload("SIGHUP"));
    // A second reload while the first is being validated waits for it.
    assert!(h.send(Event::Reload("--reload")).is_empty());
    let actions = h.send(Event::Prepared(2, Err(Failure::input("refusing app"))));
    assert_eq!(
        actions,
        vec![
            Action::Notify(SystemdState::Ready),
            Action::Notify(SystemdState::Reloading),
            Action::Prepare(3)
        ]
    );
    assert_eq!(h.arbiter.serving(), 1);
    assert!(!actions.iter().any(|a| matches!(a, Action::Drain(w) if old.contains(w))));
}

#[test]
fn a_new_worker_dying_before_ready_abandons_its_generation_only() {
    let (mut h, old) = Harness::serving();
    let new = h.reload_to(2);
    h.send(Event::Ready(new[0]));
    let actions = h.send(Event::Exited(new[1], crash(libc::SIGABRT)));
    // The ready one may hold accepted requests: it drains, it is not killed.
    assert_eq!(
        actions,
        vec![Action::Drain(new[0]), Action::Notify(SystemdState::Ready)]
    );
    assert_eq!(h.arbiter.serving(), 1);
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Drain(w) | Action::Kill(w) if old.contains(w))));
}

#[test]
fn a_generation_not_ready_in_time_is_abandoned_at_the_deadline() {
    let (mut h, _) = Harness::serving();
    let new = h.reload_to(2);
    assert_eq!(h.arbiter.next_deadline(), Some(h.now + START_TIMEOUT));
    assert!(h.advance(START_TIMEOUT - Duration::from_millis(1)).is_empty());
    let actions = h.advance(Duration::from_millis(1));
    assert_eq!(
        actions,
        vec![
            Action::Kill(new[0]),
            Action::Kill(new[1]),
            Action::Notify(SystemdState::Ready)
        ]
    );
}

#[test]
fn a_ready_worker_that_crashes_is_replaced_at_once_every_time() {
    let (mut h, workers) = Harness::serving();
    let mut victim = workers[0];
    for round in 0..10 {
        let actions = h.send(Event::Exited(victim, crash(libc::SIGSEGV)));
        let replacement = spawned(&actions);
        assert_eq!(replacement.len(), 1, "round {round}: {actions:?}");
        assert!(h.send(Event::Ready(replacement[0])).is_empty());
        victim = replacement[0];
        h.now += Duration::from_millis(100);
    }
    assert_eq!(h.arbiter.next_deadline(), None, "no back-off waits");
}

#[test]
fn replacements_that_die_before_ready_back_off() {
    let (mut h, workers) = Harness::serving();
    let replacement = spawned(&h.send(Event::Exited(workers[0], crash(libc::SIGSEGV))))[0];
    // The replacement dies while loading: retried after 100 ms, then 200 ms.
    assert!(spawned(&h.send(Event::Exited(replacement, crash(libc::SIGABRT)))).is_empty());
    assert_eq!(h.arbiter.next_deadline(), Some(h.now + FIRST_BACKOFF));
    assert!(h.advance(Duration::from_millis(99)).is_empty());
    let second = spawned(&h.advance(Duration::from_millis(1)));
    assert_eq!(second.len(), 1);
    h.send(Event::Exited(second[0], crash(libc::SIGABRT)));
    assert_eq!(h.arbiter.next_deadline(), Some(h.now + FIRST_BACKOFF * 2));
    let third = spawned(&h.advance(FIRST_BACKOFF * 2));
    assert_eq!(third.len(), 1);
    // Once it is ready, the other worker's crash is replaced at once again.
    h.send(Event::Ready(third[0]));
    assert_eq!(
        spawned(&h.send(Event::Exited(workers[1], crash(libc::SIGSEGV)))).len(),
        1
    );
}

#[test]
fn a_route_that_crashes_workers_three_times_is_quarantined_then_released() {
    let (mut h, workers) = Harness::serving();
    let mut alive = workers.clone();
    let quarantine = |actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::TellAll(MasterMessage::Quarantine { scope, for_ms }) => Some((scope.clone(), *for_ms)),
            _ => None,
        })
    };
    for round in 1..=3 {
        let actions = h.send(Event::Exited(alive[0], crash_in("/segv")));
        let replacement = spawned(&actions)[0];
        h.send(Event::Ready(replacement));
        alive[0] = replacement;
        match quarantine(&actions) {
            Some((scope, for_ms)) => {
                assert_eq!(round, 3);
                assert_eq!(
                    scope.path.as_deref(),
                    Some("/segv"),
                    "the culprit, not the other request in flight"
                );
                assert_eq!(for_ms, 30_000);
            }
            None => assert!(round < 3, "no quarantine after 3 crashes: {actions:?}"),
        }
        h.now += Duration::from_secs(1);
    }
    // A worker started during the quarantine is told about it, then that
    // the list is complete (it takes no request before that).
    let actions = h.send(Event::Exited(alive[1], crash(libc::SIGKILL)));
    let told = actions
        .iter()
        .position(|a| matches!(a, Action::Tell(_, MasterMessage::Quarantine { scope, .. }) if scope.path.as_deref() == Some("/segv")));
    let synced = actions
        .iter()
        .position(|a| matches!(a, Action::Tell(_, MasterMessage::Synced)));
    assert!(matches!((told, synced), (Some(t), Some(s)) if t < s), "{actions:?}");
    let release = h.advance(Duration::from_secs(29));
    assert!(
        release.iter().any(
            |a| matches!(a, Action::TellAll(MasterMessage::Release { scope }) if scope.path.as_deref() == Some("/segv"))
        ),
        "{release:?}"
    );
}

#[test]
fn a_crash_with_several_suspects_quarantines_nothing() {
    let (mut h, workers) = Harness::serving();
    let mut victim = workers[0];
    for _ in 0..5 {
        let mut death = crash_in("/segv");
        death.culprit = None;
        let actions = h.send(Event::Exited(victim, death));
        assert!(!actions.iter().any(|a| matches!(a, Action::TellAll(_))), "{actions:?}");
        victim = spawned(&actions)[0];
        h.send(Event::Ready(victim));
    }
}

#[test]
fn a_retiring_worker_is_replaced_once() {
    let (mut h, workers) = Harness::serving();
    let actions = h.send(Event::Retire(workers[0]));
    assert_eq!(spawned(&actions).len(), 1);
    assert!(h.send(Event::Retire(workers[0])).is_empty(), "twice is once");
    let exit = Death {
        exit: Exit::Code(EXIT_RETIRED),
        ..clean()
    };
    assert!(h.send(Event::Exited(workers[0], exit)).is_empty());
}

#[test]
fn graceful_stop_drains_then_exits_and_ignores_late_news() {
    let (mut h, workers) = Harness::serving();
    h.send(Event::Reload("SIGHUP")); // preparing generation 2
    let actions = h.send(Event::Stop { immediate: false });
    assert_eq!(
        actions,
        vec![
            Action::Notify(SystemdState::Stopping),
            Action::CloseSockets,
            Action::CancelPrepare,
            Action::Drain(workers[0]),
            Action::Drain(workers[1])
        ]
    );
    assert!(h.send(Event::Prepared(2, Ok(()))).is_empty(), "a cancelled preparation");
    assert!(h.send(Event::Exited(workers[0], clean())).is_empty());
    assert_eq!(
        h.send(Event::Exited(workers[1], crash(libc::SIGSEGV))),
        vec![Action::Exit(Ok(()))]
    );
}

#[test]
fn graceful_stop_kills_what_is_left_at_the_deadline_and_immediate_stop_at_once() {
    let (mut h, workers) = Harness::serving();
    h.send(Event::Stop { immediate: false });
    assert!(h.advance(GRACEFUL).is_empty());
    assert_eq!(
        h.advance(STOP_SLACK),
        vec![Action::Kill(workers[0]), Action::Kill(workers[1]), Action::Exit(Ok(()))]
    );
    let (mut h, workers) = Harness::serving();
    assert_eq!(
        h.send(Event::Stop { immediate: true }),
        vec![Action::Kill(workers[0]), Action::Kill(workers[1]), Action::Exit(Ok(()))]
    );
}

#[test]
fn a_stop_while_the_first_generation_is_prepared_exits_once_nothing_runs() {
    let mut h = Harness::new();
    h.send(Event::Start);
    let actions = h.send(Event::Stop { immediate: false });
    assert_eq!(
        actions,
        vec![
            Action::Notify(SystemdState::Stopping),
            Action::CloseSockets,
            Action::CancelPrepare,
            Action::Exit(Ok(()))
        ]
    );
}
