//! Requests by message name, decoded at run time ([`ErasedRequest`], from
//! [`DynActorRef::erased`]): what the Redis proxy and process actors' relays send, queued
//! and answered without the message's type.

use std::any::TypeId;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::dynamic::DynActorRef;
use crate::dynamic::request_cell::{Asking, RequestCell, RequestHead, Waiter};
use crate::dynamic::request_envelope::{ErasedResult, RequestEnvelope};
use crate::error::{AskError, SendError};
use crate::exposed::remote::ErasedMessage;
use crate::fence::Fence;
use crate::message::Priority;
use crate::observe::trace::TraceContext;
use crate::send::ask_timer::AskTimer;

/// A request whose message was decoded at run time; from [`DynActorRef::erased`].
#[must_use = "a request does nothing until `.ask()`, `.tell()` or `.send()` is awaited"]
pub struct ErasedRequest<'a> {
    target: &'a DynActorRef,
    name: &'static str,
    type_id: TypeId,
    msg: ErasedMessage,
    timeout: Duration,
    room_timeout: Option<Duration>,
    priority: Priority,
    trace: Option<TraceContext>,
    fence: Option<Fence>,
}

impl fmt::Debug for ErasedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedRequest")
            .field("message", &self.name)
            .field("timeout", &self.timeout)
            .field("room_timeout", &self.room_timeout)
            .finish_non_exhaustive()
    }
}

impl<'a> ErasedRequest<'a> {
    pub(crate) fn new(
        target: &'a DynActorRef,
        name: &'static str,
        type_id: TypeId,
        msg: ErasedMessage,
    ) -> Self {
        ErasedRequest {
            target,
            name,
            type_id,
            msg,
            timeout: target.cell.core().ask_timeout(),
            room_timeout: None,
            priority: Priority::Normal,
            trace: None,
            fence: None,
        }
    }

    /// How long [`ask`](Self::ask) waits for the answer in all (default: the actor's ask
    /// timeout). When it passes, the asker has given up: a request still queued is then
    /// never handled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fails with [`AskError::MailboxFull`] if the mailbox has no room within `wait`
    /// (default: wait for room as long as the timeout allows).
    pub fn room_timeout(mut self, wait: Duration) -> Self {
        self.room_timeout = Some(wait);
        self
    }

    /// Sends in the given lane.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Has the actor start the request only while `fence` is open: otherwise it skips it,
    /// and [`ask`](Self::ask) and [`tell`](Self::tell) end with [`AskError::Fenced`] (the
    /// message was not handled).
    pub fn fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Makes the request part of `trace`: the actor's `handle` span records its trace id and
    /// span id (as `parent_span_id`).
    pub fn trace(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace;
        self
    }

    /// Asks and waits for the answer.
    ///
    /// # Errors
    /// Any [`AskError`]; the handler's error stays erased.
    pub async fn ask(self) -> ErasedResult {
        let target = self.target;
        let mut timer = pin!(AskTimer::new(self.timeout, target.cell.core().hands_on()));
        // As `queue` and `answer`, without the owned ref a queued ask keeps.
        let mut exchange = pin!(async move {
            let (_, cell) = self.push(Waiter::Asker, false).await?;
            answered(target, Asking::new(cell).await)
        });
        // The timer armed only if the answer does not come at once (see `AskTimer`).
        poll_fn(|cx| match exchange.as_mut().poll(cx) {
            Poll::Ready(answer) => Poll::Ready(answer),
            Poll::Pending => timer.as_mut().poll_timeout(target.cell.core(), cx).map(Err),
        })
        .await
    }

    /// Queues the ask now (waiting for room as the room timeout allows) and returns its
    /// answer, to await later: requests queued one after another enter the mailbox in that
    /// order even when their answers are awaited concurrently. The timeout does not apply;
    /// dropping the answer gives the ask up (it is then not started).
    ///
    /// # Errors
    /// [`AskError::MailboxFull`], [`AskError::ActorStopped`], [`AskError::UnknownMessage`].
    pub async fn queue(self) -> Result<QueuedAsk, AskError<ErasedMessage>> {
        let (target, cell) = self.push(Waiter::Asker, false).await?;
        Ok(QueuedAsk {
            target: target.clone(),
            asking: Asking::new(cell),
        })
    }

