//! The view's durable executions against a real Redis: a URN's running executions with
//! their journals (step names, kinds, times, values) and its finished ones; every input
//! bounded, refused with `400` and a reason.

mod common;

use common::{Served, get};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, Message, RequestEnvelope};
use conclib_redis::durable::{Begun, Journal};
use conclib_redis::{
    ProxyClient, ProxyConfig, scale::Activation, snapshots::SnapshotReader, start_proxy,
    start_redis,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Runs execution `key`: `steps` steps (`s1`, `s2`, ...), a version point first, and its
/// result recorded if `finish`.
#[derive(Serialize, Deserialize)]
struct Run {
    key: String,
    steps: u32,
    finish: bool,
}
impl conclib_core::MessageDecl for Run {
    type WireError = String;
}
impl Message for Run {
    type Response = u32;
    type Error = String;
    fn name() -> &'static str {
        "view.Run"
    }
}

struct Flows {
    journal: Journal,
}

impl Flows {
    async fn run(&mut self, run: Run) -> Result<u32, String> {
        let e = |e: conclib_redis::durable::DurableError| e.to_string();
        let mut ex = match self.journal.begin::<u32>(&run.key).await.map_err(e)? {
            Begun::Finished(n) => return Ok(n),
            Begun::Running(ex) => ex,
        };
        ex.version("v", 0..=2).await.map_err(e)?;
        for i in 1..=run.steps {
            let _: u32 = ex
                .step(&format!("s{i}"), async move { i })
                .await
                .map_err(e)?;
        }
        if run.finish {
            ex.finish(&run.steps).await.map_err(e)?;
        }
        Ok(run.steps)
    }
}

impl Actor for Flows {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Run>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Run>() {
            Ok((run, r)) => r.respond(self.run(run).await),
            Err(req) => req.reject(),
        }
    }
}

async fn json(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_lists_a_urns_executions_with_their_journals() {
    let base = ProxyConfig::default().with_namespace("view-durable");
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base).with_system_id("alpha");
    let system = ActorSystem::new("alpha");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("wf:{id}", |a: Activation| async move {
            Ok::<_, String>(Flows {
                journal: Journal::new(a.into_store()),
            })
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let run = |key: &str, steps: u32, finish: bool| {
        let client = client.clone();
        let run = Run {
            key: key.to_owned(),
            steps,
            finish,
        };
        async move { client.ask("wf:1", run).await.unwrap() }
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    run("done", 2, true).await;
    run("short", 1, false).await;
    run("long", 120, false).await;

    let reader = SnapshotReader::connect(&config).await.unwrap();
    let served = Served::start(conclib_view::router(reader)).await;
    let url = served.url.clone();

    // The page has the section and asks the API.
    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"executions\""), "the executions section");
    assert!(page.contains("api/executions?"), "the page reads the API");

    let answer = json(&format!("{url}/api/executions?urn=wf%3A1")).await;
    assert_eq!(answer["urn"], "wf:1");
    assert_eq!(answer["listed"], 3);
    assert_eq!(answer["running"], 2);
    assert_eq!(answer["complete"], true);
    let executions = answer["executions"].as_array().unwrap();
    let keys: Vec<&str> = executions
        .iter()
        .map(|x| x["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["long", "short", "done"],
        "running first, the most recently active first"
    );
    // A running execution: its journal so far, the version point first.
    let short = &executions[1];
    assert_eq!(short["state"], "running");
    assert_eq!(short["steps_recorded"], 2);
    let steps = short["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (&steps[0]["name"], &steps[0]["kind"], &steps[0]["number"]),
        (&Value::from("v"), &Value::from("version"), &Value::from(1))
    );
    assert_eq!(
        (&steps[1]["name"], &steps[1]["kind"]),
        (&Value::from("s1"), &Value::from("step"))
    );
    let at = steps[1]["at_ms"].as_u64().unwrap();
    assert!(at >= before && at < before + 60_000, "{at}");
    assert!(steps[1]["value_bytes"].as_u64().unwrap() > 0);
    assert!(!steps[1]["value_hex"].as_str().unwrap().is_empty());
    // One with more steps than shown: its last 100, the rest counted.
    let long = &executions[0];
    assert_eq!(long["steps_recorded"], 121);
    assert_eq!(long["steps"].as_array().unwrap().len(), 100);
    assert_eq!(long["steps_not_shown"], 21);
    assert_eq!(long["steps"][99]["name"], "s120");
    // A finished one: its result recorded, its steps deleted.
    let done = &executions[2];
    assert_eq!(done["state"], "finished");
    assert_eq!(done["steps_recorded"], 3);
    assert!(done["finished_at_ms"].as_u64().unwrap() >= before);
    assert_eq!(done["steps"], serde_json::json!([]));

    // The limit cuts, and says so.
    let answer = json(&format!("{url}/api/executions?urn=wf%3A1&limit=2")).await;
    assert_eq!(answer["listed"], 2);
    assert_eq!(answer["complete"], false);
    // A URN without a journal: nothing.
    let answer = json(&format!("{url}/api/executions?urn=wf%3A2")).await;
    assert_eq!(answer["listed"], 0);

    // Every input bounded: refused with 400 and a reason.
    for (query, says) in [
        (String::new(), "give the URN"),
        ("urn=wf%3A1&limit=0".to_owned(), "limit"),
        ("urn=wf%3A1&limit=501".to_owned(), "limit"),
        ("urn=a+b".to_owned(), "invalid URN"),
        (
            format!("urn={}", "u".repeat(conclib_core::MAX_URN_LEN + 1)),
            "invalid URN",
        ),
        (format!("urn={}", "u".repeat(2000)), "at most 1024"),
    ] {
        let (status, body) = get(&format!("{url}/api/executions?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains(says), "{query}: {body}");
        assert!(body.len() < 400, "{query}: a short reason");
    }

    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    served.stop().await;
}
