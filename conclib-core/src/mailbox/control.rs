//! [`Control`]: the runtime's own messages to an actor, which overtake all user messages
//! (apart from the mailbox, so that what sends them need not name the mailbox).

use crate::supervision::SupervisionEvent;

/// Messages of the runtime itself; they overtake all user messages.
pub(crate) enum Control {
    /// Stop now: the running handler is dropped at its next `.await`, the queue is dropped.
    Kill,
    /// A child stopped or restarted, or a watched actor stopped.
    Event(SupervisionEvent),
    /// Restart now (a sibling failed under one-for-all); holds the reason.
    Restart(String),
}
