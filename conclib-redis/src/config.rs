//! [`ProxyConfig`]: where Redis is, which namespace, timeouts and limits.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fred::types::Builder;

use crate::durability::Durability;
use crate::error::{ConfigError, ProxyError};
use conclib_codec::{Bincode, Codec};

// Apart from the configuration users set (this file): how it becomes fred's connections
// (what fred is told, not what a user sets), and what a namespace or system id may be (a
// proxy checks its system id with it even when the id is not from here).
mod connection;
mod names;

use connection::redact;
pub(crate) use names::check_system_id;

/// The default Redis URL.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "conclib";

/// How often a proxy publishes its system's snapshot by default.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(2);

/// The default [`ProxyConfig::shutdown_timeout`]: 5 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`ProxyConfig::drain_timeout`]: 10 s.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`ProxyConfig::departed_grace`]: 30 s.
pub const DEFAULT_DEPARTED_GRACE: Duration = Duration::from_secs(30);

/// Configuration shared by [`ProxyClient`](crate::ProxyClient), [`start_proxy`](crate::start_proxy)
/// and [`start_redis`](crate::start_redis).
///
/// Build it with [`ProxyConfig::new`] (a URL), [`ProxyConfig::default`] (local Redis) or
/// [`ProxyConfig::from_env`], then adjust fields or use the `with_*` methods.
///
/// The URL is parsed by fred and may be any of:
/// - `redis://[[user]:password@]host[:port][/db]`: one server; `rediss://` for TLS (crate
///   feature `tls`; the server's certificate must chain to a root the system trusts, or to
///   one in [`tls_ca_file`](Self::tls_ca_file));
/// - `redis-cluster://[[user]:password@]host:port?node=host2:port2&node=...`: a cluster
///   (every key the protocol uses is a single key per command, so any slot layout works);
/// - `redis-sentinel://[[user]:password@]host:port[/db]?sentinelServiceName=NAME&node=host2:port2`:
///   the primary that the sentinels name.
///
/// ```
/// use conclib_redis::ProxyConfig;
/// use std::time::Duration;
/// let config = ProxyConfig::new("redis://:secret@127.0.0.1:6400/0")
///     .with_namespace("shop")
///     .with_ask_timeout(Duration::from_secs(2));
/// assert_eq!(config.namespace, "shop");
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The Redis URL (see above). Env `CONCLIB_REDIS_URL`; default [`DEFAULT_URL`].
    pub url: String,
    /// Prefix of every key, so several applications can share one Redis. No whitespace.
    /// Env `CONCLIB_REDIS_NAMESPACE`; default [`DEFAULT_NAMESPACE`].
    pub namespace: String,
    /// The id a proxy serves its system under (its request queue and URN ownership). Must be
    /// stable across restarts of the same service, and unique among the services sharing the
    /// namespace. `None`: the actor system's name. Env `CONCLIB_REDIS_SYSTEM_ID`.
    pub system_id: Option<String>,
    /// The client's default ask timeout. Env `CONCLIB_REDIS_TIMEOUT_MS`; default 5 s.
    pub ask_timeout: Duration,
    /// How long a told message may wait for the proxy before it is dropped. Default 60 s.
    pub tell_ttl: Duration,
    /// The codec a client encodes its messages with. A proxy decodes any built-in codec
    /// (by the request's `codec` field) and this one. Env `CONCLIB_REDIS_CODEC`
    /// (`bincode` or `msgpack`); default [`Bincode`].
    pub codec: Arc<dyn Codec>,
    /// The largest message, response or error payload accepted, in bytes. Env
    /// `CONCLIB_REDIS_MAX_PAYLOAD`; default 8 MiB.
    pub max_payload: usize,
    /// Command connections of a client (each multiplexes many concurrent asks); the client
    /// has one more, for reading replies. Default 2.
    pub pool_size: usize,
    /// The most requests a proxy reads from Redis at once. Default 256.
    pub batch_size: usize,
    /// The most requests a proxy handles at once; it reads no more until some finish. A
    /// told message counts until its handler has finished (it is acknowledged only then).
    /// Default 8192.
    pub max_in_flight: usize,
    /// The most requests a proxy takes at once from one group's shared stream (a URN served
    /// by several systems, or a URN pattern: see [`ProxyHandle::join`](crate::ProxyHandle::join)).
    /// Small, so that a busy member leaves the rest of the group's requests to the others.
    /// Default 16.
    pub group_in_flight: usize,
    /// Whether a client writes its plain asks to a group's fast lane too (a URN served by
    /// several systems, or a URN pattern: `{ns}:sys:{group}:req:hi`, see the crate docs),
    /// and not only its [`Priority::High`](conclib_core::Priority::High) requests. Such asks
    /// overtake a backlog of tells in the group's stream, and so lose their order with
    /// them. Default `false`: only high-priority requests overtake.
    pub asks_overtake_tells: bool,
    /// How long a request may wait for room in its actor's full mailbox, counted from when
    /// Redis took it (its entry id; a request older than this when its turn comes gets the
    /// room there is or none), before the proxy refuses it: an ask is answered [`AskError::MailboxFull`](conclib_core::AskError::MailboxFull)
    /// (status 12) at once instead of running into its timeout (a web server turns that into
    /// a 503), a tell is dropped with a warning. Default 100 ms.
    pub full_mailbox_wait: Duration,
    /// How long a system's lease (its liveness record, one key per proxy instance and one per
    /// group membership) lasts without renewal; renewed every third of it. Default 4 s.
    ///
    /// It is how long a system that died without leaving proof (another host, a frozen VM,
    /// SIGSTOP) is taken for alive: after it, the members of its patterns take its
    /// activations over with the requests queued for them, and the members of its groups
    /// claim what it had taken (the crate docs, "Failover by membership"; a death on the same
    /// host is seen at once). It is one key per system, so shortening it costs nothing per
    /// URN; it also bounds how long a paused proxy may go on handing requests to its actors
    /// (the fence). Too short, and a system whose process stalls for more than two thirds
    /// of it (a long blocking call on its runtime, swapping) is taken for dead, its
    /// activations moved away and back.
    pub lease_ttl: Duration,
    /// How long a URN key (`{ns}:urn:{urn}`: which system serves an actor) lasts without
    /// renewal; renewed every third of it, hundreds of keys to a command. Default 15 s.
    ///
    /// It is how long the URN of a plain actor (served by one system, not a pattern's
    /// activation) stays with a system that died without proof, and, in a Redis Cluster
    /// (where the takeover does not run), how long an activation does; outside a cluster an
    /// activation's key lives [`activation_urn_ttl`](Self::activation_urn_ttl). The cost is
    /// per URN held: with 100,000 URNs an idle proxy used 1.2-1.3% of a core and sent Redis
    /// 0.5 MB/s at 15 s, 2.6-3.0% and 1.6 MB/s at 5 s (`examples/idle_proxy.rs --urn-ms`,
    /// 2026-11-27, a busy 2-core machine).
    pub urn_ttl: Duration,
    /// How long the URN key of a pattern's activation lasts without renewal, outside a Redis
    /// Cluster (in one, [`urn_ttl`](Self::urn_ttl)); never shorter than `urn_ttl`. Each key is
    /// renewed once a third of its TTL passed since its claim or last renewal, so an
    /// activation passivated or evicted sooner is never renewed: at an activation cap the
    /// renewal's cost follows the activations made, not those held. Default 2 minutes.
    ///
    /// A gone holder's activations do not wait for it: once the holder's
    /// [`lease_ttl`](Self::lease_ttl) lapsed, a request for one of them is taken over by a
    /// live member of the pattern (from the holder's stream, or read from the pattern's
    /// group stream, which frees the key; the crate docs, "Failover by membership"), and the
    /// pattern's directory keeps a gone member listed for this long and a lease, so that the
    /// takeover still looks at it while its keys may live. The key itself stays, naming the
    /// gone holder, until a request comes or this TTL runs out
    /// ([`ProxyClient::activations`](crate::ProxyClient::activations) lists it meanwhile).
    pub activation_urn_ttl: Duration,
    /// How often a proxy looks for actors spawned or stopped since its last look (and
    /// registers or releases their URNs), besides looking at once whenever the system takes
    /// or frees a URN. Default 250 ms.
    pub scan_interval: Duration,
    /// How often a proxy publishes its system's [snapshot](conclib_core::ActorSystem::snapshot)
    /// to Redis for the live view ([`SnapshotReader`](crate::snapshots::SnapshotReader)); `None`: never.
    /// While no reader has read the snapshots for 10 s, only every tenth interval and without
    /// the actors listed in brief (a system of 100,000 actors then costs little). Default 2 s.
    pub snapshot_interval: Option<Duration>,
    /// The most actors a published snapshot lists in full: the most telling (failures in the
    /// last interval, deep mailboxes, high rates; see
    /// [`ActorSystem::snapshot_first`](conclib_core::ActorSystem::snapshot_first)); the rest are
    /// counted in [`SystemSnapshot::omitted_actors`](conclib_core::SystemSnapshot::omitted_actors)
    /// and published in brief beside it (at most
    /// [`MAX_BRIEF_ACTORS`](conclib_core::MAX_BRIEF_ACTORS)). Default 1000.
    pub snapshot_max_actors: usize,
    /// How long a client remembers which system serves a URN. Default 1 s. A URN that moves
    /// meanwhile costs one ask passed on through the system remembered: its answer names the
    /// new holder (a route hint), which the client remembers instead.
    pub resolve_cache_ttl: Duration,
    /// How long a reply list lives after the last reply pushed to it. Default 60 s.
    pub reply_ttl: Duration,
    /// How long a request stream lives after its proxy last renewed it (a system gone for
    /// good leaves nothing behind). Default 1 h.
    pub queue_ttl: Duration,
    /// How long connecting to Redis may take. Until then, a connection refused or lost, or
    /// sentinels naming no primary that answers (one restarting or being replaced, every
    /// sentinel down), is tried again with the pauses of
    /// [`reconnect_max_delay`](Self::reconnect_max_delay): a process started beside its
    /// Redis, or during a failover, starts once Redis answers. A refused password fails at
    /// once; any other failure is reported with the last attempt's error. Default 5 s.
    pub connect_timeout: Duration,
    /// How long one Redis command may take before it fails (blocking reads excepted).
    /// Default 10 s.
    pub command_timeout: Duration,
    /// The longest pause between two attempts to reconnect to Redis (each connection of a
    /// client or a proxy; the pauses start at 20 ms and double up to this, plus up to 100 ms
    /// of jitter). It bounds how long after Redis is back a client or proxy notices: with the
    /// default, 0.5 s at most. Default 400 ms.
    pub reconnect_max_delay: Duration,
    /// Whether [`ProxyHandle::shutdown`](crate::ProxyHandle::shutdown) deletes the system's URN
    /// ownerships at once, rather than letting them lapse after [`urn_ttl`](Self::urn_ttl) so
    /// that a restarting proxy finds the requests queued meanwhile. With it, the system's
    /// request stream is deleted too if nothing waits in it, so that a client still holding
    /// the route (cached for [`resolve_cache_ttl`](Self::resolve_cache_ttl)) looks the URN up
    /// again at once. Either way, clients answer `Unavailable`, not `UnknownUrn`, for the
    /// URNs it served during [`departed_grace`](Self::departed_grace). Default `false`.
    pub release_on_shutdown: bool,
    /// How long [`ProxyHandle::shutdown`](crate::ProxyHandle::shutdown) (and a
    /// [`ReminderPoller`](crate::reminders::ReminderPoller)'s, a [`ProxyClient`](crate::ProxyClient)'s
    /// and a topic subscription's `close`) may take, whatever Redis does: past it, what was
    /// not handed over stays in Redis for the next holder, as after a crash (requests taken
    /// are read again once the lease lapses, reminder claims are taken over), its tasks are
    /// stopped and its connections dropped. A serving process whose Redis is unreachable
    /// still stops on SIGTERM within it (`tests/shutdown_bound.rs`). Default 5 s.
    pub shutdown_timeout: Duration,
    /// How long [`ProxyHandle::drain`](crate::ProxyHandle::drain) may spend handing the
    /// system's activations and queued requests to the other members before it stops as
    /// [`shutdown`](crate::ProxyHandle::shutdown) does (itself bounded by
    /// [`shutdown_timeout`](Self::shutdown_timeout)): what was not handed by then is
    /// passivated and served elsewhere as after a shutdown. Default 10 s.
    pub drain_timeout: Duration,
    /// How long after a graceful [`shutdown`](crate::ProxyHandle::shutdown) the URNs the
    /// system served (its actors, activations, groups and patterns) count as "restarting"
    /// rather than unknown: a client that finds no system serving such a URN looks again
    /// until one registers it or the ask's deadline passes, then answers
    /// [`AskError::Unavailable`](conclib_core::AskError::Unavailable) (retryable), never
    /// `UnknownUrn` (a web app's 404). It is one key per URN (`{ns}:departed:urn:{urn}`,
    /// `{ns}:departed:pattern:{prefix}`), written at shutdown with this TTL; a URN nobody
    /// served still answers `UnknownUrn` at once. Zero: no markers, for a system retired
    /// for good (with [`release_on_shutdown`](Self::release_on_shutdown), its URNs answer
    /// `UnknownUrn` at once). Default 30 s.
    pub departed_grace: Duration,
    /// The `redis-server` executable for [`start_redis`](crate::start_redis). Env
    /// `CONCLIB_REDIS_SERVER`; default: looked up on `PATH`, `/usr/bin`, `/usr/local/bin`.
    pub server_binary: Option<PathBuf>,
    /// The port [`start_redis`](crate::start_redis) uses. Env `CONCLIB_REDIS_PORT`; default: a
    /// free port.
    pub server_port: Option<u16>,
    /// How long [`start_redis`](crate::start_redis) waits for the server to answer PING.
    /// Default 10 s.
    pub startup_timeout: Duration,
    /// A PEM file of CA certificates that TLS connections (`rediss://`, and
    /// `rediss-cluster://` / `rediss-sentinel://`) trust *instead of* the system's roots: for
    /// a Redis whose certificate a private CA signed. Read whenever a client or proxy
    /// connects. Needs the crate feature `tls` and a TLS URL; anything else is a
    /// configuration error. Env `CONCLIB_REDIS_TLS_CA`; default `None` (the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// The limits a proxy admits requests and keeps activations under: pending requests per
    /// URN and per system, the activation cap and its eviction order, memory shedding (the
    /// crate docs, "Overload"). Default: every limit off.
    pub overload: crate::overload::Overload,
    /// What a write that must survive the promotion of a Redis replica (leases and URN
    /// claims, [`StateStore`](crate::scale::StateStore) writes, tells a client reports accepted)
    /// must reach before it counts as done: see [`Durability`] and the crate docs, "Redis
    /// topologies and durability". Checked against the primary's replicas at start-up (a
    /// warning names the topology and the level). Default [`Durability::Primary`].
    pub durability: Durability,
}

