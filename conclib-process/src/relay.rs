//! The local actor that stands for a process actor in its parent's system: it gives the
//! process actor an id, a URN, a place in the supervision tree and the snapshot, and
//! relays every request it gets (from a [`DynActorRef`](conclib_core::DynActorRef), the
//! Redis proxy, a pool) to the process.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use conclib_codec::{Bincode, Codec};
use conclib_core::{
    Actor, AskError, BoxError, Context, ErasedResult, ExposedMessage, Handler, Message,
    RequestEnvelope, StopReason,
};

use crate::error::ProcessSpawnError;
use crate::link::Answer;
use crate::parent::Inner;
use crate::spec::Spec;
use crate::wire::{self, Frame, status};

/// How long a relay that is stopping waits for its process to finish what it has queued
/// before killing it.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A local actor that runs an `A` in a process of its own and relays to it: what a process
/// actor is in its system. From
/// [`ProcessBuilder::into_actor`](crate::ProcessBuilder::into_actor) (for pools);
/// [`ProcessBuilder::spawn`](crate::ProcessBuilder::spawn) with a system spawns one for
/// you.
///
/// It starts the process in its `on_start` (a failed start fails its spawn), exposes `A`'s
/// remote messages ([`Actor::REMOTE`]) and relays each request to the process in the order
/// it received them, without waiting for the answers (many are in flight at once). An ask
/// whose asker gives up is cancelled in the process. It stops when the process ends for good
/// (with [`StopReason::Normal`], `Killed`, `RestartLimit` or `Failed`, as
/// [`ProcessBuilder::child_of`](crate::ProcessBuilder::child_of) describes), and stopping it
/// stops the process (gracefully, killed after 10 s; killing it kills the process).
pub struct ProcessRelay<A> {
    spec: Option<Result<Spec, ProcessSpawnError>>,
    /// The process actor, once `on_start` started it.
    started: Arc<OnceLock<Arc<Inner>>>,
    _actor: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for ProcessRelay<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRelay")
            .field("actor", &std::any::type_name::<A>())
            .field("pid", &self.started.get().map(|i| i.link().pid))
            .finish()
    }
}

impl<A> ProcessRelay<A> {
    /// A relay for `spec`, and where it puts the started process.
    pub(crate) fn new(spec: Result<Spec, ProcessSpawnError>) -> (Self, Arc<OnceLock<Arc<Inner>>>) {
        let started = Arc::new(OnceLock::new());
        let actor = ProcessRelay {
            spec: Some(spec),
            started: started.clone(),
            _actor: PhantomData,
        };
        (actor, started)
    }
}

/// The process ended for good: the relay stops with it.
struct Ended;
impl Message for Ended {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "conclib_process::Ended"
    }
}

