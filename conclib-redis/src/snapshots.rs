//! Snapshots of every system on one Redis: each proxy publishes its system's
//! [`SystemSnapshot`] (JSON, with a TTL) every [`ProxyConfig::snapshot_interval`];
//! a [`SnapshotReader`] reads them all back (what the live view shows).
//!
//! Keys: `{ns}:snapshot:{system_id}` holds the JSON of a [`PublishedSystem`] and expires
//! after three intervals; the sorted set `{ns}:snapshots` lists the publishing system ids,
//! scored by when their snapshot expires (ms since the Unix epoch, Redis's clock), so a
//! reader needs neither `SCAN` nor `KEYS`. Any language can read them: `ZRANGE
//! {ns}:snapshots 0 -1`, then `GET {ns}:snapshot:<id>` for each (nil: expired).
//!
//! The actors a snapshot lists only in brief ([`SystemSnapshot::others`]) are published
//! beside it, in chunks of at most [`OTHERS_CHUNK_BYTES`] of JSON with the same TTL, written
//! just before it: `{ns}:snapshot-others:{k}:{system_id}` for `k` in `0..chunks` (chunk 0
//! is always written, empty when there are none), each
//! `{"taken_at_ms":..,"chunks":..,"types":[type names],"actors":[[id, urn, type (index
//! into types), parent, stopping (0 or 1), mailbox_len, handled, rate, errors, panics,
//! restarts, asks_skipped], ..]}`; [`SnapshotReader::others`] reads them back.

use std::time::Duration;

use std::borrow::Cow;

use conclib_core::{ActorBrief, ActorState, SystemSnapshot};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::ProxyConfig;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::error::ServeError;
use crate::protocol::Keys;
use crate::proxy::ProxyStats;

/// What a proxy publishes about its system: from [`SnapshotReader::systems`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedSystem {
    /// The id the proxy serves the system under.
    pub system_id: String,
    /// How often it publishes, in ms (the snapshot expires after three of these).
    pub interval_ms: u64,
    /// What the proxy did so far.
    pub proxy: ProxyStats,
    /// The system's actors: the [`ProxyConfig::snapshot_max_actors`] most telling, most
    /// telling first ([`ActorSystem::snapshot_first`](conclib_core::ActorSystem::snapshot_first)),
    /// the rest counted in [`SystemSnapshot::omitted_actors`]. As read back by
    /// [`SnapshotReader::systems`], its `others` are empty: [`SnapshotReader::others`] reads
    /// them.
    pub snapshot: SystemSnapshot,
    /// The groups the system is a member of ([`ProxyHandle::join`](crate::ProxyHandle::join),
    /// [`ProxyHandle::activate`](crate::ProxyHandle::activate)); its activated actors are in
    /// `snapshot` under their URNs.
    #[serde(default)]
    pub groups: Vec<PublishedGroup>,
}

/// One group a system is a member of, as published with its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedGroup {
    /// The shared URN, or the pattern (`user:{id}`).
    pub name: String,
    /// The group id its clients send to (`~resize`, `~user:*`).
    pub group: String,
    /// Requests of the group this member took so far.
    pub received: u64,
    /// For a pattern: the URNs this system activated and holds now.
    pub activations: u64,
}

/// How long a read of the snapshots counts as someone watching them.
pub(crate) const WATCHED_FOR: Duration = Duration::from_secs(10);

/// While nobody reads the snapshots, a proxy publishes every this many intervals, without
/// the actors listed in brief (at 100,000 actors, most of a publish's cost).
pub(crate) const UNWATCHED_EVERY: u32 = 10;

/// How long a published snapshot lives: three intervals, so one late publish does not
/// make a system vanish from the view.
pub(crate) fn snapshot_ttl(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(1))
}

/// The largest snapshot published, in bytes of JSON: well under what a Redis accepts in one
/// value by default (`proto-max-bulk-len` 512 MiB, but `start_redis` and many managed
/// Redis set far less), and what a viewer fetches every second.
pub const MAX_SNAPSHOT_BYTES: usize = 4 * 1024 * 1024;

