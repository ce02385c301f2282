//! Weeks of uptime: nothing grows with what a system has done, only with what
//! it holds. Each test runs create/forget cycles against one structure and checks that its
//! size is back to its baseline (entries counted, not memory).
//!
//! The tests run one at a time ([`serial`]): the metrics test turns recording on for the
//! whole process and counts the URN labels every named actor takes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::actor::Actor;
use crate::context::Context;
use crate::error::BoxError;
use crate::handler::Handler;
use crate::message::Message;
use crate::send::actor_ref::ActorRef;
use crate::supervision::SupervisionEvent;
use crate::system::ActorSystem;

const CYCLES: usize = 200;

/// Runs `test` on a runtime of its own, alone among these tests.
fn serial<F: Future<Output = ()>>(test: F) {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _alone = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), test)
                .await
                .expect("the test took over a minute");
        });
}

/// Waits (bounded) until the system's tables are `expected`: an actor leaves the registry
/// in the last step of its task, just after `wait_for_stop` returns, and no event says when.
async fn tables_back_to(system: &ActorSystem, expected: &[(&'static str, usize)]) {
    let settled = tokio::time::timeout(Duration::from_secs(5), async {
        while system.table_sizes() != expected {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "tables {:?}, expected {:?}",
        system.table_sizes(),
        expected
    );
}

struct Ping;
impl Message for Ping {
    type Response = ();
    type Error = Infallible;
}

/// An actor that answers pings and does nothing else.
struct Idle;
impl Actor for Idle {}
impl Handler<Ping> for Idle {
    async fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

#[test]
fn named_actors_spawned_and_stopped_leave_no_entry() {
    serial(async {
        let system = ActorSystem::new("uptime");
        let keeper = system.build(Idle).urn("keeper").spawn().await.unwrap();
        let baseline = system.table_sizes();
        let mut changes = system.urn_changes();
        for i in 0..CYCLES {
            let actor = system
                .build(Idle)
                .urn(format!("session:{i}"))
                .spawn()
                .await
                .unwrap();
            actor.ask(Ping).await.unwrap();
            if i % 2 == 0 {
                actor.stop();
            } else {
                actor.kill();
            }
            actor.wait_for_stop().await;
            assert!(system.lookup(&format!("session:{i}")).is_err());
        }
        tables_back_to(&system, &baseline).await;
        assert_eq!(system.named_actors().len(), 1);
        // The URN generation is a counter, not a list: nothing accumulates behind it.
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        keeper.stop();
    });
}

/// Watches the actor it is given at start, then waits to be stopped.
struct Watcher(Option<crate::dynamic::DynActorRef>);
impl Actor for Watcher {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Some(target) = self.0.take() {
            ctx.watch(target.clone());
            // Twice: still one entry.
            ctx.watch(target);
        }
        Ok(())
    }
}

#[test]
fn short_lived_watchers_leave_no_entry_at_the_watched_actor() {
    serial(async {
        let system = ActorSystem::new("uptime");
        let target = system.spawn(Idle).await.unwrap();
        let watchers = |target: &ActorRef<Idle>| target.cell.core.lock_watchers().len();
        for _ in 0..CYCLES {
            let watcher = system.spawn(Watcher(Some(target.to_dyn()))).await.unwrap();
            assert_eq!(watchers(&target), 1);
            watcher.stop();
            watcher.wait_for_stop().await;
            // Gone before its stop is seen.
            assert_eq!(watchers(&target), 0);
        }
        // Unwatching by hand leaves nothing either, and a watcher still watching is kept.
        let keeper = system.spawn(Watcher(Some(target.to_dyn()))).await.unwrap();
        assert_eq!(watchers(&target), 1);
        keeper.ask(Unwatch(target.to_dyn())).await.unwrap();
        assert_eq!(watchers(&target), 0);
        assert_eq!(keeper.ask(Watching).await.unwrap(), 0);
        keeper.stop();
        keeper.wait_for_stop().await;
    });
}

/// Unwatches an actor.
struct Unwatch(crate::dynamic::DynActorRef);
impl Message for Unwatch {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Unwatch> for Watcher {
    async fn handle(&mut self, msg: Unwatch, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        ctx.unwatch(msg.0);
        Ok(())
    }
}

/// How many actors the actor watches.
struct Watching;
impl Message for Watching {
    type Response = usize;
    type Error = Infallible;
}
impl Handler<Watching> for Watcher {
    async fn handle(&mut self, _: Watching, ctx: &mut Context<Self>) -> Result<usize, Infallible> {
        Ok(ctx.watching_len())
    }
}

/// Watches every actor it is told of; reports each `Terminated` on `ended`.
struct Supervisor {
    ended: tokio::sync::mpsc::UnboundedSender<()>,
}
struct Watch(crate::dynamic::DynActorRef);
impl Message for Watch {
    type Response = ();
    type Error = Infallible;
}
impl Actor for Supervisor {
    async fn on_event(&mut self, _: &mut Context<Self>, event: SupervisionEvent) {
        if matches!(event, SupervisionEvent::Terminated { .. }) {
            let _ = self.ended.send(());
        }
    }
}
impl Handler<Watch> for Supervisor {
    async fn handle(&mut self, msg: Watch, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        ctx.watch(msg.0);
        Ok(())
    }
}
impl Handler<Watching> for Supervisor {
    async fn handle(&mut self, _: Watching, ctx: &mut Context<Self>) -> Result<usize, Infallible> {
        Ok(ctx.watching_len())
    }
}

#[test]
fn a_long_lived_watcher_forgets_the_actors_that_stopped() {
    serial(async {
        let system = ActorSystem::new("uptime");
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = system.spawn(Supervisor { ended: ended_tx }).await.unwrap();
        for _ in 0..CYCLES {
            let worker = system.spawn(Idle).await.unwrap();
            supervisor.ask(Watch(worker.to_dyn())).await.unwrap();
            assert_eq!(supervisor.ask(Watching).await.unwrap(), 1);
            worker.stop();
            ended.recv().await.expect("a Terminated event");
            // The event was handled (on_event ran): the watched actor is forgotten.
            assert_eq!(supervisor.ask(Watching).await.unwrap(), 0);
        }
        supervisor.stop();
        supervisor.wait_for_stop().await;
    });
}

/// Spawns and stops children on demand; schedules timers, and says on `ticked` when one
/// fired.
struct Parent {
    ticked: tokio::sync::mpsc::UnboundedSender<()>,
}
impl Actor for Parent {}
struct Cycle;
impl Message for Cycle {
    type Response = (usize, usize);
    type Error = Infallible;
}
impl Handler<Cycle> for Parent {
    /// One child spawned and stopped, one timer set and fired: the children and the
    /// tracked timers left.
    async fn handle(
        &mut self,
        _: Cycle,
        ctx: &mut Context<Self>,
    ) -> Result<(usize, usize), Infallible> {
        let child = ctx.spawn_child(Idle).await.unwrap();
        child.stop();
        child.wait_for_stop().await;
        ctx.send_after(Tick, Duration::ZERO);
        Ok((ctx.children().len(), ctx.tracked_tasks()))
    }
}
struct Tick;
impl Message for Tick {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Tick> for Parent {
    async fn handle(&mut self, _: Tick, _: &mut Context<Self>) -> Result<(), Infallible> {
        let _ = self.ticked.send(());
        Ok(())
    }
}

#[test]
fn a_long_lived_parent_keeps_no_stopped_child_nor_fired_timer() {
    serial(async {
        let system = ActorSystem::new("uptime");
        let (ticked_tx, mut ticked) = tokio::sync::mpsc::unbounded_channel();
        let parent = system.spawn(Parent { ticked: ticked_tx }).await.unwrap();
        let baseline = system.table_sizes();
        let mut most_timers = 0;
        for _ in 0..CYCLES {
            let (children, timers) = parent.ask(Cycle).await.unwrap();
            assert_eq!(children, 0);
            most_timers = most_timers.max(timers);
            ticked.recv().await.expect("the timer fired");
        }
        // Fired timers are pruned as new ones are set: the one just set, and at most one
        // whose task had not quite ended.
        assert!(most_timers <= 2, "{most_timers} timers tracked");
        tables_back_to(&system, &baseline).await;
        parent.stop();
        parent.wait_for_stop().await;
    });
}

#[test]
fn pools_resized_up_and_down_leave_no_entry() {
    serial(async {
        let system = ActorSystem::new("uptime");
        let pool = system
            .pool(|| Idle)
            .size(2)
            .urn("pool")
            .spawn()
            .await
            .unwrap();
        let baseline = system.table_sizes();
        for _ in 0..CYCLES / 10 {
            pool.resize(6).await.unwrap();
            assert_eq!(pool.members().len(), 6);
            pool.ask(Ping).await.unwrap();
            pool.resize(2).await.unwrap();
            // A member taken out is stopped gracefully: wait for each one's end.
        }
        tables_back_to(&system, &baseline).await;
        assert_eq!(pool.members().len(), 2);
        // Pools that come and go leave nothing either.
        let baseline = system.table_sizes();
        for i in 0..CYCLES / 10 {
            let short = system
                .pool(|| Idle)
                .size(3)
                .urn(format!("pool:{i}"))
                .spawn()
                .await
                .unwrap();
            short.ask(Ping).await.unwrap();
            short.stop();
            short.wait_for_stop().await;
        }
        tables_back_to(&system, &baseline).await;
        pool.stop();
        pool.wait_for_stop().await;
    });
}

/// A metric's name and labels.
type MetricKey = (String, Vec<(String, String)>);

/// Records which metric keys were registered, and nothing else.
#[derive(Default)]
struct Keys(Mutex<HashSet<MetricKey>>);

impl Keys {
    fn record(&self, key: &metrics::Key) {
        let labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        self.0
            .lock()
            .unwrap()
            .insert((key.name().to_owned(), labels));
    }

    /// The distinct values of the `urn` label of `name`.
    fn urns(&self, name: &str) -> HashSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, labels)| labels.iter().filter(|(k, _)| k == "urn"))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl metrics::Recorder for Keys {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.record(key);
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.record(key);
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.record(key);
        metrics::Histogram::noop()
    }
}

#[test]
fn short_lived_named_actors_do_not_grow_the_metrics_label_sets() {
    let keys: &'static Keys = Box::leak(Box::default());
    let limit = 8;
    serial(async {
        // Process-wide: recorded into by every actor of the test binary from now on.
        metrics::set_global_recorder(keys).expect("the only recorder of this binary");
        crate::observe::metrics::enable();
        let previous = crate::observe::metrics::urn_label_limit();
        let in_use = crate::observe::metrics::urn_labels_in_use();
        crate::observe::metrics::set_urn_label_limit(in_use + limit);
        let system = ActorSystem::new("uptime");
        // A singleton spawned first, stopped and spawned again: one series throughout.
        for _ in 0..2 {
            let keeper = system
                .build(Idle)
                .urn("metered-keeper")
                .spawn()
                .await
                .unwrap();
            keeper.ask(Ping).await.unwrap();
            keeper.stop();
            keeper.wait_for_stop().await;
        }
        for i in 0..CYCLES {
            let actor = system
                .build(Idle)
                .urn(format!("metered:{i}"))
                .spawn()
                .await
                .unwrap();
            actor.ask(Ping).await.unwrap();
            actor.stop();
            actor.wait_for_stop().await;
        }
        let urns = keys.urns("conclib_actor_messages_handled_total");
        assert!(urns.contains("metered-keeper"), "{urns:?}");
        let metered = urns.iter().filter(|u| u.starts_with("metered:")).count();
        // The first ones within the limit have their own series; the rest share `urn=""`.
        assert_eq!(metered, limit - 1, "{urns:?}");
        assert!(urns.contains(""), "{urns:?}");
        assert_eq!(crate::observe::metrics::urn_labels_in_use(), in_use + limit);
        // No new URN label past the limit, however many actors come and go.
        for i in 0..CYCLES {
            let actor = system
                .build(Idle)
                .urn(format!("later:{i}"))
                .spawn()
                .await
                .unwrap();
            actor.ask(Ping).await.unwrap();
            actor.kill();
            actor.wait_for_stop().await;
        }
        assert_eq!(keys.urns("conclib_actor_messages_handled_total"), urns);
        assert_eq!(crate::observe::metrics::urn_labels_in_use(), in_use + limit);
        crate::observe::metrics::set_urn_label_limit(previous);
    });
}

struct Work;
impl Message for Work {
    type Response = u64;
    type Error = Infallible;
}

/// An actor whose handler's future is over a kilobyte (an array held across an `.await`).
struct Worker;
impl Actor for Worker {}
impl Handler<Work> for Worker {
    async fn handle(&mut self, _: Work, _: &mut Context<Self>) -> Result<u64, Infallible> {
        let scratch = [1u64; 160];
        tokio::task::yield_now().await;
        Ok(scratch.iter().sum())
    }
}

#[test]
fn idle_actors_do_not_keep_what_a_large_handler_grew() {
    serial(async {
        const ACTORS: usize = 64;
        let system = ActorSystem::new("uptime");
        let mut workers = Vec::new();
        for _ in 0..ACTORS {
            let worker = system.spawn(Worker).await.unwrap();
            assert_eq!(worker.ask(Work).await.unwrap(), 160);
            workers.push(worker);
        }
        // Kept, the buffers would be over 80 KB (64 actors, a kilobyte and more each);
        // given back as each actor finds its mailbox empty, what other tests' actors hold
        // is what is left. No event says when the last one went idle: wait, bounded.
        let held = || crate::run::future_slot::HELD.load(std::sync::atomic::Ordering::Relaxed);
        let given_back = tokio::time::timeout(Duration::from_secs(5), async {
            while held() >= ACTORS * 1024 / 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(given_back.is_ok(), "{} bytes still held", held());
        for worker in workers {
            worker.stop();
            worker.wait_for_stop().await;
        }
    });
}

/// A system that does not hibernate its actors on its own, recording, with an idle actor in
/// it asked three times.
async fn an_idle_actor_asked_three_times() -> (ActorSystem, ActorRef<Idle>) {
    // Process-wide, as in the tests above.
    crate::observe::metrics::enable();
    let system = ActorSystem::new("uptime");
    system.set_hibernate_after(None);
    let actor = system.spawn(Idle).await.unwrap();
    for _ in 0..3 {
        actor.ask(Ping).await.unwrap();
    }
    (system, actor)
}

/// The messages the system's snapshot counts as handled.
fn handled(system: &ActorSystem) -> u64 {
    system.snapshot().messages.iter().map(|m| m.handled).sum()
}

/// The per-message-type tallies the actor keeps.
fn tallies(actor: &ActorRef<Idle>) -> usize {
    actor.cell.core.rare().tallies.read().map_or(0, |t| t.len())
}

#[test]
fn an_idle_actors_messages_are_counted_without_another_message() {
    serial(async {
        // Counted as each handler is done (just after its answer left: no event says when),
        // nothing held back for a later message, a timer or hibernation.
        let (system, actor) = an_idle_actor_asked_three_times().await;
        crate::test_probe::until("the actor's messages never reached the snapshot", || {
            handled(&system) >= 3
        })
        .await;
        assert_eq!(handled(&system), 3);
        // One message type: one tally (224 bytes) for all three.
        assert_eq!(tallies(&actor), 1);
        actor.stop();
        actor.wait_for_stop().await;
    });
}

#[test]
fn a_hibernating_actor_keeps_its_counts_and_counts_on_when_woken() {
    serial(async {
        let (system, actor) = an_idle_actor_asked_three_times().await;
        crate::test_probe::sweep_until_dormant(&system, &actor).await;
        // Its metrics went with hibernation; its counts are in its statistics.
        assert_eq!(handled(&system), 3);
        // Woken, it measures with new metrics, which find the same tally.
        actor.ask(Ping).await.unwrap();
        crate::test_probe::until("the woken actor's message was not counted", || {
            handled(&system) >= 4
        })
        .await;
        assert_eq!(handled(&system), 4);
        assert_eq!(
            tallies(&actor),
            1,
            "one tally for the type, after waking too"
        );
        actor.stop();
        actor.wait_for_stop().await;
    });
}
