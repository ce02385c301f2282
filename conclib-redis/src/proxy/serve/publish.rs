//! The system's snapshot, published for live views (`crate::snapshots`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fred::prelude::*;

use crate::conn::{self, keyed, owned};
use crate::proxy::shared::{Role, Shared};

impl Shared {
    /// Publishes the system's snapshot; `watched`: someone reads the snapshots, so it lists
    /// every actor in brief too (what changed since the last base, and now and then a new
    /// base) and lives three intervals, else only those listed in full, living as long as
    /// the next unwatched publish takes.
    pub(in crate::proxy) async fn publish_snapshot(
        &self,
        watched: bool,
    ) -> Result<(), fred::error::Error> {
        let interval = self
            .config
            .snapshot_interval
            .unwrap_or(crate::config::DEFAULT_SNAPSHOT_INTERVAL);
        let max_actors = self.config.snapshot_max_actors;
        let mut briefs = self.briefs.lock().await;
        let (snapshot, out, lives) = if watched {
            let (snapshot, out) = briefs.take(&self.system, max_actors).map_err(|e| {
                fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string())
            })?;
            (snapshot, out, interval)
        } else {
            let snapshot = crate::snapshots::Briefs::take_unwatched(&self.system, max_actors);
            (snapshot, None, interval * crate::snapshots::UNWATCHED_EVERY)
        };
        let published = crate::snapshots::PublishedSystem {
            system_id: self.system_id.clone(),
            interval_ms: interval.as_millis() as u64,
            proxy: self.counters.stats(),
            snapshot,
            groups: self.published_groups(),
            persistence: self.persistence(),
            topics: self.topics.get().map(crate::topics::Topics::stats),
        };
        crate::snapshots::publish(
            &self.cmd,
            &self.keys,
            &published,
            out,
            crate::snapshots::snapshot_ttl(lives),
            self.clock.redis_now_ms().max(0) as u64,
        )
        .await
    }

    /// Whether someone read the snapshots lately (`{ns}:snapshots:watched`).
    pub(in crate::proxy) async fn watched(&self) -> bool {
        matches!(
            conn::call(&self.cmd, keyed("EXISTS"), vec![owned(self.keys.watched())]).await,
            Ok(Value::Integer(1))
        )
    }

    /// The groups this system is a member of, for its snapshot.
    fn published_groups(&self) -> Vec<crate::snapshots::PublishedGroup> {
        let members: Vec<[Arc<Shared>; 2]> = self.groups().values().map(|h| h.lanes()).collect();
        let mut groups: Vec<crate::snapshots::PublishedGroup> = members
            .iter()
            .filter_map(|[m, fast]| {
                let Role::Member(member) = &m.role else {
                    return None;
                };
                let (name, activations) = if member.pattern {
                    (
                        format!("{}{{id}}", member.name),
                        self.activations.count_under(&member.name),
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
}
