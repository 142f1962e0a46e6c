//! Opening client WebSockets (TCP, then the HTTP/1.1 upgrade), one or many
//! at a time, and the socket settings wsload uses on both ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::outcome::Tally;

/// A client WebSocket over plain TCP.
pub type Socket = WebSocketStream<TcpStream>;

/// The longest one connection may take to open (TCP and handshake).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of every socket wsload opens or accepts: the host's (see
/// `host/src/server/app_gateway/websocket.rs`), a 4 KiB read buffer and no
/// write buffering, instead of tungstenite's default 128 KiB each.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// Where to connect for a WebSocket URL: `ws://HOST[:PORT]/PATH`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL, sent in the handshake.
    url: String,
    /// The host name or address to connect to.
    host: String,
    /// The TCP port (80 when the URL names none).
    port: u16,
}

impl Target {
    /// Parses a `ws://` URL; `wss://` is refused (the benchmark runs
    /// without TLS).
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--url {url}: {e}"))?;
        if uri.scheme_str() != Some("ws") {
            return Err(format!("--url {url}: only ws:// URLs are supported"));
        }
        let host = uri.host().ok_or_else(|| format!("--url {url}: no host"))?;
        Ok(Target {
            url: url.to_owned(),
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port: uri.port_u16().unwrap_or(80),
        })
    }
}

/// Why a socket could not be opened: the kind counted in a [`Tally`].
pub type OpenFailure = &'static str;

/// Opens one WebSocket to `target`, giving up at `deadline` or after
/// [`OPEN_TIMEOUT`], whichever comes first.
pub async fn open(target: &Target, deadline: Instant) -> Result<Socket, OpenFailure> {
    let deadline = deadline.min(Instant::now() + OPEN_TIMEOUT);
    let attempt = async {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| "connect")?;
        let _ = stream.set_nodelay(true);
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config()))
                .await
                .map_err(|_| "handshake")?;
        Ok(socket)
    };
    tokio::time::timeout_at(deadline, attempt)
        .await
        .unwrap_or(Err("open timeout"))
}

/// Opens `count` WebSockets to `target`, at most `concurrency` handshakes
/// at a time, giving up on those not open by `deadline`. Returns the open
/// sockets and the failures by kind.
pub async fn open_many(target: &Target, count: usize, concurrency: usize, deadline: Instant) -> (Vec<Socket>, Tally) {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (target, permits) = (target.clone(), permits.clone());
        tasks.spawn(async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = permits.acquire_owned().await;
            open(&target, deadline).await
        });
    }
    let mut sockets = Vec::with_capacity(count);
    let mut failures = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(kind)) => failures.add(kind),
            Err(_) => failures.add("open task failed"),
        }
    }
    (sockets, failures)
}

/// Unit tests of URL parsing.
#[cfg(test)]
mod tests {
    use super::Target;

    /// ws:// URLs give a host and port; other schemes are refused.
    #[test]
    fn targets() {
        let target = Target::parse("ws://127.0.0.1:8000/ws").expect("a valid URL");
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 8000));
        let target = Target::parse("ws://[::1]/ws").expect("a valid URL");
        assert_eq!((target.host.as_str(), target.port), ("::1", 80));
        assert!(Target::parse("wss://127.0.0.1/ws").is_err());
        assert!(Target::parse("http://127.0.0.1/ws").is_err());
    }
}
