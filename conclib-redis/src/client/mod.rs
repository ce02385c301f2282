//! [`ProxyClient`]: asks and tells actors of other processes through Redis.
//!
//! This module holds the client's public methods: it connects, resolves URNs and sends
//! requests. What the parts share is in `shared` (the client's state) and `handle` (the
//! [`ProxyClient`] users hold), so that no part imports this module: `route` resolves URNs
//! (its cache is part of the shared state), `outbox` writes requests in batches (`queued`:
//! what waits), `io` reads the replies, `remote` holds the typed ask and tell builders.

mod budget;
mod departed;
mod directory;
mod exchange;
mod handle;
mod holds;
mod io;
mod moves;
mod outbox;
mod queued;
mod remote;
mod resolved;
mod restart;
mod route;
mod shared;
mod waiter;

use crate::random::random_id;
pub(crate) use budget::{cooperate, settle};
use handle::Guard;
pub use handle::ProxyClient;
use io::{close_reader, read_replies, watch_link, watch_restarts};
pub use remote::{ByUrn, RemoteRef};
use shared::{REPLY_BLOCK_SECS, Shared};
#[cfg(feature = "fuzzing")]
pub(crate) use {exchange::reply_parts, remote::interpret};

use std::collections::{HashMap, HashSet};

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conclib_core::trace::TraceContext;
use conclib_core::{AskRequest, Message, Priority, RemoteReply, TellRequest};
use fred::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::ProxyConfig;
use crate::conn::{self, keyed, owned, shared_bytes};
use crate::error::ProxyError;
use crate::protocol::{Keys, SEND_SCRIPT};

impl ProxyClient {
    /// Connects to Redis and starts the reply reader.
    ///
    /// # Errors
    /// [`ProxyError::Config`] for an unusable configuration, [`ProxyError::Unavailable`] if
    /// Redis cannot be reached.
    pub async fn connect(config: &ProxyConfig) -> Result<ProxyClient, ProxyError> {
        let builder = config.builder(config.command_timeout)?;
        let pool = builder
            .build_pool(config.pool_size)
            .map_err(|e| ProxyError::Config(e.to_string()))?;
        let reader_builder =
            config.builder(config.command_timeout + Duration::from_secs(REPLY_BLOCK_SECS))?;
        let reader = reader_builder
            .build()
            .map_err(|e| ProxyError::Config(e.to_string()))?;
        // Subscribed before connecting, so that no reconnection goes unseen.
        let events: Vec<_> = pool
            .clients()
            .iter()
            .chain([&reader])
            .map(|c| (c.error_rx(), c.reconnect_rx()))
            .collect();
        let clients: Vec<&Client> = pool.clients().iter().chain([&reader]).collect();
        conn::init_within(&clients, config.connecting())
            .await
            .map_err(ProxyError::Unavailable)?;
        let keys = Keys::new(&config.namespace);
        let links = pool
            .clients()
            .iter()
            .map(|_| AtomicBool::new(true))
            .collect();
        let clustered = reader.is_clustered();
        let reply_key = keys.reply(&random_id());
        let shared = Arc::new(Shared {
            config: config.clone(),
            reply_field: shared_bytes(reply_key.as_bytes()),
            reply_key,
            keys,
            pool,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            send: crate::script::Script::new(SEND_SCRIPT),
            cache: RwLock::new(HashMap::new()),
            looking_up: Mutex::new(HashMap::new()),
            known: Mutex::new(HashSet::new()),
            run_id: Mutex::new(None),
            outbox: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            links,
            next_link: AtomicUsize::new(0),
            clustered,
            run_ids: Mutex::new(HashMap::new()),
            losses: AtomicU64::new(0),
            persistence: std::sync::OnceLock::new(),
            holds: holds::Holds::new(config.overload.client_hold),
            topics: std::sync::OnceLock::new(),
            moves_seen: tokio::sync::watch::Sender::new(0),
        });
        let (run_id, _) = shared.server_info().await;
        let persistence = match shared.connection() {
            Ok(link) => crate::persistence::Persistence::read(link, config.command_timeout).await,
            Err(_) => crate::persistence::Persistence::Unknown,
        };
        let _ = shared.persistence.set(persistence);
        persistence.warn_once();
        if let Ok(link) = shared.connection() {
            config
                .durability
                .check_topology(link, &config.url, "client")
                .await;
        }
        if let Some(run_id) = &run_id
            && !clustered
        {
            shared
                .run_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(None, run_id.clone());
        }
        *shared.run_id.lock().unwrap_or_else(|e| e.into_inner()) = run_id;
        let mut tasks = vec![tokio::spawn(read_replies(shared.clone(), reader.clone()))];
        let (checks, to_check) = mpsc::unbounded_channel();
        let count = shared.links.len();
        for (i, (errors, reconnects)) in events.into_iter().enumerate() {
            // The last events are the reply reader's: its losses count, it has no link.
            let link = (i < count).then_some(i);
            tasks.push(tokio::spawn(watch_link(
                shared.clone(),
                link,
                errors,
                reconnects,
                checks.clone(),
            )));
        }
        tasks.push(tokio::spawn(watch_restarts(shared.clone(), to_check)));
        // Connected in its task: `connect` does not wait for it.
        let notes = moves::listener(&shared);
        if let Some(notes) = &notes {
            tasks.push(tokio::spawn(moves::follow(shared.clone(), notes.clone())));
        }
        Ok(ProxyClient {
            _guard: Arc::new(Guard {
                shared: shared.clone(),
                reader,
                notes,
                tasks,
            }),
            shared,
        })
    }

