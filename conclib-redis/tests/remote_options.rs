//! Remote asks and tells take the options of local ones: priority lanes, timeouts (which
//! free an actor that cancels a handler on timeout, as local ones do), and a plain `.await`
//! for messages that cannot fail.
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

/// Opts in to cancellation: a handler whose asker gave up is dropped at its `.await`.
#[derive(Default)]
struct Backend {
    started: u64,
    finished: u64,
}

/// Counts itself in, then waits an hour.
#[message(name = "backend.Slow")]
#[derive(Debug, Serialize, Deserialize)]
struct Slow;

/// The `Slow` handlers started and finished.
#[message(response = (u64, u64), name = "backend.Counts")]
#[derive(Debug, Serialize, Deserialize)]
struct Counts;

impl conclib_core::Actor for Backend {
    const CANCEL_ON_TIMEOUT: bool = true;
    const REMOTE: &'static [conclib_core::ExposedMessage] = &[
        conclib_core::ExposedMessage::of_infallible::<Slow>(),
        conclib_core::ExposedMessage::of_infallible::<Counts>(),
    ];
    async fn handle_request(
        &mut self,
        req: conclib_core::RequestEnvelope,
        _: &mut conclib_core::Context<Self>,
    ) {
        let req = match req.extract::<Slow>() {
            Ok((Slow, r)) => {
                self.started += 1;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                self.finished += 1;
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        match req.extract::<Counts>() {
            Ok((Counts, r)) => r.respond(Ok((self.started, self.finished))),
            Err(req) => req.reject(),
        }
    }
}

/// A remote caller's timeout frees the backend of an actor that opts in: 64 callers ask a
/// slow handler by URN with a short timeout, each ends `Timeout` within its timeout plus a
/// margin, and the next ask is answered (the proxy's ask, at the request's deadline, gave
/// the handler up and it was dropped at its `.await`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_callers_timeout_frees_an_actor_that_cancels_on_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    const MARGIN: Duration = Duration::from_millis(250);
    let config = config("cancel");
    let system = ActorSystem::new("cancel");
    system
        .build(Backend::default())
        .urn("backend")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let start = std::time::Instant::now();
                let result = client.ask("backend", Slow).timeout(TIMEOUT).await;
                (result, start.elapsed())
            })
        })
        .collect();
    for call in calls {
        let (result, took) = call.await.unwrap();
        assert!(
            matches!(result, Err(conclib_core::AskError::Timeout(_))),
            "{result:?}"
        );
        assert!(took <= TIMEOUT + MARGIN, "an ask took {took:?}");
    }
    let (started, finished) = client
        .ask("backend", Counts)
        .timeout(Duration::from_secs(5))
        .await
        .expect("answered: the slow handler was dropped");
    assert!(started >= 1, "a slow handler started");
    assert_eq!(finished, 0, "none went past its .await");
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
