//! One request/response exchange with an app, independent of transport:
//! implements the host side of the gateway (`start_response`, write,
//! `wsgi.input`, the file body) and pumps the app's body into a
//! [`ResponseSink`].

use std::cell::RefCell;
use std::io::Read;

use std::sync::Arc;

use plugin_api::host::{Header, HostGateway, PluginBytes, RequestVars, ResponseBody};

use crate::open_file::{OpenFile, READ_UP_TO};
use crate::plugin::loader::LoadedApp;

use crate::plugin::response_head::{HeadState, ResponseHead};

/// A piece of response body, in whichever memory it already lives.
pub enum Chunk {
    /// Bytes in the plugin's image.
    Static(&'static [u8]),
    /// A buffer the plugin allocated.
    Plugin(PluginBytes),
    /// Bytes the host copied (from the write callable).
    Copied(Vec<u8>),
    /// Part of a file (the file body): sent with `sendfile` or read as it
    /// goes out, never read from a mapping (see [`crate::open_file`]).
    File(Arc<OpenFile>, std::ops::Range<u64>),
}

impl Chunk {
    /// The bytes in memory; `None` for a file's, which are still on disk.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Chunk::Static(bytes) => Some(bytes),
            Chunk::Plugin(bytes) => Some(bytes.as_ref()),
            Chunk::Copied(bytes) => Some(bytes),
            Chunk::File(..) => None,
        }
    }

    /// How many bytes this is.
    pub fn len(&self) -> u64 {
        match self {
            Chunk::File(_, range) => range.end - range.start,
            other => other.bytes().map_or(0, |b| b.len() as u64),
        }
    }

    /// Whether this is no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a response goes: a CGI stdout, an HTTP connection, …
pub trait ResponseSink {
    /// Sends the status and headers; the body follows.
    fn head(&mut self, head: ResponseHead) -> Result<(), String>;
    /// Sends a piece of body.
    fn data(&mut self, chunk: Chunk) -> Result<(), String>;
    /// The whole response at once, when the app returned one buffer.
    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), String> {
        self.head(head)?;
        body.map_or(Ok(()), |chunk| self.data(chunk))
    }
    /// The response about to be sent refuses the request (its body broke a
    /// rule): the transport may have to close the connection after it.
    fn refused(&mut self, _refusal: &Refusal) {}
    /// Whether a send failed because the client closed its connection: the
    /// failure is then the client's, not the app's.
    fn client_gone(&self) -> bool {
        false
    }
    /// The app failed after the head was sent: the response must not look
    /// complete (e.g. close the connection).
    fn abort(&mut self);
    /// The exchange is over: nothing more will be sent.
    fn end(&mut self) {}
}

/// The request body as the app reads it (`wsgi.input`).
pub trait RequestBody: Read {
    /// Set when the body broke a rule (size, framing, idle time): what to
    /// answer instead of whatever the app answered.
    fn refusal(&self) -> Option<Refusal> {
        None
    }
}

/// A request the server refuses, e.g. `413 Payload Too Large`.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// What to tell the client, e.g. the option that raises a limit.
    pub detail: String,
}

impl<R: Read> RequestBody for std::io::Take<R> {}

/// How an exchange ended, for the access log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The status sent, if a head went out.
    pub status: Option<u16>,
    /// Body bytes handed to the sink.
    pub bytes: u64,
}

/// One exchange: owns the head state, the sink and the request body.
pub struct Exchange<S, I> {
    head: RefCell<HeadState>,
    sink: RefCell<S>,
    input: RefCell<I>,
    summary: RefCell<Summary>,
    /// The file body the app gave (`send_file`), sent in place of its
    /// (empty) returned body.
    file_body: RefCell<Option<Chunk>>,
}

impl<S: ResponseSink, I: RequestBody> Exchange<S, I> {
    /// An exchange that writes to `sink` and reads the body from `input`.
    pub fn new(sink: S, input: I) -> Self {
        Self {
            head: RefCell::default(),
            sink: RefCell::new(sink),
            input: RefCell::new(input),
            summary: RefCell::default(),
            file_body: RefCell::default(),
        }
    }

