//! Addressing actors whose type is not known at compile time: [`DynActorRef`] (what a URN
//! lookup returns) and the requests it sends.

use std::any::TypeId;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::actor_ref::ActorRef;
use crate::cell::{ActorCell, ErasedCell};
use crate::error::{AskError, SendError, StopReason};
use crate::mailbox::Control;
use crate::message::{Message, Priority};
use crate::remote::{ErasedMessage, RemoteMessage};
use crate::request::{AskRequest, DeliverAsk, DeliverTell, SendOptions, TellRequest};
use crate::request_envelope::{ErasedResult, Reply, ReplyCell, RequestEnvelope};
use crate::system::ActorId;
use crate::trace::TraceContext;
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
    pub fn ask<M: Message>(&self, msg: M) -> AskRequest<&DynActorRef, M> {
        AskRequest::new(self, msg)
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
        self.erased(name, type_id, msg)
            .priority(priority)
            .send()
            .await
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
        let (tx, rx) = oneshot::channel();
        let (target, _) = self.push(Reply::Channel(tx), false).await?;
        Ok(QueuedAsk {
            target: target.clone(),
            rx,
        })
    }

    /// Queues the ask now, as [`queue`](Self::queue) does, and calls `on_answer` with its
    /// result once the handler is done (or the actor stopped without handling it): no
    /// future to await, for a caller that serves many asks at once without a task for
    /// each (a process actor's process). `on_answer` runs on the actor's task: it must not
    /// block. The returned handle gives the ask up.
    ///
    /// ```
    /// # use conclib_core::{Actor, ActorSystem, Message, RemoteMessage};
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
            .push(Reply::Callback(Box::new(on_answer), None), false)
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
        let (tx, rx) = oneshot::channel();
        let done = match self.push(Reply::Channel(tx), true).await {
            Ok(_) => rx.await,
            Err(e) => Ok(Err(e)),
        };
        match done {
            Ok(Ok(_) | Err(AskError::Handler(_) | AskError::NoResponse)) => Ok(()),
            Ok(Err(AskError::UnknownMessage { message, .. })) => Err(target.unknown(&message)),
            Ok(Err(other)) => Err(other.map_handler(|_| unreachable!("matched above"))),
            Err(_) => Err(AskError::ActorStopped),
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
        let (target, req) = self.admit(None).await?;
        let priority = req.priority();
        target
            .cell
            .push_request(req, priority)
            .map_err(|mut req| SendError::ActorStopped(req.message.take().expect("not taken")))
    }

    /// What `send` and `push` share: the actor takes the message and has room for it (as the
    /// room timeout allows). The envelope to push, or why not (with the message).
    async fn admit(
        self,
        reply: Option<Reply>,
    ) -> Result<(&'a DynActorRef, RequestEnvelope), SendError<ErasedMessage>> {
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
            return Err(target.unknown_send(name));
        }
        match target.reserve::<()>(room_timeout).await {
            Ok(()) => {}
            Err(AskError::MailboxFull) => return Err(SendError::MailboxFull(msg)),
            Err(_) => return Err(SendError::ActorStopped(msg)),
        }
        let mut req = RequestEnvelope::new(name, type_id, msg, reply, priority);
        req.trace = trace;
        Ok((target, req))
    }

    /// Takes a place (as the room timeout allows) and queues the request; `reply` gets its
    /// answer (for an acknowledged tell: that it was handled).
    async fn push(
        self,
        reply: Reply,
        acked_tell: bool,
    ) -> Result<(&'a DynActorRef, Arc<ReplyCell>), AskError<ErasedMessage>> {
        let (target, mut req) = self.admit(Some(reply)).await.map_err(|e| match e {
            SendError::UnknownMessage { actor, message } => {
                AskError::UnknownMessage { actor, message }
            }
            SendError::MailboxFull(_) => AskError::MailboxFull,
            SendError::ActorStopped(_) => AskError::ActorStopped,
        })?;
        let priority = req.priority();
        let cell = req.reply_cell().expect("a request with a reply");
        req.acked_tell = acked_tell;
        if target.cell.push_request(req, priority).is_err() {
            // The envelope comes back unqueued: its reply must not hear of it (the caller
            // learns it from this error).
            cell.give_up();
            return Err(AskError::ActorStopped);
        }
        Ok((target, cell))
    }
}

/// An ask queued with [`ErasedRequest::queue_with`], whose answer goes to the function given
/// there; [`give_up`](Self::give_up) takes it back.
pub struct AskHandle {
    reply: Arc<ReplyCell>,
}

impl AskHandle {
    /// Gives the ask up: its function is dropped without being called, and the actor does
    /// not start the request if it has not yet. Nothing happens once it was answered.
    pub fn give_up(&self) {
        self.reply.give_up();
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

/// The exchange of an ask or a tell through a [`DynActorRef`].
type DynExchange<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'a, M: Message> DeliverAsk<M> for &'a DynActorRef {
    type Ask = DynExchange<'a, Result<M::Response, AskError<M::Error>>>;

    fn deliver_ask(self, msg: M, options: SendOptions) -> Self::Ask {
        Box::pin(async move {
            let result = self
                .erased(M::name(), TypeId::of::<M>(), Box::new(msg))
                .timeout(options.timeout_or(self.cell.core().ask_timeout))
                .priority(options.priority())
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

impl<'a, M: Message> DeliverTell<M> for &'a DynActorRef {
    type Tell = DynExchange<'a, Result<(), SendError<M>>>;

    fn deliver_tell(self, msg: M, options: SendOptions) -> Self::Tell {
        Box::pin(async move {
            self.tell_erased(
                M::name(),
                TypeId::of::<M>(),
                Box::new(msg),
                options.priority(),
            )
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
