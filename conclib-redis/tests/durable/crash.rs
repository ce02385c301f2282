//! A member killed or frozen inside a step's side effect, before its record: the next
//! activation replays the committed steps without running them, runs the cut one again
//! once, and the frozen member, back, records nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conclib_core::AskError;
use conclib_redis::durable::Executions;
use conclib_redis::{ProxyClient, ProxyConfig};

use crate::common::{config, eventually};
use crate::flow::{Flow, RunFlow, notes};
use crate::peers::{Peer, temp_notes};

/// A member hosting `wf:{id}` (1.5 s leases), its step `hold` (or `-`) holding `hold_ms`.
async fn member(
    config: &ProxyConfig,
    system: &str,
    notes: &Path,
    hold: &str,
    hold_ms: u64,
) -> Peer {
    Peer::start(&[
        "member",
        &config.url,
        &config.namespace,
        system,
        "1500",
        notes.to_str().unwrap(),
        hold,
        &hold_ms.to_string(),
    ])
    .await
}

/// How often each step of execution `key` ran, and in which processes.
fn runs(notes_file: &PathBuf, key: &str) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in notes(notes_file) {
        let mut words = line.split(' ');
        if let (Some(k), Some(step), Some(pid)) = (words.next(), words.next(), words.next())
            && k == key
        {
            out.entry(step.to_owned())
                .or_default()
                .push(pid.parse().unwrap());
        }
    }
    out
}

async fn step_noted(notes_file: &PathBuf, key: &str, step: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("{step} of {key} to run"),
        || async { runs(notes_file, key).contains_key(step) },
    )
    .await;
}

fn pid_of(peer: &Peer) -> u32 {
    peer.pid().unsigned_abs()
}

/// Member `a` runs execution `key` of `urn` up to step `hold`'s side effect and holds there
/// (`hold_ms`); member `b` is started beside it; the ask waits in `asked`.
struct HeldInStep {
    a: Peer,
    a_pid: u32,
    b: Peer,
    b_pid: u32,
    client: ProxyClient,
    asked: tokio::task::JoinHandle<Result<Vec<String>, AskError<String>>>,
}

async fn held_in_step(
    config: &ProxyConfig,
    notes_file: &PathBuf,
    urn: &'static str,
    key: &'static str,
    hold: &str,
    hold_ms: u64,
) -> HeldInStep {
    let a = member(config, "a", notes_file, hold, hold_ms).await;
    let a_pid = pid_of(&a);
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(40)))
        .await
        .unwrap();
    let asked = tokio::spawn({
        let client = client.clone();
        async move { client.ask(urn, RunFlow(Flow::steps(key, 5))).await }
    });
    step_noted(notes_file, key, hold).await;
    let b = member(config, "b", notes_file, "-", 0).await;
    let b_pid = pid_of(&b);
    HeldInStep {
        a,
        a_pid,
        b,
        b_pid,
        client,
        asked,
    }
}

