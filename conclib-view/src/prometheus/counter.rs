//! A counter kept per thread ([`super::cells`]): an increment is a plain load and store.
//!
//! The exporter's counter is an atomic count and an atomic generation (two locked adds an
//! increment), on one line for every actor of a type (their series is one): every worker
//! that handles their messages wrote it.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::CounterFn;

use super::cells::PerThread;

/// The cell of the increments.
const COUNT: usize = 0;

/// One series of a Prometheus counter.
pub(crate) struct ThreadCounter {
    cells: PerThread,
    /// The largest value given to [`absolute`](CounterFn::absolute).
    absolute: AtomicU64,
}

impl ThreadCounter {
    pub(crate) fn new() -> Self {
        ThreadCounter {
            cells: PerThread::new(),
            absolute: AtomicU64::new(0),
        }
    }

    /// The counter's value: the increments added up, or the largest absolute value given
    /// if that is more (a counter set with `absolute` mirrors a count kept elsewhere; one
    /// both set and incremented counts what is more of the two).
    pub(crate) fn value(&self) -> u64 {
        self.cells
            .total(COUNT)
            .max(self.absolute.load(Ordering::Relaxed))
    }
}

impl CounterFn for ThreadCounter {
    #[inline]
    fn increment(&self, value: u64) {
        self.cells.adder().add(COUNT, value);
    }

    fn absolute(&self, value: u64) {
        self.absolute.fetch_max(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::cells::{serial, slot};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn increments_from_many_threads_add_up() {
        let _serial = serial();
        let c = Arc::new(ThreadCounter::new());
        // More threads than slots, holding them (or none) all at once: some add to the
        // shared cells.
        let together = Arc::new(std::sync::Barrier::new(40));
        let threads: Vec<_> = (0..40u64)
            .map(|t| {
                let (c, together) = (c.clone(), together.clone());
                std::thread::spawn(move || {
                    let _ = slot();
                    together.wait();
                    for _ in 0..10_000 {
                        c.increment(1);
                    }
                    c.increment(t);
                    together.wait();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.value(), 40 * 10_000 + (0..40).sum::<u64>());
    }

    #[test]
    fn absolute_values_keep_the_largest() {
        let c = ThreadCounter::new();
        c.absolute(7);
        c.absolute(3);
        assert_eq!(c.value(), 7);
        c.absolute(12);
        assert_eq!(c.value(), 12);
        // Incremented too: whichever is more.
        c.increment(5);
        assert_eq!(c.value(), 12);
        c.increment(15);
        assert_eq!(c.value(), 20);
    }
}
