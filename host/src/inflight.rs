//! The in-flight board: which request each thread of a worker is running
//! inside an app, kept in memory the worker shares with its master. When a
//! worker dies, the master reads the board and names the requests it held;
//! no peer server can say which request killed a worker. A crash handler
//! in the worker also records which thread crashed (or called `exit`), so
//! the master can tell the request that did it from the bystanders.
//!
//! The master creates one board per worker ([`Board::create`], a memfd) and
//! passes its descriptor; the worker maps it ([`install_from_env`]) and
//! marks each app call with [`enter`]. Without a board (one process, CGI)
//! marking does nothing.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Identifies a board's memory ("hostinfl").
const MAGIC: u64 = 0x6c66_6e69_7473_6f68;

/// Bytes of method, mount and path kept per request (longer paths are cut).
const TEXT: usize = 464;

#[repr(C)]
struct Header {
    magic: u64,
    slots: u32,
    /// Requests that found no free slot.
    overflow: AtomicU32,
    /// The thread that got a crash signal, and the signal.
    crash_tid: AtomicI32,
    crash_signal: AtomicI32,
    /// The thread that called `exit`.
    exit_tid: AtomicI32,
    _reserved: u32,
}

#[repr(C)]
struct Slot {
    /// 1 while the thread is inside an app.
    busy: AtomicU32,
    tid: AtomicI32,
    /// CLOCK_MONOTONIC nanoseconds at entry (system-wide, so the master can
    /// subtract).
    started_ns: AtomicU64,
    method_len: AtomicU32,
    mount_len: AtomicU32,
    path_len: AtomicU32,
    _reserved: u32,
    /// Method, mount and path, one after the other. Written only by the
    /// slot's thread; read by the master after the worker is gone.
    text: UnsafeCell<[u8; TEXT]>,
}

/// A board's memory: a header and `slots` slots, shared between a worker
/// and its master.
pub struct Board {
    base: *mut u8,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is process-wide memory; every field a thread writes
// while others may read is atomic, and `Slot::text` is written only by the
// thread that owns the slot (see `Entered`).
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

impl Board {
    fn size(slots: u32) -> usize {
        std::mem::size_of::<Header>() + slots as usize * std::mem::size_of::<Slot>()
    }

    /// A new, empty board with `slots` slots (the master's side).
    pub fn create(slots: u32) -> io::Result<Board> {
        // SAFETY: memfd_create with a NUL-terminated name; the result is a
        // new descriptor we own (or -1).
        let raw = unsafe { libc::memfd_create(c"host-inflight".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = Board::size(slots);
        // SAFETY: ftruncate on our descriptor; the new bytes read as zero.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let board = Board::map(fd, len)?;
        // SAFETY: freshly mapped and not yet shared, and no reference into
        // it exists yet: plain writes are fine.
        unsafe {
            let header = board.base.cast::<Header>();
            std::ptr::addr_of_mut!((*header).magic).write(MAGIC);
            std::ptr::addr_of_mut!((*header).slots).write(slots);
        }
        Ok(board)
    }

    /// Maps a board created by the master (the worker's side).
    fn open(fd: OwnedFd) -> io::Result<Board> {
        // SAFETY: fstat into a zeroed struct on our own descriptor.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = stat.st_size as usize;
        if len < std::mem::size_of::<Header>() {
            return Err(io::Error::other("the in-flight board is too small"));
        }
        let board = Board::map(fd, len)?;
        let header = board.header();
        if header.magic != MAGIC || Board::size(header.slots) > len {
            return Err(io::Error::other("the in-flight board is not one of ours"));
        }
        Ok(board)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Board> {
        // SAFETY: a shared read-write mapping of `len` bytes of our own
        // descriptor; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Board {
            base: base.cast(),
            len,
            fd,
        })
    }

    /// The descriptor to pass to the worker.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a `Header` and lives as long as `self`.
        unsafe { &*(self.base as *const Header) }
    }

    fn slot(&self, index: u32) -> Option<&Slot> {
        if index >= self.header().slots {
            return None;
        }
        let offset = std::mem::size_of::<Header>() + index as usize * std::mem::size_of::<Slot>();
        debug_assert!(offset + std::mem::size_of::<Slot>() <= self.len);
        // SAFETY: `index` is in range, so the slot lies inside the mapping.
        Some(unsafe { &*(self.base.add(offset) as *const Slot) })
    }

