//! A histogram with fixed buckets that records a sample in a few plain loads and stores.
//!
//! The exporter's own histograms (`metrics-exporter-prometheus`) keep every sample until
//! the next render or upkeep, behind a generation counter, a clock read and a crossbeam
//! epoch pin: about 165 instructions a sample, two samples per message an actor handles
//! (docs/bench-log.md). What Prometheus reads of a histogram with fixed buckets is
//! only a count per bucket, the sum and the count, so that is all this one keeps: a
//! sample is a search among a dozen bounds, an add to its bucket and one to the sum;
//! [`record_many`](BucketHistogram::record_many) costs the same.
//!
//! Each thread that records has cells of its own in the series ([`super::cells`]): its
//! adds are plain loads and stores, and a render adds up every thread's cells.

use std::fmt::{self, Write as _};

use metrics::HistogramFn;

use super::cells::{CELLS, PerThread};

/// The cell of the sum (the bits of an `f64`); the counts are in the cells before it, one
/// per bucket (at most [`SUM`] buckets: the bounds and `+Inf`).
const SUM: usize = CELLS - 1;

/// Counts per bucket, and the sum, of what was recorded: one series of a Prometheus
/// histogram.
///
/// The counts are not cumulative (each sample adds to one bucket only: the first whose
/// bound is at or above it, or the `+Inf` one); [`snapshot`](Self::snapshot) adds them up
/// the way Prometheus wants them. The total count is the sum of the buckets, so a render
/// always shows `_count` equal to the `+Inf` bucket, even while samples are coming in.
pub(crate) struct BucketHistogram {
    /// Upper bounds (`le`), ascending and finite: fewer than [`SUM`].
    bounds: &'static [f64],
    cells: PerThread,
}

impl BucketHistogram {
    /// An empty histogram with these upper bounds (ascending, finite, fewer than 15).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.len() < SUM,
            "at most {} bucket bounds, not {}",
            SUM - 1,
            bounds.len()
        );
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite()),
            "bucket bounds must be finite and ascending: {bounds:?}"
        );
        BucketHistogram {
            bounds,
            cells: PerThread::new(),
        }
    }

    /// Adds `count` samples of `value`. A NaN is not a measurement and is dropped: added
    /// to the sum, it would turn it (and every mean computed from it) into NaN for the
    /// life of the process.
    #[inline]
    pub(crate) fn add(&self, value: f64, count: u64) {
        if value.is_nan() || count == 0 {
            return;
        }
        // Most of conclib's samples are microseconds: a linear search ends in the first
        // few bounds, where a binary search would always take four steps.
        let at = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        let add = if count == 1 {
            value
        } else {
            value * count as f64
        };
        let cells = self.cells.adder();
        cells.add(at, count);
        cells.add_f64(SUM, add);
    }

    /// What was recorded so far. Read bucket by bucket while others may record: each
    /// bucket's count is exact as read, and `_count` is their total.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut counts = [0u64; SUM];
        let mut sum = 0.0;
        for cells in self.cells.every() {
            for (at, total) in counts.iter_mut().enumerate().take(self.bounds.len() + 1) {
                *total = total.wrapping_add(cells.get(at));
            }
            sum += cells.get_f64(SUM);
        }
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (bound, count) in self.bounds.iter().zip(counts) {
            cumulative = cumulative.wrapping_add(count);
            buckets.push((*bound, cumulative));
        }
        Snapshot {
            buckets,
            count: cumulative.wrapping_add(counts[self.bounds.len()]),
            sum,
        }
    }
}

impl HistogramFn for BucketHistogram {
    #[inline]
    fn record(&self, value: f64) {
        self.add(value, 1);
    }

    /// O(1): one bucket add and one sum add, whatever `count` is (the trait's default is a
    /// loop of `record`).
    #[inline]
    fn record_many(&self, value: f64, count: usize) {
        self.add(value, count as u64);
    }
}

/// A [`BucketHistogram`] as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// `(le, samples at or below it)` for each finite bound, ascending: cumulative, as
    /// Prometheus's `_bucket` series are.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// Every sample (the `+Inf` bucket and `_count`).
    pub(crate) count: u64,
    /// Their sum.
    pub(crate) sum: f64,
}

