//! Core runtime: URNs, stop and kill, draining, timers, streams, shutdown.

mod common;

use common::*;
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[tokio::test]
async fn urns_are_unique_validated_and_freed_on_stop() {
    let system = ActorSystem::new("t");
    let first = system
        .build(Recorder::default())
        .urn("svc:a")
        .spawn()
        .await
        .unwrap();
    match system.build(Recorder::default()).urn("svc:a").spawn().await {
        Err(SpawnError::UrnTaken(urn)) => assert_eq!(urn.as_str(), "svc:a"),
        other => panic!("expected UrnTaken, got {:?}", other.map(|r| r.id())),
    }
    for bad in [
        "",
        "has space",
        "tab\there",
        "bell\u{7}",
        &"x".repeat(MAX_URN_LEN + 1),
    ] {
        assert!(
            matches!(
                system.build(Recorder::default()).urn(bad).spawn().await,
                Err(SpawnError::InvalidUrn(_))
            ),
            "{bad:?} must be rejected"
        );
    }
    first.stop();
    assert_eq!(first.wait_for_stop().await, StopReason::Normal);
    assert_eq!(
        system.lookup("svc:a").unwrap_err(),
        LookupError::NotFound("svc:a".into())
    );
    let second = system
        .build(Recorder::default())
        .urn("svc:a")
        .spawn()
        .await
        .unwrap();
    assert_eq!(system.lookup("svc:a").unwrap().id(), second.id());
    assert_ne!(first.id(), second.id());
}

#[tokio::test]
async fn separate_systems_have_separate_namespaces() {
    let a = ActorSystem::new("a");
    let b = ActorSystem::new("b");
    let in_a = a
        .build(Recorder::default())
        .urn("same")
        .spawn()
        .await
        .unwrap();
    b.build(Recorder::default())
        .urn("same")
        .spawn()
        .await
        .unwrap();
    in_a.tell(Record(1)).await.unwrap();
    let from_b = b.lookup_typed::<Recorder>("same").unwrap();
    assert_eq!(from_b.ask(Seen).await.unwrap(), Vec::<u64>::new());
    assert_eq!(
        a.lookup_typed::<Recorder>("same")
            .unwrap()
            .ask(Seen)
            .await
            .unwrap(),
        vec![1]
    );
}

/// Guards a step that must finish promptly: a hang fails the test instead of stalling it.
async fn promptly<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("did not finish promptly")
}

#[tokio::test]
async fn stop_drains_queued_messages_and_refuses_later_ones() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(8)).await;
    for i in 1..=3 {
        r.tell(Record(i)).await.unwrap();
    }
    let queued_ask = tokio::spawn({
        let r = r.clone();
        async move { r.ask(Seen).await }
    });
    while r.mailbox_len() < 4 {
        tokio::task::yield_now().await;
    }
    r.stop();
    assert!(matches!(
        r.tell(Record(99)).await,
        Err(SendError::ActorStopped(Record(99)))
    ));
    assert_eq!(r.ask(Seen).await, Err(AskError::ActorStopped));
    gate.notify_one();
    assert_eq!(promptly(queued_ask).await.unwrap(), Ok(vec![1, 2, 3]));
    assert_eq!(r.wait_for_stop().await, StopReason::Normal);
    assert!(!r.is_alive());
}

#[tokio::test]
async fn kill_drops_the_queue_and_fails_its_asks_at_once() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(8)).await;
    let queued_ask = tokio::spawn({
        let r = r.clone();
        async move { r.ask(Seen).timeout(Duration::from_secs(3600)).await }
    });
    while r.mailbox_len() < 1 {
        tokio::task::yield_now().await;
    }
    r.kill();
    gate.notify_one();
    assert_eq!(
        promptly(queued_ask).await.unwrap(),
        Err(AskError::ActorStopped)
    );
    assert_eq!(r.wait_for_stop().await, StopReason::Killed);
    // Asking a dead actor fails at once, whatever the timeout.
    assert_eq!(
        promptly(r.ask(Seen).timeout(Duration::from_secs(3600))).await,
        Err(AskError::ActorStopped)
    );
    assert!(matches!(
        r.try_tell(Record(1)),
        Err(SendError::ActorStopped(_))
    ));
}

struct Probe {
    name: &'static str,
    log: Log,
    fail_start: bool,
}
impl Actor for Probe {
    async fn on_start(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        if self.fail_start {
            return Err("not today".into());
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn on_stop(
        &mut self,
        _: &mut Context<Self>,
        reason: &StopReason,
    ) -> Result<(), BoxError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("stop {} {reason}", self.name));
        Ok(())
    }
}

fn probe(name: &'static str, log: &Log) -> Probe {
    Probe {
        name,
        log: log.clone(),
        fail_start: false,
    }
}

