//! Wakers that say which part of a WebSocket session woke its task.
//!
//! A session polls several parts from one task: the socket's reads and
//! writes, the app's future (across the plugin boundary, the dearest
//! poll), the app's queues, one timer and the server's stop. Each part
//! gets its own waker, which marks its bit; the session polls a part only
//! when its bit is marked (or it has work for it), and a wake
//! that comes while the session is being polled (the usual case: the
//! session fills the app's queue, which wakes the app) marks the bit
//! without scheduling the task again, since the session looks at the bits
//! before it returns.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

/// The session is being polled: wakes only mark their bit.
const POLLING: u8 = 1;
const APP: u8 = 1 << 1;
const QUEUES: u8 = 1 << 2;
const TIMER: u8 = 1 << 3;
const STOP: u8 = 1 << 4;
const READ: u8 = 1 << 5;
const WRITE: u8 = 1 << 6;
const PARTS: u8 = APP | QUEUES | TIMER | STOP | READ | WRITE;

/// The wakers of one session's parts.
pub struct Wakes {
    shared: Arc<Shared>,
    /// Wakes the app's future.
    pub app: Waker,
    /// Wakes the queues between the app and the socket.
    pub queues: Waker,
    /// Wakes the session's timer.
    pub timer: Waker,
    /// Wakes the wait for the server's stop.
    pub stop: Waker,
    /// Wakes the socket's reads.
    pub read: Waker,
    /// Wakes the socket's writes.
    pub write: Waker,
}

/// The parts marked since the last [`Wakes::take`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Woken(u8);

impl Woken {
    /// Whether the app's future was woken.
    pub fn app(self) -> bool {
        self.0 & APP != 0
    }

    /// Whether the app did something on its side of the queues.
    pub fn queues(self) -> bool {
        self.0 & QUEUES != 0
    }

    /// Whether the socket may be read.
    pub fn read(self) -> bool {
        self.0 & READ != 0
    }

    /// Whether the socket may be written.
    pub fn write(self) -> bool {
        self.0 & WRITE != 0
    }

    /// Whether the timer fired.
    pub fn timer(self) -> bool {
        self.0 & TIMER != 0
    }

    /// Whether the server's stop was signalled.
    pub fn stop(self) -> bool {
        self.0 & STOP != 0
    }
}

struct Shared {
    bits: AtomicU8,
    task: AtomicWaker,
}

/// One part's waker.
struct Part {
    shared: Arc<Shared>,
    bit: u8,
}

impl Wake for Part {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let before = self.shared.bits.fetch_or(self.bit, Ordering::AcqRel);
        if before & POLLING == 0 {
            self.shared.task.wake();
        }
    }
}

impl Wakes {
    /// Wakers with every part marked, so the first poll polls them all.
    pub fn new() -> Wakes {
        let shared = Arc::new(Shared {
            bits: AtomicU8::new(PARTS),
            task: AtomicWaker::new(),
        });
        let part = |bit| {
            Waker::from(Arc::new(Part {
                shared: shared.clone(),
                bit,
            }))
        };
        Wakes {
            app: part(APP),
            queues: part(QUEUES),
            timer: part(TIMER),
            stop: part(STOP),
            read: part(READ),
            write: part(WRITE),
            shared,
        }
    }

    /// A poll of the session begins, on the task `task` wakes.
    pub fn enter(&self, task: &Waker) {
        self.shared.task.register(task);
        self.shared.bits.fetch_or(POLLING, Ordering::AcqRel);
    }

    /// Takes the parts marked so far.
    pub fn take(&self) -> Woken {
        Woken(self.shared.bits.fetch_and(!PARTS, Ordering::AcqRel) & PARTS)
    }

    /// Marks the timer, to be polled again (after it was reset).
    pub fn mark_timer(&self) {
        self.shared.bits.fetch_or(TIMER, Ordering::AcqRel);
    }

    /// Ends the poll unless a part was marked meanwhile (`false`: poll
    /// again). Once it ended, wakes schedule the task.
    pub fn leave(&self) -> bool {
        let mut bits = self.shared.bits.load(Ordering::Acquire);
        loop {
            if bits & PARTS != 0 {
                return false;
            }
            match self
                .shared
                .bits
                .compare_exchange_weak(bits, bits & !POLLING, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => bits = now,
            }
        }
    }

    /// Ends the poll whatever was marked (the session is over).
    pub fn stop_polling(&self) {
        self.shared.bits.fetch_and(!POLLING, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn the_first_poll_sees_every_part_woken() {
        let wakes = Wakes::new();
        let woken = wakes.take();
        assert!(woken.app() && woken.queues() && woken.timer() && woken.stop() && woken.read() && woken.write());
        assert_eq!(wakes.take(), Woken(0));
    }

    #[test]
    fn wakes_during_a_poll_mark_without_scheduling_and_keep_the_poll_going() {
        let (count, waker) = task();
        let wakes = Wakes::new();
        wakes.enter(&waker);
        wakes.take();
        wakes.app.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not scheduled while polled");
        assert!(!wakes.leave(), "a part was marked: poll again");
        assert!(wakes.take().app());
        assert!(wakes.leave());
        wakes.queues.wake_by_ref();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "after the poll, a wake schedules the task"
        );
        wakes.enter(&waker);
        let woken = wakes.take();
        assert!(
            woken.queues() && !woken.app() && !woken.read(),
            "only the queues: {woken:?}"
        );
    }

    #[test]
    fn wakes_from_another_thread_are_never_lost() {
        let (scheduled, waker) = task();
        let wakes = Arc::new(Wakes::new());
        // What the session saw woken: by a poll, or by being scheduled.
        let observed = Arc::new(AtomicUsize::new(0));
        let app = wakes.app.clone();
        let seen = observed.clone();
        let waking = std::thread::spawn(move || {
            for round in 1..=2_000 {
                app.wake_by_ref();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while seen.load(Ordering::SeqCst) < round {
                    assert!(std::time::Instant::now() < deadline, "wake {round} was lost");
                    std::thread::yield_now();
                }
            }
        });
        // The executor: a first poll, then one poll per schedule.
        let mut polls = 0;
        wakes.enter(&waker);
        wakes.take();
        assert!(wakes.leave());
        while !waking.is_finished() {
            if scheduled.0.load(Ordering::SeqCst) == polls {
                std::thread::yield_now();
                continue;
            }
            polls += 1;
            wakes.enter(&waker);
            loop {
                if wakes.take().app() {
                    observed.fetch_add(1, Ordering::SeqCst);
                }
                if wakes.leave() {
                    break;
                }
            }
        }
        waking.join().expect("no wake was lost");
    }
}
