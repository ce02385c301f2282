//! A system proxy's heartbeat: its lease renewed, its URN journal followed (and every actor
//! looked at now and then), its snapshot published, its registrations renewed after a
//! reconnection; beside it, the renewal of its URN keys in turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;

use super::lease::renew_lease;
use super::publish;
use super::urn_keys::{claim_urns, release_urns, renew_urns_in_turn};
use crate::proxy::shared::Shared;

/// Looks at all the system's actors: claims the URNs of new exposed actors, releases
/// those of stopped ones. O(actors): at start, when the URN journal ran past this proxy,
/// and now and then as a safety net; otherwise [`catch_up`] follows the
/// changes.
pub(in crate::proxy) async fn scan(shared: &Shared) {
    let mut position = shared.scan_lock.lock().await;
    // Read before the list: changes after it are read again by the next catch-up.
    *position = *shared.system.urn_changes().borrow();
    let (served_by_groups, activating, stopping) = {
        let reg = shared.registry();
        (
            reg.shared.clone(),
            reg.activating.clone(),
            reg.stopping.clone(),
        )
    };
    let actors = shared.system.named_actors();
    // The live URNs, borrowed from the actors' refs: at 100,000 actors, a scan every
    // 30 s copies no URN it already knows (only those added or removed).
    let mut live: HashMap<&str, &conclib_core::DynActorRef> = HashMap::with_capacity(actors.len());
    for actor in &actors {
        let Some(urn) = actor.urn() else { continue };
        // A stopping activation's key is its passivation's to release or hand over.
        if !actor.is_alive()
            || served_by_groups.contains(urn.as_str())
            || stopping.contains(urn.as_str())
        {
            continue;
        }
        live.insert(urn.as_str(), actor);
    }
    let (added, removed) = {
        let mut reg = shared.registry();
        // Claimed for an activation whose actor is not spawned yet: kept.
        let removed: Vec<String> = reg
            .local
            .keys()
            .filter(|u| !live.contains_key(u.as_str()) && !activating.contains(*u))
            .cloned()
            .collect();
        for u in &removed {
            reg.local.remove(u);
            reg.conflicts.remove(u);
        }
        let mut added = Vec::new();
        for (urn, actor) in &live {
            if !reg.local.contains_key(*urn) {
                let exposes = !actor.remote_messages().is_empty();
                reg.local.insert((*urn).to_owned(), exposes);
                if exposes {
                    added.push((*urn).to_owned());
                }
            }
        }
        for urn in activating {
            if !reg.local.contains_key(&urn) {
                reg.local.insert(urn.clone(), true);
                added.push(urn);
            }
        }
        let removed: Vec<String> = removed
            .into_iter()
            .filter(|u| reg.owned.remove(u))
            .collect();
        (added, removed)
    };
    drop(live);
    drop(actors);
    release_urns(shared, removed).await;
    let _ = claim_urns(shared, added).await;
}

/// Follows the URNs taken and freed since the last look (the system's URN journal), at
/// the cost of the changes, whatever the number of actors; a full [`scan`]
/// when the journal no longer reaches back that far.
///
/// Not when the scan lock is held (most often by a renewal of the URN keys, which at
/// 100,000 activations takes a second or more): then a later tick (every `scan_interval`)
/// does, and the heartbeat does not wait.
async fn catch_up(shared: &Shared) {
    let Ok(mut position) = shared.scan_lock.try_lock() else {
        return;
    };
    let changes = match shared.system.urn_changes_since(*position) {
        conclib_core::UrnChanges::Since { changes, next } => {
            *position = next;
            changes
        }
        conclib_core::UrnChanges::Lost { .. } => {
            drop(position);
            return scan(shared).await;
        }
    };
    if changes.is_empty() {
        return;
    }
    // Each URN changed once or more: its actor as it is now decides.
    let last: std::collections::HashSet<String> = changes
        .into_iter()
        .map(|(urn, _)| urn.as_str().to_owned())
        .collect();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut stopped = Vec::new();
    {
        let mut reg = shared.registry();
        for urn in last {
            if reg.shared.contains(&urn)
                || reg.activating.contains(&urn)
                || reg.stopping.contains(&urn)
            {
                continue;
            }
            match shared.system.lookup(&urn) {
                Ok(actor) if actor.is_alive() => {
                    if !reg.local.contains_key(&urn) {
                        let exposes = !actor.remote_messages().is_empty();
                        reg.local.insert(urn.clone(), exposes);
                        if exposes {
                            added.push(urn);
                        }
                    }
                }
                _ => {
                    stopped.push(urn.clone());
                    if reg.local.remove(&urn).is_some() {
                        reg.conflicts.remove(&urn);
                        if reg.owned.remove(&urn) {
                            removed.push(urn);
                        }
                    }
                }
            }
        }
    }
    // Outside the registry's lock: the live activations' lock is not taken inside it.
    for urn in &stopped {
        shared.activations.forget_stopped(urn);
    }
    release_urns(shared, removed).await;
    let _ = claim_urns(shared, added).await;
}

