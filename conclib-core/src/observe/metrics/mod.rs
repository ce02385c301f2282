//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade: per actor type and,
//! for named actors, per URN.
//!
//! Recording is off until [`enable`] is called (after installing a recorder; the facade's
//! `prometheus` feature does both). Off, an actor pays one relaxed atomic load per message
//! and per send; on, it keeps its metric handles in its own task, so a message costs at most
//! three clock reads (two when it follows another in a batch) and a few additions in the
//! actor's own memory, never a map lookup by name. The
//! recorder gets the buffer's samples and counts in one go when the actor finishes the batch
//! of messages it took from its mailbox (before it waits for more or on a handler's
//! `.await`, after at most 64 messages, and when it stops): an asker that got its answer
//! finds every message handled before its ask's batch recorded — asking one at a time, every
//! earlier message.
//! An actor's handles are asked of the recorder once per label set and recorder in the
//! process, then kept (the recorder keeps the series as long): an actor's first message,
//! and its first of each message type, clone them instead of registering them again.
//! When the recorder's histograms keep only fixed buckets and it says which
//! ([`set_seconds_buckets`], as the facade's Prometheus recorder does), the actor adds up a
//! batch's durations per bucket itself and hands each bucket over as one `record_many`.
//!
//! ```
//! // Install your recorder (metrics-exporter-prometheus, metrics-util, ...), then:
//! conclib_core::metrics::enable();
//! assert!(conclib_core::metrics::is_enabled());
//! ```
//!
//! # Names and labels
//! Every actor metric has the labels `actor` (the Rust type name) and `urn` (the URN, or
//! `""` for an actor without one: unnamed actors of one type aggregate); the per-message
//! ones add `message` (the message's wire name).
//!
//! # Cardinality
//! A recorder keeps every label set it was ever given: the `metrics` facade cannot remove
//! a series, so a series per URN would grow with every short-lived named actor a service
//! ever ran (`session:<id>`, `job:<uuid>`), for as long as the process lives — in the
//! exporter's memory and in Prometheus. So the first [`urn_label_limit`] distinct URNs
//! (default [`DEFAULT_URN_LABEL_LIMIT`], set with [`set_urn_label_limit`]) get a `urn`
//! label of their own; later URNs are labelled `""`, aggregated with the unnamed actors
//! of their type (a one-time warning says so). An actor that comes back under a URN
//! already labelled (a restarted singleton) keeps its series. Spawn the long-lived named
//! actors first, or raise the limit; `0` labels by actor type only.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `conclib_actor_mailbox_depth` | gauge | actor, urn | user messages queued, after each batch of messages handled |
//! | `conclib_actor_messages_handled_total` | counter | actor, urn, message | messages handled (asks skipped excluded) |
//! | `conclib_actor_mailbox_seconds` | histogram | actor, urn, message | time from send to the start of handling |
//! | `conclib_actor_handling_seconds` | histogram | actor, urn, message | time in the handler |
//! | `conclib_actor_handler_errors_total` | counter | actor, urn, message | handlers that returned an error |
//! | `conclib_actor_panics_total` | counter | actor, urn | handlers and hooks that panicked |
//! | `conclib_actor_restarts_total` | counter | actor, urn | restarts after a panic or a sibling's restart |
//! | `conclib_actor_asks_skipped_total` | counter | actor, urn | asks not started: their asker had given up |
//! | `conclib_actor_handlers_cancelled_total` | counter | actor, urn | handlers dropped at an `.await` because their asker gave up (actors with [`Actor::CANCEL_ON_TIMEOUT`](crate::Actor::CANCEL_ON_TIMEOUT)) |
//! | `conclib_ask_timeouts_total` | counter | actor, urn | asks that timed out, seen by the asker (local refs) |
//! | `conclib_pool_members` | gauge | actor, urn | members in a pool's routing table (`actor`: the members' type, `urn`: the pool's), every second |
//! | `conclib_pool_queued` | gauge | actor, urn | messages queued in the members' mailboxes, every second |
//! | `conclib_pool_in_flight` | gauge | actor, urn | asks sent through the pool and not answered yet, every second |
//! | `conclib_pool_replaced_total` | counter | actor, urn | members replaced (dead or unresponsive) |
//!
//! The Redis proxy and process actors add their own (see their crates' docs).
//!
//! While recording is on, each actor also counts, per message type, what it handled, the
//! errors and its handling times (counters that its task writes as each handler is done,
//! in its statistics, where snapshots read them: no lock, nothing held back):
//! [`ActorSystem::snapshot`](crate::ActorSystem::snapshot) sums them per actor type and
//! message in [`SystemSnapshot::messages`](crate::SystemSnapshot::messages).

