//! The host's side of the interface: checks a plugin's exported header and
//! calls the app, without the host touching abi_stable.

mod asynchronous;
mod c_app;

use std::ffi::c_void;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use abi_stable::library::{AbiHeader, AbiHeaderRef, LibHeader, LibraryError, RootModule};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::{RRef, VersionNumber};
use abi_stable::std_types::{RArc, RErr, ROk, ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec};

use crate::abi::{
    v1_0, v1_1, AppModule_Ref, AsyncGateway_TO, BoxedAppFuture, BoxedBodyStream, Gateway, Gateway_TO, HostServices,
    RawBody, RawEnviron, RawHeader, RawOutcome,
};
use asynchronous::AsyncAdapter;
pub use asynchronous::{HostAsyncGateway, RunningApp, WsEvent, WsOutgoing};
pub use c_app::interface_version as c_interface_version;
use c_app::{CApp, CBytes, CStream};

pub use crate::abi::RawHeader as Header;

impl<'a> RawHeader<'a> {
    /// A header (or an extra environ variable) borrowed from the host.
    pub fn new(name: &'a str, value: &'a str) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
    /// The header's name.
    pub fn name(&self) -> &'a str {
        self.name.as_str()
    }
    /// The header's value.
    pub fn value(&self) -> &'a str {
        self.value.as_str()
    }
}

/// The request variables, borrowed, as the host builds them for one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestVars<'a> {
    /// `REQUEST_METHOD`.
    pub method: &'a str,
    /// `SCRIPT_NAME`.
    pub script_name: &'a str,
    /// `PATH_INFO`, percent-decoded.
    pub path_info: &'a str,
    /// `QUERY_STRING`.
    pub query_string: &'a str,
    /// `SERVER_NAME`.
    pub server_name: &'a str,
    /// `SERVER_PORT`.
    pub server_port: &'a str,
    /// `SERVER_PROTOCOL`.
    pub server_protocol: &'a str,
    /// `REMOTE_ADDR`.
    pub remote_addr: &'a str,
    /// `REMOTE_PORT`.
    pub remote_port: &'a str,
    /// `wsgi.url_scheme`.
    pub url_scheme: &'a str,
    /// `wsgi.multithread`.
    pub multithread: bool,
    /// `wsgi.multiprocess`.
    pub multiprocess: bool,
    /// `wsgi.run_once`.
    pub run_once: bool,
}

/// What the host does for the app during one call. Implementations must not
/// panic (a panic here is caught and reported to the app as an error).
pub trait HostGateway {
    /// `start_response`: `Err` is raised in the app.
    fn start_response(&self, status: &str, headers: &[Header<'_>], exc_info: Option<&str>) -> Result<(), String>;
    /// The write callable: sends `data` at once.
    fn write(&self, data: &[u8]) -> Result<(), String>;
    /// `wsgi.input`: fills `buf` from the request body; `Ok(0)` at its end.
    fn read_input(&self, buf: &mut [u8]) -> Result<usize, String>;
    /// The file body: `len` bytes of `file` from `offset` (the host's own
    /// descriptor for the app's file).
    fn send_file(&self, file: std::fs::File, offset: u64, len: u64) -> Result<(), String>;
}

/// A loaded, checked and initialised app.
#[derive(Clone, Copy)]
pub struct App {
    kind: Kind,
}

/// Which interface the app speaks.
#[derive(Clone, Copy)]
enum Kind {
    /// plugin-api (abi_stable), with the version it was built against.
    Rust(Module, VersionNumber),
    /// The C interface (`c/host_app.h`).
    C(CApp),
}

/// An app's root module, checked against the types of the interface minor
/// it was built with (see [`crate::abi`]).
#[derive(Clone, Copy)]
enum Module {
    /// Built against this host's minor.
    Current(AppModule_Ref),
    /// Built against 1.1: no async apps, no extra variables.
    V1_1(v1_1::AppModule_Ref),
    /// Built against 1.0: no file body either.
    V1_0(v1_0::AppModule_Ref),
}

/// The interface version this host speaks.
pub fn interface_version() -> &'static str {
    crate::INTERFACE_VERSION
}

impl App {
    /// Checks the abi_stable header at `header` (the address of the exported
    /// symbol) and initialises the app with `services`.
    ///
    /// # Safety
    /// `header` must be the address of a symbol of a library that stays
    /// loaded for the rest of the process.
    pub unsafe fn check(header: NonNull<c_void>, services: HostServicesConfig) -> Result<App, CheckError> {
        // SAFETY: `AbiHeaderRef` is a transparent wrapper of a reference to the
        // header; the caller guarantees the symbol lives for the process. The
        // bytes are only trusted after `upgrade` checked the magic string.
        let header: AbiHeaderRef = unsafe { std::mem::transmute::<NonNull<c_void>, AbiHeaderRef>(header) };
        let found = *header;
        let lib_header = header.upgrade().map_err(|e| CheckError::from_upgrade(e, &found))?;
        let (module, interface_version) = check_module(lib_header)?;
        let services = HostServices {
            log: host_log,
            max_level: services.max_level as u8,
        };
        let init = match module {
            Module::Current(module) => module.init(),
            Module::V1_1(module) => module.init(),
            Module::V1_0(module) => module.init(),
        };
        init(services)
            .into_result()
            .map_err(|e| CheckError::InitFailed(e.into_string()))?;
        Ok(App {
            kind: Kind::Rust(module, interface_version),
        })
    }

