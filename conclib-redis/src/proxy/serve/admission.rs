//! Admission where requests queue ([`Admission`]): how many requests read and not yet
//! answered each URN, each pattern and the whole system has, against their limits
//! ([`Overload`](crate::overload::Overload)); a request past one is refused at once, before it
//! reaches a mailbox. One per system, shared by its own proxy instance and its group
//! members' (the requests of a pattern come in on the group's streams).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::overload::{Overload, OverloadScope, Refusal};

/// A pattern's own limits, and its count of requests pending (kept by the pattern).
#[derive(Default)]
pub(in crate::proxy) struct PatternLimits {
    /// Its limit of pending requests per URN, before the system's.
    pub(in crate::proxy) max_pending_per_urn: Option<u64>,
    /// The most requests pending for its URNs together.
    pub(in crate::proxy) max_pending: Option<u64>,
    /// Requests pending for its URNs now (counted while a limit is set).
    pub(in crate::proxy) pending: Arc<AtomicU64>,
}

/// A limit of 0 stands for none (the atomics hold `Option<u64>` so).
const NONE: u64 = 0;

/// The pending counts and limits of a system's proxy.
#[derive(Default)]
pub(in crate::proxy) struct Admission {
    /// `Overload::max_pending_per_urn`, or [`NONE`].
    per_urn: AtomicU64,
    /// `Overload::max_pending`, or [`NONE`].
    per_system: AtomicU64,
    /// Whether any limit is set (the config's, a pattern's, a URN's): requests are counted
    /// only then, so a proxy without limits pays one load per request.
    any: AtomicBool,
    /// Limits set for single URNs (`ProxyHandle::set_max_pending`).
    overrides: Mutex<HashMap<String, u64>>,
    has_overrides: AtomicBool,
    /// Requests pending per URN, for URNs under a per-URN limit.
    urns: Mutex<HashMap<String, u64>>,
    /// Requests pending in the whole system (counted while `any`).
    pending: AtomicU64,
    /// Refusals by scope: URN, pattern, system.
    refused: [AtomicU64; 3],
    /// Of those, tells (dropped: a tell has nobody to answer).
    refused_tells: AtomicU64,
}

