//! The view's routes against a real Redis with two systems publishing: the page ships
//! everything it needs, the API lists every system and keeps the plots' history, and a
//! vanished Redis is reported, not hidden.

use std::time::Duration;

use conclib_core::{Actor, ActorSystem, Context};
use conclib_redis::{ProxyConfig, SnapshotReader, start_proxy, start_redis};
use serde_json::Value;

struct Parent;
impl Actor for Parent {
    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), conclib_core::BoxError> {
        ctx.build_child(Child).urn("child:1").spawn().await?;
        Ok(())
    }
}

struct Child;
impl Actor for Child {}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A router served on a free port until the returned handle is stopped.
struct Served {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    async fn start(app: axum::Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(conclib_view::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Served { url, stop, server }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

/// Polls `probe` until it returns `Some` (at most 20 s).
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_lists_every_system_keeps_history_and_reports_a_lost_redis() {
    let base = ProxyConfig::default()
        .with_namespace("view-test")
        .with_snapshot_interval(Some(Duration::from_millis(100)));
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let mut proxies = Vec::new();
    for name in ["alpha", "beta"] {
        let system = ActorSystem::new(name);
        system
            .build(Parent)
            .urn(format!("parent:{name}"))
            .spawn()
            .await
            .unwrap();
        proxies.push(start_proxy(&system, &config).await.unwrap());
    }
    // A short command timeout: the view notices a vanished Redis quickly.
    let mut reader_config = config.clone();
    reader_config.command_timeout = Duration::from_secs(1);
    let reader = SnapshotReader::connect(&reader_config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(conclib_view::serve(
        listener,
        conclib_view::router(reader),
        async {
            let _ = stopped.await;
        },
    ));

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
    let systems: Vec<Value> = eventually("both systems with their child actors", || async {
        let (status, body) = get(&format!("{url}/api/systems")).await;
        let systems: Vec<Value> = serde_json::from_str(&body).ok()?;
        (status == 200
            && systems.len() == 2
            && systems
                .iter()
                .all(|s| s["snapshot"]["actors"].as_array().unwrap().len() == 2))
        .then_some(systems)
    })
    .await;
    assert_eq!(systems[0]["system_id"], "alpha");
    assert_eq!(systems[1]["system_id"], "beta");
    let actors = systems[0]["snapshot"]["actors"].as_array().unwrap();
    let parent = actors.iter().find(|a| a["urn"] == "parent:alpha").unwrap();
    let child = actors.iter().find(|a| a["urn"] == "child:1").unwrap();
    assert_eq!(child["parent"], parent["id"]);
    assert_eq!(parent["state"], "running");

    // The history the plots draw: a series per actor, growing a sample a second.
    let key = format!("alpha/{}", parent["id"]);
    eventually("three samples of the parent's history", || async {
        let (_, body) = get(&format!("{url}/api/history")).await;
        let history: Value = serde_json::from_str(&body).ok()?;
        let series = &history[&key];
        (series["mailbox"].as_array()?.len() >= 3 && series["rate"].as_array()?.len() >= 3)
            .then_some(())
    })
    .await;

    // Redis gone: the API says so (503 with the reason), the page shows it.
    for proxy in proxies {
        drop(proxy);
    }
    daemon.shutdown().unwrap();
    let body = eventually("a 503 once Redis is gone", || async {
        let (status, body) = get(&format!("{url}/api/systems")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("cannot read the snapshots"), "{body}");
    assert!(
        page.contains("cannot read the snapshots"),
        "the page shows the API's error"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
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
