//! The table of a system's live actors ([`Registry`]).

use std::sync::Arc;

use crate::cell::ErasedCell;
use crate::system::ActorId;

/// Every actor of a system that has not finished stopping, each in a slot its mark remembers
/// ([`Mark::slot`](crate::changes::Mark::slot)): registered and forgotten without hashing,
/// found by a look at once. It grows by copying slots: the set of cells found by the id each
/// holds that it replaces read every cell again as it grew (about a sixth of a spawn's time;
/// BENCHMARKS.md, "A registry of slots").
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Option<Arc<dyn ErasedCell>>>,
    /// Slots left by actors that stopped, taken first.
    free: Vec<u32>,
    len: usize,
}

impl Registry {
    /// Puts `cell` in a slot, which its mark remembers.
    pub(crate) fn insert(&mut self, cell: Arc<dyn ErasedCell>) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
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
        }
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
    use crate::Actor;
    use crate::ActorId;
    use crate::cell::{ActorCell, CellCore, ErasedCell};
    use crate::changes::Mark;
    use crate::mailbox::{Mailbox, MailboxConfig};

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
}
