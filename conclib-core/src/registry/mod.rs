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
mod tests;
