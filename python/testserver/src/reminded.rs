//! `py:remind:{id}`: actors activated on demand that keep the reminder ticks they handled,
//! for `python/tests/test_reminders.py` (a reminder registered from Python, delivered by this
//! server's reminder poller, its MessagePack payload decoded on the Rust side).

use conclib::redis::reminders::ReminderTick;
use conclib::remote::ExposedMessage;
use conclib::{Actor, Context, Message, RequestEnvelope};
use serde::{Deserialize, Serialize};

/// The ticks handled so far: `(name, missed, payload as JSON)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticks;

impl Message for Ticks {
    type Response = Vec<(String, u64, String)>;
    type Error = String;
    fn name() -> &'static str {
        "py.Ticks"
    }
}

impl conclib::remote::MessageDecl for Ticks {
    type WireError = String;
}

/// Keeps the ticks it handled.
#[derive(Default)]
pub struct Reminded {
    ticks: Vec<(String, u64, String)>,
}

impl Actor for Reminded {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<ReminderTick>(),
        ExposedMessage::of::<Ticks>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let req = match req.extract::<ReminderTick>() {
            Ok((tick, r)) => {
                let payload = if tick.has_payload() {
                    match tick.payload::<serde_json::Value>() {
                        Ok(v) => v.to_string(),
                        Err(e) => return r.respond(Err(e.to_string())),
                    }
                } else {
                    String::new()
                };
                self.ticks
                    .push((tick.name().to_owned(), tick.missed(), payload));
                return r.respond(Ok(()));
            }
            Err(req) => req,
        };
        match req.extract::<Ticks>() {
            Ok((Ticks, r)) => r.respond(Ok(self.ticks.clone())),
            Err(req) => req.reject(),
        }
    }
}