impl Snapshot {
    /// Appends this series in the Prometheus text format: a `{name}_bucket` line per bound
    /// and one for `+Inf`, then `{name}_sum` and `{name}_count`. `labels` are the series'
    /// labels already written as `k="v"` pairs joined by commas (may be empty).
    pub(crate) fn write_text(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, count) in &self.buckets {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {count}",
                Value(*le)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        write_sample(out, name, "_sum", labels, Value(self.sum));
        write_sample(out, name, "_count", labels, self.count);
    }
}

/// Appends one sample line: `{name}{suffix}{{labels}} {value}` (no braces without labels).
pub(super) fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    value: impl fmt::Display,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// An `f64` as the Prometheus text format spells it: Rust's shortest decimal form
/// (`0.0025`, `4`) for finite values, `+Inf`, `-Inf` and `NaN` otherwise (Rust writes
/// `inf`, which Prometheus does not read).
struct Value(f64);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v == f64::INFINITY {
            f.write_str("+Inf")
        } else if v == f64::NEG_INFINITY {
            f.write_str("-Inf")
        } else {
            write!(f, "{v}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cells::{SLOTS, serial, slot};
    use super::*;
    use std::sync::Arc;

    static BOUNDS: [f64; 3] = [0.5, 1.0, 2.0];

    #[test]
    fn samples_land_in_the_first_bucket_at_or_above_them() {
        let h = BucketHistogram::new(&BOUNDS);
        for v in [0.1, 0.5, 0.75, 1.0, 1.5, 3.0, f64::INFINITY] {
            h.record(v);
        }
        h.record_many(2.0, 4);
        h.record_many(0.25, 0); // nothing
        h.record(f64::NAN); // dropped
        let s = h.snapshot();
        // le=0.5: 0.1, 0.5; le=1: + 0.75, 1.0; le=2: + 1.5 and 4 x 2.0; +Inf: + 3.0, inf.
        assert_eq!(s.buckets, vec![(0.5, 2), (1.0, 4), (2.0, 9)]);
        assert_eq!(s.count, 11);
        assert_eq!(s.sum, f64::INFINITY);

        let h = BucketHistogram::new(&BOUNDS);
        for v in [0.1, 0.5, 0.75, 1.0, 1.5, 3.0] {
            h.record(v);
        }
        h.record_many(2.0, 4);
        let s = h.snapshot();
        assert_eq!(s.count, 10);
        assert!((s.sum - 14.85).abs() < 1e-12, "{}", s.sum);
    }

    #[test]
    fn the_text_has_cumulative_buckets_sum_and_count() {
        let h = BucketHistogram::new(&BOUNDS);
        h.record(0.25);
        h.record(1.5);
        h.record(7.0);
        let mut text = String::new();
        h.snapshot().write_text(&mut text, "x_seconds", "a=\"1\"");
        assert_eq!(
            text,
            "x_seconds_bucket{a=\"1\",le=\"0.5\"} 1\n\
             x_seconds_bucket{a=\"1\",le=\"1\"} 1\n\
             x_seconds_bucket{a=\"1\",le=\"2\"} 2\n\
             x_seconds_bucket{a=\"1\",le=\"+Inf\"} 3\n\
             x_seconds_sum{a=\"1\"} 8.75\n\
             x_seconds_count{a=\"1\"} 3\n"
        );
        let mut text = String::new();
        BucketHistogram::new(&BOUNDS)
            .snapshot()
            .write_text(&mut text, "y", "");
        assert!(text.starts_with("y_bucket{le=\"0.5\"} 0\n"), "{text}");
        assert!(text.ends_with("y_sum 0\ny_count 0\n"), "{text}");
    }

    #[test]
    fn values_are_spelled_as_prometheus_reads_them() {
        assert_eq!(Value(0.0025).to_string(), "0.0025");
        assert_eq!(Value(1e-6).to_string(), "0.000001");
        assert_eq!(Value(4.0).to_string(), "4");
        assert_eq!(Value(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value(f64::NEG_INFINITY).to_string(), "-Inf");
        assert_eq!(Value(f64::NAN).to_string(), "NaN");
    }

    /// `threads` threads, `at_once` of them at a time, each recording `samples` quarters
    /// into `h`; then the snapshot must hold exactly what they recorded.
    fn record_from_threads(h: &Arc<BucketHistogram>, threads: u64, at_once: u64, samples: u64) {
        let before = h.snapshot();
        for wave in 0..threads.div_ceil(at_once) {
            let started = std::sync::Arc::new(std::sync::Barrier::new(at_once as usize));
            let handles: Vec<_> = (0..at_once)
                .map(|t| {
                    let (h, started) = (h.clone(), started.clone());
                    std::thread::spawn(move || {
                        // All of a wave's threads hold their slots (or have none) at once,
                        // from before the first sample to after the last.
                        let _ = slot();
                        started.wait();
                        for i in 0..samples {
                            h.record(((i + t + wave) % 12) as f64 * 0.25);
                        }
                        started.wait();
                    })
                })
                .collect();
            for t in handles {
                t.join().expect("a recording thread panicked");
            }
        }
        let after = h.snapshot();
        let waves = threads.div_ceil(at_once);
        assert_eq!(after.count - before.count, waves * at_once * samples);
        let mut sum = 0.0;
        let mut want = [0u64; 4];
        for wave in 0..waves {
            for t in 0..at_once {
                for i in 0..samples {
                    let v = ((i + t + wave) % 12) as f64 * 0.25;
                    sum += v;
                    want[BOUNDS.iter().position(|&b| v <= b).unwrap_or(3)] += 1;
                }
            }
        }
        let mut cumulative = 0;
        for (k, (_, n)) in after.buckets.iter().enumerate() {
            cumulative += want[k];
            assert_eq!(n - before.buckets[k].1, cumulative, "bucket {k}");
        }
        assert_eq!(after.sum - before.sum, sum);
    }

    #[test]
    fn more_threads_than_slots_lose_nothing() {
        // Some of them share the cells of threads without a slot (other tests' threads
        // may hold slots too).
        let _serial = serial();
        let h = Arc::new(BucketHistogram::new(&BOUNDS));
        record_from_threads(&h, 2 * SLOTS as u64, 2 * SLOTS as u64, 20_000);
    }

    #[test]
    fn threads_that_end_hand_their_slots_on_and_nothing_is_lost() {
        // Many more threads than slots, a few at a time: each takes a slot an ended
        // thread gave back, and goes on from that thread's counts.
        let _serial = serial();
        let h = Arc::new(BucketHistogram::new(&BOUNDS));
        record_from_threads(&h, 8 * SLOTS as u64, 4, 5_000);
        // Slots are given back: a new thread still gets one (without, the 128 threads
        // above would have taken every slot there is).
        let slot = std::thread::spawn(slot).join().unwrap();
        assert!(slot < SLOTS, "slot {slot}");
        record_from_threads(&h, 2 * SLOTS as u64, 4, 5_000);
    }

    #[test]
    fn threads_recording_at_once_lose_nothing() {
        const THREADS: u64 = 4;
        const SAMPLES: u64 = 100_000;
        let _serial = serial();
        let h = Arc::new(BucketHistogram::new(&BOUNDS));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..SAMPLES {
                        // Quarters: exact in binary, so the sum is exact whatever the order.
                        h.record(((i + t) % 12) as f64 * 0.25);
                    }
                    h.record_many(0.5, 10);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a recording thread panicked");
        }
        let s = h.snapshot();
        assert_eq!(s.count, THREADS * (SAMPLES + 10));
        // Per thread, every residue 0..12 about SAMPLES / 12 times: count them exactly.
        let mut want = [0u64; 4];
        let mut sum = 0.0;
        for t in 0..THREADS {
            for i in 0..SAMPLES {
                let v = ((i + t) % 12) as f64 * 0.25;
                sum += v;
                let at = BOUNDS.iter().position(|&b| v <= b).unwrap_or(3);
                want[at] += 1;
            }
            want[0] += 10;
            sum += 5.0;
        }
        let cumulative: Vec<u64> = want
            .iter()
            .take(3)
            .scan(0, |acc, n| {
                *acc += n;
                Some(*acc)
            })
            .collect();
        assert_eq!(
            s.buckets.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            cumulative
        );
        assert_eq!(s.sum, sum);
    }
}
