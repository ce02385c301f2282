//! Actors activated on demand by URN pattern: the first request for `user:42` makes one
//! system of the pattern's group claim the URN (the fenced lease every URN has), construct
//! the actor and serve it; an idle activation is passivated (stopped gracefully, so its
//! `on_stop` can save, then its URN released). An activation's state lives in its
//! [`StateStore`] (`store`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;
use futures_util::stream::{self, StreamExt};

use super::activations::{Activated, Activation, Live, Pattern};
use super::eviction;
use super::placement;
use super::standing::Standing;
use super::store::StateStore;
use crate::conn::{as_bytes, owned};
use crate::overload::{Eviction, resident_bytes};
use crate::protocol::STATE_CLOSE_SCRIPT;
use crate::proxy::scripts::Script;
use crate::proxy::serve::lease;
use crate::proxy::shared::Shared;
use crate::random::random_token;

/// How long passivation waits for an actor's graceful stop (its `on_stop` saving) before it
/// kills it.
const PASSIVATION_STOP_WAIT: Duration = Duration::from_secs(10);

/// Serves `urn` under `pattern`: the local activation, or a new one once this system
/// claimed the URN, or the system that holds it.
pub(in crate::proxy) async fn activate(
    shared: &Arc<Shared>,
    urn: &str,
    pattern: &Arc<Pattern>,
) -> Activated {
    let entry = shared.activations.lock_for(urn);
    let _one_at_a_time = entry.lock.lock().await;
    if let Some(live) = shared.activations.live().get_mut(urn)
        && live.actor.is_alive()
    {
        live.last_used = Instant::now();
        live.uses += 1;
        return Activated::Here(live.actor.clone(), live.standing.clone());
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
    let ttl = Value::Integer(shared.config.urn_ttl.as_millis() as i64);
    let claimed = shared
        .scripts
        .claim
        .eval_many(
            &shared.cmd,
            vec![(
                shared.keys.urn(urn),
                vec![owned(shared.system_id.clone()), ttl],
            )],
        )
        .await;
    match claimed.into_iter().next() {
        Some(Ok(Value::Integer(1))) => {
            // A claim a promotion could undo would let another member activate it too.
            let key = shared.keys.urn(urn);
            if let Err(e) = shared.config.durability.replicated(&shared.cmd, &key).await {
                forget(shared);
                lease::release_urns(shared, vec![urn.to_owned()]).await;
                return Activated::Unavailable(e);
            }
            let mut reg = shared.registry();
            reg.conflicts.remove(urn);
            reg.owned.insert(urn.to_owned());
        }
        Some(Ok(other)) => {
            forget(shared);
            let owner = as_bytes(&other)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Activated::HeldBy(owner);
        }
        Some(Err(e)) => {
            forget(shared);
            return Activated::Unavailable(e.to_string());
        }
        None => {
            forget(shared);
            return Activated::Unavailable("no answer".into());
        }
    }
    let token = format!("{}@{}", random_token(), shared.system_id);
    let standing = Arc::new(Standing::default());
    let state_key = shared.keys.state(urn);
    let activation = Activation {
        urn: urn.to_owned(),
        id: urn[pattern.prefix.len()..].to_owned(),
        store: StateStore::new(
            shared.cmd.clone(),
            state_key.clone(),
            token.clone(),
            standing.clone(),
            shared.config.codec.clone(),
            shared.config.durability,
        ),
    };
    // The directory counts it from now (written while the actor is made: a member that
    // places the pattern's next URN reads it once this one answers).
    let made = async {
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
        }
        made
    };
    let count = shared.activations.count_under(&pattern.prefix) + 1;
    let (made, ()) = tokio::join!(
        made,
        placement::report_count(shared, &pattern.prefix, count)
    );
    match made {
        Ok(actor) => {
            shared.registry().activating.remove(urn);
            evict_over_cap(shared);
            crate::metrics::activation(&shared.system_id, &pattern.prefix, "activated");
            tracing::debug!(%urn, system = %shared.system_id, "activated");
            Activated::Here(actor, standing)
        }
        Err(text) => {
            forget(shared);
            let was_owned = shared.registry().owned.remove(urn);
            if was_owned {
                lease::release_urns(shared, vec![urn.to_owned()]).await;
            }
            crate::metrics::activation(&shared.system_id, &pattern.prefix, "refused");
            placement::report_activations(shared, &pattern.prefix).await;
            Activated::Refused(text)
        }
    }
}

/// Passivates the activations idle for longer than their pattern allows, and forgets
/// those whose actor stopped by itself (its URN is released as any stopped actor's).
pub(in crate::proxy) async fn passivate_idle(shared: &Arc<Shared>) {
    shared.activations.live().retain(|_, l| l.actor.is_alive());
    let idle: Vec<String> = shared
        .activations
        .live()
        .iter()
        .filter(|(_, l)| l.is_idle())
        .map(|(u, _)| u.clone())
        .collect();
    for urn in idle {
        let shared = shared.clone();
        tokio::spawn(async move { passivate(&shared, &urn, false).await });
    }
}

