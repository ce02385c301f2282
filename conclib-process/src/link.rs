//! The link to one child process: its request and control sockets, the writer and reader
//! tasks, the reaper, the heartbeat, and the requests waiting for answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_codec::Bincode;
use conclib_core::trace::TraceContext;
use conclib_core::{ActorSystem, Priority, StopReason};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use crate::deadlines::{Deadlines, Swept};
use crate::error::ProcessExit;
use crate::outbox::{Outbox, write_frames};
use crate::socket::ReadHalf;
use crate::spec::ProcessStats;
use crate::wire::{self, Frame, status};
use crate::{ById, lock};

/// What owns a link and is told when its process died: the process actor
/// ([`crate::parent::Inner`]), which restarts it or ends. A trait so that the link does not
/// import the parent side that holds it.
pub(crate) trait LinkOwner: Send + Sync + 'static {
    /// The process behind `link` died with `exit` (after what it wrote was read).
    fn died(&self, link: &Arc<Link>, exit: ProcessExit) -> impl Future<Output = ()> + Send;
}

/// How long the reaper waits for the frames a dead process wrote before it exited.
const READ_REST: Duration = Duration::from_secs(1);

/// What answers a request: its status and payload, or the process's end.
pub(crate) type Answer = Result<(u8, Vec<u8>), ProcessExit>;

/// The link to one child: a writer task, a reader task, the reaper, the heartbeat.
pub(crate) struct Link {
    pub(crate) out: Arc<Outbox>,
    /// The control lane (heartbeats).
    pub(crate) control: Arc<Outbox>,
    pub(crate) pending: Mutex<ById<Waiter>>,
    /// The askers' deadlines, kept by one sweeper task.
    pub(crate) deadlines: Arc<Deadlines>,
    pub(crate) pings: Mutex<ById<oneshot::Sender<Answer>>>,
    pub(crate) next: AtomicU64,
    pub(crate) pid: u32,
    pub(crate) exit: watch::Receiver<Option<ProcessExit>>,
    pub(crate) stats: Arc<ProcessStats>,
    /// Why the child's actor stopped on its own, if it said so before exiting.
    pub(crate) ended: Mutex<Option<StopReason>>,
    /// Whether a panic ends the child's actor (no `Resume` policy): then a `Panicked` answer
    /// means the process is on its way out.
    panic_ends: bool,
    /// Set when the child's actor is known to have stopped (a `Panicked` answer that ends
    /// it, or its `Ended` frame) before its exit is seen: set before that answer reaches
    /// its asker, so what the asker sends next waits for a restart instead of reaching the
    /// dying process.
    dying: std::sync::atomic::AtomicBool,
}

