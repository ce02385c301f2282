//! Actors activated on demand by URN pattern: the first request for `user:42` makes one
//! system of the pattern's group claim the URN (the fenced lease every URN has), construct
//! the actor and serve it; an idle activation is passivated (stopped gracefully, so its
//! `on_stop` can save, then its URN released). An activation's state lives in its
//! [`StateStore`] (`store`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::activations::{Activated, Activation, Live, Pattern};
use super::eviction;
use super::migration;
use super::placement;
use super::standing::Standing;
use super::store::{EMPTY_STATE_TTL, StateStore};
use crate::conn::{as_bytes, owned};
use crate::overload::{Eviction, resident_bytes};
use crate::proxy::serve::urn_keys;
use crate::proxy::shared::Shared;
use crate::random::random_token;

/// How long passivation waits for an actor's graceful stop (its `on_stop` saving) before it
/// kills it.
const PASSIVATION_STOP_WAIT: Duration = Duration::from_secs(10);

/// How long a move waits for its activation's mailbox to be empty before it stops the
/// activation all the same ([`until_nothing_queued`]).
const MOVE_WAITS_FOR_EMPTY_MAILBOX: Duration = Duration::from_millis(25);

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
            evict_over_cap(shared);
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
            close_states(shared, vec![(state_key, token)]).await;
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

/// Passivates the activations idle for longer than their pattern allows (those due, not
/// every activation: [`LiveSet::due_idle`](super::activations::LiveSet::due_idle)), and,
/// with `sweep`, forgets those whose actor stopped by itself (its URN is released as any
/// stopped actor's; the URN journal's catch-up forgets them as they stop: this is the
/// safety net).
pub(in crate::proxy) async fn passivate_idle(shared: &Arc<Shared>, sweep: bool) {
    let idle = {
        let mut live = shared.activations.live();
        if sweep {
            live.retain(|_, l| l.actor.is_alive());
        }
        live.due_idle(Instant::now(), HOUSEKEEPING_TICK)
    };
    if idle.is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move { passivate_in_batches(&shared, idle, false, None).await });
}

/// Moves an activation to another member (a drain, a rebalance, a message only another
/// build decodes): passivated now, marked moving (its store carries its state:
/// `migration.rs`), then the URN's key handed to `target` rather than released (the next
/// request goes straight to `target`, which activates the URN; the key lapses after
/// `urn_ttl` if none comes). Released when there is no target or the
/// hand-over fails (its next request places it; the state is carried all the same).
pub(in crate::proxy) async fn move_away(
    shared: &Arc<Shared>,
    urn: &str,
    target: Option<&str>,
) -> Moved {
    until_nothing_queued(shared, urn).await;
    let stopping = Instant::now();
    let handed = passivate_many(shared, &[urn.to_owned()], true, Moving::To(target)).await;
    Moved {
        paused: stopping.elapsed(),
        handed: handed == 1,
    }
}

/// What became of an activation [`move_away`] moved.
#[derive(Debug, Clone, Copy)]
pub(in crate::proxy) struct Moved {
    /// How long its URN paused: from its stop on, once nothing was queued
    /// ([`until_nothing_queued`]; it serves as usual until then).
    pub(in crate::proxy) paused: Duration,
    /// Its URN's key is the target's now (else released, or it was not live here).
    pub(in crate::proxy) handed: bool,
}

