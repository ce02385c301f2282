//! Redis restarts: who the Redis server is, and which asks a restart took away.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::shared::Shared;
use crate::conn::{self, as_bytes, s};
use crate::error::ProxyError;

impl Shared {
    /// Redis does not know `urn` (or its system's stream). That is an answer, `UnknownUrn`,
    /// unless Redis restarted less than one lease ago and this client knew the URN: the
    /// owner may not have registered it again yet, so wait a little (`Ok`: look again) until
    /// the deadline, then answer `Unavailable`.
    pub(super) async fn wait_if_redis_lost_it(
        &self,
        urn: &str,
        deadline: Instant,
    ) -> Result<(), ProxyError> {
        let unknown = || ProxyError::UnknownUrn {
            urn: urn.to_owned(),
        };
        let knew = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(urn);
        if !knew || !self.redis_restarted_within(self.config.lease_ttl).await {
            return Err(unknown());
        }
        let next = Instant::now() + Duration::from_millis(25);
        if next >= deadline {
            return Err(ProxyError::Unavailable(format!(
                "Redis restarted moments ago and {urn} is not registered again yet"
            )));
        }
        tokio::time::sleep_until(next.into()).await;
        Ok(())
    }

    /// Whether the Redis we talk to is not the one this client connected to (it restarted,
    /// and lost its keys unless it persists them) and started less than `window` ago.
    pub(super) async fn redis_restarted_within(&self, window: Duration) -> bool {
        let (run_id, uptime) = self.server_info().await;
        let connected_to = self
            .run_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        run_id.is_some()
            && run_id != connected_to
            && uptime.is_some_and(|up| up < window + Duration::from_secs(1))
    }

    /// Redis's `run_id` and uptime (`None`s if it does not answer).
    pub(super) async fn server_info(&self) -> (Option<String>, Option<Duration>) {
        match self.identify(None).await {
            Some(id) => (Some(id.run_id), Some(id.uptime)),
            None => (None, None),
        }
    }

    /// Who Redis is (`node`: which node of a cluster), from `INFO server persistence
    /// replication`; `None` if it does not answer.
    pub(super) async fn identify(&self, node: Option<&Server>) -> Option<Identity> {
        let options = Options {
            cluster_node: node.cloned(),
            ..Self::command_options(self.config.command_timeout)
        };
        let client = self.connection().ok()?.with_options(&options);
        let args = vec![s("server"), s("persistence"), s("replication")];
        let info = conn::call(&client, conn::unkeyed("INFO"), args)
            .await
            .ok()?;
        Identity::parse(&String::from_utf8_lossy(as_bytes(&info)?))
    }
}

/// What `INFO` says of a Redis server's identity and of the data it started with.
#[derive(Debug)]
pub(super) struct Identity {
    /// Random, new at each start of the server.
    run_id: String,
    uptime: Duration,
    /// Whether it may hold data written before it started: it loads (or loaded keys from) a
    /// persistence file, appends to one (AOF), or is a replica that took over from its
    /// primary (it carries the primary's replication id as its second one). Otherwise it
    /// started empty.
    kept_data: bool,
}

impl Identity {
    pub(super) fn parse(text: &str) -> Option<Identity> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
        let kept_data = field("loading:") == Some("1")
            || field("aof_enabled:") == Some("1")
            || number("rdb_last_load_keys_loaded:").is_some_and(|n| n > 0)
            || field("master_replid2:").is_some_and(|id| id.bytes().any(|b| b != b'0'));
        Some(Identity {
            run_id: field("run_id:")?.to_owned(),
            uptime: Duration::from_secs(number("uptime_in_seconds:")?),
            kept_data,
        })
    }
}

