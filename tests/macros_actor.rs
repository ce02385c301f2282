//! `#[message]` and `#[actor]` end to end: typed refs, dynamic refs, erased requests (what a
//! proxy sends), handler errors, the context, URN and mailbox options, the remote list, hooks.

use std::any::TypeId;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use conclib::context::StreamId;
use conclib::{
    Actor, ActorSystem, AskError, Context, MailboxConfig, Message, PanicPolicy, SendError,
    StopReason, SupervisionEvent, actor, message,
};
use serde::de::IntoDeserializer;
use serde::de::value::U64Deserializer;
use serde::{Deserialize, Serialize};

/// Asks for a [`Pong`]; exposed to other processes.
#[message(response = Pong, error = String)]
#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
}

/// The answer to [`Ping`]; told on its own, it has no response.
#[message]
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pong {
    n: u64,
}

/// Adds to the count; fails on zero and on overflow.
#[message(response = u64, error = AddError)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct Add(u64);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum AddError {
    Zero,
    Overflow,
}

/// Reads the count; exposed under a wire name of its own.
#[message(response = u64, error = String, name = "example.get")]
#[derive(Serialize, Deserialize)]
struct Get;

/// Counts itself in through the context.
#[message(response = u64)]
struct Reenter;

/// Panics in the handler.
#[message]
struct Boom;

/// Never handled by [`Example`].
#[message]
struct Unhandled;

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

/// The actor under test.
#[actor(urn = "example_actor", mailbox = 16)]
struct Example {
    count: u64,
    log: Log,
}

#[actor]
impl Example {
    fn new(log: &Log) -> Self {
        Example {
            count: 0,
            log: log.clone(),
        }
    }

    /// Async, with the context.
    #[handle(remote)]
    async fn ping(&mut self, msg: Ping, ctx: &mut Context<Self>) -> Pong {
        tokio::task::yield_now().await;
        assert_eq!(ctx.urn().map(conclib::Urn::as_str), Some("example_actor"));
        Pong {
            n: msg.n + self.count,
        }
    }

    /// Sync and fallible: `Err` goes back to the asker.
    #[handle(remote)]
    fn add(&mut self, Add(n): Add) -> Result<u64, AddError> {
        if n == 0 {
            return Err(AddError::Zero);
        }
        self.count = self.count.checked_add(n).ok_or(AddError::Overflow)?;
        Ok(self.count)
    }

    #[handle(remote)]
    fn get(&mut self, _: Get) -> u64 {
        self.count
    }

    /// Told only: no return type.
    #[handle]
    fn pong(&mut self, msg: Pong) {
        self.count = msg.n;
    }

    /// The context first is fine too; the actor sends itself a message.
    #[handle]
    async fn reenter(&mut self, ctx: &mut Context<Self>, _msg: Reenter) -> u64 {
        ctx.notify(Pong { n: 100 }).unwrap();
        self.count
    }

    #[handle]
    fn boom(&mut self, _: Boom) {
        panic!("boom at {}", self.count);
    }

    /// A plain method stays a plain method.
    fn count(&self) -> u64 {
        self.count
    }

    #[on_start]
    async fn start(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        log(
            &self.log,
            format!("start {}", ctx.urn().map_or("-", conclib::Urn::as_str)),
        );
        Ok(())
    }

    #[on_stop]
    fn stop(&mut self, reason: &StopReason) {
        log(&self.log, format!("stop {reason:?}"));
    }

    #[on_panic]
    fn panicked(&mut self, _ctx: &mut Context<Self>, message: &str) {
        log(&self.log, format!("panic {message}"));
    }
}

