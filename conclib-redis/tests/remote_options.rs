//! Remote asks and tells take the options of local ones: priority lanes, timeouts, and a
//! plain `.await` for messages that cannot fail.
mod common;

use conclib_macros::message;
use std::time::Duration;

use common::{config, eventually};
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, start_proxy};
use serde::{Deserialize, Serialize};

/// Held until the test opens the gate; records the numbers it is told.
struct Gated {
    entered: std::sync::Arc<tokio::sync::Notify>,
    gate: std::sync::Arc<tokio::sync::Notify>,
    log: Vec<u64>,
}

#[message(name = "gated.Hold")]
#[derive(Debug, Serialize, Deserialize)]
struct Hold;

#[message(name = "gated.Log")]
#[derive(Debug, Serialize, Deserialize)]
struct Log(u64);

#[message(response = Vec<u64>, name = "gated.Logged")]
#[derive(Debug, Serialize, Deserialize)]
struct Logged;

impl conclib_core::Actor for Gated {
    const REMOTE: &'static [conclib_core::ExposedMessage] = &[
        conclib_core::ExposedMessage::of_infallible::<Hold>(),
        conclib_core::ExposedMessage::of_infallible::<Log>(),
        conclib_core::ExposedMessage::of_infallible::<Logged>(),
    ];
    async fn handle_request(
        &mut self,
        req: conclib_core::RequestEnvelope,
        _: &mut conclib_core::Context<Self>,
    ) {
        let req = match req.extract::<Hold>() {
            Ok((Hold, r)) => {
                self.entered.notify_one();
                self.gate.notified().await;
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        let req = match req.extract::<Log>() {
            Ok((Log(n), r)) => {
                self.log.push(n);
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        match req.extract::<Logged>() {
            Ok((Logged, r)) => r.respond(Ok(self.log.clone())),
            Err(req) => req.reject(),
        }
    }
}

/// Remote asks and tells take the same options as local ones: `.priority(High)` overtakes
/// queued normal messages; a message that cannot fail is asked with a plain `.await`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_priority_overtakes_and_infallible_asks_need_no_extra_call() {
    let config = config("prio");
    let system = ActorSystem::new("prio");
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let gated = system
        .build(Gated {
            entered: entered.clone(),
            gate: gate.clone(),
            log: Vec::new(),
        })
        .urn("gated")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let held = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .ask("gated", Hold)
                .timeout(Duration::from_secs(20))
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the hold is handled");
    client.tell("gated", Log(1)).await.unwrap();
    client.tell("gated", Log(2)).await.unwrap();
    client
        .tell("gated", Log(3))
        .priority(conclib_core::Priority::High)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "three tells queued", || {
        let gated = gated.clone();
        async move { gated.mailbox_len() == 3 }
    })
    .await;
    gate.notify_one();
    assert_eq!(held.await.unwrap(), Ok(()));
    let log: Vec<u64> = client
        .ask("gated", Logged)
        .priority(conclib_core::Priority::High)
        .await
        .unwrap();
    assert_eq!(log, vec![3, 1, 2]);
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
