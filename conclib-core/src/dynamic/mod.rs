//! Addressing actors whose type is not known at compile time: [`DynActorRef`] (what a URN
//! lookup returns) and the requests it sends (`exchange`: its asks and tells of typed
//! messages, [`DynAskFuture`](crate::DynAskFuture) and [`DynTellFuture`](crate::DynTellFuture)).

pub(crate) mod erased_request;
pub(crate) mod exchange;
pub(crate) mod request_carried;
pub(crate) mod request_cell;
pub(crate) mod request_envelope;

use std::any::TypeId;
use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::ActorCell;
use crate::cell::erased::ErasedCell;
use crate::context::Context;
use crate::dynamic::request_cell::{RequestHead, Waiter};
use crate::dynamic::request_envelope::{ErasedResult, RequestEnvelope};
use crate::error::{AskError, LookupError, SendError, StopReason};
use crate::exposed::remote::{ErasedMessage, ExposedMessage};
use crate::mailbox::control::Control;
use crate::message::{Message, Priority};
use crate::send::actor_ref::ActorRef;
use crate::send::request::{AskRequest, TellRequest};
use crate::supervision::SupervisionEvent;
use crate::system::ActorSystem;
use crate::urn::Urn;

/// A ref to an actor of any type, as returned by
/// [`ActorSystem::lookup`](crate::ActorSystem::lookup). Messages are checked at run time:
/// one the actor does not handle gives [`AskError::UnknownMessage`].
///
/// ```
/// # use conclib_core::*;
/// # use std::convert::Infallible;
/// # struct Get; impl Message for Get { type Response = u64; type Error = Infallible; }
/// # struct Counter(u64);
/// # impl Actor for Counter {
/// #     async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
/// #         match req.extract::<Get>() { Ok((_, r)) => r.respond(Ok(self.0)), Err(req) => req.reject() }
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// system.build(Counter(7)).urn("counter").spawn().await.unwrap();
/// let counter = system.lookup("counter").unwrap();
/// assert_eq!(counter.ask(Get).await.unwrap(), 7);
/// # }
/// ```
#[derive(Clone)]
pub struct DynActorRef {
    pub(crate) cell: Arc<dyn ErasedCell>,
}