#[tokio::test]
async fn typed_refs_reach_sync_and_async_handlers() {
    let system = ActorSystem::new("macros");
    let log = Log::default();
    let example = system.spawn(Example::new(&log)).await.unwrap();

    assert_eq!(example.ask(Add(2)).await, Ok(2));
    assert_eq!(example.ask(Ping { n: 1 }).await, Ok(Pong { n: 3 }));
    example.tell(Pong { n: 40 }).await.unwrap();
    assert_eq!(example.ask(Get).await, Ok(40));
    // The handler told itself `Pong { n: 100 }`, handled after the answer.
    assert_eq!(example.ask(Reenter).await, Ok(40));
    assert_eq!(example.ask(Get).await, Ok(100));
    assert_eq!(Example::new(&log).count(), 0);
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn handler_errors_reach_the_asker() {
    let system = ActorSystem::new("macros");
    let example = system.spawn(Example::new(&Log::default())).await.unwrap();
    assert_eq!(
        example.ask(Add(0)).await,
        Err(AskError::Handler(AddError::Zero))
    );
    assert_eq!(example.ask(Add(u64::MAX)).await, Ok(u64::MAX));
    assert_eq!(
        example.ask(Add(1)).await,
        Err(AskError::Handler(AddError::Overflow))
    );
    // The actor goes on.
    assert_eq!(example.ask(Get).await, Ok(u64::MAX));

    let by_name = system.lookup("example_actor").unwrap();
    assert_eq!(
        by_name.ask(Add(0)).await,
        Err(AskError::Handler(AddError::Zero))
    );
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn options_come_from_the_struct_attribute() {
    assert_eq!(Example::URN, Some("example_actor"));
    assert_eq!(Example::MAILBOX, MailboxConfig::Bounded(16));

    let system = ActorSystem::new("macros");
    // `spawn` takes the URN from `#[actor(urn = ...)]`.
    let example = system.spawn(Example::new(&Log::default())).await.unwrap();
    assert_eq!(
        example.urn().map(conclib::Urn::as_str),
        Some("example_actor")
    );
    let found = system.lookup_typed::<Example>("example_actor").unwrap();
    assert_eq!(found.ask(Add(1)).await, Ok(1));
    // The URN is taken while the actor lives.
    assert!(system.spawn(Example::new(&Log::default())).await.is_err());
    // The builder can still choose another one.
    let other = system
        .build(Example::new(&Log::default()))
        .urn("other")
        .spawn()
        .await
        .unwrap();
    assert_eq!(other.urn().map(conclib::Urn::as_str), Some("other"));
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn dynamic_refs_dispatch_by_message_type() {
    let system = ActorSystem::new("macros");
    system.spawn(Example::new(&Log::default())).await.unwrap();
    let example = system.lookup("example_actor").unwrap();

    assert_eq!(example.ask(Add(5)).await, Ok(5));
    assert_eq!(example.ask(Ping { n: 1 }).await, Ok(Pong { n: 6 }));
    example.tell(Pong { n: 7 }).await.unwrap();
    assert_eq!(example.ask(Get).await, Ok(7));

    // Not handled: refused before it is queued, by `accepts`.
    assert!(matches!(
        example.ask(Unhandled).await,
        Err(AskError::UnknownMessage { message, .. }) if message == "Unhandled"
    ));
    assert!(matches!(
        example.tell(Unhandled).await,
        Err(SendError::UnknownMessage { .. })
    ));
    assert!(<Example as Actor>::accepts(TypeId::of::<Ping>()));
    assert!(!<Example as Actor>::accepts(TypeId::of::<Unhandled>()));
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn erased_requests_go_through_the_remote_table() {
    let system = ActorSystem::new("macros");
    system.spawn(Example::new(&Log::default())).await.unwrap();
    let example = system.lookup("example_actor").unwrap();

    // What a proxy does: find the entry by wire name, decode, ask, encode the answer.
    let entry = example.remote_message("Add").expect("Add is exposed");
    let de: U64Deserializer<serde::de::value::Error> = 4u64.into_deserializer();
    let decoded = entry
        .decode(&mut <dyn erased_serde::Deserializer>::erase(de))
        .unwrap();
    let answer = example
        .ask_erased(
            entry.name(),
            entry.type_id(),
            decoded,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(entry.response(&*answer).is_some());
    assert_eq!(*answer.downcast::<u64>().unwrap(), 4);

    let failed = example
        .ask_erased(
            entry.name(),
            entry.type_id(),
            Box::new(Add(0)),
            Duration::from_secs(1),
        )
        .await;
    let Err(AskError::Handler(error)) = failed else {
        panic!("expected a handler error, got {failed:?}")
    };
    assert!(entry.error(&*error).is_some());
    assert_eq!(*error.downcast::<AddError>().unwrap(), AddError::Zero);

    // A message that is handled but not exposed has no entry.
    assert!(example.remote_message("Pong").is_none());
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[test]
fn remote_lists_exactly_the_remote_handlers() {
    let names: Vec<&str> = Example::REMOTE
        .iter()
        .map(conclib::remote::ExposedMessage::name)
        .collect();
    assert_eq!(names, ["Ping", "Add", "example.get"]);
    assert_eq!(Example::REMOTE[0].type_id(), TypeId::of::<Ping>());
}

#[test]
fn messages_have_stable_wire_names() {
    assert_eq!(Ping::name(), "Ping");
    assert_eq!(Pong::name(), "Pong");
    assert_eq!(Get::name(), "example.get");
}

#[tokio::test]
async fn hooks_run() {
    let system = ActorSystem::new("macros");
    let log = Log::default();
    let example = system
        .build(Example::new(&log))
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    assert_eq!(example.ask(Add(3)).await, Ok(3));
    assert_eq!(
        example.ask(Boom).await,
        Err(AskError::Panicked("boom at 3".into()))
    );
    // Resumed with its state.
    assert_eq!(example.ask(Get).await, Ok(3));
    example.stop();
    assert_eq!(example.wait_for_stop().await, StopReason::Normal);
    assert_eq!(
        *log.lock().unwrap(),
        ["start example_actor", "panic boom at 3", "stop Normal"]
    );
}

/// A failing `#[on_start]` makes the spawn fail.
#[actor]
struct FailsToStart;

#[actor]
impl FailsToStart {
    #[on_start]
    fn start(&mut self) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("no database"))
    }
}

#[tokio::test]
async fn a_failing_on_start_fails_the_spawn() {
    let system = ActorSystem::new("macros");
    let error = system.spawn(FailsToStart).await.unwrap_err();
    assert!(error.to_string().contains("no database"), "{error}");
}

/// Hears about its children and the streams it reads.
#[actor(mailbox = unbounded)]
#[derive(Default)]
struct Parent {
    events: Vec<String>,
    items: Vec<u64>,
}

/// Spawns a child that stops at once.
#[message]
struct SpawnChild;

/// Reads the stream `0..n`.
#[message]
struct Read(u64);

/// What the parent saw.
#[message(response = (Vec<String>, Vec<u64>))]
struct Seen;

/// One item of a stream.
#[message]
struct Item(u64);

#[actor]
#[derive(Default)]
struct Child;

#[actor]
impl Child {
    #[on_start]
    fn start(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The items `0..n`.
struct Items(u64, u64);

impl futures_core::Stream for Items {
    type Item = Item;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<Option<Item>> {
        if self.0 == self.1 {
            return Poll::Ready(None);
        }
        self.0 += 1;
        Poll::Ready(Some(Item(self.0 - 1)))
    }
}

#[actor]
impl Parent {
    #[handle]
    async fn spawn_child(&mut self, _: SpawnChild, ctx: &mut Context<Self>) {
        ctx.spawn_child(Child).await.unwrap();
    }

    #[handle]
    fn read(&mut self, Read(n): Read, ctx: &mut Context<Self>) {
        ctx.attach_stream(Items(0, n));
    }

    #[handle]
    fn item(&mut self, Item(n): Item) {
        self.items.push(n);
    }

    #[handle]
    fn seen(&mut self, _: Seen) -> (Vec<String>, Vec<u64>) {
        (self.events.clone(), self.items.clone())
    }

    #[on_event]
    fn event(&mut self, event: SupervisionEvent) {
        if let SupervisionEvent::ChildStopped { reason, .. } = event {
            self.events.push(format!("child {reason:?}"));
        }
    }

    #[on_stream_finished]
    async fn finished(&mut self, _id: StreamId) {
        self.events
            .push(format!("stream done after {} items", self.items.len()));
    }
}

#[tokio::test]
async fn event_and_stream_hooks_run() {
    let system = ActorSystem::new("macros");
    let parent = system.spawn(Parent::default()).await.unwrap();
    assert_eq!(Parent::MAILBOX, MailboxConfig::Unbounded);
    parent.ask(SpawnChild).await.unwrap();
    parent.ask(Read(3)).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let seen = parent.ask(Seen).await.unwrap();
            if seen.0.len() == 2 {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.1, [0, 1, 2]);
    assert!(seen.0.contains(&"child Normal".to_owned()), "{seen:?}");
    assert!(
        seen.0.contains(&"stream done after 3 items".to_owned()),
        "{seen:?}"
    );
    system.shutdown(Duration::from_secs(1)).await.unwrap();
}

/// Its `#[on_stop]` fails: the failure becomes the stop reason.
#[actor]
struct FailingStop;

#[actor]
impl FailingStop {
    #[on_stop]
    fn stop(&mut self, reason: &StopReason) -> Result<(), String> {
        Err(format!("could not flush after {reason}"))
    }
}

#[tokio::test]
async fn a_failing_on_stop_becomes_the_stop_reason() {
    let system = ActorSystem::new("t");
    let actor = system.spawn(FailingStop).await.unwrap();
    actor.stop();
    assert_eq!(
        actor.wait_for_stop().await,
        StopReason::StopFailed {
            reason: Box::new(StopReason::Normal),
            error: "could not flush after stopped normally".to_owned(),
        }
    );
}
