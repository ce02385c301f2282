//! The URN patterns a system activates actors for and the activations alive
//! ([`Activations`]), and what an activated actor's constructor gets ([`Activation`]).
//! `activation.rs` activates, `passivation.rs` passivates.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_core::{ActorSystem, DynActorRef, ExposedMessage};

use super::placement_rule::{MemberInfo, Placement};
use super::standing::Standing;
use super::store::StateStore;
use crate::overload::{Eviction, EvictionCandidate};

type Spawned = Pin<Box<dyn Future<Output = Result<DynActorRef, String>> + Send>>;
pub(in crate::proxy) type MakeFn = Box<dyn Fn(ActorSystem, Activation) -> Spawned + Send + Sync>;

/// A URN pattern this system activates actors for.
pub(in crate::proxy) struct Pattern {
    pub(in crate::proxy) prefix: String,
    /// The messages the pattern's actor type exposes.
    pub(in crate::proxy) remote: &'static [ExposedMessage],
    pub(in crate::proxy) make: MakeFn,
    pub(in crate::proxy) idle: Option<Duration>,
    /// Which member activates a URN nobody holds (`placement.rs`).
    pub(in crate::proxy) placement: Placement,
    /// Whether a member with more than its share of the pattern's activations passivates
    /// some, for members with fewer to take them (`rebalance.rs`).
    pub(in crate::proxy) rebalance: bool,
    /// A look at the directory to rebalance under way (`rebalance.rs`): one at a time.
    pub(in crate::proxy) rebalancing: AtomicBool,
    /// A member joined while a look was under way: the look under way looks again once it
    /// is done (`rebalance.rs`), so that the joiner gets its share at once.
    pub(in crate::proxy) joined_meanwhile: AtomicBool,
    /// When a look last moved activations (`rebalance.rs`).
    pub(in crate::proxy) moved_at: Mutex<Option<Instant>>,
    /// The pattern's own limits of pending requests, and its count (`serve/admission.rs`).
    pub(in crate::proxy) limits: crate::proxy::serve::admission::PatternLimits,
    /// The writes of its count in the directory (`placement.rs`).
    pub(in crate::proxy) reporting: Reporting,
    /// The last look at its directories to reroute a message (`versions.rs`).
    pub(in crate::proxy) last_look: LastLook,
}

/// The writes of a pattern's count in its directory (`placement.rs`): how many were asked
/// for, and how many of those asks a finished write covers.
#[derive(Default)]
pub(in crate::proxy) struct Reporting {
    pub(in crate::proxy) asked: AtomicU64,
    pub(in crate::proxy) written: AtomicU64,
    pub(in crate::proxy) writing: tokio::sync::Mutex<()>,
}

/// The last look at a pattern's member and message directories, and when it was taken, to
/// reroute a message (`versions.rs`, `LOOK_REUSED_FOR`). Reroutes that come while one
/// looks wait for its look.
#[derive(Default)]
pub(in crate::proxy) struct LastLook(
    pub(in crate::proxy) tokio::sync::Mutex<Option<(Instant, Arc<Look>)>>,
);

/// The live members of a pattern with their counts of activations (each choice made from
/// the look counted), and each member's message line (`versions.rs`).
pub(in crate::proxy) struct Look {
    pub(in crate::proxy) live: Mutex<Vec<MemberInfo>>,
    pub(in crate::proxy) lines: HashMap<String, String>,
}

/// One activation alive in this system.
pub(in crate::proxy) struct Live {
    pub(in crate::proxy) actor: DynActorRef,
    pub(in crate::proxy) pattern: Arc<Pattern>,
    pub(in crate::proxy) last_used: Instant,
    /// Requests through Redis since it was activated (the LFU eviction's count).
    pub(in crate::proxy) uses: u64,
    pub(in crate::proxy) standing: Arc<Standing>,
    pub(in crate::proxy) state_key: String,
    pub(in crate::proxy) token: String,
}

impl Live {
    /// Idle past its pattern's passivation time: no request through Redis for that long,
    /// and an empty mailbox.
    pub(in crate::proxy) fn is_idle(&self) -> bool {
        self.pattern
            .idle
            .is_some_and(|d| self.last_used.elapsed() >= d && self.actor.mailbox_len() == 0)
    }
}

