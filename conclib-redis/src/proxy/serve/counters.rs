//! What a proxy instance counts: requests received, completed, expired, rejected, moved.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::ProxyStats;

/// The request counters of a proxy instance ([`ProxyStats`]).
#[derive(Default)]
pub(in crate::proxy) struct Counters {
    pub(in crate::proxy) received: AtomicU64,
    pub(in crate::proxy) completed: AtomicU64,
    pub(in crate::proxy) expired: AtomicU64,
    pub(in crate::proxy) rejected: AtomicU64,
    /// Requests of gone systems moved to a pattern's group (`takeover.rs`).
    pub(in crate::proxy) moved: AtomicU64,
}

impl Counters {
    /// The counts now.
    pub(in crate::proxy) fn stats(&self) -> ProxyStats {
        ProxyStats {
            received: self.received.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            moved: self.moved.load(Ordering::Relaxed),
        }
    }
}