impl<A: Actor> Actor for ProcessRelay<A> {
    const REMOTE: &'static [ExposedMessage] = A::REMOTE;
    // The process's actor's bound: an ask relayed to the process keeps its place in this
    // mailbox until answered, so the bound counts what waits in the process too (a pool of
    // process actors rejects, waits or drops by it, and least-loaded routing sees it).
    const MAILBOX: conclib_core::MailboxConfig = A::MAILBOX;
    const HANDS_ON: bool = true;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let mut spec = self
            .spec
            .take()
            .ok_or("a process actor's relay starts once")??;
        if spec.system.is_none() {
            spec.system = Some(ctx.system().clone());
        }
        let inner = Inner::start(spec, Some(ctx.id())).await?;
        ctx.system()
            .report_external(ctx.id(), Arc::downgrade(&inner.probe));
        // When the process ends for good, so does the relay.
        let myself = ctx.myself().clone();
        let watched = inner.clone();
        tokio::spawn(async move {
            watched.ended().await;
            drop(watched);
            let _ = myself.tell(Ended).await;
        });
        let _ = self.started.set(inner);
        Ok(())
    }

    async fn on_stop(
        &mut self,
        _ctx: &mut Context<Self>,
        reason: &StopReason,
    ) -> Result<(), BoxError> {
        let Some(inner) = self.started.get() else {
            return Ok(());
        };
        if inner.final_exit.borrow().is_some() {
            return Ok(());
        }
        if *reason == StopReason::Killed {
            inner.killing.store(true, Ordering::SeqCst);
        }
        inner.ending.store(true, Ordering::SeqCst);
        if *reason == StopReason::Killed {
            inner.link().kill();
        } else {
            inner.link().send(&Frame::Stop);
        }
        if tokio::time::timeout(STOP_GRACE, inner.ended())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = inner.link().pid,
                "a process actor did not stop within {STOP_GRACE:?}: killed"
            );
            inner.link().kill();
            inner.ended().await;
        }
        Ok(())
    }

    async fn heartbeat(&mut self) {
        // Answered when the process's actor answers one, between its messages: a pool's
        // dead-man's switch sees a handler stuck in the process, not just this relay.
        if let Some(inner) = self.started.get() {
            let _ = inner
                .link()
                .request(
                    wire::HEARTBEAT,
                    &[],
                    conclib_core::Priority::High,
                    None,
                    None,
                )
                .await;
        }
    }

    fn accepts(message: std::any::TypeId) -> bool {
        A::REMOTE.iter().any(|m| m.type_id() == message)
    }

    async fn handle_request(&mut self, request: RequestEnvelope, _ctx: &mut Context<Self>) {
        let Some(inner) = self.started.get() else {
            request.reject();
            return;
        };
        let name = request.message_name();
        let Some(rm) = A::REMOTE.iter().find(|m| m.name() == name) else {
            request.reject();
            return;
        };
        let priority = request.priority();
        let trace = request.trace();
        let (message, mut responder) = request.into_erased();
        let body = rm.message(&*message).map_or_else(
            || Err("a message of the wrong type".to_owned()),
            crate::wire::encode_body,
        );
        let body = match body {
            Ok(body) => body,
            Err(why) => {
                // WARN: the asker is answered `NoResponse`; the link is unharmed.
                tracing::warn!(message = name, error = %why, "could not encode a message for a process actor");
                responder.respond(Err(AskError::NoResponse));
                return;
            }
        };
        drop(message);
        // While its process is being restarted, the relay waits for the new one (keeping
        // the order of what it relays).
        let link = inner.live_link(inner.relaunch_wait()).await;
        if !responder.expects_response() && !responder.wants_ack() {
            if link.is_done() {
                tracing::warn!(
                    message = name,
                    "a tell to a process actor whose process has died was dropped"
                );
            }
            link.send(&Frame::Request {
                id: 0,
                high: priority == conclib_core::Priority::High,
                trace,
                message: name,
                body: &body,
            });
            return;
        }
        // Queued on the link now (in order); answered from the link's reader when the process
        // answers. Its asker giving up is watched by a waker that cancels it in the process,
        // registered with the responder: no task per relayed ask (one per ask, parked in
        // `select!` over the answer and `closed()`, made a relayed ask 3-4 times slower than
        // a direct one: docs/bench-log.md, "Process actors"). A give-up in the few instructions
        // between the waker's registration and the id's is missed: the process then runs
        // the ask, as one it already started.
        let watch = Arc::new(GiveUp {
            link: Arc::downgrade(&link),
            id: OnceLock::new(),
        });
        let waker = std::task::Waker::from(watch.clone());
        if responder
            .poll_closed(&mut std::task::Context::from_waker(&waker))
            .is_ready()
        {
            return;
        }
        let id = link.relay(name, &body, priority, trace, move |answer| {
            responder.respond(erased_answer(rm, answer));
        });
        let _ = watch.id.set(id);
    }
}

/// Cancels a relayed ask in the process when woken: its asker gave up.
struct GiveUp {
    link: std::sync::Weak<crate::link::Link>,
    /// The request's id on the link, once it was sent.
    id: OnceLock<u64>,
}

impl std::task::Wake for GiveUp {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let (Some(link), Some(id)) = (self.link.upgrade(), self.id.get()) {
            link.cancel(*id);
        }
    }
}

impl<A: Actor> Handler<Ended> for ProcessRelay<A> {
    async fn handle(
        &mut self,
        _: Ended,
        ctx: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        let reason = self
            .started
            .get()
            .and_then(|i| i.end_reason.get().cloned())
            .unwrap_or(StopReason::Normal);
        ctx.stop_with(reason);
        Ok(())
    }
}

