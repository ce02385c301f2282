//! Actors and messages shared by the core tests, written by hand against the core traits.
#![allow(dead_code)]

use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot};

/// Records every value it is told, in order.
#[derive(Default)]
pub struct Recorder {
    pub seen: Vec<u64>,
}
impl Actor for Recorder {}

#[derive(Clone)]
pub struct Record(pub u64);
impl Message for Record {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Record> for Recorder {
    async fn handle(&mut self, msg: Record, _: &mut Context<Self>) -> Result<(), Infallible> {
        self.seen.push(msg.0);
        Ok(())
    }
}

pub struct Seen;
impl Message for Seen {
    type Response = Vec<u64>;
    type Error = Infallible;
}
impl Handler<Seen> for Recorder {
    async fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Result<Vec<u64>, Infallible> {
        Ok(self.seen.clone())
    }
}

/// Blocks the actor until the gate opens: lets a test fill the mailbox deterministically.
pub struct Block(pub Arc<Notify>, pub Option<oneshot::Sender<()>>);
impl Message for Block {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Block> for Recorder {
    async fn handle(&mut self, mut msg: Block, _: &mut Context<Self>) -> Result<(), Infallible> {
        if let Some(entered) = msg.1.take() {
            let _ = entered.send(());
        }
        msg.0.notified().await;
        Ok(())
    }
}

/// Spawns a recorder and blocks it inside a handler; returns the gate that releases it.
pub async fn blocked_recorder(
    system: &ActorSystem,
    mailbox: MailboxConfig,
) -> (ActorRef<Recorder>, Arc<Notify>) {
    let r = system
        .build(Recorder::default())
        .mailbox(mailbox)
        .spawn()
        .await
        .unwrap();
    let gate = Arc::new(Notify::new());
    let (tx, rx) = oneshot::channel();
    r.tell(Block(gate.clone(), Some(tx))).await.unwrap();
    rx.await.unwrap();
    (r, gate)
}

/// A shared log of lifecycle events, for asserting order across actors.
pub type Log = Arc<Mutex<Vec<String>>>;

pub fn log_entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}