/// The patterns of a system's proxy and its live activations.
#[derive(Default)]
pub(in crate::proxy) struct Activations {
    patterns: Mutex<HashMap<String, Arc<Pattern>>>,
    /// Whether any pattern is registered (checked on every request without a lock).
    any: AtomicBool,
    live: Mutex<LiveSet>,
    /// One activation or passivation of a URN at a time.
    locks: Mutex<HashMap<String, Arc<UrnLock>>>,
    /// The cap and eviction policy (`eviction.rs`).
    pub(in crate::proxy) cap: super::eviction::Cap,
    /// URNs this system handed to another member as it drained, and to whom: a request
    /// for one read afterwards goes there without asking Redis who holds it.
    handed: Mutex<HashMap<String, String>>,
}

/// The activations alive in a system, by URN, and how many each pattern has: kept as they
/// come and go, since every activation, passivation and placement reads its pattern's
/// count (counting the map each time made a first request's cost grow with the
/// activations alive).
///
/// The activations whose pattern passivates idle ones are also kept by when they may be
/// idle ([`LiveSet::due_idle`]): the housekeeping looks at those due, not at every
/// activation every 250 ms (at 100,000 activations that walk was a third of a starved
/// member's CPU: docs/bench-log.md, "Overload: a starved member's lease").
#[derive(Default)]
pub(in crate::proxy) struct LiveSet {
    by_urn: HashMap<String, Live>,
    per_pattern: HashMap<String, u64>,
    /// (when it may be idle, URN, the activation's token): one entry per activation of a
    /// pattern with an idle time; an entry whose activation is gone is dropped when due.
    idle_at: BinaryHeap<Reverse<(Instant, String, String)>>,
}

impl LiveSet {
    pub(in crate::proxy) fn get(&self, urn: &str) -> Option<&Live> {
        self.by_urn.get(urn)
    }

    pub(in crate::proxy) fn get_mut(&mut self, urn: &str) -> Option<&mut Live> {
        self.by_urn.get_mut(urn)
    }

    pub(in crate::proxy) fn insert(&mut self, urn: String, live: Live) {
        let prefix = live.pattern.prefix.clone();
        if let Some(idle) = live.pattern.idle {
            self.idle_at.push(Reverse((
                live.last_used + idle,
                urn.clone(),
                live.token.clone(),
            )));
        }
        if let Some(old) = self.by_urn.insert(urn, live) {
            self.uncount(&old.pattern.prefix);
        }
        *self.per_pattern.entry(prefix).or_default() += 1;
    }

    pub(in crate::proxy) fn remove(&mut self, urn: &str) -> Option<Live> {
        let live = self.by_urn.remove(urn)?;
        self.uncount(&live.pattern.prefix);
        Some(live)
    }

    /// Keeps the activations `keep` says to.
    pub(in crate::proxy) fn retain(&mut self, mut keep: impl FnMut(&String, &Live) -> bool) {
        let per_pattern = &mut self.per_pattern;
        self.by_urn.retain(|urn, live| {
            let kept = keep(urn, live);
            if !kept && let Some(n) = per_pattern.get_mut(&live.pattern.prefix) {
                *n = n.saturating_sub(1);
            }
            kept
        });
    }

    pub(in crate::proxy) fn len(&self) -> usize {
        self.by_urn.len()
    }

