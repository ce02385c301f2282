//! Actors activated on demand by URN pattern: the first request for `user:42` makes one
//! system of the pattern's group claim the URN (the fenced lease every URN has), construct
//! the actor and serve it; an idle activation is passivated (stopped gracefully, so its
//! `on_stop` can save, then its URN released). An activation's state lives in its
//! [`StateStore`] (`store`).

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_core::trace::TraceContext;
use conclib_core::{Actor, ActorSystem, DynActorRef, ExposedMessage};
use fred::prelude::*;

use super::applied::Applied;
use super::group::GroupOf;
use super::scripts::Script;
use super::{Placement, ProxyHandle, Shared, StateStore};
use crate::client::random_token;
use crate::conn::{as_bytes, owned};
use crate::error::ServeError;
use crate::protocol::STATE_CLOSE_SCRIPT;

/// How long passivation waits for an actor's graceful stop (its `on_stop` saving) before it
/// kills it.
const PASSIVATION_STOP_WAIT: Duration = Duration::from_secs(10);

type Spawned = Pin<Box<dyn Future<Output = Result<DynActorRef, String>> + Send>>;
type MakeFn = Box<dyn Fn(ActorSystem, Activation) -> Spawned + Send + Sync>;

/// A URN pattern this system activates actors for.
pub(super) struct Pattern {
    pub(super) prefix: String,
    /// The messages the pattern's actor type exposes.
    pub(super) remote: &'static [ExposedMessage],
    make: MakeFn,
    idle: Option<Duration>,
    /// Which member activates a URN nobody holds (`placement.rs`).
    pub(super) placement: Placement,
    /// Whether a member with more than its share of the pattern's activations passivates
    /// some, for members with fewer to take them (`rebalance.rs`).
    pub(super) rebalance: bool,
}

/// What the proxy and an activation's store know of its standing.
#[derive(Default)]
pub(super) struct Standing {
    /// Another system holds the URN now (this process was paused past its lease).
    pub(super) taken: AtomicBool,
    /// Being passivated to rebalance the pattern (`rebalance.rs`): a request that finds
    /// the actor stopped is read again, not answered.
    pub(super) leaving: AtomicBool,
    /// Writes of its store refused so far (a later activation owns the state).
    refused: std::sync::atomic::AtomicU64,
    /// The messages (by the trace context each was handled in) whose handling had a write
    /// refused, until the proxy looks: those go to the URN's current activation.
    refused_in: Mutex<std::collections::VecDeque<TraceContext>>,
    /// The requests whose handling wrote the state, not acknowledged yet.
    pub(super) applied: Applied,
}

/// How many refused messages a standing remembers until the proxy looks (one per message
/// in the mailbox of a stale activation, which stops at once).
const REFUSED_REMEMBERED: usize = 65_536;

impl Standing {
    pub(super) fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }

    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// Not taken, and no write of its store refused.
    pub(super) fn is_current(&self) -> bool {
        !self.is_taken() && self.refused.load(Ordering::Acquire) == 0
    }

    /// A write was refused, in the handling of the message being handled now (the handler
    /// runs in the trace context the proxy gave that message).
    pub(super) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::AcqRel);
        if let Some(trace) = TraceContext::current() {
            let mut list = self.refused_in.lock().unwrap_or_else(|e| e.into_inner());
            if list.len() == REFUSED_REMEMBERED {
                list.pop_front();
            }
            list.push_back(trace);
        }
    }

    /// Whether the handling of the message given `trace` had a write refused (forgotten
    /// once asked).
    pub(super) fn take_refusal(&self, trace: &TraceContext) -> bool {
        if self.refused.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut list = self.refused_in.lock().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|t| t != trace);
        list.len() != before
    }
}

/// One activation alive in this system.
struct Live {
    actor: DynActorRef,
    pattern: Arc<Pattern>,
    last_used: Instant,
    standing: Arc<Standing>,
    state_key: String,
    token: String,
}