/// `published` as JSON, shrunk to [`MAX_SNAPSHOT_BYTES`] if it is larger: the actors at the
/// end of its list are left out and counted in `omitted_actors` (a snapshot never fails
/// for its size).
fn fitted_json(published: &PublishedSystem) -> Result<String, serde_json::Error> {
    let json = serde_json::to_string(published)?;
    if json.len() <= MAX_SNAPSHOT_BYTES || published.snapshot.actors.is_empty() {
        return Ok(json);
    }
    let mut shrunk = published.clone();
    let mut json = json;
    while json.len() > MAX_SNAPSHOT_BYTES && !shrunk.snapshot.actors.is_empty() {
        // Keep the share of actors that fits, with a margin: one or two rounds.
        let n = shrunk.snapshot.actors.len();
        let keep = ((n as f64) * (MAX_SNAPSHOT_BYTES as f64 * 0.9) / json.len() as f64) as usize;
        let keep = keep.min(n - 1);
        shrunk.snapshot.omitted_actors += n - keep;
        shrunk.snapshot.actors.truncate(keep);
        json = serde_json::to_string(&shrunk)?;
    }
    tracing::warn!(
        system = %published.system_id,
        listed = shrunk.snapshot.actors.len(),
        omitted = shrunk.snapshot.omitted_actors,
        "the system's snapshot was over {MAX_SNAPSHOT_BYTES} bytes: published with fewer actors"
    );
    Ok(json)
}

/// The most JSON in one chunk of a snapshot's [`others`](SystemSnapshot::others): well under
/// the 1 MiB a Redis started by [`start_redis`](crate::start_redis) accepts at the least.
pub const OTHERS_CHUNK_BYTES: usize = 512 * 1024;

/// The key of chunk `k` of a system's others (the chunk number first, so that no system id
/// can name another system's chunk).
fn others_key(keys: &Keys, system_id: &str, k: usize) -> String {
    let snapshot = keys.snapshot(system_id);
    let ns = snapshot
        .strip_suffix(system_id)
        .and_then(|s| s.strip_suffix(":snapshot:"))
        .unwrap_or_default();
    format!("{ns}:snapshot-others:{k}:{system_id}")
}

/// One actor in a chunk, as written.
type RowOut<'a> = (
    u64,
    Option<&'a str>,
    usize,
    Option<u64>,
    u8,
    usize,
    u64,
    f64,
    u64,
    u64,
    u64,
    u64,
);

/// One actor in a chunk, as read.
type RowIn = (
    u64,
    Option<String>,
    usize,
    Option<u64>,
    u8,
    usize,
    u64,
    f64,
    u64,
    u64,
    u64,
    u64,
);

#[derive(Deserialize)]
struct ChunkIn {
    taken_at_ms: u64,
    chunks: usize,
    types: Vec<String>,
    actors: Vec<RowIn>,
}

