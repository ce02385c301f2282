//! The method-call API on a remote handle: `client.actor::<Counter>(urn).add(5).await`
//! through a real redis-server and the proxy.
#![cfg(feature = "redis")]

use conclib::AskError;
use std::time::Duration;

use conclib::redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use conclib::{ActorSystem, Priority, actor};

/// The counter a web process calls.
#[actor(urn = "api:remote-counter")]
pub struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    /// Adds `n`; returns the new total.
    #[handle(remote)]
    pub fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }

    /// Subtracts, failing below zero.
    #[handle(remote)]
    pub fn withdraw(&mut self, n: u64) -> Result<u64, String> {
        self.total = self.total.checked_sub(n).ok_or("overdrawn")?;
        Ok(self.total)
    }

    /// Back to zero.
    #[handle(remote)]
    pub fn reset(&mut self) {
        self.total = 0;
    }

    /// Takes its time.
    #[handle(remote)]
    pub async fn nap(&mut self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_api_works_on_a_remote_handle() {
    let redis = start_redis(&ProxyConfig::default()).await.unwrap();
    let config = redis.config(&ProxyConfig::default().with_namespace("api-remote"));

    // The actor's side.
    let system = ActorSystem::new("api-remote");
    let _counter = system.spawn(Counter { total: 0 }).await.unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();

    // The web process's side: a client and the actor's type, never run here.
    let client = ProxyClient::connect(&config).await.unwrap();
    let counter = client.actor::<Counter>("api:remote-counter");
    assert_eq!(counter.urn(), "api:remote-counter");
    assert_eq!(counter.add(5).await.unwrap(), 5);
    assert_eq!(counter.add(1).priority(Priority::High).await.unwrap(), 6);
    assert_eq!(counter.withdraw(2).await.unwrap(), 4);
    match counter.withdraw(10).await {
        Err(AskError::Handler(e)) => assert_eq!(e, "overdrawn"),
        other => panic!("{other:?}"),
    }
    // A tell returns once Redis holds it; the next ask from this client comes after it.
    counter.reset().tell().await.unwrap();
    assert_eq!(counter.add(1).await.unwrap(), 1);
    match counter.nap(1_000).timeout(Duration::from_millis(100)).await {
        Err(AskError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
    // A URN nobody serves is a typed error, not a hang.
    let nobody = client.actor::<Counter>("api:nobody");
    match nobody.add(1).timeout(Duration::from_secs(5)).await {
        Err(AskError::UnknownUrn { urn }) => assert_eq!(urn, "api:nobody"),
        other => panic!("{other:?}"),
    }

    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}
