//! The last URN changes of a system, for readers that follow them
//! ([`ActorSystem::urn_changes_since`]): a proxy follows a system of any size at the cost of
//! its changes, not its size.

use std::collections::VecDeque;

#[cfg(doc)]
#[cfg(doc)] // for the docs' links only
use crate::ActorSystem;
use crate::urn::Urn;

/// How many URN changes [`ActorSystem::urn_changes_since`] can look back.
pub const URN_JOURNAL_CAPACITY: usize = 16_384;

#[derive(Default)]
pub(crate) struct UrnJournal {
    /// The position after the newest entry.
    next: u64,
    entries: VecDeque<(Urn, bool)>,
}

/// What changed since a position: from [`ActorSystem::urn_changes_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrnChanges {
    /// URNs taken (`true`) or freed (`false`), oldest first; read on from `next`.
    Since {
        /// The changes.
        changes: Vec<(Urn, bool)>,
        /// The position after them.
        next: u64,
    },
    /// The journal no longer reaches back that far: look at
    /// [`ActorSystem::named_actors`] afresh, then read on from `next`.
    Lost {
        /// The position now.
        next: u64,
    },
}

impl UrnJournal {
    /// Records a URN taken (`true`) or freed; returns the position after it.
    pub(crate) fn record(&mut self, urn: &Urn, taken: bool) -> u64 {
        if self.entries.len() == URN_JOURNAL_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back((urn.clone(), taken));
        self.next += 1;
        self.next
    }

    /// The changes since `position`, or [`UrnChanges::Lost`] if it is out of reach.
    pub(crate) fn since(&self, position: u64) -> UrnChanges {
        let first = self.next - self.entries.len() as u64;
        if position < first || position > self.next {
            return UrnChanges::Lost { next: self.next };
        }
        UrnChanges::Since {
            changes: self
                .entries
                .iter()
                .skip((position - first) as usize)
                .cloned()
                .collect(),
            next: self.next,
        }
    }
}
