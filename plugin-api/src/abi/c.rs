//! The C interface, `c/host_app.h`, mirrored in Rust: one `#[repr(C)]` type
//! per struct of the header, field for field. The header is the contract;
//! these types are how the host reads it. `tests/c_header.rs` compiles the
//! header with the system's C and C++ compilers and compares every size and
//! offset with these, so the two cannot drift apart.
//!
//! Nothing here is checked by abi_stable (C has no layout records): the
//! check is the version symbol, then the `size` and `magic` fields of each
//! struct the app fills ([`crate::host`] does it before any call).

use std::ffi::{c_int, c_void};

/// `HOST_APP_VERSION_MAJOR`.
pub const VERSION_MAJOR: u32 = 1;
/// `HOST_APP_VERSION_MINOR`.
pub const VERSION_MINOR: u32 = 0;
/// The name of the version symbol (`HOST_APP_INTERFACE()`).
pub const VERSION_SYMBOL: &str = "host_app_interface_version";
/// `HOST_APP_MAGIC`: the second field of every app descriptor.
pub const MAGIC: u32 = 0x7070_6168;

/// `HOST_APP_OK`.
pub const OK: i32 = 0;
/// `HOST_APP_ERR_ARGUMENT`.
pub const ERR_ARGUMENT: i32 = -1;
/// `HOST_APP_ERR_REFUSED`.
pub const ERR_REFUSED: i32 = -2;

/// `HOST_APP_MAX_STATUS_LEN`.
pub const MAX_STATUS_LEN: usize = 1024;
/// `HOST_APP_MAX_HEADERS`.
pub const MAX_HEADERS: usize = 1024;
/// `HOST_APP_MAX_HEADER_LEN`.
pub const MAX_HEADER_LEN: usize = 65536;
/// `HOST_APP_MAX_IO_LEN`.
pub const MAX_IO_LEN: usize = 1 << 30;

/// `HOST_APP_MULTITHREAD`.
pub const MULTITHREAD: u32 = 1;
/// `HOST_APP_MULTIPROCESS`.
pub const MULTIPROCESS: u32 = 2;
/// `HOST_APP_RUN_ONCE`.
pub const RUN_ONCE: u32 = 4;

/// `HOST_APP_RESPONSE_EMPTY`.
pub const RESPONSE_EMPTY: u32 = 0;
/// `HOST_APP_RESPONSE_BODY`.
pub const RESPONSE_BODY: u32 = 1;
/// `HOST_APP_RESPONSE_STREAM`.
pub const RESPONSE_STREAM: u32 = 2;

/// `host_app_str`: UTF-8 text as pointer + length.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    /// The first byte; NULL only with a length of 0.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
}

impl Str {
    /// Borrows `text` (for the call it is passed to).
    pub fn new(text: &str) -> Str {
        Str {
            ptr: text.as_ptr(),
            len: text.len(),
        }
    }

    /// `{NULL, 0}`.
    pub const NONE: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };
}

/// `host_app_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// The field's name.
    pub name: Str,
    /// Its value.
    pub value: Str,
}

/// `host_app_version`: the version symbol's type.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Version {
    /// The major version.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

/// `host_app_request`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// `sizeof(host_app_request)`.
    pub size: u32,
    /// `HOST_APP_MULTITHREAD` | ….
    pub flags: u32,
    /// `REQUEST_METHOD`.
    pub method: Str,
    /// `SCRIPT_NAME`.
    pub script_name: Str,
    /// `PATH_INFO`.
    pub path_info: Str,
    /// `QUERY_STRING`.
    pub query_string: Str,
    /// `SERVER_NAME`.
    pub server_name: Str,
    /// `SERVER_PORT`.
    pub server_port: Str,
    /// `SERVER_PROTOCOL`.
    pub server_protocol: Str,
    /// `REMOTE_ADDR`.
    pub remote_addr: Str,
    /// `REMOTE_PORT`.
    pub remote_port: Str,
    /// `wsgi.url_scheme`.
    pub url_scheme: Str,
    /// The header fields.
    pub headers: *const Header,
    /// How many.
    pub headers_len: usize,
    /// The extra variables.
    pub extra: *const Header,
    /// How many.
    pub extra_len: usize,
}

/// `host_app_gateway`: the host's functions for one call.
#[repr(C)]
pub struct Gateway {
    /// `sizeof(host_app_gateway)`.
    pub size: u32,
    /// `start_response`.
    pub start_response: extern "C" fn(*const Gateway, Str, *const Header, usize, Str) -> i32,
    /// The write callable.
    pub write: extern "C" fn(*const Gateway, *const u8, usize) -> i32,
    /// `wsgi.input`.
    pub read_body: extern "C" fn(*const Gateway, *mut u8, usize) -> i64,
    /// The file body.
    pub send_file: extern "C" fn(*const Gateway, c_int, u64, u64) -> i32,
    /// Why the last call failed.
    pub last_error: extern "C" fn(*const Gateway) -> Str,
}

/// `host_app_body`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Body {
    /// The first byte.
    pub ptr: *const u8,
    /// How many bytes.
    pub len: usize,
    /// Releases `owner`; `None` for static bytes.
    pub release: Option<extern "C" fn(*mut c_void)>,
    /// What `release` is given.
    pub owner: *mut c_void,
}

/// `host_app_stream`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    /// The app's state, passed to `next` and `close`.
    pub state_owned: *mut c_void,
    /// The next chunk: 1, 0 at the end, negative on failure.
    pub next: Option<extern "C" fn(*mut c_void, *mut Body) -> i32>,
    /// Frees the state, once.
    pub close: Option<extern "C" fn(*mut c_void)>,
}

/// `host_app_response`: what the app returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Response {
    /// `sizeof(host_app_response)`, set by the host.
    pub size: u32,
    /// `HOST_APP_RESPONSE_*`.
    pub kind: u32,
    /// The body, for `HOST_APP_RESPONSE_BODY`.
    pub body: Body,
    /// The stream, for `HOST_APP_RESPONSE_STREAM`.
    pub stream: Stream,
}

/// `host_app_services`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Services {
    /// `sizeof(host_app_services)`.
    pub size: u32,
    /// The most verbose level the host logs.
    pub max_level: i32,
    /// Logs one message.
    pub log: extern "C" fn(i32, Str, Str),
}

/// `host_app`: an app descriptor.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AppDescriptor {
    /// `sizeof(host_app)` as the app was built.
    pub size: u32,
    /// [`MAGIC`].
    pub magic: u32,
    /// Called once per worker before any call.
    pub init: Option<extern "C" fn(*const Services) -> i32>,
    /// Called once per request.
    pub call: Option<extern "C" fn(*const Request, *const Gateway, *mut Response) -> i32>,
}
