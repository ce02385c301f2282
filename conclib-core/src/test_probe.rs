//! An actor for the core's unit tests of what snapshots see: it handles, fails, panics, or
//! holds its handler until told to go on.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::{Actor, Context, Handler, Message};

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
