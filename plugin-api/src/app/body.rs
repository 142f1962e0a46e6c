//! [`Body`]: what an app returns, and [`AppOutput`]: what may stand for one.

use std::fmt;

/// The response body an app returns: nothing, one buffer, a stream, or
/// (since plugin-api 1.1) a file.
///
/// Build it from a `String`, `Vec<u8>` or `&'static str` with `.into()`, or
/// from an iterator with [`Body::stream`]. A stream's `Drop` is WSGI's
/// `close()`: the host always drops it, also when the client goes away.
pub struct Body(pub(crate) BodyKind);

pub(crate) enum BodyKind {
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    Stream(Box<dyn Iterator<Item = Vec<u8>> + Send>),
    File(std::fs::File, std::ops::Range<u64>),
}

impl Body {
    /// No body at all.
    pub fn empty() -> Self {
        Body(BodyKind::Empty)
    }

    /// A body sent chunk by chunk as the iterator yields; chunked transfer
    /// encoding is used unless the app set `Content-Length`.
    pub fn stream<I>(chunks: I) -> Self
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Into<Vec<u8>> + 'static,
    {
        Body(BodyKind::Stream(Box::new(chunks.into_iter().map(Into::into))))
    }
}

impl Body {
    /// The whole of `file` (PEP 3333's `wsgi.file_wrapper`): the host sends
    /// it straight from the page cache where the connection allows (plain
    /// HTTP/1.1: `sendfile`) and sets `Content-Length` unless the app did.
    pub fn file(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Body::file_range(file, 0..len))
    }

    /// The bytes `range` of `file` (e.g. for a `Range` request), sent as
    /// [`Body::file`] sends a whole file.
    pub fn file_range(file: std::fs::File, range: std::ops::Range<u64>) -> Self {
        Body(BodyKind::File(file, range))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            BodyKind::Empty => f.write_str("Body::Empty"),
            BodyKind::Static(b) => write!(f, "Body::Static({} bytes)", b.len()),
            BodyKind::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            BodyKind::Stream(_) => f.write_str("Body::Stream"),
            BodyKind::File(_, range) => write!(f, "Body::File({range:?})"),
        }
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Body(BodyKind::Static(text.as_bytes()))
    }
}
impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body(BodyKind::Static(bytes))
    }
}
impl From<String> for Body {
    fn from(text: String) -> Self {
        Body(BodyKind::Bytes(text.into_bytes()))
    }
}
impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(BodyKind::Bytes(bytes))
    }
}
impl From<()> for Body {
    fn from((): ()) -> Self {
        Body::empty()
    }
}

/// Any error an app wants to report: the host answers 500 and logs it.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// What an app function may return: a [`Body`] or anything that converts to
/// one, or a `Result` of those whose error becomes a 500.
pub trait AppOutput {
    /// The body, or the error that makes this request a 500.
    fn into_body(self) -> Result<Body, AppError>;
}

macro_rules! body_outputs {
    ($($ty:ty),*) => {$(
        impl AppOutput for $ty {
            fn into_body(self) -> Result<Body, AppError> {
                Ok(self.into())
            }
        }
    )*};
}
body_outputs!(Body, String, Vec<u8>, &'static str, &'static [u8], ());

impl<T: AppOutput, E: Into<AppError>> AppOutput for Result<T, E> {
    fn into_body(self) -> Result<Body, AppError> {
        self.map_err(Into::into)?.into_body()
    }
}
