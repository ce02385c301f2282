//! The system's snapshot, published for live views (`crate::snapshots`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fred::prelude::*;

use crate::conn::{self, keyed, owned};
use crate::proxy::shared::{Role, Shared};

/// Publishes the system's snapshot; `watched`: someone reads the snapshots, so it lists
/// every actor in brief too (what changed since the last base, and now and then a new
/// base) and lives three intervals, else only those listed in full, living as long as
/// the next unwatched publish takes.
pub(in crate::proxy) async fn publish_snapshot(
    shared: &Shared,
    watched: bool,
) -> Result<(), fred::error::Error> {
    let interval = shared
        .config
        .snapshot_interval
        .unwrap_or(crate::config::DEFAULT_SNAPSHOT_INTERVAL);
    let max_actors = shared.config.snapshot_max_actors;
    let mut briefs = shared.briefs.lock().await;
    let (snapshot, out, lives) = if watched {
        let (snapshot, out) = briefs
            .take(&shared.system, max_actors)
            .map_err(|e| fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string()))?;
        (snapshot, out, interval)
    } else {
        let snapshot = crate::snapshots::Briefs::take_unwatched(&shared.system, max_actors);
        (snapshot, None, interval * crate::snapshots::UNWATCHED_EVERY)
    };
    let published = crate::snapshots::PublishedSystem {
        system_id: shared.system_id.clone(),
        interval_ms: interval.as_millis() as u64,
        proxy: shared.counters.stats(),
        snapshot,
        groups: published_groups(shared),
        persistence: shared.persistence(),
        topics: shared.topics.get().map(crate::topics::Topics::stats),
    };
    crate::snapshots::publish(
        &shared.cmd,
        &shared.keys,
        &published,
        out,
        crate::snapshots::snapshot_ttl(lives),
        shared.clock.redis_now_ms().max(0) as u64,
    )
    .await
}

/// Whether someone read the snapshots lately (`{ns}:snapshots:watched`).
pub(in crate::proxy) async fn watched(shared: &Shared) -> bool {
    matches!(
        conn::call(
            &shared.cmd,
            keyed("EXISTS"),
            vec![owned(shared.keys.watched())]
        )
        .await,
        Ok(Value::Integer(1))
    )
}

/// The groups this system is a member of, for its snapshot.
fn published_groups(shared: &Shared) -> Vec<crate::snapshots::PublishedGroup> {
    let members: Vec<[Arc<Shared>; 2]> = shared.groups().values().map(|h| h.lanes()).collect();
    let mut groups: Vec<crate::snapshots::PublishedGroup> = members
        .iter()
        .filter_map(|[m, fast]| {
            let Role::Member(member) = &m.role else {
                return None;
            };
            let (name, activations) = if member.pattern {
                (
                    format!("{}{{id}}", member.name),
                    shared.activations.count_under(&member.name),
                )
            } else {
                (member.name.clone(), 0)
            };
            Some(crate::snapshots::PublishedGroup {
                name,
                group: member.group.clone(),
                received: m.counters.received.load(Ordering::Relaxed)
                    + fast.counters.received.load(Ordering::Relaxed),
                activations,
            })
        })
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups
}