impl Live {
    /// Idle past its pattern's passivation time: no request through Redis for that long,
    /// and an empty mailbox.
    fn is_idle(&self) -> bool {
        self.pattern
            .idle
            .is_some_and(|d| self.last_used.elapsed() >= d && self.actor.mailbox_len() == 0)
    }
}

/// The patterns of a system's proxy and its live activations.
#[derive(Default)]
pub(super) struct Activations {
    patterns: Mutex<HashMap<String, Arc<Pattern>>>,
    /// Whether any pattern is registered (checked on every request without a lock).
    any: AtomicBool,
    live: Mutex<HashMap<String, Live>>,
    /// One activation or passivation of a URN at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// How a request for a patterned URN is served.
pub(super) enum Activated {
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

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pattern `urn` falls under, if this system hosts it.
    pub(super) fn pattern_for(&self, urn: &str) -> Option<Arc<Pattern>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let prefix = crate::protocol::pattern_prefix(urn)?;
        self.patterns().get(prefix).cloned()
    }

    /// The pattern of prefix `prefix`, if this system hosts it.
    pub(super) fn pattern_for_prefix(&self, prefix: &str) -> Option<Arc<Pattern>> {
        self.patterns().get(prefix).cloned()
    }

    fn add_pattern(&self, pattern: Pattern) {
        let mut patterns = self.patterns();
        patterns.insert(pattern.prefix.clone(), Arc::new(pattern));
        self.any.store(true, Ordering::Release);
    }

    pub(super) fn remove_pattern(&self, prefix: &str) {
        let mut patterns = self.patterns();
        patterns.remove(prefix);
        self.any.store(!patterns.is_empty(), Ordering::Release);
    }

    /// Another system took `urn`'s lease (this process was paused past it): the local
    /// activation takes no more requests and stops. Gracefully: a handler that is running
    /// finishes (its writes are fenced: whether they took effect is known), and what its
    /// mailbox still holds is handled with fenced writes and re-delivered when refused.
    pub(super) fn taken_away(&self, urn: &str) {
        let Some(live) = self.live().remove(urn) else {
            return;
        };
        live.standing.taken.store(true, Ordering::Release);
        live.actor.stop();
        tracing::warn!(%urn, "another system took this activation's URN (this process was paused past its lease); stopped it");
    }

    /// Whether `urn` is activated here now.
    pub(super) fn is_live(&self, urn: &str) -> bool {
        self.live().get(urn).is_some_and(|l| l.actor.is_alive())
    }

    /// How many URNs under `prefix` are activated here.
    pub(super) fn count_under(&self, prefix: &str) -> u64 {
        self.live().keys().filter(|u| u.starts_with(prefix)).count() as u64
    }

