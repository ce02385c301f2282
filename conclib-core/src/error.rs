//! The errors of sending, asking, spawning and looking up actors.

use std::convert::Infallible;
use std::fmt;
use std::time::Duration;

use crate::urn::{Urn, UrnError};

/// Why an ask did not produce the handler's response: the same type from every kind of ref
/// (local, dynamic, pool, process actor, and an actor asked by URN through Redis).
///
/// `E` is the message's own error type ([`Message::Error`](crate::Message::Error)): a handler
/// that returns `Err(e)` reaches the asker as [`AskError::Handler`]`(e)`. Some variants only
/// a ref that crosses processes can report ([`UnknownUrn`](Self::UnknownUrn),
/// [`Exited`](Self::Exited), [`Codec`](Self::Codec), [`TooLarge`](Self::TooLarge),
/// [`Unavailable`](Self::Unavailable), [`Transport`](Self::Transport)); more may come with
/// new kinds of ref, so a `match` ends with a `_` arm.
///
/// ```
/// use conclib_core::AskError;
///
/// fn http_status<E>(error: &AskError<E>) -> u16 {
///     match error {
///         AskError::Handler(_) => 422,
///         AskError::Timeout(_) => 504,
///         AskError::MailboxFull | AskError::Overloaded { .. } | AskError::Unavailable(_) => 503,
///         AskError::UnknownUrn { .. } => 404,
///         _ => 500,
///     }
/// }
/// assert_eq!(http_status(&AskError::<String>::MailboxFull), 503);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError<E = Infallible> {
    /// The handler returned this error. The actor goes on.
    #[error("the handler returned an error: {0:?}")]
    Handler(E),
    /// The handler panicked; the message is the panic's payload.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// No response arrived within the timeout. The request may still be processed.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The actor had stopped, or stopped before handling the request.
    #[error("the actor has stopped")]
    ActorStopped,
    /// The request was not started: the [`Fence`](crate::Fence) it was sent with had
    /// closed when the actor reached it (the Redis proxy fences what it hands to actors with
    /// its lease). It was not handled; its sender decides whether to send it again.
    #[error("not started: the request's fence had closed")]
    Fenced,
    /// The mailbox was full and the call does not wait ([`ActorRef::try_ask`](crate::ActorRef::try_ask)).
    #[error("the mailbox is full")]
    MailboxFull,
    /// Refused before it queued, at once: more requests were pending where it would have
    /// waited (its URN, its URN pattern or its whole system, at the Redis proxy) than the
    /// limit allows. Not handled; sending it again later may succeed. Distinct from
    /// [`MailboxFull`](Self::MailboxFull) (the mailbox had no room) and
    /// [`Unavailable`](Self::Unavailable) (the transport could not be reached).
    #[error("overloaded: {depth} requests pending, the limit is {limit}")]
    Overloaded {
        /// The limit that refused it.
        limit: u64,
        /// How many requests were pending there when it came.
        depth: u64,
    },
    /// The actor received the request but dropped it without responding.
    #[error("the actor dropped the request without responding")]
    NoResponse,
    /// The actor does not handle this message type (dynamic refs), or does not expose it to
    /// other processes (a process actor).
    #[error("actor {actor} does not handle message {message}")]
    UnknownMessage {
        /// The actor's type name, or URN when it has one.
        actor: String,
        /// The message's wire name.
        message: String,
    },
    /// No member serving the URN has this message at a version it can decode (during a
    /// rolling upgrade: the build that adds it is not serving yet, or the codec cannot read
    /// another version's fields). Refused at once, never decoded wrong; not handled.
    #[error("no member serving {urn} has message {message} at a version it can decode")]
    UnsupportedVersion {
        /// The URN asked for.
        urn: String,
        /// The message's wire name.
        message: String,
    },
    /// No actor has this URN where the request was sent (a process actor asking its
    /// parent's system by URN).
    #[error("no actor with URN {urn}")]
    UnknownUrn {
        /// The URN asked for.
        urn: String,
    },
    /// The process the actor runs in ended before answering (a process actor).
    #[error("the actor's process {0}")]
    Exited(ProcessExit),
    /// The message or its answer could not be encoded or decoded (or did not fit the
    /// link's frame limit) on its way between processes.
    #[error("codec error: {0}")]
    Codec(String),
    /// The message or its answer is larger than the transport's limit (the Redis proxy's
    /// `max_payload`).
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// The transport between asker and actor could not be reached, or was lost while waiting
    /// (Redis, for an ask by URN). Like a timeout, an ask that fails this way after its
    /// request was written may still be handled.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The transport failed otherwise: the proxy rejected the request, Redis answered an
    /// error, a reply broke the protocol, or the client was closed. The text says which.
    #[error("transport error: {0}")]
    Transport(String),
}

