//! Zero-copy file bodies on the socket side: a large file travels through
//! hyper as an ordinary `Bytes` over a mapping (see [`crate::open_file`]),
//! and when hyper hands such a slice to the socket, [`ZeroCopy`]
//! recognises it and has the kernel send it from the page cache with
//! `sendfile(2)` — the bytes never pass through user space, and nothing
//! reads the mapping. The head before a file is sent with `MSG_MORE` so it
//! shares packets with the file's first bytes.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::open_file::file_of;

/// A socket `sendfile` can write to without blocking the runtime.
pub trait Socket: AsyncRead + AsyncWrite + AsRawFd + Unpin {
    /// Waits until the socket may be writable.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Runs a non-blocking write; `WouldBlock` clears the readiness.
    fn try_write_with<R>(&self, write: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

impl Socket for TcpStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with<R>(&self, write: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(Interest::WRITABLE, write)
    }
}

impl Socket for UnixStream {
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }
    fn try_write_with<R>(&self, write: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(Interest::WRITABLE, write)
    }
}

/// A socket that sends mapped file slices with `sendfile`.
pub struct ZeroCopy<S>(S);

impl<S: Socket> ZeroCopy<S> {
    /// Wraps an accepted socket.
    pub fn new(socket: S) -> ZeroCopy<S> {
        ZeroCopy(socket)
    }

    /// Sends up to `count` bytes of `fd` from `offset`.
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, fd: RawFd, offset: u64, count: usize) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_writable(cx))?;
            let socket = self.0.as_raw_fd();
            let sent = self.0.try_write_with(|| {
                let mut offset = offset as libc::off_t;
                // SAFETY: both descriptors are open (the socket is ours; the
                // file belongs to a mapping that a `Bytes` being written
                // keeps alive) and `offset` is a valid off_t to update.
                let sent = unsafe { libc::sendfile(socket, fd, &mut offset, count) };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(sent as usize)
                }
            });
            match sent {
                // The file shrank under us: the promised length cannot be sent.
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(sent) => return Poll::Ready(Ok(sent)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<S: Socket> ZeroCopy<S> {
    /// Sends `bufs` with `MSG_MORE`: the kernel waits for what follows.
    fn poll_send_more(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_writable(cx))?;
            let socket = self.0.as_raw_fd();
            let sent = self.0.try_write_with(|| {
                // SAFETY: an all-zero msghdr is valid; the iovec pointer
                // and count describe `bufs`, whose layout matches iovec.
                let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
                message.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                message.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
                // SAFETY: `socket` is our open socket and `message` points
                // at live buffers for the duration of the call.
                let sent = unsafe { libc::sendmsg(socket, &message, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(sent as usize)
                }
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl<S: Socket> AsyncRead for ZeroCopy<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for ZeroCopy<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match file_of(buf) {
            Some((fd, offset)) => this.poll_sendfile(cx, fd, offset, buf.len()),
            None => Pin::new(&mut this.0).poll_write(cx, buf),
        }
    }

    /// Plain slices before the first mapped one go out in one `writev`;
    /// a mapped slice at the front goes out with `sendfile`.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first_mapped = bufs.iter().position(|buf| file_of(buf).is_some());
        match first_mapped {
            Some(0) => {
                let (fd, offset) = file_of(&bufs[0]).expect("found just now");
                this.poll_sendfile(cx, fd, offset, bufs[0].len())
            }
            // The head before a file: held back (MSG_MORE) to leave in the
            // same packets as the file's first bytes, as nginx's
            // `tcp_nopush` does; one segment less for the client to read.
            Some(plain) => this.poll_send_more(cx, &bufs[..plain]),
            None => Pin::new(&mut this.0).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open_file::{tests::temp_file, OpenFile};
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn mapped_slices_arrive_whole_between_plain_ones() {
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let len = content.len() as u64;
        let open = OpenFile::new(temp_file(&content), len);
        let mapped = open.mapped(0..len).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            received
        });
        let mut socket = ZeroCopy::new(server);
        let mut expected = b"head\r\n".to_vec();
        expected.extend_from_slice(&content[1000..2_500_000]);
        expected.extend_from_slice(b"tail");
        let mut parts = [
            Bytes::from_static(b"head\r\n"),
            mapped.slice(1000..2_500_000),
            Bytes::from_static(b"tail"),
        ];
        let mut at = 0;
        while at < parts.len() {
            let slices: Vec<IoSlice<'_>> = parts[at..].iter().map(|p| IoSlice::new(p)).collect();
            let mut written = socket.write_vectored(&slices).await.unwrap();
            while written > 0 {
                let take = written.min(parts[at].len());
                bytes::Buf::advance(&mut parts[at], take);
                written -= take;
                if parts[at].is_empty() {
                    at += 1;
                }
            }
        }
        socket.shutdown().await.unwrap();
        drop(socket);
        assert!(reader.await.unwrap() == expected, "the bytes differ");
    }
}
