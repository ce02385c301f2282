//! How a message's handler error travels to other processes: what a client needs to decode
//! it, even for a message that cannot fail (`Error = Infallible`, which serde cannot decode).

use std::convert::Infallible;
use std::fmt;

use serde::de::DeserializeOwned;

use crate::handler::Handler;
use crate::message::Message;

/// What `#[message]` declares about a message beyond [`Message`]: how its error travels to
/// other processes. `WireError` is [`NoError`] for a message that cannot fail, else its error.
///
/// `#[message]` implements it. For a hand-written [`Message`], one line does:
///
/// ```
/// use conclib_core::{Message, MessageDecl, NoError};
/// use std::convert::Infallible;
///
/// struct Ping;
/// impl Message for Ping { type Response = String; type Error = Infallible; }
/// impl MessageDecl for Ping { type WireError = NoError; }
///
/// struct Take(u64);
/// impl Message for Take { type Response = u64; type Error = String; }
/// impl MessageDecl for Take { type WireError = String; }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is exposed with `#[handle(remote)]` but is not declared with `#[message]`",
    label = "declared without `#[message]`",
    note = "declare `{Self}` with `#[message(...)]`, or list it in a hand-written `Actor::REMOTE` with `ExposedMessage::of`"
)]
pub trait MessageDecl: Message {
    /// The error as sent to other processes: [`NoError`] when `Error` is `Infallible`, else
    /// `Error` itself.
    type WireError;
}

/// The wire error of a message that cannot fail: there is never one to decode, and decoding
/// one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoError {}

impl fmt::Display for NoError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl<'de> serde::Deserialize<'de> for NoError {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "a message that cannot fail was answered with an error",
        ))
    }
}

/// Turns a decoded wire error into the message's handler error.
pub trait IntoHandlerError<E> {
    /// The handler error.
    fn into_handler_error(self) -> E;
}

impl<E> IntoHandlerError<E> for E {
    fn into_handler_error(self) -> E {
        self
    }
}

impl IntoHandlerError<Infallible> for NoError {
    fn into_handler_error(self) -> Infallible {
        match self {}
    }
}

/// An actor that handles `M` for other processes: it lists `M` in
/// [`Actor::REMOTE`](crate::Actor::REMOTE). What a process actor's ref, a pool of process
/// actors and the Redis client's typed handle require of their actor for `M`, so that
/// sending a message the actor does not expose fails to compile instead of failing at run
/// time. `#[handle(remote)]` implements it; an actor written by hand lists the message in
/// `REMOTE` and adds one line:
///
/// ```
/// use conclib_core::{Actor, Context, Handler, Message, MessageDecl, NoError, RemoteHandler, ExposedMessage};
/// use std::convert::Infallible;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Ping;
/// impl Message for Ping { type Response = u8; type Error = Infallible; }
/// impl MessageDecl for Ping { type WireError = NoError; }
///
/// struct Pong;
/// impl Actor for Pong {
///     const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of_infallible::<Ping>()];
///     # async fn handle_request(&mut self, req: conclib_core::RequestEnvelope, ctx: &mut Context<Self>) {
///     #     match req.extract::<Ping>() { Ok((m, r)) => r.respond(self.handle(m, ctx).await), Err(req) => req.reject() }
///     # }
/// }
/// impl Handler<Ping> for Pong {
///     async fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Result<u8, Infallible> { Ok(1) }
/// }
/// impl RemoteHandler<Ping> for Pong {}
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not expose `{M}` to other processes",
    label = "`{M}` is not a remote message of `{Self}`",
    note = "mark the handler of `{M}` `#[handle(remote)]` (an actor written by hand lists `{M}` in `Actor::REMOTE` and implements `RemoteHandler<{M}>`)"
)]
pub trait RemoteHandler<M: Message>: Handler<M> {}

/// A message whose answer another process can decode, handler error included: every
/// [`MessageDecl`] whose wire error is deserializable. What the Redis proxy's client needs of
/// a message to `.await` an ask of it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be asked from another process: its handler error cannot be decoded",
    label = "its error type is not known to be decodable",
    note = "declare `{Self}` with `#[message(...)]` (an error type that implements `serde::Deserialize`), \\
            or implement `conclib::remote::MessageDecl` for it: `type WireError = <its error>;` (`conclib::remote::NoError` when it cannot fail)"
)]
pub trait RemoteReply: Message {
    /// What is decoded from the wire.
    type WireError: DeserializeOwned;
    /// The handler error it stands for.
    fn handler_error(wire: Self::WireError) -> Self::Error;
}

impl<M> RemoteReply for M
where
    M: MessageDecl,
    M::WireError: DeserializeOwned + IntoHandlerError<M::Error>,
{
    type WireError = M::WireError;
    fn handler_error(wire: M::WireError) -> M::Error {
        wire.into_handler_error()
    }
}

/// A heartbeat crosses processes too (a process actor's link answers it from the actor). This
/// impl also keeps the compiler from taking an actor's only `#[handle(remote)]` message for
/// the one meant when another is sent: the error then names the message that is not exposed.
impl<A: crate::actor::Actor> RemoteHandler<crate::messages::Heartbeat> for A {}
