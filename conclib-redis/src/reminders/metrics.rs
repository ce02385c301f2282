//! The reminders' metrics, through the `metrics` facade; recorded once
//! [`conclib_core::metrics::enable`] was called:
//! - `conclib_reminders_registrations_total{namespace}`: registrations through this process;
//! - `conclib_reminders_fired_total{namespace}`: ticks delivered and acknowledged;
//! - `conclib_reminders_coalesced_ticks_total{namespace}`: missed ticks folded into a
//!   delivery (`ReminderTick::missed`);
//! - `conclib_reminders_retried_total{namespace}`: deliveries that failed and were given
//!   back to be retried;
//! - `conclib_reminders_unserved_total{namespace}`: deliveries to a URN no system serves
//!   (answered `UnknownUrn`; given back and retried, so a reminder left on a URN nobody
//!   serves shows here);
//! - `conclib_reminders_lag_seconds{namespace}`: histogram, from a tick's due time (the last
//!   tick a delivery stands for) to its handling;
//! - `conclib_reminders_registered{namespace}`, `conclib_reminders_due{namespace}`: gauges
//!   sampled by each poller (every second): registered reminders, and those due now.

use std::time::Duration;

use conclib_core::metrics::is_enabled;

pub(crate) fn registered(ns: &str) {
    if is_enabled() {
        metrics::counter!("conclib_reminders_registrations_total", "namespace" => ns.to_owned())
            .increment(1);
    }
}

pub(crate) fn fired(ns: &str, coalesced: u64, lag: Duration) {
    if is_enabled() {
        let labels = [("namespace", ns.to_owned())];
        metrics::counter!("conclib_reminders_fired_total", &labels).increment(1);
        if coalesced > 0 {
            metrics::counter!("conclib_reminders_coalesced_ticks_total", &labels)
                .increment(coalesced);
        }
        metrics::histogram!("conclib_reminders_lag_seconds", &labels).record(lag.as_secs_f64());
    }
}

pub(crate) fn retried(ns: &str) {
    if is_enabled() {
        metrics::counter!("conclib_reminders_retried_total", "namespace" => ns.to_owned())
            .increment(1);
    }
}

pub(crate) fn counts(ns: &str, registered: u64, due: u64) {
    if is_enabled() {
        let labels = [("namespace", ns.to_owned())];
        metrics::gauge!("conclib_reminders_registered", &labels).set(registered as f64);
        metrics::gauge!("conclib_reminders_due", &labels).set(due as f64);
    }
}

pub(crate) fn unserved(ns: &str) {
    if is_enabled() {
        metrics::counter!("conclib_reminders_unserved_total", "namespace" => ns.to_owned())
            .increment(1);
    }
}
