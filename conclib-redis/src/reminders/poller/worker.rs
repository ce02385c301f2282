//! The running part of a [`ReminderPoller`](crate::reminders::ReminderPoller) ([`Poller`]):
//! its loop claiming due ticks shard by shard, each tick's delivery (or its claim given
//! back), the batched acknowledgements of the ticks handled, the claims' renewal and the
//! reports for the live view, each in a task of its own. Apart from the handle, which only
//! starts, counts and stops these tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::AskError;
use fred::prelude::*;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use super::options::ReminderPollerOptions;
use crate::client::ProxyClient;
use crate::conn::{as_bytes, owned};
use crate::conn::{int, shared_text, text};
use crate::reminders::acker::{Handled, MAX_ACK_BATCH, ack_shard};
use crate::reminders::keys::{SHARDS, ShardKeys, shard_of};
use crate::reminders::metrics;
use crate::reminders::renewal::HeldClaims;
use crate::reminders::report::{LAG_BUCKETS, LagBuckets, PollerReport, quantile};
use crate::reminders::store::scripts;
use crate::reminders::tick::ReminderTick;

/// What a poller counted: its stats ([`ReminderPollerStats`](crate::reminders::ReminderPollerStats))
/// and its reports.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) claimed: AtomicU64,
    pub(super) fired: AtomicU64,
    pub(super) coalesced: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) unserved: AtomicU64,
    /// Lags of the ticks fired, for the reports the live view reads.
    lags: LagBuckets,
}

/// A started poller, shared by its tasks and its handle.
pub(super) struct Poller {
    pub(super) client: ProxyClient,
    pub(super) options: ReminderPollerOptions,
    pub(super) ns: String,
    pub(super) token: String,
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) counters: Counters,
    pub(super) stop: Notify,
    /// Ticks handled, to the task that acknowledges them in batches.
    pub(super) acks: mpsc::UnboundedSender<Handled>,
    /// The claims held (delivering or waiting for their acknowledgement), renewed.
    pub(super) held: HeldClaims,
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
    pub(super) async fn renew_claims(self: Arc<Self>) {
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

    pub(super) async fn run(self: Arc<Self>) {
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
            metrics::unserved(&self.ns);
            tracing::warn!(urn = %c.urn, name = %c.tick.name(), "reminders: no system serves the URN of a due reminder; retried later");
        } else {
            tracing::debug!(urn = %c.urn, name = %c.tick.name(), error = ?answer.err(), "reminders: delivery failed; retried later");
        }
        self.counters.retried.fetch_add(1, Ordering::Relaxed);
        metrics::retried(&self.ns);
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
    pub(super) async fn acknowledge(
        self: Arc<Self>,
        mut handled: mpsc::UnboundedReceiver<Handled>,
    ) {
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
                metrics::fired(&self.ns, tick.missed, tick.lag);
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
            && let Err(e) = crate::reminders::report::publish(
                cmd,
                &scripts().report,
                &self.ns,
                &self.token,
                &report,
            )
            .await
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
        metrics::counts(&self.ns, registered, due);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Poller;
    use crate::future_size::{future_size, never};

    /// A delivery's future holds the ask and not the rare give-back's script call (fred's
    /// command future is about 5 KB): each tick's delivery is a task of its own, and spawning
    /// it copies its future whole (6,208 bytes with the give-back inline, 592 without, in a debug build).
    #[test]
    fn a_deliverys_future_leaves_its_give_back_boxed() {
        let deliver = future_size(|| never::<&Arc<Poller>>().deliver(never(), never()));
        assert!(deliver <= 1024, "a delivery's future is {deliver} bytes");
    }
}
