//! The actor of the shared conformance cases (`python/conformance/*.json`): the same wire
//! names, types and behaviour as the `Counter` of `conclib-redis/tests/common/actors.rs`,
//! which the Rust side of the suite (`conclib-redis/tests/conformance.rs`) runs them against.
//! Written by hand like that one (it drops a request unanswered, which a `#[handle]` method
//! cannot).

use std::time::Duration;

use conclib::remote::ExposedMessage;
use conclib::{Actor, Context, Message, RequestEnvelope};
use serde::{Deserialize, Serialize};

/// Declares a message with a wire name, a response and a `String` error.
macro_rules! test_message {
    ($(#[$doc:meta])* $ty:ident $(($field:ty))?, $name:literal, $response:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct $ty $((pub $field))?;
        impl Message for $ty {
            type Response = $response;
            type Error = String;
            fn name() -> &'static str {
                $name
            }
        }
        impl conclib::remote::MessageDecl for $ty {
            type WireError = String;
        }
    };
}

test_message!(
    /// Adds to the counter; fails on overflow.
    Add(u64), "test.Add", u64
);
test_message!(
    /// Reads the counter.
    Get, "test.Get", u64
);
test_message!(
    /// Panics in the handler.
    Boom, "test.Boom", ()
);
test_message!(
    /// Sleeps, then answers.
    Sleep(u64), "test.Sleep", u64
);
test_message!(
    /// Answers its payload.
    Echo(String), "test.Echo", String
);
test_message!(
    /// Answers a byte buffer of the given size.
    Blob(usize), "test.Blob", Vec<u8>
);
test_message!(
    /// Appended to the actor's log.
    Record(u64), "test.Record", ()
);
test_message!(
    /// The log of recorded values.
    History, "test.History", Vec<u64>
);
test_message!(
    /// Handled, but not exposed.
    Secret, "test.Secret", u64
);
test_message!(
    /// Dropped without an answer.
    Ignore, "test.Ignore", ()
);

/// The handler's own error type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Not allowed, with a reason.
    NotAllowed {
        /// Why.
        reason: String,
    },
    /// Busy.
    Busy,
}

/// Always refused with `Refusal::NotAllowed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forbidden(pub String);
impl Message for Forbidden {
    type Response = ();
    type Error = Refusal;
    fn name() -> &'static str {
        "test.Forbidden"
    }
}
impl conclib::remote::MessageDecl for Forbidden {
    type WireError = Refusal;
}

/// Cannot fail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping;
impl Message for Ping {
    type Response = String;
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "test.Ping"
    }
}
impl conclib::remote::MessageDecl for Ping {
    type WireError = conclib::remote::NoError;
}

/// The conformance actor: a counter with extras.
#[derive(Default)]
pub struct Mirror {
    count: u64,
    log: Vec<u64>,
}

impl Actor for Mirror {
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
