//! The command line: `host [OPTIONS] [LIB:SYMBOL]`, `host check`, `host cgi`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app_spec::{default_plugin_dirs, AppSpec};
use crate::config::{AccessLogFormat, BindAddr, FileConfig, Mount, Seconds, Settings, Size};
use crate::{cgi, loader};

/// A native application server: serves cdylib apps (the WSGI idea, in Rust)
/// and a static site over HTTP.
#[derive(Debug, Parser)]
#[command(name = "host", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serving options (the default command).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check an app, print what was found, serve nothing.
    Check {
        /// The app, as LIB:SYMBOL.
        app: AppSpec,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Run an app once as a CGI script: environ from CGI variables and stdin,
    /// response to stdout.
    Cgi {
        /// The app, as LIB:SYMBOL.
        app: AppSpec,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// A worker process; started by the master, not by hand.
    #[command(hide = true)]
    Worker {
        /// The generation's settings, written by the master.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Where bare library names are looked up.
#[derive(Debug, Clone, Args, Default)]
pub struct PluginArgs {
    /// Folder to search for lib<name>.so when LIB is a bare name
    /// (repeatable; default: ./plugins, then the host executable's folder).
    #[arg(long = "plugin-dir", value_name = "DIR")]
    pub plugin_dirs: Vec<PathBuf>,
}

impl PluginArgs {
    /// The folders to search, defaults applied.
    pub fn dirs(&self) -> Vec<PathBuf> {
        if self.plugin_dirs.is_empty() {
            default_plugin_dirs()
        } else {
            self.plugin_dirs.clone()
        }
    }
}

/// Options of the default (serving) command. Every option can also be set
/// in the `--config` file; flags win.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// The app to serve at `/`, as LIB:SYMBOL (e.g. ./plugins/libctime.so:application).
    pub app: Option<AppSpec>,

    /// Mount another app at a prefix: PREFIX=LIB:SYMBOL (repeatable), e.g. /time=ctime:application.
    #[arg(long = "mount", value_name = "PREFIX=LIB:SYMBOL")]
    pub mounts: Vec<Mount>,

    /// Listen address, HOST:PORT or unix:PATH (repeatable) [default: 127.0.0.1:8000].
    #[arg(long = "bind", short = 'b', value_name = "ADDR")]
    pub binds: Vec<BindAddr>,

    /// The static site's folder [default: ./html].
    #[arg(long, value_name = "DIR", conflicts_with = "no_static")]
    pub static_dir: Option<PathBuf>,

    /// Serve no static files: every request goes to the app (seed 000's app:run).
    #[arg(long)]
    pub no_static: bool,

    #[command(flatten)]
    pub plugins: PluginArgs,

    /// A TOML config file (keys as in --print-config).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Access log format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub access_log_format: Option<AccessLogFormat>,

    /// Largest request body, e.g. 10MiB (413 beyond) [default: 10MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_body_size: Option<Size>,

    /// Largest request head, e.g. 32KiB (431 beyond) [default: 32KiB].
    #[arg(long, value_name = "SIZE")]
    pub max_header_size: Option<Size>,

    /// Most request headers (431 beyond) [default: 100].
    #[arg(long, value_name = "N")]
    pub max_headers: Option<usize>,

    /// Longest request target, e.g. 8KiB (414 beyond) [default: 8KiB].
    #[arg(long, value_name = "SIZE")]
    pub max_uri_length: Option<Size>,

    /// Time allowed to send a request head, and keep-alive idle time, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<Seconds>,

    /// Time in-flight requests get to finish when stopping, e.g. 30s [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub graceful_timeout: Option<Seconds>,

    /// Longest a request may run inside the app: its worker is replaced, and it gets a 504 unless it runs inline [default: 30s].
    #[arg(long = "timeout", value_name = "DURATION")]
    pub request_timeout: Option<Seconds>,

    /// Worker processes; 0 serves in this process, for debugging [default: one per core].
    #[arg(long, short = 'w', value_name = "N")]
    pub workers: Option<usize>,

    /// Swap in a rebuilt library when its file changes (validated first, like SIGHUP).
    #[arg(long)]
    pub reload: bool,
}

impl ServeArgs {
    /// The settings these flags ask for, on top of `file`.
    pub fn settings(&self, file: FileConfig) -> Result<Settings, String> {
        let flags = FileConfig {
            bind: (!self.binds.is_empty()).then(|| self.binds.iter().map(ToString::to_string).collect()),
            static_dir: self.static_dir.clone(),
            no_static: self.no_static.then_some(true),
            plugin_dirs: (!self.plugins.plugin_dirs.is_empty()).then(|| self.plugins.plugin_dirs.clone()),
            app: self.app.as_ref().map(ToString::to_string),
            mounts: (!self.mounts.is_empty()).then(|| {
                self.mounts
                    .iter()
                    .map(|m| (m.prefix.clone(), m.app.to_string()))
                    .collect()
            }),
            access_log_format: self.access_log_format,
            workers: self.workers,
            reload: self.reload.then_some(true),
            limits: None,
        };
        let mut settings = Settings::from_config(file.overlay(flags), default_plugin_dirs())?;
        let limits = &mut settings.limits;
        limits.max_body_size = self.max_body_size.unwrap_or(limits.max_body_size);
        limits.max_header_size = self.max_header_size.unwrap_or(limits.max_header_size);
        limits.max_headers = self.max_headers.unwrap_or(limits.max_headers);
        limits.max_uri_length = self.max_uri_length.unwrap_or(limits.max_uri_length);
        limits.header_timeout = self.header_timeout.unwrap_or(limits.header_timeout);
        limits.graceful_timeout = self.graceful_timeout.unwrap_or(limits.graceful_timeout);
        limits.request_timeout = self.request_timeout.unwrap_or(limits.request_timeout);
        Ok(settings)
    }
}

/// A failure that ends the process: the one-line message and the exit code.
#[derive(Debug)]
pub struct Fatal {
    /// 2 for bad input (usage, config, refused app), 1 for anything else.
    pub code: u8,
    /// What went wrong and how to fix it.
    pub message: String,
}

impl Fatal {
    /// Bad input: exit code 2.
    pub fn usage(message: impl ToString) -> Self {
        Self {
            code: 2,
            message: message.to_string(),
        }
    }

    /// A failure that is not the user's input: exit code 1.
    pub fn internal(message: impl ToString) -> Self {
        Self {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// Parses the command line, runs it, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(fatal) => {
            eprintln!("error: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Fatal> {
    match cli.command {
        Some(Command::Check { app, plugins }) => check(&app, &plugins).map(|()| 0),
        Some(Command::Cgi { app, plugins }) => run_cgi(&app, &plugins).map(|()| 0),
        Some(Command::Worker { config }) => crate::supervisor::worker::run(&config),
        None => crate::serve::run(cli.serve).map(|()| 0),
    }
}

fn check(spec: &AppSpec, plugins: &PluginArgs) -> Result<(), Fatal> {
    let loaded = loader::load(spec, &plugins.dirs()).map_err(Fatal::usage)?;
    println!("ok: {spec}");
    println!("  library:           {}", loaded.path.display());
    println!("  symbol:            {}", spec.symbol);
    println!("  plugin-api (app):  {}", loaded.app.interface_version());
    println!("  plugin-api (host): {}", plugin_api::host::interface_version());
    println!("  load + check time: {:.2} ms", loaded.load_time.as_secs_f64() * 1e3);
    Ok(())
}

fn run_cgi(spec: &AppSpec, plugins: &PluginArgs) -> Result<(), Fatal> {
    let loaded = loader::load(spec, &plugins.dirs()).map_err(|e| {
        // A CGI script that cannot start still answers, so the web server
        // in front shows a 500 rather than a broken gateway.
        print!("Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n500 Internal Server Error: the app could not be loaded.\n");
        Fatal::usage(e)
    })?;
    let env = std::env::vars().collect();
    let summary = cgi::run(&loaded, &env, std::io::stdin().lock(), std::io::stdout().lock());
    log::debug!("cgi {spec}: {summary:?}");
    Ok(())
}
