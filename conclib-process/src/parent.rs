//! The parent's side: starting a process actor, and the ref that talks to it.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_codec::{Bincode, decode_value, encode_value};
use conclib_core::{
    Actor, ActorSystem, DynActorRef, ExternalProbe, ExternalReport, Handler, Priority, RemoteReply,
    RestartLimit, StopReason, SupervisionEvent,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::child::FD_VAR;
use crate::error::{ProcessError, ProcessExit, SpawnError};
use crate::link::{Link, ProcessStats, lock};
use crate::wire::{Frame, status};

/// Starts building a process actor: `actor` is sent (serialized) to a new process of this
/// executable, which runs it. The executable's `main` must call [`init`](crate::init) first
/// with a [`Registry`](crate::Registry) that lists `A`.
pub fn build<A: Actor + Serialize>(actor: A) -> ProcessBuilder<A> {
    ProcessBuilder {
        actor,
        system: None,
        supervisor: None,
        restart: None,
        memory_limit: None,
        heartbeat: Some(Duration::from_secs(2)),
        start_timeout: Duration::from_secs(10),
        ask_timeout: Duration::from_secs(5),
        output: ChildOutput::Tracing,
    }
}

/// Builds a process actor; from [`build`]. Finish with `.spawn().await`.
#[must_use = "a builder does nothing until `.spawn().await`"]
pub struct ProcessBuilder<A> {
    actor: A,
    system: Option<ActorSystem>,
    supervisor: Option<DynActorRef>,
    restart: Option<RestartLimit>,
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
    /// Default 2 s. (The heartbeat is answered by the child's I/O task, not by the actor: a
    /// busy handler does not miss it; a process that stops running does.)
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

    /// The parent's actor system, whose actors the process actor may ask and tell by URN
    /// ([`parent`](crate::parent) in the child), and whose
    /// [`snapshot`](conclib_core::ActorSystem::snapshot) lists it with its process id.
    /// Without it, such asks fail `UnknownUrn`.
    pub fn system(mut self, system: &ActorSystem) -> Self {
        self.system = Some(system.clone());
        self
    }

    /// Makes the process actor a child of the actor whose context this is: it is listed in
    /// that actor's system (as with [`system`](Self::system)), and its supervisor's
    /// [`Actor::on_event`] hears of it as of a local child:
    /// [`SupervisionEvent::ChildRestarted`](conclib_core::SupervisionEvent::ChildRestarted)
    /// when its process died and was replaced (the "panic" is the exit), and
    /// [`SupervisionEvent::ChildStopped`](conclib_core::SupervisionEvent::ChildStopped) when
    /// it ended for good: `Normal` (exit code 0), `Killed` (by [`ProcessRef::kill`]),
    /// `RestartLimit` (it died more often than [`restart`](Self::restart) allows: the
    /// default `on_event` escalates it, as for a local child) or `Failed` (it died without
    /// a restart policy).
    pub fn child_of<P: Actor>(mut self, ctx: &conclib_core::Context<P>) -> Self {
        self.system = Some(ctx.system().clone());
        self.supervisor = Some(ctx.myself().to_dyn());
        self
    }

    /// Restarts the process when it dies (a crash, a kill from outside, a missed heartbeat,
    /// an exit it did not ask for): a fresh process with the actor's initial state, at most
    /// as often as `limit` allows; past it the process stays dead. The asks pending at the
    /// death fail with [`ProcessError::Exited`] all the same. [`ProcessRef::kill`] and
    /// [`ProcessRef::stop`] end it for good.
    pub fn restart(mut self, limit: RestartLimit) -> Self {
        self.restart = Some(limit);
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
    /// [`SpawnError`]: the state cannot be encoded, the process cannot be started, or it
    /// exited (or did not answer) within the start timeout, with its exit status.
    pub async fn spawn(self) -> Result<ProcessRef<A>, SpawnError> {
        let state =
            encode_value(&Bincode, &self.actor).map_err(|e| SpawnError::Codec(e.to_string()))?;
        let spec = Spec {
            kind: std::any::type_name::<A>(),
            state,
            heartbeat: self.heartbeat,
            memory_limit: self.memory_limit,
            start_timeout: self.start_timeout,
            restart: self.restart,
            system: self.system,
            output: self.output,
            stats: Arc::default(),
            supervisor: self.supervisor,
        };
        let (final_exit, _) = watch::channel(None);
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            link: std::sync::RwLock::new(None),
            spec,
            restarts: Mutex::new(std::collections::VecDeque::new()),
            restarted: AtomicU64::new(0),
            ending: std::sync::atomic::AtomicBool::new(false),
            final_exit,
            me: weak.clone(),
            id: std::sync::OnceLock::new(),
            probe: Arc::new(probe(weak.clone())),
        });
        let link = launch(&inner.spec, Arc::downgrade(&inner)).await?;
        *inner.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
        if let Some(system) = &inner.spec.system {
            let probe: std::sync::Weak<ExternalProbe> = Arc::downgrade(&inner.probe) as _;
            let _ = inner.id.set(system.list_external(probe));
        }
        Ok(ProcessRef {
            inner,
            ask_timeout: self.ask_timeout,
            _actor: PhantomData,
        })
    }
}

