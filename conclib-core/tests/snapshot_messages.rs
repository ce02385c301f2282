//! Per message type figures in a snapshot (recording on: a process of its own, since
//! `metrics::enable` is for the whole process): handled, errors and handling times by
//! actor type and message, summed over the live actors.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorSystem, Context, HANDLING_BUCKETS, Handler, Message};

struct Probe;
impl Actor for Probe {}

/// Fails when asked to; sleeps `slow_ms` first.
struct Work {
    fail: bool,
    slow_ms: u64,
}
impl Message for Work {
    type Response = ();
    type Error = String;
    fn name() -> &'static str {
        "test.Work"
    }
}
impl Handler<Work> for Probe {
    async fn handle(&mut self, work: Work, _: &mut Context<Self>) -> Result<(), String> {
        if work.slow_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work.slow_ms)).await;
        }
        if work.fail { Err("no".into()) } else { Ok(()) }
    }
}

struct Ping;
impl Message for Ping {
    type Response = ();
    type Error = Infallible;
    fn name() -> &'static str {
        "test.Ping"
    }
}
impl Handler<Ping> for Probe {
    async fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Result<(), Infallible> {
        Ok(())
    }
}

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
    // Each actor passes its figures on 100 ms after it last did (at a batch's end, or
    // waiting for mail): pings until both did (bounded).
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

    // An actor asked once is counted without another message (its first is passed on at
    // once, just after its answer: polled, bounded).
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

/// Panics when handled.
struct Boom;
impl Message for Boom {
    type Response = ();
    type Error = Infallible;
    fn name() -> &'static str {
        "test.Boom"
    }
}
impl Handler<Boom> for Probe {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) -> Result<(), Infallible> {
        panic!("boom")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_actor_handled_before_it_went_idle_is_counted_without_another_message() {
    conclib_core::metrics::enable();
    let system = ActorSystem::new("idle-totals");
    // Not rescued by hibernation (which passes everything on): the idle actor itself must.
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
    // The first batch is passed on at once; the rest come within 100 ms of it, so the
    // actor holds them back at their batches' ends: one that waited at an `.await`, one
    // that failed, and a batch ending in a panic.
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
    // Nothing more is sent: the idle actor passes on what it held back about 100 ms after
    // it last did (polled, bounded well past that, far below a hibernation's period).
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
