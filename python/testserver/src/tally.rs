//! `py:tally:{id}`: counters activated on demand that keep their count in the fenced state
//! store, for `python/tests/test_host_store.py`: the same pattern is served by Python actor
//! hosts with the same actor written in Python, and a URN moving between the two (a member
//! killed) keeps its count, each increment counted once. `py:carry:{id}`: counters kept in
//! memory only, carried from member to member when one stops (`StateStore::dehydrate`,
//! `rehydrate`), for `python/tests/test_host_carry.py`, beside the same actor in Python.

use conclib::redis::scale::{Activation, StateStore};
use conclib::remote::ExposedMessage;
use conclib::{Actor, BoxError, Context, Message, RequestEnvelope, StopReason};
use serde::{Deserialize, Serialize};

/// Adds one to the count (saved before it is answered); answers the count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incr;

impl Message for Incr {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "test.Incr"
    }
}

impl conclib::remote::MessageDecl for Incr {
    type WireError = String;
}

/// The count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count;

impl Message for Count {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "test.Count"
    }
}

impl conclib::remote::MessageDecl for Count {
    type WireError = String;
}

/// A count kept in the activation's store (a MessagePack integer: what the Python actor
/// saves).
pub struct Tally {
    count: u64,
    store: StateStore,
}

impl Tally {
    /// The activation of `a`, its count loaded from the store.
    pub async fn activate(a: Activation) -> Result<Tally, String> {
        let count = a
            .store()
            .load::<u64>()
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        Ok(Tally {
            count,
            store: a.into_store(),
        })
    }
}

impl Actor for Tally {
    const REMOTE: &'static [ExposedMessage] =
        &[ExposedMessage::of::<Incr>(), ExposedMessage::of::<Count>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Incr>() {
            Ok((Incr, r)) => {
                let next = self.count + 1;
                let saved = self.store.save(&next).await.map_err(|e| e.to_string());
                if saved.is_ok() {
                    self.count = next;
                }
                return r.respond(saved.map(|()| next));
            }
            Err(req) => req,
        };
        match req.extract::<Count>() {
            Ok((Count, r)) => r.respond(Ok(self.count)),
            Err(req) => req.reject(),
        }
    }
}

/// A count kept in memory only (never saved): carried to the URN's next activation when
/// this one is moved (its server drained), else lost.
pub struct Carry {
    count: u64,
    store: StateStore,
}

impl Carry {
    /// The activation of `a`, its count the one carried here, else the saved one (none).
    pub async fn activate(a: Activation) -> Result<Carry, String> {
        let carried = a.store().rehydrate::<u64>().await;
        let count = match carried.map_err(|e| e.to_string())? {
            Some(count) => count,
            None => a
                .store()
                .load::<u64>()
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(0),
        };
        Ok(Carry {
            count,
            store: a.into_store(),
        })
    }
}

impl Actor for Carry {
    const REMOTE: &'static [ExposedMessage] =
        &[ExposedMessage::of::<Incr>(), ExposedMessage::of::<Count>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Incr>() {
            Ok((Incr, r)) => {
                self.count += 1;
                return r.respond(Ok(self.count));
            }
            Err(req) => req,
        };
        match req.extract::<Count>() {
            Ok((Count, r)) => r.respond(Ok(self.count)),
            Err(req) => req.reject(),
        }
    }

    async fn on_stop(
        &mut self,
        _ctx: &mut Context<Self>,
        _reason: &StopReason,
    ) -> Result<(), BoxError> {
        self.store.dehydrate(&self.count).await?;
        Ok(())
    }
}
