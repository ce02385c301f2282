//! The worker role: what the re-executed binary does when [`init`] finds it was started as
//! a process actor.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::FromRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use conclib_codec::{Bincode, Codec};
use conclib_core::trace::TraceContext;
use conclib_core::{
    Actor, ActorSystem, AskHandle, DynActorRef, ErasedRequest, ErasedResult, ExposedMessage,
    PanicPolicy, Priority, StopReason,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::answer::reply_for;
use crate::outbox::{Outbox, write_frames};
use crate::wire::{self, FD_VAR, Frame, THREADS_VAR, status};
use crate::{ById, lock};

type Start =
    fn(ActorSystem, Vec<u8>, bool) -> Pin<Box<dyn Future<Output = Result<DynActorRef, String>>>>;

/// The actor types this executable can run in a child process, by type name. Pass it to
/// [`init`], the first line of `main`.
///
/// ```
/// use conclib_core::Actor;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Worker { done: u64 }
/// impl Actor for Worker {}
///
/// let registry = conclib_process::Registry::new().actor::<Worker>();
/// ```
#[derive(Default)]
pub struct Registry {
    kinds: HashMap<&'static str, Start>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers actor type `A`: its initial state is sent to the child serialized.
    #[must_use]
    pub fn actor<A: Actor + Serialize + DeserializeOwned>(mut self) -> Self {
        self.kinds.insert(std::any::type_name::<A>(), start::<A>);
        self
    }
}

fn start<A: Actor + DeserializeOwned>(
    system: ActorSystem,
    state: Vec<u8>,
    resume: bool,
) -> Pin<Box<dyn Future<Output = Result<DynActorRef, String>>>> {
    Box::pin(async move {
        let actor: A = conclib_codec::decode_value(&Bincode, &state)
            .map_err(|e| format!("its state did not decode: {e}"))?;
        let policy = if resume {
            PanicPolicy::Resume
        } else {
            PanicPolicy::Stop
        };
        let actor = system
            .build(actor)
            .on_panic(policy)
            .spawn()
            .await
            .map_err(|e| e.to_string())?;
        Ok(actor.to_dyn())
    })
}

/// Whether this process was started as a process actor, i.e. whether [`init`] will run an
/// actor here and exit. For what `main` sets up before `init` for the child alone, such as
/// a `tracing` subscriber writing to stderr (which the parent turns into its own events).
///
/// ```no_run
/// // The first lines of `main`:
/// if conclib_process::is_process_actor() {
///     // e.g. tracing_subscriber::fmt().with_writer(std::io::stderr).init();
/// }
/// conclib_process::init(conclib_process::Registry::new());
/// ```
#[must_use]
pub fn is_process_actor() -> bool {
    std::env::var_os(FD_VAR).is_some()
}

/// Call first thing in `main`, before any runtime starts: in a process started as a process
/// actor it runs that actor until the parent stops it or goes away, then exits the process;
/// anywhere else it returns at once.
///
/// ```no_run
/// # use conclib_core::Actor;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Worker;
/// # impl Actor for Worker {}
/// fn main() {
///     conclib_process::init(conclib_process::Registry::new().actor::<Worker>());
///     // ... the program proper, which may spawn `Worker`s in processes of their own.
/// }
/// ```
pub fn init(registry: Registry) {
    let Some((data, control)) = std::env::var(FD_VAR).ok().and_then(|v| {
        let (data, control) = v.split_once(',')?;
        Some((data.parse::<i32>().ok()?, control.parse::<i32>().ok()?))
    }) else {
        return;
    };
    let threads = std::env::var(THREADS_VAR)
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1);
    // Children of this process must not take the markers for themselves.
    // SAFETY: no other thread runs yet: `init` is the first thing `main` does.
    unsafe {
        std::env::remove_var(FD_VAR);
        std::env::remove_var(THREADS_VAR);
    }
    // Heartbeats are answered on a thread of their own: a handler that keeps the runtime's
    // thread busy does not miss them; a process that stops running does.
    // SAFETY: the parent passed this descriptor, open, for us alone.
    let control = unsafe { std::os::unix::net::UnixStream::from_raw_fd(control) };
    let _ = std::thread::Builder::new()
        .name("conclib-heartbeat".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || answer_heartbeats(control));
    // One thread by default: the hops between the link's tasks and the actor stay on it
    // (a round trip costs a third of what it does across a pool of threads).
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = runtime.expect("a runtime for the process actor");
    let code = runtime.block_on(run(data, registry));
    std::process::exit(code);
}