impl DynActorRef {
    /// The actor's id.
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.cell.core().id
    }

    /// The actor's URN, if it has one.
    #[must_use]
    pub fn urn(&self) -> Option<&Urn> {
        self.cell.core().urn.as_ref()
    }

    /// The actor's Rust type name.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        self.cell.core().type_name()
    }

    /// Whether the actor has not stopped yet.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.cell.core().is_alive()
    }

    /// Delivers `event` to the actor's [`Actor::on_event`] through its control lane, ahead
    /// of its user messages, as its own children's events are: how the supervisor of an
    /// actor that lives outside this system's tasks (a process actor) is told of its
    /// restarts and its end. `false` if the actor is gone.
    pub fn send_event(&self, event: crate::supervision::SupervisionEvent) -> bool {
        self.cell
            .push_control(crate::mailbox::control::Control::Event(event))
    }

    /// Resolves once the actor has answered a heartbeat: a high-priority message it answers
    /// between two messages, on its own (its handlers never see it). A handler stuck in a
    /// loop makes it time out: how a pool's dead-man's switch, and a process actor's
    /// parent, tell a live actor from a stuck one.
    ///
    /// # Errors
    /// [`AskError::Timeout`] after `timeout`; [`AskError::ActorStopped`] if it stopped.
    pub async fn ping(&self, timeout: Duration) -> Result<(), AskError> {
        self.cell.clone().ping(timeout).await
    }

    /// Graceful stop: queued messages are handled, new ones refused.
    pub fn stop(&self) {
        self.cell.close();
    }

    /// As [`ActorRef::kill`]: stops now, dropping the running handler at its next `.await`
    /// and the queued messages (their asks fail with [`AskError::ActorStopped`]).
    pub fn kill(&self) {
        self.cell.push_control(Control::Kill);
    }

    /// Waits until the actor has stopped and returns why.
    pub async fn wait_for_stop(&self) -> StopReason {
        self.cell.core().wait_for_stop().await
    }

    /// User messages queued and not yet handled, as
    /// [`ActorRef::mailbox_len`](crate::ActorRef::mailbox_len) counts them.
    #[must_use]
    pub fn mailbox_len(&self) -> usize {
        self.cell.capacity().len()
    }

    /// As [`ActorRef::asks_skipped`].
    #[must_use]
    pub fn asks_skipped(&self) -> u64 {
        self.cell.core().skipped_asks()
    }

    /// The messages this actor exposes to other processes.
    #[must_use]
    pub fn remote_messages(&self) -> &'static [ExposedMessage] {
        self.cell.remote()
    }

    /// The exposed message with this wire name.
    #[must_use]
    pub fn remote_message(&self, name: &str) -> Option<&'static ExposedMessage> {
        self.cell.remote().iter().find(|m| m.name() == name)
    }

    /// The typed ref, if the actor is an `A`.
    #[must_use]
    pub fn downcast<A: Actor>(&self) -> Option<ActorRef<A>> {
        self.cell
            .clone()
            .as_any()
            .downcast::<ActorCell<A>>()
            .ok()
            .map(|cell| ActorRef { cell })
    }

    pub(crate) fn unknown<E>(&self, message: &str) -> AskError<E> {
        AskError::UnknownMessage {
            actor: self.cell.core().label(),
            message: message.to_owned(),
        }
    }

    /// Asks with any message type; the answer is checked at run time.
    /// Finish with `.await`; set `.timeout(..)` or `.priority(..)` first if needed.
    pub fn ask<M: Message>(&self, msg: M) -> AskRequest<&DynActorRef, M> {
        AskRequest::new(self, msg)
    }

    /// Sends `msg` if there is room right now, then waits for the response as
    /// [`ask`](Self::ask). Fails with [`AskError::MailboxFull`] instead of waiting for room
    /// (as [`ActorRef::try_ask`]).
    pub fn try_ask<M: Message>(&self, msg: M) -> AskRequest<&DynActorRef, M> {
        AskRequest::new(self, msg).no_wait()
    }

    /// Tells with any message type, waiting for room in a full mailbox. Finish with
    /// `.await`; `.priority(Priority::High)` first to overtake queued normal messages.
    ///
    /// Resolves to [`SendError::UnknownMessage`] if the actor does not accept `M`, or
    /// [`SendError::ActorStopped`] (with the message) if it stopped.
    pub fn tell<M: Message>(&self, msg: M) -> TellRequest<&DynActorRef, M> {
        TellRequest::new(self, msg)
    }

    /// Tells if there is room right now; never waits.
    ///
    /// # Errors
    /// [`SendError::MailboxFull`] or [`SendError::ActorStopped`] with the message, or
    /// [`SendError::UnknownMessage`] if the actor does not accept `M`.
    pub fn try_tell<M: Message>(&self, msg: M) -> Result<(), SendError<M>> {
        self.try_tell_with(msg, Priority::Normal)
    }

    pub(crate) fn try_tell_with<M: Message>(
        &self,
        msg: M,
        priority: Priority,
    ) -> Result<(), SendError<M>> {
        if !self.cell.accepts(TypeId::of::<M>()) {
            return Err(self.unknown_send(M::name()));
        }
        match self.cell.capacity().try_reserve() {
            None => return Err(SendError::ActorStopped(msg)),
            Some(false) => return Err(SendError::MailboxFull(msg)),
            Some(true) => {}
        }
        let req = RequestEnvelope::new(
            RequestHead::sent::<M>(priority),
            Box::new(msg),
            Waiter::Nobody,
        );
        self.cell
            .push_request(req, priority)
            .map_err(|mut req| SendError::ActorStopped(take_message::<M>(&mut req)))
    }

    pub(crate) fn unknown_send<M>(&self, message: &str) -> SendError<M> {
        SendError::UnknownMessage {
            actor: self.cell.core().label(),
            message: message.to_owned(),
        }
    }

    /// Tells with a message already decoded into an [`ErasedMessage`] (what a proxy does),
    /// waiting for room in a full mailbox. `name` and `type_id` are the message's.
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] if the actor does not accept the type;
    /// [`SendError::ActorStopped`] (with the message) if it stopped.
    pub async fn tell_erased(
        &self,
        name: &'static str,
        type_id: TypeId,
        msg: ErasedMessage,
        priority: Priority,
    ) -> Result<(), SendError<ErasedMessage>> {
        self.erased(name, type_id, msg)
            .priority(priority)
            .send()
            .await
    }

    /// Asks with a message already decoded into an [`ErasedMessage`] (what a proxy does).
    /// `name` and `type_id` are the message's, e.g. from a [`ExposedMessage`].
    ///
    /// # Errors
    /// Any [`AskError`]; the handler's error stays erased.
    pub async fn ask_erased(
        &self,
        name: &'static str,
        type_id: TypeId,
        msg: ErasedMessage,
        timeout: Duration,
    ) -> ErasedResult {
        self.erased(name, type_id, msg).timeout(timeout).ask().await
    }

    /// Takes a place in the mailbox, waiting at most `room_timeout` (forever if `None`).
    pub(crate) async fn reserve<E>(
        &self,
        room_timeout: Option<Duration>,
    ) -> Result<(), AskError<E>> {
        // Room now (the usual case): no timer.
        match self.cell.capacity().try_reserve() {
            Some(true) => return Ok(()),
            None => return Err(AskError::ActorStopped),
            Some(false) => {}
        }
        let room = poll_fn(|cx| self.cell.capacity().poll_reserve(cx));
        let reserved = match room_timeout {
            None => room.await,
            Some(wait) => match tokio::time::timeout(wait, room).await {
                Ok(reserved) => reserved,
                Err(_) => return Err(AskError::MailboxFull),
            },
        };
        reserved.map_err(|_| AskError::ActorStopped)
    }
}

