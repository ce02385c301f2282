//! Snapshots of every system on one Redis: each proxy publishes its system's
//! [`SystemSnapshot`] (JSON, with a TTL) every
//! [`ProxyConfig::snapshot_interval`](crate::ProxyConfig::snapshot_interval); a
//! [`SnapshotReader`] (`reader.rs`) reads them all back (what the live view shows).
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

use std::time::{Duration, Instant};

use conclib_core::{ActorBrief, ActorState, ActorSystem, SystemSnapshot};
use fred::prelude::*;

use crate::conn::{self, as_bytes, keyed, owned};
use crate::protocol::Keys;

mod layout;
mod reader;
#[cfg(test)]
mod tests;

use layout::{ChunkIn, Row, brief_key, set_px};
pub use layout::{PublishedGroup, PublishedSystem};
pub use reader::SnapshotReader;

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
