//! The request body as the app reads it (`wsgi.input`). Bodies up to
//! `--body-buffer-size` are read on the connection's task before the app
//! is called, so a slow client holds no app thread; the rest of a larger
//! body is pulled from the connection as the app reads it, off the app's
//! clock. Every wait for the client is bounded by `--body-timeout`, and
//! the body as a whole by `--body-min-rate` ([`Pace`]). A body that breaks
//! a rule (its framing, the size limit, a time limit) is a [`Refusal`]:
//! the app sees a read error, and the client gets the refusal whatever the
//! app answers.
//!
//! Memory follows what the client sent, not how it sent it: each piece
//! hyper hands over is a slice of a read buffer, and holding a one-byte
//! slice holds the whole buffer. Small pieces are therefore copied
//! together ([`GATHER_BELOW`]), so a body sent a byte per packet costs
//! about what it weighs.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::StatusCode;
use tokio::runtime::Handle;

use super::clock::AppClock;
use crate::config::Limits;
use crate::plugin::exchange::{Refusal, RequestBody};
use crate::server::http::strict::wire::Verdicts;

/// Pieces smaller than this are copied together rather than kept as the
/// slices of read buffers they arrive as.
pub const GATHER_BELOW: usize = 4096;

/// Gathered bytes are handed on in pieces of this size.
const GATHERED_PIECE: usize = 16 << 10;

/// The limits a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body (413 beyond).
    pub max: u64,
    /// Read before the app is called, up to this much.
    pub buffer: u64,
    /// Longest wait for the next piece (408 beyond).
    pub idle: Duration,
    /// Slowest average rate, bytes per second, after a grace of `idle`
    /// (408 below); 0: no minimum.
    pub min_rate: u64,
}

impl BodyLimits {
    /// The limits in `limits`.
    pub fn from(limits: &Limits) -> BodyLimits {
        BodyLimits {
            max: limits.max_body_size.0,
            buffer: limits.body_buffer_size.0,
            idle: limits.body_timeout.0,
            min_rate: limits.body_min_rate.0,
        }
    }
}

/// How long a client may still take, by `--body-timeout` (each wait) and
/// `--body-min-rate` (all waits together, as mod_reqtimeout's MinRate):
/// by the time the server has waited `grace + n / rate` in all, `n` bytes
/// must have come. Only time spent waiting for the client counts, so an
/// app that reads slowly never makes its client look slow.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    limits: BodyLimits,
    /// Time spent waiting for the client so far.
    waited: Duration,
}

/// Which limit a wait runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitLimit {
    /// `--body-timeout`.
    Idle,
    /// `--body-min-rate`.
    MinRate,
}

impl Pace {
    /// No time waited yet.
    pub fn new(limits: BodyLimits) -> Pace {
        Pace {
            limits,
            waited: Duration::ZERO,
        }
    }

    /// How long the next wait may take, with `received` bytes in, and which
    /// limit ends it.
    fn next_wait(&self, received: u64) -> (Duration, WaitLimit) {
        let idle = self.limits.idle;
        if self.limits.min_rate == 0 {
            return (idle, WaitLimit::Idle);
        }
        let earned = Duration::from_secs_f64(received as f64 / self.limits.min_rate as f64);
        let left = (idle + earned).saturating_sub(self.waited);
        if left < idle {
            (left, WaitLimit::MinRate)
        } else {
            (idle, WaitLimit::Idle)
        }
    }

    /// Waits for `body`'s next frame within the limits: `Err` is the
    /// refusal for a client too slow.
    async fn frame(&mut self, body: &mut Incoming, received: u64) -> Result<Option<FrameResult>, Refusal> {
        let mut wait = None;
        std::future::poll_fn(|cx| self.poll_frame(body, received, &mut wait, cx)).await
    }