/// How the process of a process actor ended: in [`AskError::Exited`], and what its ref's
/// `wait_for_stop` returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessExit {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did (`9`: `SIGKILL`, also the kernel's OOM killer).
    pub signal: Option<i32>,
    /// The panic message, when the process exited because its actor panicked (under the
    /// default [`PanicPolicy::Stop`](crate::PanicPolicy::Stop)).
    pub panic: Option<String>,
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

impl<E> AskError<E> {
    /// Converts the handler error with `f`, keeping every other variant.
    pub fn map_handler<F>(self, f: impl FnOnce(E) -> F) -> AskError<F> {
        match self {
            AskError::Handler(e) => AskError::Handler(f(e)),
            AskError::Panicked(p) => AskError::Panicked(p),
            AskError::Timeout(d) => AskError::Timeout(d),
            AskError::ActorStopped => AskError::ActorStopped,
            AskError::Fenced => AskError::Fenced,
            AskError::MailboxFull => AskError::MailboxFull,
            AskError::Overloaded { limit, depth } => AskError::Overloaded { limit, depth },
            AskError::NoResponse => AskError::NoResponse,
            AskError::UnknownUrn { urn } => AskError::UnknownUrn { urn },
            AskError::Exited(exit) => AskError::Exited(exit),
            AskError::Codec(e) => AskError::Codec(e),
            AskError::TooLarge(e) => AskError::TooLarge(e),
            AskError::Unavailable(e) => AskError::Unavailable(e),
            AskError::Transport(e) => AskError::Transport(e),
            AskError::UnknownMessage { actor, message } => {
                AskError::UnknownMessage { actor, message }
            }
            AskError::UnsupportedVersion { urn, message } => {
                AskError::UnsupportedVersion { urn, message }
            }
        }
    }

    /// The handler error, if that is what this is.
    pub fn handler_error(&self) -> Option<&E> {
        match self {
            AskError::Handler(e) => Some(e),
            _ => None,
        }
    }
}

/// A message that could not be delivered, given back to the sender so nothing is lost silently.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum SendError<M> {
    /// The actor has stopped or is stopping and takes no new messages.
    #[error("the actor has stopped")]
    ActorStopped(M),
    /// The mailbox is full ([`ActorRef::try_tell`](crate::ActorRef::try_tell) only; `tell` waits).
    #[error("the mailbox is full")]
    MailboxFull(M),
    /// The actor does not handle this message type (dynamic refs only).
    #[error("actor {actor} does not handle message {message}")]
    UnknownMessage {
        /// The actor's type name, or URN when it has one.
        actor: String,
        /// The message's wire name.
        message: String,
    },
}

impl<M> SendError<M> {
    /// The undelivered message, when the error still holds it.
    pub fn into_message(self) -> Option<M> {
        match self {
            SendError::ActorStopped(m) | SendError::MailboxFull(m) => Some(m),
            SendError::UnknownMessage { .. } => None,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::ActorStopped(_) => f.write_str("ActorStopped(..)"),
            SendError::MailboxFull(_) => f.write_str("MailboxFull(..)"),
            SendError::UnknownMessage { actor, message } => f
                .debug_struct("UnknownMessage")
                .field("actor", actor)
                .field("message", message)
                .finish(),
        }
    }
}