    /// The activations idle at `now` ([`Live::is_idle`]), found among those due: each
    /// other one due is looked at again when it may be idle next (its last use plus its
    /// idle time; `recheck` from now when its mailbox holds messages). O(those due).
    pub(in crate::proxy) fn due_idle(&mut self, now: Instant, recheck: Duration) -> Vec<String> {
        let mut idle = Vec::new();
        let mut again = Vec::new();
        while let Some(Reverse((at, _, _))) = self.idle_at.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, urn, token))) = self.idle_at.pop() else {
                break;
            };
            // Passivated (or activated again since: that activation has its own entry).
            let Some(live) = self.by_urn.get(&urn).filter(|l| l.token == token) else {
                continue;
            };
            let Some(after) = live.pattern.idle else {
                continue;
            };
            let next = live.last_used + after;
            if next > now {
                again.push(Reverse((next, urn, token)));
            } else if live.is_idle() {
                // Looked at again should its passivation find it used meanwhile.
                idle.push(urn.clone());
                again.push(Reverse((now + recheck, urn, token)));
            } else {
                again.push(Reverse((now + recheck, urn, token)));
            }
        }
        self.idle_at.extend(again);
        idle
    }

    pub(in crate::proxy) fn iter(&self) -> impl Iterator<Item = (&String, &Live)> {
        self.by_urn.iter()
    }

    pub(in crate::proxy) fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_urn.keys()
    }

    pub(in crate::proxy) fn values(&self) -> impl Iterator<Item = &Live> {
        self.by_urn.values()
    }

    /// How many activations of the pattern `prefix` are alive here.
    pub(in crate::proxy) fn count_under(&self, prefix: &str) -> u64 {
        self.per_pattern.get(prefix).copied().unwrap_or(0)
    }

    fn uncount(&mut self, prefix: &str) {
        if let Some(n) = self.per_pattern.get_mut(prefix) {
            *n = n.saturating_sub(1);
        }
    }
}

/// How a request for a patterned URN is served.
pub(in crate::proxy) enum Activated {
    /// The actor is (now) active here, and its standing.
    Here(DynActorRef, Arc<Standing>),
    /// Another system holds the URN.
    HeldBy(String),
    /// The constructor refused (its error).
    Refused(String),
    /// Redis did not answer.
    Unavailable(String),
}

impl Activations {
    fn patterns(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Pattern>>> {
        self.patterns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(in crate::proxy) fn live(&self) -> std::sync::MutexGuard<'_, LiveSet> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pattern `urn` falls under, if this system hosts it.
    pub(in crate::proxy) fn pattern_for(&self, urn: &str) -> Option<Arc<Pattern>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let prefix = crate::protocol::pattern_prefix(urn)?;
        self.patterns().get(prefix).cloned()
    }

    /// Notes that `urn`'s key was handed to `target` (a drain's move).
    pub(in crate::proxy) fn note_handed(&self, urn: &str, target: &str) {
        self.handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(urn.to_owned(), target.to_owned());
    }

    /// The member `urn`'s key was handed to by this system's drain, if it was.
    pub(in crate::proxy) fn handed_to(&self, urn: &str) -> Option<String> {
        self.handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(urn)
            .cloned()
    }

    /// The pattern of prefix `prefix`, if this system hosts it.
    pub(in crate::proxy) fn pattern_for_prefix(&self, prefix: &str) -> Option<Arc<Pattern>> {
        self.patterns().get(prefix).cloned()
    }

    /// The prefixes of the patterns this system hosts.
    pub(in crate::proxy) fn prefixes(&self) -> Vec<String> {
        self.patterns().keys().cloned().collect()
    }

    pub(in crate::proxy) fn add_pattern(&self, pattern: Pattern) {
        let mut patterns = self.patterns();
        patterns.insert(pattern.prefix.clone(), Arc::new(pattern));
        self.any.store(true, Ordering::Release);
    }

    pub(in crate::proxy) fn remove_pattern(&self, prefix: &str) {
        let mut patterns = self.patterns();
        patterns.remove(prefix);
        self.any.store(!patterns.is_empty(), Ordering::Release);
    }

    /// Another system took `urn`'s lease (this process was paused past it): the local
    /// activation takes no more requests and stops. Gracefully: a handler that is running
    /// finishes (its writes are fenced: whether they took effect is known), and what its
    /// mailbox still holds is handled with fenced writes and re-delivered when refused.
    pub(in crate::proxy) fn taken_away(&self, urn: &str) {
        let Some(live) = self.live().remove(urn) else {
            return;
        };
        live.standing.taken.store(true, Ordering::Release);
        live.actor.stop();
        tracing::warn!(%urn, "another system took this activation's URN (this process was paused past its lease); stopped it");
    }

    /// Forgets `urn`'s activation if its actor stopped by itself (the URN journal said it
    /// changed): what the housekeeping's sweep would do, at the cost of one URN.
    pub(in crate::proxy) fn forget_stopped(&self, urn: &str) {
        let mut live = self.live();
        if live.get(urn).is_some_and(|l| !l.actor.is_alive()) {
            live.remove(urn);
        }
    }

    /// Whether `urn` is activated here now.
    pub(in crate::proxy) fn is_live(&self, urn: &str) -> bool {
        self.live().get(urn).is_some_and(|l| l.actor.is_alive())
    }

    /// How many URNs of the pattern `prefix` are activated here.
    pub(in crate::proxy) fn count_under(&self, prefix: &str) -> u64 {
        self.live().count_under(prefix)
    }

    /// Up to `n` activations under `prefix` with an empty mailbox, the least recently used
    /// first, marked as leaving (`rebalance.rs`).
    pub(in crate::proxy) fn take_least_used(&self, prefix: &str, n: usize) -> Vec<String> {
        let live = self.live();
        let mut quiet: Vec<(&String, &Live)> = live
            .iter()
            .filter(|(u, l)| u.starts_with(prefix) && l.actor.mailbox_len() == 0)
            .collect();
        quiet.sort_by_key(|(_, l)| l.last_used);
        quiet
            .into_iter()
            .take(n)
            .map(|(u, l)| {
                l.standing.leaving.store(true, Ordering::Release);
                u.clone()
            })
            .collect()
    }

    /// The URNs activated here, sorted.
    pub(in crate::proxy) fn active(&self) -> Vec<String> {
        let mut urns: Vec<String> = self.live().keys().cloned().collect();
        urns.sort();
        urns
    }

    /// Whether `urn` is activated here once any activation or passivation of it under way
    /// has ended.
    pub(in crate::proxy) async fn is_live_when_settled(&self, urn: &str) -> bool {
        let entry = self.lock_for(urn);
        let _settled = entry.lock.lock().await;
        self.is_live(urn)
    }

    /// The URN's lock, and a guard that forgets it when nobody else holds it.
    pub(in crate::proxy) fn lock_for(&self, urn: &str) -> LockEntry<'_> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(urn.to_owned())
            .or_default()
            .clone();
        LockEntry {
            owner: self,
            urn: urn.to_owned(),
            lock,
        }
    }
}