    /// Whether `symbol` is a C app descriptor (check it with
    /// [`App::check_c`]) rather than an abi_stable header.
    ///
    /// # Safety
    /// `symbol` must be the address of a symbol of a loaded library, at
    /// least 8 bytes long.
    pub unsafe fn is_c_app(symbol: NonNull<c_void>) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { c_app::is_descriptor(symbol) }
    }

    /// Checks a C app: the library's version symbol (`None` if it has
    /// none) and the descriptor at `descriptor`, then runs its `init`.
    ///
    /// # Safety
    /// Both must be symbols of a library that stays loaded for the rest of
    /// the process, and [`App::is_c_app`] said yes to `descriptor`.
    pub unsafe fn check_c(
        version: Option<NonNull<c_void>>,
        descriptor: NonNull<c_void>,
        services: HostServicesConfig,
    ) -> Result<App, CheckError> {
        // SAFETY: forwarded to the caller.
        let app = unsafe { CApp::check(version, descriptor, services)? };
        Ok(App { kind: Kind::C(app) })
    }

    /// The interface the app was built against, e.g. `plugin-api 1.2.0` or
    /// `C interface 1.0`.
    pub fn interface(&self) -> String {
        match self.kind {
            Kind::Rust(_, version) => format!("plugin-api {version}"),
            Kind::C(app) => format!("C interface {}", app.version()),
        }
    }

