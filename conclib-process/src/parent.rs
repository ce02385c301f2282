//! The parent's side: starting a process actor, and the ref that talks to it.

use std::fmt;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_codec::{Bincode, encode_value};
use conclib_core::{
    Actor, ActorSystem, DynActorRef, ExternalProbe, ExternalReport, PanicPolicy, RestartLimit,
    StopReason, SupervisionEvent,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::error::{ProcessExit, ProcessSpawnError};
use crate::link::{Link, ProcessStats};
use crate::lock;
use crate::process_ref::ProcessRef;
use crate::relay::ProcessRelay;
use crate::wire::{self, FD_VAR, Frame, THREADS_VAR};

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

/// Where a process actor's stdout and stderr go; [`ProcessBuilder::output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChildOutput {
    /// Each line becomes a `tracing` event of target `conclib_process::child`, with the
    /// fields `actor` (the actor's type) and `pid`: stdout at `INFO`, stderr at `WARN`
    /// (invalid UTF-8 replaced). Without a subscriber the lines are dropped. The default.
    #[default]
    Tracing,
    /// The parent's own stdout and stderr, unchanged.
    Inherit,
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
    /// The dead-man's switch: the child must answer a heartbeat within `every`, sent every
    /// `every`, or it is killed (`SIGKILL`) and treated as dead. `None` turns it off.
    /// Default 2 s. (The heartbeat is answered by a thread of the child of its own, not by
    /// the actor or its runtime: a handler that keeps the CPU busy does not miss it; a
    /// process that stops running does. A pool's dead-man's switch, which goes through the
    /// actor, is the one that sees a stuck handler.)
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every;
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
    /// child) or `Failed` (it died without a restart policy).
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
    /// [`StopReason::Panicked`] and its process exits — a death like any other, so
    /// [`restart`](Self::restart) replaces it within its limit; with
    /// [`PanicPolicy::Resume`] the actor keeps its state and handles the next message.
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
    /// thread, the fastest round trip — see BENCHMARKS.md; heartbeats are answered on a
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

    /// Starts the process and returns once its actor answered (a first heartbeat).
    ///
    /// # Errors
    /// [`ProcessSpawnError`]: the state cannot be encoded, the process cannot be started, or it
    /// exited (or did not answer) within the start timeout, with its exit status; with a
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

/// What it takes to start (and restart) one process actor.
pub(crate) struct Spec {
    kind: &'static str,
    state: Vec<u8>,
    heartbeat: Option<Duration>,
    memory_limit: Option<u64>,
    start_timeout: Duration,
    restart: Option<RestartLimit>,
    /// Resume the actor after a panic in a handler (else it stops, and its process exits).
    resume: bool,
    /// The threads of the child's runtime.
    threads: usize,
    /// The system whose actors the child may ask by URN (and that lists it).
    pub(crate) system: Option<ActorSystem>,
    output: ChildOutput,
    /// Counted across restarts, for the system's snapshot.
    stats: Arc<ProcessStats>,
    /// Told of restarts ([`ProcessBuilder::child_of`]).
    supervisor: Option<DynActorRef>,
}

/// Turns each line a child writes to `stream` into a `tracing` event, until the pipe closes.
fn forward_lines(
    stream: impl std::io::Read + Send + 'static,
    kind: &'static str,
    pid: u32,
    stderr: bool,
) {
    // A blocking reader on a thread of its own: the pipe ends when the child (and anything
    // it started that kept the pipe) exits.
    let forward = move || {
        use std::io::BufRead;
        let mut reader = std::io::BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if stderr {
                tracing::warn!(target: "conclib_process::child", actor = kind, pid, "{text}");
            } else {
                tracing::info!(target: "conclib_process::child", actor = kind, pid, "{text}");
            }
        }
    };
    let _ = std::thread::Builder::new()
        .name("conclib-child-output".to_owned())
        .stack_size(64 * 1024)
        .spawn(forward);
}

