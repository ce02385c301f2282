//! Version points and replays in one process: journals recorded by code without a version
//! point, at v1 and at v2, replay against code supporting 0..=3 (steps replayed, not run);
//! one outside the supported range stops typed; a step asked under another name than
//! recorded stops typed.

use std::sync::Arc;

use conclib_core::{ActorSystem, AskError};
use std::time::Duration;

use conclib_redis::durable::{DurableError, Executions, Journal, stats};
use conclib_redis::{ProxyClient, start_proxy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use crate::common::config;
use crate::flow::{Env, Flow, RunFlow, Workflows, notes};
use crate::peers::temp_notes;

fn flow(key: &str, steps: &[&str], version: Option<(u32, u32)>, finish: bool) -> RunFlow {
    RunFlow(Flow {
        key: key.to_owned(),
        steps: steps.iter().map(|s| (*s).to_owned()).collect(),
        version,
        finish,
        wake: false,
    })
}

pub(crate) async fn versions_replay_and_unsupported_ones_stop() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    conclib_core::metrics::enable();
    let config = config("versions");
    let notes_file = temp_notes("versions");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&notes_file)
        .unwrap();
    let env = Env {
        notes: Some(Arc::new(std::sync::Mutex::new(file))),
        hold: None,
    };
    let system = ActorSystem::new("versions");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("wf:{id}", move |a| {
            let env = env.clone();
            let urn = a.urn().to_owned();
            async move { Ok::<_, String>(Workflows::new(Journal::new(a.into_store()), env, &urn)) }
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let ask = |f: RunFlow| {
        let client = client.clone();
        async move { client.ask("wf:v", f).await }
    };
    let pid = std::process::id();
    let a = format!("a@{pid}");
    // Unfinished executions recorded by three versions of the code.
    assert_eq!(
        ask(flow("old", &["a"], None, false)).await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert_eq!(
        ask(flow("one", &["a"], Some((1, 1)), false)).await.unwrap(),
        ["v1".to_owned(), a.clone()]
    );
    assert_eq!(
        ask(flow("two", &["a"], Some((1, 2)), false)).await.unwrap(),
        ["v2".to_owned(), a.clone()]
    );
    let ran_before = stats().steps_run;
    // The code now supports 0..=3: each replays its own version, its step not run again.
    for (key, v) in [("old", "v0"), ("one", "v1"), ("two", "v2")] {
        assert_eq!(
            ask(flow(key, &["a", "b"], Some((0, 3)), true))
                .await
                .unwrap(),
            [v.to_owned(), a.clone(), format!("b@{pid}")],
            "{key}"
        );
    }
    // A new execution records the highest.
    assert_eq!(
        ask(flow("three", &["a"], Some((0, 3)), true))
            .await
            .unwrap(),
        ["v3".to_owned(), a.clone()]
    );
    assert_eq!(
        stats().steps_run - ran_before,
        3 + 1,
        "only the three b steps and the new execution's a ran"
    );
    let a_runs = notes(&notes_file)
        .iter()
        .filter(|l| l.contains(" a "))
        .count();
    assert_eq!(a_runs, 4, "step a ran once per execution");
    // Unsupported: recorded v1, the code supports 2..=3 only.
    ask(flow("stale", &["a"], Some((1, 1)), false))
        .await
        .unwrap();
    assert!(matches!(
        ask(flow("stale", &["a"], Some((2, 3)), true)).await,
        Err(AskError::Handler(e)) if e == "UNSUPPORTED 1"
    ));
    // Another step than recorded at position 1.
    ask(flow("nd", &["a"], None, false)).await.unwrap();
    assert!(matches!(
        ask(flow("nd", &["b"], None, true)).await,
        Err(AskError::Handler(e)) if e == "NONDETERMINISM 1"
    ));
    // A caller's look: unfinished executions with their steps, finished ones with their
    // result; a result that never comes is a typed timeout.
    let executions = Executions::new(&client);
    let listed = executions.list("wf:v").await.unwrap();
    let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["nd", "old", "one", "stale", "three", "two"]);
    let nd = &listed[0];
    assert_eq!(nd.finished_at_ms, None);
    assert_eq!(nd.steps.len(), 1);
    assert_eq!((nd.steps[0].number, nd.steps[0].name.as_str()), (1, "a"));
    assert!(listed[1].finished_at_ms.is_some() && listed[1].steps.is_empty());
    assert_eq!(
        executions
            .wait_result::<Vec<String>>("wf:v", "nd", Duration::from_millis(100))
            .await,
        Err(DurableError::Timeout)
    );
    assert_eq!(
        executions.resolve("wf:v", "bad\nkey", "p", &1u8).await,
        Err(DurableError::InvalidName("bad\nkey".into()))
    );
    // The same counts as metrics.
    let mut seen = std::collections::HashMap::<String, u64>::new();
    let mut records = 0;
    for ((name, labels), value) in conclib_testkit::recorded(&snapshotter) {
        match value {
            DebugValue::Counter(n) => {
                *seen
                    .entry(format!("{name} {}", labels.join(",")))
                    .or_default() += n;
            }
            DebugValue::Histogram(v) if name == "conclib_durable_record_seconds" => {
                records += v.len();
            }
            _ => {}
        }
    }
    let get = |k: &str| seen.get(k).copied().unwrap_or(0);
    assert_eq!(
        get("conclib_durable_steps_total outcome=run"),
        stats().steps_run
    );
    assert!(
        get("conclib_durable_steps_total outcome=replayed") >= 3,
        "{seen:?}"
    );
    assert!(
        get("conclib_durable_executions_total outcome=resumed") >= 5,
        "{seen:?}"
    );
    assert_eq!(
        get("conclib_durable_executions_total outcome=finished"),
        4,
        "{seen:?}"
    );
    assert!(records >= 10, "a time per record: {records}");
    proxy.shutdown().await.unwrap();
    let _ = std::fs::remove_file(notes_file);
}