    /// Up to `n` activations under `prefix` with an empty mailbox, the least recently used
    /// first, marked as leaving (`rebalance.rs`).
    pub(super) fn take_least_used(&self, prefix: &str, n: usize) -> Vec<String> {
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
    pub(super) fn active(&self) -> Vec<String> {
        let mut urns: Vec<String> = self.live().keys().cloned().collect();
        urns.sort();
        urns
    }

    /// Whether `urn` is activated here once any activation or passivation of it under way
    /// has ended.
    pub(super) async fn is_live_when_settled(&self, urn: &str) -> bool {
        let entry = self.lock_for(urn);
        let _settled = entry.lock.lock().await;
        self.is_live(urn)
    }

    /// The URN's lock, and a guard that forgets it when nobody else holds it.
    fn lock_for(&self, urn: &str) -> LockEntry<'_> {
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

struct LockEntry<'a> {
    owner: &'a Activations,
    urn: String,
    lock: Arc<tokio::sync::Mutex<()>>,
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

impl Shared {
    /// Serves `urn` under `pattern`: the local activation, or a new one once this system
    /// claimed the URN, or the system that holds it.
    pub(super) async fn activate(self: &Arc<Self>, urn: &str, pattern: &Arc<Pattern>) -> Activated {
        let entry = self.activations.lock_for(urn);
        let _one_at_a_time = entry.lock.lock().await;
        if let Some(live) = self.activations.live().get_mut(urn)
            && live.actor.is_alive()
        {
            live.last_used = Instant::now();
            return Activated::Here(live.actor.clone(), live.standing.clone());
        }
        {
            let mut reg = self.registry();
            reg.activating.insert(urn.to_owned());
            reg.local.insert(urn.to_owned(), true);
        }
        let forget = |shared: &Shared| {
            let mut reg = shared.registry();
            reg.activating.remove(urn);
            reg.local.remove(urn);
        };
        let ttl = Value::Integer(self.config.urn_ttl.as_millis() as i64);
        let claimed = self
            .scripts
            .claim
            .eval_many(
                &self.cmd,
                vec![(self.keys.urn(urn), vec![owned(self.system_id.clone()), ttl])],
            )
            .await;
        match claimed.into_iter().next() {
            Some(Ok(Value::Integer(1))) => {
                let mut reg = self.registry();
                reg.conflicts.remove(urn);
                reg.owned.insert(urn.to_owned());
            }
            Some(Ok(other)) => {
                forget(self);
                let owner = as_bytes(&other)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                return Activated::HeldBy(owner);
            }
            Some(Err(e)) => {
                forget(self);
                return Activated::Unavailable(e.to_string());
            }
            None => {
                forget(self);
                return Activated::Unavailable("no answer".into());
            }
        }
        let token = format!("{}@{}", random_token(), self.system_id);
        let standing = Arc::new(Standing::default());
        let state_key = self.keys.state(urn);
        let activation = Activation {
            urn: urn.to_owned(),
            id: urn[pattern.prefix.len()..].to_owned(),
            store: StateStore::new(
                self.cmd.clone(),
                state_key.clone(),
                token.clone(),
                standing.clone(),
                self.config.codec.clone(),
            ),
        };
        // The directory counts it from now (written while the actor is made: a member that
        // places the pattern's next URN reads it once this one answers).
        let made = async {
            let made = (pattern.make)(self.system.clone(), activation).await;
            if let Ok(actor) = &made {
                self.activations.live().insert(
                    urn.to_owned(),
                    Live {
                        actor: actor.clone(),
                        pattern: pattern.clone(),
                        last_used: Instant::now(),
                        standing: standing.clone(),
                        state_key: state_key.clone(),
                        token: token.clone(),
                    },
                );
            }
            made
        };
        let count = self.activations.count_under(&pattern.prefix) + 1;
        let (made, ()) = tokio::join!(made, self.report_count(&pattern.prefix, count));
        match made {
            Ok(actor) => {
                self.registry().activating.remove(urn);
                crate::metrics::activation(&self.system_id, &pattern.prefix, "activated");
                tracing::debug!(%urn, system = %self.system_id, "activated");
                Activated::Here(actor, standing)
            }
            Err(text) => {
                forget(self);
                let was_owned = self.registry().owned.remove(urn);
                if was_owned {
                    self.release_urns(vec![urn.to_owned()]).await;
                }
                crate::metrics::activation(&self.system_id, &pattern.prefix, "refused");
                self.report_activations(&pattern.prefix).await;
                Activated::Refused(text)
            }
        }
    }

    /// Passivates the activations idle for longer than their pattern allows, and forgets
    /// those whose actor stopped by itself (its URN is released as any stopped actor's).
    pub(super) async fn passivate_idle(self: &Arc<Self>) {
        self.activations.live().retain(|_, l| l.actor.is_alive());
        let idle: Vec<String> = self
            .activations
            .live()
            .iter()
            .filter(|(_, l)| l.is_idle())
            .map(|(u, _)| u.clone())
            .collect();
        for urn in idle {
            let shared = self.clone();
            tokio::spawn(async move { shared.passivate(&urn, false).await });
        }
    }

    /// Stops an activation gracefully (its `on_stop` may save) and releases its URN.
    /// Unless `now`, only if it is still idle.
    pub(super) async fn passivate(self: &Arc<Self>, urn: &str, now: bool) {
        let entry = self.activations.lock_for(urn);
        let _one_at_a_time = entry.lock.lock().await;
        let live = {
            let mut live = self.activations.live();
            let still_idle = live.get(urn).is_some_and(|l| now || l.is_idle());
            if !still_idle {
                return;
            }
            live.remove(urn).expect("checked above")
        };
        live.actor.stop();
        if tokio::time::timeout(PASSIVATION_STOP_WAIT, live.actor.wait_for_stop())
            .await
            .is_err()
        {
            tracing::warn!(%urn, "an activation did not stop within {PASSIVATION_STOP_WAIT:?} of its passivation; killed it");
            live.actor.kill();
            let _ = live.actor.wait_for_stop().await;
        }
        let close = Script::new(STATE_CLOSE_SCRIPT);
        close
            .eval_many(&self.cmd, vec![(live.state_key, vec![owned(live.token)])])
            .await;
        let was_owned = {
            let mut reg = self.registry();
            reg.local.remove(urn);
            reg.owned.remove(urn)
        };
        if was_owned {
            self.release_urns(vec![urn.to_owned()]).await;
        }
        self.report_activations(&live.pattern.prefix).await;
        crate::metrics::activation(&self.system_id, &live.pattern.prefix, "passivated");
        tracing::debug!(%urn, system = %self.system_id, "passivated");
    }

    /// Passivates every activation (at shutdown), so that the group serves them at once.
    pub(super) async fn passivate_all(self: &Arc<Self>) {
        let urns = self.activations.active();
        for urn in urns {
            self.passivate(&urn, true).await;
        }
    }
}

/// What an activated actor's constructor gets: its URN, the id the pattern matched, and its
/// [`StateStore`].
pub struct Activation {
    urn: String,
    id: String,
    store: StateStore,
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

/// Declares a URN pattern this system activates actors for; from
/// [`ProxyHandle::activate`]. `.await` it (or call [`start`](Self::start)).
#[must_use = "an activator does nothing until awaited"]
pub struct Activator<'a> {
    proxy: &'a ProxyHandle,
    pattern: Result<Pattern, ServeError>,
}

impl fmt::Debug for Activator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activator")
            .field("prefix", &self.pattern.as_ref().map(|p| p.prefix.as_str()))
            .finish_non_exhaustive()
    }
}

