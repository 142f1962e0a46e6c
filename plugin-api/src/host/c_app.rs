//! The host's side of the C interface (`c/host_app.h`): checks a C app's
//! version symbol and descriptor, and calls it with the same
//! [`HostGateway`] a Rust app gets. Everything the app hands back that can
//! be checked (lengths, NULLs, UTF-8, kinds) is checked here, before the
//! host reads it; what cannot be (a dangling pointer) is a crash, which the
//! worker model contains like any other.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use super::{
    CheckError, Header, HostGateway, HostServicesConfig, PluginBytes, RequestVars, ResponseBody, ResponseStream,
};
use crate::abi::c;

/// A checked, initialised C app.
#[derive(Clone, Copy)]
pub(super) struct CApp {
    call: extern "C" fn(*const c::Request, *const c::Gateway, *mut c::Response) -> i32,
    version: c::Version,
}

/// Whether `symbol` holds a C app descriptor (its magic), whatever the
/// version.
///
/// # Safety
/// `symbol` must be the address of a symbol of a loaded library that is
/// at least 8 bytes long.
pub(super) unsafe fn is_descriptor(symbol: NonNull<c_void>) -> bool {
    // SAFETY: the caller guarantees 8 readable bytes; `magic` is the second
    // `u32`, read unaligned in case the symbol is not a descriptor at all.
    let magic = unsafe { symbol.cast::<u8>().add(4).cast::<u32>().as_ptr().read_unaligned() };
    magic == c::MAGIC
}

/// The C interface version this host speaks, e.g. `1.0`.
pub fn interface_version() -> String {
    format!("{}.{}", c::VERSION_MAJOR, c::VERSION_MINOR)
}

impl CApp {
    /// Checks the version symbol and the descriptor, then runs `init`.
    ///
    /// # Safety
    /// Both addresses must be symbols of a library that stays loaded for
    /// the rest of the process; `descriptor` passed [`is_descriptor`].
    pub(super) unsafe fn check(
        version: Option<NonNull<c_void>>,
        descriptor: NonNull<c_void>,
        services: HostServicesConfig,
    ) -> Result<CApp, CheckError> {
        let version = version.ok_or(CheckError::NoCVersion)?;
        // SAFETY: the version symbol is a `host_app_version` (two u32s) by
        // the header's contract; read unaligned, it is only compared.
        let version = unsafe { version.cast::<c::Version>().as_ptr().read_unaligned() };
        if version.major != c::VERSION_MAJOR || version.minor > c::VERSION_MINOR {
            return Err(CheckError::IncompatibleCInterface {
                plugin: format!("{}.{}", version.major, version.minor),
                host: interface_version(),
            });
        }
        // SAFETY: the magic matched (the caller checked), so this is a
        // descriptor; its `size` is read before any field past the first two.
        let size = unsafe { descriptor.cast::<u32>().as_ptr().read_unaligned() } as usize;
        if size < std::mem::size_of::<c::AppDescriptor>() {
            return Err(CheckError::BadCDescriptor(format!(
                "its size field says {size} bytes, less than C interface 1.0's {}",
                std::mem::size_of::<c::AppDescriptor>()
            )));
        }
        // SAFETY: at least 1.0's size (checked above), in a library that is
        // never unloaded.
        let descriptor: &'static c::AppDescriptor = unsafe { descriptor.cast().as_ref() };
        let call = descriptor
            .call
            .ok_or_else(|| CheckError::BadCDescriptor("it has no call function".to_owned()))?;
        if let Some(init) = descriptor.init {
            let services = services_for(services);
            let code = init(services);
            if code != c::OK {
                return Err(CheckError::InitFailed(format!("its init returned {code}")));
            }
        }
        Ok(CApp { call, version })
    }

    /// The C interface version the app was built against.
    pub(super) fn version(&self) -> String {
        format!("{}.{}", self.version.major, self.version.minor)
    }