/// A boxed error, as returned by lifecycle hooks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an actor could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Another live actor of the system has this URN.
    #[error("URN {0} is taken by a live actor")]
    UrnTaken(Urn),
    /// The URN is not valid.
    #[error(transparent)]
    InvalidUrn(#[from] UrnError),
    /// [`Actor::on_start`](crate::Actor::on_start) returned an error.
    #[error("on_start failed: {0}")]
    StartFailed(BoxError),
    /// [`Actor::on_start`](crate::Actor::on_start) panicked.
    #[error("on_start panicked: {0}")]
    StartPanicked(String),
    /// [`PanicPolicy::Restart`](crate::PanicPolicy::Restart) was set without a factory to
    /// make the fresh state: use [`SpawnBuilder::restart_with`](crate::SpawnBuilder::restart_with).
    #[error("a restart policy needs a factory: use SpawnBuilder::restart_with")]
    NoRestartFactory,
    /// The system (or the parent actor) is shutting down.
    #[error("the actor system is shutting down")]
    ShuttingDown,
    /// `spawn` was awaited outside a tokio runtime, where the actor could not run: await it
    /// from a task of one (`#[tokio::main]`, `Runtime::block_on`).
    #[error("spawn needs a tokio runtime: await it inside one (#[tokio::main], Runtime::block_on)")]
    NoRuntime,
    /// Two messages the actor exposes ([`Actor::REMOTE`](crate::Actor::REMOTE)) have one
    /// wire name, so one of them could not be reached by name (through a proxy, a process
    /// actor's link): checked when an actor with a URN is spawned.
    #[error(
        "two messages exposed by {actor} have the wire name {name:?}: give one of them \
         another (`#[message(name = \"...\")]`, or `#[handle(name = \"...\")]`)"
    )]
    DuplicateWireName {
        /// The actor type.
        actor: &'static str,
        /// The wire name two messages share.
        name: &'static str,
    },
}

/// Why a URN lookup failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No live actor has this URN.
    #[error("no actor with URN {0}")]
    NotFound(String),
    /// The actor exists but is of another type than the one asked for.
    #[error("actor {urn} is a {actual}, not a {expected}")]
    WrongType {
        /// The URN looked up.
        urn: Urn,
        /// The type asked for.
        expected: &'static str,
        /// The actor's type.
        actual: &'static str,
    },
}

/// Why an actor stopped. Parents and watchers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Stopped by [`ActorRef::stop`](crate::ActorRef::stop), by itself, or by shutdown, after draining its mailbox.
    Normal,
    /// Stopped by [`ActorRef::kill`](crate::ActorRef::kill): queued messages were dropped.
    Killed,
    /// A handler panicked and the policy said stop. Holds the panic message.
    Panicked(String),
    /// A failure that was not a panic: a hook error, a failed restart.
    Failed(String),
    /// The actor restarted more often than its restart limit allows; holds the last panic message.
    RestartLimit(String),
    /// A child failed and this actor's supervision stopped it (escalation).
    Escalated(String),
    /// [`Actor::on_stop`](crate::Actor::on_stop) failed or panicked while the actor stopped
    /// for `reason`.
    StopFailed {
        /// Why the actor was stopping.
        reason: Box<StopReason>,
        /// The hook's error, or its panic message.
        error: String,
    },
}

impl StopReason {
    /// Whether the stop was asked for (normal or killed) rather than caused by a failure.
    #[must_use]
    pub fn is_normal(&self) -> bool {
        matches!(self, StopReason::Normal | StopReason::Killed)
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Normal => f.write_str("stopped normally"),
            StopReason::Killed => f.write_str("killed"),
            StopReason::Panicked(m) => write!(f, "panicked: {m}"),
            StopReason::Failed(m) => write!(f, "failed: {m}"),
            StopReason::RestartLimit(m) => write!(f, "restart limit reached, last panic: {m}"),
            StopReason::Escalated(m) => write!(f, "escalated: {m}"),
            StopReason::StopFailed { reason, error } => {
                write!(f, "{reason}, then on_stop failed: {error}")
            }
        }
    }
}

/// Turns a panic payload into its message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
