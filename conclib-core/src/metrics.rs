//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade: per actor type and,
//! for named actors, per URN.
//!
//! Recording is off until [`enable`] is called (after installing a recorder; the facade's
//! `prometheus` feature does both). Off, an actor pays one relaxed atomic load per message
//! and per send; on, it keeps its metric handles in its own task, so a message costs three
//! clock reads and an entry in a buffer of the actor's, never a map lookup by name. The
//! recorder gets the buffer's samples and counts in one go when the actor finishes the batch
//! of messages it took from its mailbox (before it waits for more or on a handler's
//! `.await`, after at most 64 messages, and when it stops): an asker that got its answer
//! finds every message handled before its ask's batch recorded — asking one at a time, every
//! earlier message.
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
//! | `conclib_ask_timeouts_total` | counter | actor, urn | asks that timed out, seen by the asker (local refs) |
//! | `conclib_pool_members` | gauge | actor, urn | members in a pool's routing table (`actor`: the members' type, `urn`: the pool's), every second |
//! | `conclib_pool_queued` | gauge | actor, urn | messages queued in the members' mailboxes, every second |
//! | `conclib_pool_in_flight` | gauge | actor, urn | asks sent through the pool and not answered yet, every second |
//! | `conclib_pool_replaced_total` | counter | actor, urn | members replaced (dead or unresponsive) |
//!
//! The Redis proxy and process actors add their own (see their crates' docs).
//!
//! While recording is on, each actor also counts, per message type, what it handled, the
//! errors and its handling times (plain counters in its own task, passed on to its
//! statistics when it finishes its first batch, then a batch a second or more after it
//! last did, or 100 ms or more when that batch leaves its mailbox empty):
//! [`ActorSystem::snapshot`](crate::ActorSystem::snapshot) sums them per actor type and
//! message in [`SystemSnapshot::messages`](crate::SystemSnapshot::messages).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{Counter, Gauge, Histogram, Label};

