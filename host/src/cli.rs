//! The command line: `host [OPTIONS] [LIB:SYMBOL]`, `host check`, `host cgi`
//! (and the hidden `host worker`, started by the master). Parses, sets up
//! logging, runs a command and maps its result to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::config::options::PluginDirs;
use crate::config::{Options, Seconds};
use crate::plugin::app_spec::AppSpec;

/// A native application server: serves cdylib apps (the WSGI idea, in Rust)
/// and a static site over HTTP.
#[derive(Debug, Parser)]
#[command(name = "host", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    /// What to do; without one, serve.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serving options (the default command).
    #[command(flatten)]
    pub options: Options,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load and check an app in a throw-away process, print what was found, serve nothing.
    Check {
        /// The app, as LIB:SYMBOL.
        app: AppSpec,
        /// Where a bare app name is looked for.
        #[command(flatten)]
        plugins: PluginDirs,
        /// How long loading may take before the app is refused.
        #[arg(long, value_name = "DURATION", default_value = "30s")]
        timeout: Seconds,
        /// Load in this process (what the throw-away process runs).
        #[arg(long, hide = true)]
        in_process: bool,
    },
    /// Run an app once as a CGI script: environ from CGI variables and stdin,
    /// response to stdout.
    Cgi {
        /// The app, as LIB:SYMBOL.
        app: AppSpec,
        /// Where a bare app name is looked for.
        #[command(flatten)]
        plugins: PluginDirs,
    },
    /// A worker process; started by the master, not by hand.
    #[command(hide = true)]
    Worker {
        /// The generation's options, written by the master.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Parses the command line, runs it, and maps the result to an exit code.
pub fn main() -> ExitCode {
    crate::inherited::take_from_env();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    crate::logging::init();
    let result = match cli.command {
        Some(Command::Check {
            app,
            plugins,
            timeout,
            in_process,
        }) => commands::check::run(&app, &plugins.plugin_dirs, timeout.0, in_process),
        Some(Command::Cgi { app, plugins }) => commands::cgi::run(&app, &plugins.plugin_dirs),
        Some(Command::Worker { config }) => crate::supervisor::worker::run(&config),
        None => commands::serve::run(&cli.options, &matches),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
