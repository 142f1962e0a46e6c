//! Listening sockets (TCP and unix) and what the environ needs to know
//! about each accepted connection.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::net::{TcpListener, UnixListener};

use crate::config::BindAddr;
use crate::server::streams::zero_copy::ZeroCopy;
use crate::server::streams::Stream;

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
    /// The peer is a trusted proxy (`--forwarded-allow-ips`): its
    /// forwarding headers and request ids are believed.
    pub trusted_proxy: bool,
    /// The connection is TLS: `wsgi.url_scheme` is `https`.
    pub https: bool,
    /// The client's certificate as environ variables (`SSL_CLIENT_*`),
    /// with `--ca-certs`.
    pub client_cert: Option<std::sync::Arc<crate::header_list::HeaderList>>,
}

impl ConnInfo {
    /// Whether a response in HTTP `version` on this connection may send a
    /// large file's mapped slices with `sendfile`: only in cleartext
    /// HTTP/1, where they reach the socket untouched. TLS and HTTP/2 need
    /// the bytes themselves, which are then read (see
    /// [`crate::open_file`]).
    pub fn sendfile(&self, version: hyper::Version) -> bool {
        !self.https && version != hyper::Version::HTTP_2
    }
}

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket, its path, and whether to remove the file on drop.
    Unix(UnixListener, PathBuf, bool),
}

/// Binds `addr` as a plain (blocking-mode) socket the process can keep,
/// pass to workers, or turn into a [`Listener`]; the error names the
/// address and the option.
pub fn bind_socket(addr: &BindAddr) -> Result<OwnedFd, String> {
    let fail = |e: io::Error| format!("cannot listen on {addr}: {e}; choose another --bind address");
    match addr {
        BindAddr::Tcp(socket) => Ok(std::net::TcpListener::bind(socket).map_err(fail)?.into()),
        BindAddr::Unix(path) => {
            remove_stale_socket(path);
            Ok(std::os::unix::net::UnixListener::bind(path).map_err(fail)?.into())
        }
    }
}

/// Listening sockets handed down by a parent: systemd's socket activation
/// (`LISTEN_PID` / `LISTEN_FDS`) or the master (`HOST_LISTEN_FDS`); they
/// start at fd 3. `None` if there are none.
pub fn inherited_sockets() -> Option<Vec<OwnedFd>> {
    let count = crate::inherited::take_listen_fds()?;
    // SAFETY: by the LISTEN_FDS convention these descriptors were opened
    // for us by the parent and nothing else in this process owns them
    // (they are taken once).
    Some(
        (0..count)
            .map(|i| unsafe { OwnedFd::from_raw_fd(3 + i as i32) })
            .collect(),
    )
}

impl Listener {
    /// Binds `addr` and listens on it in this process.
    pub fn bind(addr: &BindAddr) -> Result<Listener, String> {
        let fd = bind_socket(addr)?;
        let path = match addr {
            BindAddr::Unix(path) => Some(path.clone()),
            BindAddr::Tcp(_) => None,
        };
        Listener::from_socket(fd, path).map_err(|e| format!("cannot listen on {addr}: {e}"))
    }

    /// Serves on an already listening socket; a unix socket's file is
    /// removed on drop only if `owned_path` is given.
    pub fn from_socket(fd: OwnedFd, owned_path: Option<PathBuf>) -> io::Result<Listener> {
        if socket_family(&fd)? == libc::AF_UNIX {
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            let path = listener
                .local_addr()?
                .as_pathname()
                .map(PathBuf::from)
                .unwrap_or_default();
            Ok(Listener::Unix(
                UnixListener::from_std(listener)?,
                path,
                owned_path.is_some(),
            ))
        } else {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(listener)?))
        }
    }

    /// The URL (or socket) clients should use.
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp(listener) => match listener.local_addr() {
                Ok(addr) => format!("http://{addr}/"),
                Err(_) => "http://?".to_owned(),
            },
            Listener::Unix(_, path, _) => format!("unix:{}", path.display()),
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
                    trusted_proxy: false,
                    https: false,
                    client_cert: None,
                };
                Ok((Box::new(ZeroCopy::new(stream)), info))
            }
            Listener::Unix(listener, path, _) => {
                let (stream, _) = listener.accept().await?;
                let info = ConnInfo {
                    server_name: path.display().to_string(),
                    ..ConnInfo::default()
                };
                Ok((Box::new(ZeroCopy::new(stream)), info))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path, true) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The URL clients use for a listening socket.
pub fn socket_url(fd: &OwnedFd) -> String {
    let Ok(copy) = fd.try_clone() else {
        return "?".to_owned();
    };
    if socket_family(fd).ok() == Some(libc::AF_UNIX) {
        let listener = std::os::unix::net::UnixListener::from(copy);
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(PathBuf::from));
        format!("unix:{}", path.unwrap_or_default().display())
    } else {
        let listener = std::net::TcpListener::from(copy);
        listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| format!("http://{a}/"))
    }
}

/// The address family of a socket.
fn socket_family(fd: &OwnedFd) -> io::Result<libc::c_int> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is a writable sockaddr_storage and `len` its size, as
    // getsockname requires; `fd` is an open descriptor we own.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(libc::c_int::from(storage.ss_family))
    } else {
        Err(io::Error::last_os_error())
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