impl Link {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start<O: LinkOwner>(
        (reader, writer): (ReadHalf, crate::socket::WriteHalf),
        (control_reader, control_writer): (ReadHalf, crate::socket::WriteHalf),
        child: std::process::Child,
        owner: std::sync::Weak<O>,
        system: Option<ActorSystem>,
        stats: Arc<ProcessStats>,
        panic_ends: bool,
    ) -> Arc<Link> {
        let out = Arc::new(Outbox::new(&writer));
        let control_out = Arc::new(Outbox::default());
        let (exit_tx, exit) = watch::channel(None);
        let link = Arc::new(Link {
            out: out.clone(),
            control: control_out.clone(),
            pending: Mutex::new(ById::default()),
            deadlines: Arc::new(Deadlines::new()),
            pings: Mutex::new(ById::default()),
            next: AtomicU64::new(1),
            pid: child.id(),
            exit,
            stats,
            ended: Mutex::new(None),
            panic_ends,
            dying: std::sync::atomic::AtomicBool::new(false),
        });
        // A link that cannot be written is broken, as one that cannot be read: the process
        // is treated as dead (killed; its death fails what waits on it).
        for (writer, outbox) in [(writer, out), (control_writer, control_out)] {
            let link = Arc::downgrade(&link);
            tokio::spawn(async move {
                // A peer gone (the process exiting or dead) is the reaper's to report.
                if let Err(e) = write_frames(writer, outbox).await
                    && !matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    )
                    && let Some(link) = link.upgrade()
                {
                    tracing::warn!(pid = link.pid, error = %e, "process actor's link broken: killed");
                    link.kill();
                }
            });
        }
        tokio::spawn(crate::deadlines::sweep(Arc::downgrade(&link)));
        let reading = tokio::spawn(read_frames(reader, Arc::downgrade(&link), system));
        tokio::spawn(read_frames(control_reader, Arc::downgrade(&link), None));
        // Reaper: the exit status ends every pending request at once — after what the
        // process wrote before exiting was read (its last answers, why its actor ended).
        let weak = Arc::downgrade(&link);
        let mut child = child;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let exit = match child.wait() {
                Ok(status) => crate::error::exit_from_status(status),
                Err(_) => ProcessExit::default(),
            };
            tracing::debug!(pid = child.id(), %exit, "process actor exited");
            exit_tx.send_replace(Some(exit.clone()));
            runtime.spawn(async move {
                // The socket ends with the process (unless a process it started holds its
                // end: then the wait is bounded).
                let _ = tokio::time::timeout(READ_REST, reading).await;
                let Some(link) = weak.upgrade() else { return };
                // A process that exited after its actor panicked says so, with the panic.
                let mut exit = exit;
                if let Some(StopReason::Panicked(panic)) = &*lock(&link.ended) {
                    exit.panic = Some(panic.clone());
                    exit_tx.send_replace(Some(exit.clone()));
                }
                link.fail_all(&exit);
                if let Some(owner) = owner.upgrade() {
                    owner.died(&link, exit).await;
                }
            });
        });
        link
    }

    /// Sends a heartbeat every `every` from now on and kills the process when one is not
    /// answered within `every`. Started once the child said its actor runs: until then the
    /// start timeout decides (a child slow to reach `init` is not killed by its heartbeat).
    pub(crate) fn keep_alive(self: &Arc<Self>, every: Duration, kind: &'static str) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(link) = weak.upgrade() else { return };
                if link.exit.borrow().is_some() {
                    return;
                }
                let ping = link.ping();
                drop(link);
                let sent = std::time::Instant::now();
                let answered = matches!(tokio::time::timeout(every, ping).await, Ok(Ok(())));
                if answered && conclib_core::metrics::is_enabled() {
                    metrics::histogram!("conclib_process_link_round_trip_seconds", "actor" => kind)
                        .record(sent.elapsed().as_secs_f64());
                }
                if !answered {
                    if let Some(link) = weak.upgrade()
                        && link.exit.borrow().is_none()
                    {
                        tracing::warn!(
                            pid = link.pid,
                            "process actor missed its heartbeat: killed"
                        );
                        link.kill();
                    }
                    return;
                }
            }
        });
    }

    /// Whether the process has exited, or its actor is known to have stopped (it is
    /// exiting): what is sent on this link now fails with its exit.
    pub(crate) fn is_done(&self) -> bool {
        self.dying.load(Ordering::Acquire) || self.exit.borrow().is_some()
    }

    pub(crate) fn send(&self, frame: &Frame<'_>) {
        self.out.push(frame);
    }

    /// Sends a request now (in order with what was sent before it) and returns its answer
    /// (or the process's end), to await: `None` once `timeout` passed first (the request is
    /// cancelled in the child then; `None` as timeout: no deadline). Dropping the answer
    /// before it came cancels the request in the child too.
    pub(crate) fn request(
        self: Arc<Self>,
        message: &'static str,
        body: &[u8],
        priority: Priority,
        trace: Option<TraceContext>,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Option<Answer>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let deadline = timeout.map_or(u64::MAX, |t| self.deadlines.after(t));
        let waiter = Waiter::Asker { tx, deadline };
        let (id, sent) = self.register(waiter, message, body, priority, trace);
        let exited = sent.err().map(|(_, exit)| exit);
        let guard = Forget {
            link: self,
            id,
            answered: exited.is_some(),
        };
        async move {
            // The whole guard, not just the field written below: it must live as long as
            // the wait.
            let mut guard = guard;
            if let Some(exit) = exited {
                return Some(Err(exit));
            }
            let answer = rx
                .await
                .unwrap_or_else(|_| Some(Err(ProcessExit::default())));
            // Whoever answered, timed it out (and cancelled it) or dropped the sender took it
            // out of the map.
            guard.answered = true;
            answer
        }
    }

    /// Resolves when the child says its actor runs ([`wire::STARTED`]), or with its exit.
    /// Call before sending `Init`.
    pub(crate) fn started(&self) -> impl Future<Output = Result<(), ProcessExit>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        lock(&self.pings).insert(wire::STARTED, tx);
        async move {
            match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(exit)) => Err(exit),
                Err(_) => Err(ProcessExit::default()),
            }
        }
    }

    /// A heartbeat: resolves when the child answers, or with its exit.
    pub(crate) fn ping(&self) -> impl Future<Output = Result<(), ProcessExit>> + Send + 'static {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pings).insert(n, tx);
        let exited = self.exit.borrow().clone();
        if exited.is_none() {
            self.control.push(&Frame::Ping(n));
        }
        async move {
            if let Some(exit) = exited {
                return Err(exit);
            }
            match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(exit)) => Err(exit),
                Err(_) => Err(ProcessExit::default()),
            }
        }
    }

    pub(crate) fn kill(&self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid)
            && self.exit.borrow().is_none()
        {
            // SAFETY: signalling our own child, not reaped yet (the reaper sets `exit`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    pub(crate) fn fail_all(&self, exit: &ProcessExit) {
        let pending: Vec<_> = lock(&self.pending).drain().map(|(_, w)| w).collect();
        let pings: Vec<_> = lock(&self.pings).drain().map(|(_, tx)| tx).collect();
        for waiter in pending {
            waiter.answer(Err(exit.clone()));
        }
        for tx in pings {
            let _ = tx.send(Err(exit.clone()));
        }
    }
}

