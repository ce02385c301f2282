//! Every actor metric named in `conclib::metrics`, read back through a test recorder.
//! One test in its own binary: the recorder is global to the process.

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[actor]
#[derive(Default)]
struct Meter;

#[actor]
impl Meter {
    #[handle]
    fn work(&mut self, n: u64) -> u64 {
        n * 2
    }

    #[handle]
    fn fail(&mut self) -> Result<(), String> {
        Err("bad".into())
    }

    /// Its answer proves every earlier message's metrics were recorded (they are recorded
    /// after the answer is sent).
    #[handle]
    fn sync(&mut self) {}

    #[handle]
    fn boom(&mut self) {
        panic!("boom on purpose");
    }

    #[handle]
    async fn hold(&mut self, started: Arc<Notify>, gate: Arc<Notify>) {
        started.notify_one();
        gate.notified().await;
    }
}

/// Panics in a hook: `on_start` with `at_start`, else `on_stop`.
struct Fragile {
    at_start: bool,
}
impl Actor for Fragile {
    async fn on_start(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        assert!(!self.at_start, "on_start panics on purpose");
        Ok(())
    }
    async fn on_stop(&mut self, _: &mut Context<Self>, _: &StopReason) -> Result<(), BoxError> {
        panic!("on_stop panics on purpose");
    }
}

/// The recorder's values by (name, labels sorted as "k=v").
type Values = HashMap<conclib_testkit::MetricKey, DebugValue>;

fn read(snapshotter: &Snapshotter) -> Values {
    conclib_testkit::recorded(snapshotter)
}

fn labels(urn: &str, message: Option<&str>) -> Vec<String> {
    let mut l = vec![
        format!("actor={}", std::any::type_name::<Meter>()),
        format!("urn={urn}"),
    ];
    if let Some(m) = message {
        l.push(format!("message={m}"));
    }
    l.sort();
    l
}

fn counter(values: &Values, name: &str, urn: &str, message: Option<&str>) -> u64 {
    match values.get(&(name.to_owned(), labels(urn, message))) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {urn} {message:?}: {other:?}\nall: {values:#?}"),
    }
}

