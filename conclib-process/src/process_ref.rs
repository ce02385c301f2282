//! The ref to a process actor, and its asks.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::{
    Actor, AskRequest, DeliverAsk, DeliverTell, DynActorRef, Priority, RemoteHandler, RemoteReply,
    SendOptions, TellRequest, Urn,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::parent::Inner;
use crate::wire::Frame;
use conclib_core::{AskError, ProcessExit};

/// A ref to an actor of type `A` running in a process of its own; from
/// [`build`](crate::build). Cloning is cheap. A process actor built without a system stops
/// gracefully when the last clone is dropped; one in a system
/// ([`ProcessBuilder::system`](crate::ProcessBuilder::system)) lives as a local actor does.
///
/// It asks and tells like an [`ActorRef`](conclib_core::ActorRef): typed, checked at compile
/// time against `A`'s handlers, with timeouts and priorities. Messages cross the process
/// boundary: they must be exposed by `A` (`#[handle(remote)]`, or [`Actor::REMOTE`] and
/// [`RemoteHandler`] by hand; sending one it does not expose fails to compile), serde types,
/// declared with `#[message]` (or [`MessageDecl`](conclib_core::MessageDecl)).
pub struct ProcessRef<A> {
    inner: Arc<Inner>,
    /// The local actor that stands for it in its system, if it has one.
    relay: Option<DynActorRef>,
    ask_timeout: Duration,
    _actor: PhantomData<fn() -> A>,
}

impl<A> ProcessRef<A> {
    pub(crate) fn new(
        inner: Arc<Inner>,
        relay: Option<DynActorRef>,
        ask_timeout: Duration,
    ) -> Self {
        ProcessRef {
            inner,
            relay,
            ask_timeout,
            _actor: PhantomData,
        }
    }
}

