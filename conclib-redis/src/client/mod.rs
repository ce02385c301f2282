//! [`ProxyClient`]: asks and tells actors of other processes through Redis.
//!
//! This module resolves URNs and sends requests; `outbox` writes them in batches, `io`
//! reads the replies; `remote` holds the typed ask and tell builders.

mod directory;
mod exchange;
mod io;
mod outbox;
mod remote;
mod restart;
mod route;
mod waiter;

use route::Resolved;
use waiter::Waiter;

use io::{close_reader, read_replies, watch_link, watch_restarts};
pub use remote::{ByUrn, RemoteRef};
#[cfg(feature = "fuzzing")]
pub(crate) use {exchange::reply_status, remote::interpret};

use std::collections::{HashMap, HashSet};
use std::fmt;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conclib_core::trace::TraceContext;
use conclib_core::{AskRequest, Message, Priority, RemoteReply, TellRequest};
use fred::bytes::Bytes;
use fred::clients::Pool;
use fred::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::ProxyConfig;
use crate::conn::{self, keyed, owned, shared_bytes};
use crate::error::ProxyError;
use crate::protocol::{self, Keys, SEND_SCRIPT};

/// How long the reply reader blocks in one `BLMPOP`, in seconds.
const REPLY_BLOCK_SECS: u64 = 2;
/// The most replies taken by one `BLMPOP`.
const REPLY_BATCH: i64 = 1024;

/// A connection to the actors that proxies serve through Redis, for processes without an
/// actor system (a web server's workers, scripts, other services).
///
/// Cloning is cheap and clones share everything: one client serves any number of concurrent
/// asks from any number of tasks over [`ProxyConfig::pool_size`] command connections plus one
/// connection that reads all replies (one reply list per client, dispatched by request id).
/// A lone ask's request leaves at once; requests made while the client's writes to that
/// system wait for Redis (two at most) leave together when one is back, in commands of up
/// to 32, on any runtime.
///
/// ```no_run
/// # use conclib_core::Message;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Add(u64);
/// # impl Message for Add { type Response = u64; type Error = String; fn name() -> &'static str { "Add" } }
/// # impl conclib_core::MessageDecl for Add { type WireError = String; }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use conclib_core::AskError;
/// use conclib_redis::{ProxyClient, ProxyConfig};
/// use std::time::Duration;
///
/// let client = ProxyClient::connect(&ProxyConfig::from_env()?).await?;
/// let total: u64 = client.ask("counter", Add(2)).await?;
/// match client.ask("counter", Add(u64::MAX)).timeout(Duration::from_millis(200)).await {
///     Ok(total) => println!("{total}"),
///     Err(AskError::Handler(message)) => println!("the counter refused: {message}"),
///     Err(other) => println!("{other}"),
/// }
/// client.tell("counter", Add(1)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ProxyClient {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

struct Shared {
    config: ProxyConfig,
    keys: Keys,
    reply_key: String,
    /// `reply_key` as every ask's `reply` field: shared, so that each request (and the copy of
    /// its batch's arguments kept for a retry) takes a reference, not a copy.
    reply_field: Bytes,
    pool: Pool,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Waiter>>,
    send_sha: String,
    cache: RwLock<HashMap<String, Resolved>>,
    /// URNs this client has resolved before (bounded): a URN it knew that Redis no longer
    /// knows right after Redis restarted is not reported unknown (see `resolve`).
    known: Mutex<HashSet<String>>,
    /// The `run_id` of the Redis this client connected to (changes when Redis restarts).
    run_id: Mutex<Option<String>>,
    /// Requests waiting to be written, by request stream.
    outbox: Mutex<HashMap<Arc<str>, outbox::StreamOutbox>>,
    closed: AtomicBool,
    /// Bumped each time a connection to Redis is lost (fred says so, or the reply reader
    /// fails) and each time Redis turns out to have restarted: an ask that began before and
    /// then runs out of time reports [`ProxyError::Unavailable`], not a timeout.
    disconnects: AtomicU64,
    /// Whether each command connection (`pool.clients()`, same order) is usable: false from
    /// fred's report that it lost the connection until it reports the reconnection. Fred's
    /// own state says "connected" until its first reconnection attempt; a command handed to
    /// it meanwhile waits (queued, unwritten) for the reconnection, however long Redis stays
    /// down. With this, a request that cannot be written fails `Unavailable` at once.
    links: Vec<AtomicBool>,
    /// Where the search for a usable command connection starts next (round robin).
    next_link: AtomicUsize,
    /// Whether Redis is a cluster: then run ids are kept per node.
    clustered: bool,
    /// The `run_id` each Redis server had when this client last looked, under `None` unless
    /// Redis is a cluster (then by node). A different one after a reconnection means that
    /// Redis restarted, or that a replica took over (see `io::watch_restarts`).
    run_ids: Mutex<HashMap<Option<Server>, String>>,
    /// How many times this client found a Redis that restarted without its predecessor's data
    /// (see [`Shared::restarted`]). Read just before each request is written, and stored
    /// under the `pending` lock.
    losses: AtomicU64,
    /// Redis's persistence settings, read once as the client connected.
    persistence: std::sync::OnceLock<crate::Persistence>,
    /// Publishing and subscribing to topics (made on first use).
    topics: std::sync::OnceLock<crate::topics::Topics>,
}

