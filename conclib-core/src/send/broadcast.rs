//! Whole-system queries: refs of every live actor, of every actor of one type, and
//! broadcast of one message to many actors with an outcome per recipient.

use std::any::TypeId;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::dynamic::DynActorRef;
use crate::error::SendError;
use crate::handler::Handler;
use crate::message::{Message, Priority};
use crate::send::actor_ref::ActorRef;
use crate::system::ActorSystem;

/// What became of a broadcast message at one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued in the recipient's mailbox.
    Delivered,
    /// The recipient's mailbox was full; a broadcast never waits for room.
    MailboxFull,
    /// The recipient had stopped (or was stopping) by the time the message came.
    Stopped,
}

/// One recipient of a broadcast and what became of its copy.
#[derive(Debug, Clone)]
pub struct BroadcastOutcome {
    /// The recipient.
    pub actor: DynActorRef,
    /// What happened to its copy.
    pub delivery: Delivery,
}

impl BroadcastOutcome {
    /// The recipient's id.
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.actor.id()
    }
}

fn delivery<M>(result: Result<(), SendError<M>>) -> Delivery {
    match result {
        Ok(()) => Delivery::Delivered,
        Err(SendError::MailboxFull(_)) => Delivery::MailboxFull,
        // `UnknownMessage` cannot happen: recipients are chosen by what they accept.
        Err(SendError::ActorStopped(_) | SendError::UnknownMessage { .. }) => Delivery::Stopped,
    }
}

impl ActorSystem {
    /// Refs to every actor of the system that has not stopped, ordered by id (pykka's
    /// `ActorRegistry.get_all`).
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle; impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// let a = system.spawn(Idle).await.unwrap();
    /// system.build(Idle).urn("idle").spawn().await.unwrap();
    /// let all = system.all_actors();
    /// assert_eq!(all.len(), 2);
    /// assert_eq!(all[0].id(), a.id());
    /// # }
    /// ```
    #[must_use]
    pub fn all_actors(&self) -> Vec<DynActorRef> {
        let mut all: Vec<DynActorRef> = self
            .live_cells()
            .into_iter()
            .filter(|cell| cell.core().is_alive())
            .map(|cell| DynActorRef { cell })
            .collect();
        all.sort_by_key(DynActorRef::id);
        all
    }

    /// Typed refs to every live actor of type `A`, ordered by id (pykka's
    /// `ActorRegistry.get_by_class`).
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle; impl Actor for Idle {}
    /// # struct Other; impl Actor for Other {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// system.spawn(Idle).await.unwrap();
    /// system.spawn(Other).await.unwrap();
    /// let idle: Vec<ActorRef<Idle>> = system.actors_of::<Idle>();
    /// assert_eq!(idle.len(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn actors_of<A: Actor>(&self) -> Vec<ActorRef<A>> {
        self.all_actors()
            .iter()
            .filter_map(DynActorRef::downcast::<A>)
            .collect()
    }

    /// Tells a copy of `msg` to every live actor of type `A`, without waiting for room, and
    /// says what became of each copy.
    ///
    /// ```
    /// # use conclib_core::*;
    /// # use std::convert::Infallible;
    /// # #[derive(Clone)] struct Reload;
    /// # impl Message for Reload { type Response = (); type Error = Infallible; }
    /// # struct Cache; impl Actor for Cache {}
    /// # impl Handler<Reload> for Cache {
    /// #     async fn handle(&mut self, _: Reload, _: &mut Context<Self>) -> Result<(), Infallible> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// system.spawn(Cache).await.unwrap();
    /// system.spawn(Cache).await.unwrap();
    /// let outcomes = system.broadcast_to::<Cache, _>(Reload);
    /// assert!(outcomes.iter().all(|o| o.delivery == Delivery::Delivered));
    /// assert_eq!(outcomes.len(), 2);
    /// # }
    /// ```
    #[must_use = "the outcomes say which actors were full or stopped"]
    pub fn broadcast_to<A, M>(&self, msg: M) -> Vec<BroadcastOutcome>
    where
        A: Handler<M>,
        M: Message + Clone,
    {
        self.actors_of::<A>()
            .into_iter()
            .map(|actor| BroadcastOutcome {
                delivery: delivery(actor.try_tell(msg.clone())),
                actor: actor.to_dyn(),
            })
            .collect()
    }

    /// Tells a copy of `msg` to every live actor that accepts messages of type `M` through a
    /// [`DynActorRef`] ([`Actor::accepts`]: `#[actor]` actors accept what they `#[handle]`),
    /// without waiting for room, and says what became of each copy.
    ///
    /// Hand-written actors that keep the default `accepts` are offered every message type,
    /// and answer what they do not handle with a logged drop.
    #[must_use = "the outcomes say which actors were full or stopped"]
    pub fn broadcast<M: Message + Clone>(&self, msg: M) -> Vec<BroadcastOutcome> {
        self.all_actors()
            .into_iter()
            .filter(|actor| actor.cell.accepts(TypeId::of::<M>()))
            .map(|actor| BroadcastOutcome {
                delivery: delivery(actor.try_tell_with(msg.clone(), Priority::Normal)),
                actor,
            })
            .collect()
    }
}