pub(crate) mod actor;
mod clock;
mod series;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::Label;

pub(crate) use clock::stamp;

/// Turns recording on for every actor system of this process, from the next message on.
/// Call it once a recorder is installed; without one the metrics go nowhere.
pub fn enable() {
    // Calibrates the clock (a few milliseconds, once) before any stamp is taken.
    clock::turn_on();
}

/// Whether [`enable`] was called.
#[must_use]
#[inline]
pub fn is_enabled() -> bool {
    clock::is_on()
}

/// How many distinct URNs get a `urn` label of their own by default (see the module's
/// docs, "Cardinality").
pub const DEFAULT_URN_LABEL_LIMIT: usize = 256;

static URN_LABEL_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_URN_LABEL_LIMIT);

/// The URNs that have a `urn` label of their own: at most the limit, kept for the life of
/// the process (as the recorder keeps their series).
static URN_LABELS: Mutex<Option<HashSet<crate::urn::Urn>>> = Mutex::new(None);

static URN_LABELS_FULL: AtomicBool = AtomicBool::new(false);

/// Sets how many distinct URNs get a `urn` label of their own, for every actor system of
/// this process (see the module's docs, "Cardinality"). URNs labelled already keep their
/// label; lowering the limit only stops new ones. `0`: every metric is labelled by actor
/// type only (`urn=""`); `usize::MAX`: one series per URN ever seen (unbounded).
pub fn set_urn_label_limit(limit: usize) {
    URN_LABEL_LIMIT.store(limit, Ordering::Relaxed);
}

/// How many distinct URNs may get a `urn` label of their own ([`set_urn_label_limit`]).
#[must_use]
pub fn urn_label_limit() -> usize {
    URN_LABEL_LIMIT.load(Ordering::Relaxed)
}

/// How many distinct URNs have a `urn` label of their own so far (at most
/// [`urn_label_limit`]): what a long-running service watches to see that its metrics'
/// cardinality stays bounded.
#[must_use]
pub fn urn_labels_in_use() -> usize {
    URN_LABELS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, HashSet::len)
}

/// The recorder's bucket bounds for conclib's histograms of durations, in nanoseconds: for
/// each bound, the largest duration recorded at or below it (see [`set_seconds_buckets`]).
static SECONDS_THRESHOLDS: OnceLock<Box<[u64]>> = OnceLock::new();

/// At most this many bounds in [`set_seconds_buckets`] (a batch marks the buckets it used
/// in one `u64`, the `+Inf` one included).
pub const MAX_SECONDS_BUCKETS: usize = 63;

/// Why [`set_seconds_buckets`] refused its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BucketsError {
    /// No bounds, or more than [`MAX_SECONDS_BUCKETS`].
    #[error("between 1 and {MAX_SECONDS_BUCKETS} bucket bounds are needed, not {0}")]
    Count(usize),
    /// A bound is not a positive, finite number of seconds, or not above the one before.
    #[error("bucket bounds must be positive, finite and ascending: bound {0} is not")]
    NotAscending(usize),
    /// Bounds were set already (once per process, before the first actor records).
    #[error("the bucket bounds were set already")]
    AlreadySet,
}