/// Opens an inherited socket for the runtime.
fn socket(fd: i32) -> Option<(crate::socket::ReadHalf, crate::socket::WriteHalf)> {
    // SAFETY: the parent passed this descriptor, open, for us alone.
    let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    crate::socket::split(std).ok()
}

/// The control lane, with blocking I/O on a thread of its own: heartbeats are answered
/// here, never behind queued requests or a busy runtime. The parent closing it ends the
/// process.
fn answer_heartbeats(mut control: std::os::unix::net::UnixStream) {
    use std::io::{Read, Write};
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while control.read_exact(&mut len).is_ok() {
        let len = u32::from_be_bytes(len) as usize;
        if len > wire::MAX_FRAME {
            break;
        }
        buf.resize(len, 0);
        if control.read_exact(&mut buf).is_err() {
            break;
        }
        let Some(Frame::Ping(n)) = wire::decode(&buf) else {
            break;
        };
        out.clear();
        wire::encode(&Frame::Pong(n), &mut out);
        if control.write_all(&out).is_err() {
            break;
        }
    }
    std::process::exit(1);
}

async fn run(data: i32, registry: Registry) -> i32 {
    let Some((reader, writer)) = socket(data) else {
        return 2;
    };
    let mut frames = wire::FrameReader::new(reader);
    let init = match frames.next().await {
        Ok(Some(frame)) => wire::decode(frame),
        _ => None,
    };
    let Some(Frame::Init {
        kind,
        state,
        resume,
    }) = init
    else {
        eprintln!("conclib-process: no actor to run");
        return 2;
    };
    let kind = kind.to_owned();
    let state = state.to_vec();
    // One writer: the answers of all requests, written in batches (a push on an idle link
    // writes its frame itself: `outbox.rs`).
    let out = Arc::new(Outbox::new(&writer));
    let writer_task = tokio::spawn({
        let out = out.clone();
        async move {
            // Nothing can reach the parent any more: end, as when it is gone.
            if write_frames(writer, out).await.is_err() {
                std::process::exit(1);
            }
        }
    });
    let Some(start) = registry.kinds.get(kind.as_str()) else {
        let why = format!(
            "actor type {kind} is not in this executable's Registry: add `.actor::<{kind}>()` \
             to the Registry that `main` passes to `conclib::process::init`"
        );
        return not_started(&out, writer_task, &why, wire::EXIT_NOT_REGISTERED).await;
    };
    let system = ActorSystem::new(format!("process:{kind}"));
    let actor = match start(system.clone(), state, resume).await {
        Ok(actor) => actor,
        // The parent's error names the actor type: the reason is said once, without it.
        Err(why) => {
            return not_started(&out, writer_task, &why, wire::EXIT_START_FAILED).await;
        }
    };
    // The actor runs: now the parent's spawn succeeds.
    out.push(&Frame::Pong(wire::STARTED));
    crate::parent_link::connect(out.clone());
    let asks = Arc::new(Asks::default());
    // The actor stopping on its own (a panic, its own `stop`) ends the process, as a local
    // actor's end ends it: the parent hears why. A task of its own waits for that, so the
    // loop polls a oneshot at each frame (tens of instructions), not the actor's stop
    // notification (about 150: its waiters' lock, callgrind).
    let (stopped_tx, mut stopped) = tokio::sync::oneshot::channel();
    tokio::spawn({
        let actor = actor.clone();
        async move {
            let _ = stopped_tx.send(actor.wait_for_stop().await);
        }
    });
    loop {
        let read = tokio::select! {
            // The stop first: a flood of frames does not hold it up.
            biased;
            reason = &mut stopped => {
                return finish(reason.ok().as_ref(), &asks, &out, writer_task).await;
            }
            read = frames.next() => read,
        };
        if let Ok(Some(_)) = read {
            out.heard();
        }
        match read {
            Ok(Some(frame)) => match wire::decode(frame) {
                Some(Frame::Request {
                    id,
                    high,
                    trace,
                    message,
                    body,
                }) => {
                    let request = Request {
                        id,
                        high,
                        trace,
                        message,
                        body,
                    };
                    serve(&actor, &out, &asks, request).await;
                }
                Some(Frame::Cancel(id)) => {
                    // Skipped: the parent counts it in the actor's snapshot.
                    if asks.cancel(id) {
                        out.push(&Frame::Skipped(id));
                    }
                }
                Some(Frame::Stop) => {
                    actor.stop();
                    actor.wait_for_stop().await;
                    return finish(None, &asks, &out, writer_task).await;
                }
                Some(Frame::Answer {
                    id,
                    status,
                    payload,
                }) => {
                    crate::parent_link::answered(id, status, payload);
                }
                other => {
                    let what = if other.is_some() {
                        "a frame out of place"
                    } else {
                        "bytes that are no frame"
                    };
                    eprintln!("conclib-process: the link is broken ({what}): exiting");
                    return 2;
                }
            },
            // The parent is gone: nothing is left to serve.
            Ok(None) | Err(_) => return 1,
        }
    }
}

