//! `Durability::replicated` on a real Cluster (`conclib_testkit::redis_ha`) whose node dies
//! between writes and their `WAIT`.

use std::time::{Duration, Instant};

use conclib_testkit::redis_ha::{Cluster, cli};
use fred::prelude::*;

use super::{Durability, WAIT_SLACK};
use crate::config::ProxyConfig;

/// How late past its bound a `WAIT` may come back on a loaded machine.
const MARGIN: Duration = Duration::from_millis(250);

/// The port of `primary`'s replica, from its `INFO replication`.
fn replica_of(primary: u16) -> u16 {
    let info = cli(primary, &["INFO", "replication"]).expect("INFO replication");
    info.lines()
        .find_map(|l| l.strip_prefix("slave0:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("port=")))
        .and_then(|p| p.trim().parse().ok())
        .expect("the primary has a replica")
}

async fn set(client: &Client, key: &str, value: &str) {
    let _: () = client
        .set(key, value, None, None, false)
        .await
        .expect("SET on the slot's primary");
}

/// Writes taken by a Cluster primary whose replica was stalled, then the primary SIGKILLed:
/// 64 callers asking without pause whether those writes were replicated all get an error,
/// each within its bound. fred sends a command whose node it has no connection to (here,
/// the dead one) to any node it is connected to, where a `WAIT` counts none of these writes
/// and answers at once with that node's replicas; and it keeps a dropped connection's
/// `CLIENT ID` until its next slot-map refresh, so the connections looked the same. Before
/// the `WAIT` was sent to the write's node only, this test saw such a write counted as
/// replicated in 1 of 3 runs (and the failover example lost reminders whose registration
/// had returned `Ok` 16 ms after the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_writes_to_a_cluster_node_that_died_goes_to_no_other_node() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("the cluster starts");
    let config = ProxyConfig::new(cluster.url());
    let client = config
        .builder::<std::convert::Infallible>(Duration::from_secs(2))
        .expect("a client")
        .build()
        .expect("a client");
    client.init().await.expect("connected");
    let level = Durability::Replicas {
        n: 1,
        timeout: Duration::from_millis(300),
    };
    let key = "{wait-routing}:k";
    let slot = fred::util::redis_keyslot(key.as_bytes());
    let primary = cluster.primary_of_slot(slot).expect("the slot's primary");
    let replica = replica_of(primary);

    // While the replica follows, the write is replicated and the `WAIT` says so.
    let sent = level.sending(&client);
    set(&client, key, "0").await;
    level
        .replicated(&client, key, &sent)
        .await
        .expect("replicated while the replica follows");

    // The replica stalled and cut off: writes the primary takes reach no replica.
    let node = |c: &mut Cluster, port: u16| {
        c.nodes
            .iter_mut()
            .position(|n| n.port == port)
            .expect("a node of the cluster")
    };
    let r = node(&mut cluster, replica);
    cluster.nodes[r].signal(libc::SIGSTOP);
    cli(primary, &["CLIENT", "KILL", "TYPE", "replica"]).expect("replication cut");
    let sent = level.sending(&client);
    for i in 0..64 {
        set(&client, &format!("{{wait-routing}}:{i}"), "1").await;
    }
    let p = node(&mut cluster, primary);
    cluster.nodes[p].kill();
    // Until the client saw the connection close: a command pinned to the dead node fails.
    let pinned = client.with_options(&Options {
        cluster_node: Some(fred::types::config::Server::new("127.0.0.1", primary)),
        max_attempts: Some(1),
        timeout: Some(Duration::from_millis(200)),
        ..Options::default()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while pinned.ping::<String>(None).await.is_ok() {
        assert!(Instant::now() < deadline, "the killed node still answers");
    }
    // 64 callers ask without pause, for 1.5 s (the replica stalled: no failover), whether
    // their writes were replicated. Each waits for at most two `WAIT`s: the one running
    // when it came, and the one it shares (`WaitGate`).
    let bound = 2 * (Duration::from_millis(300) + WAIT_SLACK) + MARGIN;
    let until = Instant::now() + Duration::from_millis(1500);
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let (client, sent) = (client.clone(), sent.clone());
            tokio::spawn(async move {
                let key = format!("{{wait-routing}}:{i}");
                let mut outcomes = Vec::new();
                while Instant::now() < until {
                    let began = Instant::now();
                    let outcome = level.replicated(&client, &key, &sent).await;
                    outcomes.push((outcome, began.elapsed()));
                }
                outcomes
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.expect("a caller"));
    }
    cluster.nodes[r].signal(libc::SIGCONT);
    // Every outcome, by kind, for the messages below.
    let mut kinds = std::collections::BTreeMap::new();
    for (outcome, _) in &outcomes {
        *kinds.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    for (outcome, took) in &outcomes {
        assert!(
            outcome.is_err(),
            "a write only the dead primary took counted as replicated: {kinds:?}"
        );
        assert!(*took <= bound, "a WAIT came back after {took:?}: {kinds:?}");
    }
    let _ = client.quit().await;
}