    /// A usable command connection (the reminders' scripts run on the client's pool).
    pub(crate) fn command_connection(&self) -> Result<&Client, ProxyError> {
        self.shared.connection()
    }

    /// The configuration the client was connected with.
    #[must_use]
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    /// How the Redis this client talks to persists what it holds, as read when the client
    /// connected: whether a restart of Redis can lose the tells it accepted
    /// ([`tell`](Self::tell) returns once Redis holds the message).
    ///
    /// ```no_run
    /// # async fn demo(client: conclib_redis::ProxyClient) {
    /// use conclib_redis::durability::TellLoss;
    /// match client.persistence().tell_loss() {
    ///     TellLoss::Nothing => {}
    ///     loss => eprintln!("a Redis restart may lose tells: {loss:?}"),
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn persistence(&self) -> crate::persistence::Persistence {
        self.shared.persistence.get().copied().unwrap_or_default()
    }

    /// Publishing to topics and subscribing to them through this client's Redis (see
    /// [`topics`](crate::topics)). Its publishes share the client's connections; each
    /// subscription has a connection of its own.
    #[must_use]
    pub fn topics(&self) -> crate::topics::Topics {
        self.shared
            .topics
            .get_or_init(|| {
                crate::topics::Topics::new(
                    self.shared.config.clone(),
                    self.shared.pool.next().clone(),
                )
            })
            .clone()
    }

    /// Publishes `event` to `topic`: [`Topics::publish`](crate::topics::Topics::publish).
    ///
    /// # Errors
    /// As [`Topics::publish`](crate::topics::Topics::publish).
    pub async fn publish<E: Serialize + ?Sized>(
        &self,
        topic: &crate::topics::Topic,
        event: &E,
    ) -> Result<(), crate::topics::TopicError> {
        self.topics().publish(topic, event).await
    }

