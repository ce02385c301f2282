//! The demo's actors and messages: a counter and a key-value store, both reachable from other
//! processes through the Redis proxy (`#[handle(remote)]`).
//!
//! The web API ([`crate::web`]) asks them with a
//! [`ProxyClient`](conclib::redis::ProxyClient); the demo binary and the end-to-end tests spawn
//! them in an actor system ([`crate::cluster`]).

use std::collections::HashMap;

use conclib::{actor, message};
use serde::{Deserialize, Serialize};

/// The URN prefix of counters: the counter `hits` answers at `counter:hits`.
pub const COUNTER_URN_PREFIX: &str = "counter:";

/// The URN of the key-value store.
pub const KV_URN: &str = "kv";

/// The largest step one [`Increment`] may add.
pub const MAX_STEP: u64 = 1_000;

/// The longest value the key-value store accepts, in bytes.
pub const MAX_VALUE_LEN: usize = 1_024;

/// The URN of the counter called `name`.
#[must_use]
pub fn counter_urn(name: &str) -> String {
    format!("{COUNTER_URN_PREFIX}{name}")
}

/// Adds `by` to a counter; answered with the new value.
#[message(response = u64, error = CounterError, name = "demo.Increment")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Increment {
    /// How much to add: 1 to [`MAX_STEP`].
    pub by: u64,
}

/// Reads a counter.
///
/// It cannot fail, but its error type is [`CounterError`] rather than the default
/// `Infallible`: a [`ProxyClient`](conclib::redis::ProxyClient) decodes the error type of
/// what it asks, and `Infallible` is not `Deserialize`.
#[message(response = u64, error = CounterError, name = "demo.ReadCounter")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadCounter;

/// Why a counter refused an [`Increment`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterError {
    /// The step is 0 or larger than [`MAX_STEP`].
    StepOutOfRange {
        /// The step asked for.
        by: u64,
        /// The largest step allowed.
        max: u64,
    },
    /// The counter would overflow.
    Overflow {
        /// The counter's value.
        value: u64,
        /// The step asked for.
        by: u64,
    },
}

/// A counter, to be spawned under a URN from [`counter_urn`].
#[actor]
#[derive(Debug, Default)]
pub struct Counter {
    value: u64,
}

#[actor]
impl Counter {
    /// Adds to the counter, within [`MAX_STEP`] and without overflowing.
    #[handle(remote)]
    fn increment(&mut self, Increment { by }: Increment) -> Result<u64, CounterError> {
        if by == 0 || by > MAX_STEP {
            return Err(CounterError::StepOutOfRange { by, max: MAX_STEP });
        }
        self.value = self.value.checked_add(by).ok_or(CounterError::Overflow {
            value: self.value,
            by,
        })?;
        Ok(self.value)
    }

    /// The counter's value.
    #[handle(remote)]
    fn read(&mut self, _: ReadCounter) -> Result<u64, CounterError> {
        Ok(self.value)
    }
}

/// Stores `value` under `key`; answered with the value it replaced, if any.
#[message(response = Option<String>, error = KvError, name = "demo.Put")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put {
    /// The key.
    pub key: String,
    /// The value: at most [`MAX_VALUE_LEN`] bytes.
    pub value: String,
}

/// Reads the value under `key`, if any.
#[message(response = Option<String>, error = KvError, name = "demo.Get")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Get {
    /// The key.
    pub key: String,
}

