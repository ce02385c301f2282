//! The [`Actor`] trait: state, lifecycle hooks and options.

use std::any::TypeId;
use std::future::Future;

use crate::context::Context;
use crate::dynamic::request_envelope::RequestEnvelope;
use crate::error::{BoxError, StopReason};
use crate::exposed::remote::ExposedMessage;
use crate::mailbox::config::MailboxConfig;
use crate::messages::StreamId;
use crate::supervision::SupervisionEvent;

/// An actor: state that handles messages one at a time.
///
/// Every item has a default, so `impl Actor for MyState {}` is a complete actor; add a
/// [`Handler`](crate::Handler) per message type. The hooks run between messages, never
/// beside a handler, with the same `&mut self` and [`Context`]: `on_start` in the task that
/// spawns the actor, the others in its run loop (the actor's own task; the last steps of an
/// actor stopped before it ever ran share one of the system's keeper tasks, see
/// [`SpawnBuilder::spawn`](crate::SpawnBuilder::spawn)).
///
/// Lifecycle: [`on_start`](Actor::on_start) runs before the first message (an error there
/// makes `spawn` fail); [`on_stop`](Actor::on_stop) runs once, after the children stopped
/// and before the actor's URN is freed; [`on_panic`](Actor::on_panic) runs after a handler
/// panicked, before the [`PanicPolicy`](crate::PanicPolicy) is applied.
///
/// ```
/// use conclib_core::{Actor, ActorSystem, BoxError, Context, StopReason};
///
/// struct Greeter { greeted: u32 }
///
/// impl Actor for Greeter {
///     async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
///         println!("{} starting", ctx.id());
///         Ok(())
///     }
///     async fn on_stop(&mut self, _ctx: &mut Context<Self>, reason: &StopReason) -> Result<(), BoxError> {
///         println!("greeted {} times, {reason}", self.greeted);
///         Ok(())
///     }
/// }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// let greeter = system.spawn(Greeter { greeted: 0 }).await.unwrap();
/// greeter.stop();
/// greeter.wait_for_stop().await;
/// # }
/// ```
pub trait Actor: Sized + Send + 'static {
    /// The URN given to the actor when the spawn builder sets none.
    const URN: Option<&'static str> = None;

    /// The mailbox used when the spawn builder sets none.
    const MAILBOX: MailboxConfig =
        MailboxConfig::Bounded(crate::mailbox::config::DEFAULT_MAILBOX_CAPACITY);

    /// Whether the actor hands its requests on and is answered later (a process actor's
    /// relay): then an ask it took keeps its place in the mailbox until answered, so the
    /// mailbox's bound counts what it handed on and is not done yet. Support for
    /// `conclib-process`; leave it `false`.
    #[doc(hidden)]
    const HANDS_ON: bool = false;

    /// The messages other processes may send this actor through a proxy (see
    /// [`ExposedMessage`]). Empty by default: nothing is exposed unless listed.
    const REMOTE: &'static [ExposedMessage] = &[];

    /// Whether an ask's handler is dropped once its asker has given up: the asker's timeout
    /// passed (a local ask, one by name, or one by URN through a proxy, whose deadline the
    /// proxy keeps), or it dropped the ask. Off by default: a handler runs to its end
    /// whoever still waits, and the next message waits for it.
    ///
    /// On, a handler whose asker gave up is dropped at its next `.await` (where it waits
    /// then: the asker's giving up wakes it), as [`kill`](crate::ActorRef::kill) drops one,
    /// and the actor goes on with its next message. The asker has its
    /// [`AskError::Timeout`](crate::AskError::Timeout) already. What the handler changed in
    /// the actor's state before that `.await` stays changed: nothing is rolled back (as
    /// with Akka's and Restate's cancellation), so a handler of such an actor leaves its
    /// state consistent at each `.await`. Tells (and a proxy's tells that are acknowledged
    /// once handled) are never cancelled; nor is a handler that answered already (through
    /// a kept [`Responder`](crate::Responder)) and works on. A handler that never reaches
    /// an `.await` runs to its end. Each cancellation counts in
    /// `conclib_actor_handlers_cancelled_total` ([`metrics`](crate::metrics)). An actor that
    /// leaves it off pays nothing for it (one constant, known when compiled).
    ///
    /// With `#[actor]`: `#[actor(cancel_on_timeout)]` on the struct.
    ///
    /// ```
    /// use conclib_core::{Actor, ActorSystem, AskError, Context, Handler, Message};
    /// use std::convert::Infallible;
    /// use std::time::Duration;
    ///
    /// struct Slow;
    /// impl Message for Slow { type Response = (); type Error = Infallible; }
    /// struct Quick;
    /// impl Message for Quick { type Response = u32; type Error = Infallible; }
    ///
    /// struct Backend { started: u32 }
    /// impl Actor for Backend {
    ///     const CANCEL_ON_TIMEOUT: bool = true;
    /// }
    /// impl Handler<Slow> for Backend {
    ///     async fn handle(&mut self, _: Slow, _: &mut Context<Self>) -> Result<(), Infallible> {
    ///         self.started += 1; // kept: done before the `.await`
    ///         tokio::time::sleep(Duration::from_secs(3600)).await;
    ///         Ok(())
    ///     }
    /// }
    /// impl Handler<Quick> for Backend {
    ///     async fn handle(&mut self, _: Quick, _: &mut Context<Self>) -> Result<u32, Infallible> {
    ///         Ok(self.started)
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// let backend = system.spawn(Backend { started: 0 }).await.unwrap();
    /// let slow = backend.ask(Slow).timeout(Duration::from_millis(20)).await;
    /// assert!(matches!(slow, Err(AskError::Timeout(_))));
    /// // The slow handler was dropped: the next ask is answered at once.
    /// assert_eq!(backend.ask(Quick).timeout(Duration::from_secs(1)).await.unwrap(), 1);
    /// # }
    /// ```
    const CANCEL_ON_TIMEOUT: bool = false;

    /// Runs before the first message. An error (or a panic) stops the actor and is returned
    /// by `spawn`; children it spawned here are killed with it.
    fn on_start(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        NothingToStart
    }

    /// Runs once when the actor stops, after its children stopped. An error (or a panic)
    /// here is not lost: the actor's stop reason becomes [`StopReason::StopFailed`], which
    /// its parent, its watchers and `wait_for_stop` see.
    fn on_stop(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &StopReason,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (ctx, reason);
        async { Ok(()) }
    }

    /// Runs after a handler panicked, before the panic policy is applied.
    fn on_panic(
        &mut self,
        ctx: &mut Context<Self>,
        message: &str,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, message);
        async {}
    }

    /// A child stopped or restarted, or a watched actor stopped.
    ///
    /// The default escalates a child that reached its restart limit: this actor stops with
    /// [`StopReason::Escalated`], which its own parent sees in turn.
    fn on_event(
        &mut self,
        ctx: &mut Context<Self>,
        event: SupervisionEvent,
    ) -> impl Future<Output = ()> + Send {
        if let SupervisionEvent::ChildStopped {
            id,
            reason: StopReason::RestartLimit(panic),
            ..
        } = &event
        {
            ctx.escalate(format!("child {id} reached its restart limit: {panic}"));
        }
        async {}
    }

    /// A stream attached with [`Context::attach_stream`] ended; its items were all handled.
    fn on_stream_finished(
        &mut self,
        ctx: &mut Context<Self>,
        id: StreamId,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, id);
        async {}
    }

    /// Called when the actor answers a heartbeat ([`DynActorRef::ping`](crate::DynActorRef::ping),
    /// a pool's dead-man's switch), before the answer goes out. An actor that stands for
    /// work done elsewhere (a process actor's relay) waits here until that work answers
    /// too; for any other actor there is nothing to do (the default).
    #[doc(hidden)]
    fn heartbeat(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether the actor handles messages of this type when they come through a
    /// [`DynActorRef`](crate::DynActorRef). `#[actor]` generates it; the default says yes to
    /// everything and leaves the answer to [`handle_request`](Actor::handle_request).
    fn accepts(message: TypeId) -> bool {
        let _ = message;
        true
    }

    /// Handles a type-erased request from a [`DynActorRef`](crate::DynActorRef) or a proxy.
    ///
    /// `#[actor]` generates this from the `#[handle]` methods. By hand, it is the
    /// `matches`/`extract`/`respond` pattern:
    ///
    /// ```
    /// # use conclib_core::*;
    /// # use std::convert::Infallible;
    /// # struct Ping; impl Message for Ping { type Response = &'static str; type Error = Infallible; }
    /// struct Echo;
    /// impl Actor for Echo {
    ///     async fn handle_request(&mut self, request: RequestEnvelope, _ctx: &mut Context<Self>) {
    ///         match request.extract::<Ping>() {
    ///             Ok((Ping, responder)) => responder.respond(Ok("pong")),
    ///             Err(request) => request.reject(),
    ///         }
    ///     }
    /// }
    /// ```
    fn handle_request(
        &mut self,
        request: RequestEnvelope,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        request.reject();
        async {}
    }
}

/// What the default [`Actor::on_start`] returns: ready at once and zero-sized, so that
/// `spawn`'s box of the start future allocates nothing for an actor without a start of its
/// own (an `async {}` block is one byte: an allocation in every such spawn).
struct NothingToStart;

impl Future for NothingToStart {
    type Output = Result<(), BoxError>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}