/// The default idle time before an activation is passivated.
pub const DEFAULT_PASSIVATE_AFTER: Duration = Duration::from_secs(600);

impl<'a> Activator<'a> {
    pub(super) fn new<A, F, Fut, E>(proxy: &'a ProxyHandle, pattern: &str, make: F) -> Self
    where
        A: Actor,
        F: Fn(Activation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let make: MakeFn = Box::new(move |system: ActorSystem, act: Activation| {
            let urn = act.urn.clone();
            let made = make(act);
            Box::pin(async move {
                let actor = made.await.map_err(|e| e.to_string())?;
                system
                    .build(actor)
                    .urn(urn)
                    .spawn()
                    .await
                    .map(|r| r.to_dyn())
                    .map_err(|e| e.to_string())
            })
        });
        let pattern = parse_pattern(pattern).map(|prefix| Pattern {
            prefix,
            remote: A::REMOTE,
            make,
            idle: Some(DEFAULT_PASSIVATE_AFTER),
            placement: Placement::default(),
            rebalance: false,
        });
        Activator { proxy, pattern }
    }

    /// Passivates an activation after this long without a request through Redis (and with
    /// an empty mailbox). Default [`DEFAULT_PASSIVATE_AFTER`] (10 minutes).
    pub fn passivate_after(mut self, idle: Duration) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.idle = Some(idle);
        }
        self
    }

    /// Which member of the pattern's group activates a URN nobody holds yet: see
    /// [`Placement`]. Default [`Placement::Spread`] (the member with the fewest
    /// activations of the pattern).
    ///
    /// ```no_run
    /// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
    /// # use conclib_redis::{Placement, ProxyConfig, start_proxy};
    /// # struct Cart;
    /// # impl Actor for Cart { const REMOTE: &'static [ExposedMessage] = &[]; }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = start_proxy(&ActorSystem::new("web-1"), &ProxyConfig::default()).await?;
    /// proxy
    ///     .activate("cart:{id}", |_a| async { Ok::<_, String>(Cart) })
    ///     .placement(Placement::PreferAsker)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn placement(mut self, placement: Placement) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.placement = placement;
        }
        self
    }

    /// Moves activations to members that have fewer: every third of a lease, a member with
    /// more than its share of the pattern's activations (the total over the live members of
    /// the directory, divided evenly, rounded up) passivates the excess, least recently used
    /// first and only those with nothing queued (gracefully: `on_stop` may save). Their next
    /// request activates them by the pattern's placement, on the members with fewer: a
    /// member that joins takes its share of URNs that are asked. A request that meets an
    /// activation stopping for this is read again, not answered with an error. Default off.
    ///
    /// ```no_run
    /// # use conclib_core::{Actor, ActorSystem, ExposedMessage};
    /// # use conclib_redis::{ProxyConfig, start_proxy};
    /// # struct Cart;
    /// # impl Actor for Cart { const REMOTE: &'static [ExposedMessage] = &[]; }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let proxy = start_proxy(&ActorSystem::new("web-1"), &ProxyConfig::default()).await?;
    /// proxy
    ///     .activate("cart:{id}", |_a| async { Ok::<_, String>(Cart) })
    ///     .rebalance()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn rebalance(mut self) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.rebalance = true;
        }
        self
    }

    /// Never passivates idle activations (they stop with the system, or when another
    /// system takes their URN).
    pub fn never_passivate(mut self) -> Self {
        if let Ok(p) = &mut self.pattern {
            p.idle = None;
        }
        self
    }

    /// Registers the pattern and joins its group; returns once this system reads the
    /// group's stream.
    ///
    /// # Errors
    /// [`ServeError::Invalid`] for a pattern that is not `prefix:{id}`;
    /// [`ServeError::UrnInUse`], [`ServeError::Unavailable`] as for
    /// [`ProxyHandle::join`].
    pub async fn start(self) -> Result<(), ServeError> {
        let pattern = self.pattern?;
        let prefix = pattern.prefix.clone();
        let shared = &self.proxy.shared;
        shared.activations.add_pattern(pattern);
        let joined = shared.join_group(GroupOf::Pattern(&prefix)).await;
        if joined.is_err() {
            shared.activations.remove_pattern(&prefix);
        }
        joined
    }
}

