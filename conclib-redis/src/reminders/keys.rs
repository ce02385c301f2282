//! Where reminders live in Redis: a URN's reminders in one of [`SHARDS`] shards (by a hash
//! of the URN), each shard's keys under one hash tag so that a shard's scripts run on one
//! Cluster node, and the shards spread over the slots.
//!
//! Per shard `s` of namespace `ns` (tag `{ns:s}`):
//! - `{ns}:rem:{ns:s}:due`: sorted set, member `urn \n name`, score the time (ms since the
//!   Unix epoch, Redis's clock) the reminder is next due, or while it is claimed, when its
//!   claim lapses;
//! - `{ns}:rem:{ns:s}:r:urn \n name`: hash, the reminder (`urn`, `name`, `due`, `period`,
//!   `payload`, `codec`, `claim`, `claims`, `gen` (the registration's, in claim tokens), and
//!   `each` when its missed ticks are delivered
//!   one by one; a periodic one counts `fired` and `coalesced` ticks once it fired);
//! - `{ns}:rem:{ns:s}:u:urn`: set of the URN's reminder names (listing one URN's reminders
//!   without a scan).
//!
//! And per namespace, `{ns}:rem:pollers`: hash, each running poller's last report for the
//! live view (`report.rs`).
//!
//! The Python client computes the same keys (`python/src/conclib/reminders.py`).

/// How many shards the reminders of a namespace are spread over. Fixed: every client and
/// system of a namespace must agree on it.
pub const SHARDS: u32 = 16;

/// The longest reminder name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// FNV-1a, 32 bits: the URN's shard (the Python client computes the same).
pub(crate) fn shard_of(urn: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in urn.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// The keys of one shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardKeys {
    prefix: String,
}

impl ShardKeys {
    pub(crate) fn new(ns: &str, shard: u32) -> Self {
        ShardKeys {
            prefix: format!("{ns}:rem:{{{ns}:{shard}}}"),
        }
    }

    pub(crate) fn of_urn(ns: &str, urn: &str) -> Self {
        Self::new(ns, shard_of(urn))
    }

    pub(crate) fn due(&self) -> String {
        format!("{}:due", self.prefix)
    }

    /// The prefix of the shard's reminder records (the member follows).
    pub(crate) fn record_prefix(&self) -> String {
        format!("{}:r:", self.prefix)
    }

    pub(crate) fn record(&self, urn: &str, name: &str) -> String {
        format!("{}:r:{}", self.prefix, member(urn, name))
    }

    pub(crate) fn index(&self, urn: &str) -> String {
        format!("{}{urn}", self.index_prefix())
    }

    /// The prefix of the shard's URN indexes (the URN follows).
    pub(crate) fn index_prefix(&self) -> String {
        format!("{}:u:", self.prefix)
    }
}

/// A reminder's member in its shard's due set: `urn \n name`.
pub(crate) fn member(urn: &str, name: &str) -> String {
    format!("{urn}\n{name}")
}

/// Checks a reminder name: 1 to [`MAX_NAME_LEN`] bytes, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a reminder name is 1 to {MAX_NAME_LEN} bytes, not {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "a reminder name has no control characters: {name:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urns_keys_share_one_hash_tag() {
        let k = ShardKeys::of_urn("shop", "user:42");
        let s = shard_of("user:42");
        let tag = format!("{{shop:{s}}}");
        for key in [k.due(), k.record("user:42", "renew"), k.index("user:42")] {
            assert!(key.contains(&tag), "{key}");
            assert_eq!(key.find('{'), key.find(&tag), "{key}");
        }
    }

    #[test]
    fn shards_match_the_python_clients_hash() {
        // The values python/tests/test_reminders.py checks of the Python client's hash.
        assert_eq!(shard_of(""), 0x811c_9dc5 % SHARDS);
        assert_eq!(shard_of("user:42"), 0x2f6b_7b82 % SHARDS);
        assert_eq!(shard_of("user:42"), 2);
        assert_eq!(shard_of("py:remind:1"), 12);
        assert_eq!(shard_of("ünï:cødé"), 10);
        let spread: std::collections::BTreeSet<u32> =
            (0..200).map(|i| shard_of(&format!("user:{i}"))).collect();
        assert_eq!(spread.len(), SHARDS as usize);
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(check_name("renew").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
