//! Loading an app: find the library, open it, look the symbol up, and let
//! plugin-api check it before any of its code runs. Libraries are never
//! unloaded (the README's design notes say why).

use std::ffi::{c_void, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use object::{Object, ObjectSymbol, SymbolKind};
use plugin_api::abi::c::VERSION_SYMBOL as C_VERSION_SYMBOL;
use plugin_api::host::{App, CheckError, HostServicesConfig};

use crate::plugin::app_spec::AppSpec;
use crate::plugin::library_file::{self, FileProblem};

/// An app that passed every check and was initialised.
#[derive(Clone)]
pub struct LoadedApp {
    /// The `LIB:SYMBOL` it was loaded from.
    pub spec: AppSpec,
    /// The library file, resolved.
    pub path: PathBuf,
    /// The callable app.
    pub app: App,
    /// How long finding, opening and checking took.
    pub load_time: Duration,
}

/// Why an app was refused. `Display` is one line: the file, the symbol, the
/// problem and the fix.
#[derive(Debug)]
pub struct LoadError {
    /// What was asked for.
    pub spec: AppSpec,
    /// What went wrong.
    pub kind: Box<LoadErrorKind>,
}

/// The problems a load can hit.
#[derive(Debug)]
pub enum LoadErrorKind {
    /// No such file (for a bare name: in none of the plugin folders).
    NotFound {
        /// Every place that was tried.
        looked_in: Vec<PathBuf>,
    },
    /// The file cannot be a library: not a regular file, not ELF,
    /// truncated, built for another machine.
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// The dynamic loader says the file is not a shared library.
    NotSharedLibrary {
        /// The file.
        path: PathBuf,
        /// What the loader said.
        detail: String,
    },
    /// The library needs a symbol nothing provides.
    UndefinedSymbol {
        /// The file.
        path: PathBuf,
        /// The dynamic linker's message.
        detail: String,
    },
    /// Any other dlopen failure.
    OpenFailed {
        /// The file.
        path: PathBuf,
        /// The dynamic linker's message.
        detail: String,
    },
    /// The library does not export the symbol.
    SymbolMissing {
        /// The file.
        path: PathBuf,
        /// The apps it does export.
        exported_apps: Vec<String>,
    },
    /// A second Go library in a process that already runs one.
    SecondGoRuntime {
        /// The file.
        path: PathBuf,
        /// The Go library already loaded.
        loaded: PathBuf,
    },
    /// The symbol exists but plugin-api refused it.
    Refused {
        /// The file.
        path: PathBuf,
        /// plugin-api's verdict.
        error: CheckError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symbol = &self.spec.symbol;
        match self.kind.as_ref() {
            LoadErrorKind::NotFound { looked_in } => {
                let places: Vec<String> = looked_in.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "cannot load app {}: library not found (looked for {}); build it first, or pass its path or --plugin-dir",
                    self.spec,
                    places.join(", ")
                )
            }
            LoadErrorKind::BadFile { path, problem } => {
                write!(f, "cannot load app {}:{symbol}: {problem}", path.display())
            }
            LoadErrorKind::NotSharedLibrary { path, detail } => write!(
                f,
                "cannot load app {}:{symbol}: the file is not a shared library ({detail}); build the plugin with crate-type = [\"cdylib\"]",
                path.display()
            ),
            LoadErrorKind::UndefinedSymbol { path, detail } => write!(
                f,
                "cannot load app {}:{symbol}: the library links a symbol nothing provides ({detail}); link the library that defines it or remove the reference",
                path.display()
            ),
            LoadErrorKind::OpenFailed { path, detail } => {
                write!(f, "cannot load app {}:{symbol}: {detail}", path.display())
            }
            LoadErrorKind::SymbolMissing { path, exported_apps } => {
                let exported = if exported_apps.is_empty() {
                    "it exports no apps; add plugin_api::export_app!(...) to the plugin (or HOST_APP_DEFINE in C)".to_owned()
                } else {
                    format!("it exports: {}", exported_apps.join(", "))
                };
                write!(
                    f,
                    "cannot load app {}:{symbol}: no symbol '{symbol}' in the library; {exported}",
                    path.display()
                )
            }
            LoadErrorKind::SecondGoRuntime { path, loaded } => write!(
                f,
                "cannot load app {}:{symbol}: it is a Go library, and this process already runs the Go library {}; a process holds one Go runtime, so build the Go apps into one library (or serve them from separate hosts)",
                path.display(),
                loaded.display()
            ),
            LoadErrorKind::Refused { path, error } => {
                write!(f, "refusing app {}:{symbol}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Finds, opens, checks and initialises the app `spec` names.
pub fn load(spec: &AppSpec, plugin_dirs: &[PathBuf]) -> Result<LoadedApp, LoadError> {
    let started = Instant::now();
    let fail = |kind: LoadErrorKind| LoadError {
        spec: spec.clone(),
        kind: Box::new(kind),
    };
    let path = spec
        .library
        .resolve(plugin_dirs)
        .map_err(|looked_in| fail(LoadErrorKind::NotFound { looked_in }))?;
    // dlopen only searches the system paths for names without a '/'.
    let path = std::path::absolute(&path).unwrap_or(path);
    let file = library_file::inspect(&path, u64::MAX).map_err(|problem| {
        fail(LoadErrorKind::BadFile {
            path: path.clone(),
            problem,
        })
    })?;

    // A Go library starts its runtime when opened, and a process can run
    // only one: a second Go library is refused before it is opened.
    let mut go_runtime = GO_RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let is_go = is_go_elf(file);
    if let Some(loaded) = go_runtime.as_ref().filter(|loaded| is_go && **loaded != path) {
        return Err(fail(LoadErrorKind::SecondGoRuntime {
            path: path.clone(),
            loaded: loaded.clone(),
        }));
    }
    // SAFETY: opening runs the library's initialisers. That is the point of
    // loading a plugin; RTLD_NOW makes unresolved symbols a load error here
    // instead of a crash at first call.
    let library = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| fail(classify_open_error(&path, &e)))?;
    if is_go {
        *go_runtime = Some(path.clone());
    }
    drop(go_runtime);

    let symbol_name = CString::new(spec.symbol.as_bytes()).expect("AppSpec symbols hold no NUL");
    // SAFETY: the symbol is read as an address only; plugin-api validates what
    // it points at before using it.
    let address = unsafe { library.get::<*mut c_void>(symbol_name.as_bytes_with_nul()) }
        .ok()
        .and_then(|symbol| NonNull::new(*symbol))
        .ok_or_else(|| {
            fail(LoadErrorKind::SymbolMissing {
                path: path.clone(),
                exported_apps: exported_apps(&path),
            })
        })?;

    let services = HostServicesConfig {
        max_level: log::max_level(),
    };
    // The library's C interface version, if it has C apps.
    // SAFETY: read as an address only; plugin-api reads what it points at
    // once it knows the library holds C apps.
    let c_version = unsafe { library.get::<*mut c_void>(C_VERSION_SYMBOL.as_bytes()) }
        .ok()
        .and_then(|symbol| NonNull::new(*symbol));
    // SAFETY: `address` is a symbol of `library`, which is leaked below and so
    // stays loaded for the rest of the process. Every exported app is at
    // least 8 bytes (a C descriptor or an abi_stable header), and any other
    // symbol sits in a mapped segment longer than that.
    let checked = unsafe {
        if App::is_c_app(address) {
            App::check_c(c_version, address, services)
        } else {
            App::check(address, services)
        }
    };
    // Never unload: code, statics and thread-locals of the plugin may be in
    // use by anything it returned; dlclose is a no-op for most Rust
    // libraries anyway (README, "Design notes").
    std::mem::forget(library);
    let app = checked.map_err(|error| {
        if let Some(report) = error.report() {
            log::debug!("abi_stable report for {spec}:\n{report}");
        }
        fail(LoadErrorKind::Refused {
            path: path.clone(),
            error,
        })
    })?;
    Ok(LoadedApp {
        spec: spec.clone(),
        path,
        app,
        load_time: started.elapsed(),
    })
}

/// The Go library this process opened, if any (see [`is_go_library`]).
static GO_RUNTIME: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Whether the library at `path` was built by Go (`-buildmode=c-shared`):
/// every such library carries its own Go runtime, with its own threads and
/// signal handlers, and two in one process break each other. Reads the
/// file only; nothing is opened with dlopen.
pub fn is_go_library(path: &Path) -> bool {
    library_file::inspect(path, u64::MAX).is_ok_and(is_go_elf)
}

fn is_go_elf(file: std::fs::File) -> bool {
    let data = object::ReadCache::new(file);
    object::File::parse(&data).is_ok_and(|elf| elf.section_by_name(".go.buildinfo").is_some())
}

/// libloading's `Display` is only "dlopen failed"; the reason is its source.
fn classify_open_error(path: &Path, error: &libloading::Error) -> LoadErrorKind {
    let detail = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_else(|| error.to_string());
    // dlerror repeats the path: "PATH: undefined symbol: x".
    let detail = detail
        .strip_prefix(&format!("{}: ", path.display()))
        .map(str::to_owned)
        .unwrap_or(detail);
    let path = path.to_path_buf();
    if detail.contains("undefined symbol") {
        LoadErrorKind::UndefinedSymbol { path, detail }
    } else if detail.contains("invalid ELF header")
        || detail.contains("file too short")
        || detail.contains("wrong ELF class")
    {
        LoadErrorKind::NotSharedLibrary { path, detail }
    } else {
        LoadErrorKind::OpenFailed { path, detail }
    }
}

/// The names of the apps a library exports, read from its ELF dynamic
/// symbol table: exported data objects of an abi_stable app header's size,
/// and, in a library with the C version symbol, of a C descriptor's.
pub fn exported_apps(path: &Path) -> Vec<String> {
    let Ok(data) = library_file::inspect(path, u64::MAX) else {
        return Vec::new();
    };
    let data = object::ReadCache::new(data);
    let Ok(file) = object::File::parse(&data) else {
        return Vec::new();
    };
    let data_symbols = || {
        file.dynamic_symbols()
            .filter(|s| s.is_definition() && s.is_global() && s.kind() == SymbolKind::Data)
    };
    let has_c_apps = data_symbols().any(|s| s.name() == Ok(C_VERSION_SYMBOL));
    let mut apps: Vec<String> = data_symbols()
        .filter(|s| {
            s.size() == plugin_api::host::APP_HEADER_SIZE as u64
                || (has_c_apps && s.size() == plugin_api::host::C_APP_DESCRIPTOR_SIZE as u64)
        })
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect();
    apps.sort();
    apps
}