/// Tells conclib that the installed recorder's histograms `conclib_actor_mailbox_seconds`
/// and `conclib_actor_handling_seconds` have buckets with these upper bounds (`le`, in
/// seconds, ascending) and keep nothing of a sample but its bucket's count and the sum —
/// as a Prometheus histogram with fixed buckets does. Then an actor adds up the samples of
/// a batch per bucket itself and hands each bucket to the recorder as one
/// [`record_many`](metrics::Histogram::record_many) of the bucket's mean (which falls in
/// the same bucket): the same counts, and the same sum to within a nanosecond a sample
/// (the actor adds durations up in its clock's ticks and converts the total, where the
/// recorder would get each duration rounded down to a nanosecond), one call per bucket used
/// instead of one per message. The facade's
/// `conclib_view::prometheus::install` calls it.
///
/// Do not call it for a recorder that keeps the samples themselves (a summary, a
/// debugging recorder): it would see means. Set once per process, before [`enable`].
///
/// ```
/// use conclib_core::metrics::{set_seconds_buckets, BucketsError};
///
/// assert_eq!(set_seconds_buckets(&[0.5, 0.1]), Err(BucketsError::NotAscending(1)));
/// set_seconds_buckets(&[1e-6, 1e-3, 1.0]).unwrap();
/// assert_eq!(set_seconds_buckets(&[1.0]), Err(BucketsError::AlreadySet));
/// ```
///
/// # Errors
/// [`BucketsError`]: no bounds or too many, bounds not positive, finite and ascending, or
/// bounds set already.
pub fn set_seconds_buckets(bounds: &[f64]) -> Result<(), BucketsError> {
    if bounds.is_empty() || bounds.len() > MAX_SECONDS_BUCKETS {
        return Err(BucketsError::Count(bounds.len()));
    }
    let mut before = 0.0;
    for (at, &bound) in bounds.iter().enumerate() {
        if !(bound.is_finite() && bound > before) {
            return Err(BucketsError::NotAscending(at));
        }
        before = bound;
    }
    let thresholds = bounds.iter().map(|&b| threshold_ns(b)).collect();
    SECONDS_THRESHOLDS
        .set(thresholds)
        .map_err(|_| BucketsError::AlreadySet)
}

/// The largest number of nanoseconds whose [`seconds`] are at or below `bound` (a positive
/// number of seconds): a duration in nanoseconds falls in the bucket of the first bound
/// whose threshold it does not exceed, exactly as its `seconds` would in the recorder
/// (`seconds` never decreases as the nanoseconds grow).
fn threshold_ns(bound: f64) -> u64 {
    // Past 2^62 ns (146 years) every measured duration is below.
    if bound * 1e9 >= 4.6e18 {
        return 1 << 62;
    }
    // Within a nanosecond or two of the answer: `bound * 1e9` is off by rounding only.
    let mut t = (bound * 1e9) as u64;
    while t > 0 && seconds(t) > bound {
        t -= 1;
    }
    while seconds(t + 1) <= bound {
        t += 1;
    }
    t
}

/// The `urn` label's value for `urn`: the URN while it is one of the first
/// [`urn_label_limit`] distinct ones, else `""`. Called when an actor's handles are made
/// and on rare events, never per message.
fn urn_label(urn: Option<&crate::urn::Urn>) -> String {
    let Some(urn) = urn else {
        return String::new();
    };
    let mut labelled = URN_LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    let labelled = labelled.get_or_insert_with(HashSet::new);
    if labelled.contains(urn) {
        return urn.to_string();
    }
    if labelled.len() < urn_label_limit() {
        labelled.insert(urn.clone());
        return urn.to_string();
    }
    if !URN_LABELS_FULL.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            limit = urn_label_limit(),
            %urn,
            "conclib metrics: the URN label limit is reached; actors with new URNs are \
             labelled urn=\"\" (conclib_core::metrics::set_urn_label_limit raises it)"
        );
    }
    String::new()
}