/// The asks waiting for their answers, by id: what a `Cancel` gives up, and what the end of
/// the process waits for.
#[derive(Default)]
struct Asks {
    waiting: Mutex<Waiters>,
}

/// The asks by id, and who waits for the last one to be done ([`Asks::drained`], at the
/// process's end). That waker lives under the lock every ask takes anyway: a `Notify`
/// woken whenever the last ask left cost about 100 instructions a sequential ask.
#[derive(Default)]
struct Waiters {
    by_id: ById<Waiting>,
    drained: Option<Waker>,
}

/// One ask waiting for its answer.
enum Waiting {
    /// Being queued in the actor's mailbox.
    Queuing,
    /// In the actor's mailbox or being handled; answered from the actor's task.
    Queued(AskHandle),
    /// A heartbeat, waited for by a task of its own.
    Heartbeat(tokio::task::AbortHandle),
}

impl Asks {
    /// Queues `request` under `id`; once its handler is done, its reply goes to `out` and the
    /// ask leaves (so once none is left, every answer is on its way). No task per ask: the
    /// reply is written from the actor's task.
    async fn queue(
        self: &Arc<Self>,
        id: u64,
        out: &Arc<Outbox>,
        rm: &'static ExposedMessage,
        request: ErasedRequest<'_>,
    ) {
        let (asks, answers) = (self.clone(), out.clone());
        let answered = move |result: ErasedResult| {
            reply(&answers, id, reply_for(rm, result));
            asks.leave(id);
        };
        // Registered first: on a runtime of several threads the answer may come (and leave)
        // before `queue_with` returns.
        lock(&self.waiting).by_id.insert(id, Waiting::Queuing);
        match request.queue_with(answered).await {
            Ok(handle) => {
                if let Some(ask) = lock(&self.waiting).by_id.get_mut(&id) {
                    *ask = Waiting::Queued(handle);
                }
            }
            Err(e) => {
                self.leave(id);
                reply(out, id, reply_for(rm, Err(e)));
            }
        }
    }

    /// Runs `heartbeat` as a task under `id`; its reply goes to `out`, then it leaves.
    fn heartbeat(
        self: &Arc<Self>,
        id: u64,
        out: &Arc<Outbox>,
        heartbeat: impl Future<Output = u8> + Send + 'static,
    ) {
        let (asks, out) = (self.clone(), out.clone());
        let mut waiting = lock(&self.waiting);
        let task = tokio::spawn(async move {
            reply(&out, id, (heartbeat.await, Vec::new()));
            asks.leave(id);
        });
        waiting
            .by_id
            .insert(id, Waiting::Heartbeat(task.abort_handle()));
    }

    fn leave(&self, id: u64) -> Option<Waiting> {
        let (ask, drained) = {
            let mut waiting = lock(&self.waiting);
            let ask = waiting.by_id.remove(&id);
            let drained = if waiting.by_id.is_empty() {
                waiting.drained.take()
            } else {
                None
            };
            (ask, drained)
        };
        if let Some(drained) = drained {
            drained.wake();
        }
        ask
    }

    /// Gives an ask up: the actor never starts it if it is still queued, and its answer is
    /// not sent. Returns whether it was still queued (the actor skips it).
    fn cancel(&self, id: u64) -> bool {
        match self.leave(id) {
            Some(Waiting::Queued(handle)) => handle.give_up(),
            Some(Waiting::Heartbeat(task)) => {
                task.abort();
                false
            }
            // A cancel comes from the reader, which queues: never while queuing.
            Some(Waiting::Queuing) | None => false,
        }
    }

    /// Waits (at most `within`) until no ask is left.
    async fn drained(&self, within: Duration) {
        let idle = std::future::poll_fn(|cx| {
            let mut waiting = lock(&self.waiting);
            if waiting.by_id.is_empty() {
                return Poll::Ready(());
            }
            waiting.drained = Some(cx.waker().clone());
            Poll::Pending
        });
        let _ = tokio::time::timeout(within, idle).await;
    }
}

