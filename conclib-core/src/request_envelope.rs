//! What a dynamic request is on the actor's side: [`RequestEnvelope`] (what
//! [`Actor::handle_request`] receives), its responders, and the envelope it travels in.

use std::any::TypeId;
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::context::Context;
use crate::envelope::{Envelope, Outcome, Payload, VTable, payload_ref, take_payload};
use crate::error::AskError;
use crate::future_slot::{FutureSlot, Started};
use crate::guarded::{CatchUnwind, Lazy};
use crate::message::{Message, Priority};
use crate::remote::ErasedMessage;
use crate::trace::TraceContext;

/// The result of a type-erased ask: the response, or an error whose handler error is erased.
pub type ErasedResult = Result<ErasedMessage, AskError<ErasedMessage>>;

/// Where the answer to a dynamic request goes. Shared by the envelope (or its responder) and
/// the run loop, so a panic after `extract` still reaches the asker as `Panicked`.
pub(crate) struct ReplyCell(
    Mutex<Option<Reply>>,
    /// The handler's error, when it answered with one (for the actor's statistics).
    OnceLock<String>,
    /// Kept until the answer is sent (a pool's count of the asks in flight at a member, a
    /// relay's place in its mailbox).
    Mutex<Vec<crate::envelope::Kept>>,
);

/// Who waits for the answer: an asker's future, or a function called with it.
pub(crate) enum Reply {
    Channel(oneshot::Sender<ErasedResult>),
    /// Called on the actor's task ([`ErasedRequest::queue_with`](crate::ErasedRequest::queue_with));
    /// with the task waiting in [`ErasedResponder::closed`], woken when the asker gives up.
    Callback(
        Box<dyn FnOnce(ErasedResult) + Send>,
        Option<std::task::Waker>,
    ),
}

impl ReplyCell {
    pub(crate) fn new(reply: Reply) -> Arc<Self> {
        Arc::new(ReplyCell(
            Mutex::new(Some(reply)),
            OnceLock::new(),
            Mutex::new(Vec::new()),
        ))
    }

    fn reply(&self) -> std::sync::MutexGuard<'_, Option<Reply>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the asker has given up (its receiver is gone, or it took its callback
    /// back), or the answer was sent.
    fn is_closed(&self) -> bool {
        match &*self.reply() {
            None => true,
            Some(Reply::Channel(tx)) => tx.is_closed(),
            Some(Reply::Callback(..)) => false,
        }
    }

    pub(crate) fn send(&self, result: ErasedResult) {
        let reply = self.reply().take();
        match reply {
            Some(Reply::Channel(tx)) => {
                let _ = tx.send(result);
            }
            Some(Reply::Callback(answer, _)) => answer(result),
            None => {}
        }
        drop(std::mem::take(
            &mut *self.2.lock().unwrap_or_else(|e| e.into_inner()),
        ));
    }

    /// The asker gives up: nothing is called, and the request is not started if it has not
    /// been yet.
    pub(crate) fn give_up(&self) {
        let reply = self.reply().take();
        if let Some(Reply::Callback(answer, closed)) = reply {
            drop(answer);
            if let Some(closed) = closed {
                closed.wake();
            }
        }
    }
}

/// A request that arrived through a [`DynActorRef`](crate::DynActorRef) or a proxy: a message of a type known
/// only at run time, and where to send the answer.
///
/// The actor's [`Actor::handle_request`] looks at it with [`matches`](Self::matches) and
/// [`extract`](Self::extract), then answers through the [`Responder`]. Dropping the envelope
/// or the responder without answering gives the asker [`AskError::NoResponse`] at once.
///
/// ```
/// use conclib_core::{Message, RequestEnvelope};
/// use std::convert::Infallible;
///
/// struct Ping;
/// impl Message for Ping { type Response = &'static str; type Error = Infallible; }
///
/// fn answer(request: RequestEnvelope) {
///     if request.matches::<Ping>() {
///         let (Ping, responder) = request.extract::<Ping>().ok().unwrap();
///         responder.respond(Ok("pong"));
///     } else {
///         request.reject();
///     }
/// }
/// ```
pub struct RequestEnvelope {
    pub(crate) message: Option<ErasedMessage>,
    name: &'static str,
    type_id: TypeId,
    reply: Option<Arc<ReplyCell>>,
    /// A tell whose sender learns when it was handled (`reply` then carries only that).
    pub(crate) acked_tell: bool,
    /// The trace the request is part of (from another process's `traceparent`).
    pub(crate) trace: Option<TraceContext>,
    /// The lane it was sent in.
    priority: Priority,
}

