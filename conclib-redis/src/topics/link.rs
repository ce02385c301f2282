//! What a subscription's parts share: the event as received, the counters, a live
//! subscription's Redis side (tasks and connection), the options.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_codec::Codec;
use fred::bytes::Bytes;

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
    /// A durable subscription's stream key and group (whose lag is sampled).
    pub durable: Option<(String, String)>,
}

impl Counters {
    /// One reading of the counters, `buffered` derived from that same reading. `received`
    /// is read first: a live event is counted there after its drop (see `live::put`), so no
    /// drop it covers is missed.
    pub(crate) fn read(&self) -> SubscriptionStats {
        let received = self.received.load(Ordering::Acquire);
        let delivered = self.delivered.load(Ordering::Relaxed);
        let dropped = self.dropped.load(Ordering::Relaxed);
        SubscriptionStats {
            received,
            delivered,
            dropped,
            redelivered: self.redelivered.load(Ordering::Relaxed),
            undecodable: self.undecodable.load(Ordering::Relaxed),
            resubscribes: self.resubscribes.load(Ordering::Relaxed),
            buffered: received.saturating_sub(delivered + dropped),
        }
    }
}

/// What a [`Subscription`](super::Subscription) did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Events received from Redis (dropped ones included).
    pub received: u64,
    /// Events handed to the consumer (decoded or not).
    pub delivered: u64,
    /// Live events dropped because the buffer was full.
    pub dropped: u64,
    /// Durable events received again: taken before (by this subscriber, or one of its
    /// group that is gone) and not acknowledged.
    pub redelivered: u64,
    /// Events that did not decode as the subscription's type.
    pub undecodable: u64,
    /// Times the subscription subscribed again after losing Redis.
    pub resubscribes: u64,
    /// Events received and not yet handed over.
    pub buffered: u64,
}

/// The Redis side of a live subscription: its tasks and its own connection, stopped on
/// drop.
pub(super) struct Link {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub client: fred::prelude::Client,
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let client = self.client.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = fred::prelude::ClientLike::quit(&client).await;
            });
        }
    }
}
