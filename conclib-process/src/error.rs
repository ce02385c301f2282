//! What can go wrong with a process actor.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

pub use conclib_core::ProcessExit;

/// The exit of a process from its status.
pub(crate) fn exit_from_status(status: std::process::ExitStatus) -> ProcessExit {
    ProcessExit {
        code: status.code(),
        signal: status.signal(),
        panic: None,
    }
}

/// Why a process actor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcessSpawnError {
    /// The initial state could not be encoded.
    #[error("the actor's state cannot be encoded: {0}")]
    Codec(String),
    /// The process could not be started.
    #[error("the process could not be started: {0}")]
    Io(#[from] std::io::Error),
    /// The actor type is not in the child's `Registry`: add `.actor::<A>()` to the
    /// `Registry` that `main` passes to `init` first thing.
    #[error(
        "the actor type {0} is not in this executable's Registry: add `.actor::<{0}>()` to the \
         Registry that `main` passes to `conclib::process::init` first thing"
    )]
    NotRegistered(&'static str),
    /// The actor did not start in its process (its state did not decode, its `on_start`
    /// failed or panicked); `reason` is what the child said.
    #[error("the process actor {kind} did not start: {reason}")]
    StartFailed {
        /// The actor type.
        kind: &'static str,
        /// Why, in the child's words.
        reason: String,
    },
    /// The process ended before its actor ran, without saying why (killed, out of memory,
    /// its memory limit too small to start, `init` not called first in `main`).
    #[error("the process {0} before its actor ran")]
    Exited(ProcessExit),
    /// The process did not answer in time; it was killed.
    #[error("the process did not answer within {0:?}; it was killed")]
    NoAnswer(Duration),
    /// The actor could not join its system: its URN is invalid or taken, or the system (or
    /// the parent) is stopping.
    #[error("the process actor could not join its system: {0}")]
    System(conclib_core::SpawnError),
    /// A URN was given without a system to register it in.
    #[error("a URN needs a system: call `.system(..)` or `.child_of(..)` on the builder")]
    NoSystem,
}

impl ProcessSpawnError {
    /// The error of spawning a process actor's relay: the process's own error when its
    /// start failed, else the system's.
    pub(crate) fn from_relay(error: conclib_core::SpawnError) -> Self {
        match error {
            conclib_core::SpawnError::StartFailed(e) => match e.downcast::<ProcessSpawnError>() {
                Ok(e) => *e,
                Err(e) => ProcessSpawnError::System(conclib_core::SpawnError::StartFailed(e)),
            },
            other => ProcessSpawnError::System(other),
        }
    }
}
