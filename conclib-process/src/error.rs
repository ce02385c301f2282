//! What can go wrong with a process actor.

use std::convert::Infallible;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// How a process actor's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessExit {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did (`9`: `SIGKILL`, also the kernel's OOM killer).
    pub signal: Option<i32>,
    /// The panic message, when the process exited because its actor panicked (under the
    /// default [`PanicPolicy::Stop`](conclib_core::PanicPolicy::Stop)).
    pub panic: Option<String>,
}

impl ProcessExit {
    pub(crate) fn from_status(status: std::process::ExitStatus) -> Self {
        ProcessExit {
            code: status.code(),
            signal: status.signal(),
            panic: None,
        }
    }

    pub(crate) fn unknown() -> Self {
        ProcessExit::default()
    }
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(panic) = &self.panic {
            return write!(f, "ended: its actor panicked: {panic}");
        }
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("ended"),
        }
    }
}

/// Why an ask or tell to a process actor did not produce the handler's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError<E = Infallible> {
    /// The handler returned this error.
    #[error("the handler returned an error: {0:?}")]
    Handler(E),
    /// The handler panicked (in the child); the message is the panic's.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The process ended (crashed, was killed, exited) before answering.
    #[error("the actor's process {0}")]
    Exited(ProcessExit),
    /// The actor stopped before answering.
    #[error("the actor has stopped")]
    ActorStopped,
    /// The actor's mailbox was full.
    #[error("the mailbox is full")]
    MailboxFull,
    /// The actor dropped the request without answering.
    #[error("the actor dropped the request")]
    NoResponse,
    /// The actor does not expose this message.
    #[error("the actor does not expose {0}")]
    UnknownMessage(String),
    /// No actor with this URN (asks from a process actor to its parent's system).
    #[error("no actor with URN {0}")]
    UnknownUrn(String),
    /// A message or answer could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

/// Why a process actor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
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

impl SpawnError {
    /// The error of spawning a process actor's relay: the process's own error when its
    /// start failed, else the system's.
    pub(crate) fn from_relay(error: conclib_core::SpawnError) -> Self {
        match error {
            conclib_core::SpawnError::StartFailed(e) => match e.downcast::<SpawnError>() {
                Ok(e) => *e,
                Err(e) => SpawnError::System(conclib_core::SpawnError::StartFailed(e)),
            },
            other => SpawnError::System(other),
        }
    }
}
