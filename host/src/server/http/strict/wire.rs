//! Rules checked on the bytes of a connection, before hyper parses them:
//! the ones hyper is lenient about and that cannot be seen in the request
//! it hands over (it has already parsed past them). The [`Scanner`] follows
//! each message's framing exactly as hyper does (so both agree where every
//! message starts) and, for each rule broken:
//!
//! - in a request head, records a [`Refusal`] for that request in
//!   [`Verdicts`]: the service answers it instead of calling anything, and
//!   closes the connection (hyper and a proxy in front may disagree about
//!   where the next message starts, so nothing after it is trusted);
//! - in a request body, fails the read: hyper reports a body error, which
//!   the app gateway answers with the refusal carried in the error.
//!
//! | rule | RFC |
//! |---|---|
//! | lines in the head end with CRLF, never a bare LF (also before the request line) | 9112 §2.2 |
//! | no fragment (`#`) in the request target | 9112 §3.2, 3986 §3.5 |
//! | not both Transfer-Encoding and Content-Length | 9112 §6.3 (MAY reject; we do) |
//! | at most one Content-Length field | 9110 §8.6 (MAY reject; we do) |
//! | chunk-size is 1–16 hex digits, nothing else before the extension or CRLF | 9112 §7.1 |
//! | chunk extensions follow the grammar (token, `=`, token or quoted-string), ≤ 4 KiB a line | 9112 §7.1.1 |
//! | chunk data is followed by CRLF | 9112 §7.1 |
//! | the chunked body fits `--max-body-size` (413, checked on each chunk-size) | — |
//! | trailer fields are well-formed and none is one that cannot be a trailer | 9112 §7.1.2, 9110 §6.5.1 |

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::plugin::exchange::Refusal;
use crate::server::streams::forward_async_write;

/// Most fields of a head the scanner reads (hyper's `--max-headers`
/// refuses more before this matters, unless raised above it).
const MAX_FIELDS: usize = 256;

/// Largest trailer section.
const MAX_TRAILERS: usize = 16 << 10;

/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// Fields that cannot be trailers: framing, routing, authentication,
/// request modifiers (RFC 9110 §6.5.1).
const NOT_TRAILERS: [&str; 14] = [
    "content-length",
    "transfer-encoding",
    "host",
    "trailer",
    "te",
    "connection",
    "keep-alive",
    "upgrade",
    "authorization",
    "proxy-authorization",
    "cookie",
    "expect",
    "range",
    "content-encoding",
];

/// A broken rule: what to answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// 400, or 413 for a chunked body over the limit.
    pub status: StatusCode,
    /// What was wrong, for the client and the log.
    pub detail: String,
}

