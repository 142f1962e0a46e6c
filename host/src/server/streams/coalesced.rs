//! Small writes gathered into one (for HTTP/2). hyper's HTTP/2 server runs
//! each stream on its own task and writes whatever is ready each time its
//! connection task runs: under load that is one response at a time, each a
//! `writev` (and, under TLS, a record) of its own. [`Coalesced`] keeps
//! small writes in a buffer and, at a flush, first lets the other ready
//! tasks run once (a yield), so the responses they finish meanwhile go out
//! in the same write. Writes of [`SMALL`] bytes or more go straight
//! through (after what is buffered), so a file's large slices keep their
//! `sendfile` path ([`super::zero_copy`]) and are never copied.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes smaller than this are buffered; larger ones go straight through.
pub const SMALL: usize = 8 * 1024;

/// A stream whose small writes are gathered until a flush.
pub struct Coalesced<S> {
    inner: S,
    pending: BytesMut,
    /// The flush already yielded once for what is pending.
    yielded: bool,
}

impl<S> Coalesced<S> {
    /// `inner`, with its small writes gathered.
    pub fn new(inner: S) -> Coalesced<S> {
        Coalesced {
            inner,
            pending: BytesMut::new(),
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesced<S> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(written);
        }
        self.yielded = false;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: `true` if they fit in the buffer,
    /// `false` if they should go straight through.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.pending.len() + len > SMALL {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len < SMALL))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if ready!(this.poll_room(cx, buf.len()))? {
            this.pending.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if ready!(this.poll_room(cx, len))? {
            for buf in bufs {
                this.pending.extend_from_slice(buf);
            }
            return Poll::Ready(Ok(len));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() && !this.yielded {
            // Woken while running, a tokio task goes to the back of the
            // queue: the tasks already ready run before this one again.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_writes_leave_together_at_the_flush_and_large_ones_at_once() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut stream = Coalesced::new(near);
        stream.write_all(b"one ").await.unwrap();
        stream.write_all(b"two ").await.unwrap();
        let mut got = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), far.read(&mut got)).await;
        assert!(early.is_err(), "small writes went out before the flush");
        stream.flush().await.unwrap();
        let n = far.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"one two ");

        // A large write first sends what is buffered, then itself.
        let large = vec![b'x'; SMALL];
        stream.write_all(b"head ").await.unwrap();
        stream.write_all(&large).await.unwrap();
        let mut all = vec![0u8; 5 + SMALL];
        far.read_exact(&mut all).await.unwrap();
        assert!(all.starts_with(b"head xxx"));
        stream.shutdown().await.unwrap();
        assert_eq!(far.read(&mut got).await.unwrap(), 0);
    }
}
