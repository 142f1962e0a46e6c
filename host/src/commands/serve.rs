//! The default command: resolve the options, then serve them either in
//! this process (`--workers 0`) or under a master with worker processes.

use std::sync::Arc;

use clap::ArgMatches;
use tokio::sync::watch;

use crate::config::{layers, Options};
use crate::error::Failure;
use crate::server::startup::{self, block_on_runtime, listen};
use crate::server::state::Retire;
use crate::server::{self, StopLevel};
use crate::signals::{Event, Signals};
use crate::supervisor;

/// Serves what the command line (and its config file) describe, until stopped.
pub fn run(parsed: &Options, matches: &ArgMatches) -> Result<u8, Failure> {
    let options = layers::resolve(parsed, matches).map_err(Failure::input)?;
    if options.print_config {
        print!("{}", options.to_toml());
        return Ok(0);
    }
    if options.workers == 0 {
        run_single(&options)?;
    } else {
        supervisor::master::run(options)?;
    }
    Ok(0)
}

/// `--workers 0`: load the apps and serve in this process.
fn run_single(options: &Options) -> Result<(), Failure> {
    if options.reload {
        log::warn!("--reload needs worker processes: ignored with --workers 0");
    }
    if options.max_requests > 0 || options.max_worker_memory.0 > 0 || options.admin_bind.is_some() {
        log::warn!(
            "--max-requests, --max-worker-memory and --admin-bind need worker processes: ignored with --workers 0"
        );
    }
    let retire: Retire = Arc::new(|reason| {
        log::warn!("{reason}; with --workers 0 nothing can replace this process (use worker processes)")
    });
    let handler = Arc::new(startup::handler(options, retire, None)?);
    block_on_runtime(options, async {
        let listeners = listen(options)?;
        for listener in &listeners {
            let url = crate::server::net::tls::public_url(listener.url(), options.tls_files().is_some());
            log::info!("serving on {url}");
            println!("Serving on {url}");
        }
        let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
        let mut signals = Signals::install().map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))?;
        tokio::spawn(async move {
            loop {
                match signals.next().await {
                    Event::GracefulStop => stop_tx.send_replace(StopLevel::Graceful),
                    Event::ImmediateStop => stop_tx.send_replace(StopLevel::Immediate),
                    Event::Reload => {
                        log::warn!("SIGHUP: reloading needs worker processes (--workers 1 or more); ignored");
                        continue;
                    }
                };
            }
        });
        server::serve(listeners, handler, stop_rx).await;
        Ok(())
    })
}