/// The chunks of `snapshot.others`, as JSON (at least one, empty when there are none).
fn others_chunks(snapshot: &SystemSnapshot) -> Result<Vec<String>, serde_json::Error> {
    // Each chunk: its type names and its rows, until it is full.
    let mut bodies: Vec<(Vec<&str>, Vec<u8>)> = vec![(Vec::new(), Vec::new())];
    for actor in &snapshot.others {
        let (types, rows) = bodies.last_mut().expect("one at least");
        let type_index = match types.iter().position(|t| *t == actor.type_name) {
            Some(at) => at,
            None => {
                types.push(&actor.type_name);
                types.len() - 1
            }
        };
        let row: RowOut<'_> = (
            actor.id,
            actor.urn.as_deref(),
            type_index,
            actor.parent,
            u8::from(actor.state == ActorState::Stopping),
            actor.mailbox_len,
            actor.handled,
            (actor.rate * 100.0).round() / 100.0,
            actor.errors,
            actor.panics,
            actor.restarts,
            actor.asks_skipped,
        );
        if !rows.is_empty() {
            rows.push(b',');
        }
        serde_json::to_writer(&mut *rows, &row)?;
        if rows.len() >= OTHERS_CHUNK_BYTES - 64 * 1024 {
            bodies.push((Vec::new(), Vec::new()));
        }
    }
    if bodies.len() > 1 && bodies.last().is_some_and(|(_, rows)| rows.is_empty()) {
        bodies.pop();
    }
    let chunks = bodies.len();
    bodies
        .into_iter()
        .map(|(types, rows)| {
            let head = format!(
                "{{\"taken_at_ms\":{},\"chunks\":{chunks},\"types\":{},\"actors\":[",
                snapshot.taken_at_ms,
                serde_json::to_string(&types)?
            );
            let mut json = String::with_capacity(head.len() + rows.len() + 2);
            json.push_str(&head);
            // Only serde_json wrote `rows`: UTF-8.
            json.push_str(std::str::from_utf8(&rows).unwrap_or_default());
            json.push_str("]}");
            Ok(json)
        })
        .collect()
}

/// `name` shared: one copy of each of the first 4,096 type names read (Rust type names:
/// a program has few), so that 100,000 actors listed in brief do not each hold a copy.
fn intern(name: String) -> Cow<'static, str> {
    static NAMES: std::sync::Mutex<Option<std::collections::HashSet<&'static str>>> =
        std::sync::Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(Default::default);
    if let Some(name) = names.get(name.as_str()) {
        return Cow::Borrowed(name);
    }
    if names.len() >= 4_096 {
        return Cow::Owned(name);
    }
    let name: &'static str = Box::leak(name.into_boxed_str());
    names.insert(name);
    Cow::Borrowed(name)
}

/// Writes one snapshot (its others first) and its index entry; prunes index entries long
/// expired. `now` is Redis's clock in ms (so that publishers on machines whose clocks differ
/// agree).
pub(crate) async fn publish(
    client: &Client,
    keys: &Keys,
    published: &PublishedSystem,
    ttl: Duration,
    now: u64,
) -> Result<(), fred::error::Error> {
    let parse_error = |e: serde_json::Error| {
        fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string())
    };
    let ttl_ms = ttl.as_millis() as u64;
    let chunks = others_chunks(&published.snapshot).map_err(parse_error)?;
    let writes = chunks.into_iter().enumerate().map(|(k, chunk)| {
        conn::call(
            client,
            keyed("SET"),
            vec![
                owned(others_key(keys, &published.system_id, k)),
                owned(chunk),
                conn::s("PX"),
                Value::Integer(ttl_ms as i64),
            ],
        )
    });
    for written in futures_util::future::join_all(writes).await {
        written?;
    }
    let json = if published.snapshot.others.is_empty() {
        fitted_json(published)
    } else {
        let s = &published.snapshot;
        fitted_json(&PublishedSystem {
            system_id: published.system_id.clone(),
            interval_ms: published.interval_ms,
            proxy: published.proxy,
            snapshot: SystemSnapshot {
                system: s.system.clone(),
                pid: s.pid,
                taken_at_ms: s.taken_at_ms,
                actors: s.actors.clone(),
                omitted_actors: s.omitted_actors,
                others: Vec::new(),
                messages: s.messages.clone(),
            },
            groups: published.groups.clone(),
        })
    }
    .map_err(parse_error)?;
    let key = keys.snapshot(&published.system_id);
    conn::call(
        client,
        keyed("SET"),
        vec![
            owned(key),
            owned(json),
            conn::s("PX"),
            Value::Integer(ttl_ms as i64),
        ],
    )
    .await?;
    let index = keys.snapshot_index();
    conn::call(
        client,
        keyed("ZADD"),
        vec![
            owned(index.clone()),
            Value::Integer((now + ttl_ms) as i64),
            owned(published.system_id.clone()),
        ],
    )
    .await?;
    // Systems gone for an hour leave the index (their keys expired long ago).
    conn::call(
        client,
        keyed("ZREMRANGEBYSCORE"),
        vec![
            owned(index),
            conn::s("-inf"),
            Value::Integer(now.saturating_sub(3_600_000) as i64),
        ],
    )
    .await?;
    Ok(())
}