    /// Calls the app for one request (see [`super::App::call`]).
    pub(super) fn call(
        &self,
        vars: &RequestVars<'_>,
        headers: &[Header<'_>],
        extra: &[Header<'_>],
        gateway: &dyn HostGateway,
    ) -> Result<ResponseBody, String> {
        let request = request(vars, headers, extra);
        let gateway = CGateway::new(gateway);
        let mut response = c::Response {
            size: std::mem::size_of::<c::Response>() as u32,
            kind: c::RESPONSE_EMPTY,
            body: EMPTY_BODY,
            stream: c::Stream {
                state_owned: std::ptr::null_mut(),
                next: None,
                close: None,
            },
        };
        let code = (self.call)(&request, &gateway.table, &mut response);
        if code != c::OK {
            // Whatever the app put in `response` is still released.
            drop(response_body(&response));
            return Err(match gateway.last_error.into_inner() {
                Some(error) => format!("the app returned error code {code} (after: {error})"),
                None => format!("the app returned error code {code}"),
            });
        }
        response_body(&response)
    }
}

const EMPTY_BODY: c::Body = c::Body {
    ptr: std::ptr::null(),
    len: 0,
    release: None,
    owner: std::ptr::null_mut(),
};

// The request headers cross without a copy: the interface's `RawHeader` is
// two `RStr`s, each a `#[repr(C)]` pointer and length, exactly
// `host_app_header`. The test below checks the field order too.
const _: () = assert!(std::mem::size_of::<Header<'static>>() == std::mem::size_of::<c::Header>());
const _: () = assert!(std::mem::align_of::<Header<'static>>() == std::mem::align_of::<c::Header>());

fn c_headers(headers: &[Header<'_>]) -> *const c::Header {
    headers.as_ptr().cast()
}

/// The request as the header lays it out, borrowing every string.
fn request(vars: &RequestVars<'_>, headers: &[Header<'_>], extra: &[Header<'_>]) -> c::Request {
    let flag = |on: bool, bit: u32| if on { bit } else { 0 };
    c::Request {
        size: std::mem::size_of::<c::Request>() as u32,
        flags: flag(vars.multithread, c::MULTITHREAD)
            | flag(vars.multiprocess, c::MULTIPROCESS)
            | flag(vars.run_once, c::RUN_ONCE),
        method: c::Str::new(vars.method),
        script_name: c::Str::new(vars.script_name),
        path_info: c::Str::new(vars.path_info),
        query_string: c::Str::new(vars.query_string),
        server_name: c::Str::new(vars.server_name),
        server_port: c::Str::new(vars.server_port),
        server_protocol: c::Str::new(vars.server_protocol),
        remote_addr: c::Str::new(vars.remote_addr),
        remote_port: c::Str::new(vars.remote_port),
        url_scheme: c::Str::new(vars.url_scheme),
        headers: c_headers(headers),
        headers_len: headers.len(),
        extra: c_headers(extra),
        extra_len: extra.len(),
    }
}

/// The gateway table the app sees, with the host's side behind it. The
/// table is the first field, so the pointer the app passes back is a
/// pointer to the whole.
#[repr(C)]
struct CGateway<'g> {
    table: c::Gateway,
    host: &'g dyn HostGateway,
    last_error: RefCell<Option<String>>,
}

impl<'g> CGateway<'g> {
    fn new(host: &'g dyn HostGateway) -> Self {
        CGateway {
            table: c::Gateway {
                size: std::mem::size_of::<c::Gateway>() as u32,
                start_response,
                write,
                read_body,
                send_file,
                last_error,
            },
            host,
            last_error: RefCell::new(None),
        }
    }
}

/// Why a gateway call failed: before the host saw it, or the host's own
/// refusal.
enum Failure {
    Argument(String),
    Refused(String),
}

/// Runs `f` on the gateway the app passed back, catching panics; a failure
/// becomes its code and is kept for `last_error`.
fn gateway_call<T>(this: *const c::Gateway, f: impl FnOnce(&CGateway<'_>) -> Result<T, Failure>) -> Result<T, i32> {
    // SAFETY: the app got `this` from `call`, which is still running (the
    // header allows gateway calls only until it returns), and the table is
    // the first field of a `CGateway`.
    let Some(gateway) = (unsafe { this.cast::<CGateway<'_>>().as_ref() }) else {
        return Err(c::ERR_ARGUMENT);
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(gateway)))
        .unwrap_or_else(|_| Err(Failure::Refused("the host failed".to_owned())));
    let (result, error) = match outcome {
        Ok(value) => (Ok(value), None),
        Err(Failure::Argument(error)) => (Err(c::ERR_ARGUMENT), Some(error)),
        Err(Failure::Refused(error)) => (Err(c::ERR_REFUSED), Some(error)),
    };
    gateway.last_error.replace(error);
    result
}

/// A gateway call's outcome as the header's return code.
fn code(result: Result<(), i32>) -> i32 {
    result.err().unwrap_or(c::OK)
}

/// Checks a span the app passed: a length past `cap`, or a NULL with a
/// length, is refused. Reads nothing.
fn check_span(ptr: *const u8, len: usize, what: &str, cap: usize) -> Result<(), String> {
    if len > cap {
        return Err(format!(
            "the {what}'s length {len} is past the interface's cap of {cap}"
        ));
    }
    if len > 0 && ptr.is_null() {
        return Err(format!("the {what} is NULL with a length of {len}"));
    }
    Ok(())
}

/// Bytes the app passed, checked by [`check_span`].
///
/// # Safety
/// If `ptr` is not NULL, `len` bytes from it must be readable for `'a` (the
/// app's promise; unverifiable).
unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str, cap: usize) -> Result<&'a [u8], String> {
    check_span(ptr, len, what, cap)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: not NULL, within the cap (so within isize::MAX), and the
    // caller vouches for the bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Text the app passed: [`bytes`], and UTF-8.
///
/// # Safety
/// As [`bytes`].
unsafe fn text<'a>(text: c::Str, what: &str, cap: usize) -> Result<&'a str, String> {
    // SAFETY: forwarded to the caller.
    let bytes = unsafe { bytes(text.ptr, text.len, what, cap)? };
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8 (the common case, checked a word at a time).
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|e| format!("the {what} is not UTF-8 ({e})"))
}

extern "C" fn start_response(
    this: *const c::Gateway,
    status: c::Str,
    headers: *const c::Header,
    headers_len: usize,
    exc_info: c::Str,
) -> i32 {
    code(gateway_call(this, |gateway| {
        let argument = Failure::Argument;
        // SAFETY: the app's promise for the pointers it passes, borrowed
        // until this returns (the header's contract); so for every read
        // below.
        let status = unsafe { text(status, "status line", c::MAX_STATUS_LEN) }.map_err(argument)?;
        let exc_info = match exc_info.len {
            0 => None,
            // SAFETY: as above.
            _ => Some(unsafe { text(exc_info, "exc_info text", c::MAX_IO_LEN) }.map_err(argument)?),
        };
        let span = headers_len.saturating_mul(std::mem::size_of::<c::Header>());
        check_span(
            headers.cast(),
            span,
            "header list",
            c::MAX_HEADERS * std::mem::size_of::<c::Header>(),
        )
        .map_err(argument)?;
        let fields: &[c::Header] = match headers_len {
            0 => &[],
            // SAFETY: not NULL, within the cap (checked above), as above.
            len => unsafe { std::slice::from_raw_parts(headers, len) },
        };
        for field in fields {
            // SAFETY: as above.
            unsafe { text(field.name, "header name", c::MAX_HEADER_LEN) }.map_err(argument)?;
            // SAFETY: as above.
            unsafe { text(field.value, "header value", c::MAX_HEADER_LEN) }.map_err(argument)?;
        }
        // SAFETY: every name and value was just checked to be UTF-8 text in
        // bounds, and a `host_app_header` is a `RawHeader` (see `c_headers`).
        let checked: &[Header<'_>] = unsafe { std::slice::from_raw_parts(fields.as_ptr().cast(), fields.len()) };
        gateway
            .host
            .start_response(status, checked, exc_info)
            .map_err(Failure::Refused)
    }))
}

extern "C" fn write(this: *const c::Gateway, data: *const u8, len: usize) -> i32 {
    code(gateway_call(this, |gateway| {
        // SAFETY: the app's promise (borrowed until this returns).
        let data = unsafe { bytes(data, len, "written data", c::MAX_IO_LEN) }.map_err(Failure::Argument)?;
        gateway.host.write(data).map_err(Failure::Refused)
    }))
}

extern "C" fn read_body(this: *const c::Gateway, buf: *mut u8, len: usize) -> i64 {
    let read = gateway_call(this, |gateway| {
        check_span(buf, len, "read buffer", c::MAX_IO_LEN).map_err(Failure::Argument)?;
        let buf: &mut [u8] = match len {
            0 => &mut [],
            // SAFETY: not NULL, within the cap, and the app's promise that
            // `len` bytes are writable until this returns.
            len => unsafe { std::slice::from_raw_parts_mut(buf, len) },
        };
        gateway.host.read_input(buf).map_err(Failure::Refused)
    });
    match read {
        Ok(n) => n as i64,
        Err(code) => i64::from(code),
    }
}

extern "C" fn send_file(this: *const c::Gateway, fd: c_int, offset: u64, len: u64) -> i32 {
    code(gateway_call(this, |gateway| {
        if fd < 0 {
            return Err(Failure::Argument(format!(
                "the file body's descriptor {fd} is not a file"
            )));
        }
        // SAFETY: not negative (checked above), and the app keeps it open
        // until this returns (the header's contract); it is only duplicated.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let owned = borrowed
            .try_clone_to_owned()
            .map_err(|e| Failure::Argument(format!("the file body's descriptor {fd} is not usable: {e}")))?;
        gateway
            .host
            .send_file(std::fs::File::from(owned), offset, len)
            .map_err(Failure::Refused)
    }))
}

extern "C" fn last_error(this: *const c::Gateway) -> c::Str {
    // SAFETY: as in `gateway_call`.
    let Some(gateway) = (unsafe { this.cast::<CGateway<'_>>().as_ref() }) else {
        return c::Str::NONE;
    };
    // The text stays in place until the next gateway call replaces it,
    // which the header says ends the borrow.
    match &*gateway.last_error.borrow() {
        Some(error) => c::Str::new(error),
        None => c::Str::NONE,
    }
}

/// The host's services for `init`, built once per process.
fn services_for(config: HostServicesConfig) -> &'static c::Services {
    static SERVICES: std::sync::OnceLock<c::Services> = std::sync::OnceLock::new();
    SERVICES.get_or_init(|| c::Services {
        size: std::mem::size_of::<c::Services>() as u32,
        max_level: config.max_level as i32,
        log: c_log,
    })
}

extern "C" fn c_log(level: i32, target: c::Str, message: c::Str) {
    let level = u8::try_from(level.clamp(1, 5)).unwrap_or(5);
    // SAFETY: borrowed for this call (the header's contract).
    let target = unsafe { text(target, "log target", c::MAX_HEADER_LEN) };
    // SAFETY: as above.
    let message = unsafe { text(message, "log message", c::MAX_IO_LEN) };
    match (target, message) {
        (Ok(target), Ok(message)) => super::log_record(level, target, message),
        (_, Err(problem)) | (Err(problem), _) => super::log_record(1, "host_app", &problem),
    }
}

/// The body the app returned, checked.
fn response_body(response: &c::Response) -> Result<ResponseBody, String> {
    match response.kind {
        c::RESPONSE_EMPTY => Ok(ResponseBody::Empty),
        c::RESPONSE_BODY => Ok(match CBytes::take(response.body)?.into_static() {
            Ok(bytes) => ResponseBody::Static(bytes),
            Err(owned) => ResponseBody::Bytes(PluginBytes::c(owned)),
        }),
        c::RESPONSE_STREAM => Ok(ResponseBody::Stream(ResponseStream::c(CStream::take(response.stream)?))),
        kind => Err(format!("the app returned a response of unknown kind {kind}")),
    }
}

/// A buffer the app handed over: released (if it has a release function)
/// exactly once, when dropped.
pub(super) struct CBytes {
    ptr: *const u8,
    len: usize,
    release: Option<extern "C" fn(*mut c_void)>,
    owner: *mut c_void,
}

// SAFETY: the header makes `release` callable from any thread, and the bytes
// are read-only once returned.
unsafe impl Send for CBytes {}
// SAFETY: as above; only shared reads.
unsafe impl Sync for CBytes {}

impl CBytes {
    /// Takes `body`, checking its length and pointer; a bad one is
    /// released (on drop) and refused.
    fn take(body: c::Body) -> Result<CBytes, String> {
        let taken = CBytes {
            ptr: body.ptr,
            len: body.len,
            release: body.release,
            owner: body.owner,
        };
        check_span(body.ptr, body.len, "response body", c::MAX_IO_LEN)
            .map_err(|problem| format!("the app returned a bad body: {problem}"))?;
        Ok(taken)
    }

    /// `static` bytes (no release function) as a slice for the process's
    /// life; owned ones back.
    fn into_static(self) -> Result<&'static [u8], CBytes> {
        if self.release.is_some() {
            return Err(self);
        }
        // SAFETY: checked in `take`; `static` bytes live as long as the
        // library, which is never unloaded.
        Ok(unsafe { bytes(self.ptr, self.len, "response body", c::MAX_IO_LEN) }.unwrap_or(&[]))
    }
}

impl AsRef<[u8]> for CBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: checked in `take`; the app lends us the bytes until
        // `release`, which only drop calls.
        unsafe { bytes(self.ptr, self.len, "response body", c::MAX_IO_LEN) }.unwrap_or(&[])
    }
}

impl Drop for CBytes {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            release(self.owner);
        }
    }
}

