//! [`ProxyClient`]: asks and tells actors of other processes through Redis.
//!
//! This module resolves URNs and sends requests; `io` writes them in batches and reads the
//! replies; `remote` holds the typed ask and tell builders.

mod io;
mod remote;

use io::{Outgoing, close_reader, flush, read_replies, watch_link, watch_restarts};
#[allow(deprecated)]
pub use remote::RemoteActor;
pub use remote::{ByUrn, RemoteRef};

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
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::config::ProxyConfig;
use crate::conn::{self, as_bytes, bytes, keyed, owned, s};
use crate::error::{ProxyError, redis_error};
use crate::protocol::{self, Keys, PROTOCOL_VERSION, SEND_SCRIPT, Status, field};
use conclib_codec::encode_value;

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
/// The requests of asks made together (woken by the same replies, say) leave in one command
/// per 32; a lone ask's request leaves at once.
///
/// ```no_run
/// # use conclib_core::Message;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Add(u64);
/// # impl Message for Add { type Response = u64; type Error = String; fn name() -> &'static str { "Add" } }
/// # impl conclib_core::MessageDecl for Add { type WireError = String; }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use conclib_redis::{ProxyClient, ProxyConfig, ProxyError};
/// use std::time::Duration;
///
/// let client = ProxyClient::connect(&ProxyConfig::from_env()?).await?;
/// let total: u64 = client.ask("counter", Add(2)).await?;
/// match client.ask("counter", Add(u64::MAX)).timeout(Duration::from_millis(200)).await {
///     Ok(total) => println!("{total}"),
///     Err(ProxyError::Handler(message)) => println!("the counter refused: {message}"),
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
    outbox: Mutex<HashMap<Arc<str>, Vec<Outgoing>>>,
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
}

/// An ask waiting for its reply frame (or for the error that ends it before one comes).
struct Waiter {
    reply: oneshot::Sender<Result<Bytes, ProxyError>>,
    /// Whether Redis took its request (it waits in a stream, or with the proxy, for its answer).
    written: bool,
}

#[derive(Clone)]
struct Resolved {
    requests_key: Arc<str>,
    system: Arc<str>,
    until: Instant,
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
        let shared = Arc::new(Shared {
            config: config.clone(),
            reply_key: keys.reply(&random_id()),
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
        });
        let (run_id, _) = shared.server_info().await;
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

    /// The configuration the client was connected with.
    #[must_use]
    pub fn config(&self) -> &ProxyConfig {
        &self.shared.config
    }

    /// The key of this client's reply list.
    #[must_use]
    pub fn reply_key(&self) -> &str {
        &self.shared.reply_key
    }