#[tokio::test]
async fn failing_on_start_fails_spawn_and_frees_the_urn() {
    let system = ActorSystem::new("t");
    let log = Log::default();
    let failing = Probe {
        fail_start: true,
        ..probe("p", &log)
    };
    match system.build(failing).urn("p").spawn().await {
        Err(SpawnError::StartFailed(e)) => assert_eq!(e.to_string(), "not today"),
        other => panic!("expected StartFailed, got {:?}", other.map(|r| r.id())),
    }
    assert!(system.lookup("p").is_err());
    assert!(system.actors().is_empty());
    system
        .build(probe("p", &log))
        .urn("p")
        .spawn()
        .await
        .unwrap();
}

struct PanicsOnStart;
impl Actor for PanicsOnStart {
    async fn on_start(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        panic!("bad start");
    }
}

#[tokio::test]
async fn panicking_on_start_fails_spawn() {
    let system = ActorSystem::new("t");
    match system.spawn(PanicsOnStart).await {
        Err(SpawnError::StartPanicked(m)) => assert_eq!(m, "bad start"),
        other => panic!("expected StartPanicked, got {:?}", other.map(|r| r.id())),
    }
}

/// Spawns children in `on_start`.
struct Parent {
    log: Log,
    children: usize,
}
impl Actor for Parent {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        for i in 0..self.children {
            let name: &'static str = Box::leak(format!("child{i}").into_boxed_str());
            ctx.spawn_child(probe(name, &self.log)).await?;
        }
        Ok(())
    }
    async fn on_stop(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &StopReason,
    ) -> Result<(), BoxError> {
        assert!(ctx.children().is_empty(), "children stop first");
        self.log
            .lock()
            .unwrap()
            .push(format!("stop parent {reason}"));
        Ok(())
    }
}

#[tokio::test]
async fn children_stop_before_their_parent_and_are_listed() {
    let system = ActorSystem::new("t");
    let log = Log::default();
    let parent = system
        .build(Parent {
            log: log.clone(),
            children: 2,
        })
        .urn("parent")
        .spawn()
        .await
        .unwrap();
    let listed = system.actors();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed
            .iter()
            .filter(|a| a.parent == Some(parent.id()))
            .count(),
        2
    );
    assert_eq!(
        listed
            .iter()
            .find(|a| a.id == parent.id())
            .unwrap()
            .urn
            .as_ref()
            .unwrap()
            .as_str(),
        "parent"
    );
    parent.stop();
    parent.wait_for_stop().await;
    let entries = log_entries(&log);
    assert_eq!(entries.last().unwrap(), "stop parent stopped normally");
    assert!(entries.contains(&"stop child0 stopped normally".to_owned()));
    assert!(entries.contains(&"stop child1 stopped normally".to_owned()));
    assert!(system.actors().is_empty());
}