/// Waits until `urn`'s actor has nothing queued, up to [`MOVE_WAITS_FOR_EMPTY_MAILBOX`]. A
/// move stops the actor gracefully, its queued requests handled first, and every request
/// that comes meanwhile waits for them, then for the hand-over: stopped when nothing is
/// queued, those wait for the hand-over only (Orleans moves a grain when it is idle for
/// the same reason). Looked at every millisecond: a mailbox has no event for emptying, and
/// a move is rare; the requests that come meanwhile are served here as usual.
async fn until_nothing_queued(shared: &Shared, urn: &str) {
    let until = Instant::now() + MOVE_WAITS_FOR_EMPTY_MAILBOX;
    while Instant::now() < until {
        let queued = shared
            .activations
            .live()
            .get(urn)
            .map_or(0, |l| l.actor.mailbox_len());
        if queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether a passivation moves its activations (to a member, when one is given).
#[derive(Debug, Clone, Copy)]
enum Moving<'a> {
    No,
    To(Option<&'a str>),
}

/// [`passivate_many`] `eviction::PASSIVATIONS_AT_ONCE` at a time.
async fn passivate_in_batches(
    shared: &Arc<Shared>,
    urns: Vec<String>,
    now: bool,
    event: Option<&'static str>,
) {
    for batch in urns.chunks(eviction::PASSIVATIONS_AT_ONCE) {
        if let Some(event) = event {
            for urn in batch {
                if let Some(prefix) = crate::protocol::pattern_prefix(urn) {
                    crate::metrics::activation(&shared.system_id, prefix, event);
                }
            }
        }
        passivate_many(shared, batch, now, Moving::No).await;
    }
}

/// Passivates `urns` together (unless `now`, those still idle): each actor stopped
/// gracefully, all at once (their `on_stop`s save, or carry their state when `moving`),
/// then their state keys left without data deleted in one pipeline, their URN keys
/// released in another (handed to the member `moving` names instead, if any), and each
/// pattern's count written once. Each URN's lock is held until its key is released (not
/// until the counts are written): a request for it waits, then activates it again.
/// Returns how many keys were handed to the member `moving` names.
async fn passivate_many(
    shared: &Arc<Shared>,
    urns: &[String],
    now: bool,
    moving: Moving<'_>,
) -> usize {
    let target = match moving {
        Moving::To(target) => target,
        Moving::No => None,
    };
    let entries: Vec<_> = urns
        .iter()
        .map(|u| shared.activations.lock_for(u))
        .collect();
    let stopping = entries.iter().map(|entry| async move {
        let held = entry.lock.lock().await;
        let live = {
            let mut live = shared.activations.live();
            if !live.get(&entry.urn).is_some_and(|l| now || l.is_idle()) {
                return None;
            }
            live.remove(&entry.urn)?
        };
        // No longer a local actor of the system's, and left alone by the heartbeat's
        // scans until its key is released or handed below: the catch-up, which sees the
        // actor stop before the hand-over, must not release its key meanwhile (the next
        // request would place the URN anew instead of going to the target).
        {
            let mut reg = shared.registry();
            reg.local.remove(&entry.urn);
            reg.stopping.insert(entry.urn.clone());
        }
        if matches!(moving, Moving::To(_)) {
            // Moving: marked on the very activation stopped here, under its lock (one
            // marked before, by whoever decided the move, may have been replaced
            // meanwhile), so that its store carries its state and a request it did not
            // start is read again.
            live.standing.leaving.store(true, Ordering::Release);
            live.standing.moving.store(true, Ordering::Release);
            // Its store hands the key over as it carries the state, if its `on_stop` does;
            // else the hand-over runs below, after the stop.
            if let Some(target) = target {
                let group = crate::protocol::pattern_group(&live.pattern.prefix);
                let handing = urn_keys::Handing::Moved { group: &group };
                let h = urn_keys::hand_over(shared, &entry.urn, target, handing);
                live.standing.move_with(h);
            }
        }
        stop_gracefully(&entry.urn, &live.actor).await;
        Some((held, entry.urn.as_str(), live))
    });
    let stopped: Vec<_> = futures_util::future::join_all(stopping)
        .await
        .into_iter()
        .flatten()
        .collect();
    if stopped.is_empty() {
        return 0;
    }
    // A state carried to the next activation keeps its key (`migration.rs`).
    let empty = stopped
        .iter()
        .filter(|(_, _, l)| !l.standing.carried.load(Ordering::Acquire))
        .map(|(_, _, l)| (l.state_key.clone(), l.token.clone()))
        .collect();
    close_states(shared, empty).await;
    let owned: Vec<String> = {
        let mut reg = shared.registry();
        stopped
            .iter()
            .filter(|(_, urn, _)| {
                reg.local.remove(*urn);
                reg.stopping.remove(*urn);
                reg.owned.remove(urn)
            })
            .map(|(_, urn, _)| (*urn).to_owned())
            .collect()
    };
    let mut release = Vec::with_capacity(owned.len());
    let mut handed_keys = 0;
    for urn in owned {
        let Some(live) = stopped
            .iter()
            .find(|(_, u, _)| *u == urn)
            .map(|(_, _, l)| l)
        else {
            release.push(urn);
            continue;
        };
        let handed = match target {
            Some(target) => {
                // Handed by its store already, as it carried its state; else handed now.
                let handed = live.standing.handed.load(Ordering::Acquire)
                    || match live.standing.take_hand_over() {
                        Some(h) => urn_keys::hand(shared, h).await == urn_keys::HandedUrn::Handed,
                        None => false,
                    };
                if handed && shared.draining.load(Ordering::Acquire) {
                    shared.activations.note_handed(&urn, target);
                }
                handed
            }
            None => false,
        };
        if handed {
            handed_keys += 1;
        } else {
            release.push(urn);
        }
    }
    urn_keys::release_urns(shared, release).await;
    // Their keys released or handed: the requests that waited for them go on now, not
    // after the counts' writes below (a moved activation's requests wait for its move).
    let stopped: Vec<(&str, Live)> = stopped
        .into_iter()
        .map(|(_held, urn, live)| (urn, live))
        .collect();
    let mut prefixes: Vec<String> = stopped
        .iter()
        .map(|(_, l)| l.pattern.prefix.clone())
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    for (urn, live) in &stopped {
        crate::metrics::activation(&shared.system_id, &live.pattern.prefix, "passivated");
        tracing::debug!(%urn, system = %shared.system_id, "passivated");
    }
    let report = {
        let shared = shared.clone();
        async move {
            for prefix in prefixes {
                placement::report_activations(&shared, &prefix).await;
            }
        }
    };
    if matches!(moving, Moving::To(_)) {
        // A move's caller goes on at once (a request that asked for the move waits for
        // its own hand-over only); the count a target adds is written by the target.
        tokio::spawn(report);
    } else {
        report.await;
    }
    handed_keys
}

/// Stops `actor` gracefully (its `on_stop` may save), killing it if it does not stop
/// within [`PASSIVATION_STOP_WAIT`].
async fn stop_gracefully(urn: &str, actor: &conclib_core::DynActorRef) {
    actor.stop();
    if tokio::time::timeout(PASSIVATION_STOP_WAIT, actor.wait_for_stop())
        .await
        .is_err()
    {
        tracing::warn!(%urn, "an activation did not stop within {PASSIVATION_STOP_WAIT:?} of its passivation; killed it");
        actor.kill();
        let _ = actor.wait_for_stop().await;
    }
}

/// Deletes the state keys of these (key, token) activations that still own them and hold
/// no data, in one pipeline.
async fn close_states(shared: &Shared, states: Vec<(String, String)>) {
    let calls = states
        .into_iter()
        .map(|(key, token)| (key, vec![owned(token)]))
        .collect();
    shared
        .scripts
        .close_state
        .eval_many(&shared.cmd, calls)
        .await;
}

/// Passivates every activation (at shutdown), so that the group serves them at once.
pub(in crate::proxy) async fn passivate_all(shared: &Arc<Shared>) {
    let urns = shared.activations.active();
    passivate_in_batches(shared, urns, true, None).await;
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
            passivate_in_batches(&shared, urns, true, Some("evicted")).await;
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
    passivate_in_batches(shared, urns, true, Some("shed")).await;
}

/// How often the activations' housekeeping looks at them.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(250);

/// Every how many housekeeping ticks the activations whose actor stopped are swept (30 s).
const SWEEP_EVERY: u32 = 120;

/// The activations' housekeeping, every 250 ms while the proxy runs: idle ones passivated,
/// the activation cap and memory shedding applied; every 30 s, activations whose actor
/// stopped forgotten. Runs beside the lease's heartbeat, in its task (`handle.rs`).
pub(in crate::proxy) async fn housekeeping_loop(shared: Arc<Shared>) {
    let mut idle = tokio::time::interval(HOUSEKEEPING_TICK);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        idle.tick().await;
        ticks = (ticks + 1) % SWEEP_EVERY;
        passivate_idle(&shared, ticks == 0).await;
        overload_tick(&shared).await;
    }
}
