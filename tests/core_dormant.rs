//! Core runtime: an actor with nothing to do has no task yet (it starts dormant); whatever
//! its mailbox gets (a message, a stop, a kill, its own notice from `on_start`) starts it,
//! and a runtime that shuts down drops the dormant actors' state as it drops its tasks'. An
//! actor sent nothing for a while hibernates: it has no task again until its next message.

use conclib::error::{BoxError, StopReason};
use conclib::prelude::*;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Sets its flag when dropped (its state went with its run loop).
struct Dropped(Arc<AtomicBool>);
impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Counter {
    seen: usize,
    stopped: Option<Arc<AtomicUsize>>,
    handled: Option<Arc<AtomicUsize>>,
    /// The task each `on_stop` ran in.
    stop_tasks: Option<Arc<std::sync::Mutex<Vec<Option<tokio::task::Id>>>>>,
    #[allow(dead_code)] // held for its drop
    guard: Option<Dropped>,
}

impl Counter {
    /// One whose drop sets `flag`.
    fn guarded(flag: &Arc<AtomicBool>) -> Counter {
        Counter {
            guard: Some(Dropped(flag.clone())),
            ..Counter::default()
        }
    }
}

impl Actor for Counter {
    async fn on_stop(&mut self, _: &mut Context<Self>, _: &StopReason) -> Result<(), BoxError> {
        if let Some(s) = &self.stopped {
            s.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(t) = &self.stop_tasks {
            t.lock().unwrap().push(tokio::task::try_id());
        }
        Ok(())
    }
}

struct Get;
impl Message for Get {
    type Response = usize;
    type Error = Infallible;
}
impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &mut Context<Self>) -> Result<usize, Infallible> {
        self.seen += 1;
        if let Some(h) = &self.handled {
            h.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self.seen)
    }
}

