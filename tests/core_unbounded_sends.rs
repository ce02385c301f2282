//! Sends to an unbounded mailbox never wait for room: they spend the sending task's
//! cooperative budget instead, so that a task sending in a loop yields now and then.

mod common;

use common::*;
use conclib::mailbox::MailboxConfig;
use conclib::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// On one thread, a loop of tells to an unbounded mailbox lets the actor and other tasks run
/// before it ends: the backlog stays small (without the yields the actor ran only after the
/// loop, with all 20,000 messages queued, and the other task after that).
#[tokio::test(flavor = "current_thread")]
async fn a_loop_of_tells_to_an_unbounded_mailbox_lets_the_actor_and_others_run() {
    let (_system, r, other_ran) = recorder_and_another_task(MailboxConfig::Unbounded).await;
    let mut most_queued = 0;
    for i in 0..20_000u64 {
        r.tell(Record(i)).await.unwrap();
        most_queued = most_queued.max(r.mailbox_len());
    }
    assert!(other_ran.load(Ordering::SeqCst), "the loop never yielded");
    assert!(
        most_queued < 2_000,
        "the actor did not run during the loop: {most_queued} queued at most"
    );
    // Every tell was handled, in order.
    assert_eq!(r.ask(Seen).await.unwrap(), (0..20_000).collect::<Vec<_>>());
}

/// A bounded mailbox with room does not make its sender yield: its sends wait only when it
/// is full (its capacity is the backpressure).
#[tokio::test(flavor = "current_thread")]
async fn a_bounded_mailbox_with_room_takes_a_loop_of_tells_without_a_yield() {
    let (_system, r, other_ran) = recorder_and_another_task(MailboxConfig::Bounded(1_000)).await;
    for i in 0..500u64 {
        r.tell(Record(i)).await.unwrap();
    }
    assert!(
        !other_ran.load(Ordering::SeqCst),
        "the loop yielded with room left"
    );
    assert_eq!(r.mailbox_len(), 500);
    assert_eq!(r.ask(Seen).await.unwrap().len(), 500);
}

/// A recorder with this mailbox, and a task spawned beside the test's that only marks that
/// it ran (it runs once the test's task yields: the runtime has one thread).
async fn recorder_and_another_task(
    mailbox: MailboxConfig,
) -> (ActorSystem, ActorRef<Recorder>, Arc<AtomicBool>) {
    let system = ActorSystem::new("t");
    let r = system
        .build(Recorder::default())
        .mailbox(mailbox)
        .spawn()
        .await
        .unwrap();
    let other_ran = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let other_ran = other_ran.clone();
        async move { other_ran.store(true, Ordering::SeqCst) }
    });
    (system, r, other_ran)
}
