//! [`SpawnBuilder`]: an actor's options, then its spawn (registered, `on_start` run, its run
//! loop readied, dormant until it has something to do).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::Instrument;

use crate::actor::Actor;
use crate::cell::ActorCell;
use crate::cell::erased::{CellCore, ErasedCell};
use crate::context::Context;
use crate::dynamic::DynActorRef;
use crate::error::{BoxError, SpawnError, StopReason};
use crate::mailbox::Mailbox;
use crate::mailbox::config::MailboxConfig;
use crate::run::dormant::{Dormant, RunFuture};
use crate::run::guarded::CatchUnwind;
use crate::run::{Factory, RunOptions, run};
use crate::send::actor_ref::ActorRef;
use crate::supervision::{PanicPolicy, RestartLimit, SupervisionStrategy};
use crate::system::ActorSystem;
use crate::urn::Urn;

/// Builds and spawns an actor: from [`ActorSystem::build`] or [`Context::build_child`].
///
/// ```
/// # use conclib_core::*;
/// # use std::time::Duration;
/// #[derive(Default)]
/// struct Worker;
/// impl Actor for Worker {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # let system = ActorSystem::new("docs");
/// let worker = system
///     .build(Worker)
///     .urn("worker:1")
///     .mailbox(MailboxConfig::Bounded(64))
///     .ask_timeout(Duration::from_secs(1))
///     .restart_with(Worker::default, RestartLimit::new(3, Duration::from_secs(10)))
///     .spawn()
///     .await
///     .unwrap();
/// # }
/// ```
#[must_use = "a builder does nothing until `.spawn().await`"]
pub struct SpawnBuilder<A: Actor> {
    system: ActorSystem,
    actor: A,
    urn: Option<String>,
    mailbox: MailboxConfig,
    ask_timeout: Duration,
    policy: PanicPolicy,
    factory: Option<Factory<A>>,
    strategy: SupervisionStrategy,
    children_policy: Option<PanicPolicy>,
    parent: Option<Arc<dyn ErasedCell>>,
    /// Keeps whether the actor is at work (a pool's member: see `Mailbox::work`).
    track_work: bool,
}

