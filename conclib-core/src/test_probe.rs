//! An actor for the core's unit tests of what snapshots see: it handles, fails, panics, or
//! holds its handler until told to go on.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::actor::Actor;
use crate::context::Context;
use crate::handler::Handler;
use crate::message::Message;

pub(crate) struct Probe;
impl Actor for Probe {}

pub(crate) enum Work {
    Fine,
    Fail,
    Panic,
    /// Notifies the first once started, then waits for the second.
    Hold(Arc<Notify>, Arc<Notify>),
}

impl Message for Work {
    type Response = ();
    type Error = String;
}

impl Handler<Work> for Probe {
    async fn handle(&mut self, work: Work, _: &mut Context<Self>) -> Result<(), String> {
        match work {
            Work::Fine => Ok(()),
            Work::Fail => Err("failed on purpose".into()),
            Work::Panic => panic!("on purpose"),
            Work::Hold(started, gate) => {
                started.notify_one();
                gate.notified().await;
                Ok(())
            }
        }
    }
}

/// Waits (bounded: five seconds) until `done` holds, yielding between looks, for what no
/// event announces (a task's end, a count another task keeps); the test fails with `what`
/// if it never does. The tests'.
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let reached = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}");
}

/// Sweeps `system` until `done` holds (bounded, as [`until`]). An ask's answer reaches the
/// asker before the actor's task has looked for more mail: a sweep that comes in between
/// finds it busy, and it waits for the next sweep, as it would for the next period.
pub(crate) async fn sweep_until(
    system: &crate::system::ActorSystem,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let reached = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            crate::system::sweep(system).await;
            for _ in 0..64 {
                if done() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        }
    })
    .await;
    assert!(reached.is_ok(), "{what}");
}

/// Sweeps `system` until `actor` hibernates (the tests').
pub(crate) async fn sweep_until_dormant<A: crate::actor::Actor>(
    system: &crate::system::ActorSystem,
    actor: &crate::send::actor_ref::ActorRef<A>,
) {
    sweep_until(system, "the actor never hibernated", || {
        actor.cell.mailbox.is_dormant()
    })
    .await;
}
