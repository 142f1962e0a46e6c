//! Where an app's response goes over HTTP: [`HttpSink`] turns the
//! exchange's head and chunks into a hyper response. Inline, the response
//! is held until the call returns; from a blocking thread, the head goes to
//! the connection task through a oneshot channel and a streamed body
//! follows through a bounded channel, each wait for a slow client bounded
//! by `--body-timeout` and off the app's clock. Hop-by-hop headers are the
//! server's, not the app's (PEP 3333).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::Response;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::clock::AppClock;
use super::Answer;
use crate::plugin::exchange::{Chunk, Refusal, ResponseSink, SendError};
use crate::plugin::response_head::ResponseHead;
use crate::server::http::body::{Body, BodyFrame, FileBody};

/// Response chunks buffered between the app's thread and the connection.
const BODY_CHANNEL_DEPTH: usize = 8;

/// Where the response goes once its head is known.
enum Delivery {
    /// Inline: kept here until the call returns (the connection task is
    /// the one running the call).
    Held(Option<Response<Body>>),
    /// To the connection task, from a blocking thread.
    Send(Option<oneshot::Sender<Response<Body>>>),
}

/// Delivers the app's response, then feeds a streamed body through a
/// channel.
pub struct HttpSink {
    delivery: Delivery,
    body_tx: Option<mpsc::Sender<BodyFrame>>,
    /// Inline: the head and the body written so far, until the call returns.
    held: Option<(ResponseHead, VecDeque<BodyFrame>)>,
    head_only: bool,
    /// A large file body may go out with `sendfile` (cleartext HTTP/1).
    sendfile: bool,
    /// The head went out before the body was complete.
    streamed: bool,
    /// Bytes still allowed by the app's Content-Length, if it set one.
    remaining: Option<u64>,
    /// The response refuses the request: close the connection after it.
    close: bool,
    /// How a blocking thread waits for a slow client (none inline: the
    /// connection's task never waits for its own client).
    client: Option<ClientWait>,
}

/// Waiting for the client from a blocking thread: bounded, off the clock.
struct ClientWait {
    clock: Arc<AppClock>,
    idle: Duration,
}

impl HttpSink {
    /// A sink for an inline call, holding the response until the call
    /// returns; `head_only` for HEAD requests; `sendfile` where a large
    /// file may go out with `sendfile`.
    pub fn held(head_only: bool, sendfile: bool) -> Self {
        HttpSink::new(Delivery::Held(None), head_only, sendfile, None)
    }

    /// A sink for a call on an app thread, sending the head through
    /// `response` and waiting for a slow client up to `idle`, off `clock`.
    pub fn sending(
        response: oneshot::Sender<Response<Body>>,
        head_only: bool,
        sendfile: bool,
        clock: Arc<AppClock>,
        idle: Duration,
    ) -> Self {
        let client = Some(ClientWait { clock, idle });
        HttpSink::new(Delivery::Send(Some(response)), head_only, sendfile, client)
    }

    fn new(delivery: Delivery, head_only: bool, sendfile: bool, client: Option<ClientWait>) -> Self {
        HttpSink {
            delivery,
            body_tx: None,
            held: None,
            head_only,
            sendfile,
            streamed: false,
            remaining: None,
            close: false,
            client,
        }
    }

    /// Whether the head went out before the body was complete (the call
    /// streamed or wrote in parts).
    pub fn sent_in_parts(&self) -> bool {
        self.streamed
    }

    fn send_response(&mut self, head: ResponseHead, body: Body) -> Result<(), SendError> {
        let mut response = build_response(head, body);
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match &mut self.delivery {
            Delivery::Held(slot @ None) => {
                *slot = Some(response);
                Ok(())
            }
            Delivery::Send(tx) => {
                let status = response.status().as_u16();
                let tx = tx.take().ok_or_else(sent_twice)?;
                tx.send(response).map_err(|_| SendError::ClientGone)?;
                crate::inflight::head_sent(status);
                Ok(())
            }
            Delivery::Held(Some(_)) => Err(sent_twice()),
        }
    }

    /// The response an inline call made.
    pub fn take_response(&mut self) -> Option<Response<Body>> {
        match &mut self.delivery {
            Delivery::Held(response) => response.take(),
            Delivery::Send(_) => None,
        }
    }

