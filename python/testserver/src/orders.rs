//! `py:order:{id}`: a durable workflow activated on demand, for the Python client's
//! durable-execution helpers (`python/tests/test_durable.py`, the FastAPI example's
//! `/orders` routes): `py.Place {key, cents}` runs execution `key` of the URN's journal —
//! a `charge` step, then the promise `approved` that a caller resolves — and answers
//! `"charged <cents> approved=<bool>"`; the same key again answers that without running.
//! Its messages are in the exported schema: the generated stubs' `Orders` handle starts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib::redis::durable::Journal;
use conclib::remote::ExposedMessage;
use conclib::{Actor, Context, Message, RequestEnvelope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long an execution waits for its `approved` promise before it fails (its next run,
/// the same key asked again, waits anew).
const APPROVAL_WAIT: Duration = Duration::from_secs(60);

/// Runs (or returns the recorded result of) the order workflow under the idempotency key
/// `key`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Place {
    /// The execution's idempotency key.
    pub key: String,
    /// What the `charge` step charges.
    pub cents: u64,
}

impl Message for Place {
    type Response = String;
    type Error = String;
    fn name() -> &'static str {
        "py.Place"
    }
}

impl conclib::remote::MessageDecl for Place {
    type WireError = String;
}

/// How many times this activation ran a `charge` step's side effect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Charges;

impl Message for Charges {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "py.Charges"
    }
}

impl conclib::remote::MessageDecl for Charges {
    type WireError = String;
}

/// The order workflow of one `py:order:{id}` URN.
pub struct Orders {
    journal: Journal,
    charges: Arc<AtomicU64>,
}

impl Orders {
    /// An activation's workflow, journaled in its fenced state.
    pub fn new(journal: Journal) -> Self {
        Orders {
            journal,
            charges: Arc::default(),
        }
    }

    async fn place(&self, place: Place) -> Result<String, String> {
        let charges = self.charges.clone();
        let cents = place.cents;
        self.journal
            .run(&place.key, |mut ex| async move {
                let receipt: String = ex
                    .step("charge", async move {
                        charges.fetch_add(1, Ordering::SeqCst);
                        format!("charged {cents}")
                    })
                    .await?;
                let approved: bool = ex.promise("approved", APPROVAL_WAIT).await?;
                Ok(format!("{receipt} approved={approved}"))
            })
            .await
            .map_err(|e| e.to_string())
    }
}

impl Actor for Orders {
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of::<Place>(),
        ExposedMessage::of::<Charges>(),
    ];

    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let req = match req.extract::<Place>() {
            Ok((place, r)) => return r.respond(self.place(place).await),
            Err(req) => req,
        };
        match req.extract::<Charges>() {
            Ok((Charges, r)) => r.respond(Ok(self.charges.load(Ordering::SeqCst))),
            Err(req) => req.reject(),
        }
    }
}