/// What it takes to start (and restart) one process actor.
struct Spec {
    kind: &'static str,
    state: Vec<u8>,
    heartbeat: Option<Duration>,
    memory_limit: Option<u64>,
    start_timeout: Duration,
    restart: Option<RestartLimit>,
    system: Option<ActorSystem>,
    output: ChildOutput,
    /// Counted across restarts, for the system's snapshot.
    stats: Arc<ProcessStats>,
    /// Told of restarts and of the end ([`ProcessBuilder::child_of`]).
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
async fn launch(spec: &Spec, owner: std::sync::Weak<Inner>) -> Result<Arc<Link>, SpawnError> {
    // Two socket pairs: requests and answers, in order; and the control lane, where a
    // heartbeat never waits behind queued requests.
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().map_err(SpawnError::Io)?;
    let (parent_control, child_control) =
        std::os::unix::net::UnixStream::pair().map_err(SpawnError::Io)?;
    for fd in [child_end.as_raw_fd(), child_control.as_raw_fd()] {
        // The child's ends must survive exec: clear their close-on-exec flag.
        // SAFETY: fcntl on descriptors we own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(SpawnError::Io(std::io::Error::last_os_error()));
            }
        }
    }
    let exe = std::env::current_exe().map_err(SpawnError::Io)?;
    let mut command = std::process::Command::new(exe);
    command.env(
        FD_VAR,
        format!("{},{}", child_end.as_raw_fd(), child_control.as_raw_fd()),
    );
    conclib_core::process::bind_to_parent(&mut command, false);
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
    let child = conclib_core::process::spawn_bound(
        move || command.spawn(),
        |mut orphan| {
            let _ = orphan.kill();
            let _ = orphan.wait();
        },
    )
    .await
    .map_err(SpawnError::Io)?;
    let mut child = child;
    if let Some(out) = child.stdout.take() {
        forward_lines(out, spec.kind, child.id(), false);
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, spec.kind, child.id(), true);
    }
    drop(child_end);
    drop(child_control);
    let open = |end: std::os::unix::net::UnixStream| {
        end.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(end)
    };
    let stream = open(parent_end).map_err(SpawnError::Io)?;
    let control = open(parent_control).map_err(SpawnError::Io)?;
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
    link.send(&Frame::Init {
        kind: spec.kind,
        state: &spec.state,
    });
    // Started once it answers.
    let first = link.ping();
    let sent = std::time::Instant::now();
    match tokio::time::timeout(spec.start_timeout, first).await {
        Ok(Ok(())) => {
            if conclib_core::metrics::is_enabled() {
                metrics::histogram!("conclib_process_link_round_trip_seconds", "actor" => spec.kind)
                    .record(sent.elapsed().as_secs_f64());
            }
        }
        Ok(Err(exit)) => return Err(SpawnError::Exited(exit)),
        Err(_) => {
            link.kill();
            return Err(SpawnError::NoAnswer(spec.start_timeout));
        }
    }
    Ok(link)
}

/// The process actor behind every clone of one [`ProcessRef`]: its current process, and
/// what restarting it takes.
pub(crate) struct Inner {
    link: std::sync::RwLock<Option<Arc<Link>>>,
    spec: Spec,
    restarts: Mutex<std::collections::VecDeque<std::time::Instant>>,
    restarted: AtomicU64,
    /// Killed or stopped on purpose: no restart.
    ending: std::sync::atomic::AtomicBool,
    /// Set once the process ended for good.
    final_exit: watch::Sender<Option<ProcessExit>>,
    me: std::sync::Weak<Inner>,
    /// Its id in [`ProcessBuilder::system`]'s system, once listed there.
    id: std::sync::OnceLock<conclib_core::ActorId>,
    /// What the snapshot of [`ProcessBuilder::system`]'s system shows of this actor.
    probe: Arc<dyn Fn() -> Option<ExternalReport> + Send + Sync>,
}

