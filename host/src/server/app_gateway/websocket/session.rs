//! One open WebSocket, run by one task as one state machine: the protocol
//! with the client, the queues to and from the app, the app's future,
//! pings, limits, and the close handshake.
//!
//! Each poll loops over the parts until none has anything to do: the app
//! (only when something it waits on woke it, see [`Wakes`]), its close,
//! its messages out (written together, then flushed once), the client's
//! messages in (while the app's queue has room, so a slow app slows the
//! reading down; and only once the socket says it may have more, since
//! every read attempt costs tungstenite a cleared buffer), and one timer
//! for every deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use plugin_api::host::{WsEvent, WsOutgoing};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::queues::Queues;
use super::wakes::Wakes;
use crate::config::Limits as Options;
use crate::server::app_gateway::async_call::Running;
use crate::server::observe::metrics::Direction;

/// How long the server waits for the client's reply to its close, and
/// for the app to finish once the client closed.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How much before the end of `--graceful-timeout` open sockets get their
/// 1001, so it goes out before the process ends.
const CLOSE_BEFORE_STOP: Duration = Duration::from_secs(1);

/// The most rounds over the parts in one poll: then the task yields, so
/// an app that keeps waking itself cannot hold the thread.
const ROUNDS_PER_POLL: usize = 32;

/// The socket's stream.
pub type WsStream = WebSocketStream<TokioIo<Upgraded>>;

/// The server's limits for one socket.
pub struct Limits {
    ping_every: Option<Duration>,
    ping_timeout: Duration,
    idle: Option<Duration>,
    graceful: Duration,
}

impl Limits {
    /// The limits `options` set.
    pub fn of(options: &Options) -> Limits {
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        Limits {
            ping_every: nonzero(options.ws_ping_interval.0),
            ping_timeout: options.ws_ping_timeout.0,
            idle: nonzero(options.ws_idle_timeout.0),
            graceful: options.graceful_timeout.0,
        }
    }
}

/// The session is over: the socket closed, failed, or ran out of time.
struct Ended;

/// One open socket.
pub struct Session {
    running: Running,
    ws: WsStream,
    /// The messages each way, and the app's close.
    queues: Arc<Queues>,
    /// The socket may have something to read (it said so, or was not
    /// asked since).
    may_read: bool,
    /// A write waits for the socket to take more.
    write_blocked: bool,
    /// The server's stop, until it began.
    stopping: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    wakes: Wakes,
    timer: Pin<Box<Sleep>>,
    /// What the timer is set for (`None`: it is not set).
    armed: Option<Instant>,
    deadlines: Deadlines,
    limits: Limits,
    socket: Socket,
    /// Frames were written that are not flushed yet.
    unflushed: bool,
    /// The session ends once what was written is flushed.
    end_when_flushed: bool,
}

/// When things are due.
struct Deadlines {
    /// The next ping.
    ping: Option<Instant>,
    /// The answer to the ping sent.
    pong: Option<Instant>,
    /// The last message either way (for `--ws-idle-timeout`).
    active: Instant,
    /// The end of the close handshake (or of the app's time after it).
    close: Option<Instant>,
    /// The 1001 of a server that stops.
    stop: Option<Instant>,
}

/// What the session knows of the socket.
#[derive(Default)]
struct Socket {
    /// The close code the server sent, once it did.
    closing: Option<u16>,
    /// The client sent its close.
    peer_closed: bool,
    /// A read failed with a protocol error (its close was sent).
    failed: bool,
    /// Bytes of the messages received.
    received: u64,
}

impl Session {
    /// The session of `ws`, for the app `running`, which has its side of
    /// `queues`.
    pub fn new(running: Running, ws: WsStream, queues: Arc<Queues>, limits: Limits) -> Session {
        let now = Instant::now();
        let drain = running.call().state.drain.clone();
        let wakes = Wakes::new();
        queues.register_session(&wakes.queues);
        Session {
            ws,
            queues,
            may_read: true,
            write_blocked: false,
            stopping: Some(Box::pin(async move { drain.began().await })),
            wakes,
            timer: Box::pin(tokio::time::sleep_until(now)),
            armed: None,
            deadlines: Deadlines {
                ping: limits.ping_every.map(|every| now + every),
                pong: None,
                active: now,
                close: None,
                stop: None,
            },
            limits,
            socket: Socket::default(),
            unflushed: false,
            end_when_flushed: false,
            running,
        }
    }