/// Why the key-value store refused a [`Put`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvError {
    /// The value is longer than [`MAX_VALUE_LEN`].
    ValueTooLong {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// An in-memory key-value store, spawned under [`KV_URN`].
#[actor(urn = "kv")]
#[derive(Debug, Default)]
pub struct KvStore {
    entries: HashMap<String, String>,
}

#[actor]
impl KvStore {
    /// Stores a value, refusing values over [`MAX_VALUE_LEN`].
    #[handle(remote)]
    fn put(&mut self, Put { key, value }: Put) -> Result<Option<String>, KvError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(KvError::ValueTooLong {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        Ok(self.entries.insert(key, value))
    }

    /// Reads a value.
    #[handle(remote)]
    fn get(&mut self, Get { key }: Get) -> Result<Option<String>, KvError> {
        Ok(self.entries.get(&key).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclib::{ActorSystem, AskError};

    #[tokio::test]
    async fn counter_and_store_answer_locally() {
        let system = ActorSystem::new("actors-test");
        let counter = system
            .build(Counter::default())
            .urn(counter_urn("t"))
            .spawn()
            .await
            .unwrap();
        assert_eq!(counter.ask(Increment { by: 2 }).await, Ok(2));
        assert_eq!(
            counter.ask(Increment { by: 0 }).await,
            Err(AskError::Handler(CounterError::StepOutOfRange {
                by: 0,
                max: MAX_STEP
            }))
        );
        assert_eq!(counter.ask(ReadCounter).await, Ok(2));

        let kv = system.spawn(KvStore::default()).await.unwrap();
        assert_eq!(kv.urn().map(|u| u.as_str()), Some(KV_URN));
        let put = |value: &str| Put {
            key: "k".into(),
            value: value.into(),
        };
        assert_eq!(kv.ask(put("a")).await, Ok(None));
        assert_eq!(kv.ask(put("b")).await, Ok(Some("a".into())));
        assert_eq!(kv.ask(Get { key: "k".into() }).await, Ok(Some("b".into())));
        assert!(matches!(
            kv.ask(put(&"x".repeat(MAX_VALUE_LEN + 1))).await,
            Err(AskError::Handler(KvError::ValueTooLong { .. }))
        ));
        system
            .shutdown(std::time::Duration::from_secs(5))
            .await
            .unwrap();
    }
}

/// The URN of the pool of [`Hasher`] process actors (when the cluster runs one).
pub const HASHERS_URN: &str = "hashers";

/// The URN of the [`Tracker`], the root of a small supervised tree.
pub const TRACKER_URN: &str = "tracker";

/// The most rounds one [`struct@Hash`] may ask for.
pub const MAX_ROUNDS: u32 = 1_000_000;

/// Hashes `seed` `rounds` times (CPU-bound work for a pool of process actors); answered with
/// the hash and the id of the process that computed it.
#[message(response = Hashed, error = HashError, name = "demo.Hash")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hash {
    /// Where to start.
    pub seed: u64,
    /// How many rounds: 1 to [`MAX_ROUNDS`].
    pub rounds: u32,
}

/// The answer to a [`struct@Hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashed {
    /// The final hash.
    pub hash: u64,
    /// The process that computed it (a member of the pool).
    pub pid: u32,
}

/// Why a [`Hasher`] refused a [`struct@Hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashError {
    /// 0 rounds, or more than [`MAX_ROUNDS`].
    RoundsOutOfRange {
        /// The rounds asked for.
        rounds: u32,
        /// The most allowed.
        max: u32,
    },
}

/// FNV-1a over the eight bytes of the previous hash, `rounds` times from `seed`: the
/// CPU-bound work of the examples' hashers.
#[must_use]
pub fn hash_rounds(seed: u64, rounds: u32) -> u64 {
    let mut h = seed;
    for _ in 0..rounds {
        let mut next: u64 = 0xcbf2_9ce4_8422_2325;
        for b in h.to_le_bytes() {
            next = (next ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h = next;
    }
    h
}

/// Hashes in a process of its own: the demo runs a pool of them behind [`HASHERS_URN`].
#[actor]
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Hasher;

#[actor]
impl Hasher {
    /// [`hash_rounds`] of the message, with the pid of the process that ran it.
    #[handle(remote)]
    fn hash(&mut self, Hash { seed, rounds }: Hash) -> Result<Hashed, HashError> {
        if rounds == 0 || rounds > MAX_ROUNDS {
            return Err(HashError::RoundsOutOfRange {
                rounds,
                max: MAX_ROUNDS,
            });
        }
        Ok(Hashed {
            hash: hash_rounds(seed, rounds),
            pid: std::process::id(),
        })
    }
}

/// Counts a visit of `page`; a tell, handled by one of the [`Tracker`]'s shards.
#[message(name = "demo.Visit")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Visit {
    /// The page visited.
    pub page: String,
}

/// Visits counted so far by each shard of the [`Tracker`], in shard order.
#[message(response = Vec<u64>, error = CounterError, name = "demo.ShardCounts")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardCounts;

/// The root of a small supervised tree: it spawns [`Shard`] children (URNs
/// `tracker:shard:N`) and hands each [`Visit`] to one of them by page. A shard that panics
/// is restarted by its parent; the live view shows the tree.
#[actor(urn = "tracker")]
#[derive(Debug)]
pub struct Tracker {
    shards: Vec<conclib::ActorRef<Shard>>,
    count: usize,
}

impl Tracker {
    /// A tracker with `count` shards (at least one).
    #[must_use]
    pub fn new(count: usize) -> Self {
        Tracker {
            shards: Vec::new(),
            count: count.max(1),
        }
    }
}

#[actor]
impl Tracker {
    #[on_start]
    async fn start(&mut self, ctx: &mut conclib::Context<Self>) -> Result<(), conclib::SpawnError> {
        for i in 0..self.count {
            let shard = ctx
                .build_child(Shard::default())
                .urn(format!("{TRACKER_URN}:shard:{i}"))
                .spawn()
                .await?;
            self.shards.push(shard);
        }
        Ok(())
    }

    /// Hands the visit to the shard of its page.
    #[handle(remote)]
    async fn visit(&mut self, visit: Visit) {
        let shard = &self.shards[shard_of(&visit.page, self.shards.len())];
        // A shard that stopped for good is not replaced here: the visit is dropped.
        let _ = shard.tell(visit).await;
    }

    /// What each shard counted.
    #[handle(remote)]
    async fn shard_counts(&mut self, _: ShardCounts) -> Result<Vec<u64>, CounterError> {
        let mut counts = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            // A shard that stopped counts nothing.
            counts.push(shard.ask(ShardCount).await.unwrap_or(0));
        }
        Ok(counts)
    }
}

/// The shard of `page` among `shards`.
fn shard_of(page: &str, shards: usize) -> usize {
    let sum = page.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    sum % shards
}

/// One shard of the [`Tracker`]: counts visits.
#[actor]
#[derive(Debug, Default)]
pub struct Shard {
    visits: u64,
}

#[actor]
impl Shard {
    #[handle]
    fn visit(&mut self, _: Visit) {
        self.visits += 1;
    }

    #[handle]
    fn count(&mut self, _: ShardCount) -> u64 {
        self.visits
    }
}

/// A shard's count of visits (asked by its [`Tracker`]).
#[message(response = u64)]
struct ShardCount;
