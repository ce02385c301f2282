//! Typed refs: [`ActorRef`] for one actor type, [`Recipient`] for one message type.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::erased::ErasedCell;
use crate::cell::{ActorCell, Target};
use crate::error::{AskError, SendError, StopReason};
use crate::handler::Handler;
use crate::mailbox::control::Control;
use crate::message::{Message, Priority};
use crate::send::ask_timer::AskTimer;
use crate::send::request::{AskRequest, DeliverAsk, DeliverTell, SendOptions, TellRequest};
use crate::urn::Urn;

/// A typed ref to an actor of type `A`: send it any message `A` handles, checked at compile
/// time. Cloning is cheap; all clones address the same actor.
///
/// ```
/// use conclib_core::{Actor, ActorSystem, Context, Handler, Message};
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// struct Add(u64);
/// impl Message for Add { type Response = u64; type Error = Infallible; }
/// impl Handler<Add> for Counter {
///     async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
///         self.0 += n;
///         Ok(self.0)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// let counter = system.spawn(Counter(0)).await.unwrap();
/// counter.tell(Add(2)).await.unwrap();
/// let total = counter.ask(Add(3)).timeout(Duration::from_secs(1)).await.unwrap();
/// assert_eq!(total, 5);
/// # }
/// ```
pub struct ActorRef<A: Actor> {
    pub(crate) cell: Arc<ActorCell<A>>,
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            cell: self.cell.clone(),
        }
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}
impl<A: Actor> Eq for ActorRef<A> {}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("id", &self.cell.core.id)
            .field("urn", &self.cell.core.urn)
            .field("type", &self.cell.core.type_name())
            .finish()
    }
}

impl<A: Actor> ActorRef<A> {
    /// The actor's id, unique within its system.
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.cell.core.id
    }

    /// The actor's URN, if it has one.
    #[must_use]
    pub fn urn(&self) -> Option<&Urn> {
        self.cell.core.urn.as_ref()
    }

    /// Whether the actor has not stopped yet.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.cell.core.is_alive()
    }

    /// User messages queued and not yet handled: exact while the actor waits (for mail, or
    /// at a handler's `.await`); while it runs through a batch of messages, up to 64 of
    /// those it took already (a sixteenth of a bounded mailbox's capacity at most) may still
    /// count (see [`MailboxConfig`](crate::MailboxConfig)). A message counts from the moment
    /// its sender reserved its place, a moment before it is queued: a [`stop`](Self::stop)
    /// in between refuses it (its send fails `ActorStopped`), though it was counted.
    #[must_use]
    pub fn mailbox_len(&self) -> usize {
        self.cell.mailbox.capacity.len()
    }

    /// How many asks this actor did not start because their asker had already given up
    /// (see [`ask`](Self::ask)).
    #[must_use]
    pub fn asks_skipped(&self) -> u64 {
        self.cell.core.skipped_asks()
    }

    /// Sends `msg` without waiting for an answer. `.await` it: it waits only while the
    /// mailbox is full (backpressure). Use `.priority(Priority::High)` to overtake queued
    /// normal messages.
    ///
    /// The message comes back in the error if the actor has stopped.
    pub fn tell<M: Message>(&self, msg: M) -> TellRequest<&ActorRef<A>, M>
    where
        A: Handler<M>,
    {
        TellRequest::new(self, msg)
    }

    /// Sends `msg` if there is room right now; never waits.
    ///
    /// # Errors
    /// [`SendError::MailboxFull`] or [`SendError::ActorStopped`], with the message.
    pub fn try_tell<M: Message>(&self, msg: M) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
    {
        try_send(&*self.cell, msg, None, Priority::Normal)
    }

    /// Sends `msg` and waits for the handler's response, at most the actor's default ask
    /// timeout (see [`SpawnBuilder::ask_timeout`](crate::SpawnBuilder::ask_timeout)) unless
    /// `.timeout(..)` says otherwise.
    ///
    /// **An ask nobody waits for is not handled.** If the asker has given up before the
    /// actor takes the message (the ask timed out, or its future was dropped), the handler
    /// is never started: the message is dropped, counted in
    /// [`asks_skipped`](Self::asks_skipped) and traced at `debug`. Once started, a handler
    /// runs to its end even if the asker gives up meanwhile. Tells are always handled.
    pub fn ask<M: Message>(&self, msg: M) -> AskRequest<&ActorRef<A>, M>
    where
        A: Handler<M>,
    {
        AskRequest::new(self, msg)
    }

    /// Sends `msg` if there is room right now, then waits for the response as [`ask`](Self::ask).
    /// Fails with [`AskError::MailboxFull`] instead of waiting for room.
    pub fn try_ask<M: Message>(&self, msg: M) -> AskRequest<&ActorRef<A>, M>
    where
        A: Handler<M>,
    {
        AskRequest::new(self, msg).no_wait()
    }

    /// Graceful stop: messages queued before this call are handled, later sends are refused,
    /// then children stop and [`Actor::on_stop`] runs.
    pub fn stop(&self) {
        self.cell.mailbox.close();
    }

    /// Stops now: the running handler is dropped at its next `.await` (its ask fails with
    /// [`AskError::ActorStopped`]), queued messages are dropped and their asks fail with
    /// [`AskError::ActorStopped`], then its children are killed (and theirs) and
    /// [`Actor::on_stop`] runs with [`StopReason::Killed`]; the parent and watchers are told.
    ///
    /// A handler that never reaches an `.await` (a CPU loop) cannot be interrupted inside the
    /// process: the kill takes effect when it returns. Run such work in a process actor,
    /// whose process can be killed.
    pub fn kill(&self) {
        let _ = self.cell.mailbox.push_control(Control::Kill);
    }

    /// Waits until the actor has stopped (its URN is free by then) and returns why.
    pub async fn wait_for_stop(&self) -> StopReason {
        self.cell.core.wait_for_stop().await
    }

    /// A ref that erases the actor type, for one message type.
    #[must_use]
    pub fn recipient<M: Message>(&self) -> Recipient<M>
    where
        A: Handler<M>,
    {
        Recipient {
            target: self.cell.clone(),
        }
    }
}

