//! The registry's slots (with whole cells: here, apart from the registry, which names no
//! actor type).

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
