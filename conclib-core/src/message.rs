//! Messages and the handlers that answer them.

use std::future::Future;

use crate::actor::Actor;
use crate::context::Context;

/// A message an actor can handle.
///
/// `Response` is what an ask returns on success and `Error` what the handler may return
/// instead; both reach the asker, locally or through the proxy. A message used only with
/// `tell` has `Response = ()`.
///
/// [`Message::name`] is the message's wire name, used by dynamic refs and the Redis proxy to
/// say which message a request holds. The `#[message]` macro gives each message a stable
/// name; a hand-written impl defaults to [`std::any::type_name`], which changes when the
/// type moves to another module.
///
/// ```
/// use conclib_core::Message;
/// use std::convert::Infallible;
///
/// struct Ping(u64);
/// impl Message for Ping {
///     type Response = u64;
///     type Error = Infallible;
///     fn name() -> &'static str { "Ping" }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message",
    note = "put `#[message]` (or `#[message(response = ...)]`) on `{Self}`, or implement `conclib::Message` for it",
    note = "in an `#[actor]` impl block, a `#[handle]` method whose only argument is a type named like a struct takes that \
            type as its message; to pass it as a plain value instead, name the message the method generates: \
            `#[handle(name = \"...\")]`"
)]
pub trait Message: Send + 'static {
    /// What a successful ask returns.
    type Response: Send + 'static;
    /// What a failing handler returns; [`std::convert::Infallible`] when it cannot fail.
    type Error: std::fmt::Debug + Send + 'static;

    /// The message's wire name: stable across processes, unique among the messages an actor
    /// exposes (an actor with a URN whose [`Actor::REMOTE`](crate::Actor::REMOTE) lists two of
    /// one name is refused at its spawn: [`SpawnError::DuplicateWireName`](crate::SpawnError::DuplicateWireName)).
    #[must_use]
    fn name() -> &'static str {
        std::any::type_name::<Self>()
    }

    /// The key a [`Routing::KeyHash`](crate::Routing::KeyHash) pool routes this message by
    /// (one key always reaches the same member while the pool's size is unchanged); `None`
    /// (the default) routes it round-robin.
    fn routing_key(&self) -> Option<u64> {
        None
    }
}

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

/// The lane a user message travels in. `High` overtakes queued `Normal` messages;
/// order is kept within a lane (per sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Priority {
    /// The default lane.
    #[default]
    Normal,
    /// Overtakes queued normal messages.
    High,
}