    /// Calls the app for one request: `extra` holds the environ's
    /// variables beyond PEP 3333's and the headers (`SSL_CLIENT_*`). Never
    /// panics, whatever the app does.
    pub fn call(
        &self,
        vars: &RequestVars<'_>,
        headers: &[Header<'_>],
        extra: &[Header<'_>],
        gateway: &dyn HostGateway,
    ) -> Result<ResponseBody, String> {
        let module = match self.kind {
            Kind::Rust(module, _) => module,
            Kind::C(app) => return app.call(vars, headers, extra, gateway),
        };
        let raw = raw_environ(vars, headers);
        let adapter = GatewayAdapter { gateway, extra };
        let outcome = match module {
            Module::Current(module) => (module.call())(&raw, Gateway_TO::from_ptr(RRef::new(&adapter), TD_Opaque)),
            Module::V1_1(module) => (module.call())(&raw, v1_1::Gateway_TO::from_ptr(RRef::new(&adapter), TD_Opaque)),
            Module::V1_0(module) => (module.call())(&raw, v1_0::Gateway_TO::from_ptr(RRef::new(&adapter), TD_Opaque)),
        };
        match outcome {
            RawOutcome::Body(body) => Ok(ResponseBody::from_raw(body)),
            RawOutcome::Failed(message) => Err(message.into_string()),
        }
    }

    /// Whether this is an async app (call it with [`App::call_async`]).
    pub fn is_async(&self) -> bool {
        self.async_entry().is_some()
    }

    fn async_entry(&self) -> Option<extern "C" fn(crate::abi::SharedAsyncGateway) -> BoxedAppFuture> {
        match self.kind {
            Kind::Rust(Module::Current(module), _) => module.call_async(),
            Kind::Rust(..) | Kind::C(_) => None,
        }
    }

    /// Starts an async app on one request: the future runs the app until
    /// it is done; dropping it cancels the request. `None` for a sync app.
    pub fn call_async<G: HostAsyncGateway>(&self, gateway: Arc<G>) -> Option<RunningApp> {
        let entry = self.async_entry()?;
        let adapter = AsyncAdapter::new(gateway);
        let future = entry(AsyncGateway_TO::from_ptr(RArc::new(adapter), TD_Opaque));
        Some(RunningApp { future: Some(future) })
    }

    /// The worker is stopping: the plugin stops its own runtime. Once per
    /// library is enough; more do nothing.
    pub fn shutdown(&self) {
        match self.kind {
            Kind::Rust(Module::Current(module), _) => (module.shutdown())(),
            Kind::Rust(..) | Kind::C(_) => {}
        }
    }
}

/// The interface's environ for `vars` and `headers`, borrowing them.
fn raw_environ<'a>(vars: &RequestVars<'a>, headers: &'a [Header<'a>]) -> RawEnviron<'a> {
    RawEnviron {
        request_method: vars.method.into(),
        script_name: vars.script_name.into(),
        path_info: vars.path_info.into(),
        query_string: vars.query_string.into(),
        server_name: vars.server_name.into(),
        server_port: vars.server_port.into(),
        server_protocol: vars.server_protocol.into(),
        remote_addr: vars.remote_addr.into(),
        remote_port: vars.remote_port.into(),
        url_scheme: vars.url_scheme.into(),
        headers: headers.into(),
        multithread: vars.multithread,
        multiprocess: vars.multiprocess,
        run_once: vars.run_once,
        #[cfg(feature = "fixture-layout-change")]
        layout_change: 0,
    }
}

/// How chatty the plugin's logging may be.
#[derive(Clone, Copy, Debug)]
pub struct HostServicesConfig {
    /// The most verbose level the host prints.
    pub max_level: log::LevelFilter,
}

fn check_module(lib_header: &'static LibHeader) -> Result<(Module, VersionNumber), CheckError> {
    let consts = lib_header.root_mod_consts();
    if consts.name().as_str() != AppModule_Ref::NAME {
        return Err(CheckError::NotAnApp {
            found: format!("the abi_stable module \"{}\"", consts.name()),
        });
    }
    let ours = VersionNumber::new(AppModule_Ref::VERSION_STRINGS).expect("our own version parses");
    let theirs = VersionNumber::new(lib_header.version_strings()).map_err(|e| CheckError::Corrupt(e.to_string()))?;
    // Same major, and no newer minor than ours: a minor version only adds.
    let newer_minor = ours.major == theirs.major && theirs.minor > ours.minor;
    if !ours.is_loosely_compatible(theirs) || newer_minor {
        return Err(CheckError::IncompatibleInterface {
            plugin: theirs.to_string(),
            host: ours.to_string(),
        });
    }
    let module = match (theirs.major, theirs.minor) {
        (1, 0) => Module::V1_0(lib_header.init_root_module().map_err(CheckError::from_init)?),
        (1, 1) => Module::V1_1(lib_header.init_root_module().map_err(CheckError::from_init)?),
        _ => Module::Current(lib_header.init_root_module().map_err(CheckError::from_init)?),
    };
    Ok((module, theirs))
}

/// Why a symbol was refused. `Display` is one line naming the problem and
/// the fix; [`CheckError::report`] has abi_stable's full text, if any.
#[derive(Debug)]
pub enum CheckError {
    /// The symbol does not point at an abi_stable header at all.
    NotAbiStable,
    /// An abi_stable header from an incompatible abi_stable release.
    AbiStableVersion {
        /// What the plugin was built with, e.g. `0.10`.
        plugin: String,
    },
    /// A header of some other abi_stable module, not an app.
    NotAnApp {
        /// What it is.
        found: String,
    },
    /// Built against a plugin-api this host cannot speak.
    IncompatibleInterface {
        /// The plugin-api version the plugin was built against.
        plugin: String,
        /// The plugin-api version of this host.
        host: String,
    },
    /// Same version, different type layouts (e.g. a changed struct).
    LayoutMismatch {
        /// The first concrete difference abi_stable found.
        summary: String,
        /// abi_stable's full report.
        report: String,
    },
    /// The compiler's C ABI differs between host and plugin.
    CAbi(String),
    /// The header holds unparsable data.
    Corrupt(String),
    /// The app's constructor failed or panicked.
    InitFailed(String),
    /// A C app descriptor in a library without the C version symbol.
    NoCVersion,
    /// A C app descriptor that cannot be used as it is.
    BadCDescriptor(String),
    /// A C app built against a C interface this host cannot speak.
    IncompatibleCInterface {
        /// The version in the library, e.g. `1.1`.
        plugin: String,
        /// This host's, e.g. `1.0`.
        host: String,
    },
}

