//! A stream whose first bytes were already read (a PROXY header's
//! reader, the HTTP/2 preface check): they are read again first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::streams::forward_async_write;

/// A stream whose first bytes were already read: they are read again
/// first.
pub struct Rewound<S> {
    first: Bytes,
    inner: S,
}

impl<S> Rewound<S> {
    /// `inner`, with `first` put back in front of it.
    pub fn new(first: Bytes, inner: S) -> Rewound<S> {
        Rewound { first, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let count = this.first.len().min(buf.remaining());
        buf.put_slice(&this.first[..count]);
        this.first.advance(count);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    forward_async_write!(inner);
}
