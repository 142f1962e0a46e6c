//! Signal handling, in one place, for every kind of process: what each
//! signal means is decided here and turned into [`Event`]s.
//!
//! - SIGINT / SIGTERM: graceful stop; a second SIGINT: stop now.
//! - SIGQUIT: stop now.
//! - SIGHUP: reload (the master; ignored elsewhere).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Stop accepting and drain.
    GracefulStop,
    /// Stop at once.
    ImmediateStop,
    /// Validate and swap in the app libraries again.
    Reload,
}

/// The process's signal streams.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    quit: Signal,
    hangup: Signal,
    stopping: bool,
}

impl Signals {
    /// Starts listening (needs a tokio runtime).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
            hangup: signal(SignalKind::hangup())?,
            stopping: false,
        })
    }

    /// Waits for the next signal and says what it means.
    pub async fn next(&mut self) -> Event {
        let event = tokio::select! {
            _ = self.interrupt.recv() => if self.stopping { Event::ImmediateStop } else { Event::GracefulStop },
            _ = self.terminate.recv() => Event::GracefulStop,
            _ = self.quit.recv() => Event::ImmediateStop,
            _ = self.hangup.recv() => Event::Reload,
        };
        self.stopping |= event == Event::GracefulStop;
        log::info!("signal received: {event:?}");
        event
    }
}