    /// Runs the socket to its end, then closes it and tells the app.
    pub async fn run(mut self) {
        self.arm();
        std::future::poll_fn(|cx| self.poll(cx)).await;
        // The last frames, within bounds: a client that reads nothing
        // must not hold the task.
        let _ = tokio::time::timeout(CLOSE_WAIT, self.ws.close(None)).await;
        self.running.exchange().end("the WebSocket is closed");
        self.running.count_received(self.socket.received);
        log::debug!(
            "WebSocket closed: {} bytes of messages received, close {:?}",
            self.socket.received,
            self.socket.closing
        );
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.wakes.enter(cx.waker());
        for _ in 0..ROUNDS_PER_POLL {
            if self.round().is_err() {
                self.wakes.stop_polling();
                return Poll::Ready(());
            }
            if self.wakes.leave() {
                return Poll::Pending;
            }
        }
        self.wakes.stop_polling();
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// One round over the parts.
    fn round(&mut self) -> Result<(), Ended> {
        let woken = self.wakes.take();
        self.may_read |= woken.read();
        if woken.write() {
            self.write_blocked = false;
        }
        if woken.stop() {
            self.poll_stopping();
        }
        if woken.timer() {
            self.poll_timer()?;
        }
        if woken.app() {
            self.poll_app()?;
        }
        if woken.queues() {
            if let Some((code, reason)) = self.queues.take_close() {
                self.begin_close(code, &reason);
            }
        }
        self.send_outgoing()?;
        self.receive()?;
        self.flush()
    }

    /// The server's stop: the 1001 is due a second before the graceful
    /// timeout ends.
    fn poll_stopping(&mut self) {
        let Some(stopping) = self.stopping.as_mut() else {
            return;
        };
        if stopping
            .as_mut()
            .poll(&mut Context::from_waker(&self.wakes.stop))
            .is_ready()
        {
            self.stopping = None;
            self.deadlines.stop = Some(Instant::now() + self.limits.graceful.saturating_sub(CLOSE_BEFORE_STOP));
            self.arm();
        }
    }

    /// Sets the timer for the earliest deadline, if that is sooner than
    /// what it is set for (a timer that fires early is set again).
    fn arm(&mut self) {
        let Some(next) = self.deadlines.earliest(self.limits.idle) else {
            return;
        };
        if self.armed.is_some_and(|armed| armed <= next) {
            return;
        }
        self.timer.as_mut().reset(next);
        self.armed = Some(next);
        self.wakes.mark_timer();
    }

    /// Whatever is due when the timer fires.
    fn poll_timer(&mut self) -> Result<(), Ended> {
        if self.armed.is_none() {
            return Ok(());
        }
        if self
            .timer
            .as_mut()
            .poll(&mut Context::from_waker(&self.wakes.timer))
            .is_pending()
        {
            return Ok(());
        }
        self.armed = None;
        let now = Instant::now();
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if due(self.deadlines.close) {
            return Err(Ended);
        }
        if due(self.deadlines.stop) {
            self.deadlines.stop = None;
            self.begin_close(1001, "the server is restarting");
        }
        if due(self.deadlines.pong) {
            self.deadlines.pong = None;
            self.begin_close(1011, "no answer to a ping");
        }
        if self.limits.idle.is_some_and(|idle| self.deadlines.active + idle <= now) {
            self.deadlines.active = now;
            self.begin_close(1001, "idle");
        }
        if due(self.deadlines.ping) {
            self.deadlines.ping = self.limits.ping_every.map(|every| now + every);
            if self.socket.closing.is_none() {
                self.write(Message::Ping(Default::default()))?;
                self.deadlines.pong.get_or_insert(now + self.limits.ping_timeout);
            }
        }
        self.arm();
        Ok(())
    }

    /// Polls the app's future; once it finished, the socket closes.
    fn poll_app(&mut self) -> Result<(), Ended> {
        if self.running.outcome().is_some() {
            return Ok(());
        }
        let polled = self.running.poll_app(&mut Context::from_waker(&self.wakes.app));
        let Poll::Ready(outcome) = polled else {
            return Ok(());
        };
        self.running.set_outcome(outcome);
        self.app_finished()
    }

    /// The app is done: the server closes (1000, or 1011 if it failed),
    /// or, if the client closed already, the session ends.
    fn app_finished(&mut self) -> Result<(), Ended> {
        if self.socket.peer_closed {
            self.end_when_flushed = true;
            return Ok(());
        }
        let failed = self.running.outcome().is_some_and(Result::is_err);
        if failed {
            self.begin_close(1011, "the app failed");
        } else {
            self.begin_close(1000, "");
        }
        Ok(())
    }

    /// The app's messages, written while the socket takes them (after a
    /// close, they are dropped: the protocol allows no more).
    fn send_outgoing(&mut self) -> Result<(), Ended> {
        while !self.write_blocked {
            if self.socket.closing.is_none() {
                match Pin::new(&mut self.ws).poll_ready(&mut Context::from_waker(&self.wakes.write)) {
                    Poll::Pending => {
                        self.write_blocked = true;
                        return Ok(());
                    }
                    Poll::Ready(Err(_)) => return Err(Ended),
                    Poll::Ready(Ok(())) => {}
                }
            }
            let Some(message) = self.queues.next_outgoing() else {
                return Ok(());
            };
            if self.socket.closing.is_some() {
                continue;
            }
            let message = match message {
                WsOutgoing::Text(text) => Message::Text(text.into()),
                WsOutgoing::Binary(bytes) => Message::Binary(bytes::Bytes::from_owner(bytes)),
            };
            let len = message.len() as u64;
            self.write(message)?;
            self.running.count_sent(len);
            self.running.call().state.metrics.ws_message(Direction::Out);
            self.touch();
        }
        Ok(())
    }

    /// The client's messages, handed to the app while its queue has room.
    fn receive(&mut self) -> Result<(), Ended> {
        while self.may_read && !self.socket.peer_closed && !self.socket.failed {
            // An app that finished gets nothing more: messages are read
            // and dropped.
            let listening = self.running.outcome().is_none();
            if listening && !self.queues.has_room() {
                return Ok(()); // the queues wake the session when it has
            }
            let polled = Pin::new(&mut self.ws).poll_next(&mut Context::from_waker(&self.wakes.read));
            let message = match polled {
                Poll::Pending => {
                    self.may_read = false;
                    return Ok(());
                }
                Poll::Ready(None) => return Err(Ended),
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(error))) => {
                    let (code, reason) = close_for(&error).ok_or(Ended)?;
                    log::debug!("closing a WebSocket with {code}: {error}");
                    self.socket.failed = true;
                    self.begin_close(code, reason);
                    return Ok(());
                }
            };
            if let Some(event) = self.take_in(message) {
                if listening {
                    self.queues.deliver(event);
                }
            }
        }
        Ok(())
    }

    /// What a message from the client means for the session, and the event
    /// it is for the app (none for control frames).
    fn take_in(&mut self, message: Message) -> Option<WsEvent> {
        match message {
            Message::Text(text) => {
                self.took_in(text.len());
                Some(WsEvent::Text(text.as_str().to_owned()))
            }
            Message::Binary(bytes) => {
                self.took_in(bytes.len());
                Some(WsEvent::Binary(bytes.to_vec()))
            }
            // tungstenite queued the answer to a ping: it goes out with the
            // next flush.
            Message::Ping(_) | Message::Frame(_) => {
                self.unflushed = true;
                None
            }
            Message::Pong(_) => {
                self.deadlines.pong = None;
                None
            }
            Message::Close(frame) => {
                self.socket.peer_closed = true;
                // tungstenite queued the reply to a close it did not start.
                self.unflushed = true;
                if self.socket.closing.is_some() || self.running.outcome().is_some() {
                    self.end_when_flushed = true;
                } else {
                    // The app has as long to finish as a close handshake.
                    self.deadlines.close = Some(Instant::now() + CLOSE_WAIT);
                    self.arm();
                }
                Some(match frame {
                    Some(frame) => WsEvent::Close(u16::from(frame.code), frame.reason.as_str().to_owned()),
                    None => WsEvent::Close(1005, String::new()),
                })
            }
        }
    }

    /// Counts a message of `len` bytes from the client.
    fn took_in(&mut self, len: usize) {
        self.socket.received += len as u64;
        self.running.call().state.metrics.ws_message(Direction::In);
        self.touch();
    }

    /// Writes what was sent since the last flush; ends the session once
    /// flushed if it is to end.
    fn flush(&mut self) -> Result<(), Ended> {
        if self.unflushed {
            if self.write_blocked {
                return Ok(());
            }
            match Pin::new(&mut self.ws).poll_flush(&mut Context::from_waker(&self.wakes.write)) {
                Poll::Pending => {
                    self.write_blocked = true;
                    return Ok(());
                }
                Poll::Ready(Err(_)) => return Err(Ended),
                Poll::Ready(Ok(())) => self.unflushed = false,
            }
        }
        if self.end_when_flushed {
            return Err(Ended);
        }
        Ok(())
    }

    /// Starts the close handshake with `code`, unless it started; the
    /// session ends once it is out if the client closed or broke the
    /// protocol.
    fn begin_close(&mut self, code: u16, reason: &str) {
        if self.socket.closing.is_none() {
            self.socket.closing = Some(code);
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_owned().into(),
            };
            if self.write(Message::Close(Some(frame))).is_err() {
                self.end_when_flushed = true;
            }
            self.deadlines.close = Some(Instant::now() + CLOSE_WAIT);
            self.arm();
        }
        if self.socket.peer_closed || self.socket.failed {
            self.end_when_flushed = true;
        }
    }

    /// Queues a frame for the next flush.
    fn write(&mut self, message: Message) -> Result<(), Ended> {
        Pin::new(&mut self.ws).start_send(message).map_err(|_| Ended)?;
        self.unflushed = true;
        Ok(())
    }

    /// Notes a message either way, for `--ws-idle-timeout` (no clock read
    /// without one).
    fn touch(&mut self) {
        if self.limits.idle.is_some() {
            self.deadlines.active = Instant::now();
        }
    }
}

impl Drop for Session {
    /// However the session ends (its task may be dropped with the
    /// runtime), the app's side learns the socket is gone.
    fn drop(&mut self) {
        self.queues.end();
    }
}

impl Deadlines {
    /// The soonest deadline.
    fn earliest(&self, idle: Option<Duration>) -> Option<Instant> {
        [
            self.ping,
            self.pong,
            idle.map(|idle| self.active + idle),
            self.close,
            self.stop,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The close code and reason for a read error (`None`: the connection
/// itself failed, and no close can go out).
fn close_for(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Protocol(_) => Some((1002, "protocol error")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in a text message")),
        WsError::Capacity(_) => Some((1009, "message too big (server option --ws-max-message)")),
        _ => None,
    }
}
