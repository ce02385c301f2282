//! [`DurableStats`]: this process's counts of durable steps run, replayed and refused.

use std::sync::atomic::{AtomicU64, Ordering};

/// The process's counters (every journal adds to them).
pub(super) struct Counters {
    pub(super) executions_begun: AtomicU64,
    pub(super) executions_resumed: AtomicU64,
    pub(super) results_reused: AtomicU64,
    pub(super) executions_finished: AtomicU64,
    pub(super) steps_run: AtomicU64,
    pub(super) steps_replayed: AtomicU64,
    pub(super) fenced: AtomicU64,
}

pub(super) static STATS: Counters = Counters {
    executions_begun: AtomicU64::new(0),
    executions_resumed: AtomicU64::new(0),
    results_reused: AtomicU64::new(0),
    executions_finished: AtomicU64::new(0),
    steps_run: AtomicU64::new(0),
    steps_replayed: AtomicU64::new(0),
    fenced: AtomicU64::new(0),
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
    }
}