impl RequestEnvelope {
    pub(crate) fn new(
        name: &'static str,
        type_id: TypeId,
        message: ErasedMessage,
        reply: Option<Reply>,
        priority: Priority,
    ) -> Self {
        RequestEnvelope {
            message: Some(message),
            name,
            type_id,
            reply: reply.map(ReplyCell::new),
            acked_tell: false,
            trace: None,
            priority,
        }
    }

    /// Where its answer goes (shared), if anybody waits for it.
    pub(crate) fn reply_cell(&self) -> Option<Arc<ReplyCell>> {
        self.reply.clone()
    }

    /// The lane the request was sent in.
    #[must_use]
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Takes the message out, still erased, with the responder to answer it: for an actor
    /// that forwards requests elsewhere without knowing their types (a relay to an actor in
    /// another process), which encodes the message and decodes the answer through the
    /// [`ExposedMessage`](crate::ExposedMessage) of its [`message_name`](Self::message_name).
    pub fn into_erased(mut self) -> (ErasedMessage, ErasedResponder) {
        let message = self
            .message
            .take()
            .expect("an envelope's message is taken once");
        let responder = ErasedResponder {
            reply: self.reply.take(),
            acked_tell: self.acked_tell,
        };
        (message, responder)
    }

    /// The trace the request is part of, if its sender passed one on.
    #[must_use]
    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    /// The message's wire name ([`Message::name`]).
    #[must_use]
    pub fn message_name(&self) -> &'static str {
        self.name
    }

    /// Whether the request holds an `M`.
    #[must_use]
    pub fn matches<M: Message>(&self) -> bool {
        self.type_id == TypeId::of::<M>()
    }

    /// Keeps `guard` until the request is answered (or given up, or dropped), beside what
    /// was kept before. Gives it back for a tell nobody waits for.
    pub(crate) fn keep_until_answered(
        &self,
        guard: crate::envelope::Kept,
    ) -> Option<crate::envelope::Kept> {
        match &self.reply {
            Some(reply) if !self.acked_tell => {
                reply
                    .2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(guard);
                None
            }
            _ => Some(guard),
        }
    }

    /// Drops what [`keep_until_answered`](Self::keep_until_answered) kept.
    pub(crate) fn drop_kept(&self) {
        if let Some(reply) = &self.reply {
            drop(std::mem::take(
                &mut *reply.2.lock().unwrap_or_else(|e| e.into_inner()),
            ));
        }
    }

    /// The message, still erased (for routing by key).
    pub(crate) fn message_ref(&self) -> Option<&(dyn std::any::Any + Send)> {
        self.message.as_deref()
    }

    /// Whether the request holds a message of this type.
    pub(crate) fn matches_type(&self, type_id: TypeId) -> bool {
        self.type_id == type_id
    }

    /// Whether the sender waits for an answer (an ask rather than a tell).
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.reply.is_some() && !self.acked_tell
    }

    /// Takes the message out if it is an `M`, with the responder to answer it; otherwise
    /// gives the envelope back untouched.
    ///
    /// # Errors
    /// The envelope itself when it does not hold an `M`.
    pub fn extract<M: Message>(mut self) -> Result<(M, Responder<M>), RequestEnvelope> {
        if !self.matches::<M>() {
            return Err(self);
        }
        let message = self
            .message
            .take()
            .expect("an envelope's message is taken once");
        let msg = *message.downcast::<M>().expect("type id checked above");
        let responder = Responder {
            reply: self.reply.take(),
            acked_tell: self.acked_tell,
            _message: PhantomData,
        };
        Ok((msg, responder))
    }

    /// Answers that the actor does not handle this message
    /// ([`AskError::UnknownMessage`]); a tell is logged and dropped.
    pub fn reject(mut self) {
        match self.reply.take() {
            Some(reply) if !self.acked_tell => reply.send(Err(AskError::UnknownMessage {
                actor: String::new(),
                message: self.name.to_owned(),
            })),
            reply => {
                tracing::warn!(
                    message = self.name,
                    "dropped a told message the actor does not handle"
                );
                if let Some(reply) = reply {
                    reply.send(Err(AskError::UnknownMessage {
                        actor: String::new(),
                        message: self.name.to_owned(),
                    }));
                }
            }
        }
    }

    pub(crate) fn fail(mut self, error: AskError<ErasedMessage>) {
        if let Some(reply) = self.reply.take() {
            reply.send(Err(error));
        }
    }
}

