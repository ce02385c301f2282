//! What a subscription's parts share: the event as received, the counters, the Redis side
//! (tasks and connection), the options.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_codec::Codec;
use fred::bytes::Bytes;

use super::acks::Acks;

/// A subscription's options (see [`SubscribeRequest`](super::SubscribeRequest)).
pub(super) struct SubscribeOptions {
    pub group: String,
    pub consumer: Option<String>,
    pub buffer: usize,
    pub from_start: bool,
    pub claim_idle: Duration,
}

/// An event as received, not decoded yet.
pub(super) struct Raw {
    /// The codec it names (`None`: one this process does not know).
    pub codec: Option<Arc<dyn Codec>>,
    pub body: Bytes,
    /// A durable event's entry id (acknowledged once the next event is asked for).
    pub id: Option<Bytes>,
}

/// A subscription's counters, shared with its tasks.
#[derive(Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub redelivered: AtomicU64,
    pub undecodable: AtomicU64,
    pub resubscribes: AtomicU64,
}

impl Counters {
    pub(crate) fn buffered(&self) -> u64 {
        let out = self.delivered.load(Ordering::Relaxed) + self.dropped.load(Ordering::Relaxed);
        self.received.load(Ordering::Relaxed).saturating_sub(out)
    }
}

/// The Redis side of a subscription: its tasks and its own connection, stopped on drop;
/// and for a durable one, the acknowledgements still to send.
pub(super) struct Link {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub client: fred::prelude::Client,
    pub acks: Option<Arc<Acks>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let client = self.client.clone();
        let acks = self.acks.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(acks) = acks {
                    acks.flush().await;
                }
                let _ = fred::prelude::ClientLike::quit(&client).await;
            });
        }
    }
}
