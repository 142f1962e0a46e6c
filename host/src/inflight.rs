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

/// The facts kept per request, in this order: method, client address,
/// protocol, request id, mount, `PATH_INFO`, target.
const PARTS: usize = 7;

/// The most bytes kept of each part (longer ones are cut).
const PART_CAP: [usize; PARTS] = [32, 64, 16, 64, 112, 256, 256];

/// Bytes of a request's facts kept per slot.
const TEXT: usize = 800;
const _: () = assert!(sum(PART_CAP) == TEXT);

const fn sum(caps: [usize; PARTS]) -> usize {
    let (mut total, mut i) = (0, 0);
    while i < PARTS {
        total += caps[i];
        i += 1;
    }
    total
}

/// [`Slot::state`]: the response status sent so far (0: none).
const STATUS_MASK: u64 = 0xffff;
/// [`Slot::state`]: the worker logged this request itself (a 504).
const LOGGED: u64 = 1 << 16;
/// [`Slot::state`]: which use of the slot the state belongs to.
const SEQ_SHIFT: u32 = 32;

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
    /// The length of each of the [`PARTS`] in `text`.
    lens: [AtomicU32; PARTS],
    _reserved: u32,
    /// The use of the slot (upper 32 bits), [`LOGGED`], and the status sent.
    state: AtomicU64,
    /// The [`Facts`], one after the other. Written only by the slot's
    /// thread; read by the master after the worker is gone.
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
        let raw = unsafe { libc::memfd_create(c"host-inflight".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
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
        // The master reads this memory while the worker (and the app code
        // in it) holds the descriptor: sealed, its size can never change,
        // so no read here can fault on a page cut away under it.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: adds seals to our own memfd (created with sealing allowed).
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
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
            let mut parts: [String; PARTS] = Default::default();
            let mut at = 0;
            for (part, len) in parts.iter_mut().zip(&slot.lens) {
                let end = (at + len.load(Ordering::Relaxed) as usize).min(TEXT);
                *part = String::from_utf8_lossy(&text[at..end]).into_owned();
                at = end;
            }
            let [method, remote, protocol, id, mount, path, target] = parts;
            if culprit_tid != 0 && slot.tid.load(Ordering::Relaxed) == culprit_tid {
                snapshot.culprit = Some(snapshot.requests.len());
            }
            let state = slot.state.load(Ordering::Acquire);
            snapshot.requests.push(Request {
                method,
                mount,
                path,
                target,
                remote,
                protocol,
                id,
                status: (state & STATUS_MASK) as u16,
                logged: state & LOGGED != 0,
                running_for: Duration::from_nanos(now.saturating_sub(slot.started_ns.load(Ordering::Relaxed))),
            });
        }
        snapshot
    }
}

impl Slot {
    /// Records `facts` as running on thread `tid`, and marks the slot
    /// busy; returns the slot's new use number.
    ///
    /// # Safety
    /// The caller owns the slot (its thread's lease) and the slot is not
    /// busy, so nothing else reads or writes its text meanwhile.
    unsafe fn fill(&self, facts: &Facts<'_>, tid: i32) -> u64 {
        // SAFETY: the caller guarantees exclusive use of the text.
        let text = unsafe { &mut *self.text.get() };
        let mut at = 0;
        for ((part, len), cap) in facts.parts().into_iter().zip(&self.lens).zip(PART_CAP) {
            let count = part.len().min(cap);
            text[at..at + count].copy_from_slice(&part.as_bytes()[..count]);
            len.store(count as u32, Ordering::Relaxed);
            at += count;
        }
        let seq = (self.state.load(Ordering::Relaxed) >> SEQ_SHIFT).wrapping_add(1) & 0xffff_ffff;
        self.state
            .store(seq << SEQ_SHIFT | u64::from(facts.status), Ordering::Release);
        self.tid.store(tid, Ordering::Relaxed);
        self.started_ns.store(monotonic_ns(), Ordering::Relaxed);
        self.busy.store(1, Ordering::Release);
        seq
    }

    /// Sets the status (and the logged mark) of the slot's use `seq`, if
    /// the slot has not moved on to another request.
    fn set_state(&self, seq: u64, status: u16, logged: bool) {
        let new = seq << SEQ_SHIFT | if logged { LOGGED } else { 0 } | u64::from(status);
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            (old >> SEQ_SHIFT == seq).then_some(new)
        });
    }
}

/// What a worker's master needs to know about a request inside an app: to
/// name it when the worker dies, and to write its access-log line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The request method.
    pub method: &'a str,
    /// The mount prefix.
    pub mount: &'a str,
    /// `PATH_INFO`.
    pub path: &'a str,
    /// The request target, as sent.
    pub target: &'a str,
    /// The client's address.
    pub remote: &'a str,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a str,
    /// The request id.
    pub id: &'a str,
    /// The status already sent (a stream handed on to another thread).
    pub status: u16,
}