fn histogram(values: &Values, name: &str, urn: &str, message: &str) -> Vec<f64> {
    match values.get(&(name.to_owned(), labels(urn, Some(message)))) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|f| f.into_inner()).collect(),
        other => panic!("{name} {urn} {message}: {other:?}\nall: {values:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_metric_is_recorded_with_its_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let system = ActorSystem::new("metrics");
    // Before `enable`, nothing is recorded.
    let quiet = system
        .build(Meter)
        .urn("meter:quiet")
        .spawn()
        .await
        .unwrap();
    quiet.work(1).await.unwrap();
    assert!(read(&snapshotter).is_empty());

    metrics::enable();
    let meter = system
        .build(Meter)
        .urn("meter:1")
        .restart_with(|| Meter, RestartLimit::new(5, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    for n in 0..5 {
        meter.work(n).await.unwrap();
    }
    assert!(meter.fail().await.is_err());
    assert!(matches!(meter.boom().await, Err(AskError::Panicked(_))));
    // Unnamed actors of one type aggregate under `urn=""`.
    for _ in 0..2 {
        let unnamed = system.spawn(Meter).await.unwrap();
        unnamed.work(7).await.unwrap();
        unnamed.sync().await.unwrap();
    }

    // An ask that times out while queued behind a held handler, then is skipped.
    let started = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    meter
        .hold(started.clone(), gate.clone())
        .tell()
        .await
        .unwrap();
    started.notified().await;
    // Waits in the mailbox behind `hold` for as long as the two timeouts below take.
    meter.work(5).tell().await.unwrap();
    assert!(matches!(
        meter.work(9).timeout(Duration::from_millis(20)).await,
        Err(AskError::Timeout(_))
    ));
    // The same through a dynamic ref.
    assert!(matches!(
        meter
            .to_dyn()
            .ask(Work { n: 9 })
            .timeout(Duration::from_millis(20))
            .await,
        Err(AskError::Timeout(_))
    ));
    gate.notify_one();
    meter.work(0).await.unwrap();
    meter.sync().await.unwrap();

    let values = read(&snapshotter);
    let work = "Work";
    assert_eq!(
        counter(
            &values,
            "conclib_actor_messages_handled_total",
            "meter:1",
            Some(work)
        ),
        7
    );
    assert_eq!(
        counter(
            &values,
            "conclib_actor_messages_handled_total",
            "",
            Some(work)
        ),
        2
    );
    assert_eq!(
        counter(
            &values,
            "conclib_actor_handler_errors_total",
            "meter:1",
            Some("Fail")
        ),
        1
    );
    assert_eq!(
        counter(&values, "conclib_actor_panics_total", "meter:1", None),
        1
    );
    assert_eq!(
        counter(&values, "conclib_actor_restarts_total", "meter:1", None),
        1
    );
    assert_eq!(
        counter(&values, "conclib_actor_asks_skipped_total", "meter:1", None),
        2
    );
    assert_eq!(
        counter(&values, "conclib_ask_timeouts_total", "meter:1", None),
        2
    );

    let handling = histogram(&values, "conclib_actor_handling_seconds", "meter:1", work);
    assert_eq!(handling.len(), 7);
    assert!(
        handling.iter().all(|s| (0.0..1.0).contains(s)),
        "{handling:?}"
    );
    let held = histogram(&values, "conclib_actor_handling_seconds", "meter:1", "Hold");
    assert_eq!(held.len(), 1);
    let queued = histogram(&values, "conclib_actor_mailbox_seconds", "meter:1", work);
    assert_eq!(queued.len(), 7);
    // `work(5)` waited in the mailbox while `hold` ran: at least the two timeouts.
    assert!(
        queued.iter().any(|s| *s >= 0.04),
        "time in mailbox {queued:?}"
    );
    match values.get(&(
        "conclib_actor_mailbox_depth".to_owned(),
        labels("meter:1", None),
    )) {
        // Set after each message: the last one seen is `work(0)`'s or `sync`'s (the asker
        // may queue `sync` before the actor records `work(0)`).
        Some(DebugValue::Gauge(depth)) => assert!(depth.into_inner() <= 1.0, "{depth}"),
        other => panic!("mailbox depth: {other:?}"),
    }
    // Panics in hooks count as panics of the actor.
    let fragile = system
        .build(Fragile { at_start: false })
        .urn("fragile:stop")
        .spawn()
        .await
        .unwrap();
    fragile.stop();
    assert!(matches!(
        fragile.wait_for_stop().await,
        StopReason::StopFailed { .. }
    ));
    assert!(matches!(
        system
            .build(Fragile { at_start: true })
            .urn("fragile:start")
            .spawn()
            .await,
        Err(SpawnError::StartPanicked(_))
    ));
    let values = read(&snapshotter);
    let panics = |urn: &str| {
        let mut labels = vec![
            format!("actor={}", std::any::type_name::<Fragile>()),
            format!("urn={urn}"),
        ];
        labels.sort();
        values.get(&("conclib_actor_panics_total".to_owned(), labels))
    };
    assert!(
        matches!(panics("fragile:stop"), Some(DebugValue::Counter(1))),
        "{values:#?}"
    );
    assert!(
        matches!(panics("fragile:start"), Some(DebugValue::Counter(1))),
        "{values:#?}"
    );
    // A pool: its gauges every second, its replacements as they happen.
    let pool = system
        .pool(|| Meter)
        .size(2)
        .urn("meters")
        .spawn()
        .await
        .unwrap();
    pool.ask(Work { n: 1 }).await.unwrap();
    // An ask to the pool that times out (its members held): counted with the pool's labels.
    let mut gates = Vec::new();
    for member in pool.members() {
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        member
            .hold(started.clone(), gate.clone())
            .tell()
            .await
            .unwrap();
        started.notified().await;
        gates.push(gate);
    }
    let timed_out = pool
        .ask(Work { n: 1 })
        .timeout(Duration::from_millis(50))
        .await;
    assert!(
        matches!(timed_out, Err(AskError::Timeout(_))),
        "{timed_out:?}"
    );
    // A permit each: a member not yet waiting at its gate finds it open.
    for gate in gates {
        gate.notify_one();
    }
    pool.members()[0].stop();
    let pool_labels = vec![
        format!("actor={}", std::any::type_name::<Meter>()),
        "urn=meters".to_owned(),
    ];
    let mut pool_values = Values::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        // Counters are drained by each read: add them up; gauges keep their last value.
        for (key, value) in read(&snapshotter) {
            match (pool_values.get_mut(&key), value) {
                (Some(DebugValue::Counter(total)), DebugValue::Counter(n)) => *total += n,
                (_, value) => {
                    pool_values.insert(key, value);
                }
            }
        }
        let replaced = matches!(
            pool_values.get(&(
                "conclib_pool_replaced_total".to_owned(),
                pool_labels.clone()
            )),
            Some(DebugValue::Counter(1))
        );
        let gauge = |name: &str, expected: f64| {
            matches!(pool_values.get(&(name.to_owned(), pool_labels.clone())),
                Some(DebugValue::Gauge(g)) if g.into_inner() == expected)
        };
        // Gauges are sampled every second: the first sample may have caught the ask above
        // in flight; a later one shows it answered.
        let timeouts = matches!(
            pool_values.get(&("conclib_ask_timeouts_total".to_owned(), pool_labels.clone())),
            Some(DebugValue::Counter(1))
        );
        if replaced
            && timeouts
            && gauge("conclib_pool_members", 2.0)
            && gauge("conclib_pool_queued", 0.0)
            && gauge("conclib_pool_in_flight", 0.0)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool's metrics never showed 2 members, 1 replaced, 1 ask timed out, nothing queued or in flight: {pool_values:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The actor spawned before `enable` records from its next message on.
    quiet.work(1).await.unwrap();
    quiet.sync().await.unwrap();
    let values = read(&snapshotter);
    assert_eq!(
        counter(
            &values,
            "conclib_actor_messages_handled_total",
            "meter:quiet",
            Some(work)
        ),
        1
    );
}
