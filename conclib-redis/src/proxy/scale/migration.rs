//! Live migration of an activation's in-memory state: when an activation is moved to
//! another member (a drain, a rebalance), its store's
//! [`dehydrate`](super::store::StateStore::dehydrate), called from the actor's `on_stop`,
//! leaves its state for the next activation of the URN in `{ns}:state:{urn}:carried`
//! (with the writer's token, for one minute), and the next activation's
//! [`rehydrate`](super::store::StateStore::rehydrate) takes it: the state as it was in
//! memory at the stop, saved or not. A carried state counts only for the activation that
//! follows its writer: it is taken (deleted) by the first `rehydrate`, and ignored when
//! the state's owner is no longer its writer (an activation came in between without
//! rehydrating). Not in a Redis Cluster (the two keys live in different slots): there
//! nothing is carried and the next activation loads what was saved.

use std::time::Duration;

/// How long a carried state waits for the next activation.
pub(in crate::proxy) const CARRIED_TTL: Duration = Duration::from_secs(60);

/// `KEYS[1]` = the state key, `KEYS[2]` = its carried key; `ARGV[1]` = the activation's
/// token, `ARGV[2]` = the state, `ARGV[3]` = TTL (ms). Leaves the state for the next
/// activation if this one owns the state key: 1, else 0.
pub(in crate::proxy) const DEHYDRATE_SCRIPT: &str = r"if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '\n' .. ARGV[2], 'PX', ARGV[3])
return 1";

/// `KEYS[1]` = the state key, `KEYS[2]` = its carried key. Takes (deletes) the carried
/// state, and returns it if its writer is the state's owner still (the activation that
/// came just before), else nil.
pub(in crate::proxy) const REHYDRATE_SCRIPT: &str = r"local c = redis.call('GET', KEYS[2])
if not c then return false end
redis.call('DEL', KEYS[2])
local sep = string.find(c, '\n', 1, true)
if not sep then return false end
if redis.call('HGET', KEYS[1], 'owner') ~= string.sub(c, 1, sep - 1) then return false end
return string.sub(c, sep + 1)";

/// The carried key of state key `state_key`.
pub(in crate::proxy) fn carried_key(state_key: &str) -> String {
    format!("{state_key}:carried")
}