    /// Asks the actor with this URN, wherever it lives; `.await` the result. The default
    /// timeout is [`ProxyConfig::ask_timeout`]; set another with `.timeout(..)`.
    ///
    /// The response comes back typed; the handler's own error as [`ProxyError::Handler`]
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
    /// tells it held.
    ///
    /// Resolves to [`ProxyError::UnknownUrn`] if no system serves the URN; codec, size and
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
                .send(
                    &route,
                    0,
                    urn,
                    M::name(),
                    ttl,
                    None,
                    priority,
                    body,
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
        let deadline = Instant::now() + self.shared.config.command_timeout;
        match self.shared.resolve(urn, deadline, true).await {
            Ok(route) => Ok(Some(route.system.to_string())),
            Err(ProxyError::UnknownUrn { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes the client: pending asks fail with [`ProxyError::Closed`], later calls too.
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

    fn encode<M: Serialize, E>(&self, msg: &M) -> Result<Vec<u8>, ProxyError<E>> {
        let body = encode_value(&*self.shared.config.codec, msg)
            .map_err(|e| ProxyError::Codec(e.to_string()))?;
        if body.len() > self.shared.config.max_payload {
            return Err(ProxyError::TooLarge(format!(
                "the message is {} bytes, the limit is {}",
                body.len(),
                self.shared.config.max_payload
            )));
        }
        Ok(body)
    }

    /// Sends an encoded ask and waits for its reply frame's status and payload.
    async fn ask_raw(
        &self,
        urn: &str,
        name: &'static str,
        body: Vec<u8>,
        timeout: Duration,
        priority: Priority,
    ) -> Result<(Status, Bytes), ProxyError> {
        let _in_flight = crate::metrics::InFlight::start();
        let started = Instant::now();
        let trace = TraceContext::next_hop();
        let span = tracing::debug_span!(
            "conclib.ask",
            urn,
            message = name,
            trace_id = %trace.trace_id(),
            span_id = %trace.span_id(),
        );
        let result = self
            .exchange(urn, name, body, timeout, priority, started, trace)
            .instrument(span)
            .await;
        crate::metrics::client_ask(
            match &result {
                Ok((status, _)) => status.label(),
                Err(e) => crate::metrics::error_label(e),
            },
            started.elapsed(),
        );
        result
    }

    /// Resolves, sends and waits for the reply (once more after a stale route).
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        urn: &str,
        name: &'static str,
        body: Vec<u8>,
        timeout: Duration,
        priority: Priority,
        started: Instant,
        trace: TraceContext,
    ) -> Result<(Status, Bytes), ProxyError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(ProxyError::Closed);
        }
        let deadline = started + timeout;
        let disconnects = shared.disconnects.load(Ordering::Acquire);
        let body = Bytes::from(body);
        let mut route = shared
            .resolve(urn, deadline, false)
            .await
            .map_err(|e| shared.at_deadline(e, timeout, disconnects))?;
        let mut retried = false;
        loop {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    id,
                    Waiter {
                        reply: tx,
                        written: false,
                    },
                );
            let pending = PendingGuard { shared, id };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let reply_key = shared.reply_key.clone();
            let losses = shared
                .send(
                    &route,
                    id,
                    urn,
                    name,
                    remaining,
                    Some(reply_key),
                    priority,
                    body.clone(),
                    deadline,
                    trace,
                )
                .await
                .map_err(|e| shared.at_deadline(e, timeout, disconnects))?;
            if !shared.taken(id, losses) {
                return Err(ProxyError::Unavailable(
                    "Redis restarted without its data just as the request was written".into(),
                ));
            }
            let frame = match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(Ok(frame))) => frame,
                // Redis restarted without the request (`Shared::restarted`).
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(_)) => return Err(ProxyError::Closed),
                Err(_) => return Err(shared.timed_out(timeout, disconnects)),
            };
            drop(pending);
            let (_, status, _) = protocol::decode_reply(&frame)
                .ok_or_else(|| ProxyError::Protocol("short reply frame".into()))?;
            let status = Status::from_byte(status)
                .ok_or_else(|| ProxyError::Protocol(format!("unknown reply status {status}")))?;
            // The URN moved to another system since we resolved it: resolve again, once.
            if matches!(status, Status::NotOwner | Status::UnknownUrn) && !retried {
                retried = true;
                shared.forget(urn);
                match shared.resolve(urn, deadline, true).await {
                    Ok(fresh) if fresh.system != route.system => {
                        route = fresh;
                        continue;
                    }
                    _ => {}
                }
            }
            let payload = frame.slice(protocol::REPLY_HEADER_LEN..);
            return Ok((status, payload));
        }
    }
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Shared {
    /// A usable command connection, the next in turn (after an outage they reconnect one by
    /// one), or `Unavailable` if none is: Redis is down, and a command would only wait in
    /// fred's queue for its return (see `links`).
    fn connection(&self) -> Result<&Client, ProxyError> {
        let clients = self.pool.clients();
        let start = self.next_link.fetch_add(1, Ordering::Relaxed);
        (0..clients.len())
            .map(|i| (start + i) % clients.len())
            // In a cluster a lost link is one node's: the others still take commands.
            .find(|&i| {
                clients[i].is_connected()
                    && (self.clustered || self.links[i].load(Ordering::Acquire))
            })
            .map(|i| &clients[i])
            .ok_or_else(|| ProxyError::Unavailable("not connected to Redis".into()))
    }

    /// The system serving `urn` and its request stream, from the cache unless `fresh`.
    async fn resolve(
        &self,
        urn: &str,
        deadline: Instant,
        fresh: bool,
    ) -> Result<Resolved, ProxyError> {
        if !fresh {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = cache.get(urn)
                && r.until > Instant::now()
            {
                return Ok(r.clone());
            }
        }
        if conclib_core::validate_urn(urn).is_err() {
            return Err(ProxyError::UnknownUrn {
                urn: urn.to_owned(),
            });
        }
        let value = loop {
            // A GET has no effect: it may be given up at the command timeout.
            let left = deadline.saturating_duration_since(Instant::now());
            let client = self.connection()?.with_options(&Self::command_options(
                left.min(self.config.command_timeout),
            ));
            let get = conn::call(&client, keyed("GET"), vec![owned(self.keys.urn(urn))]);
            let value = match tokio::time::timeout_at(deadline.into(), get).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(redis_error(&e)),
                Err(_) => return Err(ProxyError::Timeout(Duration::ZERO)),
            };
            if as_bytes(&value).is_some() {
                break value;
            }
            // Not active: a URN pattern's group may activate it (`{ns}:pattern:{prefix}`).
            if let Some(prefix) = crate::protocol::pattern_prefix(urn) {
                let get = conn::call(
                    &client,
                    keyed("GET"),
                    vec![owned(self.keys.pattern(prefix))],
                );
                match tokio::time::timeout_at(deadline.into(), get).await {
                    Ok(Ok(v)) if as_bytes(&v).is_some() => break v,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(redis_error(&e)),
                    Err(_) => return Err(ProxyError::Timeout(Duration::ZERO)),
                }
            }
            self.forget(urn);
            self.wait_if_redis_lost_it(urn, deadline).await?;
        };
        let Some(system) = as_bytes(&value) else {
            unreachable!("the loop ends with a value")
        };
        let system = String::from_utf8_lossy(system).into_owned();
        let resolved = Resolved {
            requests_key: self.keys.requests(&system).into(),
            system: system.into(),
            until: Instant::now() + self.config.resolve_cache_ttl,
        };
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            let now = Instant::now();
            cache.retain(|_, r| r.until > now);
        }
        cache.insert(urn.to_owned(), resolved.clone());
        drop(cache);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= 100_000 {
            known.clear();
        }
        if !known.contains(urn) {
            known.insert(urn.to_owned());
        }
        Ok(resolved)
    }

    /// Redis does not know `urn` (or its system's stream). That is an answer, `UnknownUrn`,
    /// unless Redis restarted less than one lease ago and this client knew the URN: the
    /// owner may not have registered it again yet, so wait a little (`Ok`: look again) until
    /// the deadline, then answer `Unavailable`.
    async fn wait_if_redis_lost_it(&self, urn: &str, deadline: Instant) -> Result<(), ProxyError> {
        let unknown = || ProxyError::UnknownUrn {
            urn: urn.to_owned(),
        };
        let knew = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(urn);
        if !knew || !self.redis_restarted_within(self.config.lease_ttl).await {
            return Err(unknown());
        }
        let next = Instant::now() + Duration::from_millis(25);
        if next >= deadline {
            return Err(ProxyError::Unavailable(format!(
                "Redis restarted moments ago and {urn} is not registered again yet"
            )));
        }
        tokio::time::sleep_until(next.into()).await;
        Ok(())
    }

    /// Whether the Redis we talk to is not the one this client connected to (it restarted,
    /// and lost its keys unless it persists them) and started less than `window` ago.
    async fn redis_restarted_within(&self, window: Duration) -> bool {
        let (run_id, uptime) = self.server_info().await;
        let connected_to = self
            .run_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        run_id.is_some()
            && run_id != connected_to
            && uptime.is_some_and(|up| up < window + Duration::from_secs(1))
    }

    /// Redis's `run_id` and uptime (`None`s if it does not answer).
    async fn server_info(&self) -> (Option<String>, Option<Duration>) {
        match self.identify(None).await {
            Some(id) => (Some(id.run_id), Some(id.uptime)),
            None => (None, None),
        }
    }

    /// Who Redis is (`node`: which node of a cluster), from `INFO server persistence
    /// replication`; `None` if it does not answer.
    async fn identify(&self, node: Option<&Server>) -> Option<Identity> {
        let options = Options {
            cluster_node: node.cloned(),
            ..Self::command_options(self.config.command_timeout)
        };
        let client = self.connection().ok()?.with_options(&options);
        let args = vec![s("server"), s("persistence"), s("replication")];
        let info = conn::call(&client, conn::unkeyed("INFO"), args)
            .await
            .ok()?;
        Identity::parse(&String::from_utf8_lossy(as_bytes(&info)?))
    }

    fn forget(&self, urn: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(urn);
    }

    /// Options of an ask's commands: fail at once while disconnected, and write a command
    /// once at most (a connection lost after the write fails it at once, instead of keeping
    /// it for a rewrite after reconnecting). `timeout` is how long the caller waits for it.
    fn command_options(timeout: Duration) -> Options {
        Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(timeout.max(Duration::from_millis(1))),
            ..Options::default()
        }
    }

    /// Appends one request to the serving system's stream. Requests to one stream queued
    /// while its writer waits to run (those of asks made together) leave in one command.
    /// Returns the count of [`losses`](Self::losses) read just before the write.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        self: &Arc<Self>,
        route: &Resolved,
        id: u64,
        urn: &str,
        name: &'static str,
        ttl: Duration,
        reply: Option<String>,
        priority: Priority,
        body: impl Into<Bytes>,
        deadline: Instant,
        trace: TraceContext,
    ) -> Result<u64, ProxyError> {
        let body = body.into();
        let traceparent = trace.to_string();
        let started = Instant::now();
        let mut route = route.clone();
        loop {
            let ttl = ttl.saturating_sub(started.elapsed());
            let ttl_ms = ttl.as_millis().clamp(1, u128::from(u32::MAX)) as i64;
            let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(9);
            fields.push((field::VERSION, s(PROTOCOL_VERSION)));
            fields.push((field::ID, owned(id.to_string())));
            fields.push((field::URN, owned(urn)));
            fields.push((field::MESSAGE, s(name)));
            fields.push((field::TTL, Value::Integer(ttl_ms)));
            if let Some(reply) = &reply {
                fields.push((field::REPLY, owned(reply.clone())));
            }
            if priority == Priority::High {
                fields.push((field::PRIORITY, s("high")));
            }
            fields.push((field::TRACEPARENT, owned(traceparent.clone())));
            fields.push((field::CODEC, s(self.config.codec.name())));
            let size = body.len();
            fields.push((field::BODY, bytes(body.clone())));
            let (tx, rx) = oneshot::channel();
            let first = {
                let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
                let queue = outbox.entry(route.requests_key.clone()).or_default();
                queue.push(Outgoing {
                    fields,
                    size,
                    deadline,
                    done: tx,
                });
                queue.len() == 1
            };
            if first {
                // The requests queued until this task runs (those of the asks woken with this
                // one, typically) leave together, in one command.
                tokio::spawn(flush(self.clone(), route.requests_key.clone()));
            }
            let sent = match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(sent)) => sent,
                Ok(Err(_)) => Err(ProxyError::Closed),
                Err(_) => Err(ProxyError::Timeout(Duration::ZERO)),
            };
            if !matches!(sent, Err(ProxyError::UnknownUrn { .. })) {
                return sent;
            }
            // The stream is gone (NOMKSTREAM, or the script found no stream), so is its
            // system, unless Redis lost its data moments ago: then resolve and send again.
            self.forget(urn);
            self.wait_if_redis_lost_it(urn, deadline).await?;
            route = self.resolve(urn, deadline, true).await?;
        }
    }

    /// An error met before the reply: a command timeout becomes the ask's timeout, or
    /// `Unavailable` when the connection is down.
    fn at_deadline(&self, e: ProxyError, timeout: Duration, disconnects: u64) -> ProxyError {
        match e {
            ProxyError::Timeout(_) => self.timed_out(timeout, disconnects),
            other => other,
        }
    }

    fn timed_out(&self, timeout: Duration, disconnects: u64) -> ProxyError {
        if !self.pool.is_connected() || self.disconnects.load(Ordering::Acquire) != disconnects {
            ProxyError::Unavailable(format!(
                "the connection to Redis was lost; no answer within {timeout:?}"
            ))
        } else {
            ProxyError::Timeout(timeout)
        }
    }
}

