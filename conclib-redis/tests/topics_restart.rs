//! Topics across Redis restarts: a redis-server of the test's own is SIGKILLed
//! and started again on the same port, under 64 subscribers (32 live, 32 durable, each in a
//! group of its own) and a publisher that publishes again at once after any error. Every
//! subscriber receives events again by itself; a durable one misses none of those Redis took
//! after it came back (empty), or none at all (with its append-only file); no publish returns
//! later than its timeout plus 250 ms.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_redis::{ProxyClient, ProxyConfig, topics::Topic};
use futures_util::StreamExt;

fn main() {
    conclib_testkit::run(conclib_testkit::tests![
        sixty_four_subscribers_recover_from_an_empty_restart,
        durable_subscribers_lose_nothing_across_a_restart_with_aof,
    ]);
}

const SUBSCRIBERS: usize = 64;
const TIMEOUT: Duration = Duration::from_millis(1000);
const MARGIN: Duration = Duration::from_millis(250);

/// What one subscriber received: (seq, when).
type Log = Arc<Mutex<Vec<(u64, Instant)>>>;

async fn subscribe_all(client: &ProxyClient, live: &Topic, durable: &Topic) -> Vec<(bool, Log)> {
    let mut logs = Vec::new();
    for i in 0..SUBSCRIBERS {
        let is_durable = i % 2 == 1;
        let log: Log = Arc::default();
        let mut sub = if is_durable {
            client
                .subscribe::<u64>(durable)
                .group(format!("g{i}"))
                .await
        } else {
            client.subscribe::<u64>(live).await
        }
        .unwrap();
        let into = log.clone();
        tokio::spawn(async move {
            while let Some(event) = sub.next().await {
                if let Ok(seq) = event {
                    into.lock().unwrap().push((seq, Instant::now()));
                }
            }
        });
        logs.push((is_durable, log));
    }
    logs
}

/// Publishes 0, 1, 2, ... to both topics every 2 ms until `stop`; returns the durable
/// events Redis took, with when, and the longest publish.
async fn publish_until(
    client: ProxyClient,
    live: Topic,
    durable: Topic,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<(u64, Instant)>, Duration) {
    let mut taken = Vec::new();
    let mut longest = Duration::ZERO;
    let mut seq = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for topic in [&live, &durable] {
            let started = Instant::now();
            let result = client.publish(topic, &seq).await;
            longest = longest.max(started.elapsed());
            if result.is_ok() && std::ptr::eq(topic, &durable) {
                taken.push((seq, Instant::now()));
            }
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (taken, longest)
}

async fn run_restart(aof: bool) {
    let dir = servers::TempDir::new("topics-restart");
    let port = servers::free_ports(1)[0];
    let mut redis = servers::OwnRedis::start(port, dir.path(), aof).await;
    let mut config =
        ProxyConfig::new(format!("redis://127.0.0.1:{port}")).with_namespace("restart");
    config.command_timeout = TIMEOUT;
    config.connect_timeout = TIMEOUT;
    let client = ProxyClient::connect(&config).await.unwrap();
    let live = Topic::live("live").unwrap();
    let durable = Topic::durable("durable").unwrap();
    let logs = subscribe_all(&client, &live, &durable).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(
        client.clone(),
        live.clone(),
        durable.clone(),
        stop.clone(),
    ));
    // Everyone hears the publisher before the fault.
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "every subscriber receives",
        || async { logs.iter().all(|(_, log)| !log.lock().unwrap().is_empty()) },
    )
    .await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _redis = servers::OwnRedis::start(port, dir.path(), aof).await;
    let back = Instant::now();
    // Every subscriber receives an event published after Redis came back, by itself.
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "every subscriber receives again",
        || async {
            logs.iter()
                .all(|(_, log)| log.lock().unwrap().last().is_some_and(|(_, at)| *at > back))
        },
    )
    .await;
    let recovered = logs
        .iter()
        .map(|(_, log)| {
            let log = log.lock().unwrap();
            log.iter().find(|(_, at)| *at > back).unwrap().1 - back
        })
        .max()
        .unwrap();
    // Let the durable subscribers catch up, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (taken, longest) = publisher.await.unwrap();
    assert!(longest <= TIMEOUT + MARGIN, "a publish took {longest:?}");
    // A durable subscriber misses nothing Redis took after it came back (with AOF: nothing
    // Redis took at all).
    let must_have: HashSet<u64> = taken
        .iter()
        .filter(|(_, at)| aof || *at > back)
        .map(|(seq, _)| *seq)
        .collect();
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "durable subscribers have every event",
        || async {
            logs.iter().filter(|(d, _)| *d).all(|(_, log)| {
                let got: HashSet<u64> = log.lock().unwrap().iter().map(|(s, _)| *s).collect();
                must_have.is_subset(&got)
            })
        },
    )
    .await;
    println!(
        "RESULT topics_restart aof={aof} subscribers={SUBSCRIBERS} slowest_recovery_ms={} durable_events_checked={} longest_publish_ms={}",
        recovered.as_millis(),
        must_have.len(),
        longest.as_millis()
    );
    drop(client);
}

async fn sixty_four_subscribers_recover_from_an_empty_restart() {
    run_restart(false).await;
}

async fn durable_subscribers_lose_nothing_across_a_restart_with_aof() {
    run_restart(true).await;
}
