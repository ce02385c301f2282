//! The run loop of one actor: take the next message, handle it, apply the panic policy,
//! and stop in order (children first, then `on_stop`, then the URN is freed).
//!
//! Here the loop over messages; in `ledger` what it owes between two (places in the
//! mailbox, measurements); in `lifecycle` what happens around the messages (control
//! messages, panics, restarts, the stop).
//!
//! # Safety
//!
//! The run loop's state (`Run`: the actor, its context, the future slot, the handler that
//! waits) lives in the task, pinned, and the handler that waits borrows the actor, the
//! context and the slot of that same state (a self-reference, `SlotFuture<'static>`).
//! The invariant: **while a handler waits, nothing but that handler reaches the actor, the
//! context or the slot; each other field is reached on its own, never the whole `Run`**.
//! `poll_run` and `RunAt::idle` are the only places that reach into `Run` through its
//! address, and each says which fields it takes and why no handler waits then. What it buys:
//! no allocation per waiting handler, and the slot's figures above (`future_slot.rs`); a safe
//! run loop would be an `async` block owning the actor and selecting between its handler and
//! its mailbox, not measured. Checked by the runtime tests (kill
//! during a waiting handler, panics, restarts) under AddressSanitizer.

pub(crate) mod dormant;
pub(crate) mod envelope;
pub(crate) mod future_slot;
pub(crate) mod guarded;
pub(crate) mod hibernation;
mod ledger;
pub(crate) mod lifecycle;

use ledger::{Ledger, record};
pub(crate) use lifecycle::{Factory, RunOptions};
use lifecycle::{Flow, after_panic, finish, on_control};

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use crate::actor::Actor;
use crate::context::Context;
use crate::error::StopReason;
use crate::mailbox::Next;
use crate::mailbox::control::Control;
use crate::observe::metrics::actor::ActorMetrics;
use crate::run::future_slot::Outcome;
use crate::run::future_slot::{FutureSlot, SlotFuture, Started};

/// The actor's task.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn
/// keeps its arguments twice in its future (as captured arguments, and as the locals they
/// are moved into): the context and the options (56 bytes) twice in every actor's task. For
/// the same reason what the loop keeps ([`Run`]) is built here and captured whole.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn run<A: Actor>(
    actor: A,
    ctx: Context<A>,
    mut options: RunOptions<A>,
) -> impl Future<Output = ()> {
    let cell = ctx.myself().cell.clone();
    let mut run = Run {
        waiting: None,
        ledger: Ledger::new(&cell.mailbox),
        actor,
        ctx,
        batch: VecDeque::new(),
        slot: FutureSlot::new(),
    };
    async move {
        // Everything below reaches `run` through this one pointer, taken once: a handler
        // that waits keeps borrowing the actor, its context and the slot between polls (see
        // `Run`), and no reference to the whole of `run` may be made meanwhile.
        let at = RunAt(&raw mut run);
        let reason = 'run: loop {
            let panic = 'message: {
                // The messages, as many as come without waiting, in one poll: a plain loop,
                // without the cost of an `.await` per message (the task's state written and
                // read back around each). It returns at a control message, a panic or a
                // stop. What it returns is matched in place: the control message moves into
                // its hook's box, and takes no room in the task.
                let cell_now = &cell;
                // SAFETY: `at` points to `run`, which stays where it is (the task is
                // pinned); nothing else uses it while `poll_run` runs.
                let control = match poll_fn(move |cx| unsafe { poll_run(at, cell_now, cx) }).await {
                    Step::Stop(reason) => break 'run reason,
                    Step::Panicked(panic) => break 'message panic,
                    Step::Control(control) => control,
                    Step::Hibernate => {
                        // The actor, its context and its options go into a run loop of their
                        // own, which waits as a dormant actor's does; this task ends (nothing
                        // is owed: the mailbox was found empty, every place given back).
                        hibernate(run.actor, run.ctx, options.take(), cell);
                        return;
                    }
                };
                // SAFETY: no handler waits when `poll_run` returns a step.
                let (actor, ctx, ledger) = unsafe { at.idle() };
                // A control message's hook may wait: nothing is owed meanwhile.
                ledger.give_back(&cell);
                // Rare: in a boxed future of its own, which takes the control message with it.
                match Box::pin(on_control(actor, ctx, &mut options, control)).await {
                    Flow::Continue => continue 'run,
                    Flow::Stop(reason) => break 'run reason,
                    Flow::Panicked(panic) => panic,
                }
            };
            // SAFETY: as above.
            let (actor, ctx, ledger) = unsafe { at.idle() };
            // A handler or hook panicked: in a boxed future of its own, which takes the
            // panic's text with it (else 24 bytes of every actor's run future). Its hook may
            // wait: nothing is owed meanwhile.
            ledger.give_back(&cell);
            if let Some(reason) =
                Box::pin(after_panic(actor, ctx, &mut options, &cell, panic)).await
            {
                break reason;
            }
        };
        // `at` is not used again: `run` is taken apart (no handler waits), its fields moved
        // straight into the last steps (bound to locals first, they would take room of
        // their own in every actor's task).
        debug_assert!(
            run.waiting.is_none(),
            "the run loop ended with a handler waiting"
        );
        // What the last batch took and measured (a kill or a stop may end it early).
        run.ledger.settle(&cell);
        Box::pin(finish(run.actor, run.ctx, reason, run.batch)).await;
    }
}

