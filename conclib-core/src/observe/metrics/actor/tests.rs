//! An actor's measures against the recorder's: bucket counts and sums, tick thresholds,
//! entries found at their index, means kept in their bucket.

use super::*;
use std::sync::Arc;
use std::sync::Mutex;

use super::super::threshold_ns;

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

/// A clock whose ticks are nanoseconds (`quanta`'s mock), or the real one.
fn clocks() -> [Clock; 2] {
    let (mock, _) = quanta::Clock::mock();
    let mock = Clock::with(Box::leak(Box::new(mock)));
    [mock, clock()]
}

fn buckets(clock: Clock) -> Buckets {
    let ns: Vec<u64> = BOUNDS.iter().map(|&b| threshold_ns(b)).collect();
    Buckets::new(Vec::leak(ns), clock)
}

#[test]
fn a_batch_per_bucket_gives_the_recorder_the_same_counts_and_sum() {
    for clock in clocks() {
        let buckets = buckets(clock);
        // Durations on and around every bound (in ticks: each bound's tick threshold),
        // and far past the last.
        let mut samples: Vec<u64> = vec![0, 1, 7_000_000_000, 7_000_000_000];
        for &t in buckets.ticks.iter() {
            samples.extend([t.saturating_sub(1), t, t + 1]);
        }
        let mut bins = Bins::new(&buckets.ticks);
        for &ticks in &samples {
            bins.add(&buckets.ticks, ticks);
        }
        let calls = Arc::new(Calls::default());
        let histogram = Histogram::from_arc(calls.clone());
        bins.hand_over(&buckets, clock, &histogram);

        // What the recorder would have had from the samples one by one.
        let mut want = vec![0usize; BOUNDS.len() + 1];
        let mut want_sum = 0.0;
        for &ticks in &samples {
            let s = seconds(clock.nanos(ticks));
            want[bucket_of(&BOUNDS, s)] += 1;
            want_sum += s;
        }
        let mut got = vec![0usize; BOUNDS.len() + 1];
        let mut got_sum = 0.0;
        let calls = calls.0.lock().unwrap();
        for &(value, count) in calls.iter() {
            got[bucket_of(&BOUNDS, value)] += count;
            got_sum += value * count as f64;
        }
        assert_eq!(got, want, "{calls:?}");
        // Each sample converted alone rounds down by under a nanosecond; the sum of
        // the ticks converted at once does not.
        let slack = samples.len() as f64 * 1e-9 + want_sum * 1e-12;
        assert!(
            (got_sum - want_sum).abs() <= slack,
            "{got_sum} vs {want_sum}"
        );
        // One call per bucket used, and the bins are empty for the next batch.
        assert_eq!(calls.len(), want.iter().filter(|n| **n > 0).count());
        drop(calls);
        bins.hand_over(&buckets, clock, &histogram);
        assert_eq!(bins.used, 0);
    }
}

#[test]
fn tick_thresholds_put_ticks_where_the_recorder_puts_their_seconds() {
    for clock in clocks() {
        let buckets = buckets(clock);
        for (at, &t) in buckets.ticks.iter().enumerate() {
            assert_eq!(bucket_of(&BOUNDS, seconds(clock.nanos(t))), at);
            assert_eq!(bucket_of(&BOUNDS, seconds(clock.nanos(t + 1))), at + 1);
        }
    }
}

#[test]
fn entries_are_found_at_the_index_they_were_given() {
    let labels = super::super::labels("actor::tests::Entries", None);
    let mut tallies = crate::observe::snapshot::tallies::Tallies::default();
    let mut entries = Entries {
        first: None,
        more: Vec::new(),
    };
    let names = ["A", "B", "C", "D"];
    for (i, name) in names.into_iter().enumerate() {
        let at = entries.push(PerMessage {
            name,
            key: i,
            series: series::message("actor::tests::Entries", &labels, name),
            unrecorded: 0,
            unrecorded_errors: 0,
            tally: tallies.of(name),
            binned: None,
        });
        assert_eq!(at, i);
    }
    for (i, name) in names.into_iter().enumerate() {
        assert_eq!(entries[i].name, name);
        assert_eq!(entries.get(i).map(|m| m.key), Some(i));
        entries[i].unrecorded = i as u64 + 10;
    }
    assert!(entries.get(names.len()).is_none());
    let seen: Vec<(&str, u64)> = entries.iter_mut().map(|m| (m.name, m.unrecorded)).collect();
    assert_eq!(seen, [("A", 10), ("B", 11), ("C", 12), ("D", 13)]);
}

#[test]
fn a_mean_stays_in_its_bucket() {
    let thresholds: Vec<u64> = BOUNDS.iter().map(|&b| threshold_ns(b)).collect();
    // Every sample on the bucket's top: the mean, rounded, must not cross it.
    for (at, &t) in thresholds.iter().enumerate() {
        let bin = Bin {
            count: 3,
            sum: 3 * t,
        };
        assert_eq!(bucket_of(&BOUNDS, bin_mean(&thresholds, at, bin)), at);
    }
    // A bin claiming an impossible sum is still put in its bucket, without a panic.
    let bin = Bin {
        count: 0,
        sum: u64::MAX,
    };
    assert_eq!(bucket_of(&BOUNDS, bin_mean(&thresholds, 1, bin)), 1);
}