/// A start that failed: said to the parent (its spawn fails with why) and to stderr; the
/// exit code says which failure it was.
async fn not_started(
    out: &Outbox,
    writer_task: tokio::task::JoinHandle<()>,
    why: &str,
    code: i32,
) -> i32 {
    eprintln!("conclib-process: {why}");
    out.push(&Frame::Ended {
        panicked: false,
        reason: why,
    });
    out.close();
    let _ = writer_task.await;
    code
}

/// The actor has stopped (asked to, or on its own: then `reason` says why): the answers
/// still on their way are sent (the asks it had queued were failed at its stop), then why it
/// stopped on its own (the `Ended` frame), then the writer finishes and the process exits.
async fn finish(
    reason: Option<&StopReason>,
    asks: &Asks,
    out: &Outbox,
    writer_task: tokio::task::JoinHandle<()>,
) -> i32 {
    asks.drained(Duration::from_secs(5)).await;
    if let Some(reason) = reason {
        let (panicked, text) = match reason {
            StopReason::Normal | StopReason::Killed => (false, String::new()),
            StopReason::Panicked(p) => (true, p.clone()),
            other => (false, other.to_string()),
        };
        out.push(&Frame::Ended {
            panicked,
            reason: &text,
        });
    }
    out.close();
    let _ = writer_task.await;
    0
}

/// Sends the reply to request `id`.
fn reply(out: &Outbox, id: u64, (status, payload): (u8, Vec<u8>)) {
    out.push(&Frame::Reply {
        id,
        status,
        payload: &payload,
    });
}

/// A request (or tell, id 0) from the parent: a `Request` frame.
struct Request<'a> {
    id: u64,
    high: bool,
    trace: Option<TraceContext>,
    message: &'a str,
    body: &'a [u8],
}

/// Queues one request in the actor's mailbox, in arrival order (waiting for room: the
/// parent's further requests wait too); its answer goes to the writer when the handler is
/// done. Its trace, if it has one, is the actor's `handle` span's parent.
async fn serve(actor: &DynActorRef, out: &Arc<Outbox>, asks: &Arc<Asks>, request: Request<'_>) {
    let Request {
        id,
        high,
        trace,
        message,
        body,
    } = request;
    if message == wire::HEARTBEAT && id != 0 {
        // Answered by the actor between its messages (a stuck handler holds it up).
        let actor = actor.clone();
        asks.heartbeat(id, out, async move {
            match actor.ping(Duration::from_secs(24 * 3600)).await {
                Ok(()) => status::ALIVE,
                Err(_) => status::ACTOR_STOPPED,
            }
        });
        return;
    }
    let Some(rm) = actor.remote_message(message) else {
        if id != 0 {
            let text = format!("the actor does not expose {message}");
            reply(out, id, (status::UNKNOWN_MESSAGE, text.into_bytes()));
        }
        return;
    };
    let mut decoded = None;
    if let Err(e) = Bincode.decode_with(body, &mut |de| {
        decoded = Some(rm.decode(de)?);
        Ok(())
    }) {
        if id != 0 {
            reply(out, id, (status::CODEC_ERROR, e.to_string().into_bytes()));
        }
        return;
    }
    let Some(msg) = decoded else { return };
    let priority = if high {
        Priority::High
    } else {
        Priority::Normal
    };
    let request = actor
        .erased(rm.name(), rm.type_id(), msg)
        .priority(priority)
        .trace(trace);
    if id == 0 {
        if let Err(e) = request.send().await {
            tracing::warn!(error = %e, "a told message was refused");
        }
        return;
    }
    asks.queue(id, out, rm, request).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of the process waits for the asks still answering, and no longer: the last
    /// one leaving (from another thread) wakes it; with none left it does not wait at all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_end_waits_until_the_last_ask_leaves() {
        let asks = Arc::new(Asks::default());
        tokio::time::timeout(
            Duration::from_secs(10),
            asks.drained(Duration::from_secs(60)),
        )
        .await
        .expect("nothing to wait for");
        for id in [1, 2] {
            lock(&asks.waiting).by_id.insert(id, Waiting::Queuing);
        }
        let drained = tokio::spawn({
            let asks = asks.clone();
            async move { asks.drained(Duration::from_secs(60)).await }
        });
        asks.leave(1);
        // One ask is left: the end still waits.
        tokio::task::yield_now().await;
        assert!(!drained.is_finished());
        let leaving = tokio::spawn({
            let asks = asks.clone();
            async move { asks.leave(2) }
        });
        leaving.await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("the last ask's leaving woke the end")
            .unwrap();
    }
}
