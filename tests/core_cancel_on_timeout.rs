//! `#[actor(cancel_on_timeout)]` (`Actor::CANCEL_ON_TIMEOUT`): a handler whose asker gave up
//! is dropped at the `.await` where it waits, and the actor's next message runs; asked
//! through a typed ref and by name, by 64 callers at once; tells are never cancelled; an
//! actor that does not opt in keeps running its handler (the next ask waits behind it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclib::{ActorSystem, AskError, DynActorRef, actor, message};
use tokio::sync::Notify;

/// The asks' timeout.
const TIMEOUT: Duration = Duration::from_millis(50);
/// How much later than its timeout an ask may end (a loaded machine's scheduling).
const MARGIN: Duration = Duration::from_millis(250);
const CALLERS: usize = 64;

/// Waits (for an hour) after counting itself in.
#[message]
struct Slow;

/// The counts: handlers of `Slow` started and finished, tells finished.
#[message(response = Counts)]
struct Quick;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    started: u64,
    finished: u64,
    tells_done: u64,
}

/// Told: waits for the gate, then counts itself done.
#[message]
struct Gated(Arc<Notify>);

/// Opts in.
#[actor(cancel_on_timeout)]
#[derive(Default)]
struct Backend {
    counts: Counts,
}

/// The same handlers, opting out (the default).
#[actor]
#[derive(Default)]
struct Plain {
    counts: Counts,
}

/// The handlers of both actors.
macro_rules! handlers {
    ($actor:ty) => {
        #[actor]
        impl $actor {
            #[handle]
            async fn slow(&mut self, _: Slow) {
                // Kept after a cancellation: done before the `.await`.
                self.counts.started += 1;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                self.counts.finished += 1;
            }

            #[handle]
            fn quick(&mut self, _: Quick) -> Counts {
                self.counts
            }

            #[handle]
            async fn gated(&mut self, Gated(gate): Gated) {
                gate.notified().await;
                self.counts.tells_done += 1;
            }
        }
    };
}
handlers!(Backend);
handlers!(Plain);

/// `CALLERS` callers ask `Slow` at once through `ask`; each must end `Timeout` within its
/// timeout plus the margin.
async fn flood<F, Fut>(ask: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), AskError>> + Send + 'static,
{
    let calls: Vec<_> = (0..CALLERS)
        .map(|_| {
            let call = ask();
            tokio::spawn(async move {
                let start = Instant::now();
                let result = call.await;
                (result, start.elapsed())
            })
        })
        .collect();
    for call in calls {
        let (result, took) = call.await.unwrap();
        assert!(
            matches!(result, Err(AskError::Timeout(_))),
            "expected a timeout, got {result:?}"
        );
        assert!(took <= TIMEOUT + MARGIN, "an ask took {took:?}");
    }
}

/// After the flood the actor answers at once; every `Slow` was started and dropped at its
/// `.await`, or skipped (its asker gone before it started).
fn answers_at_once(quick: Result<Counts, AskError>, skipped: u64) -> Counts {
    let counts = quick.expect("the next ask is answered: the slow handler was dropped");
    assert!(counts.started >= 1, "{counts:?}");
    assert_eq!(
        counts.finished, 0,
        "a cancelled handler never went past its .await"
    );
    assert_eq!(counts.started + skipped, CALLERS as u64, "{counts:?}");
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_handler_is_dropped_and_the_next_ask_runs() {
    let system = ActorSystem::new("cancel-local");
    let backend = system.spawn(Backend::default()).await.unwrap();
    let target = backend.clone();
    flood(move || {
        let target = target.clone();
        async move { target.ask(Slow).timeout(TIMEOUT).await }
    })
    .await;
    let quick = backend.ask(Quick).timeout(Duration::from_secs(5)).await;
    answers_at_once(quick, backend.asks_skipped());
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_handler_asked_by_name_is_dropped_and_the_next_ask_runs() {
    let system = ActorSystem::new("cancel-by-name");
    system
        .build(Backend::default())
        .urn("backend:1")
        .spawn()
        .await
        .unwrap();
    let by_name: DynActorRef = system.lookup("backend:1").unwrap();
    let target = by_name.clone();
    flood(move || {
        let target = target.clone();
        async move { target.ask(Slow).timeout(TIMEOUT).await }
    })
    .await;
    let quick = by_name.ask(Quick).timeout(Duration::from_secs(5)).await;
    answers_at_once(quick, by_name.asks_skipped());
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tell_is_never_cancelled() {
    let system = ActorSystem::new("cancel-tell");
    let backend = system.spawn(Backend::default()).await.unwrap();
    let gate = Arc::new(Notify::new());
    backend.tell(Gated(gate.clone())).await.unwrap();
    // Queued behind the tell, it times out (and is skipped): nothing asks the tell to stop.
    let behind = backend.ask(Quick).timeout(TIMEOUT).await;
    assert!(matches!(behind, Err(AskError::Timeout(_))), "{behind:?}");
    gate.notify_one();
    let counts = backend
        .ask(Quick)
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(counts.tells_done, 1, "the tell ran to its end");
    system.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_a_timed_out_handler_runs_on() {
    let system = ActorSystem::new("cancel-off");
    let plain = system.spawn(Plain::default()).await.unwrap();
    let slow = plain.ask(Slow).timeout(TIMEOUT).await;
    assert!(matches!(slow, Err(AskError::Timeout(_))), "{slow:?}");
    // The slow handler still runs: the next ask waits behind it, and times out too.
    let next = plain.ask(Quick).timeout(TIMEOUT * 4).await;
    assert!(matches!(next, Err(AskError::Timeout(_))), "{next:?}");
    // Its slow handler is killed.
    let _ = system.shutdown(Duration::from_millis(100)).await;
}
