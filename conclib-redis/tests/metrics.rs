//! Every proxy and client metric, read back through a test recorder, against a real Redis
//! that is restarted once. One test in its own binary: the recorder is global.

use conclib_core::AskError;
use std::collections::HashMap;
use std::time::Duration;

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::actors::*;
use common::command;
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Accumulated values by (name, sorted "k=v" labels); counters add up across reads.
#[derive(Default)]
struct Seen(HashMap<(String, Vec<String>), Vec<f64>>);

impl Seen {
    fn read(&mut self, snapshotter: &Snapshotter) {
        for (key, value) in conclib_testkit::recorded(snapshotter) {
            let entry = self.0.entry(key).or_default();
            match value {
                DebugValue::Counter(n) => {
                    if entry.is_empty() {
                        entry.push(0.0);
                    }
                    entry[0] += n as f64;
                }
                DebugValue::Gauge(g) => *entry = vec![g.into_inner()],
                DebugValue::Histogram(v) => entry.extend(v.into_iter().map(|f| f.into_inner())),
            }
        }
    }

    fn get(&self, name: &str, labels: &[&str]) -> &[f64] {
        let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        labels.sort();
        self.0
            .get(&(name.to_owned(), labels.clone()))
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", self.0.keys()))
    }

    fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        self.get(name, labels)[0] as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxy_and_client_metric_is_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();

    let port = servers::free_ports(1)[0];
    let mut base = ProxyConfig::default().with_namespace("metrics");
    base.server_port = Some(port);
    base.command_timeout = Duration::from_secs(1);
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon
        .config(&base)
        .with_ask_timeout(Duration::from_secs(5));
    let system = ActorSystem::new("svc");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();

    for _ in 0..3 {
        client.ask("c", Add(1)).await.unwrap();
    }
    assert!(matches!(
        client.ask("c", Forbidden("no".into())).await,
        Err(AskError::Handler(_))
    ));
    // Refused by the client before Redis (no such URN) and by the proxy (a URN it never
    // served, written straight into its stream).
    assert!(matches!(
        client.ask("nobody", Add(1)).await,
        Err(AskError::UnknownUrn { .. })
    ));
    let redis = common::plain_client(&config.url).await;
    let stream = "metrics:sys:svc:req";
    let reply = "metrics:reply:0123456789abcdef0123456789abcdef";
    command(
        &redis,
        &[
            "XADD", stream, "*", "v", "1", "id", "1", "urn", "ghost", "msg", "test.Add", "ttl",
            "5000", "reply", reply, "codec", "bincode", "body", "x",
        ],
    )
    .await
    .unwrap();
    // The reply to the hostile entry proves the proxy has read both.
    let frame = command(&redis, &["BLMPOP", "10", "1", reply, "LEFT"])
        .await
        .unwrap();
    assert!(
        !matches!(frame, fred::prelude::Value::Null),
        "no reply to the ghost URN"
    );

    // Redis restarts: the proxy reconnects.
    daemon.shutdown().unwrap();
    let daemon = start_redis(&base).await.unwrap();
    common::eventually(
        Duration::from_secs(30),
        "an ask through the restarted Redis",
        || async { client.ask("c", Add(1)).await.is_ok() },
    )
    .await;

