//! One request/response exchange with an app, independent of transport:
//! implements the host side of the gateway (`start_response`, write,
//! `wsgi.input`, the file body) and pumps the app's body into a
//! [`ResponseSink`].

use std::cell::RefCell;
use std::io::Read;

use std::sync::Arc;

use hyper::StatusCode;
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

/// Why a response, or a part of it, could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The client closed its connection.
    ClientGone,
    /// The client took no bytes for this long (`--body-timeout`).
    ClientStalled(std::time::Duration),
    /// The app's answer cannot be sent as it is (no valid head, a bad file
    /// body, a stream that failed): the app's failure.
    App(String),
    /// The way out failed otherwise (a file read, stdout).
    Transport(String),
}

impl SendError {
    /// Whether the failure is the client's (routine, not the app's).
    pub fn is_the_clients(&self) -> bool {
        matches!(self, SendError::ClientGone | SendError::ClientStalled(_))
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::ClientGone => f.write_str("the client went away"),
            SendError::ClientStalled(idle) => write!(
                f,
                "the client took no response bytes for {idle:?} (server option --body-timeout)"
            ),
            SendError::App(problem) | SendError::Transport(problem) => f.write_str(problem),
        }
    }
}

/// Where a response goes: a CGI stdout, an HTTP connection, …
pub trait ResponseSink {
    /// Sends the status and headers; the body follows.
    fn head(&mut self, head: ResponseHead) -> Result<(), SendError>;
    /// Sends a piece of body.
    fn data(&mut self, chunk: Chunk) -> Result<(), SendError>;
    /// The whole response at once, when the app returned one buffer.
    fn whole(&mut self, head: ResponseHead, body: Option<Chunk>) -> Result<(), SendError> {
        self.head(head)?;
        body.map_or(Ok(()), |chunk| self.data(chunk))
    }
    /// The response about to be sent refuses the request (its body broke a
    /// rule): the transport may have to close the connection after it.
    fn refused(&mut self, _refusal: &Refusal) {}
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status.
    pub status: StatusCode,
    /// What to tell the client, e.g. the option that raises a limit.
    pub detail: String,
}