    /// Calls the app, pumps its body into the sink, always closes it.
    pub fn run(self, app: &LoadedApp, vars: &RequestVars<'_>, headers: &[Header<'_>], extra: &[Header<'_>]) -> Summary {
        let describe = || describe(vars.method, vars.script_name, vars.path_info, app);
        self.call(app, vars, headers, extra).finish(describe).0
    }

    /// Calls the app (`extra`: the environ's variables beyond PEP 3333's
    /// and the headers); its body is sent by [`Called::finish`], which may
    /// run on another thread.
    pub fn call(
        self,
        app: &LoadedApp,
        vars: &RequestVars<'_>,
        headers: &[Header<'_>],
        extra: &[Header<'_>],
    ) -> Called<S, I> {
        let result = app.app.call(vars, headers, extra, &self);
        Called { exchange: self, result }
    }
}

/// What a failure is logged with: the request and the app.
pub fn describe(method: &str, script_name: &str, path_info: &str, app: &LoadedApp) -> String {
    format!("{method} {script_name}{path_info} ({})", app.spec)
}

/// An exchange whose app call has returned: the body is still to be sent.
pub struct Called<S, I> {
    exchange: Exchange<S, I>,
    result: Result<ResponseBody, String>,
}

impl<S: ResponseSink, I: RequestBody> Called<S, I> {
    /// Whether the app returned a stream, whose chunks are pulled by
    /// calling into the app again (and may take any time).
    pub fn streams(&self) -> bool {
        matches!(self.result, Ok(ResponseBody::Stream(_)))
    }

    /// The sink, e.g. to collect what the call wrote so far.
    pub fn sink_mut(&mut self) -> &mut S {
        self.exchange.sink.get_mut()
    }

    /// Sends the body (pulling a stream to its end), always closes it;
    /// failures are logged with `context`. Gives the sink back.
    pub fn finish(self, context: impl Fn() -> String) -> (Summary, S) {
        self.exchange.finish(self.result, context)
    }
}

impl<S: ResponseSink, I: RequestBody> Exchange<S, I> {
    fn finish(self, result: Result<ResponseBody, String>, context: impl Fn() -> String) -> (Summary, S) {
        // A body that broke a rule while the app read it: nothing of the
        // app's answer goes out (a stream is still closed).
        let refused = self.input.borrow().refusal().is_some();
        let outcome = match result {
            Ok(ResponseBody::Stream(mut stream)) if refused => stream.close(),
            Ok(_) if refused => Ok(()),
            Ok(ResponseBody::Empty) => self.send_whole(self.file_body.take()),
            Ok(ResponseBody::Static(bytes)) => self.send_whole(Some(Chunk::Static(bytes))),
            Ok(ResponseBody::Bytes(bytes)) => self.send_whole(Some(Chunk::Plugin(bytes))),
            Ok(ResponseBody::Stream(mut stream)) => {
                let pumped = self.pump(|| stream.next_chunk());
                let closed = stream.close();
                pumped.and(closed).and_then(|()| self.flush_head())
            }
            Err(app_error) => Err(app_error),
        };
        let refusal = self.input.borrow().refusal();
        match (refusal, outcome) {
            (Some(refusal), outcome) => {
                log::warn!(
                    "{}: {}; the app's answer is discarded ({})",
                    context(),
                    refusal.detail,
                    outcome.err().unwrap_or_else(|| "it returned normally".to_owned())
                );
                self.sink.borrow_mut().refused(&refusal);
                self.refuse(refusal);
            }
            (None, Err(problem)) if self.sink.borrow().client_gone() => {
                // Routine for clients that hang up mid-response: not the
                // app's failure, and not worth an error line per request.
                log::debug!("{}: {problem}", context());
                self.sink.borrow_mut().abort();
            }
            (None, Err(problem)) => {
                log::error!("{}: {problem}", context());
                self.refuse(Refusal {
                    status: 500,
                    reason: "Internal Server Error",
                    detail: "the app failed; the server log says why".to_owned(),
                });
            }
            (None, Ok(())) => {}
        }
        self.sink.borrow_mut().end();
        (self.summary.into_inner(), self.sink.into_inner())
    }

    /// Pulls chunks until the end, sending each non-empty one.
    fn pump(&self, mut next: impl FnMut() -> Result<Option<PluginBytes>, String>) -> Result<(), String> {
        while let Some(chunk) = next()? {
            self.send(Chunk::Plugin(chunk))?;
        }
        Ok(())
    }

    /// A one-buffer body: head and body together, unless the write
    /// callable already started the response.
    fn send_whole(&self, body: Option<Chunk>) -> Result<(), String> {
        if self.head.borrow().is_sent() {
            return body.map_or(Ok(()), |chunk| self.send(chunk));
        }
        let head = self.head.borrow_mut().take_for_sending()?.expect("head not sent yet");
        let body = body.filter(|chunk| !chunk.is_empty());
        self.record(&head, body.as_ref());
        self.sink.borrow_mut().whole(head, body)
    }

    fn send(&self, chunk: Chunk) -> Result<(), String> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.flush_head()?;
        self.summary.borrow_mut().bytes += chunk.len();
        self.sink.borrow_mut().data(chunk)
    }

    /// Sends the head if it has not gone out (WSGI: with the first
    /// non-empty chunk, or at the end of an empty body).
    fn flush_head(&self) -> Result<(), String> {
        let head = self.head.borrow_mut().take_for_sending()?;
        match head {
            Some(head) => {
                self.record(&head, None);
                self.sink.borrow_mut().head(head)
            }
            None => Ok(()),
        }
    }

    fn record(&self, head: &ResponseHead, body: Option<&Chunk>) {
        let mut summary = self.summary.borrow_mut();
        summary.status = Some(head.status);
        summary.bytes += body.map_or(0, Chunk::len);
    }

    /// Answers `refusal` (the request's, or a 500 for the app's failure)
    /// instead of the app, or cuts the response if its head already went out.
    fn refuse(&self, refusal: Refusal) {
        if self.head.borrow().is_sent() {
            self.sink.borrow_mut().abort();
            return;
        }
        let text = format!("{} {}: {}\n", refusal.status, refusal.reason, refusal.detail);
        let head = ResponseHead::new(
            refusal.status,
            refusal.reason,
            &[("Content-Type", "text/plain; charset=utf-8")],
        );
        let body = Chunk::Copied(text.into_bytes());
        // What the app may have started is replaced.
        *self.summary.borrow_mut() = Summary::default();
        self.record(&head, Some(&body));
        let mut sink = self.sink.borrow_mut();
        if sink.whole(head, Some(body)).is_err() {
            sink.abort();
        }
    }
}

impl<S: ResponseSink, I: RequestBody> HostGateway for Exchange<S, I> {
    fn start_response(&self, status: &str, headers: &[Header<'_>], exc_info: Option<&str>) -> Result<(), String> {
        let headers = headers.iter().map(|h| (h.name(), h.value()));
        self.head.borrow_mut().start_response(status, headers, exc_info)
    }

    fn write(&self, data: &[u8]) -> Result<(), String> {
        self.send(Chunk::Copied(data.to_vec()))
    }

    fn read_input(&self, buf: &mut [u8]) -> Result<usize, String> {
        self.input
            .borrow_mut()
            .read(buf)
            .map_err(|e| format!("reading the request body failed: {e}"))
    }

    fn send_file(&self, file: std::fs::File, offset: u64, len: u64) -> Result<(), String> {
        if self.file_body.borrow().is_some() {
            return Err("the app gave a file body twice".to_owned());
        }
        let chunk = file_chunk(file, offset, len)?;
        *self.file_body.borrow_mut() = Some(chunk);
        Ok(())
    }
}

/// `len` bytes of `file` from `offset`, checked against the file.
fn file_chunk(file: std::fs::File, offset: u64, len: u64) -> Result<Chunk, String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("the file body cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("the file body is not a regular file".to_owned());
    }
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= meta.len())
        .ok_or_else(|| {
            format!(
                "the file body's range {offset}+{len} lies outside the file ({} bytes)",
                meta.len()
            )
        })?;
    let open = Arc::new(OpenFile::new(file, meta.len()));
    if len > READ_UP_TO {
        return Ok(Chunk::File(open, offset..end));
    }
    open.read(&(offset..end), len as usize)
        .map(Chunk::Copied)
        .map_err(|e| format!("the file body cannot be read: {e}"))
}
