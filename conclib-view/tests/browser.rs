//! The page in a real headless Chromium with 100,000 actors on one system: opened with a
//! search for one actor far past the thousand published in full, it shows that actor's row
//! with its figures, and only one page of rows; its reminders section lists the reminders
//! registered, soonest due first.
//!
//! Needs Debian's `chromium` (`cargo xtask test` installs it), or `CONCLIB_CHROMIUM` naming
//! another Chromium or Chrome executable.

mod common;

use common::Served;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use conclib_core::{Actor, ActorSystem, Context, Handler, Message};
use conclib_redis::{
    ProxyClient, ProxyConfig,
    reminders::{Reminder, Reminders},
    snapshots::SnapshotReader,
    start_proxy, start_redis,
};

const ACTORS: usize = 100_000;

struct Probe;
impl Actor for Probe {}

struct Work {
    fail: bool,
}
impl Message for Work {
    type Response = ();
    type Error = String;
}
impl Handler<Work> for Probe {
    async fn handle(&mut self, work: Work, _: &mut Context<Self>) -> Result<(), String> {
        if work.fail {
            Err("failed on purpose".into())
        } else {
            Ok(())
        }
    }
}

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CONCLIB_CHROMIUM") {
        return path.into();
    }
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "no Chromium found: install Debian's `chromium` package (`cargo xtask test` does), or set \
         CONCLIB_CHROMIUM to a Chromium or Chrome executable"
    );
}

/// The DOM of `url` after its scripts ran for 5 s of virtual time (Chromium killed by its
/// pid if it takes over 90 s).
fn dump_dom(url: &str, profile: &Path) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        let _ = tx.send(out);
    });
    let Ok(dom) = rx.recv_timeout(Duration::from_secs(90)) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let _ = child.wait();
        panic!("chromium did not finish within 90 s");
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "chromium failed: {status}");
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_among_100_000_actors_shows_the_row_with_its_figures() {
    let base = ProxyConfig::default()
        .with_namespace("view-browser")
        // Each snapshot lives three intervals: long enough for an unoptimized build to
        // take and publish the next one of 100,000 actors.
        .with_snapshot_interval(Some(Duration::from_secs(2)));
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let system = ActorSystem::new("hundred-thousand");
    let mut actors = Vec::with_capacity(ACTORS);
    for n in 0..ACTORS {
        actors.push(
            system
                .build(Probe)
                .urn(format!("probe:{n:06}"))
                .spawn()
                .await
                .unwrap(),
        );
    }
    // The sought actor handles 7 messages; another one fails.
    for _ in 0..7 {
        actors[77_777].ask(Work { fail: false }).await.unwrap();
    }
    actors[88_888].ask(Work { fail: true }).await.unwrap_err();
    let proxy = start_proxy(&system, &config).await.unwrap();
    // A system that publishes: the heading shows its topics.
    let news = conclib_redis::topics::Topic::live("view.news").unwrap();
    proxy.topics().publish(&news, &1u32).await.unwrap();
    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();
    // Until the view lists every actor (publishing and reading 100,000 takes a moment).
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = client
            .get(format!("{url}/api/systems?limit=1"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        if body[0]["page"]["listed"] == ACTORS && body[0]["topics"]["published"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the view lists {} actors",
            body[0]["page"]["listed"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dir = std::env::temp_dir().join(format!("conclib-view-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = format!("{url}/#q=probe:077777");
    let dom = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || dump_dom(&page, &dir.join("profile"))
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        dom.contains("data-urn=\"probe:077777\" data-handled=\"7\""),
        "no row for probe:077777 with 7 handled:\n{dom}"
    );
    assert_eq!(dom.matches("<tr class=\"actor").count(), 1, "{dom}");
    assert!(dom.contains("100,000 actors"), "{dom}");
    assert!(dom.contains("1 matching"), "{dom}");
    assert!(
        dom.contains("topics: 1 published \u{b7} 0 subscriptions: 0 received"),
        "{dom}"
    );
    // start_redis's Redis persists nothing: the heading warns, with what it can lose.
    assert!(
        dom.contains("class=\"meta persistence risk\"")
            && dom.contains("Redis can lose accepted tells on a restart")
            && dom.contains("a restart of Redis loses every tell it holds"),
        "{dom}"
    );

    // Two reminders registered (no poller: they stay), for the reminders section.
    let registrar = ProxyClient::connect(&config).await.unwrap();
    let reminders = Reminders::new(&registrar);
    let hour = Duration::from_secs(3600);
    reminders
        .register("probe:000001", Reminder::after("renew", hour).every(hour))
        .await
        .unwrap();
    reminders
        .register("probe:000002", Reminder::after("once", hour / 6))
        .await
        .unwrap();
    registrar.shutdown().await;
    // The server reads the reminders at most once a second per query: an answer read before
    // they were registered may still be served. Wait until it counts both, so that the page
    // dumped below shows them.
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "both reminders served",
        async || {
            let (status, body) = common::get(&format!("{url}/api/reminders")).await;
            status == 200 && body.contains("\"registered\":2")
        },
    )
    .await;

    // Unfiltered, the page holds one page of rows, the failing actor first.
    let dir = std::env::temp_dir().join(format!("conclib-view-browser2-{}", std::process::id()));
    let page = format!("{url}/");
    let dom = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || dump_dom(&page, &dir.join("profile"))
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(dom.matches("<tr class=\"actor").count(), 50);
    let first_row = dom.find("<tr class=\"actor").unwrap();
    assert!(
        dom[first_row..].starts_with("<tr class=\"actor bad\"")
            && dom[first_row..first_row + 200].contains("data-urn=\"probe:088888\""),
        "{}",
        &dom[first_row..first_row + 200]
    );
    // The reminders section: the soonest due first, with the counts.
    let soonest = dom
        .find("<tr class=\"reminder\" data-urn=\"probe:000002\" data-name=\"once\">")
        .unwrap_or_else(|| panic!("no row for probe:000002's reminder:\n{dom}"));
    let renew = dom
        .find("<tr class=\"reminder\" data-urn=\"probe:000001\" data-name=\"renew\">")
        .unwrap_or_else(|| panic!("no row for probe:000001's reminder:\n{dom}"));
    assert!(soonest < renew, "soonest due first");
    assert!(dom.contains("2 registered"), "{dom}");
    assert!(dom.contains("2 of 2 listed"), "{dom}");

    served.stop().await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
