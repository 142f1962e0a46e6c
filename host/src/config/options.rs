//! [`Options`]: every serving option, declared once. Each field is at the
//! same time a command-line flag (clap), an environment variable
//! (`HOST_…`), a config-file key (serde; the field's name) and, through
//! clap's `default_value`, its default, which `--help` and
//! `--print-config` both show. [`super::layers`] puts the sources together.

use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::{mount_table, one_or_many, AccessLogFormat, BindAddr, Mount, ProxyNet, Seconds, Size};
use crate::plugin::app_spec::{default_plugin_dirs, AppSpec};

/// The default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// The default static folder.
pub const DEFAULT_STATIC_DIR: &str = "./html";

/// The default worker count: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Everything `host` serves with. Flags beat environment variables, which
/// beat the config file, which beats the defaults.
#[derive(Clone, Debug, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The app to serve at `/`, as LIB:SYMBOL (e.g. ./plugins/libctime.so:application).
    #[arg(value_name = "LIB:SYMBOL", env = "HOST_APP")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppSpec>,

    /// Mount another app at a prefix: PREFIX=LIB:SYMBOL, e.g. /time=ctime:application (repeatable).
    #[arg(
        long = "mount",
        value_name = "PREFIX=LIB:SYMBOL",
        env = "HOST_MOUNTS",
        value_delimiter = ','
    )]
    #[serde(default, with = "mount_table", skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,

    /// Listen address: HOST:PORT, a bare PORT (on 127.0.0.1) or unix:PATH (repeatable).
    #[arg(long, short = 'b', value_name = "ADDR", env = "HOST_BIND", value_delimiter = ',', default_value = DEFAULT_BIND)]
    #[serde(with = "one_or_many")]
    pub bind: Vec<BindAddr>,

    /// Peers whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers
    /// set REMOTE_ADDR and wsgi.url_scheme: addresses, networks (10.0.0.0/8)
    /// or *; unix-socket peers always count.
    #[arg(
        long,
        value_name = "IPS",
        env = "HOST_FORWARDED_ALLOW_IPS",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    #[serde(with = "one_or_many")]
    pub forwarded_allow_ips: Vec<ProxyNet>,

    /// Every connection on the --bind addresses starts with a PROXY
    /// protocol header (v1 or v2, as HAProxy or a TCP load balancer sends
    /// it), taken only from --forwarded-allow-ips peers; it names the
    /// client.
    #[arg(long, env = "HOST_PROXY_PROTOCOL", value_parser = BoolishValueParser::new())]
    #[serde(default)]
    pub proxy_protocol: bool,

    /// A PEM certificate chain: every --bind serves HTTPS (with --keyfile).
    /// Read again at every hot swap, so a renewed certificate needs no
    /// restart.
    #[arg(long, value_name = "FILE", env = "HOST_CERTFILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certfile: Option<PathBuf>,

    /// The private key of --certfile (PEM: PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", env = "HOST_KEYFILE")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyfile: Option<PathBuf>,

    /// PEM CA certificates: HTTPS clients must present a certificate they
    /// signed (mutual TLS). Read again at every hot swap.
    #[arg(long, value_name = "FILE", env = "HOST_CA_CERTS")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certs: Option<PathBuf>,

    /// Serve HTTP/1.1 only: no HTTP/2 by ALPN over TLS, and no cleartext
    /// HTTP/2 with prior knowledge (h2c).
    #[arg(long, env = "HOST_NO_HTTP2", value_parser = BoolishValueParser::new())]
    #[serde(default)]
    pub no_http2: bool,

    /// Where the master serves /healthz, /readyz and /metrics (HOST:PORT,
    /// a bare PORT or unix:PATH); off by default. Keep it off public
    /// networks.
    #[arg(long, value_name = "ADDR", env = "HOST_ADMIN_BIND")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_bind: Option<BindAddr>,

    /// The static site's folder (seed 004's config calls it `static_path`).
    #[arg(long, value_name = "DIR", env = "HOST_STATIC_DIR", default_value = DEFAULT_STATIC_DIR)]
    pub static_dir: PathBuf,

    /// Serve no static files: every request goes to the apps (seed 000's app:run).
    #[arg(long, env = "HOST_NO_STATIC", conflicts_with = "static_dir", value_parser = BoolishValueParser::new())]
    #[serde(default)]
    pub no_static: bool,

    /// Where bare library names are looked up.
    #[command(flatten)]
    #[serde(rename = "plugin_dirs")]
    pub plugins: PluginDirs,

    /// Access log format.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "HOST_ACCESS_LOG_FORMAT",
        default_value_t
    )]
    pub access_log_format: AccessLogFormat,

    /// Worker processes; 0 serves in this process, for debugging.
    #[arg(long, short = 'w', value_name = "N", env = "HOST_WORKERS", default_value_t = default_workers())]
    pub workers: usize,

    /// Largest library file that is staged and loaded, e.g. 1GiB.
    #[arg(long, value_name = "SIZE", env = "HOST_MAX_LIBRARY_SIZE", default_value = "1GiB")]
    pub max_library_size: Size,

    /// How long loading an app may take, in the probe that checks it first
    /// and in each new worker, e.g. 30s (a library constructor that never
    /// returns is refused after this).
    #[arg(long, value_name = "DURATION", env = "HOST_LOAD_TIMEOUT", default_value = "30s")]
    pub load_timeout: Seconds,

    /// Crashes of workers in requests to one route (mount + path) after which
    /// the route is answered 503 without calling the app; 0 turns this off.
    #[arg(long, value_name = "N", env = "HOST_QUARANTINE_AFTER", default_value_t = 3)]
    pub quarantine_after: u32,

    /// The time window those crashes must fall in, e.g. 60s.
    #[arg(long, value_name = "DURATION", env = "HOST_QUARANTINE_WINDOW", default_value = "60s")]
    pub quarantine_window: Seconds,

    /// How long a quarantined route is answered 503, e.g. 30s.
    #[arg(long, value_name = "DURATION", env = "HOST_QUARANTINE_FOR", default_value = "30s")]
    pub quarantine_for: Seconds,

    /// Threads per worker that may run app calls at once; more requests
    /// wait for one (see --max-queued).
    #[arg(long, value_name = "N", env = "HOST_THREADS", default_value_t = 256)]
    pub threads: usize,

    /// Requests per worker that may wait for an app thread; more get 503.
    #[arg(long, value_name = "N", env = "HOST_MAX_QUEUED", default_value_t = 1024)]
    pub max_queued: usize,

    /// How long a request may wait for an app thread before it gets 503, e.g. 10s.
    #[arg(long, value_name = "DURATION", env = "HOST_QUEUE_TIMEOUT", default_value = "10s")]
    pub queue_timeout: Seconds,

    /// Requests a worker serves before it is replaced (through the same
    /// path as a swap: nothing dropped); 0 never.
    #[arg(long, value_name = "N", env = "HOST_MAX_REQUESTS", default_value_t = 0)]
    pub max_requests: u64,

    /// Up to this many requests more, drawn per worker, so that workers
    /// started together are not all replaced at once.
    #[arg(long, value_name = "N", env = "HOST_MAX_REQUESTS_JITTER", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Resident memory past which a worker is replaced (nothing dropped),
    /// e.g. 512MiB, checked every second; 0 never.
    #[arg(long, value_name = "SIZE", env = "HOST_MAX_WORKER_MEMORY", default_value = "0")]
    pub max_worker_memory: Size,

    /// Swap in a rebuilt library when its file changes (validated first, like SIGHUP).
    #[arg(long, env = "HOST_RELOAD", value_parser = BoolishValueParser::new())]
    #[serde(default)]
    pub reload: bool,

    /// Safety limits.
    #[command(flatten)]
    pub limits: Limits,

    /// A TOML config file (keys as --print-config shows them).
    #[arg(long, value_name = "FILE", env = "HOST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