pub(crate) async fn a_step_cut_between_side_effect_and_record_runs_again_once() {
    let config = config("cut");
    let notes_file = temp_notes("cut");
    // a ran s3's side effect and holds before recording it; b joins, a dies.
    let HeldInStep {
        a,
        a_pid,
        b,
        b_pid,
        client,
        asked,
    } = held_in_step(&config, &notes_file, "wf:1", "k1", "s3", 60_000).await;
    a.kill().await;
    let result = tokio::time::timeout(Duration::from_secs(45), asked)
        .await
        .expect("the moved request is answered")
        .unwrap()
        .unwrap();
    assert_eq!(
        result,
        vec![
            format!("s1@{a_pid}"),
            format!("s2@{a_pid}"),
            format!("s3@{b_pid}"),
            format!("s4@{b_pid}"),
            format!("s5@{b_pid}"),
        ],
        "the committed steps' values are a's, replayed; the cut one and the rest b's"
    );
    let ran = runs(&notes_file, "k1");
    let expected: BTreeMap<String, Vec<u32>> = [
        ("s1", vec![a_pid]),
        ("s2", vec![a_pid]),
        ("s3", vec![a_pid, b_pid]),
        ("s4", vec![b_pid]),
        ("s5", vec![b_pid]),
    ]
    .into_iter()
    .map(|(s, p)| (s.to_owned(), p))
    .collect();
    assert_eq!(
        ran, expected,
        "committed steps never ran again; the cut one once more"
    );
    // The same key again: the first result, nothing run.
    let again = client
        .ask("wf:1", RunFlow(Flow::steps("k1", 5)))
        .await
        .unwrap();
    assert_eq!(again, result);
    assert_eq!(runs(&notes_file, "k1"), expected);
    let executions = Executions::new(&client);
    assert_eq!(
        executions
            .result::<Vec<String>>("wf:1", "k1")
            .await
            .unwrap(),
        Some(result)
    );
    let listed = executions.list("wf:1").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "k1");
    assert_eq!(listed[0].steps_recorded, 5);
    assert!(listed[0].finished_at_ms.is_some());
    assert!(
        listed[0].steps.is_empty(),
        "a finished execution's steps are deleted"
    );
    b.stop().await;
    let _ = std::fs::remove_file(notes_file);
}

pub(crate) async fn a_fenced_out_holder_cannot_append() {
    let config = config("fenced");
    let notes_file = temp_notes("fenced");
    let HeldInStep {
        a,
        a_pid,
        b,
        b_pid,
        client,
        asked,
    } = held_in_step(&config, &notes_file, "wf:2", "k2", "s2", 4_000).await;
    // a is frozen inside s2's side effect, past its lease: b takes the URN and the request.
    a.freeze().await;
    let result = tokio::time::timeout(Duration::from_secs(45), asked)
        .await
        .expect("the moved request is answered")
        .unwrap()
        .unwrap();
    assert_eq!(result[0], format!("s1@{a_pid}"));
    assert_eq!(result[1], format!("s2@{b_pid}"));
    // a, back, finishes s2's side effect and tries to record it: refused.
    a.signal(libc::SIGCONT);
    eventually(
        Duration::from_secs(30),
        "a's record to be refused",
        || async { notes(&notes_file).contains(&format!("FENCED k2 {a_pid}")) },
    )
    .await;
    let ran = runs(&notes_file, "k2");
    assert_eq!(ran["s1"], vec![a_pid]);
    assert_eq!(ran["s2"], vec![a_pid, b_pid]);
    for later in ["s3", "s4", "s5"] {
        assert_eq!(
            ran[later],
            vec![b_pid],
            "a went no further than its refused record"
        );
    }
    assert_eq!(
        Executions::new(&client)
            .result::<Vec<String>>("wf:2", "k2")
            .await
            .unwrap(),
        Some(result),
        "the journal holds b's run"
    );
    a.kill().await;
    b.stop().await;
    let _ = std::fs::remove_file(notes_file);
}

