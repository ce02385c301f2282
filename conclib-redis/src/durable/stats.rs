//! [`DurableStats`]: this process's counts of durable steps run, replayed and refused, also
//! recorded through the `metrics` facade once [`conclib_core::metrics::enable`] was called
//! (`conclib_durable_executions_total`, `conclib_durable_steps_total`,
//! `conclib_durable_record_seconds`; the crate docs list them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_core::metrics::is_enabled;

/// What happened, counted.
#[derive(Clone, Copy)]
pub(super) enum Event {
    Begun,
    Resumed,
    Reused,
    Finished,
    StepRun,
    StepReplayed,
    Fenced,
    Suspended,
}

/// Counts `event` (and records it as a metric when metrics are on).
pub(super) fn count(event: Event) {
    let (counter, metric, outcome) = match event {
        Event::Begun => (&STATS.executions_begun, EXECUTIONS, "begun"),
        Event::Resumed => (&STATS.executions_resumed, EXECUTIONS, "resumed"),
        Event::Reused => (&STATS.results_reused, EXECUTIONS, "reused"),
        Event::Finished => (&STATS.executions_finished, EXECUTIONS, "finished"),
        Event::StepRun => (&STATS.steps_run, STEPS, "run"),
        Event::StepReplayed => (&STATS.steps_replayed, STEPS, "replayed"),
        Event::Fenced => (&STATS.fenced, STEPS, "fenced"),
        Event::Suspended => (&STATS.suspended, EXECUTIONS, "suspended"),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if is_enabled() {
        metrics::counter!(metric, "outcome" => outcome).increment(1);
    }
}

/// A record (a step, a version point, a promise taken, a result) written in `took`.
pub(super) fn recorded(took: Duration) {
    if is_enabled() {
        metrics::histogram!("conclib_durable_record_seconds").record(took.as_secs_f64());
    }
}

const EXECUTIONS: &str = "conclib_durable_executions_total";
const STEPS: &str = "conclib_durable_steps_total";

/// The process's counters (every journal adds to them).
pub(super) struct Counters {
    pub(super) executions_begun: AtomicU64,
    pub(super) executions_resumed: AtomicU64,
    pub(super) results_reused: AtomicU64,
    pub(super) executions_finished: AtomicU64,
    pub(super) steps_run: AtomicU64,
    pub(super) steps_replayed: AtomicU64,
    pub(super) fenced: AtomicU64,
    pub(super) suspended: AtomicU64,
}

static STATS: Counters = Counters {
    executions_begun: AtomicU64::new(0),
    executions_resumed: AtomicU64::new(0),
    results_reused: AtomicU64::new(0),
    executions_finished: AtomicU64::new(0),
    steps_run: AtomicU64::new(0),
    steps_replayed: AtomicU64::new(0),
    fenced: AtomicU64::new(0),
    suspended: AtomicU64::new(0),
};

/// What this process's durable executions did since it started ([`stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableStats {
    /// Executions begun with nothing recorded yet (first runs).
    pub executions_begun: u64,
    /// Executions begun with steps recorded by an earlier run (replays: after a crash, a
    /// failover, a fenced-out run or a handler that returned early).
    pub executions_resumed: u64,
    /// Executions begun that had finished already: their recorded result returned, nothing
    /// run (the same idempotency key again).
    pub results_reused: u64,
    /// Executions whose result this process recorded.
    pub executions_finished: u64,
    /// Steps run and recorded.
    pub steps_run: u64,
    /// Steps replayed from the journal (not run).
    pub steps_replayed: u64,
    /// Records refused because a later activation owned the journal.
    pub fenced: u64,
    /// Runs that suspended their execution on a sleep or a promise, to be run again by a
    /// wake reminder.
    pub suspended: u64,
}

/// This process's counts so far.
#[must_use]
pub fn stats() -> DurableStats {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    DurableStats {
        executions_begun: get(&STATS.executions_begun),
        executions_resumed: get(&STATS.executions_resumed),
        results_reused: get(&STATS.results_reused),
        executions_finished: get(&STATS.executions_finished),
        steps_run: get(&STATS.steps_run),
        steps_replayed: get(&STATS.steps_replayed),
        fenced: get(&STATS.fenced),
        suspended: get(&STATS.suspended),
    }
}
