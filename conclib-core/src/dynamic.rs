//! Addressing actors whose type is not known at compile time: [`DynActorRef`] (what a URN
//! lookup returns) and [`RequestEnvelope`] (what the actor receives).

use std::any::TypeId;
use std::fmt;
use std::future::{Future, IntoFuture, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::cell::{ActorCell, ErasedCell};
use crate::context::Context;
use crate::envelope::{
    CatchUnwind, Envelope, FutureSlot, Inline, Lazy, Outcome, SlotFuture, VTable, payload_ref,
    take_payload,
};
use crate::error::{AskError, SendError, StopReason};
use crate::mailbox::Control;
use crate::message::{Message, Priority};
use crate::remote::{ErasedMessage, RemoteMessage};
use crate::system::ActorId;
use crate::trace::TraceContext;
use crate::urn::Urn;

/// The result of a type-erased ask: the response, or an error whose handler error is erased.
pub type ErasedResult = Result<ErasedMessage, AskError<ErasedMessage>>;

/// Where the answer to a dynamic request goes. Shared by the envelope (or its responder) and
/// the run loop, so a panic after `extract` still reaches the asker as `Panicked`.
pub(crate) struct ReplyCell(
    Mutex<Option<oneshot::Sender<ErasedResult>>>,
    /// The handler's error, when it answered with one (for the actor's statistics).
    OnceLock<String>,
    /// Kept until the answer is sent (a pool's count of the asks in flight at a member).
    Mutex<Option<Box<dyn std::any::Any + Send>>>,
);

impl ReplyCell {
    /// Whether the asker has given up (its receiver is gone), or the answer was sent.
    fn is_closed(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(oneshot::Sender::is_closed)
    }

    pub(crate) fn send(&self, result: ErasedResult) {
        let tx = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
        drop(self.2.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// A request that arrived through a [`DynActorRef`] or a proxy: a message of a type known
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
    message: Option<ErasedMessage>,
    name: &'static str,
    type_id: TypeId,
    reply: Option<Arc<ReplyCell>>,
    /// A tell whose sender learns when it was handled (`reply` then carries only that).
    acked_tell: bool,
    /// The trace the request is part of (from another process's `traceparent`).
    pub(crate) trace: Option<TraceContext>,
    /// The lane it was sent in.
    priority: Priority,
}

impl RequestEnvelope {
    fn new(
        name: &'static str,
        type_id: TypeId,
        message: ErasedMessage,
        reply: Option<oneshot::Sender<ErasedResult>>,
        priority: Priority,
    ) -> Self {
        RequestEnvelope {
            message: Some(message),
            name,
            type_id,
            reply: reply.map(|tx| {
                Arc::new(ReplyCell(
                    Mutex::new(Some(tx)),
                    OnceLock::new(),
                    Mutex::new(None),
                ))
            }),
            acked_tell: false,
            trace: None,
            priority,
        }
    }

    /// The lane the request was sent in.
    #[must_use]
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Takes the message out, still erased, with the responder to answer it: for an actor
    /// that forwards requests elsewhere without knowing their types (a relay to an actor in
    /// another process), which encodes the message and decodes the answer through the
    /// [`RemoteMessage`] of its [`message_name`](Self::message_name).
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

    /// Keeps `guard` until the request is answered (or given up, or dropped); replaces the
    /// one kept before. Nothing is kept for a tell nobody waits for.
    pub(crate) fn keep_until_answered(&self, guard: Option<Box<dyn std::any::Any + Send>>) {
        if let Some(reply) = &self.reply {
            *reply.2.lock().unwrap_or_else(|e| e.into_inner()) = guard;
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
    /// message's types (boxed), as [`RemoteMessage::decode_response`] and
    /// [`RemoteMessage::decode_error`] give them. For a tell it only says it was handled.
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
        let Some(reply) = &self.reply else { return };
        poll_fn(|cx| {
            let mut tx = reply.0.lock().unwrap_or_else(|e| e.into_inner());
            match tx.as_mut() {
                Some(tx) => tx.poll_closed(cx),
                None => std::task::Poll::Ready(()),
            }
        })
        .await;
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
    );
}

unsafe fn reject_request(data: *mut Inline) {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    let req: RequestEnvelope = unsafe { take_payload(data) };
    req.fail(AskError::MailboxFull);
}

unsafe fn request_trace(data: *const Inline) -> Option<TraceContext> {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    unsafe { payload_ref::<RequestEnvelope>(data) }.trace
}

unsafe fn request_name(data: *const Inline) -> &'static str {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope` not yet taken.
    unsafe { payload_ref::<RequestEnvelope>(data) }.name
}

unsafe fn drop_request(data: *mut Inline) {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope`.
    let req: RequestEnvelope = unsafe { take_payload(data) };
    // Dropped unhandled: the actor is gone.
    req.fail(AskError::ActorStopped);
}

unsafe fn handle_request<'a, A: Actor>(
    data: *const Inline,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut FutureSlot,
) -> SlotFuture<'a> {
    // SAFETY: only in the vtable of envelopes holding a `RequestEnvelope`.
    let req: RequestEnvelope = unsafe { take_payload(data) };
    let reply = req.reply.clone();
    slot.put(GuardedRequest {
        inner: CatchUnwind(Lazy::Start(move || actor.handle_request(req, ctx))),
        reply,
    })
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

// ---- DynActorRef ----

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
        self.cell.core().type_name
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
    pub fn send_event(&self, event: crate::SupervisionEvent) -> bool {
        self.cell
            .push_control(crate::mailbox::Control::Event(event))
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

    /// User messages queued and not yet handled.
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
    pub fn remote_messages(&self) -> &'static [RemoteMessage] {
        self.cell.remote()
    }

    /// The exposed message with this wire name.
    #[must_use]
    pub fn remote_message(&self, name: &str) -> Option<&'static RemoteMessage> {
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

    fn unknown<E>(&self, message: &str) -> AskError<E> {
        AskError::UnknownMessage {
            actor: self.cell.core().label(),
            message: message.to_owned(),
        }
    }

    /// Asks with any message type; the answer is checked at run time.
    /// Finish with `.await`; set `.timeout(..)` or `.priority(..)` first if needed.
    pub fn ask<M: Message>(&self, msg: M) -> DynAsk<'_, M> {
        DynAsk {
            target: self,
            msg,
            timeout: self.cell.core().ask_timeout,
            priority: Priority::Normal,
        }
    }

    /// Tells with any message type, waiting for room in a full mailbox. Finish with
    /// `.await`; `.priority(Priority::High)` first to overtake queued normal messages.
    ///
    /// Resolves to [`SendError::UnknownMessage`] if the actor does not accept `M`, or
    /// [`SendError::ActorStopped`] (with the message) if it stopped.
    pub fn tell<M: Message>(&self, msg: M) -> DynTell<'_, M> {
        DynTell {
            target: self,
            msg,
            priority: Priority::Normal,
        }
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
        let req = RequestEnvelope::new(M::name(), TypeId::of::<M>(), Box::new(msg), None, priority);
        self.cell
            .push_request(req, priority)
            .map_err(|mut req| SendError::ActorStopped(take_message::<M>(&mut req)))
    }

    fn unknown_send<M>(&self, message: &str) -> SendError<M> {
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
        if !self.cell.accepts(type_id) {
            return Err(self.unknown_send(name));
        }
        if poll_fn(|cx| self.cell.capacity().poll_reserve(cx))
            .await
            .is_err()
        {
            return Err(SendError::ActorStopped(msg));
        }
        let req = RequestEnvelope::new(name, type_id, msg, None, priority);
        self.cell
            .push_request(req, priority)
            .map_err(|mut req| SendError::ActorStopped(req.message.take().expect("not taken")))
    }

    /// Asks with a message already decoded into an [`ErasedMessage`] (what a proxy does).
    /// `name` and `type_id` are the message's, e.g. from a [`RemoteMessage`].
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

    /// A request with a message already decoded into an [`ErasedMessage`] (what a proxy
    /// sends), to finish with [`ErasedRequest::ask`] or [`ErasedRequest::tell`] after
    /// setting its options.
    pub fn erased(
        &self,
        name: &'static str,
        type_id: TypeId,
        msg: ErasedMessage,
    ) -> ErasedRequest<'_> {
        ErasedRequest {
            target: self,
            name,
            type_id,
            msg,
            timeout: self.cell.core().ask_timeout,
            room_timeout: None,
            priority: Priority::Normal,
            trace: None,
        }
    }

    /// Takes a place in the mailbox, waiting at most `room_timeout` (forever if `None`).
    async fn reserve<E>(&self, room_timeout: Option<Duration>) -> Result<(), AskError<E>> {
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

/// A request whose message was decoded at run time; from [`DynActorRef::erased`].
#[must_use = "a request does nothing until `.ask()` or `.tell()` is awaited"]
pub struct ErasedRequest<'a> {
    target: &'a DynActorRef,
    name: &'static str,
    type_id: TypeId,
    msg: ErasedMessage,
    timeout: Duration,
    room_timeout: Option<Duration>,
    priority: Priority,
    trace: Option<TraceContext>,
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
        let timeout = self.timeout;
        let cell = self.target.cell.clone();
        let exchange = async { self.queue().await?.answer().await };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                crate::metrics::count(cell.core(), "conclib_ask_timeouts_total");
                Err(AskError::Timeout(timeout))
            }
        }
    }

    /// Queues the ask now (waiting for room as the room timeout allows) and returns its
    /// answer, to await later: requests queued one after another enter the mailbox in that
    /// order even when their answers are awaited concurrently. The timeout does not apply;
    /// dropping the answer gives the ask up (it is then not started).
    ///
    /// # Errors
    /// [`AskError::MailboxFull`], [`AskError::ActorStopped`], [`AskError::UnknownMessage`].
    pub async fn queue(self) -> Result<QueuedAsk, AskError<ErasedMessage>> {
        let (target, rx) = self.push(false).await?;
        Ok(QueuedAsk {
            target: target.clone(),
            rx,
        })
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
        let done = match self.push(true).await {
            Ok((_, rx)) => rx.await,
            Err(e) => Ok(Err(e)),
        };
        match done {
            Ok(Ok(_) | Err(AskError::Handler(_) | AskError::NoResponse)) => Ok(()),
            Ok(Err(AskError::UnknownMessage { message, .. })) => Err(target.unknown(&message)),
            Ok(Err(AskError::Panicked(p))) => Err(AskError::Panicked(p)),
            Ok(Err(AskError::MailboxFull)) => Err(AskError::MailboxFull),
            Ok(Err(AskError::Timeout(d))) => Err(AskError::Timeout(d)),
            Ok(Err(AskError::ActorStopped)) | Err(_) => Err(AskError::ActorStopped),
        }
    }

    /// Takes a place (as the room timeout allows) and queues the request; the receiver
    /// gets its answer (for an acknowledged tell: that it was handled).
    async fn push(
        self,
        acked_tell: bool,
    ) -> Result<(&'a DynActorRef, oneshot::Receiver<ErasedResult>), AskError<ErasedMessage>> {
        let ErasedRequest {
            target,
            name,
            type_id,
            msg,
            room_timeout,
            priority,
            trace,
            ..
        } = self;
        if !target.cell.accepts(type_id) {
            return Err(target.unknown(name));
        }
        target.reserve(room_timeout).await?;
        let (tx, rx) = oneshot::channel();
        let mut req = RequestEnvelope::new(name, type_id, msg, Some(tx), priority);
        req.acked_tell = acked_tell;
        req.trace = trace;
        if target.cell.push_request(req, priority).is_err() {
            return Err(AskError::ActorStopped);
        }
        Ok((target, rx))
    }
}

/// An ask already in the actor's mailbox; from [`ErasedRequest::queue`]. Its
/// [`answer`](Self::answer) resolves when the handler is done.
#[derive(Debug)]
#[must_use = "dropping a queued ask gives it up"]
pub struct QueuedAsk {
    target: DynActorRef,
    rx: oneshot::Receiver<ErasedResult>,
}

impl QueuedAsk {
    /// Waits for the handler's answer.
    ///
    /// # Errors
    /// Any [`AskError`] but `Timeout`; the handler's error stays erased.
    pub async fn answer(self) -> ErasedResult {
        match self.rx.await {
            Ok(Err(AskError::UnknownMessage { message, .. })) => Err(self.target.unknown(&message)),
            Ok(result) => result,
            Err(_) => Err(AskError::ActorStopped),
        }
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

/// An ask through a [`DynActorRef`]; `.await` it.
#[must_use = "an ask does nothing until awaited"]
pub struct DynAsk<'a, M: Message> {
    target: &'a DynActorRef,
    msg: M,
    timeout: Duration,
    priority: Priority,
}

impl<'a, M: Message> DynAsk<'a, M> {
    /// Fails with [`AskError::Timeout`] if no answer arrives within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends in the given lane.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl<'a, M: Message> IntoFuture for DynAsk<'a, M> {
    type Output = Result<M::Response, AskError<M::Error>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let DynAsk {
                target,
                msg,
                timeout,
                priority,
            } = self;
            let result = target
                .erased(M::name(), TypeId::of::<M>(), Box::new(msg))
                .timeout(timeout)
                .priority(priority)
                .ask()
                .await;
            match result {
                Ok(response) => response.downcast::<M::Response>().map(|r| *r).map_err(|_| {
                    tracing::error!(
                        message = M::name(),
                        "a dynamic request was answered with the wrong type"
                    );
                    AskError::NoResponse
                }),
                Err(e) => Err(downcast_error::<M>(e)),
            }
        })
    }
}

/// A tell through a [`DynActorRef`]; `.await` it.
#[must_use = "a tell does nothing until awaited"]
pub struct DynTell<'a, M: Message> {
    target: &'a DynActorRef,
    msg: M,
    priority: Priority,
}

impl<M: Message> DynTell<'_, M> {
    /// Sends in the given lane; `High` overtakes queued normal messages.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl<'a, M: Message> IntoFuture for DynTell<'a, M> {
    type Output = Result<(), SendError<M>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let DynTell {
                target,
                msg,
                priority,
            } = self;
            target
                .tell_erased(M::name(), TypeId::of::<M>(), Box::new(msg), priority)
                .await
                .map_err(|e| match e {
                    SendError::ActorStopped(msg) => SendError::ActorStopped(unbox::<M>(msg)),
                    SendError::MailboxFull(msg) => SendError::MailboxFull(unbox::<M>(msg)),
                    SendError::UnknownMessage { actor, message } => {
                        SendError::UnknownMessage { actor, message }
                    }
                })
        })
    }
}

fn unbox<M: Message>(msg: ErasedMessage) -> M {
    *msg.downcast::<M>().expect("the message we sent")
}

fn take_message<M: Message>(req: &mut RequestEnvelope) -> M {
    unbox::<M>(req.message.take().expect("not taken"))
}

fn downcast_error<M: Message>(e: AskError<ErasedMessage>) -> AskError<M::Error> {
    match e {
        AskError::Handler(err) => match err.downcast::<M::Error>() {
            Ok(err) => AskError::Handler(*err),
            Err(_) => AskError::NoResponse,
        },
        other => other.map_handler(|_| unreachable!("handler errors are matched above")),
    }
}
