//! Per message type figures in a snapshot (recording on: a process of its own, since
//! `metrics::enable` is for the whole process): handled, errors and handling times by
//! actor type and message, summed over the live actors; and nothing before recording is on.

mod common;

use std::time::{Duration, Instant};

use common::{Ping, Probe, Work};
use conclib_core::{ActorSystem, HANDLING_BUCKETS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_sums_each_message_type_over_the_actors() {
    let system = ActorSystem::new("messages");
    let actors = [
        system.spawn(Probe).await.unwrap(),
        system.spawn(Probe).await.unwrap(),
    ];
    // Off: nothing is counted.
    actors[0].ask(Ping).await.unwrap();
    assert!(system.snapshot().messages.is_empty());

    conclib_core::metrics::enable();
    for actor in &actors {
        for _ in 0..5 {
            actor
                .ask(Work {
                    fail: false,
                    slow_ms: 0,
                })
                .await
                .unwrap();
        }
        actor
            .ask(Work {
                fail: true,
                slow_ms: 0,
            })
            .await
            .unwrap_err();
    }
    actors[1]
        .ask(Work {
            fail: false,
            slow_ms: 5,
        })
        .await
        .unwrap();
    // Each actor counts a message just after its answer leaves (no event says when): pings
    // both and polls until all are counted (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (work, pings) = loop {
        for actor in &actors {
            actor.ask(Ping).await.unwrap();
        }
        let snapshot = system.snapshot();
        let find = |name: &str| {
            snapshot
                .messages
                .iter()
                .find(|m| m.message == name)
                .cloned()
        };
        if let (Some(work), Some(pings)) = (find("test.Work"), find("test.Ping"))
            && work.handled == 13
            && pings.handled >= 2
        {
            break (work, pings);
        }
        assert!(Instant::now() < deadline, "{:#?}", snapshot.messages);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(work.actor_type, std::any::type_name::<Probe>());
    assert_eq!(work.errors, 2);
    assert_eq!(work.handling_us.len(), HANDLING_BUCKETS);
    assert_eq!(work.handling_us.iter().sum::<u64>(), 13);
    // The slow one: 5 ms or more, in a bucket from 4,096 µs up.
    assert!(work.handling_us[13..].iter().sum::<u64>() >= 1, "{work:?}");
    assert!(work.handling_us[..13].iter().sum::<u64>() >= 12);
    assert_eq!(pings.errors, 0);
    assert!(pings.handled >= 2);

    // An actor asked once is counted without another message (just after its answer:
    // polled, bounded).
    let once = system.spawn(Probe).await.unwrap();
    once.ask(Work {
        fail: true,
        slow_ms: 0,
    })
    .await
    .unwrap_err();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot = system.snapshot();
        let work = snapshot
            .messages
            .iter()
            .find(|m| m.message == "test.Work")
            .unwrap();
        if (work.handled, work.errors) == (14, 3) {
            break;
        }
        assert!(Instant::now() < deadline, "{work:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