/// Stops the reply reader and the connection watchers, and closes the connections, when the
/// last clone is dropped.
struct Guard {
    shared: Arc<Shared>,
    reader: Client,
    /// The reply reader, the restart watcher and one watcher per connection.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Guard {
    fn stop_tasks(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.stop_tasks();
        let pool = self.shared.pool.clone();
        let reader = self.reader.clone();
        let reply_key = self.shared.reply_key.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = conn::call(pool.next(), keyed("DEL"), vec![owned(reply_key)]).await;
                let _ = pool.quit().await;
                close_reader(&reader).await;
            });
        }
    }
}

impl fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyClient")
            .field("namespace", &self.shared.config.namespace)
            .field("reply_key", &self.shared.reply_key)
            .finish_non_exhaustive()
    }
}

/// A random id for a client's reply list: 128 bits from the OS, hex.
fn random_id() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // Fallback: hash time, pid and a counter with a randomly keyed hasher.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            h.write_u32(std::process::id());
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn random_token() -> String {
    random_id()
}

/// A client call's first step: one unit of the calling task's cooperative budget (tokio's
/// `coop`), which returns `Pending` once the task has used its budget without yielding.
///
/// A call that fails at once (Redis down: `Unavailable` on its first poll, no `.await` that
/// could wait) would otherwise never return `Pending`: tasks retrying such calls in a loop
/// held their workers for good, and starved the runtime's timers, its I/O and this client's
/// own reconnection (issue #62: no recovery at 64 callers that retry at once; asks returning
/// 30 s after their 2 s timeout). Outside a tokio runtime it does nothing.
pub(crate) async fn cooperate() {
    tokio::task::consume_budget().await;
}

/// A client call's last step when it failed: the calling task goes to the back of its
/// runtime's queue (after the runtime looked at its timers and I/O) before it sees the error.
///
/// While Redis is down, calls fail at once; callers that retry at once would otherwise each
/// fail up to a whole budget of calls (128) per turn, and a task whose ask just reached its
/// deadline waited behind all of them (at 256 such callers on two workers, 250 ms past its
/// timeout). A call that succeeds, or that failed after waiting, loses one turn at most.
pub(crate) async fn settle<T, E>(result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        tokio::task::yield_now().await;
    }
    result
}

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
        let connect = async {
            pool.init().await?;
            reader.init().await?;
            Ok::<_, fred::error::Error>(())
        };
        match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                let _ = reader.quit().await;
                return Err(ProxyError::Unavailable(e.to_string()));
            }
            Err(_) => {
                let _ = pool.quit().await;
                let _ = reader.quit().await;
                return Err(ProxyError::Unavailable(format!(
                    "could not connect within {:?}",
                    config.connect_timeout
                )));
            }
        }
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
            send_sha: protocol::sha1_hex(SEND_SCRIPT),
            cache: RwLock::new(HashMap::new()),
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
            topics: std::sync::OnceLock::new(),
        });
        let (run_id, _) = shared.server_info().await;
        let persistence = match shared.connection() {
            Ok(link) => crate::Persistence::read(link, config.command_timeout).await,
            Err(_) => crate::Persistence::Unknown,
        };
        let _ = shared.persistence.set(persistence);
        persistence.warn_once();
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
        Ok(ProxyClient {
            _guard: Arc::new(Guard {
                shared: shared.clone(),
                reader,
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
    /// use conclib_redis::TellLoss;
    /// match client.persistence().tell_loss() {
    ///     TellLoss::Nothing => {}
    ///     loss => eprintln!("a Redis restart may lose tells: {loss:?}"),
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn persistence(&self) -> crate::Persistence {
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

    /// Publishes `event` to `topic`: [`Topics::publish`](crate::Topics::publish).
    ///
    /// # Errors
    /// As [`Topics::publish`](crate::Topics::publish).
    pub async fn publish<E: Serialize + ?Sized>(
        &self,
        topic: &crate::Topic,
        event: &E,
    ) -> Result<(), crate::TopicError> {
        self.topics().publish(topic, event).await
    }

    /// Subscribes to `topic`; `.await` it for a `Stream` of its events decoded as `E`:
    /// [`Topics::subscribe`](crate::Topics::subscribe).
    ///
    /// ```no_run
    /// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), conclib_redis::TopicError> {
    /// use futures_util::StreamExt;
    /// let topic = conclib_redis::Topic::live("jobs.progress")?;
    /// let mut progress = client.subscribe::<u32>(&topic).await?;
    /// while let Some(event) = progress.next().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe<E>(&self, topic: &crate::Topic) -> crate::SubscribeRequest<E> {
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
                    M::name(),
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

    /// Which system serves this URN now, if any (asks Redis, not the cache).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn resolve(&self, urn: &str) -> Result<Option<String>, ProxyError> {
        cooperate().await;
        let deadline = Instant::now() + self.shared.config.command_timeout;
        settle(match self.shared.resolve(urn, deadline, true).await {
            Ok(route) => Ok(Some(route.system.to_string())),
            Err(ProxyError::UnknownUrn { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// Closes the client: pending asks fail with
    /// [`AskError::Transport`](conclib_core::AskError::Transport) ("the client is closed"),
    /// later calls too.
    /// Dropping the last clone does the same.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self._guard.stop_tasks();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let _ = conn::call(
            self.shared.pool.next(),
            keyed("DEL"),
            vec![owned(self.shared.reply_key.clone())],
        )
        .await;
        let _ = self.shared.pool.quit().await;
        close_reader(&self._guard.reader).await;
    }
}
