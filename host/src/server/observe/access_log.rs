//! The access log: one line per request (target `access`), as text or as
//! correctly escaped JSON, in the same form as the server's other log
//! lines (`[time LEVEL target] message`, on stderr).
//!
//! A line costs the server little: it is formatted straight into a
//! buffer (the second's date strings cached per thread), and a writer
//! thread sends the buffer to stderr 100 ms after its first line, or
//! sooner once it holds 64 KiB, in writes of whole lines up to 4 KiB
//! (so lines from other threads never interleave with them). An idle
//! writer parks: no wake-ups without requests. A worker that crashes
//! loses at most the last 100 ms of its lines; a stop flushes them all.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Outcome;
use crate::config::AccessLogFormat;
use crate::server::http::context::RequestContext;

/// How long the first line of a batch may wait to be written.
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// A buffer this full is written at once.
const FLUSH_AT: usize = 64 << 10;

/// Largest single write: pipes keep writes up to this size whole.
const WRITE_CHUNK: usize = 4096;

/// Where finished requests are recorded.
pub struct AccessLog {
    format: AccessLogFormat,
    /// Decided once: asking the logger costs more than a request.
    enabled: bool,
    buffer: Arc<Buffer>,
}

/// Lines waiting for the writer thread.
#[derive(Default)]
struct Buffer {
    lines: Mutex<Vec<u8>>,
    writer: OnceLock<Thread>,
    /// Set while the writer is parked with nothing to write.
    idle: AtomicBool,
}

/// One finished request, as its line shows it.
pub struct Entry<'a> {
    /// The client's address.
    pub remote: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request target (see `http::context::target_of`).
    pub target: &'a str,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub protocol: &'a str,
    /// The request's id.
    pub id: &'a str,
    /// `Referer` and `User-Agent`, for the combined format.
    pub referer: Option<&'a [u8]>,
    /// See [`Entry::referer`].
    pub user_agent: Option<&'a [u8]>,
    /// How it ended.
    pub outcome: &'a Outcome,
}

impl AccessLog {
    /// An access log in `format`, written if the logger (set up before
    /// this) lets `access` lines through.
    pub fn new(format: AccessLogFormat) -> Self {
        let enabled = format != AccessLogFormat::Off && log::log_enabled!(target: "access", log::Level::Info);
        let buffer = Arc::new(Buffer::default());
        if enabled {
            let writer = buffer.clone();
            match std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer.write_forever())
            {
                Ok(handle) => {
                    let _ = buffer.writer.set(handle.thread().clone());
                }
                Err(e) => log::error!("cannot start the access log writer: {e}; lines are written as they come"),
            }
        }
        Self {
            format,
            enabled,
            buffer,
        }
    }

    /// Records the request of `ctx`, which ended as `outcome`.
    pub fn request(&self, ctx: &RequestContext, outcome: &Outcome) {
        if !self.enabled {
            return;
        }
        let (referer, user_agent) = match self.format {
            AccessLogFormat::Combined => ctx.referer_and_agent(),
            _ => (None, None),
        };
        self.write(&Entry {
            remote: ctx.client(),
            method: ctx.method().as_str(),
            target: &ctx.target(),
            protocol: ctx.protocol(),
            id: ctx.id.as_str(),
            referer: referer.map(|v| v.as_bytes()),
            user_agent: user_agent.map(|v| v.as_bytes()),
            outcome,
        });
    }

    /// Records one request.
    pub fn write(&self, entry: &Entry<'_>) {
        if !self.enabled {
            return;
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.format_line(entry, &mut line);
            self.buffer.push(&line);
        });
    }

    /// Writes what is buffered now (at a stop).
    pub fn flush(&self) {
        self.buffer.write_out();
    }

    fn format_line(&self, entry: &Entry<'_>, line: &mut Vec<u8>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        DATES.with(|dates| {
            let mut dates = dates.borrow_mut();
            dates.refresh(now.as_secs());
            let mut numbers = itoa::Buffer::new();
            line.push(b'[');
            line.extend_from_slice(dates.iso.as_bytes());
            line.push(b'.');
            push_padded(line, &mut numbers, u64::from(now.subsec_millis()));
            line.extend_from_slice(b"Z INFO  access] ");
            let outcome = entry.outcome;
            let micros = outcome.duration.as_micros() as u64;
            match self.format {
                AccessLogFormat::Off => {}
                AccessLogFormat::Text => {
                    request_part(line, &mut numbers, entry, &dates.http, false);
                    line.push(b' ');
                    line.extend_from_slice(numbers.format(micros / 1000).as_bytes());
                    line.push(b'.');
                    push_padded(line, &mut numbers, micros % 1000);
                    line.extend_from_slice(b"ms ");
                    if let Some(received) = outcome.received {
                        line.extend_from_slice(b"in=");
                        line.extend_from_slice(numbers.format(received).as_bytes());
                        line.push(b' ');
                    }
                    line.extend_from_slice(b"id=");
                    push_escaped(line, entry.id.as_bytes());
                }
                AccessLogFormat::Combined => {
                    request_part(line, &mut numbers, entry, &dates.clf, true);
                    for value in [entry.referer, entry.user_agent] {
                        line.extend_from_slice(b" \"");
                        match value {
                            Some(value) => push_escaped(line, value),
                            None => line.push(b'-'),
                        }
                        line.push(b'"');
                    }
                }
                AccessLogFormat::Json => {
                    let _ = serde_json::to_writer(
                        &mut *line,
                        &JsonLine {
                            remote: entry.remote,
                            time: &dates.http,
                            method: entry.method,
                            path: entry.target,
                            protocol: entry.protocol,
                            status: outcome.status,
                            bytes: outcome.bytes,
                            bytes_in: outcome.received,
                            duration_ms: micros as f64 / 1000.0,
                            request_id: entry.id,
                        },
                    );
                }
            }
            line.push(b'\n');
        });
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `remote [time] "METHOD target protocol" status bytes`, the part of a
/// line the text and combined formats share; `apache` for the combined
/// one's conventions (`remote - - [time]`, Apache's time, `-` for no
/// bytes).
fn request_part(line: &mut Vec<u8>, numbers: &mut itoa::Buffer, entry: &Entry<'_>, time: &str, apache: bool) {
    let open = if apache { " - - [" } else { " [" };
    for part in [entry.remote, open, time, "] \"", entry.method, " "] {
        line.extend_from_slice(part.as_bytes());
    }
    push_escaped(line, entry.target.as_bytes());
    line.push(b' ');
    line.extend_from_slice(entry.protocol.as_bytes());
    line.extend_from_slice(b"\" ");
    line.extend_from_slice(numbers.format(entry.outcome.status).as_bytes());
    line.push(b' ');
    match entry.outcome.bytes {
        0 if apache => line.push(b'-'),
        bytes => line.extend_from_slice(numbers.format(bytes).as_bytes()),
    }
}