/// Redis restarts, and the asks whose requests they took away.
///
/// An ask's request lives in Redis (in a stream, then as its answer in the client's reply
/// list) until its answer is read. A Redis without persistence that restarts loses it, and
/// no answer will ever come: waiting for the ask's deadline only to report `Timeout` helps
/// nobody (a web server wants its 503 now). So the client identifies each Redis it
/// reconnects to (`io::watch_restarts`): a new `run_id` means a new Redis process. If that
/// one started empty (no persistence file loaded, not a promoted replica: see
/// [`Identity::kept_data`]), every request Redis took before is gone, and its ask fails
/// `Unavailable` at once, here. If it may have kept its data, the request may still be
/// there and be answered: its ask waits, and if its deadline passes first it reports
/// `Unavailable` (the client saw the connection drop), not `Timeout`. A lost connection
/// alone fails no ask: a Redis that comes back with its data (or never went away: a network
/// blip) still answers them.
///
/// Which asks lost their requests: a waiter is marked `written` under the `pending` lock
/// once its request was taken, with the count of losses read just before the write
/// (`writes_done`); a loss is counted under the same lock. So an ask is failed either here
/// (written before) or by `writes_done` (a loss counted since it read the count), never missed. A
/// request written to the new Redis between the reconnection and the client's `INFO`
/// (milliseconds) is failed too: the client cannot tell it from one written to the old
/// Redis. An ask failed here may still have been handled (a proxy that held the request
/// answers it into the new Redis, after the ask gave up): `Unavailable` says the outcome is
/// unknown, as a timeout would.
///
/// Why "may have kept its data" and not "still holds the entry": the client cannot look for
/// its entries: its ACL role (`client_acl`) may not read request streams, and the batching script
/// does not return the ids. A Redis that loaded an older snapshot may lack a recent entry:
/// that ask ends `Unavailable` at its deadline. In a cluster, the node that restarted may
/// not hold all the streams the pending asks wrote to; without the slot map at hand the
/// client fails them all, erring on the side of a prompt 503.
impl Shared {
    /// Notes what the client found after reconnecting to `node` (`None` unless Redis is a
    /// cluster); fails the asks whose requests a Redis that restarted empty lost.
    pub(super) fn identified(&self, node: Option<Server>, id: &Identity) {
        let before = self
            .run_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.clone(), id.run_id.clone());
        if before.is_none_or(|before| before == id.run_id) {
            return;
        }
        self.restarted(node.as_ref(), id);
    }

    pub(super) fn restarted(&self, node: Option<&Server>, id: &Identity) {
        // Asks that run out of time from now on report Unavailable, whatever became of
        // their requests.
        self.disconnects.fetch_add(1, Ordering::AcqRel);
        if id.kept_data {
            tracing::info!(
                node = ?node,
                run_id = %id.run_id,
                "Redis restarted (or a replica took over) with data: pending asks wait for their answers"
            );
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        self.losses.fetch_add(1, Ordering::AcqRel);
        let lost: Vec<u64> = pending
            .iter()
            .filter(|(_, waiter)| waiter.written)
            .map(|(request, _)| *request)
            .collect();
        for request in &lost {
            if let Some(waiter) = pending.remove(request) {
                let _ = waiter.reply.send(Err(ProxyError::Unavailable(
                    "Redis restarted without its data; the request was lost".into(),
                )));
            }
        }
        drop(pending);
        tracing::warn!(
            node = ?node,
            run_id = %id.run_id,
            lost = lost.len(),
            "Redis restarted empty: asks whose requests it held failed Unavailable"
        );
    }

    /// The writes of the asks `ids` are done: with `Ok(losses)` (Redis took them, the writer
    /// having read `losses` before the write) each is marked written, unless a Redis that
    /// restarted empty was found since (their requests may have gone with it: each fails
    /// `Unavailable`); with an error each fails with it. An ask no longer pending was answered
    /// (or gave up) already.
    pub(super) fn writes_done(&self, ids: &[u64], outcome: Result<u64, ProxyError>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let failed = match outcome {
            // Compared under the lock a loss is counted under (see `restarted`).
            Ok(losses) if self.losses.load(Ordering::Acquire) == losses => {
                for id in ids {
                    if let Some(waiter) = pending.get_mut(id) {
                        waiter.written = true;
                    }
                }
                return;
            }
            Ok(_) => ProxyError::Unavailable(
                "Redis restarted without its data just as the request was written".into(),
            ),
            Err(e) => e,
        };
        for id in ids {
            if let Some(waiter) = pending.remove(id) {
                let _ = waiter.reply.send(Err(failed.clone()));
            }
        }
    }
}