/// Hands the answers and heartbeats it reads to their waiters.
async fn read_frames(reader: ReadHalf, link: std::sync::Weak<Link>, system: Option<ActorSystem>) {
    let mut frames = wire::FrameReader::new(reader);
    loop {
        let frame = match frames.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                // A broken link (a corrupt or oversized frame): nothing more can be read,
                // so the process is treated as dead.
                if let Some(link) = link.upgrade() {
                    tracing::warn!(pid = link.pid, error = %e, "process actor's link broken: killed");
                    link.kill();
                }
                return;
            }
        };
        let Some(link) = link.upgrade() else { return };
        link.out.heard();
        match wire::decode(frame) {
            Some(Frame::Reply {
                id,
                status,
                payload,
            }) => {
                link.stats.answered(status, payload);
                if status == status::PANICKED && link.panic_ends {
                    link.dying.store(true, Ordering::Release);
                }
                let waiter = lock(&link.pending).remove(&id);
                if let Some(waiter) = waiter {
                    waiter.answer(Ok((status, payload.to_vec())));
                }
            }
            Some(Frame::Skipped(_)) => {
                link.stats.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Some(Frame::Pong(n)) => {
                if let Some(tx) = lock(&link.pings).remove(&n) {
                    let _ = tx.send(Ok((status::OK, Vec::new())));
                }
            }
            Some(Frame::Ask {
                id,
                trace,
                urn,
                message,
                body,
            }) => {
                let asked = Asked {
                    id,
                    trace,
                    urn,
                    message,
                    body,
                };
                answer_child(&link, system.as_ref(), asked).await;
            }
            Some(Frame::Ended { panicked, reason }) => {
                link.dying.store(true, Ordering::Release);
                *lock(&link.ended) = Some(if panicked {
                    StopReason::Panicked(reason.to_owned())
                } else if reason.is_empty() {
                    StopReason::Normal
                } else {
                    StopReason::Failed(reason.to_owned())
                });
            }
            // Bytes that are no frame, or a frame out of place: something other than
            // the link wrote to the socket (a stray write in the child), and what follows
            // cannot be trusted. The link is broken, as for a frame that cannot be read.
            other => {
                let what = if other.is_some() {
                    "a frame out of place"
                } else {
                    "bytes that are no frame"
                };
                tracing::warn!(pid = link.pid, %what, "process actor's link broken: killed");
                link.kill();
                return;
            }
        }
    }
}

/// An ask (or tell, id 0) of the child to an actor of the parent's system: an `Ask` frame.
struct Asked<'a> {
    id: u64,
    trace: Option<TraceContext>,
    urn: &'a str,
    message: &'a str,
    body: &'a [u8],
}

/// The child asks (or tells, id 0) an actor of the parent's system by URN: decoded here,
/// queued in arrival order (so one child's messages keep their order), answered on the link.
async fn answer_child(link: &Arc<Link>, system: Option<&ActorSystem>, asked: Asked<'_>) {
    let Asked {
        id,
        trace,
        urn,
        message,
        body,
    } = asked;
    let answer = |status: u8, payload: &[u8]| {
        link.send(&Frame::Answer {
            id,
            status,
            payload,
        });
    };
    let Some(target) = system.and_then(|s| s.lookup(urn).ok()) else {
        if id != 0 {
            answer(status::UNKNOWN_URN, urn.as_bytes());
        }
        return;
    };
    let Some(rm) = target.remote_message(message) else {
        if id != 0 {
            answer(status::UNKNOWN_MESSAGE, message.as_bytes());
        }
        return;
    };
    let mut decoded = None;
    if let Err(e) = conclib_codec::Codec::decode_with(&Bincode, body, &mut |de| {
        decoded = Some(rm.decode(de)?);
        Ok(())
    }) {
        if id != 0 {
            answer(status::CODEC_ERROR, e.to_string().as_bytes());
        }
        return;
    }
    let Some(msg) = decoded else { return };
    let request = target.erased(rm.name(), rm.type_id(), msg).trace(trace);
    if id == 0 {
        if let Err(e) = request.send().await {
            tracing::warn!(%urn, error = %e, "a process actor's tell was refused");
        }
        return;
    }
    let queued = request.queue().await;
    let link = Arc::downgrade(link);
    tokio::spawn(async move {
        let result = match queued {
            Ok(queued) => queued.answer().await,
            Err(e) => Err(e),
        };
        let (status, payload) = crate::answer::reply_for(rm, result);
        if let Some(link) = link.upgrade() {
            link.send(&Frame::Answer {
                id,
                status,
                payload: &payload,
            });
        }
    });
}