    /// From an inline call to a blocking thread (a stream is to be
    /// pulled, waiting for a slow client up to `idle`, off `clock`): what
    /// was held goes out now, the rest through a channel.
    pub fn hand_off(&mut self, clock: Arc<AppClock>, idle: Duration) -> Answer {
        self.client = Some(ClientWait { clock, idle });
        if let Some((head, queued)) = self.held.take() {
            let (tx, rx) = mpsc::channel(BODY_CHANNEL_DEPTH);
            self.body_tx = Some(tx);
            return Answer::Ready(build_response(head, Body::Stream { queued, rx: Some(rx) }));
        }
        if let Some(response) = self.take_response() {
            return Answer::Ready(response); // HEAD: the stream is pulled and discarded
        }
        let (response_tx, response_rx) = oneshot::channel();
        self.delivery = Delivery::Send(Some(response_tx));
        Answer::Later(response_rx)
    }

    /// How many of `len` more bytes the app's Content-Length still
    /// allows (all without one); counts them as sent.
    fn allowed(&mut self, len: u64) -> u64 {
        match self.remaining.as_mut() {
            Some(remaining) => {
                let allowed = (*remaining).min(len);
                *remaining -= allowed;
                allowed
            }
            None => len,
        }
    }

    /// `chunk` as a body frame or a file body, cut to what the app's
    /// Content-Length still allows.
    fn body_of(&mut self, chunk: Chunk) -> Body {
        let allowed = self.allowed(chunk.len());
        match chunk {
            Chunk::File(file, range) => {
                let range = range.start..range.start + allowed;
                Body::File(FileBody::new(file, range, self.sendfile))
            }
            other => {
                let mut bytes = chunk_bytes(other);
                bytes.truncate(allowed as usize);
                Body::full(bytes)
            }
        }
    }

    fn push(&mut self, frame: BodyFrame) -> Result<(), SendError> {
        match (&self.body_tx, &mut self.held) {
            (Some(tx), _) => {
                let Some(ClientWait { clock, idle }) = &self.client else {
                    return Err(SendError::Transport("a body channel without a client wait".to_owned()));
                };
                let handle = Handle::current();
                match clock.waiting(|| handle.block_on(tokio::time::timeout(*idle, tx.send(frame)))) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(SendError::ClientGone),
                    Err(_) => Err(SendError::ClientStalled(*idle)),
                }
            }
            (None, Some((_, queued))) => {
                queued.push_back(frame);
                Ok(())
            }
            (None, None) => Ok(()), // HEAD: the body is discarded
        }
    }
}

impl ResponseSink for HttpSink {
    fn head(&mut self, head: ResponseHead) -> Result<(), SendError> {
        self.remaining = head.content_length();
        self.streamed = true;
        if self.head_only {
            return self.send_response(head, Body::Empty);
        }
        if let Delivery::Held(_) = self.delivery {
            self.held = Some((head, VecDeque::new()));
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(BODY_CHANNEL_DEPTH);
        self.body_tx = Some(tx);
        self.send_response(head, Body::channel(rx))
    }

    fn data(&mut self, chunk: Chunk) -> Result<(), SendError> {
        match self.body_of(chunk) {
            Body::Full(Some(bytes)) => self.push(Ok(bytes)),
            // A file after the write callable's bytes: read as it goes.
            Body::File(mut file) => {
                while let Some(piece) = file.next_read() {
                    let piece =
                        piece.map_err(|e| SendError::Transport(format!("the file body cannot be read: {e}")))?;
                    self.push(Ok(piece))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), SendError> {
        self.remaining = head.content_length();
        let body = match body {
            Some(chunk) if !self.head_only => self.body_of(chunk),
            _ => Body::Empty,
        };
        self.send_response(head, body)
    }

    fn refused(&mut self, _: &Refusal) {
        self.close = true;
    }

    fn abort(&mut self) {
        let _ = self.push(Err(io::Error::other("the app failed mid-response")));
        self.body_tx = None;
    }

    fn end(&mut self) {
        if let Some((head, queued)) = self.held.take() {
            let _ = self.send_response(head, Body::Stream { queued, rx: None });
        }
    }
}

/// A host bug: a response head handed over twice.
fn sent_twice() -> SendError {
    SendError::Transport("response head sent twice".to_owned())
}

fn chunk_bytes(chunk: Chunk) -> Bytes {
    match chunk {
        Chunk::Static(bytes) => Bytes::from_static(bytes),
        Chunk::Plugin(bytes) => Bytes::from_owner(bytes),
        Chunk::Copied(bytes) => Bytes::from(bytes),
        Chunk::File(..) => Bytes::new(), // see `body_of`
    }
}

/// The hyper response for an app's head (validated and converted when the
/// app set it) and `body`.
pub(super) fn build_response(head: ResponseHead, body: Body) -> Response<Body> {
    let (status, reason, headers) = head.into_parts();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Some(reason) = reason.and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok()) {
        response.extensions_mut().insert(reason);
    }
    response
}
