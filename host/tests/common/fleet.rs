//! Helpers for the tests of worker processes: client load on fresh
//! connections, finding a master's workers in /proc, signals, and polling
//! the host's log. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::server::Server;
use super::{app_spec, plugin_lib};

/// Serializes the tests of a test binary (the guard is held for a whole test).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long one client request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A response's status and body (lossy text), or why there was none.
pub type Answer = Result<(u16, String), String>;

/// `GET path` on a new connection with `Connection: close`; never panics.
pub fn try_get(addr: SocketAddr, path: &str, timeout: Duration) -> Answer {
    Session::new(addr, timeout).send(&Client::get(path))
}

/// Parses one whole response (Content-Length, chunked, or to the end).
pub fn parse_response(bytes: &[u8]) -> Answer {
    if bytes.is_empty() {
        return Err("closed without a response".to_owned());
    }
    let lossy = || String::from_utf8_lossy(bytes).into_owned();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response head: {:?}", lossy()))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line: {:?}", lossy()))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut body = &bytes[end + 4..];
    let text = if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut out = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| format!("truncated chunked body: {:?}", lossy()))?;
            let size = String::from_utf8_lossy(&body[..line_end]);
            let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
                .map_err(|_| format!("bad chunk size: {:?}", lossy()))?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            if body.len() < size + 2 {
                return Err(format!("truncated chunk: {:?}", lossy()));
            }
            out.extend_from_slice(&body[..size]);
            body = &body[size + 2..];
        }
        String::from_utf8_lossy(&out).into_owned()
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length: {:?}", lossy()))?;
        if body.len() < length {
            return Err(format!("body {} bytes short: {:?}", length - body.len(), lossy()));
        }
        String::from_utf8_lossy(&body[..length]).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    Ok((status, text))
}

/// Whether `answer` is a 200 with body `text`.
pub fn says(answer: &Answer, text: &str) -> bool {
    matches!(answer, Ok((200, body)) if body == text)
}

/// Calls `check` every `every` until it gives `Some` or `within` passes.
pub fn poll<T>(within: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every);
    }
}

