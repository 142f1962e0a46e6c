//! What each subcommand does, below the command line and above the
//! libraries: [`serve`] (the default), [`check`], [`cgi`]. Each returns the
//! process's exit code or a [`Failure`](crate::error::Failure).

pub mod cgi;
pub mod check;
pub mod serve;
