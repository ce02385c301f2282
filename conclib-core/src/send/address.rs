//! [`Address`] and [`Requester`]: what every kind of ref to an actor offers (a local
//! [`ActorRef`](crate::ActorRef), a process actor's ref, a remote handle), so that one
//! method-call API works on each. Above the ref and the request builders, which name
//! neither trait.

use crate::actor::Actor;
use crate::handler::Handler;
use crate::message::Message;
use crate::send::actor_ref::ActorRef;
use crate::send::request::AskRequest;

/// A ref to an actor of type [`Actor`](Address::Actor): a local [`ActorRef`](crate::ActorRef), a process
/// actor's ref, a remote handle through the Redis proxy.
///
/// The `{Actor}Api` trait that `#[actor]` generates is implemented for every `Address`
/// of that actor, so one method-call API works on every kind of ref.
pub trait Address {
    /// The type of the actor this ref addresses.
    type Actor: Actor;
}

/// An [`Address`] that can send `M` to its actor, as a request builder: the same builder its
/// `ask` returns (`.await` asks; `.timeout(..)`, `.priority(..)` and `.tell()` where the ref
/// offers them).
///
/// ```
/// use conclib_core::{Actor, ActorSystem, Context, Handler, Message, Requester};
/// use std::convert::Infallible;
///
/// struct Echo;
/// impl Actor for Echo {}
/// struct Say(&'static str);
/// impl Message for Say { type Response = &'static str; type Error = Infallible; }
/// impl Handler<Say> for Echo {
///     async fn handle(&mut self, Say(s): Say, _: &mut Context<Self>) -> Result<&'static str, Infallible> {
///         Ok(s)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// let echo = system.spawn(Echo).await.unwrap();
/// assert_eq!(echo.request(Say("hi")).await.unwrap(), "hi");
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot send `{M}` to its actor",
    label = "`{M}` cannot go through `{Self}`",
    note = "a local `ActorRef<A>` sends every message `A` handles; a process actor's ref or a remote \
            handle sends only serde messages its actor exposes with `#[handle(remote)]`"
)]
// No `M: Message` bound here: a type that is not a message is reported once, where it is used,
// not again at every signature that names `Requester<M>`.
pub trait Requester<M>: Address {
    /// The request builder: `.await` it to ask.
    type Request<'a>
    where
        Self: 'a;

    /// The request of `message`, not yet sent.
    fn request(&self, message: M) -> Self::Request<'_>;
}

// A local ref is a `Requester` of every message its actor handles (here, beside the traits:
// the ref and the request builders know neither).
impl<A: Actor> Address for ActorRef<A> {
    type Actor = A;
}

impl<A: Handler<M>, M: Message> Requester<M> for ActorRef<A> {
    type Request<'a> = AskRequest<&'a ActorRef<A>, M>;

    #[inline]
    fn request(&self, message: M) -> Self::Request<'_> {
        self.ask(message)
    }
}
