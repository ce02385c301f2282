//! [`ReminderPoller`]: claims a namespace's due reminders and delivers each as a
//! [`ReminderTick`] ask to its URN; acknowledges the tick once the ask was handled.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::AskError;
use fred::prelude::*;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::acker::{Handled, MAX_ACK_BATCH, ack_shard};
use super::keys::{SHARDS, ShardKeys, shard_of};
use super::renewal::HeldClaims;
use super::report::{LAG_BUCKETS, LagBuckets, PollerReport, quantile};
use super::store::{ReminderError, scripts};
use super::tick::ReminderTick;
use crate::client::ProxyClient;
use crate::conn::{as_bytes, owned};
use crate::conn::{int, shared_text, text};

/// The default [`ReminderPollerOptions::claim_lease`]: 4 s.
pub const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(4);

/// How a [`ReminderPoller`] claims and delivers.
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

#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    fired: AtomicU64,
    coalesced: AtomicU64,
    retried: AtomicU64,
    stale: AtomicU64,
    unserved: AtomicU64,
    /// Lags of the ticks fired, for the reports the live view reads.
    lags: LagBuckets,
}

struct Poller {
    client: ProxyClient,
    options: ReminderPollerOptions,
    ns: String,
    token: String,
    in_flight: Arc<Semaphore>,
    counters: Counters,
    stop: Notify,
    /// Ticks handled, to the task that acknowledges them in batches.
    acks: mpsc::UnboundedSender<Handled>,
    /// The claims held (delivering or waiting for their acknowledgement), renewed.
    held: HeldClaims,
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

/// One claimed tick.
struct Claimed {
    /// Shared with the held claims (`renewal.rs`), as is the token: holding a claim
    /// allocates nothing.
    member: Arc<str>,
    urn: String,
    tick: ReminderTick,
    token: Arc<str>,
    /// Redis's clock at the claim, ms.
    now_ms: u64,
    claimed_at: Instant,
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

/// What a poller had done at its last report.
struct Reported {
    at: Instant,
    fired: u64,
    lags: [u64; LAG_BUCKETS],
}

impl Reported {
    fn now(counters: &Counters) -> Reported {
        Reported {
            at: Instant::now(),
            fired: counters.fired.load(Ordering::Relaxed),
            lags: counters.lags.counts(),
        }
    }
}

impl Poller {
    /// What a claim, renewal and acknowledgement must reach (the client's durability).
    fn durability(&self) -> crate::durability::Durability {
        self.client.config().durability
    }

    /// Renews the claims held every third of the claim lease (`renewal.rs`).
    async fn renew_claims(self: Arc<Self>) {
        let lease_ms = u64::try_from(self.options.claim_lease.as_millis()).unwrap_or(u64::MAX);
        let every = self.options.claim_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if self.held.len() == 0 {
                continue;
            }
            if let Ok(cmd) = self.client.command_connection() {
                self.held
                    .renew(cmd, &self.ns, lease_ms, self.durability())
                    .await;
            }
        }
    }

    async fn run(self: Arc<Self>) {
        let mut last_counts = Instant::now() - Duration::from_secs(1);
        let mut reported = Reported::now(&self.counters);
        let report_every = self.client.config().snapshot_interval;
        loop {
            let full = self.poll_once().await;
            if conclib_core::metrics::is_enabled()
                && last_counts.elapsed() >= Duration::from_secs(1)
            {
                last_counts = Instant::now();
                self.report_counts().await;
            }
            if let Some(every) = report_every
                && reported.at.elapsed() >= every
            {
                reported = self.report(&reported).await;
            }
            if full {
                // More may be due: go again at once, letting the deliveries run.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.options.poll_interval) => {}
                () = self.stop.notified() => return,
            }
        }
    }

    /// Claims from every shard what the free delivery slots allow, and starts the
    /// deliveries; true when some shard had more due.
    async fn poll_once(self: &Arc<Self>) -> bool {
        let free = self.in_flight.available_permits();
        let half = (self.options.max_in_flight / 2).max(1);
        if free < half {
            // Wait until half the slots are free: claiming a few at a time as each delivery
            // ends would cost a script per shard for a handful of reminders.
            let half = u32::try_from(half).unwrap_or(u32::MAX);
            if let Ok(p) = self.in_flight.acquire_many(half).await {
                drop(p);
            }
            return true;
        }
        let per_shard = (free / SHARDS as usize).clamp(1, self.options.batch);
        let Ok(cmd) = self.client.command_connection() else {
            return false;
        };
        let claims = (0..SHARDS).map(|s| self.claim(cmd, s, per_shard));
        let mut full = false;
        for claimed in futures_util::future::join_all(claims).await {
            let Some(claimed) = claimed else { continue };
            full |= claimed.len() >= per_shard;
            for c in claimed {
                let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                    return false;
                };
                let me = self.clone();
                tokio::spawn(async move { me.deliver(c, permit).await });
            }
        }
        full
    }