impl<A> Clone for ProcessRef<A> {
    fn clone(&self) -> Self {
        ProcessRef {
            inner: self.inner.clone(),
            relay: self.relay.clone(),
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
    /// The actor's id in its system (that of the local actor that stands for it there),
    /// when it has a system ([`ProcessBuilder::system`](crate::ProcessBuilder::system) or
    /// [`ProcessBuilder::child_of`](crate::ProcessBuilder::child_of)); it stays the same
    /// across restarts.
    #[must_use]
    pub fn id(&self) -> Option<conclib_core::ActorId> {
        self.relay.as_ref().map(DynActorRef::id)
    }

    /// The actor's URN, if it was given one ([`ProcessBuilder::urn`](crate::ProcessBuilder::urn)).
    #[must_use]
    pub fn urn(&self) -> Option<&Urn> {
        self.relay.as_ref().and_then(DynActorRef::urn)
    }

    /// The actor as a [`DynActorRef`], when it has a system: what
    /// [`ActorSystem::lookup`](conclib_core::ActorSystem::lookup) of its URN returns. Asks
    /// through it reach the process like asks through this ref, with the same
    /// [`AskError`](conclib_core::AskError)s: an ask lost with its process fails
    /// [`Exited`](conclib_core::AskError::Exited), one sent after the actor ended for good
    /// `ActorStopped`.
    #[must_use]
    pub fn to_dyn(&self) -> Option<DynActorRef> {
        self.relay.clone()
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

    /// Asks the actor; `.await` it, after `.timeout(..)` or `.priority(..)` if needed. Sent
    /// inside a trace ([`TraceContext::scope`](conclib_core::trace::TraceContext::scope)), it
    /// carries a child of it to the process (the crate docs, "Traces").
    pub fn ask<M>(&self, msg: M) -> AskRequest<&ProcessRef<A>, M>
    where
        // First: when both fail (a message the actor does not expose), rustc reports the
        // bounds in this order, and this one says what to change.
        A: RemoteHandler<M>,
        M: RemoteReply + Serialize,
        M::Response: DeserializeOwned,
    {
        AskRequest::new(self, msg)
    }

    /// Tells the actor, as [`ActorRef::tell`](conclib_core::ActorRef::tell) does: `.await`
    /// it (after `.priority(..)` if needed); it resolves once the message is on its way
    /// (its process may still die before handling it). It never waits for room: the link
    /// queues what the process has not read yet.
    pub fn tell<M>(&self, msg: M) -> TellRequest<&ProcessRef<A>, M>
    where
        A: RemoteHandler<M>,
        M: conclib_core::Message + Serialize,
    {
        TellRequest::new(self, msg)
    }

    /// Tells the actor now, without a future to await; see [`tell`](Self::tell).
    ///
    /// # Errors
    /// [`AskError::Exited`](conclib_core::AskError::Exited) if the process has exited; [`AskError::Codec`](conclib_core::AskError::Codec).
    pub fn try_tell<M>(&self, msg: M) -> Result<(), AskError>
    where
        A: RemoteHandler<M>,
        M: conclib_core::Message + Serialize,
    {
        self.send_tell(&msg, Priority::Normal)
    }

    fn send_tell<M>(&self, msg: &M, priority: Priority) -> Result<(), AskError>
    where
        M: conclib_core::Message + Serialize,
    {
        let link = self.inner.link();
        if let Some(exit) = link.exit.borrow().clone() {
            return Err(AskError::Exited(exit));
        }
        let body = crate::wire::encode_body(msg).map_err(AskError::Codec)?;
        link.send(&Frame::Request {
            id: 0,
            high: priority == Priority::High,
            trace: crate::passed_on_trace(),
            message: M::name(),
            body: &body,
        });
        Ok(())
    }

    /// Stops the actor gracefully (what it has queued is handled), then its process exits;
    /// it is not restarted.
    pub fn stop(&self) {
        self.inner.ending.store(true, Ordering::SeqCst);
        match &self.relay {
            // Its `on_stop` stops the process, after what the relay had queued.
            Some(relay) => relay.stop(),
            None => self.inner.link().send(&Frame::Stop),
        }
    }

    /// Kills the process at once (`SIGKILL`): pending asks fail with
    /// [`AskError::Exited`](conclib_core::AskError::Exited).
    pub fn kill(&self) {
        self.inner.killing.store(true, Ordering::SeqCst);
        self.inner.ending.store(true, Ordering::SeqCst);
        self.inner.link().kill();
        if let Some(relay) = &self.relay {
            relay.kill();
        }
    }

    /// Waits until the actor's process has ended for good (no restart follows), and says
    /// how. In a system, its URN is free by then.
    pub async fn wait_for_stop(&self) -> ProcessExit {
        let exit = self.inner.ended().await;
        if let Some(relay) = &self.relay {
            relay.wait_for_stop().await;
        }
        exit
    }
}

/// The exchange of an ask or a tell with a process actor.
type ProcessExchange<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'a, A, M> DeliverTell<M> for &'a ProcessRef<A>
where
    A: RemoteHandler<M>,
    M: conclib_core::Message + Serialize,
{
    type Tell = ProcessExchange<'a, Result<(), AskError>>;

    /// As [`ProcessRef::try_tell`]; while the process is being restarted, the tell waits
    /// for the new one.
    fn deliver_tell(self, msg: M, options: SendOptions) -> Self::Tell {
        Box::pin(async move {
            let inner = &self.inner;
            inner.live_link(inner.relaunch_wait()).await;
            self.send_tell(&msg, options.priority())
        })
    }
}

impl<A: Actor> conclib_core::Address for ProcessRef<A> {
    type Actor = A;
}

impl<A, M> conclib_core::Requester<M> for ProcessRef<A>
where
    A: RemoteHandler<M>,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Request<'a> = AskRequest<&'a ProcessRef<A>, M>;

    fn request(&self, message: M) -> Self::Request<'_> {
        self.ask(message)
    }
}

impl<'a, A, M> DeliverAsk<M> for &'a ProcessRef<A>
where
    A: Actor,
    M: RemoteReply + Serialize,
    M::Response: DeserializeOwned,
{
    type Ask = ProcessExchange<'a, Result<M::Response, AskError<M::Error>>>;

    fn deliver_ask(self, msg: M, options: SendOptions) -> Self::Ask {
        Box::pin(async move {
            let timeout = options.timeout_or(self.ask_timeout);
            let started = std::time::Instant::now();
            let body = crate::wire::encode_body(&msg).map_err(AskError::Codec)?;
            drop(msg);
            let trace = crate::passed_on_trace();
            // One timeout for the whole exchange, a wait for a restarting process included
            // (`live_link` waits at most `timeout`): what is left of it is the request's
            // deadline, kept by the link's sweeper rather than a timer per ask.
            let link = self.inner.live_link(timeout).await;
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(AskError::Timeout(timeout));
            }
            let (status, payload) = link
                .request(M::name(), &body, options.priority(), trace, Some(left))
                .await
                .ok_or(AskError::Timeout(timeout))?
                .map_err(AskError::Exited)?;
            crate::answer::decode_answer::<M>(std::any::type_name::<A>(), status, &payload)
        })
    }
}
