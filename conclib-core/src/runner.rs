//! The run loop of one actor: take the next message, handle it, apply the panic policy,
//! and stop in order (children first, then `on_stop`, then the URN is freed).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use crate::actor::Actor;
use crate::cell::{ErasedCell, leave_parent, notify_stopped};
use crate::context::Context;
use crate::envelope::{CatchUnwind, FutureSlot, Outcome};
use crate::error::StopReason;
use crate::mailbox::{Control, Next};
use crate::metrics::ActorMetrics;
use crate::supervision::{PanicPolicy, RestartLimit, SupervisionEvent, SupervisionStrategy};

/// Makes a fresh actor for a restart.
pub(crate) type Factory<A> = Box<dyn FnMut() -> A + Send>;

/// How an actor meets a panic: its policy and the factory of fresh states for a restart.
/// Boxed, and only when not the default (stop, no factory): 8 bytes of every actor's task,
/// not 48; most actors have neither.
pub(crate) struct RunOptions<A>(Option<Box<Restarting<A>>>);

struct Restarting<A> {
    policy: PanicPolicy,
    factory: Option<Factory<A>>,
    /// Recent restarts, to enforce the restart limit.
    restarts: VecDeque<Instant>,
}

impl<A> RunOptions<A> {
    pub(crate) fn new(policy: PanicPolicy, factory: Option<Factory<A>>) -> Self {
        if policy == PanicPolicy::default() && factory.is_none() {
            return RunOptions(None);
        }
        RunOptions(Some(Box::new(Restarting {
            policy,
            factory,
            restarts: VecDeque::new(),
        })))
    }

    fn policy(&self) -> PanicPolicy {
        self.0
            .as_ref()
            .map_or_else(PanicPolicy::default, |r| r.policy)
    }

    fn has_factory(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.factory.is_some())
    }

    fn factory(&mut self) -> Option<&mut Factory<A>> {
        self.0.as_mut()?.factory.as_mut()
    }

    /// Records a restart; `false` if it exceeds `limit`.
    fn allow_restart(&mut self, limit: RestartLimit) -> bool {
        let now = Instant::now();
        let Some(options) = self.0.as_deref_mut() else {
            return false;
        };
        let restarts = &mut options.restarts;
        while restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > limit.within)
        {
            restarts.pop_front();
        }
        if restarts.len() >= limit.max_restarts as usize {
            return false;
        }
        restarts.push_back(now);
        true
    }
}

