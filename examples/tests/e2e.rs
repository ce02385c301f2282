//! End-to-end tests of the demo: a private Redis, an actor system behind the Redis proxy, and
//! web API processes (the `demo` binary run as `demo web ...`) driven with real HTTP traffic.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use conclib_examples::cluster::{Cluster, ClusterOptions, process_gone};
use conclib_examples::load::{self, Gate, Outcome};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The demo binary, which is also the web API.
const DEMO: &str = env!("CARGO_BIN_EXE_demo");

fn options(test: &str, web_processes: usize) -> ClusterOptions {
    let mut options = ClusterOptions::new(DEMO, web_processes);
    options.namespace = format!("e2e-{test}-{}", std::process::id());
    options
}

/// Stops the cluster and checks that every part stopped and no process it started is left.
async fn shut_down(cluster: Cluster) {
    let pids = cluster.pids();
    let report = cluster.shutdown().await;
    assert!(report.is_clean(), "{report:#?}");
    for pid in pids {
        assert!(process_gone(pid), "process {pid} is still running");
    }
}

/// Reads the counter `name` through the web process at `base`.
async fn counter(http: &reqwest::Client, base: &str, name: &str) -> u64 {
    let response = http
        .get(format!("{base}/counters/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["value"].as_u64().unwrap()
}

/// Sends one request and returns its status and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_over_three_processes_count_exactly() {
    let cluster = Cluster::start(&options("count", 3)).await.unwrap();
    let http = load::http_client(128);
    let bases = cluster.base_urls();

    let outcomes = load::run(
        &http,
        &bases,
        load::increments("hits", 2_000, 3),
        128,
        None,
        None,
    )
    .await;

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.is_success()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    for target in 0..3 {
        assert!(
            outcomes
                .iter()
                .filter(|o| o.request.target == target)
                .count()
                >= 666
        );
    }
    // Each increment saw its own value: none lost, none applied twice.
    let values: BTreeSet<u64> = outcomes
        .iter()
        .map(|o| o.body.as_ref().unwrap()["value"].as_u64().unwrap())
        .collect();
    assert_eq!(values, (1..=2_000).collect());
    for base in &bases {
        assert_eq!(counter(&http, base, "hits").await, 2_000);
    }
    shut_down(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_web_process_leaves_the_others_serving() {
    let mut cluster = Cluster::start(&options("kill", 3)).await.unwrap();
    let http = load::http_client(48);
    let bases = cluster.base_urls();
    let victim = cluster.webs[2].pid;

    // 1,500 increments; the last 1,100 wait at a gate until web-3 is dead.
    let (progress, mut done) = watch::channel(0);
    let (open, gate) = watch::channel(false);
    let traffic = tokio::spawn({
        let (http, bases) = (http.clone(), bases.clone());
        let gate = Gate {
            after: 400,
            open: gate,
        };
        async move {
            load::run(
                &http,
                &bases,
                load::increments("hits", 1_500, 3),
                48,
                Some(progress),
                Some(gate),
            )
            .await
        }
    });
    // Mid-run, with requests in flight: once 300 have been answered, SIGKILL web-3.
    done.wait_for(|&n| n >= 300).await.unwrap();
    // SAFETY: plain system call; the pid is our own child's, not reaped yet.
    assert_eq!(
        unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) },
        0
    );
    let status = cluster.webs[2]
        .daemon
        .as_mut()
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let killed_at = Instant::now();
    open.send(true).unwrap();
    let outcomes = traffic.await.unwrap();

    // The remaining processes answered every request, also those sent after the kill.
    let survivors: Vec<&Outcome> = outcomes.iter().filter(|o| o.request.target != 2).collect();
    assert!(
        survivors.iter().all(|o| o.is_success()),
        "{:?}",
        survivors.iter().find(|o| !o.is_success())
    );
    assert!(survivors.iter().filter(|o| o.sent > killed_at).count() >= 100);
    // The killed one failed at the transport level, without hanging.
    let victims: Vec<&Outcome> = outcomes.iter().filter(|o| o.request.target == 2).collect();
    let lost: Vec<&&Outcome> = victims.iter().filter(|o| !o.is_success()).collect();
    assert!(!lost.is_empty());
    assert!(
        lost.iter()
            .all(|o| o.status.is_err() && o.latency < Duration::from_secs(10)),
        "{lost:?}"
    );

    // Every answered increment counted; those cut off by the kill at most once.
    let answered = outcomes.iter().filter(|o| o.is_success()).count() as u64;
    for base in &bases[..2] {
        let value = counter(&http, base, "hits").await;
        assert!(
            (answered..=answered + lost.len() as u64).contains(&value),
            "{value} vs {answered} + {}",
            lost.len()
        );
    }
    // And they keep serving.
    let more = load::run(
        &http,
        &bases[..2],
        load::increments("hits", 100, 2),
        16,
        None,
        None,
    )
    .await;
    assert!(more.iter().all(Outcome::is_success));
    shut_down(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_errors_become_http_statuses() {
    let timeout = Duration::from_millis(1_500);
    let mut options = options("errors", 1);
    options.ask_timeout = timeout;
    let mut cluster = Cluster::start(&options).await.unwrap();
    let http = load::http_client(4);
    let base = cluster.base_urls().remove(0);

    // Unknown actor.
    let (status, body) = call(http.get(format!("{base}/counters/nope"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_actor"))
    );
    // The actor's own errors, with their detail.
    let (status, body) = call(http.post(format!("{base}/counters/hits/increment?by=0"))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "actor_error");
    assert_eq!(
        body["detail"],
        json!({ "step_out_of_range": { "by": 0, "max": 1000 } })
    );
    let long = "x".repeat(2_000);
    let (status, body) = call(
        http.put(format!("{base}/kv/k"))
            .json(&json!({ "value": long })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body["detail"],
        json!({ "value_too_long": { "len": 2000, "max": 1024 } })
    );
    // Requests that cannot be read.
    let (status, body) = call(http.post(format!("{base}/counters/hits/increment?by=many"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let bad_json = http
        .put(format!("{base}/kv/k"))
        .header("content-type", "application/json")
        .body("{not json");
    assert_eq!(call(bad_json).await.0, StatusCode::BAD_REQUEST);
    // A missing key, and what works.
    let (status, body) = call(http.get(format!("{base}/kv/k"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("key_not_found"))
    );
    let (status, body) = call(
        http.put(format!("{base}/kv/k"))
            .json(&json!({ "value": "v" })),
    )
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "key": "k", "previous": null }))
    );
    assert_eq!(
        call(http.get(format!("{base}/kv/k"))).await.1,
        json!({ "key": "k", "value": "v" })
    );
    assert_eq!(counter(&http, &base, "hits").await, 0);

    // No proxy serves the actors any more: their system shut down moments ago, so the
    // client waits for a successor until the ask's deadline, then answers `Unavailable`
    // (retryable: the system restarts), never `UnknownUrn`.
    cluster.stop_proxy().await.unwrap();
    let asked = Instant::now();
    let (status, body) = call(http.post(format!("{base}/counters/hits/increment"))).await;
    let waited = asked.elapsed();
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("redis_unavailable"))
    );
    assert!(
        waited >= timeout - Duration::from_millis(100) && waited < timeout + Duration::from_secs(2),
        "{waited:?}"
    );

    // Redis is gone: unavailable, within the timeout.
    cluster.stop_redis().await.unwrap();
    for request in [
        http.get(format!("{base}/counters/hits")),
        http.get(format!("{base}/kv/k")),
    ] {
        let asked = Instant::now();
        let (status, body) = call(request).await;
        let waited = asked.elapsed();
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("redis_unavailable")),
            "{body}"
        );
        assert!(waited < timeout + Duration::from_millis(500), "{waited:?}");
    }
    shut_down(cluster).await;
}

#[test]
fn web_process_needs_a_port() {
    let output = std::process::Command::new(DEMO)
        .args(["web", "--name", "w"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--port is required"));
}
