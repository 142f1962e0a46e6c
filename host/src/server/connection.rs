//! Listening sockets (TCP and unix) and what the environ needs to know
//! about each accepted connection.

use std::io;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

use crate::config::BindAddr;

/// The connection facts an app sees, formatted once per connection.
#[derive(Debug, Default)]
pub struct ConnInfo {
    /// `REMOTE_ADDR`.
    pub remote_addr: String,
    /// `REMOTE_PORT`.
    pub remote_port: String,
    /// `SERVER_NAME`.
    pub server_name: String,
    /// `SERVER_PORT`.
    pub server_port: String,
}

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket, removed again on drop.
    Unix(UnixListener, PathBuf),
}

/// An accepted connection's stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl Listener {
    /// Binds `addr`; the error names the address and the option.
    pub fn bind(addr: &BindAddr) -> Result<Listener, String> {
        let fail = |e: io::Error| format!("cannot listen on {addr}: {e}; choose another --bind address");
        match addr {
            BindAddr::Tcp(socket) => {
                let std_listener = std::net::TcpListener::bind(socket).map_err(fail)?;
                std_listener.set_nonblocking(true).map_err(fail)?;
                Ok(Listener::Tcp(TcpListener::from_std(std_listener).map_err(fail)?))
            }
            BindAddr::Unix(path) => {
                remove_stale_socket(path);
                let listener = UnixListener::bind(path).map_err(fail)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }

    /// The URL (or socket) clients should use.
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => format!("http://{addr}/"),
                Err(_) => "http://?".to_owned(),
            },
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> io::Result<(Box<dyn Stream>, ConnInfo)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr()?;
                let info = ConnInfo {
                    remote_addr: peer.ip().to_string(),
                    remote_port: peer.port().to_string(),
                    server_name: local.ip().to_string(),
                    server_port: local.port().to_string(),
                };
                Ok((Box::new(stream), info))
            }
            Listener::Unix(listener, path) => {
                let (stream, _) = listener.accept().await?;
                let info = ConnInfo {
                    server_name: path.display().to_string(),
                    ..ConnInfo::default()
                };
                Ok((Box::new(stream), info))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file nobody listens on (left by a crash) would block bind.
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