/// Removes a system's snapshot (its proxy shut down): the snapshot and the first chunk of
/// its others (any further chunks expire with their TTL; no reader looks at them without
/// the first).
pub(crate) async fn withdraw(
    client: &Client,
    keys: &Keys,
    system_id: &str,
) -> Result<(), fred::error::Error> {
    conn::call(client, keyed("DEL"), vec![owned(keys.snapshot(system_id))]).await?;
    conn::call(
        client,
        keyed("DEL"),
        vec![owned(others_key(keys, system_id, 0))],
    )
    .await?;
    conn::call(
        client,
        keyed("ZREM"),
        vec![owned(keys.snapshot_index()), owned(system_id.to_owned())],
    )
    .await?;
    Ok(())
}

/// Reads the snapshots every proxy of a namespace publishes.
///
/// ```no_run
/// # async fn run() -> Result<(), conclib_redis::ServeError> {
/// let reader = conclib_redis::SnapshotReader::connect(&conclib_redis::ProxyConfig::new(
///     "redis://127.0.0.1:6379",
/// ))
/// .await?;
/// for system in reader.systems().await? {
///     println!("{}: {} actors", system.system_id, system.snapshot.actors.len());
/// }
/// # Ok(()) }
/// ```
pub struct SnapshotReader {
    client: Client,
    keys: Keys,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// Connects to the Redis of `config` (its URL and namespace).
    ///
    /// # Errors
    /// [`ServeError::Config`], or [`ServeError::Unavailable`] if Redis cannot be reached
    /// within [`ProxyConfig::connect_timeout`].
    pub async fn connect(config: &ProxyConfig) -> Result<Self, ServeError> {
        let client = config
            .builder::<()>(config.command_timeout)
            .map_err(|e| ServeError::Config(e.to_string()))?
            .build()
            .map_err(|e| ServeError::Config(e.to_string()))?;
        conn::init_within(&[&client], config.connect_timeout)
            .await
            .map_err(ServeError::Unavailable)?;
        Ok(SnapshotReader {
            client,
            keys: Keys::new(&config.namespace),
        })
    }

