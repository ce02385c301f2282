//! An idle actor's figures reach the snapshot without another message (recording on: a
//! process of its own, since `metrics::enable` is for the whole process, and the test of
//! `snapshot_messages` first looks with it off).

mod common;

use std::time::{Duration, Instant};

use common::{Boom, Probe, Work};
use conclib_core::ActorSystem;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_actor_handled_before_it_went_idle_is_counted_without_another_message() {
    conclib_core::metrics::enable();
    let system = ActorSystem::new("idle-totals");
    // No hibernation (which drops the actor's metrics): what it counted must be in the
    // snapshot without it.
    system.set_hibernate_after(None);
    // Resumes after a panic: a stopped actor's figures leave the totals.
    let actor = system
        .build(Probe)
        .on_panic(conclib_core::PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    let handled = |system: &ActorSystem| -> (u64, u64) {
        let snapshot = system.snapshot();
        let work = snapshot.messages.iter().find(|m| m.message == "test.Work");
        work.map_or((0, 0), |w| (w.handled, w.errors))
    };
    // Batches of every ending: one that waited at an `.await`, one that failed, a tell,
    // and a batch ending in a panic (not counted as handled).
    let ok = Work {
        fail: false,
        slow_ms: 0,
    };
    actor.ask(ok).await.unwrap();
    actor
        .ask(Work {
            fail: false,
            slow_ms: 2,
        })
        .await
        .unwrap();
    actor
        .ask(Work {
            fail: true,
            slow_ms: 0,
        })
        .await
        .unwrap_err();
    actor
        .tell(Work {
            fail: false,
            slow_ms: 0,
        })
        .await
        .unwrap();
    actor.ask(Boom).await.unwrap_err();
    // Nothing more is sent: each was counted just after its handler was done (polled,
    // bounded, far below a hibernation's period).
    let deadline = Instant::now() + Duration::from_secs(5);
    while handled(&system) != (4, 1) {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            system.snapshot().messages
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    actor.stop();
    actor.wait_for_stop().await;
}
