//! [`Durability`]: what a write must reach before it counts as done, so that it survives
//! the promotion of a replica (Redis Sentinel, Redis Cluster, a managed Redis built the same
//! way); `WAIT` after the writes that must (the crate docs, "Redis topologies and
//! durability").

pub use crate::persistence::{Fsync, Persistence, TellLoss};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientInterface, ClusterInterface};
use fred::prelude::*;
use fred::types::cluster::ClusterRouting;
use fred::types::config::Server;
use fred::types::{ClusterHash, CustomCommand};

use crate::conn::{self, as_bytes, s};

/// What a write that must survive a promotion (a lease or URN claim, a [`StateStore`]
/// write and its exactly-once record, a tell the client reports accepted, a reminder's
/// registration, cancellation, claim, renewal and acknowledgement, an event published on
/// a durable topic) must reach before it counts as done. Set in [`ProxyConfig::durability`](crate::ProxyConfig::durability),
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

    /// What [`replicated`](Self::replicated) checks the connection against: read just
    /// before a write is sent on `client` (its connections, and in a cluster which node
    /// serves each slot). Nothing to read at [`Primary`](Self::Primary).
    pub(crate) fn sending(&self, client: &Client) -> Sent {
        match self {
            Durability::Primary => Sent(None),
            Durability::Replicas { .. } => Sent(Some(Sending {
                ids: client.connection_ids(),
                routing: client
                    .is_clustered()
                    .then(|| client.cached_cluster_state())
                    .flatten(),
            })),
        }
    }

    /// Waits until the writes this connection sent so far (to the node serving `key`, in a
    /// cluster) reached the replicas this level asks for; at once at
    /// [`Primary`](Self::Primary). `Err` names how many did.
    ///
    /// A `WAIT` counts the writes of its own connection only, and answers at once on a
    /// connection that wrote nothing. So `client` must be the one the writes were sent on
    /// (a `ProxyClient` has [`pool_size`](crate::ProxyConfig::pool_size) connections), and
    /// `sent` ([`sending`](Self::sending), read before the writes) must still name the
    /// connections it has when the `WAIT` answers: if one was replaced meanwhile (Redis
    /// closed it, as Sentinel does to every client of a server it reconfigures, and the
    /// client reconnected, maybe to another server), the `WAIT` may have gone out on the new
    /// one and counted none of the writes; then it fails, the writes' fate unknown.
    ///
    /// In a cluster the `WAIT` goes to the node that served `key` when the writes were sent
    /// (`sent`) and still serves it by the client's slot map, and to no other: fred sends a
    /// command whose node it has no connection to (that node just died) to any node it is
    /// connected to, where a `WAIT` counts none of these writes and may answer at once with
    /// that node's replicas. It fails if the key's node changed meanwhile, or the client has
    /// no connection to it.
    ///
    /// Redis runs a connection's commands in order, and a `WAIT` holds its connection until
    /// it answers: callers that each sent their own would queue, the last one waiting for
    /// all the others' timeouts while a replica lags. So a connection has one `WAIT` in
    /// flight at a time ([`WaitGate`]), and every caller that came while it ran shares the
    /// next one, sent after they came (so after their writes): each waits for at most two.
    pub(crate) async fn replicated(
        &self,
        client: &Client,
        key: &str,
        sent: &Sent,
    ) -> Result<(), String> {
        let Durability::Replicas { n, timeout } = *self else {
            return Ok(());
        };
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let node = if client.is_clustered() {
            Some(node_of(client, slot, sent)?)
        } else {
            None
        };
        let gate = WaitGate::of(client, slot, node.as_ref());
        let got = gate
            .wait(|| send_wait(client, slot, node.clone(), n, timeout))
            .await?;
        if sent
            .0
            .as_ref()
            .is_some_and(|s| s.ids != client.connection_ids())
        {
            Err("the connection to Redis was replaced after the write: whether a replica holds it is unknown".into())
        } else if node.is_some() && node_of(client, slot, sent).ok() != node {
            Err("the key's Redis Cluster node changed after the write: whether a replica holds it is unknown".into())
        } else if got >= i64::from(n) {
            Ok(())
        } else {
            Err(format!(
                "the write reached {got} of the {n} replicas durability asks for within {timeout:?}"
            ))
        }
    }

    /// [`replicated`](Self::replicated) for writes to `keys` (on any node of a cluster): one
    /// `WAIT` per node serving them.
    pub(crate) async fn replicated_keys(
        &self,
        client: &Client,
        keys: &[&str],
        sent: &Sent,
    ) -> Result<(), String> {
        if matches!(self, Durability::Primary) || keys.is_empty() {
            return Ok(());
        }
        if !client.is_clustered() {
            return self.replicated(client, keys[0], sent).await;
        }
        let routing = client.cached_cluster_state();
        let mut servers = std::collections::HashSet::new();
        for key in keys {
            let slot = fred::util::redis_keyslot(key.as_bytes());
            let server = routing.as_ref().and_then(|r| r.get_server(slot)).cloned();
            // A key of a node not looked at yet (or any key, without a slot map).
            if server.is_none() || servers.insert(server) {
                self.replicated(client, key, sent).await?;
            }
        }
        Ok(())
    }

    /// Runs `operation` (writes and the `WAIT`s after them at this level) within `limit`,
    /// the caller's bound ([`command_timeout`](crate::ProxyConfig::command_timeout)), and
    /// ends it with `elapsed()` if it runs longer: each command is bounded on its own (the
    /// write by the command timeout, each `WAIT` by this level's timeout), and one caller may
    /// wait for two `WAIT`s after its write ([`replicated`](Self::replicated)), so the sum
    /// could otherwise outlast the caller's bound while the replicas lag. At
    /// [`Primary`](Self::Primary) there is no `WAIT`: `operation` runs as it is.
    pub(crate) async fn within<T, E>(
        &self,
        limit: Duration,
        operation: impl std::future::Future<Output = Result<T, E>>,
        elapsed: impl FnOnce() -> E,
    ) -> Result<T, E> {
        if matches!(self, Durability::Primary) {
            return operation.await;
        }
        tokio::time::timeout(limit, operation)
            .await
            .unwrap_or_else(|_| Err(elapsed()))
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

/// The connections (by server, their `CLIENT ID`) a client had when a write was sent, and
/// in a cluster its slot map then, at [`Durability::Replicas`]: a `WAIT` that answers once
/// they changed, or that went to another node, may have counted none of the write
/// ([`Durability::replicated`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent(Option<Sending>);

/// What [`Sent`] holds.
#[derive(Debug, Clone)]
pub(crate) struct Sending {
    ids: HashMap<Server, i64>,
    routing: Option<ClusterRouting>,
}

/// The node serving `slot` by `client`'s slot map, which must be the one that served it
/// when the writes were sent (when `sent` read the map).
fn node_of(client: &Client, slot: u16, sent: &Sent) -> Result<Server, String> {
    let now = client
        .cached_cluster_state()
        .and_then(|routing| routing.get_server(slot).cloned())
        .ok_or_else(|| format!("no Redis Cluster node known to serve slot {slot}"))?;
    let then = sent
        .0
        .as_ref()
        .and_then(|s| s.routing.as_ref())
        .and_then(|routing| routing.get_server(slot));
    match then {
        Some(then) if *then != now => Err(format!(
            "slot {slot} moved from {then} to {now} after the write: whether a replica holds it is unknown"
        )),
        _ => Ok(now),
    }
}

/// How much longer than its own timeout the client waits for a `WAIT`'s answer (the round
/// trip).
const WAIT_SLACK: Duration = Duration::from_millis(200);

/// `WAIT n timeout` on `client`'s connection to the node serving `slot` (`node`, in a
/// cluster: there only): how many replicas acknowledged its writes so far.
async fn send_wait(
    client: &Client,
    slot: u16,
    node: Option<Server>,
    n: u32,
    timeout: Duration,
) -> Result<i64, String> {
    let wait = CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false);
    let args = vec![
        Value::Integer(i64::from(n)),
        Value::Integer(timeout.as_millis().max(1) as i64),
    ];
    // Bounded by its own timeout (not the connection's command timeout), never sent again
    // on a new connection (a `WAIT` there would count none of these writes), and in a
    // cluster to `node` only: without a connection to it, fred would send it to another.
    let once = client.with_options(&Options {
        max_attempts: Some(1),
        timeout: Some(timeout + WAIT_SLACK),
        cluster_node: node,
        ..Options::default()
    });
    match conn::call(&once, wait, args).await {
        Ok(Value::Integer(got)) => Ok(got),
        Ok(other) => Err(format!("unexpected answer to WAIT: {other:?}")),
        Err(e) => Err(format!("WAIT: {e}")),
    }
}

