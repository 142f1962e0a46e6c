//! The plugin's log output, sent to the host: the `log` crate's records
//! (the plugin's logger) and `wsgi.errors` lines go through the
//! [`HostServices::log`] callback the host passed at start.

use std::sync::OnceLock;

use abi_stable::std_types::RStr;

use crate::abi::HostServices;

/// The host's services, set by the first app of this library to be initialised.
static HOST: OnceLock<HostServices> = OnceLock::new();

/// Keeps the host's services and makes the host's logger this library's;
/// `true` the first time (when the caller may hook panics too).
pub(crate) fn install(host: HostServices) -> bool {
    let host = *HOST.get_or_init(|| host);
    let first = log::set_logger(&HostLogger).is_ok();
    if first {
        log::set_max_level(level_filter(host.max_level));
    }
    first
}

/// Sends one log line to the host, if it has registered its logger.
pub(crate) fn emit(level: log::Level, target: &str, message: &str) {
    if let Some(host) = HOST.get() {
        (host.log)(level as u8, RStr::from(target), RStr::from(message));
    }
}

fn level_filter(raw: u8) -> log::LevelFilter {
    log::LevelFilter::iter()
        .nth(raw as usize)
        .unwrap_or(log::LevelFilter::Trace)
}

/// The plugin's `log` logger: everything goes to the host's.
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        HOST.get()
            .is_some_and(|host| (metadata.level() as u8) <= host.max_level)
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            emit(record.level(), record.target(), &record.args().to_string());
        }
    }
    fn flush(&self) {}
}
