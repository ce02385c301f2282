//! Reminders on a Redis Cluster of 3 primaries: the 16 shards' hash tags spread over the
//! nodes, each shard's scripts run on its node, and reminders of 32 URNs fire once each.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_core::ActorSystem;
use conclib_macros::actor;
use conclib_redis::{
    ProxyClient, ProxyConfig,
    reminders::{
        REMINDER_SHARDS, Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders,
    },
    scale::Activation,
    start_proxy,
};

use crate::common::eventually;
use crate::durability::servers;

pub(crate) type Handled = Arc<Mutex<Vec<String>>>;

/// Notes `urn name` for each tick.
#[actor]
pub(crate) struct Noted {
    pub(crate) urn: String,
    pub(crate) handled: Handled,
}

#[actor]
impl Noted {
    #[handle(remote)]
    fn tick(&mut self, tick: ReminderTick) -> Result<(), String> {
        self.handled
            .lock()
            .unwrap()
            .push(format!("{} {}", self.urn, tick.name()));
        Ok(())
    }
}

pub(crate) async fn reminders_fire_once_on_a_redis_cluster() {
    let cluster = servers::start_cluster(3).await;
    let ns = "rem-cluster";
    let mut config = ProxyConfig::new(cluster.url()).with_namespace(ns);
    config.connect_timeout = Duration::from_secs(10);
    config.release_on_shutdown = true;
    let nodes: std::collections::BTreeSet<usize> = (0..REMINDER_SHARDS)
        .map(|s| cluster.node_of_key(&format!("{ns}:rem:{{{ns}:{s}}}:due")))
        .collect();
    assert_eq!(nodes.len(), 3, "the shards spread over every node");

    let handled: Handled = Arc::default();
    let system = ActorSystem::new("cluster-1");
    let proxy = start_proxy(&system, &config.clone().with_system_id("cluster-1"))
        .await
        .unwrap();
    let h = handled.clone();
    proxy
        .activate("rem:{id}", move |a: Activation| {
            let actor = Noted {
                urn: a.urn().to_owned(),
                handled: h.clone(),
            };
            async move { Ok::<_, String>(actor) }
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(50)),
    )
    .unwrap();
    let reminders = Reminders::new(&client);
    for u in 0..32 {
        for n in ["a", "b"] {
            reminders
                .register(
                    &format!("rem:{u}"),
                    Reminder::after(n, Duration::from_millis(300)),
                )
                .await
                .unwrap();
        }
    }
    reminders
        .register("rem:later", Reminder::after("x", Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(reminders.list("rem:later").await.unwrap().len(), 1);
    assert!(reminders.cancel("rem:later", "x").await.unwrap());
    eventually(Duration::from_secs(30), "64 ticks handled", || async {
        handled.lock().unwrap().len() >= 64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for h in handled.lock().unwrap().iter() {
        *seen.entry(h.clone()).or_default() += 1;
    }
    assert_eq!(seen.len(), 64);
    assert!(seen.values().all(|c| *c == 1), "{seen:?}");
    poller.shutdown().await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