/// Starts a process for `spec` and returns its link once the actor answered.
async fn launch(
    spec: &Spec,
    owner: std::sync::Weak<Inner>,
) -> Result<Arc<Link>, ProcessSpawnError> {
    // Two socket pairs: requests and answers, in order; and the control lane, where a
    // heartbeat never waits behind queued requests.
    let (parent_end, child_end) =
        std::os::unix::net::UnixStream::pair().map_err(ProcessSpawnError::Io)?;
    let (parent_control, child_control) =
        std::os::unix::net::UnixStream::pair().map_err(ProcessSpawnError::Io)?;
    for fd in [child_end.as_raw_fd(), child_control.as_raw_fd()] {
        // The child's ends must survive exec: clear their close-on-exec flag.
        // SAFETY: fcntl on descriptors we own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(ProcessSpawnError::Io(std::io::Error::last_os_error()));
            }
        }
    }
    let exe = std::env::current_exe().map_err(ProcessSpawnError::Io)?;
    let mut command = std::process::Command::new(exe);
    command.env(
        FD_VAR,
        format!("{},{}", child_end.as_raw_fd(), child_control.as_raw_fd()),
    );
    command.env(THREADS_VAR, spec.threads.to_string());
    conclib_core::child::bind_to_parent(&mut command, false);
    if spec.output == ChildOutput::Tracing {
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    if let Some(bytes) = spec.memory_limit {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = conclib_core::child::spawn_bound(
        move || command.spawn(),
        |mut orphan| {
            let _ = orphan.kill();
            let _ = orphan.wait();
        },
    )
    .await
    .map_err(ProcessSpawnError::Io)?;
    let mut child = child;
    if let Some(out) = child.stdout.take() {
        forward_lines(out, spec.kind, child.id(), false);
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, spec.kind, child.id(), true);
    }
    drop(child_end);
    drop(child_control);
    let stream = crate::socket::split(parent_end).map_err(ProcessSpawnError::Io)?;
    let control = crate::socket::split(parent_control).map_err(ProcessSpawnError::Io)?;
    let link = Link::start(
        stream,
        control,
        child,
        spec.heartbeat,
        owner,
        spec.system.clone(),
        spec.kind,
        spec.stats.clone(),
    );
    // Started once the child says its actor runs (not when its heartbeat thread answers).
    let started = link.started();
    link.send(&Frame::Init {
        kind: spec.kind,
        state: &spec.state,
        resume: spec.resume,
    });
    let sent = std::time::Instant::now();
    match tokio::time::timeout(spec.start_timeout, started).await {
        Ok(Ok(())) => {
            if conclib_core::metrics::is_enabled() {
                metrics::histogram!("conclib_process_link_round_trip_seconds", "actor" => spec.kind)
                    .record(sent.elapsed().as_secs_f64());
            }
        }
        Ok(Err(exit)) => {
            // Read before the start failed: the child's own words, if it said any.
            let reason = match lock(&link.ended).take() {
                Some(StopReason::Failed(why) | StopReason::Panicked(why)) => Some(why),
                _ => None,
            };
            return Err(match (exit.code, reason) {
                (Some(wire::EXIT_NOT_REGISTERED), _) => ProcessSpawnError::NotRegistered(spec.kind),
                (_, Some(reason)) => ProcessSpawnError::StartFailed {
                    kind: spec.kind,
                    reason,
                },
                _ => ProcessSpawnError::Exited(exit),
            });
        }
        Err(_) => {
            link.kill();
            return Err(ProcessSpawnError::NoAnswer(spec.start_timeout));
        }
    }
    Ok(link)
}

