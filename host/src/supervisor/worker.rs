//! A worker process (`host worker --config FILE`, started by the master):
//! maps its in-flight board, loads the staged apps, serves on the inherited
//! sockets, tells the master when it is ready, follows its quarantines, and
//! retires itself when a request gets stuck in an app or a recycling limit
//! is reached ([`super::recycling`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

use super::arbiter::EXIT_RETIRED;
use super::notify::{self, MasterLink, MasterMessage, WorkerMessage};
use super::recycling;
use crate::config::layers;
use crate::error::Failure;
use crate::server::request::handler::Handler;
use crate::server::request::quarantine_list::QuarantineList;
use crate::server::startup::{self, block_on_runtime, listen};
use crate::server::state::Retire;
use crate::server::{self, StopLevel};
use crate::signals::{Event, Signals};

/// How often a worker reports its figures (only with `--admin-bind`).
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// Runs a worker until the master (or a signal) stops it.
pub fn run(config: &Path) -> Result<u8, Failure> {
    crate::inflight::install_from_env()
        .map_err(|e| Failure::internal(format!("cannot map the in-flight board: {e}")))?;
    let options = layers::read_file(config).map_err(Failure::input)?;
    let link = Arc::new(MasterLink::from_env());
    let (stop_tx, stop_rx) = watch::channel(StopLevel::Run);
    let stop_tx = Arc::new(stop_tx);
    let retired = Arc::new(AtomicBool::new(false));

    let retire: Retire = {
        let (link, stop_tx, retired) = (link.clone(), stop_tx.clone(), retired.clone());
        Arc::new(move |reason| {
            if !retired.swap(true, Ordering::SeqCst) {
                log::warn!(
                    "worker pid {} retires: {reason}; a replacement starts, this one drains",
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
    let request_limit = recycling::request_limit(options.max_requests, options.max_requests_jitter);
    let handler = Arc::new(startup::handler(&options, retire.clone(), request_limit)?);
    block_on_runtime(&options.clone(), async move {
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
        if let Some(mut reader) = link.reader() {
            // The quarantines in force apply before the first request.
            sync_with_master(&mut reader, &handler.quarantined);
            tokio::spawn(follow_master(reader, handler.quarantined.clone()));
        }
        if options.max_worker_memory.0 > 0 {
            tokio::spawn(recycling::watch_memory(options.max_worker_memory.0, retire));
        }
        let reporting = options.admin_bind.is_some();
        if reporting {
            tokio::spawn(report_metrics(link.clone(), handler.clone()));
        }
        link.send(WorkerMessage::Ready);
        log::info!("worker pid {} ready", std::process::id());
        server::serve(listeners, handler.clone(), stop_rx).await;
        if reporting {
            // The last report: everything this worker served is counted
            // before it exits (the master reads it before the exit).
            link.send(WorkerMessage::Metrics(Box::new(handler.snapshot())));
        }
        Ok(if retired.load(Ordering::SeqCst) {
            EXIT_RETIRED as u8
        } else {
            0
        })
    })
}

/// Sends the master this worker's figures every second, for `/metrics`.
async fn report_metrics(link: Arc<MasterLink>, handler: Arc<Handler>) {
    loop {
        link.send(WorkerMessage::Metrics(Box::new(handler.snapshot())));
        tokio::time::sleep(METRICS_EVERY).await;
    }
}

/// Reads the master's messages up to `Synced` (the quarantines in force at
/// this worker's start), a byte at a time so that nothing after it is read
/// ahead; gives up after [`SYNC_TIMEOUT`], saying so.
fn sync_with_master(reader: &mut std::os::unix::net::UnixStream, quarantined: &QuarantineList) {
    use std::io::Read;
    if let Err(e) = reader.set_read_timeout(Some(SYNC_TIMEOUT)) {
        log::warn!("cannot wait for the master's quarantines: {e}");
        return;
    }
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match reader.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if apply(&text, quarantined) {
                    break;
                }
            }
            Ok(1) => line.push(byte[0]),
            Ok(_) | Err(_) => {
                log::warn!("the master sent no quarantine list at start; serving without it");
                break;
            }
        }
    }
    let _ = reader.set_read_timeout(None);
}

/// How long a starting worker waits for the quarantines in force.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies the master's messages (quarantines) until it goes away.
async fn follow_master(reader: std::os::unix::net::UnixStream, quarantined: Arc<QuarantineList>) {
    let reader = match reader
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(reader))
    {
        Ok(reader) => reader,
        Err(e) => {
            log::error!("cannot read the master's messages: {e}; quarantines will not reach this worker");
            return;
        }
    };
    let mut lines = tokio::io::BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        apply(&line, &quarantined);
    }
}

/// Applies one message line from the master; true for `Synced`.
fn apply(line: &str, quarantined: &QuarantineList) -> bool {
    match notify::parse::<MasterMessage>(line) {
        Some(MasterMessage::Quarantine { scope, for_ms }) => {
            quarantined.add(scope, Instant::now() + Duration::from_millis(for_ms));
        }
        Some(MasterMessage::Release { scope }) => quarantined.remove(&scope),
        Some(MasterMessage::Synced) => return true,
        None => log::warn!("unreadable message from the master: {line:?}"),
    }
    false
}