impl fmt::Debug for RequestEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestEnvelope")
            .field("message", &self.name)
            .field("expects_response", &self.reply.is_some())
            .finish()
    }
}

impl Drop for RequestEnvelope {
    fn drop(&mut self) {
        // While unwinding, the run loop answers `Panicked` with the panic's message.
        if let Some(reply) = self.reply.take()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
    }
}

/// Answers one dynamic request whose type is known only at run time; from
/// [`RequestEnvelope::into_erased`]. Dropping it without answering gives the asker
/// [`AskError::NoResponse`].
#[must_use = "dropping a responder answers NoResponse"]
pub struct ErasedResponder {
    reply: Option<Arc<ReplyCell>>,
    acked_tell: bool,
}

impl fmt::Debug for ErasedResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedResponder")
            .field("expects_response", &self.expects_response())
            .field("wants_ack", &self.wants_ack())
            .finish()
    }
}

impl ErasedResponder {
    /// Sends the result to the asker: the response or handler error must be of the
    /// message's types (boxed), as [`ExposedMessage::decode_response`](crate::ExposedMessage::decode_response) and
    /// [`ExposedMessage::decode_error`](crate::ExposedMessage::decode_error) give them. For a tell it only says it was handled.
    pub fn respond(mut self, result: ErasedResult) {
        if let Some(reply) = self.reply.take() {
            if let Err(AskError::Handler(_)) = &result {
                let _ = reply.1.set("the handler returned an error".to_owned());
            }
            reply.send(result);
        }
    }

    /// Whether the sender waits for an answer (an ask rather than a tell).
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.reply.is_some() && !self.acked_tell
    }

    /// Whether the sender waits to learn that a tell was handled (then answer once it was).
    #[must_use]
    pub fn wants_ack(&self) -> bool {
        self.reply.is_some() && self.acked_tell
    }

    /// Resolves once nobody waits for the answer any more (the asker timed out or dropped
    /// its future), or at once if nobody waited: the moment to give the work up.
    pub async fn closed(&mut self) {
        poll_fn(|cx| self.poll_closed(cx)).await;
    }

    /// [`closed`](Self::closed) as a poll: `Ready` once nobody waits for the answer any
    /// more; otherwise `cx`'s waker is woken when that happens. The waker need not be a
    /// task's: one that gives the work up when woken watches an ask without a task of its
    /// own (a relay to another process does this).
    pub fn poll_closed(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let Some(reply) = &self.reply else {
            return std::task::Poll::Ready(());
        };
        match reply.reply().as_mut() {
            Some(Reply::Channel(tx)) => tx.poll_closed(cx),
            Some(Reply::Callback(_, closed)) => {
                *closed = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
            None => std::task::Poll::Ready(()),
        }
    }
}

impl Drop for ErasedResponder {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
    }
}

/// Answers one dynamic request of message type `M`; from [`RequestEnvelope::extract`].
#[must_use = "dropping a responder answers NoResponse"]
pub struct Responder<M: Message> {
    reply: Option<Arc<ReplyCell>>,
    acked_tell: bool,
    _message: PhantomData<fn(M)>,
}