/// A ref to any actor that handles `M`.
///
/// ```
/// # use conclib_core::*;
/// # use std::convert::Infallible;
/// # struct Log(String);
/// # impl Message for Log { type Response = (); type Error = Infallible; }
/// # struct Logger;
/// # impl Actor for Logger {}
/// # impl Handler<Log> for Logger {
/// #     async fn handle(&mut self, _: Log, _: &mut Context<Self>) -> Result<(), Infallible> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let system = ActorSystem::new("docs");
/// let logger: Recipient<Log> = system.spawn(Logger).await.unwrap().recipient();
/// logger.tell(Log("hello".into())).await.unwrap();
/// # }
/// ```
pub struct Recipient<M: Message> {
    target: Arc<dyn Target<M>>,
}

impl<M: Message> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Recipient {
            target: self.target.clone(),
        }
    }
}

impl<M: Message> fmt::Debug for Recipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("id", &self.target.core().id)
            .field("message", &M::name())
            .finish()
    }
}

impl<M: Message> Recipient<M> {
    /// The actor's id.
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.target.core().id
    }

    /// Whether the actor has not stopped yet.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.target.core().is_alive()
    }

    /// As [`ActorRef::tell`].
    pub fn tell(&self, msg: M) -> TellRequest<&Recipient<M>, M> {
        TellRequest::new(self, msg)
    }

    /// As [`ActorRef::try_tell`].
    ///
    /// # Errors
    /// As [`ActorRef::try_tell`].
    pub fn try_tell(&self, msg: M) -> Result<(), SendError<M>> {
        try_send(&*self.target, msg, None, Priority::Normal)
    }

    /// As [`ActorRef::ask`].
    pub fn ask(&self, msg: M) -> AskRequest<&Recipient<M>, M> {
        AskRequest::new(self, msg)
    }

    /// As [`ActorRef::try_ask`]: fails with [`AskError::MailboxFull`] instead of waiting for
    /// room.
    pub fn try_ask(&self, msg: M) -> AskRequest<&Recipient<M>, M> {
        AskRequest::new(self, msg).no_wait()
    }

    /// Waits until the actor has stopped and returns why.
    pub async fn wait_for_stop(&self) -> StopReason {
        self.target.core().wait_for_stop().await
    }
}

