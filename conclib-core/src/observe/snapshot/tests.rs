//! The snapshot's unit tests: what a look reads, ranks and reports.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::send::actor_ref::ActorRef;
use crate::system::ActorSystem;

use super::MAX_BRIEF_ACTORS;
use super::sample::MIN_RATE_WINDOW;

use crate::test_probe::{Probe, Work};

fn ids(actors: &[super::ActorSnapshot]) -> Vec<u64> {
    actors.iter().map(|a| a.id).collect()
}

/// The rate and the recent failures count over the time between snapshots, and
/// snapshots closer than `MIN_RATE_WINDOW` reuse the previous figures: the test waits
/// that long between the snapshots it compares (time is what is measured).
async fn next_window() {
    tokio::time::sleep(MIN_RATE_WINDOW + Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_telling_actors_come_first_and_the_rest_in_brief() {
    let system = ActorSystem::new("telling");
    let mut actors: Vec<ActorRef<Probe>> = Vec::new();
    for n in 0..40 {
        let actor = system
            .build(Probe)
            .urn(format!("probe:{n}"))
            .spawn()
            .await
            .unwrap();
        actors.push(actor);
    }
    let (failing, queued, busy) = (&actors[30], &actors[20], &actors[10]);
    // Every actor sampled once: the rates count from here.
    let first = system.snapshot_first(5);
    assert_eq!(
        ids(&first.actors),
        ids(&system.snapshot().actors)[..5],
        "idle actors: by id"
    );

    failing.ask(Work::Fail).await.unwrap_err();
    for _ in 0..50 {
        busy.ask(Work::Fine).await.unwrap();
    }
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    queued
        .tell(Work::Hold(started.clone(), gate.clone()))
        .await
        .unwrap();
    started.notified().await;
    for _ in 0..7 {
        queued.tell(Work::Fine).await.unwrap();
    }
    next_window().await;

    let snapshot = system.snapshot_first(5);
    let top = ids(&snapshot.actors);
    assert_eq!(
        top[..3],
        [
            failing.id().as_u64(),
            queued.id().as_u64(),
            busy.id().as_u64()
        ],
        "{snapshot:#?}"
    );
    assert_eq!(snapshot.actors[0].errors, 1);
    assert_eq!(snapshot.actors[1].mailbox_len, 7);
    assert!(snapshot.actors[2].rate > 0.0);
    // Then the idle ones, by id.
    assert!(top[3] < top[4]);
    // The rest: counted, and listed in brief by id, with their figures.
    assert_eq!(snapshot.omitted_actors, 35);
    assert_eq!(snapshot.others.len(), 35);
    let brief_ids: Vec<u64> = snapshot.others.iter().map(|a| a.id).collect();
    let mut sorted = brief_ids.clone();
    sorted.sort_unstable();
    assert_eq!(brief_ids, sorted);
    assert!(top.iter().all(|id| !brief_ids.contains(id)));
    let other = &snapshot.others[0];
    assert_eq!(other.type_name, std::any::type_name::<Probe>());
    assert!(other.urn.as_deref().unwrap().starts_with("probe:"));
    assert_eq!(other.to_snapshot().id, other.id);

    // Two windows without failing: the failure is no longer recent; the actor still
    // ranks before the idle ones that never failed, after the queued and the busy.
    next_window().await;
    let _ = system.snapshot_first(5);
    next_window().await;
    for _ in 0..50 {
        busy.ask(Work::Fine).await.unwrap();
    }
    let snapshot = system.snapshot_first(5);
    assert_eq!(
        ids(&snapshot.actors)[..3],
        [
            queued.id().as_u64(),
            busy.id().as_u64(),
            failing.id().as_u64()
        ],
        "{snapshot:#?}"
    );

    // A full snapshot: every actor, by id, nothing in brief.
    let full = system.snapshot();
    assert_eq!(full.actors.len(), 40);
    assert!(full.actors.windows(2).all(|w| w[0].id < w[1].id));
    assert!(full.others.is_empty());
    assert_eq!(full.omitted_actors, 0);
    gate.notify_one();
}

/// What changed since a look: nothing while idle; an actor that handled a message, one
/// started since; one stopped leaves the ids. A look by another caller in between does
/// not hide a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_since_a_look_list_only_the_actors_that_changed() {
    let system = ActorSystem::new("changes");
    let mut actors: Vec<ActorRef<Probe>> = Vec::new();
    for _ in 0..20 {
        actors.push(system.spawn(Probe).await.unwrap());
    }
    let first = system.snapshot_changes(3, 0);
    assert_eq!(first.snapshot.actors.len(), 3);
    assert!(first.snapshot.others.is_empty());
    assert_eq!(first.changed.len(), 20, "every actor is new");
    assert_eq!(first.ids.len(), 20);
    let idle = system.snapshot_changes(3, first.look);
    assert!(idle.changed.is_empty(), "{:?}", idle.changed);
    assert!(idle.look > first.look);

    actors[4].ask(Work::Fine).await.unwrap();
    actors[6].stop();
    actors[6].wait_for_stop().await;
    let new = system.spawn(Probe).await.unwrap();
    // The handled count is in once the runner counted it, right after the answer: look
    // again, bounded (each look by someone else too, which must not hide the change).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let later = loop {
        let _ = system.snapshot();
        let later = system.snapshot_changes(3, first.look);
        if later
            .changed
            .iter()
            .any(|b| b.id == actors[4].id().as_u64())
        {
            break later;
        }
        assert!(std::time::Instant::now() < deadline, "{later:?}");
        tokio::task::yield_now().await;
    };
    let changed: Vec<u64> = later.changed.iter().map(|b| b.id).collect();
    assert_eq!(changed, [actors[4].id().as_u64(), new.id().as_u64()]);
    assert_eq!(later.changed[0].handled, 1);
    assert_eq!(later.ids.len(), 20);
    assert!(!later.ids.contains(&actors[6].id().as_u64()));
    assert!(later.ids.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recent_failure_is_listed_among_many_idle_actors() {
    let system = ActorSystem::new("failures");
    let mut failing = Vec::new();
    for n in 0..2_000u64 {
        let actor = system.spawn(Probe).await.unwrap();
        if n % 400 == 399 {
            failing.push(actor);
        }
    }
    let _ = system.snapshot_first(10);
    for actor in &failing {
        actor.ask(Work::Fail).await.unwrap_err();
    }
    // The asker has its error before the actor's runner counts the failure (right
    // after the handler answered): look until the counts are in, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let snapshot = loop {
        let snapshot = system.snapshot_first(10);
        let listed = ids(&snapshot.actors);
        if failing
            .iter()
            .all(|a| listed[..failing.len()].contains(&a.id().as_u64()))
        {
            break snapshot;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failing actors are not listed first: {listed:?}"
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(snapshot.omitted_actors, 1_990);
    assert_eq!(
        snapshot.others.len(),
        1_990.min(MAX_BRIEF_ACTORS),
        "the rest in brief"
    );
    // Listing none in full still lists every actor in brief.
    let none = system.snapshot_first(0);
    assert!(none.actors.is_empty());
    assert_eq!(none.others.len(), 2_000);
}
