//! The view's routes against a real Redis with systems publishing: the page ships
//! everything it needs, the API lists every system and keeps the plots' history, a
//! vanished Redis is reported, not hidden; with many actors, the most telling come first,
//! any actor can be found, sorted and paged to, and the plots' samples come as deltas.

mod common;

use common::{Served, get};
use conclib_testkit::eventually;
use std::time::Duration;

use conclib_core::{Actor, ActorSystem, Context};
use conclib_redis::{ProxyConfig, snapshots::SnapshotReader, start_proxy, start_redis};
use serde_json::Value;

/// How long a test waits for a state it can only poll.
const TWENTY_SECONDS: Duration = Duration::from_secs(20);

struct Parent;
impl Actor for Parent {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), conclib_core::BoxError> {
        ctx.build_child(Child).urn("child:1").spawn().await?;
        Ok(())
    }
}

struct Child;
impl Actor for Child {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_lists_every_system_keeps_history_and_reports_a_lost_redis() {
    let base = ProxyConfig::default()
        .with_namespace("view-test")
        .with_snapshot_interval(Some(Duration::from_millis(100)));
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let mut proxies = Vec::new();
    let mut subscriptions = Vec::new();
    for name in ["alpha", "beta"] {
        let system = ActorSystem::new(name);
        system
            .build(Parent)
            .urn(format!("parent:{name}"))
            .spawn()
            .await
            .unwrap();
        let proxy = start_proxy(&system, &config).await.unwrap();
        if name == "beta" {
            // beta serves its parent as one member of the URN's group, and publishes.
            proxy.join("parent:beta").await.unwrap();
            let topic = conclib_redis::topics::Topic::live("view.news").unwrap();
            proxy.topics().publish(&topic, &7u32).await.unwrap();
            // A durable subscription that reads nothing: its group is 3 events behind.
            let orders = conclib_redis::topics::Topic::durable("view.orders").unwrap();
            let late = proxy.topics().subscribe::<u32>(&orders).group("late");
            subscriptions.push(late.await.unwrap());
            for n in 0..3u32 {
                proxy.topics().publish(&orders, &n).await.unwrap();
            }
        }
        proxies.push(proxy);
    }
    // A short command timeout: the view notices a vanished Redis quickly.
    let mut reader_config = config.clone();
    reader_config.command_timeout = Duration::from_secs(1);
    let reader = SnapshotReader::connect(&reader_config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();

    // The page: one file, nothing fetched from elsewhere.
    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("conclib live view"));
    for external in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script src",
        "@import",
        "url(",
    ] {
        assert!(!page.contains(external), "the page loads {external}...");
    }

    // Both systems, their actors and the tree.
    let systems: Vec<Value> = eventually(
        TWENTY_SECONDS,
        "both systems with their child actors",
        || async {
            let (status, body) = get(&format!("{url}/api/systems")).await;
            let systems: Vec<Value> = serde_json::from_str(&body).ok()?;
            (status == 200
            && systems.len() == 2
            && systems
                .iter()
                .all(|s| s["snapshot"]["actors"].as_array().unwrap().len() == 2)
            // Published after beta joined its group and published to a topic.
            && systems[1]["groups"].as_array().is_some_and(|g| !g.is_empty())
            && systems[1]["topics"]["published"] == 4
            && systems[1]["topics"]["lag"] == 3)
                .then_some(systems)
        },
    )
    .await;
    assert_eq!(systems[0]["system_id"], "alpha");
    assert_eq!(systems[0]["groups"], serde_json::json!([]), "as published");
    assert_eq!(systems[0]["topics"], Value::Null, "alpha never used topics");
    assert_eq!(systems[1]["topics"]["publish_failures"], 0);
    assert_eq!(systems[1]["topics"]["pending"], 0, "nothing taken yet");
    assert!(
        page.contains("\"topics: \"") && page.contains("durable groups: "),
        "the page shows a system's topics and its durable groups' lag"
    );
    // start_redis's Redis persists nothing: each system says a restart loses its tells.
    for system in &systems {
        assert_eq!(system["persistence"], serde_json::json!({"mode": "none"}));
        let warning = system["persistence_warning"].as_str().unwrap();
        assert!(warning.contains("appendonly yes"), "{warning}");
    }
    assert_eq!(systems[1]["system_id"], "beta");
    assert_eq!(systems[1]["groups"].as_array().unwrap().len(), 1);
    assert_eq!(systems[1]["groups"][0]["name"], "parent:beta");
    assert_eq!(systems[1]["groups"][0]["group"], "~parent:beta");
    let actors = systems[0]["snapshot"]["actors"].as_array().unwrap();
    let parent = actors.iter().find(|a| a["urn"] == "parent:alpha").unwrap();
    let child = actors.iter().find(|a| a["urn"] == "child:1").unwrap();
    assert_eq!(child["parent"], parent["id"]);
    assert_eq!(parent["state"], "running");