/// A request admitted: counted as pending until dropped.
pub(in crate::proxy) struct Ticket {
    admission: Arc<Admission>,
    urn: Option<String>,
    pattern: Option<Arc<AtomicU64>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.pending.fetch_sub(1, Ordering::Relaxed);
        if let Some(p) = &self.pattern {
            p.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(urn) = self.urn.take() {
            let mut urns = lock(&self.admission.urns);
            if let Some(n) = urns.get_mut(&urn) {
                *n -= 1;
                if *n == 0 {
                    urns.remove(&urn);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn limit(value: u64) -> Option<u64> {
    (value != NONE).then_some(value)
}

impl Admission {
    /// The limits of `overload`.
    pub(in crate::proxy) fn new(overload: &Overload) -> Self {
        let admission = Admission::default();
        let per_urn = overload.max_pending_per_urn.map_or(NONE, |n| n.max(1));
        let per_system = overload.max_pending.map_or(NONE, |n| n.max(1));
        admission.per_urn.store(per_urn, Ordering::Relaxed);
        admission.per_system.store(per_system, Ordering::Relaxed);
        admission
            .any
            .store(per_urn != NONE || per_system != NONE, Ordering::Release);
        admission
    }

    /// A pattern with limits of its own was registered: requests are counted from now on.
    pub(in crate::proxy) fn limits_set(&self) {
        self.any.store(true, Ordering::Release);
    }

    /// Sets (`Some`) or removes (`None`) the limit of pending requests for one URN.
    pub(in crate::proxy) fn set_urn_limit(&self, urn: &str, max: Option<u64>) {
        let mut overrides = lock(&self.overrides);
        match max {
            Some(n) => {
                overrides.insert(urn.to_owned(), n.max(1));
            }
            None => {
                overrides.remove(urn);
            }
        }
        self.has_overrides
            .store(!overrides.is_empty(), Ordering::Release);
        if !overrides.is_empty() {
            self.any.store(true, Ordering::Release);
        }
    }

    /// Admits a request for `urn` (under `pattern`, if a pattern's): its ticket, `None` when
    /// no limit is set (nothing counted), or the limit it is past.
    pub(in crate::proxy) fn admit(
        self: &Arc<Self>,
        urn: &str,
        pattern: Option<&PatternLimits>,
    ) -> Result<Option<Ticket>, Refusal> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(None);
        }
        let urn_limit = self
            .has_overrides
            .load(Ordering::Acquire)
            .then(|| lock(&self.overrides).get(urn).copied())
            .flatten()
            .or_else(|| pattern.and_then(|p| p.max_pending_per_urn))
            .or_else(|| limit(self.per_urn.load(Ordering::Relaxed)));
        let mut urns = urn_limit.map(|_| lock(&self.urns));
        if let (Some(max), Some(urns)) = (urn_limit, &urns) {
            let depth = urns.get(urn).copied().unwrap_or(0);
            if depth >= max {
                return Err(self.refuse(OverloadScope::Urn, max, depth));
            }
        }
        if let Some(p) = pattern
            && let Some(max) = p.max_pending
        {
            let depth = p.pending.load(Ordering::Relaxed);
            if depth >= max {
                return Err(self.refuse(OverloadScope::Pattern, max, depth));
            }
        }
        if let Some(max) = limit(self.per_system.load(Ordering::Relaxed)) {
            let depth = self.pending.load(Ordering::Relaxed);
            if depth >= max {
                return Err(self.refuse(OverloadScope::System, max, depth));
            }
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let pattern = pattern.map(|p| {
            p.pending.fetch_add(1, Ordering::Relaxed);
            p.pending.clone()
        });
        let urn = urns.as_mut().map(|urns| {
            *urns.entry(urn.to_owned()).or_default() += 1;
            urn.to_owned()
        });
        Ok(Some(Ticket {
            admission: self.clone(),
            urn,
            pattern,
        }))
    }

    fn refuse(&self, scope: OverloadScope, limit: u64, depth: u64) -> Refusal {
        let i = match scope {
            OverloadScope::Urn => 0,
            OverloadScope::Pattern => 1,
            _ => 2,
        };
        self.refused[i].fetch_add(1, Ordering::Relaxed);
        Refusal {
            scope,
            limit,
            depth,
        }
    }

    /// A refused request was a tell, dropped.
    pub(in crate::proxy) fn tell_dropped(&self) {
        self.refused_tells.fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals so far (all scopes), of them tells, and the requests pending now.
    pub(in crate::proxy) fn counts(&self) -> (u64, u64, u64) {
        let refused = self.refused.iter().map(|r| r.load(Ordering::Relaxed)).sum();
        (
            refused,
            self.refused_tells.load(Ordering::Relaxed),
            self.pending.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_urn: Option<u64>, system: Option<u64>) -> Arc<Admission> {
        Arc::new(Admission::new(&Overload {
            max_pending_per_urn: per_urn,
            max_pending: system,
            ..Overload::default()
        }))
    }

    #[test]
    fn without_limits_nothing_is_counted() {
        let a = limits(None, None);
        assert!(a.admit("u:1", None).unwrap().is_none());
        assert_eq!(a.counts(), (0, 0, 0));
    }

    #[test]
    fn a_urn_past_its_limit_is_refused_with_the_depth_until_one_finishes() {
        let a = limits(Some(2), None);
        let t1 = a.admit("u:1", None).unwrap();
        let _t2 = a.admit("u:1", None).unwrap();
        let refused = a.admit("u:1", None).err().expect("refused");
        assert_eq!(
            (refused.scope, refused.limit, refused.depth),
            (OverloadScope::Urn, 2, 2)
        );
        // Another URN is not affected.
        assert!(a.admit("u:2", None).is_ok());
        drop(t1);
        assert!(a.admit("u:1", None).is_ok());
        assert_eq!(a.counts().0, 1);
    }

    #[test]
    fn the_system_limit_counts_every_urn_and_an_override_beats_the_default() {
        let a = limits(Some(100), Some(3));
        let _held: Vec<_> = (0..3).map(|i| a.admit(&format!("u:{i}"), None)).collect();
        let refused = a.admit("u:9", None).err().expect("refused");
        assert_eq!(
            (refused.scope, refused.limit, refused.depth),
            (OverloadScope::System, 3, 3)
        );
        let b = limits(Some(100), None);
        b.set_urn_limit("hot:1", Some(1));
        let _t = b.admit("hot:1", None).unwrap();
        assert_eq!(b.admit("hot:1", None).err().map(|r| r.limit), Some(1));
        b.set_urn_limit("hot:1", None);
        assert!(b.admit("hot:1", None).is_ok());
    }
}