/// A URN's lock: one activation or passivation of it at a time, and what the last of them
/// learnt of where it is held when not here.
pub(in crate::proxy) type UrnLock = tokio::sync::Mutex<Option<HeldElsewhere>>;

/// Where a URN was last known held when not here, and since when: its key handed to that
/// system by a move, or Redis answering with its holder (a claim, a reroute's look at its
/// key); never passed on from one waiter to the next without asking. Kept only while a
/// request holds or waits for the URN's lock (the lock's entry goes with the last one).
///
/// Why: the requests of a URN read while it moves away (and those read before their
/// clients learn where it went) wait for its lock one after another. Each asked Redis
/// again who holds it, a round trip under the lock, so the last of `k` waited `k` of them
/// (by 4 ms each in a build 2 caller's burst of moves: docs/bench-log.md, "Requests that
/// waited for a moved URN's lock one claim after another"). A request that began to wait
/// before this was learnt goes by it instead; one that comes later asks again.
#[derive(Debug, Clone)]
pub(in crate::proxy) struct HeldElsewhere {
    pub(in crate::proxy) system: String,
    pub(in crate::proxy) since: Instant,
}

impl HeldElsewhere {
    /// Held by `system`, learnt now.
    pub(in crate::proxy) fn now(system: impl Into<String>) -> Option<HeldElsewhere> {
        Some(HeldElsewhere {
            system: system.into(),
            since: Instant::now(),
        })
    }
}

pub(in crate::proxy) struct LockEntry<'a> {
    pub(in crate::proxy) owner: &'a Activations,
    pub(in crate::proxy) urn: String,
    pub(in crate::proxy) lock: Arc<UrnLock>,
}

