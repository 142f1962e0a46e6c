//! Serving tests' harness: the real `host` binary as a child process on an
//! ephemeral port of 127.0.0.1, and a small raw-socket HTTP/1.1 client
//! (raw, so tests can pipeline, send odd targets and malformed requests).
//!
//! Every wait is bounded: reads time out after [`READ_TIMEOUT`], the host
//! must announce its port within [`START_TIMEOUT`], and a [`Server`] that
//! is dropped kills its child (SIGKILL).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{host_bin, repo_root};

/// The longest any socket read waits.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the host gets to print `Serving on …`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A folder under the system temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty folder whose name contains `label`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("host-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `self/name`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start a [`Server`].
pub struct ServerBuilder {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: PathBuf,
    bind: bool,
}

impl ServerBuilder {
    /// Adds command-line arguments.
    pub fn args<A: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Adds one command-line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Sets an environment variable (the environment starts empty).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the host in `dir` instead of the repository root.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Do not add `--bind 127.0.0.1:0` (the config file names the address).
    pub fn no_bind(mut self) -> Self {
        self.bind = false;
        self
    }

    /// Starts the host and waits for it to say where it serves.
    pub fn start(self) -> Server {
        let logs = TempDir::new("log");
        let stderr_path = logs.join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create the stderr log");
        let mut command = Command::new(host_bin());
        if self.bind {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        command
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let described = format!("{command:?}");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", host_bin().display()));

        // The first stdout line names the address; later lines are drained
        // so the host never blocks on a full pipe.
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            for _ in lines {}
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().expect("an address"),
            stderr_path,
            _logs: logs,
        };
        let line = match line_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = server.wait_exit(Duration::from_millis(200));
                panic!(
                    "host did not print `Serving on …` within {START_TIMEOUT:?} ({described}); exit: {status:?}\n--- \
                     stderr:\n{}",
                    server.log()
                );
            }
        };
        let addr = line
            .strip_prefix("Serving on http://")
            .or_else(|| line.strip_prefix("Serving on https://"))
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("unexpected first stdout line {line:?} from {described}"));
        server.addr = addr;
        server
    }
}

/// A running `host`, killed on drop.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    _logs: TempDir,
}

impl Server {
    /// A host in the repository root (so `./html` is the static folder),
    /// with the environment cleared, listening on `127.0.0.1:0`.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            env: Vec::new(),
            dir: repo_root(),
            bind: true,
        }
    }

    /// Starts a host with `args` (see [`Server::builder`]).
    pub fn start<A: AsRef<OsStr>>(args: impl IntoIterator<Item = A>) -> Server {
        Server::builder().args(args).start()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed: {status}", self.pid());
    }

    /// Waits up to `timeout` for the host to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("wait for host") {
                Some(status) => return Some(status),
                None if Instant::now() >= deadline => return None,
                None => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops the host with SIGTERM and waits (bounded) for it to exit 0.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let status = self.wait_exit(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "the host did not exit 0 within 15 s of SIGTERM: {status:?}\n{}",
            self.log()
        );
    }

    /// Everything the host wrote to stderr so far (its log).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Polls the log until it contains `needle` (or `timeout` passes); the
    /// log as read last.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection.
    pub fn connect(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// `GET path` on a new connection.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    /// One request on a new connection (`Host` and, for a body,
    /// `Content-Length` are added; `Connection: close`).
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut conn = self.connect();
        let mut all = vec![("Connection", "close")];
        all.extend_from_slice(headers);
        conn.send(&request_bytes(method, target, &all, body));
        conn.read_response_for(method)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- host log ({}):\n{}", self.addr, self.log());
        }
    }
}

/// A request's bytes: request line, `Host`, `headers`, `Content-Length` if
/// `body` is not empty (and none was given), blank line, body.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"));
    if !body.is_empty() && !has_length {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A parsed response.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// `HTTP/1.1`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The chunks, when the body was chunked.
    pub chunks: Vec<Vec<u8>>,
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether `Transfer-Encoding: chunked` framed the body.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// One client connection, with read and write timeouts.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`.
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
        stream.set_write_timeout(Some(READ_TIMEOUT)).expect("write timeout");
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// A connection over an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// The socket (e.g. to change its timeouts).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
        self.stream.flush().expect("flush");
    }

    /// Writes raw bytes; the error, if the server closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `GET path` (keep-alive) and reads the response.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(&request_bytes("GET", path, &[], b""));
        self.read_response()
    }

    /// Reads more bytes into the buffer; 0 at end of stream.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 << 10];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "no data from the server within {READ_TIMEOUT:?}; have {} bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(e) => panic!(
                "reading from the server failed: {e}; have {} bytes: {:?}",
                self.buf.len(),
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads until the buffer holds `needle`; its end offset.
    fn fill_until(&mut self, needle: &[u8]) -> usize {
        loop {
            if let Some(at) = self.buf.windows(needle.len()).position(|w| w == needle) {
                return at + needle.len();
            }
            if self.fill() == 0 {
                panic!(
                    "the server closed the connection before {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    fn take(&mut self, count: usize) -> Vec<u8> {
        while self.buf.len() < count {
            if self.fill() == 0 {
                panic!(
                    "the server closed the connection {} bytes short of {count}",
                    count - self.buf.len()
                );
            }
        }
        self.buf.drain(..count).collect()
    }

    fn take_line(&mut self) -> String {
        let end = self.fill_until(b"\r\n");
        let line = self.take(end);
        String::from_utf8_lossy(&line[..end - 2]).into_owned()
    }

    /// Reads a status line and headers only (e.g. `100 Continue`).
    pub fn read_head(&mut self) -> Response {
        let end = self.fill_until(b"\r\n\r\n");
        let head = self.take(end);
        let head = String::from_utf8_lossy(&head[..end - 4]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let reason = parts.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.trim().to_owned(), value.trim().to_owned())
            })
            .collect();
        Response {
            version,
            status,
            reason,
            headers,
            ..Response::default()
        }
    }

    /// Reads one response to a request that was not HEAD.
    pub fn read_response(&mut self) -> Response {
        self.read_response_for("GET")
    }

    /// Reads one response to a `method` request (HEAD responses, 1xx, 204
    /// and 304 have no body); interim 1xx responses are skipped.
    pub fn read_response_for(&mut self, method: &str) -> Response {
        let mut response = self.read_head();
        while (100..200).contains(&response.status) && response.status != 101 {
            response = self.read_head();
        }
        if method == "HEAD" || matches!(response.status, 100..=199 | 204 | 304) {
            return response;
        }
        if response.is_chunked() {
            loop {
                let size_line = self.take_line();
                let size = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    // Trailers, then the blank line.
                    while !self.take_line().is_empty() {}
                    break;
                }
                let chunk = self.take(size);
                let crlf = self.take(2);
                assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF");
                response.body.extend_from_slice(&chunk);
                response.chunks.push(chunk);
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {length:?}"));
            response.body = self.take(length);
        } else {
            while self.fill() > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// Whether the server closes the connection within `within` (end of
    /// stream or reset, with nothing else sent); `Err` with the bytes it
    /// sent instead, if any arrived.
    pub fn closed_within(&mut self, within: Duration) -> Result<Duration, Vec<u8>> {
        let started = Instant::now();
        self.stream.set_read_timeout(Some(within)).expect("read timeout");
        let mut chunk = [0u8; 4096];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Ok(started.elapsed()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Err(std::mem::take(&mut self.buf))
                }
                Err(_) => break Ok(started.elapsed()),
            }
        };
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).expect("read timeout");
        result
    }

    /// Bytes read but not yet parsed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}