    // The history the plots draw: a series per actor, growing a sample a second.
    let key = format!("alpha/{}", parent["id"]);
    eventually(
        TWENTY_SECONDS,
        "three samples of the parent's history",
        || async {
            let (_, body) = get(&format!("{url}/api/history")).await;
            let history: Value = serde_json::from_str(&body).ok()?;
            let series = &history["series"][&key];
            (series["mailbox"].as_array()?.len() >= 3 && series["rate"].as_array()?.len() >= 3)
                .then_some(())
        },
    )
    .await;

    // Redis gone: the API says so (503 with the reason), the page shows it.
    drop(subscriptions);
    for proxy in proxies {
        drop(proxy);
    }
    daemon.shutdown().unwrap();
    let body = eventually(TWENTY_SECONDS, "a 503 once Redis is gone", || async {
        let (status, body) = get(&format!("{url}/api/systems")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("cannot read the snapshots"), "{body}");
    assert!(
        page.contains("cannot read the snapshots"),
        "the page shows the API's error"
    );

    served.stop().await;
}

/// Mounted as the README shows (`mount("/conclib", ..)`): the page at `/conclib` and
/// `/conclib/` points its requests at `/conclib/api/...` (a `<base>`), and those answer;
/// nested by hand, `/conclib` works too; unmounted, the base is `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_under_a_prefix() {
    let base = ProxyConfig::default().with_namespace("view-prefix");
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    for (mount, page_paths) in [
        ("/conclib", &["/conclib", "/conclib/"][..]),
        ("/ops/view", &["/ops/view", "/ops/view/"][..]),
    ] {
        let reader = SnapshotReader::connect(&config).await.unwrap();
        let served =
            Served::start(axum::Router::new().merge(conclib_view::mount(mount, reader))).await;
        let url = served.url.clone();
        for path in page_paths {
            let (status, page) = get(&format!("{url}{path}")).await;
            assert_eq!(status, 200, "GET {path}");
            assert!(
                page.contains(&format!("<base href=\"{mount}/\">")),
                "GET {path}: no base for {mount}"
            );
        }
        let (status, body) = get(&format!("{url}{mount}/api/systems")).await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = get(&format!("{url}{mount}/api/history")).await;
        assert_eq!(status, 200);
        served.stop().await;
    }
    // Nested by hand (axum's `nest`): the page at the prefix, with the same base.
    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served =
        Served::start(axum::Router::new().nest("/conclib", conclib_view::router(reader))).await;
    let url = served.url.clone();
    let (status, page) = get(&format!("{url}/conclib")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<base href=\"/conclib/\">"));
    assert_eq!(get(&format!("{url}/conclib/api/systems")).await.0, 200);
    served.stop().await;

    // Not nested: the base is the root.
    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let (_, page) = get(&format!("{}/", served.url)).await;
    assert!(page.contains("<base href=\"/\">"));
    served.stop().await;
}

/// An actor whose messages can fail or hold it (its mailbox then fills).
struct Probe;
impl Actor for Probe {}

enum Work {
    Fine,
    Fail,
    Hold(std::sync::Arc<tokio::sync::Notify>),
}
impl conclib_core::Message for Work {
    type Response = ();
    type Error = String;
}
impl conclib_core::Handler<Work> for Probe {
    async fn handle(&mut self, work: Work, _: &mut Context<Self>) -> Result<(), String> {
        match work {
            Work::Fine => Ok(()),
            Work::Fail => Err("failed on purpose".into()),
            Work::Hold(gate) => {
                gate.notified().await;
                Ok(())
            }
        }
    }
}