    /// [`Pace::frame`] as a poll: `wait` holds the wait in progress
    /// between polls (start it as `None`). Needs the host's runtime.
    pub fn poll_frame(
        &mut self,
        body: &mut Incoming,
        received: u64,
        wait: &mut Option<Wait>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<FrameResult>, Refusal>> {
        if let Poll::Ready(frame) = Pin::new(&mut *body).poll_frame(cx) {
            if let Some(wait) = wait.take() {
                self.waited += wait.began.elapsed();
            }
            return Poll::Ready(Ok(frame));
        }
        let waiting = wait.get_or_insert_with(|| {
            let (limit, cause) = self.next_wait(received);
            Wait {
                began: tokio::time::Instant::now(),
                timer: Box::pin(tokio::time::sleep(limit)),
                cause,
            }
        });
        if waiting.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let cause = waiting.cause;
        self.waited += waiting.began.elapsed();
        *wait = None;
        Poll::Ready(Err(match cause {
            WaitLimit::Idle => idle_timeout(self.limits.idle),
            WaitLimit::MinRate => too_slow(received, self.waited, self.limits.min_rate),
        }))
    }
}

/// A body frame as hyper gives it.
pub type FrameResult = Result<http_body::Frame<Bytes>, hyper::Error>;

/// A wait for the client in progress: since when, until when, and under
/// which limit.
pub struct Wait {
    began: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    cause: WaitLimit,
}

/// A request body: what is in hand, and the connection for the rest.
pub struct Input {
    buffered: VecDeque<Bytes>,
    /// Small pieces, copied together until they make a piece of their own.
    gathered: Vec<u8>,
    rest: Option<Incoming>,
    received: u64,
    pace: Pace,
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
        if data.len() < GATHER_BELOW {
            self.gathered.extend_from_slice(&data);
            if self.gathered.len() >= GATHERED_PIECE {
                self.hand_on_gathered();
            }
        } else if !data.is_empty() {
            self.hand_on_gathered();
            self.buffered.push_back(data);
        }
        Ok(())
    }

    /// Puts what was gathered in line, after what came before it.
    fn hand_on_gathered(&mut self) {
        if !self.gathered.is_empty() {
            let piece = std::mem::take(&mut self.gathered);
            self.buffered.push_back(Bytes::from(piece));
        }
    }
}

/// Reads `body` until it ends or `limits.buffer` bytes are in hand.
pub async fn buffer(mut body: Incoming, limits: &BodyLimits, verdicts: &Arc<Verdicts>) -> Result<Input, Refusal> {
    let mut input = Input {
        buffered: VecDeque::new(),
        gathered: Vec::new(),
        rest: None,
        received: 0,
        pace: Pace::new(*limits),
        verdicts: verdicts.clone(),
    };
    loop {
        if body.is_end_stream() {
            break;
        }
        if input.received >= limits.buffer {
            input.rest = Some(body);
            break;
        }
        match input.pace.frame(&mut body, input.received).await? {
            None => break,
            Some(Err(e)) => return Err(malformed(&e, verdicts)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    input.accept(data, limits.max)?;
                }
            }
        }
    }
    input.hand_on_gathered();
    Ok(input)
}

/// `wsgi.input` on a blocking thread: the buffered part, then the
/// connection (never touched by a complete body, so an inline call can
/// read it without waiting).
pub struct BodyReader {
    input: Input,
    /// What waits for the client are kept off (none for a complete body).
    clock: Option<Arc<AppClock>>,
    limits: BodyLimits,
    problem: Option<Refusal>,
}

impl BodyReader {
    /// A reader over `input`, waiting for the client (if its body is not
    /// complete) off `clock`.
    pub fn new(input: Input, clock: Option<Arc<AppClock>>, limits: BodyLimits) -> BodyReader {
        BodyReader {
            input,
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
        let (handle, pace, received) = (Handle::current(), &mut self.input.pace, self.input.received);
        let mut read = || handle.block_on(pace.frame(body, received));
        let frame = match &self.clock {
            Some(clock) => clock.waiting(read),
            None => read(),
        }?;
        let pulled = match frame {
            None => {
                self.input.rest = None;
                Ok(())
            }
            Some(Err(e)) => Err(malformed(&e, &self.input.verdicts)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => self.input.accept(data, self.limits.max),
                Err(_) => Ok(()), // trailers: not part of wsgi.input
            },
        };
        self.input.hand_on_gathered();
        pulled
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
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body exceeds {limit} bytes (server option --max-body-size)"),
    )
}

/// 408: the body came slower than `--body-min-rate`.
fn too_slow(received: u64, waited: Duration, min_rate: u64) -> Refusal {
    let rate = received as f64 / waited.as_secs_f64().max(0.001);
    log::warn!(
        "a client sent its request body at {rate:.0} bytes/s ({received} bytes in {:.1}s), under body_min_rate ({min_rate}); answered 408 (option --body-min-rate)",
        waited.as_secs_f64()
    );
    Refusal::new(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request body arrived slower than {min_rate} bytes/s (server option --body-min-rate)"),
    )
}

fn idle_timeout(idle: Duration) -> Refusal {
    log::warn!(
        "a client sent no request body bytes for {}; answered 408 (option --body-timeout)",
        crate::config::Seconds(idle)
    );
    Refusal::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "no request body bytes arrived for {} (server option --body-timeout)",
            crate::config::Seconds(idle)
        ),
    )
}