/// What the metrics read of an actor: its type and URN (its series' labels) and its
/// message tallies. The actor's cell is one; the metrics name no cell (they sit below it).
pub(crate) trait MeasuredActor {
    /// The actor's type name.
    fn type_name(&self) -> &'static str;
    /// The actor's URN, if it has one.
    fn urn(&self) -> Option<&crate::urn::Urn>;
    /// The actor's tally of message type `name` (the snapshots' figures), added if new.
    fn tally_of(
        &self,
        name: &'static str,
    ) -> std::sync::Arc<crate::observe::snapshot::tallies::LiveTally>;
}

/// The `actor` and `urn` labels (`""` for an actor without a URN, or past the limit).
fn labels(actor: &'static str, urn: Option<&crate::urn::Urn>) -> [Label; 2] {
    [
        Label::new("actor", actor),
        Label::new("urn", urn_label(urn)),
    ]
}

fn actor_labels(core: &impl MeasuredActor) -> [Label; 2] {
    labels(core.type_name(), core.urn())
}

/// Nanoseconds as the seconds the histograms are in.
#[inline]
fn seconds(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// Rare events, counted without keeping a handle: `metric` is one of the actor counters.
pub(crate) fn count(core: &impl MeasuredActor, metric: &'static str) {
    if is_enabled() {
        metrics::counter!(metric, actor_labels(core).iter()).increment(1);
    }
}

/// A pool's counter (a member replaced, an ask to it that timed out), labelled as its other
/// metrics are: its members' type and its URN.
pub(crate) fn count_pool(metric: &'static str, urn: Option<&crate::urn::Urn>, actor: &'static str) {
    if is_enabled() {
        metrics::counter!(metric, labels(actor, urn).iter()).increment(1);
    }
}

/// A pool's gauges, sampled.
pub(crate) fn pool_gauges(
    urn: Option<&crate::urn::Urn>,
    actor: &'static str,
    members: usize,
    queued: usize,
    in_flight: usize,
) {
    let labels = labels(actor, urn);
    metrics::gauge!("conclib_pool_members", labels.iter()).set(members as f64);
    metrics::gauge!("conclib_pool_queued", labels.iter()).set(queued as f64);
    metrics::gauge!("conclib_pool_in_flight", labels.iter()).set(in_flight as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 4] = [1e-6, 2.5e-5, 0.01, 1.0];

    #[test]
    fn thresholds_put_nanoseconds_where_the_recorder_puts_their_seconds() {
        for bound in BOUNDS.iter().chain(&[1e-9, 3e-9, 0.3, 25.0, 1e12]) {
            let t = threshold_ns(*bound);
            assert!(seconds(t) <= *bound, "{bound}: {t}");
            if t < 1 << 62 {
                assert!(seconds(t + 1) > *bound, "{bound}: {t}");
            }
        }
        // 1000 ns is a little over 1e-6 s once multiplied out: the recorder puts it
        // above the first bound, and so does the threshold.
        assert_eq!(threshold_ns(1e-6), 999);
    }

    #[test]
    fn bad_bounds_are_refused() {
        assert_eq!(set_seconds_buckets(&[]), Err(BucketsError::Count(0)));
        assert_eq!(
            set_seconds_buckets(&[1.0; 64]),
            Err(BucketsError::Count(64))
        );
        assert_eq!(
            set_seconds_buckets(&[0.0, 1.0]),
            Err(BucketsError::NotAscending(0))
        );
        assert_eq!(
            set_seconds_buckets(&[1.0, f64::NAN]),
            Err(BucketsError::NotAscending(1))
        );
        assert_eq!(
            set_seconds_buckets(&[1.0, f64::INFINITY]),
            Err(BucketsError::NotAscending(1))
        );
    }
}
