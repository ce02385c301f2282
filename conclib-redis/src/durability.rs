//! [`Durability`]: what a write must reach before it counts as done, so that it survives
//! the promotion of a replica (Redis Sentinel, Redis Cluster, a managed Redis built the same
//! way); `WAIT` after the writes that must (the crate docs, "Redis topologies and
//! durability").

pub use crate::persistence::{Fsync, Persistence, TellLoss};

use std::time::Duration;

use fred::interfaces::ClusterInterface;
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};

use crate::conn::{self, as_bytes, s};

/// What a write that must survive a promotion (a lease or URN claim, a [`StateStore`]
/// write and its exactly-once record, a tell the client reports accepted) must reach
/// before it counts as done. Set in [`ProxyConfig::durability`](crate::ProxyConfig::durability),
/// for proxies and clients alike.
///
/// Redis replicates asynchronously: a replica promoted when its primary dies may lack the
/// writes the primary acknowledged last. At [`Primary`](Self::Primary) conclib's guarantees
/// hold against one Redis (restarted, paused, killed), and a lagging promotion may undo what
/// was acknowledged. At [`Replicas`](Self::Replicas), each such write is followed by `WAIT n
/// timeout` on its connection, and fails unless `n` replicas hold it: what was acknowledged
/// survives the promotion of any replica that was among those `n` (Sentinel and Cluster
/// promote the most up-to-date replica they reach; with `n` equal to the number of replicas,
/// any).
///
/// [`StateStore`]: crate::scale::StateStore
///
/// ```
/// use std::time::Duration;
/// use conclib_redis::{Durability, ProxyConfig};
///
/// let mut config = ProxyConfig::new("redis-sentinel://10.0.0.1:26379/0?sentinelServiceName=main");
/// config.durability = Durability::Replicas { n: 1, timeout: Duration::from_millis(500) };
/// assert_eq!(config.durability.replicas(), 1);
/// assert_eq!(Durability::default(), Durability::Primary);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A write counts as done once the primary took it (no `WAIT`): the default, and all a
    /// Redis without replicas offers.
    #[default]
    Primary,
    /// A write counts as done once `n` replicas acknowledged it (`WAIT n timeout`); if
    /// fewer did within `timeout`, the operation fails (the write may still be on the
    /// primary: its outcome is unknown, as after a timeout).
    Replicas {
        /// How many replicas must hold the write.
        n: u32,
        /// How long to wait for them.
        timeout: Duration,
    },
}

impl Durability {
    /// How many replicas a write must reach (0 at [`Primary`](Self::Primary)).
    #[must_use]
    pub fn replicas(&self) -> u32 {
        match self {
            Durability::Primary => 0,
            Durability::Replicas { n, .. } => *n,
        }
    }

    /// `primary` or `replicas=N/TIMEOUTms`, as logs and examples print it.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Durability::Primary => "primary".into(),
            Durability::Replicas { n, timeout } => {
                format!("replicas={n}/{}ms", timeout.as_millis())
            }
        }
    }

    /// Waits until the writes this connection sent so far (to the node serving `key`, in a
    /// cluster) reached the replicas this level asks for; at once at
    /// [`Primary`](Self::Primary). `Err` names how many did.
    pub(crate) async fn replicated<C: ClientLike>(
        &self,
        client: &C,
        key: &str,
    ) -> Result<(), String> {
        let Durability::Replicas { n, timeout } = *self else {
            return Ok(());
        };
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
        let args = vec![
            Value::Integer(i64::from(n)),
            Value::Integer(timeout.as_millis().max(1) as i64),
        ];
        match conn::call(client, wait, args).await {
            Ok(Value::Integer(got)) if got >= i64::from(n) => Ok(()),
            Ok(Value::Integer(got)) => Err(format!(
                "the write reached {got} of the {n} replicas durability asks for within {timeout:?}"
            )),
            Ok(other) => Err(format!("unexpected answer to WAIT: {other:?}")),
            Err(e) => Err(format!("WAIT: {e}")),
        }
    }

    /// [`replicated`](Self::replicated) for writes to `keys` (on any node of a cluster): one
    /// `WAIT` per node serving them.
    pub(crate) async fn replicated_keys(
        &self,
        client: &Client,
        keys: &[&str],
    ) -> Result<(), String> {
        if matches!(self, Durability::Primary) || keys.is_empty() {
            return Ok(());
        }
        if !client.is_clustered() {
            return self.replicated(client, keys[0]).await;
        }
        let routing = client.cached_cluster_state();
        let mut servers = std::collections::HashSet::new();
        for key in keys {
            let slot = fred::util::redis_keyslot(key.as_bytes());
            let server = routing.as_ref().and_then(|r| r.get_server(slot)).cloned();
            // A key of a node not looked at yet (or any key, without a slot map).
            if server.is_none() || servers.insert(server) {
                self.replicated(client, key).await?;
            }
        }
        Ok(())
    }

    /// Reads how many replicas the primary has (`INFO replication`) and warns (once, at
    /// start-up) when this level and the topology disagree: replicas at
    /// [`Primary`](Self::Primary) (a promotion may undo acknowledged writes), fewer
    /// replicas than [`Replicas`](Self::Replicas) asks for (every such write fails).
    pub(crate) async fn check_topology(&self, client: &Client, url: &str, who: &str) {
        let info = conn::call(client, conn::unkeyed("INFO"), vec![s("replication")]).await;
        let Some(text) = info
            .ok()
            .and_then(|v| as_bytes(&v).map(|b| String::from_utf8_lossy(b).into_owned()))
        else {
            return;
        };
        let replicas = text
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        let topology = topology_of(url);
        match self {
            Durability::Primary if replicas > 0 || topology != "single" => tracing::warn!(
                who,
                topology,
                replicas,
                durability = %self.label(),
                "Redis has replicas and durability is Primary: a promotion of a lagging replica may undo acknowledged state writes, leases and accepted tells (docs: Redis topologies and durability; set ProxyConfig::durability to Replicas)"
            ),
            Durability::Replicas { n, .. } if replicas < *n => tracing::warn!(
                who,
                topology,
                replicas,
                durability = %self.label(),
                "the primary has fewer replicas than durability asks for: every write that must survive a promotion fails until enough replicas connect"
            ),
            _ => {
                tracing::debug!(who, topology, replicas, durability = %self.label(), "Redis replicas checked")
            }
        }
    }
}

/// `sentinel`, `cluster` or `single`, from a Redis URL's scheme.
fn topology_of(url: &str) -> &'static str {
    let scheme = url.split("://").next().unwrap_or_default();
    if scheme.ends_with("-sentinel") {
        "sentinel"
    } else if scheme.ends_with("-cluster") {
        "cluster"
    } else {
        "single"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_is_read_from_the_scheme() {
        assert_eq!(
            topology_of("redis-sentinel://h:1/0?sentinelServiceName=m"),
            "sentinel"
        );
        assert_eq!(topology_of("rediss-cluster://h:1"), "cluster");
        assert_eq!(topology_of("redis://h:1"), "single");
    }

    #[test]
    fn labels_name_the_level() {
        assert_eq!(Durability::Primary.label(), "primary");
        let level = Durability::Replicas {
            n: 2,
            timeout: Duration::from_millis(250),
        };
        assert_eq!(level.label(), "replicas=2/250ms");
        assert_eq!(level.replicas(), 2);
    }
}