impl CheckError {
    fn from_upgrade(error: LibraryError, found: &AbiHeader) -> CheckError {
        match error {
            LibraryError::InvalidAbiHeader(_) if found.magic_string == AbiHeader::VALUE.magic_string => {
                CheckError::AbiStableVersion {
                    plugin: format!("{}.{}", found.abi_major, found.abi_minor),
                }
            }
            LibraryError::InvalidAbiHeader(_) => CheckError::NotAbiStable,
            LibraryError::InvalidCAbi { .. } => CheckError::CAbi(error.to_string()),
            other => CheckError::from_init(other),
        }
    }

    fn from_init(error: LibraryError) -> CheckError {
        match error {
            LibraryError::IncompatibleVersionNumber {
                expected_version,
                actual_version,
                ..
            } => CheckError::IncompatibleInterface {
                plugin: actual_version.to_string(),
                host: expected_version.to_string(),
            },
            LibraryError::AbiInstability(report) => {
                let report = report.to_string();
                CheckError::LayoutMismatch {
                    summary: layout_summary(&report),
                    report,
                }
            }
            LibraryError::RootModule { err, .. } => CheckError::InitFailed(err.to_string()),
            other => CheckError::Corrupt(other.to_string()),
        }
    }

    /// abi_stable's full report, for the debug log.
    pub fn report(&self) -> Option<&str> {
        match self {
            CheckError::LayoutMismatch { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// The first concrete difference in abi_stable's report, e.g.
/// "RawEnviron: incompatible type size (expected 184, found 192)".
fn layout_summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let Some(at) = lines.iter().position(|l| l.starts_with("Error:")) else {
        return "type layouts differ".to_owned();
    };
    let problem = lines[at].trim_start_matches("Error:").trim();
    // The type is named right after the last "Layout of expected type:".
    let type_name = lines[..at]
        .iter()
        .rposition(|l| l.starts_with("Layout of expected type"))
        .and_then(|heading| lines[heading..at].iter().find_map(|l| l.strip_prefix("type:")));
    let value_after = |label: &str| {
        let from = lines[at..].iter().position(|l| *l == label)? + at + 1;
        lines[from..].iter().find(|l| !l.is_empty()).copied()
    };
    let mut summary = match type_name {
        Some(name) => format!("{}: {problem}", name.trim()),
        None => problem.to_owned(),
    };
    if let (Some(expected), Some(found)) = (value_after("Expected:"), value_after("Found:")) {
        summary.push_str(&format!(" (expected {expected}, found {found})"));
    }
    summary.chars().take(200).collect()
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ours = crate::INTERFACE_VERSION;
        match self {
            CheckError::NotAbiStable => write!(
                f,
                "the symbol is not an app: it is not an abi_stable header (export apps with plugin_api::export_app!) nor a C app descriptor (HOST_APP_DEFINE in host_app.h)"
            ),
            CheckError::AbiStableVersion { plugin } => write!(
                f,
                "built with abi_stable ABI {plugin}, incompatible with this host's; rebuild the plugin against plugin-api {ours}"
            ),
            CheckError::NotAnApp { found } => write!(
                f,
                "the symbol is {found}, not a plugin-api app (export apps with plugin_api::export_app!)"
            ),
            CheckError::IncompatibleInterface { plugin, host } => write!(
                f,
                "built against plugin-api {plugin}, this host speaks plugin-api {host}; rebuild the plugin against plugin-api {host} (or run a host that speaks {plugin})"
            ),
            CheckError::LayoutMismatch { summary, .. } => write!(
                f,
                "its interface types differ from this host's ({summary}); rebuild the plugin against this host's plugin-api {ours} (RUST_LOG=debug shows the full report)"
            ),
            CheckError::CAbi(detail) => write!(f, "the compiler's C ABI differs ({detail}); build host and plugin with the same toolchain"),
            CheckError::Corrupt(detail) => write!(f, "its abi_stable header is corrupt ({detail}); rebuild the plugin"),
            CheckError::InitFailed(detail) => write!(f, "the app failed to start: {detail}"),
            CheckError::NoCVersion => write!(
                f,
                "the symbol is a C app descriptor, but the library has no {} symbol; add HOST_APP_INTERFACE(); to one of its source files",
                crate::abi::c::VERSION_SYMBOL
            ),
            CheckError::BadCDescriptor(detail) => write!(
                f,
                "its host_app descriptor is invalid ({detail}); define it with HOST_APP_DEFINE from this host's host_app.h"
            ),
            CheckError::IncompatibleCInterface { plugin, host } => write!(
                f,
                "built against C interface {plugin} (host_app.h), this host speaks C interface {host}; rebuild the app with this host's plugin-api/c/host_app.h (or run a host that speaks {plugin})"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

/// Forwards a plugin's log record to the host's `log` logger.
extern "C" fn host_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    log_record(level, target.as_str(), message.as_str());
}

/// Logs a plugin's record (`level` 1 = error … 5 = trace) through the
/// host's logger.
fn log_record(level: u8, target: &str, message: &str) {
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    // A logger that panics must not unwind into the plugin.
    let _ = panic::catch_unwind(|| {
        log::log!(target: target, level, "{message}");
    });
}

/// Makes a [`HostGateway`] callable from the plugin, catching every panic.
struct GatewayAdapter<'g> {
    gateway: &'g dyn HostGateway,
    extra: &'g [Header<'g>],
}

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(message)) => RErr(message.into()),
        Err(_) => RErr(format!("the host failed in {what}").into()),
    }
}

