//! The marks and their list; what a look reads, with actors.

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
