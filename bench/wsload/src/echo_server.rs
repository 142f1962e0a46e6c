//! `wsload echo-server`: the limit of the WebSocket scenarios. Plain
//! tokio-tungstenite, with the host's socket settings (a 4 KiB read buffer,
//! no write buffering), sending back every text and binary message as it
//! came. Pings are answered by tungstenite; with `--ping-interval` the
//! server also pings every socket, as the host's `--ws-ping-interval` does.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

/// The longest a client may take over its opening handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `wsload echo-server` options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The port to listen on, on 127.0.0.1 (0: a free one).
    #[arg(long)]
    port: u16,
    /// Seconds between the pings sent on every socket (0: no pings).
    #[arg(long, default_value_t = 0)]
    ping_interval: u64,
    /// Runtime threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Serves until the process is stopped.
pub async fn run(options: Options) -> Result<(), String> {
    let listener = crate::listen::listen(options.port).await?;
    let ping_every = (options.ping_interval > 0).then(|| Duration::from_secs(options.ping_interval));
    loop {
        // An accept error (such as too many open files) is passing: the
        // next accept may succeed.
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve(stream, ping_every));
    }
}

/// Runs one connection: the handshake, then the echo until either side
/// closes. Errors end the connection and concern only its client.
async fn serve(stream: TcpStream, ping_every: Option<Duration>) {
    let _ = stream.set_nodelay(true);
    let accept = tokio_tungstenite::accept_async_with_config(stream, Some(crate::open::config()));
    let Ok(Ok(socket)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await else {
        return;
    };
    match ping_every {
        Some(every) => echo_and_ping(socket, every).await,
        None => echo(socket).await,
    }
}

/// Sends back every data message until the client closes or fails.
async fn echo(mut socket: WebSocketStream<TcpStream>) {
    while let Some(Ok(message)) = socket.next().await {
        if is_data(&message) && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// [`echo`], also sending a ping every `every`.
async fn echo_and_ping(mut socket: WebSocketStream<TcpStream>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = socket.next() => match received {
                Some(Ok(message)) => {
                    if is_data(&message) && socket.send(message).await.is_err() {
                        return;
                    }
                }
                Some(Err(_)) | None => return,
            },
            _ = ticks.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Whether `message` carries data to echo (text or binary); tungstenite
/// answers pings and closes itself.
fn is_data(message: &Message) -> bool {
    matches!(message, Message::Text(_) | Message::Binary(_))
}