    /// Subscribes to `topic`; `.await` it for a `Stream` of its events decoded as `E`:
    /// [`Topics::subscribe`](crate::topics::Topics::subscribe).
    ///
    /// ```no_run
    /// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), conclib_redis::topics::TopicError> {
    /// use futures_util::StreamExt;
    /// let topic = conclib_redis::topics::Topic::live("jobs.progress")?;
    /// let mut progress = client.subscribe::<u32>(&topic).await?;
    /// while let Some(event) = progress.next().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe<E>(&self, topic: &crate::topics::Topic) -> crate::topics::SubscribeRequest<E> {
        self.topics().subscribe(topic)
    }

    /// The key of this client's reply list.
    #[must_use]
    pub fn reply_key(&self) -> &str {
        &self.shared.reply_key
    }

    /// Asks the actor with this URN, wherever it lives; `.await` the result. The default
    /// timeout is [`ProxyConfig::ask_timeout`]; set another with `.timeout(..)`.
    ///
    /// The response comes back typed; the handler's own error as
    /// [`AskError::Handler`](conclib_core::AskError::Handler)
    /// (never, for a message that cannot fail). `.priority(Priority::High)` sends it in the
    /// actor's high-priority lane, as a local ask would.
    pub fn ask<'a, M>(&'a self, urn: impl Into<Cow<'a, str>>, msg: M) -> AskRequest<ByUrn<'a>, M>
    where
        M: RemoteReply + Serialize,
        M::Response: DeserializeOwned,
    {
        AskRequest::new(
            ByUrn {
                client: self,
                urn: urn.into(),
            },
            msg,
        )
    }

    /// A typed handle to the actor of type `A` with this URN: the method-call API generated
    /// by `#[actor]` (`{Actor}Api`) works on it, as on a local ref.
    ///
    /// ```no_run
    /// # use conclib_redis::ProxyClient;
    /// # use conclib_core::{Actor, Context, Handler, Message};
    /// # struct Counter; impl Actor for Counter {}
    /// # async fn demo(client: ProxyClient) {
    /// let counter = client.actor::<Counter>("counter");
    /// assert_eq!(counter.urn(), "counter");
    /// # }
    /// ```
    pub fn actor<A: conclib_core::Actor>(&self, urn: impl Into<String>) -> RemoteRef<A> {
        RemoteRef::new(self.clone(), urn.into())
    }

    /// Tells the actor with this URN; `.await` it: it returns once Redis holds the message.
    /// It is handled if the actor's system takes it within [`ProxyConfig::tell_ttl`]; what
    /// the handler returns is not reported back (a message the actor does not expose is
    /// logged by the proxy). `.priority(Priority::High)` sends it in the high-priority lane.
    /// Nothing waits for the proxy: a Redis that restarts without persistence loses the
    /// tells it held ([`persistence`](Self::persistence) says what a restart can lose).
    ///
    /// Resolves to [`AskError::UnknownUrn`](conclib_core::AskError::UnknownUrn) if no system serves the URN; codec, size and
    /// Redis errors.
    pub fn tell<'a, M>(&'a self, urn: impl Into<Cow<'a, str>>, msg: M) -> TellRequest<ByUrn<'a>, M>
    where
        M: Message + Serialize,
    {
        TellRequest::new(
            ByUrn {
                client: self,
                urn: urn.into(),
            },
            msg,
        )
    }

    async fn tell_now<M>(&self, urn: &str, msg: M, priority: Priority) -> Result<(), ProxyError>
    where
        M: Message + Serialize,
    {
        cooperate().await;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ProxyError::Closed);
        }
        // A URN this client holds full: the proxy would drop the tell (`holds.rs`).
        if let Err(r) = self.shared.holds.tell(urn) {
            crate::metrics::refused_at_send();
            return Err(ProxyError::Overloaded {
                urn: urn.to_owned(),
                scope: r.scope,
                limit: r.limit,
                depth: r.depth,
            });
        }
        let body = self.encode(&msg)?;
        let timeout = self.shared.config.command_timeout;
        let deadline = Instant::now() + timeout;
        let disconnects = self.shared.disconnects.load(Ordering::Acquire);
        let ttl = self.shared.config.tell_ttl;
        let trace = TraceContext::next_hop();
        let span = tracing::debug_span!(
            "conclib.tell",
            urn,
            message = M::name(),
            trace_id = %trace.trace_id(),
            span_id = %trace.span_id(),
        );
        let sent = async {
            let route = self.shared.resolve(urn, deadline, false).await?;
            self.shared
                .send_tell(
                    &route,
                    urn,
                    exchange::Named::of::<M>(),
                    ttl,
                    priority,
                    body.into(),
                    deadline,
                    trace,
                )
                .await
        };
        sent.instrument(span)
            .await
            .map(|_| ())
            .map_err(|e| self.shared.at_deadline(e, timeout, disconnects))
    }

    /// Which system serves this URN now, if any (asks Redis, not the cache). `None` for a
    /// URN whose system departed and has no successor yet: unlike an ask, it does not wait.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn resolve(&self, urn: &str) -> Result<Option<String>, ProxyError> {
        cooperate().await;
        let deadline = Instant::now() + self.shared.config.command_timeout;
        settle(match self.shared.resolve_now(urn, deadline).await {
            Ok(route) => Ok(Some(route.system.to_string())),
            Err(ProxyError::UnknownUrn { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Closes the client: pending asks fail with
    /// [`AskError::Transport`](conclib_core::AskError::Transport) ("the client is closed"),
    /// later calls too. Returns within [`ProxyConfig::shutdown_timeout`](crate::ProxyConfig::shutdown_timeout)
    /// whatever Redis does.
    /// Dropping the last clone does the same.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self._guard.stop_tasks();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        // Bounded whatever Redis does: an unreachable Redis keeps the reply list until its
        // TTL and the connections are dropped unclosed.
        let closing = async {
            let _ = conn::call(
                self.shared.pool.next(),
                keyed("DEL"),
                vec![owned(self.shared.reply_key.clone())],
            )
            .await;
            let _ = self.shared.pool.quit().await;
            if let Some(notes) = &self._guard.notes {
                let _ = notes.quit().await;
            }
            close_reader(&self._guard.reader).await;
        };
        let _ = tokio::time::timeout(self.shared.config.shutdown_timeout, closing).await;
    }
}
