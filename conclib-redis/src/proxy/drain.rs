//! A member drained before it stops ([`ProxyHandle::drain`](crate::ProxyHandle::drain), what a
//! serving process does on SIGTERM during a rolling update): the others serve everything it
//! served, and no request sent meanwhile is refused or left to time out.
//!
//! In order:
//! 1. Readiness turns [`Draining`](super::Readiness::Draining), and (when another member
//!    of its patterns is live) the system is marked draining: from now on a request for a pattern's URN not live here goes to the
//!    pattern's group (`serve/handoff.rs`; the URN's key released first if it names this
//!    system, as a hand-over decided before the drain leaves it), none is activated here
//!    again.
//! 2. It leaves its groups, keeping its patterns: no more of the groups' requests, and no
//!    more placements on it (it is taken out of each pattern's directory); what its member
//!    lanes had taken is finished first.
//! 3. It hands its activations over, [`MOVES_AT_ONCE`](super::scale::eviction)
//!    at a time (and again any that came up meanwhile: activations under way as the drain
//!    began, or from the reader's last requests in step 4), each to the member the
//!    pattern's placement picks among the others (mid-roll, among those of the newest
//!    build only: what it is handed does not move again): each
//!    stops once its mailbox is empty (its `on_stop` may save, or carry its state:
//!    `migration.rs`), then its URN key is given to that member, which activates it as soon
//!    as it reads the hand-over (its moved-in notice: `serve/urn_keys.rs`, `hand_urn`; in a
//!    Redis Cluster, at its next request), and its next request goes straight there. A
//!    request read meanwhile for that URN waits for the hand-over, then goes to that
//!    member (in its order). (With no other member
//!    listed, the key is released and the next request places the URN.)
//! 4. It stops reading, finishes what it took, and moves what is left in its stream for
//!    the patterns' URNs to the own streams of the members it handed them to (those with
//!    no holder to the patterns' groups; `TAKE_OVER_SCRIPT`, the deadlines cut by the time
//!    waited): nothing is left for a successor that may never come. Unless it
//!    serves actors of its own (whose requests wait there for its successor), it then
//!    deletes its stream at once: a client whose route to it was cached before the
//!    releases appends nothing there, looks the URN up again and finds the member it was
//!    handed to (`client/exchange.rs`, `resolve_again`; the Python client's
//!    `Session.stream_gone`). A request appended between the sweep and the delete makes
//!    the delete refuse: swept again, until it goes through (or until the routes cached
//!    before the releases have lapsed: then only a request for none of its patterns' URNs
//!    can hold the stream, and it is left).
//! 5. A system that serves actors of its own keeps its stream: before step 4 it reads it
//!    for one [`resolve_cache_ttl`](crate::ProxyConfig::resolve_cache_ttl) more, passing
//!    on what clients with a route cached before the releases still send it.
//! 6. It shuts down as [`shutdown`](crate::ProxyHandle::shutdown) does
//!    (`departure.rs`): its own actors' URNs marked departed, its lease released.
//!
//! Steps 2 to 5 are bounded by [`drain_timeout`](crate::ProxyConfig::drain_timeout), step 6
//! by [`shutdown_timeout`](crate::ProxyConfig::shutdown_timeout). A system that no other live
//! member of its patterns could take over from (it serves no pattern, or is the last
//! member of each) skips steps 2 to 5: a shutdown, whose departed markers make clients wait
//! for its successor.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use fred::prelude::*;
use futures_util::stream::{self, StreamExt};

use super::departure::{self, Tasks};
use super::readiness::ShutdownPhase;
use super::scale::placement_rule::MemberInfo;
use super::scale::{eviction, group, passivation, placement, takeover, versions};
use super::shared::{Role, Shared};
use crate::conn::{owned, s};
use crate::error::ServeError;
use crate::protocol::{self, CONSUMER_GROUP};
use crate::script::Script;

/// What a [`drain`](crate::ProxyHandle::drain) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// Activations handed over (passivated here, activated again by the member each was
    /// handed to).
    pub handed: usize,
    /// The longest any one activation took to hand over, from its stop to its URN's
    /// release: the longest its requests waited on the drain.
    pub longest_handing: Duration,
    /// The 99th percentile of the activations' handing times (as
    /// [`longest_handing`](Self::longest_handing)).
    pub handing_p99: Duration,
    /// Requests left in the system's stream for its patterns' URNs after it stopped
    /// reading, moved to the members holding their URNs (or to the patterns' groups).
    pub moved: u64,
    /// Of those, requests whose deadline had passed: dropped (their callers timed out).
    pub expired: u64,
    /// Whether the handing over finished within
    /// [`drain_timeout`](crate::ProxyConfig::drain_timeout) (else the rest was stopped as a
    /// shutdown stops it).
    pub within_bound: bool,
    /// How long the drain took, shutdown included.
    pub took: Duration,
}