impl Gateway for GatewayAdapter<'_> {
    fn start_response(
        &self,
        status: RStr<'_>,
        headers: RSlice<'_, RawHeader<'_>>,
        exc_info: ROption<RStr<'_>>,
    ) -> RResult<(), RString> {
        guarded("start_response", || {
            self.gateway.start_response(
                status.as_str(),
                headers.as_slice(),
                exc_info.into_option().map(|e| e.as_str()),
            )
        })
    }
    fn write(&self, data: RSlice<'_, u8>) -> RResult<(), RString> {
        guarded("write", || self.gateway.write(data.as_slice()))
    }
    fn read_input(&self, mut buf: RSliceMut<'_, u8>) -> RResult<usize, RString> {
        guarded("read_input", || self.gateway.read_input(buf.as_mut_slice()))
    }
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> RResult<(), RString> {
        guarded("send_file", || {
            if fd < 0 {
                return Err(format!("the file body's descriptor {fd} is not a file"));
            }
            // SAFETY: not -1 (checked above), and the app passes a descriptor it keeps open for the
            // length of this call; we only duplicate it here.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let owned = borrowed
                .try_clone_to_owned()
                .map_err(|e| format!("the file body's descriptor {fd} is not usable: {e}"))?;
            self.gateway.send_file(std::fs::File::from(owned), offset, len)
        })
    }
    fn extra_vars(&self) -> RSlice<'_, RawHeader<'_>> {
        self.extra.into()
    }
}

/// The 1.1 gateway: the same calls, without the extra variables.
impl v1_1::Gateway for GatewayAdapter<'_> {
    fn start_response(
        &self,
        status: RStr<'_>,
        headers: RSlice<'_, RawHeader<'_>>,
        exc_info: ROption<RStr<'_>>,
    ) -> RResult<(), RString> {
        Gateway::start_response(self, status, headers, exc_info)
    }
    fn write(&self, data: RSlice<'_, u8>) -> RResult<(), RString> {
        Gateway::write(self, data)
    }
    fn read_input(&self, buf: RSliceMut<'_, u8>) -> RResult<usize, RString> {
        Gateway::read_input(self, buf)
    }
    fn send_file(&self, fd: i32, offset: u64, len: u64) -> RResult<(), RString> {
        Gateway::send_file(self, fd, offset, len)
    }
}

