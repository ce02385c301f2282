//! Pools: N actors of one type behind one ref and one URN (see [`Pool`]).

mod actor;
pub(crate) mod builder;
mod routing;
mod shared;

pub use actor::PoolSupervisor;
use actor::Resize;

use routing::make_room;
pub use routing::{AskOutcome, MemberLoad, PoolStats, Routing, WhenFull};
use shared::{InFlight, Member, Shared};

use std::fmt;
use std::future::Future;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::actor_id::ActorId;
use crate::cell::{ActorCell, Target};
use crate::dynamic::DynActorRef;
use crate::error::{AskError, SendError, SpawnError, StopReason};
use crate::handler::Handler;
use crate::message::{Message, Priority};
use crate::send::actor_ref::ActorRef;
use crate::send::request::{
    AskRequest, DeliverAsk, DeliverTell, KeyRouted, SendOptions, TellRequest,
};

/// A pool of actors of type `A` behind one ref and one URN; from [`ActorSystem::pool`](crate::ActorSystem::pool).
/// Cloning is cheap.
///
///
/// ```
/// use conclib_core::{Actor, ActorSystem, Context, Handler, Message, Routing};
/// use std::convert::Infallible;
///
/// #[derive(Default)]
/// struct Hasher;
/// impl Actor for Hasher {}
///
/// struct Hash(u64);
/// impl Message for Hash { type Response = u64; type Error = Infallible; }
/// impl Handler<Hash> for Hasher {
///     async fn handle(&mut self, Hash(n): Hash, _: &mut Context<Self>) -> Result<u64, Infallible> {
///         Ok(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// let pool = system
///     .pool(Hasher::default)
///     .size(4)
///     .routing(Routing::LeastLoaded)
///     .urn("hashers")
///     .spawn()
///     .await
///     .unwrap();
/// assert_eq!(pool.ask(Hash(1)).await.unwrap(), 0x9E37_79B9_7F4A_7C15);
/// // Keyed: one key always reaches the same member while the size is unchanged.
/// pool.ask(Hash(2)).key(&"user-42").await.unwrap();
/// assert_eq!(pool.stats().members.len(), 4);
/// // The pool's URN reaches it like any actor (and so does the Redis proxy).
/// assert!(system.lookup("hashers").is_ok());
/// # }
/// ```
///
/// Members can run in processes of their own: with feature `process`, a member is the
/// local actor that stands for a process actor (`conclib::process::ProcessRelay`, from
/// `build(..).into_actor()`), and the pool is asked through `conclib::process::ProcessPool`
/// (typed), [`Pool::to_dyn`] or its URN.
///
/// # Semantics
/// - **Routing** ([`Routing`]) picks one member per message: round-robin, least loaded
///   ([`MemberLoad::load`]: queued or at work, or routed and not done yet), by key hash (the key given with
///   [`AskRequest::key`], or [`Message::routing_key`]), or a function of yours. Messages sent
///   through the pool's URN or [`Pool::to_dyn`] are routed the same way (a keyed message
///   must be listed in [`Actor::REMOTE`] for its key to be found there).
/// - **Back-pressure.** Each member has a bounded mailbox (the pool's queue is their sum).
///   When the chosen member is full, [`WhenFull::Wait`] waits for room (within the ask's
///   timeout), [`WhenFull::Reject`] fails at once with `MailboxFull`, and
///   [`WhenFull::DropOldest`] drops the member's oldest waiting message (its ask fails with
///   `MailboxFull`) to queue the new one. A member in a process of its own counts the asks
///   it handed to its process and that are not answered yet in its mailbox: its bound caps
///   what waits in the process, queued or being handled (a local member's caps what is
///   queued, besides the one it handles). An ask whose asker
///   gave up while it was queued is never handed to the member's handler (the core's rule).
/// - **Replacement.** Members restart in place after a panic under the pool's
///   [`RestartLimit`](crate::RestartLimit); a member that stops anyway (restart limit, killed) is replaced by a
///   fresh one. With [`PoolBuilder::unresponsive_after`](crate::PoolBuilder::unresponsive_after), a member that does not answer a
///   high-priority heartbeat in time is killed and replaced (a dead-man's switch); a handler
///   stuck in a CPU loop is taken out of the routing at once even though its task runs on.
///   More than `replacements_limit` replacements within its window stop the pool with
///   [`StopReason::RestartLimit`], which its parent sees.
/// - **Resizing** ([`Pool::resize`]) adds members, or takes members out of the routing and
///   stops them gracefully: what they had queued is still handled; nothing is lost. A send
///   that raced with the removal is routed again.
pub struct Pool<A: Actor> {
    actor: ActorRef<PoolSupervisor<A>>,
    shared: Arc<Shared<A>>,
}

