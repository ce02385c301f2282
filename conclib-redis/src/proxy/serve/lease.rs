//! Lease keeping: the system's lease and its URN keys, taken, renewed, re-checked after a
//! pause, taken over from a dead predecessor; and the stream's upkeep.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;

use super::given::{self, Renewed};
use super::lease_state::{lease_holder, process_exists, this_host};
use super::stream::FUTURE_ID_TOLERANCE_MS;
use super::urn_keys::{
    IfFree, Which, claim_urns, claims_replicated, renew_urn_keys, renew_urns_in_turn,
};
use super::write;
use crate::conn::{self, as_bytes, keyed, owned, s};
use crate::error::ServeError;
use crate::protocol::CONSUMER_GROUP;
use crate::proxy::shared::Shared;

/// Whether the lease at `key` (a system's, or a group member's) no longer holds: it is
/// absent (lapsed, or released), or it names a process on this host that no longer
/// exists (then it is freed). `false` when Redis does not answer.
pub(in crate::proxy) async fn lease_gone(shared: &Shared, key: String) -> bool {
    let Ok(holder) = conn::call(&shared.cmd, keyed("GET"), vec![owned(key.clone())]).await else {
        return false;
    };
    let Some(holder) = as_bytes(&holder).map(|b| String::from_utf8_lossy(b).into_owned()) else {
        return true;
    };
    let Some((host, pid)) = lease_holder(&holder) else {
        return false;
    };
    if host != this_host() || pid == std::process::id() || process_exists(pid) {
        return false;
    }
    let released = shared
        .scripts
        .release
        .eval_many(&shared.cmd, vec![(key.clone(), vec![owned(holder)])])
        .await;
    if matches!(released.first(), Some(Ok(Value::Integer(1)))) {
        tracing::info!(system = %shared.system_id, %key, pid, "freed the lease of a dead process on this host");
    }
    true
}