/// Hands the actor to a new run loop, dormant in its mailbox ([`crate::run::hibernation`]): the
/// task this runs in ends, and the next message spawns another. (No `.await` in the run loop
/// for it: one more would take room in every actor's run loop.)
fn hibernate<A: Actor>(
    actor: A,
    ctx: Context<A>,
    options: RunOptions<A>,
    cell: Arc<crate::cell::ActorCell<A>>,
) {
    // The actor's span, if its run loop is in one (see `spawn`): the new one is too.
    let span = tracing::Span::current();
    let keeping = ctx.system().keeping(tokio::runtime::Handle::current());
    let next: crate::run::dormant::RunFuture =
        if span.metadata().is_some_and(|m| m.name() == "actor") {
            Box::pin(tracing::Instrument::instrument(
                run(actor, ctx, options),
                span,
            ))
        } else {
            Box::pin(run(actor, ctx, options))
        };
    let cell: Arc<dyn crate::cell::erased::ErasedCell> = cell;
    crate::run::dormant::hibernate(next, keeping, &cell);
}

/// What the run loop keeps between polls.
///
/// A handler that waits borrows the actor, its context and the slot its future runs in,
/// from one poll of the task to the next: `waiting` holds it (declared first, so dropped
/// first if the task is dropped). The run loop reaches the fields one by one through a
/// pointer ([`RunAt`]), and never makes a reference to the whole, which would claim the
/// fields the handler borrows.
struct Run<A: Actor> {
    waiting: Option<Waiting>,
    actor: A,
    ctx: Context<A>,
    /// The messages taken from the mailbox in one go (see [`Mailbox::poll_next`](crate::mailbox::Mailbox::poll_next)).
    batch: VecDeque<crate::run::envelope::Envelope<A>>,
    slot: FutureSlot,
    ledger: Ledger,
}

/// A handler that waits, with what its polls need: its span (entered at each), its trace
/// (in scope at each), and whether its message is measured.
struct Waiting {
    /// Borrows the actor, its context and the slot (in the same [`Run`]) until dropped.
    handling: SlotFuture<'static>,
    span: Option<Box<tracing::Span>>,
    trace: Option<crate::observe::trace::TraceContext>,
    measure: bool,
}

/// The address of the task's [`Run`].
struct RunAt<A: Actor>(*mut Run<A>);

impl<A: Actor> Clone for RunAt<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: Actor> Copy for RunAt<A> {}

// SAFETY: it points into the task's own state (`Run`, which is `Send`) and goes wherever the
// task goes.
unsafe impl<A: Actor> Send for RunAt<A> {}

impl<A: Actor> RunAt<A> {
    /// The actor, its context and the ledger, for the run loop's rare steps (a control
    /// message's hook, a panic's).
    ///
    /// # Safety
    /// No handler waits (nothing borrows the actor or its context), and nothing else
    /// reaches them while the references live.
    unsafe fn idle<'a>(self) -> (&'a mut A, &'a mut Context<A>, &'a mut Ledger) {
        // SAFETY: the caller's promise; each field on its own, never the whole `Run`.
        unsafe {
            (
                &mut (*self.0).actor,
                &mut (*self.0).ctx,
                &mut (*self.0).ledger,
            )
        }
    }
}

