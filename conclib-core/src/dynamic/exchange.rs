//! A [`DynActorRef`]'s asks and tells of typed messages: [`DynAskFuture`] and
//! [`DynTellFuture`], what its [`AskRequest`](crate::AskRequest)s and
//! [`TellRequest`](crate::TellRequest)s become when awaited.
//!
//! Plain futures, as a typed ref's are ([`AskFuture`](crate::AskFuture)): the message goes
//! boxed in a [`RequestEnvelope`] (the actor's type is not known here), but the exchange
//! itself is not boxed, and an ask arms its timeout only at its second wait
//! ([`AskTimer`]). (A boxed `async` exchange cost an allocation and a copy of the whole
//! future per request: docs/bench-log.md, "Asks by URN without a box".)

use pin_project_lite::pin_project;
use std::any::TypeId;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use super::{DynActorRef, downcast_error, unbox};
use crate::dynamic::erased_request::answered;
use crate::dynamic::request_cell::{Asking, RequestHead, Waiter};
use crate::dynamic::request_envelope::{ErasedResult, RequestEnvelope};
use crate::error::{AskError, SendError};
use crate::message::{Message, Priority};
use crate::send::actor_ref::poll_room;
use crate::send::ask_timer::AskTimer;
use crate::send::request::{DeliverAsk, DeliverTell, SendOptions};

pin_project! {
    /// An ask through a [`DynActorRef`] on its way: resolves to the handler's response, checked
    /// against `M::Response` at run time, or an [`AskError`] ([`AskError::UnknownMessage`] if
    /// the actor does not take `M`); never hangs: it ends at the timeout at the latest.
    #[must_use = "an ask does nothing until awaited"]
    pub struct DynAskFuture<'a, M: Message> {
        target: &'a DynActorRef,
        state: AskState<M>,
        priority: Priority,
        no_wait: bool,
        // Armed only if the answer does not come at once (see [`AskTimer`]).
        #[pin]
        timer: AskTimer,
        #[pin]
        _pin: PhantomPinned,
    }
}

enum AskState<M> {
    Sending(M),
    Waiting(Asking),
    Done,
}

impl<'a, M: Message> DeliverAsk<M> for &'a DynActorRef {
    type Ask = DynAskFuture<'a, M>;

    fn deliver_ask(self, message: M, options: SendOptions) -> Self::Ask {
        DynAskFuture {
            target: self,
            state: AskState::Sending(message),
            priority: options.priority(),
            no_wait: options.no_wait(),
            timer: AskTimer::new(
                options.timeout_or(self.cell.core().ask_timeout()),
                self.cell.core().hands_on(),
            ),
            _pin: PhantomPinned,
        }
    }
}

impl<M: Message> Future for DynAskFuture<'_, M> {
    type Output = Result<M::Response, AskError<M::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let target = *this.target;
        loop {
            match &mut *this.state {
                AskState::Sending(_) => {
                    if !target.cell.accepts(TypeId::of::<M>()) {
                        *this.state = AskState::Done;
                        return Poll::Ready(Err(target.unknown(M::name())));
                    }
                    match poll_room(target.cell.capacity(), *this.no_wait, cx) {
                        Poll::Pending => break,
                        Poll::Ready(Err(e)) => {
                            *this.state = AskState::Done;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(())) => {
                            let AskState::Sending(msg) =
                                std::mem::replace(&mut *this.state, AskState::Done)
                            else {
                                unreachable!()
                            };
                            let (req, asking) = RequestEnvelope::ask(
                                RequestHead::sent::<M>(*this.priority),
                                Box::new(msg),
                            );
                            if target.cell.push_request(req, *this.priority).is_err() {
                                return Poll::Ready(Err(AskError::ActorStopped));
                            }
                            *this.state = AskState::Waiting(asking);
                        }
                    }
                }
                AskState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                    Poll::Ready(answer) => {
                        *this.state = AskState::Done;
                        return Poll::Ready(typed_answer::<M>(answered(target, answer)));
                    }
                    Poll::Pending => break,
                },
                AskState::Done => panic!("DynAskFuture polled after completion"),
            }
        }
        // Pending: the timeout, armed only at the second wait (see `AskTimer`). Dropping the
        // receiver then gives the ask up: the actor does not start it if it has not yet.
        let timed_out = ready!(this.timer.poll_timeout(target.cell.core(), cx));
        *this.state = AskState::Done;
        Poll::Ready(Err(timed_out))
    }
}

/// An erased answer as the typed ask's result.
fn typed_answer<M: Message>(answer: ErasedResult) -> Result<M::Response, AskError<M::Error>> {
    match answer {
        Ok(response) => response.downcast::<M::Response>().map(|r| *r).map_err(|_| {
            tracing::error!(
                message = M::name(),
                "a dynamic request was answered with the wrong type"
            );
            AskError::NoResponse
        }),
        Err(e) => Err(downcast_error::<M>(e)),
    }
}

/// A tell through a [`DynActorRef`] on its way: resolves once the message is queued, or to
/// a [`SendError`] with the message ([`SendError::UnknownMessage`] if the actor does not
/// take `M`).
#[must_use = "a tell does nothing until awaited"]
pub struct DynTellFuture<'a, M: Message> {
    target: &'a DynActorRef,
    msg: Option<M>,
    priority: Priority,
}

impl<M: Message> Unpin for DynTellFuture<'_, M> {}

impl<'a, M: Message> DeliverTell<M> for &'a DynActorRef {
    type Tell = DynTellFuture<'a, M>;

    fn deliver_tell(self, message: M, options: SendOptions) -> Self::Tell {
        DynTellFuture {
            target: self,
            msg: Some(message),
            priority: options.priority(),
        }
    }
}

impl<M: Message> Future for DynTellFuture<'_, M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let target = self.target;
        if !target.cell.accepts(TypeId::of::<M>()) {
            self.msg = None;
            return Poll::Ready(Err(target.unknown_send(M::name())));
        }
        let reserved = ready!(target.cell.capacity().poll_reserve(cx));
        let msg = self
            .msg
            .take()
            .expect("DynTellFuture polled after completion");
        if reserved.is_err() {
            return Poll::Ready(Err(SendError::ActorStopped(msg)));
        }
        let req = RequestEnvelope::new(
            RequestHead::sent::<M>(self.priority),
            Box::new(msg),
            Waiter::Nobody,
        );
        Poll::Ready(
            target
                .cell
                .push_request(req, self.priority)
                .map_err(|mut req| {
                    SendError::ActorStopped(unbox::<M>(req.take_message().expect("not taken")))
                }),
        )
    }
}
