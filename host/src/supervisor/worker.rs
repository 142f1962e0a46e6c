//! A worker process (`host worker --config FILE`, started by the master):
//! loads the staged apps, serves on the inherited sockets, tells the master
//! when it is ready, and retires itself when a request gets stuck in an app.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::notify::{MasterLink, WorkerMessage};
use crate::config::layers;
use crate::error::Failure;
use crate::server::startup::{block_on_runtime, listen, server_state};
use crate::server::{self, OnStuck, StopLevel};
use crate::signals::{Event, Signals};

/// The exit code of a worker that retired because a request got stuck.
pub const EXIT_RETIRED: u8 = 75;

/// Runs a worker until the master (or a signal) stops it.
pub fn run(config: &Path) -> Result<u8, Failure> {
    let options = layers::read_file(config).map_err(Failure::input)?;
    let link = Arc::new(MasterLink::from_env());
    let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
    let stop_tx = Arc::new(stop_tx);
    let retired = Arc::new(AtomicBool::new(false));

    let on_stuck: OnStuck = {
        let (link, stop_tx, retired) = (link.clone(), stop_tx.clone(), retired.clone());
        Arc::new(move || {
            if !retired.swap(true, Ordering::SeqCst) {
                log::warn!(
                    "worker pid {} retires: a replacement starts, this one drains",
                    std::process::id()
                );
                link.send(WorkerMessage::Retire);
                stop_tx.send_if_modified(|level| {
                    let raise = *level < StopLevel::Graceful;
                    if raise {
                        *level = StopLevel::Graceful;
                    }
                    raise
                });
            }
        })
    };
    let state = Arc::new(server_state(&options, on_stuck)?);
    block_on_runtime(options.workers, async move {
        let listeners = listen(&options)?;
        let mut signals = Signals::install().map_err(|e| Failure::internal(format!("cannot handle signals: {e}")))?;
        let signal_stop = stop_tx.clone();
        tokio::spawn(async move {
            loop {
                let level = match signals.next().await {
                    Event::GracefulStop => StopLevel::Graceful,
                    Event::ImmediateStop => StopLevel::Immediate,
                    Event::Reload => continue, // the master's business
                };
                signal_stop.send_if_modified(|current| {
                    let raise = *current < level;
                    if raise {
                        *current = level;
                    }
                    raise
                });
            }
        });
        link.send(WorkerMessage::Ready);
        log::info!("worker pid {} ready", std::process::id());
        server::serve(listeners, state, stop_rx).await;
        Ok(if retired.load(Ordering::SeqCst) {
            EXIT_RETIRED
        } else {
            0
        })
    })
}
