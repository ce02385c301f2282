//! The URNs a proxy owns, each with until when its key surely lives: a renewal sends only
//! the keys past a third of their TTL ([`OwnedUrns::due`]), so its cost follows the claims
//! (an activation evicted before its key is due costs no renewal), not the URNs held
//! (`docs/bench-log.md`, "2026-11-28 — Overload: URN keys renewed by age").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fred::prelude::Value;

use super::lease_state::surely_until;

/// URNs whose ownership key names this system.
#[derive(Default)]
pub(in crate::proxy) struct OwnedUrns {
    urns: HashMap<String, Held>,
}

/// One URN key held.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Until when the key surely lives: the TTL from when its last claim or renewal was
    /// sent (Redis counts it from later).
    until: Instant,
    /// The TTL it is claimed and renewed with (an activation's key lives longer outside a
    /// Redis Cluster: [`ProxyConfig::activation_urn_ttl`](crate::ProxyConfig::activation_urn_ttl)).
    ttl: Duration,
}

impl Held {
    /// Due for renewal at `now`: less than two thirds of its TTL left (a third passed).
    fn due(&self, now: Instant) -> bool {
        self.until.saturating_duration_since(now) < self.ttl * 2 / 3
    }
}

/// What a renewal sends: for each TTL, the URNs due and their keys (in the same order).
#[derive(Default)]
pub(in crate::proxy) struct Due {
    pub(in crate::proxy) batches: Vec<(Duration, Vec<String>, Vec<Value>)>,
    /// Until when every key not in `batches` surely lives, by this process's clock, less
    /// the margin for clock drift (`None`: no such key).
    pub(in crate::proxy) others_fresh_until: Option<Instant>,
}

impl Due {
    /// Until when every key surely lives once the batches, sent after `since`, were
    /// answered: the earliest of the keys not sent and of those sent.
    pub(in crate::proxy) fn fresh_until(&self, since: Instant) -> Option<Instant> {
        self.batches
            .iter()
            .map(|(ttl, _, _)| surely_until(since, *ttl))
            .chain(self.others_fresh_until)
            .min()
    }

    /// How many keys it sends.
    pub(in crate::proxy) fn len(&self) -> usize {
        self.batches.iter().map(|(_, urns, _)| urns.len()).sum()
    }
}

impl OwnedUrns {
    /// Records a claim of `urn`'s key with `ttl`, sent at `sent`; `true` if it was not
    /// owned. A URN owned already keeps the longer TTL class and the earlier of the two
    /// expiries (two claims may run in either order).
    pub(in crate::proxy) fn insert(&mut self, urn: String, sent: Instant, ttl: Duration) -> bool {
        let until = sent + ttl;
        match self.urns.get_mut(&urn) {
            Some(held) => {
                held.until = held.until.min(until);
                held.ttl = held.ttl.max(ttl);
                false
            }
            None => {
                self.urns.insert(urn, Held { until, ttl });
                true
            }
        }
    }

    /// Records a renewal of `urn`'s key (with its own TTL) sent at `sent`.
    pub(in crate::proxy) fn renewed(&mut self, urn: &str, sent: Instant) {
        if let Some(held) = self.urns.get_mut(urn) {
            held.until = held.until.max(sent + held.ttl);
        }
    }

    /// The TTL `urn`'s key is renewed with, if owned.
    pub(in crate::proxy) fn ttl(&self, urn: &str) -> Option<Duration> {
        self.urns.get(urn).map(|h| h.ttl)
    }

    /// Removes a URN; `true` if it was owned.
    pub(in crate::proxy) fn remove(&mut self, urn: &str) -> bool {
        self.urns.remove(urn).is_some()
    }

    pub(in crate::proxy) fn len(&self) -> usize {
        self.urns.len()
    }

    pub(in crate::proxy) fn iter(&self) -> impl Iterator<Item = &String> {
        self.urns.keys()
    }

    /// Takes every URN out.
    pub(in crate::proxy) fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        self.urns.drain().map(|(urn, _)| urn)
    }

    /// The keys to renew at `now`: those past a third of their TTL, and those `also` names
    /// (every one after a lapse whose takeovers are not known; those given away after one
    /// whose are); `key` makes a URN's key (called for those sent only).
    pub(in crate::proxy) fn due(
        &self,
        now: Instant,
        also: impl Fn(&str) -> bool,
        key: impl Fn(&str) -> String,
    ) -> Due {
        let mut due = Due::default();
        for (urn, held) in &self.urns {
            if held.due(now) || also(urn) {
                let at = match due.batches.iter().position(|(t, _, _)| *t == held.ttl) {
                    Some(at) => at,
                    None => {
                        due.batches.push((held.ttl, Vec::new(), Vec::new()));
                        due.batches.len() - 1
                    }
                };
                let (_, urns, keys) = &mut due.batches[at];
                urns.push(urn.clone());
                keys.push(Value::from(key(urn)));
            } else {
                // `until` counts the TTL from the send: the same margin as a renewal's.
                let fresh = surely_until(held.until - held.ttl, held.ttl);
                due.others_fresh_until =
                    Some(due.others_fresh_until.map_or(fresh, |f| f.min(fresh)));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::OwnedUrns;

    const SHORT: Duration = Duration::from_secs(15);
    const LONG: Duration = Duration::from_secs(120);

    /// Only the keys past a third of their TTL are sent; the others bound the freshness.
    #[test]
    fn a_renewal_sends_only_the_keys_past_a_third_of_their_ttl() {
        let t0 = Instant::now();
        let mut owned = OwnedUrns::default();
        assert!(owned.insert("plain".into(), t0, SHORT));
        assert!(owned.insert("act".into(), t0, LONG));
        assert!(!owned.insert("act".into(), t0, SHORT), "owned already");
        assert_eq!(owned.ttl("act"), Some(LONG), "keeps the longer class");
        // The earlier expiry of the two claims: due as a short one.
        let due = owned.due(t0 + Duration::from_secs(6), |_| false, |u| format!("k:{u}"));
        assert_eq!(due.len(), 2);
        for urn in ["plain", "act"] {
            owned.renewed(urn, t0 + Duration::from_secs(6));
        }
        // 10 s later: the plain key is due again, the activation's not for 40 s.
        let at = t0 + Duration::from_secs(16);
        let due = owned.due(at, |_| false, |u| format!("k:{u}"));
        assert_eq!(due.len(), 1);
        let (ttl, urns, keys) = &due.batches[0];
        assert_eq!(
            (*ttl, urns.as_slice()),
            (SHORT, ["plain".to_owned()].as_slice())
        );
        assert_eq!(keys[0].as_string().as_deref(), Some("k:plain"));
        let fresh = due.fresh_until(at).unwrap();
        // The activation's key: renewed at 6 s for 120 s, less a tenth.
        let act = t0 + Duration::from_secs(6) + LONG - LONG / 10;
        assert_eq!(fresh, (at + SHORT - SHORT / 10).min(act));
        // Every key after a lapse; after one whose takeovers are known, those due and those
        // given away.
        assert_eq!(owned.due(at, |_| true, |u| u.to_owned()).len(), 2);
        assert_eq!(owned.due(at, |u| u == "act", |u| u.to_owned()).len(), 2);
        assert!(owned.remove("plain"));
        assert!(!owned.remove("plain"));
        assert!(
            owned
                .due(at, |_| false, |u| u.to_owned())
                .batches
                .is_empty()
        );
        assert_eq!(owned.drain().count(), 1);
        assert!(
            owned
                .due(at, |_| true, |u| u.to_owned())
                .fresh_until(at)
                .is_none()
        );
    }
}
