//! The URNs a proxy owns, with the claim keys their renewal sends prepared once: renewing
//! 100,000 URNs every few seconds then neither copies nor formats 100,000 strings each time.

use std::collections::HashSet;
use std::sync::Arc;

use fred::prelude::Value;

/// URNs whose ownership key names this system.
#[derive(Default)]
pub(in crate::proxy) struct OwnedUrns {
    urns: HashSet<String>,
    /// Every URN of `urns` and its claim key, as of the last renewal: built again at the
    /// first renewal after the set changed.
    renewal: Option<Arc<Renewal>>,
}

/// What a renewal claims again: the URNs, and their claim keys in the same order (Redis
/// values: a command takes a copy of each, which shares its bytes).
pub(in crate::proxy) struct Renewal {
    pub(in crate::proxy) urns: Vec<String>,
    pub(in crate::proxy) keys: Vec<Value>,
}

impl OwnedUrns {
    /// Adds a URN; `true` if it was not owned.
    pub(in crate::proxy) fn insert(&mut self, urn: String) -> bool {
        let added = self.urns.insert(urn);
        if added {
            self.renewal = None;
        }
        added
    }

    /// Removes a URN; `true` if it was owned.
    pub(in crate::proxy) fn remove(&mut self, urn: &str) -> bool {
        let removed = self.urns.remove(urn);
        if removed {
            self.renewal = None;
        }
        removed
    }

    pub(in crate::proxy) fn contains(&self, urn: &str) -> bool {
        self.urns.contains(urn)
    }

    pub(in crate::proxy) fn len(&self) -> usize {
        self.urns.len()
    }

    pub(in crate::proxy) fn iter(&self) -> impl Iterator<Item = &String> {
        self.urns.iter()
    }

    /// Takes every URN out.
    pub(in crate::proxy) fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        self.renewal = None;
        self.urns.drain()
    }

    /// Whether `renewal` is the one prepared for the set as it is (it did not change since).
    pub(in crate::proxy) fn is_current(&self, renewal: &Arc<Renewal>) -> bool {
        self.renewal
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, renewal))
    }

    /// Every URN owned and its claim key (`key` makes one: called only when the set changed
    /// since the last call).
    pub(in crate::proxy) fn renewal(&mut self, key: impl Fn(&str) -> String) -> Arc<Renewal> {
        self.renewal
            .get_or_insert_with(|| {
                let urns: Vec<String> = self.urns.iter().cloned().collect();
                let keys = urns.iter().map(|u| Value::from(key(u))).collect();
                Arc::new(Renewal { urns, keys })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::OwnedUrns;

    #[test]
    fn a_renewal_is_prepared_again_only_after_a_change() {
        let mut owned = OwnedUrns::default();
        assert!(owned.insert("a".into()));
        assert!(!owned.insert("a".into()));
        let first = owned.renewal(|u| format!("key:{u}"));
        assert_eq!(first.urns, ["a"]);
        assert_eq!(first.keys[0].as_string().as_deref(), Some("key:a"));
        assert!(Arc::ptr_eq(&first, &owned.renewal(|_| unreachable!())));
        // Inserting one owned already changes nothing.
        owned.insert("a".into());
        assert!(Arc::ptr_eq(&first, &owned.renewal(|_| unreachable!())));
        assert!(owned.is_current(&first));
        owned.insert("b".into());
        assert!(!owned.is_current(&first));
        let mut urns = owned.renewal(|u| format!("key:{u}")).urns.clone();
        urns.sort();
        assert_eq!(urns, ["a", "b"]);
        assert!(owned.remove("a"));
        assert!(!owned.remove("a"));
        assert_eq!(owned.renewal(|u| format!("key:{u}")).urns, ["b"]);
        assert_eq!(owned.drain().count(), 1);
        assert!(owned.renewal(|_| unreachable!()).urns.is_empty());
    }
}
