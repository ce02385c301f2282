//! Where the roll's slow asks start (`--phases`): the driver notes each step of a
//! replacement (the successor started, ready, the member's SIGTERM, its `DRAINED` line, its
//! exit), and each answered ask of the roll counts in the step it started in, so that the
//! asks that make the roll's p99 are found by what was under way when they were sent; each
//! step's slow asks are put in the classes of `waits.rs`, beside the callers' stalls in it.

use std::fmt::Write as _;

use super::waits::{self, Ask, Classes, Moves};

/// The steps of the roll, each with when it began (µs since the epoch).
#[derive(Debug, Default)]
pub(super) struct Phases {
    marks: Vec<(u64, String)>,
}

impl Phases {
    /// A step begins now.
    pub(super) fn mark(&mut self, label: impl Into<String>) {
        self.marks.push((super::micros_now(), label.into()));
    }

    /// Per step, in order: its length, the asks started in it, their p99 and longest, how
    /// many took over twice `steady_p99_ms` and their classes, and the callers' stalls in
    /// it (ms per caller, longest). The last step ends at `end`.
    pub(super) fn report(
        &self,
        asks: &[Ask],
        steady_p99_ms: f64,
        moves: &Moves,
        stalls: &[Vec<(u64, u64)>],
        end: u64,
    ) -> String {
        let mut by_step: Vec<Vec<Ask>> = vec![Vec::new(); self.marks.len()];
        for a in asks {
            let step = self.marks.partition_point(|(at, _)| *at <= a.start);
            if let Some(step) = step.checked_sub(1) {
                by_step[step].push(*a);
            }
        }
        let slow_us = (steady_p99_ms * 2000.0) as u64;
        let mut out = String::new();
        for (i, ((at, label), step)) in self.marks.iter().zip(by_step).enumerate() {
            let until = self.marks.get(i + 1).map_or(end, |(next, _)| *next);
            let len_ms = until.saturating_sub(*at) / 1000;
            let mut took: Vec<u64> = step.iter().map(|a| a.end - a.start).collect();
            took.sort_unstable();
            let p99 = super::p99_ms(took.clone());
            let max = took.last().map_or(0.0, |t| *t as f64 / 1000.0);
            let classes = Classes::of(&step, slow_us, moves, stalls);
            let (stalled, longest) = waits::stall_summary(stalls, *at, until);
            let _ = writeln!(
                out,
                "phase {label:<22} len_ms={len_ms:<5} asks={:<6} p99_ms={p99:<6.1} max_ms={max:<6.1} over_2x_steady: {} callers_stalled_ms={stalled:.1} longest_stall_ms={longest:.1}",
                took.len(),
                classes.line()
            );
        }
        out
    }
}
