//! [`StartResponse`]: WSGI's `start_response` callable and the write callable.

use std::fmt;
use std::io;

use abi_stable::std_types::{RNone, RSome, RStr};

use crate::abi::{Gateway, RawHeader};

/// Headers up to this count are passed without a heap allocation.
const INLINE_HEADERS: usize = 16;

/// WSGI's `start_response`: sets the status line and headers of the response.
///
/// The host sends them lazily, with the first body bytes, so an app may call
/// [`start_after_error`](Self::start_after_error) to replace them (e.g. with a
/// 500) as long as no body has been sent yet.
pub struct StartResponse<'a> {
    gateway: &'a (dyn Gateway + 'a),
}

impl<'a> StartResponse<'a> {
    pub(crate) fn new(gateway: &'a (dyn Gateway + 'a)) -> Self {
        Self { gateway }
    }

    /// `start_response(status, headers)`: `status` is e.g. `"200 OK"`.
    ///
    /// Returns the write callable, for apps that push their body instead of
    /// returning it. Calling `start` twice is an error; see
    /// [`start_after_error`](Self::start_after_error).
    pub fn start(&mut self, status: &str, headers: &[(&str, &str)]) -> Result<Writer<'a>, ResponseError> {
        self.call(status, headers, None)
    }

    /// `start_response(status, headers, exc_info)`: replaces the status and
    /// headers after an error, which is only possible before any body was
    /// sent; `error` is logged by the host.
    pub fn start_after_error(
        &mut self,
        status: &str,
        headers: &[(&str, &str)],
        error: &dyn fmt::Display,
    ) -> Result<Writer<'a>, ResponseError> {
        let exc_info = error.to_string();
        self.call(status, headers, Some(&exc_info))
    }

    fn call(
        &mut self,
        status: &str,
        headers: &[(&str, &str)],
        exc_info: Option<&str>,
    ) -> Result<Writer<'a>, ResponseError> {
        let exc_info = match exc_info {
            Some(text) => RSome(RStr::from(text)),
            None => RNone,
        };
        let result = if headers.len() <= INLINE_HEADERS {
            let mut inline = [RawHeader {
                name: RStr::from(""),
                value: RStr::from(""),
            }; INLINE_HEADERS];
            for (slot, header) in inline.iter_mut().zip(headers) {
                *slot = to_raw(header);
            }
            let raw = &inline[..headers.len()];
            self.gateway.start_response(status.into(), raw.into(), exc_info)
        } else {
            let raw: Vec<RawHeader<'_>> = headers.iter().map(to_raw).collect();
            self.gateway
                .start_response(status.into(), raw.as_slice().into(), exc_info)
        };
        result.into_result().map_err(|e| ResponseError(e.into_string()))?;
        Ok(Writer { gateway: self.gateway })
    }
}

/// The write callable `start_response` returns: bytes written here are sent
/// to the client at once, before anything the app returns.
pub struct Writer<'a> {
    gateway: &'a (dyn Gateway + 'a),
}

impl Writer<'_> {
    /// Sends `data` now (headers first, if they have not gone out yet).
    pub fn send(&mut self, data: &[u8]) -> Result<(), ResponseError> {
        self.gateway
            .write(data.into())
            .into_result()
            .map_err(|e| ResponseError(e.into_string()))
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn to_raw<'h>((name, value): &(&'h str, &'h str)) -> RawHeader<'h> {
    RawHeader {
        name: RStr::from(*name),
        value: RStr::from(*value),
    }
}

/// What the host refused: a second `start`, a write after the client left, …
/// Propagate it (the `?` operator turns it into an [`crate::AppError`]).
#[derive(Debug, Clone)]
pub struct ResponseError(pub(crate) String);

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ResponseError {}
