//! The command line: `host [OPTIONS] [LIB:SYMBOL]`, `host check`, `host cgi`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app_spec::{default_plugin_dirs, AppSpec};
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

/// Options of the default (serving) command.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// The app to serve at `/`, as LIB:SYMBOL (e.g. ./plugins/libctime.so:application).
    pub app: Option<AppSpec>,
    #[command(flatten)]
    pub plugins: PluginArgs,
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
}

/// Parses the command line, runs it, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            eprintln!("error: {}", fatal.message);
            ExitCode::from(fatal.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Fatal> {
    match cli.command {
        Some(Command::Check { app, plugins }) => check(&app, &plugins),
        Some(Command::Cgi { app, plugins }) => run_cgi(&app, &plugins),
        None => crate::serve::run(cli.serve),
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