    /// Queues the ask now, as [`queue`](Self::queue) does, and calls `on_answer` with its
    /// result once the handler is done (or the actor stopped without handling it): no
    /// future to await, for a caller that serves many asks at once without a task for
    /// each (a process actor's process). `on_answer` runs on the actor's task: it must not
    /// block. The returned handle gives the ask up.
    ///
    /// ```
    /// # use conclib_core::{Actor, ActorSystem, Message, ExposedMessage};
    /// # struct Double(u64);
    /// # impl Message for Double { type Response = u64; type Error = std::convert::Infallible; }
    /// # #[derive(Default)] struct Calc;
    /// # impl Actor for Calc {
    /// #     async fn handle_request(&mut self, req: conclib_core::RequestEnvelope, _: &mut conclib_core::Context<Self>) {
    /// #         if let Ok((Double(n), r)) = req.extract::<Double>() { r.respond(Ok(n * 2)) }
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let system = ActorSystem::new("doc");
    /// # let calc = system.spawn(Calc).await.unwrap().to_dyn();
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let msg = Box::new(Double(21));
    /// let _ask = calc
    ///     .erased("Double", std::any::TypeId::of::<Double>(), msg)
    ///     .queue_with(move |answer| {
    ///         let _ = tx.send(answer.map(|r| *r.downcast::<u64>().unwrap()));
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(rx.await.unwrap().unwrap(), 42);
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`queue`](Self::queue); then `on_answer` is not called.
    pub async fn queue_with(
        self,
        on_answer: impl FnOnce(ErasedResult) + Send + 'static,
    ) -> Result<AskHandle, AskError<ErasedMessage>> {
        let target = self.target.clone();
        let on_answer = move |answer: ErasedResult| {
            on_answer(match answer {
                Err(AskError::UnknownMessage { message, .. }) => Err(target.unknown(&message)),
                answer => answer,
            });
        };
        let (_, reply) = self
            .push(Waiter::Callback(Box::new(on_answer)), false)
            .await?;
        Ok(AskHandle { reply })
    }

    /// Tells, and resolves once the actor has handled the message (whatever the handler
    /// returned), so that the sender can acknowledge it only then. The timeout does not
    /// apply: a told message is always handled once queued. The actor sees a tell
    /// ([`RequestEnvelope::expects_response`] is false); a handler error is logged.
    ///
    /// # Errors
    /// [`AskError::MailboxFull`] if there was no room within the room timeout,
    /// [`AskError::ActorStopped`] if the actor stopped before handling it (or was killed
    /// while handling it), [`AskError::UnknownMessage`] if it does not take this message,
    /// [`AskError::Panicked`] if the handler panicked.
    pub async fn tell(self) -> Result<(), AskError> {
        let target = self.target;
        let done = match self.push(Waiter::Asker, true).await {
            Ok((_, cell)) => Asking::new(cell).await,
            Err(e) => Some(Err(e)),
        };
        match done {
            Some(Ok(_) | Err(AskError::Handler(_) | AskError::NoResponse)) => Ok(()),
            Some(Err(AskError::UnknownMessage { message, .. })) => Err(target.unknown(&message)),
            Some(Err(other)) => Err(other.map_handler(|_| unreachable!("matched above"))),
            None => Err(AskError::ActorStopped),
        }
    }

    /// Tells without waiting for the handler: resolves once the message is queued, as
    /// [`DynActorRef::tell_erased`] does, with this request's priority, room timeout and
    /// trace (what a process actor's link does with a traced tell).
    ///
    /// # Errors
    /// [`SendError::UnknownMessage`] if the actor does not take the message;
    /// [`SendError::MailboxFull`] if there was no room within the room timeout (none set:
    /// it waits); [`SendError::ActorStopped`] if the actor stopped. Both give the message
    /// back.
    pub async fn send(self) -> Result<(), SendError<ErasedMessage>> {
        let (target, req) = self.admit(Waiter::Nobody, false).await?;
        let priority = req.priority();
        target
            .cell
            .push_request(req, priority)
            .map_err(|mut req| SendError::ActorStopped(req.take_message().expect("not taken")))
    }

    /// What `send` and `push` share: the actor takes the message and has room for it (as the
    /// room timeout allows). The envelope to push, or why not (with the message).
    async fn admit(
        self,
        waiter: Waiter,
        acked_tell: bool,
    ) -> Result<(&'a DynActorRef, RequestEnvelope), SendError<ErasedMessage>> {
        let ErasedRequest {
            target,
            name,
            type_id,
            msg,
            room_timeout,
            priority,
            trace,
            fence,
            ..
        } = self;
        if !target.cell.accepts(type_id) {
            return Err(target.unknown_send(name));
        }
        match target.reserve::<()>(room_timeout).await {
            Ok(()) => {}
            Err(AskError::MailboxFull) => return Err(SendError::MailboxFull(msg)),
            Err(_) => return Err(SendError::ActorStopped(msg)),
        }
        let head = RequestHead {
            name,
            type_id,
            priority,
            trace,
            acked_tell,
            fence,
        };
        Ok((target, RequestEnvelope::new(head, msg, waiter)))
    }

    /// Takes a place (as the room timeout allows) and queues the request; `waiter` gets its
    /// answer (for an acknowledged tell: that it was handled). The request's cell, for the
    /// asker's side of it.
    async fn push(
        self,
        waiter: Waiter,
        acked_tell: bool,
    ) -> Result<(&'a DynActorRef, Arc<RequestCell>), AskError<ErasedMessage>> {
        let (target, req) = self.admit(waiter, acked_tell).await.map_err(|e| match e {
            SendError::UnknownMessage { actor, message } => {
                AskError::UnknownMessage { actor, message }
            }
            SendError::MailboxFull(_) => AskError::MailboxFull,
            SendError::ActorStopped(_) => AskError::ActorStopped,
        })?;
        let priority = req.priority();
        let Some(cell) = req.cell().cloned() else {
            unreachable!("a request somebody waits for has a cell")
        };
        if let Err(mut req) = target.cell.push_request(req, priority) {
            // The envelope comes back unqueued: its waiter must not hear of it (the caller
            // learns it from this error).
            req.disarm();
            return Err(AskError::ActorStopped);
        }
        Ok((target, cell))
    }
}

