//! The shared state behind every ref to one actor: [`ActorCell`], the typed cell (its
//! untyped part, [`CellCore`], and the [`ErasedCell`] trait are in [`erased`]).

pub(crate) mod erased;

use std::any::{Any, TypeId};
use std::sync::Arc;

use crate::actor::Actor;
use crate::dynamic::request_envelope::RequestEnvelope;
use crate::exposed::remote::ExposedMessage;
use crate::handler::Handler;
use crate::mailbox::Mailbox;
use crate::mailbox::capacity::Capacity;
use crate::mailbox::control::Control;
use crate::message::{Message, Priority};
use crate::run::envelope::{Envelope, ReplyTx};
use erased::{CellCore, ErasedCell};

/// The shared state behind every ref to one actor (opaque).
#[repr(C)] // the mailbox after the core (see `CellCore`'s layout)
pub struct ActorCell<A: Actor> {
    pub(crate) core: CellCore,
    pub(crate) mailbox: Mailbox<A>,
}

impl<A: Actor> ActorCell<A> {
    /// Something its task changed that a snapshot shows (a message handled, a failure, a
    /// panic, a restart): marks it for the next look.
    #[inline]
    pub(crate) fn mark_task_changed(&self) {
        self.core.stats().mark.set(&self.mailbox.capacity.mark);
    }
}

impl<A: Actor> ErasedCell for ActorCell<A> {
    fn core(&self) -> &CellCore {
        &self.core
    }
    fn take_dormant(&self, on: u32) -> Option<std::task::Waker> {
        self.mailbox.take_dormant(on)
    }
    fn stops_at_once(&self) -> bool {
        self.mailbox.stops_at_once()
    }
    fn forget_waker(&self) {
        self.mailbox.forget_waker();
    }
    fn sweep(&self) -> bool {
        self.mailbox.sweep()
    }
    fn hibernate(&self, dormant: std::task::Waker, on: u32) -> Result<(), std::task::Waker> {
        self.mailbox.hibernate(dormant, on)
    }
    fn capacity(&self) -> &Capacity {
        &self.mailbox.capacity
    }
    fn push_request(
        &self,
        req: RequestEnvelope,
        priority: Priority,
    ) -> Result<(), RequestEnvelope> {
        self.mailbox
            .push_reserved(request_envelope::<A>(req), priority)
            .map_err(take_request::<A>)
    }
    fn push_control(&self, c: Control) -> bool {
        self.mailbox.push_control(c).is_ok()
    }
    fn ping(
        self: Arc<Self>,
        timeout: std::time::Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), crate::error::AskError>> + Send>,
    > {
        Box::pin(async move {
            crate::send::actor_ref::ActorRef { cell: self }
                .ask(crate::messages::Heartbeat)
                .priority(Priority::High)
                .timeout(timeout)
                .await
                .map_err(|e| e.map_handler(|never| match never {}))
        })
    }
    fn close(&self) {
        self.mailbox.close();
    }
    fn seal(&self) {
        drop(self.mailbox.seal(&mut std::collections::VecDeque::new()));
    }
    fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
    fn accepts(&self, message: TypeId) -> bool {
        A::accepts(message)
    }
    fn remote(&self) -> &'static [ExposedMessage] {
        A::REMOTE
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Where typed sends go: an actor cell that handles `M`. Lets [`Recipient`](crate::Recipient)
/// and [`ActorRef`](crate::ActorRef) share the send and ask futures.
pub trait Target<M: Message>: Send + Sync {
    fn core(&self) -> &CellCore;
    fn capacity(&self) -> &Capacity;
    /// Queues a message whose place was reserved, with its send stamp (`sent`: a
    /// [`crate::metrics::stamp`] read as the place was reserved: just before it, by tells
    /// and asks); gives it back if the actor stopped.
    fn push(
        &self,
        msg: M,
        reply: Option<ReplyTx<M>>,
        priority: Priority,
        sent: u64,
    ) -> Result<(), M>;
}

impl<A: Handler<M>, M: Message> Target<M> for ActorCell<A> {
    fn core(&self) -> &CellCore {
        &self.core
    }
    fn capacity(&self) -> &Capacity {
        &self.mailbox.capacity
    }
    #[inline]
    fn push(
        &self,
        msg: M,
        reply: Option<ReplyTx<M>>,
        priority: Priority,
        sent: u64,
    ) -> Result<(), M> {
        self.mailbox
            .push_reserved(Envelope::typed_at(msg, reply, sent), priority)
            .map_err(|env| env.into_message::<M>())
    }
}

/// A dynamic request in the envelope it travels in (the `Carried` impl is in
/// [`crate::dynamic::request_carried`]).
fn request_envelope<A: Actor>(req: RequestEnvelope) -> Envelope<A> {
    Envelope::carrying(req)
}

/// The request back out of an envelope made by [`request_envelope`].
fn take_request<A: Actor>(env: Envelope<A>) -> RequestEnvelope {
    match env.into_payload() {
        Ok(req) => req,
        Err(_) => unreachable!("an envelope made by `request_envelope`"),
    }
}

#[cfg(test)]
mod tests;
