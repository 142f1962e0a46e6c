//! `wsload echo`: `--connections` WebSockets, each sending a `--size`-byte
//! message and waiting for its echo, in a loop, for `--seconds`.
//!
//! The sockets are all opened first; the clock starts once they are open.
//! A round trip counts if its echo arrives before the end; a socket that
//! fails is counted by kind and opened again. Prints one JSON object:
//! `connections`, `opened`, `seconds`, `messages`, `per_second`, `p50_us`,
//! `p99_us`, `max_us` and `errors` (failures by kind).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::open::{open, open_many, Socket, Target};
use crate::outcome::{print_json, Latencies, Tally};

/// How long opening all the sockets may take.
const OPENING_TIME: Duration = Duration::from_secs(30);

/// How long past the end an echo may take before it counts as lost.
const REPLY_GRACE: Duration = Duration::from_secs(5);

/// The pause before a failed socket is opened again.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);

/// How long a socket's closing handshake may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// `wsload echo` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The WebSocket to load, e.g. ws://127.0.0.1:8000/ws.
    #[arg(long)]
    url: String,
    /// Sockets, each with one message in flight at a time.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// How long to send, once every socket is open.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Bytes per message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Send binary messages instead of text.
    #[arg(long)]
    binary: bool,
    /// Runtime threads of the client.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// What `wsload echo` prints.
#[derive(Debug, Serialize)]
struct Report {
    /// Sockets asked for.
    connections: usize,
    /// Sockets open when the clock started.
    opened: usize,
    /// The measured time.
    seconds: f64,
    /// Round trips completed within it.
    messages: usize,
    /// `messages` / `seconds`.
    per_second: f64,
    /// The median round trip, in microseconds.
    p50_us: Option<u32>,
    /// The 99th percentile round trip, in microseconds.
    p99_us: Option<u32>,
    /// The longest round trip, in microseconds.
    max_us: Option<u32>,
    /// Failures by kind, opening included.
    errors: Tally,
}

/// Runs the load and prints its [`Report`].
pub async fn run(options: Options) -> Result<(), String> {
    let target = Target::parse(&options.url)?;
    if !(options.seconds > 0.0 && options.seconds.is_finite()) {
        return Err(format!("--seconds {}: must be a positive number", options.seconds));
    }
    let payload = payload(options.size, options.binary);
    let (sockets, mut errors) = open_many(
        &target,
        options.connections,
        options.connections,
        Instant::now() + OPENING_TIME,
    )
    .await;
    let opened = sockets.len();
    let measured = Duration::from_secs_f64(options.seconds);
    let deadline = Instant::now() + measured;
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(drive(socket, target.clone(), payload.clone(), deadline));
    }
    let mut latencies = Latencies::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((mine, my_errors)) => {
                latencies.merge(mine);
                errors.merge(my_errors);
            }
            Err(_) => errors.add("load task failed"),
        }
    }
    let messages = latencies.len();
    let summary = latencies.summary();
    print_json(&Report {
        connections: options.connections,
        opened,
        seconds: measured.as_secs_f64(),
        messages,
        per_second: messages as f64 / measured.as_secs_f64(),
        p50_us: summary.as_ref().map(|s| s.p50_us),
        p99_us: summary.as_ref().map(|s| s.p99_us),
        max_us: summary.as_ref().map(|s| s.max_us),
        errors,
    })
}

/// The message every socket sends: `size` bytes of ASCII letters, as text
/// or binary.
fn payload(size: usize, binary: bool) -> Message {
    let bytes: Vec<u8> = (b'a'..=b'z').cycle().take(size).collect();
    if binary {
        Message::binary(bytes)
    } else {
        Message::text(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// One socket's loop until `deadline`: round trips, opening the socket
/// again after a failure. Returns its round-trip times and failures.
async fn drive(socket: Socket, target: Target, payload: Message, deadline: Instant) -> (Latencies, Tally) {
    let mut latencies = Latencies::default();
    let mut errors = Tally::default();
    let mut socket = Some(socket);
    while Instant::now() < deadline {
        let Some(open_socket) = socket.as_mut() else {
            match open(&target, deadline).await {
                Ok(reopened) => socket = Some(reopened),
                Err(kind) => {
                    errors.add(format!("reopen: {kind}"));
                    tokio::time::sleep_until(deadline.min(Instant::now() + REOPEN_PAUSE)).await;
                }
            }
            continue;
        };
        match round_trip(open_socket, &payload, deadline).await {
            Ok(Some(took)) => latencies.record(took),
            Ok(None) => break,
            Err(kind) => {
                errors.add(kind);
                socket = None;
            }
        }
    }
    if let Some(mut socket) = socket {
        // The results are in; a close that fails or stalls changes nothing.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
    }
    (latencies, errors)
}

/// Sends `payload` and waits for its echo: the round trip's time, or
/// `None` if the echo came after `deadline`, or why it failed.
async fn round_trip(
    socket: &mut Socket,
    payload: &Message,
    deadline: Instant,
) -> Result<Option<Duration>, &'static str> {
    let sent = Instant::now();
    socket.send(payload.clone()).await.map_err(|_| "send")?;
    let reply = tokio::time::timeout_at(deadline + REPLY_GRACE, next_data(socket))
        .await
        .map_err(|_| "no echo")??;
    let arrived = Instant::now();
    if reply != *payload {
        return Err("wrong echo");
    }
    Ok((arrived <= deadline).then(|| arrived - sent))
}

/// The next text or binary message (pings and pongs skipped; tungstenite
/// answers pings itself), or why none came.
async fn next_data(socket: &mut Socket) -> Result<Message, &'static str> {
    loop {
        match socket.next().await {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => return Ok(message),
            Some(Ok(Message::Close(_))) => return Err("closed by the server"),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(_)) => return Err("receive"),
            None => return Err("connection ended"),
        }
    }
}

/// Unit tests of the message payload.
#[cfg(test)]
mod tests {
    use super::payload;

    /// Payloads have the asked size and type.
    #[test]
    fn payloads() {
        let text = payload(64, false);
        assert!(text.is_text());
        assert_eq!(text.len(), 64);
        assert_eq!(text.to_text().expect("text")[..3], *"abc");
        let binary = payload(30, true);
        assert!(binary.is_binary());
        assert_eq!(binary.len(), 30);
    }
}
