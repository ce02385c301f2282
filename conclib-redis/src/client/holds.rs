//! Refusing at send what the proxy would refuse ([`Holds`]): a URN whose asks a proxy
//! answered `Overloaded` is held for [`Overload::client_hold`](crate::overload::Overload::client_hold)
//! after each such answer, with the limit the answer gave; while held, this client counts its
//! own asks to it in flight, and an ask that would make them more than the limit is refused
//! here, with the same `Overloaded`, without a trip to Redis. The crate docs, "Overload",
//! say what a client knows and what it does not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::overload::{OverloadScope, Refusal};

/// The most URNs held at once: past it, a refusal for one more URN is not remembered (the
/// proxy goes on refusing it; the client just does not refuse it first).
const MAX_HELD: usize = 4096;

/// What a refusal taught about one URN.
struct Hold {
    /// Until when it is held: [`Holds::hold`] after the last refusal from the proxy.
    until: Instant,
    /// The limit the proxy refused at.
    limit: u64,
    /// This client's asks to the URN in flight, counted from the first refusal on.
    in_flight: Arc<AtomicU64>,
}

/// The URNs this client holds, and for how long a refusal holds one.
pub(super) struct Holds {
    hold: Duration,
    /// Whether any URN is held: an ask reads only this when none is.
    any: AtomicBool,
    held: Mutex<HashMap<String, Hold>>,
}

/// An ask counted against its URN's hold while it is in flight.
pub(super) struct Counted(Option<Arc<AtomicU64>>);

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Holds {
    /// Holds kept `hold` after each refusal (`Duration::ZERO`: none).
    pub(super) fn new(hold: Duration) -> Self {
        Holds {
            hold,
            any: AtomicBool::new(false),
            held: Mutex::new(HashMap::new()),
        }
    }

    /// An ask to `urn` about to be sent: counted if the URN is held (until dropped), or the
    /// refusal the proxy would answer, if this client alone has the limit in flight there.
    pub(super) fn admit(&self, urn: &str) -> Result<Counted, Refusal> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(Counted(None));
        }
        self.admit_held(urn, Instant::now())
    }

    /// A tell to `urn` about to be sent: the refusal the proxy would answer (it drops the
    /// tell) if this client alone has the URN's limit of asks in flight; not counted.
    pub(super) fn tell(&self, urn: &str) -> Result<(), Refusal> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let held = lock(&self.held);
        match held.get(urn) {
            Some(hold) if hold.until > Instant::now() => {
                let depth = hold.in_flight.load(Ordering::Relaxed);
                if depth >= hold.limit {
                    return Err(Refusal {
                        scope: OverloadScope::Urn,
                        limit: hold.limit,
                        depth,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn admit_held(&self, urn: &str, now: Instant) -> Result<Counted, Refusal> {
        let mut held = lock(&self.held);
        let Some(hold) = held.get(urn) else {
            return Ok(Counted(None));
        };
        if hold.until <= now {
            held.remove(urn);
            self.any.store(!held.is_empty(), Ordering::Release);
            return Ok(Counted(None));
        }
        let depth = hold.in_flight.load(Ordering::Relaxed);
        if depth >= hold.limit {
            return Err(Refusal {
                scope: OverloadScope::Urn,
                limit: hold.limit,
                depth,
            });
        }
        hold.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Counted(Some(hold.in_flight.clone())))
    }

    /// The proxy refused an ask to `urn`: holds it (again) for the hold time. Only a URN's
    /// own limit is held: a pattern's or a system's count other URNs' requests too, which
    /// this client does not see.
    pub(super) fn refused(&self, urn: &str, refusal: &Refusal) {
        if self.hold.is_zero() || refusal.scope != OverloadScope::Urn {
            return;
        }
        let now = Instant::now();
        let until = now + self.hold;
        let mut held = lock(&self.held);
        if let Some(hold) = held.get_mut(urn) {
            hold.until = until;
            hold.limit = refusal.limit;
            return;
        }
        if held.len() >= MAX_HELD {
            held.retain(|_, h| h.until > now);
            if held.len() >= MAX_HELD {
                return;
            }
        }
        held.insert(
            urn.to_owned(),
            Hold {
                until,
                limit: refusal.limit,
                in_flight: Arc::default(),
            },
        );
        self.any.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(limit: u64) -> Refusal {
        Refusal {
            scope: OverloadScope::Urn,
            limit,
            depth: limit,
        }
    }

    #[test]
    fn a_held_urn_refuses_past_its_limit_and_is_let_go_after_the_hold() {
        let holds = Holds::new(Duration::from_millis(50));
        assert!(holds.admit("u:1").unwrap().0.is_none(), "nothing held yet");
        holds.refused("u:1", &refusal(2));
        let a = holds.admit("u:1").unwrap();
        let _b = holds.admit("u:1").unwrap();
        let r = holds
            .admit("u:1")
            .err()
            .expect("a third in flight is refused");
        assert_eq!((r.scope, r.limit, r.depth), (OverloadScope::Urn, 2, 2));
        assert_eq!(holds.tell("u:1").err(), Some(r), "a tell too");
        // Another URN is not held.
        assert!(holds.admit("u:2").unwrap().0.is_none());
        // One answered: room again.
        drop(a);
        let _c = holds.admit("u:1").unwrap();
        assert!(holds.admit("u:1").is_err());
        // Past the hold nothing is refused, and the URN is forgotten.
        let later = Instant::now() + Duration::from_millis(51);
        assert!(holds.admit_held("u:1", later).unwrap().0.is_none());
        assert!(!holds.any.load(Ordering::Acquire));
    }

    #[test]
    fn only_a_urns_own_limit_is_held_and_a_zero_hold_holds_nothing() {
        let holds = Holds::new(Duration::from_secs(1));
        for scope in [OverloadScope::Pattern, OverloadScope::System] {
            holds.refused(
                "u:1",
                &Refusal {
                    scope,
                    limit: 1,
                    depth: 1,
                },
            );
        }
        assert!(!holds.any.load(Ordering::Acquire));
        let off = Holds::new(Duration::ZERO);
        off.refused("u:1", &refusal(1));
        assert!(!off.any.load(Ordering::Acquire));
    }

    #[test]
    fn the_held_urns_are_bounded() {
        let holds = Holds::new(Duration::from_secs(60));
        for i in 0..MAX_HELD + 10 {
            holds.refused(&format!("u:{i}"), &refusal(1));
        }
        assert_eq!(lock(&holds.held).len(), MAX_HELD);
    }
}
