//! What each [`ReminderPoller`](crate::reminders::ReminderPoller) publishes of itself for the live view:
//! its counts, its firing rate and its lag percentiles over its last interval, as a field of
//! one hash per namespace (`{ns}:rem:pollers`, field: the poller's token, value: Redis's
//! clock at the report, a space, then the JSON of a [`PollerReport`]; written by the
//! `REPORT` script).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::conn::owned;
use crate::script::Script;

/// How long a poller's report stays in the hash after its last one: a poller gone longer
/// is deleted by the next report of any poller.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The longest report a reader parses (a report is about 300 bytes; a longer value was not
/// written by a poller).
pub(crate) const MAX_REPORT_LEN: usize = 4096;

/// One poller as it reported itself, for the live view
/// ([`RemindersOverview::pollers`](crate::reminders::RemindersOverview::pollers)).
///
/// ```
/// let report: conclib_redis::reminders::PollerReport = serde_json::from_str(
///     r#"{"system":"s1","pid":7,"interval_ms":2000,"claimed":3,"fired":3,"coalesced":0,
///         "retried":0,"stale":0,"in_flight":0,"fired_per_s":1.5,"lag_p50_ms":4,"lag_p99_ms":8}"#,
/// )
/// .unwrap();
/// assert_eq!(report.lag_p99_ms, Some(8));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PollerReport {
    /// The system id of the poller's client ([`ProxyConfig::system_id`](crate::ProxyConfig::system_id)),
    /// empty when it has none.
    pub system: String,
    /// The poller's process.
    pub pid: u32,
    /// How often it reports, in ms (its client's
    /// [`snapshot_interval`](crate::ProxyConfig::snapshot_interval)).
    pub interval_ms: u64,
    /// Ticks claimed since it started ([`ReminderPollerStats`](crate::reminders::ReminderPollerStats)).
    pub claimed: u64,
    /// Ticks delivered and acknowledged since it started.
    pub fired: u64,
    /// Missed ticks coalesced into those deliveries.
    pub coalesced: u64,
    /// Deliveries that failed and were given back.
    pub retried: u64,
    /// Deliveries handled whose claim had lapsed or was replaced.
    pub stale: u64,
    /// Deliveries to a URN no system serves (answered `UnknownUrn`, retried later): a
    /// reminder left on a URN nobody serves.
    #[serde(default)]
    pub unserved: u64,
    /// Deliveries in flight at the report.
    pub in_flight: u64,
    /// Ticks fired per second over the last interval.
    pub fired_per_s: f64,
    /// The median lag from due to handled over the last interval, in ms, as the upper bound
    /// of the power-of-two bucket it falls in; `None` when nothing fired in it.
    pub lag_p50_ms: Option<u64>,
    /// The 99th percentile of that lag, the same way.
    pub lag_p99_ms: Option<u64>,
    /// How long ago it reported, in ms (Redis's clock), as the reader computed it.
    #[serde(default)]
    pub age_ms: u64,
}

/// Lags from due to handled, counted in power-of-two buckets of ms: bucket `i` counts lags
/// of at most `2^i` ms (the last one, any longer lag).
pub(crate) struct LagBuckets([AtomicU64; LAG_BUCKETS]);

pub(crate) const LAG_BUCKETS: usize = 24;

impl Default for LagBuckets {
    fn default() -> Self {
        LagBuckets(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl LagBuckets {
    pub(crate) fn record(&self, lag: Duration) {
        let ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        let bucket = if ms <= 1 {
            0
        } else {
            (64 - (ms - 1).leading_zeros()) as usize
        };
        self.0[bucket.min(LAG_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> [u64; LAG_BUCKETS] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// The `p` quantile (0..=1) of the lags counted between `before` and `now`, as the upper
/// bound in ms of its bucket; `None` with none counted.
pub(crate) fn quantile(
    before: &[u64; LAG_BUCKETS],
    now: &[u64; LAG_BUCKETS],
    p: f64,
) -> Option<u64> {
    let deltas: Vec<u64> = now
        .iter()
        .zip(before)
        .map(|(n, b)| n.saturating_sub(*b))
        .collect();
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * p).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, d) in deltas.iter().enumerate() {
        seen += d;
        if seen >= rank {
            return Some(1u64 << i);
        }
    }
    Some(1u64 << (LAG_BUCKETS - 1))
}

/// The pollers' hash of namespace `ns`.
pub(crate) fn pollers_key(ns: &str) -> String {
    format!("{ns}:rem:pollers")
}

/// Publishes `report` as poller `token`'s.
pub(crate) async fn publish(
    cmd: &Client,
    script: &Script,
    ns: &str,
    token: &str,
    report: &PollerReport,
) -> Result<(), String> {
    let json = serde_json::to_string(report).map_err(|e| e.to_string())?;
    script
        .eval(
            cmd,
            vec![pollers_key(ns)],
            vec![
                owned(token),
                owned(json),
                owned(FORGET_AFTER.as_millis().to_string()),
            ],
        )
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lags_fall_in_power_of_two_buckets() {
        let lags = LagBuckets::default();
        for ms in [0, 1, 2, 3, 4, 5, 100, 100, 100, 100] {
            lags.record(Duration::from_millis(ms));
        }
        lags.record(Duration::from_secs(1 << 40));
        let counts = lags.counts();
        assert_eq!(&counts[..4], &[2, 1, 2, 1]);
        assert_eq!(counts[7], 4, "100 ms: at most 128");
        assert_eq!(counts[LAG_BUCKETS - 1], 1);
        let zero = [0; LAG_BUCKETS];
        assert_eq!(quantile(&zero, &counts, 0.5), Some(8));
        assert_eq!(quantile(&zero, &counts, 0.99), Some(1 << (LAG_BUCKETS - 1)));
        assert_eq!(quantile(&counts, &counts, 0.5), None);
    }
}
