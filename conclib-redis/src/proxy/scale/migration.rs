//! Moving an activation to another member (a drain): its URN's key handed to that member
//! ([`hand_urn`]), and its in-memory state carried.
//!
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

use fred::prelude::*;

use crate::conn::owned;
use crate::proxy::shared::Shared;
use crate::script::Script;

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

/// Hands the URN's key over to system `target` when it names this system still: 1, else
/// 0 (`KEYS[1]` = the URN key; `ARGV[1]` = this system, `ARGV[2]` = the target, `ARGV[3]`
/// = the key's TTL, ms).
const HAND_URN_SCRIPT: &str = r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1";

/// Gives `urn`'s key, held by this system, to system `target` for `urn_ttl` (its
/// activation stopped here): the next request goes straight to `target`, which activates
/// the URN (its claim finds the key its own). Whether it was handed.
pub(in crate::proxy) async fn hand_urn(shared: &Shared, urn: &str, target: &str) -> bool {
    let ttl = Value::Integer(shared.config.urn_ttl.as_millis().max(1) as i64);
    let r = Script::new(HAND_URN_SCRIPT)
        .eval(
            &shared.cmd,
            vec![owned(shared.keys.urn(urn))],
            vec![
                owned(shared.system_id.clone()),
                owned(target.to_owned()),
                ttl,
            ],
        )
        .await;
    matches!(r, Ok(Value::Integer(1)))
}