    /// Every system whose snapshot has not expired, sorted by system id. A snapshot that
    /// does not parse (another version, a hostile writer) is skipped with a warning. (The
    /// keys' TTL decides what has expired, not the clock of the machine reading.)
    ///
    /// # Errors
    /// [`ServeError::Redis`] if Redis fails the read.
    pub async fn systems(&self) -> Result<Vec<PublishedSystem>, ServeError> {
        // Someone is watching: proxies publish in full every interval for a while.
        let _ = conn::call(
            &self.client,
            keyed("SET"),
            vec![
                owned(self.keys.watched()),
                conn::s("1"),
                conn::s("PX"),
                Value::Integer(WATCHED_FOR.as_millis() as i64),
            ],
        )
        .await;
        let ids = conn::call(
            &self.client,
            keyed("ZRANGEBYSCORE"),
            vec![
                owned(self.keys.snapshot_index()),
                conn::s("-inf"),
                conn::s("+inf"),
            ],
        )
        .await
        .map_err(|e| ServeError::Redis(e.to_string()))?;
        let ids: Vec<String> = match ids {
            Value::Array(ids) => ids
                .iter()
                .filter_map(|v| as_bytes(v).map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect(),
            _ => Vec::new(),
        };
        let reads = ids.iter().map(|id| {
            conn::call(
                &self.client,
                keyed("GET"),
                vec![owned(self.keys.snapshot(id))],
            )
        });
        let mut systems = Vec::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(futures_util::future::join_all(reads).await) {
            let value = value.map_err(|e| ServeError::Redis(e.to_string()))?;
            let Some(json) = as_bytes(&value) else {
                continue; // expired between the two reads
            };
            match serde_json::from_slice::<PublishedSystem>(json) {
                Ok(system) => systems.push(system),
                Err(e) => {
                    tracing::warn!(system = %id, error = %e, "skipping a snapshot that does not parse")
                }
            }
        }
        systems.sort_by(|a, b| a.system_id.cmp(&b.system_id));
        Ok(systems)
    }

    /// The actors that the snapshot of `system_id` taken at `taken_at_ms` (its
    /// [`SystemSnapshot::taken_at_ms`]) lists only in brief, by id: `None` if that snapshot
    /// is no longer the published one (read [`systems`](Self::systems) again), or its
    /// others expired.
    ///
    /// # Errors
    /// [`ServeError::Redis`] if Redis fails the read.
    pub async fn others(
        &self,
        system_id: &str,
        taken_at_ms: u64,
    ) -> Result<Option<Vec<ActorBrief>>, ServeError> {
        let read = |k: usize| {
            conn::call(
                &self.client,
                keyed("GET"),
                vec![owned(others_key(&self.keys, system_id, k))],
            )
        };
        let parse = |value: Value| -> Option<ChunkIn> {
            let chunk = serde_json::from_slice::<ChunkIn>(as_bytes(&value)?);
            if let Err(e) = &chunk {
                tracing::warn!(system = %system_id, error = %e, "skipping others that do not parse");
            }
            chunk.ok().filter(|c| c.taken_at_ms == taken_at_ms)
        };
        let first = read(0)
            .await
            .map_err(|e| ServeError::Redis(e.to_string()))?;
        let Some(first) = parse(first) else {
            return Ok(None);
        };
        let rest = futures_util::future::join_all((1..first.chunks).map(read)).await;
        let mut chunks = vec![first];
        for value in rest {
            let value = value.map_err(|e| ServeError::Redis(e.to_string()))?;
            let Some(chunk) = parse(value) else {
                return Ok(None);
            };
            chunks.push(chunk);
        }
        let mut others = Vec::with_capacity(chunks.iter().map(|c| c.actors.len()).sum());
        for chunk in chunks {
            let types: Vec<Cow<'static, str>> = chunk.types.into_iter().map(intern).collect();
            for row in chunk.actors {
                let (id, urn, t, parent, stopping, mailbox_len, handled, rate) =
                    (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
                others.push(ActorBrief {
                    id,
                    urn,
                    type_name: types.get(t).cloned().unwrap_or_default(),
                    parent,
                    state: if stopping == 1 {
                        ActorState::Stopping
                    } else {
                        ActorState::Running
                    },
                    mailbox_len,
                    handled,
                    rate,
                    errors: row.8,
                    panics: row.9,
                    restarts: row.10,
                    asks_skipped: row.11,
                });
            }
        }
        Ok(Some(others))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot too big for one value is published shrunk, saying what it left out.
    #[tokio::test]
    async fn a_snapshot_over_the_limit_is_shrunk_to_fit() {
        struct Idle;
        impl conclib_core::Actor for Idle {}
        let system = conclib_core::ActorSystem::new("big");
        system.spawn(Idle).await.unwrap();
        let mut snapshot = system.snapshot();
        let mut actor = snapshot.actors[0].clone();
        actor.last_error = Some("x".repeat(1_000));
        snapshot.actors = vec![actor; 10_000]; // about 10 MB of JSON
        let published = PublishedSystem {
            system_id: "big".into(),
            interval_ms: 1_000,
            proxy: Default::default(),
            snapshot,
            groups: Vec::new(),
        };
        let json = fitted_json(&published).unwrap();
        assert!(json.len() <= MAX_SNAPSHOT_BYTES, "{} bytes", json.len());
        let back: PublishedSystem = serde_json::from_str(&json).unwrap();
        assert!(
            back.snapshot.actors.len() > 1_000,
            "{}",
            back.snapshot.actors.len()
        );
        assert_eq!(
            back.snapshot.actors.len() + back.snapshot.omitted_actors,
            10_000
        );
        // Small enough: as it was.
        let small = PublishedSystem {
            snapshot: system.snapshot(),
            ..published
        };
        assert_eq!(
            fitted_json(&small).unwrap(),
            serde_json::to_string(&small).unwrap()
        );
    }

    /// The actors listed in brief travel beside the snapshot, in as many chunks as their
    /// size needs, and read back whole; a reader asking for another snapshot's gets `None`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_others_are_published_in_chunks_and_read_back() {
        let base = ProxyConfig::default().with_namespace("snap-others");
        let daemon = crate::start_redis(&base).await.unwrap();
        let config = daemon.config(&base);
        let reader = SnapshotReader::connect(&config).await.unwrap();

        struct Idle;
        impl conclib_core::Actor for Idle {}
        let system = conclib_core::ActorSystem::new("many");
        for n in 0..30 {
            system
                .build(Idle)
                .urn(format!("idle:{n}"))
                .spawn()
                .await
                .unwrap();
        }
        let mut snapshot = system.snapshot_first(5);
        assert_eq!(snapshot.others.len(), 25);
        // Many more, with long URNs: several chunks.
        let template = snapshot.others[0].clone();
        snapshot.others = (0..30_000u64)
            .map(|n| ActorBrief {
                id: 1_000 + n,
                urn: Some(format!("a-rather-long-urn-for-a-session:{n:08}")),
                mailbox_len: (n % 7) as usize,
                handled: n * 3,
                rate: (n % 100) as f64 / 4.0,
                errors: n % 2,
                state: if n % 5 == 0 {
                    ActorState::Stopping
                } else {
                    ActorState::Running
                },
                ..template.clone()
            })
            .collect();
        let chunks = others_chunks(&snapshot).unwrap();
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= OTHERS_CHUNK_BYTES));
        let published = PublishedSystem {
            system_id: "many".into(),
            interval_ms: 1_000,
            proxy: Default::default(),
            snapshot,
            groups: Vec::new(),
        };
        let ttl = Duration::from_secs(30);
        publish(&reader.client, &reader.keys, &published, ttl, 1)
            .await
            .unwrap();
        let systems = reader.systems().await.unwrap();
        assert_eq!(systems.len(), 1);
        let read = &systems[0].snapshot;
        assert_eq!(read.actors, published.snapshot.actors);
        assert!(read.others.is_empty(), "the snapshot's own key: no others");
        let others = reader
            .others("many", read.taken_at_ms)
            .await
            .unwrap()
            .expect("the others of this snapshot");
        assert_eq!(others, published.snapshot.others);
        assert_eq!(
            reader.others("many", read.taken_at_ms + 1).await.unwrap(),
            None,
            "another snapshot's"
        );

        // A later snapshot with none: the others read back empty, not stale.
        let mut later = published.clone();
        later.snapshot.taken_at_ms += 1_000;
        later.snapshot.others.clear();
        publish(&reader.client, &reader.keys, &later, ttl, 2)
            .await
            .unwrap();
        assert_eq!(
            reader
                .others("many", later.snapshot.taken_at_ms)
                .await
                .unwrap(),
            Some(Vec::new())
        );
        // Withdrawn: nothing to read.
        withdraw(&reader.client, &reader.keys, "many")
            .await
            .unwrap();
        assert!(reader.systems().await.unwrap().is_empty());
        assert_eq!(
            reader
                .others("many", later.snapshot.taken_at_ms)
                .await
                .unwrap(),
            None
        );
        drop(reader);
        daemon.shutdown().unwrap();
    }
}
