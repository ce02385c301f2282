//! An actor that cancels a handler whose asker gave up (`#[actor(cancel_on_timeout)]`), for
//! the Python client's timeouts: a caller's timeout frees it (`tests/test_errors.py`).

use std::time::Duration;

use conclib::{actor, message};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Counts itself in, sleeps `ms` milliseconds, counts itself done, then answers them.
#[message(response = u64, name = "cancellable.Nap")]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Nap {
    /// How long.
    pub ms: u64,
}

/// The naps started and finished.
#[message(response = (u64, u64), name = "cancellable.Naps")]
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Naps;

/// Naps, dropped at their `.await` once their asker gave up.
#[actor(urn = "py:cancellable", cancel_on_timeout)]
#[derive(Default)]
pub struct Cancellable {
    started: u64,
    finished: u64,
}

#[actor]
impl Cancellable {
    /// Naps; what it counted before its `.await` stays counted if it is cancelled there.
    #[handle(remote)]
    async fn nap(&mut self, Nap { ms }: Nap) -> u64 {
        self.started += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.finished += 1;
        ms
    }

    /// The counts.
    #[handle(remote)]
    fn naps(&mut self, _: Naps) -> (u64, u64) {
        (self.started, self.finished)
    }
}