impl<A: Actor> Clone for Pool<A> {
    fn clone(&self) -> Self {
        Pool {
            actor: self.actor.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Pool<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("id", &self.actor.id())
            .field("urn", &self.actor.urn())
            .field("members", &self.shared.snapshot().len())
            .field("routing", &self.shared.routing)
            .finish()
    }
}

impl<A: Actor> Pool<A> {
    /// Asks one member, chosen by the pool's routing. Finish with `.await`; set
    /// `.timeout(..)`, `.priority(..)` or `.key(..)` first if needed.
    ///
    /// Resolves to the member's answer, or [`AskError::MailboxFull`] (with
    /// [`WhenFull::Reject`] or [`WhenFull::DropOldest`]), [`AskError::Timeout`], or
    /// [`AskError::ActorStopped`]: the pool has stopped, or has no member (size 0).
    pub fn ask<M: Message>(&self, msg: M) -> AskRequest<&Pool<A>, M>
    where
        A: Handler<M>,
    {
        AskRequest::new(self, msg)
    }

    /// Tells one member, chosen by the pool's routing; `.await` it (after `.priority(..)` or
    /// `.key(..)` if needed). It waits for room unless the pool rejects when full.
    ///
    /// Resolves to [`SendError::MailboxFull`] (with [`WhenFull::Reject`]) or
    /// [`SendError::ActorStopped`] (the pool has stopped, or has no member: size 0), with
    /// the message.
    pub fn tell<M: Message>(&self, msg: M) -> TellRequest<&Pool<A>, M>
    where
        A: Handler<M>,
    {
        TellRequest::new(self, msg)
    }

