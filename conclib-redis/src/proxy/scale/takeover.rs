//! Failover of a pattern's activations by membership: when a system is gone, one member of
//! the pattern's group chooses, by the pattern's placement, a live member for each of the
//! pattern's URNs the gone system held, and moves the requests still waiting in the gone
//! system's stream for each URN to the own stream of the member chosen for it, giving it
//! the URN's key in the same step: each URN is activated there and its requests answered,
//! in order and with their deadlines, instead of waiting for the URN keys to lapse and
//! ending `Timeout`. (Through the group's stream, a URN's requests could be read by two
//! members and placed apart, out of order.)
//!
//! Gone means: no system lease (it lapsed: the system's one liveness record, renewed every
//! third of the lease), or a lease naming a process on this host that no longer exists
//! (taken over at once). The move checks it again in its script: a system that holds a
//! lease again (a process of it started, which reads its stream from then on) keeps its
//! requests. A system paused past its lease and back finds its lease lapsed:
//! what it had queued for its actors is fenced out (`Lease::fence`, `serve/lease_state.rs`), what it had read but
//! not handed on is no longer pending on it, and it claims its URN keys again before it
//! serves (`lease.rs`), finding them given away, so it handles none of what was moved; a
//! handler already running at the pause finishes, and its write to the state is refused
//! once the new activation opened it, or recorded and known by the new one (a moved
//! request keeps its first entry as its identity, `field::MOVED`). Not in a Redis
//! Cluster: the streams live in different slots, where no script reaches them all (there
//! the URN keys lapse after `urn_ttl`).

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use fred::prelude::*;

use super::placement;
use crate::conn::{self, as_bytes, keyed, owned, s};
use crate::protocol::{self, CONSUMER_GROUP};
use crate::proxy::serve::lease;
use crate::proxy::shared::Shared;
use crate::script::Script;

/// Entries looked at per step of a takeover.
const BATCH: usize = 200;
/// Steps per look, at most: the rest at the next look (an eighth of a lease later, 100 ms at most).
const STEPS: usize = 50;

/// [`TAKE_OVER_SCRIPT`](protocol::TAKE_OVER_SCRIPT), loaded once per process.
static TAKE_OVER: LazyLock<Script> = LazyLock::new(|| Script::new(protocol::TAKE_OVER_SCRIPT));

/// What a look at a pattern's gone systems found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) struct TakenOver {
    /// Requests moved to the member chosen for their URN (to the group's stream when
    /// another system holds it by now).
    pub(in crate::proxy) moved: u64,
    /// Requests whose time was up: dropped.
    pub(in crate::proxy) expired: u64,
    /// How long the oldest request moved had waited in the gone system's stream
    /// (milliseconds): what the failover cost the callers who waited longest.
    pub(in crate::proxy) waited_ms: u64,
}

/// Takes over the requests that systems gone from pattern `prefix`'s directory left in
/// their streams (the module's docs). `shared`: a member instance of the pattern.
pub(in crate::proxy) async fn take_over_gone(shared: &Shared, prefix: &str) -> TakenOver {
    let mut total = TakenOver::default();
    if shared.cmd.is_clustered() {
        return total;
    }
    for system in directory_systems(shared, prefix).await {
        if system == shared.system_id || !system_gone(shared, &system).await {
            continue;
        }
        if !lock_takeover(shared, &system, prefix).await {
            continue;
        }
        let from = Source {
            system: &system,
            lease_key: shared.keys.lease(&system),
            to: MovedTo::Placed,
            steps: STEPS,
        };
        let done = move_requests(shared, prefix, &from).await;
        if done.moved + done.expired > 0 {
            tracing::info!(system = %shared.system_id, gone = %system, pattern = %prefix, moved = done.moved, expired = done.expired, waited_ms = done.waited_ms, "moved the requests a gone system left for a pattern's URNs to the members chosen to activate them");
            crate::metrics::taken_over(
                &shared.system_id,
                prefix,
                done.moved,
                done.expired,
                done.waited_ms,
            );
            // Counted in the system's stats (`ProxyHandle::stats`, its snapshot).
            if let crate::proxy::shared::Role::Member(m) = &shared.role
                && let Some(sys) = m.system.upgrade()
            {
                sys.counters.moved.fetch_add(done.moved, Ordering::Relaxed);
            }
        }
        total.moved += done.moved;
        total.expired += done.expired;
        total.waited_ms = total.waited_ms.max(done.waited_ms);
    }
    total
}