/// An ask queued with [`ErasedRequest::queue_with`], whose answer goes to the function given
/// there; [`give_up`](Self::give_up) takes it back.
pub struct AskHandle {
    reply: Arc<RequestCell>,
}

impl AskHandle {
    /// Gives the ask up: its function is dropped without being called, and the actor does
    /// not start the request if it has not yet. Nothing happens once it was answered.
    ///
    /// Returns whether the actor had not started it: it never will (it skips it, or drops
    /// it if it stops first). `false` once the handler started, or the ask was answered or
    /// given up before.
    pub fn give_up(&self) -> bool {
        self.reply.give_up()
    }
}

impl fmt::Debug for AskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AskHandle").finish_non_exhaustive()
    }
}

/// An ask already in the actor's mailbox; from [`ErasedRequest::queue`]. Its
/// [`answer`](Self::answer) resolves when the handler is done.
#[derive(Debug)]
#[must_use = "dropping a queued ask gives it up"]
pub struct QueuedAsk {
    target: DynActorRef,
    asking: Asking,
}

impl QueuedAsk {
    /// Waits for the handler's answer.
    ///
    /// # Errors
    /// Any [`AskError`] but `Timeout`; the handler's error stays erased.
    pub async fn answer(self) -> ErasedResult {
        answered(&self.target, self.asking.await)
    }
}

/// Erased requests from a [`DynActorRef`]: here, beside the request, so that the ref does
/// not reach up to it.
impl DynActorRef {
    /// A request with a message already decoded into an [`ErasedMessage`] (what a proxy
    /// sends), to finish with [`ErasedRequest::ask`] or [`ErasedRequest::tell`] after
    /// setting its options.
    pub fn erased(
        &self,
        name: &'static str,
        type_id: TypeId,
        msg: ErasedMessage,
    ) -> ErasedRequest<'_> {
        ErasedRequest::new(self, name, type_id, msg)
    }
}

/// An erased ask's answer as its asker gets it: a refusal named after `target` (a rejecting
/// envelope does not know its actor's name), none (the actor's side went without
/// answering) as the actor stopped.
pub(crate) fn answered(target: &DynActorRef, received: Option<ErasedResult>) -> ErasedResult {
    match received {
        Some(Err(AskError::UnknownMessage { message, .. })) => Err(target.unknown(&message)),
        Some(result) => result,
        None => Err(AskError::ActorStopped),
    }
}