/// Stops an activation gracefully (its `on_stop` may save) and releases its URN.
/// Unless `now`, only if it is still idle.
pub(in crate::proxy) async fn passivate(shared: &Arc<Shared>, urn: &str, now: bool) {
    passivate_then(shared, urn, now, None).await;
}

/// [`passivate`] now, then the URN's key handed to `target` rather than released (a
/// drain: the next request goes straight to `target`, which activates the URN; the key
/// lapses after `urn_ttl` if none comes). Released as by `passivate` when the hand-over
/// fails.
pub(in crate::proxy) async fn passivate_to(shared: &Arc<Shared>, urn: &str, target: &str) {
    passivate_then(shared, urn, true, Some(target)).await;
}

async fn passivate_then(shared: &Arc<Shared>, urn: &str, now: bool, target: Option<&str>) {
    let entry = shared.activations.lock_for(urn);
    let _one_at_a_time = entry.lock.lock().await;
    let live = {
        let mut live = shared.activations.live();
        let still_idle = live.get(urn).is_some_and(|l| now || l.is_idle());
        if !still_idle {
            return;
        }
        live.remove(urn).expect("checked above")
    };
    if target.is_some() {
        // Moving: marked on the very activation stopped here (one marked before it, by
        // whoever decided the move, may have been replaced meanwhile), so that its store
        // carries its state and a request it did not start is read again.
        live.standing.leaving.store(true, Ordering::Release);
        live.standing.moving.store(true, Ordering::Release);
    }
    live.actor.stop();
    if tokio::time::timeout(PASSIVATION_STOP_WAIT, live.actor.wait_for_stop())
        .await
        .is_err()
    {
        tracing::warn!(%urn, "an activation did not stop within {PASSIVATION_STOP_WAIT:?} of its passivation; killed it");
        live.actor.kill();
        let _ = live.actor.wait_for_stop().await;
    }
    // A state carried to the next activation keeps its key (`migration.rs`).
    if !live.standing.carried.load(Ordering::Acquire) {
        let close = Script::new(STATE_CLOSE_SCRIPT);
        close
            .eval_many(&shared.cmd, vec![(live.state_key, vec![owned(live.token)])])
            .await;
    }
    let was_owned = {
        let mut reg = shared.registry();
        reg.local.remove(urn);
        reg.owned.remove(urn)
    };
    if was_owned {
        let handed = match target {
            Some(target) => {
                lease::hand_urn(shared, urn, target, false).await == lease::HandedUrn::Handed
            }
            None => false,
        };
        if !handed {
            lease::release_urns(shared, vec![urn.to_owned()]).await;
        }
    }
    placement::report_activations(shared, &live.pattern.prefix).await;
    crate::metrics::activation(&shared.system_id, &live.pattern.prefix, "passivated");
    tracing::debug!(%urn, system = %shared.system_id, "passivated");
}

/// Passivates every activation (at shutdown), so that the group serves them at once.
pub(in crate::proxy) async fn passivate_all(shared: &Arc<Shared>) {
    let urns = shared.activations.active();
    for urn in urns {
        passivate(shared, &urn, true).await;
    }
}

// The activation cap and memory shedding (`eviction.rs` holds their settings and sums).

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
                .pick(staying - eviction::evict_down_to(max), &policy);
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
    let n = eviction::to_shed(shared.activations.staying(), rss, limit, &shedding);
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

/// Passivates `urns` now, `eviction::PASSIVATIONS_AT_ONCE` at a time, counting each in the
/// activations metric as `event`.
async fn passivate_all_of(shared: &Arc<Shared>, urns: Vec<String>, event: &'static str) {
    stream::iter(urns)
        .for_each_concurrent(eviction::PASSIVATIONS_AT_ONCE, |urn| {
            let shared = shared.clone();
            async move {
                if let Some(prefix) = crate::protocol::pattern_prefix(&urn) {
                    crate::metrics::activation(&shared.system_id, prefix, event);
                }
                passivate(&shared, &urn, true).await;
            }
        })
        .await;
}

/// The activations' housekeeping, every 250 ms while the proxy runs: idle ones passivated,
/// the activation cap and memory shedding applied. Runs beside the lease's heartbeat, in
/// its task (`handle.rs`).
pub(in crate::proxy) async fn housekeeping_loop(shared: Arc<Shared>) {
    let mut idle = tokio::time::interval(Duration::from_millis(250));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        idle.tick().await;
        passivate_idle(&shared).await;
        overload_tick(&shared).await;
    }
}