    async fn claim(&self, cmd: &Client, shard: u32, limit: usize) -> Option<Vec<Claimed>> {
        let keys = ShardKeys::new(&self.ns, shard);
        let lease = self.options.claim_lease.as_millis().to_string();
        let sent = self.durability().sending(cmd);
        let answer = scripts()
            .claim
            .eval(
                cmd,
                vec![keys.due()],
                vec![
                    owned(limit.to_string()),
                    owned(lease),
                    owned(self.token.clone()),
                    owned(keys.record_prefix()),
                ],
            )
            .await;
        let answer = match answer {
            Ok(Value::Array(a)) => a,
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(shard, error = %e, "reminders: claim failed");
                return None;
            }
        };
        // Delivered only once a promotion would keep the claims (`Durability`): a claim the
        // promoted replica lacks lets another poller deliver the same tick. Claims not
        // replicated are not delivered nor renewed: they lapse, and the ticks come again.
        if answer.len() > 1
            && let Err(e) = self.durability().replicated(cmd, &keys.due(), &sent).await
        {
            tracing::warn!(shard, error = %e, "reminders: claims not replicated; delivered once they lapse");
            return None;
        }
        let claimed_at = Instant::now();
        let now_ms = answer.first().and_then(int).unwrap_or(0);
        let out: Vec<Claimed> = answer
            .iter()
            .skip(1)
            .filter_map(|row| match row {
                Value::Array(f) if f.len() == 9 => Some(Claimed {
                    member: shared_text(&f[0]),
                    urn: text(&f[1]),
                    tick: ReminderTick::from_wire(
                        text(&f[2]),
                        int(&f[3]).unwrap_or(0),
                        int(&f[4]).unwrap_or(0),
                        int(&f[5]).unwrap_or(0),
                        as_bytes(&f[6]).map(<[u8]>::to_vec).unwrap_or_default(),
                        text(&f[7]),
                    ),
                    token: shared_text(&f[8]),
                    now_ms,
                    claimed_at,
                }),
                _ => None,
            })
            .collect();
        for c in &out {
            tracing::trace!(urn = %c.urn, name = %c.tick.name(), token = %c.token, "reminders: claimed");
            self.held.hold(&c.token, shard, &c.member);
        }
        self.counters
            .claimed
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Some(out)
    }

    /// Delivers a claimed tick; once handled, hands it to the acknowledging task with its
    /// slot, else gives the claim back.
    async fn deliver(&self, c: Claimed, permit: OwnedSemaphorePermit) {
        let missed = c.tick.missed();
        let last_due = c
            .tick
            .due_ms()
            .saturating_add(missed.saturating_mul(c.tick.period_ms()));
        let answer = self
            .client
            .ask(c.urn.as_str(), c.tick.clone())
            .timeout(self.options.delivery_timeout)
            .await;
        let handled = matches!(
            answer,
            Ok(()) | Err(AskError::Handler(_) | AskError::Panicked(_) | AskError::NoResponse)
        );
        if !handled {
            // Boxed: rare, and its script call's future (about 5 KB) would make every
            // delivery's task as much larger, copied whole as each is spawned.
            Box::pin(self.give_back(&c, answer)).await;
            return;
        }
        tracing::trace!(urn = %c.urn, name = %c.tick.name(), token = %c.token, answer = ?answer.as_ref().err(), "reminders: delivered; to be acknowledged");
        let lag = Duration::from_millis(c.now_ms.saturating_sub(last_due)) + c.claimed_at.elapsed();
        // Gone only once the poller is dropped: then the claim lapses (at least once).
        let _ = self.acks.send(Handled {
            name: c.tick.name().to_owned(),
            member: c.member,
            urn: c.urn,
            token: c.token,
            missed,
            lag,
            _slot: permit,
        });
    }

    /// Gives back the claim of a tick whose delivery failed: it is delivered again after
    /// [`retry_after`](ReminderPollerOptions::retry_after).
    async fn give_back(&self, c: &Claimed, answer: Result<(), AskError<String>>) {
        let keys = ShardKeys::of_urn(&self.ns, &c.urn);
        if matches!(answer, Err(AskError::UnknownUrn { .. })) {
            // Nobody serves the URN: visible (stats, metric, report), tried again later.
            self.counters.unserved.fetch_add(1, Ordering::Relaxed);
            super::metrics::unserved(&self.ns);
            tracing::warn!(urn = %c.urn, name = %c.tick.name(), "reminders: no system serves the URN of a due reminder; retried later");
        } else {
            tracing::debug!(urn = %c.urn, name = %c.tick.name(), error = ?answer.err(), "reminders: delivery failed; retried later");
        }
        self.counters.retried.fetch_add(1, Ordering::Relaxed);
        super::metrics::retried(&self.ns);
        let delay = self.options.retry_after.as_millis().to_string();
        self.with_retries(|cmd| {
            scripts().release.eval(
                cmd,
                vec![keys.due(), keys.record(&c.urn, c.tick.name())],
                vec![owned(&*c.member), owned(&*c.token), owned(delay.clone())],
            )
        })
        .await;
        self.held.forget(&c.token);
    }

    /// Acknowledges the ticks handled, in batches: those of each shard handled while the
    /// previous batch ran go in one call.
    async fn acknowledge(self: Arc<Self>, mut handled: mpsc::UnboundedReceiver<Handled>) {
        let mut batch = Vec::new();
        while handled.recv_many(&mut batch, MAX_ACK_BATCH).await > 0 {
            let mut by_shard: Vec<Vec<Handled>> = (0..SHARDS).map(|_| Vec::new()).collect();
            for h in batch.drain(..) {
                by_shard[shard_of(&h.urn) as usize].push(h);
            }
            let calls = by_shard
                .into_iter()
                .enumerate()
                .filter(|(_, ticks)| !ticks.is_empty())
                .map(|(shard, ticks)| self.acknowledge_shard(shard as u32, ticks));
            futures_util::future::join_all(calls).await;
        }
    }

    async fn acknowledge_shard(&self, shard: u32, ticks: Vec<Handled>) {
        let keys = ShardKeys::new(&self.ns, shard);
        let acked = self
            .with_retries(|cmd| {
                let (keys, ticks) = (&keys, &ticks);
                async move {
                    let sent = self.durability().sending(cmd);
                    let acked = ack_shard(cmd, keys, ticks).await?;
                    // An acknowledgement the promoted replica lacks delivers the tick
                    // again; run again, the script would find the claim gone, so a
                    // replica's silence is reported, not retried.
                    if let Err(e) = self.durability().replicated(cmd, &keys.due(), &sent).await {
                        tracing::warn!(shard, error = %e, "reminders: acknowledgements not replicated; a promotion now may deliver those ticks again");
                    }
                    Ok::<_, String>(acked)
                }
            })
            .await;
        for tick in &ticks {
            self.held.forget(&tick.token);
        }
        // Not acknowledged: the claims lapse and other deliveries follow (at least once).
        let Some(results) = acked else { return };
        for (tick, result) in ticks.iter().zip(results) {
            tracing::trace!(urn = %tick.urn, name = %tick.name, token = %tick.token, result, "reminders: acknowledged (0: the claim was not this one's any more)");
            if result == 0 {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.fired.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .coalesced
                    .fetch_add(tick.missed, Ordering::Relaxed);
                self.counters.lags.record(tick.lag);
                super::metrics::fired(&self.ns, tick.missed, tick.lag);
            }
        }
    }

    /// Runs a script call up to 5 times over about a second (Redis restarting); `None` when
    /// it never answered.
    async fn with_retries<'a, F, Fut, T, E>(&'a self, call: F) -> Option<T>
    where
        F: Fn(&'a Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let mut pause = Duration::from_millis(50);
        for _ in 0..5 {
            if let Ok(cmd) = self.client.command_connection()
                && let Ok(v) = call(cmd).await
            {
                return Some(v);
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        tracing::warn!(
            "reminders: Redis did not answer an acknowledgement; the tick will be delivered again after its claim"
        );
        None
    }

    /// Publishes what it did since `last` for the live view; what it reported then.
    async fn report(&self, last: &Reported) -> Reported {
        let now = Reported::now(&self.counters);
        let c = &self.counters;
        let interval = now.at.duration_since(last.at);
        let report = PollerReport {
            system: self.client.config().system_id.clone().unwrap_or_default(),
            pid: std::process::id(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            claimed: c.claimed.load(Ordering::Relaxed),
            fired: now.fired,
            coalesced: c.coalesced.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            unserved: c.unserved.load(Ordering::Relaxed),
            in_flight: (self.options.max_in_flight - self.in_flight.available_permits()) as u64,
            fired_per_s: now.fired.saturating_sub(last.fired) as f64
                / interval.as_secs_f64().max(0.001),
            lag_p50_ms: quantile(&last.lags, &now.lags, 0.5),
            lag_p99_ms: quantile(&last.lags, &now.lags, 0.99),
            age_ms: 0,
        };
        if let Ok(cmd) = self.client.command_connection()
            && let Err(e) =
                super::report::publish(cmd, &scripts().report, &self.ns, &self.token, &report).await
        {
            tracing::debug!(error = %e, "reminders: the poller's report failed");
        }
        now
    }

    async fn report_counts(&self) {
        let Ok(cmd) = self.client.command_connection() else {
            return;
        };
        let (mut registered, mut due) = (0, 0);
        for s in 0..SHARDS {
            let keys = ShardKeys::new(&self.ns, s);
            if let Ok(Value::Array(v)) = scripts().counts.eval(cmd, vec![keys.due()], vec![]).await
                && v.len() == 2
            {
                registered += int(&v[0]).unwrap_or(0);
                due += int(&v[1]).unwrap_or(0);
            }
        }
        super::metrics::counts(&self.ns, registered, due);
    }
}

#[cfg(test)]
mod tests;