/// Waits for an actor's stop, ten seconds at most.
async fn promptly(stop: impl std::future::Future<Output = StopReason>) -> StopReason {
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .expect("stopped in time")
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (ten seconds at most) until the runtime has no more tasks than `before`: tasks end
/// in polls of their own, and no event says when. Fails with how many are over, and `what`.
async fn tasks_back_to(before: usize, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive_tasks() > before {
        assert!(
            std::time::Instant::now() < deadline,
            "{} {what}",
            alive_tasks() - before
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_actor_has_no_task_until_it_has_something_to_do() {
    let system = ActorSystem::new("t");
    // The first spawn of a system also starts its keeper tasks (one a worker).
    let first = system.spawn(Counter::default()).await.unwrap();
    let before = alive_tasks();
    let mut actors = Vec::new();
    for _ in 0..100 {
        actors.push(system.spawn(Counter::default()).await.unwrap());
    }
    assert_eq!(alive_tasks(), before, "100 idle actors, no task");
    assert_eq!(actors[7].ask(Get).await.unwrap(), 1);
    assert_eq!(alive_tasks(), before + 1, "the asked one has its task");
    assert_eq!(actors[7].ask(Get).await.unwrap(), 2);
    assert_eq!(first.ask(Get).await.unwrap(), 1);
    assert_eq!(alive_tasks(), before + 2);
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dormant_actor_stops_and_is_killed_like_any_other() {
    let system = ActorSystem::new("t");
    let stopped = Arc::new(AtomicUsize::new(0));
    let make = || Counter {
        stopped: Some(stopped.clone()),
        ..Counter::default()
    };
    let a = system.spawn(make()).await.unwrap();
    a.stop();
    assert_eq!(promptly(a.wait_for_stop()).await, StopReason::Normal);
    assert_eq!(stopped.load(Ordering::SeqCst), 1, "on_stop ran");
    let b = system.spawn(make()).await.unwrap();
    b.kill();
    assert_eq!(promptly(b.wait_for_stop()).await, StopReason::Killed);
    // Told, then stopped (its task may not have run yet): the message is handled first.
    let handled = Arc::new(AtomicUsize::new(0));
    let c = system
        .spawn(Counter {
            handled: Some(handled.clone()),
            ..make()
        })
        .await
        .unwrap();
    c.tell(Get).await.unwrap();
    c.stop();
    assert_eq!(promptly(c.wait_for_stop()).await, StopReason::Normal);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    assert_eq!(stopped.load(Ordering::SeqCst), 3);
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// Sends itself a message in `on_start`: it has something to do before anyone else writes.
struct Greeter(Option<tokio::sync::oneshot::Sender<()>>);
struct Hello;
impl Message for Hello {
    type Response = ();
    type Error = Infallible;
}
impl Actor for Greeter {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.notify(Hello).map_err(|_| "stopping")?;
        Ok(())
    }
}
impl Handler<Hello> for Greeter {
    async fn handle(&mut self, _: Hello, _: &mut Context<Self>) -> Result<(), Infallible> {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        Ok(())
    }
}

/// Asks to stop in `on_start` (not through its mailbox).
struct Quitter;
impl Actor for Quitter {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.stop_with(StopReason::Escalated("done at once".into()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_on_start_leaves_to_do_starts_the_actor() {
    let system = ActorSystem::new("t");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _greeter = system.spawn(Greeter(Some(tx))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the message it sent itself in on_start was handled")
        .unwrap();
    let quitter = system.spawn(Quitter).await.unwrap();
    assert_eq!(
        promptly(quitter.wait_for_stop()).await,
        StopReason::Escalated("done at once".into())
    );
}

#[test]
fn a_runtime_that_shuts_down_drops_its_dormant_actors() {
    let system = ActorSystem::new("t");
    for round in 0..2 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (idle, woken) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        runtime.block_on(async {
            let a = system.spawn(Counter::guarded(&idle)).await.unwrap();
            let b = system.spawn(Counter::guarded(&woken)).await.unwrap();
            assert_eq!(b.ask(Get).await.unwrap(), 1);
            drop(a);
        });
        assert!(!idle.load(Ordering::SeqCst) && !woken.load(Ordering::SeqCst));
        drop(runtime);
        assert!(
            woken.load(Ordering::SeqCst),
            "round {round}: the task's actor was dropped"
        );
        assert!(
            idle.load(Ordering::SeqCst),
            "round {round}: the dormant actor was dropped with its runtime"
        );
    }
}

/// One system, two runtimes alive at once (a system shared by tests, each with its runtime):
/// the end of one drops its own dormant actors and leaves the other's alone.
#[test]
fn a_runtime_s_end_leaves_another_runtime_s_dormant_actors_alone() {
    let system = ActorSystem::new("t");
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let (first, second) = (runtime(), runtime());
    let spawn_on = |rt: &tokio::runtime::Runtime, flag: &Arc<AtomicBool>| {
        rt.block_on(system.spawn(Counter::guarded(flag))).unwrap()
    };
    let (on_first, on_second) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let _a = spawn_on(&first, &on_first);
    let b = spawn_on(&second, &on_second);
    drop(first);
    assert!(
        on_first.load(Ordering::SeqCst),
        "the first runtime's dormant actor went with it"
    );
    assert!(
        !on_second.load(Ordering::SeqCst),
        "the second runtime's is still there"
    );
    assert_eq!(second.block_on(b.ask(Get)).unwrap(), 1, "and answers");
    drop(second);
    assert!(on_second.load(Ordering::SeqCst));
}

/// Its `on_stop` waits (a timer) before it counts.
struct SlowStop(Arc<AtomicUsize>);
impl Actor for SlowStop {
    async fn on_stop(&mut self, _: &mut Context<Self>, _: &StopReason) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Spawns a child in `on_start` (and shows it): its stop waits for the child's.
struct Parent(Arc<std::sync::Mutex<Option<ActorRef<Counter>>>>);
impl Actor for Parent {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let child = ctx.spawn_child(Counter::default()).await?;
        *self.0.lock().unwrap() = Some(child);
        Ok(())
    }
}

/// Its `on_stop` panics.
struct PanicOnStop;
impl Actor for PanicOnStop {
    async fn on_stop(&mut self, _: &mut Context<Self>, _: &StopReason) -> Result<(), BoxError> {
        panic!("on_stop went wrong");
    }
}

/// On one thread, a dormant actor's stop runs in the system's keeper task (no task of its
/// own); what waits there (a timer in `on_stop`, children to stop) moves to a task and
/// finishes; a panic in `on_stop` is the actor's stop reason, as anywhere.
#[tokio::test]
async fn on_one_thread_a_dormant_actor_s_stop_needs_no_task() {
    a_dormant_actor_s_stop_needs_no_task(1).await;
}

/// On two workers, the stops run in the system's two keepers (one a worker), in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_workers_a_dormant_actor_s_stop_needs_no_task() {
    a_dormant_actor_s_stop_needs_no_task(2).await;
}

async fn a_dormant_actor_s_stop_needs_no_task(workers: usize) {
    let system = ActorSystem::new("t");
    let stopped = Arc::new(AtomicUsize::new(0));
    let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let make = || Counter {
        stopped: Some(stopped.clone()),
        stop_tasks: Some(tasks.clone()),
        ..Counter::default()
    };
    let mut actors = Vec::new();
    for _ in 0..8 {
        actors.push(system.spawn(make()).await.unwrap());
    }
    for (i, a) in actors.iter().enumerate() {
        if i % 2 == 0 { a.stop() } else { a.kill() }
    }
    for (i, a) in actors.iter().enumerate() {
        let expected = if i % 2 == 0 {
            StopReason::Normal
        } else {
            StopReason::Killed
        };
        assert_eq!(promptly(a.wait_for_stop()).await, expected);
    }
    assert_eq!(stopped.load(Ordering::SeqCst), 8, "every on_stop ran");
    let tasks = tasks.lock().unwrap().clone();
    assert!(tasks.iter().all(Option::is_some), "in a task");
    let distinct: std::collections::HashSet<_> = tasks.iter().collect();
    assert_eq!(
        distinct.len(),
        workers,
        "eight stops in the keepers, one a worker: {tasks:?}"
    );

    let slow = system.spawn(SlowStop(stopped.clone())).await.unwrap();
    slow.stop();
    assert_eq!(promptly(slow.wait_for_stop()).await, StopReason::Normal);
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        9,
        "the waiting on_stop finished"
    );

    let shown = Arc::new(std::sync::Mutex::new(None));
    let parent = system.spawn(Parent(shown.clone())).await.unwrap();
    let child = shown.lock().unwrap().take().expect("its child");
    parent.stop();
    assert_eq!(promptly(parent.wait_for_stop()).await, StopReason::Normal);
    assert!(!child.is_alive(), "the child stopped first");

    let panicky = system.spawn(PanicOnStop).await.unwrap();
    panicky.kill();
    assert!(matches!(
        promptly(panicky.wait_for_stop()).await,
        StopReason::StopFailed { .. }
    ));
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// A system made, used and dropped on a runtime that lives on leaves no task there: its
/// keepers (one a worker) end with it.
/// With the system's sweeper every 20 ms, actors asked and then left alone give their tasks
/// back (within two periods and the sweep), and come back with their state when asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_left_alone_hibernate_and_come_back_with_their_state() {
    let system = ActorSystem::new("t");
    let first = system.spawn(Counter::default()).await.unwrap();
    let before = alive_tasks();
    let mut actors = Vec::new();
    for _ in 0..50 {
        let actor = system.spawn(Counter::default()).await.unwrap();
        assert_eq!(actor.ask(Get).await.unwrap(), 1);
        actors.push(actor);
    }
    assert_eq!(alive_tasks(), before + 50, "each asked actor has its task");
    system.set_hibernate_after(Some(Duration::from_millis(20)));
    tasks_back_to(before, "idle actors kept their tasks").await;
    system.set_hibernate_after(None);
    for actor in &actors {
        assert_eq!(actor.ask(Get).await.unwrap(), 2, "its state stayed");
    }
    assert_eq!(alive_tasks(), before + 50);
    assert_eq!(first.ask(Get).await.unwrap(), 1);
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

/// Senders on both workers tell and ask 40 actors in bursts with pauses, while the system
/// sweeps every millisecond: actors hibernate and wake again many times, hand-overs race
/// sends, and every message is handled once (each actor's count is what was sent to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_actors_hibernating_all_the_time_are_all_handled() {
    const ACTORS: usize = 40;
    const SENDERS: u64 = 4;
    const MESSAGES: usize = 1_500;
    let system = ActorSystem::new("t");
    let mut actors = Vec::new();
    for _ in 0..ACTORS {
        actors.push(system.spawn(Counter::default()).await.unwrap());
    }
    let actors = Arc::new(actors);
    let before = alive_tasks();
    system.set_hibernate_after(Some(Duration::from_millis(1)));
    let sent: Arc<Vec<AtomicUsize>> = Arc::new((0..ACTORS).map(|_| AtomicUsize::new(0)).collect());
    let mut senders = Vec::new();
    for seed in 1..=SENDERS {
        let (actors, sent) = (actors.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            // xorshift: a different, fixed sequence for each sender.
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for _ in 0..MESSAGES {
                let r = next();
                let at = (r % ACTORS as u64) as usize;
                if r & 0x100 == 0 {
                    actors[at].tell(Get).await.unwrap();
                } else {
                    actors[at].ask(Get).await.unwrap();
                }
                sent[at].fetch_add(1, Ordering::SeqCst);
                match r >> 60 {
                    // Now and then a pause of a few sweeps: idle actors hibernate.
                    0 => tokio::time::sleep(Duration::from_millis(3)).await,
                    1..=4 => tokio::task::yield_now().await,
                    _ => {}
                }
            }
        }));
    }
    // Meanwhile, while every sender runs, the actors' tasks (the runtime's, less the
    // senders' and those before): their number falls only when actors hibernate.
    let mut last = 0usize;
    let mut fell = 0usize;
    while senders.iter().all(|s| !s.is_finished()) {
        let awake = alive_tasks().saturating_sub(before + senders.len());
        fell += last.saturating_sub(awake);
        last = awake;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    system.set_hibernate_after(None);
    for (actor, sent) in actors.iter().zip(sent.iter()) {
        // This ask is one more message.
        assert_eq!(
            actor.ask(Get).await.unwrap(),
            sent.load(Ordering::SeqCst) + 1
        );
    }
    assert!(fell > 0, "no actor hibernated while the senders ran");
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_system_leaves_no_keeper_behind() {
    let before = alive_tasks();
    for _ in 0..5 {
        let system = ActorSystem::new("t");
        let a = system.spawn(Counter::default()).await.unwrap();
        assert_eq!(a.ask(Get).await.unwrap(), 1);
        let b = system.spawn(Counter::default()).await.unwrap();
        assert!(
            alive_tasks() >= before + 3,
            "two keepers and the asked actor's task"
        );
        a.stop();
        b.stop();
        promptly(a.wait_for_stop()).await;
        promptly(b.wait_for_stop()).await;
        drop((a, b, system));
    }
    tasks_back_to(before, "tasks left behind").await;
}

/// Awaited outside any tokio runtime, `spawn` says so (a typed error, no panic) and leaves
/// nothing behind: the URN stays free.
#[test]
fn spawn_outside_a_runtime_is_a_typed_error() {
    let system = ActorSystem::new("t");
    let mut spawn = std::pin::pin!(system.build(Counter::default()).urn("counter:1").spawn());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match spawn.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(conclib::error::SpawnError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {:?}", other.map(|r| r.map(|_| ()))),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let again = system
            .build(Counter::default())
            .urn("counter:1")
            .spawn()
            .await;
        assert!(again.is_ok(), "the URN was not taken by the failed spawn");
    });
}
