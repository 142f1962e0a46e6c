//! Messages between processes: a worker's lines to its master ("ready",
//! "retire"), and systemd's sd_notify protocol.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

/// A worker's message to its master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerMessage {
    /// Apps loaded, listening: send it work.
    Ready,
    /// A request is stuck in the app: start a replacement; this worker
    /// drains and exits.
    Retire,
}

impl WorkerMessage {
    /// The wire form: one line.
    pub fn line(self) -> &'static str {
        match self {
            WorkerMessage::Ready => "ready\n",
            WorkerMessage::Retire => "retire\n",
        }
    }

    /// Parses one line.
    pub fn parse(line: &str) -> Option<Self> {
        match line.trim() {
            "ready" => Some(WorkerMessage::Ready),
            "retire" => Some(WorkerMessage::Retire),
            _ => None,
        }
    }
}

/// The worker's end of the socket to its master (from `HOST_NOTIFY_FD`).
pub struct MasterLink(Option<UnixStream>);

impl MasterLink {
    /// Takes the socket the master passed, if any.
    pub fn from_env() -> MasterLink {
        let fd = std::env::var("HOST_NOTIFY_FD")
            .ok()
            .and_then(|fd| fd.parse::<i32>().ok());
        std::env::remove_var("HOST_NOTIFY_FD");
        // SAFETY: the master placed this socket at HOST_NOTIFY_FD for us and
        // nothing else in this process owns it.
        MasterLink(fd.map(|fd| unsafe { UnixStream::from_raw_fd(fd) }))
    }

    /// Sends `message`; a master that is gone is not an error here.
    pub fn send(&self, message: WorkerMessage) {
        if let Some(mut stream) = self.0.as_ref() {
            let _ = stream.write_all(message.line().as_bytes());
        }
    }
}

/// Tells systemd about our state (`READY=1`, `RELOADING=1`, `STOPPING=1`)
/// when started with `NOTIFY_SOCKET`; does nothing otherwise.
pub fn sd_notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), &path),
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
            assert_eq!(WorkerMessage::parse(message.line()), Some(message));
        }
        assert_eq!(WorkerMessage::parse("hello"), None);
    }

    #[test]
    fn sd_notify_reaches_the_socket() {
        let path = std::env::temp_dir().join(format!("sd-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        sd_notify("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(path).unwrap();
    }
}