/// Why [`poll_run`] returned.
enum Step {
    /// A control message other than a kill.
    Control(Control),
    /// A handler panicked.
    Panicked(String),
    /// The actor stops.
    Stop(StopReason),
    /// The actor hibernates: it waits for mail, nothing waits in it, and it has given back
    /// what its messages grew.
    Hibernate,
}

/// Polls the handler that waits, if any, then takes messages and handles them for as long
/// as each handler is done at its first poll. `Pending`: the mailbox is empty, or a handler
/// waits (kept in `run.waiting`, polled first next time).
///
/// # Safety
/// `run` points to the task's [`Run`], in place for as long as the task lives, and nothing
/// else uses it during the call.
unsafe fn poll_run<A: Actor>(
    run: RunAt<A>,
    cell: &Arc<crate::cell::ActorCell<A>>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Step> {
    let run = run.0;
    // SAFETY (for every field reached below): each is reached on its own, never the whole
    // of `run`: a waiting handler borrows the actor, the context and the slot, and they are
    // reached only when none waits.
    let (waiting, batch, ledger) =
        unsafe { (&mut (*run).waiting, &mut (*run).batch, &mut (*run).ledger) };
    // Whether this poll had something to do (a handler to resume, a message to handle): a
    // sweep that asked to hibernate meanwhile found the actor busy (its waker registered
    // for mail as it took a lone message, or a handler waiting), not idle; it hibernates
    // only in a poll that finds nothing to do, once a later sweep asks again.
    let mut busy = waiting.is_some();
    if let Some(Waiting {
        handling,
        span,
        trace,
        measure,
    }) = waiting
    {
        let measure = *measure;
        match poll_handling(handling, span.as_deref(), *trace, cell, cx) {
            Poll::Pending => {
                // What was taken or measured meanwhile is settled before it waits on.
                ledger.settle(cell);
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                *waiting = None;
                return killed();
            }
            Poll::Ready(Some(outcome)) => {
                // Done: the actor, its context and the slot are free again.
                *waiting = None;
                if let Some(panic) = after_message(cell, ledger, outcome, measure) {
                    return Poll::Ready(Step::Panicked(panic));
                }
            }
        }
    }
    loop {
        // SAFETY: no handler waits: nothing borrows the context.
        if let Some(reason) = unsafe { &mut (*run).ctx }.pending_stop.take() {
            return Poll::Ready(Step::Stop(*reason));
        }
        // The batch taken from the mailbox is done: what it measured goes to the recorder
        // before the actor looks for more (one branch when metrics are off).
        if batch.is_empty()
            && let Some(m) = ledger.metrics.as_deref_mut()
            && m.has_unrecorded()
        {
            record(m, cell);
        }
        let env = match cell.mailbox.poll_next(batch, cx) {
            Poll::Pending => {
                if ledger.tracks_work {
                    cell.mailbox.set_working(false);
                }
                // Idle: what a large handler grew goes back. SAFETY: no handler waits.
                unsafe { &mut (*run).slot }.shrink_idle();
                return Poll::Pending;
            }
            Poll::Ready(Next::Message(env)) => env,
            Poll::Ready(Next::Hibernate) => {
                // SAFETY: no handler waits.
                let slot = unsafe { &mut (*run).slot };
                if ledger.tracks_work {
                    cell.mailbox.set_working(false);
                }
                if busy {
                    slot.shrink_idle();
                    return Poll::Pending;
                }
                give_back_all(slot, ledger);
                return Poll::Ready(Step::Hibernate);
            }
            Poll::Ready(Next::Drained) => return Poll::Ready(Step::Stop(StopReason::Normal)),
            Poll::Ready(Next::Control(Control::Kill)) => {
                return Poll::Ready(Step::Stop(StopReason::Killed));
            }
            Poll::Ready(Next::Control(control)) => return Poll::Ready(Step::Control(control)),
        };
        // At work from its first message of a poll to its next wait for mail (a pool's
        // member: a store a wake-up, none a message; any other actor: a branch on its
        // ledger's flag).
        if !busy && ledger.tracks_work {
            cell.mailbox.set_working(true);
        }
        busy = true;
        // The capacity counts queued messages: this one leaves the queue now (its place
        // given back with the batch's, see `Ledger`) — or, at an actor that hands its asks
        // on, when it is answered.
        if A::HANDS_ON {
            // Kept until answered; anything else (a tell) gives the place back now, as the
            // guard drops.
            drop(env.keep_until_answered(Box::new(Place(cell.clone()))));
        } else {
            ledger.took(cell, batch.is_empty());
        }
        // What the handler asks of other processes continues the message's trace.
        let trace = env.trace();
        let (span, measure) = start_message(&env, trace, &mut ledger.metrics, &cell.core);
        // A kill drops the handler before it starts (as it would at its next `.await`).
        if cell.mailbox.is_killed() {
            drop(env);
            return killed();
        }
        let started = {
            let _entered = span.as_deref().map(tracing::Span::enter);
            // SAFETY: no handler waits, so nothing borrows the actor, the context or the
            // slot; the handler started here does until it is done (at once, or dropped from
            // `run.waiting`), before they are reached again.
            crate::observe::trace::in_scope(trace, || unsafe {
                env.handle(&mut (*run).actor, &mut (*run).ctx, &mut (*run).slot, cx)
            })
        };
        match started {
            Started::Done(outcome) => {
                // Most messages have no span: no call to drop the `None`.
                if let Some(span) = span {
                    drop(span);
                }
                if let Some(panic) = after_message(cell, ledger, outcome, measure) {
                    return Poll::Ready(Step::Panicked(panic));
                }
            }
            Started::Waiting(handling) => {
                if cell.mailbox.park_handler(cx.waker()) {
                    drop(handling);
                    return killed();
                }
                // The handler waits: settle now, not after however long it takes.
                ledger.settle(cell);
                *waiting = Some(Waiting {
                    // SAFETY: its borrows of the actor, the context and the slot end when it
                    // is dropped, from `run.waiting`, before they are reached again.
                    handling: unsafe { handling.erase() },
                    span,
                    trace,
                    measure,
                });
                return Poll::Pending;
            }
        }
    }
}

/// The actor waits for mail and hibernates ([`crate::run::hibernation`]): what its messages grew
/// goes back (the buffer its handlers' futures ran in, what metrics keep for it, given to
/// the recorder first; its mailbox gave back its buffers already). Out of line: once in a
/// long idle time.
#[inline(never)]
fn give_back_all(slot: &mut FutureSlot, ledger: &mut Ledger) {
    slot.release();
    if let Some(mut m) = ledger.metrics.take() {
        m.flush();
    }
}

/// A kill came while a message was being handled (its handler dropped already).
fn killed() -> Poll<Step> {
    tracing::debug!("killed while handling a message");
    Poll::Ready(Step::Stop(StopReason::Killed))
}

/// One poll of a handler, in its span and its trace. `None`: a kill came, before the poll
/// (the handler is not polled) or while it waits (it is dropped at its next `.await`: one
/// atomic load a poll).
#[inline(always)]
fn poll_handling<A: Actor>(
    handling: &mut SlotFuture<'_>,
    span: Option<&tracing::Span>,
    trace: Option<crate::observe::trace::TraceContext>,
    cell: &crate::cell::ActorCell<A>,
    cx: &mut std::task::Context<'_>,
) -> Poll<Option<Outcome>> {
    if cell.mailbox.is_killed() {
        return Poll::Ready(None);
    }
    let _entered = span.map(tracing::Span::enter);
    match crate::observe::trace::in_scope(trace, || Pin::new(handling).poll(cx)) {
        Poll::Ready(outcome) => Poll::Ready(Some(outcome)),
        Poll::Pending if cell.mailbox.park_handler(cx.waker()) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

/// A handler is done: what it came to, counted and measured. `Some`: it panicked.
#[inline(always)]
fn after_message<A: Actor>(
    cell: &crate::cell::ActorCell<A>,
    ledger: &mut Ledger,
    outcome: Outcome,
    measure: bool,
) -> Option<String> {
    let stats = cell.core.stats();
    if measure && let Some(m) = ledger.metrics.as_deref_mut() {
        let full = match &outcome {
            Outcome::Skipped => {
                m.skipped();
                false
            }
            Outcome::Panicked(_) => false,
            Outcome::Done | Outcome::Cancelled => m.handled(false),
            Outcome::Failed(_) | Outcome::Refused(_) => m.handled(true),
        };
        if full {
            ledger.settle(cell);
        }
    }
    // Every message that reached its handler counts, whatever it came to.
    if !matches!(outcome, Outcome::Skipped) {
        stats.count_handled();
    }
    let panic = match outcome {
        Outcome::Done => None,
        Outcome::Skipped => {
            cell.core.count_skipped_ask();
            tracing::debug!("skipped an ask whose asker had given up");
            None
        }
        Outcome::Failed(error) => {
            tracing::warn!(%error, "a told message's handler returned an error");
            cell.core.failed(error);
            None
        }
        Outcome::Refused(error) => {
            cell.core.failed(error);
            None
        }
        Outcome::Cancelled => {
            cancelled(&cell.core);
            None
        }
        Outcome::Panicked(panic) => Some(panic),
    };
    // What the message changed, for the next snapshot's look (a relaxed load of the line
    // just written; a write once between two looks).
    cell.mark_task_changed();
    panic
}

/// A handler was dropped because its asker gave up ([`Actor::CANCEL_ON_TIMEOUT`]): counted
/// and traced. Out of line: only actors that opt in come here.
#[inline(never)]
#[cold]
fn cancelled(core: &crate::cell::erased::CellCore) {
    crate::observe::metrics::count(core, "conclib_actor_handlers_cancelled_total");
    tracing::debug!("dropped a handler whose asker had given up");
}

/// Before a message is handled: its span (with the trace it is part of, if any; boxed,
/// and only when enabled: 8 bytes of every actor's run future, not a `Span`'s 40) and,
/// when metrics are on, its measurement started. A plain function, so that none of this
/// takes room in every actor's run future.
#[inline(always)]
fn start_message<A: Actor>(
    env: &crate::run::envelope::Envelope<A>,
    trace: Option<crate::observe::trace::TraceContext>,
    metrics: &mut Option<Box<ActorMetrics>>,
    core: &crate::cell::erased::CellCore,
) -> (Option<Box<tracing::Span>>, bool) {
    // Metrics: one relaxed load when off.
    let measure = crate::observe::metrics::is_enabled();
    if measure {
        metrics
            .get_or_insert_with(|| ActorMetrics::new(core))
            .start(env.type_key(), || env.name(), env.sent(), core);
    }
    let span = tracing::trace_span!(
        "handle",
        message = env.name(),
        trace_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return (None, measure);
    }
    if let Some(trace) = trace {
        span.record("trace_id", trace.trace_id());
        span.record("parent_span_id", trace.span_id());
        #[cfg(feature = "otel")]
        {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            // Without an OpenTelemetry layer there is nothing to parent.
            let _ = span.set_parent(
                opentelemetry::Context::new().with_remote_span_context(trace.to_otel()),
            );
        }
    }
    (Some(Box::new(span)), measure)
}

/// A place in an actor's mailbox held by an ask it handed on ([`Actor::HANDS_ON`]): given back
/// when the ask is answered (or dropped).
struct Place<A: Actor>(Arc<crate::cell::ActorCell<A>>);

impl<A: Actor> Drop for Place<A> {
    fn drop(&mut self) {
        self.0.mailbox.capacity.give_back(1);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn run_future_size() {
        struct Idle;
        impl crate::actor::Actor for Idle {}
        let system = crate::system::ActorSystem::new("size");
        let r = system.spawn(Idle).await.unwrap();
        let ctx = super::Context::new(r.clone(), system.clone(), Default::default());
        let fut = super::run(Idle, ctx, super::RunOptions::new(Default::default(), None));
        // Where an idle actor's bytes go (docs/bench-log.md, "Bytes per idle actor").
        use std::mem::size_of;
        println!(
            "run future: {} bytes; cell: {} bytes (core {}, mailbox {}: capacity {}); \
             statistics in the core: {} bytes, their rare part: {} bytes; context: {} bytes; \
             stop reason: {} bytes; notify: {} bytes",
            std::mem::size_of_val(&fut),
            size_of::<crate::cell::ActorCell<Idle>>(),
            size_of::<crate::cell::erased::CellCore>(),
            size_of::<crate::mailbox::Mailbox<Idle>>(),
            size_of::<crate::mailbox::capacity::Capacity>(),
            size_of::<crate::cell::erased::Stats>(),
            size_of::<std::sync::Mutex<crate::cell::erased::RareStats>>(),
            size_of::<super::Context<Idle>>(),
            size_of::<crate::error::StopReason>(),
            size_of::<tokio::sync::Notify>(),
        );
    }
}
