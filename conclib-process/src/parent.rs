//! The parent's side of a process actor: its process started ([`launch`]) and restarted
//! ([`Inner`]), from its [`Spec`]. Built by [`crate::builder`]; talked to
//! through [`ProcessRef`](crate::ProcessRef).

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_core::{ExternalProbe, ExternalReport, StopReason, SupervisionEvent};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::{ProcessExit, ProcessSpawnError};
use crate::link::{Link, LinkOwner};
use crate::lock;
use crate::spec::{ChildOutput, Spec};
use crate::wire::{self, FD_VAR, Frame, THREADS_VAR};

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
        owner,
        spec.system.clone(),
        spec.stats.clone(),
        !spec.resume,
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
            if let Some(every) = spec.heartbeat {
                link.keep_alive(every, spec.kind);
            }
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
            asks_skipped: stats.skipped.load(Ordering::Relaxed),
            restarts: inner.restarted.load(Ordering::Relaxed),
            last_error: lock(&stats.last_error).clone(),
        })
    }
}

impl LinkOwner for Inner {
    fn died(&self, link: &Arc<Link>, exit: ProcessExit) -> impl Future<Output = ()> + Send {
        Inner::died(self, link, exit)
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
        if !link.is_done() || !replaceable() {
            return link;
        }
        let mut relaunched = self.link.subscribe();
        let mut ended = self.final_exit.subscribe();
        let _ = tokio::time::timeout(wait, async {
            while self.link().is_done() && replaceable() {
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
                limit.admit(&mut lock(&self.restarts), std::time::Instant::now())
            });
        if conclib_core::metrics::is_enabled() {
            // Its actor panicked (it exits 0 then): a crash, not a clean exit.
            let panicked = matches!(&*lock(&dead.ended), Some(StopReason::Panicked(_)));
            let reason = match (exit.code, exit.signal) {
                _ if panicked => "panicked",
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
        if !self.ending.load(Ordering::Acquire)
            && matches!(
                reason,
                StopReason::RestartLimit(_) | StopReason::Failed(_) | StopReason::Panicked(_)
            )
        {
            // A crash (a broken link included: it was killed) that ends the actor for good.
            tracing::error!(actor = self.spec.kind, %exit, %reason, "process actor died; it will not be restarted");
        }
        let _ = self.end_reason.set(reason);
        // Stored even with no one waiting yet (`send` would drop it then).
        self.final_exit.send_replace(Some(exit));
    }
}