impl Refusal {
    /// A refusal with `status`, telling the client `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            detail: detail.into(),
        }
    }

    /// The status's reason phrase.
    pub fn reason(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
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
    pub fn run(
        &mut self,
        app: &LoadedApp,
        vars: &RequestVars<'_>,
        headers: &[Header<'_>],
        extra: &[Header<'_>],
    ) -> Summary {
        let describe = || describe(vars.method, vars.script_name, vars.path_info, app);
        let result = self.call(app, vars, headers, extra);
        self.finish(result, describe)
    }

    /// Calls the app (`extra`: the environ's variables beyond PEP 3333's
    /// and the headers); its body is sent by [`Exchange::finish`], which
    /// may run on another thread.
    pub fn call(
        &self,
        app: &LoadedApp,
        vars: &RequestVars<'_>,
        headers: &[Header<'_>],
        extra: &[Header<'_>],
    ) -> Result<ResponseBody, String> {
        app.app.call(vars, headers, extra, self)
    }

    /// The sink, e.g. to collect what the call wrote so far.
    pub fn sink_mut(&mut self) -> &mut S {
        self.sink.get_mut()
    }

    /// The sink, borrowed.
    pub fn sink(&self) -> std::cell::Ref<'_, S> {
        self.sink.borrow()
    }
}

/// What a failure is logged with: the request and the app.
pub fn describe(method: &str, script_name: &str, path_info: &str, app: &LoadedApp) -> String {
    format!("{method} {script_name}{path_info} ({})", app.spec)
}

/// Whether the app answered with a stream, whose chunks are pulled by
/// calling into the app again (and may take any time).
pub fn is_stream(result: &Result<ResponseBody, String>) -> bool {
    matches!(result, Ok(ResponseBody::Stream(_)))
}

impl<S: ResponseSink, I: RequestBody> Exchange<S, I> {
    /// Sends the body of the app's answer `result` (pulling a stream to its
    /// end), always closes it; failures are logged with `context`.
    pub fn finish(&mut self, result: Result<ResponseBody, String>, context: impl Fn() -> String) -> Summary {
        // A body that broke a rule while the app read it: nothing of the
        // app's answer goes out (a stream is still closed).
        let refused = self.input.borrow().refusal().is_some();
        let outcome = match result {
            Ok(ResponseBody::Stream(mut stream)) if refused => stream.close().map_err(SendError::App),
            Ok(_) if refused => Ok(()),
            Ok(ResponseBody::Empty) => self.send_whole(self.file_body.take()),
            Ok(ResponseBody::Static(bytes)) => self.send_whole(Some(Chunk::Static(bytes))),
            Ok(ResponseBody::Bytes(bytes)) => self.send_whole(Some(Chunk::Plugin(bytes))),
            Ok(ResponseBody::Stream(mut stream)) => {
                let pumped = self.pump(|| stream.next_chunk());
                let closed = stream.close().map_err(SendError::App);
                pumped.and(closed).and_then(|()| self.flush_head())
            }
            Err(app_error) => Err(SendError::App(app_error)),
        };
        let refusal = self.input.borrow().refusal();
        match (refusal, outcome) {
            (Some(refusal), outcome) => {
                log::warn!(
                    "{}: {}; the app's answer is discarded ({})",
                    context(),
                    refusal.detail,
                    outcome
                        .err()
                        .map_or_else(|| "it returned normally".to_owned(), |e| e.to_string())
                );
                self.sink.borrow_mut().refused(&refusal);
                self.refuse(refusal);
            }
            (None, Err(problem)) if problem.is_the_clients() => {
                // Routine for clients that hang up mid-response: not the
                // app's failure, and not worth an error line per request.
                log::debug!("{}: {problem}", context());
                self.sink.borrow_mut().abort();
            }
            (None, Err(problem)) => {
                log::error!("{}: {problem}", context());
                self.refuse(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the app failed; the server log says why",
                ));
            }
            (None, Ok(())) => {}
        }
        self.sink.borrow_mut().end();
        std::mem::take(self.summary.get_mut())
    }

    /// Pulls chunks until the end, sending each non-empty one.
    fn pump(&self, mut next: impl FnMut() -> Result<Option<PluginBytes>, String>) -> Result<(), SendError> {
        while let Some(chunk) = next().map_err(SendError::App)? {
            self.send(Chunk::Plugin(chunk))?;
        }
        Ok(())
    }

    /// A one-buffer body: head and body together, unless the write
    /// callable already started the response.
    fn send_whole(&self, body: Option<Chunk>) -> Result<(), SendError> {
        if self.head.borrow().is_sent() {
            return body.map_or(Ok(()), |chunk| self.send(chunk));
        }
        let head = self.head.borrow_mut().take_for_sending().map_err(SendError::App)?;
        let head = head.expect("head not sent yet");
        let body = body.filter(|chunk| !chunk.is_empty());
        self.note_sent(&head, body.as_ref());
        self.sink.borrow_mut().whole(head, body)
    }

    fn send(&self, chunk: Chunk) -> Result<(), SendError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.flush_head()?;
        self.summary.borrow_mut().bytes += chunk.len();
        self.sink.borrow_mut().data(chunk)
    }

    /// Sends the head if it has not gone out (WSGI: with the first
    /// non-empty chunk, or at the end of an empty body).
    fn flush_head(&self) -> Result<(), SendError> {
        let head = self.head.borrow_mut().take_for_sending().map_err(SendError::App)?;
        match head {
            Some(head) => {
                self.note_sent(&head, None);
                self.sink.borrow_mut().head(head)
            }
            None => Ok(()),
        }
    }

    fn note_sent(&self, head: &ResponseHead, body: Option<&Chunk>) {
        let mut summary = self.summary.borrow_mut();
        summary.status = Some(head.status().as_u16());
        summary.bytes += body.map_or(0, Chunk::len);
    }

    /// Answers `refusal` (the request's, or a 500 for the app's failure)
    /// instead of the app, or cuts the response if its head already went out.
    fn refuse(&self, refusal: Refusal) {
        if self.head.borrow().is_sent() {
            self.sink.borrow_mut().abort();
            return;
        }
        let text = format!("{} {}: {}\n", refusal.status.as_u16(), refusal.reason(), refusal.detail);
        let head = ResponseHead::new(
            refusal.status.as_u16(),
            refusal.reason(),
            &[("Content-Type", "text/plain; charset=utf-8")],
        );
        let body = Chunk::Copied(text.into_bytes());
        // What the app may have started is replaced.
        *self.summary.borrow_mut() = Summary::default();
        self.note_sent(&head, Some(&body));
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
        self.send(Chunk::Copied(data.to_vec())).map_err(|e| e.to_string())
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