impl<'a> IntoFuture for Activator<'a> {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

/// `prefix:{id}` → `prefix:`.
pub(super) fn parse_pattern(pattern: &str) -> Result<String, ServeError> {
    let invalid = |why: &str| {
        ServeError::Invalid(format!(
            "invalid URN pattern {pattern:?}: {why} (write it as `prefix:{{id}}`, e.g. `user:{{id}}`)"
        ))
    };
    let prefix = pattern
        .strip_suffix("{id}")
        .ok_or_else(|| invalid("it does not end with {id}"))?;
    if prefix.len() < 2 || !prefix.ends_with(':') {
        return Err(invalid(
            "the part before {id} must be a non-empty prefix ending in ':'",
        ));
    }
    if conclib_core::validate_urn(&format!("{prefix}x")).is_err() {
        return Err(invalid("the prefix is not valid in a URN"));
    }
    Ok(prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_pattern;
    use crate::protocol::pattern_prefix;

    #[test]
    fn patterns_are_a_prefix_then_id() {
        assert_eq!(parse_pattern("user:{id}").unwrap(), "user:");
        assert_eq!(parse_pattern("shop:cart:{id}").unwrap(), "shop:cart:");
        for bad in [
            "user",
            "user:{}",
            "{id}",
            ":{id}",
            "user{id}",
            "us er:{id}",
            "user:{id}x",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clients_look_up_the_prefix_before_the_last_colon() {
        assert_eq!(pattern_prefix("user:42"), Some("user:"));
        assert_eq!(pattern_prefix("shop:cart:7"), Some("shop:cart:"));
        assert_eq!(pattern_prefix("user:"), None);
        assert_eq!(pattern_prefix("counter"), None);
    }
}
