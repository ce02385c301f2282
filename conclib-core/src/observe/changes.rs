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

/// An actor's mark: in its mailbox's [`Capacity`](crate::mailbox::Capacity), 40 bytes after
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
/// cost tells 4-23% (docs/bench-log.md, issue #31).
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
mod tests {
    use std::sync::Arc;

    use super::{Changes, Listed, MIN_LIMIT, Mark};
    use crate::actor_id::ActorId;

    #[test]
    fn a_mark_lists_its_actor_once_between_two_looks() {
        let changes = Arc::new(Changes::new());
        let mark = Mark::new(Some((changes.clone(), ActorId(7))));
        mark.set_slot(3);
        mark.set();
        assert_eq!(changes.take(1), None, "the first look reads every actor");
        assert!(mark.take(), "set before the first look");
        mark.set();
        mark.set();
        let seven = Listed { id: 7, slot: 3 };
        assert_eq!(changes.take(1), Some(vec![seven]));
        // Not cleared by a look: not listed again.
        mark.set();
        assert_eq!(changes.take(1), Some(vec![]));
        assert!(mark.take());
        assert!(!mark.take());
        mark.set();
        assert_eq!(changes.take(1), Some(vec![seven]));
    }

    #[test]
    fn a_list_nobody_takes_stops_growing() {
        let changes = Changes::new();
        assert_eq!(changes.take(0), None);
        for id in 0..=MIN_LIMIT as u64 {
            changes.push(ActorId(id), 0);
        }
        assert!(changes.lock().is_empty(), "dropped past its limit");
        changes.push(ActorId(1), 0);
        assert!(changes.lock().is_empty(), "and no longer listing");
        assert_eq!(changes.take(0), None, "the next look reads every actor");
        changes.push(ActorId(2), 5);
        assert_eq!(changes.take(0), Some(vec![Listed { id: 2, slot: 5 }]));
    }

    // What a look reads, with actors (the snapshot methods over the marks).

    use std::time::{Duration, Instant};

    use tokio::sync::Notify;

    use crate::supervision::RestartLimit;
    use crate::system::ActorSystem;

    use crate::test_probe::{Probe, Work};

    /// The ids the last look read.
    fn read_last(system: &ActorSystem) -> Vec<u64> {
        let looked = system.lock_looked();
        let last = looked.look;
        looked.read_in(last)
    }

    /// Looks until a look reads no actor (those it read again settled), bounded.
    fn settle(system: &ActorSystem) -> u64 {
        for _ in 0..10 {
            let look = system.snapshot_changes(1, 0).look;
            if read_last(system).is_empty() {
                return look;
            }
        }
        panic!("looks keep reading actors: {:?}", read_last(system));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_look_reads_only_the_actors_that_changed() {
        let system = ActorSystem::new("marks");
        let mut actors = Vec::new();
        for _ in 0..50 {
            actors.push(system.spawn(Probe).await.unwrap());
        }
        let first = system.snapshot_changes(5, 0);
        assert_eq!(
            read_last(&system).len(),
            50,
            "the first look reads every actor"
        );
        let since = settle(&system);
        actors[3].ask(Work::Fine).await.unwrap();
        // Counted after the answer: one more ask, whose answer comes after.
        actors[3].ask(Work::Fine).await.unwrap();
        let later = system.snapshot_changes(5, since);
        assert_eq!(read_last(&system), [actors[3].id().as_u64()]);
        let changed: Vec<u64> = later.changed.iter().map(|b| b.id).collect();
        assert_eq!(changed, [actors[3].id().as_u64()]);
        assert!(later.changed[0].handled >= 1);
        assert_eq!(later.ids, first.ids, "the others still listed");
        // Once its rate is back to 0 (a change too), nothing is read nor listed as changed.
        // The second ask is counted after its answer: on a loaded machine the actor's task
        // may count (and mark) it only after looks that read nothing. Waited for first.
        crate::test_probe::until("the second ask counted", || {
            actors[3]
                .cell
                .core
                .stats()
                .handled
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2
        })
        .await;
        let quiet = settle(&system);
        assert!(system.snapshot_changes(5, quiet).changed.is_empty());
        assert!(read_last(&system).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_queued_behind_a_busy_handler_show() {
        let system = ActorSystem::new("queued");
        let actor = system.spawn(Probe).await.unwrap();
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        actor
            .tell(Work::Hold(started.clone(), gate.clone()))
            .await
            .unwrap();
        started.notified().await;
        let since = settle(&system);
        for _ in 0..5 {
            actor.tell(Work::Fine).await.unwrap();
        }
        let later = system.snapshot_changes(1, since);
        assert_eq!(later.changed.len(), 1, "{later:?}");
        assert_eq!(later.changed[0].mailbox_len, 5);
        assert_eq!(later.snapshot.actors[0].mailbox_len, 5);
        gate.notify_one();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_and_its_restart_are_listed_first() {
        let system = ActorSystem::new("restarts");
        for _ in 0..20 {
            system.spawn(Probe).await.unwrap();
        }
        let actor = system
            .build(Probe)
            .restart_with(|| Probe, RestartLimit::new(3, Duration::from_secs(60)))
            .spawn()
            .await
            .unwrap();
        let since = settle(&system);
        actor.tell(Work::Panic).await.unwrap();
        // Restarted once a message after it is answered.
        actor.ask(Work::Fine).await.unwrap();
        actor.ask(Work::Fine).await.unwrap();
        let later = system.snapshot_changes(1, since);
        assert_eq!(later.changed.len(), 1, "{later:?}");
        assert_eq!((later.changed[0].panics, later.changed[0].restarts), (1, 1));
        let top = &later.snapshot.actors[0];
        assert_eq!(top.id, actor.id().as_u64(), "{later:?}");
        assert!(top.last_error.as_deref().unwrap().contains("on purpose"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_actor_is_gone_from_the_next_look() {
        let system = ActorSystem::new("stopped");
        let mut actors = Vec::new();
        for _ in 0..10 {
            actors.push(system.spawn(Probe).await.unwrap());
        }
        let since = settle(&system);
        let gone = actors[4].id().as_u64();
        actors[4].stop();
        actors[4].wait_for_stop().await;
        let later = system.snapshot_changes(100, since);
        assert!(!later.ids.contains(&gone), "{later:?}");
        assert_eq!(later.ids.len(), 9);
        assert!(later.snapshot.actors.iter().all(|a| a.id != gone));
        assert!(system.snapshot().actors.iter().all(|a| a.id != gone));
        // Killed by a shutdown that times out: gone too.
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        actors[0]
            .tell(Work::Hold(started.clone(), gate))
            .await
            .unwrap();
        started.notified().await;
        let _ = system.snapshot();
        system
            .shutdown(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(system.snapshot().actors.is_empty());
    }

    /// An actor idle through looks that did not read it: its rate counts from the last
    /// look, not from the one that last read it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_counts_from_the_last_look() {
        let system = ActorSystem::new("rate");
        let actor = system.spawn(Probe).await.unwrap();
        let _ = settle(&system);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let before = Instant::now();
        let _ = system.snapshot_changes(1, 0);
        assert!(read_last(&system).is_empty());
        for _ in 0..51 {
            actor.ask(Work::Fine).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = system.snapshot_changes(1, 0);
        let bound = 50.0 / before.elapsed().as_secs_f64();
        assert!(
            later.snapshot.actors[0].rate >= bound,
            "{} < {bound}",
            later.snapshot.actors[0].rate
        );
    }
}
