//! What the last look saw of a system's actors ([`Looked`]), kept from one look to the next,
//! and how a look reads one actor ([`Ranked`]): apart from the look
//! ([`crate::observe::snapshot::look`]), so that the system, which keeps it, does not reach
//! up to the look.

use std::borrow::Cow;
use std::cmp::Ordering as Order;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::sample::{Seen, mix_rest, sample};
use super::*;
use crate::cell::erased::{CellCore, ErasedCell};

/// What the last look saw of a system's actors, kept from one look to the next so that a
/// look reads only the actors marked changed since ([`crate::observe::changes`]).
#[derive(Default)]
pub(crate) struct Looked {
    /// Every live actor as last read, by id.
    pub(super) actors: BTreeMap<u64, Ranked>,
    /// Actors the next look reads whether marked or not: those this look found marked (a
    /// figure written just as it cleared the mark may have been missed) and those whose
    /// rate or recent failures are not back to 0 (they change with time alone).
    pub(super) again: Vec<crate::observe::changes::Listed>,
    /// The last look's number, and when it read.
    pub(crate) look: u64,
    pub(super) at: Option<Instant>,
}

#[cfg(test)]
impl Looked {
    /// The ids of the actors look `look` read.
    pub(crate) fn read_in(&self, look: u64) -> Vec<u64> {
        self.actors
            .values()
            .filter(|r| r.look == look)
            .map(|r| r.id)
            .collect()
    }
}

/// An actor's figures read for a snapshot, and what ranks it.
pub(super) struct Ranked {
    pub(super) cell: Arc<dyn ErasedCell>,
    pub(super) id: u64,
    /// The look that read these figures.
    pub(super) look: u64,
    /// Its per-message figures, if it keeps any.
    #[allow(clippy::box_collection)] // boxed: 8 bytes for the many that keep none
    pub(super) messages: Option<Box<Vec<Tally>>>,
    /// Errors, panics and restarts in the last interval.
    pub(super) recent_failures: u64,
    /// The last look that saw its figures change.
    pub(super) changed: u64,
    pub(super) mailbox_len: usize,
    pub(super) rate: f64,
    pub(super) handled: u64,
    pub(super) errors: u64,
    pub(super) panics: u64,
    pub(super) restarts: u64,
    pub(super) asks_skipped: u64,
    pub(super) stopping: bool,
}

impl Ranked {
    /// Reads an actor's figures in look `look` (`floor`: see [`sample`]).
    pub(super) fn read(
        cell: Arc<dyn ErasedCell>,
        look: u64,
        now: Instant,
        floor: Option<Instant>,
    ) -> Ranked {
        let core: &CellCore = cell.core();
        let stats = core.stats();
        let handled = stats.handled.load(Ordering::Relaxed);
        let mailbox_len = cell.capacity().len();
        let asks_skipped = core.skipped_asks();
        let stopping = cell.is_closed();
        let mut rare = core.rare();
        let (errors, panics, restarts) = (rare.errors, rare.panics, rare.restarts);
        let seen = Seen {
            handled,
            failures: errors + panics + restarts,
            rest: mix_rest(mailbox_len, asks_skipped, stopping),
            look,
        };
        let (rate, recent_failures, changed) = sample(&mut rare.sampled, seen, now, floor);
        let messages = rare.tallies.read();
        drop(rare);
        Ranked {
            id: core.id.as_u64(),
            look,
            messages,
            mailbox_len,
            cell,
            recent_failures,
            changed,
            rate,
            handled,
            errors,
            panics,
            restarts,
            asks_skipped,
            stopping,
        }
    }

    /// Whether it ranks before an actor with no figure worth showing first: one that ranks
    /// only by its id.
    pub(super) fn telling(&self) -> bool {
        self.recent_failures > 0
            || self.mailbox_len > 0
            || self.rate != 0.0
            || self.errors + self.panics + self.restarts > 0
    }

    /// Whether its figures change only when it does (not with time alone, as a rate or
    /// recent failures do until they are back to 0).
    pub(super) fn at_rest(&self) -> bool {
        self.rate == 0.0 && self.recent_failures == 0
    }

    /// Most telling first: failures in the last interval, then a deeper mailbox, then a
    /// higher rate, then failures ever, then the lower id.
    pub(super) fn telling_order(a: &Ranked, b: &Ranked) -> Order {
        b.recent_failures
            .cmp(&a.recent_failures)
            .then(b.mailbox_len.cmp(&a.mailbox_len))
            .then(b.rate.total_cmp(&a.rate))
            .then((b.errors + b.panics + b.restarts).cmp(&(a.errors + a.panics + a.restarts)))
            .then(a.id.cmp(&b.id))
    }

    pub(super) fn snapshot(&self) -> ActorSnapshot {
        ActorSnapshot {
            last_error: (self.cell.core().rare().last_error)
                .as_deref()
                .map(str::to_owned),
            ..self.brief().into_snapshot()
        }
    }

    pub(super) fn brief(&self) -> ActorBrief {
        let core = self.cell.core();
        ActorBrief {
            id: self.id,
            urn: core.urn.as_ref().map(|u| u.as_str().to_owned()),
            type_name: Cow::Borrowed(core.type_name()),
            parent: core.parent.as_ref().map(|p| p.core().id.as_u64()),
            state: if self.stopping {
                ActorState::Stopping
            } else {
                ActorState::Running
            },
            mailbox_len: self.mailbox_len,
            handled: self.handled,
            rate: self.rate,
            errors: self.errors,
            panics: self.panics,
            restarts: self.restarts,
            asks_skipped: self.asks_skipped,
        }
    }
}
