//! [`Handler`]: how an actor answers a message (with [`Actor`] and [`Context`], the
//! circle the design needs: a handler is an actor's, and is given its context).

use std::future::Future;

use crate::actor::Actor;
use crate::context::Context;
use crate::message::Message;
use crate::messages::{Heartbeat, StreamFinished};

/// An actor's handler for messages of type `M`.
///
/// The handler gets `&mut self` for as long as its future runs, across every `.await`:
/// the actor handles one message at a time, so there is no need for locks or for moving
/// state out. Returning `Err` sends the error to the asker; the actor goes on. A panic is
/// caught and follows the actor's [`PanicPolicy`](crate::PanicPolicy).
///
/// ```
/// use conclib_core::{Actor, Context, Handler, Message};
/// use std::convert::Infallible;
///
/// struct Counter(u64);
/// impl Actor for Counter {}
///
/// struct Add(u64);
/// impl Message for Add {
///     type Response = u64;
///     type Error = Infallible;
/// }
///
/// impl Handler<Add> for Counter {
///     async fn handle(&mut self, msg: Add, _ctx: &mut Context<Self>) -> Result<u64, Infallible> {
///         self.0 += msg.0;
///         Ok(self.0)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "actor `{Self}` does not handle message `{M}`",
    label = "`{Self}` has no handler for `{M}`",
    note = "add a `#[handle]` method taking `{M}` to the `#[actor]` impl block of `{Self}`, or implement `Handler<{M}>` for it"
)]
pub trait Handler<M: Message>: Actor {
    /// Handles one message.
    fn handle(
        &mut self,
        msg: M,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<M::Response, M::Error>> + Send;
}

// The runtime-wide messages (`crate::messages`): every actor handles them.

impl<A: Actor> Handler<Heartbeat> for A {
    async fn handle(
        &mut self,
        _: Heartbeat,
        _: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        self.heartbeat().await;
        Ok(())
    }
}

impl<A: Actor> Handler<StreamFinished> for A {
    async fn handle(
        &mut self,
        msg: StreamFinished,
        ctx: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        self.on_stream_finished(ctx, msg.0).await;
        Ok(())
    }
}
