//! `ActorSystem::snapshot`: every actor with its tree, state and statistics.

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[actor]
#[derive(Default)]
struct Meter {
    started: Option<Arc<Notify>>,
}

#[actor]
impl Meter {
    #[handle]
    fn work(&mut self, n: u64) -> u64 {
        n * 2
    }

    #[handle]
    fn fail(&mut self, why: String) -> Result<(), String> {
        Err(why)
    }

    #[handle]
    fn boom(&mut self) {
        panic!("boom on purpose");
    }

    #[handle]
    async fn hold(&mut self, gate: Arc<Notify>) {
        if let Some(started) = &self.started {
            started.notify_one();
        }
        gate.notified().await;
    }

    #[handle]
    async fn spawn_child(&mut self, urn: String, ctx: &mut Context<Self>) -> u64 {
        let child = ctx
            .build_child(Meter::default())
            .urn(urn)
            .spawn()
            .await
            .unwrap();
        child.id().as_u64()
    }
}

fn find<'a>(snapshot: &'a SystemSnapshot, urn: &str) -> &'a ActorSnapshot {
    snapshot
        .actors
        .iter()
        .find(|a| a.urn.as_deref() == Some(urn))
        .unwrap_or_else(|| panic!("{urn} not in {snapshot:#?}"))
}

#[tokio::test]
async fn a_snapshot_shows_the_tree_counts_and_last_error() {
    let system = ActorSystem::new("snap");
    let meter = system
        .build(Meter::default())
        .urn("meter:1")
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    for n in 0..10 {
        assert_eq!(meter.work(n).await.unwrap(), n * 2);
    }
    assert!(matches!(
        meter.fail("bad input".into()).await,
        Err(AskError::Handler(e)) if e == "bad input"
    ));
    // A told message's failure counts too.
    meter.fail("told".into()).tell().await.unwrap();
    assert!(matches!(meter.boom().await, Err(AskError::Panicked(_))));
    let child_id = meter.spawn_child("meter:child".into()).await.unwrap();
    // Every message before this ask has been handled.
    meter.work(0).await.unwrap();

    let snapshot = system.snapshot();
    assert_eq!(snapshot.system, "snap");
    assert_eq!(snapshot.pid, std::process::id());
    assert!(snapshot.taken_at_ms > 1_700_000_000_000);
    let m = find(&snapshot, "meter:1");
    assert_eq!(m.id, meter.id().as_u64());
    assert!(m.type_name.ends_with("Meter"), "{}", m.type_name);
    assert_eq!(m.parent, None);
    assert_eq!(m.state, ActorState::Running);
    // 10 work + 2 fail + boom + spawn_child; the last `work` is still being answered when
    // its reply arrives, so it may or may not be counted yet.
    assert!((14..=15).contains(&m.handled), "{m:?}");
    assert_eq!(m.errors, 2);
    assert_eq!(m.panics, 1);
    assert_eq!(m.restarts, 0);
    assert!(
        m.last_error
            .as_deref()
            .is_some_and(|e| e.contains("boom on purpose")),
        "{m:?}"
    );
    let child = find(&snapshot, "meter:child");
    assert_eq!(child.id, child_id);
    assert_eq!(child.parent, Some(meter.id().as_u64()));
    assert_eq!(child.handled, 0);

    // Serde data, as published to Redis.
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: SystemSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
    assert!(json.contains("\"type\":"), "{json}");
}

#[tokio::test]
async fn the_rate_is_measured_between_two_snapshots() {
    let system = ActorSystem::new("rate");
    let meter = system
        .build(Meter::default())
        .urn("meter:rate")
        .spawn()
        .await
        .unwrap();
    let first = system.snapshot();
    assert_eq!(find(&first, "meter:rate").rate, 0.0);
    let started = std::time::Instant::now();
    for n in 0..100 {
        meter.work(n).await.unwrap();
    }
    // The rate needs a window of at least 250 ms between snapshots.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = system.snapshot();
    let rate = find(&second, "meter:rate").rate;
    let elapsed = started.elapsed().as_secs_f64();
    // 100 messages over a window no shorter than 300 ms and no longer than it took.
    assert!(rate > 0.0 && rate <= 100.0 / 0.3 + 1.0, "rate {rate}");
    assert!(
        rate >= 100.0 / (elapsed + 1.0),
        "rate {rate} over {elapsed}s"
    );
    // A snapshot right after reuses the rate rather than dividing by a tiny window.
    assert_eq!(find(&system.snapshot(), "meter:rate").rate, rate);
}

