//! Whole-system queries: refs of all actors, of one type, and broadcast with an outcome per
//! recipient; one builder shape for tells through dynamic refs.

mod common;

use common::*;
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::time::Duration;

#[message]
#[derive(Clone)]
struct Ping(u64);

#[message(response = Vec<u64>)]
struct Pings;

#[actor]
#[derive(Default)]
struct Listener {
    pings: Vec<u64>,
}

#[actor]
impl Listener {
    #[handle]
    fn ping(&mut self, Ping(n): Ping) {
        self.pings.push(n);
    }

    #[handle]
    fn pings(&mut self, _: Pings) -> Vec<u64> {
        self.pings.clone()
    }

    /// Holds the actor until the gate opens.
    #[handle]
    async fn block(&mut self, mut msg: Block) {
        if let Some(entered) = msg.1.take() {
            let _ = entered.send(());
        }
        msg.0.notified().await;
    }
}

/// Does not handle `Ping`.
#[actor]
struct Deaf;

#[actor]
impl Deaf {}

#[tokio::test]
async fn all_actors_and_actors_of_a_type() {
    let system = ActorSystem::new("t");
    let a = system.spawn(Listener::default()).await.unwrap();
    let b = system
        .build(Listener::default())
        .urn("b")
        .spawn()
        .await
        .unwrap();
    let deaf = system.spawn(Deaf).await.unwrap();
    let all: Vec<ActorId> = system.all_actors().iter().map(DynActorRef::id).collect();
    assert_eq!(all, vec![a.id(), b.id(), deaf.id()]);
    let listeners = system.actors_of::<Listener>();
    assert_eq!(listeners, vec![a.clone(), b.clone()]);
    deaf.stop();
    deaf.wait_for_stop().await;
    assert_eq!(system.all_actors().len(), 2);
    assert!(system.actors_of::<Deaf>().is_empty());
}

#[tokio::test]
async fn broadcast_reaches_those_that_accept_and_says_who_was_full_or_gone() {
    let system = ActorSystem::new("t");
    let free = system.spawn(Listener::default()).await.unwrap();
    // A recorder blocked in a handler with a mailbox of one, filled: it is full. (A stopped
    // actor is not listed at all; one stopping meanwhile is reported `Stopped`: see below.)
    let (full, gate) = blocked_recorder(&system, MailboxConfig::Bounded(1)).await;
    full.tell(Record(1)).await.unwrap();
    let _deaf = system.spawn(Deaf).await.unwrap();

    let outcomes = system.broadcast(Ping(7));
    // `Deaf` (an #[actor] that does not handle Ping) is not offered it; the hand-written
    // recorder accepts every type through dynamic refs, and is full.
    let by_id: Vec<(ActorId, Delivery)> = outcomes.iter().map(|o| (o.id(), o.delivery)).collect();
    assert_eq!(
        by_id,
        vec![
            (free.id(), Delivery::Delivered),
            (full.id(), Delivery::MailboxFull)
        ]
    );
    assert_eq!(free.ask(Pings).await.unwrap(), vec![7]);

    let typed = system.broadcast_to::<Listener, _>(Ping(8));
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].delivery, Delivery::Delivered);
    assert_eq!(free.ask(Pings).await.unwrap(), vec![7, 8]);
    gate.notify_one();
}

#[tokio::test]
async fn a_broadcast_to_a_stopping_actor_reports_it_stopped() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(4)).await;
    r.stop();
    let outcomes = system.broadcast_to::<Recorder, _>(Record(1));
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].delivery, Delivery::Stopped);
    gate.notify_one();
}

#[tokio::test]
async fn dynamic_tells_take_the_same_builder_options_as_typed_ones() {
    let system = ActorSystem::new("t");
    let listener = system.spawn(Listener::default()).await.unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let (entered, is_in) = tokio::sync::oneshot::channel();
    listener
        .tell(Block(gate.clone(), Some(entered)))
        .await
        .unwrap();
    is_in.await.unwrap();
    let dynamic = listener.to_dyn();
    dynamic.tell(Ping(1)).await.unwrap();
    dynamic
        .tell(Ping(2))
        .priority(Priority::High)
        .await
        .unwrap();
    dynamic.try_tell(Ping(3)).unwrap();
    gate.notify_one();
    let pings = dynamic
        .ask(Pings)
        .timeout(Duration::from_secs(5))
        .priority(Priority::Normal)
        .await
        .unwrap();
    // The high-priority tell overtook the queued normal one.
    assert_eq!(pings, vec![2, 1, 3]);
    let deaf = system.spawn(Deaf).await.unwrap().to_dyn();
    assert!(matches!(
        deaf.tell(Ping(1)).await,
        Err(SendError::UnknownMessage { .. })
    ));
    assert!(matches!(
        deaf.try_tell(Ping(1)),
        Err(SendError::UnknownMessage { .. })
    ));
}
