//! [`Context`]: what a running actor can do besides handling a message. Its methods that
//! need more than the actor's own ref are written beside what they use: spawning children in
//! [`crate::spawn`], its children and watching in [`crate::dynamic`].

use std::fmt;
use std::future::poll_fn;
use std::pin::pin;
use std::time::Duration;

use futures_core::Stream;
use tokio::task::AbortHandle;

/// How long an interval's tick waits for its handling before the next may be sent (bounded
/// only so that the wait is finite; a handler that long is not expected).
const TICK_WAIT: Duration = Duration::from_secs(24 * 3600);

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::erased::ErasedCell;
use crate::error::{SendError, StopReason};
use crate::handler::Handler;
use crate::message::{Message, Priority};
use crate::messages::{StreamFinished, StreamId};
use crate::run::envelope::Envelope;
use crate::send::actor_ref::ActorRef;
use crate::supervision::SupervisionStrategy;
use crate::system::ActorSystem;
use crate::urn::Urn;

/// The handle to a running actor's own runtime, passed to every handler and hook.
///
/// ```
/// use conclib_core::{Actor, ActorSystem, BoxError, Context, Handler, Message};
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// struct Tick;
/// impl Message for Tick { type Response = (); type Error = Infallible; }
///
/// struct Clock { ticks: u32 }
/// impl Actor for Clock {
///     async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
///         ctx.interval(Duration::from_millis(10), || Tick); // stops with the actor
///         Ok(())
///     }
/// }
/// impl Handler<Tick> for Clock {
///     async fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) -> Result<(), Infallible> {
///         self.ticks += 1;
///         if self.ticks == 3 { ctx.stop(); }
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// let clock = system.spawn(Clock { ticks: 0 }).await.unwrap();
/// clock.wait_for_stop().await;
/// # }
/// ```
pub struct Context<A: Actor> {
    myself: ActorRef<A>,
    system: ActorSystem,
    /// Its timers, stream forwarders and watched actors, allocated on first use: most actors
    /// have none, and every actor's task holds its context (16 bytes here, not 56).
    links: std::sync::Mutex<Option<Box<Links>>>,
    /// A stop the actor asked for that takes effect after the current message (boxed: asked
    /// once in an actor's life, and 8 bytes of every actor's task, not 32).
    pub(crate) pending_stop: Option<Box<StopReason>>,
    pub(crate) strategy: SupervisionStrategy,
}

/// What few actors have: timers and stream forwarders, which die with the actor (or its
/// restart), and the actors it watches, until they stop or it unwatches them (its entries in
/// their watcher lists are taken out when it stops: a long-lived actor watched by many
/// short-lived ones would otherwise keep every one of them).
#[derive(Default)]
struct Links {
    tasks: Vec<AbortHandle>,
    watching: Vec<(ActorId, std::sync::Weak<dyn ErasedCell>)>,
}

/// Cancels a timer set with [`Context::send_after`] or [`Context::interval`].
#[derive(Debug, Clone)]
pub struct TimerHandle(AbortHandle);

impl TimerHandle {
    /// Cancels the timer; a message already queued stays queued.
    pub fn cancel(&self) {
        self.0.abort();
    }
}