use crate::cell::CellCore;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns recording on for every actor system of this process, from the next message on.
/// Call it once a recorder is installed; without one the metrics go nowhere.
pub fn enable() {
    // Calibrate the clock (a few milliseconds, once) before any stamp is taken.
    clock();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
#[must_use]
#[inline]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The clock of the send stamps and of the handling times: the CPU's time-stamp counter
/// where it is invariant (x86-64's TSC, AArch64's system counter), calibrated once against
/// the monotonic clock, else the monotonic clock itself (`quanta`).
///
/// Read up to three times per message while recording is on (the send stamp, the start and
/// the end of handling). On this project's 2-core KVM machines a `clock_gettime`
/// (`CLOCK_MONOTONIC`, vDSO) took 28-80 ns and the counter 10-35 ns, depending on the day
/// (the `clock` bin of `benches/`): with three readings, the monotonic clock alone could
/// cost more than a whole message without recording (BENCHMARKS.md, issue #28).
fn clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Now, in the [`clock`]'s own units (its ticks), never 0; differences in nanoseconds with
/// the clock's `delta_as_nanos` (0 when the later reading is not after the earlier: two
/// cores' counters may differ by a few ticks).
#[inline]
pub(crate) fn now() -> u64 {
    // A reading of exactly 0 must not read as unstamped.
    clock().raw().max(1)
}

/// `ns` nanoseconds in `clock`'s ticks (at least 1).
fn ticks(clock: &quanta::Clock, ns: u64) -> u64 {
    // The clock converts ticks to nanoseconds only: scale by its conversion of a long span.
    const SPAN: u64 = 1 << 40;
    let span_ns = clock.delta_as_nanos(0, SPAN).max(1);
    u64::try_from(u128::from(ns) * u128::from(SPAN) / u128::from(span_ns))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A send time for an envelope: [`now`], or 0 when metrics are off (then nothing is
/// measured for that message).
#[inline]
pub(crate) fn stamp() -> u64 {
    if is_enabled() { now() } else { 0 }
}

/// How many distinct URNs get a `urn` label of their own by default (see the module's
/// docs, "Cardinality").
pub const DEFAULT_URN_LABEL_LIMIT: usize = 256;

static URN_LABEL_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_URN_LABEL_LIMIT);

/// The URNs that have a `urn` label of their own: at most the limit, kept for the life of
/// the process (as the recorder keeps their series).
static URN_LABELS: Mutex<Option<HashSet<crate::Urn>>> = Mutex::new(None);

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
/// the same bucket): the same counts, the same sum (to the last bits of an `f64`), one
/// call per bucket used instead of one per message. The facade's
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
fn urn_label(urn: Option<&crate::Urn>) -> String {
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

/// The `actor` and `urn` labels (`""` for an actor without a URN, or past the limit).
fn labels(actor: &'static str, urn: Option<&crate::Urn>) -> [Label; 2] {
    [
        Label::new("actor", actor),
        Label::new("urn", urn_label(urn)),
    ]
}

fn actor_labels(core: &CellCore) -> [Label; 2] {
    labels(core.type_name(), core.urn.as_ref())
}

/// One message type's handles, and what the actor handled of it since it last passed its
/// figures on: to the recorder (`unrecorded`, `unrecorded_errors`) and to its snapshot
/// statistics (`unflushed`).
struct PerMessage {
    name: &'static str,
    handled: Counter,
    in_mailbox: Histogram,
    handling: Histogram,
    errors: Counter,
    unrecorded: u64,
    unrecorded_errors: u64,
    unflushed: crate::snapshot::Tally,
    /// With the recorder's buckets known ([`set_seconds_buckets`]): this batch's samples,
    /// added up per bucket (else they wait in [`ActorMetrics::unrecorded`]).
    binned: Option<Box<Binned>>,
}

impl PerMessage {
    /// A message's samples, added up in their buckets (the recorder's buckets known).
    #[inline]
    fn bin(&mut self, thresholds: &[u64], measured: Measured) {
        if let Some(binned) = &mut self.binned {
            if measured.in_mailbox != UNSTAMPED {
                binned.in_mailbox.add(thresholds, measured.in_mailbox);
            }
            binned.handling.add(thresholds, measured.handling);
        }
    }
}

/// A batch's samples of one message type, added up per bucket of the recorder's.
struct Binned {
    in_mailbox: Bins,
    handling: Bins,
}

/// One histogram's samples of a batch, per bucket.
struct Bins {
    /// The buckets with samples (bit `i`: bucket `i`, the last one `+Inf`).
    used: u64,
    bins: Box<[Bin]>,
}

#[derive(Clone, Copy, Default)]
struct Bin {
    count: u64,
    sum_ns: u64,
}

impl Bins {
    fn new(thresholds: &[u64]) -> Self {
        Bins {
            used: 0,
            bins: vec![Bin::default(); thresholds.len() + 1].into_boxed_slice(),
        }
    }

    /// A sample of `ns` nanoseconds: into its bucket, where the recorder would put its
    /// [`seconds`].
    #[inline]
    fn add(&mut self, thresholds: &[u64], ns: u64) {
        // Most samples are microseconds: found among the first few bounds.
        let at = thresholds
            .iter()
            .position(|&t| ns <= t)
            .unwrap_or(thresholds.len());
        if let Some(bin) = self.bins.get_mut(at) {
            bin.count += 1;
            bin.sum_ns = bin.sum_ns.saturating_add(ns);
            self.used |= 1 << at;
        }
    }

    /// Each bucket used as one `record_many` of its mean, then empty again.
    fn hand_over(&mut self, thresholds: &[u64], histogram: &Histogram) {
        let mut used = std::mem::take(&mut self.used);
        while used != 0 {
            let at = used.trailing_zeros() as usize;
            used &= used - 1;
            if let Some(bin) = self.bins.get_mut(at) {
                let bin = std::mem::take(bin);
                histogram.record_many(bin_mean(thresholds, at, bin), bin.count as usize);
            }
        }
    }
}

/// The mean of a bucket's samples, in seconds: in that bucket (between the seconds of
/// its smallest and largest durations in nanoseconds), where rounding could otherwise
/// take the mean of samples all on a bound across it. Times its count, it is the
/// samples' sum to the last bits of an `f64`.
fn bin_mean(thresholds: &[u64], at: usize, bin: Bin) -> f64 {
    if bin.count == 1 {
        // In its bucket already (most batches of asks hold one message).
        return seconds(bin.sum_ns);
    }
    let mean = bin.sum_ns as f64 / bin.count.max(1) as f64 * 1e-9;
    let low = match at.checked_sub(1).and_then(|below| thresholds.get(below)) {
        Some(&below) => seconds(below + 1),
        None => 0.0,
    };
    let high = thresholds.get(at).map_or(f64::INFINITY, |&t| seconds(t));
    // `max` then `min`, not `clamp`: no panic whatever the bounds.
    mean.max(low).min(high)
}

/// One message's measurements, kept until the actor's batch ends.
#[derive(Clone, Copy)]
struct Measured {
    /// Its index in [`ActorMetrics::messages`].
    at: u32,
    /// From send to the start of handling, in nanoseconds; [`UNSTAMPED`] if it was sent
    /// before recording was on.
    in_mailbox: u64,
    /// Handling time, in nanoseconds.
    handling: u64,
}

const UNSTAMPED: u64 = u64::MAX;

/// At most this many messages' measurements wait for the end of their batch: a batch of a
/// thousand messages still reaches the recorder in steps, and the buffer (24 bytes a
/// message) stays in the actor's cache.
const MAX_UNRECORDED: usize = 64;

/// How long after it last did an actor passes its per-message figures on to its snapshot
/// statistics (one lock), at the end of a batch: with messages still queued, and with
/// none (in nanoseconds).
const FLUSH_BUSY: u64 = 1_000_000_000;
const FLUSH_IDLE: u64 = 100_000_000;

/// An actor's metric handles, created on its first message after [`enable`] and kept in
/// its run loop.
///
/// Per message it only reads the clock twice and appends to a buffer; what goes to the
/// recorder (histogram samples, counter increments, the depth gauge) goes there in one go
/// when the run loop finishes a batch ([`record`](Self::record)): before it waits for mail,
/// before it waits on a handler's `.await`, after [`MAX_UNRECORDED`] messages, and when it
/// stops. So an asker that got its answer finds the metrics of every message the actor
/// handled before its ask's batch recorded (one ask at a time: all of them); handles
/// updated per message cost a tell about three times its time without recording.
pub(crate) struct ActorMetrics {
    /// The clock, held here: no check that it is initialised at each of a message's
    /// readings.
    clock: &'static quanta::Clock,
    labels: [Label; 2],
    depth: Gauge,
    skipped: Counter,
    /// Few message types per actor: a short list searched by the name's address.
    messages: Vec<PerMessage>,
    /// The message being handled: its index in `messages`, send stamp and start ([`now`]).
    current: (u32, u64, u64),
    /// When the last message measured ended ([`now`]): the next one's start when it
    /// follows at once, the batch's end for [`record`](Self::record) (no clock read of its
    /// own).
    ended: u64,
    /// Whether the last call was [`handled`](Self::handled): then the message starting now
    /// follows the one that ended at `ended` in the same batch.
    chained: bool,
    /// Measured, not recorded yet, when the recorder's buckets are not known (at most
    /// [`MAX_UNRECORDED`]).
    unrecorded: Vec<Measured>,
    /// Messages measured since the last [`record`](Self::record), in `unrecorded`, in
    /// `first` or added up in their message type's [`Binned`].
    pending: usize,
    /// A batch's first message, when the recorder's buckets are known: added up in its
    /// bucket only if a second one follows in the batch. A batch of one (an ask at a time)
    /// goes to the recorder as it is, without searching its buckets twice (here, then
    /// in the recorder).
    first: Option<Measured>,
    /// The recorder's bucket bounds in nanoseconds ([`set_seconds_buckets`]), if known.
    thresholds: Option<&'static [u64]>,
    /// When the per-message figures were last passed on to the snapshot statistics.
    flushed: u64,
    /// The depth last given to the gauge (`usize::MAX`: none yet): a batch that leaves it
    /// unchanged (an ask at a time: 0 after each) sets nothing.
    depth_set: usize,
    /// [`FLUSH_BUSY`] and [`FLUSH_IDLE`] in the clock's ticks: the check at each batch's end
    /// compares readings, with no conversion.
    flush_ticks: (u64, u64),
}

impl ActorMetrics {
    pub(crate) fn new(core: &CellCore) -> Box<Self> {
        let labels = actor_labels(core);
        let thresholds = SECONDS_THRESHOLDS.get().map(|t| &t[..]);
        let clock = clock();
        Box::new(ActorMetrics {
            clock,
            depth_set: usize::MAX,
            flush_ticks: (ticks(clock, FLUSH_BUSY), ticks(clock, FLUSH_IDLE)),
            depth: metrics::gauge!("conclib_actor_mailbox_depth", labels.iter()),
            skipped: metrics::counter!("conclib_actor_asks_skipped_total", labels.iter()),
            labels,
            messages: Vec::new(),
            current: (0, 0, 0),
            ended: 0,
            chained: false,
            // Not needed when samples are added up per bucket.
            unrecorded: Vec::with_capacity(if thresholds.is_some() {
                0
            } else {
                MAX_UNRECORDED
            }),
            pending: 0,
            first: None,
            thresholds,
            // Long ago: the first batch is passed on at once (an actor asked once is seen).
            flushed: 0,
        })
    }

    #[inline]
    fn message(&mut self, name: &'static str) -> u32 {
        // Most actors handle one message type at a time, in runs.
        let last = self.current.0 as usize;
        if self
            .messages
            .get(last)
            .is_some_and(|m| std::ptr::eq(m.name, name))
        {
            return last as u32;
        }
        self.other_message(name)
    }

    /// [`message`](Self::message) when it is not the last one's type (out of line).
    #[inline(never)]
    fn other_message(&mut self, name: &'static str) -> u32 {
        let at = match self
            .messages
            .iter()
            .position(|m| std::ptr::eq(m.name, name) || m.name == name)
        {
            Some(at) => at,
            None => {
                let [actor, urn] = self.labels.clone();
                let labels = [actor, urn, Label::new("message", name)];
                self.messages.push(PerMessage {
                    name,
                    handled: metrics::counter!(
                        "conclib_actor_messages_handled_total",
                        labels.iter()
                    ),
                    in_mailbox: metrics::histogram!("conclib_actor_mailbox_seconds", labels.iter()),
                    handling: metrics::histogram!("conclib_actor_handling_seconds", labels.iter()),
                    errors: metrics::counter!("conclib_actor_handler_errors_total", labels.iter()),
                    unrecorded: 0,
                    unrecorded_errors: 0,
                    unflushed: crate::snapshot::Tally::new(name),
                    binned: self.thresholds.map(|t| {
                        Box::new(Binned {
                            in_mailbox: Bins::new(t),
                            handling: Bins::new(t),
                        })
                    }),
                });
                self.messages.len() - 1
            }
        };
        at as u32
    }

    /// A message starts being handled: `stamp` is when it was sent (0: unknown).
    ///
    /// Within a batch, it starts when the message before it ended: one clock reading a
    /// message instead of two, the actor's side of a tell being the bottleneck with
    /// recording on. So a handling time includes the run loop's step from one message to
    /// the next (taking it from the batch, tens of nanoseconds), and the time in the
    /// mailbox leaves it out.
    #[inline]
    pub(crate) fn start(&mut self, name: &'static str, stamp: u64) {
        let at = self.message(name);
        let started = if self.chained {
            self.ended
        } else {
            self.clock.raw().max(1)
        };
        self.chained = false;
        self.current = (at, stamp, started);
    }

    /// The message [`start`](Self::start)ed was handled. Kept until the batch ends
    /// ([`record`](Self::record)); `true` when the buffer is full and the caller must record
    /// now.
    #[inline]
    pub(crate) fn handled(&mut self, failed: bool) -> bool {
        let (at, stamp, started) = self.current;
        let clock = self.clock;
        self.ended = clock.raw().max(1);
        self.chained = true;
        let handling = clock.delta_as_nanos(started, self.ended);
        let m = &mut self.messages[at as usize];
        m.unflushed.count_ns(handling, failed);
        m.unrecorded += 1;
        m.unrecorded_errors += u64::from(failed);
        let measured = Measured {
            at,
            in_mailbox: if stamp == 0 {
                UNSTAMPED
            } else {
                clock.delta_as_nanos(stamp, started)
            },
            handling,
        };
        match self.thresholds {
            Some(thresholds) => {
                if self.pending == 0 {
                    self.first = Some(measured);
                } else {
                    if let Some(first) = self.first.take() {
                        self.messages[first.at as usize].bin(thresholds, first);
                    }
                    self.messages[at as usize].bin(thresholds, measured);
                }
            }
            None => self.unrecorded.push(measured),
        }
        self.pending += 1;
        self.pending >= MAX_UNRECORDED
    }

    /// Whether messages were handled since the last [`record`](Self::record).
    #[inline]
    pub(crate) fn has_unrecorded(&self) -> bool {
        self.pending > 0
    }

    /// The batch ended: gives the recorder what the actor measured since it last did
    /// (`depth`: the user messages queued now), and its snapshot statistics the
    /// per-message figures now and then (no lock per batch).
    pub(crate) fn record(&mut self, depth: usize, core: &CellCore) {
        // A batch of one: only its message type has counts to pass on.
        let mut only = None;
        for measured in self.unrecorded.drain(..).chain(self.first.take()) {
            let m = &self.messages[measured.at as usize];
            if measured.in_mailbox != UNSTAMPED {
                m.in_mailbox.record(seconds(measured.in_mailbox));
            }
            m.handling.record(seconds(measured.handling));
            only = Some(measured.at as usize);
        }
        let pending = std::mem::take(&mut self.pending);
        let batch = match only {
            Some(at) if pending == 1 => &mut self.messages[at..=at],
            _ => &mut self.messages[..],
        };
        for m in batch {
            if m.unrecorded > 0 {
                if let (Some(binned), Some(thresholds)) = (&mut m.binned, self.thresholds) {
                    binned.in_mailbox.hand_over(thresholds, &m.in_mailbox);
                    binned.handling.hand_over(thresholds, &m.handling);
                }
                m.handled.increment(m.unrecorded);
                m.unrecorded = 0;
            }
            if m.unrecorded_errors > 0 {
                m.errors.increment(m.unrecorded_errors);
                m.unrecorded_errors = 0;
            }
        }
        if depth != self.depth_set {
            self.depth_set = depth;
            self.depth.set(depth as f64);
        }
        // The batch is over: the next message starts with a reading of its own.
        self.chained = false;
        let now = self.ended;
        // Ticks (two cores' counters may differ by a few: a reading before `flushed` is 0).
        let since = now.saturating_sub(self.flushed);
        let (busy, idle) = self.flush_ticks;
        if since >= busy || (depth == 0 && since >= idle) {
            self.flushed = now;
            crate::snapshot::add_message_totals(
                core,
                self.messages.iter_mut().map(|m| &mut m.unflushed),
            );
        }
    }

    pub(crate) fn skipped(&self) {
        self.skipped.increment(1);
    }
}

/// Nanoseconds as the seconds the histograms are in.
#[inline]
fn seconds(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// Rare events, counted without keeping a handle: `metric` is one of the actor counters.
pub(crate) fn count(core: &CellCore, metric: &'static str) {
    if is_enabled() {
        metrics::counter!(metric, actor_labels(core).iter()).increment(1);
    }
}

/// A pool replaced a member.
pub(crate) fn count_pool(urn: Option<&crate::Urn>, actor: &'static str) {
    if is_enabled() {
        metrics::counter!("conclib_pool_replaced_total", labels(actor, urn).iter()).increment(1);
    }
}

/// A pool's gauges, sampled.
pub(crate) fn pool_gauges(
    urn: Option<&crate::Urn>,
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
    use std::sync::Arc;
    use std::sync::Mutex;

    /// Every `record_many` call, as `(value, count)`.
    #[derive(Default)]
    struct Calls(Mutex<Vec<(f64, usize)>>);

    impl metrics::HistogramFn for Calls {
        fn record(&self, value: f64) {
            self.record_many(value, 1);
        }
        fn record_many(&self, value: f64, count: usize) {
            self.0.lock().unwrap().push((value, count));
        }
    }

    const BOUNDS: [f64; 4] = [1e-6, 2.5e-5, 0.01, 1.0];

    fn bucket_of(bounds: &[f64], seconds: f64) -> usize {
        bounds
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(bounds.len())
    }

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
    fn a_batch_per_bucket_gives_the_recorder_the_same_counts_and_sum() {
        let thresholds: Vec<u64> = BOUNDS.iter().map(|&b| threshold_ns(b)).collect();
        // Durations on and around every bound, and far past the last.
        let samples: Vec<u64> = [0u64, 1, 999, 1000, 1001, 24_999, 25_000, 25_001]
            .into_iter()
            .chain([
                9_999_999,
                10_000_000,
                10_000_001,
                999_999_999,
                1_000_000_000,
            ])
            .chain([1_000_000_001, 7_000_000_000, 7_000_000_000])
            .collect();
        let mut bins = Bins::new(&thresholds);
        for &ns in &samples {
            bins.add(&thresholds, ns);
        }
        let calls = Arc::new(Calls::default());
        let histogram = Histogram::from_arc(calls.clone());
        bins.hand_over(&thresholds, &histogram);

        // What the recorder would have had from the samples one by one.
        let mut want = vec![0usize; BOUNDS.len() + 1];
        let mut want_sum = 0.0;
        for &ns in &samples {
            want[bucket_of(&BOUNDS, seconds(ns))] += 1;
            want_sum += seconds(ns);
        }
        let mut got = vec![0usize; BOUNDS.len() + 1];
        let mut got_sum = 0.0;
        let calls = calls.0.lock().unwrap();
        for &(value, count) in calls.iter() {
            got[bucket_of(&BOUNDS, value)] += count;
            got_sum += value * count as f64;
        }
        assert_eq!(got, want, "{calls:?}");
        assert!(
            (got_sum - want_sum).abs() <= want_sum * 1e-12,
            "{got_sum} vs {want_sum}"
        );
        // One call per bucket used, and the bins are empty for the next batch.
        assert_eq!(calls.len(), want.iter().filter(|n| **n > 0).count());
        drop(calls);
        bins.hand_over(&thresholds, &histogram);
        assert_eq!(bins.used, 0);
    }

    #[test]
    fn a_mean_stays_in_its_bucket() {
        let thresholds: Vec<u64> = BOUNDS.iter().map(|&b| threshold_ns(b)).collect();
        // Every sample on the bucket's top: the mean, rounded, must not cross it.
        for (at, &t) in thresholds.iter().enumerate() {
            let bin = Bin {
                count: 3,
                sum_ns: 3 * t,
            };
            assert_eq!(bucket_of(&BOUNDS, bin_mean(&thresholds, at, bin)), at);
        }
        // A bin claiming an impossible sum is still put in its bucket, without a panic.
        let bin = Bin {
            count: 0,
            sum_ns: u64::MAX,
        };
        assert_eq!(bucket_of(&BOUNDS, bin_mean(&thresholds, 1, bin)), 1);
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