/// Folders searched for `lib<name>.so` when an app's library is a bare name.
#[derive(Clone, Debug, Default, Args, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PluginDirs {
    /// Folder to search for lib<name>.so when LIB is a bare name (repeatable).
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "HOST_PLUGIN_DIRS",
        value_delimiter = ':',
        default_values_os_t = default_plugin_dirs()
    )]
    #[serde(with = "one_or_many")]
    pub plugin_dirs: Vec<PathBuf>,
}

/// Safety limits, on by default; each names the option that raises it.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, e.g. 10MiB (413 beyond).
    #[arg(long, value_name = "SIZE", env = "HOST_MAX_BODY_SIZE", default_value = "10MiB")]
    pub max_body_size: Size,

    /// Largest request head, e.g. 32KiB (431 beyond).
    #[arg(long, value_name = "SIZE", env = "HOST_MAX_HEADER_SIZE", default_value = "32KiB")]
    pub max_header_size: Size,

    /// Most request headers (431 beyond).
    #[arg(long, value_name = "N", env = "HOST_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Most concurrent HTTP/2 streams (requests) per connection.
    #[arg(long, value_name = "N", env = "HOST_HTTP2_MAX_STREAMS", default_value_t = 100)]
    pub http2_max_streams: u32,

    /// Longest request target, e.g. 8KiB (414 beyond).
    #[arg(long, value_name = "SIZE", env = "HOST_MAX_URI_LENGTH", default_value = "8KiB")]
    pub max_uri_length: Size,

    /// Request bodies up to this size are read before the app is called
    /// (a slow client then holds no app thread); larger ones are streamed.
    #[arg(long, value_name = "SIZE", env = "HOST_BODY_BUFFER_SIZE", default_value = "1MiB")]
    pub body_buffer_size: Size,

    /// Longest wait for the next piece of a request body, or for the client
    /// to take the next piece of a response, e.g. 10s (408 or a closed
    /// connection beyond).
    #[arg(long, value_name = "DURATION", env = "HOST_BODY_TIMEOUT", default_value = "10s")]
    pub body_timeout: Seconds,

    /// Slowest average a request body may arrive at, in bytes per second,
    /// after a grace of --body-timeout (Apache's mod_reqtimeout MinRate): a
    /// client below it gets 408 and its connection is closed; 0 turns it off.
    #[arg(long, value_name = "BYTES", env = "HOST_BODY_MIN_RATE", default_value = "500")]
    pub body_min_rate: Size,

    /// Time allowed to send a request head, and keep-alive idle time, e.g. 10s.
    #[arg(long, value_name = "DURATION", env = "HOST_HEADER_TIMEOUT", default_value = "10s")]
    pub header_timeout: Seconds,

    /// Time in-flight requests get to finish when stopping or swapping, e.g. 30s.
    #[arg(long, value_name = "DURATION", env = "HOST_GRACEFUL_TIMEOUT", default_value = "30s")]
    pub graceful_timeout: Seconds,

    /// Longest a request may run inside the app (time spent waiting for the
    /// client does not count): it gets a 504 and its worker is replaced.
    #[arg(
        long = "timeout",
        value_name = "DURATION",
        env = "HOST_TIMEOUT",
        default_value = "30s"
    )]
    pub request_timeout: Seconds,

    /// How often an open WebSocket is pinged (0: never), e.g. 20s.
    #[arg(long, value_name = "DURATION", env = "HOST_WS_PING_INTERVAL", default_value = "20s")]
    pub ws_ping_interval: Seconds,

    /// How long a ping may go unanswered before the socket is closed.
    #[arg(long, value_name = "DURATION", env = "HOST_WS_PING_TIMEOUT", default_value = "20s")]
    pub ws_ping_timeout: Seconds,

    /// Largest WebSocket message, e.g. 16MiB (the socket is closed with 1009 beyond).
    #[arg(long, value_name = "SIZE", env = "HOST_WS_MAX_MESSAGE", default_value = "16MiB")]
    pub ws_max_message: Size,

    /// A WebSocket with no message either way for this long is closed
    /// (1001); 0 (the default) leaves idle sockets open while pings are
    /// answered.
    #[arg(long, value_name = "DURATION", env = "HOST_WS_IDLE_TIMEOUT", default_value = "0s")]
    pub ws_idle_timeout: Seconds,
}