/// Gives up this instance's lease (deleted only while it names this instance): its last
/// step as it departs, and a group member's as it leaves. Redis's error, if it answered one.
pub(in crate::proxy) async fn release_lease(shared: &Shared) -> Result<(), fred::error::Error> {
    let released = shared
        .scripts
        .release
        .eval_many(
            &shared.cmd,
            vec![(
                shared.lease.key.clone(),
                vec![owned(shared.lease.token.clone())],
            )],
        )
        .await;
    match released.into_iter().next() {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Takes the system's instance lease, waiting up to one lease time for a crashed
/// predecessor's lease to lapse.
pub(in crate::proxy) async fn acquire_lease(shared: &Shared) -> Result<(), ServeError> {
    let deadline = tokio::time::Instant::now() + shared.config.lease_ttl + Duration::from_secs(1);
    loop {
        let sent = shared.config.durability.sending(&shared.cmd);
        let set = conn::call(
            &shared.cmd,
            keyed("SET"),
            vec![
                owned(shared.lease.key.clone()),
                owned(shared.lease.token.clone()),
                s("NX"),
                s("PX"),
                Value::Integer(shared.config.lease_ttl.as_millis() as i64),
            ],
        )
        .await
        .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
        if !set.is_null() {
            // At `Durability::Replicas`, the lease counts once replicas hold it. A replica
            // slow to acknowledge at start (it just synced, or the host is busy) is waited
            // for again, within half a lease, before the start fails: `WAIT` covers every
            // earlier write of the connection, so asking again is enough.
            let set_at = tokio::time::Instant::now();
            loop {
                match shared
                    .config
                    .durability
                    .replicated(&shared.cmd, &shared.lease.key, &sent)
                    .await
                {
                    Ok(()) => {
                        given::open(shared).await;
                        return Ok(());
                    }
                    Err(_) if set_at.elapsed() < shared.config.lease_ttl / 2 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(ServeError::Unavailable(e)),
                }
            }
        }
        // Absent by now, or held by a dead process on this host (then freed): try again.
        if lease_gone(shared, shared.lease.key.clone()).await {
            continue;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServeError::SystemInUse {
                system_id: shared.system_id.clone(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Renews the leases now unless another task just did (a request met stale leases:
/// this process was paused, or Redis was unreachable).
pub(in crate::proxy) async fn recheck_lease(shared: &Shared) {
    let _one_at_a_time = shared.lease.recheck.lock().await;
    if !shared.lease.fresh() {
        // Boxed: the renewal's commands would otherwise sit in every request's future.
        // The lease first: the URN keys have their own freshness, and are renewed here
        // only if theirs is what ran out (a renewal of them under way is not waited for).
        Box::pin(renew_lease(shared)).await;
        if !shared.lease.fresh() {
            Box::pin(renew_urns_in_turn(shared)).await;
        }
    }
}

/// Renews the instance lease, the queue's TTL and the URN ownerships due, and trims the
/// queue (a group member's upkeep; a system proxy's heartbeat renews its URN keys in a
/// loop of their own, [`heartbeat_loop`](super::heartbeat::heartbeat_loop)).
pub(in crate::proxy) async fn renew(shared: &Shared) {
    renew_lease(shared).await;
    renew_urns_in_turn(shared).await;
}

/// What a renewal of the lease key found ([`renew_lease_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseKey {
    /// It still named this instance: it lived on since the last renewal, so no takeover
    /// ran meanwhile (the takeover's scripts check that the lease is absent).
    Kept,
    /// It had lapsed in Redis, and was taken again (or is absent, not to be taken): a
    /// takeover may have given URN keys away (what the system's record says of them is in
    /// the lease's state, [`Lease::lapsed_in_redis`](super::lease_state::Lease::lapsed_in_redis)).
    Retaken,
    /// Another instance of this system holds it.
    Replaced,
    /// Redis did not answer.
    Unanswered,
}

/// Renews the lease key in `renew` mode (`CLAIM_SCRIPT`: extended only while it names this
/// instance), and takes it again when it had lapsed (`retake`; else answers `Retaken`
/// without taking it). A lapse of this process's own view of the lease (a pause, starved
/// of CPU past the lease's margin) is not one in Redis: only the second asks for every URN
/// key to be claimed again (docs/bench-log.md, "Overload: a starved member's lease"), or,
/// for a system's lease whose record of URN keys given away was whole, only those and the
/// keys due ([`given`]).
async fn renew_lease_key(shared: &Shared, retake: bool) -> LeaseKey {
    if given::kept(shared) {
        return match given::renew(shared, retake).await {
            Renewed::Kept => LeaseKey::Kept,
            Renewed::Retaken(urns) => {
                shared.lease.lapsed_in_redis(urns);
                LeaseKey::Retaken
            }
            Renewed::Absent => LeaseKey::Retaken,
            Renewed::Replaced => LeaseKey::Replaced,
            Renewed::Unanswered => LeaseKey::Unanswered,
        };
    }
    let ttl = Value::Integer(shared.config.lease_ttl.as_millis() as i64);
    let claim = |mode: Option<&'static str>| {
        let mut args = vec![owned(shared.lease.token.clone()), ttl.clone()];
        args.extend(mode.map(s));
        shared
            .scripts
            .claim
            .eval_many(&shared.cmd, vec![(shared.lease.key.clone(), args)])
    };
    let held = |answer: Vec<Result<Value, fred::error::Error>>, took: LeaseKey| match answer
        .into_iter()
        .next()
    {
        Some(Ok(Value::Integer(1))) => took,
        Some(Ok(Value::Integer(0))) => LeaseKey::Retaken,
        Some(Ok(_)) => LeaseKey::Replaced,
        _ => LeaseKey::Unanswered,
    };
    match held(claim(Some("renew")).await, LeaseKey::Kept) {
        // Taken again; or taken by another instance in between, or not answered.
        LeaseKey::Retaken if retake => {
            let took = held(claim(None).await, LeaseKey::Retaken);
            if took == LeaseKey::Retaken {
                shared.lease.lapsed_in_redis(None);
            }
            took
        }
        other => other,
    }
}

/// Runs `pass` (every URN key claimed again after a lapse) while the lease key is renewed
/// beside it every third of a lease, so that a pass longer than a lease (100,000 keys on a
/// starved member) does not let the lease lapse again and the next renewal start over.
/// `None` when the lease was not kept throughout (then the pass is dropped; the next
/// renewal claims them all again).
async fn keeping_lease<T>(
    shared: &Shared,
    pass: impl std::future::Future<Output = T>,
) -> Option<T> {
    let keep = async {
        loop {
            tokio::time::sleep((shared.config.lease_ttl / 3).max(Duration::from_millis(10))).await;
            if renew_lease_key(shared, false).await != LeaseKey::Kept {
                return;
            }
        }
    };
    tokio::select! {
        biased;
        out = pass => Some(out),
        () = keep => None,
    }
}

/// Renews the instance lease (and, after it lapsed in Redis, every URN key with it) and
/// the queue's TTL, and trims the queue.
pub(super) async fn renew_lease(shared: &Shared) {
    // Two renewals at once (the heartbeat's and a request's re-check, after a thaw) could
    // interleave so that the first takes the lapsed lease again while the second finds it
    // kept, before the first has asked for the URN keys: the second would count the lease
    // fresh with keys given away still served here. One at a time, the second runs after
    // the first's pass. The URN keys due are renewed outside it ([`renew_urns_in_turn`]).
    let _one_at_a_time = shared.lease.renewal.lock().await;
    let mut since = std::time::Instant::now();
    // The lease and the URN claims below are replicated once a `WAIT` on the connection
    // that wrote them says so (`claims_replicated`), and that connection was not replaced
    // in between (`Durability::replicated`).
    let sent = shared.config.durability.sending(&shared.cmd);
    match renew_lease_key(shared, true).await {
        LeaseKey::Kept => {}
        // A lease that lapsed in Redis (a pause, Redis out of reach) may have let another
        // system take the URNs over (the takeover gives their keys away once the lease
        // lapsed, whatever their own TTL): they are claimed again, and checked, before they
        // count as held.
        LeaseKey::Retaken => {
            tracing::warn!(system = %shared.system_id, urns = shared.registry().owned.len(), "this system's lease had lapsed in Redis (a pause, Redis out of reach): claiming again the URN keys it may have lost before serving");
        }
        LeaseKey::Replaced => {
            tracing::error!(system = %shared.system_id, "another proxy instance took this system's lease; this one stops reading");
            shared.lease.replaced.store(true, Ordering::Release);
            shared.serving.store(false, Ordering::Release);
            shared.lease.fence().close();
            let _ = shared.stop.send_replace(true);
            return;
        }
        LeaseKey::Unanswered => return, // Redis unreachable: try again next time
    }
    // After a lapse every URN key is claimed again, and checked, before the lease counts as
    // held (another system may have taken some over); otherwise the lease counts as held
    // at once, and the URN keys are renewed after the rest ([`renew_urns_in_turn`]), with
    // their own freshness.
    let epoch = shared.lease.urns_epoch();
    // Taken only to claim URNs here: after a lapse, waiting for a renewal of the URN keys
    // under way (it holds the lock); for the URNs another system held, only if free (they
    // are asked again at the next renewal), so that the lease's renewal does not wait
    // behind a renewal of the URN keys, which runs every third of a lease.
    let guard = if shared.lease.all_urns_asked() {
        Some(shared.scan_lock.lock().await)
    } else if !shared.registry().conflicts.is_empty() {
        shared.scan_lock.try_lock().ok()
    } else {
        None
    };
    // Read once the lock is held: a pass that held it (a lease re-check's) may have claimed
    // every key meanwhile.
    let all_urns = shared.lease.all_urns_asked();
    // Those another system held, at every renewal the lock was free.
    let conflicts: Vec<String> = if guard.is_some() {
        shared.registry().conflicts.keys().cloned().collect()
    } else {
        Vec::new()
    };
    let mut answered = claim_urns(shared, conflicts).await;
    // After a lapse the keys it may have lost are taken, free or not (another system's is
    // refused): every one, or, when the system's record of those given away is whole
    // (`given.rs`), those and the keys that may have expired. The lease is kept beside the
    // pass, then renewed once more, and counted from that one.
    let given = if all_urns {
        shared.lease.given_to_claim()
    } else {
        None
    };
    let all_until = if all_urns {
        let pass = std::time::Instant::now();
        let which = given.as_ref().map_or(Which::Every, Which::DueAnd);
        let Some(until) = keeping_lease(shared, renew_urn_keys(shared, IfFree::Take, which)).await
        else {
            tracing::warn!(system = %shared.system_id, "the lease lapsed again while the URN keys were claimed again; the next renewal starts over");
            return;
        };
        tracing::info!(system = %shared.system_id, ms = pass.elapsed().as_millis() as u64, answered = until.is_some(), given_away = given.as_ref().map(|g| g.len()), "claimed again the URN keys it may have lost (every one when `given_away` is absent)");
        answered &= until.is_some();
        let again = std::time::Instant::now();
        if renew_lease_key(shared, false).await != LeaseKey::Kept {
            return;
        }
        since = again;
        until
    } else {
        None
    };
    // Held only once a promotion would keep them (see `Durability`): one look at the
    // replicas covers the lease and the URN keys claimed before it.
    if answered
        && claims_replicated(shared, &sent).await
        && all_until.is_none_or(|until| shared.lease.mark_urns_fresh_until(since, until, epoch))
    {
        shared.lease.mark_lease_fresh(since);
        if let Some(given) = &given {
            shared.lease.given_claimed(given);
        }
    }
    drop(guard);
    shared
        .stream
        .renew(&shared.cmd, shared.config.queue_ttl)
        .await;
    write::trim_exact(shared).await;
    shared.clock.sync(&shared.cmd).await;
    if matches!(shared.role, crate::proxy::shared::Role::System) {
        reset_poisoned(shared).await;
    }
}

/// Replaces a request stream whose ids run ahead of the clock (a client added an entry
/// with an id in the future) by an empty one, once all its entries were handled.
pub(in crate::proxy) async fn reset_poisoned(shared: &Shared) {
    if !shared.stream.poisoned.load(Ordering::Acquire) {
        return;
    }
    let args = vec![
        s(CONSUMER_GROUP),
        Value::Integer(FUTURE_ID_TOLERANCE_MS),
        Value::Integer(shared.config.queue_ttl.as_millis() as i64),
    ];
    let reset = shared
        .scripts
        .reset
        .eval_many(
            &shared.cmd,
            vec![(shared.stream.requests_key.clone(), args)],
        )
        .await;
    match reset.first() {
        Some(Ok(Value::Integer(1))) => {
            shared.stream.unacked().reset();
            shared.stream.poisoned.store(false, Ordering::Release);
            tracing::warn!(system = %shared.system_id, "reset the request stream: a client had added ids far in the future");
        }
        Some(Ok(Value::Integer(0))) => shared.stream.poisoned.store(false, Ordering::Release),
        Some(Ok(_)) => {} // entries still to handle: next renewal
        Some(Err(e)) => tracing::debug!(error = %e, "could not reset the request stream"),
        None => {}
    }
}
