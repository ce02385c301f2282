//! Actors activated on demand by URN pattern: the first request for `user:42` makes one
//! system of the pattern's group claim the URN (the fenced lease every URN has), construct
//! the actor and serve it; an idle activation is passivated (stopped gracefully, so its
//! `on_stop` can save, then its URN released: `passivation.rs`). An activation's state
//! lives in its [`StateStore`] (`store`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use fred::prelude::*;

use super::activations::{Activated, Activation, HeldElsewhere, Live, Pattern};
use super::migration;
use super::placement;
use super::standing::Standing;
use super::store::{EMPTY_STATE_TTL, StateStore};
use crate::conn::{as_bytes, owned};
use crate::proxy::serve::urn_keys;
use crate::proxy::shared::Shared;
use crate::random::random_token;

/// Serves `urn` under `pattern`: the local activation, or a new one once this system
/// claimed the URN, or the system that holds it.
pub(in crate::proxy) async fn activate(
    shared: &Arc<Shared>,
    urn: &str,
    pattern: &Arc<Pattern>,
) -> Activated {
    let entry = shared.activations.lock_for(urn);
    let (mut one_at_a_time, went) = entry.take().await;
    if let Some(live) = shared.activations.live().get_mut(urn)
        && live.actor.is_alive()
    {
        live.last_used = Instant::now();
        live.uses += 1;
        return Activated::Here(live.actor.clone(), live.standing.clone());
    }
    // Handed away, or found held elsewhere, while this request waited: no need to ask.
    if let Some(holder) = went {
        return Activated::HeldBy(holder);
    }
    {
        let mut reg = shared.registry();
        reg.activating.insert(urn.to_owned());
        reg.local.insert(urn.to_owned(), true);
    }
    let forget = |shared: &Shared| {
        let mut reg = shared.registry();
        reg.activating.remove(urn);
        reg.local.remove(urn);
    };
    let token = format!("{}@{}", random_token(), shared.system_id);
    let standing = Arc::new(Standing::default());
    let state_key = shared.keys.state(urn);
    let store = StateStore::new(
        shared.cmd.clone(),
        state_key.clone(),
        token.clone(),
        standing.clone(),
        shared.config.codec.clone(),
        shared.config.durability,
    );
    let sent = shared.config.durability.sending(&shared.cmd);
    let claimed_at = Instant::now();
    let opened = match claim(shared, urn, &state_key, &token).await {
        Ok(Value::Integer(1)) => None,
        Ok(Value::Array(got)) if got.first().and_then(Value::as_i64) == Some(1) => {
            let mut got = got.into_iter().skip(1).map(Value::into_bytes);
            Some(Opened {
                data: got.next().flatten(),
                applied: got.next().flatten(),
                carried: got.next().flatten(),
            })
        }
        Ok(other) => {
            forget(shared);
            let owner = as_bytes(&other)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            if !owner.is_empty() {
                *one_at_a_time = HeldElsewhere::now(owner.clone());
            }
            return Activated::HeldBy(owner);
        }
        Err(e) => {
            forget(shared);
            return Activated::Unavailable(e.to_string());
        }
    };
    // A claim a promotion could undo would let another member activate it too (and the
    // state's ownership taken with it, writes of an earlier activation win).
    let key = shared.keys.urn(urn);
    if let Err(e) = shared
        .config
        .durability
        .replicated(&shared.cmd, &key, &sent)
        .await
    {
        forget(shared);
        urn_keys::release_urns(shared, vec![urn.to_owned()]).await;
        return Activated::Unavailable(e);
    }
    {
        let mut reg = shared.registry();
        reg.conflicts.remove(urn);
        reg.owned
            .insert(urn.to_owned(), claimed_at, shared.activation_urn_ttl());
    }
    // A state carried here by a move (`migration.rs`).
    let carried_in = opened.as_ref().is_some_and(|o| o.carried.is_some());
    if let Some(opened) = opened {
        if let Some(applied) = opened.applied {
            standing.applied.opened(&applied);
        }
        store.opened_with(opened.data, opened.carried);
    }
    let activation = Activation {
        urn: urn.to_owned(),
        id: urn[pattern.prefix.len()..].to_owned(),
        store,
    };
    let made = (pattern.make)(shared.system.clone(), activation).await;
    if let Ok(actor) = &made {
        shared.activations.live().insert(
            urn.to_owned(),
            Live {
                actor: actor.clone(),
                pattern: pattern.clone(),
                last_used: Instant::now(),
                uses: 1,
                standing: standing.clone(),
                state_key: state_key.clone(),
                token: token.clone(),
            },
        );
        // The directory counts it before it answers (a member that places the pattern's
        // next URN reads it then), unless a write of the count is under way already: that
        // one writes it again once done (`placement.rs`). An activation moved here (a
        // drain's, a rebalance's) answers first: its requests waited for the move already,
        // and the count it adds is the one its old member took off (a burst of them came
        // in one or two writes, each a round trip their first requests waited for).
        if carried_in {
            let (shared, prefix) = (shared.clone(), pattern.prefix.clone());
            tokio::spawn(async move { placement::report_activations(&shared, &prefix).await });
        } else {
            placement::report_activations(shared, &pattern.prefix).await;
        }
    }
    match made {
        Ok(actor) => {
            shared.registry().activating.remove(urn);
            super::passivation::evict_over_cap(shared);
            crate::metrics::activation(&shared.system_id, &pattern.prefix, "activated");
            tracing::debug!(%urn, system = %shared.system_id, "activated");
            Activated::Here(actor, standing)
        }
        Err(text) => {
            forget(shared);
            let was_owned = shared.registry().owned.remove(urn);
            if was_owned {
                urn_keys::release_urns(shared, vec![urn.to_owned()]).await;
            }
            // Its state key, opened by the claim, deleted unless it holds data.
            super::passivation::close_states(shared, vec![(state_key, token)]).await;
            crate::metrics::activation(&shared.system_id, &pattern.prefix, "refused");
            Activated::Refused(text)
        }
    }
}