    let mut seen = Seen::default();
    seen.read(&snapshotter);
    let svc = "system=svc";
    assert!(seen.counter("conclib_proxy_requests_received_total", &[svc]) >= 6);
    // 3 asks, then at least one through the restarted Redis.
    assert!(seen.counter("conclib_proxy_answers_total", &[svc, "status=ok"]) >= 4);
    assert_eq!(
        seen.counter(
            "conclib_proxy_answers_total",
            &[svc, "status=handler_error"]
        ),
        1
    );
    let latency = seen.get("conclib_proxy_answer_seconds", &[svc, "status=ok"]);
    assert!(latency.len() >= 4, "{latency:?}");
    assert!(
        latency.iter().all(|s| (0.0..5.0).contains(s)),
        "{latency:?}"
    );
    assert_eq!(
        seen.counter(
            "conclib_proxy_requests_rejected_total",
            &[svc, "status=unknown_urn"]
        ),
        1
    );
    // A request queued long ago for a system whose proxy starts only now: its deadline has
    // passed, it is dropped unprocessed.
    let redis = common::plain_client(&config.url).await;
    command(
        &redis,
        &[
            "XADD",
            "metrics:sys:late:req",
            "1-1",
            "v",
            "1",
            "id",
            "2",
            "urn",
            "c",
            "msg",
            "test.Add",
            "ttl",
            "1",
            "reply",
            reply,
            "codec",
            "bincode",
            "body",
            "x",
        ],
    )
    .await
    .unwrap();
    let late = ActorSystem::new("late");
    let late_proxy = start_proxy(&late, &config).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let expired_key = (
        "conclib_proxy_requests_expired_total".to_owned(),
        vec!["system=late".to_owned()],
    );
    while !seen.0.contains_key(&expired_key) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the late request never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen.read(&snapshotter);
    }
    assert_eq!(
        seen.counter("conclib_proxy_requests_expired_total", &["system=late"]),
        1
    );
    late_proxy.shutdown().await.unwrap();
    let batches = seen.get("conclib_proxy_read_batch_size", &[svc]);
    assert!(
        !batches.is_empty() && batches.iter().all(|n| *n >= 1.0),
        "{batches:?}"
    );
    assert!(seen.counter("conclib_proxy_reconnects_total", &[svc]) >= 1);

    let ok = seen.get("conclib_client_ask_seconds", &["status=ok"]);
    assert!(ok.len() >= 4, "{ok:?}");
    assert_eq!(
        seen.get("conclib_client_ask_seconds", &["status=handler_error"])
            .len(),
        1
    );
    assert_eq!(
        seen.get("conclib_client_ask_seconds", &["status=unknown_urn"])
            .len(),
        1
    );
    assert_eq!(seen.get("conclib_client_asks_in_flight", &[]), [0.0]);
    // The actor side sees the same asks.
    assert!(
        seen.counter(
            "conclib_actor_messages_handled_total",
            &[
                &format!("actor={}", std::any::type_name::<Counter>()),
                "urn=c",
                "message=test.Add"
            ]
        ) >= 4
    );

    // Groups and activations. A request pending on a member that is gone (a consumer with
    // no member lease) before this system joins: taken over and answered.
    let group_stream = "metrics:sys:~g:req";
    let group_reply = "metrics:reply:0123456789abcdef0123456789abcdee";
    command(
        &redis,
        &["XGROUP", "CREATE", group_stream, "proxy", "0", "MKSTREAM"],
    )
    .await
    .unwrap();
    command(
        &redis,
        &[
            "XADD",
            group_stream,
            "*",
            "v",
            "1",
            "id",
            "3",
            "urn",
            "g",
            "msg",
            "test.Add",
            "ttl",
            "20000",
            "reply",
            group_reply,
            "codec",
            "bincode",
            "body",
            "\x01",
        ],
    )
    .await
    .unwrap();
    command(
        &redis,
        &[
            "XREADGROUP",
            "GROUP",
            "proxy",
            "ghost",
            "COUNT",
            "1",
            "STREAMS",
            group_stream,
            ">",
        ],
    )
    .await
    .unwrap();
    let grp = ActorSystem::new("grp");
    grp.build(Counter::default())
        .urn("g")
        .spawn()
        .await
        .unwrap();
    let grp_proxy = start_proxy(&grp, &config).await.unwrap();
    grp_proxy.join("g").await.unwrap();
    let frame = command(&redis, &["BLMPOP", "10", "1", group_reply, "LEFT"])
        .await
        .unwrap();
    assert!(
        !matches!(frame, fred::prelude::Value::Null),
        "the request the gone member had taken was not answered"
    );
    grp_proxy
        .activate("m:{id}", |_a: conclib_redis::scale::Activation| async move {
            Ok::<_, String>(Counter::default())
        })
        .passivate_after(Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(client.ask("m:1", Add(2)).await.unwrap(), 2);
    // Counted once the passivation is done (its URN released): read until it is.
    let passivated = (
        "conclib_activations_total".to_owned(),
        vec![
            "event=passivated".to_owned(),
            "pattern=m:".to_owned(),
            "system=grp".to_owned(),
        ],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    seen.read(&snapshotter);
    while !seen.0.contains_key(&passivated) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the activation was not passivated"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen.read(&snapshotter);
    }
    assert!(grp_proxy.activations().is_empty());
    let grp_labels = ["system=grp", "group=~g"];
    assert_eq!(seen.counter("conclib_group_joins_total", &grp_labels), 1);
    assert_eq!(seen.counter("conclib_group_claimed_total", &grp_labels), 1);
    for event in ["activated", "passivated"] {
        let labels = ["system=grp", "pattern=m:", &format!("event={event}")];
        assert_eq!(
            seen.counter("conclib_activations_total", &labels),
            1,
            "{event}"
        );
    }
    grp_proxy.shutdown().await.unwrap();

    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