impl Facts<'_> {
    fn parts(&self) -> [&str; PARTS] {
        [
            self.method,
            self.remote,
            self.protocol,
            self.id,
            self.mount,
            self.path,
            self.target,
        ]
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
    /// The request target (cut to what fits).
    pub target: String,
    /// The client's address.
    pub remote: String,
    /// The protocol.
    pub protocol: String,
    /// The request id.
    pub id: String,
    /// The status the client was sent (0: none; its connection was cut).
    pub status: u16,
    /// The worker already logged the request (it answered 504).
    pub logged: bool,
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

/// This thread's id, from the kernel (async-signal-safe).
fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// This thread's id, asked of the kernel once per thread (polls of async
/// requests name their thread on every poll).
fn thread_id() -> i32 {
    thread_local! {
        static TID: i32 = gettid();
    }
    TID.with(|tid| *tid)
}

// ---------------------------------------------------------------- worker side

/// This process's board, once installed.
static BOARD: OnceLock<Board> = OnceLock::new();

/// Slots given back by threads that ended.
static FREE_SLOTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The next never-used slot.
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

/// A slot held by a thread (returned to [`FREE_SLOTS`] when the thread
/// ends) or by an async request (returned when it ends).
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
        let Some(index) = self.0 else { return };
        // A thread ends inside a call only when an app ends the process
        // (`exit` runs the calling thread's TLS destructors, this one
        // among them, before the process is gone): its request stays on
        // the board for the master to read, and no other thread may take
        // the slot and clear it meanwhile.
        let busy = BOARD
            .get()
            .and_then(|board| board.slot(index))
            .is_some_and(|slot| slot.busy.load(Ordering::Acquire) != 0);
        if !busy {
            FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(index);
        }
    }
}

thread_local! {
    static LEASE: Lease = Lease::take();
    /// The request this thread is running inside an app, if any.
    static CURRENT: std::cell::Cell<Option<Marked>> = const { std::cell::Cell::new(None) };
}

/// The response head with `status` went to the client of the request this
/// thread runs (if it is on the board).
pub fn head_sent(status: u16) {
    if let Some(marked) = CURRENT.with(std::cell::Cell::get) {
        marked.head_sent(status);
    }
}

/// Marks the current thread as inside an app until dropped.
#[must_use = "the request is marked until this is dropped"]
pub struct Entered(Option<Marked>);

/// A request on the board: its slot and which use of the slot it is.
#[derive(Clone, Copy)]
pub struct Marked {
    slot: &'static Slot,
    seq: u64,
}

impl std::fmt::Debug for Marked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Marked").field("seq", &self.seq).finish_non_exhaustive()
    }
}

// SAFETY: every field of a slot that several threads touch is atomic; the
// text is written only by the thread that leased the slot, while it is not
// busy, and read by the master only after the worker is gone.
unsafe impl Sync for Slot {}

impl Marked {
    /// The worker answered the request 504 and logged it; the master
    /// will not log it again.
    pub fn answered_by_server(&self, status: u16) {
        self.slot.set_state(self.seq, status, true);
    }

    /// The response head with `status` went to the client.
    pub fn head_sent(&self, status: u16) {
        self.slot.set_state(self.seq, status, false);
    }
}

impl Entered {
    /// The request's place on the board (none without a board).
    pub fn marked(&self) -> Option<Marked> {
        self.0
    }
}

/// Marks the current thread as running the request of `facts` inside an app.
pub fn enter(facts: &Facts<'_>) -> Entered {
    let Some(board) = BOARD.get() else {
        return Entered(None);
    };
    let Some(slot) = LEASE.with(|lease| lease.0).and_then(|index| board.slot(index)) else {
        board.header().overflow.fetch_add(1, Ordering::Relaxed);
        return Entered(None);
    };
    // SAFETY: this thread owns the slot (its lease), and it is not busy:
    // an `Entered` on this thread would have to be dropped first.
    let seq = unsafe { slot.fill(facts, thread_id()) };
    let marked = Marked { slot, seq };
    CURRENT.with(|current| current.set(Some(marked)));
    Entered(Some(marked))
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(marked) = self.0 {
            CURRENT.with(|current| current.set(None));
            marked.slot.busy.store(0, Ordering::Release);
        }
    }
}

/// An async request on the board for its whole life: it holds a slot of
/// its own (it is not tied to a thread), and names the thread that polls
/// it while a poll runs, so a crash in a poll is pinned on it.
#[must_use = "the request is on the board until this is dropped"]
pub struct Task {
    /// The slot, given back when the task is dropped.
    _lease: Lease,
    marked: Option<Marked>,
}

