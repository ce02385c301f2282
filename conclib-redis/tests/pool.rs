//! A pool reached through the Redis proxy by its URN, like any actor.
mod common;

use common::actors::*;
use common::config;
use conclib_core::{ActorSystem, Routing};
use conclib_redis::{ProxyClient, start_proxy};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_urn_is_asked_through_redis_like_any_actor() {
    let config = config("pool");
    let system = ActorSystem::new("pool");
    let pool = system
        .pool(Counter::default)
        .size(3)
        .routing(Routing::RoundRobin)
        .urn("counters")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let mut totals = Vec::new();
    for _ in 0..6 {
        totals.push(client.ask("counters", Add(1)).await.unwrap());
    }
    // Round-robin over three members, each with its own count.
    totals.sort_unstable();
    assert_eq!(totals, vec![1, 1, 1, 2, 2, 2]);
    for member in pool.members() {
        assert_eq!(member.to_dyn().ask(Get).await.unwrap(), 2);
    }
    // Tells go through the pool too.
    for _ in 0..3 {
        client.tell("counters", Add(10)).await.unwrap();
    }
    common::eventually(Duration::from_secs(5), "the told adds", || {
        let members = pool.members();
        async move {
            let mut sum = 0;
            for m in members {
                sum += m.to_dyn().ask(Get).await.unwrap();
            }
            sum == 36
        }
    })
    .await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