#[tokio::test]
async fn a_stopping_actor_is_shown_stopping_with_its_queue() {
    let system = ActorSystem::new("stopping");
    let started = Arc::new(Notify::new());
    let meter = system
        .build(Meter {
            started: Some(started.clone()),
        })
        .urn("meter:busy")
        .spawn()
        .await
        .unwrap();
    let gate = Arc::new(Notify::new());
    meter.hold(gate.clone()).tell().await.unwrap();
    started.notified().await;
    meter.work(1).tell().await.unwrap();
    meter.work(2).tell().await.unwrap();
    meter.stop();
    let snapshot = system.snapshot();
    let m = find(&snapshot, "meter:busy");
    assert_eq!(m.state, ActorState::Stopping);
    assert_eq!(m.mailbox_len, 2);
    gate.notify_one();
    tokio::time::timeout(Duration::from_secs(10), meter.wait_for_stop())
        .await
        .unwrap();
    assert!(system.snapshot().actors.is_empty());
}

#[tokio::test]
async fn restarts_are_counted() {
    let system = ActorSystem::new("restarts");
    let meter = system
        .build(Meter::default())
        .urn("meter:restart")
        .restart_with(
            Meter::default,
            RestartLimit::new(5, Duration::from_secs(60)),
        )
        .spawn()
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(meter.boom().await, Err(AskError::Panicked(_))));
    }
    meter.work(1).await.unwrap();
    let m = system.snapshot();
    let m = find(&m, "meter:restart");
    assert_eq!((m.panics, m.restarts), (2, 2));
}

#[tokio::test]
async fn a_pool_shows_its_members_load() {
    let system = ActorSystem::new("pool-snap");
    let started = Arc::new(Notify::new());
    let pool = system
        .pool({
            let started = started.clone();
            move || Meter {
                started: Some(started.clone()),
            }
        })
        .size(3)
        .urn("meters")
        .spawn()
        .await
        .unwrap();
    for n in 0..6 {
        pool.ask(Work { n }).await.unwrap();
    }
    // One member holds an ask through the pool: it is in flight there.
    let gate = Arc::new(Notify::new());
    let holding = tokio::spawn({
        let pool = pool.clone();
        let gate = gate.clone();
        async move { pool.ask(Hold { gate }).await }
    });
    started.notified().await;

    let snapshot = system.snapshot();
    let entry = find(&snapshot, "meters");
    let load = entry
        .pool
        .as_ref()
        .expect("the pool's entry has its members' load");
    assert_eq!(load.members.len(), 3);
    assert_eq!(load.replaced, 0);
    assert_eq!(load.members.iter().map(|m| m.in_flight).sum::<usize>(), 1);
    // The members are the pool's children in the tree, and no other actor has a pool.
    for member in &load.members {
        let actor = snapshot.actors.iter().find(|a| a.id == member.id).unwrap();
        assert_eq!(actor.parent, Some(entry.id));
        assert!(actor.pool.is_none());
    }
    let handled: u64 = load
        .members
        .iter()
        .map(|m| {
            snapshot
                .actors
                .iter()
                .find(|a| a.id == m.id)
                .unwrap()
                .handled
        })
        .sum();
    assert!(handled >= 5, "{snapshot:#?}");

    gate.notify_one();
    holding.await.unwrap().unwrap();
    pool.stop();
    tokio::time::timeout(Duration::from_secs(10), pool.wait_for_stop())
        .await
        .unwrap();
    assert!(system.snapshot().actors.is_empty());
}

#[tokio::test]
async fn a_snapshot_of_the_first_actors_counts_the_rest() {
    let system = ActorSystem::new("first");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(system.spawn(Meter::default()).await.unwrap().id().as_u64());
    }
    let snapshot = system.snapshot_first(2);
    assert_eq!(
        snapshot.actors.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(snapshot.omitted_actors, 3);
    assert_eq!(system.snapshot().omitted_actors, 0);
}
