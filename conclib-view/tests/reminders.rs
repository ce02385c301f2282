//! The view's reminders against a real Redis: registered reminders listed per URN, per prefix
//! and soonest first, with what they did (fired, coalesced, missed) and the pollers' own
//! reports (rate, lag); every input bounded, refused with `400` and a reason.

mod common;

use common::{Served, get};
use std::time::{Duration, SystemTime};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, RequestEnvelope};
use conclib_redis::{
    ProxyClient, ProxyConfig,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders},
    scale::Activation,
    snapshots::SnapshotReader,
    start_proxy, start_redis,
};
use conclib_testkit::eventually;
use serde_json::Value;

/// How long a test waits for a state it can only poll.
const TWENTY_SECONDS: Duration = Duration::from_secs(20);

/// Answers every reminder tick.
struct Ticked;

impl Actor for Ticked {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<ReminderTick>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<ReminderTick>() {
            Ok((_, r)) => r.respond(Ok(())),
            Err(req) => req.reject(),
        }
    }
}

async fn json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn names(answer: &Value) -> Vec<String> {
    answer["reminders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["urn"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_lists_reminders_per_urn_and_prefix_with_the_pollers_reports() {
    let base = ProxyConfig::default()
        .with_namespace("view-rem")
        .with_snapshot_interval(Some(Duration::from_millis(200)));
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base).with_system_id("alpha");
    let system = ActorSystem::new("alpha");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("rem:{id}", |_a: Activation| async {
            Ok::<_, String>(Ticked)
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let poller = ReminderPoller::start(
        &client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(20)),
    )
    .unwrap();
    let reminders = Reminders::new(&client);
    let hour = Duration::from_secs(3600);
    for (urn, reminder) in [
        ("rem:1", Reminder::after("daily", hour).every(24 * hour)),
        ("rem:1", Reminder::after("once", hour)),
        (
            "rem:1",
            Reminder::after("often", Duration::ZERO).every(Duration::from_millis(100)),
        ),
        ("rem:2", Reminder::after("later", 2 * hour).payload(&7u32)),
        ("other:9", Reminder::after("elsewhere", hour / 2)),
    ] {
        reminders.register(urn, reminder).await.unwrap();
    }

    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();

    // The page has the section and asks the API.
    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"reminders\""), "the reminders section");
    assert!(page.contains("api/reminders?"), "the page reads the API");

    // One URN's: all three, by due time; the periodic one that fires counts its deliveries,
    // and the poller reports its rate and lag.
    let answer = eventually(
        TWENTY_SECONDS,
        "rem:1's `often` fired twice and the poller's report with a lag",
        || async {
            let answer = json(&format!("{url}/api/reminders?urn=rem%3A1")).await;
            let often = answer["reminders"]
                .as_array()?
                .iter()
                .find(|r| r["name"] == "often")?
                .clone();
            let poller = answer["pollers"].as_array()?.first()?.clone();
            (often["fired"].as_u64()? >= 2 && poller["lag_p99_ms"].is_u64()).then_some(answer)
        },
    )
    .await;
    assert_eq!(answer["urn"], "rem:1");
    assert_eq!(answer["registered"], 5);
    assert_eq!(answer["matched"], 3);
    assert_eq!(answer["complete"], true);
    assert_eq!(
        names(&answer),
        ["rem:1 often", "rem:1 daily", "rem:1 once"],
        "by due time"
    );
    let daily = &answer["reminders"][1];
    assert_eq!(daily["period_ms"], 24 * 3_600_000u64);
    assert_eq!(daily["fired"], 0);
    assert_eq!(daily["missed"], 0);
    let due_in = daily["due_ms"].as_u64().unwrap() - answer["now_ms"].as_u64().unwrap();
    assert!(due_in > 3_500_000 && due_in <= 3_600_000, "{due_in}");
    assert_eq!(answer["reminders"][2]["period_ms"], 0);
    let report = &answer["pollers"][0];
    assert_eq!(report["system"], "alpha");
    assert_eq!(report["pid"], std::process::id());
    assert!(report["fired"].as_u64().unwrap() >= 2);
    let interval = report["interval_ms"].as_u64().unwrap();
    assert!(
        (200..2000).contains(&interval),
        "reports every 200 ms: {interval}"
    );

    // A prefix (a pattern's): the soonest due whose URN starts with it, nothing else.
    let answer = json(&format!("{url}/api/reminders?prefix=rem%3A&limit=10")).await;
    assert_eq!(
        names(&answer),
        ["rem:1 often", "rem:1 daily", "rem:1 once", "rem:2 later"]
    );
    assert_eq!(answer["matched"], 4);
    assert_eq!(answer["complete"], true);
    let later = &answer["reminders"][3];
    assert!(later["payload_bytes"].as_u64().unwrap() > 0);
    assert_eq!(later["codec"], "bincode");

    // No filter: the soonest due of any URN, cut at the limit and said so.
    let answer = json(&format!("{url}/api/reminders?limit=2")).await;
    assert_eq!(names(&answer), ["rem:1 often", "other:9 elsewhere"]);
    assert_eq!(answer["matched"], 5);
    assert_eq!(answer["complete"], false);

    // Every input bounded: refused with 400 and a reason.
    let long_urn = "u".repeat(conclib_core::MAX_URN_LEN + 1);
    for (query, says) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=lots", "limit"),
        ("urn=rem%3A1&prefix=rem%3A", "not both"),
        ("urn=a+b", "invalid reminder"),
        (&format!("prefix={long_urn}") as &str, "a prefix is 1 to"),
        (&format!("urn={}", "u".repeat(2000)), "at most 1024"),
    ] {
        let (status, body) = get(&format!("{url}/api/reminders?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(says), "{query}: {body}");
        assert!(body.len() < 400, "{query}: a short reason");
    }

    poller.shutdown().await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    served.stop().await;
}

/// Ticks of a periodic reminder that came due while no poller ran: the view says how many
/// the next delivery stands for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_show_while_no_poller_runs() {
    let base = ProxyConfig::default().with_namespace("view-rem-missed");
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let client = ProxyClient::connect(&config).await.unwrap();
    let period = Duration::from_secs(10);
    Reminders::new(&client)
        .register(
            "sub:1",
            Reminder::at("renew", SystemTime::now() - period * 10 - period / 2).every(period),
        )
        .await
        .unwrap();
    let app = conclib_view::router(SnapshotReader::connect(&config).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(conclib_view::serve(
        listener,
        app,
        std::future::pending::<()>(),
    ));
    let answer = json(&format!("{url}/api/reminders?urn=sub%3A1")).await;
    assert_eq!(answer["due"], 1);
    assert_eq!(answer["reminders"][0]["missed"], 10);
    assert_eq!(answer["reminders"][0]["claimed"], false);
    assert_eq!(answer["pollers"], serde_json::json!([]));
    server.abort();
    client.shutdown().await;
}
