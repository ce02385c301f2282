//! The clock of the send stamps and of the handling times, and the switch that turns
//! recording on.
//!
//! The CPU's time-stamp counter where it is invariant (x86-64's TSC, AArch64's system
//! counter), calibrated once against the monotonic clock, else the monotonic clock itself
//! (`quanta` decides and calibrates). A message reads it up to three times while recording
//! is on (the send stamp, the start and the end of handling). On this project's 2-core KVM
//! machines a `clock_gettime` (`CLOCK_MONOTONIC`, vDSO) took 27-80 ns and the counter 10-35
//! ns, depending on the day and the host (the `clock` bin of `benches/`): with three
//! readings, the monotonic clock alone could cost more than a whole message without
//! recording (docs/bench-log.md).
//!
//! The counter is read through `quanta` (`Clock::raw`). Reading it here with `rdtsc` inline
//! instead (two `unsafe` blocks: `rdtsc`, and `cpuid` to check that `quanta` reads the same
//! counter) saved about a dozen instructions a reading, but nothing measurable: tell with
//! metrics on, alternated A/B, 1.001x (BENCHMARKS.md, "Unsafe code").

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether stamps are taken (recording is on).
static READING: AtomicBool = AtomicBool::new(false);

/// The clock, once calibrated: `quanta`'s.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    quanta: &'static quanta::Clock,
}

/// The process's clock (calibrated at the first call: a few milliseconds, once).
pub(crate) fn clock() -> Clock {
    static CLOCK: OnceLock<Clock> = OnceLock::new();
    *CLOCK.get_or_init(|| {
        static QUANTA_CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
        Clock {
            quanta: QUANTA_CLOCK.get_or_init(quanta::Clock::new),
        }
    })
}

/// Turns the stamps on (after the clock is calibrated).
pub(super) fn turn_on() {
    let _calibrated = clock();
    READING.store(true, Ordering::Relaxed);
}

/// Whether stamps are taken (recording is on).
#[inline]
pub(super) fn is_on() -> bool {
    READING.load(Ordering::Relaxed)
}

/// A send time for an envelope: now, or 0 when recording is off (then nothing is measured
/// for that message). One relaxed load when off.
#[inline]
pub(crate) fn stamp() -> u64 {
    if READING.load(Ordering::Relaxed) {
        clock().now()
    } else {
        0
    }
}

impl Clock {
    /// A clock reading `quanta`'s clock (tests: its mock, whose ticks are nanoseconds).
    #[cfg(test)]
    pub(crate) fn with(quanta: &'static quanta::Clock) -> Clock {
        Clock { quanta }
    }

    /// Now, in the clock's own units (its ticks), never 0 (a stamp of 0 reads as none).
    #[inline(always)]
    pub(crate) fn now(self) -> u64 {
        self.quanta.raw().max(1)
    }

    /// `ticks` in nanoseconds.
    #[inline]
    pub(crate) fn nanos(self, ticks: u64) -> u64 {
        self.quanta.delta_as_nanos(0, ticks)
    }

    /// The most ticks that are at most `ns` nanoseconds: a duration of `t` ticks is at most
    /// `ns` exactly when `t <= self.ticks_within(ns)` ([`nanos`](Self::nanos) never
    /// decreases as the ticks grow).
    pub(crate) fn ticks_within(self, ns: u64) -> u64 {
        // Find a tick count past `ns`, then search below it.
        let mut high = self.ticks(ns).saturating_add(1);
        while high < u64::MAX && self.nanos(high) <= ns {
            high = high.saturating_mul(2);
        }
        let mut low = 0;
        // `nanos(low) <= ns < nanos(high)`, unless `high` is `u64::MAX`.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.nanos(mid) <= ns {
                low = mid;
            } else {
                high = mid;
            }
        }
        if self.nanos(high) <= ns { high } else { low }
    }

    /// `ns` nanoseconds in ticks, roughly (at least 1).
    pub(crate) fn ticks(self, ns: u64) -> u64 {
        // The clock converts ticks to nanoseconds only: scale by its conversion of a long span.
        const SPAN: u64 = 1 << 40;
        let span_ns = self.nanos(SPAN).max(1);
        u64::try_from(u128::from(ns) * u128::from(SPAN) / u128::from(span_ns))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::clock;

    #[test]
    fn ticks_within_is_the_last_tick_count_at_or_below() {
        let clock = clock();
        for ns in [
            0,
            1,
            999,
            1000,
            1001,
            25_000,
            10_000_000,
            1_000_000_000,
            7 << 40,
        ] {
            let t = clock.ticks_within(ns);
            assert!(clock.nanos(t) <= ns, "{ns}: {t}");
            assert!(clock.nanos(t + 1) > ns, "{ns}: {t}");
        }
    }

    #[test]
    fn readings_go_forward_and_convert() {
        let clock = clock();
        let before = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = clock.now();
        let ns = clock.nanos(after - before);
        // At least the sleep; well under a second (a loaded machine may add a lot).
        assert!((2_000_000..1_000_000_000).contains(&ns), "{ns} ns");
    }
}