/// The process actor behind every clone of one [`ProcessRef`] (and its relay, if any): its
/// current process, and what restarting it takes.
pub(crate) struct Inner {
    /// The current process's link (replaced at each restart; watched by what waits for a
    /// restarting process).
    link: watch::Sender<Option<Arc<Link>>>,
    spec: Spec,
    restarts: Mutex<std::collections::VecDeque<std::time::Instant>>,
    pub(crate) restarted: AtomicU64,
    /// Killed or stopped on purpose: no restart.
    pub(crate) ending: std::sync::atomic::AtomicBool,
    /// Killed on purpose (with `ending`): a process started meanwhile is killed too.
    pub(crate) killing: std::sync::atomic::AtomicBool,
    /// Set once the process ended for good.
    pub(crate) final_exit: watch::Sender<Option<ProcessExit>>,
    /// Why it ended for good, as its relay stops with it.
    pub(crate) end_reason: std::sync::OnceLock<StopReason>,
    me: std::sync::Weak<Inner>,
    /// Its relay's id in its system (named in its supervisor's events).
    pub(crate) id: Option<conclib_core::ActorId>,
    /// What the snapshot of its system shows of this actor.
    pub(crate) probe: Arc<ExternalProbe>,
}

/// Reports a process actor to its system's snapshot, until it ends for good.
fn probe(inner: std::sync::Weak<Inner>) -> impl Fn() -> Option<ExternalReport> + Send + Sync {
    move || {
        let inner = inner.upgrade()?;
        if inner.final_exit.borrow().is_some() {
            return None;
        }
        let link = inner.link.borrow().clone()?;
        let stats = &inner.spec.stats;
        Some(ExternalReport {
            type_name: inner.spec.kind,
            pid: Some(link.pid),
            mailbox_len: lock(&link.pending).len(),
            handled: stats.answered.load(Ordering::Relaxed),
            errors: stats.errors.load(Ordering::Relaxed),
            panics: stats.panics.load(Ordering::Relaxed),
            restarts: inner.restarted.load(Ordering::Relaxed),
            last_error: lock(&stats.last_error).clone(),
        })
    }
}