/// Puts an async request on the board until the [`Task`] is dropped.
pub fn enter_task(facts: &Facts<'_>) -> Task {
    let Some(board) = BOARD.get() else {
        return Task {
            _lease: Lease(None),
            marked: None,
        };
    };
    let lease = Lease::take();
    let Some(slot) = lease.0.and_then(|index| board.slot(index)) else {
        board.header().overflow.fetch_add(1, Ordering::Relaxed);
        return Task {
            _lease: lease,
            marked: None,
        };
    };
    // SAFETY: the lease gives this request the slot, which is not busy (its
    // last holder cleared it before giving it back).
    let seq = unsafe { slot.fill(facts, 0) };
    Task {
        _lease: lease,
        marked: Some(Marked { slot, seq }),
    }
}

impl Task {
    /// The request's place on the board (none without a board).
    pub fn marked(&self) -> Option<Marked> {
        self.marked
    }

    /// Names this thread as the one running the request, until dropped.
    pub fn polling(&self) -> Polling<'_> {
        if let Some(marked) = &self.marked {
            marked.slot.tid.store(thread_id(), Ordering::Relaxed);
        }
        Polling(self)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(marked) = self.marked.take() {
            marked.slot.busy.store(0, Ordering::Release);
        }
        // The lease, dropped next, gives the slot back.
    }
}

/// A poll of an async request in progress on this thread.
pub struct Polling<'t>(&'t Task);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        if let Some(marked) = &self.0.marked {
            marked.slot.tid.store(0, Ordering::Relaxed);
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
        let worker: &'static Board = Box::leak(Box::new(Board::open(dup).unwrap()));
        let long_path = "/x".repeat(400);
        for (index, (method, path)) in [("GET", "/a"), ("POST", long_path.as_str())].into_iter().enumerate() {
            let slot = worker.slot(index as u32).unwrap();
            let facts = Facts {
                method,
                mount: "/m",
                path,
                target: path,
                remote: "10.0.0.1",
                protocol: "HTTP/1.1",
                id: "abc",
                status: 0,
            };
            // SAFETY: the test is the only user of these slots.
            let seq = unsafe { slot.fill(&facts, 1000 + index as i32) };
            let marked = Marked { slot, seq };
            if index == 0 {
                marked.head_sent(200);
            } else {
                marked.answered_by_server(504);
                // A stale mark (an earlier use of the slot) changes nothing.
                Marked { slot, seq: seq + 1 }.head_sent(201);
            }
        }
        worker.header().crash_tid.store(1001, Ordering::Release);
        let snapshot = master.read();
        assert_eq!(snapshot.requests.len(), 2);
        assert_eq!(snapshot.requests[0].method, "GET");
        assert_eq!(snapshot.requests[0].path, "/a");
        assert_eq!(snapshot.requests[1].mount, "/m");
        assert_eq!(snapshot.requests[0].remote, "10.0.0.1");
        assert_eq!(snapshot.requests[1].id, "abc");
        assert_eq!((snapshot.requests[0].status, snapshot.requests[0].logged), (200, false));
        assert_eq!((snapshot.requests[1].status, snapshot.requests[1].logged), (504, true));
        assert!(snapshot.requests[1].path.len() < long_path.len(), "cut to fit");
        assert_eq!(snapshot.culprit, Some(1));
        // SAFETY: ftruncate on the worker's copy of the descriptor.
        let shrunk = unsafe { libc::ftruncate(worker.fd.as_raw_fd(), 0) };
        assert!(shrunk < 0, "a worker cannot shrink the board its master reads");
        // SAFETY: a fresh, empty memfd that this test owns.
        let empty = unsafe { OwnedFd::from_raw_fd(libc::memfd_create(c"x".as_ptr(), 0)) };
        assert!(Board::open(empty).is_err(), "an empty memfd is no board");
    }

    #[test]
    fn a_thread_that_ends_inside_a_call_keeps_its_request_on_the_board() {
        let master = Board::create(64).unwrap();
        // SAFETY: a second descriptor for the same memfd, as a worker gets.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(master.raw_fd())) };
        assert!(
            BOARD.set(Board::open(dup).unwrap()).is_ok(),
            "the only test that installs a board"
        );
        // As in a worker whose app calls `exit`: the thread's lease is
        // dropped while its request is still inside the app.
        let index = std::thread::spawn(|| {
            let facts = Facts {
                method: "GET",
                mount: "/exit",
                path: "",
                target: "/exit",
                remote: "10.0.0.1",
                protocol: "HTTP/1.1",
                id: "abc",
                status: 0,
            };
            std::mem::forget(enter(&facts));
            LEASE.with(|lease| lease.0)
        })
        .join()
        .unwrap()
        .expect("a slot");
        // A thread that starts meanwhile leases another slot, so the request
        // stays shown for the master.
        let next = std::thread::spawn(|| LEASE.with(|lease| lease.0)).join().unwrap();
        assert_ne!(next, Some(index), "the exiting thread's slot was handed on");
        let shown = master.read();
        assert_eq!(shown.requests.len(), 1, "{:?}", shown.requests);
        assert_eq!(shown.requests[0].mount, "/exit");
    }
}
