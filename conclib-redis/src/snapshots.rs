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
//! Every actor of a snapshot, in brief (those listed in full too), is published beside it
//! as a list published whole now and then (the base) and, with every snapshot, what
//! changed since the base (the changes): the figures of idle actors do not change, so a
//! snapshot of many mostly idle actors costs little more than its actors in full. The base
//! is published in chunks of at most [`OTHERS_CHUNK_BYTES`] of JSON,
//! `{ns}:snapshot-others:{k}:{system_id}` for `k` in `0..chunks`, each
//! `{"taken_at_ms":..,"chunks":..,"types":[type names],"actors":[[id, urn, type (index
//! into types), parent, stopping (0 or 1), mailbox_len, handled, rate, errors, panics,
//! restarts, asks_skipped], ..]}` (`taken_at_ms`: of the snapshot it was published with, the
//! base's name), living [`BASE_MAX_AGE`] and three intervals; the changes in
//! `{ns}:snapshot-others:changes:{system_id}`, `{"taken_at_ms":..,"base":..,"types":[..],
//! "actors":[rows as above],"gone":[ids]}` (`taken_at_ms`: of the snapshot it goes with;
//! `base`: the base's; `actors`: every actor whose figures changed since the base or that
//! started since; `gone`: actors of the base that stopped since), with the snapshot's TTL,
//! both written just before the snapshot. [`SnapshotReader::others`] puts them together.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_core::{ActorBrief, ActorState, ActorSystem, SystemSnapshot};
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

/// The key of part `part` of a system's actors in brief: chunk `0`, `1`, .. of its base, or
/// its `changes` (the part first, so that no system id can name another system's keys).
fn brief_key(keys: &Keys, system_id: &str, part: impl std::fmt::Display) -> String {
    let snapshot = keys.snapshot(system_id);
    let ns = snapshot
        .strip_suffix(system_id)
        .and_then(|s| s.strip_suffix(":snapshot:"))
        .unwrap_or_default();
    format!("{ns}:snapshot-others:{part}:{system_id}")
}

/// One actor in a chunk or the changes: `S` its URN, borrowed as written, owned as read.
type Row<S> = (
    u64,
    Option<S>,
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
    actors: Vec<Row<String>>,
}

#[derive(Deserialize)]
struct ChangesIn {
    taken_at_ms: u64,
    base: u64,
    types: Vec<String>,
    actors: Vec<Row<String>>,
    gone: Vec<u64>,
}

/// Part of a list of actors as JSON: its type names, and its rows, comma-separated.
type RowsPart<'a> = (Vec<&'a str>, Vec<u8>);

/// `briefs` as rows of JSON, in parts of about `part_bytes` at most (at least one part,
/// empty when there are none).
fn rows_json(
    briefs: &[ActorBrief],
    part_bytes: usize,
) -> Result<Vec<RowsPart<'_>>, serde_json::Error> {
    let mut parts: Vec<RowsPart<'_>> = vec![(Vec::new(), Vec::new())];
    for actor in briefs {
        let (types, rows) = parts.last_mut().expect("one at least");
        let type_index = match types.iter().position(|t| *t == actor.type_name) {
            Some(at) => at,
            None => {
                types.push(&actor.type_name);
                types.len() - 1
            }
        };
        let row: Row<&str> = (
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
        if rows.len() >= part_bytes {
            parts.push((Vec::new(), Vec::new()));
        }
    }
    if parts.len() > 1 && parts.last().is_some_and(|(_, rows)| rows.is_empty()) {
        parts.pop();
    }
    Ok(parts)
}

/// `head`, then `rows` (written by serde_json: UTF-8), then `tail`.
fn framed(head: &str, rows: &[u8], tail: &str) -> String {
    let mut json = String::with_capacity(head.len() + rows.len() + tail.len());
    json.push_str(head);
    json.push_str(std::str::from_utf8(rows).unwrap_or_default());
    json.push_str(tail);
    json
}

