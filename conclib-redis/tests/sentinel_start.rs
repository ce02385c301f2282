//! Starting through Sentinel while part of the topology refuses connections: a serving
//! process (`start_proxy`) and a client (`ProxyClient::connect`) keep trying within their
//! connect timeout instead of failing at the first refusal. A real topology
//! (`conclib_testkit::redis_ha::Sentinel`: a primary, 2 replicas, 3 sentinels on loopback),
//! its processes killed by PID.
mod common;

use std::time::{Duration, Instant};

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};
use conclib_testkit::redis_ha::{HA_TIMEOUT, Sentinel};

/// How long each ask may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What an ask may take beyond [`TIMEOUT`].
const MARGIN: Duration = Duration::from_millis(250);
/// Concurrent callers, asking without pause.
const CALLERS: usize = 64;
/// Asks each caller makes.
const ASKS: usize = 20;

/// The first sentinel of the URL killed for good, and the primary the others name killed
/// just before the proxy and the client start (their first attempts are refused as the
/// flaky start was: "Sentinel Error: ... ConnectionRefused"): both go past the dead
/// sentinel, try again until the sentinels promote a replica (about 2 s later), start, and
/// serve 64 callers asking right after, each answered within its timeout + 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_starts_past_a_dead_sentinel_and_a_primary_refusing_until_promoted() {
    let mut setup = tokio::task::spawn_blocking(Sentinel::start).await.unwrap();
    let primary = setup.wait_settled();
    setup.sentinels[0].kill();
    let old = setup
        .servers
        .iter_mut()
        .find(|s| s.port == primary)
        .unwrap();
    old.kill();
    // The sentinels take a primary for down only after a second without an answer: the
    // first attempts below are refused by the primary they name.
    assert_eq!(setup.primary_port(), Ok(primary));

    let mut config = ProxyConfig::new(setup.url())
        .with_namespace("sentinel-start")
        .with_ask_timeout(TIMEOUT);
    // Past a promotion: a second for the sentinels to find the primary down, then the vote.
    config.connect_timeout = HA_TIMEOUT;
    let system = ActorSystem::new("sentinel-start");
    system
        .build(Counter::default())
        .urn("counter")
        .spawn()
        .await
        .unwrap();
    let (proxy, client) = tokio::join!(start_proxy(&system, &config), async {
        ProxyClient::connect(&config).await
    });
    let proxy = proxy.unwrap_or_else(|e| panic!("start_proxy: {e}"));
    let client = client.unwrap_or_else(|e| panic!("ProxyClient::connect: {e}"));
    assert_ne!(setup.primary_port(), Ok(primary), "no promotion yet");

    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for n in 0..ASKS {
                    let text = format!("{c}/{n}");
                    let began = Instant::now();
                    let answer = client.ask("counter", Echo(text.clone())).await;
                    slowest = slowest.max(began.elapsed());
                    assert_eq!(answer, Ok(text));
                }
                slowest
            })
        })
        .collect();
    for caller in callers {
        let slowest = tokio::time::timeout(TIMEOUT * ASKS as u32 + MARGIN, caller)
            .await
            .expect("a caller hung")
            .unwrap();
        assert!(slowest <= TIMEOUT + MARGIN, "an ask took {slowest:?}");
    }
    proxy.shutdown().await.unwrap();
    client.shutdown().await;
    system.shutdown(Duration::from_secs(2)).await.unwrap();
}
