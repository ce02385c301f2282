//! The table of a system's live actors ([`Registry`]).

use std::sync::Arc;

use crate::actor_id::ActorId;
use crate::cell::erased::ErasedCell;

/// Every actor of a system that has not finished stopping, each in a slot its mark remembers
/// ([`Mark::slot`](crate::observe::changes::Mark::slot)): registered and forgotten without hashing,
/// found by a look at once. It grows by copying slots: the set of cells found by the id each
/// holds that it replaces read every cell again as it grew (about a sixth of a spawn's time;
/// docs/bench-log.md, "A registry of slots").
///
/// It gives memory back after a spike: when fewer than a quarter of its slots are taken, the
/// empty slots at its end are dropped and both vectors shrink (a live actor's slot never
/// moves: its mark remembers it). The next such look waits until the number of actors has
/// halved again, so a slot pinned near the end costs a look per halving, not per stop.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Option<Arc<dyn ErasedCell>>>,
    /// Slots left by actors that stopped, taken first.
    free: Vec<u32>,
    len: usize,
    /// Below this many actors, the registry looks for slots to give back.
    shrink_below: usize,
}

/// Slots a registry keeps however few actors it has (what shrinking would save is less than
/// what growing back would cost).
const MIN_SLOTS: usize = 1024;

impl Registry {
    /// Puts `cell` in a slot, which its mark remembers.
    pub(crate) fn insert(&mut self, cell: Arc<dyn ErasedCell>) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.shrink_below = self.shrink_below.max(self.slots.capacity() / 4);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 actors at once")
            }
        };
        cell.capacity().mark.set_slot(slot);
        self.slots[slot as usize] = Some(cell);
        self.len += 1;
    }

    /// The actor `id` in `slot`, if it is still there.
    pub(crate) fn get(&self, slot: u32, id: ActorId) -> Option<&Arc<dyn ErasedCell>> {
        self.slots
            .get(slot as usize)?
            .as_ref()
            .filter(|c| c.core().id == id)
    }

    /// Takes the actor `id` out of `slot`, if it is still there.
    pub(crate) fn remove(&mut self, slot: u32, id: ActorId) {
        if self.get(slot, id).is_some() {
            self.slots[slot as usize] = None;
            self.free.push(slot);
            self.len -= 1;
            if self.len < self.shrink_below {
                self.shrink();
            }
        }
    }

    /// Drops the empty slots at the end and the memory the vectors no longer need.
    fn shrink(&mut self) {
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        let end = self.slots.len();
        self.free.retain(|&slot| (slot as usize) < end);
        self.slots.shrink_to(end.max(MIN_SLOTS));
        self.free.shrink_to(self.free.len().max(MIN_SLOTS));
        // At least 1: the last actor's stop always gives back what is left.
        self.shrink_below = if self.slots.capacity() > MIN_SLOTS {
            (self.len / 2).max(1).min(self.slots.capacity() / 4)
        } else {
            0
        };
    }

    /// How many slots the registry holds memory for (for tests of what it gives back).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn ErasedCell>> {
        self.slots.iter().flatten()
    }

    /// Up to `n` actors from slot `from` on, and the slot after the last one looked at.
    pub(crate) fn cells_from(&self, from: usize, n: usize) -> (Vec<Arc<dyn ErasedCell>>, usize) {
        let mut cells = Vec::new();
        let mut at = from;
        while at < self.slots.len() && cells.len() < n {
            if let Some(cell) = &self.slots[at] {
                cells.push(cell.clone());
            }
            at += 1;
        }
        (cells, at)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Registry;
    use crate::actor::Actor;
    use crate::actor_id::ActorId;
    use crate::cell::ActorCell;
    use crate::cell::erased::{CellCore, ErasedCell};
    use crate::mailbox::Mailbox;
    use crate::mailbox::config::MailboxConfig;
    use crate::observe::changes::Mark;

    struct Idle;
    impl Actor for Idle {}

    fn cell(id: u64) -> Arc<dyn ErasedCell> {
        Arc::new(ActorCell::<Idle> {
            core: CellCore::new(
                ActorId(id),
                None,
                None,
                std::any::type_name::<Idle>,
                Duration::from_secs(1),
                false,
            ),
            mailbox: Mailbox::new(MailboxConfig::default(), Mark::new(None)),
        })
    }

    /// A slot freed by an actor that stopped is taken by the next; the slot alone does not
    /// find the new actor under the old one's id, and forgetting twice frees nothing more.
    #[test]
    fn slots_are_reused_and_found_by_id() {
        let mut registry = Registry::default();
        let (a, b) = (cell(1), cell(2));
        registry.insert(a.clone());
        registry.insert(b.clone());
        let (a_slot, b_slot) = (a.capacity().mark.slot(), b.capacity().mark.slot());
        assert_ne!(a_slot, b_slot);
        assert_eq!(registry.len(), 2);
        registry.remove(a_slot, ActorId(1));
        registry.remove(a_slot, ActorId(1));
        registry.remove(b_slot, ActorId(1));
        assert_eq!(registry.len(), 1);
        assert!(registry.get(b_slot, ActorId(2)).is_some());
        let c = cell(3);
        registry.insert(c.clone());
        assert_eq!(
            c.capacity().mark.slot(),
            a_slot,
            "the freed slot, taken first"
        );
        assert!(registry.get(a_slot, ActorId(1)).is_none());
        assert!(registry.get(a_slot, ActorId(3)).is_some());
        assert_eq!(registry.iter().count(), 2);
        registry.remove(b_slot, ActorId(2));
        registry.remove(a_slot, ActorId(3));
        assert!(registry.is_empty());
        assert_eq!(registry.iter().count(), 0);
    }

    /// After a spike, the slots are given back, but a live actor's slot stays where its mark
    /// says, and it is still found there.
    #[test]
    fn a_spike_is_given_back_and_live_actors_stay_found() {
        let mut registry = Registry::default();
        let cells: Vec<_> = (0..20_000).map(cell).collect();
        for c in &cells {
            registry.insert(c.clone());
        }
        assert!(registry.capacity() >= 20_000);
        // Every actor stops, the last first, but one near the start and one near the end.
        let (early, late) = (&cells[10], &cells[15_000]);
        for (id, c) in cells.iter().enumerate().rev() {
            if id != 10 && id != 15_000 {
                registry.remove(c.capacity().mark.slot(), ActorId(id as u64));
            }
        }
        assert_eq!(registry.len(), 2);
        // The slots after the last live one are given back.
        assert!(registry.capacity() <= 15_001, "{}", registry.capacity());
        assert!(
            registry
                .get(early.capacity().mark.slot(), ActorId(10))
                .is_some()
        );
        assert!(
            registry
                .get(late.capacity().mark.slot(), ActorId(15_000))
                .is_some()
        );
        registry.remove(late.capacity().mark.slot(), ActorId(15_000));
        // The one pinning the end gone, the rest is given back at the next halving.
        registry.remove(early.capacity().mark.slot(), ActorId(10));
        assert!(registry.is_empty());
        assert!(
            registry.capacity() <= super::MIN_SLOTS,
            "{}",
            registry.capacity()
        );
        // Slots handed out after shrinking are in range and found.
        let again: Vec<_> = (30_000..30_100).map(cell).collect();
        for c in &again {
            registry.insert(c.clone());
        }
        for (i, c) in again.iter().enumerate() {
            assert!(
                registry
                    .get(c.capacity().mark.slot(), ActorId(30_000 + i as u64))
                    .is_some()
            );
        }
        assert_eq!(registry.iter().count(), 100);
    }
}
