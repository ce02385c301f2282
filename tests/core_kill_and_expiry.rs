//! `kill` interrupts a stuck handler; asks whose asker gave up are never started; a failing
//! `on_stop` is reported; `wait_for_stop` means gone from every view.

mod common;

use common::*;
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Guards a step that must finish promptly: a hang fails the test instead of stalling it.
async fn promptly<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("did not finish promptly")
}

/// An actor whose `Hang` handler awaits forever; it logs its stop and is watched by `Watcher`.
struct Stuck {
    log: Log,
}
impl Actor for Stuck {
    async fn on_stop(
        &mut self,
        _: &mut Context<Self>,
        reason: &StopReason,
    ) -> Result<(), BoxError> {
        self.log.lock().unwrap().push(format!("on_stop {reason}"));
        Ok(())
    }

    async fn handle_request(&mut self, request: RequestEnvelope, ctx: &mut Context<Self>) {
        match request.extract::<Hang>() {
            Ok((msg, responder)) => responder.respond(self.handle(msg, ctx).await),
            Err(request) => request.reject(),
        }
    }
}

/// Tells the test it entered the handler, then never finishes.
struct Hang(Option<oneshot::Sender<()>>);
impl Message for Hang {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Hang> for Stuck {
    async fn handle(&mut self, mut msg: Hang, _: &mut Context<Self>) -> Result<(), Infallible> {
        if let Some(entered) = msg.0.take() {
            let _ = entered.send(());
        }
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Watches an actor and forwards its termination to the test.
struct Watcher {
    target: DynActorRef,
    events: mpsc::UnboundedSender<SupervisionEvent>,
}
impl Actor for Watcher {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.watch(self.target.clone());
        Ok(())
    }
    async fn on_event(&mut self, _: &mut Context<Self>, event: SupervisionEvent) {
        let _ = self.events.send(event);
    }
}

async fn stuck_and_watched(
    system: &ActorSystem,
) -> (
    ActorRef<Stuck>,
    Log,
    mpsc::UnboundedReceiver<SupervisionEvent>,
) {
    let log = Log::default();
    let stuck = system.spawn(Stuck { log: log.clone() }).await.unwrap();
    let (events, rx) = mpsc::unbounded_channel();
    system
        .spawn(Watcher {
            target: stuck.to_dyn(),
            events,
        })
        .await
        .unwrap();
    (stuck, log, rx)
}

/// Queues an ask of `msg` behind what `actor` is busy with (a timeout no test reaches);
/// returns once it is in the mailbox.
async fn queue_behind<A, M>(
    actor: &ActorRef<A>,
    msg: M,
) -> tokio::task::JoinHandle<Result<M::Response, AskError<M::Error>>>
where
    A: Handler<M>,
    M: Message,
{
    let queued = tokio::spawn({
        let actor = actor.clone();
        async move { actor.ask(msg).timeout(Duration::from_secs(3600)).await }
    });
    while actor.mailbox_len() < 1 {
        tokio::task::yield_now().await;
    }
    queued
}

/// A watcher of `target` in a system of its own (which outlives a shutdown of `target`'s).
async fn watched_from_elsewhere(
    target: DynActorRef,
) -> (ActorSystem, mpsc::UnboundedReceiver<SupervisionEvent>) {
    let elsewhere = ActorSystem::new("elsewhere");
    let (events, watched) = mpsc::unbounded_channel();
    elsewhere.spawn(Watcher { target, events }).await.unwrap();
    (elsewhere, watched)
}

#[tokio::test]
async fn kill_interrupts_a_handler_stuck_in_an_await() {
    let system = ActorSystem::new("t");
    let (stuck, log, mut events) = stuck_and_watched(&system).await;
    let (entered, is_in) = oneshot::channel();
    let ask = tokio::spawn({
        let stuck = stuck.clone();
        async move {
            stuck
                .ask(Hang(Some(entered)))
                .timeout(Duration::from_secs(3600))
                .await
        }
    });
    is_in.await.unwrap();
    // Queued behind the stuck handler: dropped by the kill, its asker told at once.
    let queued = queue_behind(&stuck, Hang(None)).await;
    stuck.kill();
    assert_eq!(promptly(ask).await.unwrap(), Err(AskError::ActorStopped));
    assert_eq!(promptly(queued).await.unwrap(), Err(AskError::ActorStopped));
    assert_eq!(promptly(stuck.wait_for_stop()).await, StopReason::Killed);
    assert_eq!(log_entries(&log), vec!["on_stop killed".to_owned()]);
    match promptly(events.recv()).await.unwrap() {
        SupervisionEvent::Terminated { id, reason, .. } => {
            assert_eq!(id, stuck.id());
            assert_eq!(reason, StopReason::Killed);
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(system.actors().iter().all(|a| a.id != stuck.id()));
}

#[tokio::test]
async fn kill_interrupts_a_stuck_dynamic_request_with_actor_stopped() {
    let system = ActorSystem::new("t");
    let (stuck, _log, _events) = stuck_and_watched(&system).await;
    let (entered, is_in) = oneshot::channel();
    let dynamic = stuck.to_dyn();
    let ask = tokio::spawn(async move {
        dynamic
            .ask(Hang(Some(entered)))
            .timeout(Duration::from_secs(3600))
            .await
    });
    is_in.await.unwrap();
    stuck.kill();
    // Not `NoResponse`: the request was not dropped by the actor, the actor was killed.
    assert_eq!(promptly(ask).await.unwrap(), Err(AskError::ActorStopped));
    assert_eq!(promptly(stuck.wait_for_stop()).await, StopReason::Killed);
}

#[tokio::test]
async fn a_killed_child_tells_its_parent() {
    struct Parent {
        events: mpsc::UnboundedSender<SupervisionEvent>,
        child: Option<oneshot::Sender<ActorRef<Stuck>>>,
    }
    impl Actor for Parent {
        async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
            let child = ctx
                .spawn_child(Stuck {
                    log: Log::default(),
                })
                .await?;
            let _ = self.child.take().unwrap().send(child);
            Ok(())
        }
        async fn on_event(&mut self, _: &mut Context<Self>, event: SupervisionEvent) {
            let _ = self.events.send(event);
        }
    }
    let system = ActorSystem::new("t");
    let (events, mut rx) = mpsc::unbounded_channel();
    let (child_tx, child_rx) = oneshot::channel();
    let parent = system
        .spawn(Parent {
            events,
            child: Some(child_tx),
        })
        .await
        .unwrap();
    let child = child_rx.await.unwrap();
    let (entered, is_in) = oneshot::channel();
    child.tell(Hang(Some(entered))).await.unwrap();
    is_in.await.unwrap();
    child.kill();
    match promptly(rx.recv()).await.unwrap() {
        SupervisionEvent::ChildStopped { id, reason, .. } => {
            assert_eq!(id, child.id());
            assert_eq!(reason, StopReason::Killed);
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(parent.is_alive());
}

#[tokio::test]
async fn asks_whose_asker_gave_up_are_never_started() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(16)).await;

    // Timed out while queued behind the blocked handler.
    assert_eq!(
        r.ask(Record(1)).timeout(Duration::from_millis(20)).await,
        Err(AskError::Timeout(Duration::from_millis(20)))
    );
    // Queued, then its future dropped (the first poll queues it; the zero deadline drops it).
    assert!(
        tokio::time::timeout(Duration::ZERO, r.ask(Record(2)))
            .await
            .is_err()
    );
    // The same through a dynamic ref.
    assert_eq!(
        r.to_dyn()
            .ask(Record(3))
            .timeout(Duration::from_millis(20))
            .await,
        Err(AskError::Timeout(Duration::from_millis(20)))
    );
    // Tells are always handled, asks still waited for too.
    r.tell(Record(4)).await.unwrap();
    let waiting = tokio::spawn({
        let r = r.clone();
        async move { r.ask(Record(5)).timeout(Duration::from_secs(3600)).await }
    });
    while r.mailbox_len() < 5 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    assert_eq!(promptly(waiting).await.unwrap(), Ok(()));
    assert_eq!(r.ask(Seen).await.unwrap(), vec![4, 5]);
    assert_eq!(r.asks_skipped(), 3);
    let info = system
        .actors()
        .into_iter()
        .find(|a| a.id == r.id())
        .unwrap();
    assert_eq!(info.asks_skipped, 3);
}

/// Its `on_stop` fails or panics, as told.
struct BadStop {
    panic: bool,
}
impl Actor for BadStop {
    async fn on_stop(&mut self, _: &mut Context<Self>, _: &StopReason) -> Result<(), BoxError> {
        if self.panic {
            panic!("on_stop exploded");
        }
        Err("disk full".into())
    }
}

#[tokio::test]
async fn an_error_or_panic_in_on_stop_is_the_stop_reason() {
    let system = ActorSystem::new("t");
    let failing = system.spawn(BadStop { panic: false }).await.unwrap();
    let (events, mut rx) = mpsc::unbounded_channel();
    system
        .spawn(Watcher {
            target: failing.to_dyn(),
            events,
        })
        .await
        .unwrap();
    failing.stop();
    let expected = StopReason::StopFailed {
        reason: Box::new(StopReason::Normal),
        error: "disk full".to_owned(),
    };
    assert_eq!(promptly(failing.wait_for_stop()).await, expected);
    assert!(!expected.is_normal());
    match promptly(rx.recv()).await.unwrap() {
        SupervisionEvent::Terminated { reason, .. } => assert_eq!(reason, expected),
        other => panic!("unexpected event {other:?}"),
    }

    let panicking = system.spawn(BadStop { panic: true }).await.unwrap();
    panicking.kill();
    match promptly(panicking.wait_for_stop()).await {
        StopReason::StopFailed { reason, error } => {
            assert_eq!(*reason, StopReason::Killed);
            assert!(error.contains("on_stop exploded"), "{error}");
        }
        other => panic!("unexpected reason {other:?}"),
    }
}

/// A parent that reports how many children its context lists.
struct Nest;
impl Actor for Nest {
    async fn handle_request(&mut self, request: RequestEnvelope, ctx: &mut Context<Self>) {
        match request.extract::<Children>() {
            Ok((_, responder)) => responder.respond(Ok(ctx.children().len())),
            Err(request) => request.reject(),
        }
    }
}
struct Children;
impl Message for Children {
    type Response = usize;
    type Error = Infallible;
}
impl Handler<Children> for Nest {
    async fn handle(&mut self, _: Children, ctx: &mut Context<Self>) -> Result<usize, Infallible> {
        Ok(ctx.children().len())
    }
}
struct Adopt(String, oneshot::Sender<ActorRef<Recorder>>);
impl Message for Adopt {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Adopt> for Nest {
    async fn handle(&mut self, msg: Adopt, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        let child = ctx
            .build_child(Recorder::default())
            .urn(msg.0)
            .spawn()
            .await
            .unwrap();
        let _ = msg.1.send(child);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_wait_for_stop_returns_every_view_agrees_the_actor_is_gone() {
    let system = ActorSystem::new("t");
    let nest = system.spawn(Nest).await.unwrap();
    let nest = Arc::new(nest);
    for i in 0..200 {
        let urn = format!("child:{i}");
        let (tx, rx) = oneshot::channel();
        nest.tell(Adopt(urn.clone(), tx)).await.unwrap();
        let child = rx.await.unwrap();
        if i % 2 == 0 {
            child.stop();
        } else {
            child.kill();
        }
        promptly(child.wait_for_stop()).await;
        assert!(system.lookup(&urn).is_err(), "lookup still finds {urn}");
        assert!(
            system.actors().iter().all(|a| a.id != child.id()),
            "actors() still lists {urn}"
        );
        assert!(
            system.all_actors().iter().all(|a| a.id() != child.id()),
            "all_actors() still lists {urn}"
        );
        assert!(
            system
                .named_actors()
                .iter()
                .all(|a| a.urn().map(ToString::to_string) != Some(urn.clone())),
            "named_actors() still lists {urn}"
        );
        assert_eq!(
            nest.ask(Children).await.unwrap(),
            0,
            "children still list {urn}"
        );
    }
}

/// Holds its first message until the gate opens, then records jobs.
#[actor]
#[derive(Default)]
struct Jobs {
    done: Vec<u64>,
}

#[actor]
impl Jobs {
    #[handle]
    async fn hold(&mut self, gate: Arc<tokio::sync::Notify>) {
        gate.notified().await;
    }

    #[handle]
    fn job(&mut self, n: u64) -> u64 {
        self.done.push(n);
        n * 2
    }

    #[handle]
    fn done(&mut self) -> Vec<u64> {
        self.done.clone()
    }
}

/// Queues `Job(n)` with a callback that forwards its answer to the returned receiver.
async fn queue_job(
    jobs: &DynActorRef,
    n: u64,
) -> (
    Result<AskHandle, AskError<ErasedMessage>>,
    oneshot::Receiver<Result<u64, String>>,
) {
    let (tx, rx) = oneshot::channel();
    let handle = jobs
        .erased(
            Job::name(),
            std::any::TypeId::of::<Job>(),
            Box::new(Job { n }),
        )
        .queue_with(move |answer| {
            let _ = tx.send(
                answer
                    .map(|r| *r.downcast::<u64>().unwrap())
                    .map_err(|e| format!("{e:?}")),
            );
        })
        .await;
    (handle, rx)
}

#[tokio::test]
async fn an_ask_queued_with_a_callback_is_answered_once_or_given_up() {
    let system = ActorSystem::new("t");
    let jobs = system.spawn(Jobs::default()).await.unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    jobs.hold(gate.clone()).tell().await.unwrap();
    let dyn_jobs = jobs.to_dyn();

    let (given_up, given_up_rx) = queue_job(&dyn_jobs, 1).await;
    let (kept, kept_rx) = queue_job(&dyn_jobs, 2).await;
    // Given up while queued: never started, its function dropped uncalled.
    given_up.unwrap().give_up();
    gate.notify_one();
    assert_eq!(promptly(kept_rx).await.unwrap(), Ok(4));
    assert!(
        given_up_rx.await.is_err(),
        "a given-up ask's function is never called"
    );
    assert_eq!(jobs.done().await.unwrap(), vec![2]);
    assert_eq!(jobs.asks_skipped(), 1);
    // Giving up after the answer changes nothing.
    kept.unwrap().give_up();

    // Queued behind a held handler, then the actor is killed: the function hears it.
    let gate = Arc::new(tokio::sync::Notify::new());
    jobs.hold(gate).tell().await.unwrap();
    let (queued, queued_rx) = queue_job(&dyn_jobs, 3).await;
    assert!(queued.is_ok());
    jobs.kill();
    let answer = promptly(queued_rx).await.unwrap();
    assert_eq!(answer, Err("ActorStopped".to_owned()));
    promptly(jobs.wait_for_stop()).await;

    // Refused at once by a stopped actor: an error, and the function is not called.
    let (refused, refused_rx) = queue_job(&dyn_jobs, 4).await;
    assert!(matches!(refused, Err(AskError::ActorStopped)));
    assert!(refused_rx.await.is_err());
}

/// Takes each request's responder and waits until nobody waits for the answer, as a relay to
/// another process does before cancelling the work there.
struct Relay {
    gave_up: mpsc::UnboundedSender<&'static str>,
}
impl Actor for Relay {
    async fn handle_request(&mut self, request: RequestEnvelope, _: &mut Context<Self>) {
        let name = request.message_name();
        let (_message, mut responder) = request.into_erased();
        responder.closed().await;
        let _ = self.gave_up.send(name);
    }
}

#[tokio::test]
async fn giving_up_a_callback_ask_wakes_the_responder_waiting_for_it() {
    let system = ActorSystem::new("t");
    let (tx, mut gave_up) = mpsc::unbounded_channel();
    let relay = system.spawn(Relay { gave_up: tx }).await.unwrap().to_dyn();
    let (called_tx, called) = oneshot::channel::<()>();
    let handle = relay
        .erased("job", std::any::TypeId::of::<u64>(), Box::new(1u64))
        .queue_with(move |_| {
            let _ = called_tx.send(());
        })
        .await
        .unwrap();
    // The handler is waiting in `closed()` once the actor took the request: give it up then.
    while relay.mailbox_len() > 0 {
        tokio::task::yield_now().await;
    }
    handle.give_up();
    assert_eq!(promptly(gave_up.recv()).await, Some("job"));
    assert!(
        called.await.is_err(),
        "a given-up ask's function is never called"
    );
}

/// Reports the trace each request it takes came with, and the current trace its handler
/// runs in (after an `.await`, to see it kept across polls).
struct TraceLog(mpsc::UnboundedSender<Option<String>>);

impl Actor for TraceLog {
    async fn handle_request(&mut self, request: RequestEnvelope, _: &mut Context<Self>) {
        let _ = self.0.send(request.trace().map(|t| t.to_string()));
        tokio::task::yield_now().await;
        let _ = self
            .0
            .send(trace::TraceContext::current().map(|t| t.to_string()));
    }
}

/// `ErasedRequest::send` tells with the request's options: its trace reaches the handler;
/// a stopped actor gives the message back.
#[tokio::test]
async fn an_erased_send_carries_its_trace_and_gives_the_message_back_when_stopped() {
    let system = ActorSystem::new("t");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let log = system.spawn(TraceLog(tx)).await.unwrap().to_dyn();
    let job = || Box::new(7u64) as ErasedMessage;
    let traced = trace::TraceContext::new_root();
    log.erased("job", std::any::TypeId::of::<u64>(), job())
        .trace(Some(traced))
        .send()
        .await
        .unwrap();
    assert_eq!(promptly(seen.recv()).await, Some(Some(traced.to_string())));
    // The handler runs in the message's trace: what it asks of other processes continues it.
    assert_eq!(promptly(seen.recv()).await, Some(Some(traced.to_string())));
    log.tell_erased("job", std::any::TypeId::of::<u64>(), job(), Priority::High)
        .await
        .unwrap();
    assert_eq!(promptly(seen.recv()).await, Some(None));
    // ...and only that message's handler.
    assert_eq!(promptly(seen.recv()).await, Some(None));
    log.stop();
    log.wait_for_stop().await;
    let refused = log
        .erased("job", std::any::TypeId::of::<u64>(), job())
        .send()
        .await;
    match refused {
        Err(SendError::ActorStopped(msg)) => assert_eq!(*msg.downcast::<u64>().unwrap(), 7),
        other => panic!("{other:?}"),
    }
}

/// A full mailbox: `send` with a room timeout gives the message back as `MailboxFull`.
#[tokio::test]
async fn an_erased_send_into_a_full_mailbox_gives_the_message_back() {
    let system = ActorSystem::new("t");
    // The handler is blocked: the one place of the mailbox stays taken once filled.
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(1)).await;
    let dynamic = r.to_dyn();
    let record = |n: u64| {
        dynamic.erased(
            <Record as Message>::name(),
            std::any::TypeId::of::<Record>(),
            Box::new(Record(n)) as ErasedMessage,
        )
    };
    record(1).send().await.unwrap();
    let full = promptly(record(2).room_timeout(Duration::from_millis(20)).send()).await;
    match full {
        Err(SendError::MailboxFull(msg)) => assert_eq!(msg.downcast::<Record>().unwrap().0, 2),
        other => panic!("{other:?}"),
    }
    gate.notify_one();
}

/// An actor whose `on_start` spawns a `Stuck` child (and, with `fail`, then fails); it hands
/// the child's ref out.
struct ParentOfStuck {
    log: Log,
    child: Option<oneshot::Sender<ActorRef<Stuck>>>,
    fail: bool,
}
impl Actor for ParentOfStuck {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let child = ctx
            .spawn_child(Stuck {
                log: self.log.clone(),
            })
            .await?;
        let _ = self.child.take().unwrap().send(child);
        if self.fail {
            return Err("refused after spawning a child".into());
        }
        Ok(())
    }
}

/// `kill` stops now for the whole tree below: a child stuck at an `.await` is killed with
/// its parent, not waited for.
#[tokio::test]
async fn killing_a_parent_kills_its_children_stuck_or_not() {
    let system = ActorSystem::new("t");
    let log = Log::default();
    let (tx, rx) = oneshot::channel();
    let parent = system
        .spawn(ParentOfStuck {
            log: log.clone(),
            child: Some(tx),
            fail: false,
        })
        .await
        .unwrap();
    let child = rx.await.unwrap();
    let (entered, is_in) = oneshot::channel();
    child.tell(Hang(Some(entered))).await.unwrap();
    is_in.await.unwrap();
    parent.kill();
    assert_eq!(promptly(parent.wait_for_stop()).await, StopReason::Killed);
    assert_eq!(promptly(child.wait_for_stop()).await, StopReason::Killed);
    assert_eq!(log_entries(&log), vec!["on_stop killed".to_owned()]);
}

/// A parent whose `on_start` fails after spawning a child: the child stops with it, and a
/// shutdown has nothing left to wait for.
#[tokio::test]
async fn a_child_spawned_in_a_failed_on_start_does_not_outlive_it() {
    let system = ActorSystem::new("t");
    let log = Log::default();
    let (tx, rx) = oneshot::channel();
    let failed = system
        .spawn(ParentOfStuck {
            log: log.clone(),
            child: Some(tx),
            fail: true,
        })
        .await;
    assert!(
        matches!(failed, Err(SpawnError::StartFailed(_))),
        "{failed:?}"
    );
    let child = rx.await.unwrap();
    assert!(!child.is_alive());
    assert_eq!(promptly(child.wait_for_stop()).await, StopReason::Killed);
    assert!(system.actors().is_empty(), "{:?}", system.actors());
    promptly(system.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// Past its timeout, a shutdown kills as `kill` does: the handler waiting is dropped, a
/// queued ask fails at once, `on_stop` runs, a watcher in another system is told.
#[tokio::test]
async fn a_shutdown_past_its_timeout_kills_as_kill_does() {
    let system = ActorSystem::new("t");
    let (stuck, log, _) = stuck_and_watched(&system).await;
    let (_elsewhere, mut watched) = watched_from_elsewhere(stuck.to_dyn()).await;
    let (entered, is_in) = oneshot::channel();
    stuck.tell(Hang(Some(entered))).await.unwrap();
    is_in.await.unwrap();
    let queued = queue_behind(&stuck, Hang(None)).await;
    let timed_out = promptly(system.shutdown(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(timed_out.remaining >= 1, "{timed_out}");
    assert_eq!(promptly(queued).await.unwrap(), Err(AskError::ActorStopped));
    assert_eq!(promptly(stuck.wait_for_stop()).await, StopReason::Killed);
    assert_eq!(log_entries(&log), vec!["on_stop killed".to_owned()]);
    match promptly(watched.recv()).await.unwrap() {
        SupervisionEvent::Terminated { id, reason, .. } => {
            assert_eq!((id, reason), (stuck.id(), StopReason::Killed));
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(system.actors().is_empty());
}

/// Blocks its thread (no `.await`) until the gate's flag is set: what a kill cannot reach.
struct Spinning;
impl Actor for Spinning {}
struct Spin(
    Arc<std::sync::atomic::AtomicBool>,
    Option<oneshot::Sender<()>>,
);
impl Message for Spin {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Spin> for Spinning {
    async fn handle(&mut self, mut msg: Spin, _: &mut Context<Self>) -> Result<(), Infallible> {
        if let Some(entered) = msg.1.take() {
            let _ = entered.send(());
        }
        while !msg.0.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::yield_now();
        }
        Ok(())
    }
}

/// An actor a kill cannot reach (a handler that never awaits) is aborted a moment after the
/// shutdown's timeout: its queued ask fails, its watcher is told, the system is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_aborts_what_a_kill_cannot_reach_and_fails_its_queued_asks() {
    let system = ActorSystem::new("t");
    let spinning = system.spawn(Spinning).await.unwrap();
    let (_elsewhere, mut watched) = watched_from_elsewhere(spinning.to_dyn()).await;
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Frees the spinning thread however the test ends (a failed assertion too): the
    // runtime's end waits for it.
    struct Release(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Release);
        }
    }
    let _release = Release(release.clone());
    let (entered, is_in) = oneshot::channel();
    spinning
        .tell(Spin(release.clone(), Some(entered)))
        .await
        .unwrap();
    is_in.await.unwrap();
    let queued = queue_behind(&spinning, Spin(release.clone(), None)).await;
    let timed_out = promptly(system.shutdown(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert_eq!(timed_out.remaining, 1);
    assert_eq!(promptly(queued).await.unwrap(), Err(AskError::ActorStopped));
    match promptly(watched.recv()).await.unwrap() {
        SupervisionEvent::Terminated { id, reason, .. } => {
            assert_eq!((id, reason), (spinning.id(), StopReason::Killed));
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(system.actors().is_empty());
    assert_eq!(promptly(spinning.wait_for_stop()).await, StopReason::Killed);
}

/// Spawns a `Stuck` child in `on_start` (handing it out), and panics on `Explode`.
struct Restarting {
    log: Log,
    children: mpsc::UnboundedSender<ActorRef<Stuck>>,
}
impl Actor for Restarting {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let child = ctx
            .spawn_child(Stuck {
                log: self.log.clone(),
            })
            .await?;
        let _ = self.children.send(child);
        Ok(())
    }
}
struct Explode;
impl Message for Explode {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Explode> for Restarting {
    async fn handle(&mut self, _: Explode, _: &mut Context<Self>) -> Result<(), Infallible> {
        panic!("exploded");
    }
}
struct Alive;
impl Message for Alive {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Alive> for Restarting {
    async fn handle(&mut self, _: Alive, _: &mut Context<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A restart stops the old state's children gracefully, but not for ever: one stuck at an
/// `.await` is killed after the grace period, and the fresh state serves again.
#[tokio::test(start_paused = true)]
async fn a_restart_kills_a_child_that_does_not_stop_in_time() {
    let system = ActorSystem::new("t");
    let log = Log::default();
    let (tx, mut children) = mpsc::unbounded_channel();
    let make = {
        let (log, tx) = (log.clone(), tx.clone());
        move || Restarting {
            log: log.clone(),
            children: tx.clone(),
        }
    };
    let parent = system
        .build(make())
        .restart_with(make, RestartLimit::new(3, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    let first = children.recv().await.unwrap();
    let (entered, is_in) = oneshot::channel();
    first.tell(Hang(Some(entered))).await.unwrap();
    is_in.await.unwrap();
    assert!(matches!(
        parent.ask(Explode).await,
        Err(AskError::Panicked(_))
    ));
    // Served again once the stuck child was killed (the paused clock runs through the
    // grace period).
    assert_eq!(
        parent.ask(Alive).timeout(Duration::from_secs(60)).await,
        Ok(())
    );
    assert_eq!(promptly(first.wait_for_stop()).await, StopReason::Killed);
    let second = promptly(children.recv()).await.unwrap();
    assert!(second.is_alive());
    assert_eq!(log_entries(&log), vec!["on_stop killed".to_owned()]);
}