/// The chunks of a base of `briefs` published with the snapshot taken at `taken_at_ms`, as
/// JSON (at least one, empty when there are none).
fn base_chunks(briefs: &[ActorBrief], taken_at_ms: u64) -> Result<Vec<String>, serde_json::Error> {
    let parts = rows_json(briefs, OTHERS_CHUNK_BYTES - 64 * 1024)?;
    let chunks = parts.len();
    parts
        .into_iter()
        .map(|(types, rows)| {
            let head = format!(
                "{{\"taken_at_ms\":{taken_at_ms},\"chunks\":{chunks},\"types\":{},\"actors\":[",
                serde_json::to_string(&types)?
            );
            Ok(framed(&head, &rows, "]}"))
        })
        .collect()
}

/// The changes since the base `base` published with the snapshot taken at `taken_at_ms`,
/// as JSON.
fn changes_json(
    changed: &[ActorBrief],
    gone: &[u64],
    base: u64,
    taken_at_ms: u64,
) -> Result<String, serde_json::Error> {
    let (types, rows) = rows_json(changed, usize::MAX)?
        .pop()
        .expect("one part at least");
    let head = format!(
        "{{\"taken_at_ms\":{taken_at_ms},\"base\":{base},\"types\":{},\"actors\":[",
        serde_json::to_string(&types)?
    );
    let tail = format!("],\"gone\":{}}}", serde_json::to_string(gone)?);
    Ok(framed(&head, &rows, &tail))
}