    /// Asks every member (a copy of `msg` each) and returns each member's outcome.
    pub async fn broadcast<M>(
        &self,
        msg: M,
    ) -> Vec<(ActorId, Result<M::Response, AskError<M::Error>>)>
    where
        A: Handler<M>,
        M: Message + Clone,
    {
        let members = self.shared.snapshot();
        let timeout = self.shared.ask_timeout;
        let mut asks = tokio::task::JoinSet::new();
        for (index, member) in members.iter().enumerate() {
            let actor = member.actor.clone();
            let msg = msg.clone();
            asks.spawn(async move { (index, actor.ask(msg).timeout(timeout).await) });
        }
        let mut outcomes: Vec<Option<AskOutcome<M>>> = (0..members.len()).map(|_| None).collect();
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok((index, outcome)) => outcomes[index] = Some(outcome),
                // The caller sees this member's `NoResponse`: nothing for an operator to do.
                Err(e) => tracing::warn!(error = %e, "a broadcast ask task failed"),
            }
        }
        members
            .iter()
            .zip(outcomes)
            .map(|(m, o)| (m.actor.id(), o.unwrap_or(Err(AskError::NoResponse))))
            .collect()
    }

    /// Changes the number of members: new ones are spawned, or the last ones are taken out
    /// of the routing and stopped gracefully (their queued messages are still handled).
    /// Returns once the routing table has the new size.
    ///
    /// # Errors
    /// [`SpawnError`] if a new member could not be spawned, or the pool has stopped.
    pub async fn resize(&self, size: usize) -> Result<(), SpawnError> {
        self.actor.ask(Resize(size)).await.map_err(|e| match e {
            AskError::Handler(e) => e,
            _ => SpawnError::ShuttingDown,
        })?;
        Ok(())
    }

    /// The members and their loads.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            members: self.shared.snapshot().iter().map(Member::load).collect(),
            replaced: self.shared.replaced.load(Ordering::Relaxed) as u64,
        }
    }

    /// Typed refs to the members now in the routing table.
    #[must_use]
    pub fn members(&self) -> Vec<ActorRef<A>> {
        self.shared
            .snapshot()
            .iter()
            .map(|m| m.actor.clone())
            .collect()
    }

    /// The pool's own id (its supervising actor's).
    #[must_use]
    pub fn id(&self) -> ActorId {
        self.actor.id()
    }

    /// The pool's URN, if it has one.
    #[must_use]
    pub fn urn(&self) -> Option<&crate::urn::Urn> {
        self.actor.urn()
    }

    /// A dynamic ref to the pool: requests through it are routed to a member.
    #[must_use]
    pub fn to_dyn(&self) -> DynActorRef {
        self.actor.to_dyn()
    }

    /// Stops the pool: its members stop gracefully first, then the pool.
    pub fn stop(&self) {
        self.actor.stop();
    }

    /// Kills the pool and its members.
    pub fn kill(&self) {
        for m in self.shared.snapshot().iter() {
            m.actor.kill();
        }
        self.actor.kill();
    }

    /// Waits until the pool has stopped.
    pub async fn wait_for_stop(&self) -> StopReason {
        self.actor.wait_for_stop().await
    }

    /// Whether the pool has not stopped.
    #[must_use]
    pub fn is_alive(&self) -> bool {
        self.actor.is_alive()
    }

    /// Routes `msg` and queues it at a member (with a reply sender for an ask); routes
    /// again if that member stopped meanwhile (a resize or a replacement), so no message is
    /// lost to the race.
    async fn send<M: Message>(
        &self,
        mut msg: M,
        key: Option<u64>,
        ask: bool,
        priority: Priority,
    ) -> Result<Option<Pending<M>>, SendError<M>>
    where
        A: Handler<M>,
    {
        let mut attempts = 0u32;
        loop {
            let Ok((member, routed)) = self.shared.route(key, ask) else {
                return Err(SendError::ActorStopped(msg));
            };
            let cell: &ActorCell<A> = &member.actor.cell;
            let reserved = match make_room(cell, self.shared.when_full).await {
                Some(true) => true,
                Some(false) => return Err(SendError::MailboxFull(msg)),
                None => false,
            };
            if reserved {
                if ask {
                    let (tx, rx) = oneshot::channel();
                    match cell.push(msg, Some(tx), priority, crate::observe::metrics::stamp()) {
                        Ok(()) => return Ok(Some(Pending { rx, _guard: routed })),
                        Err(m) => msg = m,
                    }
                } else {
                    match cell.push(msg, None, priority, crate::observe::metrics::stamp()) {
                        Ok(()) => return Ok(None),
                        Err(m) => msg = m,
                    }
                }
            }
            if !self.actor.is_alive() {
                return Err(SendError::ActorStopped(msg));
            }
            // The member stopped (resized away, or dead and about to be replaced): route
            // again, backing off a little if the table has not caught up yet.
            attempts += 1;
            if attempts < 8 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// An ask queued at a member: its answer, and its place in the member's in-flight count.
struct Pending<M: Message> {
    rx: oneshot::Receiver<Result<M::Response, AskError<M::Error>>>,
    _guard: Option<InFlight>,
}

impl<A: Actor> crate::send::address::Address for Pool<A> {
    type Actor = A;
}

impl<A: Handler<M>, M: Message> crate::send::address::Requester<M> for Pool<A> {
    type Request<'a> = AskRequest<&'a Pool<A>, M>;

    fn request(&self, message: M) -> Self::Request<'_> {
        self.ask(message)
    }
}

impl<A: Actor> KeyRouted for &Pool<A> {}

/// The exchange of an ask or a tell through a [`Pool`].
type PoolExchange<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'a, A: Handler<M>, M: Message> DeliverAsk<M> for &'a Pool<A> {
    type Ask = PoolExchange<'a, Result<M::Response, AskError<M::Error>>>;

    fn deliver_ask(self, msg: M, options: SendOptions) -> Self::Ask {
        Box::pin(async move {
            let timeout = options.timeout_or(self.shared.ask_timeout);
            let key = options.key().or_else(|| msg.routing_key());
            let exchange = async {
                let pending = match self.send(msg, key, true, options.priority()).await {
                    Ok(pending) => pending.expect("an ask is queued with its reply"),
                    Err(SendError::MailboxFull(_)) => return Err(AskError::MailboxFull),
                    Err(_) => return Err(AskError::ActorStopped),
                };
                pending.rx.await.unwrap_or(Err(AskError::ActorStopped))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => {
                    // Labelled as the pool's other metrics: its members' type, its URN.
                    crate::observe::metrics::count_pool(
                        "conclib_ask_timeouts_total",
                        self.actor.cell.core.urn.as_ref(),
                        std::any::type_name::<A>(),
                    );
                    Err(AskError::Timeout(timeout))
                }
            }
        })
    }
}

impl<'a, A: Handler<M>, M: Message> DeliverTell<M> for &'a Pool<A> {
    type Tell = PoolExchange<'a, Result<(), SendError<M>>>;

    fn deliver_tell(self, msg: M, options: SendOptions) -> Self::Tell {
        Box::pin(async move {
            let key = options.key().or_else(|| msg.routing_key());
            self.send(msg, key, false, options.priority())
                .await
                .map(|_| ())
        })
    }
}

#[allow(dead_code)]
fn requests_are_send<A: Handler<M>, M: Message>() {
    fn assert_send<T: Send>() {}
    assert_send::<AskRequest<&'static Pool<A>, M>>();
}
