//! Hibernation: sweeps, dormant actors woken, stopped and killed, timers and streams kept.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::actor::Actor;
use crate::context::Context;
use crate::error::StopReason;
use crate::handler::Handler;
use crate::message::Message;
use crate::send::actor_ref::ActorRef;
use crate::system::ActorSystem;
use crate::system::sweep;
use crate::test_probe::until;
use crate::test_probe::{sweep_until, sweep_until_dormant};

/// Adds to its total and answers it.
struct Counter {
    total: u64,
    stopped: Arc<AtomicBool>,
}
impl Actor for Counter {
    async fn on_stop(
        &mut self,
        _: &mut Context<Self>,
        _: &StopReason,
    ) -> Result<(), crate::error::BoxError> {
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Panics in its handler.
struct Panic;
impl Message for Panic {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Panic> for Counter {
    async fn handle(&mut self, _: Panic, _: &mut Context<Self>) -> Result<(), Infallible> {
        panic!("asked to");
    }
}

/// Says when it is dropped.
struct Held(Arc<AtomicBool>);
impl Actor for Held {}
impl Handler<Add> for Held {
    async fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
        Ok(msg.0)
    }
}
impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Add(u64);
impl Message for Add {
    type Response = u64;
    type Error = Infallible;
}
impl Handler<Add> for Counter {
    async fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
        self.total += msg.0;
        Ok(self.total)
    }
}

/// Says it started, then waits in its handler for the sender it is given.
struct Wait(
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);
impl Message for Wait {
    type Response = u64;
    type Error = Infallible;
}
impl Handler<Wait> for Counter {
    async fn handle(&mut self, msg: Wait, _: &mut Context<Self>) -> Result<u64, Infallible> {
        let _ = msg.0.send(());
        let _ = msg.1.await;
        Ok(self.total)
    }
}

/// A system whose own sweeper never runs: the tests sweep.
async fn counter() -> (ActorSystem, ActorRef<Counter>, Arc<AtomicBool>) {
    let system = ActorSystem::new("hibernation");
    system.set_hibernate_after(None);
    let stopped = Arc::new(AtomicBool::new(false));
    let counter = Counter {
        total: 0,
        stopped: stopped.clone(),
    };
    let actor = system.spawn(counter).await.unwrap();
    (system, actor, stopped)
}

/// Waits (bounded) until `actor` is dormant or not, as `dormant` says: the task that
/// hibernates ends in a poll of its own after the sweep woke it, and no event says when.
async fn until_dormant(actor: &ActorRef<Counter>, dormant: bool) {
    let what = format!("the actor never became dormant={dormant}");
    until(&what, || actor.cell.mailbox.is_dormant() == dormant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_hibernates_and_wakes_with_its_state() {
    let (system, actor, _) = counter().await;
    // Dormant until its first message, awake after it.
    assert!(actor.cell.mailbox.is_dormant());
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 1);
    until_dormant(&actor, false).await;
    let first = actor.cell.core.task_id();
    assert!(first.is_some());
    // The first sweep finds the ask sent since the sweep before: nothing to do.
    assert_eq!(sweep(&system).await, 0);
    assert!(!actor.cell.mailbox.is_dormant());
    // A later one finds nothing sent since the one before.
    sweep_until_dormant(&system, &actor).await;
    assert_eq!(
        actor.cell.core.task_id(),
        None,
        "the ended task's handle was kept"
    );
    // Its next message spawns a task again, and finds its state.
    assert_eq!(actor.ask(Add(2)).await.unwrap(), 3);
    assert_ne!(actor.cell.core.task_id(), first);
    until_dormant(&actor, false).await;
    // And it hibernates again.
    assert_eq!(sweep(&system).await, 0);
    sweep_until_dormant(&system, &actor).await;
    assert_eq!(actor.ask(Add(3)).await.unwrap(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_sent_mail_between_sweeps_stays_awake() {
    let (system, actor, _) = counter().await;
    for i in 1..=20 {
        assert_eq!(actor.ask(Add(1)).await.unwrap(), i);
        assert_eq!(sweep(&system).await, 0);
    }
    assert!(!actor.cell.mailbox.is_dormant());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_whose_handler_waits_does_not_hibernate() {
    let (system, actor, _) = counter().await;
    actor.ask(Add(5)).await.unwrap();
    let task = actor.cell.core.task_id();
    assert!(task.is_some());
    let (go, wait) = tokio::sync::oneshot::channel();
    let (started, handling) = tokio::sync::oneshot::channel();
    let answer = tokio::spawn({
        let actor = actor.clone();
        async move { actor.ask(Wait(started, wait)).await }
    });
    handling.await.unwrap();
    // The handler took the message from a lane of one, with the mailbox's waker
    // registered for mail: the second sweep asks (and wakes the waiting handler).
    assert_eq!(sweep(&system).await, 0);
    assert_eq!(sweep(&system).await, 1);
    assert!(!actor.cell.mailbox.is_dormant());
    go.send(()).unwrap();
    assert_eq!(answer.await.unwrap().unwrap(), 5);
    // Done waiting, it hibernates only once a sweep finds it waiting for mail: the same
    // task handles the next message.
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 6);
    assert_eq!(
        actor.cell.core.task_id(),
        task,
        "it hibernated after the handler"
    );
    sweep_until_dormant(&system, &actor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_actor_stops_and_is_killed_as_a_dormant_one() {
    for kill in [false, true] {
        let (system, actor, stopped) = counter().await;
        actor.ask(Add(1)).await.unwrap();
        sweep_until_dormant(&system, &actor).await;
        if kill {
            actor.kill();
            assert_eq!(actor.wait_for_stop().await, StopReason::Killed);
        } else {
            actor.stop();
            assert_eq!(actor.wait_for_stop().await, StopReason::Normal);
        }
        assert!(stopped.load(Ordering::SeqCst), "on_stop ran");
        system.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Messages sent from another thread as the actor hibernates: each is handled, whether
/// it comes before the sweep, between the sweep and the task's end, or after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_racing_a_hibernation_are_all_handled() {
    let (system, actor, _) = counter().await;
    let before = crate::run::dormant::HIBERNATED.load(Ordering::Relaxed);
    let mut expected = 0;
    for round in 0..300u64 {
        expected += 1;
        assert_eq!(actor.ask(Add(1)).await.unwrap(), expected);
        sweep(&system).await;
        // The second sweep asks it to hibernate; a tell races it from another worker,
        // after a number of yields that moves with the round.
        let sender = tokio::spawn({
            let actor = actor.clone();
            async move {
                for _ in 0..round % 7 {
                    tokio::task::yield_now().await;
                }
                actor.tell(Add(1)).await.unwrap();
            }
        });
        sweep(&system).await;
        sender.await.unwrap();
        expected += 1;
    }
    assert_eq!(actor.ask(Add(0)).await.unwrap(), expected);
    let hibernated = crate::run::dormant::HIBERNATED.load(Ordering::Relaxed) - before;
    assert!(hibernated > 0, "no round hibernated");
}

/// A message sent just as the run loop is about to be handed over (it has seen the
/// mailbox empty and been asked to hibernate): the mailbox refuses the dormant waker, the
/// run loop goes on in a task of its own at once, and the message is handled with
/// nothing else sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_as_the_task_hands_over_is_handled() {
    let (system, actor, _) = counter().await;
    actor.ask(Add(1)).await.unwrap();
    let at = Arc::as_ptr(&actor.cell).cast::<()>() as usize;
    let sender = actor.clone();
    let raced = Arc::new(AtomicBool::new(false));
    let sent = raced.clone();
    *crate::run::dormant::BEFORE_HIBERNATING.lock().unwrap() = Some((
        at,
        Box::new(move || {
            if !sent.swap(true, Ordering::SeqCst) {
                sender.try_tell(Add(10)).expect("room in the mailbox");
            }
        }),
    ));
    sweep_until(&system, "the task never came to hand over", || {
        raced.load(Ordering::SeqCst)
    })
    .await;
    let handled = tokio::time::timeout(Duration::from_secs(5), async {
        while actor.cell.core.stats().handled.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    *crate::run::dormant::BEFORE_HIBERNATING.lock().unwrap() = None;
    assert!(
        handled.is_ok(),
        "the message sent during the hand-over waits"
    );
    assert_eq!(actor.ask(Add(0)).await.unwrap(), 11);
}

/// What the run loop keeps besides the actor and its context (its panic policy and
/// restart factory) goes with it into hibernation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_actor_restarts_with_its_factory() {
    let system = ActorSystem::new("hibernation");
    system.set_hibernate_after(None);
    let fresh = || Counter {
        total: 100,
        stopped: Arc::default(),
    };
    let actor = system
        .build(Counter {
            total: 0,
            stopped: Arc::default(),
        })
        .restart_with(fresh, crate::supervision::RestartLimit::default())
        .spawn()
        .await
        .unwrap();
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 1);
    sweep_until_dormant(&system, &actor).await;
    assert!(matches!(
        actor.ask(Panic).await,
        Err(crate::error::AskError::Panicked(_))
    ));
    assert_eq!(
        actor.ask(Add(1)).await.unwrap(),
        101,
        "restarted from its factory"
    );
}

/// A hibernated actor on a runtime that shuts down goes with it, as its task would have
/// (and as a dormant one does): its state is dropped, though its system lives on.
#[test]
fn a_hibernated_actor_is_dropped_with_its_runtime() {
    let dropped = Arc::new(AtomicBool::new(false));
    let system = ActorSystem::new("hibernation");
    system.set_hibernate_after(None);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let actor = system.spawn(Held(dropped.clone())).await.unwrap();
        assert_eq!(actor.ask(Add(7)).await.unwrap(), 7);
        sweep_until_dormant(&system, &actor).await;
    });
    assert!(!dropped.load(Ordering::SeqCst));
    drop(runtime);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the hibernated actor outlived its runtime"
    );
}

/// Keeps a total, sets timers and spawns children; counts what it hears of them.
struct Parent {
    total: u64,
    heard: Arc<std::sync::atomic::AtomicUsize>,
}
impl Actor for Parent {
    async fn on_event(&mut self, _: &mut Context<Self>, _: crate::supervision::SupervisionEvent) {
        self.heard.fetch_add(1, Ordering::SeqCst);
    }
}
impl Handler<Add> for Parent {
    async fn handle(&mut self, msg: Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
        self.total += msg.0;
        Ok(self.total)
    }
}
/// Sends the parent `Add(n)` after the delay given.
struct Later(u64, Duration);
impl Message for Later {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Later> for Parent {
    async fn handle(&mut self, msg: Later, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        ctx.send_after(Add(msg.0), msg.1);
        Ok(())
    }
}
/// Spawns a child.
struct Child;
impl Message for Child {
    type Response = ActorRef<Counter>;
    type Error = crate::error::SpawnError;
}
impl Handler<Child> for Parent {
    async fn handle(
        &mut self,
        _: Child,
        ctx: &mut Context<Self>,
    ) -> Result<ActorRef<Counter>, crate::error::SpawnError> {
        let counter = Counter {
            total: 0,
            stopped: Arc::default(),
        };
        ctx.spawn_child(counter).await
    }
}

/// Its context goes with a hibernating actor: a timer it set fires into it, and it hears
/// of its child's stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_actor_keeps_its_timers_and_hears_its_children() {
    let system = ActorSystem::new("hibernation");
    system.set_hibernate_after(None);
    let heard = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let parent = system
        .spawn(Parent {
            total: 0,
            heard: heard.clone(),
        })
        .await
        .unwrap();
    let child = parent.ask(Child).await.unwrap();
    parent
        .ask(Later(5, Duration::from_millis(500)))
        .await
        .unwrap();
    sweep_until_dormant(&system, &parent).await;
    // The timer's message wakes it.
    until("the timer set before hibernating never fired", || {
        parent.cell.core.stats().handled.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(parent.ask(Add(0)).await.unwrap(), 5);
    // Hibernated again, it hears its child stop.
    sweep_until_dormant(&system, &parent).await;
    child.kill();
    until(
        "the hibernated parent never heard of its child's stop",
        || heard.load(Ordering::SeqCst) > 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_runs_every_period() {
    let system = ActorSystem::new("hibernation");
    system.set_hibernate_after(Some(Duration::from_millis(5)));
    let counter = Counter {
        total: 0,
        stopped: Arc::default(),
    };
    let actor = system.spawn(counter).await.unwrap();
    actor.ask(Add(1)).await.unwrap();
    until_dormant(&actor, true).await;
    assert_eq!(actor.ask(Add(1)).await.unwrap(), 2);
}
