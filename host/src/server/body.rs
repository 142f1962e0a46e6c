//! [`Body`]: every response body the server sends, in one enum so the hot
//! path needs no boxing.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// A streamed piece of body, or the error that aborts the response.
pub type BodyFrame = Result<Bytes, io::Error>;

/// A response body: empty, one buffer, or a stream of frames.
pub enum Body {
    /// Nothing (also what HEAD responses carry).
    Empty,
    /// One buffer, sent with a Content-Length.
    Full(Option<Bytes>),
    /// Frames already at hand, then (if any) the ones a producer (the
    /// app's thread, a file reader) sends through a channel.
    Stream {
        /// Sent first, in order.
        queued: VecDeque<BodyFrame>,
        /// The producer's channel.
        rx: Option<mpsc::Receiver<BodyFrame>>,
    },
}

impl Body {
    /// A one-buffer body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }

    /// A body fed through `rx`.
    pub fn channel(rx: mpsc::Receiver<BodyFrame>) -> Self {
        Body::Stream {
            queued: VecDeque::new(),
            rx: Some(rx),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream { queued, rx } => match (queued.pop_front(), rx) {
                (Some(frame), _) => Poll::Ready(Some(frame.map(Frame::data))),
                (None, Some(rx)) => rx.poll_recv(cx).map(|frame| frame.map(|r| r.map(Frame::data))),
                (None, None) => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream { queued, rx } => queued.is_empty() && rx.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream { .. } => SizeHint::default(),
        }
    }
}
