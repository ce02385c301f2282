//! Building a process actor: [`build`], [`SpawnProcess`] (`system.process(actor)`,
//! `ctx.process(actor)`) and the [`ProcessBuilder`] they return.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use conclib_codec::{Bincode, encode_value};
use conclib_core::{Actor, ActorSystem, DynActorRef, PanicPolicy, RestartLimit};
use serde::Serialize;

use crate::error::ProcessSpawnError;
use crate::parent::Inner;
use crate::process_ref::ProcessRef;
use crate::relay::ProcessRelay;
use crate::spec::{ChildOutput, Spec};

/// Starts building a process actor: `actor` is sent (serialized) to a new process of this
/// executable, which runs it. The executable's `main` must call [`init`](crate::init) first
/// with a [`Registry`](crate::Registry) that lists `A`.
pub fn build<A: Actor + Serialize>(actor: A) -> ProcessBuilder<A> {
    ProcessBuilder {
        actor,
        system: None,
        urn: None,
        parent: None,
        restart: None,
        resume: false,
        threads: 1,
        memory_limit: None,
        heartbeat: Some(Duration::from_secs(2)),
        start_timeout: Duration::from_secs(10),
        ask_timeout: Duration::from_secs(5),
        output: ChildOutput::Tracing,
    }
}

/// Starts building a process actor from an actor system or an actor's context, as
/// `system.build(actor)` and `ctx.build_child(actor)` do for a local one:
/// `system.process(actor)` is [`build`]`(actor).`[`system`](ProcessBuilder::system)`(&system)`,
/// and, inside an actor, `ctx.process(actor)` is
/// [`build`]`(actor).`[`child_of`](ProcessBuilder::child_of)`(ctx)`.
///
/// ```no_run
/// use conclib_process::SpawnProcess;
/// # use conclib_core::{Actor, ActorSystem};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Worker;
/// # impl Actor for Worker {}
/// # async fn demo(system: ActorSystem) -> Result<(), conclib_process::ProcessSpawnError> {
/// let worker = system.process(Worker).urn("worker").spawn().await?;
/// # Ok(()) }
/// ```
pub trait SpawnProcess {
    /// A builder for `actor` in a process of its own, in this system (or as this actor's
    /// child).
    fn process<A: Actor + Serialize>(&self, actor: A) -> ProcessBuilder<A>;
}

impl SpawnProcess for ActorSystem {
    fn process<A: Actor + Serialize>(&self, actor: A) -> ProcessBuilder<A> {
        build(actor).system(self)
    }
}

impl<P: Actor> SpawnProcess for conclib_core::Context<P> {
    fn process<A: Actor + Serialize>(&self, actor: A) -> ProcessBuilder<A> {
        build(actor).child_of(self)
    }
}

/// Builds a process actor; from [`build`]. Finish with `.spawn().await`.
#[must_use = "a builder does nothing until `.spawn().await`"]
pub struct ProcessBuilder<A> {
    actor: A,
    system: Option<ActorSystem>,
    urn: Option<String>,
    parent: Option<DynActorRef>,
    restart: Option<RestartLimit>,
    resume: bool,
    threads: usize,
    memory_limit: Option<u64>,
    heartbeat: Option<Duration>,
    start_timeout: Duration,
    ask_timeout: Duration,
    output: ChildOutput,
}