/// Retries `GET path` (50 ms apart) until it answers 200, for at most
/// `within`; the tries it took and the time.
pub fn until_ok(addr: SocketAddr, path: &str, within: Duration) -> (usize, Duration) {
    let started = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let left = within.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
        let answer = try_get(addr, path, left.min(REQUEST_TIMEOUT));
        if matches!(answer, Ok((200, _))) {
            return (tries, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "GET {path} did not answer 200 within {within:?} ({tries} tries); last: {answer:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The live worker processes of `master`: its children whose command line
/// has the `worker` subcommand (not probes), zombies excluded.
pub fn worker_pids(master: u32) -> Vec<u32> {
    children_with_arg(master, "worker")
}

/// The live children of `parent` with `arg` on their command line, sorted,
/// zombies excluded. Found by scanning /proc (this kernel has no
/// /proc/PID/task/TID/children).
pub fn children_with_arg(parent: u32, arg: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") && has_arg(pid, arg) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Whether `pid`'s command line holds `arg` (a zombie's is empty).
fn has_arg(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .any(|a| a == arg.as_bytes())
}

/// Whether `pid` is a live `host worker` process (a zombie's command line
/// is empty).
pub fn is_worker(pid: u32) -> bool {
    has_arg(pid, "worker")
}

/// Sends `signal` (e.g. `KILL`) to `pid` with kill(1).
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Whether the master process is still running.
pub fn alive(server: &mut Server) -> bool {
    server.wait_exit(Duration::ZERO).is_none()
}

/// The log lines that contain `needle`.
pub fn lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// Polls the log until `needle` occurs at least `count` times (≤ `within`).
pub fn wait_for_count(server: &Server, needle: &str, count: usize, within: Duration) -> String {
    let mut log = String::new();
    let found = poll(within, Duration::from_millis(20), || {
        log = server.log();
        (log.matches(needle).count() >= count).then_some(())
    });
    assert!(
        found.is_some(),
        "the log did not mention {needle:?} {count} time(s) within {within:?}:\n{log}"
    );
    log
}

/// Puts a copy of `from` at `to` atomically: copy beside it, then rename
/// (a new inode, as a build or `make` would produce).
pub fn install(from: &Path, to: &Path) {
    let partial = to.with_extension("so.partial");
    std::fs::copy(from, &partial).unwrap_or_else(|e| panic!("copy {} → {}: {e}", from.display(), partial.display()));
    std::fs::rename(&partial, to).unwrap_or_else(|e| panic!("rename over {}: {e}", to.display()));
}

/// A host serving `app` at `/` with two workers and no static site, plus
/// `extra` flags.
pub fn start(app: &str, extra: &[&str]) -> Server {
    Server::builder()
        .arg(app)
        .args(["--no-static", "--workers", "2"])
        .args(extra)
        .start()
}

/// The echo demo plugin's `LIB:SYMBOL`.
pub fn echo() -> String {
    app_spec(&plugin_lib("echo"), "application")
}

// ------------------------------------------------------------------- load

/// One request of a load loop.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the request was sent.
    pub started: Instant,
    /// When it was answered (or failed).
    pub done: Instant,
    /// The answer.
    pub answer: Answer,
}

impl Record {
    /// Whether it was answered 200.
    pub fn ok(&self) -> bool {
        matches!(self.answer, Ok((200, _)))
    }
}

/// What one load client sends, and how.
#[derive(Clone, Debug)]
pub struct Client {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The request target.
    pub path: String,
    /// The request body (sent with a Content-Length).
    pub body: Vec<u8>,
    /// Keep the connection for the next request (else one per request).
    pub keep_alive: bool,
    /// Pause between requests.
    pub pause: Duration,
}

impl Client {
    /// `GET path`, one request per connection, no pause.
    pub fn get(path: &str) -> Client {
        Client {
            method: "GET",
            path: path.to_owned(),
            body: Vec::new(),
            keep_alive: false,
            pause: Duration::ZERO,
        }
    }

    /// `POST path` with `body`, one request per connection, no pause.
    pub fn post(path: &str, body: &[u8]) -> Client {
        Client {
            method: "POST",
            body: body.to_vec(),
            ..Client::get(path)
        }
    }

    /// The same client, keeping its connection alive.
    pub fn kept_alive(self) -> Client {
        Client {
            keep_alive: true,
            ..self
        }
    }
}

/// A client's connection: kept between requests (unless the server says
/// `Connection: close`) or opened per request.
struct Session {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Session {
    fn new(addr: SocketAddr, timeout: Duration) -> Session {
        Session {
            addr,
            timeout,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// One request; never panics. A kept-alive connection the server closed
    /// *after* a complete response is simply reopened for the next request:
    /// a request fails only if it got no complete response.
    fn send(&mut self, client: &Client) -> Answer {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|e| format!("connect: {e}"))?;
            stream
                .set_read_timeout(Some(self.timeout))
                .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
                .map_err(|e| format!("socket options: {e}"))?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let close = if client.keep_alive { "" } else { "Connection: close\r\n" };
        let mut request = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}Content-Length: {}\r\n\r\n",
            client.method,
            client.path,
            client.body.len()
        )
        .into_bytes();
        request.extend_from_slice(&client.body);
        let answer = self.exchange(&request);
        let keep = client.keep_alive && answer.as_ref().is_ok_and(|(_, _, close)| !close);
        if !keep {
            self.stream = None;
        }
        answer.map(|(status, body, _)| (status, body))
    }

    /// Writes `request` and reads one whole response: (status, body, whether
    /// the server closes the connection).
    fn exchange(&mut self, request: &[u8]) -> Result<(u16, String, bool), String> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(request).map_err(|e| format!("send: {e}"))?;
        let mut chunk = [0u8; 16 << 10];
        loop {
            if let Some(end) = response_end(&self.buf) {
                let response: Vec<u8> = self.buf.drain(..end).collect();
                let head = String::from_utf8_lossy(&response[..response.len().min(4096)]).to_ascii_lowercase();
                let close = head
                    .split("\r\n\r\n")
                    .next()
                    .unwrap_or_default()
                    .contains("\r\nconnection: close");
                let (status, body) = parse_response(&response)?;
                return Ok((status, body, close));
            }
            match stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err("closed before any response byte".to_owned()),
                Ok(0) => return parse_response(&self.buf).map(|(s, b)| (s, b, true)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e} (after {} bytes)", self.buf.len())),
            }
        }
    }
}

/// Where the first response in `bytes` ends, if it is all there (bodies
/// framed by Content-Length or chunked; none for 1xx/204/304).
fn response_end(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if matches!(status, 100..=199 | 204 | 304) {
        return Some(head_end);
    }
    let header = |name: &str| {
        head.split("\r\n").find_map(|line| {
            line.strip_prefix(name)
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head_end;
        loop {
            let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
            let size = String::from_utf8_lossy(&bytes[at..line_end]);
            let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                return (bytes.len() >= at + 2).then_some(at + 2);
            }
            at += size + 2;
            if bytes.len() < at {
                return None;
            }
        }
    }
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    (bytes.len() >= head_end + length).then_some(head_end + length)
}

/// 4 kept-alive and 4 fresh-connection clients, GET and POST: the load
/// under which swaps and retirements must drop nothing.
pub fn mixed_clients() -> Vec<Client> {
    vec![
        Client::get("/").kept_alive(),
        Client::get("/").kept_alive(),
        Client::post("/", b"a=1&b=2").kept_alive(),
        Client::post("/", b"a=1&b=2").kept_alive(),
        Client::get("/"),
        Client::get("/"),
        Client::post("/", b"a=1&b=2"),
        Client::post("/", b"a=1&b=2"),
    ]
}

/// Client threads sending requests until stopped; every request is recorded.
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `threads` clients sending `GET path`, one request per connection,
    /// each pausing `pause` between requests.
    pub fn start(addr: SocketAddr, path: &str, threads: usize, pause: Duration) -> Load {
        let client = Client {
            pause,
            ..Client::get(path)
        };
        Load::clients(addr, vec![client; threads])
    }

    /// One thread per client.
    pub fn clients(addr: SocketAddr, clients: Vec<Client>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let threads = clients
            .into_iter()
            .map(|client| {
                let (stop, records) = (stop.clone(), records.clone());
                thread::spawn(move || {
                    let mut session = Session::new(addr, REQUEST_TIMEOUT);
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let answer = session.send(&client);
                        let record = Record {
                            started,
                            done: Instant::now(),
                            answer,
                        };
                        records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
                        if !client.pause.is_zero() {
                            thread::sleep(client.pause);
                        }
                    }
                })
            })
            .collect();
        Load { stop, records, threads }
    }

    /// Runs `f` on the records so far.
    pub fn with<T>(&self, f: impl FnOnce(&[Record]) -> T) -> T {
        f(&self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stops the threads and returns every record.
    pub fn finish(mut self) -> Vec<Record> {
        self.halt();
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The failed records, summarized (at most 10).
pub fn failures(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !r.ok())
        .take(10)
        .map(|r| format!("{:?}", r.answer))
        .collect()
}
