//! `/livez` and `/readyz` (`conclib_view::health`) against a real proxy on a real
//! redis-server: ready while the lease holds, `lease_uncertain` while Redis is frozen,
//! `draining` from the moment shutdown begins (a request still in its handler), `stopped`
//! after.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Served, get};
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use conclib_testkit::eventually;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Answers once the test lets it go.
#[derive(Serialize, Deserialize)]
struct Hold;
impl conclib_core::MessageDecl for Hold {
    type WireError = String;
}
impl Message for Hold {
    type Response = u8;
    type Error = String;
    fn name() -> &'static str {
        "Hold"
    }
}

struct Holder {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}
impl Actor for Holder {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Hold>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Hold>() {
            Ok((Hold, reply)) => {
                self.entered.notify_one();
                self.release.notified().await;
                reply.respond(Ok(7));
            }
            Err(req) => req.reject(),
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let done = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(done.success(), "kill {signal} {pid}");
}

async fn state(url: &str) -> (u16, String) {
    let (status, body) = get(&format!("{url}/readyz")).await;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    (status, json["state"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_lease_and_the_shutdown() {
    let mut base = ProxyConfig::default().with_namespace("health-test");
    base.lease_ttl = Duration::from_millis(1500);
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let pid = daemon.pid().expect("the daemon's pid");
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let system = ActorSystem::new("health");
    system
        .build(Holder {
            entered: entered.clone(),
            release: release.clone(),
        })
        .urn("holder")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let probe = proxy.readiness();
    let served = Served::start(conclib_view::health(probe.clone())).await;

    assert_eq!(
        get(&format!("{}/livez", served.url)).await,
        (200, "ok".to_owned())
    );
    assert_eq!(state(&served.url).await, (200, "ready".to_owned()));

    // Redis frozen: the lease cannot be renewed, so the proxy cannot tell it still holds.
    kill("-STOP", pid);
    let frozen = eventually(Duration::from_secs(10), "lease_uncertain", async || {
        let now = state(&served.url).await;
        (now.1 == "lease_uncertain").then_some(now)
    })
    .await;
    kill("-CONT", pid);
    assert_eq!(frozen.0, 503);
    eventually(Duration::from_secs(10), "ready again", async || {
        state(&served.url).await == (200, "ready".to_owned())
    })
    .await;

    // A request in its handler holds the shutdown: meanwhile the probe says draining.
    let client = ProxyClient::connect(&config).await.unwrap();
    let asking = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("holder", Hold).await })
    };
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the handler started");
    let shutdown = tokio::spawn(proxy.shutdown());
    eventually(Duration::from_secs(10), "draining", async || {
        state(&served.url).await == (503, "draining".to_owned())
    })
    .await;
    release.notify_one();
    assert_eq!(
        asking.await.unwrap(),
        Ok(7),
        "the request in flight is answered"
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends")
        .unwrap()
        .unwrap();
    assert_eq!(state(&served.url).await, (503, "stopped".to_owned()));
    assert_eq!(probe.check(), conclib_redis::readiness::Readiness::Stopped);

    served.stop().await;
    client.shutdown().await;
    system.shutdown(Duration::from_secs(10)).await.unwrap();
    daemon.shutdown().unwrap();
}
