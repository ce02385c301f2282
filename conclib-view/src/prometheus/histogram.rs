//! A histogram with fixed buckets that records a sample in a few plain loads and stores.
//!
//! The exporter's own histograms (`metrics-exporter-prometheus`) keep every sample until
//! the next render or upkeep, behind a generation counter, a clock read and a crossbeam
//! epoch pin: about 165 instructions a sample, two samples per message an actor handles
//! (BENCHMARKS.md, issue #28). What Prometheus reads of a histogram with fixed buckets is
//! only a count per bucket, the sum and the count, so that is all this one keeps: a
//! sample is a search among a dozen bounds, an add to its bucket and one to the sum;
//! [`record_many`](BucketHistogram::record_many) costs the same.
//!
//! Each thread that records gets cells of its own in each histogram it records into (up
//! to [`SLOTS`] threads at a time; a thread's slot is given back when it ends), which only
//! it writes: its adds are plain loads and stores, where adds to cells shared between
//! threads need locked instructions (an ask with metrics on made four: its two samples'
//! buckets and sums). A render adds up every thread's cells. Threads beyond [`SLOTS`]
//! share one set of cells, with locked adds.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use metrics::HistogramFn;

/// How many threads at a time record into a histogram with cells of their own: a
/// runtime's workers, and a few more. 8 bytes a histogram each; a thread's cells (128
/// bytes) are made at its first sample in that histogram.
const SLOTS: usize = 16;

/// The cells of a set: one count per bucket (at most [`SUM`] buckets: the bounds and
/// `+Inf`), then the sum of the samples as the bits of an `f64`.
const CELLS: usize = 16;
const SUM: usize = CELLS - 1;

/// One thread's counts and sum, on cache lines of their own: two threads' cells never
/// share a line, so one thread's adds never take a line from another's core.
#[repr(align(128))]
struct Cells([AtomicU64; CELLS]);

impl Cells {
    fn new() -> Self {
        Cells(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// The sum, as added so far.
    fn sum(&self) -> f64 {
        f64::from_bits(self.0[SUM].load(Ordering::Relaxed))
    }
}

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
    /// Per thread slot ([`slot`]): the cells of the thread holding it, written by that
    /// thread alone (and by a thread that holds the slot after it ended); null until its
    /// first sample here.
    own: [AtomicPtr<Cells>; SLOTS],
    /// The cells of threads without a slot, added to with locked instructions.
    shared: Cells,
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
            own: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            shared: Cells::new(),
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
        match self.own.get(slot()) {
            Some(own) => {
                let cells = self.cells(own);
                // This thread alone writes these cells: a load and a store, no lock.
                let c = &cells.0[at];
                c.store(
                    c.load(Ordering::Relaxed).wrapping_add(count),
                    Ordering::Relaxed,
                );
                let sum = &cells.0[SUM];
                sum.store((cells.sum() + add).to_bits(), Ordering::Relaxed);
            }
            None => self.add_shared(at, add, count),
        }
    }

    /// The cells of the slot `own` (this thread's), made at its first sample here.
    #[inline]
    fn cells<'a>(&'a self, own: &'a AtomicPtr<Cells>) -> &'a Cells {
        let cells = own.load(Ordering::Acquire);
        if cells.is_null() {
            return Self::make_cells(own);
        }
        // SAFETY: a non-null pointer in `own` came from `Box::into_raw` in `make_cells`
        // and is freed only when the histogram drops, after this borrow of it.
        unsafe { &*cells }
    }

    #[cold]
    fn make_cells(own: &AtomicPtr<Cells>) -> &Cells {
        let cells = Box::into_raw(Box::new(Cells::new()));
        // Only the slot's holder writes its pointer: no other store can race this one.
        own.store(cells, Ordering::Release);
        // SAFETY: just made, freed only when the histogram drops.
        unsafe { &*cells }
    }