/// The actor's task.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async fn
/// keeps its arguments twice in its future (as captured arguments, and as the locals they
/// are moved into): the context and the options (56 bytes) twice in every actor's task.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn run<A: Actor>(
    mut actor: A,
    mut ctx: Context<A>,
    mut options: RunOptions<A>,
) -> impl Future<Output = ()> {
    async move {
        let cell = ctx.myself().cell.clone();
        let mut batch = VecDeque::new();
        let mut slot = FutureSlot::new();
        let mut ledger = Ledger::new(&cell.mailbox.capacity);
        let reason = 'run: loop {
            if let Some(reason) = ctx.pending_stop.take() {
                break *reason;
            }
            // The batch taken from the mailbox is done: what it measured goes to the recorder
            // before the actor looks for more (one branch when metrics are off).
            if batch.is_empty()
                && let Some(m) = ledger.metrics.as_deref_mut()
                && m.has_unrecorded()
            {
                record(m, &cell);
            }
            let panic = 'message: {
                // What comes out of the mailbox is matched in place and consumed inside its
                // arm: neither the envelope nor a control message takes room in the task
                // while the handler (or a control message's hook) runs.
                let (mut handling, span, trace, measure) = 'handle: {
                    let control = match poll_fn(|cx| cell.mailbox.poll_next(&mut batch, cx)).await {
                        Next::Message(env) => {
                            // The capacity counts queued messages: this one leaves the queue
                            // now (its place given back with the batch's, see `Ledger`) — or,
                            // at an actor that hands its asks on, when it is answered.
                            if A::HANDS_ON {
                                // Kept until answered; anything else (a tell) gives the place
                                // back now, as the guard drops.
                                drop(env.keep_until_answered(Box::new(Place(cell.clone()))));
                            } else {
                                ledger.took(&cell, batch.is_empty());
                            }
                            // What the handler asks of other processes continues the
                            // message's trace.
                            let trace = env.trace();
                            let (span, measure) =
                                start_message(&env, trace, &mut ledger.metrics, &cell.core);
                            let handling = env.handle(&mut actor, &mut ctx, &mut slot);
                            break 'handle (handling, span, trace, measure);
                        }
                        Next::Drained => break 'run StopReason::Normal,
                        Next::Control(Control::Kill) => break 'run StopReason::Killed,
                        Next::Control(control) => control,
                    };
                    // A control message's hook may wait: nothing is owed meanwhile.
                    ledger.give_back(&cell);
                    // Rare: in a boxed future of its own, which takes the control message
                    // with it.
                    match Box::pin(on_control(&mut actor, &mut ctx, &mut options, control)).await {
                        Flow::Continue => continue 'run,
                        Flow::Stop(reason) => break 'run reason,
                        Flow::Panicked(panic) => break 'message panic,
                    }
                };
                // A kill drops the handler at its next `.await` (one atomic load per poll).
                // The closure owns the handling, its span and its trace (`move`): held by
                // reference, they would take 16 more bytes of every actor's run future.
                let (cell_now, ledger_now) = (&cell, &mut ledger);
                // `measure` goes with it, and comes back with the outcome: it packs beside
                // the trace there, where on its own it takes 8 bytes of the run future.
                let outcome = poll_fn(move |cx| {
                    if cell_now.mailbox.is_killed() {
                        return Poll::Ready(None);
                    }
                    let _entered = span.as_deref().map(tracing::Span::enter);
                    match crate::trace::in_scope(trace, || Pin::new(&mut handling).poll(cx)) {
                        Poll::Ready(outcome) => Poll::Ready(Some((outcome, measure))),
                        Poll::Pending if cell_now.mailbox.park_handler(cx.waker()) => {
                            Poll::Ready(None)
                        }
                        Poll::Pending => {
                            // The handler waits: settle now, not after however long it takes.
                            ledger_now.settle(cell_now);
                            Poll::Pending
                        }
                    }
                })
                .await;
                let Some((outcome, measure)) = outcome else {
                    tracing::debug!("killed while handling a message");
                    break 'run StopReason::Killed;
                };
                let stats = cell.core.stats();
                if measure && let Some(m) = ledger.metrics.as_deref_mut() {
                    let full = match &outcome {
                        Outcome::Skipped => {
                            m.skipped();
                            false
                        }
                        Outcome::Panicked(_) => false,
                        Outcome::Done => m.handled(false),
                        Outcome::Failed(_) | Outcome::Refused(_) => m.handled(true),
                    };
                    if full {
                        ledger.settle(&cell);
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
                    Outcome::Panicked(panic) => Some(panic),
                };
                // What the message changed, for the next snapshot's look (a relaxed load of
                // the line just written; a write once between two looks).
                cell.mark_task_changed();
                match panic {
                    None => continue 'run,
                    Some(panic) => panic,
                }
            };
            // A handler or hook panicked: in a boxed future of its own, which takes the
            // panic's text with it (else 24 bytes of every actor's run future). Its hook may
            // wait: nothing is owed meanwhile.
            ledger.give_back(&cell);
            if let Some(reason) = Box::pin(after_panic(
                &mut actor,
                &mut ctx,
                &mut options,
                &cell,
                panic,
            ))
            .await
            {
                break reason;
            }
        };
        // What the last batch took and measured (a kill or a stop may end it early).
        ledger.settle(&cell);
        drop(ledger);
        Box::pin(finish(actor, ctx, reason, batch)).await;
    }
}

/// What the run loop owes others between two messages: the places in the mailbox's capacity
/// of the messages it took, and (metrics on) what they measured.
///
/// A place is given back as its message is taken for handling, but not one at a time: the
/// count is shared with every sender (who reserves a place with a compare-and-swap on it), so
/// a give-back per message made the actor's core and the senders' fight for its cache line
/// at every message (bounded tell at a third of the rate it has now; BENCHMARKS.md, "Places
/// given back by the batch"). The loop gives them back when the batch it took from the
/// mailbox is done, after every [`GIVE_BACK_MAX`] messages (at most a sixteenth of a bounded
/// mailbox's capacity), and before it waits for anything (a handler's `.await`, a control message's
/// hook, a panic's, the stop): an actor that waits owes nothing, so what senders and
/// snapshots see of a waiting actor is exact; a running one counts up to that many of the
/// messages it handled as queued.
struct Ledger {
    /// Created on the first message measured (boxed: most actors never need it).
    metrics: Option<Box<ActorMetrics>>,
    /// Places of messages taken for handling, not given back yet.
    owed: u32,
    /// How many it may owe while it runs: read once, not at every message, from the line of
    /// the capacity's count, which the senders write.
    most: u32,
}

/// The most places the run loop owes while it runs through a batch.
const GIVE_BACK_MAX: usize = 64;

impl Ledger {
    fn new(capacity: &crate::mailbox::Capacity) -> Self {
        Ledger {
            metrics: None,
            owed: 0,
            most: (capacity.limit() / 16).clamp(1, GIVE_BACK_MAX) as u32,
        }
    }

