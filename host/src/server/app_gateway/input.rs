//! The request body as the app reads it (`wsgi.input`). Bodies up to
//! `--body-buffer-size` are read on the connection's task before the app
//! is called, so a slow client holds no app thread; the rest of a larger
//! body is pulled from the connection as the app reads it, each wait for
//! the client bounded by `--body-timeout` and off the app's clock. A body
//! that breaks a rule (its framing, the size limit, the idle limit) is a
//! [`Refusal`]: the app sees a read error, and the client gets the
//! refusal whatever the app answers.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::runtime::Handle;

use super::clock::AppClock;
use crate::config::Limits;
use crate::exchange::{Refusal, RequestBody};
use crate::server::strict::wire::Verdicts;

/// The limits a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body (413 beyond).
    pub max: u64,
    /// Read before the app is called, up to this much.
    pub buffer: u64,
    /// Longest wait for the next piece (408 beyond).
    pub idle: Duration,
}

impl BodyLimits {
    /// The limits in `limits`.
    pub fn from(limits: &Limits) -> BodyLimits {
        BodyLimits {
            max: limits.max_body_size.0,
            buffer: limits.body_buffer_size.0,
            idle: limits.body_timeout.0,
        }
    }
}

/// A request body: what is in hand, and the connection for the rest.
pub struct Input {
    buffered: VecDeque<Bytes>,
    rest: Option<Incoming>,
    received: u64,
    /// The connection's wire verdicts (why a body ended early).
    verdicts: Arc<Verdicts>,
}

impl Input {
    /// Whether the whole body is in hand (the app can never wait for the
    /// client while reading it).
    pub fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    fn accept(&mut self, data: Bytes, max: u64) -> Result<(), Refusal> {
        self.received += data.len() as u64;
        if self.received > max {
            return Err(too_large(max));
        }
        if !data.is_empty() {
            self.buffered.push_back(data);
        }
        Ok(())
    }
}

/// Reads `body` until it ends or `limits.buffer` bytes are in hand.
pub async fn buffer(mut body: Incoming, limits: &BodyLimits, verdicts: &Arc<Verdicts>) -> Result<Input, Refusal> {
    let mut input = Input {
        buffered: VecDeque::new(),
        rest: None,
        received: 0,
        verdicts: verdicts.clone(),
    };
    loop {
        if body.is_end_stream() {
            return Ok(input);
        }
        if input.received >= limits.buffer {
            input.rest = Some(body);
            return Ok(input);
        }
        match tokio::time::timeout(limits.idle, body.frame()).await {
            Err(_) => return Err(idle_timeout(limits.idle)),
            Ok(None) => return Ok(input),
            Ok(Some(Err(e))) => return Err(malformed(&e, verdicts)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    input.accept(data, limits.max)?;
                }
            }
        }
    }
}

/// `wsgi.input` on a blocking thread: the buffered part, then the
/// connection (never touched by a complete body, so an inline call can
/// read it without waiting).
pub struct BodyReader {
    input: Input,
    handle: Handle,
    clock: Arc<AppClock>,
    limits: BodyLimits,
    problem: Option<Refusal>,
}

impl BodyReader {
    /// A reader over `input`, waiting for the client off `clock`.
    pub fn new(input: Input, clock: Arc<AppClock>, limits: BodyLimits) -> BodyReader {
        BodyReader {
            input,
            handle: Handle::current(),
            clock,
            limits,
            problem: None,
        }
    }

    /// Waits for the next piece of the body from the connection.
    fn pull(&mut self) -> Result<(), Refusal> {
        let Some(body) = self.input.rest.as_mut() else {
            return Ok(());
        };
        if body.is_end_stream() {
            self.input.rest = None;
            return Ok(());
        }
        let (handle, idle) = (&self.handle, self.limits.idle);
        let frame = self
            .clock
            .waiting(|| handle.block_on(tokio::time::timeout(idle, body.frame())));
        match frame {
            Err(_) => Err(idle_timeout(idle)),
            Ok(None) => {
                self.input.rest = None;
                Ok(())
            }
            Ok(Some(Err(e))) => Err(malformed(&e, &self.input.verdicts)),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => self.input.accept(data, self.limits.max),
                Err(_) => Ok(()), // trailers: not part of wsgi.input
            },
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(problem) = &self.problem {
            return Err(io::Error::other(problem.detail.clone()));
        }
        while self.input.buffered.is_empty() {
            if self.input.rest.is_none() || buf.is_empty() {
                return Ok(0);
            }
            if let Err(problem) = self.pull() {
                let error = io::Error::other(problem.detail.clone());
                self.problem = Some(problem);
                return Err(error);
            }
        }
        let front = self.input.buffered.front_mut().expect("not empty");
        let count = buf.len().min(front.len());
        buf[..count].copy_from_slice(&front[..count]);
        front.advance(count);
        if front.is_empty() {
            self.input.buffered.pop_front();
        }
        Ok(count)
    }
}

impl RequestBody for BodyReader {
    fn refusal(&self) -> Option<Refusal> {
        self.problem.clone()
    }
}

/// 413: the body is larger than `--max-body-size`.
pub fn too_large(limit: u64) -> Refusal {
    log::warn!("refused a request body over max_body_size ({limit} bytes); raise it with --max-body-size");
    Refusal {
        status: 413,
        reason: "Payload Too Large",
        detail: format!("the body exceeds {limit} bytes (server option --max-body-size)"),
    }
}

fn idle_timeout(idle: Duration) -> Refusal {
    log::warn!(
        "a client sent no request body bytes for {}; answered 408 (option --body-timeout)",
        crate::config::Seconds(idle)
    );
    Refusal {
        status: 408,
        reason: "Request Timeout",
        detail: format!(
            "no request body bytes arrived for {} (server option --body-timeout)",
            crate::config::Seconds(idle)
        ),
    }
}

/// 400: the body's framing is broken (a bad chunk, a body cut short); or
/// the refusal the wire scanner found (413 for a chunked body over the
/// limit), which is why hyper saw the body end.
fn malformed(error: &hyper::Error, verdicts: &Verdicts) -> Refusal {
    if let Some(refusal) = verdicts.body() {
        return refusal;
    }
    let source = std::error::Error::source(error);
    let cause = source.map_or_else(|| error.to_string(), ToString::to_string);
    log::warn!("refused a request with a malformed body: {cause}");
    Refusal {
        status: 400,
        reason: "Bad Request",
        detail: format!("the request body is malformed: {cause}"),
    }
}