/// The actor read from `row`, its type name from `types`.
fn brief_of(row: Row<String>, types: &[Cow<'static, str>]) -> ActorBrief {
    let (id, urn, t, parent, stopping, mailbox_len, handled, rate) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    ActorBrief {
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
    }
}

/// How long a base serves at the most: a proxy publishes its actors in brief whole again
/// after this long (or sooner, when the changes since the base grow large).
pub const BASE_MAX_AGE: Duration = Duration::from_secs(300);

/// The base a proxy published last, that its changes count from.
struct Base {
    /// Its name: the `taken_at_ms` of the snapshot it was published with, or one more than
    /// the previous base's name if that is not larger.
    taken_at_ms: u64,
    /// The system's look it was read in ([`conclib_core::SnapshotChanges::look`]).
    look: u64,
    /// Its actors' ids, ascending.
    ids: Vec<u64>,
    published: Instant,
    /// How many actors the last changes listed.
    last_changed: usize,
}

/// What a proxy keeps of what it published in brief.
#[derive(Default)]
pub(crate) struct Briefs {
    base: Option<Base>,
}

/// What a snapshot's publish writes of its actors in brief.
pub(crate) struct BriefsOut {
    /// A new base's chunks, if one is published.
    base: Option<Vec<String>>,
    /// The changes since the base.
    changes: String,
}

impl Briefs {
    /// Whether the next watched publish needs a new base.
    fn base_due(&self) -> bool {
        self.base.as_ref().is_none_or(|b| {
            b.published.elapsed() >= BASE_MAX_AGE
                // Changes of more than an eighth of the actors: a new base reads cheaper.
                || b.last_changed > b.ids.len() / 8
        })
    }

    /// A snapshot of `system`'s `max_actors` most telling actors (its
    /// [`others`](SystemSnapshot::others) empty), and what to publish of every actor in
    /// brief with it: a new base when one is due, and the changes since the base. Nothing
    /// in brief when the snapshot lists every actor in full.
    pub(crate) fn take(
        &mut self,
        system: &ActorSystem,
        max_actors: usize,
    ) -> Result<(SystemSnapshot, Option<BriefsOut>), serde_json::Error> {
        let since = match (&self.base, self.base_due()) {
            (Some(base), false) => base.look,
            _ => 0,
        };
        let mut changes = system.snapshot_changes(max_actors, since);
        if changes.snapshot.omitted_actors == 0 {
            self.base = None;
            return Ok((changes.snapshot, None));
        }
        if since != 0
            && let Some(base) = &mut self.base
        {
            let gone = gone_from(&base.ids, &changes.ids);
            let json = changes_json(
                &changes.changed,
                &gone,
                base.taken_at_ms,
                changes.snapshot.taken_at_ms,
            )?;
            if json.len() <= OTHERS_CHUNK_BYTES {
                base.last_changed = changes.changed.len();
                let out = BriefsOut {
                    base: None,
                    changes: json,
                };
                return Ok((changes.snapshot, Some(out)));
            }
            // Changes too large for one value (most actors busy at once): a new base.
            changes = system.snapshot_changes(max_actors, 0);
        }
        // Named after its snapshot; never the name of the base before it (a reader keeps the
        // base it read by its name).
        let name =
            (changes.snapshot.taken_at_ms).max(self.base.as_ref().map_or(0, |b| b.taken_at_ms + 1));
        let out = BriefsOut {
            base: Some(base_chunks(&changes.changed, name)?),
            changes: changes_json(&[], &[], name, changes.snapshot.taken_at_ms)?,
        };
        self.base = Some(Base {
            taken_at_ms: name,
            look: changes.look,
            ids: changes.ids,
            published: Instant::now(),
            last_changed: 0,
        });
        Ok((changes.snapshot, Some(out)))
    }

    /// A snapshot for a publish nobody watches: nothing in brief. The base stays: its keys
    /// outlive its use ([`BASE_MAX_AGE`]), and the changes the next watched publish sends
    /// count from it whatever looks came in between.
    pub(crate) fn take_unwatched(system: &ActorSystem, max_actors: usize) -> SystemSnapshot {
        // No look comes after `u64::MAX`: none of the actors in brief is built.
        system.snapshot_changes(max_actors, u64::MAX).snapshot
    }
}

/// The ids in `before` not in `now` (both ascending).
fn gone_from(before: &[u64], now: &[u64]) -> Vec<u64> {
    let mut gone = Vec::new();
    let mut now = now.iter().peekable();
    for id in before {
        while now.next_if(|n| *n < id).is_some() {}
        if now.peek() != Some(&id) {
            gone.push(*id);
        }
    }
    gone
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

/// `SET key value PX ttl_ms`.
async fn set_px(
    client: &Client,
    key: String,
    value: String,
    ttl_ms: u64,
) -> Result<Value, fred::error::Error> {
    conn::call(
        client,
        keyed("SET"),
        vec![
            owned(key),
            owned(value),
            conn::s("PX"),
            Value::Integer(ttl_ms as i64),
        ],
    )
    .await
}

/// Writes one snapshot (`published`, whose [`others`](SystemSnapshot::others) are left
/// out: its actors in brief are `briefs`, from [`Briefs::take`], written first) and its
/// index entry; prunes index entries long expired. `now` is Redis's clock in ms (so that
/// publishers on machines whose clocks differ agree).
pub(crate) async fn publish(
    client: &Client,
    keys: &Keys,
    published: &PublishedSystem,
    briefs: Option<BriefsOut>,
    ttl: Duration,
    now: u64,
) -> Result<(), fred::error::Error> {
    let parse_error = |e: serde_json::Error| {
        fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string())
    };
    let ttl_ms = ttl.as_millis() as u64;
    if let Some(BriefsOut { base, changes }) = briefs {
        // The base outlives the changes that count from it.
        let base_ttl_ms = ttl_ms + BASE_MAX_AGE.as_millis() as u64;
        let writes = base.into_iter().flatten().enumerate().map(|(k, chunk)| {
            set_px(
                client,
                brief_key(keys, &published.system_id, k),
                chunk,
                base_ttl_ms,
            )
        });
        for written in futures_util::future::join_all(writes).await {
            written?;
        }
        set_px(
            client,
            brief_key(keys, &published.system_id, "changes"),
            changes,
            ttl_ms,
        )
        .await?;
    }
    let json = if published.snapshot.others.is_empty() {
        fitted_json(published)
    } else {
        fitted_json(&PublishedSystem {
            snapshot: SystemSnapshot {
                others: Vec::new(),
                ..published.snapshot.clone()
            },
            ..published.clone()
        })
    }
    .map_err(parse_error)?;
    set_px(client, keys.snapshot(&published.system_id), json, ttl_ms).await?;
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

/// Removes a system's snapshot (its proxy shut down): the snapshot, its changes and the
/// chunks of its base.
pub(crate) async fn withdraw(
    client: &Client,
    keys: &Keys,
    system_id: &str,
) -> Result<(), fred::error::Error> {
    let first = conn::call(
        client,
        keyed("GET"),
        vec![owned(brief_key(keys, system_id, 0))],
    )
    .await?;
    let chunks = as_bytes(&first)
        .and_then(|json| serde_json::from_slice::<ChunkIn>(json).ok())
        .map_or(1, |c| c.chunks.max(1));
    let mut doomed = vec![
        keys.snapshot(system_id),
        brief_key(keys, system_id, "changes"),
    ];
    doomed.extend((0..chunks).map(|k| brief_key(keys, system_id, k)));
    for key in doomed {
        // One key per command: keys of one system may be in different cluster slots.
        conn::call(client, keyed("DEL"), vec![owned(key)]).await?;
    }
    conn::call(
        client,
        keyed("ZREM"),
        vec![owned(keys.snapshot_index()), owned(system_id.to_owned())],
    )
    .await?;
    Ok(())
}

/// A base as read: its name, and its actors by id.
type NamedBase = (u64, Arc<Vec<ActorBrief>>);

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
        conn::init_within(&[&client], config.connect_timeout)
            .await
            .map_err(ServeError::Unavailable)?;
        Ok(SnapshotReader {
            client,
            keys: Keys::new(&config.namespace),
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

    /// Every actor of the snapshot of `system_id` taken at `taken_at_ms` (its
    /// [`SystemSnapshot::taken_at_ms`]) in brief, by id: those it lists in full too, and
    /// those it only counts in [`omitted_actors`](SystemSnapshot::omitted_actors) (the first
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

    /// A published system around `snapshot`.
    fn published(snapshot: SystemSnapshot) -> PublishedSystem {
        PublishedSystem {
            system_id: "many".into(),
            interval_ms: 1_000,
            proxy: Default::default(),
            snapshot,
            groups: Vec::new(),
        }
    }

    /// A base too big for one value is published in chunks and read back whole with its
    /// changes (figures changed, actors gone and new); a reader keeps the base it read, and
    /// one asking for another snapshot's actors gets `None`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_base_in_chunks_and_its_changes_read_back_whole() {
        let base = ProxyConfig::default().with_namespace("snap-others");
        let daemon = crate::start_redis(&base).await.unwrap();
        let config = daemon.config(&base);
        let reader = SnapshotReader::connect(&config).await.unwrap();

        struct Idle;
        impl conclib_core::Actor for Idle {}
        let system = conclib_core::ActorSystem::new("many");
        system.build(Idle).urn("idle:0").spawn().await.unwrap();
        let mut snapshot = system.snapshot_first(0);
        let template = snapshot.others[0].clone();
        // Many, with long URNs: several chunks.
        let briefs: Vec<ActorBrief> = (0..30_000u64)
            .map(|n| ActorBrief {
                id: 1_000 + 2 * n,
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
        snapshot.others.clear();
        snapshot.omitted_actors = briefs.len();
        let taken_at = snapshot.taken_at_ms;
        let chunks = base_chunks(&briefs, taken_at).unwrap();
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= OTHERS_CHUNK_BYTES));
        let out = BriefsOut {
            base: Some(chunks),
            changes: changes_json(&[], &[], taken_at, taken_at).unwrap(),
        };
        let ttl = Duration::from_secs(30);
        let first = published(snapshot);
        publish(&reader.client, &reader.keys, &first, Some(out), ttl, 1)
            .await
            .unwrap();
        let systems = reader.systems().await.unwrap();
        assert_eq!(systems.len(), 1);
        assert_eq!(systems[0].snapshot, first.snapshot);
        let read = reader.others("many", taken_at).await.unwrap();
        assert!(read.as_ref() == Some(&briefs), "the base read back");
        assert_eq!(
            reader.others("many", taken_at + 1).await.unwrap(),
            None,
            "another snapshot's"
        );

        // Changes: two actors' figures, one gone, one new between two others and one after.
        let mut expected = briefs.clone();
        expected[3].handled += 1;
        expected[29_000].errors += 1;
        let gone = expected.remove(10).id;
        let new = |id: u64| ActorBrief {
            id,
            ..template.clone()
        };
        expected.insert(20, new(expected[19].id + 1));
        expected.push(new(1_000_000));
        let changed: Vec<ActorBrief> = expected
            .iter()
            .filter(|e| !briefs.contains(e))
            .cloned()
            .collect();
        assert_eq!(changed.len(), 4);
        let mut later = first.clone();
        later.snapshot.taken_at_ms += 1_000;
        let out = BriefsOut {
            base: None,
            changes: changes_json(&changed, &[gone], taken_at, later.snapshot.taken_at_ms).unwrap(),
        };
        publish(&reader.client, &reader.keys, &later, Some(out), ttl, 2)
            .await
            .unwrap();
        // (Compared with `==`: a difference would print 30,000 actors.)
        let now = later.snapshot.taken_at_ms;
        let read = reader.others("many", now).await.unwrap();
        assert!(read.as_ref() == Some(&expected), "changes not applied");
        assert_eq!(reader.others("many", taken_at).await.unwrap(), None);

        // The base is read once: gone from Redis, this reader still has it; a new one not.
        for k in 0..3 {
            let key = brief_key(&reader.keys, "many", k);
            conn::call(&reader.client, keyed("DEL"), vec![owned(key)])
                .await
                .unwrap();
        }
        let read = reader.others("many", now).await.unwrap();
        assert!(read == Some(expected), "the base kept");
        let fresh = SnapshotReader::connect(&config).await.unwrap();
        assert_eq!(
            fresh
                .others("many", later.snapshot.taken_at_ms)
                .await
                .unwrap(),
            None
        );

        // Withdrawn: nothing to read.
        withdraw(&reader.client, &reader.keys, "many")
            .await
            .unwrap();
        assert!(reader.systems().await.unwrap().is_empty());
        assert_eq!(
            fresh
                .others("many", later.snapshot.taken_at_ms)
                .await
                .unwrap(),
            None
        );
        drop((reader, fresh));
        daemon.shutdown().unwrap();
    }

    /// The changes a proxy publishes list only the actors whose figures changed since the
    /// base: none while every actor is idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_what_changed_since_the_base_is_published() {
        use conclib_core::{Context, Handler, Message};
        struct Idle;
        impl conclib_core::Actor for Idle {}
        struct Poke;
        impl Message for Poke {
            type Response = ();
            type Error = String;
        }
        impl Handler<Poke> for Idle {
            async fn handle(&mut self, _: Poke, _: &mut Context<Self>) -> Result<(), String> {
                Ok(())
            }
        }
        let system = conclib_core::ActorSystem::new("changes");
        let mut actors = Vec::new();
        for n in 0..40 {
            actors.push(
                system
                    .build(Idle)
                    .urn(format!("idle:{n}"))
                    .spawn()
                    .await
                    .unwrap(),
            );
        }
        let changes_of =
            |out: &BriefsOut| -> ChangesIn { serde_json::from_str(&out.changes).unwrap() };
        let mut briefs = Briefs::default();
        let (snapshot, out) = briefs.take(&system, 5).unwrap();
        let out = out.expect("35 actors not in full");
        assert_eq!(snapshot.actors.len(), 5);
        assert!(snapshot.others.is_empty());
        let base: Vec<ChunkIn> = out
            .base
            .iter()
            .flatten()
            .map(|c| serde_json::from_str(c).unwrap())
            .collect();
        assert_eq!(base.len(), 1);
        assert_eq!(base[0].actors.len(), 40, "every actor, those in full too");
        let name = base[0].taken_at_ms;
        assert_eq!(changes_of(&out).base, name);
        assert!(changes_of(&out).actors.is_empty());

        // Idle: no new base, no changes.
        let (_, out) = briefs.take(&system, 5).unwrap();
        let out = out.unwrap();
        assert!(out.base.is_none());
        let changes = changes_of(&out);
        assert_eq!((changes.base, changes.actors.len()), (name, 0));
        assert!(changes.gone.is_empty());

        // One busy, one stopped, one new: in the changes (the handled count is in once the
        // runner counted it, right after the answer: look again, bounded).
        actors[7].ask(Poke).await.unwrap();
        actors[9].stop();
        actors[9].wait_for_stop().await;
        let new = system.spawn(Idle).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, out) = briefs.take(&system, 5).unwrap();
            let out = out.unwrap();
            assert!(out.base.is_none());
            let changes = changes_of(&out);
            let mut ids: Vec<u64> = changes.actors.iter().map(|r| r.0).collect();
            ids.sort_unstable();
            if ids == [actors[7].id().as_u64(), new.id().as_u64()] {
                assert_eq!(changes.gone, [actors[9].id().as_u64()]);
                break;
            }
            assert!(Instant::now() < deadline, "changes: {ids:?}");
            tokio::task::yield_now().await;
        }
    }
}
