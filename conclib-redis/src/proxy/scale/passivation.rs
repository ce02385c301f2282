//! Activations stopped: passivated when idle, evicted past the activation cap or shed for
//! memory, all passivated at shutdown, and moved to another member (a drain, a rebalance, a
//! message only another build decodes); and the housekeeping that looks at them every
//! 250 ms. Activating is `activation.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::activations::{HeldElsewhere, Live};
use super::eviction;
use super::placement;
use crate::conn::owned;
use crate::overload::{Eviction, give_back, resident_bytes};
use crate::proxy::serve::urn_keys;
use crate::proxy::shared::Shared;

/// How long passivation waits for an actor's graceful stop (its `on_stop` saving) before it
/// kills it.
const PASSIVATION_STOP_WAIT: Duration = Duration::from_secs(10);

/// How long a move waits for its activation's mailbox to be empty before it stops the
/// activation all the same ([`until_nothing_queued`]).
const MOVE_WAITS_FOR_EMPTY_MAILBOX: Duration = Duration::from_millis(25);

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
    let mut stopped: Vec<_> = futures_util::future::join_all(stopping)
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
                reg.stopping.remove(*urn);
                reg.owned.remove(urn)
            })
            .map(|(_, urn, _)| (*urn).to_owned())
            .collect()
    };
    let mut release = Vec::with_capacity(owned.len());
    let mut handed_keys = 0;
    for urn in owned {
        let Some((held, _, live)) = stopped.iter_mut().find(|(_, u, _)| *u == urn) else {
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
                if handed {
                    // The requests waiting for its lock go there (`HeldElsewhere`), and
                    // during a drain every later one too.
                    **held = HeldElsewhere::now(target);
                    if shared.draining.load(Ordering::Acquire) {
                        shared.activations.note_handed(&urn, target);
                    }
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
pub(super) async fn close_states(shared: &Shared, states: Vec<(String, String)>) {
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
    let Some(mut rss) = resident_bytes() else {
        return;
    };
    if eviction::to_shed(shared.activations.staying(), rss, limit, &shedding) > 0 {
        // What earlier passivations freed may still be resident inside the C heap: given
        // back first, so that only what the activations hold counts.
        give_back();
        rss = resident_bytes().unwrap_or(rss);
    }
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