/// The options alone, as a clap command (for their defaults and names).
#[derive(clap::Parser)]
struct OptionsOnly {
    #[command(flatten)]
    options: Options,
}

/// The environment variables options are read from (`HOST_BIND`, …).
pub fn env_names() -> Vec<String> {
    use clap::CommandFactory;
    OptionsOnly::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect()
}

impl Options {
    /// Every app with its prefix: the one at `/`, then the mounts.
    pub fn apps(&self) -> Vec<Mount> {
        let root = self.app.iter().map(|app| Mount {
            prefix: "/".to_owned(),
            app: app.clone(),
        });
        root.chain(self.mounts.iter().cloned()).collect()
    }

    /// Every app's `LIB:SYMBOL`, to rewrite (the master points them at
    /// staged copies).
    pub fn app_specs_mut(&mut self) -> impl Iterator<Item = &mut AppSpec> {
        self.app.iter_mut().chain(self.mounts.iter_mut().map(|m| &mut m.app))
    }

    /// The static folder, unless `no_static`.
    pub fn static_root(&self) -> Option<&Path> {
        (!self.no_static).then_some(self.static_dir.as_path())
    }

    /// The folders bare library names are looked up in.
    pub fn plugin_dirs(&self) -> &[PathBuf] {
        &self.plugins.plugin_dirs
    }

    /// Checks what no single value can: one app per prefix, something to serve.
    pub fn check(&self) -> Result<(), String> {
        let apps = self.apps();
        for (i, mount) in apps.iter().enumerate() {
            if apps[..i].iter().any(|m| m.prefix == mount.prefix) {
                return Err(format!("two apps are mounted at {}: keep one", mount.prefix));
            }
        }
        if apps.is_empty() && self.no_static {
            return Err("nothing to serve: name an app (LIB:SYMBOL) or a static folder (--static-dir DIR)".to_owned());
        }
        if self.bind.is_empty() {
            return Err("no listen address: pass --bind ADDR".to_owned());
        }
        if self.certfile.is_some() != self.keyfile.is_some() {
            return Err(
                "HTTPS needs both a certificate and its key: pass --certfile FILE and --keyfile FILE".to_owned(),
            );
        }
        if self.ca_certs.is_some() && self.certfile.is_none() {
            return Err("--ca-certs checks HTTPS clients: pass --certfile FILE and --keyfile FILE too".to_owned());
        }
        Ok(())
    }

    /// The certificate and key files, when the binds serve HTTPS.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((self.certfile.as_deref()?, self.keyfile.as_deref()?))
    }

    /// The options as a config file (what `--print-config` prints and
    /// what the master hands its workers).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every option is representable in TOML")
    }
}
