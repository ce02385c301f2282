//! Snapshots of every system on one Redis: each proxy publishes its system's
//! [`SystemSnapshot`] (JSON, with a TTL) every [`ProxyConfig::snapshot_interval`];
//! a [`SnapshotReader`] reads them all back (what the live view shows).
//!
//! Keys: `{ns}:snapshot:{system_id}` holds the JSON of a [`PublishedSystem`] and expires
//! after three intervals; the sorted set `{ns}:snapshots` lists the publishing system ids,
//! scored by when their snapshot expires (ms since the Unix epoch, Redis's clock), so a
//! reader needs neither `SCAN` nor `KEYS`. Any language can read them: `ZRANGE
//! {ns}:snapshots 0 -1`, then `GET {ns}:snapshot:<id>` for each (nil: expired).

use std::time::Duration;

use conclib_core::SystemSnapshot;
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
    /// The system's actors: the first [`ProxyConfig::snapshot_max_actors`] by id, the rest
    /// counted in [`SystemSnapshot::omitted_actors`].
    pub snapshot: SystemSnapshot,
}

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

/// Writes one snapshot and its index entry; prunes index entries long expired. `now` is
/// Redis's clock in ms (so that publishers on machines whose clocks differ agree).
pub(crate) async fn publish(
    client: &Client,
    keys: &Keys,
    published: &PublishedSystem,
    ttl: Duration,
    now: u64,
) -> Result<(), fred::error::Error> {
    let json = fitted_json(published)
        .map_err(|e| fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string()))?;
    let key = keys.snapshot(&published.system_id);
    let ttl_ms = ttl.as_millis() as u64;
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

/// Removes a system's snapshot (its proxy shut down).
pub(crate) async fn withdraw(
    client: &Client,
    keys: &Keys,
    system_id: &str,
) -> Result<(), fred::error::Error> {
    conn::call(client, keyed("DEL"), vec![owned(keys.snapshot(system_id))]).await?;
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
}