/// Drains the proxy (the module's docs), then shuts it down.
pub(super) async fn drain(shared: Arc<Shared>, mut tasks: Tasks) -> Result<Drained, ServeError> {
    let started = Instant::now();
    ShutdownPhase::Draining.enter(&shared);
    tracing::info!(system = %shared.system_id, "draining: handing activations and requests to the other members");
    let mut drained = Drained::default();
    let bound = shared.config.drain_timeout;
    // Nobody to hand anything to (the last member of its patterns, or none): a shutdown,
    // whose departed markers tell clients to wait for a successor.
    let others = tokio::time::timeout(bound, other_members(&shared))
        .await
        .unwrap_or(false);
    let hand_over = async {
        if others {
            shared.draining.store(true, Ordering::Release);
            hand_over(&shared, &mut tasks, &mut drained).await;
        }
    };
    drained.within_bound = tokio::time::timeout(bound, hand_over).await.is_ok();
    if !drained.within_bound {
        tracing::warn!(system = %shared.system_id, ?bound, "the drain did not hand everything over in time; shutting down");
    }
    let result = departure::depart(shared.clone(), tasks).await;
    drained.took = started.elapsed();
    tracing::info!(system = %shared.system_id, handed = drained.handed, moved = drained.moved, handing_p99_ms = drained.handing_p99.as_millis() as u64, took_ms = drained.took.as_millis() as u64, "drained");
    result.map(|()| drained)
}

/// Whether another live member serves one of this system's patterns (its directory).
async fn other_members(shared: &Shared) -> bool {
    for prefix in shared.activations.prefixes() {
        if let Ok((members, _)) = placement::directory(shared, None, &prefix, None, None).await
            && members.iter().any(|m| m.system != shared.system_id)
        {
            return true;
        }
    }
    false
}

/// Steps 2 to 5 of the module's docs.
async fn hand_over(shared: &Arc<Shared>, tasks: &mut Tasks, drained: &mut Drained) {
    let names: Vec<String> = shared.groups().keys().cloned().collect();
    // Out of the patterns' directories first: no member places a URN here from now on
    // (`report_count` lists a draining system no more).
    for name in &names {
        if shared.activations.pattern_for_prefix(name).is_some() {
            super::scale::placement::unlist(shared, name).await;
        }
    }
    for name in names {
        group::leave(shared, &name, group::AfterLeaving::KeepPattern).await;
    }
    // The activations live now, then those that came up meanwhile (activations under way
    // when the drain began: nothing is activated here after it).
    let mut pauses = Vec::new();
    move_live(shared, &mut pauses).await;
    note_pauses(drained, &mut pauses);
    let released = Instant::now();
    // Its own actors' requests wait in its stream for its successor, so the stream stays:
    // what clients that looked the URNs up before their release still send here is passed
    // on while their routes may be cached. (A key of its patterns' URNs it still holds, with
    // none live here now, is no actor of its own: it is released as it departs.)
    let plain_urns = {
        let reg = shared.registry();
        reg.owned
            .iter()
            .any(|u| shared.activations.pattern_for(u).is_none())
    };
    if plain_urns {
        tokio::time::sleep(shared.config.resolve_cache_ttl).await;
    }
    tasks.stop_serving(shared).await;
    // Activations the reader's last requests brought up: moved too, before the stream is
    // swept and closed (else their keys would name this member once its stream is gone).
    move_live(shared, &mut pauses).await;
    note_pauses(drained, &mut pauses);
    // Swept, then closed when nothing of its own waits there: a client still holding the
    // route finds the stream gone and looks the URN up again at once, finding the member
    // it was handed to (`client/exchange.rs`, `resolve_again`). A request appended between
    // a sweep and the close makes the close refuse: swept again, until the routes cached
    // before the releases have lapsed (then only a request for a URN of none of its
    // patterns can keep it open, and it is left).
    let mut attempts = 0;
    loop {
        attempts += 1;
        for prefix in shared.activations.prefixes() {
            let (moved, expired) = sweep(shared, &prefix).await;
            drained.moved += moved;
            drained.expired += expired;
        }
        if plain_urns || close_stream(shared).await {
            break;
        }
        if attempts >= CLOSE_ATTEMPTS {
            if released.elapsed() >= shared.config.resolve_cache_ttl {
                tracing::warn!(system = %shared.system_id, attempts, "the drained stream holds requests no sweep moves; left in place");
                break;
            }
            tokio::time::sleep(CLOSE_PAUSE).await;
        }
    }
    for prefix in shared.activations.prefixes() {
        shared.activations.remove_pattern(&prefix);
    }
}

