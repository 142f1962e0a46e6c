//! Signal handling, in one place: SIGINT / SIGTERM ask for a graceful stop;
//! a second one (or SIGQUIT) asks to stop at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A stream of stop requests.
pub struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
    quit: Signal,
}

impl Shutdown {
    /// Starts listening for SIGINT, SIGTERM and SIGQUIT (needs a runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next stop request.
    pub async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => log::info!("SIGINT received"),
            _ = self.terminate.recv() => log::info!("SIGTERM received"),
            _ = self.quit.recv() => {
                log::warn!("SIGQUIT received: stopping now");
                std::process::exit(0);
            }
        }
    }
}
