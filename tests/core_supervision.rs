//! Core runtime: panics, panic policies, restarts and their limit, supervision events, watch.

mod common;

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;

/// A worker whose state shows whether it was restarted.
struct Worker {
    generation: u32,
    count: u64,
}
impl Actor for Worker {}

struct Bump;
impl Message for Bump {
    type Response = (u32, u64);
    type Error = Infallible;
}
impl Handler<Bump> for Worker {
    async fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> Result<(u32, u64), Infallible> {
        self.count += 1;
        Ok((self.generation, self.count))
    }
}

struct Crash(&'static str);
impl Message for Crash {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Crash> for Worker {
    async fn handle(&mut self, Crash(why): Crash, _: &mut Context<Self>) -> Result<(), Infallible> {
        tokio::task::yield_now().await; // panic after an await: inside the async part
        panic!("{why}");
    }
}

fn factory() -> impl FnMut() -> Worker + Send + 'static {
    let mut generation = 0;
    move || {
        generation += 1;
        Worker {
            generation,
            count: 0,
        }
    }
}

/// Forwards every supervision event to the test, and can spawn children on request.
struct Supervisor {
    events: mpsc::UnboundedSender<SupervisionEvent>,
    escalate: bool,
}
impl Actor for Supervisor {
    async fn on_event(&mut self, ctx: &mut Context<Self>, event: SupervisionEvent) {
        if self.escalate
            && let SupervisionEvent::ChildStopped {
                reason: StopReason::RestartLimit(_),
                ..
            } = &event
        {
            ctx.escalate("child gave up");
        }
        let _ = self.events.send(event);
    }
}

struct SpawnWorker {
    urn: &'static str,
    restart: bool,
}
impl Message for SpawnWorker {
    type Response = ActorRef<Worker>;
    type Error = String;
}
impl Handler<SpawnWorker> for Supervisor {
    async fn handle(
        &mut self,
        msg: SpawnWorker,
        ctx: &mut Context<Self>,
    ) -> Result<ActorRef<Worker>, String> {
        let mut f = factory();
        let b = ctx.build_child(f()).urn(msg.urn);
        let b = if msg.restart {
            b.restart_with(f, RestartLimit::new(2, Duration::from_secs(60)))
        } else {
            b
        };
        b.spawn().await.map_err(|e| e.to_string())
    }
}

struct Watch(DynActorRef);
impl Message for Watch {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Watch> for Supervisor {
    async fn handle(
        &mut self,
        Watch(other): Watch,
        ctx: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        ctx.watch(other);
        Ok(())
    }
}

async fn supervisor(
    system: &ActorSystem,
    strategy: SupervisionStrategy,
) -> (
    ActorRef<Supervisor>,
    mpsc::UnboundedReceiver<SupervisionEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sup = system
        .build(Supervisor {
            events: tx,
            escalate: true,
        })
        .supervision(strategy)
        .spawn()
        .await
        .unwrap();
    (sup, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_reaches_the_asker_and_stops_the_actor_by_default() {
    let system = ActorSystem::new("t");
    let (sup, mut events) = supervisor(&system, SupervisionStrategy::OneForOne).await;
    let w = sup
        .ask(SpawnWorker {
            urn: "w",
            restart: false,
        })
        .await
        .unwrap();
    assert_eq!(
        w.ask(Crash("kaput")).await,
        Err(AskError::Panicked("kaput".into()))
    );
    assert_eq!(
        w.wait_for_stop().await,
        StopReason::Panicked("kaput".into())
    );
    match events.recv().await.unwrap() {
        SupervisionEvent::ChildStopped { id, urn, reason } => {
            assert_eq!(id, w.id());
            assert_eq!(urn.unwrap().as_str(), "w");
            assert_eq!(reason, StopReason::Panicked("kaput".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        sup.is_alive(),
        "a child's panic does not take the parent down"
    );
    assert!(system.lookup("w").is_err());
}

#[tokio::test]
async fn resume_keeps_the_state() {
    let system = ActorSystem::new("t");
    let mut f = factory();
    let w = system
        .build(f())
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    assert_eq!(w.ask(Bump).await, Ok((1, 1)));
    assert!(matches!(
        w.ask(Crash("oops")).await,
        Err(AskError::Panicked(_))
    ));
    assert_eq!(w.ask(Bump).await, Ok((1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_gives_fresh_state_and_keeps_urn_refs_and_mailbox() {
    let system = ActorSystem::new("t");
    let (sup, mut events) = supervisor(&system, SupervisionStrategy::OneForOne).await;
    let w = sup
        .ask(SpawnWorker {
            urn: "w",
            restart: true,
        })
        .await
        .unwrap();
    assert_eq!(w.ask(Bump).await, Ok((1, 1)));
    // Queue a crash and, behind it from the same sender, a bump: the bump survives the restart.
    w.tell(Crash("first")).await.unwrap();
    let (generation, count) = w.ask(Bump).await.unwrap();
    assert_eq!(generation, 2, "fresh state from the factory");
    assert_eq!(count, 1);
    match events.recv().await.unwrap() {
        SupervisionEvent::ChildRestarted { id, panic, .. } => {
            assert_eq!(id, w.id());
            assert_eq!(panic, "first");
        }
        other => panic!("unexpected {other:?}"),
    }
    let by_urn = system.lookup_typed::<Worker>("w").unwrap();
    assert_eq!(by_urn, w, "same actor, same URN");
    assert!(w.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_restart_limit_escalates_to_the_parent() {
    let system = ActorSystem::new("t");
    let (top_tx, mut top_events) = mpsc::unbounded_channel();
    let top = system
        .build(Supervisor {
            events: top_tx,
            escalate: false,
        })
        .spawn()
        .await
        .unwrap();
    // A middle supervisor, child of `top`, that escalates its child's give-up.
    let (mid_tx, mut mid_events) = mpsc::unbounded_channel();
    struct SpawnMid(mpsc::UnboundedSender<SupervisionEvent>);
    impl Message for SpawnMid {
        type Response = ActorRef<Supervisor>;
        type Error = Infallible;
    }
    impl Handler<SpawnMid> for Supervisor {
        async fn handle(
            &mut self,
            SpawnMid(events): SpawnMid,
            ctx: &mut Context<Self>,
        ) -> Result<ActorRef<Supervisor>, Infallible> {
            Ok(ctx
                .spawn_child(Supervisor {
                    events,
                    escalate: true,
                })
                .await
                .unwrap())
        }
    }
    let mid = top.ask(SpawnMid(mid_tx)).await.unwrap();
    let w = mid
        .ask(SpawnWorker {
            urn: "w",
            restart: true,
        })
        .await
        .unwrap();
    for i in 0..3 {
        assert!(
            matches!(w.ask(Crash("again")).await, Err(AskError::Panicked(_))),
            "crash {i}"
        );
    }
    assert_eq!(
        w.wait_for_stop().await,
        StopReason::RestartLimit("again".into())
    );
    let mut saw_limit = false;
    while let Some(e) = mid_events.recv().await {
        if let SupervisionEvent::ChildStopped { reason, .. } = e {
            assert_eq!(reason, StopReason::RestartLimit("again".into()));
            saw_limit = true;
            break;
        }
    }
    assert!(saw_limit);
    assert_eq!(
        mid.wait_for_stop().await,
        StopReason::Escalated("child gave up".into())
    );
    match top_events.recv().await.unwrap() {
        SupervisionEvent::ChildStopped { id, reason, .. } => {
            assert_eq!(id, mid.id());
            assert_eq!(reason, StopReason::Escalated("child gave up".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(top.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_the_siblings() {
    let system = ActorSystem::new("t");
    let (sup, mut events) = supervisor(&system, SupervisionStrategy::OneForAll).await;
    let a = sup
        .ask(SpawnWorker {
            urn: "a",
            restart: true,
        })
        .await
        .unwrap();
    let b = sup
        .ask(SpawnWorker {
            urn: "b",
            restart: true,
        })
        .await
        .unwrap();
    let c = sup
        .ask(SpawnWorker {
            urn: "c",
            restart: false,
        })
        .await
        .unwrap();
    assert_eq!(b.ask(Bump).await, Ok((1, 1)));
    assert!(matches!(
        a.ask(Crash("a fails")).await,
        Err(AskError::Panicked(_))
    ));
    assert!(matches!(
        events.recv().await.unwrap(),
        SupervisionEvent::ChildRestarted { .. }
    ));
    // The sibling's restart is a control message: it overtakes this bump.
    assert_eq!(b.ask(Bump).await, Ok((2, 1)));
    // Not restartable: left alone.
    assert_eq!(c.ask(Bump).await, Ok((1, 1)));
}

#[tokio::test]
async fn watchers_hear_when_an_actor_stops() {
    let system = ActorSystem::new("t");
    let (watcher, mut events) = supervisor(&system, SupervisionStrategy::OneForOne).await;
    let mut f = factory();
    let w = system.build(f()).urn("watched").spawn().await.unwrap();
    watcher.ask(Watch(w.to_dyn())).await.unwrap();
    w.kill();
    match events.recv().await.unwrap() {
        SupervisionEvent::Terminated { id, urn, reason } => {
            assert_eq!(id, w.id());
            assert_eq!(urn.unwrap().as_str(), "watched");
            assert_eq!(reason, StopReason::Killed);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Watching an actor that already stopped reports at once.
    watcher.ask(Watch(w.to_dyn())).await.unwrap();
    assert!(matches!(
        events.recv().await.unwrap(),
        SupervisionEvent::Terminated { .. }
    ));
}

#[tokio::test]
async fn a_restart_policy_without_a_factory_is_refused() {
    let system = ActorSystem::new("t");
    let mut f = factory();
    let spawned = system
        .build(f())
        .on_panic(PanicPolicy::Restart(RestartLimit::default()))
        .spawn()
        .await;
    assert!(matches!(spawned, Err(SpawnError::NoRestartFactory)));
    // With the factory, a later on_panic may still tune the limit.
    let w = system
        .build(f())
        .restart_with(factory(), RestartLimit::new(1, Duration::from_secs(60)))
        .on_panic(PanicPolicy::Restart(RestartLimit::new(
            5,
            Duration::from_secs(60),
        )))
        .spawn()
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            w.ask(Crash("x")).await,
            Err(AskError::Panicked(_))
        ));
    }
    assert!(w.is_alive(), "the limit of 5 from on_panic applies");
}