/// The activations handed so far, and their handing times' p99 and longest.
fn note_pauses(drained: &mut Drained, pauses: &mut [Duration]) {
    pauses.sort_unstable();
    drained.handed = pauses.len();
    drained.longest_handing = pauses.last().copied().unwrap_or_default();
    drained.handing_p99 = pauses
        .get(pauses.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
}

/// Rounds of [`move_live`] at most: each moves the activations that came up during the one
/// before (an activation under way as the drain began, or as the reader stopped).
const MOVE_ROUNDS: usize = 4;

/// Moves every live activation to the member its pattern's placement picks among the
/// others, [`MOVES_AT_ONCE`](eviction::MOVES_AT_ONCE) at a time, and again
/// those that came up meanwhile; each one's handing time is added to `pauses`.
async fn move_live(shared: &Arc<Shared>, pauses: &mut Vec<Duration>) {
    for _ in 0..MOVE_ROUNDS {
        let urns = shared.activations.active();
        if urns.is_empty() {
            return;
        }
        let targets = choose_targets(shared, &urns).await;
        let took: Vec<Duration> = stream::iter(urns.into_iter().zip(targets))
            .map(|(urn, target)| {
                let shared = shared.clone();
                async move {
                    passivation::move_away(&shared, &urn, target.as_deref())
                        .await
                        .paused
                }
            })
            .buffer_unordered(eviction::MOVES_AT_ONCE)
            .collect()
            .await;
        pauses.extend(took);
    }
}

/// The member each of `urns` goes to, by its pattern's placement among the other live
/// members of the newest build among them (counting each choice), or `None` (released,
/// placed by its next request) when the directory cannot be read or lists no other member.
async fn choose_targets(shared: &Shared, urns: &[String]) -> Vec<Option<String>> {
    let mut by_prefix: std::collections::HashMap<String, Vec<MemberInfo>> = Default::default();
    let mut out = Vec::with_capacity(urns.len());
    for urn in urns {
        let Some(pattern) = shared.activations.pattern_for(urn) else {
            out.push(None);
            continue;
        };
        if !by_prefix.contains_key(&pattern.prefix) {
            let mut members = placement::directory(shared, None, &pattern.prefix, None, None)
                .await
                .map(|(m, _)| m)
                .unwrap_or_default();
            members.retain(|m| m.system != shared.system_id);
            // Mid-roll, to the new build only: what it is handed does not move again as
            // the rest of the old build drains (`versions.rs`, `Builds::newest`).
            versions::builds(shared, &pattern.prefix)
                .await
                .newest(&mut members);
            by_prefix.insert(pattern.prefix.clone(), members);
        }
        let members = by_prefix.get_mut(&pattern.prefix).expect("inserted above");
        let chosen = pattern.placement.choose(urn, members).map(str::to_owned);
        if let Some(m) = chosen
            .as_ref()
            .and_then(|c| members.iter_mut().find(|m| &m.system == c))
        {
            m.activations += 1;
        }
        out.push(chosen);
    }
    out
}

/// How many times the stream is swept and its close attempted back to back; after these,
/// [`CLOSE_PAUSE`] apart until the routes cached before the releases have lapsed.
const CLOSE_ATTEMPTS: usize = 3;

/// The pause between later sweeps.
const CLOSE_PAUSE: Duration = Duration::from_millis(5);

/// Deletes the system's stream if nothing in it waits
/// ([`CLOSE_DRAINED_SCRIPT`](protocol::CLOSE_DRAINED_SCRIPT)): whether
/// it is gone. Not in a Redis Cluster (nothing is swept there).
async fn close_stream(shared: &Shared) -> bool {
    if shared.cmd.is_clustered() || !matches!(shared.role, Role::System) {
        return true;
    }
    static CLOSE_DRAINED: LazyLock<Script> =
        LazyLock::new(|| Script::new(protocol::CLOSE_DRAINED_SCRIPT));
    let closed = CLOSE_DRAINED
        .eval(
            &shared.cmd,
            vec![owned(shared.stream.requests_key.clone())],
            vec![s(CONSUMER_GROUP)],
        )
        .await;
    matches!(closed, Ok(Value::Integer(1)))
}

/// Moves what is left unacknowledged in the system's stream for pattern `prefix`'s URNs to
/// the streams of the members their URN keys name (else the pattern's group's stream):
/// `(moved, expired)`. Not in a Redis Cluster (the streams live in different slots): there
/// they wait for the system's successor.
async fn sweep(shared: &Shared, prefix: &str) -> (u64, u64) {
    if !matches!(shared.role, Role::System) {
        return (0, 0);
    }
    let from = takeover::Source {
        system: &shared.system_id,
        // This key never exists: the system stopped reading its stream, which is what
        // the script's lease check stands for.
        lease_key: format!("{}:drained", shared.lease.key),
        to: takeover::MovedTo::Holder,
        steps: usize::MAX,
    };
    let done = takeover::move_requests(shared, prefix, &from).await;
    (done.moved, done.expired)
}
