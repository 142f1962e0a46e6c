//! Configuration: every option declared once ([`options`]), the types its
//! values are written in ([`values`]), and how defaults, the config file,
//! environment variables and flags are laid over each other ([`layers`]).

pub mod layers;
pub mod options;
pub mod values;

pub use options::{default_workers, Limits, Options};
pub use values::{AccessLogFormat, BindAddr, ProxyNet, Seconds};