/// A process's answer as the core's erased result.
fn erased_answer(rm: &'static ExposedMessage, answer: Answer) -> ErasedResult {
    let (status, payload) = match answer {
        Ok(answer) => answer,
        Err(exit) => return Err(AskError::Exited(exit)),
    };
    let text = || String::from_utf8_lossy(&payload).into_owned();
    let decode = |decode: fn(
        &ExposedMessage,
        &mut dyn erased_serde::Deserializer<'_>,
    ) -> Result<conclib_core::ErasedMessage, erased_serde::Error>| {
        let mut value = None;
        let decoded = Bincode.decode_with(&payload, &mut |de| {
            value = Some(decode(rm, de)?);
            Ok(())
        });
        match (decoded, value) {
            (Ok(()), Some(value)) => Some(value),
            (result, _) => {
                tracing::error!(message = rm.name(), error = ?result.err(), "could not decode a process actor's answer");
                None
            }
        }
    };
    match status {
        status::OK => decode(ExposedMessage::decode_response).ok_or(AskError::NoResponse),
        status::HANDLER_ERROR => match decode(ExposedMessage::decode_error) {
            Some(error) => Err(AskError::Handler(error)),
            None => Err(AskError::NoResponse),
        },
        status::PANICKED => Err(AskError::Panicked(text())),
        status::UNKNOWN_MESSAGE => Err(AskError::UnknownMessage {
            actor: String::new(),
            message: rm.name().to_owned(),
        }),
        status::MAILBOX_FULL => Err(AskError::MailboxFull),
        status::CODEC_ERROR => Err(AskError::Codec(text())),
        status::NO_RESPONSE => Err(AskError::NoResponse),
        _ => Err(AskError::ActorStopped),
    }
}

/// A [`Pool`](conclib_core::Pool) of process actors asked with typed messages, checked
/// against `A`'s handlers at compile time, as an in-process pool's `ask` is. From
/// [`ProcessPool::new`] on a spawned pool of [`ProcessRelay`]s.
///
/// Its `ask` and `tell` return the same [`AskRequest`](conclib_core::AskRequest) and
/// [`TellRequest`](conclib_core::TellRequest) as every ref. Why a wrapper rather than
/// `Pool<ProcessRelay<A>>::ask` itself: that would need `ProcessRelay<A>: Handler<M>` for
/// every `M` that `A` exposes, a blanket impl over `A: RemoteHandler<M>`, which Rust's
/// coherence rejects (E0119): it overlaps the core's `Handler<StreamFinished>` that every
/// actor has, since `StreamFinished` could implement `RemoteReply` some day. So the typed
/// check lives here, and the request goes through the pool's
/// [`DynActorRef`](conclib_core::DynActorRef).
///
/// ```no_run
/// # use conclib_core::{Actor, ActorSystem};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Worker;
/// # impl Actor for Worker {}
/// # async fn demo(system: ActorSystem) -> Result<(), conclib_core::SpawnError> {
/// let pool = conclib_process::ProcessPool::new(
///     system
///         .pool(|| conclib_process::build(Worker).into_actor())
///         .size(4)
///         .spawn()
///         .await?,
/// );
/// // pool.ask(Job { .. }).await? — routed by the pool, answered by a member's process.
/// pool.pool().resize(8).await?;
/// # Ok(()) }
/// ```
pub struct ProcessPool<A: Actor> {
    pool: conclib_core::Pool<ProcessRelay<A>>,
    target: conclib_core::DynActorRef,
}

impl<A: Actor> ProcessPool<A> {
    /// Wraps a spawned pool of process actors.
    #[must_use]
    pub fn new(pool: conclib_core::Pool<ProcessRelay<A>>) -> Self {
        let target = pool.to_dyn();
        ProcessPool { pool, target }
    }

    /// Asks one member, chosen by the pool's routing (a message's
    /// [`routing_key`](conclib_core::Message::routing_key) for key-hash routing). `.await`
    /// it, after `.timeout(..)` or `.priority(..)` if needed. An ask lost with a member's
    /// process fails [`AskError::Exited`](conclib_core::AskError::Exited).
    pub fn ask<M>(&self, msg: M) -> conclib_core::AskRequest<&conclib_core::DynActorRef, M>
    where
        A: conclib_core::RemoteHandler<M>,
        M: conclib_core::RemoteReply + serde::Serialize,
    {
        self.target.ask(msg)
    }

    /// Tells one member, chosen by the pool's routing. `.await` it.
    pub fn tell<M>(&self, msg: M) -> conclib_core::TellRequest<&conclib_core::DynActorRef, M>
    where
        A: conclib_core::RemoteHandler<M>,
        M: conclib_core::Message + serde::Serialize,
    {
        self.target.tell(msg)
    }

    /// The pool itself: its members, stats, resizing, URN, stopping.
    #[must_use]
    pub fn pool(&self) -> &conclib_core::Pool<ProcessRelay<A>> {
        &self.pool
    }
}

impl<A: Actor> Clone for ProcessPool<A> {
    fn clone(&self) -> Self {
        ProcessPool {
            pool: self.pool.clone(),
            target: self.target.clone(),
        }
    }
}

impl<A: Actor> std::fmt::Debug for ProcessPool<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("actor", &std::any::type_name::<A>())
            .field("pool", &self.target)
            .finish()
    }
}