/// One connection's `WAIT`s (a client's, to one node): one in flight at a time; a caller
/// takes the answer of the first `WAIT` sent after it came.
struct WaitGate {
    /// Held while a `WAIT` runs.
    sending: tokio::sync::Mutex<()>,
    waits: std::sync::Mutex<Waits>,
}

/// The `WAIT`s of a gate so far.
struct Waits {
    /// How many were sent (numbered from 1).
    sent: u64,
    /// The last answered: its number and its answer.
    answered: (u64, Result<i64, String>),
}

/// The gates of the connections that have callers now, by client id and node.
type Gates = std::sync::Mutex<HashMap<(String, String), Arc<WaitGate>>>;

impl WaitGate {
    /// The gate of `client`'s connection to `node` (in a cluster; else its one server).
    fn of(client: &Client, slot: u16, node: Option<&Server>) -> Arc<WaitGate> {
        static GATES: std::sync::OnceLock<Gates> = std::sync::OnceLock::new();
        let node = match node {
            Some(node) => node.to_string(),
            // Not a cluster (or, defensively, no node known): each slot on its own.
            None if client.is_clustered() => format!("slot {slot}"),
            None => String::new(),
        };
        let mut gates = GATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Gates nobody waits on are forgotten (their last answer is no use to a newcomer).
        gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        gates
            .entry((client.id().to_owned(), node))
            .or_insert_with(|| {
                Arc::new(WaitGate {
                    sending: tokio::sync::Mutex::new(()),
                    waits: std::sync::Mutex::new(Waits {
                        sent: 0,
                        answered: (0, Ok(0)),
                    }),
                })
            })
            .clone()
    }

