//! Reading what every proxy of a namespace published: the snapshots, and every actor in
//! brief (a base and its changes, put together).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conclib_core::ActorBrief;
use fred::prelude::*;

use super::layout::{
    ChangesIn, ChunkIn, PublishedSystem, WATCHED_FOR, brief_key, brief_of, intern, set_px,
};
use crate::config::ProxyConfig;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::error::ServeError;
use crate::protocol::Keys;

/// A base as read: its name, and its actors by id.
type NamedBase = (u64, Arc<Vec<ActorBrief>>);

/// Reads the snapshots every proxy of a namespace publishes.
///
/// ```no_run
/// # async fn run() -> Result<(), conclib_redis::ServeError> {
/// let reader = conclib_redis::snapshots::SnapshotReader::connect(&conclib_redis::ProxyConfig::new(
///     "redis://127.0.0.1:6379",
/// ))
/// .await?;
/// for system in reader.systems().await? {
///     println!("{}: {} actors", system.system_id, system.snapshot.actors.len());
/// }
/// # Ok(()) }
/// ```
pub struct SnapshotReader {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    namespace: String,
    /// The last base read of each system, by system id: read again only when its name
    /// changes.
    bases: Mutex<HashMap<String, NamedBase>>,
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
        conn::init_within(&[&client], config.connecting())
            .await
            .map_err(ServeError::Unavailable)?;
        Ok(SnapshotReader {
            client,
            keys: Keys::new(&config.namespace),
            namespace: config.namespace.clone(),
            bases: Mutex::new(HashMap::new()),
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
        let watched_ms = WATCHED_FOR.as_millis() as u64;
        let _ = set_px(&self.client, self.keys.watched(), "1".into(), watched_ms).await;
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
        // The bases of systems gone are forgotten.
        self.bases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| systems.iter().any(|s| &s.system_id == id));
        Ok(systems)
    }

    /// The namespace's reminders, read now: how many are registered and due, those `query`
    /// asks for, and the reports of the running [`ReminderPoller`](crate::reminders::ReminderPoller)s
    /// (each publishes one every [`snapshot_interval`](ProxyConfig::snapshot_interval) of its
    /// client). Costs Redis 2 commands per shard ([`REMINDER_SHARDS`](crate::reminders::REMINDER_SHARDS)),
    /// one more per shard unless `query` names a URN, 2 per reminder listed, and a few more.
    ///
    /// ```no_run
    /// # async fn run(reader: conclib_redis::snapshots::SnapshotReader) -> Result<(), Box<dyn std::error::Error>> {
    /// use conclib_redis::reminders::ReminderQuery;
    /// let overview = reader.reminders(&ReminderQuery::urn("user:42", 50)?).await?;
    /// for r in &overview.reminders {
    ///     println!("{} due at {} (every {} ms)", r.name, r.due_ms, r.period_ms);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ServeError::Redis`] if Redis fails a read.
    pub async fn reminders(
        &self,
        query: &crate::reminders::ReminderQuery,
    ) -> Result<crate::reminders::RemindersOverview, ServeError> {
        crate::reminders::read_overview(&self.client, &self.namespace, query)
            .await
            .map_err(ServeError::Redis)
    }