/// Counts ticks; tells its own timers and streams apart.
#[derive(Default)]
struct Ticker {
    seen: Vec<String>,
}
impl Actor for Ticker {
    async fn on_stream_finished(&mut self, _: &mut Context<Self>, _: StreamId) {
        self.seen.push("stream end".into());
    }
}
struct Tick(&'static str);
impl Message for Tick {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Tick> for Ticker {
    async fn handle(
        &mut self,
        Tick(what): Tick,
        ctx: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        self.seen.push(what.into());
        if what == "echo" {
            ctx.notify(Tick("echoed")).unwrap();
        }
        Ok(())
    }
}
struct Log2;
impl Message for Log2 {
    type Response = Vec<String>;
    type Error = Infallible;
}
impl Handler<Log2> for Ticker {
    async fn handle(&mut self, _: Log2, _: &mut Context<Self>) -> Result<Vec<String>, Infallible> {
        Ok(self.seen.clone())
    }
}
struct StartTimers(Arc<AtomicU32>);
impl Message for StartTimers {
    type Response = ();
    type Error = Infallible;
}
impl Handler<StartTimers> for Ticker {
    async fn handle(
        &mut self,
        StartTimers(made): StartTimers,
        ctx: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        ctx.send_after(Tick("later"), Duration::from_millis(50));
        let cancelled = ctx.send_after(Tick("cancelled"), Duration::from_millis(10));
        cancelled.cancel();
        ctx.interval(Duration::from_millis(20), move || {
            made.fetch_add(1, Ordering::SeqCst);
            Tick("tick")
        });
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn timers_deliver_and_die_with_the_actor() {
    let system = ActorSystem::new("t");
    let t = system.spawn(Ticker::default()).await.unwrap();
    let made = Arc::new(AtomicU32::new(0));
    t.ask(StartTimers(made.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(70)).await; // paused clock: advances instantly
    let seen = t.ask(Log2).await.unwrap();
    assert_eq!(seen.iter().filter(|s| *s == "tick").count(), 3, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "later").count(), 1, "{seen:?}");
    assert!(!seen.iter().any(|s| s == "cancelled"), "{seen:?}");
    t.stop();
    t.wait_for_stop().await;
    let after_stop = made.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        made.load(Ordering::SeqCst),
        after_stop,
        "the interval must die with the actor"
    );
}

/// Ticks of an interval whose first tick's handler takes 15 periods, with the time each
/// was handled.
struct SlowTicks(Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>);
impl Message for SlowTicks {
    type Response = ();
    type Error = Infallible;
}
struct SlowTick(Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>);
impl Message for SlowTick {
    type Response = ();
    type Error = Infallible;
}
impl Handler<SlowTicks> for Ticker {
    async fn handle(
        &mut self,
        SlowTicks(log): SlowTicks,
        ctx: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        ctx.interval(Duration::from_millis(20), move || SlowTick(log.clone()));
        Ok(())
    }
}
impl Handler<SlowTick> for Ticker {
    async fn handle(
        &mut self,
        SlowTick(log): SlowTick,
        _: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        let first = {
            let mut log = log.lock().unwrap();
            log.push(tokio::time::Instant::now());
            log.len() == 1
        };
        if first {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(())
    }
}

/// A tick missed while the actor was busy is skipped: after a handler that took 15 periods,
/// the ticks go on one period apart, not 15 handled back to back.
#[tokio::test(start_paused = true)]
async fn missed_ticks_are_skipped_not_handled_in_a_bunch() {
    let system = ActorSystem::new("t");
    let t = system.spawn(Ticker::default()).await.unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    t.ask(SlowTicks(log.clone())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // paused clock: advances instantly
    let times = log.lock().unwrap().clone();
    assert!(times.len() >= 3, "{times:?}");
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(10),
            "two ticks {gap:?} apart: {times:?}"
        );
    }
    t.stop();
    t.wait_for_stop().await;
}

#[tokio::test]
async fn notify_is_handled_after_what_is_already_queued() {
    let system = ActorSystem::new("t");
    let t = system.spawn(Ticker::default()).await.unwrap();
    t.tell(Tick("echo")).await.unwrap();
    t.tell(Tick("queued")).await.unwrap();
    let seen = t.ask(Log2).await.unwrap();
    // "echoed" was notified while "queued" (and maybe the ask) were in the mailbox.
    let pos = |w: &str| seen.iter().position(|s| s == w);
    assert!(
        pos("queued") < pos("echoed") || pos("echoed").is_none(),
        "{seen:?}"
    );
    let seen = t.ask(Log2).await.unwrap();
    assert_eq!(&seen[..3], ["echo", "queued", "echoed"]);
}

struct Attach(tokio::sync::mpsc::Receiver<&'static str>);
impl Message for Attach {
    type Response = StreamId;
    type Error = Infallible;
}
impl Handler<Attach> for Ticker {
    async fn handle(
        &mut self,
        Attach(rx): Attach,
        ctx: &mut Context<Self>,
    ) -> Result<StreamId, Infallible> {
        let stream = ReceiverStream(rx);
        Ok(ctx.attach_stream(stream))
    }
}

/// A minimal `Stream` over a tokio receiver (keeps the test free of extra crates).
struct ReceiverStream(tokio::sync::mpsc::Receiver<&'static str>);
impl futures_core::Stream for ReceiverStream {
    type Item = Tick;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Tick>> {
        self.0.poll_recv(cx).map(|o| o.map(Tick))
    }
}

#[tokio::test]
async fn stream_items_interleave_with_messages_and_the_end_is_announced() {
    let system = ActorSystem::new("t");
    let t = system.spawn(Ticker::default()).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    t.ask(Attach(rx)).await.unwrap();
    tx.send("item1").await.unwrap();
    // Wait until the item was handled, then interleave a direct message.
    while !t.ask(Log2).await.unwrap().contains(&"item1".to_owned()) {
        tokio::task::yield_now().await;
    }
    t.tell(Tick("direct")).await.unwrap();
    while !t.ask(Log2).await.unwrap().contains(&"direct".to_owned()) {
        tokio::task::yield_now().await;
    }
    tx.send("item2").await.unwrap();
    drop(tx);
    loop {
        let seen = t.ask(Log2).await.unwrap();
        if seen.last().map(String::as_str) == Some("stream end") {
            assert_eq!(seen, ["item1", "direct", "item2", "stream end"]);
            break;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_ten_thousand_actors_is_prompt_and_complete() {
    let system = ActorSystem::new("t");
    let mut refs = Vec::with_capacity(10_000);
    for i in 0..10_000u64 {
        let b = system.build(Recorder::default());
        let b = if i % 10 == 0 {
            b.urn(format!("a:{i}"))
        } else {
            b
        };
        let r = b.spawn().await.unwrap();
        r.tell(Record(i)).await.unwrap();
        refs.push(r);
    }
    assert_eq!(system.actors().len(), 10_000);
    promptly(system.shutdown(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(system.actors().is_empty());
    assert!(system.lookup("a:0").is_err());
    assert!(refs.iter().all(|r| !r.is_alive()));
    assert!(matches!(
        system.spawn(Recorder::default()).await,
        Err(SpawnError::ShuttingDown)
    ));
}

#[tokio::test(start_paused = true)]
async fn shutdown_kills_what_does_not_stop_in_time() {
    let system = ActorSystem::new("t");
    let (r, _gate) = blocked_recorder(&system, MailboxConfig::Bounded(8)).await;
    let err = system
        .shutdown(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.remaining, 1);
    assert_eq!(r.wait_for_stop().await, StopReason::Killed);
    assert!(system.actors().is_empty());
}
