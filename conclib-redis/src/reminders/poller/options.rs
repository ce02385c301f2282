//! [`ReminderPollerOptions`]: how a poller claims and delivers. Apart from the poller so
//! that its running part (`worker.rs`) and its handle both name them without naming each
//! other.

use std::time::Duration;

/// The default [`ReminderPollerOptions::claim_lease`]: 4 s.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(4);

/// How a [`ReminderPoller`](crate::reminders::ReminderPoller) claims and delivers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReminderPollerOptions {
    /// How often each shard is looked at when nothing was due (100 ms): the lag of a tick
    /// is up to this plus its delivery.
    pub poll_interval: Duration,
    /// The most reminders claimed from one shard at a time (256).
    pub batch: usize,
    /// The most deliveries in flight (256).
    pub max_in_flight: usize,
    /// How long a claim lasts without renewal (4 s, as
    /// [`ProxyConfig::lease_ttl`](crate::ProxyConfig::lease_ttl)); renewed every third of it
    /// while its delivery runs. A poller that dies, freezes or loses Redis mid-delivery
    /// stops renewing: another poller delivers the tick once the claim lapsed, within this
    /// plus a [`poll_interval`](Self::poll_interval) of the death (the same bound as an
    /// activation's failover by lease). At least 300 ms.
    pub claim_lease: Duration,
    /// Each delivery's ask timeout (10 s).
    pub delivery_timeout: Duration,
    /// How long a tick whose delivery failed waits before it is tried again (1 s).
    pub retry_after: Duration,
}

impl Default for ReminderPollerOptions {
    fn default() -> Self {
        ReminderPollerOptions {
            poll_interval: Duration::from_millis(100),
            batch: 256,
            max_in_flight: 256,
            claim_lease: DEFAULT_CLAIM_LEASE,
            delivery_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(1),
        }
    }
}

impl ReminderPollerOptions {
    /// With this claim lease and delivery timeout.
    #[must_use]
    pub fn with_claim_lease(mut self, lease: Duration, delivery_timeout: Duration) -> Self {
        self.claim_lease = lease;
        self.delivery_timeout = delivery_timeout;
        self
    }

    /// With this poll interval.
    #[must_use]
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// With this retry delay.
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = delay;
        self
    }
}
