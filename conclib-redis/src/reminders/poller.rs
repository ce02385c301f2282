//! [`ReminderPoller`]: claims a namespace's due reminders and delivers each as a
//! [`ReminderTick`](super::ReminderTick) ask to its URN; acknowledges the tick once the ask
//! was handled. This file is the handle a user holds (start, stats, shutdown); the tasks it
//! starts are in `poller/worker.rs`, the options they run by in `poller/options.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};

use super::renewal::HeldClaims;
use super::store::ReminderError;
use crate::client::ProxyClient;

mod options;
mod worker;

pub use options::{DEFAULT_CLAIM_LEASE, ReminderPollerOptions};
use worker::{Counters, Poller};

/// What a poller did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReminderPollerStats {
    /// Ticks claimed.
    pub claimed: u64,
    /// Ticks delivered and acknowledged.
    pub fired: u64,
    /// Missed ticks coalesced into those deliveries.
    pub coalesced: u64,
    /// Deliveries that failed and were given back.
    pub retried: u64,
    /// Deliveries handled whose claim had lapsed or was replaced (not acknowledged by this
    /// poller; another may have delivered the tick too).
    pub stale: u64,
    /// Deliveries to a URN no system serves (answered `UnknownUrn`): given back and tried
    /// again after [`retry_after`](ReminderPollerOptions::retry_after), counted here, in the
    /// metric `conclib_reminders_unserved_total` and in the poller's report for the live view
    /// ([`PollerReport::unserved`](crate::reminders::PollerReport::unserved)).
    pub unserved: u64,
}

/// Claims the due reminders of its client's namespace and delivers them, until
/// [`shutdown`](Self::shutdown) (or dropped). Run one in every system that should fire
/// reminders (any number: each tick is claimed by one). Dropped without `shutdown`, the
/// ticks it was delivering may go unacknowledged: they are delivered again once their
/// claim lapses (at least once). Every
/// [`snapshot_interval`](crate::ProxyConfig::snapshot_interval) of its client (none when
/// that is `None`) it publishes a [`PollerReport`](crate::reminders::PollerReport) of itself for the
/// live view: one Redis call.
///
/// ```no_run
/// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), Box<dyn std::error::Error>> {
/// use conclib_redis::reminders::{ReminderPoller, ReminderPollerOptions};
/// let poller = ReminderPoller::start(&client, ReminderPollerOptions::default())?;
/// // ...
/// poller.shutdown().await;
/// # Ok(()) }
/// ```
pub struct ReminderPoller {
    poller: Arc<Poller>,
    task: Option<tokio::task::JoinHandle<()>>,
    acker: tokio::task::JoinHandle<()>,
    renewer: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for ReminderPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReminderPoller")
            .field("namespace", &self.poller.ns)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ReminderPoller {
    /// Starts polling (a task on the current tokio runtime).
    ///
    /// # Errors
    /// [`ReminderError::Invalid`] when the claim lease is shorter than 300 ms, or a size
    /// is 0.
    pub fn start(
        client: &ProxyClient,
        options: ReminderPollerOptions,
    ) -> Result<ReminderPoller, ReminderError> {
        if options.claim_lease < Duration::from_millis(300) {
            return Err(ReminderError::Invalid(
                "the claim lease is at least 300 ms (renewed every third of it)".into(),
            ));
        }
        if options.batch == 0 || options.max_in_flight == 0 {
            return Err(ReminderError::Invalid(
                "batch and max_in_flight are at least 1".into(),
            ));
        }
        let (acks, handled) = mpsc::unbounded_channel();
        let poller = Arc::new(Poller {
            acks,
            client: client.clone(),
            ns: client.config().namespace.clone(),
            // With the process id: a claim names the process delivering it.
            token: format!("{}-p{}", crate::random::random_token(), std::process::id()),
            held: HeldClaims::default(),
            in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
            options,
            counters: Counters::default(),
            stop: Notify::new(),
        });
        let task = tokio::spawn(poller.clone().run());
        let acker = tokio::spawn(poller.clone().acknowledge(handled));
        let renewer = tokio::spawn(poller.clone().renew_claims());
        Ok(ReminderPoller {
            poller,
            task: Some(task),
            acker,
            renewer,
        })
    }

    /// What it did so far.
    #[must_use]
    pub fn stats(&self) -> ReminderPollerStats {
        let c = &self.poller.counters;
        ReminderPollerStats {
            claimed: c.claimed.load(Ordering::Relaxed),
            fired: c.fired.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            unserved: c.unserved.load(Ordering::Relaxed),
        }
    }

    /// Stops claiming, then waits for the deliveries in flight and their acknowledgement,
    /// within its client's [`shutdown_timeout`](crate::ProxyConfig::shutdown_timeout)
    /// whatever Redis does: the ticks not acknowledged by then are delivered again once
    /// their claim lapses (at least once).
    pub async fn shutdown(mut self) {
        let bound = self.poller.client.config().shutdown_timeout;
        self.poller.stop.notify_one();
        let task = self.task.take();
        let claiming = task.as_ref().map(tokio::task::JoinHandle::abort_handle);
        let all = u32::try_from(self.poller.options.max_in_flight).unwrap_or(u32::MAX);
        let drained = async {
            if let Some(task) = task {
                let _ = task.await;
            }
            let _ = self.poller.in_flight.acquire_many(all).await;
        };
        if tokio::time::timeout(bound, drained).await.is_err() {
            tracing::warn!(
                ?bound,
                "reminders: the poller stopped before its deliveries finished (Redis unreachable?); \
                 their ticks come again once their claims lapse"
            );
            if let Some(claiming) = claiming {
                claiming.abort();
            }
        }
        // Claims not acknowledged by now lapse one claim lease later, to another poller.
        self.renewer.abort();
        self.acker.abort();
    }
}

impl Drop for ReminderPoller {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.renewer.abort();
        self.acker.abort();
    }
}
