//! Building a pool ([`PoolBuilder`], from [`ActorSystem::pool`]) and starting its
//! supervisor.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::shared::{Shared, SharedFactory};
use super::{Pool, PoolSupervisor, Routing, WhenFull};
use crate::actor::Actor;
use crate::error::SpawnError;
use crate::mailbox::config::MailboxConfig;
use crate::supervision::RestartLimit;
use crate::system::ActorSystem;

/// Builds a pool; from [`ActorSystem::pool`]. Finish with `.spawn().await`.
#[must_use = "a builder does nothing until `.spawn().await`"]
pub struct PoolBuilder<A: Actor> {
    system: ActorSystem,
    factory: SharedFactory<A>,
    size: usize,
    routing: Routing,
    urn: Option<String>,
    mailbox: MailboxConfig,
    when_full: WhenFull,
    restart: RestartLimit,
    replacements: RestartLimit,
    unresponsive_after: Option<Duration>,
    ask_timeout: Duration,
}

impl<A: Actor> fmt::Debug for PoolBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("size", &self.size)
            .field("routing", &self.routing)
            .field("urn", &self.urn)
            .finish_non_exhaustive()
    }
}

impl ActorSystem {
    /// Starts building a pool of actors made by `factory` (called once per member, and
    /// again for each restart or replacement). See [`Pool`].
    pub fn pool<A: Actor>(&self, factory: impl FnMut() -> A + Send + 'static) -> PoolBuilder<A> {
        PoolBuilder {
            system: self.clone(),
            factory: Arc::new(Mutex::new(Box::new(factory))),
            size: std::thread::available_parallelism().map_or(2, usize::from),
            routing: Routing::RoundRobin,
            urn: None,
            mailbox: A::MAILBOX,
            when_full: WhenFull::Wait,
            restart: RestartLimit::default(),
            replacements: RestartLimit::new(10, Duration::from_secs(10)),
            unresponsive_after: None,
            ask_timeout: self.default_ask_timeout(),
        }
    }
}

impl<A: Actor> PoolBuilder<A> {
    /// The number of members (default: the machine's cores). A pool of size 0 has no member
    /// to route to: its asks and tells fail with `ActorStopped` until a
    /// [`resize`](crate::Pool::resize) gives it some.
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// How a member is chosen (default round-robin).
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// The pool's URN: lookups and the Redis proxy reach the pool by it. Default: the URN
    /// the member type declares ([`Actor::URN`], `#[actor(urn = ..)]`); members never have one.
    pub fn urn(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// Each member's mailbox (default: the actor type's [`Actor::MAILBOX`]).
    pub fn member_mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// What a send does when the chosen member is full (default: wait).
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// How often a member may restart in place after a panic (default: 3 in 5 s).
    pub fn restart_limit(mut self, limit: RestartLimit) -> Self {
        self.restart = limit;
        self
    }

    /// How often members may be replaced (dead or unresponsive) before the pool gives up
    /// and stops with [`StopReason::RestartLimit`](crate::StopReason::RestartLimit) (default: 10 in 10 s).
    pub fn replacements_limit(mut self, limit: RestartLimit) -> Self {
        self.replacements = limit;
        self
    }

    /// Turns on the dead-man's switch: every `after`, each member must answer a
    /// high-priority heartbeat within `after`, or it is killed and replaced.
    ///
    /// A member answers the heartbeat between two messages, as it handles any message:
    /// one whose handler takes longer than `after` (waiting on I/O as much as computing)
    /// misses it and is killed, its ask failing `ActorStopped`. Set `after` above the
    /// longest a handler may take.
    pub fn unresponsive_after(mut self, after: Duration) -> Self {
        self.unresponsive_after = Some(after);
        self
    }

    /// The default timeout of asks through the pool.
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// Spawns the pool and its members.
    ///
    /// # Errors
    /// [`SpawnError`]: the URN is invalid or taken, a member failed to start, or the system
    /// is stopping.
    pub async fn spawn(self) -> Result<Pool<A>, SpawnError> {
        let shared = Arc::new(Shared {
            members: RwLock::new(Arc::new(Vec::new())),
            next: AtomicUsize::new(0),
            routing: self.routing,
            when_full: self.when_full,
            ask_timeout: self.ask_timeout,
            replaced: AtomicUsize::new(0),
        });
        let pool = PoolSupervisor {
            shared: shared.clone(),
            factory: self.factory,
            size: self.size,
            mailbox: self.mailbox,
            restart: self.restart,
            replacements: self.replacements,
            replaced_at: VecDeque::new(),
            unresponsive_after: self.unresponsive_after,
            probe: None,
        };
        let mut builder = self.system.build(pool).ask_timeout(self.ask_timeout);
        if let Some(urn) = self.urn.or_else(|| A::URN.map(str::to_owned)) {
            builder = builder.urn(urn);
        }
        // A member that failed to start failed the pool's own start: its error, not one
        // wrapped in another "on_start failed".
        let actor = builder.spawn().await.map_err(|e| match e {
            SpawnError::StartFailed(e) => match e.downcast::<SpawnError>() {
                Ok(member) => *member,
                Err(e) => SpawnError::StartFailed(e),
            },
            other => other,
        })?;
        Ok(Pool { actor, shared })
    }
}