    /// An add from a thread without a slot: locked, other such threads adding too.
    #[cold]
    fn add_shared(&self, at: usize, add: f64, count: u64) {
        self.shared.0[at].fetch_add(count, Ordering::Relaxed);
        // No atomic add for `f64`: a compare-and-swap loop, which succeeds at once unless
        // another thread without a slot records into the same series at the same instant.
        let sum = &self.shared.0[SUM];
        let mut current = sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + add).to_bits();
            match sum.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
    }

    /// Every set of cells: the shared one, then each thread's.
    fn every_cells(&self) -> impl Iterator<Item = &Cells> {
        std::iter::once(&self.shared).chain(self.own.iter().filter_map(|own| {
            let cells = own.load(Ordering::Acquire);
            // SAFETY: as in `cells`: made by `make_cells`, freed only when the histogram
            // drops.
            (!cells.is_null()).then(|| unsafe { &*cells })
        }))
    }

    /// What was recorded so far. Read bucket by bucket while others may record: each
    /// bucket's count is exact as read, and `_count` is their total.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut counts = [0u64; SUM];
        let mut sum = 0.0;
        for cells in self.every_cells() {
            for (total, cell) in counts.iter_mut().zip(&cells.0[..=self.bounds.len()]) {
                *total = total.wrapping_add(cell.load(Ordering::Relaxed));
            }
            sum += cells.sum();
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

impl Drop for BucketHistogram {
    fn drop(&mut self) {
        for own in &mut self.own {
            let cells = *own.get_mut();
            if !cells.is_null() {
                // SAFETY: made by `Box::into_raw` in `make_cells`, and nothing else can
                // reach the histogram any more.
                drop(unsafe { Box::from_raw(cells) });
            }
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

/// The next slot never held (past [`SLOTS`]: none left).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Slots given back by threads that ended. Its lock orders an ended thread's last adds
/// before the adds of the next thread to hold its slot, which go on from its counts.
static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// [`SLOT`] before the thread's first sample.
const UNTAKEN: usize = usize::MAX;
thread_local! {
    /// This thread's slot: [`UNTAKEN`], none ([`SLOTS`]: none was free, or it was given
    /// back as the thread ends), or its index. Read at every sample: a plain thread-local,
    /// with no destructor.
    static SLOT: Cell<usize> = const { Cell::new(UNTAKEN) };
    /// Gives the slot back when the thread ends (made when it takes one).
    static GIVE_BACK: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        // Later samples of this thread (other destructors') go to the shared cells.
        let slot = SLOT.with(|slot| slot.replace(SLOTS));
        give_back(slot);
    }
}

fn give_back(slot: usize) {
    if slot < SLOTS {
        FREE_SLOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot);
    }
}

/// This thread's slot; [`SLOTS`] or more when it has none.
#[inline]
fn slot() -> usize {
    match SLOT.try_with(Cell::get) {
        Ok(UNTAKEN) => take_slot(),
        Ok(slot) => slot,
        Err(_) => SLOTS,
    }
}

/// The thread's first sample: a slot given back by an ended thread, else the next never
/// held.
#[cold]
fn take_slot() -> usize {
    let free = FREE_SLOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let slot = free.unwrap_or_else(|| NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SLOTS));
    // Registers the destructor that gives it back; a thread ending already (its
    // thread-locals being destroyed) gives it back at once.
    if GIVE_BACK.try_with(|_| ()).is_err() {
        give_back(slot);
        return SLOTS;
    }
    SLOT.with(|s| s.set(slot));
    slot
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
        let braces = |out: &mut String| {
            if !labels.is_empty() {
                out.push('{');
                out.push_str(labels);
                out.push('}');
            }
        };
        out.push_str(name);
        out.push_str("_sum");
        braces(out);
        let _ = writeln!(out, " {}", Value(self.sum));
        out.push_str(name);
        out.push_str("_count");
        braces(out);
        let _ = writeln!(out, " {}", self.count);
    }
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

    /// Tests whose threads take many slots run one at a time, so that the one that looks
    /// at slots being given back sees a free one.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
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