    /// A message was taken for handling; `last`: it was the last of its batch.
    #[inline]
    fn took<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>, last: bool) {
        self.owed += 1;
        if last || self.owed >= self.most {
            self.give_back(cell);
        }
    }

    /// Gives back every place owed.
    #[inline]
    fn give_back<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>) {
        if self.owed > 0 {
            let owed = std::mem::take(&mut self.owed);
            cell.mailbox.capacity.give_back(owed as usize);
        }
    }

    /// Gives back every place owed, then passes on what the messages measured (with the
    /// mailbox's depth exact, nothing owed).
    fn settle<A: Actor>(&mut self, cell: &crate::cell::ActorCell<A>) {
        self.give_back(cell);
        if let Some(m) = self.metrics.as_deref_mut()
            && m.has_unrecorded()
        {
            record(m, cell);
        }
    }
}

/// A handler or hook panicked: its hook, then the panic policy. `Some`: the actor stops.
async fn after_panic<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    options: &mut RunOptions<A>,
    cell: &crate::cell::ActorCell<A>,
    panic: String,
) -> Option<StopReason> {
    tracing::error!(%panic, "actor panicked");
    cell.core.panicked(&panic);
    cell.mark_task_changed();
    crate::metrics::count(&cell.core, "conclib_actor_panics_total");
    if CatchUnwind(actor.on_panic(ctx, &panic)).await.is_err() {
        tracing::error!("on_panic panicked too");
    }
    // The parent's declaration for its children, if any, overrides the spawner's choice.
    match cell.core.panic_policy(options.policy()) {
        PanicPolicy::Resume => None,
        PanicPolicy::Restart(limit) if options.has_factory() => {
            if !options.allow_restart(limit) {
                return Some(StopReason::RestartLimit(panic));
            }
            // In this future's box already: no box of its own.
            restart(actor, ctx, options, &panic, true).await.err()
        }
        PanicPolicy::Stop | PanicPolicy::Restart(_) => Some(StopReason::Panicked(panic)),
    }
}

/// Gives the recorder what `m` measured (out of line: rare next to the messages it covers).
#[inline(never)]
fn record<A: Actor>(m: &mut ActorMetrics, cell: &crate::cell::ActorCell<A>) {
    m.record(cell.mailbox.capacity.len(), &cell.core);
    // Its per-message figures changed.
    cell.mark_task_changed();
}

/// Before a message is handled: its span (with the trace it is part of, if any; boxed,
/// and only when enabled: 8 bytes of every actor's run future, not a `Span`'s 40) and,
/// when metrics are on, its measurement started. A plain function, so that none of this
/// takes room in every actor's run future.
#[inline(always)]
fn start_message<A: Actor>(
    env: &crate::envelope::Envelope<A>,
    trace: Option<crate::trace::TraceContext>,
    metrics: &mut Option<Box<ActorMetrics>>,
    core: &crate::cell::CellCore,
) -> (Option<Box<tracing::Span>>, bool) {
    // Metrics: one relaxed load when off.
    let measure = crate::metrics::is_enabled();
    if measure {
        metrics
            .get_or_insert_with(|| ActorMetrics::new(core))
            .start(env.type_key(), || env.name(), env.sent());
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

/// What the run loop does after a control message.
enum Flow {
    Continue,
    Stop(StopReason),
    /// A hook panicked (the panic policy applies).
    Panicked(String),
}

/// A restart or a supervision event (a kill never gets here).
async fn on_control<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    options: &mut RunOptions<A>,
    control: Control,
) -> Flow {
    match control {
        Control::Kill => Flow::Stop(StopReason::Killed),
        Control::Restart(why) => {
            if options.has_factory()
                && let Err(reason) = Box::pin(restart(actor, ctx, options, &why, false)).await
            {
                return Flow::Stop(reason);
            }
            Flow::Continue
        }
        Control::Event(event) => {
            supervise(ctx, &event);
            match CatchUnwind(actor.on_event(ctx, event)).await {
                Ok(()) => Flow::Continue,
                Err(panic) => Flow::Panicked(panic),
            }
        }
    }
}

/// One-for-all: a child restarted, so restart its restartable siblings.
fn supervise<A: Actor>(ctx: &mut Context<A>, event: &SupervisionEvent) {
    if let SupervisionEvent::Terminated { id, .. } = event {
        ctx.forget_watched(*id);
    }
    if let (SupervisionStrategy::OneForAll, SupervisionEvent::ChildRestarted { id, panic, .. }) =
        (ctx.strategy, event)
    {
        let siblings: Vec<Arc<dyn ErasedCell>> = ctx.myself().cell.core.lock_children().clone();
        for child in siblings {
            if child.core().id != *id && child.core().restartable().load(Ordering::Relaxed) {
                child.push_control(Control::Restart(format!(
                    "sibling {id} restarted after: {panic}"
                )));
            }
        }
    }
}

/// Replaces the actor with a fresh one from the factory, keeping the mailbox: children and
/// timers of the old state stop, then the new state's `on_start` runs.
async fn restart<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    options: &mut RunOptions<A>,
    why: &str,
    tell_parent: bool,
) -> Result<(), StopReason> {
    let factory = options.factory().expect("restart needs a factory");
    ctx.cancel_tasks();
    stop_children(ctx).await;
    let fresh = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(factory)) {
        Ok(fresh) => fresh,
        Err(_) => {
            return Err(StopReason::Failed(
                "the restart factory panicked".to_owned(),
            ));
        }
    };
    drop(std::mem::replace(actor, fresh));
    match CatchUnwind(actor.on_start(ctx)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(StopReason::Failed(format!(
                "on_start failed on restart: {e}"
            )));
        }
        Err(panic) => {
            return Err(StopReason::Failed(format!(
                "on_start panicked on restart: {panic}"
            )));
        }
    }
    tracing::info!(reason = why, "actor restarted");
    let core = &ctx.myself().cell.core;
    core.rare().restarts += 1;
    ctx.myself().cell.mark_task_changed();
    crate::metrics::count(core, "conclib_actor_restarts_total");
    if tell_parent && let Some(parent) = &core.parent {
        parent.push_control(Control::Event(SupervisionEvent::ChildRestarted {
            id: core.id,
            urn: core.urn.clone(),
            panic: why.to_owned(),
        }));
    }
    Ok(())
}

