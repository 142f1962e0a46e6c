//! Byte streams under HTTP: what every connection's stream is
//! ([`Stream`]), large files sent with `sendfile` ([`zero_copy`]), small
//! HTTP/2 writes gathered into one ([`coalesced`]), and bytes read ahead
//! put back ([`rewound`]).

pub mod coalesced;
pub mod rewound;
pub mod zero_copy;

use tokio::io::{AsyncRead, AsyncWrite};

/// The body of an `AsyncWrite` impl for a wrapper whose writes go straight
/// through to its field `$inner` (the wrappers that only change reading).
macro_rules! forward_async_write {
    ($inner:ident) => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().$inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().$inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.$inner.is_write_vectored()
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().$inner).poll_flush(cx)
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().$inner).poll_shutdown(cx)
        }
    };
}
pub(crate) use forward_async_write;

/// An accepted connection's stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
