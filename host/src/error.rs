//! [`Failure`]: why a command could not do its job, which also decides the
//! process's exit code (see the README's table).

use std::fmt;

/// A failure that ends a command, with its one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The user's input is wrong: usage, the config, an address that cannot
    /// be bound, a refused app. The message names the problem and the fix.
    /// Exit code 2.
    Input(String),
    /// Something that is not the user's input failed: the runtime, a
    /// process that could not be started, a write to our own folder.
    /// Exit code 1.
    Internal(String),
}

impl Failure {
    /// Bad input (exit code 2).
    pub fn input(message: impl fmt::Display) -> Self {
        Failure::Input(message.to_string())
    }

    /// An internal failure (exit code 1).
    pub fn internal(message: impl fmt::Display) -> Self {
        Failure::Internal(message.to_string())
    }

    /// The process exit code this failure maps to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Input(_) => 2,
            Failure::Internal(_) => 1,
        }
    }

    /// The same kind of failure with its message rewritten.
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Failure::Input(message) => Failure::Input(f(message)),
            Failure::Internal(message) => Failure::Internal(f(message)),
        }
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Input(message) | Failure::Internal(message) => message,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Failure {}