impl Violation {
    fn bad(detail: impl Into<String>) -> Violation {
        Violation {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    /// The refusal the client gets.
    pub fn refusal(&self) -> Refusal {
        Refusal::new(self.status, self.detail.clone())
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The refusals a connection's scanner found: in request heads, by the
/// request's number on the connection (0, 1, …), and in the body being read.
#[derive(Debug, Default)]
pub struct Verdicts {
    any: AtomicBool,
    refused: Mutex<Vec<(u64, Refusal)>>,
    body: Mutex<Option<Refusal>>,
    /// The connection switched to another protocol (a WebSocket): its
    /// bytes are no longer HTTP's, and no longer scanned.
    switched: AtomicBool,
}

impl Verdicts {
    /// The connection switches to another protocol after the current
    /// response: the scanner stops.
    pub fn switch_protocols(&self) {
        self.switched.store(true, Ordering::Release);
    }

    fn refuse(&self, message: u64, violation: &Violation) {
        log::warn!("refused request {} on a connection: {}", message + 1, violation.detail);
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((message, violation.refusal()));
        self.any.store(true, Ordering::Release);
    }

    /// The refusal for the body being read, if it broke a rule (hyper saw
    /// the connection end there).
    pub fn body(&self) -> Option<Refusal> {
        self.body.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The refusal for request `message`, if its head broke a rule (or an
    /// earlier one did: after that nothing on the connection is trusted).
    pub fn for_request(&self, message: u64) -> Option<Refusal> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .iter()
            .find(|(at, _)| *at <= message)
            .map(|(_, refusal)| refusal.clone())
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or inside a request head (bytes are collected in `head`).
    Head,
    /// Inside a Content-Length body: bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// A rule was broken, or the head is one hyper refuses: no longer
    /// followed (the connection ends with the refusal).
    Lost,
}

/// Where the scanner is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a chunk-size.
    SizeStart,
    /// More hex digits, whitespace before `;`, `;`, or CR.
    Size,
    /// Whitespace after the size or a value: only `;` may follow (the
    /// grammar has no whitespace before the CRLF).
    Bws,
    /// After `;`: whitespace, then an extension name.
    NameStart,
    /// In an extension name.
    Name,
    /// Whitespace after a name: `=` or `;`.
    NameEnd,
    /// After `=`: whitespace, then a token or a quoted string.
    ValueStart,
    /// In a token value.
    Token,
    /// In a quoted string.
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// After a quoted value: whitespace, `;` or CR.
    ValueEnd,
    /// The LF ending a chunk-size line.
    SizeLf,
    /// Chunk data: bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer line (collected in `line`) or the final CRLF.
    Trailer,
}

/// Follows the requests on one connection and checks the wire rules.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// The current head's bytes, until it is complete.
    head: Vec<u8>,
    /// The current chunk-size line's length, or trailer line's bytes.
    line: Vec<u8>,
    line_len: usize,
    /// The trailer section's length so far.
    trailer_len: usize,
    /// The current chunk's size, as its digits are read.
    size: u64,
    digits: usize,
    /// Chunked bytes so far in this body.
    body_bytes: u64,
    /// The request's number on the connection.
    message: u64,
    max_body: u64,
    max_head: usize,
    max_headers: usize,
    verdicts: Arc<Verdicts>,
}

impl Scanner {
    /// A scanner for a new connection, under these limits, reporting head
    /// refusals to `verdicts`.
    pub fn new(max_body: u64, max_head: usize, max_headers: usize, verdicts: Arc<Verdicts>) -> Scanner {
        Scanner {
            state: State::Head,
            head: Vec::new(),
            line: Vec::new(),
            line_len: 0,
            trailer_len: 0,
            size: 0,
            digits: 0,
            body_bytes: 0,
            message: 0,
            max_body,
            max_head,
            max_headers,
            verdicts,
        }
    }

    /// Follows `bytes`, the next bytes read from the connection. `Err` for
    /// a broken body rule, with the offset of the byte that broke it; head
    /// refusals go to the verdicts.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), (usize, Violation)> {
        let total = bytes.len();
        let mut bytes = bytes;
        while !bytes.is_empty() {
            match self.state {
                State::Lost => return Ok(()),
                State::Head => {
                    let used = self.head_bytes(bytes);
                    bytes = &bytes[used..];
                }
                State::Body(left) => {
                    let used = left.min(bytes.len() as u64);
                    bytes = &bytes[used as usize..];
                    self.state = match left - used {
                        0 => self.next_message(),
                        left => State::Body(left),
                    };
                }
                State::Chunked(Chunk::Data(left)) => {
                    let used = left.min(bytes.len() as u64);
                    bytes = &bytes[used as usize..];
                    self.state = State::Chunked(match left - used {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    });
                }
                State::Chunked(chunk) => {
                    let next = self.chunk_byte(chunk, bytes[0]);
                    bytes = &bytes[1..];
                    match next {
                        Ok(state) => self.state = state,
                        Err(violation) => {
                            self.state = State::Lost;
                            return Err((total - bytes.len() - 1, violation));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn next_message(&mut self) -> State {
        self.message += 1;
        State::Head
    }

    /// Takes head bytes; how many it used (all, or up to the head's end).
    /// A head that arrives in one read (most) is checked where it lies;
    /// only one split across reads is gathered first.
    fn head_bytes(&mut self, bytes: &[u8]) -> usize {
        if self.head.is_empty() {
            // Empty lines before a request line are skipped (hyper does
            // too), but only as CRLF.
            let skipped = bytes.chunks_exact(2).take_while(|pair| *pair == b"\r\n").count() * 2;
            let rest = &bytes[skipped..];
            return skipped
                + match scan_head(rest, 0) {
                    Scan::Complete(head_len, needs_parsing) => {
                        self.head_done(&rest[..head_len], needs_parsing);
                        head_len
                    }
                    Scan::BareLf(at) => {
                        self.lose(bare_lf_violation(at));
                        rest.len()
                    }
                    Scan::Partial => {
                        self.head.extend_from_slice(rest);
                        self.check_head_size();
                        rest.len()
                    }
                };
        }
        let start = self.head.len();
        self.head.extend_from_slice(bytes);
        let skipped = self.head.chunks_exact(2).take_while(|pair| *pair == b"\r\n").count() * 2;
        self.head.drain(..skipped);
        // Only the new bytes are scanned, so a head sent a byte at a time
        // is not scanned again with every byte.
        match scan_head(&self.head, start.saturating_sub(skipped)) {
            Scan::Complete(head_len, needs_parsing) => {
                let used = bytes.len() - (self.head.len() - head_len);
                let head = std::mem::take(&mut self.head);
                self.head_done(&head[..head_len], needs_parsing);
                self.head = head;
                self.head.clear();
                used
            }
            Scan::BareLf(at) => {
                self.lose(bare_lf_violation(at));
                bytes.len()
            }
            Scan::Partial => {
                self.check_head_size();
                bytes.len()
            }
        }
    }

    /// A head longer than hyper takes: hyper answers 431.
    fn check_head_size(&mut self) {
        if self.head.len() > self.max_head {
            self.state = State::Lost;
        }
    }

    /// A complete head was read: the state its body starts in.
    fn head_done(&mut self, head: &[u8], needs_parsing: bool) {
        self.state = match needs_parsing {
            true => self.check_head(head),
            false => State::Body(0),
        };
        if self.state == State::Body(0) {
            self.state = self.next_message();
        }
    }

    fn lose(&mut self, violation: Violation) {
        self.verdicts.refuse(self.message, &violation);
        self.state = State::Lost;
    }

    /// Checks a complete head that has something to check (see
    /// [`scan_head`]); the state its body starts in.
    fn check_head(&mut self, head: &[u8]) -> State {
        let mut fields = [MaybeUninit::uninit(); MAX_FIELDS];
        let fields = &mut fields[..self.max_headers.min(MAX_FIELDS)];
        let mut request = httparse::Request::new(&mut []);
        if !matches!(
            request.parse_with_uninit_headers(head, fields),
            Ok(httparse::Status::Complete(_))
        ) {
            return State::Lost; // hyper refuses it itself
        }
        let violation = |detail: &str| Some(Violation::bad(detail));
        let mut problem = None;
        if request.path.is_some_and(|target| target.contains('#')) {
            problem = violation("the request target has a fragment (#…); send it without");
        }
        let (mut lengths, mut chunked, mut coded) = (Vec::new(), false, false);
        for field in request.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                lengths.push(field.value);
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                coded = true;
                // hyper: the last coding of the last field decides.
                chunked = field
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        }
        if coded && !lengths.is_empty() {
            problem = problem.or(violation(
                "the request has both Transfer-Encoding and Content-Length; send one",
            ));
        }
        if lengths.len() > 1 {
            problem = problem.or(violation("the request has more than one Content-Length field"));
        }
        if let Some(violation) = problem {
            self.lose(violation);
            return State::Lost;
        }
        if coded {
            if !chunked {
                return State::Lost; // hyper refuses it itself
            }
            self.body_bytes = 0;
            return State::Chunked(Chunk::SizeStart);
        }
        let length = lengths
            .first()
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        match (lengths.first(), length) {
            (None, _) => State::Body(0),
            (Some(_), Some(length)) => State::Body(length),
            (Some(_), None) => State::Lost, // hyper refuses it itself
        }
    }

    /// One byte of a chunked body outside chunk data.
    fn chunk_byte(&mut self, chunk: Chunk, byte: u8) -> Result<State, Violation> {
        use Chunk::*;
        let is_ws = byte == b' ' || byte == b'\t';
        if !matches!(chunk, DataCr | DataLf | Trailer) {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err(Violation::bad(format!(
                    "a chunk-size line is longer than {MAX_CHUNK_LINE} bytes"
                )));
            }
        }
        let bad = |what: &str| Err(Violation::bad(format!("malformed chunked body: {what}")));
        let next = match chunk {
            SizeStart | Size if byte.is_ascii_hexdigit() => {
                // Leading zeros are fine; more than 16 digits after them is
                // more than 2^64.
                if self.digits > 0 || byte != b'0' {
                    self.digits += 1;
                }
                if self.digits > 16 {
                    return bad("a chunk-size is 2^64 or more");
                }
                self.size = (self.size << 4) | u64::from((byte as char).to_digit(16).unwrap_or(0));
                Size
            }
            SizeStart => return bad("a chunk-size must start with a hex digit"),
            Size | Token | ValueEnd | Bws if is_ws => Bws,
            Size | Bws | Name | NameEnd | Token | ValueEnd if byte == b';' => NameStart,
            Size | Name | Token | ValueEnd if byte == b'\r' => SizeLf,
            NameStart if is_ws => NameStart,
            NameStart | Name if is_tchar(byte) => Name,
            Name if is_ws => NameEnd,
            Name | NameEnd if byte == b'=' => ValueStart,
            NameEnd if is_ws => NameEnd,
            ValueStart if is_ws => ValueStart,
            ValueStart if byte == b'"' => Quoted,
            ValueStart | Token if is_tchar(byte) => Token,
            Quoted if byte == b'"' => ValueEnd,
            Quoted if byte == b'\\' => QuotedPair,
            Quoted | QuotedPair if is_ws || (0x21..=0x7e).contains(&byte) || byte >= 0x80 => Quoted,
            SizeLf if byte == b'\n' => return self.chunk_line_done(),
            DataCr if byte == b'\r' => DataLf,
            DataLf if byte == b'\n' => SizeStart,
            DataCr | DataLf => return bad("chunk data must be followed by CRLF"),
            Trailer => return self.trailer_byte(byte),
            SizeLf => return bad("a chunk-size line must end with CRLF"),
            _ => return bad("a chunk-size line does not follow the chunk-ext grammar"),
        };
        Ok(State::Chunked(next))
    }

    /// A chunk-size line ended: its data follows, or the trailers.
    fn chunk_line_done(&mut self) -> Result<State, Violation> {
        let size = std::mem::take(&mut self.size);
        self.digits = 0;
        self.line_len = 0;
        if size == 0 {
            self.line.clear();
            self.trailer_len = 0;
            return Ok(State::Chunked(Chunk::Trailer));
        }
        self.body_bytes = self.body_bytes.saturating_add(size);
        if self.body_bytes > self.max_body {
            return Err(Violation {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                detail: format!(
                    "the chunked body exceeds {} bytes (server option --max-body-size)",
                    self.max_body
                ),
            });
        }
        Ok(State::Chunked(Chunk::Data(size)))
    }

    /// One byte of the trailer section.
    fn trailer_byte(&mut self, byte: u8) -> Result<State, Violation> {
        self.line.push(byte);
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILERS {
            return Err(Violation::bad(format!(
                "the trailer section is larger than {} KiB",
                MAX_TRAILERS >> 10
            )));
        }
        if byte != b'\n' {
            return Ok(State::Chunked(Chunk::Trailer));
        }
        let line = std::mem::take(&mut self.line);
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Err(Violation::bad(
                "malformed chunked body: a trailer line must end with CRLF",
            ));
        }
        if line.len() == 2 {
            return Ok(self.next_message());
        }
        let text = &line[..line.len() - 2];
        let Some(colon) = text.iter().position(|b| *b == b':') else {
            return Err(Violation::bad("malformed trailer field (no colon)"));
        };
        let (name, value) = (&text[..colon], &text[colon + 1..]);
        let value_ok = value
            .iter()
            .all(|b| *b == b'\t' || (0x20..=0x7e).contains(b) || *b >= 0x80);
        if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) || !value_ok {
            return Err(Violation::bad("malformed trailer field"));
        }
        if let Some(forbidden) = NOT_TRAILERS.iter().find(|n| n.as_bytes().eq_ignore_ascii_case(name)) {
            return Err(Violation::bad(format!("{forbidden} cannot be sent as a trailer field")));
        }
        Ok(State::Chunked(Chunk::Trailer))
    }
}

/// Where a bare LF (one not after a CR) is, if there is one.
/// What a scan of head bytes found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The head ends after this many bytes; `true` if it has anything
    /// [`Scanner::check_head`] parses it for: a `#` in its request line, or
    /// a field whose name starts like Content-Length or Transfer-Encoding,
    /// in any case. Most requests have none: no body, nothing to refuse,
    /// no second parse.
    Complete(usize, bool),
    /// A bare LF (one not after a CR) at this offset.
    BareLf(usize),
    /// No end yet.
    Partial,
}

/// Scans `head` (the bytes of one head, from its request line) from
/// `from` on, in one pass over its line ends.
fn scan_head(head: &[u8], from: usize) -> Scan {
    let mut needs_parsing = false;
    for at in memchr::memchr_iter(b'\n', &head[from..]).map(|at| from + at) {
        if at == 0 || head[at - 1] != b'\r' {
            return Scan::BareLf(at);
        }
        if at >= 3 && head[at - 3..at] == *b"\r\n\r" {
            let request_line = &head[..memchr::memchr(b'\n', head).unwrap_or(at)];
            needs_parsing |= memchr::memchr(b'#', request_line).is_some();
            // Lines before `from` were seen when they came.
            needs_parsing |=
                from > 0 && memchr::memchr_iter(b'\n', &head[..from]).any(|at| frames_body(&head[at + 1..]));
            return Scan::Complete(at + 1, needs_parsing);
        }
        needs_parsing |= frames_body(&head[at + 1..]);
    }
    Scan::Partial
}

/// Whether the header line at the start of `line` is Content-Length or
/// Transfer-Encoding (the fields that frame a body); most lines are told
/// apart by their first byte.
fn frames_body(line: &[u8]) -> bool {
    let starts = |name: &[u8]| {
        line.get(..name.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(name))
    };
    match line.first() {
        Some(b'c' | b'C') => starts(b"content-length"),
        Some(b't' | b'T') => starts(b"transfer-encoding"),
        _ => false,
    }
}

fn bare_lf_violation(at: usize) -> Violation {
    Violation::bad(format!(
        "a line of the request head ends in a bare LF (byte {at}); lines end with CRLF"
    ))
}

/// RFC 9110 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Bytes hyper's chunked decoder refuses in every state outside chunk
/// data: a CR, then a byte that is no LF.
const DECODER_STOP: &[u8] = b"\r\0";

/// A connection's stream with a [`Scanner`] on its reads. When a body
/// breaks a rule, hyper gets the bytes before the offending one and then
/// [`DECODER_STOP`], so its decoder fails there and reports a body error
/// (the request's refusal is in the scanner's [`Verdicts`]); after that,
/// reads end. The response still goes out on the write side.
pub struct Guarded<S> {
    inner: S,
    scanner: Scanner,
    /// A body broke a rule: what is left to hand hyper before the end.
    stop: Option<&'static [u8]>,
}

impl<S> Guarded<S> {
    /// `inner`, scanned by `scanner`.
    pub fn new(inner: S, scanner: Scanner) -> Self {
        Guarded {
            inner,
            scanner,
            stop: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(stop) = this.stop {
            let count = stop.len().min(buf.remaining());
            buf.put_slice(&stop[..count]);
            this.stop = Some(&stop[count..]);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.scanner.verdicts.switched.load(Ordering::Acquire) {
            return result;
        }
        if let Poll::Ready(Ok(())) = &result {
            if let Err((offset, violation)) = this.scanner.feed(&buf.filled()[before..]) {
                log::warn!("refused a request body: {violation}");
                *this.scanner.verdicts.body.lock().unwrap_or_else(|e| e.into_inner()) = Some(violation.refusal());
                buf.set_filled(before + offset);
                this.stop = Some(DECODER_STOP);
                if offset == 0 {
                    // Nothing to hand over yet: the stop bytes are this read.
                    buf.put_slice(&DECODER_STOP[..1]);
                    this.stop = Some(&DECODER_STOP[1..]);
                }
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    forward_async_write!(inner);
}

#[cfg(test)]
mod tests;