impl<A: Actor> fmt::Debug for SpawnBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnBuilder")
            .field("type", &std::any::type_name::<A>())
            .field("urn", &self.urn)
            .field("mailbox", &self.mailbox)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<A: Actor> SpawnBuilder<A> {
    /// The actor as its type declares it ([`Actor::URN`], [`Actor::MAILBOX`]), stopping on
    /// a panic.
    pub(crate) fn new(system: ActorSystem, actor: A, ask_timeout: Duration) -> Self {
        SpawnBuilder {
            system,
            actor,
            urn: A::URN.map(str::to_owned),
            mailbox: A::MAILBOX,
            ask_timeout,
            policy: PanicPolicy::Stop,
            factory: None,
            strategy: SupervisionStrategy::OneForOne,
            children_policy: None,
            parent: None,
            track_work: false,
        }
    }

    /// Names the actor. Checked at spawn: [`SpawnError::InvalidUrn`] or [`SpawnError::UrnTaken`].
    pub fn urn(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// Keeps whether the actor is at work, for least-loaded routing (pool members).
    pub(crate) fn track_work(mut self) -> Self {
        self.track_work = true;
        self
    }

    /// Spawns the actor without a URN, whatever [`Actor::URN`] says (pool members).
    pub(crate) fn unnamed(mut self) -> Self {
        self.urn = None;
        self
    }

    /// Sets the mailbox size.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// Sets how long asks to this actor wait by default.
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// Sets what happens after a handler panics: [`PanicPolicy::Stop`] (default),
    /// [`PanicPolicy::Resume`], or [`PanicPolicy::Restart`], which needs the factory given
    /// by [`restart_with`](Self::restart_with) (without one, `spawn` fails with
    /// [`SpawnError::NoRestartFactory`]).
    pub fn on_panic(mut self, policy: PanicPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Restarts the actor after a panic with fresh state from `factory`, keeping its URN,
    /// refs and mailbox, at most as often as `limit` allows.
    pub fn restart_with(
        mut self,
        factory: impl FnMut() -> A + Send + 'static,
        limit: RestartLimit,
    ) -> Self {
        self.factory = Some(Box::new(factory));
        self.policy = PanicPolicy::Restart(limit);
        self
    }

    /// Sets how the actor reacts to its children's failures.
    pub fn supervision(mut self, strategy: SupervisionStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Declares the panic policy of this actor's children, whoever spawns them and
    /// whatever their own builder says (see [`PanicPolicy`] for the precedence). Also
    /// settable later with [`Context::set_children_on_panic`].
    pub fn children_on_panic(mut self, policy: PanicPolicy) -> Self {
        self.children_policy = Some(policy);
        self
    }

    /// Spawns the actor as a child of `parent`, as [`Context::build_child`] does from inside
    /// it: it stops when its parent stops, and the parent's [`Actor::on_event`] hears of its
    /// restarts and its end. (For code that spawns on an actor's behalf, such as a process
    /// actor's builder.)
    pub fn child_of(self, parent: &DynActorRef) -> Self {
        self.parent(parent.cell.clone())
    }

    pub(crate) fn parent(mut self, parent: Arc<dyn ErasedCell>) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Registers the actor, runs [`Actor::on_start`], and readies its run loop. The actor's
    /// tokio task starts with the first thing it has to do (a message, a stop, a kill, what
    /// `on_start` left it): until then an idle actor costs no task, no place in the runtime's
    /// queues and no worker woken. An actor stopped or killed before that, with nothing
    /// queued, runs its last steps (children, `on_stop`) in one of the tasks the system
    /// keeps on its runtime (one a worker), and moves to a task of its own only if they
    /// wait.
    ///
    /// # Errors
    /// [`SpawnError`]: the URN is invalid or taken, `on_start` failed or panicked, the
    /// system (or the parent) is stopping, or no tokio runtime runs this (`NoRuntime`).
    pub async fn spawn(self) -> Result<ActorRef<A>, SpawnError> {
        let SpawnBuilder {
            system,
            mut actor,
            urn,
            mailbox,
            ask_timeout,
            policy,
            factory,
            strategy,
            children_policy,
            parent,
            track_work,
        } = self;
        if system.is_shutting_down() || parent.as_ref().is_some_and(|p| p.is_closed()) {
            return Err(SpawnError::ShuttingDown);
        }
        if matches!(policy, PanicPolicy::Restart(_)) && factory.is_none() {
            return Err(SpawnError::NoRestartFactory);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
        let urn = urn.map(Urn::try_from).transpose()?;
        // Reached by name only through its URN: checked there (a few comparisons a spawn).
        if urn.is_some()
            && let Some(name) = duplicate_wire_name(A::REMOTE)
        {
            return Err(SpawnError::DuplicateWireName {
                actor: std::any::type_name::<A>(),
                name,
            });
        }
        let id = system.next_id();
        let mark = system.change_mark(id);
        let cell = Arc::new(ActorCell {
            core: CellCore::new(
                id,
                urn,
                parent.clone(),
                std::any::type_name::<A>,
                ask_timeout,
                A::HANDS_ON,
            ),
            mailbox: Mailbox::<A>::new(mailbox, mark),
        });
        cell.core
            .restartable()
            .store(factory.is_some(), Ordering::Relaxed);
        if track_work {
            cell.mailbox.track_work();
        }
        cell.core.set_children_policy(children_policy);
        system.register(cell.clone())?;
        let myself = ActorRef { cell: cell.clone() };
        let mut ctx = Context::new(myself.clone(), system.clone(), strategy);
        let span = tracing::debug_span!(
            "actor",
            system = %system.name(),
            id = cell.core.id.0,
            urn = cell.core.urn.as_ref().map(Urn::as_str),
            actor = cell.core.type_name(),
        );
        // Boxed as a trait object so that this future's type does not contain the type of
        // `A::on_start`'s future: an actor whose `on_start` (or handler) spawns a child of its
        // own type would otherwise have a future that contains itself (E0391). A default or
        // stateless `on_start` is zero-sized and does not allocate.
        let start: Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + '_>> =
            Box::pin(actor.on_start(&mut ctx));
        // Instrumenting costs a copy of the future: skip it when nobody listens.
        let started = if span.is_disabled() {
            CatchUnwind::new(start).await
        } else {
            CatchUnwind::new(start).instrument(span.clone()).await
        };
        let failure = match started {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(SpawnError::StartFailed(e)),
            Err(panic) => {
                crate::run::lifecycle::count_panic(&cell.core, &panic);
                Some(SpawnError::StartPanicked(panic))
            }
        };
        if let Some(failure) = failure {
            ctx.cancel_tasks();
            drop(cell.mailbox.seal(&mut Default::default()));
            // Children it spawned before it failed go with it (they would outlive it, with
            // a parent that never ran, and no shutdown would stop them).
            crate::run::lifecycle::stop_children(&ctx, true).await;
            system.unregister(&*cell);
            cell.core
                .mark_stopped(StopReason::Failed(failure.to_string()));
            cell.mailbox.capacity.mark.set();
            return Err(failure);
        }
        if let Some(parent) = &parent {
            parent.core().lock_children().push(cell.clone());
        }
        // A stop asked for in `on_start` is in the context, not the mailbox: that actor
        // starts at once (its dormant waker woken here). Any other starts dormant (see
        // `crate::run::dormant`).
        let starts_now = ctx.pending_stop.is_some();
        // Boxed, not inside tokio's task: there, the run loop's first fields (the batch the
        // actor takes its messages from) would share cache lines with the task's state,
        // which every sender that wakes the actor writes: unbounded tell lost 20% in an
        // alternated A/B (docs/bench-log.md, "One allocation less"), for one allocation saved
        // and no memory. The span goes inside the box: around it, tokio's task (128-byte
        // aligned) would grow from 128 to 256 bytes.
        let run = run(actor, ctx, RunOptions::new(policy, factory));
        let run: RunFuture = if span.is_disabled() {
            Box::pin(run)
        } else {
            Box::pin(run.instrument(span))
        };
        let weak: std::sync::Weak<dyn ErasedCell> = Arc::downgrade(&cell) as _;
        let keeping = system.keeping(runtime);
        let on = keeping.number();
        let waker = Dormant::waker(run, keeping, weak);
        if starts_now {
            waker.wake();
        } else if let Err(waker) = cell.mailbox.register_dormant(waker, on) {
            // Something to do already (`on_start` sent the actor a message): start it now.
            waker.wake();
        }
        Ok(myself)
    }
}

/// Spawning: here, beside the builder, so that the system does not reach up to it.
impl ActorSystem {
    /// Spawns a top-level actor with its default options ([`Actor::URN`], [`Actor::MAILBOX`]).
    ///
    /// # Errors
    /// [`SpawnError`] if the URN is taken or invalid, `on_start` fails, or the system is shutting down.
    pub async fn spawn<A: Actor>(&self, actor: A) -> Result<ActorRef<A>, SpawnError> {
        self.build(actor).spawn().await
    }

    /// Starts building an actor: set its URN, mailbox, panic policy, then `.spawn().await`.
    pub fn build<A: Actor>(&self, actor: A) -> SpawnBuilder<A> {
        SpawnBuilder::new(self.clone(), actor, self.default_ask_timeout())
    }
}

/// Spawning children: here, beside the builder, so that the context does not reach up to it.
impl<P: Actor> Context<P> {
    /// Starts building a child actor: it stops before this one does, and this one receives a
    /// [`SupervisionEvent`](crate::supervision::SupervisionEvent) when it stops or restarts.
    pub fn build_child<C: Actor>(&self, child: C) -> SpawnBuilder<C> {
        self.system().build(child).parent(self.myself().erased())
    }

    /// Spawns a child actor with its default options. See [`build_child`](Self::build_child).
    ///
    /// # Errors
    /// As [`ActorSystem::spawn`].
    pub async fn spawn_child<C: Actor>(
        &self,
        child: C,
    ) -> Result<ActorRef<C>, crate::error::SpawnError> {
        self.build_child(child).spawn().await
    }
}

/// The first wire name two of `exposed` share, if any.
fn duplicate_wire_name(exposed: &[crate::exposed::remote::ExposedMessage]) -> Option<&'static str> {
    exposed.iter().enumerate().find_map(|(i, m)| {
        let name = m.name();
        exposed[..i]
            .iter()
            .any(|e| e.name() == name)
            .then_some(name)
    })
}