/// Every system in the pattern's directory, live or not (a gone one stays listed for
/// ten leases).
async fn directory_systems(shared: &Shared, prefix: &str) -> Vec<String> {
    let Ok(all) = conn::call(
        &shared.cmd,
        keyed("HKEYS"),
        vec![owned(shared.keys.placement(prefix))],
    )
    .await
    else {
        return Vec::new();
    };
    match all {
        Value::Array(names) => names
            .iter()
            .filter_map(|n| as_bytes(n).map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether system `system` is gone: no system lease, or one naming a process on this
/// host that no longer exists (that lease is then freed). The move checks the lease
/// again in its script.
async fn system_gone(shared: &Shared, system: &str) -> bool {
    lease::lease_gone(shared, shared.keys.lease(system)).await
}

/// Frees `urn`'s key from `holder` when the holder is gone (no system lease: checked
/// again in the script, so a holder back with a lease keeps it) or has no request stream
/// (it drained, and the key was handed to it before the URN was asked there: it never
/// knew it held it, and nothing would read a request sent to it), so that a request read
/// from the pattern's group stream activates the URN at once rather than after the key
/// lapses (`activation_urn_ttl`): such a request never passes through the holder's own stream,
/// where the takeover finds the rest. `true`: freed. Not in a Redis Cluster (the four
/// keys live in different slots): there the key lapses.
pub(in crate::proxy) async fn free_urn_of_gone(shared: &Shared, urn: &str, holder: &str) -> bool {
    if shared.cmd.is_clustered() {
        return false;
    }
    let stream = shared.keys.requests(holder);
    if !system_gone(shared, holder).await && stream_exists(shared, &stream).await {
        return false;
    }
    let freed = Script::new(protocol::FREE_GONE_URN_SCRIPT)
        .eval(
            &shared.cmd,
            vec![
                owned(shared.keys.urn(urn)),
                owned(shared.keys.lease(holder)),
                owned(shared.keys.given(holder)),
                owned(stream),
            ],
            vec![owned(holder.to_owned()), owned(urn.to_owned())],
        )
        .await;
    let freed = matches!(freed, Ok(Value::Integer(1)));
    if freed {
        tracing::info!(system = %shared.system_id, %urn, gone = %holder, "freed the URN of a gone holder to activate it again");
    }
    freed
}

/// Whether `stream` exists (also when Redis did not answer: nothing is freed on a guess).
async fn stream_exists(shared: &Shared, stream: &str) -> bool {
    let exists = conn::call(&shared.cmd, keyed("EXISTS"), vec![owned(stream.to_owned())]).await;
    !matches!(exists, Ok(Value::Integer(0)))
}

/// Takes (or keeps) the lock on taking over `system`'s requests for `prefix`: one
/// member at a time moves them.
async fn lock_takeover(shared: &Shared, system: &str, prefix: &str) -> bool {
    let key = shared.keys.takeover(system, prefix);
    let ttl = Value::Integer(shared.config.lease_ttl.as_millis().max(1) as i64);
    let taken = shared
        .scripts
        .claim
        .eval_many(
            &shared.cmd,
            vec![(key, vec![owned(shared.system_id.clone()), ttl])],
        )
        .await;
    matches!(taken.first(), Some(Ok(Value::Integer(1))))
}

/// The member to activate each of `urns` again (`system` gone): by the pattern's
/// placement among the live members but `system`, counting each choice made (this
/// member when the directory cannot be read).
async fn choose_targets(
    shared: &Shared,
    system: &str,
    prefix: &str,
    urns: &[String],
) -> Vec<String> {
    let sys = match &shared.role {
        crate::proxy::shared::Role::Member(m) => m.system.upgrade(),
        crate::proxy::shared::Role::System => None,
    };
    let placement = sys
        .as_ref()
        .and_then(|s| s.activations.pattern_for_prefix(prefix))
        .map(|p| p.placement.clone());
    let mut members = match placement::directory(shared, sys.as_deref(), prefix, None, None).await {
        Ok((members, _)) => members,
        Err(_) => Vec::new(),
    };
    members.retain(|m| m.system != system);
    urns.iter()
        .map(|urn| {
            let chosen = placement
                .as_ref()
                .filter(|_| !members.is_empty())
                .and_then(|p| p.choose(urn, &members))
                .unwrap_or(&shared.system_id)
                .to_owned();
            if let Some(m) = members.iter_mut().find(|m| m.system == chosen) {
                m.activations += 1;
            }
            chosen
        })
        .collect()
}

/// Whose stream a move walks, and where its URNs' requests go.
pub(in crate::proxy) struct Source<'a> {
    /// The system whose stream is walked.
    pub(in crate::proxy) system: &'a str,
    /// The script moves nothing while this key exists: the system's lease for a gone
    /// system (back, it reads its stream again), a key that never exists for a draining
    /// one (it stopped reading its stream, which is what the check stands for).
    pub(in crate::proxy) lease_key: String,
    /// Where each URN's requests go.
    pub(in crate::proxy) to: MovedTo,
    /// Batches walked at most.
    pub(in crate::proxy) steps: usize,
}

/// Where a move sends each URN's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum MovedTo {
    /// To the own stream of the member the pattern's placement chooses for it (a gone
    /// system's URNs).
    Placed,
    /// To the own stream of the member its URN key names (a draining system's: it handed
    /// its activations over, their URN keys with them), so that they are not read and
    /// passed on once more by a member of the group; to the group's stream when it names
    /// none, or a member whose stream is gone.
    Holder,
}

/// Moves the unacknowledged requests for `prefix`'s URNs out of `from`'s stream, a batch
/// at a time ([`TAKE_OVER_SCRIPT`](protocol::TAKE_OVER_SCRIPT)): the one walk of a
/// system's stream, for a takeover and a drain's sweep alike. Not in a Redis Cluster (the
/// streams live in different slots, where no script reaches them all).
pub(in crate::proxy) async fn move_requests(
    shared: &Shared,
    prefix: &str,
    from: &Source<'_>,
) -> TakenOver {
    let system = from.system;
    let stream = shared.keys.requests(system);
    let target = shared.keys.requests(&protocol::pattern_group(prefix));
    let mut done = TakenOver::default();
    if shared.cmd.is_clustered() {
        return done;
    }
    let mut at = "-".to_owned();
    for _ in 0..from.steps {
        let Ok(Value::Array(entries)) = conn::call(
            &shared.cmd,
            keyed("XRANGE"),
            vec![
                owned(stream.clone()),
                owned(at.clone()),
                s("+"),
                s("COUNT"),
                Value::Integer(BATCH as i64),
            ],
        )
        .await
        else {
            break;
        };
        let Some((first, last)) = range_of(&entries) else {
            break;
        };
        let mut urns: Vec<String> = entries
            .iter()
            .filter_map(urn_of)
            .filter(|urn| protocol::pattern_prefix(urn) == Some(prefix))
            .collect();
        urns.sort();
        urns.dedup();
        let placed = from.to == MovedTo::Placed;
        let targets = match from.to {
            // Where each URN is activated again: one member's own stream for all its
            // requests, so that they are handled in their order.
            MovedTo::Placed if !urns.is_empty() => {
                choose_targets(shared, system, prefix, &urns).await
            }
            MovedTo::Placed => Vec::new(),
            MovedTo::Holder => {
                let targets = holders(shared, &urns).await;
                let (kept, targets): (Vec<String>, Vec<String>) = urns
                    .into_iter()
                    .zip(targets)
                    .filter_map(|(urn, holder)| Some((urn, holder?)))
                    .filter(|(_, holder)| holder != system)
                    .unzip();
                urns = kept;
                targets
            }
        };
        if !placed || !urns.is_empty() {
            let mut members: Vec<&str> = targets.iter().map(String::as_str).collect();
            members.sort_unstable();
            members.dedup();
            let mut keys = vec![
                owned(stream.clone()),
                owned(target.clone()),
                owned(from.lease_key.clone()),
                // Where the keys given away are recorded, for the system back from a lapse.
                owned(shared.keys.given(system)),
            ];
            keys.extend(urns.iter().map(|u| owned(shared.keys.urn(u))));
            keys.extend(members.iter().map(|m| owned(shared.keys.requests(m))));
            let mut args = vec![
                s(CONSUMER_GROUP),
                owned(prefix.to_owned()),
                owned(system.to_owned()),
                owned(first),
                owned(last.clone()),
                Value::Integer(shared.config.urn_ttl.as_millis().max(1) as i64),
                Value::Integer(urns.len() as i64),
            ];
            args.extend(urns.iter().cloned().map(owned));
            args.extend(targets.iter().map(|t| {
                let at = members.iter().position(|m| m == t).unwrap_or(0);
                Value::Integer(at as i64 + 1)
            }));
            args.extend(members.iter().map(|m| owned((*m).to_owned())));
            match TAKE_OVER.eval(&shared.cmd, keys, args).await {
                Ok(Value::Array(counts)) => {
                    let n = |i: usize| counts.get(i).and_then(Value::as_i64).unwrap_or(0);
                    if n(0) < 0 {
                        // The group's stream is gone (the pattern has no member), or the
                        // system is back (it holds a lease again, and reads its stream).
                        break;
                    }
                    done.moved += n(0) as u64;
                    done.expired += n(1) as u64;
                    done.waited_ms = done.waited_ms.max(n(2).max(0) as u64);
                }
                Ok(_) => break,
                // A takeover looks again at the member's next look; a drain's sweep does not.
                Err(e) if placed => {
                    tracing::debug!(error = %e, gone = %system, "could not move a gone system's requests; next look");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not move the requests left in a draining system's stream");
                    break;
                }
            }
        }
        if entries.len() < BATCH {
            break;
        }
        at = format!("({last}");
    }
    done
}

/// The system each of `urns` is held by (its URN key), in one `MGET`; `None` for each when
/// Redis did not answer.
async fn holders(shared: &Shared, urns: &[String]) -> Vec<Option<String>> {
    if urns.is_empty() {
        return Vec::new();
    }
    let keys = urns.iter().map(|u| owned(shared.keys.urn(u))).collect();
    match conn::call(&shared.cmd, keyed("MGET"), keys).await {
        Ok(Value::Array(held)) => held
            .iter()
            .map(|h| as_bytes(h).map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect(),
        _ => vec![None; urns.len()],
    }
}

/// The first and last entry ids of an `XRANGE` answer.
fn range_of(entries: &[Value]) -> Option<(String, String)> {
    let id = |e: &Value| match e {
        Value::Array(parts) => parts
            .first()
            .and_then(as_bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    Some((id(entries.first()?)?, id(entries.last()?)?))
}

/// The `urn` field of an `XRANGE` entry.
fn urn_of(entry: &Value) -> Option<String> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let fields = match parts.get(1)? {
        Value::Array(f) => f.as_slice(),
        _ => return None,
    };
    fields.chunks(2).find_map(|pair| match pair {
        [name, value] if as_bytes(name) == Some(protocol::field::URN.as_bytes()) => {
            as_bytes(value).map(|b| String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fred::prelude::*;

    use crate::conn::{keyed, owned};
    use crate::protocol::{CLOSE_DRAINED_SCRIPT, TAKE_OVER_SCRIPT};
    use crate::script::Script;

    /// A stopping member's sweep deletes the wake-up entries another member's placement
    /// appended to its stream after it stopped reading, as well as its requests (moved to
    /// the group): its stream can then be deleted. A wake-up left behind kept the stream
    /// until the sweeps gave up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_deletes_wake_ups_so_that_the_stream_can_go() {
        let (daemon, client) = crate::daemon::with_client("wake-ups", Duration::from_secs(5)).await;
        let (stream, group_stream) = ("sys:s1:req", "~acct:*:req");
        let call = |cmd: &'static str, args: Vec<&str>| {
            let args = args.into_iter().map(owned).collect();
            crate::conn::call(&client, keyed(cmd), args)
        };
        for key in [stream, group_stream] {
            call("XGROUP", vec!["CREATE", key, "g", "$", "MKSTREAM"])
                .await
                .unwrap();
        }
        // Read and not acknowledged (taken as the member stopped reading), then a request
        // never read, then a wake-up.
        call("XADD", vec![stream, "*", "urn", "acct:1", "ttl", "60000"])
            .await
            .unwrap();
        call(
            "XREADGROUP",
            vec!["GROUP", "g", "s1", "COUNT", "1", "STREAMS", stream, ">"],
        )
        .await
        .unwrap();
        call("XADD", vec![stream, "*", "urn", "acct:2", "ttl", "60000"])
            .await
            .unwrap();
        call("XADD", vec![stream, "*", "v", "1", "placed", "~acct:*"])
            .await
            .unwrap();
        let close = Script::new(CLOSE_DRAINED_SCRIPT);
        let closed = close
            .eval(&client, vec![owned(stream)], vec![owned("g")])
            .await
            .unwrap();
        assert_eq!(closed, Value::Integer(0), "requests wait: kept");

        let take_over = Script::new(TAKE_OVER_SCRIPT);
        let keys = [stream, group_stream, "lease:s1:drained", "given:s1"].map(owned);
        let args = ["g", "acct:", "s1", "-", "+", "60000", "0"].map(owned);
        let got = take_over
            .eval(&client, keys.to_vec(), args.to_vec())
            .await
            .unwrap();
        let moved = match got {
            Value::Array(counts) => counts.first().and_then(Value::as_i64),
            _ => None,
        };
        assert_eq!(moved, Some(2), "both requests moved to the group");
        let left = call("XLEN", vec![stream]).await.unwrap();
        assert_eq!(
            left,
            Value::Integer(0),
            "nothing left, the wake-up included"
        );
        let closed = close
            .eval(&client, vec![owned(stream)], vec![owned("g")])
            .await
            .unwrap();
        assert_eq!(closed, Value::Integer(1), "deleted");
        let in_group = call("XLEN", vec![group_stream]).await.unwrap();
        assert_eq!(in_group, Value::Integer(2));
        daemon.shutdown().unwrap();
    }
}