    /// Every actor of the snapshot of `system_id` taken at `taken_at_ms` (its
    /// [`SystemSnapshot::taken_at_ms`](conclib_core::SystemSnapshot::taken_at_ms)) in
    /// brief, by id: those it lists in full too, and those it only counts in
    /// [`omitted_actors`](conclib_core::SystemSnapshot::omitted_actors) (the first
    /// [`MAX_BRIEF_ACTORS`](conclib_core::MAX_BRIEF_ACTORS) of them by id). `None` if that
    /// snapshot is no longer the published one (read [`systems`](Self::systems) again), its
    /// actors in brief expired, or it was published with none (it lists every actor in
    /// full, or nobody was reading the snapshots when it was published).
    ///
    /// Reads the changes published with that snapshot, and the base they count from only
    /// when it is not the one this reader read last for this system.
    ///
    /// # Errors
    /// [`ServeError::Redis`] if Redis fails the read.
    pub async fn others(
        &self,
        system_id: &str,
        taken_at_ms: u64,
    ) -> Result<Option<Vec<ActorBrief>>, ServeError> {
        let read = |part: String| {
            let key = brief_key(&self.keys, system_id, part);
            async move {
                conn::call(&self.client, keyed("GET"), vec![owned(key)])
                    .await
                    .map_err(|e| ServeError::Redis(e.to_string()))
            }
        };
        let parsed = |value: &Value| -> Option<Result<_, serde_json::Error>> {
            Some(serde_json::from_slice(as_bytes(value)?))
        };
        let changes: ChangesIn = match parsed(&read("changes".into()).await?) {
            None => return Ok(None),
            Some(Err(e)) => {
                tracing::warn!(system = %system_id, error = %e, "skipping changes that do not parse");
                return Ok(None);
            }
            Some(Ok(changes)) => changes,
        };
        if changes.taken_at_ms != taken_at_ms {
            return Ok(None);
        }
        let known = self
            .bases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(system_id)
            .filter(|(name, _)| *name == changes.base)
            .map(|(_, base)| base.clone());
        let base = match known {
            Some(base) => base,
            None => {
                let Some(base) = self.read_base(system_id, changes.base).await? else {
                    return Ok(None);
                };
                let base = Arc::new(base);
                self.bases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(system_id.to_owned(), (changes.base, base.clone()));
                base
            }
        };
        let types: Vec<Cow<'static, str>> = changes.types.into_iter().map(intern).collect();
        let changed: Vec<ActorBrief> = changes
            .actors
            .into_iter()
            .map(|row| brief_of(row, &types))
            .collect();
        Ok(Some(merged(&base, changed, &changes.gone)))
    }

    /// The base named `name` of `system_id`, by id: `None` if it is not the one published
    /// (or expired).
    async fn read_base(
        &self,
        system_id: &str,
        name: u64,
    ) -> Result<Option<Vec<ActorBrief>>, ServeError> {
        let read = |k: usize| {
            conn::call(
                &self.client,
                keyed("GET"),
                vec![owned(brief_key(&self.keys, system_id, k))],
            )
        };
        let parse = |value: Value| -> Option<ChunkIn> {
            let chunk = serde_json::from_slice::<ChunkIn>(as_bytes(&value)?);
            if let Err(e) = &chunk {
                tracing::warn!(system = %system_id, error = %e, "skipping others that do not parse");
            }
            chunk.ok().filter(|c| c.taken_at_ms == name)
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
        let mut base = Vec::with_capacity(chunks.iter().map(|c| c.actors.len()).sum());
        for chunk in chunks {
            let types: Vec<Cow<'static, str>> = chunk.types.into_iter().map(intern).collect();
            base.extend(chunk.actors.into_iter().map(|row| brief_of(row, &types)));
        }
        Ok(Some(base))
    }
}

/// `base` (by id) brought up to date: without the actors `gone`, with those `changed` (by
/// id) in place of their old figures or added.
fn merged(base: &[ActorBrief], changed: Vec<ActorBrief>, gone: &[u64]) -> Vec<ActorBrief> {
    let gone: std::collections::HashSet<u64> = gone.iter().copied().collect();
    let mut out = Vec::with_capacity(base.len() + changed.len());
    let mut changed = changed.into_iter().peekable();
    for old in base {
        while let Some(new) = changed.next_if(|c| c.id < old.id) {
            out.push(new);
        }
        match changed.next_if(|c| c.id == old.id) {
            Some(new) => out.push(new),
            None if gone.contains(&old.id) => {}
            None => out.push(old.clone()),
        }
    }
    out.extend(changed);
    out
}