/// Reports a process actor to its system's snapshot, until it ends for good.
fn probe(inner: std::sync::Weak<Inner>) -> impl Fn() -> Option<ExternalReport> + Send + Sync {
    move || {
        let inner = inner.upgrade()?;
        if inner.final_exit.borrow().is_some() {
            return None;
        }
        let link = inner
            .link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let stats = &inner.spec.stats;
        Some(ExternalReport {
            type_name: inner.spec.kind,
            urn: None,
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
    fn link(&self) -> Arc<Link> {
        self.link
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("set at spawn")
    }

    /// The current process died: restart it if the policy allows, else end for good.
    pub(crate) async fn died(&self, exit: ProcessExit) {
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
        *lock(&self.spec.stats.last_error) = Some(format!("the process died: {exit}"));
        if allowed {
            tracing::warn!(actor = self.spec.kind, %exit, "process actor died; restarting it");
            match launch(&self.spec, self.me.clone()).await {
                Ok(link) => {
                    *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link);
                    self.restarted.fetch_add(1, Ordering::Relaxed);
                    if conclib_core::metrics::is_enabled() {
                        metrics::counter!("conclib_process_restarts_total", "actor" => self.spec.kind)
                            .increment(1);
                    }
                    self.tell_supervisor(|id| SupervisionEvent::ChildRestarted {
                        id,
                        urn: None,
                        panic: format!("the process died: {exit}"),
                    });
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
            StopReason::RestartLimit(format!("the process died: {exit}"))
        } else if exit.code == Some(0) {
            StopReason::Normal
        } else {
            StopReason::Failed(format!("the process died: {exit}"))
        };
        self.tell_supervisor(|id| SupervisionEvent::ChildStopped {
            id,
            urn: None,
            reason,
        });
        // Stored even with no one waiting yet (`send` would drop it then).
        self.final_exit.send_replace(Some(exit));
    }

    fn tell_supervisor(&self, event: impl FnOnce(conclib_core::ActorId) -> SupervisionEvent) {
        if let (Some(supervisor), Some(id)) = (&self.spec.supervisor, self.id.get()) {
            supervisor.send_event(event(*id));
        }
    }
}

/// A ref to an actor of type `A` running in a process of its own; from [`build`].
/// Cloning is cheap; when the last clone is dropped the process is stopped gracefully.
///
/// It asks and tells like an [`ActorRef`](conclib_core::ActorRef): typed, checked at compile
/// time against `A`'s handlers, with timeouts and priorities. Messages cross the process
/// boundary: they must be exposed by `A` ([`Actor::REMOTE`], `#[handle(remote)]`), serde
/// types, declared with `#[message]` (or [`MessageDecl`](conclib_core::MessageDecl)).
pub struct ProcessRef<A> {
    inner: Arc<Inner>,
    ask_timeout: Duration,
    _actor: PhantomData<fn() -> A>,
}

impl<A> Clone for ProcessRef<A> {
    fn clone(&self) -> Self {
        ProcessRef {
            inner: self.inner.clone(),
            ask_timeout: self.ask_timeout,
            _actor: PhantomData,
        }
    }
}

impl<A> fmt::Debug for ProcessRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRef")
            .field("actor", &std::any::type_name::<A>())
            .field("pid", &self.inner.link().pid)
            .finish()
    }
}

impl<A: Actor> ProcessRef<A> {
    /// The id the actor is listed under in its system's snapshot (and named by in its
    /// supervisor's events), when built with [`ProcessBuilder::system`] or
    /// [`ProcessBuilder::child_of`]; it stays the same across restarts.
    #[must_use]
    pub fn id(&self) -> Option<conclib_core::ActorId> {
        self.inner.id.get().copied()
    }

    /// The id of the actor's current process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.inner.link().pid
    }

    /// Whether the actor's process runs (between a death and its restart: no).
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.inner.link().exit.borrow().is_none()
    }

    /// How many times the process was restarted.
    #[must_use]
    pub fn restarts(&self) -> u64 {
        self.inner.restarted.load(Ordering::Relaxed)
    }

    /// Asks the actor; `.await` it, after `.timeout(..)` or `.priority(..)` if needed.
    pub fn ask<M>(&self, msg: M) -> ProcessAsk<'_, A, M>
    where
        A: Handler<M>,
        M: RemoteReply + Serialize,
        M::Response: DeserializeOwned,
    {
        ProcessAsk {
            target: self,
            msg,
            timeout: self.ask_timeout,
            priority: Priority::Normal,
        }
    }

    /// Tells the actor: returns once the message is on its way (its process may still die
    /// before handling it).
    ///
    /// # Errors
    /// [`ProcessError::Exited`] if the process has exited; [`ProcessError::Codec`].
    pub fn tell<M>(&self, msg: M) -> Result<(), ProcessError>
    where
        A: Handler<M>,
        M: conclib_core::Message + Serialize,
    {
        self.tell_with(msg, Priority::Normal)
    }

    /// [`tell`](Self::tell) in the given lane.
    ///
    /// # Errors
    /// As [`tell`](Self::tell).
    pub fn tell_with<M>(&self, msg: M, priority: Priority) -> Result<(), ProcessError>
    where
        A: Handler<M>,
        M: conclib_core::Message + Serialize,
    {
        let link = self.inner.link();
        if let Some(exit) = link.exit.borrow().clone() {
            return Err(ProcessError::Exited(exit));
        }
        let body = encode_value(&Bincode, &msg).map_err(|e| ProcessError::Codec(e.to_string()))?;
        link.send(&Frame::Request {
            id: 0,
            high: priority == Priority::High,
            message: M::name(),
            body: &body,
        });
        Ok(())
    }

    /// Stops the actor gracefully (what it has queued is handled), then its process exits;
    /// it is not restarted.
    pub fn stop(&self) {
        self.inner.ending.store(true, Ordering::Release);
        self.inner.link().send(&Frame::Stop);
    }

    /// Kills the process at once (`SIGKILL`): pending asks fail with
    /// [`ProcessError::Exited`].
    pub fn kill(&self) {
        self.inner.ending.store(true, Ordering::Release);
        self.inner.link().kill();
    }

    /// Waits until the actor's process has ended for good (no restart follows), and says how.
    pub async fn wait_for_stop(&self) -> ProcessExit {
        let mut exit = self.inner.final_exit.subscribe();
        loop {
            if let Some(e) = exit.borrow_and_update().clone() {
                return e;
            }
            if exit.changed().await.is_err() {
                return ProcessExit::unknown();
            }
        }
    }
}

