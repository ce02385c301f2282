//! The topics' metrics, read back through a test recorder (one test in its own binary: the
//! recorder is global).

mod common;

use std::time::Duration;

use conclib_redis::{ProxyClient, topics::Topic};
use futures_util::StreamExt;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_metric_is_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();
    let config = common::config("topic-metrics");
    let client = ProxyClient::connect(&config).await.unwrap();
    let live = Topic::live("m-live").unwrap();
    let durable = Topic::durable("m-durable").unwrap();
    let slow = client.subscribe::<u64>(&live).buffer(1).await.unwrap();
    let mut first = client
        .subscribe::<u64>(&durable)
        .consumer("c")
        .await
        .unwrap();
    // A group that reads nothing: it stays behind by every durable event.
    let _idle = client
        .subscribe::<u64>(&durable)
        .group("idle")
        .await
        .unwrap();
    for n in 0..50u64 {
        client.publish(&live, &n).await.unwrap();
    }
    for n in 0..5u64 {
        client.publish(&durable, &n).await.unwrap();
    }
    assert!(
        client
            .publish(&Topic::live("m-live").unwrap(), &vec![0u8; 9 << 20])
            .await
            .is_err()
    );
    assert_eq!(first.next().await, Some(Ok(0)));
    drop(first); // 1..4 taken, not finished: they come again
    let mut again = client
        .subscribe::<u64>(&durable)
        .consumer("c")
        .await
        .unwrap();
    for n in 0..5u64 {
        let got = tokio::time::timeout(Duration::from_secs(10), again.next())
            .await
            .unwrap();
        assert!(matches!(got, Some(Ok(m)) if m == n || m == 0), "{got:?}");
        if got == Some(Ok(4)) {
            break;
        }
    }
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "the slow subscriber dropped",
        || async { slow.stats().received == 50 },
    )
    .await;
    // The recorder hands each counter's and gauge's change since its last snapshot: summed
    // here. The groups' lag and pending entries are sampled every snapshot interval: the
    // idle group is the 5 durable events behind, the other one none.
    let mut seen = std::collections::HashMap::new();
    let mut gauges = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        for ((name, labels), value) in conclib_testkit::recorded(&snapshotter) {
            match value {
                DebugValue::Counter(n) => *seen.entry((name, labels.join(","))).or_insert(0) += n,
                DebugValue::Gauge(v) if labels == ["delivery=durable"] => {
                    *gauges.entry(name).or_insert(0.0) += v.0;
                }
                _ => {}
            }
        }
        let lag = gauges.get("conclib_topic_lag").copied();
        if lag.is_some_and(|v| (v - 5.0).abs() < 0.5)
            && gauges.contains_key("conclib_topic_pending")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lag gauges: {gauges:?}; {:?}",
            client.topics().stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.topics().stats().lag, 5);
    let get = |name: &str, labels: &str| {
        *seen
            .get(&(name.to_owned(), labels.to_owned()))
            .unwrap_or(&0)
    };
    assert_eq!(
        get("conclib_topic_published_total", "delivery=live,outcome=ok"),
        50
    );
    assert_eq!(
        get(
            "conclib_topic_published_total",
            "delivery=live,outcome=failed"
        ),
        1
    );
    assert_eq!(
        get(
            "conclib_topic_published_total",
            "delivery=durable,outcome=ok"
        ),
        5
    );
    assert_eq!(get("conclib_topic_received_total", "delivery=live"), 50);
    assert!(get("conclib_topic_received_total", "delivery=durable") >= 5);
    assert_eq!(get("conclib_topic_dropped_total", "delivery=live"), 49);
    assert!(get("conclib_topic_redelivered_total", "delivery=durable") >= 1);
}