impl Drop for Link {
    fn drop(&mut self) {
        // The last ref is gone: stop the actor gracefully; the child exits.
        self.out.push(&Frame::Stop);
        self.out.close();
        self.control.close();
    }
}

/// What waits for a request's answer.
pub(crate) enum Waiter {
    /// An asker's future, sent `None` when its deadline (as [`Deadlines`] counts;
    /// `u64::MAX`: none) passed first.
    Asker {
        tx: oneshot::Sender<Option<Answer>>,
        deadline: u64,
    },
    /// A relayed ask, answered from the reader task.
    Relayed(Box<dyn FnOnce(Answer) + Send>),
}

impl Waiter {
    fn answer(self, answer: Answer) {
        match self {
            Waiter::Asker { tx, .. } => {
                let _ = tx.send(Some(answer));
            }
            Waiter::Relayed(answered) => answered(answer),
        }
    }
}

impl Link {
    /// Sends a request now (in order with what was sent before it); `answered` is called
    /// with its answer (or the process's end) from the link's reader. Returns its id, for
    /// [`cancel`](Self::cancel).
    pub(crate) fn relay(
        &self,
        message: &'static str,
        body: &[u8],
        priority: Priority,
        trace: Option<TraceContext>,
        answered: impl FnOnce(Answer) + Send + 'static,
    ) -> u64 {
        let waiter = Waiter::Relayed(Box::new(answered));
        let (id, sent) = self.register(waiter, message, body, priority, trace);
        if let Err((waiter, exit)) = sent {
            waiter.answer(Err(exit));
        }
        id
    }

    /// Registers `waiter` under a new id and sends the request; if the process has exited,
    /// takes the waiter back (unless `fail_all` answered it meanwhile) with the exit.
    fn register(
        &self,
        waiter: Waiter,
        message: &'static str,
        body: &[u8],
        priority: Priority,
        trace: Option<TraceContext>,
    ) -> (u64, Result<(), (Waiter, ProcessExit)>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = lock(&self.pending);
            if let Waiter::Asker { deadline, .. } = &waiter
                && *deadline != u64::MAX
            {
                self.deadlines.note(*deadline);
            }
            pending.insert(id, waiter);
        }
        // Checked after registering: an exit in between fails it through `fail_all`.
        let exited = self.exit.borrow().clone();
        let Some(exit) = exited else {
            self.send(&Frame::Request {
                id,
                high: priority == Priority::High,
                trace,
                message,
                body,
            });
            return (id, Ok(()));
        };
        match lock(&self.pending).remove(&id) {
            Some(waiter) => (id, Err((waiter, exit))),
            // Answered by `fail_all` already.
            None => (id, Ok(())),
        }
    }

    /// Fails the asks whose deadline is `now` or earlier (cancelled in the child, as given
    /// up), and sets the sweeper's next deadline: the earliest still pending.
    pub(crate) fn time_out(&self, now: u64) {
        let mut expired = Vec::new();
        {
            let mut pending = lock(&self.pending);
            let mut next = u64::MAX;
            for (&id, waiter) in pending.iter() {
                if let Waiter::Asker { deadline, .. } = waiter {
                    if *deadline <= now {
                        expired.push(id);
                    } else {
                        next = next.min(*deadline);
                    }
                }
            }
            for id in &expired {
                if let Some(Waiter::Asker { tx, .. }) = pending.remove(id) {
                    let _ = tx.send(None);
                }
            }
            self.deadlines.arm(next);
        }
        if self.exit.borrow().is_none() {
            for id in expired {
                self.send(&Frame::Cancel(id));
            }
        }
    }

    /// Gives up request `id` if it is still waiting: its answer is not delivered, and the
    /// child never starts it if it has not yet.
    pub(crate) fn cancel(&self, id: u64) {
        if lock(&self.pending).remove(&id).is_some() && self.exit.borrow().is_none() {
            self.send(&Frame::Cancel(id));
        }
    }
}

impl Swept for Link {
    fn deadlines(&self) -> &Arc<Deadlines> {
        &self.deadlines
    }

    fn exit(&self) -> &watch::Receiver<Option<ProcessExit>> {
        &self.exit
    }

    fn time_out(&self, now: u64) {
        Link::time_out(self, now);
    }
}

/// Takes an abandoned request out of the pending map.
struct Forget {
    link: Arc<Link>,
    id: u64,
    answered: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        // Still pending: the asker gave up (timeout, dropped future). Tell the child, so that
        // the request is never started if it is still queued there.
        if !self.answered {
            self.link.cancel(self.id);
        }
    }
}