impl fmt::Debug for DynActorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynActorRef")
            .field("id", &self.id())
            .field("urn", &self.urn())
            .field("type", &self.type_name())
            .finish()
    }
}

impl PartialEq for DynActorRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}
impl Eq for DynActorRef {}

impl<A: Actor> From<ActorRef<A>> for DynActorRef {
    fn from(r: ActorRef<A>) -> Self {
        DynActorRef { cell: r.cell }
    }
}

impl<A: Actor> From<&ActorRef<A>> for DynActorRef {
    fn from(r: &ActorRef<A>) -> Self {
        DynActorRef {
            cell: r.cell.clone(),
        }
    }
}

/// Finding actors by URN: here, beside [`DynActorRef`], so that the system does not reach
/// up to it.
impl ActorSystem {
    /// The actor with this URN.
    ///
    /// # Errors
    /// [`LookupError::NotFound`] if no live actor has it.
    pub fn lookup(&self, urn: &str) -> Result<DynActorRef, LookupError> {
        let names = self.read_names();
        names
            .get(urn)
            .map(|cell| DynActorRef { cell: cell.clone() })
            .ok_or_else(|| LookupError::NotFound(urn.to_owned()))
    }

    /// The actor with this URN, as a typed ref.
    ///
    /// # Errors
    /// [`LookupError::NotFound`], or [`LookupError::WrongType`] if it is not an `A`.
    pub fn lookup_typed<A: Actor>(&self, urn: &str) -> Result<ActorRef<A>, LookupError> {
        let found = self.lookup(urn)?;
        found.downcast::<A>().ok_or_else(|| LookupError::WrongType {
            urn: found.urn().cloned().expect("found by URN"),
            expected: std::any::type_name::<A>(),
            actual: found.type_name(),
        })
    }

    /// The live actors that have a URN, in no particular order.
    #[must_use]
    pub fn named_actors(&self) -> Vec<DynActorRef> {
        let names = self.read_names();
        names
            .values()
            .map(|cell| DynActorRef { cell: cell.clone() })
            .collect()
    }
}

/// What a context does with other actors by their erased refs: here, beside
/// [`DynActorRef`], so that the context does not reach up to it.
impl<A: Actor> Context<A> {
    /// The children that have not stopped yet.
    #[must_use]
    pub fn children(&self) -> Vec<DynActorRef> {
        self.myself()
            .cell
            .core
            .lock_children()
            .iter()
            .map(|cell| DynActorRef { cell: cell.clone() })
            .collect()
    }

    /// Watches `other`: when it stops, this actor receives
    /// [`SupervisionEvent::Terminated`] in [`Actor::on_event`]. Watching an actor that
    /// already stopped delivers the event at once; watching it again while watching it
    /// changes nothing (one event). When this actor stops first, `other` forgets it.
    pub fn watch(&self, other: impl Into<DynActorRef>) {
        let other = other.into();
        let me: Arc<dyn ErasedCell> = self.myself().erased();
        let my_id = self.id();
        let core = other.cell.core();
        let mut watchers = core.lock_watchers();
        if core.is_alive() {
            if watchers.iter().any(|w| w.core().id == my_id) {
                return;
            }
            watchers.push(me);
            drop(watchers);
            self.add_watched(other.id(), Arc::downgrade(&other.cell));
        } else {
            drop(watchers);
            let reason = other
                .cell
                .core()
                .stop_reason()
                .unwrap_or(StopReason::Normal);
            me.push_control(Control::Event(SupervisionEvent::Terminated {
                id: other.id(),
                urn: other.urn().cloned(),
                reason,
            }));
        }
    }

    /// Stops watching `other`.
    pub fn unwatch(&self, other: impl Into<DynActorRef>) {
        let other = other.into();
        let my_id = self.id();
        other
            .cell
            .core()
            .lock_watchers()
            .retain(|w| w.core().id != my_id);
        self.forget_watched(other.id());
    }
}

pub(super) fn unbox<M: Message>(msg: ErasedMessage) -> M {
    *msg.downcast::<M>().expect("the message we sent")
}

fn take_message<M: Message>(req: &mut RequestEnvelope) -> M {
    unbox::<M>(req.take_message().expect("not taken"))
}

pub(super) fn downcast_error<M: Message>(e: AskError<ErasedMessage>) -> AskError<M::Error> {
    match e {
        AskError::Handler(err) => match err.downcast::<M::Error>() {
            Ok(err) => AskError::Handler(*err),
            Err(_) => AskError::NoResponse,
        },
        other => other.map_handler(|_| unreachable!("handler errors are matched above")),
    }
}

impl<A: Actor> ActorRef<A> {
    /// The type-erased ref.
    #[must_use]
    pub fn to_dyn(&self) -> DynActorRef {
        DynActorRef::from(self)
    }
}

#[allow(dead_code)]
fn requests_are_send<M: Message>() {
    fn assert_send<T: Send>() {}
    assert_send::<AskRequest<&'static DynActorRef, M>>();
    assert_send::<TellRequest<&'static DynActorRef, M>>();
}
