//! Actors that mark themselves changed, so that a snapshot's look reads only those (and
//! not every actor of a system of 100,000 every time).
//!
//! Each actor has two flags, set when something a snapshot shows of it changes and cleared
//! by the look that reads it: [`Mark`], near its mailbox's count (which every send and
//! every message taken writes anyway), for a message queued or taken and its mailbox
//! closed; [`TaskMark`], in its statistics (a line only its own task writes, 128 bytes from
//! the mailbox: see `CellCore`'s layout), for a message
//! handled, failed or skipped, a panic, a restart. Setting either from clear (once between
//! two looks, whatever the number of messages) puts the actor's id on its system's list
//! ([`Changes`]); the look takes the list. Actors that start or finish stopping are put on
//! the list by the system itself.
//!
//! The flag is read with a relaxed load first, so the message path pays a load of a cache
//! line it already holds, and writes it only once between two looks. A figure written just
//! as a look clears the flag may be missed by that look (the two are not ordered: ordering
//! them would cost a fence per message); the look reads every actor it took from the list
//! once more at the next look, which sees it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::actor_id::ActorId;

/// An actor as the list names it: its id, and its slot in its system's registry, where a
/// look finds it at once (the id tells the actor listed from a later one in the same slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Listed {
    pub(crate) id: u64,
    pub(crate) slot: u32,
}

/// The actors of one system marked changed since the last look took them.
pub(crate) struct Changes {
    /// Whether marks are listed: off until the first look (a system nobody looks at lists
    /// nothing), and after the list outgrew `limit` (the next look reads every actor).
    tracking: AtomicBool,
    pending: Mutex<Vec<Listed>>,
    /// The most ids the list holds between two looks before it is dropped: set by each look
    /// from the number of actors (an actor is listed at most once between two looks unless
    /// it stops and another starts, so only churn with nobody looking fills it).
    limit: AtomicUsize,
}

/// The least [`Changes::limit`].
const MIN_LIMIT: usize = 65_536;

impl Changes {
    pub(crate) fn new() -> Self {
        Changes {
            tracking: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            limit: AtomicUsize::new(MIN_LIMIT),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listed>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists an actor for the next look (it started, changed, or finished stopping).
    pub(crate) fn push(&self, id: ActorId, slot: u32) {
        // SeqCst, with the flag's swap before it and the look's store in `take`: a mark
        // that sees tracking off was set before the look that turns it on read the actor.
        if !self.tracking.load(Ordering::SeqCst) {
            return;
        }
        let mut pending = self.lock();
        if pending.len() >= self.limit.load(Ordering::Relaxed) {
            // Nobody looks while actors come and go: stop listing (the marks stay set), and
            // let the next look read every actor.
            self.tracking.store(false, Ordering::SeqCst);
            *pending = Vec::new();
            return;
        }
        pending.push(Listed {
            id: id.as_u64(),
            slot,
        });
    }

    /// For a look: the ids listed since the last one (unsorted, maybe repeated), or `None`
    /// when the look must read every actor (the first look, or the list was dropped);
    /// listing is on from here. `actors`: how many the system has, for the list's limit.
    pub(crate) fn take(&self, actors: usize) -> Option<Vec<Listed>> {
        self.limit
            .store(actors.saturating_mul(2).max(MIN_LIMIT), Ordering::Relaxed);
        let mut pending = self.lock();
        if self.tracking.load(Ordering::SeqCst) {
            return Some(std::mem::take(&mut *pending));
        }
        self.tracking.store(true, Ordering::SeqCst);
        *pending = Vec::new();
        None
    }
}

/// An actor's mark: in its mailbox's [`Capacity`](crate::mailbox::capacity::Capacity), 40 bytes after
/// the count its senders and its own task write anyway (read with a relaxed load, written
/// once between two looks).
#[repr(C)] // the flag first, nearest the count
pub(crate) struct Mark {
    changed: AtomicBool,
    /// The actor's slot in its system's registry, set as it registers (in the padding
    /// after the flag: no byte more).
    slot: AtomicU32,
    /// Where the actor lists itself: `None` for a mailbox outside a system (tests).
    changes: Option<(std::sync::Arc<Changes>, ActorId)>,
}

impl Mark {
    pub(crate) fn new(changes: Option<(std::sync::Arc<Changes>, ActorId)>) -> Self {
        Mark {
            changed: AtomicBool::new(false),
            slot: AtomicU32::new(0),
            changes,
        }
    }

    /// The actor's slot in its system's registry.
    pub(crate) fn slot(&self) -> u32 {
        self.slot.load(Ordering::Relaxed)
    }

    /// Its actor registered in `slot` (under the registry's lock, before anyone can mark
    /// it).
    pub(crate) fn set_slot(&self, slot: u32) {
        self.slot.store(slot, Ordering::Relaxed);
    }

    /// Something a snapshot shows of the actor changed: after the change is written.
    #[inline]
    pub(crate) fn set(&self) {
        // A relaxed load of a line held anyway; the write happens once between two looks.
        if !self.changed.load(Ordering::Relaxed) {
            self.set_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn set_slow(&self) {
        if !self.changed.swap(true, Ordering::SeqCst) {
            self.list();
        }
    }

    /// Lists the actor: one of its flags was just set from clear.
    fn list(&self) {
        if let Some((changes, id)) = &self.changes {
            changes.push(*id, self.slot());
        }
    }

    /// For a look, before it reads the actor: whether it was marked, now cleared.
    pub(crate) fn take(&self) -> bool {
        self.changed.load(Ordering::Relaxed) && self.changed.swap(false, Ordering::SeqCst)
    }
}

/// An actor's second flag, in its statistics (a line only its own task writes, with the
/// count of messages it handled): what its run loop sets after each message. The mailbox's
/// line moves between the senders' cores and the actor's; a load of it after the handler
/// cost tells 4-23% (docs/bench-log.md).
#[derive(Default)]
pub(crate) struct TaskMark(AtomicBool);

impl TaskMark {
    /// Something a snapshot shows of the actor changed: after the change is written.
    /// `mark`: the actor's [`Mark`], which lists it.
    #[inline]
    pub(crate) fn set(&self, mark: &Mark) {
        if !self.0.load(Ordering::Relaxed) {
            self.set_slow(mark);
        }
    }

    #[cold]
    #[inline(never)]
    fn set_slow(&self, mark: &Mark) {
        if !self.0.swap(true, Ordering::SeqCst) {
            mark.list();
        }
    }

    /// For a look, before it reads the actor: whether it was marked, now cleared.
    pub(crate) fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests;
