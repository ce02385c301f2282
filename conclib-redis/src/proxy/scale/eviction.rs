//! The activation cap and memory shedding: which activations leave when a system holds more
//! than its cap ([`Cap`], by its [`Eviction`] policy) or its process more memory than it
//! may ([`MemoryShedding`]), passivated as after an idle time (`activation.rs`): stopped
//! gracefully, so their `on_stop` saves once, their URN released, and their next request
//! activates them again wherever the pattern's placement picks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures_util::stream::{self, StreamExt};

use super::activation;
use super::activations::Activations;
use crate::overload::{Eviction, EvictionCandidate, MemoryShedding, Overload, resident_bytes};
use crate::proxy::shared::Shared;

/// `usize::MAX` stands for no cap.
const NO_CAP: usize = usize::MAX;

/// How many activations are passivated at once when evicting or shedding.
const PASSIVATIONS_AT_ONCE: usize = 64;

/// The activation cap, its policy, and what was evicted and shed.
pub(in crate::proxy) struct Cap {
    max: AtomicUsize,
    policy: Mutex<Eviction>,
    /// One eviction round at a time.
    evicting: AtomicBool,
    evicted: AtomicU64,
    shed: AtomicU64,
    memory: Mutex<Option<MemoryShedding>>,
    /// The memory limit in bytes, read once (`None`: no limit to measure against).
    memory_limit: OnceLock<Option<u64>>,
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
fn evict_down_to(max: usize) -> usize {
    max - max / 64
}

/// How many of `live` activations to shed with `rss` bytes resident against `limit`: the
/// share of memory above `down_to` of the limit (at least one), at most an eighth of them
/// (at least one), none at or below `above` of the limit.
fn to_shed(live: usize, rss: u64, limit: u64, m: &MemoryShedding) -> usize {
    if live == 0 || (rss as f64) <= m.above * limit as f64 {
        return 0;
    }
    let excess = (rss as f64 - m.down_to * limit as f64).max(0.0) / rss as f64;
    let n = (live as f64 * excess).ceil() as usize;
    n.clamp(1, (live / 8).max(1))
}

impl Activations {
    /// Up to `n` activations with an empty mailbox and not leaving already, the lowest
    /// scores of `policy` first, marked as leaving.
    fn pick(&self, n: usize, policy: &Eviction) -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        let live = self.live();
        let now = Instant::now();
        let mut scored: Vec<(u64, &String)> = live
            .iter()
            .filter(|(_, l)| !l.standing.is_leaving() && l.actor.mailbox_len() == 0)
            .map(|(urn, l)| {
                let candidate = EvictionCandidate {
                    urn,
                    idle: now.saturating_duration_since(l.last_used),
                    uses: l.uses,
                };
                (policy.score(&candidate), urn)
            })
            .collect();
        if scored.len() > n {
            scored.select_nth_unstable_by_key(n, |(score, _)| *score);
            scored.truncate(n);
        }
        scored
            .into_iter()
            .map(|(_, urn)| {
                if let Some(l) = live.get(urn) {
                    l.standing.leaving.store(true, Ordering::Release);
                }
                urn.clone()
            })
            .collect()
    }

    /// Activations alive and not leaving.
    fn staying(&self) -> usize {
        self.live()
            .values()
            .filter(|l| !l.standing.is_leaving())
            .count()
    }
}

/// Past the activation cap: starts an eviction round unless one runs (a task of its own,
/// so the activation that crossed the cap is served at once).
pub(in crate::proxy) fn evict_over_cap(shared: &Arc<Shared>) {
    let cap = &shared.activations.cap;
    let Some(max) = cap.get() else { return };
    if shared.activations.live().len() <= max || cap.evicting.swap(true, Ordering::AcqRel) {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        while let Some(max) = shared.activations.cap.get() {
            let staying = shared.activations.staying();
            if staying <= max {
                break;
            }
            let policy = shared
                .activations
                .cap
                .policy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let urns = shared
                .activations
                .pick(staying - evict_down_to(max), &policy);
            if urns.is_empty() {
                // Every activation has requests queued: none leaves until it drains.
                tracing::warn!(system = %shared.system_id, staying, cap = max, "over the activation cap with every activation busy; evicting again at the next activation");
                break;
            }
            tracing::debug!(system = %shared.system_id, cap = max, evicting = urns.len(), "over the activation cap: evicting");
            shared
                .activations
                .cap
                .evicted
                .fetch_add(urns.len() as u64, Ordering::Relaxed);
            passivate_all_of(&shared, urns, "evicted").await;
        }
        shared
            .activations
            .cap
            .evicting
            .store(false, Ordering::Release);
    });
}

/// At each look at the idle activations (every 250 ms): samples the requests pending and
/// the activations alive for the metrics, and sheds activations for memory.
pub(in crate::proxy) async fn overload_tick(shared: &Arc<Shared>) {
    if conclib_core::metrics::is_enabled() {
        let (_, _, pending) = shared.admission.counts();
        let live = shared.activations.live().len();
        crate::metrics::overload_levels(&shared.system_id, pending, live);
    }
    shed_for_memory(shared).await;
}

/// Above the memory shedding's threshold: passivates the least recently used activations.
async fn shed_for_memory(shared: &Arc<Shared>) {
    let cap = &shared.activations.cap;
    let Some(shedding) = cap.memory.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
        return;
    };
    let Some(limit) = *cap.memory_limit.get_or_init(|| shedding.limit.bytes()) else {
        return;
    };
    let Some(rss) = resident_bytes() else { return };
    let n = to_shed(shared.activations.staying(), rss, limit, &shedding);
    if n == 0 {
        return;
    }
    let urns = shared.activations.pick(n, &Eviction::Lru);
    if urns.is_empty() {
        return;
    }
    tracing::warn!(system = %shared.system_id, rss_mb = rss >> 20, limit_mb = limit >> 20, shedding = urns.len(), "memory above its shedding threshold: passivating the least recently used activations");
    cap.shed.fetch_add(urns.len() as u64, Ordering::Relaxed);
    passivate_all_of(shared, urns, "shed").await;
}

/// Passivates `urns` now, [`PASSIVATIONS_AT_ONCE`] at a time, counting each in the
/// activations metric as `event`.
async fn passivate_all_of(shared: &Arc<Shared>, urns: Vec<String>, event: &'static str) {
    stream::iter(urns)
        .for_each_concurrent(PASSIVATIONS_AT_ONCE, |urn| {
            let shared = shared.clone();
            async move {
                if let Some(prefix) = crate::protocol::pattern_prefix(&urn) {
                    crate::metrics::activation(&shared.system_id, prefix, event);
                }
                activation::passivate(&shared, &urn, true).await;
            }
        })
        .await;
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