/// How often a proxy looks at every actor, besides following the URN journal.
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(30);

/// A system proxy's upkeep: its lease, its URN journal followed, its snapshot published;
/// and beside them the renewal of its URN keys, which at 100,000 activations takes a second
/// or more: neither the lease's renewal nor the URN journal's catch-up waits for it.
pub(in crate::proxy) async fn heartbeat_loop(shared: Arc<Shared>) {
    tokio::join!(urn_renewals(&shared), heartbeat(shared.clone()));
}

/// Renews the URN keys past a third of their TTL, looking every third of the lease (a look
/// with none due sends nothing).
async fn urn_renewals(shared: &Shared) {
    let mut tick =
        tokio::time::interval((shared.config.lease_ttl / 3).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // After a lapse the lease's renewal claims them all, before the lease counts.
        if !shared.lease.all_urns_asked() {
            renew_urns_in_turn(shared).await;
        }
    }
}

async fn heartbeat(shared: Arc<Shared>) {
    let mut scan = tokio::time::interval(shared.config.scan_interval);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew =
        tokio::time::interval((shared.config.lease_ttl / 3).max(Duration::from_millis(10)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The safety net behind following the URN journal: a look at every actor.
    let mut full_scan = tokio::time::interval(FULL_SCAN_INTERVAL);
    full_scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    full_scan.tick().await;
    // Both were just done by start_proxy.
    scan.tick().await;
    renew.tick().await;
    let mut reconnects = shared.cmd.reconnect_rx();
    let mut events = true;
    // A URN taken or freed is published at once; the periodic scan is the safety net.
    let mut urn_changes = shared.system.urn_changes();
    urn_changes.mark_unchanged();
    let mut publish = tokio::time::interval(
        shared
            .config
            .snapshot_interval
            // Never ticked without an interval (the branch below is off).
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(10)),
    );
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A failed publish is a warning the first time (the system vanishes from every view),
    // then quiet until one succeeds again.
    let mut publish_failing = false;
    let mut unwatched_ticks = crate::snapshots::UNWATCHED_EVERY;
    loop {
        tokio::select! {
            _ = publish.tick(), if shared.config.snapshot_interval.is_some() => {
                // Unwatched, every UNWATCHED_EVERY intervals and without the brief list.
                let watched = publish::watched(&shared).await;
                unwatched_ticks += 1;
                if !watched && unwatched_ticks < crate::snapshots::UNWATCHED_EVERY {
                    continue;
                }
                unwatched_ticks = 0;
                match publish::publish_snapshot(&shared, watched).await {
                    Err(e) if !publish_failing => {
                        publish_failing = true;
                        tracing::warn!(system = %shared.system_id, error = %e, "could not publish the system's snapshot: live views do not show it");
                    }
                    Err(e) => tracing::debug!(error = %e, "could not publish the system's snapshot"),
                    Ok(()) => publish_failing = false,
                }
            }
            Ok(()) = urn_changes.changed() => catch_up(&shared).await,
            // Not while the URN keys are renewed: the next tick.
            _ = full_scan.tick(), if !shared.lease.urns_renewing.load(Ordering::Acquire) => self::scan(&shared).await,
            _ = scan.tick() => catch_up(&shared).await,
            _ = renew.tick() => renew_lease(&shared).await,
            event = reconnects.recv(), if events => match event {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Redis may have restarted empty: recreate the group, claim everything again.
                    tracing::info!(system = %shared.system_id, "reconnected to Redis; renewing registrations");
                    crate::metrics::reconnected(&shared.system_id);
                    if let Err(e) = shared.stream.ensure_group(&shared.cmd).await {
                        tracing::warn!(error = %e, "could not recreate the consumer group");
                    }
                    // The Redis now answering may be a promoted replica that lacks the
                    // last renewals (docs: Redis topologies and durability): nothing more is
                    // handed to an actor until the lease and every URN are claimed again.
                    shared.lease.lapse();
                    renew_lease(&shared).await;
                }
                Err(_) => events = false,
            },
        }
    }
}
