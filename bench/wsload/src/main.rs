//! The tools of `bench/async`: a WebSocket load generator and the two plain
//! servers that set the limits the host is measured against.
//!
//! ```text
//! wsload sleep-server --port P       hyper on tokio: /sleep/<ms> answers after a tokio timer
//! wsload echo-server --port P        tokio-tungstenite: echoes every WebSocket message
//! wsload echo --url ws://… …         N sockets, each sending a message and awaiting its echo, in a loop
//! wsload idle --url ws://… …         N sockets opened and held idle, answering pings
//! ```
//!
//! The servers print `Serving on http://127.0.0.1:PORT/` once they listen.
//! The load commands print their results as one JSON object per line on
//! stdout; `idle` also prints one line when its sockets are open.

mod echo_load;
mod echo_server;
mod idle_load;
mod listen;
mod open;
mod outcome;
mod sleep_server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "wsload",
    about = "WebSocket load generator and plain servers for bench/async"
)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve `/sleep/<ms>` with hyper, answering after a tokio timer.
    SleepServer(sleep_server::Options),
    /// Serve WebSockets with tokio-tungstenite, echoing every message.
    EchoServer(echo_server::Options),
    /// Measure echo round trips over many WebSockets.
    Echo(echo_load::Options),
    /// Open many WebSockets and hold them idle, answering pings.
    Idle(idle_load::Options),
}

impl Command {
    /// The runtime threads asked for; `None` means one per core.
    fn threads(&self) -> Option<usize> {
        match self {
            Command::SleepServer(options) => options.threads,
            Command::EchoServer(options) => options.threads,
            Command::Echo(options) => Some(options.threads),
            Command::Idle(options) => Some(options.threads),
        }
    }

    /// Runs the subcommand to its end.
    async fn run(self) -> Result<(), String> {
        match self {
            Command::SleepServer(options) => sleep_server::run(options).await,
            Command::EchoServer(options) => echo_server::run(options).await,
            Command::Echo(options) => echo_load::run(options).await,
            Command::Idle(options) => idle_load::run(options).await,
        }
    }
}

/// Builds a tokio runtime with `threads` workers: a current-thread runtime
/// for one, so a single-threaded client pays no cross-thread wake-ups.
fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
}

/// Parses the command line and runs the subcommand on a tokio runtime;
/// on a failure, prints why on stderr and exits with status 1.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match runtime(cli.command.threads()) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wsload: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wsload: {message}");
            ExitCode::FAILURE
        }
    }
}
