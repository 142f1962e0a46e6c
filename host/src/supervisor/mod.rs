//! Worker processes under a master, gunicorn-arbiter style: native app code
//! can segfault, abort or hang, and only a separate process contains that.
//!
//! - [`admin`]: the master's health, readiness and metrics endpoints.
//! - [`arbiter`]: the master's decisions, a state machine (no I/O).
//! - [`master`]: the supervisor process that carries them out; never loads
//!   app code.
//! - [`quarantine`]: which routes crash workers too often.
//! - [`worker`]: a worker process; [`recycling`]: when it is replaced.
//! - [`staging`]: content-addressed copies of the app libraries.
//! - [`process`]: fork + exec of workers, signals to them.
//! - [`probe`]: loading an app in a throw-away process first.
//! - [`notify`]: worker → master messages and sd_notify.
//! - [`watch`]: `--reload`'s file watcher.

pub mod admin;
pub mod arbiter;
pub mod master;
pub mod notify;
pub mod probe;
pub mod process;
pub mod quarantine;
pub mod recycling;
pub mod staging;
pub mod watch;
pub mod worker;
