//! The topics' metrics, through the `metrics` facade, recorded once
//! [`conclib_core::metrics::enable`] was called. Labelled by delivery mode only: topic names
//! can be as many as jobs.

use conclib_core::metrics::is_enabled;

use super::topic::DeliveryMode;

fn mode(delivery: DeliveryMode) -> &'static str {
    match delivery {
        DeliveryMode::Live => "live",
        DeliveryMode::Durable => "durable",
    }
}

pub(crate) fn published(delivery: DeliveryMode, ok: bool) {
    if is_enabled() {
        let outcome = if ok { "ok" } else { "failed" };
        metrics::counter!("conclib_topic_published_total", "delivery" => mode(delivery), "outcome" => outcome)
            .increment(1);
    }
}

pub(crate) fn received(delivery: DeliveryMode, n: u64) {
    if is_enabled() {
        metrics::counter!("conclib_topic_received_total", "delivery" => mode(delivery))
            .increment(n);
    }
}

pub(crate) fn dropped(n: u64) {
    if is_enabled() {
        metrics::counter!("conclib_topic_dropped_total", "delivery" => "live").increment(n);
    }
}

pub(crate) fn redelivered(n: u64) {
    if is_enabled() {
        metrics::counter!("conclib_topic_redelivered_total", "delivery" => "durable").increment(n);
    }
}

/// Moves the durable lag and pending gauges (`conclib_topic_lag`,
/// `conclib_topic_pending`) from what this sampler reported last to `now`: the gauges are
/// the sums over the process's samplers.
pub(crate) fn lag(reported: &mut (u64, u64), now: (u64, u64)) {
    if !is_enabled() {
        return;
    }
    let lag = metrics::gauge!("conclib_topic_lag", "delivery" => "durable");
    lag.increment(now.0 as f64 - reported.0 as f64);
    let pending = metrics::gauge!("conclib_topic_pending", "delivery" => "durable");
    pending.increment(now.1 as f64 - reported.1 as f64);
    *reported = now;
}
