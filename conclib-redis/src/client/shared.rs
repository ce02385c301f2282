//! What the parts of a [`ProxyClient`](crate::ProxyClient) share ([`Shared`]): its
//! connections, the requests waiting for their replies, the route cache and the outboxes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};

use fred::bytes::Bytes;
use fred::clients::Pool;
use fred::prelude::*;

use super::queued::StreamOutbox;
use super::resolved::Resolved;
use super::waiter::Waiter;
use crate::config::ProxyConfig;
use crate::protocol::Keys;

/// How long the reply reader blocks in one `BLMPOP`, in seconds.
pub(super) const REPLY_BLOCK_SECS: u64 = 2;
/// The most replies taken by one `BLMPOP`.
pub(super) const REPLY_BATCH: i64 = 1024;

/// The state a client's clones, its tasks and its parts share.
pub(super) struct Shared {
    pub(super) config: ProxyConfig,
    pub(super) keys: Keys,
    pub(super) reply_key: String,
    /// `reply_key` as every ask's `reply` field: shared, so that each request (and the copy of
    /// its batch's arguments kept for a retry) takes a reference, not a copy.
    pub(super) reply_field: Bytes,
    pub(super) pool: Pool,
    pub(super) next_id: AtomicU64,
    pub(super) pending: Mutex<HashMap<u64, Waiter>>,
    /// Appends a batch of requests to a system's stream ([`SEND_SCRIPT`](crate::protocol::SEND_SCRIPT)).
    pub(super) send: crate::script::Script,
    pub(super) cache: RwLock<HashMap<String, Resolved>>,
    /// The route look-ups under way, by URN: each a receiver whose sender the look-up holds
    /// and drops when it ends (`route.rs`, `look_up_once`).
    pub(super) looking_up: Mutex<HashMap<String, tokio::sync::watch::Receiver<()>>>,
    /// URNs this client has resolved before (bounded): a URN it knew that Redis no longer
    /// knows right after Redis restarted is not reported unknown (see `resolve`).
    pub(super) known: Mutex<HashSet<String>>,
    /// The `run_id` of the Redis this client connected to (changes when Redis restarts).
    pub(super) run_id: Mutex<Option<String>>,
    /// Requests waiting to be written, by request stream.
    pub(super) outbox: Mutex<HashMap<Arc<str>, StreamOutbox>>,
    pub(super) closed: AtomicBool,
    /// Bumped each time a connection to Redis is lost (fred says so, or the reply reader
    /// fails) and each time Redis turns out to have restarted: an ask that began before and
    /// then runs out of time reports [`ProxyError::Unavailable`], not a timeout.
    ///
    /// [`ProxyError::Unavailable`]: crate::ProxyError::Unavailable
    pub(super) disconnects: AtomicU64,
    /// Whether each command connection (`pool.clients()`, same order) is usable: false from
    /// fred's report that it lost the connection until it reports the reconnection. Fred's
    /// own state says "connected" until its first reconnection attempt; a command handed to
    /// it meanwhile waits (queued, unwritten) for the reconnection, however long Redis stays
    /// down. With this, a request that cannot be written fails `Unavailable` at once.
    pub(super) links: Vec<AtomicBool>,
    /// Where the search for a usable command connection starts next (round robin).
    pub(super) next_link: AtomicUsize,
    /// Whether Redis is a cluster: then run ids are kept per node.
    pub(super) clustered: bool,
    /// The `run_id` each Redis server had when this client last looked, under `None` unless
    /// Redis is a cluster (then by node). A different one after a reconnection means that
    /// Redis restarted, or that a replica took over (see `io::watch_restarts`).
    pub(super) run_ids: Mutex<HashMap<Option<Server>, String>>,
    /// How many times this client found a Redis that restarted without its predecessor's data
    /// (see [`Shared::restarted`]). Read just before each request is written, and stored
    /// under the `pending` lock.
    pub(super) losses: AtomicU64,
    /// Redis's persistence settings, read once as the client connected.
    pub(super) persistence: std::sync::OnceLock<crate::persistence::Persistence>,
    /// The URNs a proxy refused `Overloaded` lately, refused here past their limit.
    pub(super) holds: super::holds::Holds,
    /// Publishing and subscribing to topics (made on first use).
    pub(super) topics: std::sync::OnceLock<crate::topics::Topics>,
    /// How many hand-over notes this client has read (`moves.rs`): what a test awaits.
    pub(super) moves_seen: tokio::sync::watch::Sender<u64>,
}