/// `bytes` as they are when they are visible ASCII other than `"` and
/// `\`; else escaped, as Rust escapes a string (`\"`, `\x01`, `\u{e9}`).
fn push_escaped(line: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\') {
        line.extend_from_slice(bytes);
    } else {
        let _ = write!(line, "{}", String::from_utf8_lossy(bytes).escape_debug());
    }
}

/// `value` (below 1000) as three digits.
fn push_padded(line: &mut Vec<u8>, numbers: &mut itoa::Buffer, value: u64) {
    let digits = numbers.format(value);
    line.extend_from_slice(&b"000"[digits.len().min(3)..]);
    line.extend_from_slice(digits.as_bytes());
}

/// The JSON form of a line.
#[derive(Serialize)]
struct JsonLine<'a> {
    remote: &'a str,
    time: &'a str,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    status: u16,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_in: Option<u64>,
    duration_ms: f64,
    request_id: &'a str,
}

thread_local! {
    /// The line being formatted (reused).
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// This second's date strings.
    static DATES: RefCell<Dates> = RefCell::new(Dates::default());
}

/// One second's date strings, for the line prefix and the text format.
#[derive(Default)]
struct Dates {
    second: u64,
    /// `2026-12-01T13:01:52`.
    iso: String,
    /// `Tue, 01 Dec 2026 13:01:52 GMT`.
    http: String,
    /// `01/Dec/2026:13:01:52 +0000` (Apache's).
    clf: String,
}

impl Dates {
    fn refresh(&mut self, second: u64) {
        if self.second == second && !self.iso.is_empty() {
            return;
        }
        let time = UNIX_EPOCH + Duration::from_secs(second);
        self.second = second;
        self.http = httpdate::fmt_http_date(time);
        self.iso = iso_date_time(second);
        // "Tue, 01 Dec 2026 13:01:52 GMT" → "01/Dec/2026:13:01:52 +0000".
        let h = &self.http;
        self.clf = format!("{}/{}/{}:{} +0000", &h[5..7], &h[8..11], &h[12..16], &h[17..25]);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the epoch.
fn iso_date_time(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

impl Buffer {
    /// Appends a whole line; wakes the writer for the first line of a
    /// batch and for a full buffer.
    fn push(&self, line: &[u8]) {
        let (first, full) = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            let first = lines.is_empty();
            lines.extend_from_slice(line);
            (first, lines.len() >= FLUSH_AT)
        };
        match self.writer.get() {
            Some(writer) if full || (first && self.idle.load(Ordering::SeqCst)) => writer.unpark(),
            Some(_) => {}
            None => self.write_out(), // no writer thread: write as we go
        }
    }

    /// The writer thread: parks while there is nothing to write, else
    /// writes each batch [`FLUSH_AFTER`] after its first line (or when full).
    fn write_forever(&self) {
        loop {
            self.idle.store(true, Ordering::SeqCst);
            while self.lines.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                std::thread::park();
            }
            self.idle.store(false, Ordering::SeqCst);
            std::thread::park_timeout(FLUSH_AFTER);
            self.write_out();
        }
    }

    /// Writes what is buffered, in whole lines of at most [`WRITE_CHUNK`]
    /// bytes per write.
    fn write_out(&self) {
        let batch = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        let mut rest = batch.as_slice();
        let mut stderr = std::io::stderr().lock();
        while !rest.is_empty() {
            let cut = if rest.len() <= WRITE_CHUNK {
                rest.len()
            } else {
                rest[..WRITE_CHUNK]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(WRITE_CHUNK, |i| i + 1)
            };
            let _ = stderr.write_all(&rest[..cut]);
            rest = &rest[cut..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_httpdate() {
        for secs in [0u64, 951_782_400, 1_796_130_111, 4_102_444_800] {
            let iso = iso_date_time(secs);
            let http = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            let parsed = httpdate::parse_http_date(&http).unwrap();
            assert_eq!(parsed, UNIX_EPOCH + Duration::from_secs(secs));
            assert_eq!(&iso[11..], &http[17..25], "{iso} vs {http}");
            let day: u32 = iso[8..10].parse().unwrap();
            assert_eq!(day, http[5..7].parse::<u32>().unwrap(), "{iso} vs {http}");
            assert_eq!(&iso[..4], &http[12..16], "{iso} vs {http}");
        }
        assert_eq!(iso_date_time(1_796_130_111), "2026-12-01T13:01:51");
    }
}