/// An ask to a process actor; `.await` it. From [`ProcessRef::ask`].
#[must_use = "an ask does nothing until awaited"]
pub struct ProcessAsk<'a, A, M> {
    target: &'a ProcessRef<A>,
    msg: M,
    timeout: Duration,
    priority: Priority,
}

impl<A: Actor, M> ProcessAsk<'_, A, M> {
    /// Fails with [`ProcessError::Timeout`] if no answer arrives within `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends in the actor's given lane.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sends the message as a tell instead (in the lane chosen with
    /// [`priority`](Self::priority)); see [`ProcessRef::tell`]. `.await` it. The
    /// method-call API reads `worker.reset().tell().await?`.
    pub fn tell(self) -> std::future::Ready<Result<(), ProcessError>>
    where
        A: Handler<M>,
        M: conclib_core::Message + Serialize,
    {
        std::future::ready(self.target.tell_with(self.msg, self.priority))
    }
}

impl<A: Actor> conclib_core::Address for ProcessRef<A> {
    type Actor = A;
}

impl<A, M> conclib_core::Requester<M> for ProcessRef<A>
where
    A: Handler<M>,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Request<'a> = ProcessAsk<'a, A, M>;

    fn request(&self, message: M) -> ProcessAsk<'_, A, M> {
        self.ask(message)
    }
}

impl<'a, A, M> IntoFuture for ProcessAsk<'a, A, M>
where
    A: Actor,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Output = Result<M::Response, ProcessError<M::Error>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let ProcessAsk {
                target,
                msg,
                timeout,
                priority,
            } = self;
            let body =
                encode_value(&Bincode, &msg).map_err(|e| ProcessError::Codec(e.to_string()))?;
            drop(msg);
            let (status, payload) = tokio::time::timeout(
                timeout,
                target.inner.link().request(M::name(), body, priority),
            )
            .await
            .map_err(|_| ProcessError::Timeout(timeout))?
            .map_err(ProcessError::Exited)?;
            decode_answer::<M>("", status, &payload)
        })
    }
}

/// Decodes an answer's status and payload into an ask's result (`urn`: whom it was for).
pub(crate) fn decode_answer<M>(
    urn: &str,
    status: u8,
    payload: &[u8],
) -> Result<M::Response, ProcessError<M::Error>>
where
    M: RemoteReply,
    M::Response: DeserializeOwned,
{
    let text = || String::from_utf8_lossy(payload).into_owned();
    match status {
        status::OK => {
            decode_value(&Bincode, payload).map_err(|e| ProcessError::Codec(e.to_string()))
        }
        status::HANDLER_ERROR => match decode_value::<M::WireError>(&Bincode, payload) {
            Ok(e) => Err(ProcessError::Handler(M::handler_error(e))),
            Err(e) => Err(ProcessError::Codec(e.to_string())),
        },
        status::UNKNOWN_URN => Err(ProcessError::UnknownUrn(urn.to_owned())),
        status::PANICKED => Err(ProcessError::Panicked(text())),
        status::UNKNOWN_MESSAGE => Err(ProcessError::UnknownMessage(M::name().to_owned())),
        status::MAILBOX_FULL => Err(ProcessError::MailboxFull),
        status::NO_RESPONSE => Err(ProcessError::NoResponse),
        status::CODEC_ERROR => Err(ProcessError::Codec(text())),
        _ => Err(ProcessError::ActorStopped),
    }
}