impl LockEntry<'_> {
    /// Takes the URN's lock; and, when it had to wait for it, the system the URN was
    /// handed to or found held by meanwhile, if it was (`HeldElsewhere`).
    pub(in crate::proxy) async fn take(
        &self,
    ) -> (
        tokio::sync::MutexGuard<'_, Option<HeldElsewhere>>,
        Option<String>,
    ) {
        if let Ok(held) = self.lock.try_lock() {
            return (held, None);
        }
        let waited_since = Instant::now();
        let held = self.lock.lock().await;
        let went = held
            .as_ref()
            .filter(|h| h.since >= waited_since)
            .map(|h| h.system.clone());
        (held, went)
    }
}

impl Drop for LockEntry<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's and ours: nobody else waits on it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.urn);
        }
    }
}

/// What an activated actor's constructor gets: its URN, the id the pattern matched, and its
/// [`StateStore`].
pub struct Activation {
    pub(in crate::proxy) urn: String,
    pub(in crate::proxy) id: String,
    pub(in crate::proxy) store: StateStore,
}

impl Activation {
    /// The URN activated (`user:42`).
    #[must_use]
    pub fn urn(&self) -> &str {
        &self.urn
    }

    /// The part of the URN the pattern's `{id}` matched (`42`).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The activation's state store, to load the state in the constructor.
    #[must_use]
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The activation's state store, kept by the actor to save from its handlers or its
    /// `on_stop` (it cannot be cloned: see [`StateStore`], "Writes from the actor's own
    /// task").
    #[must_use]
    pub fn into_store(self) -> StateStore {
        self.store
    }
}

impl fmt::Debug for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activation")
            .field("urn", &self.urn)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

// The activation cap's and memory shedding's choice (`eviction.rs`).
impl Activations {
    /// Up to `n` activations with an empty mailbox and not leaving already, the lowest
    /// scores of `policy` first, marked as leaving.
    pub(in crate::proxy) fn pick(&self, n: usize, policy: &Eviction) -> Vec<String> {
        if n == 0 {
            return Vec::new();
        }
        let live = self.live();
        let now = Instant::now();
        let mut scored: Vec<(u64, &String)> = live
            .iter()
            .filter(|(_, l)| !l.standing.is_leaving() && l.actor.mailbox_len() == 0)
            .map(|(urn, l)| {
                let candidate = EvictionCandidate {
                    urn,
                    idle: now.saturating_duration_since(l.last_used),
                    uses: l.uses,
                };
                (policy.score(&candidate), urn)
            })
            .collect();
        if scored.len() > n {
            scored.select_nth_unstable_by_key(n, |(score, _)| *score);
            scored.truncate(n);
        }
        scored
            .into_iter()
            .map(|(_, urn)| {
                if let Some(l) = live.get(urn) {
                    l.standing.leaving.store(true, Ordering::Release);
                }
                urn.clone()
            })
            .collect()
    }

    /// Activations alive and not leaving.
    pub(in crate::proxy) fn staying(&self) -> usize {
        self.live()
            .values()
            .filter(|l| !l.standing.is_leaving())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_request_that_waited_goes_where_the_urn_went_meanwhile_one_that_came_later_asks() {
        let activations = Activations::default();
        let mover = activations.lock_for("acct:1");
        let (mut moving, went) = mover.take().await;
        assert_eq!(
            went, None,
            "nobody held the lock: nothing learnt while waiting"
        );

        // A request read while the URN moves waits for its lock; the move hands it to m2.
        let first = activations.lock_for("acct:1");
        let mut first_waits = Box::pin(first.take());
        assert!((&mut first_waits).now_or_never().is_none(), "it waits");
        *moving = HeldElsewhere::now("m2");
        drop(moving);
        let (held, went) = first_waits.await;
        assert_eq!(went.as_deref(), Some("m2"));

        // One that begins to wait after that was learnt asks again (it may have come back).
        let later = activations.lock_for("acct:1");
        let mut later_waits = Box::pin(later.take());
        assert!((&mut later_waits).now_or_never().is_none(), "it waits");
        drop(held);
        let (held, went) = later_waits.await;
        assert_eq!(went, None, "learnt before it waited: not taken as news");
        drop(held);
        drop((mover, first, later));
        assert!(
            activations.locks.lock().unwrap().is_empty(),
            "the lock's entry, and what it learnt, go with the last request that held it"
        );
        let (_, went) = activations.lock_for("acct:1").take().await;
        assert_eq!(went, None, "a request that did not wait asks");
    }
}