/// What `INFO` says of a Redis server's identity and of the data it started with.
#[derive(Debug)]
struct Identity {
    /// Random, new at each start of the server.
    run_id: String,
    uptime: Duration,
    /// Whether it may hold data written before it started: it loads (or loaded keys from) a
    /// persistence file, appends to one (AOF), or is a replica that took over from its
    /// primary (it carries the primary's replication id as its second one). Otherwise it
    /// started empty.
    kept_data: bool,
}

impl Identity {
    fn parse(text: &str) -> Option<Identity> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
        let kept_data = field("loading:") == Some("1")
            || field("aof_enabled:") == Some("1")
            || number("rdb_last_load_keys_loaded:").is_some_and(|n| n > 0)
            || field("master_replid2:").is_some_and(|id| id.bytes().any(|b| b != b'0'));
        Some(Identity {
            run_id: field("run_id:")?.to_owned(),
            uptime: Duration::from_secs(number("uptime_in_seconds:")?),
            kept_data,
        })
    }
}

/// Redis restarts, and the asks whose requests they took away.
///
/// An ask's request lives in Redis (in a stream, then as its answer in the client's reply
/// list) until its answer is read. A Redis without persistence that restarts loses it, and
/// no answer will ever come: waiting for the ask's deadline only to report `Timeout` helps
/// nobody (a web server wants its 503 now). So the client identifies each Redis it
/// reconnects to (`io::watch_restarts`): a new `run_id` means a new Redis process. If that
/// one started empty (no persistence file loaded, not a promoted replica: see
/// [`Identity::kept_data`]), every request Redis took before is gone, and its ask fails
/// `Unavailable` at once, here. If it may have kept its data, the request may still be
/// there and be answered: its ask waits, and if its deadline passes first it reports
/// `Unavailable` (the client saw the connection drop), not `Timeout`. A lost connection
/// alone fails no ask: a Redis that comes back with its data (or never went away: a network
/// blip) still answers them.
///
/// Which asks lost their requests: a waiter is marked `written` under the `pending` lock
/// once its request was taken, with the count of losses read just before the write
/// (`taken`); a loss is counted under the same lock. So an ask is failed either here
/// (written before) or by `taken` (a loss counted since it read the count), never missed. A
/// request written to the new Redis between the reconnection and the client's `INFO`
/// (milliseconds) is failed too: the client cannot tell it from one written to the old
/// Redis. An ask failed here may still have been handled (a proxy that held the request
/// answers it into the new Redis, after the ask gave up): `Unavailable` says the outcome is
/// unknown, as a timeout would.
///
/// Why "may have kept its data" and not "still holds the entry": the client cannot look for
/// its entries: its ACL role (`client_acl`) may not read streams, and the batching script
/// does not return the ids. A Redis that loaded an older snapshot may lack a recent entry:
/// that ask ends `Unavailable` at its deadline. In a cluster, the node that restarted may
/// not hold all the streams the pending asks wrote to; without the slot map at hand the
/// client fails them all, erring on the side of a prompt 503.
impl Shared {
    /// Notes what the client found after reconnecting to `node` (`None` unless Redis is a
    /// cluster); fails the asks whose requests a Redis that restarted empty lost.
    fn identified(&self, node: Option<Server>, id: &Identity) {
        let before = self
            .run_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.clone(), id.run_id.clone());
        if before.is_none_or(|before| before == id.run_id) {
            return;
        }
        self.restarted(node.as_ref(), id);
    }

    fn restarted(&self, node: Option<&Server>, id: &Identity) {
        // Asks that run out of time from now on report Unavailable, whatever became of
        // their requests.
        self.disconnects.fetch_add(1, Ordering::AcqRel);
        if id.kept_data {
            tracing::info!(
                node = ?node,
                run_id = %id.run_id,
                "Redis restarted (or a replica took over) with data: pending asks wait for their answers"
            );
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.losses.fetch_add(1, Ordering::AcqRel);
        let lost: Vec<u64> = pending
            .iter()
            .filter(|(_, waiter)| waiter.written)
            .map(|(request, _)| *request)
            .collect();
        for request in &lost {
            if let Some(waiter) = pending.remove(request) {
                let _ = waiter.reply.send(Err(ProxyError::Unavailable(
                    "Redis restarted without its data; the request was lost".into(),
                )));
            }
        }
        drop(pending);
        tracing::warn!(
            node = ?node,
            run_id = %id.run_id,
            lost = lost.len(),
            "Redis restarted empty: asks whose requests it held failed Unavailable"
        );
    }

    /// Marks ask `id` as taken by Redis, which `send` wrote after reading `losses`; false if
    /// a Redis that restarted empty was found since: the request may have gone with it.
    fn taken(&self, id: u64, losses: u64) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // No waiter: its answer already came.
        let Some(waiter) = pending.get_mut(&id) else {
            return true;
        };
        if self.losses.load(Ordering::Acquire) != losses {
            return false;
        }
        waiter.written = true;
        true
    }
}

impl Shared {
    /// Hands each reply frame to the ask waiting for it.
    fn deliver(&self, frames: Vec<Value>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for frame in frames {
            let Some(frame) = frame.into_bytes() else {
                continue;
            };
            let Some((id, _, _)) = protocol::decode_reply(&frame) else {
                tracing::warn!(len = frame.len(), "dropped a malformed reply frame");
                continue;
            };
            // No waiter: the ask timed out or was dropped; the reply is discarded.
            if let Some(waiter) = pending.remove(&id) {
                let _ = waiter.reply.send(Ok(frame));
            }
        }
    }
}
