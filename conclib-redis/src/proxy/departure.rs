//! A proxy's graceful departure: [`ProxyHandle::shutdown`](crate::ProxyHandle::shutdown)
//! bounded by [`ProxyConfig::shutdown_timeout`](crate::ProxyConfig::shutdown_timeout)
//! whatever Redis does, and the "departed" markers it leaves first, so that clients take the
//! URNs it served for restarting (`Unavailable`) rather than unknown during
//! [`ProxyConfig::departed_grace`](crate::ProxyConfig::departed_grace).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use tokio::task::JoinHandle;

use super::scale::{group, passivation};
use super::scripts::Script;
use super::serve::{lease, write};
use super::shared::{Role, Shared};
use crate::conn::{self, owned};
use crate::error::ServeError;

/// Writes one departed marker: `KEYS[1]` = `ARGV[1]` (the system id) for `ARGV[2]` ms.
const MARK_DEPARTED_SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1";

/// The proxy's own tasks, stopped in this order by a graceful shutdown.
pub(super) struct Tasks {
    pub(super) reader: Option<JoinHandle<()>>,
    pub(super) writer: Option<JoinHandle<()>>,
    pub(super) heartbeat: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stops reading the stream: what the reader took is handled, and what the writer holds
    /// is written, before this returns.
    pub(super) async fn stop_serving(&mut self, shared: &Shared) {
        shared.serving.store(false, Ordering::Release);
        let _ = shared.stop.send_replace(true);
        if let Some(reader) = self.reader.take() {
            let _ = reader.await;
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }
}

/// How a shutdown ended.
enum Departure {
    /// Everything handed over; the result of telling Redis.
    Graceful(Result<(), ServeError>),
    /// The bound passed first: stopped where it was.
    Cut,
}

/// Shuts the proxy down gracefully within its bound; past it, stops its tasks and drops its
/// connections, leaving the rest in Redis (its lease and the requests it had taken lapse to
/// the next holder, as after a crash).
pub(super) async fn depart(shared: Arc<Shared>, mut tasks: Tasks) -> Result<(), ServeError> {
    let bound = shared.config.shutdown_timeout;
    let aborts: Vec<_> = [&tasks.reader, &tasks.writer, &tasks.heartbeat]
        .into_iter()
        .flatten()
        .map(JoinHandle::abort_handle)
        .collect();
    let departure = match tokio::time::timeout(bound, graceful(&shared, &mut tasks)).await {
        Ok(result) => Departure::Graceful(result),
        Err(_) => Departure::Cut,
    };
    match departure {
        Departure::Graceful(result) => {
            quit_within(&shared, bound).await;
            tracing::info!(system = %shared.system_id, "Redis proxy stopped");
            result
        }
        Departure::Cut => {
            for task in aborts {
                task.abort();
            }
            shared.serving.store(false, Ordering::Release);
            let _ = shared.stop.send_replace(true);
            // Dropped handles abort their members' loops (what they took lapses to the others).
            let members: Vec<_> = shared.groups().drain().collect();
            drop(members);
            // Closed in the background: the bound is already spent.
            let closing = shared.clone();
            tokio::spawn(async move { quit_within(&closing, Duration::from_secs(1)).await });
            tracing::warn!(
                system = %shared.system_id,
                ?bound,
                "Redis proxy stopped without finishing its shutdown (Redis unreachable?): \
                 what it had not handed over stays in Redis for the next holder"
            );
            Err(ServeError::ShutdownCut { bound })
        }
    }
}

/// Closes both connections, giving up after `bound` (Redis unreachable).
async fn quit_within(shared: &Shared, bound: Duration) {
    let quits = async {
        let _ = shared.cmd.quit().await;
        let _ = shared.reader.quit().await;
    };
    let _ = tokio::time::timeout(bound, quits).await;
}

/// The shutdown as it runs when Redis answers: markers, groups left, activations
/// passivated, requests taken finished and acknowledged, ownerships and lease released.
async fn graceful(shared: &Arc<Shared>, tasks: &mut Tasks) -> Result<(), ServeError> {
    let mut result = mark_departed(shared).await;
    if let Err(e) = group::leave_all(shared).await {
        result = Err(e);
    }
    passivation::passivate_all(shared).await;
    tasks.stop_serving(shared).await;
    if let Some(heartbeat) = tasks.heartbeat.take() {
        heartbeat.abort();
        let _ = heartbeat.await;
    }
    write::trim_exact(shared).await;
    if shared.config.snapshot_interval.is_some()
        && let Err(e) =
            crate::snapshots::withdraw(&shared.cmd, &shared.keys, &shared.system_id).await
    {
        result = Err(ServeError::Unavailable(e.to_string()));
    }
    if shared.config.release_on_shutdown {
        let urns: Vec<String> = shared.registry().owned.drain().collect();
        let calls = urns
            .iter()
            .map(|u| (shared.keys.urn(u), vec![owned(shared.system_id.clone())]))
            .collect();
        for r in shared.scripts.release.eval_many(&shared.cmd, calls).await {
            if let Err(e) = r {
                result = Err(ServeError::Unavailable(e.to_string()));
            }
        }
        // Nothing waits in the stream: deleted, so that a client that cached the route
        // looks the URN up again at once rather than at its deadline.
        let close = Script::new(crate::protocol::CLOSE_SCRIPT);
        let calls = vec![(
            shared.stream.requests_key.clone(),
            vec![conn::s(crate::protocol::CONSUMER_GROUP)],
        )];
        if let Some(Err(e)) = close.eval_many(&shared.cmd, calls).await.into_iter().next() {
            result = Err(ServeError::Unavailable(e.to_string()));
        }
    }
    if let Err(e) = lease::release_lease(shared).await {
        result = Err(ServeError::Unavailable(e.to_string()));
    }
    result
}

/// Leaves a departed marker, for [`departed_grace`](crate::ProxyConfig::departed_grace), on
/// every URN this system serves (its actors and activations, its groups' URNs) and on the
/// patterns it activates: written first, so that no client finds a URN released and
/// unmarked. One script call per key, pipelined.
async fn mark_departed(shared: &Shared) -> Result<(), ServeError> {
    let grace = shared.config.departed_grace;
    if grace.is_zero() {
        return Ok(());
    }
    let mut keys: Vec<String> = shared
        .registry()
        .owned
        .iter()
        .map(|u| shared.keys.departed_urn(u))
        .collect();
    for (name, member) in shared.groups().iter() {
        let pattern = matches!(&member.shared.role, Role::Member(m) if m.pattern);
        keys.push(if pattern {
            shared.keys.departed_pattern(name)
        } else {
            shared.keys.departed_urn(name)
        });
    }
    if keys.is_empty() {
        return Ok(());
    }
    let ms = grace.as_millis().max(1).to_string();
    let calls = keys
        .into_iter()
        .map(|k| (k, vec![owned(shared.system_id.clone()), owned(ms.clone())]))
        .collect();
    let script = Script::new(MARK_DEPARTED_SCRIPT);
    for r in script.eval_many(&shared.cmd, calls).await {
        if let Err(e) = r {
            return Err(ServeError::Unavailable(e.to_string()));
        }
    }
    Ok(())
}
