//! The overload metrics, read back through a test recorder, against a real Redis: refusals
//! by scope and kind (and in the rejections by status), evictions, the pending and alive
//! gauges. One test in its own binary: the recorder is global.

use std::time::Duration;

mod common;

use common::actors::*;
use common::{config, eventually};
use conclib_core::{ActorSystem, AskError};
use conclib_redis::{ProxyClient, scale::Activation, start_proxy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The counter (summed over reads) or last gauge value of `name` with exactly `labels`.
fn value(
    seen: &mut std::collections::HashMap<(String, Vec<String>), f64>,
    snapshotter: &Snapshotter,
    name: &str,
    labels: &[&str],
) -> Option<f64> {
    for (key, v) in conclib_testkit::recorded(snapshotter) {
        let entry = seen.entry(key).or_default();
        match v {
            DebugValue::Counter(n) => *entry += n as f64,
            DebugValue::Gauge(g) => *entry = g.into_inner(),
            DebugValue::Histogram(_) => {}
        }
    }
    let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    labels.sort();
    seen.get(&(name.to_owned(), labels)).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_evictions_and_levels_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();

    let mut config = config("ometrics");
    config.overload.activation_cap = Some(2);
    let system = ActorSystem::new("om");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.set_max_pending("c", Some(1));
    proxy
        .activate("page:{id}", |_a: Activation| async {
            Ok::<_, String>(Counter::default())
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let hold = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("c", Sleep(500)).await })
    };
    eventually(Duration::from_secs(5), "the hold to be pending", || {
        let pending = proxy.stats().pending;
        async move { pending >= 1 }
    })
    .await;
    assert!(matches!(
        client.ask("c", Get).await,
        Err(AskError::Overloaded { limit: 1, .. })
    ));
    client.tell("c", Add(1)).await.unwrap();
    hold.await.unwrap().unwrap();
    for i in 0..5 {
        client.ask(format!("page:{i}"), Get).await.unwrap();
    }
    eventually(Duration::from_secs(10), "evictions", || {
        let s = proxy.stats();
        async move { s.evicted >= 3 && s.overloaded_tells == 1 }
    })
    .await;

    let mut seen = Default::default();
    let om = "system=om";
    let read = |seen: &mut _, name: &str, labels: &[&str]| {
        value(seen, &snapshotter, name, labels).unwrap_or(0.0) as u64
    };
    assert_eq!(
        read(
            &mut seen,
            "conclib_proxy_overloaded_total",
            &[om, "scope=urn", "kind=ask"]
        ),
        1
    );
    assert_eq!(
        read(
            &mut seen,
            "conclib_proxy_overloaded_total",
            &[om, "scope=urn", "kind=tell"]
        ),
        1
    );
    assert_eq!(
        read(
            &mut seen,
            "conclib_proxy_requests_rejected_total",
            &[om, "status=overloaded"]
        ),
        2
    );
    assert!(
        read(
            &mut seen,
            "conclib_activations_total",
            &[om, "pattern=page:", "event=evicted"]
        ) >= 3
    );
    // The levels, sampled every 250 ms.
    let mut seen2 = Default::default();
    eventually(Duration::from_secs(5), "the gauges", || {
        let alive = value(&mut seen2, &snapshotter, "conclib_activations_alive", &[om]);
        let pending = value(&mut seen2, &snapshotter, "conclib_proxy_pending", &[om]);
        async move { alive.is_some_and(|a| a <= 2.0) && pending == Some(0.0) }
    })
    .await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