/// 400: the body's framing is broken (a bad chunk, a body cut short); or
/// the refusal the wire scanner found (413 for a chunked body over the
/// limit), which is why hyper saw the body end.
pub fn malformed(error: &hyper::Error, verdicts: &Verdicts) -> Refusal {
    if let Some(refusal) = verdicts.body() {
        return refusal;
    }
    let source = std::error::Error::source(error);
    let cause = source.map_or_else(|| error.to_string(), ToString::to_string);
    log::warn!("refused a request with a malformed body: {cause}");
    Refusal::new(
        StatusCode::BAD_REQUEST,
        format!("the request body is malformed: {cause}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(idle_secs: u64, min_rate: u64) -> BodyLimits {
        BodyLimits {
            max: 1 << 20,
            buffer: 1 << 20,
            idle: Duration::from_secs(idle_secs),
            min_rate,
        }
    }

    #[test]
    fn the_minimum_rate_leaves_a_grace_then_asks_for_bytes_as_time_goes() {
        let mut pace = Pace::new(limits(10, 500));
        assert_eq!(pace.next_wait(0), (Duration::from_secs(10), WaitLimit::Idle));
        // 9 s waited for nothing: 1 s of grace is left.
        pace.waited = Duration::from_secs(9);
        assert_eq!(pace.next_wait(0), (Duration::from_secs(1), WaitLimit::MinRate));
        // 1 000 bytes earn two more seconds.
        assert_eq!(pace.next_wait(1000), (Duration::from_secs(3), WaitLimit::MinRate));
        // A client at 1 byte/s has fallen behind for good after the grace.
        pace.waited = Duration::from_secs(30);
        assert_eq!(pace.next_wait(30), (Duration::ZERO, WaitLimit::MinRate));
        // A fast one only ever meets the idle limit.
        assert_eq!(pace.next_wait(1 << 20), (Duration::from_secs(10), WaitLimit::Idle));
        // Off: only the idle limit.
        let off = Pace {
            waited: Duration::from_secs(1000),
            ..Pace::new(limits(10, 0))
        };
        assert_eq!(off.next_wait(0), (Duration::from_secs(10), WaitLimit::Idle));
    }

    #[test]
    fn small_pieces_are_gathered_in_order_and_large_ones_kept() {
        let mut input = Input {
            buffered: VecDeque::new(),
            gathered: Vec::new(),
            rest: None,
            received: 0,
            pace: Pace::new(limits(10, 0)),
            verdicts: Arc::default(),
        };
        for byte in b"abc" {
            input.accept(Bytes::copy_from_slice(&[*byte]), 1 << 20).unwrap();
        }
        let large = Bytes::from(vec![b'L'; GATHER_BELOW]);
        input.accept(large.clone(), 1 << 20).unwrap();
        input.accept(Bytes::from_static(b"z"), 1 << 20).unwrap();
        input.hand_on_gathered();
        let pieces: Vec<&[u8]> = input.buffered.iter().map(|b| &b[..]).collect();
        assert_eq!(pieces, [&b"abc"[..], &large[..], b"z"]);
        assert_eq!(input.received, 3 + GATHER_BELOW as u64 + 1);
        assert!(
            input.accept(Bytes::from(vec![0; 1 << 20]), 1 << 20).is_err(),
            "413 beyond the limit"
        );
    }
}