    /// The answer of the first `WAIT` sent after this call began: one another caller sent
    /// meanwhile, or one `send` sends.
    async fn wait<F, Fut>(&self, send: F) -> Result<i64, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<i64, String>>,
    {
        let came = self.lock().sent;
        let _turn = self.sending.lock().await;
        let number = {
            let mut waits = self.lock();
            if waits.answered.0 > came {
                // Sent once this caller had come, so after its writes.
                return waits.answered.1.clone();
            }
            waits.sent += 1;
            waits.sent
        };
        let answer = send().await;
        self.lock().answered = (number, answer.clone());
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.waits.lock().unwrap_or_else(|e| e.into_inner())
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
mod cluster_tests;

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

    /// 64 callers coming while a `WAIT` runs share one more, sent after they all came: 2
    /// sent, not 65, and nobody takes the answer of the one sent before it came.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_coming_during_a_wait_share_the_next_one() {
        use std::sync::atomic::{AtomicI64, Ordering};
        let gate = Arc::new(WaitGate {
            sending: tokio::sync::Mutex::new(()),
            waits: std::sync::Mutex::new(Waits {
                sent: 0,
                answered: (0, Ok(0)),
            }),
        });
        let sent = Arc::new(AtomicI64::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        // Each WAIT answers its own number once released.
        let send = |sent: Arc<AtomicI64>, mut released: tokio::sync::watch::Receiver<bool>| {
            move || async move {
                let number = sent.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = released.wait_for(|r| *r).await;
                Ok(number)
            }
        };
        let first = tokio::spawn({
            let (gate, sent, released) = (gate.clone(), sent.clone(), released.clone());
            async move { gate.wait(send(sent, released)).await }
        });
        while sent.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let later: Vec<_> = (0..64)
            .map(|_| {
                let (gate, sent, released) = (gate.clone(), sent.clone(), released.clone());
                tokio::spawn(async move { gate.wait(send(sent, released)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        for caller in later {
            assert_eq!(caller.await.unwrap(), Ok(2), "the WAIT sent after it came");
        }
        assert_eq!(sent.load(Ordering::SeqCst), 2);
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
