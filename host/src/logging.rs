//! Logging setup: env_logger, `info` by default, `RUST_LOG` overrides.

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env).format_timestamp_millis().try_init();
}