/// A streamed body the app handed over; closed exactly once.
pub(super) struct CStream {
    state: *mut c_void,
    next: extern "C" fn(*mut c_void, *mut c::Body) -> i32,
    close: Option<extern "C" fn(*mut c_void)>,
}

// SAFETY: the header allows `next` and `close` on any thread, one at a
// time; `&mut self` makes it one at a time.
unsafe impl Send for CStream {}

impl CStream {
    fn take(stream: c::Stream) -> Result<CStream, String> {
        let Some(next) = stream.next else {
            if let Some(close) = stream.close {
                close(stream.state_owned);
            }
            return Err("the app returned a stream without a next function".to_owned());
        };
        Ok(CStream {
            state: stream.state_owned,
            next,
            close: stream.close,
        })
    }

    /// The next chunk, `None` at the end.
    pub(super) fn next_chunk(&mut self) -> Result<Option<PluginBytes>, String> {
        let mut chunk = EMPTY_BODY;
        match (self.next)(self.state, &mut chunk) {
            1 => CBytes::take(chunk).map(|bytes| Some(PluginBytes::c(bytes))),
            0 => Ok(None),
            code => Err(format!("the app's stream failed with code {code}")),
        }
    }

    /// Closes the stream; later calls do nothing.
    pub(super) fn close(&mut self) {
        if let Some(close) = self.close.take() {
            close(self.state);
        }
    }
}

impl Drop for CStream {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_header_is_a_c_header_field_for_field() {
        let headers = [Header::new("host", "example.com")];
        // SAFETY: same size and alignment (asserted above); this checks the
        // field order.
        let field = unsafe { &*c_headers(&headers) };
        assert_eq!((field.name.ptr, field.name.len), ("host".as_ptr(), 4));
        assert_eq!(field.value.len, "example.com".len());
        assert_eq!(field.value.ptr, headers[0].value().as_ptr());
    }
}
