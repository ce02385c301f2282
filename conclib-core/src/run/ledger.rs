//! What the run loop owes between two messages ([`Ledger`]).

use crate::actor::Actor;
use crate::observe::metrics::actor::ActorMetrics;

/// What the run loop owes others between two messages: the places in the mailbox's capacity
/// of the messages it took, and (metrics on) what they measured.
///
/// A place is given back as its message is taken for handling, but not one at a time: the
/// count is shared with every sender (who reserves a place with a compare-and-swap on it), so
/// a give-back per message made the actor's core and the senders' fight for its cache line
/// at every message (bounded tell at a third of the rate it has now; docs/bench-log.md, "Places
/// given back by the batch"). The loop gives them back when the batch it took from the
/// mailbox is done, after every [`GIVE_BACK_MAX`] messages (at most a sixteenth of a bounded
/// mailbox's capacity), and before it waits for anything (a handler's `.await`, a control message's
/// hook, a panic's, the stop): an actor that waits owes nothing, so what senders and
/// snapshots see of a waiting actor is exact; a running one counts up to that many of the
/// messages it handled as queued.
pub(super) struct Ledger {
    /// Created on the first message measured (boxed: most actors never need it).
    pub(super) metrics: Option<Box<ActorMetrics>>,
    /// Places of messages taken for handling, not given back yet.
    owed: u16,
    /// How many it may owe while it runs: read once, not at every message, from the line of
    /// the capacity's count, which the senders write.
    most: u16,
    /// The actor's work is tracked (a pool's member, `Mailbox::work`): read once, as `most`.
    pub(super) tracks_work: bool,
}

/// The most places the run loop owes while it runs through a batch.
const GIVE_BACK_MAX: usize = 64;

impl Ledger {
    #[inline]
    pub(super) fn new<A: Actor>(mailbox: &crate::mailbox::Mailbox<A>) -> Self {
        Ledger {
            metrics: None,
            owed: 0,
            most: (mailbox.capacity.limit() / 16).clamp(1, GIVE_BACK_MAX) as u16,
            tracks_work: mailbox.tracks_work(),
        }
    }

    /// A message was taken for handling; `last`: it was the last of its batch.
    #[inline]
    pub(super) fn took<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>, last: bool) {
        self.owed += 1;
        if last || self.owed >= self.most {
            self.give_back(cell);
        }
    }

    /// Gives back every place owed.
    #[inline]
    pub(super) fn give_back<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>) {
        if self.owed > 0 {
            let owed = std::mem::take(&mut self.owed);
            cell.mailbox.capacity.taken_by_actor(owed as usize);
        }
    }

    /// Gives back every place owed, then gives the recorder what the messages measured
    /// (with the mailbox's depth exact, nothing owed).
    #[inline]
    pub(super) fn settle<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>) {
        self.give_back(cell);
        if let Some(m) = self.metrics.as_deref_mut()
            && m.has_unrecorded()
        {
            record(m, cell);
        }
    }
}

/// Gives the recorder what `m` measured (out of line: rare next to the messages it covers).
#[inline(never)]
pub(super) fn record<A: Actor>(m: &mut ActorMetrics, cell: &crate::cell::ActorCell<A>) {
    m.record(cell.mailbox.capacity.len());
}
