//! Messages between processes, one JSON object per line over the socket
//! pair between a master and each worker (worker → master: ready, retire;
//! master → worker: quarantines), and systemd's sd_notify protocol.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

use serde::{Deserialize, Serialize};

use super::quarantine::Scope;
use crate::server::observe::metrics::Snapshot;

/// A worker's message to its master.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Apps loaded, listening: send it work.
    Ready,
    /// A request is stuck in the app, or a recycling limit was reached:
    /// start a replacement; this worker drains and exits.
    Retire,
    /// The worker's figures for `/metrics` (sent every second when the
    /// master serves them).
    Metrics(Box<Snapshot>),
}

/// The master's message to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MasterMessage {
    /// Answer requests in `scope` with 503 for `for_ms` milliseconds,
    /// without calling the app.
    Quarantine {
        /// What is quarantined.
        scope: Scope,
        /// How long from now.
        for_ms: u64,
    },
    /// `scope`'s quarantine is over.
    Release {
        /// What was quarantined.
        scope: Scope,
    },
    /// Everything in force when the worker was started has been sent: the
    /// worker takes no request before it has read this far.
    Synced,
}

/// The wire form of a message: one line of JSON.
pub fn line<M: Serialize>(message: &M) -> String {
    let mut line = serde_json::to_string(message).expect("messages serialize");
    line.push('\n');
    line
}

/// Parses one line; `None` for anything else.
pub fn parse<M: for<'de> Deserialize<'de>>(line: &str) -> Option<M> {
    serde_json::from_str(line.trim()).ok()
}

/// The worker's end of the socket to its master (from `HOST_NOTIFY_FD`).
pub struct MasterLink(Option<UnixStream>);

impl MasterLink {
    /// Takes the socket the master passed, if any.
    pub fn from_env() -> MasterLink {
        let fd = crate::inherited::take_notify_fd();
        // SAFETY: the master placed this socket at HOST_NOTIFY_FD for us and
        // nothing else in this process owns it.
        MasterLink(fd.map(|fd| unsafe { UnixStream::from_raw_fd(fd) }))
    }

    /// Sends `message`; a master that is gone is not an error here.
    pub fn send(&self, message: WorkerMessage) {
        if let Some(mut stream) = self.0.as_ref() {
            let _ = stream.write_all(line(&message).as_bytes());
        }
    }

    /// A second handle on the socket, to read the master's messages from.
    pub fn reader(&self) -> Option<UnixStream> {
        self.0.as_ref().and_then(|stream| stream.try_clone().ok())
    }
}

/// Tells systemd about our state (`READY=1`, `RELOADING=1`, `STOPPING=1`)
/// when started with `NOTIFY_SOCKET`; does nothing otherwise.
pub fn sd_notify(state: &str) {
    if let Some(path) = crate::inherited::notify_socket() {
        notify_to(&path, state);
    }
}

/// Sends `state` to the notification socket at `path` (`@` for an
/// abstract name).
fn notify_to(path: &str, state: &str) {
    let sent = UnixDatagram::unbound().and_then(|socket| match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), path),
    });
    if let Err(e) = sent {
        log::warn!("sd_notify({}) to {path} failed: {e}", state.trim());
    }
}

/// `RELOADING=1` must carry the monotonic time (systemd's Type=notify-reload).
pub fn reloading_message() -> String {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `now`.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    format!("RELOADING=1\nMONOTONIC_USEC={micros}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for message in [WorkerMessage::Ready, WorkerMessage::Retire] {
            assert_eq!(parse::<WorkerMessage>(&line(&message)), Some(message));
        }
        let quarantine = MasterMessage::Quarantine {
            scope: Scope {
                mount: "/".into(),
                path: Some("/a b\n\"c".into()),
            },
            for_ms: 30_000,
        };
        let text = line(&quarantine);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert_eq!(parse::<MasterMessage>(&text), Some(quarantine));
        assert_eq!(parse::<WorkerMessage>("hello"), None);
    }

    #[test]
    fn sd_notify_reaches_the_socket() {
        let path = std::env::temp_dir().join(format!("sd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(path).unwrap();
    }
}
