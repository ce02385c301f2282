//! Executions that suspend on a durable sleep or a promise: their handler returns, the
//! activation is passivated, its member is killed, and a durable reminder activates the URN
//! again and resumes the execution by replay.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conclib_core::AskError;
use conclib_redis::ProxyClient;
use conclib_redis::ProxyConfig;
use conclib_redis::durable::{DurableError, Executions};

use crate::common::{config, eventually};
use crate::flow::{Flow, RunFlow, notes};
use crate::peers::{Peer, temp_notes};

/// A member hosting `wf:{id}` with wakes, passivating after 300 ms idle, polling reminders.
async fn woken_member(config: &ProxyConfig, system: &str, notes: &Path) -> Peer {
    Peer::start(&[
        "woken",
        &config.url,
        &config.namespace,
        system,
        "1500",
        notes.to_str().unwrap(),
        "300",
    ])
    .await
}

/// The notes' lines, in order, that start with `prefix`.
fn noted(notes_file: &PathBuf, prefix: &str) -> Vec<String> {
    notes(notes_file)
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

/// Where in the notes a line starting with `prefix` first is.
fn first_at(notes_file: &PathBuf, prefix: &str) -> Option<usize> {
    notes(notes_file).iter().position(|l| l.starts_with(prefix))
}

pub(crate) async fn a_suspended_sleep_and_promise_are_woken_by_reminders_across_passivation_and_a_kill()
 {
    const CALLERS: usize = 64;
    const TIMEOUT: Duration = Duration::from_secs(2);
    let config = config("wakes");
    let notes_file = temp_notes("wakes");
    let a = woken_member(&config, "a", &notes_file).await;
    let a_pid = a.pid().unsigned_abs();
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    let steps = ["s1", "sleep:2000", "s2", "promise:approve", "s3"];
    let flow = Flow {
        key: "k5".to_owned(),
        steps: steps.iter().map(|s| (*s).to_owned()).collect(),
        version: None,
        finish: true,
        wake: true,
    };
    let asked_at = Instant::now();
    let answer = client.ask("wf:5", RunFlow(flow.clone())).await;
    assert!(
        matches!(&answer, Err(AskError::Handler(e)) if e == "SUSPENDED"),
        "the handler let go in its sleep: {answer:?}"
    );
    assert!(
        asked_at.elapsed() < Duration::from_millis(1500),
        "suspended at once, not after the sleep"
    );
    // Passivated while it sleeps; the reminder activates it again when the sleep ends.
    eventually(
        Duration::from_secs(10),
        "passivated in its sleep",
        || async { !noted(&notes_file, "STOPPED wf:5").is_empty() },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "s2 to run after the wake",
        || async { !noted(&notes_file, "k5 s2").is_empty() },
    )
    .await;
    assert!(
        asked_at.elapsed() >= Duration::from_millis(2000),
        "s2 ran once the sleep ended"
    );
    let stopped = first_at(&notes_file, "STOPPED wf:5").unwrap();
    let s2 = first_at(&notes_file, "k5 s2").unwrap();
    assert!(stopped < s2, "s2 ran after the passivation");
    assert_eq!(
        noted(&notes_file, "ACTIVATED wf:5").len(),
        2,
        "activated again by the wake"
    );
    assert!(!noted(&notes_file, "WOKEN k5").is_empty());
    // The promise is not resolved: it suspends again (its wake message left for the
    // resolver). Its holder dies; another member comes.
    let executions = Executions::new(&client);
    eventually(
        Duration::from_secs(10),
        "suspended on the promise",
        || async {
            let listed = executions.list("wf:5").await.unwrap();
            listed[0].steps.len() == 3
        },
    )
    .await;
    let b = woken_member(&config, "b", &notes_file).await;
    let b_pid = b.pid().unsigned_abs();
    a.kill().await;
    // 64 callers ask for the result, again at once after every failure, while the promise
    // is resolved and the wake reminder resumes the execution on b.
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let executions = executions.clone();
            tokio::spawn(async move {
                let until = Instant::now() + Duration::from_secs(60);
                let mut slowest = Duration::ZERO;
                loop {
                    let started = Instant::now();
                    let got = executions
                        .wait_result::<Vec<String>>("wf:5", "k5", TIMEOUT)
                        .await;
                    slowest = slowest.max(started.elapsed());
                    match got {
                        Ok(result) => return (result, slowest),
                        Err(DurableError::Timeout) if Instant::now() < until => {}
                        Err(e) => panic!("no result within 60 s: {e}"),
                    }
                }
            })
        })
        .collect();
    assert!(
        executions
            .resolve("wf:5", "k5", "approve", "yes")
            .await
            .unwrap()
    );
    let mut results = Vec::new();
    for caller in callers {
        let (result, slowest) = tokio::time::timeout(Duration::from_secs(90), caller)
            .await
            .expect("every caller ends")
            .unwrap();
        assert!(
            slowest <= TIMEOUT + Duration::from_secs(1),
            "a look returned after {slowest:?}, past its timeout"
        );
        results.push(result);
    }
    let expected = vec![
        format!("s1@{a_pid}"),
        "slept".to_owned(),
        format!("s2@{a_pid}"),
        "yes".to_owned(),
        format!("s3@{b_pid}"),
    ];
    assert!(results.iter().all(|r| *r == expected), "{:?}", results[0]);
    for step in ["s1", "s2", "s3"] {
        assert_eq!(
            noted(&notes_file, &format!("k5 {step} ")).len(),
            1,
            "{step} ran once"
        );
    }
    // Finished: its wake is cancelled, and the same key again returns the result.
    assert!(
        conclib_redis::reminders::Reminders::new(&client)
            .list("wf:5")
            .await
            .unwrap()
            .is_empty(),
        "no wake left"
    );
    assert_eq!(client.ask("wf:5", RunFlow(flow)).await.unwrap(), expected);
    b.stop().await;
    client.shutdown().await;
    let _ = std::fs::remove_file(notes_file);
}
