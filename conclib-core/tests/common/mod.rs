//! The actor and messages the snapshot tests send (each test binary is a process of its
//! own, since `metrics::enable` is for the whole process).
#![allow(dead_code)] // each binary uses its own part

use std::convert::Infallible;
use std::time::Duration;

use conclib_core::{Actor, Context, Handler, Message};

pub struct Probe;
impl Actor for Probe {}

/// Fails when asked to; sleeps `slow_ms` first.
pub struct Work {
    pub fail: bool,
    pub slow_ms: u64,
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

pub struct Ping;
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

/// Panics when handled.
pub struct Boom;
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
