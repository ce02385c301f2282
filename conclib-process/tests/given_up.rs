//! Asks given up (their timeout passed, their future dropped) against real child processes:
//! never started in the child if still queued there, given up in the order of their
//! deadlines, and counted in the snapshot. `harness = false`: `main` calls
//! `conclib_process::init` first, as every program with process actors does.

use std::time::Duration;

mod common;

use common::*;
use conclib::AskError;
use conclib_process::{ProcessRef, Registry};

fn main() {
    child_tracing();
    conclib_process::init(Registry::new().actor::<Worker>());
    let tests: &[(&str, conclib_testkit::Test)] = &[
        (
            "an_ask_the_parent_gave_up_is_never_started_in_the_child",
            || Box::pin(given_up()),
        ),
        (
            "asks_time_out_in_the_order_of_their_deadlines_whatever_was_sent_first",
            || Box::pin(deadlines_in_order()),
        ),
        (
            "an_ask_given_up_before_it_started_is_counted_in_the_snapshot",
            || Box::pin(counted_in_the_snapshot()),
        ),
    ];
    conclib_testkit::run(tests);
}

/// A new worker, and an ask that keeps it busy for `ms` (sent first: requests enter the
/// child's mailbox in the order sent).
async fn busy_worker(
    ms: u64,
) -> (
    ProcessRef<Worker>,
    tokio::task::JoinHandle<Result<u64, AskError<std::convert::Infallible>>>,
) {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    let busy = tokio::spawn({
        let worker = worker.clone();
        async move { worker.ask(SleepMs(ms)).await }
    });
    tokio::task::yield_now().await;
    (worker, busy)
}

async fn given_up() {
    // The actor is busy for 1.5 s; an ask queued behind that is given up after 50 ms.
    let (worker, busy) = busy_worker(1_500).await;
    assert!(matches!(
        worker.ask(Add(5)).timeout(Duration::from_millis(50)).await,
        Err(AskError::Timeout(_))
    ));
    assert_eq!(busy.await.unwrap(), Ok(1_500));
    // The 5 was never added: the child dropped the ask before the actor reached it.
    assert_eq!(worker.ask(Add(0)).await, Ok(0));
    // A dropped ask future gives up the same way.
    let busy = tokio::spawn({
        let worker = worker.clone();
        async move { worker.ask(SleepMs(1_000)).await }
    });
    tokio::task::yield_now().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(50), worker.ask(Add(7)))
            .await
            .is_err()
    );
    assert_eq!(busy.await.unwrap(), Ok(1_000));
    assert_eq!(worker.ask(Add(0)).await, Ok(0));
}

/// The link keeps every ask's deadline with one timer (the earliest it was told of): an
/// ask sent after others with a later deadline still times out at its own, and each at its
/// own, in the order of the deadlines; every one is given up in the child.
async fn deadlines_in_order() {
    let (worker, busy) = busy_worker(1_500).await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let sent = std::time::Instant::now();
    for (n, ms) in [(1u64, 600u64), (2, 200), (3, 400)] {
        let worker = worker.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let r = worker.ask(Add(n)).timeout(Duration::from_millis(ms)).await;
            let _ = done.send((ms, r, sent.elapsed()));
        });
    }
    drop(done_tx);
    let mut order = Vec::new();
    while let Some((ms, result, took)) = done_rx.recv().await {
        assert_eq!(result, Err(AskError::Timeout(Duration::from_millis(ms))));
        assert!(
            took >= Duration::from_millis(ms),
            "{ms} ms timed out after {took:?}"
        );
        order.push(ms);
    }
    assert_eq!(order, [200, 400, 600]);
    assert_eq!(busy.await.unwrap(), Ok(1_500));
    // None of the three was added: each was given up in the child before its turn.
    assert_eq!(worker.ask(Add(0)).await, Ok(0));
    worker.kill();
    let _ = worker.wait_for_stop().await;
}

async fn counted_in_the_snapshot() {
    let system = conclib::ActorSystem::new("skips");
    let worker = conclib_process::build(Worker { total: 1 })
        .system(&system)
        .spawn()
        .await
        .unwrap();
    let skipped = |snapshot: conclib::snapshot::SystemSnapshot| {
        snapshot
            .actors
            .iter()
            .find(|a| a.pid == Some(worker.pid()))
            .map(|a| a.asks_skipped)
    };
    assert_eq!(skipped(system.snapshot()), Some(0));
    // An ask given up while queued behind a running handler is skipped in the process, and
    // counted here (`join!` sends the two in this order); one given up while its handler
    // runs is not skipped.
    let (busy, queued) = tokio::join!(
        worker.ask(SleepMs(400)),
        worker.ask(Add(5)).timeout(Duration::from_millis(50)),
    );
    assert_eq!(busy, Ok(400));
    assert!(matches!(queued, Err(AskError::Timeout(_))), "{queued:?}");
    assert!(matches!(
        worker
            .ask(SleepMs(300))
            .timeout(Duration::from_millis(50))
            .await,
        Err(AskError::Timeout(_))
    ));
    // Answered after the sleeper: the child's frames before this answer were read, its
    // `Skipped` among them.
    assert_eq!(worker.ask(Add(0)).await, Ok(1), "the 5 was never added");
    assert_eq!(skipped(system.snapshot()), Some(1));
    worker.kill();
    let _ = worker.wait_for_stop().await;
}