fn try_send<M: Message, T: Target<M> + ?Sized>(
    target: &T,
    msg: M,
    reply: Option<crate::run::envelope::ReplyTx<M>>,
    priority: Priority,
) -> Result<(), SendError<M>> {
    let sent = crate::observe::metrics::stamp();
    match target.capacity().try_reserve() {
        None => Err(SendError::ActorStopped(msg)),
        Some(false) => Err(SendError::MailboxFull(msg)),
        Some(true) => target
            .push(msg, reply, priority, sent)
            .map_err(SendError::ActorStopped),
    }
}

/// A tell to a local actor on its way: what a [`TellRequest`] to an [`ActorRef`] or a
/// [`Recipient`] becomes when awaited. Resolves once the message is queued.
#[must_use = "a tell does nothing until awaited"]
pub struct TellFuture<'a, M: Message, T: ?Sized> {
    target: &'a T,
    msg: Option<M>,
    priority: Priority,
}

impl<'a, M: Message, T: Target<M> + ?Sized> TellFuture<'a, M, T> {
    fn new(target: &'a T, msg: M, options: SendOptions) -> Self {
        TellFuture {
            target,
            msg: Some(msg),
            priority: options.priority(),
        }
    }
}

impl<M: Message, T: ?Sized> Unpin for TellFuture<'_, M, T> {}

impl<M: Message, T: Target<M> + ?Sized> Future for TellFuture<'_, M, T> {
    type Output = Result<(), SendError<M>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // The send stamp is read before the place is reserved: after the reservation's
        // locked instruction the reading waited for it, and with metrics on a sender that
        // outruns its actor ran at 0.67x of metrics off instead of 0.74x (docs/bench-log.md,
        // "The send stamp before the reservation"). A poll that finds no room drops it; the
        // poll that reserves reads its own.
        let sent = crate::observe::metrics::stamp();
        let reserved = ready!(self.target.capacity().poll_reserve(cx));
        let msg = self.msg.take().expect("TellFuture polled after completion");
        Poll::Ready(match reserved {
            Err(_) => Err(SendError::ActorStopped(msg)),
            Ok(()) => self
                .target
                .push(msg, None, self.priority, sent)
                .map_err(SendError::ActorStopped),
        })
    }
}

pin_project! {
    /// An ask to a local actor on its way: what an [`AskRequest`] to an [`ActorRef`] or a
    /// [`Recipient`] becomes when awaited. Resolves to the handler's response or an
    /// [`AskError`]; never hangs: it ends at the timeout at the latest.
    #[must_use = "an ask does nothing until awaited"]
    pub struct AskFuture<'a, M: Message, T: ?Sized> {
        target: &'a T,
        state: AskState<M>,
        priority: Priority,
        no_wait: bool,
        // Armed only if the answer does not come at once (see [`AskTimer`]).
        #[pin]
        timer: AskTimer,
        #[pin]
        _pin: PhantomData<std::marker::PhantomPinned>,
    }
}

enum AskState<M: Message> {
    Sending(M),
    Waiting(oneshot::Receiver<Result<M::Response, AskError<M::Error>>>),
    Done,
}

impl<'a, M: Message, T: Target<M> + ?Sized> AskFuture<'a, M, T> {
    fn new(target: &'a T, msg: M, options: SendOptions) -> Self {
        AskFuture {
            target,
            state: AskState::Sending(msg),
            priority: options.priority(),
            no_wait: options.no_wait(),
            timer: AskTimer::new(
                options.timeout_or(target.core().ask_timeout()),
                target.core().hands_on(),
            ),
            _pin: PhantomData,
        }
    }
}

impl<'a, A: Handler<M>, M: Message> DeliverAsk<M> for &'a ActorRef<A> {
    type Ask = AskFuture<'a, M, ActorCell<A>>;

    #[inline]
    fn deliver_ask(self, message: M, options: SendOptions) -> Self::Ask {
        AskFuture::new(&*self.cell, message, options)
    }
}

impl<'a, A: Handler<M>, M: Message> DeliverTell<M> for &'a ActorRef<A> {
    type Tell = TellFuture<'a, M, ActorCell<A>>;

