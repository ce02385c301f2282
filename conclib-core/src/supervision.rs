//! Supervision: what happens when a handler panics, and what parents and watchers are told.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::actor_id::ActorId;
use crate::error::StopReason;
use crate::urn::Urn;

/// What an actor does after a handler panicked. The asker always gets
/// [`AskError::Panicked`](crate::AskError::Panicked) first.
///
/// **Who decides.** A parent that declared a policy for its children
/// ([`SpawnBuilder::children_on_panic`](crate::SpawnBuilder::children_on_panic) or
/// [`Context::set_children_on_panic`](crate::Context::set_children_on_panic)) decides for
/// every child, whoever spawned it and whatever the child's builder said; the declaration
/// is read at the time of the panic, so a change applies to running children too.
/// Otherwise the child's own builder decides ([`SpawnBuilder::on_panic`](crate::SpawnBuilder::on_panic),
/// [`restart_with`](crate::SpawnBuilder::restart_with)), and the default is `Stop`.
/// `Restart` needs the child's factory: a child spawned without
/// [`restart_with`](crate::SpawnBuilder::restart_with) under a parent that declares
/// `Restart` stops instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicPolicy {
    /// Stop with [`StopReason::Panicked`] (the default): the mailbox is dropped, parent and watchers are told.
    #[default]
    Stop,
    /// Keep the state as the panic left it and handle the next message.
    Resume,
    /// Replace the state with a fresh one from the actor's factory, keeping its URN, refs and
    /// mailbox. Set with [`SpawnBuilder::restart_with`](crate::SpawnBuilder::restart_with).
    /// The old state's children and timers stop first: the children gracefully (each
    /// handles what it has queued), killed if they have not stopped within 5 s.
    Restart(RestartLimit),
}

/// At most `max_restarts` restarts within `within`; one more stops the actor with
/// [`StopReason::RestartLimit`] and so escalates to its parent (as OTP's intensity and period).
///
/// ```
/// use conclib_core::RestartLimit;
/// use std::time::Duration;
/// let limit = RestartLimit::new(3, Duration::from_secs(5));
/// assert_eq!(limit.max_restarts, 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

impl RestartLimit {
    /// A limit of `max_restarts` within `within`.
    #[must_use]
    pub const fn new(max_restarts: u32, within: Duration) -> Self {
        RestartLimit {
            max_restarts,
            within,
        }
    }

    /// Counts one more restart at `now` against the limit, given when the recent ones were
    /// (kept up to date: those out of the window dropped, `now` added when allowed). `false`:
    /// the limit is reached, and nothing is added. What actors, pools (replacing members)
    /// and process actors (restarting their process) all count with.
    ///
    /// ```
    /// use conclib_core::RestartLimit;
    /// use std::collections::VecDeque;
    /// use std::time::{Duration, Instant};
    ///
    /// let limit = RestartLimit::new(2, Duration::from_secs(60));
    /// let (mut recent, now) = (VecDeque::new(), Instant::now());
    /// assert!(limit.admit(&mut recent, now));
    /// assert!(limit.admit(&mut recent, now));
    /// assert!(!limit.admit(&mut recent, now), "a third within the minute");
    /// assert!(limit.admit(&mut recent, now + Duration::from_secs(61)));
    /// assert_eq!(recent.len(), 1, "the two older ones left the window");
    /// ```
    pub fn admit(&self, recent: &mut VecDeque<Instant>, now: Instant) -> bool {
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.within)
        {
            recent.pop_front();
        }
        if recent.len() >= self.max_restarts as usize {
            return false;
        }
        recent.push_back(now);
        true
    }
}

impl Default for RestartLimit {
    /// Three restarts in five seconds, as OTP's default intensity and period.
    fn default() -> Self {
        RestartLimit::new(3, Duration::from_secs(5))
    }
}

/// How a parent reacts when one of its children fails (panics, or reaches its restart limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SupervisionStrategy {
    /// Only the failed child is affected (it follows its own [`PanicPolicy`]).
    #[default]
    OneForOne,
    /// When a child restarts after a panic, its restartable siblings restart too.
    OneForAll,
}

/// A notice about another actor, delivered to [`Actor::on_event`](crate::Actor::on_event)
/// through the control lane, ahead of user messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisionEvent {
    /// A child of this actor stopped.
    ChildStopped {
        /// The child.
        id: ActorId,
        /// Its URN, if it had one.
        urn: Option<Urn>,
        /// Why it stopped.
        reason: StopReason,
    },
    /// A child of this actor panicked and restarted with fresh state.
    ChildRestarted {
        /// The child.
        id: ActorId,
        /// Its URN, if it has one.
        urn: Option<Urn>,
        /// The panic message.
        panic: String,
    },
    /// An actor this one watches ([`Context::watch`](crate::Context::watch)) stopped.
    Terminated {
        /// The watched actor.
        id: ActorId,
        /// Its URN, if it had one.
        urn: Option<Urn>,
        /// Why it stopped.
        reason: StopReason,
    },
}