/// An activation another member moved here (its moved-in notice read: `serve/urn_keys.rs`,
/// `hand_urn`): activated now, in a task of its own, so that the requests that waited for
/// the move find it up (or coming up: they wait for its URN's lock). Not while draining
/// (a draining system activates nothing), nor for a URN of no pattern served here.
pub(in crate::proxy) fn activate_moved_in(shared: &Arc<Shared>, urn: &str) {
    if shared.draining.load(Ordering::Acquire) || shared.activations.is_live(urn) {
        return;
    }
    let Some(pattern) = shared.activations.pattern_for(urn) else {
        return;
    };
    let (shared, urn) = (shared.clone(), urn.to_owned());
    tokio::spawn(async move {
        if let Activated::Here(..) = activate(&shared, &urn, &pattern).await {
            tracing::debug!(%urn, system = %shared.system_id, "activated as it moved in");
        }
    });
}

/// What the claim read as it made the activation its state's owner ([`CLAIM_OPEN_SCRIPT`]).
///
/// [`CLAIM_OPEN_SCRIPT`]: crate::protocol::CLAIM_OPEN_SCRIPT
struct Opened {
    /// The state stored.
    data: Option<fred::bytes::Bytes>,
    /// The requests its last writer applied and did not acknowledge (`applied.rs`).
    applied: Option<fred::bytes::Bytes>,
    /// The state the activation before carried here (`migration.rs`).
    carried: Option<fred::bytes::Bytes>,
}

/// Claims `urn` for this system and, outside a cluster, makes activation `token` the owner
/// of its state in the same step ([`CLAIM_OPEN_SCRIPT`]): 1 (claimed: in a cluster),
/// `{1, data, applied, carried}` (claimed and opened), or the id of the system holding it.
///
/// [`CLAIM_OPEN_SCRIPT`]: crate::protocol::CLAIM_OPEN_SCRIPT
async fn claim(
    shared: &Shared,
    urn: &str,
    state_key: &str,
    token: &str,
) -> Result<Value, fred::error::Error> {
    let lease = Value::Integer(shared.activation_urn_ttl().as_millis() as i64);
    let system = owned(shared.system_id.clone());
    if shared.cmd.is_clustered() {
        // The URN's key and its state's are in two slots: the store opens on its own.
        let key = vec![owned(shared.keys.urn(urn))];
        return shared
            .scripts
            .claim
            .eval(&shared.cmd, key, vec![system, lease])
            .await;
    }
    let keys = vec![
        owned(state_key.to_owned()),
        owned(shared.keys.urn(urn)),
        owned(migration::carried_key(state_key)),
    ];
    let args = vec![
        owned(token.to_owned()),
        Value::Integer(EMPTY_STATE_TTL.as_millis() as i64),
        system,
        lease,
    ];
    shared
        .scripts
        .claim_open
        .eval(&shared.cmd, keys, args)
        .await
}