pub(crate) async fn one_key_from_64_callers_across_a_kill_runs_once() {
    const CALLERS: usize = 64;
    const TIMEOUT: Duration = Duration::from_secs(3);
    let config = config("callers");
    let notes_file = temp_notes("callers");
    let a = member(&config, "a", &notes_file, "s3", 60_000).await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(TIMEOUT))
        .await
        .unwrap();
    // Every caller asks for the same key, again at once after any failure, until answered.
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let until = Instant::now() + Duration::from_secs(90);
                let mut slowest = Duration::ZERO;
                loop {
                    let started = Instant::now();
                    let answer = client.ask("wf:3", RunFlow(Flow::steps("k3", 5))).await;
                    slowest = slowest.max(started.elapsed());
                    match answer {
                        Ok(result) => return (result, slowest),
                        Err(AskError::Handler(e)) => panic!("the handler failed: {e}"),
                        Err(_) if Instant::now() < until => {}
                        Err(e) => panic!("no answer within 90 s: {e}"),
                    }
                }
            })
        })
        .collect();
    step_noted(&notes_file, "k3", "s3").await;
    let b = member(&config, "b", &notes_file, "-", 0).await;
    let c = member(&config, "c", &notes_file, "-", 0).await;
    a.kill().await;
    let mut results = Vec::new();
    for caller in callers {
        let (result, slowest) = tokio::time::timeout(Duration::from_secs(120), caller)
            .await
            .expect("every caller ends")
            .unwrap();
        assert!(
            slowest <= TIMEOUT + Duration::from_secs(2),
            "an ask returned after {slowest:?}, past its timeout"
        );
        results.push(result);
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "one result for all"
    );
    let ran = runs(&notes_file, "k3");
    for once in ["s1", "s2", "s4", "s5"] {
        assert_eq!(ran[once].len(), 1, "{once} ran once: {ran:?}");
    }
    assert_eq!(ran["s3"].len(), 2, "the cut step ran once more: {ran:?}");
    b.stop().await;
    c.stop().await;
    let _ = std::fs::remove_file(notes_file);
}

pub(crate) async fn a_sleep_and_a_promise_survive_a_killed_holder() {
    let config = config("waits");
    let notes_file = temp_notes("waits");
    let a = member(&config, "a", &notes_file, "-", 0).await;
    let a_pid = pid_of(&a);
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(60)))
        .await
        .unwrap();
    let steps = ["s1", "sleep:2500", "s2", "promise:approve", "s3"];
    let flow = Flow {
        key: "k4".to_owned(),
        steps: steps.iter().map(|s| (*s).to_owned()).collect(),
        version: None,
        // Left unfinished, so that its journal can be read afterwards.
        finish: false,
        wake: false,
    };
    let asked = tokio::spawn({
        let (client, flow) = (client.clone(), flow.clone());
        async move { client.ask("wf:4", RunFlow(flow)).await }
    });
    // a sleeps after s1; it dies in its sleep, b replays it.
    step_noted(&notes_file, "k4", "s1").await;
    let b = member(&config, "b", &notes_file, "-", 0).await;
    let b_pid = pid_of(&b);
    a.kill().await;
    step_noted(&notes_file, "k4", "s2").await;
    let executions = Executions::new(&client);
    assert!(
        executions
            .resolve("wf:4", "k4", "approve", "yes")
            .await
            .unwrap()
    );
    assert!(
        !executions
            .resolve("wf:4", "k4", "approve", "no")
            .await
            .unwrap(),
        "resolved once"
    );
    let result = tokio::time::timeout(Duration::from_secs(65), asked)
        .await
        .expect("the moved request is answered")
        .unwrap()
        .unwrap();
    let expected = vec![
        format!("s1@{a_pid}"),
        "slept".to_owned(),
        format!("s2@{b_pid}"),
        "yes".to_owned(),
        format!("s3@{b_pid}"),
    ];
    assert_eq!(result, expected, "a died in its sleep; b ran what followed");
    let listed = executions.list("wf:4").await.unwrap();
    let names: Vec<&str> = listed[0].steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["s1", "@sleep sleep:2500", "s2", "@promise approve", "s3"],
        "the sleep recorded once, by a"
    );
    let wake: u64 = conclib_redis::codec::decode_value(
        &conclib_redis::codec::Bincode,
        &listed[0].steps[1].value,
    )
    .unwrap();
    assert!(
        listed[0].steps[2].at_ms >= wake,
        "b waited for the end a recorded before running s2"
    );
    // Run again: everything replayed, the promise's value included; nothing runs.
    let before = notes(&notes_file).len();
    assert_eq!(client.ask("wf:4", RunFlow(flow)).await.unwrap(), expected);
    assert_eq!(notes(&notes_file).len(), before);
    b.stop().await;
    let _ = std::fs::remove_file(notes_file);
}
