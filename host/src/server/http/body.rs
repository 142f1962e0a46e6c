//! [`Body`]: every response body the server sends, in one enum so the hot
//! path needs no boxing.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::open_file::{OpenFile, READ_CHUNK};

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
    /// Part of a large file (see [`crate::open_file`]).
    File(FileBody),
    /// Any other body: what an async app is still sending (the app is
    /// polled as the body is).
    Boxed(Pin<Box<dyn http_body::Body<Data = Bytes, Error = io::Error> + Send>>),
}

/// Bytes of an open file still to send.
pub struct FileBody {
    file: Arc<OpenFile>,
    left: Range<u64>,
    /// The connection sends mapped slices with `sendfile` (cleartext
    /// HTTP/1); else the bytes are read in chunks.
    sendfile: bool,
}

impl FileBody {
    /// `range` of `file`; `sendfile` only where the socket layer sends
    /// mapped slices itself (cleartext HTTP/1), since nothing may read a
    /// mapping.
    pub fn new(file: Arc<OpenFile>, range: Range<u64>, sendfile: bool) -> FileBody {
        FileBody {
            file,
            left: range,
            sendfile,
        }
    }

    /// The next piece: the rest as one mapped slice, or a chunk read now.
    fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.sendfile {
            self.next_piece(|file, left| file.mapped(left.clone()))
        } else {
            self.next_read()
        }
    }

    /// The next chunk, read now (never a mapping).
    pub fn next_read(&mut self) -> Option<io::Result<Bytes>> {
        self.next_piece(|file, left| file.read(left, READ_CHUNK).map(Bytes::from))
    }

    fn next_piece(
        &mut self,
        take: impl FnOnce(&OpenFile, &Range<u64>) -> io::Result<Bytes>,
    ) -> Option<io::Result<Bytes>> {
        if self.left.is_empty() {
            return None;
        }
        let piece = take(&self.file, &self.left);
        match &piece {
            Ok(bytes) => self.left.start += bytes.len() as u64,
            Err(_) => self.left.start = self.left.end,
        }
        Some(piece)
    }
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
            Body::File(file) => Poll::Ready(file.next().map(|piece| piece.map(Frame::data))),
            Body::Boxed(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream { queued, rx } => queued.is_empty() && rx.is_none(),
            Body::File(file) => file.left.is_empty(),
            Body::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream { .. } => SizeHint::default(),
            Body::File(file) => SizeHint::with_exact(file.left.end - file.left.start),
            Body::Boxed(body) => body.size_hint(),
        }
    }
}