impl<M: Message> Responder<M> {
    /// Sends the handler's result to the asker (nothing happens for a tell).
    pub fn respond(mut self, result: Result<M::Response, M::Error>) {
        if self.acked_tell
            && let Err(e) = &result
        {
            tracing::warn!(error = ?e, "a told message's handler returned an error");
        }
        if let Some(reply) = self.reply.take() {
            reply.send(match result {
                Ok(r) => Ok(Box::new(r)),
                Err(e) => {
                    let _ = reply.1.set(format!("{e:?}"));
                    Err(AskError::Handler(Box::new(e)))
                }
            });
        }
    }

    /// Whether the sender waits for an answer.
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.reply.is_some() && !self.acked_tell
    }
}

impl<M: Message> Drop for Responder<M> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
    }
}

impl<M: Message> fmt::Debug for Responder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("message", &M::name())
            .finish()
    }
}

// ---- the envelope a dynamic request travels in ----

struct RequestVTable<A>(PhantomData<A>);

impl<A: Actor> RequestVTable<A> {
    const VTABLE: VTable<A> = VTable::new(
        handle_request::<A>,
        drop_request,
        request_name,
        request_trace,
        reject_request,
        keep_request,
    );
}

unsafe fn keep_request(at: Payload, guard: crate::envelope::Kept) -> Option<crate::envelope::Kept> {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    unsafe { payload_ref::<RequestEnvelope>(at) }.keep_until_answered(guard)
}

unsafe fn reject_request(at: Payload) {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    let req: RequestEnvelope = unsafe { take_payload(at) };
    req.fail(AskError::MailboxFull);
}

unsafe fn request_trace(at: Payload) -> Option<TraceContext> {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    unsafe { payload_ref::<RequestEnvelope>(at) }.trace
}

unsafe fn request_name(at: Payload) -> &'static str {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    unsafe { payload_ref::<RequestEnvelope>(at) }.name
}

unsafe fn drop_request(at: Payload) {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope`.
    let req: RequestEnvelope = unsafe { take_payload(at) };
    // Dropped unhandled: the actor is gone.
    req.fail(AskError::ActorStopped);
}

unsafe fn handle_request<'a, A: Actor>(
    at: Payload,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut FutureSlot,
    cx: &mut std::task::Context<'_>,
) -> Started<'a> {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope`.
    let req: RequestEnvelope = unsafe { take_payload(at) };
    let reply = req.reply.clone();
    slot.start(
        GuardedRequest {
            inner: CatchUnwind(Lazy::Start(move || actor.handle_request(req, ctx))),
            reply,
        },
        cx,
    )
}

struct GuardedRequest<C, F> {
    inner: CatchUnwind<Lazy<C, F>>,
    reply: Option<Arc<ReplyCell>>,
}

impl<C: FnOnce() -> F, F: Future<Output = ()>> Future for GuardedRequest<C, F> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Outcome> {
        // SAFETY: `inner` is structurally pinned; `reply` is not.
        let this = unsafe { self.get_unchecked_mut() };
        // Nobody waits for the answer any more: do not start the work.
        if this.inner.0.is_unstarted() && this.reply.as_ref().is_some_and(|r| r.is_closed()) {
            this.inner.0 = Lazy::Finished;
            this.reply = None;
            return std::task::Poll::Ready(Outcome::Skipped);
        }
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        match std::task::ready!(inner.poll(cx)) {
            Ok(()) => {
                // The handler may have kept its responder to answer later: not ours to touch.
                let error = this.reply.take().and_then(|r| r.1.get().cloned());
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

impl<C, F> Drop for GuardedRequest<C, F> {
    fn drop(&mut self) {
        // Dropped before the handler finished: the actor was killed while handling it. (After
        // an answer, or a panic, the reply was taken and this does nothing.)
        if let Some(reply) = self.reply.take() {
            reply.send(Err(AskError::ActorStopped));
        }
    }
}

pub(crate) fn request_envelope<A: Actor>(req: RequestEnvelope) -> Envelope<A> {
    Envelope::with_vtable(req, &RequestVTable::<A>::VTABLE)
}

pub(crate) fn take_request<A: Actor>(env: Envelope<A>) -> RequestEnvelope {
    // SAFETY: only called on envelopes built by `request_envelope`.
    unsafe { env.into_payload::<RequestEnvelope>() }
}
