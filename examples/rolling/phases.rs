//! Where the roll's slow asks start (`--phases`): the driver notes each step of a
//! replacement (the successor started, ready, the member's SIGTERM, its `DRAINED` line, its
//! exit), and each answered ask of the roll counts in the step it started in, so that the
//! asks that make the roll's p99 are found by what was under way when they were sent.

use std::fmt::Write as _;

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

    /// Per step, in order: its length, the asks started in it, their p99 and longest, and
    /// how many took over twice `steady_p99_ms`. `asks`: `(start_us, took_us)`.
    pub(super) fn report(&self, asks: &[(u64, u64)], steady_p99_ms: f64) -> String {
        let mut by_step: Vec<Vec<u64>> = vec![Vec::new(); self.marks.len()];
        for &(start, took) in asks {
            let step = self.marks.partition_point(|(at, _)| *at <= start);
            if let Some(step) = step.checked_sub(1) {
                by_step[step].push(took);
            }
        }
        let slow_us = (steady_p99_ms * 2000.0) as u64;
        let mut out = String::new();
        for (i, ((at, label), mut took)) in self.marks.iter().zip(by_step).enumerate() {
            let len_ms = self
                .marks
                .get(i + 1)
                .map_or(0, |(next, _)| (next - at) / 1000);
            took.sort_unstable();
            let slow = took.iter().filter(|t| **t > slow_us).count();
            let p99 = super::p99_ms(took.clone());
            let max = took.last().map_or(0.0, |t| *t as f64 / 1000.0);
            let _ = writeln!(
                out,
                "phase {label:<22} len_ms={len_ms:<5} asks={:<6} p99_ms={p99:<6.1} max_ms={max:<6.1} over_2x_steady={slow}",
                took.len()
            );
        }
        out
    }
}
