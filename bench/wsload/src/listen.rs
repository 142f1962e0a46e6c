//! The servers' listening socket on 127.0.0.1.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may queue before they are accepted: room for the
/// benchmark's 2,000 connections that all arrive at once.
const BACKLOG: u32 = 4096;

/// Listens on 127.0.0.1:`port` (0 picks a free port), then prints
/// `Serving on http://127.0.0.1:PORT/` on stdout, as the host does.
pub async fn listen(port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let fail = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let socket = TcpSocket::new_v4().map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    let listener = socket.listen(BACKLOG).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    let mut stdout = std::io::stdout().lock();
    // The line tells the harness the server is ready; a closed stdout is
    // no reason to stop serving.
    let _ = writeln!(stdout, "Serving on http://{bound}/");
    let _ = stdout.flush();
    Ok(listener)
}