    #[inline]
    fn deliver_tell(self, message: M, options: SendOptions) -> Self::Tell {
        TellFuture::new(&*self.cell, message, options)
    }
}

impl<'a, M: Message> DeliverAsk<M> for &'a Recipient<M> {
    type Ask = AskFuture<'a, M, dyn Target<M>>;

    #[inline]
    fn deliver_ask(self, message: M, options: SendOptions) -> Self::Ask {
        AskFuture::new(&*self.target, message, options)
    }
}

impl<'a, M: Message> DeliverTell<M> for &'a Recipient<M> {
    type Tell = TellFuture<'a, M, dyn Target<M>>;

    #[inline]
    fn deliver_tell(self, message: M, options: SendOptions) -> Self::Tell {
        TellFuture::new(&*self.target, message, options)
    }
}

impl<M: Message, T: Target<M> + ?Sized> Future for AskFuture<'_, M, T> {
    type Output = Result<M::Response, AskError<M::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        loop {
            match &mut *this.state {
                // The send stamp before the room, as a tell's (see `TellFuture::poll`).
                AskState::Sending(_) => match (
                    crate::observe::metrics::stamp(),
                    poll_room(this.target.capacity(), *this.no_wait, cx),
                ) {
                    (_, Poll::Pending) => break,
                    (_, Poll::Ready(Err(e))) => {
                        *this.state = AskState::Done;
                        return Poll::Ready(Err(e));
                    }
                    (sent, Poll::Ready(Ok(()))) => {
                        let AskState::Sending(msg) =
                            std::mem::replace(&mut *this.state, AskState::Done)
                        else {
                            unreachable!()
                        };
                        let (tx, rx) = oneshot::channel();
                        if this
                            .target
                            .push(msg, Some(tx), *this.priority, sent)
                            .is_err()
                        {
                            return Poll::Ready(Err(AskError::ActorStopped));
                        }
                        *this.state = AskState::Waiting(rx);
                    }
                },
                AskState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                    Poll::Ready(result) => {
                        *this.state = AskState::Done;
                        return Poll::Ready(result.unwrap_or(Err(AskError::ActorStopped)));
                    }
                    Poll::Pending => break,
                },
                AskState::Done => panic!("AskFuture polled after completion"),
            }
        }
        // Pending: the timeout, armed only at the second wait (see `AskTimer`).
        let timed_out = ready!(this.timer.poll_timeout(this.target.core(), cx));
        *this.state = AskState::Done;
        Poll::Ready(Err(timed_out))
    }
}

/// Room in `capacity` for an ask's message: waited for, or (`no_wait`) refused at once
/// with [`AskError::MailboxFull`] when there is none. Always inlined into the ask: a call of
/// its own cost 38 instructions an ask (docs/bench-log.md, "Calls the compiler kept apart").
#[inline(always)]
pub(crate) fn poll_room<E>(
    capacity: &crate::mailbox::capacity::Capacity,
    no_wait: bool,
    cx: &mut TaskContext<'_>,
) -> Poll<Result<(), AskError<E>>> {
    if !no_wait {
        return capacity
            .poll_reserve(cx)
            .map(|reserved| reserved.map_err(|_| AskError::ActorStopped));
    }
    Poll::Ready(match capacity.try_reserve() {
        None => Err(AskError::ActorStopped),
        Some(true) => Ok(()),
        Some(false) => Err(AskError::MailboxFull),
    })
}

// SAFETY-free marker: the futures hold only `&T` (Sync targets), the message and a receiver.
#[allow(dead_code)]
fn assert_send<T: Send>() {}
#[allow(dead_code)]
fn futures_are_send<A: Handler<M>, M: Message>() {
    assert_send::<AskFuture<'static, M, ActorCell<A>>>();
    assert_send::<TellFuture<'static, M, ActorCell<A>>>();
    assert_send::<AskFuture<'static, M, dyn Target<M>>>();
    assert_send::<AskRequest<&'static ActorRef<A>, M>>();
    assert_send::<TellRequest<&'static ActorRef<A>, M>>();
    assert_send::<AskRequest<&'static Recipient<M>, M>>();
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn erased(&self) -> Arc<dyn ErasedCell> {
        self.cell.clone()
    }
}
