//! Claims held while their ticks are delivered, renewed as a lease is: every third of the
//! claim lease a poller pushes the end of each claim it still holds (`RENEW`, one call per
//! shard), so that a claim lapses one claim lease after its poller stopped renewing it (it
//! died, froze, or lost Redis) and not one delivery timeout after it was taken: another
//! poller then delivers the tick, within the same bound as an activation's failover by
//! lease (`ProxyConfig::lease_ttl`, 4 s by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fred::prelude::*;

use super::keys::{SHARDS, ShardKeys};
use super::store::scripts;
use crate::conn::owned;
use crate::durability::Durability;

/// Claim token → the claim's shard and due-set member.
type Held = HashMap<Arc<str>, (u32, Arc<str>)>;

/// The claims this poller holds: by claim token, its shard and due-set member (shared with
/// the delivery's own copies: holding a claim allocates nothing but its map entry).
#[derive(Default)]
pub(crate) struct HeldClaims {
    held: Mutex<Held>,
}

impl HeldClaims {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a claim of `shard` from its claiming until it is acknowledged or given back.
    pub(crate) fn hold(&self, token: &Arc<str>, shard: u32, member: &Arc<str>) {
        self.lock().insert(token.clone(), (shard, member.clone()));
    }

    /// Forgets a claim acknowledged, given back or found taken over.
    pub(crate) fn forget(&self, token: &str) {
        self.lock().remove(token);
    }

    /// How many it holds.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Renews every claim held, one call per shard; a claim no longer this poller's (taken
    /// over, re-registered, cancelled) is left alone by the script. Each renewal waits for
    /// the replicas `durability` asks for, as a system's lease renewal does: a renewal the
    /// promoted replica lacks lets the claim lapse early, to another poller.
    pub(crate) async fn renew(
        &self,
        cmd: &Client,
        ns: &str,
        lease_ms: u64,
        durability: Durability,
    ) {
        let mut by_shard: Vec<Vec<(Arc<str>, Arc<str>)>> =
            (0..SHARDS).map(|_| Vec::new()).collect();
        for (token, (shard, member)) in self.lock().iter() {
            by_shard[*shard as usize].push((member.clone(), token.clone()));
        }
        let calls = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, claims)| !claims.is_empty())
            .map(|(shard, claims)| async move {
                let keys = ShardKeys::new(ns, shard as u32);
                let mut args = Vec::with_capacity(2 + 2 * claims.len());
                args.push(owned(lease_ms.to_string()));
                args.push(owned(keys.record_prefix()));
                for (member, token) in claims {
                    args.push(owned(&*member));
                    args.push(owned(&*token));
                }
                let sent = durability.sending(cmd);
                if let Err(e) = scripts().renew.eval(cmd, vec![keys.due()], args).await {
                    tracing::debug!(shard, error = %e, "reminders: renewing claims failed");
                } else if let Err(e) = durability.replicated(cmd, &keys.due(), &sent).await {
                    tracing::warn!(shard, error = %e, "reminders: claim renewals not replicated");
                }
            });
        futures_util::future::join_all(calls).await;
    }
}