impl Inner {
    /// Starts the first process for `spec`; `id` is its relay's, if it has one.
    pub(crate) async fn start(
        spec: Spec,
        id: Option<conclib_core::ActorId>,
    ) -> Result<Arc<Inner>, ProcessSpawnError> {
        let (final_exit, _) = watch::channel(None);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            link: watch::channel(None).0,
            spec,
            restarts: Mutex::new(std::collections::VecDeque::new()),
            restarted: AtomicU64::new(0),
            ending: std::sync::atomic::AtomicBool::new(false),
            killing: std::sync::atomic::AtomicBool::new(false),
            final_exit,
            end_reason: std::sync::OnceLock::new(),
            me: weak.clone(),
            id,
            probe: Arc::new(probe(weak.clone())),
        });
        let link = launch(&inner.spec, Arc::downgrade(&inner)).await?;
        inner.link.send_replace(Some(link));
        Ok(inner)
    }

    pub(crate) fn link(&self) -> Arc<Link> {
        self.link.borrow().clone().expect("set at start")
    }

    /// The link to send on: the current process's, or — while a dead process may still be
    /// replaced (a restart policy, not past it yet) — its successor's, waiting at most
    /// `wait` for it. So a message sent while the process is being restarted goes to the
    /// new process instead of failing.
    pub(crate) async fn live_link(&self, wait: Duration) -> Arc<Link> {
        let link = self.link();
        let replaceable = || {
            self.spec.restart.is_some()
                && !self.ending.load(Ordering::Acquire)
                && self.final_exit.borrow().is_none()
        };
        if link.exit.borrow().is_none() || !replaceable() {
            return link;
        }
        let mut relaunched = self.link.subscribe();
        let mut ended = self.final_exit.subscribe();
        let _ = tokio::time::timeout(wait, async {
            while self.link().exit.borrow().is_some() && replaceable() {
                tokio::select! {
                    changed = relaunched.changed() => if changed.is_err() { return },
                    changed = ended.changed() => if changed.is_err() { return },
                }
            }
        })
        .await;
        self.link()
    }

    /// How long a message waits for a dead process's successor (its start, and the
    /// reaper's reading of what the dead one wrote).
    pub(crate) fn relaunch_wait(&self) -> Duration {
        self.spec.start_timeout + Duration::from_secs(2)
    }

    /// Waits until the process has ended for good.
    pub(crate) async fn ended(&self) -> ProcessExit {
        let mut exit = self.final_exit.subscribe();
        loop {
            if let Some(e) = exit.borrow_and_update().clone() {
                return e;
            }
            if exit.changed().await.is_err() {
                return ProcessExit::default();
            }
        }
    }

    /// The process behind `dead` died: restart it if the policy allows, else end for good.
    /// Nothing to do unless `dead` is the current process's link: a process that died
    /// while it started is its launch's to report (the spawn or restart fails).
    pub(crate) async fn died(&self, dead: &Arc<Link>, exit: ProcessExit) {
        let current = self.link.borrow().clone();
        if !current.is_some_and(|link| Arc::ptr_eq(&link, dead)) {
            return;
        }
        let allowed = !self.ending.load(Ordering::Acquire)
            && self.spec.restart.is_some_and(|limit| {
                let now = std::time::Instant::now();
                let mut recent = lock(&self.restarts);
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > limit.within)
                {
                    recent.pop_front();
                }
                if recent.len() >= limit.max_restarts as usize {
                    return false;
                }
                recent.push_back(now);
                true
            });
        if conclib_core::metrics::is_enabled() {
            let reason = match (exit.code, exit.signal) {
                (Some(0), _) => "exit_ok",
                (Some(_), _) => "exit_error",
                (None, Some(9)) => "sigkill",
                (None, Some(_)) => "signal",
                (None, None) => "unknown",
            };
            metrics::counter!("conclib_process_exits_total", "actor" => self.spec.kind, "reason" => reason)
                .increment(1);
        }
        // What the child said of its actor's end, if it said anything before exiting.
        let said = lock(&dead.ended).take();
        let death = match &said {
            Some(StopReason::Panicked(p)) => format!("its actor panicked: {p}"),
            Some(StopReason::Failed(why)) => format!("its actor failed: {why}"),
            _ => format!("the process died: {exit}"),
        };
        *lock(&self.spec.stats.last_error) = Some(death.clone());
        if allowed {
            tracing::warn!(actor = self.spec.kind, %exit, "process actor died; restarting it");
            match launch(&self.spec, self.me.clone()).await {
                Ok(link) => {
                    self.restarted.fetch_add(1, Ordering::Relaxed);
                    self.link.send_replace(Some(link.clone()));
                    // A stop or kill asked for while the process was being replaced went to
                    // the dead one (its relay would wait its grace period, then kill): the
                    // new one gets it. One asked for from now on finds the new link.
                    if self.ending.load(Ordering::SeqCst) {
                        if self.killing.load(Ordering::SeqCst) {
                            link.kill();
                        } else {
                            link.send(&Frame::Stop);
                        }
                    }
                    if conclib_core::metrics::is_enabled() {
                        metrics::counter!("conclib_process_restarts_total", "actor" => self.spec.kind)
                            .increment(1);
                    }
                    if let (Some(supervisor), Some(id)) = (&self.spec.supervisor, self.id) {
                        supervisor.send_event(SupervisionEvent::ChildRestarted {
                            id,
                            urn: None,
                            panic: death.clone(),
                        });
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(actor = self.spec.kind, error = %e, "could not restart a process actor")
                }
            }
        }
        let reason = if self.ending.load(Ordering::Acquire) {
            if exit.code == Some(0) {
                StopReason::Normal
            } else {
                StopReason::Killed
            }
        } else if self.spec.restart.is_some() {
            StopReason::RestartLimit(death)
        } else if let Some(said) = said {
            said
        } else if exit.code == Some(0) {
            StopReason::Normal
        } else {
            StopReason::Failed(death)
        };
        let _ = self.end_reason.set(reason);
        // Stored even with no one waiting yet (`send` would drop it then).
        self.final_exit.send_replace(Some(exit));
    }
}
