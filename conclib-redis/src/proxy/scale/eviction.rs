//! The activation cap and memory shedding: their settings and sums ([`Cap`]), how many a
//! round evicts or sheds. The rounds themselves are in `passivation.rs`: the activations past
//! the cap (by the [`Eviction`] policy) or past the memory threshold ([`MemoryShedding`]) are
//! passivated as after an idle time (stopped gracefully, so their `on_stop` saves once, their
//! URN released), and their next request activates them again wherever placement picks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::overload::{Eviction, MemoryShedding, Overload};

/// `usize::MAX` stands for no cap.
const NO_CAP: usize = usize::MAX;

/// How many activations one batch passivates (stopped at once, their keys closed and released
/// in one pipeline each: `passivation.rs`) when evicting, shedding, passivating idle ones or
/// shutting down.
pub(in crate::proxy) const PASSIVATIONS_AT_ONCE: usize = 64;

/// How many activations a drain or a rebalance moves at once (each on its own: stopped,
/// its state carried, its key handed). Each moved activation's requests wait for its move
/// only, and a move's round trips and its new member's activation queue behind those of
/// the moves beside it: fewer at once, the shorter each one's pause (measured in
/// `examples/rolling_upgrade.rs`, BENCHMARKS.md "Rolling upgrade"); the rest keep serving
/// where they are meanwhile.
pub(in crate::proxy) const MOVES_AT_ONCE: usize = 8;

/// The activation cap, its policy, and what was evicted and shed.
pub(in crate::proxy) struct Cap {
    pub(in crate::proxy) max: AtomicUsize,
    pub(in crate::proxy) policy: Mutex<Eviction>,
    /// One eviction round at a time.
    pub(in crate::proxy) evicting: AtomicBool,
    pub(in crate::proxy) evicted: AtomicU64,
    pub(in crate::proxy) shed: AtomicU64,
    pub(in crate::proxy) memory: Mutex<Option<MemoryShedding>>,
    /// The memory limit in bytes, read once (`None`: no limit to measure against).
    pub(in crate::proxy) memory_limit: OnceLock<Option<u64>>,
}

impl Default for Cap {
    fn default() -> Self {
        Cap {
            max: AtomicUsize::new(NO_CAP),
            policy: Mutex::new(Eviction::Lru),
            evicting: AtomicBool::new(false),
            evicted: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            memory: Mutex::new(None),
            memory_limit: OnceLock::new(),
        }
    }
}

impl Cap {
    /// The cap, policy and shedding of `overload`.
    pub(in crate::proxy) fn configure(&self, overload: &Overload) {
        self.set(overload.activation_cap);
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = overload.eviction.clone();
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = overload.memory.clone();
    }

    pub(in crate::proxy) fn set(&self, cap: Option<usize>) {
        self.max.store(cap.unwrap_or(NO_CAP), Ordering::Release);
    }

    pub(in crate::proxy) fn get(&self) -> Option<usize> {
        let max = self.max.load(Ordering::Acquire);
        (max != NO_CAP).then_some(max)
    }

    /// Activations evicted by the cap and shed for memory so far.
    pub(in crate::proxy) fn counts(&self) -> (u64, u64) {
        (
            self.evicted.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
        )
    }
}

/// How many activations an eviction round leaves under cap `max`: about 98.5% of it, so
/// that a system at its cap evicts in batches, not one per activation.
pub(in crate::proxy) fn evict_down_to(max: usize) -> usize {
    max - max / 64
}

/// How many of `live` activations to shed with `rss` bytes resident against `limit`: the
/// share of memory above `down_to` of the limit (at least one), at most an eighth of them
/// (at least one), none at or below `above` of the limit.
pub(in crate::proxy) fn to_shed(live: usize, rss: u64, limit: u64, m: &MemoryShedding) -> usize {
    if live == 0 || (rss as f64) <= m.above * limit as f64 {
        return 0;
    }
    let excess = (rss as f64 - m.down_to * limit as f64).max(0.0) / rss as f64;
    let n = (live as f64 * excess).ceil() as usize;
    n.clamp(1, (live / 8).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overload::MemoryLimit;

    #[test]
    fn a_round_evicts_to_a_little_under_the_cap() {
        assert_eq!(evict_down_to(100_000), 98_438);
        assert_eq!(evict_down_to(10), 10);
        assert_eq!(evict_down_to(0), 0);
    }

    #[test]
    fn shedding_takes_the_share_above_its_target_and_at_most_an_eighth() {
        let m = MemoryShedding::new(MemoryLimit::Bytes(1000));
        // At or under 80%: nothing.
        assert_eq!(to_shed(800, 800, 1000, &m), 0);
        // 900 resident, aiming at 700: 2/9 of 800 is 178, capped at an eighth (100).
        assert_eq!(to_shed(800, 900, 1000, &m), 100);
        // Just above: at least one.
        assert_eq!(to_shed(1000, 801, 1000, &m), 125);
        assert_eq!(to_shed(3, 1_000_000, 1000, &m), 1);
        assert_eq!(to_shed(0, 1_000_000, 1000, &m), 0);
    }
}