async fn json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn urns(system: &Value) -> Vec<String> {
    system["snapshot"]["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["urn"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// 600 actors, 20 published in full: a failing actor and a full mailbox far down by id
/// come first; any actor can be searched (its figures shown), sorted and paged to; one
/// system's page moves alone; the plots' samples come whole, then as deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_actors_the_telling_first_search_sort_page_and_history_deltas() {
    let mut base = ProxyConfig::default()
        .with_namespace("view-many")
        .with_snapshot_interval(Some(Duration::from_millis(200)));
    base.snapshot_max_actors = 20;
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let system = ActorSystem::new("many");
    let mut actors = Vec::new();
    for n in 0..600 {
        let actor = system
            .build(Probe)
            .urn(format!("worker:{n:03}"))
            .spawn()
            .await
            .unwrap();
        actors.push(actor);
    }
    let small = ActorSystem::new("small");
    small.build(Probe).urn("lone:1").spawn().await.unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let small_proxy = start_proxy(&small, &config).await.unwrap();
    // worker:500 fails; worker:400 holds with 9 messages queued; worker:123 handles 5.
    actors[500].ask(Work::Fail).await.unwrap_err();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    actors[400].tell(Work::Hold(gate.clone())).await.unwrap();
    for _ in 0..9 {
        actors[400].tell(Work::Fine).await.unwrap();
    }
    for _ in 0..5 {
        actors[123].ask(Work::Fine).await.unwrap();
    }
    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();
    let many = |systems: Value| {
        systems
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["system_id"] == "many")
            .cloned()
    };

    // The most telling first, although 20 of 600 are published in full: the failing
    // actor (first while its failure is recent, after the full mailbox later) and the one
    // with the full mailbox.
    let first = eventually(
        TWENTY_SECONDS,
        "the failing and the queued actor first",
        || async {
            let page = many(json(&format!("{url}/api/systems")).await)?;
            let mut top = urns(&page);
            top.truncate(2);
            top.sort();
            (top == ["worker:400", "worker:500"] && page["page"]["listed"] == 600).then_some(page)
        },
    )
    .await;
    let page = &first["page"];
    assert_eq!(page["total"], 600);
    assert_eq!(page["unlisted"], 0);
    assert_eq!(page["matched"], 600);
    assert_eq!(page["failing"], 1);
    assert_eq!(page["sort"], "telling");
    assert_eq!(urns(&first).len(), 50);
    let listed = first["snapshot"]["actors"].as_array().unwrap();
    let failing = listed.iter().find(|a| a["urn"] == "worker:500").unwrap();
    assert_eq!(failing["errors"], 1);
    assert!(
        failing["last_error"]
            .as_str()
            .unwrap()
            .contains("failed on purpose")
    );
    let queued = listed.iter().find(|a| a["urn"] == "worker:400").unwrap();
    assert_eq!(queued["mailbox_len"], 9);

    // A search finds an actor listed only in brief, with its figures.
    let found = many(json(&format!("{url}/api/systems?q=WORKER:123")).await).unwrap();
    assert_eq!(urns(&found), ["worker:123"]);
    assert_eq!(found["page"]["matched"], 1);
    assert_eq!(found["snapshot"]["actors"][0]["handled"], 5);
    let id = found["snapshot"]["actors"][0]["id"].as_u64().unwrap();
    let by_id = many(json(&format!("{url}/api/systems?q=%23{id}")).await).unwrap();
    assert!(urns(&by_id).contains(&"worker:123".to_owned()));
    let some = many(json(&format!("{url}/api/systems?q=worker:1&limit=500")).await).unwrap();
    assert_eq!(some["page"]["matched"], 100, "worker:100 to worker:199");
    assert_eq!(urns(&some).len(), 100);

    // Sorted by any column, either way.
    let by_urn = many(json(&format!("{url}/api/systems?sort=urn&limit=3")).await).unwrap();
    assert_eq!(urns(&by_urn), ["worker:000", "worker:001", "worker:002"]);
    let by_urn =
        many(json(&format!("{url}/api/systems?sort=urn&order=desc&limit=2")).await).unwrap();
    assert_eq!(urns(&by_urn), ["worker:599", "worker:598"]);
    let by_handled = many(json(&format!("{url}/api/systems?sort=handled&limit=1")).await).unwrap();
    assert_eq!(by_handled["page"]["order"], "desc");
    assert_eq!(urns(&by_handled), ["worker:123"]);

    // Pages: consecutive, disjoint, the last one short.
    let page_1 = many(json(&format!("{url}/api/systems?sort=urn&limit=250")).await).unwrap();
    let page_3 =
        many(json(&format!("{url}/api/systems?sort=urn&limit=250&offset=500")).await).unwrap();
    assert_eq!(urns(&page_1)[249], "worker:249");
    assert_eq!(urns(&page_3).len(), 100);
    assert_eq!(urns(&page_3)[0], "worker:500");
    // One system's offset leaves the others on their first page.
    let both = json(&format!(
        "{url}/api/systems?sort=urn&limit=10&offset.many=590"
    ))
    .await;
    assert_eq!(urns(&both[0])[0], "worker:590");
    assert_eq!(urns(&both[1]), ["lone:1"]);
    assert_eq!(
        get(&format!("{url}/api/systems?sort=nonsense")).await.0,
        400
    );

    // The plots: a series whole, then only what is new.
    let key = format!("many/{}", actors[400].id().as_u64());
    let whole = json(&format!("{url}/api/history?full={key}")).await;
    let seq = whole["seq"].as_u64().unwrap();
    let series = &whole["series"][&key];
    let len = series["mailbox"].as_array().unwrap().len() as u64;
    assert!(len >= 1);
    assert_eq!(series["from"].as_u64().unwrap() + len - 1, seq);
    assert_eq!(
        whole["series"].as_object().unwrap().len(),
        1,
        "only what was asked"
    );
    let later = eventually(TWENTY_SECONDS, "two more samples", || async {
        let later = json(&format!("{url}/api/history?key={key}&since={seq}")).await;
        (later["seq"].as_u64()? >= seq + 2).then_some(later)
    })
    .await;
    let delta = &later["series"][&key];
    assert_eq!(delta["from"], seq + 1);
    let new = delta["mailbox"].as_array().unwrap();
    assert_eq!(new.len() as u64, later["seq"].as_u64().unwrap() - seq);
    assert!(new.iter().all(|m| m == 9));
    // Nothing new since the latest: an empty delta.
    let now = later["seq"].as_u64().unwrap();
    let none = json(&format!("{url}/api/history?key={key}&since={now}")).await;
    if none["seq"] == now {
        assert_eq!(none["series"][&key]["mailbox"].as_array().unwrap().len(), 0);
    }
    // Any `since`, however large, is a delta of nothing; one that is not a number, refused.
    let beyond = json(&format!("{url}/api/history?key={key}&since={}", u64::MAX)).await;
    assert_eq!(
        beyond["series"][&key]["mailbox"].as_array().unwrap().len(),
        0
    );
    assert_eq!(
        get(&format!("{url}/api/history?key={key}&since=soon"))
            .await
            .0,
        400
    );
    // An actor listed only in brief gets samples once a page has shown it.
    let brief_key = format!("many/{id}");
    eventually(
        TWENTY_SECONDS,
        "samples of an actor a search showed",
        || async {
            let _ = get(&format!("{url}/api/systems?q=worker:123")).await;
            let history = json(&format!("{url}/api/history?full={brief_key}")).await;
            (history["series"][&brief_key]["mailbox"].as_array()?.len() >= 2).then_some(())
        },
    )
    .await;

    gate.notify_one();
    served.stop().await;
    proxy.shutdown().await.unwrap();
    small_proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// With metrics on, each system's answer carries, per actor type and message type, the
/// calls per second, error rate and handling-time percentiles of the last interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_figures_over_the_last_interval() {
    conclib_core::metrics::enable();
    let base = ProxyConfig::default()
        .with_namespace("view-messages")
        .with_snapshot_interval(Some(Duration::from_millis(200)));
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let system = ActorSystem::new("busy");
    let actor = system.build(Probe).urn("probe:1").spawn().await.unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();
    let work = eventually(
        TWENTY_SECONDS,
        "the Work message's figures with calls and errors",
        || async {
            // Traffic all along: 4 handled, 1 failed, each round.
            for _ in 0..4 {
                actor.ask(Work::Fine).await.unwrap();
            }
            actor.ask(Work::Fail).await.unwrap_err();
            let systems = json(&format!("{url}/api/systems")).await;
            let work = systems[0]["messages"]
                .as_array()?
                .iter()
                .find(|m| m["message"].as_str().is_some_and(|n| n.ends_with("Work")))?
                .clone();
            (work["interval_ms"].as_u64()? > 0
                && work["rate"].as_f64()? > 0.0
                && work["error_pct"].as_f64()? > 0.0)
                .then_some(work)
        },
    )
    .await;
    assert!(work["actor_type"].as_str().unwrap().ends_with("Probe"));
    assert!(work["error_pct"].as_f64().unwrap() <= 100.0);
    let (p50, p95, p99) = (
        work["p50_us"].as_u64().unwrap(),
        work["p95_us"].as_u64().unwrap(),
        work["p99_us"].as_u64().unwrap(),
    );
    assert!(p50 >= 1 && p50 <= p95 && p95 <= p99, "{work}");
    assert!(p50.is_power_of_two());
    served.stop().await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