impl<A: Actor> fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("actor", &self.myself)
            .finish_non_exhaustive()
    }
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(
        myself: ActorRef<A>,
        system: ActorSystem,
        strategy: SupervisionStrategy,
    ) -> Self {
        Context {
            myself,
            system,
            links: std::sync::Mutex::new(None),
            pending_stop: None,
            strategy,
        }
    }

    /// The actor's own ref.
    #[must_use]
    pub fn myself(&self) -> &ActorRef<A> {
        &self.myself
    }

    /// The system the actor runs in.
    #[must_use]
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// The actor's id.
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.myself.id()
    }

    /// The actor's URN, if it has one.
    #[must_use]
    pub fn urn(&self) -> Option<&Urn> {
        self.myself.urn()
    }

    /// Graceful stop of this actor: the messages already queued are handled first.
    pub fn stop(&self) {
        self.myself.stop();
    }

    /// Stops this actor after the current message with [`StopReason::Escalated`]: its parent
    /// learns that it failed.
    pub fn escalate(&mut self, reason: impl Into<String>) {
        self.stop_with(StopReason::Escalated(reason.into()));
    }

    /// Stops this actor after the current message with `reason`, dropping what is queued
    /// (those asks fail with `ActorStopped`): for an actor that stands for something that
    /// ended on its own (a process actor's relay when its process ended for good), so that
    /// its parent and watchers learn why. [`escalate`](Self::escalate) is
    /// `stop_with(StopReason::Escalated(..))`.
    pub fn stop_with(&mut self, reason: StopReason) {
        self.pending_stop = Some(Box::new(reason));
    }

    /// Sends this actor a message, handled after the messages already queued. Never waits
    /// (an actor must not wait on its own mailbox), so it may exceed the capacity.
    ///
    /// # Errors
    /// [`SendError::ActorStopped`] (with the message) once the actor is stopping.
    pub fn notify<M: Message>(&self, msg: M) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
    {
        self.notify_with_priority(msg, Priority::Normal)
    }

    /// [`notify`](Self::notify) in the given lane.
    ///
    /// # Errors
    /// As [`notify`](Self::notify).
    pub fn notify_with_priority<M: Message>(
        &self,
        msg: M,
        priority: Priority,
    ) -> Result<(), SendError<M>>
    where
        A: Handler<M>,
    {
        self.myself
            .cell
            .mailbox
            .push_forced(Envelope::typed(msg, None), priority)
            .map_err(|env| SendError::ActorStopped(env.into_message::<M>()))
    }

    fn track(&mut self, handle: AbortHandle) {
        let links = self
            .links
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Box::default);
        links.tasks.retain(|t| !t.is_finished());
        links.tasks.push(handle);
    }

    /// Sends this actor `msg` after `delay`. The timer dies with the actor.
    pub fn send_after<M: Message>(&mut self, msg: M, delay: Duration) -> TimerHandle
    where
        A: Handler<M>,
    {
        let myself = self.myself.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = myself.tell(msg).await;
        });
        let handle = task.abort_handle();
        self.track(handle.clone());
        TimerHandle(handle)
    }

    /// Sends this actor `make()` every `period`, the first after one period. A tick is sent
    /// once the one before it was handled: a tick that finds the mailbox full waits for
    /// room, and ticks missed meanwhile (a handler that took longer than a period) are
    /// skipped, not queued and handled in a bunch. The timer dies with the actor.
    pub fn interval<M: Message>(
        &mut self,
        period: Duration,
        mut make: impl FnMut() -> M + Send + 'static,
    ) -> TimerHandle
    where
        A: Handler<M>,
    {
        let myself = self.myself.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                // Waits for its handling (an ask: its answer comes once handled), so that a
                // busy actor does not find ticks piled up in its mailbox.
                let handled = myself.ask(make()).timeout(TICK_WAIT).await;
                if matches!(handled, Err(crate::error::AskError::ActorStopped)) {
                    return;
                }
            }
        });
        let handle = task.abort_handle();
        self.track(handle.clone());
        TimerHandle(handle)
    }

    /// Feeds the items of `stream` to this actor as messages, one at a time and in order,
    /// between its other messages (a full mailbox pauses the stream). When the stream ends,
    /// [`Actor::on_stream_finished`] runs after its last item was handled. The stream is
    /// dropped when the actor stops.
    pub fn attach_stream<S, M>(&mut self, stream: S) -> StreamId
    where
        S: Stream<Item = M> + Send + 'static,
        M: Message,
        A: Handler<M>,
    {
        let id = StreamId::next();
        let myself = self.myself.clone();
        let task = tokio::spawn(async move {
            let mut stream = pin!(stream);
            while let Some(item) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
                if myself.tell(item).await.is_err() {
                    return;
                }
            }
            // Through the normal lane, so it comes after the items.
            let _ = myself.tell::<StreamFinished>(StreamFinished(id)).await;
        });
        self.track(task.abort_handle());
        id
    }

    /// Records that this actor watches `id` (whose cell is `cell`), dropping the entries of
    /// those that stopped since (their `Terminated` may still be queued).
    pub(crate) fn add_watched(&self, id: ActorId, cell: std::sync::Weak<dyn ErasedCell>) {
        let mut links = self.lock_links();
        let watching = &mut links.get_or_insert_with(Box::default).watching;
        watching.retain(|(_, w)| w.strong_count() > 0);
        watching.push((id, cell));
    }

    /// `id` stopped (its `Terminated` came) or is unwatched: no longer watched.
    pub(crate) fn forget_watched(&self, id: ActorId) {
        if let Some(links) = self.lock_links().as_mut() {
            links.watching.retain(|(watched, _)| *watched != id);
        }
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, Option<Box<Links>>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This actor stops: the actors it watches forget it.
    pub(crate) fn unwatch_all(&self) {
        let my_id = self.id();
        let watching = self
            .lock_links()
            .as_mut()
            .map(|links| std::mem::take(&mut links.watching))
            .unwrap_or_default();
        for (_, watched) in watching {
            if let Some(watched) = watched.upgrade() {
                watched
                    .core()
                    .lock_watchers()
                    .retain(|w| w.core().id != my_id);
            }
        }
    }

    /// How many actors this one watches (for tests of what grows).
    #[cfg(test)]
    pub(crate) fn watching_len(&self) -> usize {
        self.lock_links().as_ref().map_or(0, |l| l.watching.len())
    }

    /// How many timers and stream forwarders are tracked (for tests of what grows).
    #[cfg(test)]
    pub(crate) fn tracked_tasks(&self) -> usize {
        self.lock_links().as_ref().map_or(0, |l| l.tasks.len())
    }

    /// Sets how this actor reacts to its children's failures.
    pub fn set_supervision_strategy(&mut self, strategy: SupervisionStrategy) {
        self.strategy = strategy;
    }

    /// Declares the panic policy of this actor's children (those running now and those
    /// spawned later), overriding what their spawners chose; `None` gives the choice back
    /// to each child's own builder. See [`PanicPolicy`](crate::PanicPolicy) for the precedence.
    pub fn set_children_on_panic(&self, policy: Option<crate::supervision::PanicPolicy>) {
        self.myself().cell.core.set_children_policy(policy);
    }

    /// Aborts timers and stream forwarders.
    pub(crate) fn cancel_tasks(&mut self) {
        if let Some(links) = self.links.get_mut().unwrap_or_else(|e| e.into_inner()) {
            for t in links.tasks.drain(..) {
                t.abort();
            }
        }
    }
}
