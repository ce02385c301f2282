//! How a pool picks a member ([`Routing`]), what a send does when that member is full
//! ([`WhenFull`]), and the load figures both read ([`MemberLoad`], [`PoolStats`]).

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::ActorCell;
use crate::error::AskError;
use crate::message::Message;

/// How a pool picks the member for a message.
#[derive(Clone, Default)]
pub enum Routing {
    /// Each member in turn.
    #[default]
    RoundRobin,
    /// The member with the smallest [`MemberLoad::load`]: what is queued at it (and the
    /// message it is at work on), or what was sent to it through the pool and is not done
    /// yet, whichever is larger. A message counts from the moment it is routed, so senders
    /// routing at once spread their messages; a member at work on a long handler counts as
    /// loaded whether its message was an ask or a tell, and whether its asker still waits.
    LeastLoaded,
    /// The member chosen by the message's key (hash modulo size); messages without a key go
    /// round-robin.
    KeyHash,
    /// Your function: it gets the key (if any) and each member's load, and returns an index
    /// (taken modulo the number of members).
    Custom(Router),
}

/// A routing function: the message's key (if any) and each member's load in, an index out.
pub type Router = Arc<dyn Fn(Option<u64>, &[MemberLoad]) -> usize + Send + Sync>;

/// What one member answered to a broadcast ask.
pub type AskOutcome<M> = Result<<M as Message>::Response, AskError<<M as Message>::Error>>;

impl fmt::Debug for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Routing::RoundRobin => "RoundRobin",
            Routing::LeastLoaded => "LeastLoaded",
            Routing::KeyHash => "KeyHash",
            Routing::Custom(_) => "Custom",
        })
    }
}

/// What a send does when the chosen member's mailbox is full.
///
/// Full as the member's mailbox counts it: a member running through a batch of messages may
/// still count up to 64 of those it took (a sixteenth of its capacity at most) until it gives
/// their places back, at the latest before it waits ([`MailboxConfig`](crate::MailboxConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait for room (an ask counts the wait in its timeout).
    #[default]
    Wait,
    /// Fail at once: `SendError::MailboxFull` / `AskError::MailboxFull`.
    Reject,
    /// Make room by dropping the oldest normal-priority message still waiting in the
    /// member's mailbox: its ask fails with `AskError::MailboxFull` (a tell is dropped), and
    /// the new message takes its place. A member takes its queue in batches; messages it
    /// has taken are its own, and high-priority messages are never dropped: when nothing
    /// can be dropped, the send fails with `MailboxFull`, as with [`WhenFull::Reject`].
    DropOldest,
}

/// Takes a place in `cell`'s mailbox under `when_full`: `Some(true)` reserved, `Some(false)`
/// full (the send fails with `MailboxFull`), `None` the member stopped (route again).
pub(super) async fn make_room<A: Actor>(cell: &ActorCell<A>, when_full: WhenFull) -> Option<bool> {
    let capacity = &cell.mailbox.capacity;
    match when_full {
        WhenFull::Wait => poll_fn(|cx| capacity.poll_reserve(cx))
            .await
            .is_ok()
            .then_some(true),
        WhenFull::Reject => capacity.try_reserve(),
        WhenFull::DropOldest => match capacity.try_reserve() {
            Some(false) => match cell.mailbox.evict_oldest() {
                Some(oldest) => {
                    // Its place in the capacity passes to the new message.
                    tracing::debug!(
                        message = oldest.name(),
                        "pool member full: dropped its oldest message"
                    );
                    oldest.reject();
                    Some(true)
                }
                None => Some(false),
            },
            other => other,
        },
    }
}

/// One member's load, as routing and [`Pool::stats`](crate::Pool::stats) see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberLoad {
    /// The member's id.
    pub id: ActorId,
    /// Messages queued in its mailbox.
    pub queued: usize,
    /// Messages sent through the pool and not yet done with: asks until answered or given
    /// up by their asker (a process member's, until its process answers), tells until
    /// queued (under least-loaded or custom routing; not counted otherwise).
    pub in_flight: usize,
    /// The member is at work: it took a message and has not waited for mail since (a
    /// handler runs or waits, or it runs through a batch).
    pub working: bool,
}

impl MemberLoad {
    /// The load least-loaded routing compares: the queue and the message at work, or
    /// `in_flight`, whichever is larger, as each counts what the other may not have seen
    /// yet (an ask queued or at work at a member is in both; a tell only in the first; an
    /// ask routed but not queued yet, or handed on to a process and not answered, only in
    /// `in_flight`).
    #[must_use]
    pub fn load(&self) -> usize {
        (self.queued + usize::from(self.working)).max(self.in_flight)
    }
}

/// A pool's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The members now in the routing table, in order.
    pub members: Vec<MemberLoad>,
    /// Members replaced since the pool started (dead or unresponsive).
    pub replaced: u64,
}
