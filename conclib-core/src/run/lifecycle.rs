//! What an actor's run loop does around its messages: control messages (supervision
//! events, restarts), a panic and its policy, and the stop in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::actor::Actor;
use crate::cell::erased::ErasedCell;
use crate::context::Context;
use crate::error::StopReason;
use crate::mailbox::control::Control;
use crate::run::guarded::CatchUnwind;
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

    /// The options, taken out (by a run loop that hands them to another as it hibernates:
    /// taken from behind a reference, they take no second place in the run loop's future).
    pub(crate) fn take(&mut self) -> Self {
        RunOptions(self.0.take())
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
        self.0
            .as_deref_mut()
            .is_some_and(|options| limit.admit(&mut options.restarts, Instant::now()))
    }
}

/// A handler or hook (`on_start`, `on_stop`, `on_panic`) panicked: counted in the actor's
/// statistics and `conclib_actor_panics_total`.
pub(crate) fn count_panic(core: &crate::cell::erased::CellCore, panic: &str) {
    core.panicked(panic);
    crate::observe::metrics::count(core, "conclib_actor_panics_total");
}

/// A handler or hook panicked: its hook, then the panic policy. `Some`: the actor stops.
pub(super) async fn after_panic<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    options: &mut RunOptions<A>,
    cell: &crate::cell::ActorCell<A>,
    panic: String,
) -> Option<StopReason> {
    // WARN: the policy decides what follows; an actor it stops for good is logged at ERROR
    // below.
    tracing::warn!(%panic, "actor panicked");
    count_panic(&cell.core, &panic);
    cell.mark_task_changed();
    if let Err(again) = CatchUnwind::new(actor.on_panic(ctx, &panic)).await {
        tracing::warn!(panic = %again, "on_panic panicked too");
        count_panic(&cell.core, &again);
    }
    let stop = panic_policy_applied(actor, ctx, options, cell, panic).await;
    if let Some(reason) = &stop {
        tracing::error!(%reason, "actor stopped after a panic; it will not be restarted");
    }
    stop
}

/// The panic policy after a panic: `Some`: the actor stops.
async fn panic_policy_applied<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    options: &mut RunOptions<A>,
    cell: &crate::cell::ActorCell<A>,
    panic: String,
) -> Option<StopReason> {
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

/// What the run loop does after a control message.
pub(super) enum Flow {
    Continue,
    Stop(StopReason),
    /// A hook panicked (the panic policy applies).
    Panicked(String),
}

/// A restart or a supervision event (a kill never gets here).
pub(super) async fn on_control<A: Actor>(
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
            match CatchUnwind::new(actor.on_event(ctx, event)).await {
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

/// How long a restart waits for the old state's children to stop gracefully before it kills
/// them.
const RESTART_CHILDREN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    // The old state's children stop gracefully, within a bound: one stuck at an `.await`
    // would hold the restart (and every message after it) for ever. Then they are killed.
    if tokio::time::timeout(RESTART_CHILDREN_GRACE, stop_children(ctx, false))
        .await
        .is_err()
    {
        stop_children(ctx, true).await;
    }
    let fresh = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(factory)) {
        Ok(fresh) => fresh,
        Err(_) => {
            return Err(StopReason::Failed(
                "the restart factory panicked".to_owned(),
            ));
        }
    };
    drop(std::mem::replace(actor, fresh));
    match CatchUnwind::new(actor.on_start(ctx)).await {
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
    crate::observe::metrics::count(core, "conclib_actor_restarts_total");
    if tell_parent && let Some(parent) = &core.parent {
        parent.push_control(Control::Event(SupervisionEvent::ChildRestarted {
            id: core.id,
            urn: core.urn.clone(),
            panic: why.to_owned(),
        }));
    }
    Ok(())
}

/// Stops every child and waits until they have all stopped: gracefully (each handles what
/// it has queued), or killed (an actor killed kills its children: "stops now" holds for the
/// whole tree below it, which a child busy at an `.await` would otherwise hold up).
pub(crate) async fn stop_children<A: Actor>(ctx: &Context<A>, kill: bool) {
    let children: Vec<Arc<dyn ErasedCell>> = ctx.myself().cell.core.lock_children().clone();
    for child in &children {
        if kill {
            child.push_control(Control::Kill);
        } else {
            child.close();
        }
    }
    for child in &children {
        child.core().wait_for_stop().await;
    }
}

pub(super) async fn finish<A: Actor>(
    mut actor: A,
    mut ctx: Context<A>,
    reason: StopReason,
    mut batch: VecDeque<crate::run::envelope::Envelope<A>>,
) {
    let cell = ctx.myself().cell.clone();
    ctx.cancel_tasks();
    cell.mailbox.close();
    // What is still queued now will not be handled (kill, panic): fail those asks at once.
    let left = cell.mailbox.seal(&mut batch);
    let dropped = left.len();
    drop(left);
    if dropped > 0 {
        cell.mailbox.capacity.taken_by_actor(dropped);
    }
    stop_children(&ctx, reason == StopReason::Killed).await;
    let failure = match CatchUnwind::new(actor.on_stop(&mut ctx, &reason)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => {
            count_panic(&cell.core, &panic);
            Some(format!("panicked: {panic}"))
        }
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
    ctx.unwatch_all();
    ctx.system().retire(&*cell, &reason);
}
