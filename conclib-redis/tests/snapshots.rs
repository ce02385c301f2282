//! Every proxy publishes its system's snapshot; a `SnapshotReader` sees every system on
//! the Redis, and stops seeing one that shut down or died.

mod common;

use std::time::Duration;

use common::actors::{Add, Counter};
use common::{command, config, eventually, plain_client};
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, snapshots::SnapshotReader, start_proxy};
use futures_util::FutureExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_every_system_and_its_actors() {
    let base = config("snap").with_snapshot_interval(Some(Duration::from_millis(100)));
    let mut proxies = Vec::new();
    for (name, urn) in [("orders", "counter:orders"), ("billing", "counter:billing")] {
        let system = ActorSystem::new(name);
        system
            .build(Counter::default())
            .urn(urn)
            .spawn()
            .await
            .unwrap();
        proxies.push((system.clone(), start_proxy(&system, &base).await.unwrap()));
    }
    // Traffic through the proxy shows in the published statistics.
    let client = ProxyClient::connect(&base).await.unwrap();
    for _ in 0..3 {
        client.ask("counter:orders", Add(1)).await.unwrap();
    }
    let reader = SnapshotReader::connect(&base).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "both systems, with the asks counted",
        || async {
            let systems = reader.systems().await.unwrap();
            systems.len() == 2
                && systems.iter().any(|s| {
                    s.system_id == "orders"
                        && s.proxy.received >= 3
                        && s.snapshot
                            .actors
                            .iter()
                            .any(|a| a.urn.as_deref() == Some("counter:orders") && a.handled >= 3)
                })
        },
    )
    .await;
    let systems = reader.systems().await.unwrap();
    assert_eq!(
        systems
            .iter()
            .map(|s| s.system_id.as_str())
            .collect::<Vec<_>>(),
        ["billing", "orders"]
    );
    let billing = &systems[0];
    assert_eq!(billing.snapshot.system, "billing");
    assert_eq!(billing.snapshot.pid, std::process::id());
    assert_eq!(billing.interval_ms, 100);
    assert_eq!(
        billing.snapshot.actors[0].urn.as_deref(),
        Some("counter:billing")
    );

    // A graceful shutdown withdraws the snapshot at once.
    let (_, billing_proxy) = proxies.remove(1);
    billing_proxy.shutdown().await.unwrap();
    let systems = reader.systems().await.unwrap();
    assert_eq!(
        systems
            .iter()
            .map(|s| s.system_id.as_str())
            .collect::<Vec<_>>(),
        ["orders"]
    );

    // A proxy that vanishes without a shutdown (aborted, as by a crash) stops publishing:
    // its snapshot expires after three intervals (at least 1 s).
    let (_, orders_proxy) = proxies.remove(0);
    drop(orders_proxy);
    eventually(
        Duration::from_secs(10),
        "the dead system's snapshot to expire",
        || async { reader.systems().await.unwrap().is_empty() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_parse_is_skipped() {
    let base = config("snap-hostile").with_snapshot_interval(Some(Duration::from_millis(100)));
    let system = ActorSystem::new("good");
    let proxy = start_proxy(&system, &base).await.unwrap();
    proxy.publish_snapshot().await.unwrap();
    // A hostile writer adds garbage under a system id of its own.
    let redis = plain_client(&base.url).await;
    let ns = &base.namespace;
    command(
        &redis,
        &["SET", &format!("{ns}:snapshot:evil"), "{not json"],
    )
    .await
    .unwrap();
    command(
        &redis,
        &["ZADD", &format!("{ns}:snapshots"), "99999999999999", "evil"],
    )
    .await
    .unwrap();
    // And one whose index names a key that does not exist.
    command(
        &redis,
        &[
            "ZADD",
            &format!("{ns}:snapshots"),
            "99999999999999",
            "ghost",
        ],
    )
    .await
    .unwrap();
    let reader = SnapshotReader::connect(&base).await.unwrap();
    let systems = reader.systems().await.unwrap();
    assert_eq!(
        systems
            .iter()
            .map(|s| s.system_id.as_str())
            .collect::<Vec<_>>(),
        ["good"]
    );
    proxy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_can_be_turned_off() {
    let base = config("snap-off").with_snapshot_interval(None);
    let system = ActorSystem::new("quiet");
    let proxy = start_proxy(&system, &base).await.unwrap();
    let reader = SnapshotReader::connect(&base).await.unwrap();
    // The proxy is serving (its start is done), and has published nothing.
    assert!(proxy.is_serving());
    assert!(reader.systems().await.unwrap().is_empty());
    proxy.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_system_publishes_its_first_actors_and_counts_the_rest() {
    let mut base = config("snap-large").with_snapshot_interval(Some(Duration::from_millis(100)));
    base.snapshot_max_actors = 2;
    let system = ActorSystem::new("large");
    for n in 0..5 {
        system
            .build(Counter::default())
            .urn(format!("counter:{n}"))
            .spawn()
            .await
            .unwrap();
    }
    let proxy = start_proxy(&system, &base).await.unwrap();
    proxy.publish_snapshot().await.unwrap();
    let reader = SnapshotReader::connect(&base).await.unwrap();
    let systems = reader.systems().await.unwrap();
    assert_eq!(systems.len(), 1);
    let published = &systems[0];
    assert_eq!(published.snapshot.actors.len(), 2);
    assert_eq!(published.snapshot.omitted_actors, 3);
    // The first by id.
    assert_eq!(
        published.snapshot.actors[0].urn.as_deref(),
        Some("counter:0")
    );
    proxy.shutdown().await.unwrap();
}

/// Nobody reads the snapshots: a proxy publishes every tenth interval, without the actors
/// in brief. Once a reader reads, it publishes every interval, with every actor in brief.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_nobody_reads_are_published_rarely_and_in_short() {
    let mut base = config("watched").with_snapshot_interval(Some(Duration::from_millis(200)));
    base.snapshot_max_actors = 10;
    let system = ActorSystem::new("quiet");
    for i in 0..30 {
        system
            .build(Counter::default())
            .urn(format!("q:{i}"))
            .spawn()
            .await
            .unwrap();
    }
    let proxy = start_proxy(&system, &base).await.unwrap();
    let redis = plain_client(&base.url).await;
    let key = format!("{}:snapshot:quiet", base.namespace);
    let pttl = |redis: fred::prelude::Client, key: String| async move {
        match command(&redis, &["PTTL", &key]).await.unwrap() {
            fred::prelude::Value::Integer(ms) => ms,
            other => panic!("PTTL: {other:?}"),
        }
    };
    // Unwatched: published to live ten intervals' worth (3 x 10 x 200 ms).
    eventually(Duration::from_secs(10), "the first publish", || {
        pttl(redis.clone(), key.clone()).map(|ms| ms > 0)
    })
    .await;
    assert!(pttl(redis.clone(), key.clone()).await > 1_000);
    // A reader: from the next interval on, every interval and in full.
    let reader = SnapshotReader::connect(&base).await.unwrap();
    eventually(Duration::from_secs(10), "a publish in full", || {
        let (reader, redis, key) = (&reader, redis.clone(), key.clone());
        async move {
            let systems = reader.systems().await.unwrap();
            let Some(quiet) = systems.first() else {
                return false;
            };
            let others = reader
                .others("quiet", quiet.snapshot.taken_at_ms)
                .await
                .unwrap();
            // Every actor in brief: the 10 listed in full too.
            others.is_some_and(|o| o.len() == 30) && pttl(redis, key).await <= 1_000
        }
    })
    .await;
    proxy.shutdown().await.unwrap();
}
