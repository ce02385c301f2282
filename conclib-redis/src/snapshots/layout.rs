//! The layout of what a proxy publishes and a [`SnapshotReader`](super::SnapshotReader)
//! reads back (the keys, the JSON of a snapshot and of the actors in brief): shared by the
//! publishing side (`mod.rs`) and the reading side (`reader.rs`), which import it and never
//! each other.

use std::borrow::Cow;
use std::time::Duration;

use conclib_core::{ActorBrief, ActorState, SystemSnapshot};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conn::{self, keyed, owned};
use crate::persistence::Persistence;
use crate::protocol::Keys;
use crate::stats::ProxyStats;

/// What a proxy publishes about its system: from
/// [`SnapshotReader::systems`](crate::snapshots::SnapshotReader::systems).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedSystem {
    /// The id the proxy serves the system under.
    pub system_id: String,
    /// How often it publishes, in ms (the snapshot expires after three of these).
    pub interval_ms: u64,
    /// What the proxy did so far.
    pub proxy: ProxyStats,
    /// The system's actors: the [`ProxyConfig::snapshot_max_actors`](crate::ProxyConfig::snapshot_max_actors) most telling, most
    /// telling first ([`ActorSystem::snapshot_first`](conclib_core::ActorSystem::snapshot_first)),
    /// the rest counted in [`SystemSnapshot::omitted_actors`]. As read back by
    /// [`SnapshotReader::systems`](crate::snapshots::SnapshotReader::systems), its `others` are empty:
    /// [`SnapshotReader::others`](crate::snapshots::SnapshotReader::others) reads them.
    pub snapshot: SystemSnapshot,
    /// The groups the system is a member of ([`ProxyHandle::join`](crate::ProxyHandle::join),
    /// [`ProxyHandle::activate`](crate::ProxyHandle::activate)); its activated actors are in
    /// `snapshot` under their URNs.
    #[serde(default)]
    pub groups: Vec<PublishedGroup>,
    /// Redis's persistence settings, as the proxy read them when it started: whether a
    /// restart of Redis can lose the tells it holds ([`Persistence::tell_loss`]). JSON:
    /// `{"mode": "append_only", "fsync": "always" | "everysec" | "no" | "unknown"}`, or
    /// `{"mode": ..}` with `snapshots_only`, `none`, `append_only_off` or `unknown` (also
    /// when a proxy of an older version published it without).
    #[serde(default)]
    pub persistence: Persistence,
    /// What the system published to topics and what its subscriptions received, dropped and
    /// received again ([`ProxyHandle::topics`](crate::ProxyHandle::topics)); `None` while it
    /// never used topics (and from a proxy of an older version).
    #[serde(default)]
    pub topics: Option<crate::topics::TopicsStats>,
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

/// The key of part `part` of a system's actors in brief: chunk `0`, `1`, .. of its base, or
/// its `changes` (the part first, so that no system id can name another system's keys).
pub(super) fn brief_key(keys: &Keys, system_id: &str, part: impl std::fmt::Display) -> String {
    let snapshot = keys.snapshot(system_id);
    let ns = snapshot
        .strip_suffix(system_id)
        .and_then(|s| s.strip_suffix(":snapshot:"))
        .unwrap_or_default();
    format!("{ns}:snapshot-others:{part}:{system_id}")
}

/// One actor in a chunk or the changes: `S` its URN, borrowed as written, owned as read.
pub(super) type Row<S> = (
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
pub(super) struct ChunkIn {
    pub(super) taken_at_ms: u64,
    pub(super) chunks: usize,
    pub(super) types: Vec<String>,
    pub(super) actors: Vec<Row<String>>,
}

#[derive(Deserialize)]
pub(super) struct ChangesIn {
    pub(super) taken_at_ms: u64,
    pub(super) base: u64,
    pub(super) types: Vec<String>,
    pub(super) actors: Vec<Row<String>>,
    pub(super) gone: Vec<u64>,
}

/// The actor read from `row`, its type name from `types`.
pub(super) fn brief_of(row: Row<String>, types: &[Cow<'static, str>]) -> ActorBrief {
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

/// `name` shared: one copy of each of the first 4,096 type names read (Rust type names:
/// a program has few), so that 100,000 actors listed in brief do not each hold a copy.
pub(super) fn intern(name: String) -> Cow<'static, str> {
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
pub(super) async fn set_px(
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
