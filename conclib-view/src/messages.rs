//! The per-message figures of a system: calls per second, error rate and handling-time
//! percentiles, per actor type and message type, between two snapshots.

use serde::Serialize;

/// What one actor type handled of one message type: over the interval between the last two
/// snapshots read (`interval_ms`), or since the actors started when there is no earlier one
/// (`interval_ms` null).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageView {
    actor_type: String,
    message: String,
    interval_ms: Option<u64>,
    /// Messages handled in the interval (or since start), and per second.
    handled: u64,
    rate: Option<f64>,
    /// Of those, handlers that returned an error, in percent.
    error_pct: Option<f64>,
    /// Handling time percentiles: upper bounds of the power-of-two buckets they fall in.
    p50_us: Option<u64>,
    p95_us: Option<u64>,
    p99_us: Option<u64>,
}

/// The per-message figures of `now` since `before` (`ms` apart), or since start.
pub(crate) fn message_views(
    now: &[conclib_core::MessageTotals],
    before: Option<(&[conclib_core::MessageTotals], u64)>,
) -> Vec<MessageView> {
    now.iter()
        .map(|m| {
            let earlier = before.and_then(|(before, ms)| {
                before
                    .iter()
                    .find(|b| b.actor_type == m.actor_type && b.message == m.message)
                    .map(|b| (b, ms))
            });
            let (handled, errors, buckets, interval_ms) = match (before, earlier) {
                (Some((_, ms)), Some((b, _))) => (
                    m.handled.saturating_sub(b.handled),
                    m.errors.saturating_sub(b.errors),
                    m.handling_us
                        .iter()
                        .zip(b.handling_us.iter().chain(std::iter::repeat(&0)))
                        .map(|(n, b)| n.saturating_sub(*b))
                        .collect::<Vec<_>>(),
                    Some(ms),
                ),
                // New since the previous snapshot: all of it is in the interval.
                (Some((_, ms)), None) => (m.handled, m.errors, m.handling_us.clone(), Some(ms)),
                (None, _) => (m.handled, m.errors, m.handling_us.clone(), None),
            };
            let percentile = |p: f64| {
                let total: u64 = buckets.iter().sum();
                if total == 0 {
                    return None;
                }
                let wanted = ((total as f64) * p).ceil().max(1.0) as u64;
                let mut seen = 0;
                buckets
                    .iter()
                    .position(|n| {
                        seen += n;
                        seen >= wanted
                    })
                    .map(|i| 1u64 << i)
            };
            MessageView {
                actor_type: m.actor_type.to_string(),
                message: m.message.to_string(),
                interval_ms,
                handled,
                rate: interval_ms
                    .filter(|ms| *ms > 0)
                    .map(|ms| handled as f64 * 1000.0 / ms as f64),
                error_pct: (handled > 0).then(|| errors as f64 * 100.0 / handled as f64),
                p50_us: percentile(0.5),
                p95_us: percentile(0.95),
                p99_us: percentile(0.99),
            }
        })
        .collect()
}