/// The 1.0 gateway: the same calls, without the file body.
impl v1_0::Gateway for GatewayAdapter<'_> {
    fn start_response(
        &self,
        status: RStr<'_>,
        headers: RSlice<'_, RawHeader<'_>>,
        exc_info: ROption<RStr<'_>>,
    ) -> RResult<(), RString> {
        Gateway::start_response(self, status, headers, exc_info)
    }
    fn write(&self, data: RSlice<'_, u8>) -> RResult<(), RString> {
        Gateway::write(self, data)
    }
    fn read_input(&self, buf: RSliceMut<'_, u8>) -> RResult<usize, RString> {
        Gateway::read_input(self, buf)
    }
}

/// An owned buffer from the plugin, freed by the plugin's allocator.
pub struct PluginBytes(Owned);

/// Whose buffer it is.
enum Owned {
    /// A Rust plugin's vector.
    Rust(RVec<u8>),
    /// A C app's buffer, with its release function.
    C(CBytes),
}

impl PluginBytes {
    fn rust(bytes: RVec<u8>) -> PluginBytes {
        PluginBytes(Owned::Rust(bytes))
    }

    fn c(bytes: CBytes) -> PluginBytes {
        PluginBytes(Owned::C(bytes))
    }
}

impl AsRef<[u8]> for PluginBytes {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Owned::Rust(bytes) => bytes,
            Owned::C(bytes) => bytes.as_ref(),
        }
    }
}

/// The body an app returned.
pub enum ResponseBody {
    /// No body.
    Empty,
    /// Bytes in the plugin's image, valid for the process's life.
    Static(&'static [u8]),
    /// One buffer.
    Bytes(PluginBytes),
    /// Chunks to pull, then close.
    Stream(ResponseStream),
}

impl ResponseBody {
    fn from_raw(raw: RawBody) -> Self {
        match raw {
            RawBody::Empty => ResponseBody::Empty,
            RawBody::Static(bytes) => ResponseBody::Static(bytes.as_slice()),
            RawBody::Bytes(bytes) => ResponseBody::Bytes(PluginBytes::rust(bytes)),
            RawBody::Stream(stream) => ResponseBody::Stream(ResponseStream::rust(stream)),
        }
    }
}

/// A streamed body; `close` (WSGI's `close()`) runs exactly once, on
/// [`ResponseStream::close`] or else on drop.
pub struct ResponseStream {
    stream: Option<Streamed>,
}

/// Whose stream it is.
enum Streamed {
    /// A Rust plugin's.
    Rust(BoxedBodyStream),
    /// A C app's.
    C(CStream),
}

impl ResponseStream {
    fn rust(stream: BoxedBodyStream) -> ResponseStream {
        ResponseStream {
            stream: Some(Streamed::Rust(stream)),
        }
    }

    fn c(stream: CStream) -> ResponseStream {
        ResponseStream {
            stream: Some(Streamed::C(stream)),
        }
    }

    /// The next chunk, `None` at the end; `Err` if the app failed mid-body.
    pub fn next_chunk(&mut self) -> Result<Option<PluginBytes>, String> {
        match self.stream.as_mut() {
            None => Ok(None),
            Some(Streamed::Rust(stream)) => stream
                .next_chunk()
                .into_result()
                .map(|chunk| chunk.into_option().map(PluginBytes::rust))
                .map_err(RString::into_string),
            Some(Streamed::C(stream)) => stream.next_chunk(),
        }
    }

    /// Calls the app's `close()`; later calls do nothing.
    pub fn close(&mut self) -> Result<(), String> {
        match self.stream.take() {
            Some(Streamed::Rust(mut stream)) => stream.close().into_result().map_err(RString::into_string),
            Some(Streamed::C(mut stream)) => {
                stream.close();
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if let Err(message) = self.close() {
            log::error!("{message}");
        }
    }
}

/// The size of the header [`crate::export_app!`] exports, to tell app
/// symbols apart in a library's symbol table.
pub const APP_HEADER_SIZE: usize = std::mem::size_of::<LibHeader>();

/// The size of a C app descriptor (`host_app`) of this host's C interface.
pub const C_APP_DESCRIPTOR_SIZE: usize = std::mem::size_of::<crate::abi::c::AppDescriptor>();
