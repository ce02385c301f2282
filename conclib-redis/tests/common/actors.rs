//! Actors and messages shared by the tests, the peer (a test binary in that role) and the bench.
#![allow(dead_code, missing_docs)]

use conclib_macros::message;
use std::time::Duration;

use conclib_core::{Actor, Context, ExposedMessage, RequestEnvelope};
use serde::{Deserialize, Serialize};

/// Adds to the counter; fails on overflow.
#[message(response = u64, error = String, name = "test.Add")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Add(pub u64);

/// Reads the counter.
#[message(response = u64, error = String, name = "test.Get")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Get;

/// The handler's own error type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    NotAllowed { reason: String },
    Busy,
}

/// Always refused with `Refusal::NotAllowed`.
#[message(error = Refusal, name = "test.Forbidden")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forbidden(pub String);

/// Panics in the handler.
#[message(error = String, name = "test.Boom")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Boom;

/// Sleeps, then answers.
#[message(response = u64, error = String, name = "test.Sleep")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sleep(pub u64);

/// Set when a `Sleep(301)` handler starts: lets a test wait for it.
pub static SLEEP_301_STARTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Answers its payload.
#[message(response = String, error = String, name = "test.Echo")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo(pub String);

/// Answers a byte buffer of the given size.
#[message(response = Vec<u8>, error = String, name = "test.Blob")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blob(pub usize);

/// Appended to the actor's log (meant for tells).
#[message(error = String, name = "test.Record")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record(pub u64);

/// The log of recorded values.
#[message(response = Vec<u64>, error = String, name = "test.History")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History;

/// Cannot fail.
#[message(response = String, name = "test.Ping")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping;

/// Handled, but not exposed to the proxy.
#[message(response = u64, error = String, name = "test.Secret")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secret;

/// Dropped without an answer.
#[message(error = String, name = "test.Ignore")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ignore;

/// Handled slowly (2 ms), then recorded: its number is appended (one line) to the file named
/// by the environment variable `CONCLIB_TEST_NOTES`, if set, so that a test can see which
/// were handled by a process it killed.
#[message(error = String, name = "test.Note")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Note(pub u64);

/// Appends `n` to the notes file, if any.
fn write_note(n: u64) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("CONCLIB_TEST_NOTES") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the notes file");
        // One write per line: appends of one line are never interleaved.
        file.write_all(format!("{n}\n").as_bytes())
            .expect("write a note");
    }
}

/// The test actor: a counter with extras.
#[derive(Default)]
pub struct Counter {
    pub count: u64,
    pub log: Vec<u64>,
}

impl Actor for Counter {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Add>(),
        ExposedMessage::of::<Get>(),
        ExposedMessage::of::<Forbidden>(),
        ExposedMessage::of::<Boom>(),
        ExposedMessage::of::<Sleep>(),
        ExposedMessage::of::<Echo>(),
        ExposedMessage::of::<Blob>(),
        ExposedMessage::of::<Record>(),
        ExposedMessage::of::<History>(),
        ExposedMessage::of::<Ignore>(),
        ExposedMessage::of_infallible::<Ping>(),
        ExposedMessage::of::<Note>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Add>() {
            Ok((Add(n), r)) => {
                let result = self
                    .count
                    .checked_add(n)
                    .ok_or_else(|| "overflow".to_owned());
                if let Ok(total) = result {
                    self.count = total;
                }
                return r.respond(result);
            }
            Err(req) => req,
        };
        let req = match req.extract::<Get>() {
            Ok((Get, r)) => return r.respond(Ok(self.count)),
            Err(req) => req,
        };
        let req = match req.extract::<Forbidden>() {
            Ok((Forbidden(reason), r)) => return r.respond(Err(Refusal::NotAllowed { reason })),
            Err(req) => req,
        };
        let req = match req.extract::<Boom>() {
            Ok((Boom, _r)) => panic!("boom"),
            Err(req) => req,
        };
        let req = match req.extract::<Sleep>() {
            Ok((Sleep(ms), r)) => {
                if ms == 301 {
                    SLEEP_301_STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return r.respond(Ok(ms));
            }
            Err(req) => req,
        };
        let req = match req.extract::<Echo>() {
            Ok((Echo(s), r)) => return r.respond(Ok(s)),
            Err(req) => req,
        };
        let req = match req.extract::<Blob>() {
            Ok((Blob(n), r)) => return r.respond(Ok(vec![7u8; n])),
            Err(req) => req,
        };
        let req = match req.extract::<Record>() {
            Ok((Record(v), r)) => {
                self.log.push(v);
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        let req = match req.extract::<History>() {
            Ok((History, r)) => return r.respond(Ok(self.log.clone())),
            Err(req) => req,
        };
        let req = match req.extract::<Secret>() {
            Ok((Secret, r)) => return r.respond(Ok(42)),
            Err(req) => req,
        };
        let req = match req.extract::<Note>() {
            Ok((Note(n), r)) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                write_note(n);
                self.count += 1;
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        let req = match req.extract::<Ping>() {
            Ok((Ping, r)) => return r.respond(Ok("pong".to_owned())),
            Err(req) => req,
        };
        match req.extract::<Ignore>() {
            Ok((Ignore, r)) => drop(r),
            Err(req) => req.reject(),
        }
    }
}

/// An actor exposing nothing.
pub struct Hidden;
impl Actor for Hidden {
    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        match req.extract::<Get>() {
            Ok((Get, r)) => r.respond(Ok(1)),
            Err(req) => req.reject(),
        }
    }
}