    /// What a dead worker was doing (the master's side): the requests
    /// inside an app, and which one its crash (or `exit`) happened in.
    pub fn read(&self) -> Snapshot {
        let header = self.header();
        let culprit_tid = match header.crash_tid.load(Ordering::Acquire) {
            0 => header.exit_tid.load(Ordering::Acquire),
            tid => tid,
        };
        let now = monotonic_ns();
        let mut snapshot = Snapshot {
            overflow: header.overflow.load(Ordering::Relaxed),
            ..Snapshot::default()
        };
        for index in 0..header.slots {
            let Some(slot) = self.slot(index) else { break };
            if slot.busy.load(Ordering::Acquire) == 0 {
                continue;
            }
            // SAFETY: the worker is gone; nothing writes the text any more.
            let text = unsafe { &*slot.text.get() };
            let lens = [&slot.method_len, &slot.mount_len, &slot.path_len].map(|l| l.load(Ordering::Relaxed) as usize);
            let mut parts = [String::new(), String::new(), String::new()];
            let mut at = 0;
            for (part, len) in parts.iter_mut().zip(lens) {
                let end = (at + len).min(TEXT);
                *part = String::from_utf8_lossy(&text[at..end]).into_owned();
                at = end;
            }
            let [method, mount, path] = parts;
            if culprit_tid != 0 && slot.tid.load(Ordering::Relaxed) == culprit_tid {
                snapshot.culprit = Some(snapshot.requests.len());
            }
            snapshot.requests.push(Request {
                method,
                mount,
                path,
                running_for: Duration::from_nanos(now.saturating_sub(slot.started_ns.load(Ordering::Relaxed))),
            });
        }
        snapshot
    }
}

impl Slot {
    /// Records `method mount path` as running on thread `tid`, and marks
    /// the slot busy.
    ///
    /// # Safety
    /// The caller owns the slot (its thread's lease) and the slot is not
    /// busy, so nothing else reads or writes its text meanwhile.
    unsafe fn fill(&self, method: &str, mount: &str, path: &str, tid: i32) {
        // SAFETY: the caller guarantees exclusive use of the text.
        let text = unsafe { &mut *self.text.get() };
        let mut at = 0;
        for (part, len) in [method, mount, path]
            .into_iter()
            .zip([&self.method_len, &self.mount_len, &self.path_len])
        {
            let count = part.len().min(TEXT - at);
            text[at..at + count].copy_from_slice(&part.as_bytes()[..count]);
            len.store(count as u32, Ordering::Relaxed);
            at += count;
        }
        self.tid.store(tid, Ordering::Relaxed);
        self.started_ns.store(monotonic_ns(), Ordering::Relaxed);
        self.busy.store(1, Ordering::Release);
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; no reference
        // into it outlives `self`.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// A request read off a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The mount prefix.
    pub mount: String,
    /// `PATH_INFO` (cut to what fits).
    pub path: String,
    /// How long it had been inside the app.
    pub running_for: Duration,
}

/// What a board says about a worker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The requests inside an app.
    pub requests: Vec<Request>,
    /// The one the crash (or `exit`) happened in.
    pub culprit: Option<usize>,
    /// Requests that were not recorded for want of a slot.
    pub overflow: u32,
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

// ---------------------------------------------------------------- worker side

/// This process's board, once installed.
static BOARD: OnceLock<Board> = OnceLock::new();

/// Slots given back by threads that ended.
static FREE_SLOTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The next never-used slot.
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

/// A thread's slot, returned to [`FREE_SLOTS`] when the thread ends.
struct Lease(Option<u32>);

impl Lease {
    fn take() -> Lease {
        let reused = FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Lease(reused.or_else(|| {
            let slots = BOARD.get().map_or(0, |b| b.header().slots);
            let next = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
            (next < slots).then_some(next)
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(index) = self.0 {
            FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(index);
        }
    }
}

thread_local! {
    static LEASE: Lease = Lease::take();
}

/// Marks the current thread as inside an app until dropped.
#[must_use = "the request is marked until this is dropped"]
pub struct Entered(Option<&'static Slot>);

/// Marks the current thread as running `method mount path` inside an app.
pub fn enter(method: &str, mount: &str, path: &str) -> Entered {
    let Some(board) = BOARD.get() else {
        return Entered(None);
    };
    let Some(slot) = LEASE.with(|lease| lease.0).and_then(|index| board.slot(index)) else {
        board.header().overflow.fetch_add(1, Ordering::Relaxed);
        return Entered(None);
    };
    // SAFETY: this thread owns the slot (its lease), and it is not busy:
    // an `Entered` on this thread would have to be dropped first.
    unsafe { slot.fill(method, mount, path, gettid()) };
    Entered(Some(slot))
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.busy.store(0, Ordering::Release);
        }
    }
}

/// In a worker: maps the board the master passed (`HOST_INFLIGHT_FD`) and
/// installs the crash handlers. Without one, does nothing.
pub fn install_from_env() -> io::Result<()> {
    let Some(fd) = crate::inherited::take_inflight_fd() else {
        return Ok(());
    };
    // SAFETY: the master placed the board's descriptor at this number for
    // us, and nothing else in this process owns it.
    let board = Board::open(unsafe { OwnedFd::from_raw_fd(fd) })?;
    if BOARD.set(board).is_ok() {
        crash_marker::install();
    }
    Ok(())
}

/// Records, from signal handlers and `atexit`, which thread ended the process.
mod crash_marker {
    use super::*;

    /// The signals a fault in app code raises.
    const SIGNALS: [libc::c_int; 7] = [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];

    /// The handlers that were there before ours (Rust's stack-overflow
    /// handler for SIGSEGV and SIGBUS), to hand each signal on to.
    static PREVIOUS: OnceLock<[libc::sigaction; SIGNALS.len()]> = OnceLock::new();

    pub(super) fn install() {
        // SAFETY: zeroed sigaction structs are valid "no handler" values.
        let mut previous: [libc::sigaction; SIGNALS.len()] = unsafe { std::mem::zeroed() };
        for (signal, old) in SIGNALS.iter().zip(previous.iter_mut()) {
            // SAFETY: reads the current disposition into `old`.
            unsafe {
                libc::sigaction(*signal, std::ptr::null(), old);
            }
        }
        if PREVIOUS.set(previous).is_err() {
            return;
        }
        for signal in SIGNALS {
            // SAFETY: installs `on_crash` (async-signal-safe: atomic stores,
            // sigaction, raise, and the previous handler) on the alternate
            // stack Rust gives every thread, so a stack overflow reaches it.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_crash as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
        // SAFETY: registers a plain function to run at exit.
        unsafe {
            libc::atexit(on_exit);
        }
    }

    extern "C" fn on_crash(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
        if let Some(board) = BOARD.get() {
            let header = board.header();
            if header.crash_tid.load(Ordering::Relaxed) == 0 {
                header.crash_tid.store(gettid(), Ordering::Release);
                header.crash_signal.store(signal, Ordering::Release);
            }
        }
        let Some(index) = SIGNALS.iter().position(|s| *s == signal) else {
            return;
        };
        let Some(previous) = PREVIOUS.get().map(|all| all[index]) else {
            return;
        };
        match previous.sa_sigaction {
            libc::SIG_IGN => {}
            handler if handler != libc::SIG_DFL && previous.sa_flags & libc::SA_SIGINFO != 0 => {
                // SAFETY: the handler that was installed before ours, called
                // as it expects to be (SA_SIGINFO).
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                handler(signal, info, context);
            }
            handler if handler != libc::SIG_DFL => {
                // SAFETY: as above, a plain (non-SA_SIGINFO) handler.
                let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                handler(signal);
            }
            _ => {
                // SAFETY: restores the default action and raises the signal
                // again, so the process ends as it would have without us.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
            }
        }
    }

    extern "C" fn on_exit() {
        if let Some(board) = BOARD.get() {
            board.header().exit_tid.store(gettid(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_board_shows_busy_slots_and_the_culprit() {
        let master = Board::create(4).unwrap();
        // SAFETY: a second descriptor for the same memfd, as a worker gets.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(master.raw_fd())) };
        let worker = Board::open(dup).unwrap();
        let long_path = "/x".repeat(400);
        for (index, (method, path)) in [("GET", "/a"), ("POST", long_path.as_str())].into_iter().enumerate() {
            let slot = worker.slot(index as u32).unwrap();
            // SAFETY: the test is the only user of these slots.
            unsafe { slot.fill(method, "/m", path, 1000 + index as i32) };
        }
        worker.header().crash_tid.store(1001, Ordering::Release);
        let snapshot = master.read();
        assert_eq!(snapshot.requests.len(), 2);
        assert_eq!(snapshot.requests[0].method, "GET");
        assert_eq!(snapshot.requests[0].path, "/a");
        assert_eq!(snapshot.requests[1].mount, "/m");
        assert!(snapshot.requests[1].path.len() < long_path.len(), "cut to fit");
        assert_eq!(snapshot.culprit, Some(1));
        // SAFETY: a fresh, empty memfd that this test owns.
        let empty = unsafe { OwnedFd::from_raw_fd(libc::memfd_create(c"x".as_ptr(), 0)) };
        assert!(Board::open(empty).is_err(), "an empty memfd is no board");
    }
}