/// Gracefully stops every child and waits until they have all stopped.
async fn stop_children<A: Actor>(ctx: &Context<A>) {
    let children: Vec<Arc<dyn ErasedCell>> = ctx.myself().cell.core.lock_children().clone();
    for child in &children {
        child.close();
    }
    for child in &children {
        child.core().wait_for_stop().await;
    }
}

async fn finish<A: Actor>(
    mut actor: A,
    mut ctx: Context<A>,
    reason: StopReason,
    mut batch: VecDeque<crate::envelope::Envelope<A>>,
) {
    let cell = ctx.myself().cell.clone();
    ctx.cancel_tasks();
    cell.mailbox.close();
    // What is still queued now will not be handled (kill, panic): fail those asks at once.
    let left = cell.mailbox.seal(&mut batch);
    let dropped = left.len();
    drop(left);
    if dropped > 0 {
        cell.mailbox.capacity.give_back(dropped);
    }
    stop_children(&ctx).await;
    let failure = match CatchUnwind(actor.on_stop(&mut ctx, &reason)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(format!("panicked: {panic}")),
    };
    let reason = match failure {
        None => reason,
        Some(error) => {
            tracing::error!(%error, "on_stop failed");
            StopReason::StopFailed {
                reason: Box::new(reason),
                error,
            }
        }
    };
    drop(actor);
    // In this order: whoever sees the actor stopped (`wait_for_stop`) finds it gone from
    // every view (URN, registry, its parent's children), and whoever sees the system empty
    // (shutdown) finds every actor stopped and every parent told.
    // (The registry lists only live actors, so it agrees before the actor leaves it; leaving
    // it last takes its lock once.)
    ctx.system().release_urn(&cell.core);
    ctx.system().drop_side_entries(&cell.core);
    ctx.unwatch_all();
    leave_parent(&cell.core);
    cell.core.mark_stopped(reason.clone());
    // The next snapshot's look finds it stopped (as it will when it leaves the registry).
    cell.mailbox.capacity.mark.set();
    tracing::debug!(%reason, "actor stopped");
    notify_stopped(&cell.core, &reason);
    ctx.system().forget(&cell.core);
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
        impl crate::Actor for Idle {}
        let system = crate::ActorSystem::new("size");
        let r = system.spawn(Idle).await.unwrap();
        let ctx = super::Context::new(r.clone(), system.clone(), Default::default());
        let fut = super::run(Idle, ctx, super::RunOptions::new(Default::default(), None));
        // Where an idle actor's bytes go (BENCHMARKS.md, "Bytes per idle actor").
        use std::mem::size_of;
        println!(
            "run future: {} bytes; cell: {} bytes (core {}, mailbox {}: capacity {}); \
             statistics in the core: {} bytes, their rare part: {} bytes; context: {} bytes; \
             stop reason: {} bytes; notify: {} bytes",
            std::mem::size_of_val(&fut),
            size_of::<crate::cell::ActorCell<Idle>>(),
            size_of::<crate::cell::CellCore>(),
            size_of::<crate::mailbox::Mailbox<Idle>>(),
            size_of::<crate::mailbox::Capacity>(),
            size_of::<crate::cell::Stats>(),
            size_of::<std::sync::Mutex<crate::cell::RareStats>>(),
            size_of::<super::Context<Idle>>(),
            size_of::<crate::error::StopReason>(),
            size_of::<tokio::sync::Notify>(),
        );
    }
}
