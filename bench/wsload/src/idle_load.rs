//! `wsload idle`: opens `--connections` WebSockets, at most
//! `--concurrency` handshakes at a time, then holds them for `--seconds`
//! without sending anything, reading all the while so every ping the
//! server sends is answered (tungstenite sends the pong).
//!
//! Prints two JSON objects, one per line: `{"event": "opened", …}` once the
//! opening is over (the hold starts then), and `{"event": "done", …}` at
//! the end of the hold, with how many sockets are still open and how many
//! pings they got. The sockets are closed only after that line.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::open::{open_many, Socket, Target};
use crate::outcome::{print_json, Tally};

/// `wsload idle` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The WebSocket to open, e.g. ws://127.0.0.1:8000/ws.
    #[arg(long)]
    url: String,
    /// Sockets to open.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// How long to hold them, once the opening is over.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// The longest the opening may take; sockets not open by then count
    /// as failed.
    #[arg(long, default_value_t = 120.0)]
    open_seconds: f64,
    /// Runtime threads of the client.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// The line printed when the opening is over.
#[derive(Debug, Serialize)]
struct Opened {
    /// Always `"opened"`.
    event: &'static str,
    /// Sockets open.
    opened: usize,
    /// Sockets that could not be opened, by why.
    failed: Tally,
    /// How long the opening took.
    open_seconds: f64,
    /// How long the sockets will now be held.
    hold_seconds: f64,
}

/// The line printed at the end of the hold.
#[derive(Debug, Serialize)]
struct Done {
    /// Always `"done"`.
    event: &'static str,
    /// Sockets asked for.
    connections: usize,
    /// Sockets open when the hold started.
    opened: usize,
    /// Sockets still open at its end.
    still_open: usize,
    /// Sockets that ended during the hold, by how.
    ended: Tally,
    /// Pings received on all sockets during the hold (each answered).
    pings: u64,
    /// The fewest pings a socket still open received.
    min_pings: Option<u64>,
}

/// How one socket's hold went.
struct Held {
    /// The socket, if it is still open; kept open until the report is out.
    socket: Option<Socket>,
    /// Pings received.
    pings: u64,
    /// Why it ended early, if it did.
    ended: Option<&'static str>,
}

/// Opens, holds and reports.
pub async fn run(options: Options) -> Result<(), String> {
    let target = Target::parse(&options.url)?;
    let hold_time = positive_seconds("--seconds", options.seconds)?;
    let open_time = positive_seconds("--open-seconds", options.open_seconds)?;
    let opening = Instant::now();
    let (sockets, failed) = open_many(&target, options.connections, options.concurrency, opening + open_time).await;
    let opened = sockets.len();
    print_json(&Opened {
        event: "opened",
        opened,
        failed,
        open_seconds: opening.elapsed().as_secs_f64(),
        hold_seconds: hold_time.as_secs_f64(),
    })?;
    let deadline = Instant::now() + hold_time;
    let mut tasks = JoinSet::new();
    for socket in sockets {
        tasks.spawn(hold(socket, deadline));
    }
    let mut still_open = Vec::with_capacity(opened);
    let mut ended = Tally::default();
    let (mut pings, mut min_pings) = (0, None::<u64>);
    while let Some(joined) = tasks.join_next().await {
        let Ok(held) = joined else {
            ended.add("hold task failed");
            continue;
        };
        pings += held.pings;
        if let Some(why) = held.ended {
            ended.add(why);
        }
        if let Some(socket) = held.socket {
            still_open.push(socket);
            min_pings = Some(min_pings.map_or(held.pings, |fewest| fewest.min(held.pings)));
        }
    }
    print_json(&Done {
        event: "done",
        connections: options.connections,
        opened,
        still_open: still_open.len(),
        ended,
        pings,
        min_pings,
    })
}

/// `value` seconds as a duration, if it is a positive number.
fn positive_seconds(flag: &str, value: f64) -> Result<Duration, String> {
    if value > 0.0 && value.is_finite() {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} {value}: must be a positive number"))
    }
}

/// Reads from `socket` until `deadline`, counting pings, and notes why it
/// ended if it ended first.
async fn hold(mut socket: Socket, deadline: Instant) -> Held {
    let mut pings = 0;
    let ended = loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => {
                return Held {
                    socket: Some(socket),
                    pings,
                    ended: None,
                }
            }
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(_)))) => break "closed by the server",
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) => break "receive",
            Ok(None) => break "connection ended",
        }
    };
    Held {
        socket: None,
        pings,
        ended: Some(ended),
    }
}
