//! How a dynamic request travels to an actor: the [`Carried`] impl that puts a
//! [`RequestEnvelope`] in a mailbox's [`Envelope`](crate::run::envelope::Envelope) and has
//! [`Actor::handle_request`] handle it there. Apart from the request itself
//! (`request_envelope`), which so names no actor type and sits below [`Actor`] (whose
//! `handle_request` takes it).

use pin_project_lite::pin_project;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use crate::actor::Actor;
use crate::context::Context;
use crate::dynamic::request_cell::{Answerer, Kept};
use crate::dynamic::request_envelope::RequestEnvelope;
use crate::error::AskError;
use crate::observe::trace::TraceContext;
use crate::run::envelope::Carried;
use crate::run::future_slot::Outcome;
use crate::run::future_slot::{FutureSlot, Started};
use crate::run::guarded::{CatchUnwind, Lazy};

impl<A: Actor> Carried<A> for RequestEnvelope {
    const NAMED_BY_TYPE: bool = false;
    const TRACED: bool = true;

    fn name(&self) -> &'static str {
        self.message_name()
    }

    fn trace(&self) -> Option<TraceContext> {
        RequestEnvelope::trace(self)
    }

    fn keep(&self, guard: Kept) -> Option<Kept> {
        self.keep_until_answered(guard)
    }

    fn drop_unhandled(self) {
        // Dropped unhandled: the actor is gone.
        self.fail(AskError::ActorStopped);
    }

    fn reject(self) {
        self.fail(AskError::MailboxFull);
    }

    fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
        cx: &mut std::task::Context<'_>,
    ) -> Started<'a> {
        let reply = self.answerer().cloned();
        slot.start(
            GuardedRequest::<_, _, A> {
                inner: CatchUnwind::new(Lazy::Start {
                    create: move || actor.handle_request(self, ctx),
                }),
                reply,
                actor: PhantomData,
            },
            cx,
        )
    }
}

pin_project! {
    /// Runs `A`'s handler of one request under the panic guard. When `A` opts in
    /// ([`Actor::CANCEL_ON_TIMEOUT`]), an ask's handler is dropped once its asker gave up.
    struct GuardedRequest<C, F, A> {
        #[pin]
        inner: CatchUnwind<Lazy<C, F>>,
        reply: Option<Answerer>,
        actor: PhantomData<fn() -> A>,
    }

    impl<C, F, A> PinnedDrop for GuardedRequest<C, F, A> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the handler finished: the actor was killed while handling it.
            // (After an answer, or a panic, the reply was taken and this does nothing.)
            if let Some(reply) = this.project().reply.take() {
                reply.send(Err(AskError::ActorStopped));
            }
        }
    }
}

impl<C: FnOnce() -> F, F: Future<Output = ()>, A: Actor> Future for GuardedRequest<C, F, A> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Outcome> {
        let mut this = self.project();
        // Nobody waits for the answer any more: do not start the work.
        if this.inner.fut.is_unstarted() && this.reply.as_ref().is_some_and(|r| !r.begin()) {
            this.inner.as_mut().project().fut.set(Lazy::Finished);
            *this.reply = None;
            return std::task::Poll::Ready(Outcome::Skipped);
        }
        let polled = this.inner.as_mut().poll(cx);
        // Known when compiled: nothing of this for an actor that does not opt in.
        if A::CANCEL_ON_TIMEOUT
            && polled.is_pending()
            && let Some(reply) = this.reply.as_ref()
            // A tell acknowledged once handled is a tell: never cancelled.
            && !reply.cell().head.acked_tell
            // Also registers the actor's waker: the asker's giving up wakes the handler.
            && reply.poll_given_up(cx).is_ready()
        {
            // The asker gave up (its answer is `Timeout` already): the handler is dropped
            // where it waits, its state as it left it there; nobody hears of it.
            this.inner.as_mut().project().fut.set(Lazy::Finished);
            *this.reply = None;
            return std::task::Poll::Ready(Outcome::Cancelled);
        }
        match std::task::ready!(polled) {
            Ok(()) => {
                // The handler may have kept its responder to answer later: not ours to touch.
                let error = this.reply.take().and_then(|r| r.error());
                std::task::Poll::Ready(error.map_or(Outcome::Done, Outcome::Refused))
            }
            Err(panic) => {
                if let Some(reply) = this.reply.take() {
                    reply.send(Err(AskError::Panicked(panic.clone())));
                }
                std::task::Poll::Ready(Outcome::Panicked(panic))
            }
        }
    }
}