impl<A> fmt::Debug for ProcessBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("actor", &std::any::type_name::<A>())
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl<A: Actor + Serialize> ProcessBuilder<A> {
    /// The dead-man's switch: once its actor runs, the child must answer a heartbeat within
    /// `every`, sent every `every`, or it is killed (`SIGKILL`) and treated as dead: a
    /// process that stops running is found within two periods. Until its actor runs, the
    /// [start timeout](Self::start_timeout) applies instead, so a child slow to start is not
    /// killed by its heartbeat. `None` turns it off. Default 2 s. (The heartbeat is answered
    /// by a thread of the child of its own, not by the actor or its runtime: a handler that
    /// keeps the CPU busy does not miss it; a process that stops running does. A pool's
    /// dead-man's switch, which goes through the actor, is the one that sees a stuck
    /// handler.)
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long the child has to start its actor (from its launch to its `on_start` done),
    /// at its spawn and at each restart: past it, the process is killed and the spawn fails
    /// with [`ProcessSpawnError::NoAnswer`] (a restart that fails so ends the actor). Asks
    /// and tells sent while the process is being restarted wait for it as long (plus 2 s).
    /// Default 10 s; raise it for an actor that loads much in `on_start`.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Limits the process's address space to `bytes` (`RLIMIT_AS`): an allocation past it
    /// fails, and the process aborts (`SIGABRT`) instead of taking the machine's memory.
    /// Leave room for the runtime (threads' stacks and the binary: tens of MiB).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Makes the process actor a member of `system`, as a local actor is: a local actor (a
    /// [`ProcessRelay`](crate::ProcessRelay)) stands for it there and relays to its process,
    /// so it has an id, can have a URN ([`urn`](Self::urn)), is reached by
    /// [`ActorSystem::lookup`], [`ProcessRef::to_dyn`] and the Redis proxy like any actor,
    /// and is listed in the system's [`snapshot`](conclib_core::ActorSystem::snapshot) with
    /// its process id. It lives as a local actor does: until it is stopped or killed, its
    /// parent stops, or the system shuts down (dropping its refs does not stop it). In the
    /// child, [`parent`](crate::parent) asks and tells the actors of this system by URN.
    ///
    /// Without a system the process actor has no URN, is reached only through its
    /// [`ProcessRef`], stops when the last clone of it is dropped, and asks from the child
    /// to the parent fail `UnknownUrn`.
    pub fn system(mut self, system: &ActorSystem) -> Self {
        self.system = Some(system.clone());
        self
    }

    /// Names the process actor in its system ([`system`](Self::system) or
    /// [`child_of`](Self::child_of); without either, `spawn` fails with
    /// [`ProcessSpawnError::NoSystem`]). Checked at spawn as a local actor's URN is.
    pub fn urn(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// Makes the process actor a child of the actor whose context this is, in that actor's
    /// system (as with [`system`](Self::system)): it stops when its parent stops, and the
    /// parent's [`Actor::on_event`] hears of it as of a local child:
    /// [`SupervisionEvent::ChildRestarted`](conclib_core::SupervisionEvent::ChildRestarted)
    /// when its process died and was replaced (the "panic" is the exit), and
    /// [`SupervisionEvent::ChildStopped`](conclib_core::SupervisionEvent::ChildStopped) when
    /// it ended for good: `Normal` (stopped, or exit code 0), `Killed` (by
    /// [`ProcessRef::kill`]), `RestartLimit` (it died more often than
    /// [`restart`](Self::restart) allows: the default `on_event` escalates it, as for a local
    /// child), or, without a restart policy, `Panicked` (its actor panicked: the panic's text)
    /// or `Failed` (its actor failed, or its process died).
    pub fn child_of<P: Actor>(mut self, ctx: &conclib_core::Context<P>) -> Self {
        self.system = Some(ctx.system().clone());
        self.parent = Some(ctx.myself().to_dyn());
        self
    }

    /// Restarts the process when it dies (a crash, a kill from outside, a missed heartbeat,
    /// an exit it did not ask for): a fresh process with the actor's initial state, at most
    /// as often as `limit` allows; past it the process stays dead. The asks pending at the
    /// death fail with [`AskError::Exited`](conclib_core::AskError::Exited) all the same. [`ProcessRef::kill`] and
    /// [`ProcessRef::stop`] end it for good.
    pub fn restart(mut self, limit: RestartLimit) -> Self {
        self.restart = Some(limit);
        self
    }

    /// What a panic in a handler does, as for a local actor: the asker gets
    /// [`AskError::Panicked`](conclib_core::AskError::Panicked) either way; then with
    /// [`PanicPolicy::Stop`] (the default) the actor stops with
    /// [`StopReason::Panicked`](conclib_core::StopReason::Panicked) and its process exits —
    /// a death like any other, so [`restart`](Self::restart) replaces it within its limit;
    /// with [`PanicPolicy::Resume`] the actor keeps its state and handles the next message.
    /// [`PanicPolicy::Restart`]`(limit)` is `Stop` with [`restart`](Self::restart)`(limit)`.
    pub fn on_panic(mut self, policy: PanicPolicy) -> Self {
        self.resume = policy == PanicPolicy::Resume;
        if let PanicPolicy::Restart(limit) = policy {
            self.restart = Some(limit);
        }
        self
    }

    /// The number of threads of the tokio runtime the actor runs on in its process
    /// (default 1: the link's tasks and the actor hand messages to each other on one
    /// thread, the fastest round trip — see docs/bench-log.md; heartbeats are answered on a
    /// thread of their own either way). More lets the actor's own tasks and children run
    /// in parallel inside the process.
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Where the process's stdout and stderr go (default [`ChildOutput::Tracing`]).
    pub fn output(mut self, output: ChildOutput) -> Self {
        self.output = output;
        self
    }

    /// The default timeout of asks to this actor (default 5 s).
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// Starts the process and returns once its actor runs (the child says so).
    ///
    /// # Errors
    /// [`ProcessSpawnError`]: the state cannot be encoded, the process cannot be started, or it
    /// exited (or did not answer) within the [start timeout](Self::start_timeout) (then
    /// [`ProcessSpawnError::NoAnswer`], the process killed), with its exit status; with a
    /// system, the URN is invalid or taken, or the system (or parent) is stopping.
    pub async fn spawn(self) -> Result<ProcessRef<A>, ProcessSpawnError> {
        let ask_timeout = self.ask_timeout;
        let Some(system) = self.system.clone() else {
            if self.urn.is_some() {
                return Err(ProcessSpawnError::NoSystem);
            }
            let inner = Inner::start(self.spec()?, None).await?;
            return Ok(ProcessRef::new(inner, None, ask_timeout));
        };
        let urn = self.urn.clone();
        let parent = self.parent.clone();
        let (actor, started) = ProcessRelay::<A>::new(self.spec());
        let mut builder = system.build(actor).ask_timeout(ask_timeout);
        if let Some(urn) = urn {
            builder = builder.urn(urn);
        }
        if let Some(parent) = &parent {
            builder = builder.child_of(parent);
        }
        let relay = builder
            .spawn()
            .await
            .map_err(ProcessSpawnError::from_relay)?;
        let inner = started.get().cloned().expect("set by the relay's on_start");
        Ok(ProcessRef::new(inner, Some(relay.to_dyn()), ask_timeout))
    }

    /// The local actor that starts the process actor in its `on_start` and relays to it:
    /// what a [`Pool`](conclib_core::Pool) of process actors is made of —
    /// `system.pool(move || conclib_process::build(Worker::new()).into_actor())`. The
    /// builder's [`system`](Self::system), [`urn`](Self::urn) and
    /// [`child_of`](Self::child_of) do not apply (the pool decides); the others do.
    pub fn into_actor(self) -> ProcessRelay<A> {
        ProcessRelay::<A>::new(self.spec()).0
    }

    fn spec(&self) -> Result<Spec, ProcessSpawnError> {
        let state = encode_value(&Bincode, &self.actor)
            .map_err(|e| ProcessSpawnError::Codec(e.to_string()))?;
        Ok(Spec {
            kind: std::any::type_name::<A>(),
            state,
            heartbeat: self.heartbeat,
            memory_limit: self.memory_limit,
            start_timeout: self.start_timeout,
            restart: self.restart,
            resume: self.resume,
            threads: self.threads,
            system: self.system.clone(),
            output: self.output,
            stats: Arc::default(),
            supervisor: self.parent.clone(),
        })
    }
}