impl fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("system_id", &self.system_id)
            .field("ask_timeout", &self.ask_timeout)
            .field("codec", &self.codec.name())
            .field("max_payload", &self.max_payload)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig::new(DEFAULT_URL)
    }
}

impl ProxyConfig {
    /// The defaults, with this Redis URL.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        ProxyConfig {
            url: url.into(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            system_id: None,
            ask_timeout: Duration::from_secs(5),
            tell_ttl: Duration::from_secs(60),
            codec: Arc::new(Bincode),
            max_payload: 8 * 1024 * 1024,
            pool_size: 2,
            batch_size: 256,
            max_in_flight: 8192,
            group_in_flight: 16,
            asks_overtake_tells: false,
            full_mailbox_wait: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(4),
            urn_ttl: Duration::from_secs(15),
            activation_urn_ttl: Duration::from_secs(120),
            scan_interval: Duration::from_millis(250),
            snapshot_interval: Some(DEFAULT_SNAPSHOT_INTERVAL),
            snapshot_max_actors: 1000,
            resolve_cache_ttl: Duration::from_secs(1),
            reply_ttl: Duration::from_secs(60),
            queue_ttl: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            reconnect_max_delay: Duration::from_millis(400),
            release_on_shutdown: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            departed_grace: DEFAULT_DEPARTED_GRACE,
            server_binary: None,
            server_port: None,
            startup_timeout: Duration::from_secs(10),
            tls_ca_file: None,
            overload: crate::overload::Overload::default(),
            durability: Durability::Primary,
        }
    }

    /// The defaults, overridden by these environment variables when set:
    /// `CONCLIB_REDIS_URL`, `CONCLIB_REDIS_NAMESPACE`, `CONCLIB_REDIS_SYSTEM_ID`,
    /// `CONCLIB_REDIS_TIMEOUT_MS`, `CONCLIB_REDIS_CODEC`, `CONCLIB_REDIS_MAX_PAYLOAD`,
    /// `CONCLIB_REDIS_SERVER`, `CONCLIB_REDIS_PORT`, `CONCLIB_REDIS_TLS_CA`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable whose value cannot be used.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
    }

    /// [`from_env`](Self::from_env) with another source of variables.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable whose value cannot be used.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| ConfigError {
                var,
                message: format!("{value:?}: {e}"),
            })
        }
        let mut config = ProxyConfig::default();
        if let Some(url) = lookup("CONCLIB_REDIS_URL") {
            config.url = url;
        }
        if let Some(ns) = lookup("CONCLIB_REDIS_NAMESPACE") {
            config.namespace = ns;
        }
        if let Some(id) = lookup("CONCLIB_REDIS_SYSTEM_ID") {
            config.system_id = Some(id);
        }
        if let Some(ms) = lookup("CONCLIB_REDIS_TIMEOUT_MS") {
            config.ask_timeout = Duration::from_millis(parse("CONCLIB_REDIS_TIMEOUT_MS", &ms)?);
        }
        if let Some(codec) = lookup("CONCLIB_REDIS_CODEC") {
            config.codec = conclib_codec::builtin_codec(codec.trim().as_bytes()).ok_or_else(|| ConfigError {
                var: "CONCLIB_REDIS_CODEC",
                message: format!("unknown codec {codec:?} (built in: bincode, and msgpack with the `msgpack` feature)"),
            })?;
        }
        if let Some(max) = lookup("CONCLIB_REDIS_MAX_PAYLOAD") {
            config.max_payload = parse("CONCLIB_REDIS_MAX_PAYLOAD", &max)?;
        }
        if let Some(server) = lookup("CONCLIB_REDIS_SERVER") {
            config.server_binary = Some(PathBuf::from(server));
        }
        if let Some(port) = lookup("CONCLIB_REDIS_PORT") {
            config.server_port = Some(parse("CONCLIB_REDIS_PORT", &port)?);
        }
        if let Some(ca) = lookup("CONCLIB_REDIS_TLS_CA") {
            config.tls_ca_file = Some(PathBuf::from(ca));
        }
        config.validate().map_err(|message| ConfigError {
            var: "CONCLIB_REDIS_NAMESPACE",
            message,
        })?;
        Ok(config)
    }

    /// Sets the Redis URL.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the system id a proxy serves under.
    #[must_use]
    pub fn with_system_id(mut self, id: impl Into<String>) -> Self {
        self.system_id = Some(id.into());
        self
    }

    /// Sets [`snapshot_interval`](Self::snapshot_interval) (`None`: publish nothing).
    #[must_use]
    pub fn with_snapshot_interval(mut self, every: Option<Duration>) -> Self {
        self.snapshot_interval = every;
        self
    }

    /// Sets [`shutdown_timeout`](Self::shutdown_timeout): how long a shutdown may take.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, bound: Duration) -> Self {
        self.shutdown_timeout = bound;
        self
    }

    /// Sets [`drain_timeout`](Self::drain_timeout): how long a drain may hand work over.
    #[must_use]
    pub fn with_drain_timeout(mut self, bound: Duration) -> Self {
        self.drain_timeout = bound;
        self
    }

    /// Sets [`departed_grace`](Self::departed_grace).
    #[must_use]
    pub fn with_departed_grace(mut self, grace: Duration) -> Self {
        self.departed_grace = grace;
        self
    }

    /// Sets the client's default ask timeout.
    #[must_use]
    pub fn with_ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = timeout;
        self
    }

    /// Sets the client's codec.
    #[must_use]
    pub fn with_codec(mut self, codec: impl Codec) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Sets the payload size limit.
    #[must_use]
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets the PEM file of CA certificates TLS connections trust (see
    /// [`tls_ca_file`](Self::tls_ca_file)).
    #[must_use]
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Checks the namespace (and the system id, if set).
    pub(crate) fn validate(&self) -> Result<(), String> {
        names::check_name("namespace", &self.namespace)?;
        if let Some(id) = &self.system_id {
            names::check_name("system id", id)?;
        }
        if self.pool_size == 0 || self.batch_size == 0 || self.max_in_flight == 0 {
            return Err("pool_size, batch_size and max_in_flight must be at least 1".into());
        }
        Ok(())
    }

    /// How its connections are made (`conn::init_within`).
    pub(crate) fn connecting(&self) -> crate::conn::Connecting {
        crate::conn::Connecting {
            timeout: self.connect_timeout,
            max_pause: self.reconnect_max_delay,
        }
    }
    /// A fred builder for this configuration.
    pub(crate) fn builder<E>(&self, command_timeout: Duration) -> Result<Builder, ProxyError<E>> {
        self.validate().map_err(ProxyError::Config)?;
        connection::builder(
            &self.url,
            self.tls_ca_file.as_deref(),
            self.connecting(),
            command_timeout,
        )
    }
}

#[cfg(test)]
mod tests;
