//! How far durable subscriber groups are behind (`XINFO GROUPS`, Redis 7): asked by
//! [`Subscription::lag`](super::Subscription::lag), and sampled for a [`Topics`](super::Topics)
//! handle's stats and metrics every [`snapshot_interval`](crate::ProxyConfig::snapshot_interval)
//! (never per event).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use fred::prelude::*;

use super::link::Counters;
use super::metrics;
use super::topic::{TopicError, redis_error};
use crate::conn::{self, keyed_at, owned, s};

/// One consumer group of a stream, as `XINFO GROUPS` tells it.
struct GroupInfo {
    name: Vec<u8>,
    /// Entries not yet delivered to any subscriber of the group (`None`: Redis cannot
    /// tell: before 7.0, or entries deleted from the middle of the stream).
    lag: Option<u64>,
    /// Entries delivered and not acknowledged.
    pending: u64,
}

async fn groups(cmd: &Client, key: &str) -> Result<Vec<GroupInfo>, TopicError> {
    let args = vec![s("GROUPS"), owned(key.to_owned())];
    let groups = conn::call(cmd, keyed_at("XINFO", 1, false), args)
        .await
        .map_err(|e| redis_error(&e))?;
    let Value::Array(groups) = groups else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let Value::Array(fields) = group else {
            continue;
        };
        let field = |name: &[u8]| {
            fields
                .chunks_exact(2)
                .find(|pair| conn::as_bytes(&pair[0]) == Some(name))
                .map(|pair| &pair[1])
        };
        let Some(name) = field(b"name").and_then(conn::as_bytes) else {
            continue;
        };
        let count = |v: Option<&Value>| match v {
            Some(Value::Integer(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        out.push(GroupInfo {
            name: name.to_vec(),
            lag: count(field(b"lag")),
            pending: count(field(b"pending")).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The group's lag: entries in the stream not yet delivered to any subscriber of the
/// group; `None` when Redis cannot tell (an older Redis, or entries deleted in the middle
/// of the stream).
pub(super) async fn of_group(
    cmd: &Client,
    key: &str,
    group: &str,
) -> Result<Option<u64>, TopicError> {
    Ok(groups(cmd, key)
        .await?
        .into_iter()
        .find(|g| g.name == group.as_bytes())
        .and_then(|g| g.lag))
}

/// Samples the lag and pending entries of the groups of a handle's open durable
/// subscriptions every `every` (one `XINFO GROUPS` per topic), into its stats and the
/// gauges; ends when it has none left (the next one starts it again) or the handle is gone.
async fn sample(inner: Weak<Subscriptions>, every: Duration) {
    let mut gauges = (0, 0);
    loop {
        let Some(handle) = inner.upgrade() else {
            metrics::lag(&mut gauges, (0, 0));
            return;
        };
        let Some(targets) = handle.durable_targets() else {
            // None left (`sampling` cleared under the same lock as new ones register).
            handle.lag.store(0, Ordering::Relaxed);
            handle.pending.store(0, Ordering::Relaxed);
            metrics::lag(&mut gauges, (0, 0));
            return;
        };
        let (mut lag, mut pending) = (0, 0);
        for (key, names) in targets {
            match groups(&handle.cmd, &key).await {
                Ok(list) => {
                    for g in list.into_iter().filter(|g| names.contains(&g.name)) {
                        lag += g.lag.unwrap_or(0);
                        pending += g.pending;
                    }
                }
                Err(e) => tracing::debug!(error = %e, key, "sampling the topic's lag failed"),
            }
        }
        handle.lag.store(lag, Ordering::Relaxed);
        handle.pending.store(pending, Ordering::Relaxed);
        metrics::lag(&mut gauges, (lag, pending));
        drop(handle);
        tokio::time::sleep(every).await;
    }
}

/// A durable subscription's stream and group, for the sampling.
type Targets = BTreeMap<String, BTreeSet<Vec<u8>>>;

/// The subscriptions made through one [`Topics`](super::Topics) handle that still exist (their
/// counters, for its stats), and their durable groups' lag as sampled last.
pub(super) struct Subscriptions {
    /// The handle's command connection, for `XINFO GROUPS`.
    cmd: Client,
    registry: Mutex<Registry>,
    /// The lag and pending entries of the durable subscriptions' groups, as sampled last.
    pub(super) lag: AtomicU64,
    pub(super) pending: AtomicU64,
}

/// The subscriptions' counters, and whether a task samples their lag.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) list: Vec<Weak<Counters>>,
    /// Whether a task samples the durable groups' lag.
    sampling: bool,
}

impl Subscriptions {
    pub(super) fn new(cmd: Client) -> Self {
        Self {
            cmd,
            registry: Mutex::new(Registry::default()),
            lag: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }

    /// The registry, locked.
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new subscription; the first durable one starts the sampling of the lag
    /// every `every` (none: never sampled).
    pub(super) fn register(self: &Arc<Self>, counters: &Arc<Counters>, every: Option<Duration>) {
        let mut list = self.registry();
        list.list.retain(|w| w.strong_count() > 0);
        list.list.push(Arc::downgrade(counters));
        if counters.durable.is_some()
            && !list.sampling
            && let Some(every) = every
        {
            list.sampling = true;
            tokio::spawn(sample(Arc::downgrade(self), every));
        }
    }

    /// The streams and groups of the open durable subscriptions; `None` (and no sampling
    /// any more) when there are none.
    fn durable_targets(&self) -> Option<Targets> {
        let mut list = self.registry();
        let mut targets = Targets::new();
        for counters in list.list.iter().filter_map(Weak::upgrade) {
            if let Some((key, group)) = &counters.durable {
                targets
                    .entry(key.clone())
                    .or_default()
                    .insert(group.as_bytes().to_vec());
            }
        }
        if targets.is_empty() {
            list.sampling = false;
            return None;
        }
        Some(targets)
    }
}
